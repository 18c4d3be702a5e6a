"""The trainer: one loop for every image experiment (MN Table 1/3 methods, NSL networks).

    summary = train(TrainConfig(dataset="cifar100", backbone="resnet29", method="mn_ifilm", epochs=400),
                    run_dir="runs/c100-r29-mn")

writes runs/<name>/{config.json, metrics.jsonl, summary.json, checkpoint.pt, best.pt}. All writes are
atomic. `checkpoint.pt` is written before the first step, every `checkpoint_every` iterations and at
every epoch end; a run killed at any point continues with `resume=True` (CLI `--resume`) and ends
with exactly the numbers of an uninterrupted run: batch order and augmentation are functions of
(seed, epoch, batch) and the global RNG (dropout, dictionary entry dropout) is reseeded from (seed,
rank, iteration) before every step, so nothing random depends on where the run was cut.

Validation after every epoch; the best-on-validation weights (`best.pt`: highest accuracy, ties broken
by the lower validation loss) are the ones tested, on the full test set (the official MN code
averaged a random half). For MN the accuracy before finetuning (the classifier φ itself) is
reported next to the finetuned one.

On GPU: bf16 autocast (the MN head stays float32), channels_last, the split kept on the GPU when it
fits, optional torch.compile; several GPUs with torchrun (DDP).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._modes import eval_mode
from ..datasets.images import ImageDataset
from ..ifilm import IFiLM
from ..maxl import LabelGenerator, LabelGeneratorTraining, auxiliary_loss, parameter_rates
from ..models.classifier import ImageClassifier
from ..models.layers import count_parameters
from ..models.registry import build_backbone
from ..neighborhoods import DICTIONARY_SUMS, dictionary_sums, starting_examples
from ..nsl import nsl_regularization
from ..paths import runs_root
from . import distributed
from .config import TrainConfig, build_model
from .data import BatchStream, batch_stream, derived_seed, load_data
from .diagnostics import dictionary_training_state
from .optim import build_optimizer, build_scheduler, step_or_diverge
from .rundir import (RESTART, DamagedRunFile, RunDirectory, RunDirectoryError, RunDirectoryWarning, atomic_torch_save,
                     claimed_run_dir)
from .state import EpochStats, EpochSums, TrainState

# What evaluate() adds for MN, logged after every epoch as val_<key> (next to the step size and the
# keys'/values' signal-to-noise from training.diagnostics)
MN_VALIDATION_KEYS = ("acc_before_finetune", "attended_value_acc", "attention_entropy", "attention_entropy_fraction",
                      "changed_predictions")

# Top-5 accuracy is measured where tables report it, on label sets of ImageNet's kind (NSL Table 5):
# 100 classes or more (CIFAR-100, Tiny-ImageNet, ImageNet 64×64); below, top-5 is near 100 % and says little
TOP5_MIN_CLASSES = 100

# MAXL's label generator starts from its own stream of the seed
MAXL_SEED_TAG = 0x4D41584C

# Fields that may differ between a run and its resumption: where it reads its data and how often it
# saves, and the device, so that a run cut on one machine can go on on another (its numbers then differ
# in their last bits; a change of autocast precision or process count is refused: run_setting).
# Settings of the arithmetic (compile, channels_last, eval_batch_size, ...) must stay the same, or the
# resumed run would not end with the numbers of an uninterrupted one.
RESUMABLE_CHANGES = {"device", "amp", "checkpoint_every", "data_root", "download", "workers"}
# Settings of speed that change the arithmetic's last bits and nothing a run measures: a finished run
# asked for again with other values is read back as it is (a cut one is not resumed with them).
SPEED_SETTINGS = {"compile", "eval_batch_size", "channels_last"}


def run_title(config: TrainConfig) -> str:
    """What a progress bar calls a run: "convnet4 mn on digits", "cnn9 dynamic_dns on cifar10"."""
    parts = [config.backbone] + ([config.nsl] if config.nsl != "none" else []) \
        + ([config.method] if config.method != "vanilla" or config.nsl == "none" else [])
    return f"{' '.join(parts)} on {config.dataset}"


def default_run_name(config: TrainConfig) -> str:
    parts = [config.dataset, config.backbone, config.method]
    if config.nsl != "none":
        parts.append(config.nsl)
    return "-".join(parts + [f"seed{config.seed}"])


@torch.no_grad()
def initialize_backbone(model: ImageClassifier, run_dir: str | Path, *, head: bool = False) -> None:
    """init_backbone: copy the backbone weights (BatchNorm statistics included) of a finished run's
    best.pt into `model`; the head keeps its fresh initialisation unless `head` (then it is copied
    too: similarity_only, where everything but M stays as loaded). Two-stage experiments: a vanilla
    run's backbone under a new MN head, trained on (joint) or frozen (freeze_backbone). A plain
    backbone also starts an iFiLM one: its iFiLM modules keep their initialisation (γ̂ = β̂ = 0, the
    identity), so the model computes what the plain backbone did."""
    run = RunDirectory(run_dir, create=False)
    if not run.best_path.is_file():
        raise ValueError(f"init_backbone (CLI --init-backbone): no best.pt in {str(run_dir)!r}; expected the run "
                         f"directory of a train() run that finished at least one epoch")
    state = run.load_best(advice=f"train that run again (python -m nslviz train --run-dir {run_dir} --overwrite) "
                                 f"or start from another run's backbone (--init-backbone)")
    backbone = {name.removeprefix("backbone."): value for name, value in state.items() if name.startswith("backbone.")}
    try:
        # what the source run cannot hold keeps its identity start: iFiLM in a model started from a plain
        # backbone, and the similarity (M, D_r, predictors) of an NSL network started from a plain CNN
        # (NSL sec. 4); the kernels match by name
        missing, unexpected = model.backbone.load_state_dict(backbone, strict=False)
        similarity = _similarity_state_names(model.backbone)
        ifilm = tuple(f"{name}." for name, module in model.backbone.named_modules() if isinstance(module, IFiLM))
        plain_source = backbone.keys().isdisjoint(similarity)
        missing = [name for name in missing if not (name.startswith(ifilm) or (plain_source and name in similarity))]
        if missing or unexpected:
            quoted = lambda names: ", ".join(f'"{name}"' for name in names)          # noqa: E731  (PyTorch's wording)
            raise RuntimeError("Error(s) in loading state_dict:\n"
                               + (f"Missing key(s) in state_dict: {quoted(missing)}. " if missing else "")
                               + (f"Unexpected key(s) in state_dict: {quoted(unexpected)}." if unexpected else ""))
        if head:
            model.head.load_state_dict({name.removeprefix("head."): value for name, value in state.items()
                                        if name.startswith("head.")})
    except RuntimeError as error:
        reason = " ".join(line.strip() for line in str(error).splitlines()[1:]) or str(error)
        reason = reason if len(reason) <= 300 else reason[:300] + " …"
        raise ValueError(f"init_backbone: the backbone of {str(run_dir)!r} does not fit this model "
                         f"({model.method}): {reason}; expected a run with the same backbone, image size, channels "
                         f"and iFiLM placement") from None


def _similarity_state_names(backbone: nn.Module) -> set[str]:
    """State-dict names that only a network with NSL layers has: each NSConv2d's similarity, D_r
    scores and predictor (weights and BatchNorm statistics)."""
    from ..nsl import nsl_layers
    layers = nsl_layers(backbone)
    return {name for name in backbone.state_dict()
            if any(name.startswith(f"{layer}.{part}") for layer in layers
                   for part in ("similarity", "shape_scores", "predictor."))}


@torch.no_grad()
def initialize_dictionary(model: ImageClassifier, split, config: TrainConfig, device: torch.device,
                          channels_last: bool = False) -> torch.Tensor:
    """dictionary_init="data": start MN's dictionary at S training images (drawn with a generator
    seeded from config.seed; with replacement only when S exceeds the split): keys = their features
    under the initial backbone, values = their labels. The features are those the first training step
    sees: with batch statistics, or with the running ones when the backbone is frozen (freeze_backbone,
    which trains it in eval mode), though without augmentation or autocast, and in batches of their own;
    BatchNorm running statistics are left untouched. Returns the indices."""
    head = model.head
    count, entries = len(split.labels), head.dictionary.entries
    generator = torch.Generator().manual_seed(derived_seed(config.seed, 0x5EED))
    index = starting_examples(count, entries, generator)
    examples = split.subset(index)
    stream = batch_stream(examples, config.batch_size, shuffle=False, device=device, channels_last=channels_last,
                          workers=config.workers)
    running = [buffer.clone() for buffer in model.buffers()]
    was_training = model.training
    model.train()
    if config.freeze_backbone:
        model.backbone.eval()                                       # as train_epoch runs a frozen backbone
    try:
        features = torch.cat([model.backbone(images).float() for images, _ in stream.epoch(0)])
    finally:                                                        # the running statistics as they were
        for buffer, saved in zip(model.buffers(), running):
            buffer.copy_(saved)
        model.train(was_training)
    head.initialize_from_examples(features, examples.labels.to(device))
    return index


def _autocast(config: TrainConfig, device: torch.device):
    enabled = config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda")
    if not enabled:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def _channels_last(config: TrainConfig, device: torch.device) -> bool:
    if config.channels_last == "auto":
        return device.type == "cuda"
    return bool(config.channels_last)


@torch.no_grad()
def evaluate(model: ImageClassifier, stream: BatchStream, context: distributed.Context | None = None,
             autocast=contextlib.nullcontext) -> dict:
    """Accuracy and mean cross-entropy on a split, and top-5 accuracy with TOP5_MIN_CLASSES classes or
    more. For MN also the MN_VALIDATION_KEYS means of nslviz.neighborhoods.dictionary_sums: the accuracy
    of the classifier before per-input finetuning, the accuracy of the attended values Σ_j ω_ij v_j
    alone (the dictionary read as a soft kNN), the mean attention entropy (log S: uniform; also as a
    fraction of log S) and the share of predictions the finetuning step changes. Sums over all processes under DDP. An empty split
    (val_size 0) measures nothing: its accuracy, loss and MN values are None, its count 0."""
    context = context or distributed.Context(stream.device)
    context.share_buffers(model)                 # under DDP: every process evaluates rank 0's model
    mn = model.is_meta_neighborhoods
    values = model.head.dictionary.values.float() if mn else None
    top5 = model.num_classes >= TOP5_MIN_CLASSES                  # the same on every process under DDP
    # loss, correct, top-5 correct, count, then for MN the dictionary's sums in DICTIONARY_SUMS' order
    sums = torch.zeros(4 + len(DICTIONARY_SUMS), dtype=torch.float64, device=stream.device)
    nothing = torch.zeros(len(DICTIONARY_SUMS), dtype=torch.float64, device=stream.device)
    with eval_mode(model):
        for images, labels in stream.epoch(0):
            with autocast():
                details = model(images, return_details=True)
            logits = details["logits"].float()                                              # (B, classes)
            batch = [F.cross_entropy(logits, labels, reduction="sum"), (logits.argmax(1) == labels).sum(),
                     (logits.topk(5, dim=1).indices == labels[:, None]).any(1).sum() if top5
                     else torch.zeros((), device=sums.device),
                     torch.full((), float(len(labels)), device=sums.device)]          # filled there: no host copy
            sums += torch.cat([torch.stack([value.double() for value in batch]),
                               dictionary_sums(details, values, labels) if mn else nothing])
    loss, correct, top5_correct, count, *dictionary = context.sum(sums.tolist())
    if count == 0:                                      # an empty split (val_size 0): nothing was measured
        return {"acc": None, "loss": None, "count": 0, **({"top5_acc": None} if top5 else {}),
                **({key: None for key in MN_VALIDATION_KEYS} if mn else {})}
    result = {"acc": correct / count, "loss": loss / count, "count": int(count)}
    if top5:
        result["top5_acc"] = top5_correct / count
    if mn:
        means = {key: total / count for key, total in zip(DICTIONARY_SUMS, dictionary)}
        entries = values.shape[0]
        means["attention_entropy_fraction"] = means["attention_entropy"] / math.log(entries) if entries > 1 else 0.0
        result.update({key: means[key] for key in MN_VALIDATION_KEYS})
    return result


def run_setting(config: TrainConfig, device: torch.device, world_size: int, data: ImageDataset | None = None) -> dict:
    """What changes a run's numbers without being a config field: the autocast precision, the
    number of processes, (given `data`) the splits themselves, e.g. files added to or removed from
    a dataset folder, and on the CPU torch's thread count (the order of its float sums). Stored in
    every checkpoint; a resumption must match it, the thread count aside (`_check_same_setting`)."""
    setting = {"precision": "bf16" if _autocast(config, device) is not contextlib.nullcontext else "fp32",
               "world_size": world_size, "threads": torch.get_num_threads() if device.type == "cpu" else None}
    return setting if data is None else {**setting, "data": data.fingerprint()}


def resume_setting_change(run_dir: str | Path, config: TrainConfig) -> str | None:
    """How resuming the checkpoint in `run_dir` here (this machine's device, WORLD_SIZE processes)
    would change its setting ("precision: 'bf16' -> 'fp32'"), or None (no checkpoint, or no change)."""
    checkpoint = RunDirectory(run_dir, create=False).load_checkpoint(map_location="cpu")
    if checkpoint is None:
        return None
    now = run_setting(config, distributed.resolve_device(config.device), distributed.launched_world_size())
    changes = {key: change for key, change in _setting_changes(checkpoint["state"], now).items() if key != "threads"}
    return ", ".join(f"{key}: {before!r} -> {after!r}" for key, (before, after) in changes.items()) or None


def _setting_changes(stored: dict, now: dict) -> dict[str, tuple]:
    """{key: (stored, now)} where a checkpoint's setting differs (checkpoints from before it was
    recorded have none)."""
    return {key: (stored[key], now[key]) for key in now if key in stored and stored[key] != now[key]}


def _check_same_setting(stored: dict, now: dict, run_path: Path) -> None:
    """Resume only under the autocast precision and process count the run started with: either
    changes the numbers, and the promise is that a resumed run ends as an uninterrupted one would.
    Another CPU thread count changes them in the last digits, and a machine may not have the threads
    the run started with: it is said, not refused."""
    for key, (before, after) in _setting_changes(stored, now).items():
        if key == "threads":
            _warn_once(f"the run in {str(run_path)!r} was trained on {before} torch CPU threads and goes on with "
                       f"{after}: the order of float sums changes with the thread count, so its numbers will differ "
                       f"slightly from an uninterrupted run's; torch.set_num_threads({before}) (or OMP_NUM_THREADS="
                       f"{before}) before resuming matches it", stacklevel=5)
            continue
        if key == "data":
            raise SplitsChanged("cannot resume: the dataset's splits differ from those the run started with "
                                f"(fingerprint {before} -> {after}): files were added, removed or renamed in "
                                "its folder, or its labels changed; restore them, or start the run again "
                                "(a new run directory, or overwrite)")
        if key == "precision":                      # the value the run was trained with, not the refused one
            amp = "bf16" if before == "bf16" else "off"
            hint = f"pass --amp {amp} (amp={amp!r}) to match it" + (" on a device with bf16" if amp == "bf16" else "")
        else:
            hint = f"start it with torchrun --nproc_per_node {before}"
        raise RunDirectoryError(f"cannot resume: the run was trained with {key} {before!r} and would go on with "
                                f"{after!r}; {hint}, or start a new run directory")


class SplitsChanged(RunDirectoryError):
    """A cut run cannot resume: its dataset's splits are not those it started with."""


