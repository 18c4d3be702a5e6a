"""Training configuration: one dataclass for every image experiment (MN Table 1/3, NSL Table 4), and
the papers' recipes as presets.

`TrainConfig.from_preset("mn", dataset="cifar100", backbone="resnet29", method="mn_ifilm")` starts
from a recipe and overrides fields; every field can be set from the CLI and from notebook 03/04/07.

Recipes (see docs/official-code.md §A.7 and §B.6):

* "mn"  AdamW lr 1e-3, batch 128, decoupled weight decay 0.075 (the official TF-contrib AdamW
        applies 7.5e-5 per step *without* multiplying by the learning rate; PyTorch's AdamW multiplies
        by lr = 1e-3, so 7.5e-5 / 1e-3 = 0.075 gives the same decay, and both fall ×0.1 together at
        the milestone), lr ×0.1 at the official milestone of each dataset (below; when a length is
        given instead, at the paper's fraction of it, MN appendix A.2: CIFAR epoch 300 of 400, CINIC-10
        and Tiny-ImageNet 250 of 350, `PAPER_EPOCH_MILESTONES`; elsewhere 75 %), gradients clipped by
        value to [-10, 10], augmentation crop + flip + AutoAugment + Cutout, images in [0, 1],
        dictionary/classifier/α/τ excluded from weight decay, best-on-validation checkpoint tested.
  Length: the official schedules, in iterations (`PAPER_SCHEDULES`): CIFAR 160k with the decay at
        120k, CINIC-10 260k / 160k, Tiny-ImageNet 260k / 180k, MNIST-M and PACS 60k / 40k (MNIST and
        SVHN, which the official scripts do not list, take the MNIST-M schedule). With
        `optimizer="sgd"` the vanilla baseline of MN Table 3 follows the official SGD recipe:
        Nesterov momentum 0.9, L2 2e-4, lr ×0.1 at 50/67/83 % (CIFAR: 60k/80k/100k of 120k); the
        official base lr is whatever `--meta_lr` was, which the paper does not give: 0.1 here.
* "nsl" SGD lr 0.1, momentum 0.9, L2 5e-4 on every parameter but the static M (BN γ/β included; static
        UNS M has its own L2 of 5e-3, DNS none, as officially), label smoothing
        0.01, lr ÷10 at 20k/30k/37.5k of 42.5k iterations (CIFAR), symmetric
        pad-4 crop + flip (augment policy "nsl"). Deviation: images in [0, 1] instead of raw 0–255 (BatchNorm after the first conv makes
        the two nearly equivalent; 0–255 would need a different initial scale). Like every recipe here
        it holds out a validation split (CIFAR: the last 5,000 training images) and tests the
        best-on-validation model; the official code trains on all 50,000 and tests the last one:
        `val_size=0` (CLI --val-size 0) does that.
* "maxl" MN Table 1's MAXL baseline as MN appendix A.2 ran it (docs/maxl.md): method maxl, SGD lr 0.1,
        momentum 0.9, L2 5e-4, lr halved at 50, 100 and 150 of 200 epochs; data, batch, clipping and the
        cosine classifier as the "mn" preset's.
* "nsl_global" NSL Table 8 (the official global-similarity code): Adam lr 1e-3 with L2 5e-4 added to the
        gradients of BatchNorm, classifier and attention (the SphereNet-9 backbone kernels get the
        orthogonality penalty instead, see nslviz.models.spherenet), lr ÷10 at 34k and 54k of 64k
        iterations (CIFAR), batch 128, label smoothing 0.01, horizontal flips only ("mild
        augmentation"); the backbone scales its input as (x − 127.5)/128.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .._checks import check_choice, is_number
from .._options import check_option, check_options, declared_options, option
from ..datasets.augment import AUGMENT_POLICIES as AUGMENTATIONS
from ..datasets.images import LABEL_KINDS, available_image_datasets
from ..maxl import ENTROPY_WEIGHT, GENERATOR_LR, HIERARCHY
from ..models.classifier import CLASSIFIERS, METHOD_IFILM_PLACEMENTS, METHODS, ImageClassifier, build_image_model
from ..models.registry import available_backbones
from ..neighborhoods import CLASS_VALUE_KINDS, STEP_SIZES
from ..nsl import NSL_MODES
from .distributed import check_device_name

OPTIMIZERS = ("adamw", "adam", "sgd")
AMP_MODES = ("auto", "bf16", "off")
PRESETS = ("mn", "nsl", "nsl_global", "maxl")
DICTIONARY_INITS = ("random", "data")
CHANNELS_LAST = ("auto", True, False)

# The command line's argument groups (python -m nslviz train --help)
WHAT, MN, MAXL, OPTIMISATION, DATA, RUN = ("what to train", "Meta-Neighborhoods", "MAXL (method maxl)", "optimisation",
                                          "data", "run")


@dataclass
class TrainConfig:
    """Every setting of one image run. Each field declares what it accepts (`nslviz._options.option`:
    its kind, choices, command-line help and group): `__post_init__` checks the declarations, and
    `python -m nslviz train` offers every field as `--field-name`."""
    # what
    dataset: str = option("digits", "choice", available_image_datasets, label="image dataset", group=WHAT,
                          help="digits (embedded, default), synthetic, cifar10, cifar100, ...")
    backbone: str = option("convnet4", "choice", available_backbones, group=WHAT,
                           help="convnet4 (default), resnet29, resnet56, densenet40, cnn9, ...")
    method: str = option("mn", "choice", METHODS, group=WHAT)
    nsl: str = option("none", "choice", NSL_MODES, label="nsl mode", group=WHAT,
                      help="neural similarity of the 3x3 convolutions")
    classifier: str = option("cosine", "choice", CLASSIFIERS, group=WHAT)        # "cosine" (paper) or "dot"
    # Meta-Neighborhoods; entries None: the paper's S for the dataset (DEFAULT_ENTRIES)
    entries: int | None = option(None, "positive_int", label="entries S", optional=True, group=MN,
                                 help="dictionary size S (default: 5000; 10000 on CIFAR-100, Tiny-ImageNet "
                                      "and ImageNet 64x64; 200 on digits and synthetic)")
    temperature: float = option(0.2, "positive", label="temperature T", group=MN,    # fixed, MN eq. (5)
                                help="softmax temperature T")
    learn_temperature: bool = option(False, "flag", group=MN,
                                     help="learn T, starting at --temperature (MN appendix A.4: it falls, the "
                                          "attention narrows to a few entries and the model overfits; the paper "
                                          "keeps T fixed)")
    inner_steps: int = option(1, "positive_int", group=MN)
    step_size: str = option("scalar", "choice", STEP_SIZES, group=MN, help="form of the inner step size alpha")
    alpha: float = option(0.05, "positive", group=MN, help="initial inner step size")     # official init
    entry_dropout: float = option(0.5, "fraction", group=MN)        # per-example dictionary dropout in training
    values: str = option("soft", "choice", CLASS_VALUE_KINDS, group=MN,      # "fixed": the official --fix_v
                         help="dictionary values: learnable soft (default) or fixed one-hot")
    dictionary_init: str = option("random", "choice", DICTIONARY_INITS, group=MN,   # random: keys N(0, 0.05²)
                                  help="random keys (official) or the features and labels of S training images")
    first_order: bool = option(False, "flag", group=MN)
    init_backbone: str | None = option(None, "path", optional=True, group=MN, metavar="RUN_DIR",
                                       help="start the backbone from this finished run's best weights "
                                            "(e.g. a vanilla run)")
    freeze_backbone: bool = option(False, "flag", group=MN,       # its BatchNorm too stays in eval mode
                                   help="train the head only; the backbone, with any iFiLM modules in it, stays as it starts")
    # diagnostics beyond the paper (docs/dictionary-race.md); the defaults are the paper's joint training
    backbone_lr_scale: float = option(1.0, "positive", group=MN,   # its decoupled weight decay follows
                                      help="diagnostic beyond the paper: the backbone's learning rate x s (default: 1)")
    dictionary_warmup: int = option(0, "nonnegative_int", group=MN, metavar="N",
                                    help="diagnostic beyond the paper: freeze the backbone's weights for the "
                                         "first N iterations")
    ifilm_placement: str = option("all", "choice", METHOD_IFILM_PLACEMENTS, group=MN)      # methods *_ifilm
    ifilm_entries: int = option(10, "positive_int", group=MN)                       # S_l
    transition_ifilm: bool = option(True, "flag", group=MN,
                                    help="densenet40: false = the official transitions, whose iFiLM output is "
                                         "computed and discarded (default: true, they modulate)")
    # MAXL, the auxiliary-learning baseline of MN Table 1 (nslviz.maxl)
    maxl_hierarchy: int = option(HIERARCHY, "positive_int", label="maxl_hierarchy", group=MAXL, metavar="PSI",
                                 help="auxiliary classes per class")
    maxl_entropy_weight: float = option(ENTROPY_WEIGHT, "nonnegative", group=MAXL,
                                        help="weight of the label generator's entropy term")
    maxl_generator_lr: float = option(GENERATOR_LR, "positive", group=MAXL,
                                      help="the label generator's SGD learning rate (it follows the network's "
                                           "schedule)")
    # optimisation
    epochs: int = option(5, "positive_int", group=OPTIMISATION)
    iterations: int | None = option(None, "positive_int", optional=True, group=OPTIMISATION,
                                    help="train this many steps instead of --epochs, rounded up to whole "
                                         "epochs (the presets use the official counts)")
    # None: 128 (paper); 32 on digits (DEFAULT_BATCH_SIZE)
    batch_size: int | None = option(None, "positive_int", optional=True, group=OPTIMISATION,
                                    help="default: 128, 32 on digits")
    optimizer: str = option("adamw", "choice", OPTIMIZERS, group=OPTIMISATION)
    # None below: the optimizer's official value (OPTIMIZER_DEFAULTS), filled in at construction
    lr: float | None = option(None, "positive", group=OPTIMISATION, help="default: AdamW and Adam 1e-3, SGD 0.1")
    # AdamW: decoupled, PyTorch semantics (see the module docstring)
    weight_decay: float | None = option(None, "nonnegative", group=OPTIMISATION,
                                        help="default: AdamW 0.075 (decoupled), SGD 2e-4 (L2), Adam 5e-4 (L2)")
    momentum: float = option(0.9, "fraction", group=OPTIMISATION, help="SGD momentum in [0, 1) (default: 0.9)")
    nesterov: bool | None = option(None, "flag", group=OPTIMISATION,     # the NSL recipe: False; AdamW ignores it
                                   help="SGD with Nesterov momentum (default: true, the official MN SGD baseline)")
    # lr x lr_decay at these fractions of training (checked in __post_init__)
    milestones: tuple[float, ...] | None = option(None, group=OPTIMISATION,
                                                  help="lr decay points as fractions of training, e.g. 0.5,0.75 "
                                                       "(default: AdamW 0.75, SGD 0.5,0.667,0.833, Adam 0.531,0.844)")
    lr_decay: float = option(0.1, "positive", group=OPTIMISATION,
                             help="factor of the learning rate at each milestone (default: 0.1)")
    clip_value: float | None = option(10.0, "positive", optional=True, group=OPTIMISATION,     # None: no clipping
                                      help="clip every gradient element to [-v, v]; 'none' turns clipping off "
                                           "(default: 10, the official MN value)")
    label_smoothing: float = option(0.0, "fraction", group=OPTIMISATION)
    decay_everything: bool = option(False, "flag", group=OPTIMISATION,
                                    help="weight decay on the head too (dictionary, classifier, alpha, tau), as "
                                         "the NSL recipes do")
    # data
    label_kind: str = option("fine", "choice", LABEL_KINDS, group=DATA,
                             help="coarse: CIFAR-100's 20 superclasses; domain: PACS domains")
    # None: the dataset's paper recipe ("paper" for MN sets)
    augment: str | None = option(None, "choice", AUGMENTATIONS, optional=True, group=DATA,
                                 help="default: the dataset's own (paper on CIFAR)")
    val_size: int | None = option(None, "nonnegative_int", optional=True, group=DATA,      # None: the paper split
                                  help="validation images held out of the training set; 0: train on all of "
                                       "them, test the last model (default: the paper's split)")
    image_size: int | None = option(None, "positive_int", optional=True, group=DATA,
                                    help="side of the square images (default: the dataset's: 32, 64 for "
                                         "imagenet64, 224 for imagenet)")
    train_limit: int | None = option(None, "positive_int", optional=True, group=DATA,
                                     help="use only the first N training images (default: all)")
    eval_limit: int | None = option(None, "positive_int", optional=True, group=DATA,
                                    help="use only the first N validation/test images (default: all)")
    data_root: str | None = option(None, group=DATA,
                                   help="dataset folder (default: $NSLVIZ_DATA or the repository's data/)")
    download: bool = option(False, "flag", group=DATA, help="download the dataset when missing (needs internet)")
    # machinery
    seed: int = option(0, "seed", group=RUN)
    device: str = option("auto", group=RUN, help="auto (default: CUDA when present), cpu, cuda, cuda:1")
    amp: str = option("auto", "choice", AMP_MODES, group=RUN,
                      help="bf16 autocast (default: auto, bf16 on CUDA, off on the CPU)")
    channels_last: str | bool = option("auto", "choice", CHANNELS_LAST, group=RUN,
                                       help="channels-last memory format (default: auto, on CUDA)")
    compile: bool = option(False, "flag", group=RUN,
                           help="torch.compile the model; on a GPU it trains iFiLM models about 1.6x faster "
                                "(docs/install.md)")
    eval_batch_size: int = option(500, "positive_int", group=RUN)
    workers: int | None = option(None, "nonnegative_int", optional=True, group=RUN,
                                 help="processes decoding the images of a set read from files batch by batch "
                                      "(imagenet; default: one per CPU, up to 8; 0: the training process)")
    # resumable checkpoints, also at every epoch end
    checkpoint_every: int = option(200, "positive_int", group=RUN, help="iterations between checkpoints")
    # keyword options of the NSL layers / backbone (NSL Tables 1-3, 8)
    nsl_options: dict = option(default_factory=dict, group=WHAT, metavar="JSON",
                               help="options of the NSL layers, e.g. '{\"kernel_shape\": true}' or "
                                    "'{\"predictor\": \"cnn\"}' (see nslviz.nsl.NSConv2d); for spherenet9: "
                                    "global_similarity, orthogonality_weight, widths, angle (cosine, linear, "
                                    "sigmoid)")
    # beyond the paper: Adam moves every weight by about lr a step, and the dynamic predictors' output
    # weights start 1000x smaller than He's (M = I + g starts near I), so at the kernels' lr they leave
    # that start within a step (docs/not-reproduced.md measures a tenth in notebook 07's quick runs)
    predictor_lr_scale: float = option(1.0, "positive", group=WHAT,
                                       help="the dynamic similarity predictors' learning rate x s (default: 1, "
                                            "as the official code)")
    similarity_only: bool = option(False, "flag", group=WHAT,
                                   help="train only the neural similarity (M, D_r, predictors), everything else "
                                        "frozen; needs --init-backbone, a plain CNN run whose kernels and "
                                        "classifier it loads (NSL sec. 4)")

    def __post_init__(self):
        """Fill in the optimizer's defaults, check every field as declared, then the combinations."""
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name, value in OPTIMIZER_DEFAULTS[self.optimizer].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        check_options(self)
        # the fields declared without a kind (data_root goes to nslviz.paths.data_root as given)
        check_device_name(self.device)
        if not isinstance(self.nsl_options, dict):
            raise ValueError(f"nsl_options must be a dict of NSL layer options, got {self.nsl_options!r}")
        if isinstance(self.milestones, (str, bytes)) or not hasattr(self.milestones, "__iter__"):
            raise ValueError(f"milestones must be a sequence of fractions of training in (0, 1), such as "
                             f"(0.5, 0.75), got {self.milestones!r}")
        self.milestones = tuple(float(m) if is_number(m) else m for m in self.milestones)
        if any(not (is_number(m) and 0 < m < 1) for m in self.milestones):
            raise ValueError(f"milestones must be fractions of training in (0, 1), got {self.milestones}")
        if self.similarity_only and self.nsl == "none":
            raise ValueError("similarity_only trains only the neural similarity; it needs nsl='static_dns', "
                             "'static_uns', 'dynamic_dns' or 'dynamic_uns', got nsl='none'")
        if self.method == "maxl" and (self.freeze_backbone or self.dictionary_warmup):
            raise ValueError("method maxl trains its label generator through the backbone's look-ahead step, which a "
                             "frozen backbone (freeze_backbone, dictionary_warmup) takes away; leave them out")
        if self.similarity_only and self.method != "vanilla":
            raise ValueError(f"similarity_only trains the neural similarity of a plain NSL network; it needs "
                             f"method='vanilla' (CLI --method vanilla), got method={self.method!r}")
        if self.similarity_only and self.init_backbone is None:
            raise ValueError("similarity_only freezes everything but M, so it needs the trained network to start "
                             "from: init_backbone (CLI --init-backbone) = a finished plain CNN run")
        if not self.transition_ifilm and not self.backbone.startswith("densenet"):
            raise ValueError(f"transition_ifilm false is the official DenseNet's transitions; backbone "
                             f"{self.backbone!r} has none")
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0; got momentum 0 with nesterov on: "
                             "set nesterov=False (CLI --nesterov false) for plain SGD")
        if self.dictionary_warmup and self.freeze_backbone:
            raise ValueError(f"dictionary_warmup {self.dictionary_warmup} freezes the backbone for a while, and "
                             "freeze_backbone freezes it for the whole run: give one of them")

    @classmethod
    def from_preset(cls, preset: str | None, **overrides) -> "TrainConfig":
        """A paper recipe with `overrides` on top; preset None gives the dataclass defaults. Unless
        `epochs` or `iterations` is given, the training length and lr milestones are the official
        schedule of the dataset (`PAPER_SCHEDULES`), where there is one. A preset's own milestones
        (nsl, nsl_global: CIFAR's) give way to the dataset's schedule at any length, unless given. With
        a length given, the mn preset decays where the paper's epoch schedule of the dataset does
        (`PAPER_EPOCH_MILESTONES`), unless milestones are given."""
        # None for the length or the milestones means "not given" (a notebook's `epochs = None`): the
        # official schedule, which must then exist
        asked_official = "epochs" in overrides and overrides["epochs"] is None and overrides.get("iterations") is None
        overrides = {k: v for k, v in overrides.items()
                     if not (k in ("epochs", "iterations", "milestones") and v is None)}
        if preset is not None:
            check_choice("preset", preset, PRESETS)
            fields = {**PRESET_FIELDS[preset], **overrides}
            for name in ("dataset", "optimizer"):          # named as such, before the schedule they look up
                if name in fields:
                    check_option(name, declared_options(cls)[name], fields[name])
            schedule = PAPER_SCHEDULES.get((preset, fields.get("optimizer", cls.optimizer)), {})
            official = schedule.get(fields.get("dataset", cls.dataset))
            given_length = "epochs" in overrides or "iterations" in overrides
            if not official and not given_length and "epochs" not in PRESET_FIELDS[preset]:
                _check_no_official_length(preset, fields.get("optimizer", cls.optimizer),
                                          fields.get("dataset", cls.dataset), asked_official)
            own_milestones = "milestones" in PRESET_FIELDS[preset]     # nsl's CIFAR ones give way at any length
            if official and "milestones" not in overrides and (own_milestones or not given_length):
                fields["milestones"] = official[1]
            paper_fraction = PAPER_EPOCH_MILESTONES.get((preset, fields.get("optimizer", cls.optimizer)), {}).get(
                fields.get("dataset", cls.dataset))
            if paper_fraction and given_length and "milestones" not in overrides:
                fields["milestones"] = paper_fraction     # a length of its own: the paper's decay point in it
            if official and not given_length:
                fields["iterations"] = official[0]
            if fields.get("dataset", cls.dataset) in STREAMED_SETS and "augment" not in overrides:
                fields["augment"] = None
            overrides = fields
        return cls(**overrides)

    # the fields `resolved` fills in when they are None: a stored run has a value where the request has None
    RESOLVED_FIELDS = ("entries", "batch_size", "augment")

    def resolved(self, dataset_augment: str) -> "TrainConfig":
        """The config with the dataset-dependent defaults filled in (what a run directory stores):
        RESOLVED_FIELDS."""
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

    def recipe_text(self) -> str:
        """The batch and the optimiser, for a notebook's or a log's first line."""
        lr = "its default lr" if self.lr is None else f"lr {self.lr:g}"
        decay = "" if self.weight_decay is None else f", weight decay {self.weight_decay:g}"
        batch = "the default batch" if self.batch_size is None else f"batch {self.batch_size}"
        return f"{batch}, {self.optimizer} {lr}{decay}"

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


