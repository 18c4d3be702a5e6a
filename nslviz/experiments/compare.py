"""Image experiments as the notebooks (03, 04, 05, 07) and `python -m nslviz compare` run them: several
runs, same settings.

`compare_methods(config, ["vanilla", "mn"])` trains one run per method into runs/<group>/<method>
(resuming any run that was cut off, skipping any that already finished) and returns their summaries;
`compare_nsl_variants(config, ["cnn", "dynamic_dns"])` does the same for the rows of NSL Table 4.
A sweep (MN Fig. 8: S, T) is one call per value with `label_suffix=sweep_suffix("entries", 1000)`;
`read_sweep(group_dir, "entries")` reads its curves back.
`quick_config(config)` is what quick mode (`NSLVIZ_QUICK=1`, `make test`, Binder) turns a paper run
into: the embedded `digits` set (or, with `dataset="synthetic"`, the generated oriented gratings), a small
backbone, a few epochs, CPU.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .._checks import check_choice
from ..parameters import parameter_list
from ..paths import runs_root
from ..models.classifier import METHODS
from ..training.config import EMBEDDED_SETS, READ_BY, TrainConfig, unread_settings
from ..training.rundir import RunDirectory, locked_run_dir
from ..training.trainer import SplitsChanged, default_run_name, resume_setting_change, train

QUICK_BACKBONES = {"resnet56_64": "convnet4_64", "resnet29_64": "convnet4_64", "densenet40_64": "convnet4_64",
                   "convnet4_64": "convnet4_64", "cnn10": "cnn9", "spherenet9": "spherenet9",
                   "spherenet9_plain": "spherenet9_plain"}


# What quick_config sets whatever the config held (image_size too: 16, or 32 for the 64-pixel backbones;
# and the dataset, its argument), and, when the config trains with SGD, what it sets instead of SGD's
QUICK_SETTINGS = dict(iterations=None, batch_size=64, entries=100, device="cpu", amp="off",
                      compile=False, augment="crop", train_limit=None, eval_limit=None, checkpoint_every=1000,
                      val_size=None, download=False, milestones=(0.75,))
QUICK_INSTEAD_OF_SGD = dict(optimizer="adamw", lr=1e-3, weight_decay=0.0)
# The embedded sets quick mode may train on: digits (the default) and the generated oriented gratings,
# on which a plain CNN-9 ends 19 to 32 points below perfect after 4 epochs (docs/not-reproduced.md)
QUICK_DATASETS = EMBEDDED_SETS


QUICK_EPOCHS = 4           # quick mode's length: fewer epochs asked are kept, more are capped


def quick_config(config: TrainConfig, *, epochs: int = QUICK_EPOCHS, dataset: str = "digits") -> TrainConfig:
    """The same experiment, small enough for a laptop CPU in about a minute: digits (1,797 real
    handwritten 8x8 digits bundled with scikit-learn) upsampled to 16x16 (32x32 for the 64-pixel
    backbones, whose stride-2 stem brings them to 16x16 as well), a small backbone, a few epochs,
    S = 100, CPU, milestone at 75 % (QUICK_SETTINGS; a smaller S or batch already chosen is kept, and
    so is val_size 0). `dataset="synthetic"` trains on 5,000 generated oriented gratings instead
    (`make_synthetic_images`; four times the steps of digits, and as long)."""
    check_choice("quick-mode dataset", dataset, QUICK_DATASETS)
    backbone = QUICK_BACKBONES.get(config.backbone, "cnn9" if config.backbone.startswith("cnn") else "convnet4")
    if config.optimizer == "sgd":
        # SGD at the NSL recipe's lr 0.1 needs thousands of steps (the dynamic predictors destabilise
        # the first ones); a quick run of a few dozen steps uses Adam (lr 1e-3, as the official NSL
        # global-similarity code does) so that every variant learns something.
        config = dataclasses.replace(config, **QUICK_INSTEAD_OF_SGD)
    settings = dict(QUICK_SETTINGS)
    for name in ("batch_size", "entries"):                       # None: the preset's, larger than quick mode's
        if getattr(config, name) is not None:
            settings[name] = min(getattr(config, name), QUICK_SETTINGS[name])
    if config.val_size == 0:                                     # every training image, the last model tested
        settings["val_size"] = 0
    return dataclasses.replace(config, **settings, dataset=dataset, backbone=backbone,
                               epochs=min(config.epochs, epochs), image_size=32 if backbone.endswith("_64") else 16)


def method_list(compare_with, method: str) -> list[str]:
    """The methods a notebook trains: `compare_with`, then `method`, each once. `compare_with` is a
    list, or a string as `papermill -p compare_with ...` passes it: "vanilla,mn", "vanilla mn" or
    '["vanilla", "mn"]'; "" or None: none. An unknown name is an error naming it."""
    if compare_with is not None and not isinstance(compare_with, (str, list, tuple)):
        raise ValueError(f"compare_with must be a list of methods or a string like 'vanilla,mn', got {compare_with!r}")
    if isinstance(compare_with, (list, tuple)):
        compare_with = [name for name in compare_with if name]
    compare_with = parameter_list("compare_with", compare_with, str)
    methods = list(dict.fromkeys([*compare_with, method]))
    for name in methods:
        check_choice("method", name, METHODS)
    return methods


def run_group_dir(config: TrainConfig, group: str | None = None) -> Path:
    return runs_root() / (group or default_run_name(config).replace(f"-{config.method}-", "-compare-"))


GROUP_ELSEWHERE = "another group folder (the notebooks' run_dir, CLI --group-dir)"


def compare_runs(configs: dict[str, TrainConfig], group_dir: str | Path, *, progress: bool = True,
                 overwrite: bool = False, elsewhere: str = GROUP_ELSEWHERE) -> dict[str, dict]:
    """Train each labelled config into group_dir/<label>; a run that already finished is read back,
    one that was cut off is resumed. A folder holding a run with other settings is an error naming
    them and `elsewhere` (how the caller names another group folder), unless `overwrite` (then that
    run is replaced). Each run directory is held (its lock, see
    rundir.locked_run_dir) from the moment it is read until its run ends, so two notebooks on the same
    group never train one run twice. Returns {label: summary}."""
    summaries = {}
    for label, run_config in configs.items():
        run_dir = Path(group_dir) / label
        with locked_run_dir(run_dir):            # what is there is read and acted on by this process alone
            summaries[label] = _reuse_or_train(label, run_config, run_dir, progress, overwrite, elsewhere)
    return summaries


def _reuse_or_train(label: str, run_config: TrainConfig, run_dir: Path, progress: bool, overwrite: bool,
                    elsewhere: str) -> dict:
    existing = RunDirectory(run_dir, create=False)
    stored = existing.read_config()                                     # None: no run there yet
    as_stored = _start_as_stored(stored, run_config)
    changed = _changed_settings(stored, as_stored, finished=existing.summary_path.exists())
    if changed is None and not existing.summary_path.exists():
        changed = resume_setting_change(run_dir, run_config)           # a cut run resumed under bf16 <-> fp32
    if changed is None and existing.summary_path.exists():
        return existing.read_summary()
    if changed and not overwrite and (existing.summary_path.exists() or existing.checkpoint_path.exists()):
        raise ValueError(f"{str(run_dir)!r} holds a {label} run with other settings ({changed}); pass "
                         f"overwrite=True (CLI --overwrite) to replace it, or {elsewhere}")
    resume = changed is None and existing.checkpoint_path.exists()
    try:                                 # a fresh run reads the start where it is now; a resumed one keeps its own
        return train(as_stored if resume else run_config, run_dir, resume=resume, overwrite=bool(changed),
                     progress=progress)
    except SplitsChanged as error:                  # a cut run whose dataset changed: only overwrite restarts it
        if not (resume and overwrite):
            raise SplitsChanged(f"{str(run_dir)!r}: {error}; pass overwrite=True (CLI --overwrite) to train it again "
                                "on the new splits") from None
    return train(run_config, run_dir, overwrite=True, progress=progress)


def sweep_suffix(setting: str, value) -> str:
    """The label suffix of one value of a sweep (MN Fig. 8: S, T), "-<setting>=<value>": a float as its
    shortest exact text (0.1000001 stays apart from 0.1), a folder-safe text otherwise."""
    if isinstance(value, bool) or value is None:
        text = str(value).lower()
    elif isinstance(value, (int, float)):
        text = repr(value)
    else:
        text = "".join(c if c.isalnum() or c in "._+-" else "_" for c in str(value))
    return f"-{setting}={text}"


def setting_name(text: str) -> str:
    """The config field a sweep names, spelt as the command line or as Python spells it:
    "--dictionary-init", "dictionary-init" and "dictionary_init" are all "dictionary_init"."""
    return text.removeprefix("--").replace("-", "_")


def read_sweep(group_dir: str | Path, setting: str, metric: str = "test_acc") -> dict[str, dict]:
    """{method or variant: {value: metric}} of the finished runs of a sweep in `group_dir`, the folders
    `<method>-<setting>=<value>` that `compare --sweep SETTING ...` (or calls with `label_suffix=
    sweep_suffix(setting, value)`) trained: the curves of MN Fig. 8. `setting` as the command takes it
    ("dictionary-init" or "dictionary_init"); a value is a float where its text is a number (in
    increasing order), else the text (`--sweep dictionary-init random data`: "data", "random")."""
    setting = setting_name(setting)
    group = Path(group_dir)
    if not group.is_dir():
        raise ValueError(f"no group folder {str(group_dir)!r}; expected the folder a sweep trained its runs into")
    marker, curves = f"-{setting}=", {}
    for run_dir in sorted(group.iterdir()):
        label, found, text = run_dir.name.rpartition(marker)
        summary = RunDirectory(run_dir, create=False).read_summary() if found and run_dir.is_dir() else None
        if summary is not None:
            if metric not in summary:
                raise ValueError(f"{str(run_dir)!r} has no {metric!r} in its summary; expected one of "
                                 f"{', '.join(sorted(k for k, v in summary.items() if isinstance(v, float)))}")
            curve, value = curves.setdefault(label, {}), _sweep_value(text)
            if value in curve:
                raise ValueError(f"two runs of {label} at {setting} = {value!r} in {str(group_dir)!r} (one of them "
                                 f"{run_dir.name!r}); keep one")
            curve[value] = summary[metric]
    if not curves:
        raise ValueError(f"no finished runs of a {setting} sweep in {str(group_dir)!r} (folders named "
                         f"<method>{marker}<value> holding a summary.json)")
    return {label: dict(sorted(curve.items(), key=lambda item: (isinstance(item[0], str), item[0])))
            for label, curve in curves.items()}


def _sweep_value(text: str) -> float | str:
    """A swept value from its folder-name text: a number where it is one, else the text."""
    try:
        return float(text)
    except ValueError:
        return text


# How the MN runs of compare_methods start: "scratch" (the paper: random backbone and random keys) or
# "vanilla" (the vanilla run's trained backbone and a dictionary started at S training images)
MN_STARTS = ("scratch", "vanilla")
VANILLA_START_ALPHA = 0.5
MN_START_SETTINGS = ("init_backbone", "dictionary_init", "alpha")   # what mn_start "vanilla" sets in every MN run


def trained_methods(methods, mn_start: str = "scratch") -> list[str]:
    """The runs compare_methods trains, in order: each of `methods` once, and with mn_start "vanilla"
    vanilla first, asked or not (every MN run starts from it)."""
    check_choice("mn_start", mn_start, MN_STARTS)
    methods = list(dict.fromkeys(methods))
    return ["vanilla", *[m for m in methods if m != "vanilla"]] if mn_start == "vanilla" else methods


def mn_start_text(mn_start: str) -> str:
    """How compare_methods starts the MN runs, for a notebook's first line."""
    check_choice("mn_start", mn_start, MN_STARTS)
    if mn_start == "scratch":
        return "MN starts from scratch (the paper)"
    return f"MN starts from vanilla's backbone, with α = {VANILLA_START_ALPHA} and the dictionary at S training images"