def _check_resumable(stored: TrainConfig, config: TrainConfig) -> None:
    before, now = stored.to_dict(), config.to_dict()
    changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and before[k] != now[k])
    if changed:
        diffs = ", ".join(f"{k}: {before[k]!r} -> {now[k]!r}" for k in changed)
        raise RunDirectoryError(f"cannot resume: the configuration differs from the stored run in {diffs}; "
                                "resume with the same settings or start a new run directory")


def train(config: TrainConfig, run_dir: str | Path | None = None, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, on_iteration: Callable[[int], None] | None = None) -> dict:
    """Train, validate every epoch, test the best-on-validation weights; return the summary dict
    (also written to run_dir/summary.json). `on_iteration(i)` is called after every optimiser step.
    A run directory that already holds a run (a checkpoint or a summary) is never started again by
    accident: that is an error unless `resume` (continue it) or `overwrite` (replace it) is given; the
    replaced run's files are kept in .previous/ until the new run's first epoch ends, and put back if it
    fails before."""
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: resume continues the run in the "
                         "run directory, overwrite replaces it")
    if config.dictionary_warmup and distributed.launched_world_size() > 1:   # before anything is written
        raise ValueError("dictionary_warmup is a single-process diagnostic (it switches the backbone's "
                         "gradients off and on, which DDP does not allow); run it without torchrun")
    if config.method == "maxl" and distributed.launched_world_size() > 1:
        raise ValueError("method maxl trains on one process (its label generator's look-ahead step is not "
                         "distributed); run it without torchrun")
    # one process per run directory: under torchrun rank 0 (the one that writes) holds the lock;
    # the path is checked as given ("" is refused, where Path("") would be the current folder)
    with claimed_run_dir(run_dir if run_dir is not None else runs_root() / default_run_name(config),
                         overwrite=resume or overwrite, resumable=True,
                         lock=distributed.launched_rank() == 0) as run_path:
        context = distributed.setup(config.device)
        try:
            summary = _train(config, run_path, resume, progress, on_iteration, context)
            context.barrier()  # the ranks leave together: no rank tears gloo down while another still uses it
            return summary
        except BaseException as error:
            if context.is_main and not resume:
                _put_previous_run_back(run_path, error)
            raise
        finally:
            distributed.teardown(context)