# The image sets that ship with the package or are generated: no paper trains on them, so a preset
# run on them takes the default length (`epochs`) where on a paper's dataset it asks for one
EMBEDDED_SETS = ("digits", "synthetic")

# S of MN Appendix A.2 (CIFAR-10/CINIC-10: 5000, CIFAR-100/Tiny-ImageNet: 10000; the paper does not
# give S for the 4-layer-ConvNet sets, 5000 is used, nor for ImageNet 64×64, where ours is 10000 like
# the other sets of 100 classes or more); small for the embedded sets.
DEFAULT_ENTRIES = {"cifar10": 5000, "cinic10": 5000, "cifar100": 10000, "tiny-imagenet": 10000,
                   "imagenet64": 10000, "imagenet": 10000, "digits": 200, "synthetic": 200}

# Sets read from files batch by batch, whose training crops are random windows of a larger patch
# (nslviz.datasets.images.streamed): a preset's augmentation (a pad-and-crop recipe for 32-pixel
# images) gives way to the set's own (flip), unless `augment` is given
STREAMED_SETS = ("imagenet",)

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
    # MN A.2: MAXL's code with SGD lr 0.1, momentum 0.9, weight decay 5e-4, ψ = 5, lr halved every 50
    # of 200 epochs; the data and classifier as the mn preset's, so that it compares with its methods
    "maxl": dict(method="maxl", batch_size=128, clip_value=10.0, augment="paper", classifier="cosine",
                 label_smoothing=0.0, decay_everything=False, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False,
                 weight_decay=5e-4, epochs=200, milestones=(0.25, 0.5, 0.75), lr_decay=0.5),
    "nsl_global": dict(method="vanilla", classifier="dot", optimizer="adam", lr=1e-3, weight_decay=5e-4,
                       batch_size=128, milestones=(34 / 64, 54 / 64), clip_value=None, label_smoothing=0.01,
                       augment="flip", decay_everything=True),
}

