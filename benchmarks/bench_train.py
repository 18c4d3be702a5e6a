"""Training-step and inference throughput of vanilla, MN and MN+iFiLM (MN Appendix A.7).

ResNet-29 on CIFAR-shaped batches (128 x 3 x 32 x 32, 10 classes and S = 5000 as for CIFAR-10, by default), the same
model code, optimiser, loss and clipping the trainer uses; the methods are timed in interleaved
rounds. Prints one JSON object with images/s per method and
the ratios of MN and MN+iFiLM step times against vanilla measured in the same run (the
targets: MN training step <= 1.5x vanilla, inference <= 1.2x; the paper reports about 2x at inference).

    python benchmarks/bench_train.py                        # CPU (or CUDA when present, bf16 + channels_last)
    python benchmarks/bench_train.py --device cuda --batch 128 --entries 10000
"""
from __future__ import annotations

import argparse
import statistics
import time

import nslviz  # noqa: F401  first, as `python -m nslviz train` runs: its CPU allocator default (THP)
import torch
import torch.nn.functional as F

from nslviz.cli.common import integer_at_least
from nslviz.models.classifier import build_image_model
from nslviz.training.config import TrainConfig
from nslviz.training.distributed import resolve_device
from nslviz.training.optim import build_optimizer
from _results import environment, save_result, synchronize  # noqa: E402  (benchmarks/_results.py)


def _interleaved_medians(steps: dict, device, repeats: int, warmup: int) -> dict:
    """Median seconds per call of each step, timed in interleaved rounds whose order rotates
    (vanilla, mn, mn_ifilm; mn, mn_ifilm, vanilla; ...) so that drift of the machine (other
    processes, clock, memory state) and the position in a round fall on every method alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    synchronize(device)
    times = {name: [] for name in steps}
    names = list(steps)
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            step = steps[name]
            start = time.perf_counter()
            step()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def build(method: str, args, device):
    """(train_step, inference, parameter count) of one method, as the trainer runs them: bf16 autocast
    and channels_last on CUDA, the float32 head, AdamW with the paper's groups, clipping at ±10."""
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    config = TrainConfig(method=method, entries=args.entries)
    model = build_image_model(method, args.backbone, args.classes, entries=args.entries).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config)
    images = torch.rand(args.batch, 3, 32, 32, device=device)
    if cuda:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, args.classes, (args.batch,), device=device)

    def train_step():
        model.train()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), config.clip_value)
        optimizer.step()

    @torch.no_grad()
    def inference():
        model.eval()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            model(images)

    return train_step, inference, sum(p.numel() for p in model.parameters())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet29")
    parser.add_argument("--batch", type=integer_at_least(1), default=128)
    parser.add_argument("--classes", type=integer_at_least(2), default=10)
    parser.add_argument("--entries", type=integer_at_least(1), default=5000)
    parser.add_argument("--repeats", type=integer_at_least(1), default=5)
    parser.add_argument("--warmup", type=integer_at_least(0), default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/train_<device>.json)")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    built = {m: build(m, args, device) for m in ("vanilla", "mn", "mn_ifilm")}
    train = _interleaved_medians({m: b[0] for m, b in built.items()}, device, args.repeats, args.warmup)
    infer = _interleaved_medians({m: b[1] for m, b in built.items()}, device, args.repeats, args.warmup)
    methods = {m: {"train_step_seconds": round(train[m], 6), "inference_seconds": round(infer[m], 6),
                   "train_images_per_second": round(args.batch / train[m], 1),
                   "inference_images_per_second": round(args.batch / infer[m], 1),
                   "parameters": built[m][2]} for m in built}
    ratios = {m: {"train_step_vs_vanilla": round(train[m] / train["vanilla"], 3),      # from the unrounded medians
                  "inference_vs_vanilla": round(infer[m] / infer["vanilla"], 3)}
              for m in built if m != "vanilla"}
    cuda = device.type == "cuda"
    result = {"benchmark": "train_step_and_inference", "backbone": args.backbone, "batch": args.batch,
              "classes": args.classes, "entries": args.entries, "repeats": args.repeats, "warmup": args.warmup,
              "amp": "bf16" if cuda else "off", "channels_last": cuda, **environment(device),
              "methods": methods, "ratios": ratios}
    save_result(result, f"train_{device.type}", args.out)
    return result


if __name__ == "__main__":
    main()