def compare_methods(config: TrainConfig, methods: list[str], *, group_dir: str | Path | None = None,
                    progress: bool = True, overwrite: bool = False, mn_start: str = "scratch",
                    label_suffix: str = "") -> dict[str, dict]:
    """Train `config` once per method (vanilla, mn, mn_ifilm, ...), same settings otherwise, into
    group_dir/<method> (default runs/<dataset>-<backbone>-compare-seed<k>); see compare_runs.
    Returns {method + label_suffix: summary} (runs in group_dir/<method><label_suffix>).

    mn_start="vanilla" is a two-stage regime beyond the paper, in which the dictionary has won its race
    with the backbone before joint training starts (docs/dictionary-race.md): vanilla is trained first,
    and every MN method (mn, mn_ifilm) starts from its best backbone (init_backbone; iFiLM at the
    identity) with the dictionary at S training images' features and labels (dictionary_init="data")
    and the inner step at α = 0.5: a dictionary that is right from the start is worth a large first
    step, and the learned α only moves by about Adam's learning rate per iteration."""
    group = Path(group_dir) if group_dir is not None else run_group_dir(config)
    methods = trained_methods(methods, mn_start)
    configs = {m + label_suffix: dataclasses.replace(config, method=m) for m in methods}
    if mn_start == "vanilla":
        vanilla = str((group / f"vanilla{label_suffix}").resolve())     # the same run from any working folder
        for method in methods:
            if method.startswith("mn"):
                start = dict(zip(MN_START_SETTINGS, (vanilla, "data", VANILLA_START_ALPHA)))
                configs[method + label_suffix] = dataclasses.replace(configs[method + label_suffix], **start)
    return compare_runs(configs, group, progress=progress, overwrite=overwrite)


