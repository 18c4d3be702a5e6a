"""The tabular classifier's last layer: a linear f_φ against the image models' cosine classifier.

One AdamW training step (forward, second-order backward, update) with cross-entropy of three models on
the same batch, measured in the same run:

    plain    the MLP alone: 2 hidden layers of `width` units and a linear last layer
    linear   MetaNeighborhoodsFeatureMLP: the same trunk, the last layer finetuned per input in closed
             form on a feature-space dictionary (what MetaNeighborsClassifier trains)
    cosine   the same trunk and MetaNeighborhoodsHead, the image models' cosine classifier, which forms
             every input's finetuned weights (B, C, d) for its row normalisation

Defaults: batch 128, 64 inputs, width 128, 10 classes, S = 128 entries, one thread.
Usage: python benchmarks/bench_feature_heads.py [--threads 1] [--repeats 100]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

from nslviz.feature_space import MetaNeighborhoodsFeatureMLP
from nslviz.neighborhoods import MetaNeighborhoodsHead
from nslviz.regression import MLP
from _results import environment, save_result  # noqa: E402  (benchmarks/_results.py)


def step_seconds(models: dict[str, nn.Module], inputs: torch.Tensor, labels: torch.Tensor,
                 repeats: int) -> dict[str, float]:
    """Median seconds of one training step per model; the models take turns, step by step, so that a
    slow spell of a shared CPU falls on all of them."""
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-3) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats + 2):                                     # two warm-up steps each
        for name, model in models.items():
            start = time.perf_counter()
            loss = nn.functional.cross_entropy(model(inputs), labels)
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t[2:]) for name, t in times.items()}


def build_models(features: int, width: int, classes: int, entries: int) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    linear = MetaNeighborhoodsFeatureMLP(features, classes, layers=3, width=width, entries=entries)
    trunk = nn.Sequential(MLP(features, width, 2, width), nn.ReLU())   # the same shape of trunk
    cosine = nn.Sequential(trunk, MetaNeighborhoodsHead(width, classes, entries, classifier="cosine"))
    return {"plain": MLP(features, classes, 3, width), "linear": linear, "cosine": cosine}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--entries", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the estimators)")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/feature_heads_cpu.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    models = build_models(args.features, args.width, args.classes, args.entries)
    inputs = torch.randn(args.batch, args.features)                                  # (B, d_in)
    labels = torch.randint(args.classes, (args.batch,))                              # (B,)
    seconds = step_seconds(models, inputs, labels, args.repeats)
    result = {"benchmark": "feature_heads", "batch": args.batch, "features": args.features, "width": args.width,
              "classes": args.classes, "entries": args.entries, "repeats": args.repeats,
              **environment(torch.device("cpu")),
              "step_seconds": {name: round(s, 5) for name, s in seconds.items()},
              "ratio_to_plain": {name: round(s / seconds["plain"], 2) for name, s in seconds.items()},
              "cosine_over_linear": round(seconds["cosine"] / seconds["linear"], 2)}
    return save_result(result, "feature_heads_cpu", args.out)


if __name__ == "__main__":
    main()