def _put_previous_run_back(run_path: Path, error: BaseException) -> None:
    """A fresh run that fails before its first epoch ends (an error, Ctrl-C) leaves the run it was
    replacing as it was: its files come back from `.previous/`, and the error says so."""
    if RunDirectory(run_path, create=False).put_previous_run_back():
        error.add_note(f"The previous run in {str(run_path)!r} was kept: its files are back as they were, and "
                       f"this run's, any checkpoint named above included, were deleted.")


def _train(config, run_path, resume, progress, on_iteration, context: distributed.Context) -> dict:
    """Set up (or resume) the run in `run_path`, train its remaining epochs, test it."""
    session = _Session(config, run_path, resume, context)
    epochs = session.config.epochs_for(session.batches)
    bar = tqdm(total=session.iterations, initial=session.state.iteration,
               desc=run_title(session.config),
               disable=not (progress and context.is_main), leave=False)
    while session.state.epoch < epochs:
        stats = session.train_epoch(bar, on_iteration)
        session.end_epoch(stats, bar)
    bar.close()
    return session.finish(epochs)


class _Session:
    """One process's part of a run, from its setup (a fresh run, or a checkpoint resumed) to its test.

    train_epoch: the training batches of one epoch, one optimiser step each -> EpochStats
    end_epoch:   validation, best.pt, the epoch's metrics row and checkpoint
    finish:      the best-on-validation and the last weights tested -> the summary
    """

    def __init__(self, config: TrainConfig, run_path: Path, resume: bool, context: distributed.Context):
        self.started = time.perf_counter()
        self.context, self.run_path = context, run_path
        device = self.device = context.device
        # rank 0 reads (and downloads or caches) the data first, the other ranks then read what it wrote
        if not context.is_main:
            context.barrier()
        self.data = data = load_data(config)
        if context.is_main:
            context.barrier()
        self.config = config = config.resolved(data.paper_augment)
        checkpoint = None
        if resume:
            checkpoint = _resume_checkpoint(run_path)
            _check_resumable(TrainConfig.from_dict(checkpoint["config"]), config)
        self.run = RunDirectory(run_path) if context.is_main else None
        self.model, channels_last = self._build_model(checkpoint is None)
        self.optimizer = build_optimizer(self.model, config)
        self.maxl = self._label_generator() if config.method == "maxl" else None
        self.streams = {"train": self._stream(data.train, True, channels_last),
                        "val": self._stream(data.val, False, channels_last),
                        "test": self._stream(data.test, False, channels_last)}
        self.batches = len(self.streams["train"])
        self.iterations = config.total_iterations(self.batches)
        if config.dictionary_warmup > self.iterations:   # a warm-up that cannot end: the backbone never trains
            raise ValueError(f"dictionary_warmup {config.dictionary_warmup} (CLI --dictionary-warmup) is longer than "
                             f"the whole run of {self.iterations} iterations, so the backbone would never train; give "
                             f"at most {self.iterations}, or freeze_backbone=True (--freeze-backbone true) for a frozen "
                             f"backbone")
        self.scheduler = build_scheduler(self.optimizer, config, self.batches)
        self.state = TrainState()
        setting = run_setting(config, device, context.world_size, data)
        if checkpoint is not None:
            _check_same_setting(checkpoint["state"], setting, run_path)
            _warn_if_finished(run_path)                                  # once the settings are known to fit
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
            self.state = TrainState.from_dict(checkpoint["state"])
            if self.maxl is not None:
                self.maxl.load_state_dict(checkpoint["label_generator"])
        for key, value in setting.items():                               # stored in every checkpoint
            setattr(self.state, key, value)
        if self.run is not None:
            self._prepare_run_directory(resumed=checkpoint is not None)
        self.trained = self._wrapped_model()
        self.autocast = _autocast(config, device)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        # a resumed run continues rank 0's totals of all ranks
        self.sums = EpochSums(self.state.epoch_sums if context.is_main else [0.0, 0.0, 0.0], device)
        self.training_started = time.perf_counter()
        if checkpoint is None:      # iteration 0: a kill at any moment from here leaves a run that --resume continues
            self.save_checkpoint()

    # -- setup ------------------------------------------------------------------------------------

    def _build_model(self, fresh: bool) -> tuple[ImageClassifier, bool]:
        """The model on the device, with the starting weights a fresh run asks for (a resumed one
        loads its checkpoint's instead); and whether it is channels_last."""
        config, device = self.config, self.device
        torch.manual_seed(config.seed)                                   # same initial weights on every rank
        model = build_model(config, self.data.num_classes, self.data.channels, self.data.image_size).to(device)
        channels_last = _channels_last(config, device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if fresh and config.init_backbone is not None:
            initialize_backbone(model, config.init_backbone, head=config.similarity_only)
        if config.freeze_backbone:
            model.backbone.requires_grad_(False)
        if config.similarity_only:                                       # NSL sec. 4: learn only M
            from ..nsl import train_only_similarity
            train_only_similarity(model)
        if fresh and config.dictionary_init == "data" and model.is_meta_neighborhoods:
            initialize_dictionary(model, self.data.train, config, device, channels_last)
        return model, channels_last

    def _label_generator(self) -> LabelGeneratorTraining:
        """MAXL's label generator (the model's backbone, fresh, with its own head) and its optimiser."""
        config, data = self.config, self.data
        torch.manual_seed(derived_seed(config.seed, MAXL_SEED_TAG))
        backbone = build_backbone(config.backbone, in_channels=data.channels, image_size=data.image_size)
        generator = LabelGenerator(backbone, data.num_classes, config.maxl_hierarchy).to(self.device)
        return LabelGeneratorTraining(generator, lr=config.maxl_generator_lr,
                                      entropy_weight=config.maxl_entropy_weight)

    def _stream(self, split, training: bool, channels_last: bool) -> BatchStream:
        config, context = self.config, self.context
        batch_size = config.batch_size if training else config.eval_batch_size * context.world_size
        return batch_stream(split, batch_size, shuffle=training, augment=config.augment if training else "none",
                            device=self.device, seed=config.seed, rank=context.rank, world_size=context.world_size,
                            channels_last=channels_last, workers=config.workers)

    def _prepare_run_directory(self, resumed: bool) -> None:
        """config.json written; a fresh run starts from an empty folder (the files of a run already
        there set aside in .previous/), a resumed one drops the metrics rows written after its checkpoint."""
        run = self.run
        run.remove_stale_temporaries()
        if not resumed:
            run.set_previous_run_aside()
        run.write_config(self.config.to_dict())
        run.write_metrics(run.read_metrics()[: self.state.metrics_rows] if resumed else [])

    def _wrapped_model(self) -> nn.Module:
        """What the training steps call: the model, under DDP with several processes, compiled if asked."""
        trained = self.model
        if self.context.distributed:
            device = self.device
            trained = nn.parallel.DistributedDataParallel(trained, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
        if self.config.compile:
            trained = torch.compile(trained)
        return trained

    # -- one epoch --------------------------------------------------------------------------------

    def train_epoch(self, bar, on_iteration: Callable[[int], None] | None) -> EpochStats:
        """The training batches of the current epoch (from `state.batch` on, when resumed in its
        middle); a checkpoint every `checkpoint_every` iterations."""
        config, model, state = self.config, self.model, self.state
        model.train()
        if config.freeze_backbone:
            model.backbone.eval()                                        # frozen: BatchNorm statistics too
        for images, labels in self.streams["train"].epoch(state.epoch, state.batch):
            logits, loss = self._step(images, labels)
            self.sums.add(loss, logits, labels)
            state.iteration += 1
            state.batch += 1
            bar.update(1)
            if state.iteration % config.checkpoint_every == 0:
                self.save_checkpoint()
            if on_iteration is not None:
                on_iteration(state.iteration)
        return EpochStats.from_totals(self.sums.totals(self.context))

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on loss(f(images), labels) + the NSL penalties (+ MAXL's auxiliary loss, then
        the label generator's step); returns the logits (B, C) and the loss (), both still attached to the graph."""
        config, model, state = self.config, self.model, self.state
        if config.dictionary_warmup and not config.freeze_backbone:
            # warm-up: the backbone's weights get no gradient (AdamW skips them, decay included)
            # for the first dictionary_warmup iterations; BatchNorm keeps using batch statistics
            model.backbone.requires_grad_(state.iteration >= config.dictionary_warmup)
        torch.manual_seed(derived_seed(config.seed, self.context.rank, state.iteration))
        with self.autocast():
            outputs = self.trained(images, return_details=self.maxl is not None)
        logits = outputs["logits"] if self.maxl is not None else outputs        # (B, C)
        loss = self.criterion(logits.float(), labels)
        objective = loss + nsl_regularization(model)       # NSL's penalties on M, global NS's orthogonality
        if self.maxl is not None:                                        # MAXL step 1: the auxiliary task too
            targets = self.maxl.labels(images, labels)                   # ŷ, kept attached for step 2
            objective = objective + auxiliary_loss(outputs, targets.detach())
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if config.clip_value is not None:
            nn.utils.clip_grad_value_(model.parameters(), config.clip_value)
        try:
            step_or_diverge(self.optimizer)
        except FloatingPointError as error:                             # a step too large for float32
            raise _divergence(str(error), state, self.run_path) from None
        if self.maxl is not None:                                        # MAXL step 2: the generator
            self.maxl.meta_step(model, targets, images, labels, parameter_rates(model, self.optimizer),
                                self.schedule_factor(), self.criterion)
        self.scheduler.step()
        return logits, loss

    def schedule_factor(self) -> float:
        """Where the schedule stands, as a factor of every group's starting rate (config.lr × the factor is
        the configured rate now, whatever scales some groups' rates: backbone_lr_scale, predictor_lr_scale)."""
        return self.scheduler.get_last_lr()[0] / self.scheduler.base_lrs[0]

    def end_epoch(self, stats: EpochStats, bar) -> None:
        """Validate; keep the weights in best.pt when they are the best so far; log the epoch's
        metrics row and write the epoch-end checkpoint."""
        state, model = self.state, self.model
        _stop_if_diverged(stats.loss, model, state, self.run_path)
        val = evaluate(model, self.streams["val"], self.context, self.autocast)
        row = {"epoch": state.epoch + 1, "iteration": state.iteration, "lr": self.config.lr * self.schedule_factor(),
               "train_loss": stats.loss, "train_acc": stats.accuracy, "val_acc": val["acc"], "val_loss": val["loss"]}
        for key in MN_VALIDATION_KEYS:                                   # MN only
            if key in val:
                row[f"val_{key}"] = val[key]
        if model.is_meta_neighborhoods:
            row.update(dictionary_training_state(model.head, self.optimizer))
        if self.maxl is not None:
            row["generator_meta_loss"] = self.maxl.epoch_loss()
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc="-" if val["acc"] is None else f"{val['acc']:.3f}")
        if _improves(val, state):
            if val["count"]:                             # without a validation split the last epoch is the best
                state.best_val_acc, state.best_val_loss = val["acc"], val["loss"]
            state.best_epoch = state.epoch + 1
            if self.run is not None:
                atomic_torch_save(self.run.best_path, model.state_dict())
        state.epoch += 1
        state.batch = 0
        self.sums.zero()
        if self.run is not None:
            self.run.append_metrics(row)
            state.metrics_rows += 1
        self.save_checkpoint()
        if self.run is not None:                 # a whole epoch of the new run is saved: the run it replaces goes
            self.run.drop_previous_run()

    def save_checkpoint(self) -> None:
        """Every rank calls it (a collective): the epoch's partial sums of all ranks go to rank 0's file,
        and a non-finite loss stops training before it overwrites the last good checkpoint."""
        totals = self.sums.totals(self.context)
        _stop_if_diverged(totals[0], self.model, self.state, self.run_path)
        if self.run is not None:
            seconds = self.state.seconds + time.perf_counter() - self.training_started
            state = dataclasses.replace(self.state, epoch_sums=totals, seconds=seconds)
            extra = {"label_generator": self.maxl.state_dict()} if self.maxl is not None else {}
            self.run.save_checkpoint({"config": self.config.to_dict(), "model": self.model.state_dict(),
                                      "optimizer": self.optimizer.state_dict(),
                                      "scheduler": self.scheduler.state_dict(), "state": state.as_dict(), **extra})

    # -- finish -----------------------------------------------------------------------------------

    def finish(self, epochs: int) -> dict:
        """Test the best-on-validation weights (and the last ones), write and return the summary."""
        config, context, model, state, device = self.config, self.context, self.model, self.state, self.device
        final_state = {k: v.clone() for k, v in model.state_dict().items()}
        best = RunDirectory(self.run_path, create=False).best_path
        context.barrier()
        if best.exists():
            model.load_state_dict(RunDirectory(self.run_path, create=False).load_best(map_location=device))
        test = evaluate(model, self.streams["test"], context, self.autocast)
        val = evaluate(model, self.streams["val"], context, self.autocast)
        model.load_state_dict(final_state)
        # the last epoch's weights too: on a small validation set the best-on-validation epoch can be a
        # lucky one at the high learning rate (digits: 180 images, one = 0.56 points)
        last = test if state.best_epoch == state.epoch else evaluate(model, self.streams["test"], context,
                                                                      self.autocast)
        summary = {
            "test_acc": test["acc"], "val_acc": val["acc"], "test_loss": test["loss"], "test_count": test["count"],
            "test_acc_last": last["acc"],
            "best_epoch": state.best_epoch, "epochs": epochs, "iterations": state.iteration,
            "seconds": round(state.seconds + time.perf_counter() - self.training_started, 3),
            "run_dir": str(Path(self.run_path).resolve()), "dataset": config.dataset, "backbone": config.backbone,
            "method": config.method, "nsl": config.nsl, "classes": self.data.num_classes, "seed": config.seed,
            "device": str(device),
            "world_size": context.world_size, "parameters": count_parameters(model),
            "parameters_total": sum(p.numel() for p in model.parameters()), "val_count": val["count"],
            "setup_seconds": round(self.training_started - self.started, 3),
        }
        if "top5_acc" in test:
            summary["test_top5_acc"] = test["top5_acc"]
        if self.maxl is not None:                                        # trained alongside, not evaluated
            summary["label_generator_parameters"] = count_parameters(self.maxl.generator)
        if "acc_before_finetune" in test:
            summary["test_acc_before_finetune"] = test["acc_before_finetune"]
            summary["val_acc_before_finetune"] = val["acc_before_finetune"]
            summary["test_acc_last_before_finetune"] = last["acc_before_finetune"]
            summary["test_attended_value_acc"] = test["attended_value_acc"]
        if self.run is not None:
            try:
                finished = self.run.read_summary()
            except DamagedRunFile:       # an unreadable summary is replaced whole
                finished = None
            if finished is not None:     # resumed once finished: tested again, its training time kept
                summary.update({key: finished[key] for key in ("seconds", "setup_seconds") if key in finished})
            self.run.write_summary(summary)
        return summary


def _stop_if_diverged(loss: float, model: nn.Module, state: TrainState, run_path: Path) -> None:
    """Raise once the training loss (a sum or a mean) or a weight is NaN/inf (one host sync; called at
    checkpoints and epoch ends, before anything is written, so the last checkpoint on disk stays a
    finite one)."""
    weights_finite = bool(torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all())
    if math.isfinite(loss) and weights_finite:
        return
    what = f"the training loss became {loss}" if not math.isfinite(loss) else "a weight became NaN or infinite"
    raise _divergence(what, state, run_path)


def _divergence(what: str, state: TrainState, run_path: Path) -> FloatingPointError:
    """The divergence error: what went wrong, where, which checkpoint is the last finite one."""
    checkpoint = Path(run_path) / "checkpoint.pt"
    kept = (f"{str(checkpoint)!r} is the last finite checkpoint" if checkpoint.exists()
            else "no checkpoint had been written yet")
    return FloatingPointError(
        f"training diverged: {what} in epoch {state.epoch + 1} (by iteration {state.iteration}); {kept}. "
        "Lower the learning rate (--lr) or clip the gradients (--clip-value), and start a new run directory")


def _warn_once(message: str, stacklevel: int) -> None:
    """A RunDirectoryWarning about what every process finds alike in the run directory: under torchrun
    only rank 0 gives it, as only rank 0 writes there."""
    if distributed.launched_rank() == 0:
        warnings.warn(message, RunDirectoryWarning, stacklevel=stacklevel)


def _warn_if_finished(run_path: Path) -> None:
    if RunDirectory(run_path, create=False).summary_path.exists():
        _warn_once(f"the run in {str(run_path)!r} has already finished (summary.json): nothing is left to "
                   f"train; it is tested again and summary.json written again (its training time kept)", stacklevel=4)


def _resume_checkpoint(run_path: Path) -> dict:
    """The checkpoint a resumed run continues, after checking that best.pt (which the run tests at its
    end) is readable too: a damaged file is named now, not after the remaining epochs."""
    run = RunDirectory(run_path, create=False)
    restart = (f"start the run again with --overwrite (overwrite=True); best.pt keeps the best epoch's weights but "
               f"not the optimiser's state, so the run cannot continue from it exactly; a new run can start "
               f"from its backbone (--init-backbone {run_path})")
    if run.summary_path.exists():                   # finished: its results stand without a checkpoint
        restart = ("the run has finished, and summary.json and best.pt still hold its results: nothing is left to "
                   "train or resume, so keep them as they are (--overwrite would delete them to train again)")
    checkpoint = run.load_checkpoint(map_location="cpu", advice=restart if run.best_path.exists() else RESTART)
    if checkpoint is None:
        start = ("its best.pt or metrics rows have no checkpoint to continue from: start it again with --overwrite "
                 "(overwrite=True)"
                 if run.has_results_without_checkpoint() else "run without --resume to start")
        raise RunDirectoryError(f"cannot resume: no checkpoint.pt in {str(run_path)!r}; {start}")
    if run.best_path.exists():
        run.load_best(advice="start the run again with --overwrite (overwrite=True): the best epoch's weights, "
                             "which the run tests at its end, are lost")
    return checkpoint


def stored_run_config(run_dir: str | Path) -> dict:
    """The configuration of the run in `run_dir`, which a resumed run continues: config.json or, when
    that is missing or damaged, the copy that every checkpoint holds (with a RunDirectoryWarning;
    train() writes config.json again when it starts)."""
    run = RunDirectory(run_dir, create=False)
    try:
        stored, problem = run.read_config(), "does not exist"
    except DamagedRunFile:
        stored, problem = None, "is damaged"
    source = str(run.config_path)
    if stored is None:
        if not run.checkpoint_path.exists():
            raise RunDirectoryError(f"cannot resume: {source!r} {problem} and there is no checkpoint.pt with a copy "
                                    f"of the configuration; expected the run directory of an earlier run")
        _warn_once(f"{source!r} {problem}; resuming with the copy of the configuration in "
                   f"checkpoint.pt (config.json is written again)", stacklevel=3)
        stored, source = dict(run.load_checkpoint()["config"]), str(run.checkpoint_path)
    try:
        TrainConfig.from_dict(stored)
    except (TypeError, ValueError) as error:
        raise RunDirectoryError(f"cannot resume: the configuration in {source!r} is not that of a train run "
                                f"({error}); expected the run directory of an earlier `train`") from None
    return stored


def _improves(val: dict, state: TrainState) -> bool:
    """Is this validation better than the best so far? Higher accuracy wins (as officially); on a
    tie, the lower loss. Small validation sets (digits: 180 images) tie often, and an early
    high-learning-rate epoch that ties a late, annealed one is usually the worse model."""
    if val["count"] == 0:                 # no validation split (val_size 0): the last model is the one tested
        return True
    return val["acc"] > state.best_val_acc or (val["acc"] == state.best_val_acc and val["loss"] < state.best_val_loss)
