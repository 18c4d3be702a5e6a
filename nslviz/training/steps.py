"""The one small training loop of the in-memory experiments (the spiral toy, the heads on fixed
features, the one-layer fits of NSL sec. 6, the few-shot networks' pretraining): Adam on `steps`
mini-batches drawn with replacement from tensors already in memory."""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .optim import step_or_diverge


def train_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, steps: int, batch_size: int,
                lr: float, generator: torch.Generator, snapshot_steps: Iterable[int] = (),
                snapshot: Callable[[int, float], None] | None = None, progress: bool = False, desc: str = "",
                cosine: bool = False) -> None:
    """Adam (lr) on loss_fn(model(x[b]), y[b]) for `steps` batches b of `batch_size` indices drawn with
    `generator`; calls snapshot(step, last batch loss) after `step` updates for every step in
    `snapshot_steps` (0 = before training, `steps` = at the end). The same generator seed gives two
    models the same batches. `cosine`: the learning rate decays from lr to 0 over the steps."""
    snapshot_steps = set(snapshot_steps) if snapshot is not None else set()
    outside = sorted(step for step in snapshot_steps if not 0 <= step <= steps)
    if outside:
        raise ValueError(f"snapshot steps {outside} lie outside 0..{steps} (the steps this run trains); "
                         f"expected steps between 0 (before training) and {steps} (the end)")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)   # one kernel per op, not per tensor
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if cosine else None
    running = float("nan")
    with tqdm(total=steps, desc=desc, disable=not progress, leave=False) as bar:   # full when the steps are done
        for step in range(steps + 1):
            if step in snapshot_steps:
                snapshot(step, running)
            if step == steps:
                break
            batch = torch.randint(0, x.shape[0], (batch_size,), generator=generator)
            loss = loss_fn(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            step_or_diverge(optimizer, f"at step {step + 1}")
            if schedule is not None:
                schedule.step()
            running = loss.item()
            bar.update(1)