# NSL Table 4/5 rows: variant -> (plain-network suffix, nsl mode). "cnn++" is the wider plain baseline.
NSL_VARIANTS = {"cnn": ("", "none"), "cnn++": ("_plus", "none"), "static_dns": ("", "static_dns"),
                "static_uns": ("", "static_uns"), "dynamic_dns": ("", "dynamic_dns"),
                "dynamic_uns": ("", "dynamic_uns")}

# NSL Tables 1-3 (CIFAR-10, CNN-9, DNS) and the regularisers of sec. 3.4: variant -> (nsl mode,
# nsl_options) on the cnn9 / cnn10 network; their rows that are Table 4 rows ("cnn", "static_dns",
# "dynamic_dns") are in NSL_VARIANTS. Table 8: variant -> (backbone, nsl_options), preset "nsl_global".
NSL_ABLATION_VARIANTS: dict[str, tuple[str, dict]] = {
    "dynamic_dns_cnn_predictor": ("dynamic_dns", {"predictor": "cnn"}),          # Table 1: CNN predictor
    "dynamic_dns_full_sphere": ("dynamic_dns", {"predictor": "full_sphere"}),    # official "best-performing"
    "static_dns_joint": ("static_dns", {"kernel_shape": True}),                  # Table 2: joint D and R (J)
    "dynamic_dns_joint": ("dynamic_dns", {"kernel_shape": True}),
    "static_uns_symmetric": ("static_uns", {"parametrization": "symmetric"}),    # sec. 3.4 regularisers
    "static_uns_psd": ("static_uns", {"parametrization": "psd"}),
    "static_dns_l1": ("static_dns", {"l1_weight": 1e-4}),
    "static_uns_sparse": ("static_uns", {"nonzeros_per_row": 3}),                # hard sparsity: 3 taps read
    "static_uns_shift": ("static_uns", {"nonzeros_per_row": 1}),                 # sparsity-one: a shift per tap
    "dynamic_dns_shared": ("dynamic_dns", {"shared_predictor": True}),           # Table 3: shared predictor
    # what the paper says dynamic NSN needs to converge, taken out (ablations, no paper number):
    "dynamic_dns_no_identity": ("dynamic_dns", {"predictor_identity": False}),   # sec. 3.3.1: M, not M − I
    "dynamic_dns_cnn_predictor_no_norm": ("dynamic_dns", {"predictor": "cnn",    # sec. 7.1: CNN predictor,
                                                          "predictor_output_norm": False}),   # output unnormalised
}
NSL_GLOBAL_VARIANTS: dict[str, tuple[str, dict]] = {                              # Table 8
    "cnn_global": ("spherenet9_plain", {}),
    "cnn_global_attention": ("spherenet9_plain", {"global_similarity": True}),
    "spherenet": ("spherenet9", {}),
    "spherenet_attention": ("spherenet9", {"global_similarity": True}),
}
NSL_TABLES: dict[str, tuple[str, ...]] = {
    "1": ("cnn", "dynamic_dns_cnn_predictor", "dynamic_dns"),
    "2": ("cnn", "static_dns", "static_dns_joint", "dynamic_dns", "dynamic_dns_joint"),
    "3": ("cnn", "dynamic_dns_shared", "dynamic_dns"),
    "4": tuple(NSL_VARIANTS),
    "8": tuple(NSL_GLOBAL_VARIANTS),
}
ALL_NSL_VARIANTS = (*NSL_VARIANTS, *NSL_ABLATION_VARIANTS, *NSL_GLOBAL_VARIANTS)


