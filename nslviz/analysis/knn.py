"""k-nearest neighbors as multi-task learning, MN sec. 2.3, checked numerically with MN's own inner loop.

Each query x̃_i is a task T_i whose data are its k nearest training points N(x̃_i). Fitting an
estimator f_i on the task minimises L_{T_i}(f_i) = Σ_j ω_ij L(f_i(x_j), y_j) with ω_ij = 1/k on the
neighborhood and 0 elsewhere. That is MN eq. (1) with the dictionary = the training set and a hard,
uniform attention over the k nearest entries:

  * f_i constant, L = squared error: the optimum is the neighbors' mean, i.e. kNN regression. One
    inner step from any start reaches it exactly: C - α·2(C - ȳ_i) = ȳ_i for α = 1/2.
    `knn_by_finetuning` takes that step with `nslviz.finetune_functional` and equals scikit-learn's
    KNeighborsRegressor to floating-point precision.
  * Classification: a constant probability vector p_i on one-hot targets. With the squared error
    averaged over the C classes (the Brier score / C) the single step at α = C/2 gives the class
    frequencies among the neighbors, i.e. KNeighborsClassifier.predict_proba, and its argmax is the
    majority vote. (Cross-entropy has the same optimum, p_i = the frequencies.)
  * f_i linear, f_i(x) = a_i + b_iᵀ(x - x̃_i): the optimum is local linear regression, a weighted
    least-squares fit on the neighborhood, `local_linear_regression` (batched over queries), and
    gradient steps of the same inner loop (`finetune_on_neighborhoods`) converge to it
    (`linear_finetuning_path`).

MN sec. 2.1 reads the same step as Bayesian inference, with the starting parameters as an empirical
prior. For a constant started at C₀ it is exact: one step with 0 ≤ α < 1/2 (one output) gives

    C₀ - α·2(C₀ - ȳ_i) = (1 - λ) C₀ + λ ȳ_i,   λ = 2α,   ȳ_i = Σ_j ω_ij y_j,

the posterior mean of C under the prior N(C₀, τ²) and the ω-weighted Gaussian likelihood
Π_j N(y_j; C, σ²)^ω_ij, whose weight on the data is λ = τ²/(τ² + σ²) (`step_from_prior`,
`gaussian_posterior_mean`, `prior_to_noise_ratio`). α = 1/2 is a flat prior: kNN.

Meta-Neighborhoods then (i) replaces the constant by a neural f_φ shared across tasks and finetuned
per task, (ii) replaces the hard k-nearest attention by a softmax over a learned dictionary, and
(iii) learns both end to end. All functions are vectorised over queries (no loop over examples).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from .._checks import check_finite, check_positive, is_number
from ..parameters import parameter_list
from ..neighborhoods import finetune_functional, predict_functional


def _as_tensor(array, dtype=torch.float64) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor) else array, dtype=dtype)
    return tensor[:, None] if tensor.dim() == 1 else tensor


def _points(x_train, x_query) -> tuple[torch.Tensor, torch.Tensor]:
    """x_train (N, d) and x_query (Q, d) as float64 tensors (a 1-D array is N points in 1-D),
    finite, of the same width."""
    x_train, x_query = _as_tensor(x_train), _as_tensor(x_query)
    for name, x in (("x_train", x_train), ("x_query", x_query)):
        if x.dim() != 2 or x.shape[0] == 0:
            raise ValueError(f"expected {name} of shape (points, features) with at least one point, got {tuple(x.shape)}")
        check_finite(name, x)
    if x_train.shape[1] != x_query.shape[1]:
        raise ValueError(f"x_train and x_query must have the same number of features, got {x_train.shape[1]} "
                         f"and {x_query.shape[1]}")
    return x_train, x_query


def _targets(y_train, points: int) -> torch.Tensor:
    """y_train (N,) or (N, C), finite, one row per training point."""
    y_train = _as_tensor(y_train)
    if y_train.dim() != 2 or y_train.shape[0] != points:
        raise ValueError(f"expected y_train with one row per training point ({points}), got shape {tuple(y_train.shape)}")
    check_finite("y_train", y_train)
    return y_train


def nearest_neighbors(x_train, x_query, k: int) -> torch.Tensor:
    """Indices (Q, k) of the k nearest training points (Euclidean) of every query, nearest first;
    ties broken by the lower index."""
    return _nearest(*_points(x_train, x_query), k)


def neighborhood_attention(x_train, x_query, k: int) -> torch.Tensor:
    """ω (Q, N): 1/k on each query's k nearest training points, 0 elsewhere: MN sec. 2.3's uniform
    weighting with the training set as dictionary (the T → 0 limit of eq. (5) only for k = 1)."""
    return _attention(*_points(x_train, x_query), k)


# the public functions check their arguments once (_points, _targets); these work on checked tensors

def _nearest(x_train: torch.Tensor, x_query: torch.Tensor, k: int) -> torch.Tensor:
    check_positive("k", k, integer=True, minimum=1)
    if k > x_train.shape[0]:
        raise ValueError(f"k must be <= the number of training points ({x_train.shape[0]}), got {k}")
    distances = torch.cdist(x_query, x_train)                                     # (Q, N)
    return distances.sort(dim=1, stable=True).indices[:, :k]


def _attention(x_train: torch.Tensor, x_query: torch.Tensor, k: int) -> torch.Tensor:
    index = _nearest(x_train, x_query, k)
    weights = torch.zeros(index.shape[0], x_train.shape[0], dtype=torch.float64)
    return weights.scatter_(1, index, 1.0 / k)


def _finetune(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_query: torch.Tensor,
              attention: torch.Tensor, steps: int, step_size: float) -> torch.Tensor:
    check_positive("steps", steps, integer=True, minimum=0)
    params = {name: p.detach() for name, p in model.named_parameters()}
    steps_by_name = {name: torch.tensor(float(step_size), dtype=torch.float64) for name in params}
    with torch.no_grad():
        adapted = finetune_functional(model, params, attention, x_train, y_train, "mse", steps_by_name, steps)
        return predict_functional(model, adapted, x_query)


class ConstantModel(nn.Module):
    """f(x) = c for every x: the estimator behind kNN; c starts at `value` (every output)."""

    def __init__(self, outputs: int = 1, value: float = 0.0):
        super().__init__()
        self.value = nn.Parameter(torch.full((outputs,), float(value), dtype=torch.float64))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.value.expand(inputs.shape[0], -1)


def finetune_on_neighborhoods(model: nn.Module, x_train, y_train, x_query, k: int, *, steps: int = 1,
                              step_size: float = 0.5) -> torch.Tensor:
    """Predictions (Q, C) of `model` after `steps` inner steps of MN eq. (1) per query on its
    neighborhood (squared-error loss, averaged over the C outputs), from the model's parameters:
    φ_i = φ - α ∇_φ Σ_j ω_ij L(f_φ(x_j), y_j), prediction f_{φ_i}(x̃_i). Uses nslviz.finetune_functional."""
    x_train, x_query = _points(x_train, x_query)
    y_train = _targets(y_train, x_train.shape[0])
    return _finetune(model, x_train, y_train, x_query, _attention(x_train, x_query, k), steps, step_size)


def knn_by_finetuning(x_train, y_train, x_query, k: int) -> np.ndarray:
    """kNN regression as one inner step of a constant estimator (α = C/2 for C outputs): (Q,) or (Q, C)."""
    outputs = 1 if np.ndim(y_train) == 1 else np.shape(y_train)[1]
    return step_from_prior(x_train, y_train, x_query, k, prior=0.0, step_size=outputs / 2.0)


def _check_prior(prior) -> None:
    if not (is_number(prior) and math.isfinite(prior)):
        raise ValueError(f"prior must be a finite number (the constant's starting value), got {prior!r}")


def step_from_prior(x_train, y_train, x_query, k: int, prior: float, step_size: float) -> np.ndarray:
    """One inner step (MN eq. 1, squared error averaged over the C outputs) of a constant started at
    `prior` on each query's k neighbors: C₀ - α·(2/C)(C₀ - ȳ_i) = (1 - λ) C₀ + λ ȳ_i with λ = 2α/C.
    Returns (Q,) or (Q, C) like y_train."""
    x_train, x_query = _points(x_train, x_query)
    targets = _targets(y_train, x_train.shape[0])
    _check_prior(prior)
    check_positive("step_size", step_size, minimum=0)
    model = ConstantModel(targets.shape[1], value=prior)
    predictions = _finetune(model, x_train, targets, x_query, _attention(x_train, x_query, k),
                            steps=1, step_size=step_size).numpy()
    return predictions[:, 0] if np.ndim(y_train) == 1 else predictions


def prior_to_noise_ratio(step_size: float, outputs: int = 1) -> float:
    """τ²/σ² = λ / (1 - λ), λ = 2α/C: the prior whose posterior mean one step of size α gives
    (`step_from_prior`). α = C/2 (λ = 1) is a flat prior, τ²/σ² = inf; a larger α overshoots the
    neighbors' mean and is no posterior mean at all."""
    check_positive("outputs", outputs, integer=True, minimum=1)
    weight = 2.0 * step_size / outputs                                            # λ, the data's weight
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"step_size must be in [0, {outputs / 2:g}] (C/2 for C = {outputs} outputs) to be a "
                         f"posterior mean, got {step_size}: a larger step overshoots the neighbors' mean")
    return float("inf") if weight == 1.0 else weight / (1.0 - weight)


