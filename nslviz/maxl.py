"""MAXL, meta auxiliary learning (Liu, Davison & Johns, NeurIPS 2019): the baseline of MN Table 1.

A multi-task network learns the primary task (C classes) together with an auxiliary one of ψ·C
classes (hierarchy ψ = 5) whose labels a second network, the label generator h_w, invents: for an
input x of class y, the auxiliary label is a distribution over the ψ sub-classes of y only,

    ŷ(x) = mask_y ⊙ softmax(h_w(x))  renormalised          (B, ψ·C), zero outside y's block

The multi-task network is backbone µ_θ, primary head f (C logits) and auxiliary head g (ψ·C logits).
Every training step, on one batch (x, y):

    1. θ ← θ - lr ∇_θ L_mt(θ, w),   L_mt = L(f(µ(x)), y) + L_focal(g(µ(x)), ŷ(x))     (ŷ held fixed)
    2. θ⁺(w) = θ - lr ∇_θ L_mt(θ, w)                                       one look-ahead step
       w ← w - β ∇_w [ L(f_θ⁺(µ_θ⁺(x)), y) + λ Σ_c p̄_c log p̄_c ],   p̄ = mean over the batch of ŷ

The generator is trained through the look-ahead (a second-order gradient through the whole
network): its labels are good when learning them helps the primary task one step later. The last
term, the negative entropy of the batch's mean auxiliary label (λ = 0.2), keeps the generator from
putting every input of a class into one sub-class. L_focal(p, t) = -Σ_c t_c (1 - p_c)^2 log p_c.

As in the MAXL code: the generator is a second network of the same architecture as the multi-task
network's backbone (its own weights; plain, without iFiLM or NSL) with a two-layer head
(d → d → ψ·C), trained by SGD (lr 1e-3, L2 5e-4) whose lr follows the network's schedule; the
look-ahead step is plain gradient descent at the network's current learning rates; focal loss on the
auxiliary task; λ = 0.2. Departures (docs/maxl.md): the two updates alternate batch by batch, the
generator's on the batch the network has just stepped on (MAXL's code makes a pass of network steps,
then a pass of generator steps); the heads are the trainer's classifiers (cosine or dot), not
two-layer MLPs; the primary task keeps the trainer's cross-entropy; the mask is exactly zero outside
the class's block (the code's is 1e-8); the look-ahead runs in full precision with copies of
BatchNorm's running statistics, so the meta step leaves the network's statistics as step 1 left them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from ._checks import check_positive
from ._precision import autocast_off, full_precision

HIERARCHY = 5                 # ψ: auxiliary classes per primary class (MAXL's recommendation, MN A.2)
ENTROPY_WEIGHT = 0.2          # λ of the generator's entropy term
GENERATOR_LR = 1e-3           # β, the generator's SGD learning rate
GENERATOR_WEIGHT_DECAY = 5e-4
FOCAL_GAMMA = 2.0


def auxiliary_labels(logits: torch.Tensor, labels: torch.Tensor, hierarchy: int) -> torch.Tensor:
    """The generator's labels: softmax of `logits` (B, ψ·C) over the ψ sub-classes of each row's
    class, zero elsewhere; class c owns columns c·ψ .. c·ψ + ψ - 1. Returns (B, ψ·C), rows sum to 1."""
    batch, width = logits.shape
    if width % hierarchy:
        raise ValueError(f"auxiliary logits of width {width} do not split into blocks of hierarchy {hierarchy}; "
                         f"expected hierarchy x classes columns")
    blocks = logits.reshape(batch, width // hierarchy, hierarchy)                  # (B, C, ψ)
    own = blocks[torch.arange(batch, device=logits.device), labels].softmax(-1)    # (B, ψ)
    mask = F.one_hot(labels, width // hierarchy).to(own.dtype).unsqueeze(-1)      # (B, C, 1)
    return (mask * own.unsqueeze(1)).reshape(batch, width)                         # (B, ψ·C)


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Mean over the batch of -Σ_c t_c (1 - p_c)^γ log p_c, p = softmax(logits) (B, K), t (B, K)."""
    log_p = logits.log_softmax(-1)
    return -(targets * (1 - log_p.exp()) ** gamma * log_p).sum(-1).mean()


def negative_entropy_of_mean(labels: torch.Tensor) -> torch.Tensor:
    """Σ_c p̄_c log p̄_c with p̄ the mean of the rows of `labels` (B, K): lowest when the batch's labels
    spread evenly over the K classes."""
    mean = labels.mean(0)                                                           # (K,)
    # 0 log 0 = 0; the clamp keeps the gradient finite where a class has no row in the batch (p̄_c = 0)
    return (mean * mean.clamp_min(torch.finfo(mean.dtype).tiny).log()).sum()


class MAXLHead(nn.Module):
    """The multi-task network's two heads on the backbone's features z (B, d): `forward` gives the
    primary logits (B, C), the ones evaluated; `auxiliary(z)` the auxiliary logits (B, ψ·C)."""

    def __init__(self, primary: nn.Module, auxiliary: nn.Module):
        super().__init__()
        self.primary, self.auxiliary = primary, auxiliary

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.primary(features)


