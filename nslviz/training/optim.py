"""Optimiser, parameter groups and learning-rate schedule for every image experiment."""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float, *, decay_everything: bool = False) -> list[dict]:
    """Two groups: decayed (backbone convs, BN γ/β, iFiLM, NSL predictors) and not decayed (the head:
    dictionary keys and values, classifier, scale τ, step size α — the official MN "memory" scope;
    and the static NSL similarity M and kernel-shape scores D_r, which the official NSL code does not
    decay). `decay_everything=True` decays the head too (the NSL recipe's L2 on every weight). The kernels of
    the SphereNet-9 backbone (orthogonality penalty instead of L2) are not decayed either."""
    from ..nsl import undecayed_parameters
    excluded = {id(p) for p in undecayed_parameters(model)}
    if not decay_everything:
        excluded |= {id(p) for p in model.no_weight_decay_parameters()}
    decay = [p for p in model.parameters() if p.requires_grad and id(p) not in excluded]
    no_decay = [p for p in model.parameters() if p.requires_grad and id(p) in excluded]
    groups = [{"params": decay, "weight_decay": weight_decay, "name": "decay"}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "name": "no_decay"})
    return groups


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay, decay_everything=config.decay_everything)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    if config.optimizer == "adam":                       # L2 added to the gradient (official global-NS code)
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                    batches_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Step schedule in iterations: lr x lr_decay at each milestone (stepped once per iteration)."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestone_iterations(batches_per_epoch),
                                                gamma=config.lr_decay)