def gaussian_posterior_mean(x_train, y_train, x_query, k: int, prior: float, prior_to_noise: float) -> np.ndarray:
    """E[C | neighbors] for a constant C with prior N(prior, τ²) and the ω-weighted likelihood
    Π_j N(y_j; C, σ²)^ω_ij on each query's k neighbors (ω_ij = 1/k): precisions add, so
    (C₀/τ² + ȳ_i/σ²) / (1/τ² + 1/σ²) = (C₀ + r ȳ_i) / (1 + r) with r = τ²/σ² = `prior_to_noise`
    (inf: a flat prior, the neighbors' mean). Returns (Q,) or (Q, C) like y_train."""
    x_train, x_query = _points(x_train, x_query)
    targets = _targets(y_train, x_train.shape[0])
    _check_prior(prior)
    if not prior_to_noise >= 0:
        raise ValueError(f"prior_to_noise (τ²/σ²) must be >= 0, got {prior_to_noise}")
    means = _attention(x_train, x_query, k) @ targets                            # (Q, C) ȳ_i
    weight = 1.0 if prior_to_noise == float("inf") else prior_to_noise / (1.0 + prior_to_noise)
    posterior = ((1.0 - weight) * float(prior) + weight * means).numpy()
    return posterior[:, 0] if np.ndim(y_train) == 1 else posterior


