"""Every MN method (Table 1 columns) or every NSL variant (Table 4 rows) on the embedded `digits`
set (NSL also on the generated gratings), on CPU, through the shared trainer, over several seeds.
Prints one JSON object with the test accuracy of every run, their mean and standard deviation, each
run's validation accuracy by epoch, and the parameter counts.

    python benchmarks/digits_runs.py --family mn  --epochs 30 --threads 1 --seeds 0 1 2 3 4 5 6 7 8 9   # paper recipe
    python benchmarks/digits_runs.py --family mn  --epochs 30 --threads 1 --dictionary-init data --alpha 0.5 \
        --methods mn mn_ifilm --seeds 0 1 2 3 4 5 6 7 8 9 --out benchmarks/results/digits_mn_data_init_cpu.json
    python benchmarks/digits_runs.py --family nsl --epochs 8 --seeds 0 1 2 --threads 1   # cnn9, quick-mode recipe
    python benchmarks/digits_runs.py --family nsl --dataset synthetic --variants cnn dynamic_dns --epochs 4 \
        --predictor-lr-scale 0.1 --seeds 0 1 2 3 4 --out benchmarks/results/synthetic_nsl_cpu.json   # gratings
    python benchmarks/digits_runs.py --family nsl --dataset synthetic --variants cnn dynamic_dns --epochs 4 \
        --predictor-gain-init 0 --threads 2 --out benchmarks/results/synthetic_nsl_gain0_cpu.json   # M = I at the start
    python benchmarks/digits_runs.py --family nsl --variants cnn dynamic_dns dynamic_dns_no_identity \
        dynamic_dns_cnn_predictor dynamic_dns_cnn_predictor_no_norm --epochs 8 --seeds 0 1 2 --threads 2 \
        --out benchmarks/results/digits_nsl_predictor_ablations_cpu.json    # without the identity / normalisation
    python benchmarks/digits_runs.py --family mn --recipe cli --epochs 5 --threads 1 --seeds 0 1 2 3 4 5 6 7 8 9
    python benchmarks/digits_runs.py --family mn --recipe cli --epochs 5 --threads 1 --values fixed --methods mn mn_ifilm
    python benchmarks/digits_runs.py --family mn --recipe cli --epochs 5 --threads 1 --methods vanilla maxl \
        --seeds 0 1 2 3 4 5 6 7 8 9 --out benchmarks/results/digits_maxl_cli_cpu.json               # the MAXL baseline
    python benchmarks/digits_runs.py --family mn --recipe maxl_sgd --epochs 5 --threads 1 --methods vanilla maxl \
        --seeds 0 1 2 3 4 5 6 7 8 9 --out benchmarks/results/digits_maxl_sgd_cpu.json               # ... with its SGD

Recipe "maxl_sgd": the "cli" recipe with the optimisation of the maxl preset (MN appendix A.2's
MAXL recipe: SGD lr 0.1, momentum 0.9, weight decay 5e-4, lr halved at 25/50/75 % of training), for
vanilla and maxl alike.

Settings, recipe "quick" (default): digits upsampled to 16x16, batch 64, crop augmentation (what
quick mode uses, see nslviz.experiments.compare.quick_config); MN: S = 200, the MN preset (AdamW
1e-3); NSL: the NSL preset as quick mode runs it (AdamW 1e-3 instead of SGD 0.1, which needs
thousands of steps). Recipe "cli" (MN family): exactly `python -m nslviz train --dataset digits
--backbone convnet4 --method M --epochs N` (TrainConfig's defaults: 32x32, batch 32, S = 200, crop).
Every run reports the test accuracy of the best-on-validation weights (the paper's protocol) and of
the last epoch's; MN runs add the accuracy before finetuning and, under "dictionary_state", the mean
over seeds of nslviz.analysis.finetuning.dictionary_state on the test set (has the dictionary
learned?); "vs_vanilla" counts the seeds on which a method is above / level with / below vanilla
and gives the paired difference to vanilla (points, mean over seeds with a 95 % confidence interval).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path

import torch

from nslviz.analysis.finetuning import dictionary_state
from nslviz.neighborhoods import CLASS_VALUE_KINDS
from nslviz.training.config import DICTIONARY_INITS, PRESET_FIELDS, TrainConfig
from nslviz.experiments.compare import (NSL_ABLATION_VARIANTS, NSL_VARIANTS, QUICK_DATASETS,
                                       nsl_variant_config, quick_config)
from nslviz.training.rundir import RunDirectory, load_run
from nslviz.training.trainer import train
from _results import compare, save_result  # noqa: E402  (benchmarks/_results.py)

MN_METHODS = ("vanilla", "vanilla_ifilm", "mn", "mn_ifilm")      # the default set; "maxl" on request (--methods)
MAXL_OPTIMISATION = {k: PRESET_FIELDS["maxl"][k] for k in ("optimizer", "lr", "momentum", "nesterov", "weight_decay",
                                                            "milestones", "lr_decay")}


def run_configs(family: str, epochs: int, methods=None, recipe: str = "quick", *, dataset: str = "digits",
                predictor_lr_scale: float = 1.0, predictor_gain_init: float | None = None,
                **mn_options) -> dict[str, TrainConfig]:
    """Labelled configs; mn_options (dictionary_init, alpha, values) override the MN preset. NSL:
    `methods` are variants (default every Table 4 row), on quick mode's `dataset`, the dynamic ones
    with `predictor_gain_init` (NSConv2d's; None: the layer's default)."""
    if family == "mn":
        if recipe in ("cli", "maxl_sgd"):
            base = TrainConfig(dataset="digits", backbone="convnet4", epochs=epochs,
                               **(MAXL_OPTIMISATION if recipe == "maxl_sgd" else {}))
        else:       # quick_config caps the epochs at its own (small) default; the benchmark sets them after it
            base = dataclasses.replace(quick_config(TrainConfig.from_preset("mn", backbone="convnet4")),
                                       epochs=epochs, entries=200)
        base = dataclasses.replace(base, **{k: v for k, v in mn_options.items() if v is not None})
        return {m: dataclasses.replace(base, method=m) for m in (methods or MN_METHODS)}
    base = dataclasses.replace(quick_config(TrainConfig.from_preset("nsl", backbone="cnn9"), dataset=dataset),
                               epochs=epochs, predictor_lr_scale=predictor_lr_scale)
    gain = {} if predictor_gain_init is None else {"predictor_gain_init": predictor_gain_init}
    return {v: nsl_variant_config(dataclasses.replace(base, nsl_options=gain if v.startswith("dynamic") else {}), v)
            for v in (methods or NSL_VARIANTS)}


def versus_baseline(accuracies: dict[str, list[float]]) -> dict[str, dict[str, int]] | None:
    """compare() for every method against the run's baseline (vanilla, or the plain CNN for NSL);
    None when the baseline was not among the methods run."""
    reference = accuracies.get("vanilla") or accuracies.get("cnn")
    return {k: compare(v, reference) for k, v in accuracies.items()} if reference else None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("mn", "nsl"), default="mn")
    parser.add_argument("--recipe", choices=("quick", "cli", "maxl_sgd"), default="quick",
                        help="MN family: quick mode's settings (16x16, batch 64), the CLI's defaults, or those with "
                             "the maxl preset's SGD")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", nargs="+", choices=MN_METHODS + ("maxl",), default=None,
                        help="MN family: a subset of the methods, or maxl (MN Table 1's MAXL baseline)")
    parser.add_argument("--dictionary-init", choices=DICTIONARY_INITS, default=None,
                        help="MN family: the dictionary's start (default: the preset's, random)")
    parser.add_argument("--alpha", type=float, default=None, help="MN family: initial inner step size (preset: 0.05)")
    parser.add_argument("--values", choices=CLASS_VALUE_KINDS, default=None,
                        help="MN family: learnable soft values (preset) or fixed one-hot classes (official --fix_v)")
    parser.add_argument("--variants", nargs="+", choices=(*NSL_VARIANTS, *NSL_ABLATION_VARIANTS), default=None,
                        help="NSL family: a subset of NSL Table 4's rows and of the CNN-9 ablations (Tables 1-3, "
                             "sec. 3.4), cnn among them (default: Table 4's rows)")
    parser.add_argument("--dataset", choices=QUICK_DATASETS, default=None,
                        help="NSL family: digits (default), or synthetic (the generated oriented gratings)")
    parser.add_argument("--predictor-lr-scale", type=float, default=None,
                        help="NSL family: the dynamic predictors' learning rate x this (train --predictor-lr-scale; "
                             "default 1)")
    parser.add_argument("--predictor-gain-init", type=float, default=None,
                        help="NSL family: the starting scale of the dynamic predictors' output BatchNorm "
                             "(--nsl-options '{\"predictor_gain_init\": 0}'; default 1, the official start)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/<dataset>_<family>[_<recipe>]_cpu.json, "
                                                    "the recipe named unless it is quick")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.recipe != "quick" and args.family != "mn":
        parser.error(f"--recipe {args.recipe} is for the MN family")
    family_only = {"nsl": ("variants", "dataset", "predictor_lr_scale", "predictor_gain_init"),
                   "mn": ("methods", "dictionary_init", "alpha", "values")}
    for family, names in family_only.items():
        given = [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is not None]
        if args.family != family and given:
            parser.error(f"{', '.join(given)}: for the {family.upper()} family, not --family {args.family}")
    if args.variants is not None and "cnn" not in args.variants:
        parser.error(f"--variants {' '.join(args.variants)}: add cnn, the baseline every variant is compared with")
    dataset = args.dataset or "digits"
    configs = run_configs(args.family, args.epochs, args.methods if args.family == "mn" else args.variants,
                          args.recipe, dataset=dataset, predictor_lr_scale=args.predictor_lr_scale or 1.0,
                          predictor_gain_init=args.predictor_gain_init, dictionary_init=args.dictionary_init,
                          alpha=args.alpha, values=args.values)
    accuracy = {label: [] for label in configs}
    last = {label: [] for label in configs}
    stored = {}
    before = {label: [] for label in configs if label.startswith("mn")}
    dictionary = {label: [] for label in before}
    seconds = {label: [] for label in configs}
    validation = {label: [] for label in configs}                    # [seed][epoch]
    parameters = {}
    with tempfile.TemporaryDirectory() as runs:
        for seed in args.seeds:
            for label, config in configs.items():
                summary = train(dataclasses.replace(config, seed=seed), Path(runs) / f"{label}-{seed}", progress=False)
                accuracy[label].append(summary["test_acc"])
                last[label].append(summary["test_acc_last"])
                stored[label] = json.loads((Path(runs) / f"{label}-{seed}" / "config.json").read_text())  # resolved
                if label in before:                      # the same model without per-input finetuning
                    before[label].append(summary["test_acc_before_finetune"])
                    model, _, data = load_run(Path(runs) / f"{label}-{seed}")      # the best-on-validation weights
                    dictionary[label].append(dictionary_state(model, data.test))
                seconds[label].append(summary["seconds"])
                rows = RunDirectory(Path(runs) / f"{label}-{seed}").read_metrics()
                validation[label].append([row["val_acc"] for row in rows if "val_acc" in row])
                parameters[label] = summary["parameters"]
                print(label, seed, round(summary["test_acc"], 4), flush=True)
    spread = (lambda v: round(statistics.stdev(v), 4)) if len(args.seeds) > 1 else (lambda v: 0.0)
    first = next(iter(stored.values()))
    result = {"benchmark": f"{dataset}_{args.family}", "recipe": args.recipe, "epochs": args.epochs, "seeds": args.seeds,
              "backbone": first["backbone"], "epochs_run": first["epochs"], "image_size": first["image_size"] or 32,
              "batch_size": first["batch_size"], "entries": first["entries"], "threads": torch.get_num_threads(),
              "optimizer": f"{first['optimizer']}, lr {first['lr']:g}, weight decay {first['weight_decay']:g}",
              "test_acc": accuracy, "mean_test_acc": {k: round(statistics.mean(v), 4) for k, v in accuracy.items()},
              "std_test_acc": {k: spread(v) for k, v in accuracy.items()},
              "vs_vanilla": versus_baseline(accuracy),
              "test_acc_last_epoch": last,
              "val_acc_by_epoch": validation,
              "mean_test_acc_last_epoch": {k: round(statistics.mean(v), 4) for k, v in last.items()},
              "vs_vanilla_last_epoch": versus_baseline(last),
              "test_acc_before_finetune": before,
              "mean_test_acc_before_finetune": {k: round(statistics.mean(v), 4) for k, v in before.items()},
              "dictionary_state": {k: {name: round(statistics.mean(s[name] for s in v), 4) for name in v[0]}
                                   for k, v in dictionary.items()},
              "mn_options": {"dictionary_init": first["dictionary_init"], "alpha": first["alpha"], "values": first["values"]}
              if args.family == "mn" else None,
              "predictor_lr_scale": first["predictor_lr_scale"] if args.family == "nsl" else None,
              "predictor_gain_init": (args.predictor_gain_init if args.predictor_gain_init is not None else 1.0)
              if args.family == "nsl" else None,
              "parameters": parameters,
              "mean_seconds": {k: round(statistics.mean(v), 1) for k, v in seconds.items()}}
    save_result(result, f"{dataset}_{args.family}{'' if args.recipe == 'quick' else '_' + args.recipe}_cpu", args.out)
    return result


if __name__ == "__main__":
    main()