class LabelGenerator(nn.Module):
    """h_w: images (B, ...) and their classes (B,) -> auxiliary labels (B, ψ·C) (`auxiliary_labels`)."""

    def __init__(self, backbone: nn.Module, num_classes: int, hierarchy: int = HIERARCHY):
        super().__init__()
        check_positive("hierarchy", hierarchy, integer=True, minimum=1)
        d = backbone.feature_dim
        self.backbone, self.hierarchy = backbone, hierarchy
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, hierarchy * num_classes))

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return auxiliary_labels(self.head(full_precision(self.backbone(images))), labels, self.hierarchy)


def auxiliary_loss(outputs: dict, targets: torch.Tensor) -> torch.Tensor:
    """L_focal(g, ŷ): the auxiliary head's logits ("aux_logits" of ImageClassifier(..., return_details=True))
    against the generator's labels `targets` (B, ψ·C)."""
    return focal_loss(full_precision(outputs["aux_logits"]), targets)


def multi_task_loss(outputs: dict, labels: torch.Tensor, targets: torch.Tensor, primary_loss) -> torch.Tensor:
    """L_mt = primary_loss(f, y) + L_focal(g, ŷ)."""
    return primary_loss(full_precision(outputs["logits"]), labels) + auxiliary_loss(outputs, targets)


def meta_objective(model: nn.Module, targets: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
                   lr: float | dict[str, float], primary_loss, entropy_weight: float = ENTROPY_WEIGHT) -> torch.Tensor:
    """The generator's loss of step 2: the primary loss after one look-ahead step θ⁺(w) of the
    multi-task `model` on L_mt, plus λ Σ p̄ log p̄. `targets` (B, ψ·C): the generator's labels ŷ of the
    batch, still attached to its weights w; the loss is differentiable in w (through θ⁺, second order);
    the model's own weights and BatchNorm statistics are left as they are. `lr`: one learning rate, or
    one per parameter name (`parameter_rates`). Runs in full precision, also when called under autocast,
    and builds its graph also under no_grad."""
    with torch.enable_grad(), autocast_off(images.device.type):
        return _meta_objective(model, targets, images, labels, lr, primary_loss, entropy_weight)


def parameter_rates(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """{parameter name: its group's learning rate now} for the look-ahead step, so that a backbone
    trained at lr × s (backbone_lr_scale) also looks ahead at lr × s."""
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    return {name: rate[id(p)] for name, p in model.named_parameters() if id(p) in rate}


def _meta_objective(model, targets, images, labels, lr, primary_loss, entropy_weight):
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    rates = lr if isinstance(lr, dict) else dict.fromkeys(params, lr)
    buffers = {name: b.clone() for name, b in model.named_buffers()}               # the look-ahead's own stats
    outputs = functional_call(model, (params, buffers), (images,), {"return_details": True})
    inner = multi_task_loss(outputs, labels, targets, primary_loss)
    grads = torch.autograd.grad(inner, list(params.values()), create_graph=True, allow_unused=True)
    ahead = {name: p if g is None else p - rates[name] * g for (name, p), g in zip(params.items(), grads)}
    logits = functional_call(model, (ahead, buffers), (images,))                   # f_θ⁺(µ_θ⁺(x)), (B, C)
    return primary_loss(full_precision(logits), labels) + entropy_weight * negative_entropy_of_mean(targets)


class LabelGeneratorTraining:
    """The generator, its optimiser and its epoch's running meta loss: what the trainer adds for MAXL.

    labels(images, classes): ŷ of a batch, attached to the generator's weights (step 1 takes it detached);
    meta_step(...): step 2 on the same batch and the same ŷ, with the learning rates scaled by the
    network's schedule (`lr_factor` = its lr now / its base lr). The generator runs once a step."""

    def __init__(self, generator: LabelGenerator, *, lr: float = GENERATOR_LR,
                 weight_decay: float = GENERATOR_WEIGHT_DECAY, entropy_weight: float = ENTROPY_WEIGHT):
        check_positive("generator lr", lr)
        check_positive("entropy_weight", entropy_weight, minimum=0)
        self.generator, self.lr, self.entropy_weight = generator, lr, entropy_weight
        self.optimizer = torch.optim.SGD(generator.parameters(), lr=lr, weight_decay=weight_decay)
        self.loss_sum, self.steps = 0.0, 0

    def labels(self, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad(), autocast_off(images.device.type):
            return self.generator(images, classes)                                  # (B, ψ·C)

    def meta_step(self, model: nn.Module, targets: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
                  network_lr: float | dict[str, float], lr_factor: float, primary_loss) -> float:
        """One SGD step of the generator on `meta_objective` (look-ahead at `network_lr`, one rate or one
        per parameter name) for the batch whose labels `labels()` gave (`targets`); its loss."""
        loss = meta_objective(model, targets, images, labels, network_lr, primary_loss, self.entropy_weight)
        params = list(self.generator.parameters())
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads):
            p.grad = g
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * lr_factor
        self.optimizer.step()
        value = loss.item()
        self.loss_sum, self.steps = self.loss_sum + value, self.steps + 1
        return value

    def epoch_loss(self) -> float:
        """The mean meta loss since the last call (an epoch), and a fresh sum."""
        mean = self.loss_sum / max(self.steps, 1)
        self.loss_sum, self.steps = 0.0, 0
        return mean

    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "optimizer": self.optimizer.state_dict(),
                "loss_sum": self.loss_sum, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.loss_sum, self.steps = state["loss_sum"], state["steps"]
