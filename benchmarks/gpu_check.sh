#!/usr/bin/env bash
# The GPU checks in one prepared run on a CUDA machine, from the repository root (results go to
# $OUT, default benchmarks/results):
#   1. tests/test_cuda.py: the MN head, iFiLM, NSConv2d and whole models on CUDA against float64
#      references, bf16 + channels_last, the trainer, torchrun (NCCL), torch.compile (Triton);
#      and the CUDA augmentation test;
#   2. the throughput benchmarks on CUDA (JSON): MN/iFiLM training step and inference against vanilla
#      (ResNet-29, CIFAR-10 and CIFAR-100 settings), the batched inner loop, the NSL convolutions,
#      the backbones with bf16 + channels_last, the batched augmentation.
# Uses the machine's own python3 and torch (nothing is installed); stops at once, with one line,
# if that torch cannot be imported or (DEVICE=cuda) sees no GPU. Writes 8 files to $OUT:
# gpu_env.txt, gpu_check.log (every step's output) and six JSON results.
# Exits 1 if any step failed. The benchmarks run first (the MN/vanilla training-step and inference
# ratios first of all) and the step limits add up to 500 s, under ten minutes in all; PART=bench
# or PART=tests runs one half again (with more time for the tests).
#
#   bash benchmarks/gpu_check.sh                          # on the GPU machine (about 5 minutes)
#   PART=tests bash benchmarks/gpu_check.sh               # only the CUDA tests (limit 450 s)
#   DEVICE=cpu SMALL=1 OUT=/tmp/check bash benchmarks/gpu_check.sh   # the same steps on the CPU, tiny sizes
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
SMALL=${SMALL:-0}
OUT=${OUT:-benchmarks/results}
PYTHON=${PYTHON:-python3}
PART=${PART:-all}
case "$PART" in all|bench|tests) ;; *) echo "PART must be all, bench or tests, got '$PART'"; exit 2 ;; esac
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 NSLVIZ_QUICK=1 NSLVIZ_TEST_DEVICE=$DEVICE
status=0
: > "$OUT/gpu_check.log"
step() {   # step NAME LIMIT_SECONDS COMMAND...: run it with its output in gpu_check.log; go on after a failure
  local name=$1 limit=$2; shift 2
  echo "== $name" | tee -a "$OUT/gpu_check.log"
  timeout "$limit" "$@" 2>&1 | tee -a "$OUT/gpu_check.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { echo "!! $name failed (exit $rc)" | tee -a "$OUT/gpu_check.log"; status=1; }
}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PYTHON" -c "import torch, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'device', torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor())"
} > "$OUT/gpu_env.txt" 2>&1
cat "$OUT/gpu_env.txt"
"$PYTHON" -c "import torch" 2>/dev/null || { echo "!! $PYTHON cannot import torch: nothing to check" | tee -a "$OUT/gpu_check.log"; exit 1; }
if [ "$DEVICE" != cpu ] && ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "!! DEVICE=$DEVICE but torch.cuda.is_available() is False: no GPU to check" | tee -a "$OUT/gpu_check.log"
  exit 1
fi

if [ "$SMALL" = 1 ]; then
  markers=(-m "not slow")
  train=(--backbone convnet4 --batch 4 --entries 20 --repeats 1 --warmup 0)
  train100=(--backbone convnet4 --batch 4 --classes 100 --entries 50 --repeats 1 --warmup 0)
  inner=(--batch 8 --entries 100 --repeats 1)
  nsl=(--batch 2 --repeats 1)
  backbones=(--backbones convnet4 --batch 2 --repeats 1)
  augment=(--batch 16 --repeats 3)
else
  markers=()
  train=(--repeats 20 --warmup 5)
  train100=(--classes 100 --entries 10000 --repeats 20 --warmup 5)
  inner=(--repeats 20)
  nsl=(--batch 128 --repeats 20)
  backbones=(--batch 128 --repeats 20)
  augment=(--batch 512 --repeats 50)
fi
amp=()
[ "$DEVICE" = cpu ] || amp=(--amp --channels-last)

if [ "$PART" != tests ]; then
  step train 100 "$PYTHON" benchmarks/bench_train.py --device "$DEVICE" "${train[@]}" --out "$OUT/train_$DEVICE.json"
  step train_c100 80 "$PYTHON" benchmarks/bench_train.py --device "$DEVICE" "${train100[@]}" --out "$OUT/train_${DEVICE}_c100.json"
  step inner_loop 30 "$PYTHON" benchmarks/bench_inner_loop.py --device "$DEVICE" "${inner[@]}" --out "$OUT/inner_loop_$DEVICE.json"
  step nsl 50 "$PYTHON" benchmarks/bench_nsl.py --device "$DEVICE" "${nsl[@]}" --out "$OUT/nsl_$DEVICE.json"
  step backbones 60 "$PYTHON" benchmarks/bench_backbones.py --device "$DEVICE" "${amp[@]}" "${backbones[@]}" \
    --out "$OUT/backbones_$DEVICE.json"
  step augment 30 "$PYTHON" benchmarks/bench_augment.py --device "$DEVICE" "${augment[@]}" --out "$OUT/augment_$DEVICE.json"
fi
if [ "$PART" != bench ]; then
  tests_limit=150
  [ "$PART" = tests ] && tests_limit=450
  step tests "$tests_limit" "$PYTHON" -m pytest -p no:cacheprovider -o addopts="" -q -rs "${markers[@]}" \
    tests/test_cuda.py tests/test_augment.py -k cuda
fi
exit $status