# MN appendix A.2's schedules in epochs: lr ×0.1 at epoch 300 of 400 on CIFAR (the AdamW default, 75 %),
# at 250 of 350 on CINIC-10 and Tiny-ImageNet. A preset run given its own length (epochs or iterations)
# decays at the same fraction of it, so that `--epochs 350` is the paper's schedule there.
PAPER_EPOCH_MILESTONES: dict[tuple[str, str], dict[str, tuple[float, ...]]] = {
    ("mn", "adamw"): {"cinic10": (250 / 350,), "tiny-imagenet": (250 / 350,)},
}

# The official training lengths, in iterations at batch 128, and the lr milestones as fractions of
# them, per (preset, optimizer) and dataset (docs/official-code.md §A.7 and §B.6). The presets use them
# unless epochs or iterations are given; a dataset without an entry keeps `epochs`. NSL's ImageNet
# schedule (sec. 7: lr ÷10 at 200k, 375k and 550k of 600k, for ImageNet-2012 at 224 px in Table 5) is
# the one nsl gives ImageNet-2012 (imagenet) and downsampled ImageNet 64×64 (imagenet64).
_CIFAR_MN = (160_000, (0.75,))
_CONVNET_MN = (60_000, (40 / 60,))
_CIFAR_NSL = (42_500, (20 / 42.5, 30 / 42.5, 37.5 / 42.5))
_CIFAR_NSL_GLOBAL = (64_000, (34 / 64, 54 / 64))
_IMAGENET_NSL = (600_000, (200 / 600, 375 / 600, 550 / 600))
PAPER_SCHEDULES: dict[tuple[str, str], dict[str, tuple[int, tuple[float, ...]]]] = {
    ("mn", "adamw"): {"cifar10": _CIFAR_MN, "cifar100": _CIFAR_MN, "cinic10": (260_000, (160 / 260,)),
                      "tiny-imagenet": (260_000, (180 / 260,)), "mnist-m": _CONVNET_MN, "pacs": _CONVNET_MN,
                      "mnist": _CONVNET_MN, "svhn": _CONVNET_MN},
    ("mn", "sgd"): {"cifar10": (120_000, (0.5, 2 / 3, 5 / 6)), "cifar100": (120_000, (0.5, 2 / 3, 5 / 6))},
    ("nsl", "sgd"): {"cifar10": _CIFAR_NSL, "cifar100": _CIFAR_NSL, "imagenet64": _IMAGENET_NSL,
                     "imagenet": _IMAGENET_NSL},
    ("nsl_global", "adam"): {"cifar10": _CIFAR_NSL_GLOBAL, "cifar100": _CIFAR_NSL_GLOBAL},
}


