"""Generated toy data: the concentric spirals of MN sec. 4.1 (Fig. 3), and classes made of clusters."""
from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_positive, check_seed, offset_seed


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
    check_seed(seed)
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
    x_test, y_test = make_spiral(points_per_class, noise=noise, seed=offset_seed(seed, 1))
    mean, std = x_train.mean(), x_train.std()
    return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test


def make_clusters(size: int, *, classes: int = 4, clusters_per_class: int = 3, dim: int = 16,
                  noise: float = 0.15, seed: int = 0, centers_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features whose classes are unions of clusters: `classes · clusters_per_class` centres drawn
    uniformly on the unit sphere of R^dim (from `centers_seed`, so that splits drawn with different
    `seed`s share them), cluster m belonging to class m mod `classes`; each of the `size` points
    picks a cluster uniformly and adds N(0, noise²) per coordinate. With several clusters per
    class, one prototype per class (a cosine classifier) cannot fit every class, and a classifier
    finetuned per input on its neighbors can. Returns points (size, dim) float32 and labels (size,) int64."""
    check_positive("size", size, integer=True, minimum=1)
    check_positive("classes", classes, integer=True, minimum=2)
    check_positive("clusters_per_class", clusters_per_class, integer=True, minimum=1)
    check_positive("dim", dim, integer=True, minimum=2)
    check_positive("noise", noise, minimum=0)
    check_seed(seed), check_seed(centers_seed, "centers_seed")
    centers = torch.randn(classes * clusters_per_class, dim, generator=torch.Generator().manual_seed(centers_seed))
    centers = centers / centers.norm(dim=1, keepdim=True)
    generator = torch.Generator().manual_seed(seed)
    cluster = torch.randint(0, len(centers), (size,), generator=generator)
    points = centers[cluster] + noise * torch.randn(size, dim, generator=generator)
    return points, cluster % classes


def cluster_splits(train_size: int = 4000, test_size: int = 2000, *, seed: int = 0, **options):
    """Train and test sets of `make_clusters` around the same centres (drawn from `seed`), the points
    from independent seeds. Returns (x_train, y_train, x_test, y_test)."""
    check_seed(seed)
    if "centers_seed" in options:
        raise ValueError("cluster_splits draws the centres from `seed`; centers_seed is not an option here")
    x_train, y_train = make_clusters(train_size, seed=offset_seed(2 * seed, 1), centers_seed=seed, **options)
    x_test, y_test = make_clusters(test_size, seed=offset_seed(2 * seed, 2), centers_seed=seed, **options)
    return x_train, y_train, x_test, y_test