# The rows quick mode trains (notebook 07): the plain network and the dynamic one; the static rows
# and the ablations move too little in a quick run's few dozen steps to tell apart from the plain one
QUICK_NSL_VARIANTS = ("cnn", "dynamic_dns")


def quick_nsl_variants(variants: list[str]) -> list[str]:
    """The rows quick mode trains: QUICK_NSL_VARIANTS in place of every row of Table 4 (notebook 07's
    default), the rows asked otherwise; every name is checked, so a misspelled one is named, not dropped."""
    for variant in variants:
        check_choice("NSL variant", variant, ALL_NSL_VARIANTS)
    return list(QUICK_NSL_VARIANTS) if set(variants) == set(NSL_TABLES["4"]) else list(dict.fromkeys(variants))


NSL_IMAGENET_SETS = ("imagenet", "imagenet64")      # NSL Table 5's data, where its rows are CNN-10's (Table 7)


def nsl_variant_backbone(dataset: str) -> str:
    """The network of an NSL table row when none is given: CNN-10 on ImageNet (Table 5, at 224 px, or
    downsampled to 64), CNN-9 elsewhere (Tables 1-4; Table 8's rows replace it by their own)."""
    return "cnn10" if dataset in NSL_IMAGENET_SETS else "cnn9"


def nsl_variant_mode(variant: str) -> str:
    """The NSL mode of a table row ("none" for the plain rows and Table 8's)."""
    return nsl_variant_config(TrainConfig(backbone="cnn9"), variant).nsl