# The settings only some runs read: {field: (the runs that read it, whether `config` is one)}. Left
# out of a run that does not read it, such a setting changes nothing (the command line warns).
_MN_HEAD = ("methods mn and mn_ifilm", lambda c: c.method in ("mn", "mn_ifilm"))
_IFILM = ("methods vanilla_ifilm and mn_ifilm", lambda c: c.method.endswith("_ifilm"))
_MAXL = ("method maxl", lambda c: c.method == "maxl")
_SGD = ("optimizer sgd", lambda c: c.optimizer == "sgd")
READ_BY = {
    **dict.fromkeys(("temperature", "learn_temperature", "inner_steps", "step_size", "alpha", "entry_dropout", "values",
                     "dictionary_init", "first_order"), _MN_HEAD),
    "entries": ("methods mn, mn_ifilm and vanilla_extra", lambda c: c.method in ("mn", "mn_ifilm", "vanilla_extra")),
    **dict.fromkeys(("ifilm_placement", "ifilm_entries"), _IFILM),
    "transition_ifilm": ("methods vanilla_ifilm and mn_ifilm on a densenet backbone",
                         lambda c: c.method.endswith("_ifilm") and c.backbone.startswith("densenet")),
    **dict.fromkeys(("maxl_hierarchy", "maxl_entropy_weight", "maxl_generator_lr"), _MAXL),
    **dict.fromkeys(("momentum", "nesterov"), _SGD),
    "nsl_options": ("runs with an --nsl mode and the spherenet9 backbones",
                    lambda c: c.nsl != "none" or c.backbone.startswith("spherenet")),
    "epochs": ("runs without --iterations, which sets the length otherwise", lambda c: c.iterations is None),
    "predictor_lr_scale": ("runs with a dynamic --nsl mode", lambda c: c.nsl.startswith("dynamic")),
}


