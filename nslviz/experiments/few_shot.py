"""Few-shot learning with neural similarity, NSL sec. 7.2 and Table 6: `run_few_shot(FewShotConfig(...))`.

    1. pretrain  a CNN-4 (`models.cnn`, "cnn4": 4 × 32 3×3 convs, BN, ReLU, 2×2 max-pool), or the CNN-9 of
                 Table 6's last row (`backbone="cnn9"`, the CIFAR network of NSL Tables 4 and 7), with NSL
                 convolutions and a linear classifier on the base classes (the train and val classes,
                 as the appendix does for the non-MAML models), Adam lr 1e-3 (β 0.9 / 0.999). Static
                 NSN: M is fixed to I while pretraining (Appendix A: "We train the whole model from
                 scratch and fix the static similarity matrices to be identity"), so its backbone
                 is a plain CNN's.
    2. episodes  N-way K-shot episodes on the novel (test) classes, `datasets.episodes`.
    3. adapt     method "finetune": `training.few_shot_finetune` (static NSN: M and a new classifier;
                 dynamic NSN and plain CNN: the classifier only; SGD 0.01, momentum 0.9, dampening
                 0.9, weight decay 1e-3, 100 epochs). Method "maml" (static NSN, eq. 7 as the
                 appendix runs it, over M and the classifier):
                 `training.maml` meta-learns (M, classifier) on episodes of the train classes, from
                 the pretrained network, then adapts per test episode (5 steps on M and the
                 classifier at 0.2, 20 on the classifier).
    4. report    the mean query accuracy over episodes ± the 95 % interval, beside Table 6.

Our choices where the paper is silent: pretraining length and batch size (`pretrain_epochs`,
`batch_size`), no augmentation while pretraining, MAML's meta-batch (4 tasks), meta-learning rate
(Adam 1e-3) and length (`meta_iterations`), the 20 classifier-only steps inside meta-training as
well as at test time, MAML started from the network pretrained on the train and
val classes (meta-training itself sees the train classes only), 15 query images per class, a zero-initialised episode
classifier, BatchNorm statistics recomputed under the final pretrained weights and kept during
adaptation. Deterministic in `seed` on CPU: the test episodes depend on the seed only, so runs that
differ in `nsl` or `method` are scored on the same episodes.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._checks import check_choice, check_flags, check_positive, check_seed, offset_seed
from ..datasets.augment import to_float
from ..datasets.episodes import Episodes, check_episodes_fit, mean_confidence_interval, sample_episodes
from ..datasets.images import ImageDataset, ImageSplit, available_few_shot_datasets, load_image_dataset
from ..models import build_backbone
from ..models.layers import count_parameters, reestimate_batch_norm
from ..nsl import similarity_parameters
from ..paths import data_root
from ..training.distributed import check_device_name, resolve_device
from ..training.episodic import FunctionalBackbone, episode_images
from ..training.few_shot_finetune import EpisodeAdaptation, FinetuneProtocol, finetune_episodes
from ..training.maml import InnerLoop, initial_parameters, maml_episodes, meta_train
from ..training.steps import train_steps

FEW_SHOT_NSL = ("none", "static_dns", "dynamic_dns")
FEW_SHOT_METHODS = ("finetune", "maml")
FEW_SHOT_BACKBONES = ("cnn4", "cnn9")     # Table 6: CNN-4 rows, and dynamic NSN on CNN-9


@dataclass(frozen=True)
class FewShotConfig:
    """One few-shot experiment (defaults: the paper's protocol where it gives one, on the embedded glyphs)."""
    dataset: str = "glyphs"           # "mini-imagenet" for Table 6 (see data/README.md)
    nsl: str = "static_dns"           # FEW_SHOT_NSL
    backbone: str = "cnn4"            # FEW_SHOT_BACKBONES
    method: str = "finetune"          # FEW_SHOT_METHODS
    way: int = 5
    shot: int = 5
    query: int = 15                   # query images per class
    episodes: int = 600               # test episodes
    image_size: int | None = None     # None: the dataset's (Mini-ImageNet 84, glyphs 32)
    dataset_options: dict = field(default_factory=dict)   # e.g. glyphs {"num_classes": 100, "per_class": 60}
    data_dir: str | None = None       # None: nslviz.paths.data_root()
    pretrain_epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3                  # Adam, pretraining
    finetune_epochs: int = 100        # test-time SGD epochs (method "finetune")
    meta_iterations: int = 2000       # MAML outer steps (method "maml")
    meta_batch: int = 4               # tasks per outer step
    meta_lr: float = 1e-3
    inner_steps: int = 5
    classifier_steps: int = 20
    inner_step_size: float = 0.2
    first_order: bool = False
    episode_batch: int = 25           # test episodes adapted together (vectorised)
    seed: int = 0
    device: str = "cpu"               # "auto": CUDA when present
    progress: bool = False

    def __post_init__(self):
        check_choice("few-shot dataset", self.dataset, available_few_shot_datasets())
        check_choice("nsl mode for few-shot learning", self.nsl, FEW_SHOT_NSL)
        check_choice("few-shot method", self.method, FEW_SHOT_METHODS)
        check_choice("few-shot backbone", self.backbone, FEW_SHOT_BACKBONES)
        if self.method == "maml" and self.nsl == "dynamic_dns":
            raise ValueError("method 'maml' meta-learns the static similarity M (NSL eq. 7); a dynamic NSN has no "
                             "static M. Use nsl='static_dns' (or 'none': the classifier alone), or method 'finetune'")
        check_positive("way", self.way, integer=True, minimum=2)
        for name in ("shot", "query", "episodes", "batch_size", "meta_batch", "episode_batch"):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("pretrain_epochs", "finetune_epochs", "meta_iterations", "inner_steps", "classifier_steps"):
            check_positive(name, getattr(self, name), integer=True, minimum=0)
        if self.image_size is not None:
            check_positive("image_size", self.image_size, integer=True, minimum=16)
        if not isinstance(self.dataset_options, dict):
            raise ValueError(f"dataset_options must be a dict, got {type(self.dataset_options).__name__}")
        for name in ("lr", "meta_lr", "inner_step_size"):
            check_positive(name, getattr(self, name))
        check_flags(first_order=self.first_order, progress=self.progress)
        check_seed(self.seed)
        check_device_name(self.device)

    @property
    def inner_loop(self) -> InnerLoop:
        return InnerLoop(self.inner_steps, self.classifier_steps, self.inner_step_size, self.first_order)

    @property
    def finetune_protocol(self) -> FinetuneProtocol:
        return FinetuneProtocol(epochs=self.finetune_epochs)


# What quick mode (notebook 10, `few-shot --quick`) runs: 100 generated glyph classes of 30 images at
# 32 px, 3 pretraining epochs, 60 test episodes (enough for intervals of about a point) of 25
# finetuning epochs, 5 MAML steps of 2 tasks, on the CPU, 4 test episodes adapted at once (the same
# numbers as any other count; on a CPU a fifth less time than 10, benchmarks/bench_few_shot.py)
QUICK_FEW_SHOT = dict(dataset="glyphs", dataset_options={"per_class": 30}, data_dir=None, image_size=None, episodes=60,
                      pretrain_epochs=3, finetune_epochs=25, meta_iterations=5, meta_batch=2, episode_batch=4,
                      device="cpu")


QUICK_CAPPED = ("episodes", "pretrain_epochs", "finetune_epochs", "meta_iterations", "meta_batch")


def quick_few_shot_config(config: FewShotConfig) -> FewShotConfig:
    """The same experiment in quick mode (`QUICK_FEW_SHOT`): the N-way K-shot protocol, the networks
    and the methods stay; the data and the device become a CPU's, and the lengths (QUICK_CAPPED) are
    capped at QUICK_FEW_SHOT's (a shorter length asked is kept)."""
    quick = {name: min(value, getattr(config, name)) if name in QUICK_CAPPED else value
             for name, value in QUICK_FEW_SHOT.items()}
    return dataclasses.replace(config, **quick)


@dataclass
class FewShotResult:
    config: FewShotConfig
    accuracies: torch.Tensor           # (episodes,) query accuracy of each test episode
    data: dict                         # the dataset's summary
    parameters: int                    # backbone parameters
    pretrain_history: list[dict]       # step, loss (every ~tenth of pretraining)
    meta_history: list[dict]           # step, meta_loss, query_acc, query_acc_before (method "maml")
    base_accuracy: float               # eval-mode accuracy on (up to 2,000) base training images
    seconds: dict                      # pretrain, meta_train, evaluate
    similarity: dict = field(default_factory=dict)   # static M per layer after adaptation, (episodes, K) each
                                                     # (finetune), or the meta-learned M, (K,) each (maml)

    @property
    def accuracy(self) -> tuple[float, float]:
        """(mean, 95 % half-width) in percent."""
        mean, half = mean_confidence_interval(self.accuracies)
        return 100 * mean, 100 * half

    def summary(self) -> dict:
        from ..paper import nsl_table6_reference
        c = self.config
        mean, half = self.accuracy
        return {"dataset": c.dataset, "nsl": c.nsl, "method": c.method, "way": c.way, "shot": c.shot,
                "query": c.query, "episodes": len(self.accuracies), "accuracy": round(mean, 2),
                "interval95": round(half, 2),            # "paper": Table 6's row (Mini-ImageNet), on any dataset
                "paper": nsl_table6_reference(c.nsl, c.method, c.way, c.shot, c.backbone),
                "backbone": c.backbone, "parameters": self.parameters, "image_size": self.data["image_size"],
                "base_classes": self.data["base_classes"], "base_accuracy": None if math.isnan(self.base_accuracy) else round(100 * self.base_accuracy, 2),
                "pretrain_epochs": c.pretrain_epochs, "finetune_epochs": c.finetune_epochs,
                "meta_iterations": c.meta_iterations if c.method == "maml" else 0, "seed": c.seed,
                "seconds": {key: round(value, 2) for key, value in self.seconds.items()}}


class _FloatImages(nn.Module):
    """uint8 images -> floats in [0, 1] (the data stay uint8 in memory)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return to_float(images)


def load_few_shot_data(config: FewShotConfig) -> ImageDataset:
    """The few-shot set with class-disjoint train / val / test splits."""
    return load_image_dataset(config.dataset, data_root(config.data_dir), image_size=config.image_size,
                              seed=config.seed, options=config.dataset_options or None)


def base_split(data: ImageDataset) -> tuple[ImageSplit, int]:
    """The train and val classes together, labels renumbered 0..B-1: (split, B)."""
    images = torch.cat([data.train.images, data.val.images])
    labels = torch.cat([data.train.labels, data.val.labels])
    classes, labels = torch.unique(labels, return_inverse=True)
    return ImageSplit(images, labels), int(classes.numel())


def build_few_shot_network(config: FewShotConfig, channels: int, image_size: int) -> nn.Module:
    """The CNN-4 or CNN-9 with the configured NSL convolutions (ReLU before the last pool, features flattened)."""
    return build_backbone(config.backbone, in_channels=channels, image_size=image_size, nsl=config.nsl, final_relu=True)


def pretrain(backbone: nn.Module, split: ImageSplit, classes: int, config: FewShotConfig,
             device: torch.device) -> tuple[nn.Linear, list[dict]]:
    """Train backbone + a linear classifier on the base classes with Adam (config.lr) for
    `pretrain_epochs` epochs of `batch_size` images drawn with replacement; static M stays I
    (frozen); then `recompute_batch_norm`. Returns the classifier and the loss every ~tenth of the run."""
    classifier = nn.Linear(backbone.feature_dim, classes)
    model = nn.Sequential(_FloatImages(), backbone, classifier).to(device)
    steps = config.pretrain_epochs * len(split) // config.batch_size
    frozen = similarity_parameters(backbone)
    for parameter in frozen:
        parameter.requires_grad_(False)
    history = []
    try:
        train_steps(model.train(), split.images.to(device), split.labels.to(device), F.cross_entropy, steps=steps,
                    batch_size=config.batch_size, lr=config.lr,
                    generator=torch.Generator().manual_seed(config.seed),
                    snapshot_steps=sorted({steps, *range(0, steps, max(1, steps // 10))}),
                    snapshot=lambda step, loss: history.append({"step": step, "loss": loss}),
                    progress=config.progress, desc="pretraining")
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
    recompute_batch_norm(backbone, split.images, config.batch_size, device)
    return classifier.eval(), history


BATCH_NORM_BATCHES = 50


@torch.no_grad()
def recompute_batch_norm(backbone: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> None:
    """Replace every BatchNorm's running statistics by their average over the first
    BATCH_NORM_BATCHES batches of `images` under the final weights, then set eval mode. The
    running averages lag behind weights that moved fast (a short run, the dynamic predictor's
    output BN), and adaptation uses these statistics."""
    norms = [module for module in backbone.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    reestimate_batch_norm(backbone, norms, (to_float(images[start:start + batch_size].to(device))
                                            for start in range(0, min(len(images), BATCH_NORM_BATCHES * batch_size),
                                                               batch_size)))


@torch.no_grad()
def base_accuracy(backbone: nn.Module, classifier: nn.Module, split: ImageSplit, device: torch.device) -> float:
    """Eval-mode accuracy on up to 2,000 base training images (a check that BatchNorm's running
    statistics serve the network: a collapse shows here as near-chance accuracy)."""
    count = min(2000, len(split))
    logits = torch.cat([classifier(backbone(to_float(split.images[i:i + 250].to(device))))
                        for i in range(0, count, 250)])
    return float((logits.argmax(1).cpu() == split.labels[:count]).float().mean())


@dataclass
class PretrainedNetwork:
    """A CNN-4 or CNN-9 pretrained on the base classes, reusable by several few-shot runs of its nsl mode
    and backbone."""
    backbone: nn.Module
    nsl: str
    history: list[dict]                # step, loss
    base_accuracy: float
    seconds: float
    name: str = "cnn4"                 # the backbone's name (FEW_SHOT_BACKBONES)


def pretrain_network(config: FewShotConfig | None = None, data: ImageDataset | None = None,
                     **overrides) -> PretrainedNetwork:
    """Step 1 alone: build the `config.backbone` network of `config.nsl` and pretrain it on the base
    classes of `data` (train + val classes; loaded from the config when None). Seeded by `config.seed`; `overrides`
    replace config fields."""
    config = dataclasses.replace(config or FewShotConfig(), **overrides)
    device = resolve_device(config.device)
    data = data if data is not None else load_few_shot_data(config)
    base, base_classes = base_split(data)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        backbone = build_few_shot_network(config, data.channels, data.image_size)
        classifier, history = pretrain(backbone, base, base_classes, config, device)
        accuracy = base_accuracy(backbone, classifier, base, device)
    return PretrainedNetwork(backbone.eval(), config.nsl, history, accuracy, time.perf_counter() - start,
                             config.backbone)


def evaluate_episodes(network: FunctionalBackbone, images: torch.Tensor, episodes: Episodes, config: FewShotConfig,
                      adapt) -> tuple[torch.Tensor, dict]:
    """adapt(support, support_labels, query, query_labels) -> (E,) accuracies, or an EpisodeAdaptation,
    chunk by chunk of `episode_batch` episodes. Returns all episodes' accuracies and adapted M (CPU)."""
    device = network.device
    accuracies, similarity = [], {}
    for start in tqdm(range(0, len(episodes), config.episode_batch), desc="episodes", disable=not config.progress,
                      leave=False):
        chunk = episodes.slice(start, start + config.episode_batch)
        outcome = adapt(episode_images(images, chunk.support, device), chunk.support_labels.to(device),
                        episode_images(images, chunk.query, device), chunk.query_labels.to(device))
        if isinstance(outcome, EpisodeAdaptation):
            for name, value in outcome.similarity.items():
                similarity.setdefault(name, []).append(value.cpu())
            outcome = outcome.accuracies
        accuracies.append(outcome.cpu())
    return torch.cat(accuracies), {name: torch.cat(values) for name, values in similarity.items()}


def run_few_shot(config: FewShotConfig | None = None, *, data: ImageDataset | None = None,
                 pretrained: PretrainedNetwork | None = None, **overrides) -> FewShotResult:
    """Pretrain (unless `pretrained` is given: a `pretrain_network` result of this nsl mode, reused
    without change), adapt on the test episodes, report. `data`: the loaded set (else
    `load_few_shot_data`); `overrides` replace config fields.

    A static NSN is pretrained with M fixed to I, so its pretrained network is a plain CNN: it also
    serves nsl="none" (the classifier alone is finetuned), which isolates what finetuning M adds."""
    config = dataclasses.replace(config or FewShotConfig(), **overrides)
    device = resolve_device(config.device)
    data = data if data is not None else load_few_shot_data(config)
    # the episodes must fit the splits: say so now, not after pretraining
    check_episodes_fit(data.test.labels, way=config.way, shot=config.shot, query=config.query,
                       split=f"the test (novel) classes of {config.dataset}")
    if config.method == "maml" and config.meta_iterations:
        check_episodes_fit(data.train.labels, way=config.way, shot=config.shot, query=config.query,
                           split=f"the train classes of {config.dataset} (MAML's tasks)")
    if pretrained is None:
        pretrained = pretrain_network(config, data)
    elif pretrained.nsl != config.nsl and (pretrained.nsl, config.nsl) != ("static_dns", "none"):
        raise ValueError(f"the pretrained network has nsl={pretrained.nsl!r}, the config nsl={config.nsl!r}; "
                         f"pretrain one for {config.nsl!r} with pretrain_network(config, data)")
    if pretrained.name != config.backbone:
        raise ValueError(f"the pretrained network is a {pretrained.name}, the config's backbone {config.backbone!r}; "
                         f"pretrain one with pretrain_network(config, data)")
    seconds = {"pretrain": pretrained.seconds, "meta_train": 0.0, "evaluate": 0.0}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        backbone = pretrained.backbone.to(device).eval()
        network = FunctionalBackbone(backbone, similarity=config.nsl == "static_dns")
        test = sample_episodes(data.test.labels, episodes=config.episodes, way=config.way, shot=config.shot,
                               query=config.query, seed=config.seed)
        meta_history = []
        if config.method == "maml":
            start = time.perf_counter()
            if config.meta_iterations:
                tasks = sample_episodes(data.train.labels, episodes=config.meta_iterations * config.meta_batch,
                                        way=config.way, shot=config.shot, query=config.query,
                                        seed=offset_seed(config.seed, 1))   # another draw than the test's
                init, meta_history = meta_train(network, data.train.images, tasks, meta_batch=config.meta_batch,
                                                lr=config.meta_lr, inner=config.inner_loop, progress=config.progress)
            else:                                      # the inner loop from the pretrained M and a zero classifier
                init = initial_parameters(network, config.way)
            seconds["meta_train"] = time.perf_counter() - start
            meta_similarity = {name: init[name].detach().cpu() for name in network.similarity_names}

            def adapt(*episode):
                return maml_episodes(network, init, *episode, inner=config.inner_loop)
        else:
            def adapt(*episode):
                return finetune_episodes(network, *episode, way=config.way,
                                         adapt_similarity=bool(network.similarity_names),
                                         protocol=config.finetune_protocol)
        start = time.perf_counter()
        accuracies, similarity = evaluate_episodes(network, data.test.images, test, config, adapt)
        seconds["evaluate"] = time.perf_counter() - start
    if config.method == "maml":
        similarity = meta_similarity
    base_classes = int(torch.unique(torch.cat([data.train.labels, data.val.labels])).numel())
    summary = {**data.summary(), "base_classes": base_classes}
    return FewShotResult(config, accuracies, summary, count_parameters(backbone), pretrained.history, meta_history,
                         pretrained.base_accuracy, seconds, similarity)


# notebook 10's runs: name -> (nsl, method). "none" is the static NSN's pretrained network with M fixed
# at I (only the classifier is finetuned); "static_dns_maml" meta-learns static M from that network.
FEW_SHOT_RUNS = {"none": ("none", "finetune"), "static_dns": ("static_dns", "finetune"),
                 "dynamic_dns": ("dynamic_dns", "finetune"), "static_dns_maml": ("static_dns", "maml")}


def _pretrained_nsl(run: str) -> str:
    """The nsl mode of the network a run starts from (a static NSN pretrains as a plain CNN)."""
    return "dynamic_dns" if FEW_SHOT_RUNS[run][0] == "dynamic_dns" else "static_dns"


def pretrain_for_runs(config: FewShotConfig, data: ImageDataset, runs) -> dict[str, PretrainedNetwork]:
    """Step 1 for several named runs (FEW_SHOT_RUNS): each network they need, pretrained once, by nsl mode."""
    runs = list(runs)
    if not runs:
        raise ValueError(f"no few-shot runs given; expected some of {', '.join(FEW_SHOT_RUNS)}")
    for run in runs:
        check_choice("few-shot run", run, tuple(FEW_SHOT_RUNS))
    return {nsl: pretrain_network(config, data, nsl=nsl) for nsl in sorted({_pretrained_nsl(run) for run in runs})}


def run_named(config: FewShotConfig, data: ImageDataset, runs, pretrained: dict[str, PretrainedNetwork]
              ) -> dict[str, FewShotResult]:
    """Steps 2 and 3 for each named run, from the networks of `pretrain_for_runs`: {run: FewShotResult}."""
    results = {}
    for run in runs:
        check_choice("few-shot run", run, tuple(FEW_SHOT_RUNS))
        (nsl, method), source = FEW_SHOT_RUNS[run], _pretrained_nsl(run)
        if source not in pretrained:
            raise ValueError(f"run {run!r} needs a pretrained {source!r} network; pretrain_for_runs "
                             f"was given other runs (it has {', '.join(map(repr, pretrained)) or 'none'})")
        results[run] = run_few_shot(config, data=data, pretrained=pretrained[source], nsl=nsl, method=method)
    return results


__all__ = ["FEW_SHOT_BACKBONES", "FEW_SHOT_METHODS", "FEW_SHOT_NSL", "FEW_SHOT_RUNS", "FewShotConfig", "FewShotResult",
           "PretrainedNetwork", "base_split", "load_few_shot_data", "pretrain", "pretrain_for_runs", "pretrain_network",
           "quick_few_shot_config", "run_few_shot", "run_named"]
