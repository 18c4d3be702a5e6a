"""python -m nslviz train: one image-classification run (MN methods, NSL networks) into a run directory.

    python -m nslviz train --dataset digits --backbone convnet4 --method mn --epochs 5 --run-dir runs/d --json
    python -m nslviz train --preset nsl --dataset cifar10 --backbone cnn9 --nsl dynamic_dns
    python -m nslviz train --nsl-variant dynamic_dns_shared --dataset cifar10    # one row of NSL Tables 1-4, 8
    python -m nslviz train --nsl-variant spherenet_attention --dataset cifar10   # Table 8 (preset nsl_global)
    python -m nslviz train --preset nsl --nsl static_dns --init-backbone runs/cnn --similarity-only true
    torchrun --nproc_per_node 4 -m nslviz train --preset mn --dataset cifar100 --backbone resnet56 ...
    python -m nslviz train --run-dir runs/d --resume          # continue a killed run, same settings
    python -m nslviz train ... --run-dir runs/d --overwrite   # replace the run in runs/d (else refused)

A run directory is held by one process at a time (its .lock names the holder): a second command
on it exits 2 naming the holder. A damaged checkpoint.pt or best.pt is named with what to do, and
--resume without config.json continues from the checkpoint's copy (docs/run-directories.md).

Options left out take the preset's value (--preset mn|nsl|nsl_global; its length is the official
iteration count of the dataset unless --epochs or --iterations is given), else the TrainConfig
default. --nsl-variant sets the backbone, --nsl and --nsl-options of one row of the NSL tables
(docs/nsl-paper-tables.md) and, without --preset, that table's recipe; --nsl-options given as well
are applied on top. The recipes hold out a validation split and test the best-on-validation model;
--val-size 0 trains on every training image (CIFAR: all 50,000) and tests the last model, as the
official NSL code does. With --resume the stored config.json is the starting point and only the options given change it.
"""
from __future__ import annotations

import argparse
import json
import os

