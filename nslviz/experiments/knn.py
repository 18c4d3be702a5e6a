"""Notebook 02's experiments on kNN as multi-task learning (MN sec. 2.3), built on `nslviz.analysis.knn`:

    derivation_checks   the finetuning forms of kNN and local linear regression against scikit-learn's
                        kNN and a per-query linear regression, for several k
    posterior_checks    one step of a constant from a prior against the Gaussian posterior mean (sec. 2.1)
    run_knn_toy         a 1-D noisy curve fitted by kNN, local linear regression, an MLP and MN, and a
                        constant stepped from the prior for several step sizes
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .._checks import check_positive, check_seed, check_threads
from .._threads import torch_threads
from ..parameters import parameter_list
from ..analysis.knn import (gaussian_posterior_mean, knn_by_finetuning, knn_class_probabilities,
                            local_linear_regression, nearest_neighbors, prior_to_noise_ratio, step_from_prior)
from ..training.tabular import build_meta_neighborhoods_mlp, build_mlp, fit_tabular, predict_tabular


def derivation_data(n_train: int = 400, n_query: int = 150, seed: int = 0):
    """2-D inputs with a non-linear target and 3 classes cut from it: (x_train, y_train, labels, x_query)."""
    rng = np.random.default_rng(seed)
    x_train, x_query = rng.normal(size=(n_train, 2)), rng.normal(size=(n_query, 2))
    y_train = np.sin(2 * x_train[:, 0]) + x_train[:, 1] ** 2 + 0.1 * rng.normal(size=n_train)
    labels = np.digitize(y_train, [0.5, 1.5])
    return x_train, y_train, labels, x_query


def derivation_checks(neighbors=(1, 5, 20, 50), seed: int = 0) -> list[dict]:
    """The numbers behind notebook 02: for every k, the largest absolute difference between
      * `knn_by_finetuning` (one inner step of a constant) and KNeighborsRegressor.predict,
      * `knn_class_probabilities` and KNeighborsClassifier.predict_proba (plus how often the
        majority vote, its argmax, agrees with KNeighborsClassifier.predict),
      * `local_linear_regression` (batched) and scikit-learn's LinearRegression fitted on each
        query's neighbors (the reference loops over queries; it is only a check).
    Data: `derivation_data(seed=seed)`."""
    from sklearn.linear_model import LinearRegression
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    x_train, y_train, labels, x_query = derivation_data(seed=seed)
    rows = []
    for k in neighbors:
        regressor = KNeighborsRegressor(n_neighbors=k).fit(x_train, y_train)
        classifier = KNeighborsClassifier(n_neighbors=k).fit(x_train, labels)
        probabilities = knn_class_probabilities(x_train, labels, x_query, k, classifier.classes_)
        row = {"k": k,
               "kNN regression: max |Δ|": float(np.abs(knn_by_finetuning(x_train, y_train, x_query, k)
                                                       - regressor.predict(x_query)).max()),
               "kNN class probabilities: max |Δ|": float(np.abs(probabilities
                                                                - classifier.predict_proba(x_query)).max()),
               "majority vote agrees": float(np.mean(classifier.classes_[probabilities.argmax(1)]
                                                     == classifier.predict(x_query)))}
        if k >= x_train.shape[1] + 1:
            index = nearest_neighbors(x_train, x_query, k).numpy()
            reference = np.array([LinearRegression().fit(x_train[i], y_train[i]).predict(q[None])[0]
                                  for i, q in zip(index, x_query)])
            row["local linear: max |Δ|"] = float(np.abs(local_linear_regression(x_train, y_train, x_query, k)
                                                         - reference).max())
        rows.append(row)
    return rows


def posterior_checks(step_sizes=(0.05, 0.1, 0.25, 0.4, 0.5), k: int = 5, seed: int = 0) -> list[dict]:
    """MN sec. 2.1's Bayesian reading, for a constant: for every step size α, the largest absolute
    difference between one inner step from the prior C₀ (`step_from_prior`, nslviz's inner loop) and the
    posterior mean under N(C₀, τ²) with τ²/σ² = `prior_to_noise_ratio(α)` (`gaussian_posterior_mean`),
    and how far the step moved from the prior towards kNN (λ = 2α). Data: `derivation_data(seed=seed)`,
    C₀ = the mean of its training targets (an empirical prior)."""
    x_train, y_train, _, x_query = derivation_data(seed=seed)
    prior = float(y_train.mean())
    knn = knn_by_finetuning(x_train, y_train, x_query, k)
    towards_knn = knn - prior                                                     # (Q,) the way to kNN
    rows = []
    for alpha in parameter_list("step_sizes", step_sizes, float):
        ratio = prior_to_noise_ratio(alpha)
        step = step_from_prior(x_train, y_train, x_query, k, prior, alpha)
        posterior = gaussian_posterior_mean(x_train, y_train, x_query, k, prior, ratio)
        rows.append({"step size α": alpha, "prior to noise τ²/σ²": ratio,
                     "weight on the neighbors λ": float(np.dot(step - prior, towards_knn) / np.dot(towards_knn,
                                                                                                   towards_knn)),
                     "one step vs posterior mean: max |Δ|": float(np.abs(step - posterior).max())})
    return rows


# ----------------------------------------------------------------------------------------------
# the 1-D toy of notebook 02: kNN, local linear regression and MN on the same noisy curve
# ----------------------------------------------------------------------------------------------

def toy_function(x: np.ndarray) -> np.ndarray:
    """The noiseless curve of the toy: sin(2x) + 0.3x."""
    return np.sin(2.0 * x) + 0.3 * x


QUICK_TEMPERATURES = (0.003, 0.1, 1.0)   # quick mode's thinning of the default grid


@dataclass(frozen=True)
class KnnToyConfig:
    """1-D toy: `points` noisy samples of `toy_function` on [-3, 3] (20% held out for early stopping),
    kNN and local linear regression for every k in `neighbors`, vanilla MLP and MN (`entries` induced
    neighbors, negative squared Euclidean similarity: cosine similarity is meaningless in 1-D) for
    every T in `temperatures`. MN keys start spread uniformly over the data, values U(min y, max y).
    Learning rate 1e-2 (the paper's 1e-3 needs about ten times the epochs on this small toy).
    A constant started at the samples' mean (the empirical prior) and stepped once on its
    `prior_neighbors` nearest samples, for every α in `step_sizes` (in [0, 1/2]; 1/2 is kNN)."""
    points: int = 200
    noise: float = 0.3
    test_points: int = 1000
    grid: int = 241
    neighbors: tuple[int, ...] = (1, 3, 5, 10, 20, 40, 80)
    temperatures: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    step_sizes: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.45, 0.5)
    prior_neighbors: int = 1
    entries: int = 30
    layers: int = 2
    width: int = 32
    lr: float = 1e-2
    batch_size: int = 32
    max_epochs: int = 400
    patience: int = 40
    seed: int = 0
    threads: int | None = 1              # torch CPU threads while training (restored after)
    progress: bool = False

    def __post_init__(self):
        check_positive("points", self.points, integer=True, minimum=10)
        check_positive("noise", self.noise, minimum=0)
        for name, kind in (("neighbors", int), ("temperatures", float), ("step_sizes", float)):   # one value:
            object.__setattr__(self, name, tuple(parameter_list(name, getattr(self, name), kind)))  # a 1-item grid
        for name in ("neighbors", "temperatures", "step_sizes"):
            if not getattr(self, name):
                raise ValueError(f"{name} must hold at least one value, got none")
        for name, k in [("neighbors", k) for k in self.neighbors] + [("prior_neighbors", self.prior_neighbors)]:
            check_positive(f"{name} k", k, integer=True, minimum=1)
            if k > self.points:
                raise ValueError(f"{name} k={k} is more than the {self.points} points of the toy; expected k <= "
                                 f"{self.points}")
        for alpha in self.step_sizes:
            prior_to_noise_ratio(alpha)              # in [0, 1/2]: a posterior mean, or refused by name
        for t in self.temperatures:
            check_positive("temperature T", t)
        check_positive("entries S", self.entries, integer=True, minimum=1)
        for name in ("test_points", "layers", "width", "batch_size", "max_epochs", "patience"):
            check_positive(name, getattr(self, name), integer=True, minimum=1)
        check_positive("grid", self.grid, integer=True, minimum=2)
        check_positive("lr", self.lr)
        check_seed(self.seed)
        if self.threads is not None:
            check_threads("threads", self.threads)

    def quick(self) -> "KnnToyConfig":
        """The notebook's quick mode: a shorter training of both networks (the MLP and MN: at most 120
        epochs), and the default grid of temperatures thinned to three (the smallest, where MN drifts
        towards 1-NN, included); temperatures chosen by hand are kept."""
        default = type(self).__dataclass_fields__["temperatures"].default
        temperatures = QUICK_TEMPERATURES if self.temperatures == default else self.temperatures
        return dataclasses.replace(self, temperatures=temperatures, max_epochs=min(self.max_epochs, 120),
                                   patience=min(self.patience, 20))


@dataclass
class KnnToyResult:
    config: KnnToyConfig
    x_train: np.ndarray                      # (N,) all noisy samples (fit + validation)
    y_train: np.ndarray
    grid: np.ndarray                         # (G,) where the fits are drawn
    truth: np.ndarray                        # (G,) the noiseless curve
    knn: dict[int, np.ndarray]               # k -> (G,) kNN fit
    local_linear: dict[int, np.ndarray]      # k -> (G,) local linear fit
    mlp: np.ndarray                          # (G,) vanilla MLP
    mn: dict[float, np.ndarray]              # T -> (G,) Meta-Neighborhoods
    mn_keys: dict[float, np.ndarray]         # T -> (S,) learned key positions
    mn_values: dict[float, np.ndarray]       # T -> (S,) learned values
    from_prior: dict[float, np.ndarray]      # α -> (G,) a constant stepped once from the prior
    prior: float                             # its start, the samples' mean
    test_mse: dict[str, dict | float]        # "knn", "local_linear", "mn", "from_prior": {param: mse}; "mlp": mse
    seconds: float = 0.0

    def summary(self) -> dict:
        return {"knn_mse": self.test_mse["knn"], "local_linear_mse": self.test_mse["local_linear"],
                "mlp_mse": self.test_mse["mlp"], "mn_mse": self.test_mse["mn"],
                "from_prior_mse": self.test_mse["from_prior"], "prior_neighbors": self.config.prior_neighbors,
                "points": self.config.points, "entries": self.config.entries, "seed": self.config.seed,
                "seconds": round(self.seconds, 2)}


def run_knn_toy(config: KnnToyConfig | None = None, **overrides) -> KnnToyResult:
    """Every fit of notebook 02's toy on a grid and its test MSE against fresh noisy samples.
    kNN and local linear use all samples; the MLP and MN hold 20% out for early stopping."""
    config = dataclasses.replace(config or KnnToyConfig(), **overrides)
    with torch_threads(config.threads):
        return _run_knn_toy(config)


def _run_knn_toy(config: KnnToyConfig) -> KnnToyResult:
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    x = np.sort(rng.uniform(-3, 3, config.points))
    y = toy_function(x) + config.noise * rng.normal(size=config.points)
    x_test = rng.uniform(-3, 3, config.test_points)
    y_test = toy_function(x_test) + config.noise * rng.normal(size=config.test_points)
    grid = np.linspace(-3.2, 3.2, config.grid)
    queries = np.concatenate([grid, x_test])

    def split(predictions):
        return predictions[: config.grid], float(np.mean((predictions[config.grid:] - y_test) ** 2))

    knn, local_linear, mse = {}, {}, {"knn": {}, "local_linear": {}, "mn": {}, "from_prior": {}}
    for k in config.neighbors:                  # k <= points: KnnToyConfig checks it
        knn[k], mse["knn"][k] = split(knn_by_finetuning(x, y, queries, k))
        if k >= 2:                              # local linear regression needs two points for its line
            local_linear[k], mse["local_linear"][k] = split(local_linear_regression(x, y, queries, k))
    prior, from_prior = float(y.mean()), {}
    for alpha in config.step_sizes:
        from_prior[alpha], mse["from_prior"][alpha] = split(step_from_prior(x, y, queries, config.prior_neighbors,
                                                                            prior, alpha))

    order = np.random.default_rng(config.seed + 1).permutation(config.points)
    fit_index, val_index = order[config.points // 5:], order[: config.points // 5]
    to_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)[:, None]      # noqa: E731
    x_fit, y_fit, x_val, y_val = (to_tensor(a) for a in (x[fit_index], y[fit_index], x[val_index], y[val_index]))
    options = dict(lr=config.lr, batch_size=config.batch_size, max_epochs=config.max_epochs,
                   patience=config.patience, seed=config.seed)
    query_tensor = to_tensor(queries)

    mlp = build_mlp(1, 1, config.layers, config.width, seed=config.seed)
    fit_tabular(mlp, x_fit, y_fit, x_val, y_val, **options)
    mlp_grid, mse["mlp"] = split(predict_tabular(mlp, query_tensor)[:, 0].double().numpy())

    mn, keys, values = {}, {}, {}
    for temperature in tqdm(config.temperatures, desc="MN per temperature", disable=not config.progress):
        generator = torch.Generator().manual_seed(config.seed)
        initial_keys = (torch.rand(config.entries, 1, generator=generator) * 6 - 3)   # spread over [-3, 3]
        model = build_meta_neighborhoods_mlp(1, 1, config.layers, config.width, targets=y_fit,
                                             entries=config.entries, temperature=temperature, seed=config.seed,
                                             similarity="neg_sq_euclidean", initial_keys=initial_keys)
        fit_tabular(model, x_fit, y_fit, x_val, y_val, **options)
        mn[temperature], mse["mn"][temperature] = split(predict_tabular(model, query_tensor)[:, 0].double().numpy())
        keys[temperature] = model.dictionary.keys.detach()[:, 0].double().numpy()
        values[temperature] = model.dictionary.values.detach()[:, 0].double().numpy()
    return KnnToyResult(config=config, x_train=x, y_train=y, grid=grid, truth=toy_function(grid), knn=knn,
                        local_linear=local_linear, mlp=mlp_grid, mn=mn, mn_keys=keys, mn_values=values,
                        from_prior=from_prior, prior=prior, test_mse=mse, seconds=time.perf_counter() - start)
