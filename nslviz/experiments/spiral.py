"""The spiral toy of MN sec. 4.1 (Fig. 3): a linear classifier finetuned per input on 100 induced
neighbors becomes a non-linear classifier; the neighbors settle on the spiral arms of their own labels
(the paper reads its figure as them gathering at the class boundary; notebook 01 measures which).

`run_spiral(SpiralConfig(...))` trains the MN model and, with the same data, optimiser and steps,
a plain linear classifier; it records the keys (for the trajectories), the decision surface on a
grid and the test predictions at `frames` moments of training. The notebook and
`python -m nslviz spiral` both call it.

Defaults mix the paper and the official spiral code (docs/official-code.md §A.8): a linear classifier
(f = logistic regression 2 -> 1) and S = 100 entries with fixed random 0/1 labels, as both have them;
800 points per class, keys initialised U[-2, 2], one inner step of size 10, Adam lr 1e-3 and batch 32
as the official code has them (the paper gives none of these); the negative *squared* Euclidean
similarity of the official code at the paper's fixed T = 0.1 (the official code learns 1/T from 5).
Our choices: the labels are balanced, half 0 and half 1 (officially independent coin flips), and the
inner step size is learned, as MN's α is (fixed in the official code).
"""
from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._threads import torch_threads
from .._checks import check_choice, check_positive, check_seed
from ..parameters import parameter_list
from ..datasets.toys import spiral_splits
from ..neighborhoods import MetaNeighborhoodsHead
from ..similarity import SIMILARITIES
from ..training.rundir import claimed_run_dir, write_run
from ..training.steps import train_steps


@dataclass(frozen=True)
class SpiralConfig:
    """The settings of `run_spiral`; the defaults are the module docstring's."""
    steps: int = 3000                 # outer (meta) iterations
    entries: int = 100                # S, induced neighbors
    temperature: float = 0.1          # T of MN eq. (5)
    similarity: str = "neg_sq_euclidean"
    inner_steps: int = 1
    inner_step_size: float = 10.0     # α, initial value
    learn_step_size: bool = True
    lr: float = 1e-3
    batch_size: int = 32
    points_per_class: int = 800
    noise: float = 1.0
    seed: int = 0
    frames: int = 30                  # snapshots for the animation
    grid_size: int = 60               # decision surface resolution (grid_size²)
    progress: bool = False

    def __post_init__(self):
        check_positive("steps", self.steps, integer=True, minimum=1)
        check_positive("entries S", self.entries, integer=True, minimum=1)
        check_positive("temperature T", self.temperature)
        check_choice("similarity", self.similarity, SIMILARITIES)
        check_positive("inner_steps", self.inner_steps, integer=True, minimum=1)
        check_positive("inner_step_size", self.inner_step_size)
        check_positive("lr", self.lr)
        check_positive("batch_size", self.batch_size, integer=True, minimum=1)
        check_positive("points_per_class", self.points_per_class, integer=True, minimum=1)
        check_positive("noise", self.noise, minimum=0)
        check_positive("frames", self.frames, integer=True, minimum=1)
        check_positive("grid_size", self.grid_size, integer=True, minimum=2)
        check_seed(self.seed)


