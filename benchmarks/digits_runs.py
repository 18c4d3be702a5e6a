"""Every MN method (Table 1 columns) or every NSL variant (Table 4 rows) on the embedded `digits`
set, on CPU, through the shared trainer, over several seeds. Prints one JSON object with the test
accuracy of every run, their mean and standard deviation, and the parameter counts.

    python benchmarks/digits_runs.py --family mn  --epochs 30 --threads 1                # convnet4, paper recipe
    python benchmarks/digits_runs.py --family nsl --epochs 8 --seeds 0 1 2 --threads 1   # cnn9, quick-mode recipe

Settings: digits upsampled to 16x16, batch 64, crop augmentation (what quick mode uses, see
nslviz.training.experiments.quick_config); MN: S = 200, the MN preset (AdamW 1e-3); NSL: the NSL
preset as quick mode runs it (AdamW 1e-3 instead of SGD 0.1, which needs thousands of steps).
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from pathlib import Path

import torch

from nslviz.training.config import TrainConfig
from nslviz.training.experiments import NSL_VARIANTS, nsl_variant_config, quick_config
from nslviz.training.trainer import train
from _results import save_result  # noqa: E402  (benchmarks/_results.py)

MN_METHODS = ("vanilla", "vanilla_ifilm", "mn", "mn_ifilm")


def run_configs(family: str, epochs: int) -> dict[str, TrainConfig]:
    if family == "mn":
        # quick_config caps the epochs at its own (small) default; the benchmark sets them after it
        base = dataclasses.replace(quick_config(TrainConfig.from_preset("mn", backbone="convnet4")),
                                   epochs=epochs, entries=200)
        return {m: dataclasses.replace(base, method=m) for m in MN_METHODS}
    base = dataclasses.replace(quick_config(TrainConfig.from_preset("nsl", backbone="cnn9")), epochs=epochs)
    return {v: nsl_variant_config(base, v) for v in NSL_VARIANTS}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("mn", "nsl"), default="mn")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/digits_<family>_cpu.json")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    configs = run_configs(args.family, args.epochs)
    accuracy = {label: [] for label in configs}
    seconds = {label: [] for label in configs}
    parameters = {}
    with tempfile.TemporaryDirectory() as runs:
        for seed in args.seeds:
            for label, config in configs.items():
                summary = train(dataclasses.replace(config, seed=seed), Path(runs) / f"{label}-{seed}", progress=False)
                accuracy[label].append(summary["test_acc"])
                seconds[label].append(summary["seconds"])
                parameters[label] = summary["parameters"]
                print(label, seed, round(summary["test_acc"], 4), flush=True)
    spread = (lambda v: round(statistics.stdev(v), 4)) if len(args.seeds) > 1 else (lambda v: 0.0)
    result = {"benchmark": f"digits_{args.family}", "epochs": args.epochs, "seeds": args.seeds,
              "backbone": next(iter(configs.values())).backbone,
              "epochs_run": next(iter(configs.values())).epochs, "image_size": 16, "threads": torch.get_num_threads(),
              "test_acc": accuracy, "mean_test_acc": {k: round(statistics.mean(v), 4) for k, v in accuracy.items()},
              "std_test_acc": {k: spread(v) for k, v in accuracy.items()}, "parameters": parameters,
              "mean_seconds": {k: round(statistics.mean(v), 1) for k, v in seconds.items()}}
    save_result(result, f"digits_{args.family}_cpu", args.out)
    return result


if __name__ == "__main__":
    main()
