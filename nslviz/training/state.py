"""What the trainer carries from step to step: where the run stands (`TrainState`, stored in every
checkpoint) and the running sums of the epoch's training batches (`EpochSums`, read as `EpochStats`)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from . import distributed


@dataclass
class TrainState:
    """Where a run stands; checkpoint.pt stores it as the plain dict `as_dict()` under "state"."""
    iteration: int = 0                   # optimiser steps taken
    epoch: int = 0                       # epochs finished
    batch: int = 0                       # batches of the current epoch trained
    best_val_acc: float = -1.0
    best_val_loss: float = math.inf      # breaks ties of best_val_acc (checkpoints before it lack it)
    best_epoch: int = -1                 # 1-based; -1: none yet
    seconds: float = 0.0                 # training time of the earlier sessions of the run
    # Σ loss·n, Σ correct, Σ n of the current epoch so far, over every process (EpochSums.totals)
    epoch_sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    metrics_rows: int = 0                # rows of metrics.jsonl written up to this state
    precision: str | None = None         # trainer.run_setting: what a resumption must match
    world_size: int | None = None
    data: str | None = None              # the splits' fingerprint (ImageDataset.fingerprint)
    threads: int | None = None           # torch's CPU threads of a CPU run: a change is only said

    @classmethod
    def from_dict(cls, stored: dict) -> "TrainState":
        """A checkpoint's "state"; the keys an older checkpoint lacks take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in stored.items() if key in known})

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EpochStats:
    """The training batches of one epoch, over every process."""
    loss: float                          # mean loss (label smoothing included, regularisation not)
    accuracy: float
    count: int                           # examples

    @classmethod
    def from_totals(cls, totals: list[float]) -> "EpochStats":
        """From [Σ loss·n, Σ correct, Σ n]."""
        loss_sum, correct, count = totals
        return cls(loss_sum / max(count, 1), correct / max(count, 1), int(count))


class EpochSums:
    """Σ loss·n, Σ correct and Σ n of an epoch's batches so far: one float64 tensor (3,) on the
    device, added to without a host sync; `totals` reads it summed over every process."""

    def __init__(self, start: list[float], device: torch.device):
        self.values = torch.tensor(start, dtype=torch.float64, device=device)             # (3,)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """loss: the batch's mean loss (); logits (B, C); labels (B,)."""
        count = torch.full((), float(len(labels)), dtype=torch.float64, device=self.values.device)   # no copy
        self.values += torch.stack([loss.detach().double() * len(labels),
                                    (logits.detach().argmax(1) == labels).sum().double(), count])

    def totals(self, context: distributed.Context) -> list[float]:
        """The sums over every process (a collective: every rank calls it)."""
        return context.sum(self.values.tolist())

    def zero(self) -> None:
        self.values.zero_()
