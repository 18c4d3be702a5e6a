"""MN's head alone on fixed features: is it the layer or the data?

On `digits` the paper's randomly initialised dictionary stays noise when it is trained with the
backbone, and MN ties vanilla (RESULTS.md). This module takes the backbone out. `compare_heads` trains,
on the same batches of given features, two heads:

    vanilla   the cosine classifier of the image models (one prototype per class)
    MN        the image models' MN head (`models.classifier.build_mn_head`: the paper's settings,
              random keys, T = 0.2 by default, 50 % entry dropout, learnable soft values and α)

and records on the test features, every `eval_every` steps: both accuracies, MN's classifier before
finetuning, the dictionary read alone (the attended values Σ_j ω_ij v_j, a soft kNN), the attention
entropy and α. Two sources of features:

    run_clusters            classes made of several clusters (`datasets.toys.make_clusters`): one
                            prototype per class cannot fit them, so MN can only win if its
                            dictionary learns; with one cluster per class both heads fit
    frozen_feature_heads    the features of a trained run's backbone (e.g. vanilla on digits)

`sweep_clusters("entries", [6, 24, 100])` trains the two heads once per value of S or T on the same
clusters: MN appendix A.4's ablation (Fig. 8) on features where it runs in seconds.

Adam, lr 1e-3 (the official AdamW leaves the whole head out of weight decay, so for a head alone it is
Adam), batch 64. Seeded: the same seed gives the same numbers on CPU.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_choice, check_features, check_finite, check_flags, check_positive, check_seed
from .._memory import check_memory
from .._modes import eval_mode
from .._threads import torch_threads
from ..datasets.toys import cluster_splits
from ..models.classifier import CosineClassifier, build_mn_head
from ..neighborhoods import DICTIONARY_SUMS, dictionary_sums, head_memory
from ..analysis.neighbors import load_run_features
from ..training.data import derived_seed
from ..training.distributed import resolve_device
from ..training.steps import train_steps

VANILLA_STREAM = 0x7A                 # derived_seed(seed, VANILLA_STREAM): the vanilla head's starting weights


@dataclass(frozen=True)
class HeadTraining:
    """How `compare_heads` trains the two heads."""
    entries: int = 200                # S (the digits runs' S)
    temperature: float = 0.2          # T of MN's attention (the paper's)
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    eval_every: int = 100
    seed: int = 0
    progress: bool = False

    def __post_init__(self):
        for name in ("entries", "steps", "batch_size", "eval_every"):
            check_positive(name, getattr(self, name), integer=True, minimum=1)
        check_positive("lr", self.lr)
        check_positive("temperature", self.temperature)
        check_seed(self.seed)
        check_flags(progress=self.progress)


@dataclass
class HeadsResult:
    training: HeadTraining
    data: dict                                           # what the features were (source, sizes, ...)
    history: list[dict] = field(default_factory=list)    # one row per evaluation, see compare_heads
    seconds: float = 0.0

    @property
    def final(self) -> dict:
        return self.history[-1]

    def summary(self) -> dict:
        t = self.training
        return {**{k: v for k, v in self.final.items() if k != "step"}, **self.data, "entries": t.entries,
                "temperature": t.temperature, "steps": t.steps, "batch_size": t.batch_size, "seed": t.seed,
                "seconds": round(self.seconds, 3)}


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


@torch.no_grad()
def _evaluate_mn(mn: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    with eval_mode(mn):
        details = mn(x, return_details=True)
    means = dict(zip(DICTIONARY_SUMS, (dictionary_sums(details, mn.dictionary.values, y) / len(y)).tolist()))
    return {"mn_acc": means["acc"], "mn_acc_before_finetune": means["acc_before_finetune"],
            "attended_value_acc": means["attended_value_acc"], "attention_entropy": means["attention_entropy"],
            "step_size": float(mn.inner_step_size.abs().mean())}


@torch.no_grad()
def _evaluate_vanilla(vanilla: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    return {"vanilla_acc": _accuracy(vanilla(x), y)}


HISTORY_KEYS = ("step", "vanilla_acc", "mn_acc", "mn_acc_before_finetune", "attended_value_acc",
                "attention_entropy", "step_size")


def _check_split(name: str, x, y, width: int | None) -> None:
    """x: finite float (N, d) (d = `width` when given); y: int64 (N,)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"expected {name} features as a tensor of shape (N, d) with N >= 1, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if width is not None:
        check_features(f"{name} features", x, width)
    check_finite(f"{name} features", x)
    if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],) or y.dtype != torch.int64:
        raise ValueError(f"expected {name} labels as an int64 tensor of shape ({x.shape[0]},), got "
                         f"{getattr(y, 'dtype', type(y).__name__)} of shape {tuple(getattr(y, 'shape', ()))}")


