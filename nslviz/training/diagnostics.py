"""Is the dictionary learning while the backbone trains? Numbers read from the optimiser's state.

Adam keeps, for every parameter element, running means of the gradient m and of its square v. After
bias correction (t steps, β₁ = 0.9, β₂ = 0.999)

    m̂ = m / (1 - β₁ᵗ),   v̂ = v / (1 - β₂ᵗ),   signal-to-noise = mean over elements of |m̂| / √v̂

is near 1 when the gradient keeps pointing the same way (a signal) and falls to a floor when it is
zero-mean noise: for independent N(0, σ²) gradients m̂ has variance σ²(1 - β₁)/(1 + β₁), so
E|m̂|/σ = √(2/π · (1 - β₁)/(1 + β₁)) = 0.18 at β₁ = 0.9 (`NOISE_FLOOR`). The trainer logs it for the
dictionary's keys and values of MN runs after every epoch (docs/dictionary-race.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def noise_floor(beta1: float = 0.9) -> float:
    """E|m̂|/√v̂ for zero-mean Gaussian gradients (long run, stationary): √(2/π · (1 - β₁)/(1 + β₁))."""
    return math.sqrt(2 / math.pi * (1 - beta1) / (1 + beta1))


NOISE_FLOOR = noise_floor(0.9)


@torch.no_grad()
def adam_signal_to_noise(optimizer: torch.optim.Optimizer, parameter: nn.Parameter) -> float | None:
    """Mean over the elements of `parameter` of |m̂| / (√v̂ + ε), Adam's bias-corrected moments; None
    when the optimiser is not Adam(W) or has not stepped this parameter yet."""
    state = optimizer.state.get(parameter, {})
    if "exp_avg" not in state or "exp_avg_sq" not in state:
        return None
    group = next(g for g in optimizer.param_groups if any(p is parameter for p in g["params"]))
    beta1, beta2 = group["betas"]
    step = float(state["step"])
    m_hat = state["exp_avg"].float() / (1 - beta1 ** step)                     # same shape as the parameter
    v_hat = state["exp_avg_sq"].float() / (1 - beta2 ** step)
    return float((m_hat.abs() / (v_hat.sqrt() + group["eps"])).mean())


def dictionary_training_state(head: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """For an MN head: the inner step size (mean |α|), the temperature T where it is learned, and the
    signal-to-noise of the keys' and the values' gradients ("keys_snr", "values_snr"; absent for fixed
    values or a non-Adam optimiser)."""
    dictionary = head.dictionary
    values = next((getattr(dictionary, name) for name in ("value_logits", "regression_values")
                   if isinstance(getattr(dictionary, name, None), nn.Parameter)), None)
    result = {"step_size": float(head.inner_step_size.detach().abs().mean())}
    if isinstance(head.attention.log_inverse_temperature, nn.Parameter):
        result["temperature"] = head.attention.temperature
    for name, parameter in (("keys_snr", dictionary.keys), ("values_snr", values)):
        ratio = None if parameter is None else adam_signal_to_noise(optimizer, parameter)
        if ratio is not None:
            result[name] = ratio
    return result