def nsl_variant_preset(variant: str) -> str:
    """The recipe a variant's table was trained with: "nsl_global" for Table 8, else "nsl"."""
    check_choice("NSL variant", variant, ALL_NSL_VARIANTS)
    return "nsl_global" if variant in NSL_GLOBAL_VARIANTS else "nsl"


def nsl_variant_config(config: TrainConfig, variant: str) -> TrainConfig:
    """The run of one NSL table row (`ALL_NSL_VARIANTS`, grouped by table in `NSL_TABLES`): `config`
    with the variant's network, similarity mode and `nsl_options`; options already in
    config.nsl_options are kept on top. Tables 1-4 keep config's cnn9 / cnn10 family ("cnn++" ->
    cnn9_plus, "dynamic_dns_shared" -> cnn9 with a shared predictor); Table 8 rows replace the
    backbone by spherenet9 / spherenet9_plain (train them with the "nsl_global" preset)."""
    check_choice("NSL variant", variant, ALL_NSL_VARIANTS)
    base = config.backbone.removesuffix("_plus")
    if variant in NSL_GLOBAL_VARIANTS:
        backbone, options = NSL_GLOBAL_VARIANTS[variant]
        return dataclasses.replace(config, backbone=backbone, nsl="none",
                                   nsl_options={**options, **config.nsl_options})
    if base not in ("cnn9", "cnn10"):
        raise ValueError(f"NSL variant {variant!r} is a CNN-9 row (Tables 1-4); the config's backbone is "
                         f"{config.backbone!r}: start from backbone 'cnn9' (or 'cnn10')")
    if variant in NSL_VARIANTS:
        suffix, nsl = NSL_VARIANTS[variant]
        options = {}
    else:
        (nsl, options), suffix = NSL_ABLATION_VARIANTS[variant], ""
    options = {**options, **config.nsl_options} if nsl != "none" else {}
    return dataclasses.replace(config, backbone=base + suffix, nsl=nsl, nsl_options=options)


