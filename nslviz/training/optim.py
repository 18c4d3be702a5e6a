"""Optimiser, parameter groups and learning-rate schedule for every image experiment; the guarded
optimiser step of every training loop."""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float, *, decay_everything: bool = False) -> list[dict]:
    """Two groups: decayed (backbone convs, BN γ/β, iFiLM, NSL predictors) and not decayed (the head:
    dictionary keys and values, classifier, scale τ, step size α — the official MN "memory" scope;
    and the static NSL similarity M, which the official NSL code does not decay, and the kernel-shape
    scores D_r, which it does not have). `decay_everything=True` decays the head too (the NSL recipe's
    L2 on every weight). The kernels of the SphereNet-9 backbone (orthogonality penalty instead of L2)
    are not decayed either."""
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


def _split_lr(groups: list[dict], chosen: set[int], lr: float, parts) -> list[dict]:
    """Every group split into its parameters in `chosen` (ids) and the rest; `parts` is
    ((name suffix, in chosen, lr factor), ...) in the order the split groups take."""
    split = []
    for group in groups:
        for suffix, inside, factor in parts:
            params = [p for p in group["params"] if (id(p) in chosen) == inside]
            if params:
                split.append({**group, "params": params, "lr": group.get("lr", lr) * factor,
                              "name": group["name"] + suffix})
    return split


def scale_backbone_lr(groups: list[dict], model: nn.Module, lr: float, scale: float) -> list[dict]:
    """Split every group into the backbone's parameters, at learning rate lr × `scale`, and the rest
    at lr: the backbone_lr_scale diagnostic (docs/dictionary-race.md). scale 1 leaves the groups as
    they are. PyTorch's decoupled weight decay is multiplied by the group's lr, so it slows too."""
    if scale == 1:
        return groups
    backbone = {id(p) for p in model.backbone.parameters()}
    return _split_lr(groups, backbone, lr, (("_backbone", True, scale), ("_head", False, 1.0)))


def scale_predictor_lr(groups: list[dict], model: nn.Module, lr: float, scale: float) -> list[dict]:
    """Split every group into the dynamic NSL predictors' parameters, at the group's learning rate ×
    `scale`, and the rest (TrainConfig.predictor_lr_scale). scale 1 leaves the groups as they are."""
    if scale == 1:
        return groups
    from ..nsl import nsl_layers
    predictors = {id(p) for layer in nsl_layers(model).values() if layer.dynamic for p in layer.predictor.parameters()}
    return _split_lr(groups, predictors, lr, (("", False, 1.0), ("_predictor", True, scale)))


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay, decay_everything=config.decay_everything)
    groups = scale_backbone_lr(groups, model, config.lr, config.backbone_lr_scale)
    groups = scale_predictor_lr(groups, model, config.lr, config.predictor_lr_scale)
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


def step_or_diverge(optimizer: torch.optim.Optimizer, where: str | None = None) -> None:
    """optimizer.step(), with the overflow of a learning rate too large for float32 raised as the
    divergence it is. Adam's step lr / (1 - β1^t) is a Python float cast to the parameters' float32:
    --lr 1e38 makes it 1e39, and torch raises "value cannot be converted to type float without
    overflow" from inside the optimiser. FloatingPointError (the CLI exits 1 with the message, as for
    a NaN loss): with `where` ("at step 3") the whole divergence message, without it only what
    happened, for a caller that adds its own (the trainer names its last finite checkpoint)."""
    try:
        optimizer.step()
    except RuntimeError as error:
        if "overflow" not in str(error):
            raise
        rates = sorted({group["lr"] for group in optimizer.param_groups})
        what = f"the optimiser's step overflowed float32 at learning rate {', '.join(f'{lr:g}' for lr in rates)}"
        if where is None:
            raise FloatingPointError(what) from None
        raise FloatingPointError(f"training diverged: {what} {where}; lower the learning rate (lr, CLI --lr)") from None
