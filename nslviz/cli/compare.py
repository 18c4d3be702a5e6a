"""python -m nslviz compare: several image runs with the same settings, side by side, as notebooks 03,
04 and 07 train them (`nslviz.experiments.compare`), into one group folder.

    python -m nslviz compare --methods vanilla mn --dataset digits --epochs 4 --json
    python -m nslviz compare --preset mn --dataset cifar100 --backbone resnet29 --methods vanilla mn mn_ifilm
    python -m nslviz compare --preset nsl --dataset cifar10 --backbone cnn9 --variants cnn static_dns dynamic_dns
    python -m nslviz compare --quick --preset mn --mn-start vanilla --methods vanilla vanilla_ifilm mn mn_ifilm  # notebook 03
    python -m nslviz compare --preset mn --dataset cifar100 --backbone resnet29 --methods mn --sweep entries 1000 10000

Each run goes to <group-dir>/<method or variant> (default runs/<dataset>-<backbone>-compare-seed<k>, for
variants runs/<dataset>-<backbone>-nsl-seed<k>): a run that finished is read back, one that was cut off
resumes, a folder holding a run with other settings is refused with the settings that differ
(--overwrite replaces it). `--sweep SETTING VALUE ...` trains every method or variant once per value of
one of train's settings, into <group-dir>/<method>-<setting>=<value>. Every other option is `train`'s
(python -m nslviz train --help); as with `train --nsl-variant`, --variants without --preset trains its
table's recipe (nsl; nsl_global for Table 8's rows) on CNN-9 (CNN-10 on imagenet and imagenet64, NSL
Table 5) unless --backbone says otherwise.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys

from ..experiments.compare import (ALL_NSL_VARIANTS, MN_START_SETTINGS, MN_STARTS, QUICK_DATASETS, QUICK_EPOCHS,
                                  QUICK_INSTEAD_OF_SGD, QUICK_SETTINGS, VANILLA_START_ALPHA, compare_methods,
                                  compare_nsl_variants, nsl_variant_backbone, nsl_variant_config, nsl_variant_mode,
                                  nsl_variant_preset, quick_config, setting_name, sweep_suffix)
from .._options import declared_options
from ..models.classifier import METHODS
from ..training.config import TrainConfig
from ..training.distributed import launched_rank
from .common import add_progress_argument, emit_json, folder_path, option_flag, refuse_given, validation_text
from .train import (CONTROL, RUN, add_config_arguments, config_from_args, warn_frozen_random_backbone,
                    warn_try_out, warn_unread)

QUICK_WHY = "16x16 images on the CPU, AdamW in place of SGD"
COMPARE_CONTROL = CONTROL | {"methods", "variants", "quick", "group_dir", "mn_start", "sweep"}


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
    p.add_argument("--sweep", nargs="+", metavar=("SETTING", "VALUE"), default=None,
                   help="train every method or variant once per value of one setting, e.g. --sweep entries 1000 "
                        "5000 10000 (MN Fig. 8: S) or --sweep temperature 0.1 0.2 0.5 (T); any train option")
    p.add_argument("--quick", action="store_true", default=False,
                   help="the notebooks' quick mode: digits (or --dataset synthetic, generated gratings), a small "
                        "backbone, 4 epochs, CPU")
    run = add_config_arguments(p, nsl_variant=False)[RUN]
    run.add_argument("--group-dir", type=folder_path, default=None, help="folder of the runs (one sub-folder each)")
    run.add_argument("--overwrite", action="store_true", default=False,
                     help="replace a run trained with other settings (default: refuse, naming them)")
    add_progress_argument(run)
    run.add_argument("--json", action="store_true", default=False, help="end the output with one JSON object")
    p.set_defaults(run=main, subparser=p)


# What a sweep may not vary: what tells the runs of --methods or --variants apart
SWEEP_REFUSED = {"method": "--methods", "backbone": "--variants", "nsl": "--variants", "nsl_options": "--variants"}


def swept_setting(args) -> str | None:
    """The config field `--sweep SETTING ...` names ("--dictionary-init" -> "dictionary_init"), or None."""
    return setting_name(args.sweep[0]) if args.sweep else None


def sweep_values(args) -> tuple[str, list]:
    """(setting, values) from `--sweep SETTING VALUE ...`, each value read as `train` reads that option."""
    if len(args.sweep) < 2:
        raise ValueError(f"--sweep takes a setting and its values, e.g. --sweep entries 1000 5000; got "
                         f"{' '.join(args.sweep)!r}")
    text, *texts = args.sweep
    name = swept_setting(args)
    settings = declared_options(TrainConfig)
    if name not in settings:
        near = difflib.get_close_matches(name, settings, n=3)
        raise ValueError(f"--sweep {text}: not a setting of train; expected one of its options"
                         + (f" (did you mean {', '.join(near)}?)" if near else "")
                         + " (python -m nslviz train --help lists them)")
    refused = SWEEP_REFUSED.get(name)
    if refused == "--methods" or (refused and getattr(args, "variants", None)):
        raise ValueError(f"--sweep {text}: {option_flag(name)} is what tells the runs of {refused} apart; "
                         f"sweep another setting")
    if name in vars(args):
        raise ValueError(f"{option_flag(name)} is given and swept; leave out {option_flag(name)} {getattr(args, name)}")
    reader = argparse.ArgumentParser(prog=f"--sweep {text}", argument_default=argparse.SUPPRESS, exit_on_error=False)
    add_config_arguments(reader, nsl_variant=False)
    values = []
    for value in texts:
        try:
            values.append(vars(reader.parse_args([option_flag(name), value]))[name])
        except argparse.ArgumentError as error:
            raise ValueError(f"--sweep {text}: {error}") from None
    suffixes = [sweep_suffix(name, value) for value in values]
    if len(set(suffixes)) != len(suffixes):
        raise ValueError(f"--sweep {text}: the values {texts} name the same runs ({', '.join(suffixes)}); "
                         f"give distinct values")
    return name, values


def run_configs(args) -> dict[str, TrainConfig]:
    """{label suffix: config}: the command's one config (suffix ""), or one per --sweep value (suffix
    "-<setting>=<value>"), each built from the options exactly as `train` builds them (the preset, its
    official length, the optimizer's defaults) with the swept value among them, then quick mode."""
    if getattr(args, "methods", None):
        refuse_given(args, ["method"], "--methods", "sets {} of each run", "one run per method")
    sweep = sweep_values(args) if args.sweep is not None else None
    given = [("", args)] if sweep is None else [
        (sweep_suffix(sweep[0], value), argparse.Namespace(**vars(args), **{sweep[0]: value})) for value in sweep[1]]
    configs = {}
    for suffix, options in given:
        config = config_from_args(argparse.Namespace(**{**vars(options), **variants_recipe(options)}), COMPARE_CONTROL)
        if args.quick:
            dataset = getattr(options, "dataset", "digits")                   # given or swept: an embedded set
            if dataset not in QUICK_DATASETS:
                given = f"--sweep dataset: {dataset}" if sweep and sweep[0] == "dataset" else f"--dataset {dataset}"
                raise ValueError(f"--quick trains on {' or '.join(QUICK_DATASETS)} only, not {given}; leave out "
                                 f"--quick to train on {dataset}")
            chosen = [*QUICK_SETTINGS, "image_size",
                      *(QUICK_INSTEAD_OF_SGD if config.optimizer == "sgd" else ())]
            if sweep and sweep[0] in chosen:
                raise ValueError(f"--quick chooses {option_flag(sweep[0])} itself ({QUICK_WHY}); sweep another "
                                 f"setting, or leave out --quick")
            refuse_given(args, chosen, "--quick", "chooses {}", QUICK_WHY)
            if getattr(options, "epochs", 0) > QUICK_EPOCHS:               # given or swept
                given = "--sweep epochs: " if sweep and sweep[0] == "epochs" else "--epochs "
                raise ValueError(f"--quick trains at most {QUICK_EPOCHS} epochs, got {given}{options.epochs}; give "
                                 f"{QUICK_EPOCHS} epochs or fewer, or leave out --quick")
            config = quick_config(config, dataset=dataset)
            if "backbone" in vars(options) and config.backbone != options.backbone and launched_rank() == 0:
                print(f"warning: --quick trains {config.backbone} in place of --backbone {options.backbone} (a small "
                      f"backbone on {config.image_size}x{config.image_size} images)", file=sys.stderr, flush=True)
        configs[suffix] = config
    methods = getattr(args, "methods", None) or []
    if args.mn_start == "vanilla" and any(m.startswith("mn") for m in methods):
        refuse_given(args, MN_START_SETTINGS, "--mn-start vanilla", "sets {} of the MN runs",
                     f"vanilla's backbone, a dictionary of training images, alpha {VANILLA_START_ALPHA}")
        if sweep and sweep[0] in MN_START_SETTINGS:
            raise ValueError(f"--mn-start vanilla sets {option_flag(sweep[0])} of the MN runs itself; sweep another "
                             f"setting, or leave out --mn-start vanilla")
    return configs


def variants_recipe(args) -> dict:
    """What --variants sets as `train --nsl-variant` does, where the options leave it out: the preset of
    the variants' table (nsl; nsl_global for Table 8), CNN-9 (CNN-10 on ImageNet) and, for --similarity-only, an
    NSL mode of the rows (each row then sets its own). {} for --methods."""
    variants = getattr(args, "variants", None)
    if not variants:
        return {}
    recipe = {} if "backbone" in vars(args) else {"backbone": nsl_variant_backbone(getattr(args, "dataset",
                                                                                         TrainConfig.dataset))}
    if getattr(args, "similarity_only", False) and "nsl" not in vars(args):   # checked before each row sets its own
        recipe["nsl"] = next((mode for mode in map(nsl_variant_mode, variants) if mode != "none"), "none")
    if args.preset is None:
        presets = {variant: nsl_variant_preset(variant) for variant in variants}
        if len(set(presets.values())) > 1:
            raise ValueError(f"--variants {' '.join(variants)} mixes rows trained with different recipes "
                             f"({', '.join(f'{v}: preset {p}' for v, p in presets.items())}); give --preset, or "
                             f"compare them separately")
        recipe["preset"] = next(iter(presets.values()))
    return recipe


def main(args) -> int:
    configs = run_configs(args)
    first = next(iter(configs.values()))
    setting = swept_setting(args)
    given = argparse.Namespace(**vars(args), **({setting: None} if setting else {}))   # the swept one counts as given
    runs = ([nsl_variant_config(c, v) for c in configs.values() for v in args.variants]
            if getattr(args, "variants", None) else
            [dataclasses.replace(c, method=m) for c in configs.values() for m in args.methods])
    warn_unread(runs, given, COMPARE_CONTROL)
    started = args.mn_start == "vanilla"                   # the MN runs then start from the vanilla run's backbone
    warn_frozen_random_backbone([run for run in runs if not (started and run.method.startswith("mn"))])
    if not args.quick:
        warn_try_out(first, args)
    options = dict(group_dir=args.group_dir, progress=not args.no_progress, overwrite=args.overwrite)
    summaries = {}
    for suffix, config in configs.items():
        if getattr(args, "variants", None):
            summaries.update(compare_nsl_variants(config, args.variants, label_suffix=suffix, **options))
        else:
            summaries.update(compare_methods(config, args.methods, mn_start=args.mn_start, label_suffix=suffix,
                                             **options))
    for label, s in summaries.items():
        top5 = f" | top-5 {s['test_top5_acc']:.4f}" if "test_top5_acc" in s else ""
        print(f"compare: {label:<14} test acc {s['test_acc']:.4f} ({validation_text(s)}){top5} | {s['seconds']:.1f} s | "
              f"{s['run_dir']}", flush=True)
    if setting:                                      # one line per method or variant: the sweep's curve
        for run in dict.fromkeys(getattr(args, "variants", None) or args.methods):
            curve = " | ".join(f"{suffix.split('=', 1)[1]} {summaries[run + suffix]['test_acc']:.4f}"
                               for suffix in configs)
            print(f"compare: {run} test acc by {setting}: {curve}", flush=True)
    if args.json:
        emit_json(summaries)
    return 0
