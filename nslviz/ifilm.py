"""Instance-wise FiLM (iFiLM) after a BatchNorm, MN eq. (4).

Every modulated BatchNorm l owns a small dictionary M^l = {(k_j, γ_j, β_j)}, j = 1..S_l (S_l = 10).
For the BN output a_i of example i (C channels):

    g_i   = GlobalAvgPool(a_i)                                  query, (C,)
    ω_ij  = softmax_j( t · cos(g_i, k_j) )                      attention over the S_l entries
    γ̂_i  = Σ_j ω_ij γ_j,   β̂_i = Σ_j ω_ij β_j                  MN eq. (4), (C,) each
    out_i = (1 + γ̂_i) ⊙ a_i + β̂_i                             the same affine map at every position

t is a learnable multiplier of the cosine (the inverse temperature 1/T of MN eq. 5; the official
variable `temp`, init 5.0, i.e. T = 0.2). With γ = β = 0 at initialisation the module is exactly
the identity, so adding iFiLM to a network does not change it before training.

Follows the official code (lupalab/Meta-Neighborhoods, `modulate_with_film_dict`):
keys ~ N(0, 0.05²); γ, β = 0; `temp` trainable, init 5, no positivity constraint; residual form
(1 + γ̂)·a + β̂ (the paper writes γ̂·a + β̂); no entry dropout on these dictionaries; all iFiLM
parameters, `temp` included, are weight-decayed (`ifilm_parameters` finds them).

Deviations from the official code (none change the function):
- keys are stored (S_l, C) instead of (C, S_l);
- the query pooling, the cosine, the softmax and the weighted sums run in float32 even under
  bf16/fp16 autocast (the official code is float32 throughout; a float64 model stays float64); the
  result is cast back to the activation's dtype so a bf16 network stays bf16;
- (B, C) activations (BatchNorm1d) are accepted: the query is the activation itself.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import check_positive, check_tensor
from ._precision import autocast_off, full_precision, full_precision_dtype

IFILM_PLACEMENTS = ("none", "all", "last")
KEY_INIT_STD = 0.05


class IFiLM(nn.Module):
    """Instance-wise FiLM, MN eq. (4): (1 + γ̂_i)·a_i + β̂_i with (γ̂_i, β̂_i) read from S_l entries.

    Args:
        channels: C_l, the number of channels of the modulated activation.
        entries: S_l, the dictionary size (paper and official runs: 10).
        temperature_init: initial value (> 0) of the learnable multiplier t of the cosine
            (official `temp` = 5.0, which is 1/T with T = 0.2).

    Input (B, C, H, W) (any memory format, channels_last included) or (B, C); output of the same
    shape, dtype and memory format.
    """

    def __init__(self, channels: int, entries: int = 10, temperature_init: float = 5.0):
        super().__init__()
        check_positive("iFiLM channels", channels, integer=True)
        check_positive("iFiLM entries", entries, integer=True)
        # t = 1/T must start positive (eq. (5)); like the official code, training does not constrain it
        check_positive("iFiLM temperature_init", temperature_init)
        self.channels = channels
        self.entries = entries
        self.keys = nn.Parameter(torch.randn(entries, channels) * KEY_INIT_STD)      # (S, C)
        self.gamma = nn.Parameter(torch.zeros(entries, channels))                     # (S, C)
        self.beta = nn.Parameter(torch.zeros(entries, channels))                      # (S, C)
        self.inverse_temperature = nn.Parameter(torch.tensor(float(temperature_init)))

    def _query(self, activation: torch.Tensor) -> torch.Tensor:
        if activation.dim() == 4:                                  # (B, C, H, W) -> (B, C), fp32 sum
            return activation.mean(dim=(2, 3), dtype=full_precision_dtype(activation.dtype))
        return full_precision(activation)                          # (B, C)

    def _check(self, activation: torch.Tensor) -> None:
        check_tensor("iFiLM activation", activation, f"(batch, {self.channels}, H, W) or (batch, {self.channels})")
        if activation.dim() not in (2, 4) or activation.shape[1] != self.channels:
            raise ValueError(f"iFiLM expected an activation of shape (batch, {self.channels}, H, W) or "
                             f"(batch, {self.channels}), got {tuple(activation.shape)}")
        if not activation.is_floating_point():
            raise ValueError(f"iFiLM activations must be floating point ({self.gamma.dtype}), got {activation.dtype}")
        if full_precision_dtype(activation.dtype) != full_precision_dtype(self.gamma.dtype):   # bf16/fp16 in, fine
            raise ValueError(f"iFiLM activations are {activation.dtype} but the layer computes in "
                             f"{full_precision_dtype(self.gamma.dtype)}; convert the input with "
                             f".to({self.gamma.dtype}) (or the layer with .to({activation.dtype}))")

    def attention(self, activation: torch.Tensor) -> torch.Tensor:
        """ω(g_i, k_j) = softmax_j(t · cos(g_i, k_j)), float32 or float64 (B, S_l); for analysis and figures."""
        self._check(activation)
        with autocast_off(activation.device.type):
            return self._attention(self._query(activation))

    def _attention(self, query: torch.Tensor) -> torch.Tensor:
        # plain matrix products rather than einsum: on a GPU these small layers are bound by the CPU's
        # dispatch of each operation, and einsum adds views and a bmm around every product
        cosine = F.normalize(query, dim=1) @ F.normalize(full_precision(self.keys), dim=1).T      # (B, S)
        return (full_precision(self.inverse_temperature) * cosine).softmax(dim=1)           # (B, S)

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        self._check(activation)
        with autocast_off(activation.device.type):
            weights = self._attention(self._query(activation))                       # (B, S)
            gamma_hat = weights @ full_precision(self.gamma)                         # (B, C)  eq. (4)
            beta_hat = weights @ full_precision(self.beta)                           # (B, C)  eq. (4)
        scale = (1.0 + gamma_hat).to(activation.dtype)
        shift = beta_hat.to(activation.dtype)
        if activation.dim() == 4:
            scale, shift = scale[:, :, None, None], shift[:, :, None, None]          # (B, C, 1, 1)
        return torch.addcmul(shift, activation, scale)             # (1 + γ̂)·a + β̂, one fused kernel

    def extra_repr(self) -> str:
        return f"channels={self.channels}, entries={self.entries}"


def ifilm_modules(model: nn.Module) -> list[IFiLM]:
    """Every IFiLM module inside `model`, in registration order."""
    return [module for module in model.modules() if isinstance(module, IFiLM)]


def ifilm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The keys, γ, β and temperature of every iFiLM in `model` (weight-decayed, as officially)."""
    return [parameter for module in ifilm_modules(model) for parameter in module.parameters()]
