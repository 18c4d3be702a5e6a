"""Training configuration: one dataclass for every image experiment (MN Table 1/3, NSL Table 4), and
the papers' recipes as presets.

`TrainConfig.from_preset("mn", dataset="cifar100", backbone="resnet29", method="mn_ifilm")` starts
from a recipe and overrides fields; every field can be set from the CLI and from notebook 03/04/07.

Recipes (see docs/official-code.md §A.7 and §B.6):

* "mn"  AdamW lr 1e-3, batch 128, decoupled weight decay 0.075 (the official TF-contrib AdamW
        applies 7.5e-5 per step *without* multiplying by the learning rate; PyTorch's AdamW multiplies
        by lr = 1e-3, so 7.5e-5 / 1e-3 = 0.075 gives the same decay, and both fall ×0.1 together at
        the milestone), lr ×0.1 at 75 % of training (paper: epoch 300 of 400), gradients clipped by
        value to [-10, 10], augmentation crop + flip + AutoAugment + Cutout, images in [0, 1],
        dictionary/classifier/α/τ excluded from weight decay, best-on-validation checkpoint tested.
  Length: the official schedules, in iterations (`PAPER_SCHEDULES`): CIFAR 160k with the decay at
        120k, CINIC-10 260k / 160k, Tiny-ImageNet 260k / 180k, MNIST-M and PACS 60k / 40k (MNIST and
        SVHN, which the official scripts do not list, take the MNIST-M schedule). With
        `optimizer="sgd"` the vanilla baseline of MN Table 3 follows the official SGD recipe:
        Nesterov momentum 0.9, L2 2e-4, lr ×0.1 at 50/67/83 % (CIFAR: 60k/80k/100k of 120k); the
        official base lr is whatever `--meta_lr` was, which the paper does not give: 0.1 here.
* "nsl" SGD lr 0.1, momentum 0.9, L2 5e-4 on every parameter (BN γ/β included), label smoothing
        0.01, lr ÷10 at 20k/30k/37.5k of 42.5k iterations (CIFAR), symmetric
        pad-4 crop + flip (augment policy "nsl"). Deviation: images in [0, 1] instead of raw 0–255 (BatchNorm after the first conv makes
        the two nearly equivalent; 0–255 would need a different initial scale). Like every recipe here
        it holds out a validation split (CIFAR: the last 5,000 training images) and tests the
        best-on-validation model; the official code trains on all 50,000 and tests the last one:
        `val_size=0` (CLI --val-size 0) does that.
* "nsl_global" NSL Table 8 (the official global-similarity code): Adam lr 1e-3 with L2 5e-4 added to the
        gradients of BatchNorm, classifier and attention (the SphereNet-9 backbone kernels get the
        orthogonality penalty instead, see nslviz.models.spherenet), lr ÷10 at 34k and 54k of 64k
        iterations (CIFAR), batch 128, label smoothing 0.01, horizontal flips only ("mild
        augmentation"); the backbone scales its input as (x − 127.5)/128.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .._checks import check_choice, check_flags, check_fraction, check_positive, check_seed, is_number
from ..datasets.augment import AUGMENT_POLICIES as AUGMENTATIONS
from ..models.classifier import CLASSIFIERS, METHODS
from ..models.registry import available_backbones
from ..datasets.images import available_image_datasets
from .distributed import check_device_name

OPTIMIZERS = ("adamw", "adam", "sgd")
AMP_MODES = ("auto", "bf16", "off")
PRESETS = ("mn", "nsl", "nsl_global")
DICTIONARY_INITS = ("random", "data")


@dataclass
class TrainConfig:
    # what
    dataset: str = "digits"
    backbone: str = "convnet4"
    method: str = "mn"                       # see nslviz.models.classifier.METHODS
    nsl: str = "none"                        # NSL mode of the 3x3 convolutions (nslviz.nsl.NSL_MODES)
    classifier: str = "cosine"               # "cosine" (paper) or "dot"
    # Meta-Neighborhoods
    entries: int | None = None               # S; None: the paper's size for the dataset (DEFAULT_ENTRIES)
    temperature: float = 0.2                 # T (fixed), MN eq. (5)
    inner_steps: int = 1
    step_size: str = "scalar"                # α: "scalar" or "diagonal"
    alpha: float = 0.05                      # initial |α| (official init)
    entry_dropout: float = 0.5               # per-example dictionary dropout while training
    values: str = "soft"                     # "soft" learnable class distributions, "fixed" one-hot (--fix_v)
    dictionary_init: str = "random"          # "random" keys N(0, 0.05²) (official) or "data": S training images' features and labels
    first_order: bool = False
    init_backbone: str | None = None         # a finished run's directory: start from its best backbone weights
    freeze_backbone: bool = False            # train the head only; the backbone (BatchNorm included) stays in eval mode
    # diagnostics beyond the paper (docs/dictionary-race.md); the defaults are the paper's joint training
    backbone_lr_scale: float = 1.0           # the backbone's learning rate x s (its decoupled weight decay follows)
    dictionary_warmup: int = 0               # iterations with the backbone's weights frozen before joint training
    ifilm_placement: str = "all"             # for methods *_ifilm: "all" or "last"
    ifilm_entries: int = 10                  # S_l
    transition_ifilm: bool = True            # densenet40: False = the official transitions (iFiLM computed, discarded)
    # optimisation
    epochs: int = 5
    iterations: int | None = None            # set: train ceil(iterations / batches per epoch) epochs instead
    batch_size: int | None = None            # None: 128 (paper); 32 on digits (DEFAULT_BATCH_SIZE)
    optimizer: str = "adamw"
    # None below: the optimizer's official value (OPTIMIZER_DEFAULTS), filled in at construction
    lr: float | None = None                  # AdamW 1e-3, SGD 0.1
    weight_decay: float | None = None        # AdamW 0.075 (PyTorch semantics, see module docstring), SGD L2 2e-4
    momentum: float = 0.9
    nesterov: bool | None = None             # SGD: True (official MN baseline), the NSL recipe False; AdamW ignores it
    milestones: tuple[float, ...] | None = None  # lr x lr_decay at these fractions; AdamW (0.75,), SGD (.5, .67, .83)
    lr_decay: float = 0.1
    clip_value: float | None = 10.0          # clip every gradient element to [-v, v]
    label_smoothing: float = 0.0
    decay_everything: bool = False           # True: weight decay on the head too (NSL recipe)
    # data
    label_kind: str = "fine"                 # "coarse": CIFAR-100's 20 superclasses (sub-category discovery)
    augment: str | None = None               # None: the dataset's paper recipe ("paper" for MN sets)
    val_size: int | None = None              # None: the dataset's paper split
    image_size: int | None = None
    train_limit: int | None = None           # use only the first N training images (quick runs)
    eval_limit: int | None = None            # ... and N validation / test images
    data_root: str | None = None             # None: $NSLVIZ_DATA or the repository's data/
    download: bool = False
    # machinery
    seed: int = 0
    device: str = "auto"                     # "auto" = CUDA when present
    amp: str = "auto"                        # "auto" = bf16 autocast on CUDA, off on CPU
    channels_last: str | bool = "auto"       # "auto" = on CUDA
    compile: bool = False
    eval_batch_size: int = 500
    checkpoint_every: int = 200              # iterations between resumable checkpoints (and every epoch end)
    nsl_options: dict = field(default_factory=dict)   # keyword options of the NSL layers / backbone (NSL Tables 1-3, 8)
    similarity_only: bool = False            # NSL sec. 4: train only M (static M, D_r, predictors); start from init_backbone

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        check_choice("image dataset", self.dataset, available_image_datasets())
        check_choice("backbone", self.backbone, available_backbones())
        check_device_name(self.device)
        check_seed(self.seed)
        check_choice("classifier", self.classifier, CLASSIFIERS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name, value in OPTIMIZER_DEFAULTS[self.optimizer].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        check_flags(transition_ifilm=self.transition_ifilm, freeze_backbone=self.freeze_backbone,
                    nesterov=self.nesterov, similarity_only=self.similarity_only)
        if not isinstance(self.nsl_options, dict):
            raise ValueError(f"nsl_options must be a dict of NSL layer options, got {self.nsl_options!r}")
        if self.similarity_only and self.nsl == "none":
            raise ValueError("similarity_only trains only the neural similarity; it needs nsl='static_dns', "
                             "'static_uns', 'dynamic_dns' or 'dynamic_uns', got nsl='none'")
        if self.similarity_only and self.init_backbone is None:
            raise ValueError("similarity_only freezes everything but M, so it needs the trained network to start "
                             "from: init_backbone (CLI --init-backbone) = a finished plain CNN run")
        if not self.transition_ifilm and not self.backbone.startswith("densenet"):
            raise ValueError(f"transition_ifilm false is the official DenseNet's transitions; backbone "
                             f"{self.backbone!r} has none")
        if self.init_backbone is not None and not isinstance(self.init_backbone, str):
            raise ValueError(f"init_backbone must be a run directory (a path string), got {self.init_backbone!r}")
        if not (is_number(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0; got momentum 0 with nesterov on: "
                             "set nesterov=False (CLI --nesterov false) for plain SGD")
        if self.augment is not None:
            check_choice("augment", self.augment, AUGMENTATIONS)
        check_choice("amp", self.amp, AMP_MODES)
        check_choice("step_size", self.step_size, ("scalar", "diagonal"))
        check_choice("values", self.values, ("soft", "fixed"))
        check_choice("dictionary_init", self.dictionary_init, DICTIONARY_INITS)
        check_choice("ifilm_placement", self.ifilm_placement, ("all", "last"))
        for name in ("inner_steps", "epochs", "eval_batch_size",
                     "checkpoint_every", "ifilm_entries"):
            check_positive(name, getattr(self, name), integer=True, minimum=1)
        if self.entries is not None:
            check_positive("entries S", self.entries, integer=True, minimum=1)
        check_positive("temperature T", self.temperature)
        check_positive("alpha", self.alpha)
        check_positive("backbone_lr_scale", self.backbone_lr_scale)
        check_positive("dictionary_warmup", self.dictionary_warmup, integer=True, minimum=0)
        if self.dictionary_warmup and self.freeze_backbone:
            raise ValueError(f"dictionary_warmup {self.dictionary_warmup} freezes the backbone for a while, and "
                             "freeze_backbone freezes it for the whole run: give one of them")
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, minimum=0)
        check_positive("lr_decay", self.lr_decay)
        check_fraction("entry_dropout", self.entry_dropout)
        check_fraction("label_smoothing", self.label_smoothing)
        self.milestones = tuple(float(m) for m in self.milestones)
        if any(not 0 < m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be fractions of training in (0, 1), got {self.milestones}")
        if self.clip_value is not None:
            check_positive("clip_value", self.clip_value)
        for name in ("iterations", "batch_size", "train_limit", "eval_limit", "image_size"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name), integer=True, minimum=1)
        if self.val_size is not None:       # 0: no validation split, the last model is tested
            check_positive("val_size", self.val_size, integer=True, minimum=0)

    @classmethod
    def from_preset(cls, preset: str | None, **overrides) -> "TrainConfig":
        """A paper recipe with `overrides` on top; preset None gives the dataclass defaults. Unless
        `epochs` or `iterations` is given, the training length and lr milestones are the official
        schedule of the dataset (`PAPER_SCHEDULES`), where there is one."""
        # None for the length or the milestones means "not given" (a notebook's `epochs = None`): the
        # official schedule, which must then exist
        asked_official = "epochs" in overrides and overrides["epochs"] is None and overrides.get("iterations") is None
        overrides = {k: v for k, v in overrides.items()
                     if not (k in ("epochs", "iterations", "milestones") and v is None)}
        if preset is not None:
            check_choice("preset", preset, PRESETS)
            fields = {**PRESET_FIELDS[preset], **overrides}
            schedule = PAPER_SCHEDULES.get((preset, fields.get("optimizer", cls.optimizer)), {})
            official = schedule.get(fields.get("dataset", cls.dataset))
            if asked_official and not official:
                raise ValueError(f"epochs None asks for the official schedule, and {fields.get('dataset', cls.dataset)} "
                                 f"has none with the {preset} preset and {fields.get('optimizer', cls.optimizer)}; "
                                 f"give the number of epochs")
            if official and "epochs" not in overrides and "iterations" not in overrides:
                fields = {"iterations": official[0], "milestones": official[1], **fields}
            overrides = fields
        return cls(**overrides)

    def resolved(self, dataset_augment: str) -> "TrainConfig":
        """The config with the dataset-dependent defaults filled in (what a run directory stores)."""
        return dataclasses.replace(
            self, entries=self.entries or DEFAULT_ENTRIES.get(self.dataset, 5000),
            batch_size=self.batch_size or DEFAULT_BATCH_SIZE.get(self.dataset, 128),
            augment=self.augment or dataset_augment)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Inverse of to_dict (after a JSON round trip); unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; expected some of {sorted(known)}")
        return cls(**values)

    def epochs_for(self, batches_per_epoch: int) -> int:
        """Epochs to train: `epochs`, or with `iterations` set, enough epochs to reach that many steps
        (the last one is finished, so at most one epoch's worth past the official count)."""
        if self.iterations is None:
            return self.epochs
        return max(1, math.ceil(self.iterations / batches_per_epoch))

    def length_text(self) -> str:
        """How long it trains and when the lr decays, for a notebook's or a log's first line."""
        length = f"{self.iterations:,} iterations" if self.iterations is not None else f"{self.epochs} epochs"
        decays = ", ".join(f"{m:.0%}" for m in self.milestones)
        return f"{length}, lr x{self.lr_decay:g} at {decays}" if decays else length

    def total_iterations(self, batches_per_epoch: int) -> int:
        return self.epochs_for(batches_per_epoch) * batches_per_epoch

    def milestone_iterations(self, batches_per_epoch: int) -> list[int]:
        total = self.total_iterations(batches_per_epoch)
        # a list, not a set: milestones that fall on the same iteration decay the lr once each
        return sorted(max(1, math.floor(m * total)) for m in self.milestones)


# S of MN Appendix A.2 (CIFAR-10/CINIC-10: 5000, CIFAR-100/Tiny-ImageNet: 10000; the paper does not
# give S for the 4-layer-ConvNet sets, 5000 is used); small for the embedded sets.
DEFAULT_ENTRIES = {"cifar10": 5000, "cinic10": 5000, "cifar100": 10000, "tiny-imagenet": 10000,
                   "imagenet64": 10000, "digits": 200, "synthetic": 200}

# The papers' batch of 128, except on the small embedded digits set: its 1,258 training images give
# 9 steps an epoch at 128, and `--epochs 5` stopped at about 55 % test accuracy; 32 gives 39 steps
# an epoch and about 98 %. The presets keep 128.
DEFAULT_BATCH_SIZE = {"digits": 32}

# lr, weight decay, Nesterov and milestones of each optimizer when not given (official MN code, A.7:
# TF-contrib AdamW 1e-3 / 7.5e-5 per step; the vanilla SGD baseline, Nesterov momentum 0.9, L2 2e-4,
# three ×0.1 decays at 60k/80k/100k of 120k iterations; its base lr is not given, 0.1 is used)
OPTIMIZER_DEFAULTS = {
    "adamw": dict(lr=1e-3, weight_decay=0.075, nesterov=False, milestones=(0.75,)),
    "sgd": dict(lr=0.1, weight_decay=2e-4, nesterov=True, milestones=(0.5, 2 / 3, 5 / 6)),
    "adam": dict(lr=1e-3, weight_decay=5e-4, nesterov=False, milestones=(34 / 64, 54 / 64)),
}

PRESET_FIELDS: dict[str, dict] = {
    "mn": dict(batch_size=128, clip_value=10.0, augment="paper", classifier="cosine", label_smoothing=0.0,
               decay_everything=False),
    "nsl": dict(method="vanilla", classifier="dot", optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False,
                weight_decay=5e-4, batch_size=128, milestones=(20 / 42.5, 30 / 42.5, 37.5 / 42.5), clip_value=None,
                label_smoothing=0.01, augment="nsl", decay_everything=True),
    "nsl_global": dict(method="vanilla", classifier="dot", optimizer="adam", lr=1e-3, weight_decay=5e-4,
                       batch_size=128, milestones=(34 / 64, 54 / 64), clip_value=None, label_smoothing=0.01,
                       augment="flip", decay_everything=True),
}

# The official training lengths, in iterations at batch 128, and the lr milestones as fractions of
# them, per (preset, optimizer) and dataset (docs/official-code.md §A.7 and §B.6). The presets use them
# unless epochs or iterations are given; datasets without an entry (imagenet64, digits, synthetic)
# keep `epochs`.
_CIFAR_MN = (160_000, (0.75,))
_CONVNET_MN = (60_000, (40 / 60,))
_CIFAR_NSL = (42_500, (20 / 42.5, 30 / 42.5, 37.5 / 42.5))
_CIFAR_NSL_GLOBAL = (64_000, (34 / 64, 54 / 64))
PAPER_SCHEDULES: dict[tuple[str, str], dict[str, tuple[int, tuple[float, ...]]]] = {
    ("mn", "adamw"): {"cifar10": _CIFAR_MN, "cifar100": _CIFAR_MN, "cinic10": (260_000, (160 / 260,)),
                      "tiny-imagenet": (260_000, (180 / 260,)), "mnist-m": _CONVNET_MN, "pacs": _CONVNET_MN,
                      "mnist": _CONVNET_MN, "svhn": _CONVNET_MN},
    ("mn", "sgd"): {"cifar10": (120_000, (0.5, 2 / 3, 5 / 6)), "cifar100": (120_000, (0.5, 2 / 3, 5 / 6))},
    ("nsl", "sgd"): {"cifar10": _CIFAR_NSL, "cifar100": _CIFAR_NSL},
    ("nsl_global", "adam"): {"cifar10": _CIFAR_NSL_GLOBAL, "cifar100": _CIFAR_NSL_GLOBAL},
}
