"""Forward + backward time of the NSL convolutions against a plain nn.Conv2d of the same shape.

For each CNN-9 layer shape (CIFAR, 32×32 input) it times, in the same run and interleaved:
  conv             plain nn.Conv2d (the baseline, ratio 1)
  dns_taps         the dynamic-DNS convolution given M (per-tap responses Z + shifted maps), Z kept
  dns_taps_recompute   the same, Z recomputed in backward from X (NSConv2d(recompute_taps=True))
  dns_patches      the same through channels-last patches (the default at stride 2 and when C_in < C_out)
  uns_patches      the dynamic-UNS convolution given M
  static_dns/uns   NSConv2d static (the kernel W·M is folded at every call)
  dynamic_dns/uns  the whole NSConv2d layer: SphereConv predictor + dynamic convolution
and the bytes that autograd keeps for backward (`saved_MB`); on CUDA also the peak memory of one
forward + backward above what was allocated before it (`peak_MB`). Times are the minimum over `--repeats` runs (the
machine is shared; the minimum is the least disturbed); with `--threads 1` on CPU the ratios of
process CPU time are reported too (`cpu_time_ratio`), which waiting for a busy core does not
inflate. Prints one JSON object with the ratios and writes it to benchmarks/results/nsl_<device>.json.

Usage: python benchmarks/bench_nsl.py [--batch 32] [--repeats 7] [--threads N] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch
import torch.nn as nn

from nslviz.nsl import NSConv2d, dynamic_similarity_conv2d
from _results import device_name, save_result, synchronize  # noqa: E402  (benchmarks/_results.py)

SHAPES = [  # (in_channels, out_channels, size, stride): the three CNN-9 stages, a widening and a strided layer
    (32, 32, 32, 1), (64, 64, 16, 1), (128, 128, 8, 1), (32, 64, 16, 1), (64, 128, 16, 2)]


def saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd saves for backward while running fn()."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(storages.values())


def peak_bytes(fn, device: torch.device) -> int:
    """CUDA: the peak memory of one forward + backward of fn() above what was allocated before."""
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn().square().mean().backward()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    rows = []
    for in_ch, out_ch, size, stride in SHAPES:
        x = torch.randn(args.batch, in_ch, size, size, device=device)
        out_size = (size - 1) // stride + 1
        mask = 1 + 0.1 * torch.randn(args.batch, 9, out_size, out_size, device=device)
        matrix = torch.eye(9, device=device).view(1, 9, 9, 1, 1) + 0.1 * torch.randn(
            args.batch, 9, 9, out_size, out_size, device=device)
        conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False).to(device)
        weight = conv.weight.detach().clone().requires_grad_()
        layers = {mode: NSConv2d(in_ch, out_ch, stride=stride, mode=mode).to(device)
                  for mode in ("static_dns", "static_uns", "dynamic_dns", "dynamic_uns")}

        def given_m(similarity, impl, recompute=False):
            def run():
                s = similarity.detach().requires_grad_()
                xx = x.detach().requires_grad_()
                return dynamic_similarity_conv2d(xx, weight, s, stride=stride, padding=1, impl=impl,
                                                 recompute=recompute)
            return run

        def layer_run(module):
            return lambda: module(x.detach().requires_grad_())

        cases = {"conv": lambda: conv(x.detach().requires_grad_()),
                 "dns_patches": given_m(mask, "patches"), "uns_patches": given_m(matrix, "patches"),
                 **{mode: layer_run(module) for mode, module in layers.items()}}
        if stride == 1:
            cases["dns_taps"] = given_m(mask, "taps")
            cases["dns_taps_recompute"] = given_m(mask, "taps", recompute=True)
        best = {name: float("inf") for name in cases}
        best_cpu = dict(best)
        for _ in range(args.repeats + 1):                 # the first round is a warm-up
            for name, run in cases.items():
                synchronize(device)
                start, start_cpu = time.perf_counter(), time.process_time()
                run().square().mean().backward()
                synchronize(device)
                best[name] = min(best[name], time.perf_counter() - start)
                best_cpu[name] = min(best_cpu[name], time.process_time() - start_cpu)
        memory = {name: saved_bytes(run) for name, run in cases.items()}
        peak = {name: peak_bytes(run, device) for name, run in cases.items()} if device.type == "cuda" else None
        row = {"in_channels": in_ch, "out_channels": out_ch, "size": size, "stride": stride,
               "conv_ms": round(best["conv"] * 1e3, 2),
               "ratio": {name: round(t / best["conv"], 2) for name, t in best.items() if name != "conv"},
               "saved_MB": {name: round(b / 2**20, 1) for name, b in memory.items()}}
        if peak is not None:
            row["peak_MB"] = {name: round(b / 2**20, 1) for name, b in peak.items()}
        if device.type == "cpu" and torch.get_num_threads() == 1:
            # CPU time of the one thread: not inflated by the time the process waits for a core
            row["cpu_time_ratio"] = {name: round(t / best_cpu["conv"], 2) for name, t in best_cpu.items()
                                     if name != "conv"}
        rows.append(row)
    result = {"benchmark": "nsl_forward_backward", "device": str(device), "batch": args.batch,
              "repeats": args.repeats, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "device_name": device_name(device),
              "machine": platform.machine(), "cpu_count": os.cpu_count(),
              "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
              "shapes": rows}
    save_result(result, f"nsl_{device.type}", args.out)
    return result


if __name__ == "__main__":
    main()