def unread_settings(configs: list[TrainConfig], names) -> dict[str, str]:
    """{field: the runs that read it} for the fields among `names` that none of `configs` reads
    (READ_BY): `--entries 500` given with `--method vanilla` changes nothing."""
    return {name: READ_BY[name][0] for name in names
            if name in READ_BY and not any(READ_BY[name][1](c) for c in configs)}


def _check_no_official_length(preset: str, optimizer: str, dataset: str, asked_official: bool) -> None:
    """A preset run with no length given and no official one for (preset, optimizer, dataset): refused when
    the official schedule was asked for (epochs None), when it belongs to another optimizer (MN Table
    3's SGD baselines outside CIFAR), and on every dataset but the embedded ones, where it would
    otherwise train the default 5 epochs without a word (on the embedded sets 5 epochs is a try-out)."""
    if asked_official:
        raise ValueError(f"epochs None asks for the official schedule, and {dataset} has none with the {preset} "
                         f"preset and {optimizer}; give the number of epochs")
    others = {opt: schedule[dataset] for (p, opt), schedule in PAPER_SCHEDULES.items()
              if p == preset and dataset in schedule}
    if others:
        opt, (iterations, _) = next(iter(others.items()))
        raise ValueError(f"--preset {preset} has an official length for {dataset} with {', '.join(others)} only, not "
                         f"with {optimizer}; give one (--iterations or --epochs; e.g. --iterations {iterations}, "
                         f"its {opt} length)")
    if dataset not in EMBEDDED_SETS:
        raise ValueError(f"--preset {preset} has no official length for {dataset} (with {optimizer}); give one "
                         f"(--epochs or --iterations) rather than train the default {TrainConfig.epochs} epochs")


def build_model(config: TrainConfig, num_classes: int, channels: int, image_size: int) -> ImageClassifier:
    """The image model `config` describes, for data of `num_classes` classes, `channels` x `image_size`²
    (entries=None: the dataset's default S, as a run resolves it)."""
    entries = config.resolved(config.augment).entries
    return build_image_model(config.method, config.backbone, num_classes, in_channels=channels,
                             image_size=image_size, classifier=config.classifier, entries=entries,
                             temperature=config.temperature, learn_temperature=config.learn_temperature,
                             inner_steps=config.inner_steps,
                             step_size=config.step_size, step_size_init=config.alpha,
                             entry_dropout=config.entry_dropout, first_order=config.first_order,
                             values=config.values,
                             ifilm_placement=config.ifilm_placement, ifilm_entries=config.ifilm_entries,
                             transition_ifilm=config.transition_ifilm,
                             nsl=config.nsl, nsl_options=config.nsl_options or None,
                             hierarchy=config.maxl_hierarchy)
