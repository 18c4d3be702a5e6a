"""Generated toy data: the concentric spirals of MN sec. 4.1 (Fig. 3)."""
from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_positive


def make_spiral(points_per_class: int = 800, *, noise: float = 1.0, turn_degrees: float = 780.0,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved spirals, as in the official MN spiral code.

    For class 0, with u ~ U[0, 1): n = √u · turn (in radians), x = (-cos(n)·n + ε₁, sin(n)·n + ε₂),
    ε ~ noise · U[0, 1); class 1 is the same construction negated. Returns unstandardised points
    (2·points_per_class, 2) float32 and labels (2·points_per_class,) int64 in {0, 1}.
    """
    check_positive("points_per_class", points_per_class, integer=True, minimum=1)
    check_positive("noise", noise, minimum=0)
    check_positive("turn_degrees", turn_degrees)
    rng = np.random.default_rng(seed)

    def arm() -> np.ndarray:
        n = np.sqrt(rng.random(points_per_class)) * math.radians(turn_degrees)
        return np.stack([-np.cos(n) * n + noise * rng.random(points_per_class),
                         np.sin(n) * n + noise * rng.random(points_per_class)], axis=1)

    points = np.concatenate([arm(), -arm()])
    labels = np.concatenate([np.zeros(points_per_class), np.ones(points_per_class)])
    return torch.tensor(points, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64)


def spiral_splits(points_per_class: int = 800, *, noise: float = 1.0, seed: int = 0):
    """Train and test spirals from independent seeds (seed, seed + 1), both standardised with the
    training set's global mean and standard deviation (one scalar each, as officially coded).
    Returns (x_train, y_train, x_test, y_test)."""
    x_train, y_train = make_spiral(points_per_class, noise=noise, seed=seed)
    x_test, y_test = make_spiral(points_per_class, noise=noise, seed=seed + 1)
    mean, std = x_train.mean(), x_train.std()
    return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test
