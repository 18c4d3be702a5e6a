"""MN regression training step: closed-form per-input finetuning vs torch.func, and the vanilla MLP.

One AdamW step (forward, second-order backward, update) of `MetaNeighborhoodsMLP` (the closed form of
nslviz.regression) and of `FunctionalMetaNeighborhoods` (vmap(grad), which materialises every input's
finetuned weights) around the same MLP, and of the MLP alone, at MN Appendix B's setting: batch 128,
S = 1000 entries, one inner step; d = 90 inputs (music), MLP 3 x 128. The ratios are measured in the
same run. Usage: python benchmarks/bench_regression.py [--width 128] [--layers 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from nslviz import FunctionalMetaNeighborhoods
from nslviz.regression import MLP, MetaNeighborhoodsMLP
from _results import save_result  # noqa: E402  (benchmarks/_results.py)


def seconds_per_step(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, repeats: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for _ in range(repeats + 2):                      # two warm-up steps
        start = time.perf_counter()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--features", type=int, default=90)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/<name>.json)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    inputs, targets = torch.randn(args.batch, args.features), torch.randn(args.batch, 1)
    closed_form = MetaNeighborhoodsMLP(args.features, 1, args.layers, args.width, args.entries)
    functional = FunctionalMetaNeighborhoods(closed_form.network, args.features, 1, entries=args.entries)
    functional.dictionary, functional.inner_step_sizes = closed_form.dictionary, closed_form.inner_step_sizes
    with torch.no_grad():                              # the two compute the same function
        torch.testing.assert_close(closed_form(inputs), functional(inputs), rtol=1e-4, atol=1e-5)
    fast = seconds_per_step(closed_form, inputs, targets, args.repeats)
    slow = seconds_per_step(functional, inputs, targets, max(2, args.repeats // 3))
    vanilla = seconds_per_step(MLP(args.features, 1, args.layers, args.width), inputs, targets, args.repeats)
    result = {"benchmark": "regression_step", "batch": args.batch, "entries": args.entries,
              "features": args.features, "layers": args.layers, "width": args.width, "device": "cpu",
              "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
              "closed_form_seconds": round(fast, 5), "torch_func_seconds": round(slow, 5),
              "vanilla_mlp_seconds": round(vanilla, 5), "speedup_over_torch_func": round(slow / fast, 1),
              "cost_over_vanilla_mlp": round(fast / vanilla, 1)}
    save_result(result, "regression_cpu", args.out)
    return result


if __name__ == "__main__":
    main()