def knn_class_probabilities(x_train, labels, x_query, k: int, classes=None) -> np.ndarray:
    """Class frequencies among the k neighbors (Q, n_classes) as one inner step of a constant
    probability vector (step size classes/2) under the squared error averaged over the classes (the
    Brier score / classes) on one-hot targets. `classes`: the
    label of every column (default: the sorted unique labels)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"expected labels of shape (points,), got {labels.shape}")
    if classes is None:
        classes = np.unique(labels)
    else:
        classes = np.asarray(classes)
        missing = sorted(set(labels.tolist()) - set(classes.tolist()))
        if len(np.unique(classes)) != len(classes) or missing:
            raise ValueError(f"classes must list every label once; got {classes.tolist()}"
                             + (f", without the labels {missing}" if missing else " with repeats"))
    one_hot = (labels[:, None] == classes[None, :]).astype(np.float64)           # (N, n_classes)
    return knn_by_finetuning(x_train, one_hot, x_query, k)


def local_linear_regression(x_train, y_train, x_query, k: int) -> np.ndarray:
    """Local linear regression: for every query the weighted least-squares line through its k
    nearest neighbors (uniform weights), evaluated at the query; one batched lstsq over all queries.
    Needs k >= d + 1 for a unique fit. Returns (Q,) or (Q, C) like y_train."""
    x_train_t, x_query_t = _points(x_train, x_query)
    y_train_t = _targets(y_train, x_train_t.shape[0])
    d = x_train_t.shape[1]
    if k < d + 1:
        raise ValueError(f"local linear regression in {d} dimensions needs k >= {d + 1} neighbors, got k={k}")
    index = _nearest(x_train_t, x_query_t, k)                                     # (Q, k)
    offsets = x_train_t[index] - x_query_t[:, None, :]                            # (Q, k, d) centred on the query
    design = torch.cat([torch.ones_like(offsets[..., :1]), offsets], dim=-1)     # (Q, k, 1 + d)
    solution = torch.linalg.lstsq(design, y_train_t[index]).solution             # (Q, 1 + d, C)
    predictions = solution[:, 0, :].numpy()                                       # a_i: the line at the query
    return predictions[:, 0] if np.ndim(y_train) == 1 else predictions


def linear_finetuning_path(x_train, y_train, x_query, k: int, steps=(1, 10, 100, 1000)) -> dict[int, np.ndarray]:
    """Predictions (Q,) of an affine model f(x) = a + bᵀx (zero init) after `steps` gradient steps of
    MN eq. (1) per query on its neighborhood (the inner loop of `finetune_on_neighborhoods`),
    step size 1/L with L the largest curvature of any query's loss: {steps: (Q,)}. As the steps grow
    this converges to `local_linear_regression` (gradient descent on a convex quadratic)."""
    x_train_t, x_query_t = _points(x_train, x_query)
    y_train_t = _targets(y_train, x_train_t.shape[0])
    steps = parameter_list("steps", steps, int)                                  # one count or several
    attention = _attention(x_train_t, x_query_t, k)                              # (Q, N)
    design = torch.cat([torch.ones_like(x_train_t[:, :1]), x_train_t], dim=1)    # (N, 1 + d)
    hessians = 2.0 * torch.einsum("qn,np,nr->qpr", attention, design, design)    # (Q, 1 + d, 1 + d)
    step_size = 1.0 / float(torch.linalg.eigvalsh(hessians).max())
    model = nn.Linear(x_train_t.shape[1], 1).double()
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    return {n: _finetune(model, x_train_t, y_train_t, x_query_t, attention, n, step_size)[:, 0].numpy()
            for n in steps}
