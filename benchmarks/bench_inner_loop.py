"""Batched closed-form inner loop vs the per-example autograd reference (MN eq. 1-3).

Forward + backward of MetaNeighborhoodsHead, one inner step, batch 128, d = 256, C = 10, S = 5000,
cosine classifier and similarity, second order. Prints one JSON object; the ratio is measured in the
same run. Usage: python benchmarks/bench_inner_loop.py [--batch 128] [--entries 5000] [--repeats 7] [--device cpu|cuda]
(times: minimum over the repeats, medians reported too)
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from reference import reference_head  # noqa: E402  (the tests' per-example ground truth)

from nslviz import MetaNeighborhoodsHead  # noqa: E402
from nslviz.training.distributed import resolve_device  # noqa: E402
from _results import device_name, save_result, synchronize  # noqa: E402  (benchmarks/_results.py)


def time_forward_backward(forward, head, features, repeats):
    """Seconds of one forward + backward: (min, median) over `repeats` calls after a warm-up. The
    minimum is the least disturbed by other processes (timeit's advice); both are reported."""
    times = []
    for _ in range(repeats + 1):                       # first call is a warm-up
        head.zero_grad(set_to_none=True)
        synchronize(features.device)
        start = time.perf_counter()
        forward(head, features).logsumexp(dim=1).mean().backward()
        synchronize(features.device)
        times.append(time.perf_counter() - start)
    return min(times[1:]), statistics.median(times[1:])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/inner_loop_<device>.json)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)

    torch.manual_seed(0)
    head = MetaNeighborhoodsHead(args.dim, args.classes, entries=args.entries, inner_steps=args.steps).eval().to(device)
    features = torch.randn(args.batch, args.dim).to(device)
    fast, fast_median = time_forward_backward(lambda m, x: m(x), head, features, args.repeats)
    reference, reference_median = time_forward_backward(reference_head, head, features, max(3, args.repeats // 2))
    result = {"benchmark": "inner_loop", "batch": args.batch, "feature_dim": args.dim, "classes": args.classes,
              "entries": args.entries, "inner_steps": args.steps, "device": str(device),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "device_name": device_name(device),
              "machine": platform.machine(),
              "fast_seconds": round(fast, 5), "per_example_reference_seconds": round(reference, 5),
              "speedup": round(reference / fast, 1),
              "fast_median_seconds": round(fast_median, 5), "reference_median_seconds": round(reference_median, 5),
              "speedup_of_medians": round(reference_median / fast_median, 1)}
    save_result(result, f"inner_loop_{device.type}", args.out)
    return result


if __name__ == "__main__":
    main()
