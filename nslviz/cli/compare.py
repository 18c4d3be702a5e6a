"""python -m nslviz compare: several image runs with the same settings, side by side, as notebooks 03,
04 and 07 train them (`nslviz.experiments.compare`), into one group folder.

    python -m nslviz compare --methods vanilla mn --dataset digits --epochs 4 --json
    python -m nslviz compare --preset mn --dataset cifar100 --backbone resnet29 --methods vanilla mn mn_ifilm
    python -m nslviz compare --preset nsl --dataset cifar10 --backbone cnn9 --variants cnn static_dns dynamic_dns
    python -m nslviz compare --quick --preset mn --mn-start vanilla --methods vanilla mn   # notebook 03's quick mode

Each run goes to <group-dir>/<method or variant> (default runs/<dataset>-<backbone>-compare-seed<k>, for
variants runs/<dataset>-<backbone>-nsl-seed<k>): a run that finished is read back, one that was cut off
resumes, a folder holding a run with other settings is refused with the settings that differ
(--overwrite replaces it). Every other option is `train`'s (python -m nslviz train --help).
"""
from __future__ import annotations

import argparse
import dataclasses

from ..experiments.compare import (ALL_NSL_VARIANTS, MN_START_SETTINGS, MN_STARTS, QUICK_INSTEAD_OF_SGD, QUICK_SETTINGS,
                                  VANILLA_START_ALPHA, compare_methods, compare_nsl_variants, quick_config)
from ..models.classifier import METHODS
from .common import emit_json, folder_path, refuse_given, validation_text
from .train import CONTROL, RUN, add_config_arguments, config_from_args, warn_unread

COMPARE_CONTROL = CONTROL | {"methods", "variants", "quick", "group_dir", "mn_start"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("compare", help="train several methods or NSL variants with the same settings "
                                              "(notebooks 03, 04, 07)",
                              description=__doc__,
                              argument_default=argparse.SUPPRESS)
    runs = p.add_mutually_exclusive_group(required=True)
    runs.add_argument("--methods", nargs="+", choices=METHODS, help="one run per method (MN Table 1, 3)")
    runs.add_argument("--variants", nargs="+", choices=ALL_NSL_VARIANTS, help="one run per row of the NSL tables")
    p.add_argument("--mn-start", choices=MN_STARTS, default="scratch",
                   help="vanilla: train vanilla first, start every MN run from its backbone and a dictionary of "
                        "training features (beyond the paper; docs/dictionary-race.md)")
    p.add_argument("--quick", action="store_true", default=False,
                   help="the notebooks' quick mode: digits, a small backbone, 4 epochs, CPU")
    run = add_config_arguments(p, nsl_variant=False)[RUN]
    run.add_argument("--group-dir", type=folder_path, default=None, help="folder of the runs (one sub-folder each)")
    run.add_argument("--overwrite", action="store_true", default=False,
                     help="replace a run trained with other settings (default: refuse, naming them)")
    run.add_argument("--no-progress", action="store_true", default=False)
    run.add_argument("--json", action="store_true", default=False, help="end the output with one JSON object")
    p.set_defaults(run=main, subparser=p)


def main(args) -> int:
    config = config_from_args(args, COMPARE_CONTROL)
    if args.quick:
        chosen = [*QUICK_SETTINGS, "image_size", *(QUICK_INSTEAD_OF_SGD if config.optimizer == "sgd" else ())]
        refuse_given(args, chosen, "--quick", "chooses {}", "digits at 16x16 on the CPU, AdamW in place of SGD")
        config = quick_config(config)
    methods = getattr(args, "methods", None) or [config.method]              # NSL variants keep config's method
    if args.mn_start == "vanilla" and any(m.startswith("mn") for m in methods):
        refuse_given(args, MN_START_SETTINGS, "--mn-start vanilla", "sets {} of the MN runs",
                     f"vanilla's backbone, a dictionary of training images, alpha {VANILLA_START_ALPHA}")
    warn_unread([dataclasses.replace(config, method=m) for m in methods], args, COMPARE_CONTROL)
    options = dict(group_dir=args.group_dir, progress=not args.no_progress, overwrite=args.overwrite)
    if getattr(args, "variants", None):
        summaries = compare_nsl_variants(config, args.variants, **options)
    else:
        summaries = compare_methods(config, args.methods, mn_start=args.mn_start, **options)
    for label, s in summaries.items():
        top5 = f" | top-5 {s['test_top5_acc']:.4f}" if "test_top5_acc" in s else ""
        print(f"compare: {label:<14} test acc {s['test_acc']:.4f} ({validation_text(s)}){top5} | {s['seconds']:.1f} s | "
              f"{s['run_dir']}", flush=True)
    if args.json:
        emit_json(summaries)
    return 0