from ..models.classifier import CLASSIFIERS, METHODS
from ..training.config import AMP_MODES, AUGMENTATIONS, DICTIONARY_INITS, OPTIMIZERS, PRESETS, TrainConfig
from ..experiments.compare import ALL_NSL_VARIANTS, nsl_variant_config, nsl_variant_preset
from .common import emit_json, folder_path, fraction, nonnegative_int, positive_float, positive_int, seed_value

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


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_parser(subparsers) -> None:
    from ..nsl import NSL_MODES
    p = subparsers.add_parser("train", help="train an image classifier (MN / iFiLM / NSL) into a run directory",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                              argument_default=argparse.SUPPRESS)
    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="a paper recipe: mn (AdamW), nsl (SGD, NSL Tables 1-4) or nsl_global (Adam, NSL Table 8)")
    what = p.add_argument_group("what to train")
    what.add_argument("--dataset", help="digits (embedded, default), synthetic, cifar10, cifar100, ...")
    what.add_argument("--backbone", help="convnet4 (default), resnet29, resnet56, densenet40, cnn9, ...")
    what.add_argument("--method", choices=METHODS)
    what.add_argument("--nsl", choices=NSL_MODES, help="neural similarity of the 3x3 convolutions")
    what.add_argument("--nsl-variant", choices=ALL_NSL_VARIANTS, default=None,
                      help="one row of NSL Tables 1-4 or 8: sets backbone, --nsl, --nsl-options (and the preset)")
    what.add_argument("--nsl-options", type=_json_object, metavar="JSON",
                      help="options of the NSL layers, e.g. '{\"kernel_shape\": true}' or '{\"predictor\": \"cnn\"}' "
                           "(see nslviz.nsl.NSConv2d); for spherenet9: global_similarity, orthogonality_weight")
    what.add_argument("--similarity-only", type=_boolean,
                      help="train only the neural similarity (M, D_r, predictors), everything else frozen; "
                           "needs --init-backbone, a plain CNN run whose kernels and classifier it loads (NSL sec. 4)")
    what.add_argument("--classifier", choices=CLASSIFIERS)
    mn = p.add_argument_group("Meta-Neighborhoods")
    mn.add_argument("--entries", type=positive_int, help="dictionary size S")
    mn.add_argument("--temperature", type=positive_float, help="softmax temperature T")
    mn.add_argument("--inner-steps", type=positive_int)
    mn.add_argument("--step-size", choices=("scalar", "diagonal"), help="form of the inner step size alpha")
    mn.add_argument("--alpha", type=positive_float, help="initial inner step size")
    mn.add_argument("--entry-dropout", type=fraction)
    mn.add_argument("--first-order", type=_boolean)
    mn.add_argument("--values", choices=("soft", "fixed"), help="dictionary values: learnable soft (default) or fixed one-hot")
    mn.add_argument("--dictionary-init", choices=DICTIONARY_INITS,
                    help="random keys (official) or the features and labels of S training images")
    mn.add_argument("--init-backbone", type=folder_path, metavar="RUN_DIR",
                    help="start the backbone from this finished run's best weights (e.g. a vanilla run)")
    mn.add_argument("--freeze-backbone", type=_boolean, help="train the head only; the backbone stays as it starts")
    mn.add_argument("--backbone-lr-scale", type=positive_float,
                    help="diagnostic beyond the paper: the backbone's learning rate x s (default 1)")
    mn.add_argument("--dictionary-warmup", type=nonnegative_int, metavar="N",
                    help="diagnostic beyond the paper: freeze the backbone's weights for the first N iterations")
    mn.add_argument("--ifilm-placement", choices=("all", "last"))
    mn.add_argument("--ifilm-entries", type=positive_int)
    mn.add_argument("--transition-ifilm", type=_boolean, help="densenet40: false = the official transitions, whose "
                    "iFiLM output is computed and discarded (default: true, they modulate)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=positive_int)
    opt.add_argument("--iterations", type=positive_int,
                     help="train whole epochs up to this many steps instead of --epochs (the presets use the official counts)")
    opt.add_argument("--batch-size", type=positive_int)
    opt.add_argument("--optimizer", choices=OPTIMIZERS)
    opt.add_argument("--lr", type=positive_float, help="default: AdamW 1e-3, SGD 0.1")
    opt.add_argument("--weight-decay", type=float, help="default: AdamW 0.075 (decoupled), SGD 2e-4 (L2)")
    opt.add_argument("--momentum", type=fraction, help="SGD momentum in [0, 1) (default 0.9)")
    opt.add_argument("--nesterov", type=_boolean, help="SGD with Nesterov momentum (default: true, the official MN SGD baseline)")
    opt.add_argument("--milestones", type=_milestones, help="lr decay points as fractions of training, e.g. 0.75")
    opt.add_argument("--clip-value", type=_clip_value, help="clip every gradient element to [-v, v]; 'none' turns "
                     "clipping off (default: 10, the official MN value)")
    opt.add_argument("--label-smoothing", type=fraction)
    data = p.add_argument_group("data")
    data.add_argument("--label-kind", choices=("fine", "coarse", "domain"),
                      help="coarse: CIFAR-100's 20 superclasses; domain: PACS domains")
    data.add_argument("--augment", choices=AUGMENTATIONS)
    data.add_argument("--val-size", type=nonnegative_int,
                      help="validation images held out of the training set; 0: train on all of them, test the last model")
    data.add_argument("--image-size", type=positive_int)
    data.add_argument("--train-limit", type=positive_int, help="use only the first N training images")
    data.add_argument("--eval-limit", type=positive_int, help="use only the first N validation/test images")
    data.add_argument("--data-root", help="dataset folder (default: $NSLVIZ_DATA or the repository's data/)")
    data.add_argument("--download", type=_boolean, help="download the dataset when missing (needs internet)")
    run = p.add_argument_group("run")
    run.add_argument("--seed", type=seed_value)
    run.add_argument("--device", help="auto (default: CUDA when present), cpu, cuda, cuda:1")
    run.add_argument("--amp", choices=AMP_MODES)
    run.add_argument("--channels-last", type=_boolean)
    run.add_argument("--compile", type=_boolean)
    run.add_argument("--eval-batch-size", type=positive_int)
    run.add_argument("--checkpoint-every", type=positive_int, help="iterations between checkpoints")
    run.add_argument("--run-dir", type=folder_path, default=None, help="output folder (default: runs/<dataset>-<backbone>-<method>-seed<k>)")
    run.add_argument("--resume", action="store_true", default=False, help="continue the run in --run-dir")
    run.add_argument("--overwrite", action="store_true", default=False,
                     help="replace the run already in the run directory (default: refuse)")
    run.add_argument("--no-progress", action="store_true", default=False)
    run.add_argument("--json", action="store_true", default=False, help="end the output with one JSON object")
    p.set_defaults(run=main, subparser=p)


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


def config_from_args(args) -> TrainConfig:
    overrides = {k: v for k, v in vars(args).items() if k not in CONTROL}
    if args.resume:
        if args.run_dir is None:
            raise ValueError("--resume needs --run-dir, the folder of the run to continue")
        from ..training.trainer import stored_run_config
        return TrainConfig.from_dict({**stored_run_config(args.run_dir), **overrides})
    if args.nsl_variant is None:
        return TrainConfig.from_preset(args.preset, **overrides)
    preset = args.preset if args.preset is not None else nsl_variant_preset(args.nsl_variant)
    overrides.setdefault("backbone", "cnn9")
    config = nsl_variant_config(TrainConfig.from_preset(preset, **overrides), args.nsl_variant)
    if "nsl" in overrides and overrides["nsl"] != config.nsl:
        raise ValueError(f"--nsl {overrides['nsl']} contradicts --nsl-variant {args.nsl_variant} "
                         f"(nsl {config.nsl!r}); give one of them")
    return config


def main(args) -> int:
    from ..training.trainer import train
    config = config_from_args(args)
    summary = train(config, args.run_dir, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) != 0:                 # under torchrun only rank 0 reports
        return 0
    line = (f"train: {summary['method']} {summary['backbone']} on {summary['dataset']} | test acc "
            f"{summary['test_acc']:.4f} (best val {summary['val_acc']:.4f}, epoch {summary['best_epoch']})")
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