@dataclass
class SpiralResult:
    """What `run_spiral` returns: the data, the snapshots (F of them) of the MN model and the final plain
    linear classifier, as numpy arrays for the figures of nslviz.viz.spiral."""
    config: SpiralConfig
    x_train: np.ndarray               # (N, 2)
    y_train: np.ndarray               # (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    entry_labels: np.ndarray          # (S,) fixed 0/1 value of every induced neighbor
    frame_steps: np.ndarray           # (F,) iteration of every snapshot
    keys: np.ndarray                  # (F, S, 2) neighbor positions at every snapshot
    grid_x: np.ndarray                # (G,) grid coordinates of the decision surface
    grid_y: np.ndarray                # (G,)
    mn_grid_prob: np.ndarray          # (F, G, G) P(class 1) of the MN model over the grid
    mn_test_pred: np.ndarray          # (F, N_test) MN test predictions at every snapshot
    linear_grid_prob: np.ndarray      # (G, G) P(class 1) of the plain linear classifier
    linear_test_pred: np.ndarray      # (N_test,)
    history: list[dict] = field(default_factory=list)   # loss / accuracy at every snapshot
    mn_test_acc: float = 0.0
    mn_train_acc: float = 0.0
    linear_test_acc: float = 0.0
    linear_train_acc: float = 0.0
    learned_step_size: float = 0.0
    seconds: float = 0.0

    def summary(self) -> dict:
        c = self.config
        return {"mn_test_acc": self.mn_test_acc, "mn_train_acc": self.mn_train_acc,
                "linear_test_acc": self.linear_test_acc, "linear_train_acc": self.linear_train_acc,
                "steps": c.steps, "entries": c.entries, "temperature": c.temperature, "seed": c.seed,
                "similarity": c.similarity, "learned_step_size": self.learned_step_size,
                "seconds": round(self.seconds, 3)}


def build_spiral_model(config: SpiralConfig, generator: torch.Generator) -> MetaNeighborhoodsHead:
    """Logistic regression f(x) = wᵀx + b finetuned on S induced neighbors (MN eq. 1)."""
    initial_keys = torch.rand(config.entries, 2, generator=generator) * 4 - 2       # U[-2, 2]
    return MetaNeighborhoodsHead(2, 1, entries=config.entries, similarity=config.similarity,
                                 temperature=config.temperature, classifier="dot", values="fixed",
                                 loss="binary_cross_entropy", inner_steps=config.inner_steps,
                                 step_size_init=config.inner_step_size,
                                 learn_step_size=config.learn_step_size, initial_keys=initial_keys)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float(((logits[:, 0] > 0).long() == labels).float().mean())


def _bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: SpiralConfig,
           generator: torch.Generator, snapshot, desc: str) -> None:
    """Adam on the binary cross-entropy of `model(x)`; calls snapshot(step, loss) `frames` times."""
    train_steps(model, x, y, _bce, steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                generator=generator, snapshot=snapshot, progress=config.progress, desc=desc,
                snapshot_steps=np.linspace(0, config.steps, config.frames).round().astype(int).tolist())


def _linear_baseline(config: SpiralConfig, x_train: torch.Tensor, y_train: torch.Tensor) -> nn.Linear:
    """The plain logistic regression f(x) = wᵀx + b, trained like the MN model (same data, optimiser,
    steps and batch size; its batches are drawn alike, not the same ones). It draws from a generator of
    its own, seeded alike, so it is the same model whatever T and S the MN model has (the dictionary's
    initial keys, S × 2 draws, would otherwise shift its batches with S); it is trained once per
    setting and reused (the notebook's sliders train many (T, S) pairs)."""
    key = dataclasses.replace(config, entries=1, temperature=1.0, similarity="neg_sq_euclidean", inner_steps=1,
                              inner_step_size=1.0, learn_step_size=True, frames=1, progress=False)
    if key not in _LINEAR_BASELINES:
        generator = torch.Generator().manual_seed(config.seed)
        linear = nn.Linear(2, 1)
        nn.init.xavier_uniform_(linear.weight, generator=generator)
        nn.init.zeros_(linear.bias)
        _train(linear, x_train, y_train, config, generator, lambda step, loss: None, "linear")
        _LINEAR_BASELINES[key] = linear.eval().requires_grad_(False)
    return _LINEAR_BASELINES[key]


_LINEAR_BASELINES: dict[SpiralConfig, nn.Linear] = {}     # the fields that matter to the baseline -> model


def run_spiral(config: SpiralConfig | None = None, *, run_dir: str | Path | None = None,
               overwrite: bool = False, **overrides) -> SpiralResult:
    """Train MN and the plain linear classifier on the spirals; return everything the figures need.
    `overrides` replace fields of `config` (e.g. run_spiral(steps=500)). With `run_dir`, writes
    config.json, metrics.jsonl and summary.json there, holding its lock meanwhile; a folder that holds
    another run, or that another process holds, is an error (before training) unless `overwrite`
    (which replaces a run, not another process's lock)."""
    config = dataclasses.replace(config or SpiralConfig(), **overrides)
    with claimed_run_dir(run_dir, overwrite=overwrite, one_shot=True), torch_threads(1):   # tiny tensors: one thread is fastest
        return _run_spiral(config, run_dir)