def compare_nsl_variants(config: TrainConfig, variants: list[str], *, group_dir: str | Path | None = None,
                         progress: bool = True, overwrite: bool = False, label_suffix: str = "") -> dict[str, dict]:
    """NSL Tables 1-5 (or 8) on one dataset: one run per variant (`nsl_variant_config`) with the
    same recipe, into group_dir/<variant><label_suffix>. Returns {variant + label_suffix: summary}."""
    configs = {v + label_suffix: nsl_variant_config(config, v) for v in dict.fromkeys(variants)}
    default_dir = runs_root() / f"{config.dataset}-{config.backbone.removesuffix('_plus')}-nsl-seed{config.seed}"
    return compare_runs(configs, group_dir if group_dir is not None else default_dir, progress=progress,
                        overwrite=overwrite)


def _changed_settings(stored: dict | None, config: TrainConfig, *, finished: bool = False) -> str | None:
    """None when the run directory whose config.json is `stored` (None: none there) holds this experiment
    (ignoring the settings a resume may change, and for a `finished` run, which is read back, the settings
    of speed and those the run does not read, such as the predictors' rate of a plain CNN; a cut run
    resumes only with its own settings), else the settings that differ, "name: stored -> wanted, ..."
    ("no run yet" if none)."""
    from ..training.trainer import RESUMABLE_CHANGES, SPEED_SETTINGS
    ignored = RESUMABLE_CHANGES
    if finished:
        ignored = ignored | SPEED_SETTINGS | set(unread_settings([config], READ_BY))
    if stored is None:
        return "no run yet"
    stored = TrainConfig.from_dict(stored).to_dict()
    wanted = config.to_dict()
    changed = [f"{k}: {stored[k]!r} -> {v!r}" for k, v in wanted.items()
               if stored[k] != v and k not in ignored and not (v is None and k in TrainConfig.RESOLVED_FIELDS)]
    return ", ".join(changed) or None


def _start_as_stored(stored: dict | None, config: TrainConfig) -> TrainConfig:
    """`config` with its init_backbone written as the stored run's (`stored`, its config.json, None: none)
    where the two name one run (`_same_run`): the group reached from another working folder, by another
    path, or moved or copied since."""
    start = None if stored is None else stored.get("init_backbone")
    if start == config.init_backbone or not _same_run(start, config.init_backbone):
        return config
    return dataclasses.replace(config, init_backbone=start)


def _same_run(stored: str | None, wanted: str | None) -> bool:
    """Whether two values of init_backbone name one run: the same folder once symbolic links are resolved,
    or the same run folder in a group of the same name ("runs/g/vanilla", "/home/me/nslviz/runs/g/vanilla",
    "/data/copy/runs/g/vanilla"), as compare_methods' mn_start="vanilla" writes them."""
    if stored is None or wanted is None:
        return stored == wanted
    if Path(stored).is_absolute() and Path(stored).resolve() == Path(wanted).resolve():
        return True
    stored_parts, wanted_parts = Path(os.path.normpath(stored)).parts, Path(wanted).resolve().parts
    last = min(2, len(stored_parts))
    return ".." not in stored_parts[-last:] and stored_parts[-last:] == wanted_parts[-last:]
