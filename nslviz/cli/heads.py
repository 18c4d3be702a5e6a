"""python -m nslviz heads: MN's head alone on fixed features, against vanilla's head (notebook 03's last
two sections; nslviz.experiments.heads).

    python -m nslviz heads --clusters-per-class 6 --json          # 4 classes of 6 clusters each in R^16
    python -m nslviz train --dataset digits --backbone convnet4 --method vanilla --epochs 5 --run-dir runs/d/v
    python -m nslviz heads --run-dir runs/d/v --batch-size 32 --json   # the frozen backbone of that run
    python -m nslviz heads --sweep entries 3 6 12 24 100 400 --steps 600   # MN Fig. 8 on the clusters

Trains vanilla's cosine classifier and MN's head with the paper's randomly initialised dictionary on
the same batches, and prints the test accuracy of both, of MN's classifier before finetuning and of the
dictionary read alone (its attended values), the attention entropy against log S and the step size α.
"""
from __future__ import annotations

import argparse
import math

from ..experiments.heads import HeadTraining
from .common import add_progress_argument, emit_json, folder_path, option_flag, positive_float, positive_int, seed_value

CLUSTER_OPTIONS = ("classes", "clusters_per_class", "dim", "noise", "train_size", "test_size")


def add_parser(subparsers) -> None:
    defaults = HeadTraining()
    p = subparsers.add_parser("heads", help="MN's head alone on fixed features (clusters or a run's frozen backbone)",
                              description=__doc__)
    p.add_argument("--run-dir", type=folder_path, default=None, help="a train() run whose frozen backbone gives the features "
                                                   "(default: generated clusters)")
    clusters = p.add_argument_group("clusters (without --run-dir)")
    clusters.add_argument("--classes", type=positive_int, default=None, help="number of classes (default: 4)")
    clusters.add_argument("--clusters-per-class", type=positive_int, default=None, help="default: 6")
    clusters.add_argument("--dim", type=positive_int, default=None, help="feature width d (default: 16)")
    clusters.add_argument("--noise", type=positive_float, default=None, help="std around the centres (default: 0.15)")
    clusters.add_argument("--train-size", type=positive_int, default=None, help="default: 4000")
    clusters.add_argument("--test-size", type=positive_int, default=None, help="default: 2000")
    p.add_argument("--entries", type=positive_int, default=None,
                   help=f"dictionary entries S (default: {defaults.entries})")
    p.add_argument("--temperature", type=positive_float, default=None,
                   help=f"T of MN's attention (default: {defaults.temperature})")
    p.add_argument("--sweep", nargs="+", metavar=("SETTING", "VALUE"), default=None,
                   help="clusters only: train once per value of entries or temperature (MN Fig. 8), e.g. "
                        "--sweep entries 3 6 24 100")
    p.add_argument("--steps", type=positive_int, default=defaults.steps, help="optimiser steps")
    p.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    p.add_argument("--lr", type=positive_float, default=defaults.lr, help="Adam learning rate")
    p.add_argument("--eval-every", type=positive_int, default=defaults.eval_every, help="steps between evaluations")
    p.add_argument("--seed", type=seed_value, default=defaults.seed)
    p.add_argument("--device", default="cpu", help="where a run's features are extracted: cpu (default), auto, cuda")
    add_progress_argument(p)
    p.add_argument("--json", action="store_true", help="end the output with one JSON object")
    p.set_defaults(run=run, subparser=p)


def run(args) -> int:
    from ..experiments.heads import frozen_feature_heads
    from ..training.distributed import check_device_name
    from ..experiments.heads import run_clusters
    check_device_name(args.device)
    if args.sweep is not None and args.run_dir is not None:
        raise ValueError("--sweep trains on the generated clusters; leave out --run-dir")
    if args.run_dir is None and args.device != "cpu":
        raise ValueError(f"--device {args.device} is where a run's features are extracted; it needs --run-dir "
                         f"(the generated clusters, and so every --sweep, are made and trained on the CPU)")
    given = {name: getattr(args, name) for name in ("entries", "temperature") if getattr(args, name) is not None}
    training = HeadTraining(**given, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            eval_every=args.eval_every, seed=args.seed, progress=not args.no_progress)
    cluster_options = {name: getattr(args, name) for name in CLUSTER_OPTIONS if getattr(args, name) is not None}
    if args.sweep is not None:
        return _sweep(args, training, cluster_options, given)
    if args.run_dir is None:
        result = run_clusters(training, **cluster_options)
    elif cluster_options:
        raise ValueError(f"{option_flag(next(iter(cluster_options)))} describes generated clusters; with "
                         f"--run-dir the features are the run's, so leave the cluster options out")
    else:
        result = frozen_feature_heads(args.run_dir, training, device=args.device)
    s = result.summary()
    source = (f"{s['classes']} classes of {s['clusters_per_class']} clusters in R^{s['dim']}" if s["source"] == "clusters"
              else f"frozen {s['backbone']} of the {s['method']} run {s['run_dir']} on {s['dataset']}")
    print(f"heads: {source} | {_accuracies(s)}", flush=True)
    if args.json:
        emit_json(s)
    return 0


def _sweep(args, training: HeadTraining, cluster_options: dict, given: dict) -> int:
    """--sweep SETTING VALUE ...: the clusters once per value (experiments.heads.sweep_clusters)."""
    from ..experiments.compare import setting_name
    from ..experiments.heads import SWEEP_SETTINGS, sweep_clusters
    text, *texts = args.sweep
    setting = setting_name(text)
    if setting in given:
        raise ValueError(f"--{setting} is given and swept; leave out --{setting} {given[setting]}")
    if setting not in SWEEP_SETTINGS or not texts:
        raise ValueError(f"--sweep takes a setting ({' or '.join(SWEEP_SETTINGS)}) and its values, e.g. --sweep "
                         f"entries 3 6 24 100; got {' '.join(args.sweep)!r}")
    read = positive_int if setting == "entries" else positive_float
    try:
        values = [read(text) for text in texts]
    except argparse.ArgumentTypeError as error:
        raise ValueError(f"--sweep {setting}: {error}") from None
    results = sweep_clusters(setting, values, training, **cluster_options)
    for value, result in results.items():
        print(f"heads: {setting}={value:g} | {_accuracies(result.summary())}", flush=True)
    if args.json:
        emit_json({"setting": setting, "runs": [r.summary() for r in results.values()]})     # in the values' order
    return 0


def _accuracies(s: dict) -> str:
    return (f"vanilla head {100 * s['vanilla_acc']:.1f}% | MN {100 * s['mn_acc']:.1f}% (its "
            f"classifier before finetuning {100 * s['mn_acc_before_finetune']:.1f}%) | dictionary alone "
            f"{100 * s['attended_value_acc']:.1f}% (chance {100 / s['classes']:.0f}%) | attention entropy "
            f"{s['attention_entropy']:.2f} (log S {math.log(s['entries']):.2f}) | α {s['step_size']:.3f} | "
            f"{s['steps']} steps, {s['seconds']:.1f} s")