def _run_spiral(config: SpiralConfig, run_dir) -> SpiralResult:
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    x_train, y_train, x_test, y_test = spiral_splits(config.points_per_class, noise=config.noise,
                                                     seed=config.seed)
    lo, hi = float(min(x_train.min(), x_test.min())) - 0.3, float(max(x_train.max(), x_test.max())) + 0.3
    axis = torch.linspace(lo, hi, config.grid_size)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)   # (G², 2)

    model = build_spiral_model(config, generator)
    frames: dict[str, list] = {"step": [], "keys": [], "grid": [], "pred": []}
    history: list[dict] = []

    def record(step: int, loss: float) -> None:
        model.eval()
        with torch.no_grad():
            test_logits = model(x_test)
            frames["step"].append(step)
            frames["keys"].append(model.dictionary.keys.detach().clone().numpy())
            frames["grid"].append(torch.sigmoid(model(grid)[:, 0]).reshape(config.grid_size, -1).numpy())
            frames["pred"].append((test_logits[:, 0] > 0).long().numpy())
            history.append({"step": step, "train_loss": None if step == 0 else loss,   # no batch before step 1
                            "test_acc": _accuracy(test_logits, y_test)})                # (JSON has no NaN)
        model.train()

    _train(model, x_train, y_train, config, generator, record, "meta-neighborhoods")

    linear = _linear_baseline(config, x_train, y_train)

    with torch.no_grad():
        model.eval()
        linear_grid = torch.sigmoid(linear(grid)[:, 0]).reshape(config.grid_size, -1).numpy()
        result = SpiralResult(
            config=config, x_train=x_train.numpy(), y_train=y_train.numpy(), x_test=x_test.numpy(),
            y_test=y_test.numpy(), entry_labels=model.dictionary.values[:, 0].long().numpy(),
            frame_steps=np.array(frames["step"]), keys=np.stack(frames["keys"]),
            grid_x=axis.numpy(), grid_y=axis.numpy(), mn_grid_prob=np.stack(frames["grid"]),
            mn_test_pred=np.stack(frames["pred"]), linear_grid_prob=linear_grid,
            linear_test_pred=(linear(x_test)[:, 0] > 0).long().numpy(), history=history,
            mn_test_acc=_accuracy(model(x_test), y_test), mn_train_acc=_accuracy(model(x_train), y_train),
            linear_test_acc=_accuracy(linear(x_test), y_test),
            linear_train_acc=_accuracy(linear(x_train), y_train),
            learned_step_size=float(model.inner_step_size.abs()))
    result.seconds = time.perf_counter() - start
    if run_dir is not None:
        write_run(run_dir, dataclasses.asdict(config), history, result.summary())
    return result


@functools.lru_cache(maxsize=64)
def cached_spiral(temperature: float, entries: int, steps: int = 3000, seed: int = 0) -> SpiralResult:
    """run_spiral for one (T, S), memoised: the notebook's sliders revisit the same values."""
    return run_spiral(SpiralConfig(temperature=temperature, entries=entries, steps=steps, seed=seed,
                                   frames=2))


def spiral_sweep(temperatures, entries, steps: int = 3000, seed: int = 0, progress: bool = True):
    """The final decision surface and test accuracy for every (T, S) pair: {(T, S): SpiralResult}."""
    temperatures = parameter_list("temperatures", temperatures, float)
    entries = parameter_list("entries", entries, int)
    for t in temperatures:
        check_positive("temperature T", t)
    for s in entries:
        check_positive("entries S", s, integer=True, minimum=1)
    pairs = [(t, s) for t in temperatures for s in entries]
    return {pair: cached_spiral(*pair, steps=steps, seed=seed)
            for pair in tqdm(pairs, desc="T x S sweep", disable=not progress)}