def compare_heads(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                  training: HeadTraining | None = None, *, classes: int | None = None, data: dict | None = None,
                  **overrides) -> HeadsResult:
    """Train vanilla's cosine classifier and MN's head on features x (N, d) with labels y (N,) in
    [0, classes); `overrides` replace fields of `training`. history rows (test set): step, vanilla_acc,
    mn_acc, mn_acc_before_finetune, attended_value_acc, attention_entropy (nats; log S is uniform
    attention) and step_size |α|, at step 0, every `eval_every` steps and at the last step."""
    training = dataclasses.replace(training or HeadTraining(), **overrides)
    _check_split("training", x_train, y_train, None)
    _check_split("test", x_test, y_test, x_train.shape[1])
    classes = int(max(y_train.max(), y_test.max())) + 1 if classes is None else classes
    check_positive("classes", classes, integer=True, minimum=2)
    if int(min(y_train.min(), y_test.min())) < 0 or int(max(y_train.max(), y_test.max())) >= classes:
        raise ValueError(f"labels must lie in [0, {classes - 1}], got [{int(min(y_train.min(), y_test.min()))}, "
                         f"{int(max(y_train.max(), y_test.max()))}]")
    data = {"source": "features", "dim": int(x_train.shape[1]), "classes": classes,
            "train_size": len(y_train), "test_size": len(y_test), **(data or {})}
    batch = max(training.batch_size, len(y_test))                # the test set is evaluated in one batch
    check_memory(f"MN's head on {batch} features of width {x_train.shape[1]} with {classes} classes and "
                 f"{training.entries} entries", head_memory(batch, x_train.shape[1], classes, training.entries),
                 "use fewer classes, entries or test features")
    missing = sorted(set(range(classes)) - set(y_train.tolist()))
    if missing:                                          # a head that never saw a class cannot be compared on it
        raise ValueError(f"the training split has no example of class(es) {missing[:10]} of {classes} "
                         f"({len(y_train)} examples); give more training examples (train_size, CLI --train-size)")
    with torch_threads(1):        # small tensors: intra-op threads only add overhead
        start = time.perf_counter()
        history = _train_heads(x_train.float(), y_train, x_test.float(), y_test, classes, training)
    return HeadsResult(training, data, history, time.perf_counter() - start)


def _train_heads(x_train, y_train, x_test, y_test, classes: int, training: HeadTraining) -> list[dict]:
    """Each head in turn on the same batches (the same generator seed); rows merged by step."""
    evaluate_at = sorted({0, training.steps, *range(training.eval_every, training.steps, training.eval_every)})
    rows = {step: {"step": step} for step in evaluate_at}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(training.seed)
        mn = build_mn_head(x_train.shape[1], classes, entries=training.entries, temperature=training.temperature)
        torch.manual_seed(derived_seed(training.seed, VANILLA_STREAM))     # vanilla's start: the same for every S, T
        vanilla = CosineClassifier(x_train.shape[1], classes)
        for model, evaluate, desc in ((mn, _evaluate_mn, "MN head"), (vanilla, _evaluate_vanilla, "vanilla head")):
            train_steps(model, x_train, y_train, F.cross_entropy, steps=training.steps,
                        batch_size=training.batch_size, lr=training.lr,
                        generator=torch.Generator().manual_seed(training.seed), snapshot_steps=evaluate_at,
                        snapshot=lambda step, _: rows[step].update(evaluate(model, x_test, y_test)),
                        progress=training.progress, desc=desc)
    return [{key: row[key] for key in HISTORY_KEYS} for row in rows.values()]


def run_clusters(training: HeadTraining | None = None, *, classes: int = 4, clusters_per_class: int = 6,
                 dim: int = 16, noise: float = 0.15, train_size: int = 4000, test_size: int = 2000,
                 **overrides) -> HeadsResult:
    """`compare_heads` on `datasets.toys.cluster_splits` (the split drawn from the training seed):
    `classes` classes of `clusters_per_class` clusters each in R^dim. `overrides` go to HeadTraining."""
    training = dataclasses.replace(training or HeadTraining(), **overrides)
    options = {"classes": classes, "clusters_per_class": clusters_per_class, "dim": dim, "noise": noise}
    splits = cluster_splits(train_size, test_size, seed=training.seed, **options)
    return compare_heads(*splits, training, classes=classes, data={"source": "clusters", **options})


SWEEP_SETTINGS = ("entries", "temperature")      # S and T, MN Fig. 8


def sweep_clusters(setting: str, values, training: HeadTraining | None = None, **options) -> dict:
    """{value: HeadsResult}: `run_clusters` once per value of `setting` (S "entries" or T
    "temperature") on the same clusters, batches and seed. `options` go to run_clusters (cluster
    shape, or HeadTraining fields such as steps). The vanilla head's starting weights have a seed of
    their own, so its curve is the same for every value: the baseline the sweep moves MN against."""
    check_choice("sweep setting", setting, SWEEP_SETTINGS)
    values = list(values)
    if not values or len(set(values)) != len(values):
        raise ValueError(f"a sweep needs distinct values of {setting}, got {values!r}")
    return {value: run_clusters(training, **{**options, setting: value}) for value in values}


def frozen_feature_heads(run_dir, training: HeadTraining | None = None, *, device: str | torch.device = "cpu",
                         feature_batch_size: int = 500, **overrides) -> HeadsResult:
    """Is it the layer or the joint training? Freeze a trained run's backbone (any method; e.g. vanilla
    on digits) and train vanilla's cosine classifier and MN's head, with the paper's randomly
    initialised dictionary, on its training features; evaluated on its test features
    (`compare_heads`, whose HeadTraining `overrides` change, e.g. batch_size). The
    features are extracted on `device` ("auto": CUDA when present) in batches of `feature_batch_size`;
    the heads train on the CPU."""
    _, config, data, (train, test) = load_run_features(run_dir, resolve_device(device), feature_batch_size)
    return compare_heads(train.features.cpu(), train.labels.cpu(), test.features.cpu(), test.labels.cpu(), training,
                         classes=data.num_classes, data={"source": "frozen features", "run_dir": str(run_dir),
                                                         "dataset": config.dataset, "backbone": config.backbone,
                                                         "method": config.method}, **overrides)
