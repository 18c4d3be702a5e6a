"""python -m nslviz train: one image-classification run (MN methods, NSL networks) into a run directory.

    python -m nslviz train --dataset digits --backbone convnet4 --method mn --epochs 5 --run-dir runs/d --json
    python -m nslviz train --preset nsl --dataset cifar10 --backbone cnn9 --nsl dynamic_dns
    python -m nslviz train --nsl-variant dynamic_dns_shared --dataset cifar10    # one row of NSL Tables 1-4, 8
    python -m nslviz train --nsl-variant spherenet_attention --dataset cifar10   # Table 8 (preset nsl_global)
    python -m nslviz train --preset nsl --nsl static_dns --init-backbone runs/cnn --similarity-only true
    python -m nslviz train --preset maxl --dataset cifar100 --backbone densenet40   # MN Table 1's MAXL column
    torchrun --nproc_per_node 4 -m nslviz train --preset mn --dataset cifar100 --backbone resnet56 ...
    python -m nslviz train --run-dir runs/d --resume          # continue a killed run, same settings
    python -m nslviz train ... --run-dir runs/d --overwrite   # replace the run in runs/d (else refused)

A run directory is held by one process at a time (its .lock names the holder): a second command
on it exits 2 naming the holder. A damaged checkpoint.pt or best.pt is named with what to do, and
--resume without config.json continues from the checkpoint's copy (docs/run-directories.md).

Options left out take the preset's value (--preset mn|nsl|nsl_global|maxl; its length is the official
iteration count of the dataset, 200 epochs for maxl, unless --epochs or --iterations is given), else the TrainConfig
default. --nsl-variant sets the backbone, --nsl and --nsl-options of one row of the NSL tables
(docs/nsl-paper-tables.md) and, without --preset, that table's recipe; --nsl-options given as well
are applied on top. The recipes hold out a validation split and test the best-on-validation model;
--val-size 0 trains on every training image (CIFAR: all 50,000) and tests the last model, as the
official NSL code does. With --resume the stored config.json is the starting point and only the options given change it.

Under torchrun (DDP, one process per GPU, or gloo on CPU) --batch-size is the global batch: it must
divide by --nproc_per_node, and each process takes its share; process r uses cuda:r whatever --device
names; only rank 0 writes the run directory. A run resumes with the same number of processes, and
--dictionary-warmup and --method maxl are single-process only.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..training.config import (DATA, EMBEDDED_SETS, MAXL, MN, OPTIMISATION, PRESET_FIELDS, PRESETS, RUN, WHAT,
                               TrainConfig, unread_settings)
from ..training.distributed import launched_rank
from ..experiments.compare import (ALL_NSL_VARIANTS, nsl_variant_backbone, nsl_variant_config, nsl_variant_mode,
                                  nsl_variant_preset)
from .common import (add_option_arguments, add_progress_argument, boolean, emit_json, folder_path, option_flag,
                     positive_float, validation_text)

CONTROL = {"run", "subparser", "command", "run_dir", "resume", "overwrite", "json", "preset", "no_progress",
           "nsl_variant"}


def _milestones(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions like 0.5,0.75, got {text!r}") from None
    if not values or any(not 0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions in (0, 1), got {text!r}")
    return values


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"kernel_shape\": true}}', got {text!r}")
    return value


def _clip_value(text: str) -> float | None:
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'none', got {text!r}") from None


# The TrainConfig fields whose command-line form is not their kind's
SPECIAL_ARGUMENTS = {"milestones": dict(type=_milestones), "clip_value": dict(type=_clip_value),
                     "nsl_options": dict(type=_json_object), "channels_last": dict(type=boolean)}


def add_config_arguments(p: argparse.ArgumentParser, *, nsl_variant: bool = True) -> dict:
    """--preset, (--nsl-variant,) and every TrainConfig field as --field-name, in their groups; returns
    the groups by title. Options left out stay out of the parsed namespace (argument_default SUPPRESS)."""
    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="a paper recipe: mn (AdamW), nsl (SGD, NSL Tables 1-4), nsl_global (Adam, NSL Table 8) or "
                        "maxl (SGD, MN Table 1's MAXL column)")
    groups = {title: p.add_argument_group(title) for title in (WHAT, MN, MAXL, OPTIMISATION, DATA, RUN)}
    if nsl_variant:
        groups[WHAT].add_argument("--nsl-variant", choices=ALL_NSL_VARIANTS, default=None,
                                  help="one row of NSL Tables 1-4 or 8: sets backbone, --nsl, --nsl-options "
                                       "(and the preset)")
    add_option_arguments(groups, TrainConfig, SPECIAL_ARGUMENTS, PRESET_FIELDS)   # every TrainConfig field
    return groups


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train an image classifier (MN / iFiLM / NSL) into a run directory",
                              description=__doc__,
                              argument_default=argparse.SUPPRESS)
    run = add_config_arguments(p)[RUN]
    run.add_argument("--run-dir", type=folder_path, default=None,
                     help="output folder (default: runs/<dataset>-<backbone>-<method>[-<nsl>]-seed<k>, under "
                          "$NSLVIZ_RUNS when set)")
    run.add_argument("--resume", action="store_true", default=False, help="continue the run in --run-dir")
    run.add_argument("--overwrite", action="store_true", default=False,
                     help="replace the run already in the run directory (default: refuse)")
    add_progress_argument(run)
    run.add_argument("--json", action="store_true", default=False, help="end the output with one JSON object")
    p.set_defaults(run=main, subparser=p)


def config_from_args(args, control=CONTROL) -> TrainConfig:
    overrides = {k: v for k, v in vars(args).items() if k not in control}
    if getattr(args, "resume", False):
        if args.run_dir is None:
            raise ValueError("--resume needs --run-dir, the folder of the run to continue")
        recipes = [flag for flag, value in (("--preset", getattr(args, "preset", None)),
                                            ("--nsl-variant", getattr(args, "nsl_variant", None))) if value is not None]
        if recipes:
            several = len(recipes) > 1
            raise ValueError(f"{' and '.join(recipes)} {'choose' if several else 'chooses'} a new run's recipe; "
                             f"--resume continues the recipe stored in {args.run_dir}: leave "
                             f"{'them' if several else 'it'} out")
        from ..training.trainer import stored_run_config
        return TrainConfig.from_dict({**stored_run_config(args.run_dir), **overrides})
    if getattr(args, "nsl_variant", None) is None:
        return TrainConfig.from_preset(args.preset, **overrides)
    preset = args.preset if args.preset is not None else nsl_variant_preset(args.nsl_variant)
    overrides.setdefault("backbone", nsl_variant_backbone(overrides.get("dataset", TrainConfig.dataset)))
    # the variant's nsl mode goes in before the preset checks the options (--similarity-only needs it)
    mode = nsl_variant_mode(args.nsl_variant)
    if overrides.setdefault("nsl", mode) != mode:
        raise ValueError(f"--nsl {overrides['nsl']} contradicts --nsl-variant {args.nsl_variant} "
                         f"(nsl {mode!r}); give one of them")
    return nsl_variant_config(TrainConfig.from_preset(preset, **overrides), args.nsl_variant)


def warn_unread(configs: list[TrainConfig], args, control=CONTROL) -> None:
    """A warning on stderr (rank 0 only) for each option given that none of the runs `configs` reads:
    `--entries 500 --method vanilla` would otherwise change nothing without a word."""
    if launched_rank() != 0:
        return
    given = [name for name in vars(args) if name not in control]
    for name, readers in unread_settings(configs, given).items():
        print(f"warning: {option_flag(name)} changes nothing here (read by {readers} only)",
              file=sys.stderr, flush=True)


def warn_frozen_random_backbone(configs: list[TrainConfig]) -> None:
    """A warning on stderr (rank 0 only) for a run that freezes a backbone no run trained: its head then
    learns on random features, which is rarely what --freeze-backbone without --init-backbone meant."""
    if launched_rank() == 0 and any(c.freeze_backbone and c.init_backbone is None for c in configs):
        print("warning: --freeze-backbone true without --init-backbone trains the head on the randomly "
              "initialised backbone; give --init-backbone RUN_DIR to freeze a trained one", file=sys.stderr, flush=True)


def warn_try_out(config: TrainConfig, args) -> None:
    """A warning on stderr (rank 0 only) when a paper recipe trains an embedded set for the default
    length: at the recipe's batch of 128, `--preset mn --dataset digits` is 45 steps (about 20 % test
    accuracy), which looks like a broken method rather than a short run."""
    preset = getattr(args, "preset", None)
    if (launched_rank() != 0 or preset is None or getattr(args, "resume", False) or config.dataset not in EMBEDDED_SETS
            or "epochs" in PRESET_FIELDS[preset] or {"epochs", "iterations"} & set(vars(args))):
        return
    print(f"warning: --preset {preset} on {config.dataset} trains the default {config.epochs} epochs at batch "
          f"{config.batch_size}, a few dozen steps (no paper gives a length for {config.dataset}); give --epochs "
          f"(e.g. 30) for a run that has learned", file=sys.stderr, flush=True)


def main(args) -> int:
    from ..training.trainer import train
    config = config_from_args(args)
    warn_unread([config], args)
    warn_frozen_random_backbone([config])
    warn_try_out(config, args)
    summary = train(config, args.run_dir, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if launched_rank() != 0:                                   # under torchrun only rank 0 reports
        return 0
    line = (f"train: {summary['method']} {summary['backbone']} on {summary['dataset']} | test acc "
            f"{summary['test_acc']:.4f} ({validation_text(summary)})")
    if "test_top5_acc" in summary:
        line += f" | top-5 {summary['test_top5_acc']:.4f}"
    if "test_acc_before_finetune" in summary:
        line += f" | before finetuning {summary['test_acc_before_finetune']:.4f}"
    line += f" | last epoch {summary['test_acc_last']:.4f}"
    line += f" | {summary['parameters']:,} parameters"
    if summary.get("parameters_total", summary["parameters"]) != summary["parameters"]:
        line += f" trained of {summary['parameters_total']:,}"
    print(line + f" | {summary['seconds']:.1f} s | {summary['run_dir']}", flush=True)
    if args.json:
        emit_json(summary)
    return 0
