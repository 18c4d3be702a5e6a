"""python -m nslviz race: the race between the backbone and the induced dictionary (notebook 09;
nslviz.experiments.race, docs/dictionary-race.md).

    python -m nslviz race --datasets digits --arms joint warmup vanilla vanilla_warmup --seeds 0 1 --json
    python -m nslviz race                      # every arm on digits and synthetic, seeds 0-4 (benchmarks/mn_race.py)

Trains each (dataset, seed, arm) into --root/<dataset>/seed<k>/<arm> (a finished run is read back, a
cut one resumed, one with other settings refused unless --overwrite) and prints, for every MN arm, its test accuracy, the paired difference to its vanilla
twin and after − before finetuning (points, 95 % interval over seeds), and the attended values' accuracy.
"""
from __future__ import annotations

from ..experiments.race import ARMS, RACE_DATASETS
from .common import add_progress_argument, emit_json, nonnegative_int, positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("race", help="why the dictionary learns or not: MN arms vs vanilla twins over seeds",
                              description=__doc__)
    p.add_argument("--datasets", nargs="+", choices=RACE_DATASETS, default=list(RACE_DATASETS))
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    p.add_argument("--seeds", type=nonnegative_int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--iterations", type=positive_int, default=800,
                   help="optimiser steps of every run (rounded up to whole epochs)")
    p.add_argument("--warmup", type=positive_int, default=200, help="iterations of the warm-up arms' frozen backbone")
    p.add_argument("--root", default=None, help="run directories (default: runs/mn-race)")
    p.add_argument("--overwrite", action="store_true", default=False,
                   help="replace a run trained with other settings (default: refuse, naming them)")
    add_progress_argument(p)
    p.add_argument("--json", action="store_true", help="end the output with one JSON object")
    p.set_defaults(run=run, subparser=p)


def run(args) -> int:
    from ..analysis.paired import format_paired
    from ..experiments.race import race_report, run_race
    results = run_race(args.datasets, args.arms, args.seeds, iterations=args.iterations, warmup=args.warmup,
                       root=args.root, progress=not args.no_progress, overwrite=args.overwrite)
    report = race_report(results)
    for dataset, arms in report.items():
        for arm, entry in arms.items():
            line = f"race: {dataset} {arm:<24} test acc {entry['mean_test_acc']:.2f}%"
            if "after_minus_before" in entry:
                line += (f" | after - before finetuning {format_paired(entry['after_minus_before'])}"
                         f" | attended values {entry['attended_value_acc']:.1f}% | α {entry['final_step_size']:.3f}")
            if "minus_vanilla_twin" in entry:
                line += f" | - {entry['vanilla_twin']} {format_paired(entry['minus_vanilla_twin'])}"
            print(line, flush=True)
    if args.json:
        once = lambda values: list(dict.fromkeys(values))        # run_race runs a repeated name once
        emit_json({"datasets": once(args.datasets), "arms": once(args.arms), "seeds": once(args.seeds),
                   "iterations": args.iterations,
                   "warmup": args.warmup, "report": report})
    return 0

