"""Tables of numbers: the one training loop for the MN regression/classification MLPs and the vanilla
MLP (used by the scikit-learn estimators and by the cross-validation experiment), and that
experiment, MN Table 2 (sec. 4.3, Appendix B).

`fit_tabular(model, x_train, y_train, x_val, y_val, ...)`: Adam(W) on mini-batches (lr 1e-3, batch
128 as in Appendix B), the validation loss after every epoch, early stopping when it has not improved
for `patience` epochs (10), and the best weights restored. Seeded: the same seed gives the same
numbers on CPU.

`cross_validate_regression(RegressionCVConfig(...))`: k-fold cross-validation of a tuned kNN, the
vanilla MLP (layers x width searched) and MN with the same network; every hyper-parameter is chosen
on a validation split carved out of each training fold, never on the test fold; paired t-tests over
the folds. `python -m nslviz regress` and notebook 06 call it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._threads import torch_threads
from .._checks import (check_choice, check_dtype, check_finite, check_fraction, check_positive, check_seed,
                       check_threads)
from ..parameters import parameter_list
from ..regression import MLP, MetaNeighborhoodsMLP, values_in_target_range
from .distributed import resolve_device
from .optim import parameter_groups, step_or_diverge

TABULAR_LOSSES = ("mse", "cross_entropy")


# ----------------------------------------------------------------------------------------------
# the training loop
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def seeded(seed: int):
    """Run a block (model initialisation) under torch.manual_seed(seed) without touching the
    caller's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass
class TabularFitResult:
    """What `fit_tabular` did: the epoch whose weights were kept, its validation loss, the number of
    epochs run and the per-epoch history ({"epoch", "train_loss", "validation_loss"})."""
    best_epoch: int
    best_validation_loss: float
    epochs: int
    steps: int
    stopped_early: bool = False              # False: max_epochs ran out first
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def tabular_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean squared error over samples and targets, or cross-entropy with class indices."""
    if loss == "mse":
        if outputs.shape != targets.shape:       # F.mse_loss would broadcast (B, 1) against (B,) to (B, B)
            raise ValueError(f"expected targets of shape {tuple(outputs.shape)} to match the model's outputs "
                             f"(samples, {outputs.shape[-1]}), got {tuple(targets.shape)}"
                             + ("; reshape them with y.reshape(-1, 1)" if targets.dim() == 1 else ""))
        return F.mse_loss(outputs, targets)
    return F.cross_entropy(outputs, targets)


def check_tabular_data(x_name: str, x, y_name: str, y, loss: str) -> None:
    """x: a finite float (N, d) tensor; y: finite float targets (N, C) for "mse", int64 class
    indices (N,) for "cross_entropy"; the same N."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"expected {x_name} as a float torch.Tensor of shape (N, features), got "
                         f"{_describe(x)}")
    expected = "a float tensor (N, targets)" if loss == "mse" else "an int64 tensor (N,) of class indices"
    if not isinstance(y, torch.Tensor) or (loss == "mse" and not y.is_floating_point()) or \
            (loss == "cross_entropy" and (y.dtype != torch.int64 or y.dim() != 1)):
        raise ValueError(f"expected {y_name} as {expected} for loss {loss!r}, got {_describe(y)}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"expected as many {y_name} as {x_name} rows, got {x.shape[0]} inputs and {y.shape[0]} targets")
    check_finite(x_name, x)
    if loss == "mse":
        check_finite(y_name, y)


def _check_fits_model(model: nn.Module, x: torch.Tensor, name: str) -> None:
    """The input width the model declares (MLP, MetaNeighborhoodsMLP: `input_dim`) and its dtype."""
    width = getattr(model, "input_dim", None)
    if width is not None and x.shape[1] != width:
        raise ValueError(f"the model takes {width} features but {name} has {x.shape[1]} (shape {tuple(x.shape)})")
    parameter = next(model.parameters(), None)
    if parameter is not None:
        check_dtype(name, x, parameter.dtype)


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} of shape {tuple(value.shape)}"
    return type(value).__name__ + (f" of shape {value.shape}" if hasattr(value, "shape") else "")


PREDICT_BATCH = 2048     # rows per chunk of predict_tabular


@torch.no_grad()
def predict_tabular(model: nn.Module, inputs: torch.Tensor, batch_size: int = PREDICT_BATCH) -> torch.Tensor:
    """model(inputs) in evaluation mode, in chunks (the MN attention is (chunk, S))."""
    was_training = model.training
    model.eval()
    chunks = [model(inputs[start:start + batch_size]) for start in range(0, max(inputs.shape[0], 1), batch_size)]
    model.train(was_training)
    return torch.cat(chunks)


def _adamw(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel for all parameters: about 3x less optimiser overhead per step on these
    small models) where this torch build supports it, else the plain implementation."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr)


def fit_tabular(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None, *,
                loss: str = "mse", lr: float = 1e-3, batch_size: int = 128, weight_decay: float = 0.0,
                max_epochs: int = 1000, patience: int = 10, tol: float = 0.0, seed: int = 0,
                progress: bool = False, desc: str = "fit") -> TabularFitResult:
    """Train `model` in place; return what happened.

    x (N, d) float; y (N, C) float for loss="mse", (N,) class indices for "cross_entropy"; both on
    the model's device. Optimiser: AdamW with decoupled `weight_decay` on the network weights only
    (the MN dictionary, step sizes and temperature, `model.no_weight_decay_parameters()`, are not
    decayed; a model without that method has every parameter decayed).
    Every epoch visits the training rows once in a seeded random order in batches of `batch_size`
    (the last one may be smaller). With validation data: stop when the validation loss has not
    improved by more than `tol` for `patience` epochs (MN App. B: tol 0, patience 10; tol > 0 as in
    scikit-learn's MLPs ends training on separable classes, whose loss creeps down forever) and
    restore the weights of the epoch with the lowest validation loss; without: run `max_epochs`.
    Epoch 0 (the weights as given) is a candidate too.
    """
    check_choice("loss", loss, TABULAR_LOSSES)
    check_positive("lr", lr)
    check_positive("batch_size", batch_size, integer=True, minimum=1)
    check_positive("weight_decay", weight_decay, minimum=0)
    check_positive("max_epochs", max_epochs, integer=True, minimum=1)
    check_positive("patience", patience, integer=True, minimum=1)
    check_positive("tol", tol, minimum=0)
    check_seed(seed)
    check_tabular_data("x_train", x_train, "y_train", y_train, loss)
    if x_train.shape[0] == 0:
        raise ValueError("x_train has no rows; expected at least one training example")
    if (x_val is None) != (y_val is None):
        raise ValueError("give both x_val and y_val, or neither")
    if x_val is not None:
        check_tabular_data("x_val", x_val, "y_val", y_val, loss)
    _check_fits_model(model, x_train, "x_train")
    validate = x_val is not None and x_val.shape[0] > 0
    if isinstance(model, MetaNeighborhoodsMLP):                  # before the first batch asks for it
        model.check_memory(max(min(batch_size, x_train.shape[0]), min(PREDICT_BATCH, x_val.shape[0]) if validate else 0))
    start = time.perf_counter()
    optimizer = _adamw(parameter_groups(model, weight_decay, decay_everything=not hasattr(
        model, "no_weight_decay_parameters")), lr)
    generator = torch.Generator().manual_seed(seed)
    n = x_train.shape[0]
    best_loss, best_epoch, best_state, history, steps = math.inf, 0, None, [], 0
    last_improvement, reference_loss = 0, math.inf          # for patience: improvements by more than tol
    if validate:        # epoch 0: the weights as given (a warm start is kept if training does not help)
        best_loss = float(tabular_loss(predict_tabular(model, x_val), y_val, loss))
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        reference_loss = best_loss
        history.append({"epoch": 0, "validation_loss": best_loss})
    model.train()
    bar = tqdm(range(1, max_epochs + 1), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        order = torch.randperm(n, generator=generator).to(x_train.device)
        total = torch.zeros((), device=x_train.device)
        for begin in range(0, n, batch_size):
            batch = order[begin:begin + batch_size]
            batch_loss = tabular_loss(model(x_train[batch]), y_train[batch], loss)
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            step_or_diverge(optimizer, f"in epoch {epoch}")
            total += batch_loss.detach() * batch.shape[0]
            steps += 1
        row = {"epoch": epoch, "train_loss": float(total) / n}
        if validate:
            row["validation_loss"] = float(tabular_loss(predict_tabular(model, x_val), y_val, loss))
            if row["validation_loss"] < best_loss:
                best_loss, best_epoch = row["validation_loss"], epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if row["validation_loss"] < reference_loss - tol:
                reference_loss, last_improvement = row["validation_loss"], epoch
        history.append(row)
        bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k != "epoch"}, refresh=False)
        if validate and epoch - last_improvement >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch, best_loss = len(history), math.nan
    epochs = history[-1]["epoch"] if history else 0
    return TabularFitResult(best_epoch=best_epoch, best_validation_loss=best_loss, epochs=epochs,
                            steps=steps, stopped_early=validate and epochs < max_epochs, history=history,
                            seconds=time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------
# the models of MN Table 2, built reproducibly
# ----------------------------------------------------------------------------------------------

def default_entries(table_rows: int, training_rows: int) -> int:
    """S when none is given: the paper's 1000 (Appendix B) for tables of at least 1000 rows, which
    covers every Table 2 set; on smaller tables one entry per training row (more entries than rows
    only cost time: on diabetes S = 1000 and S = 300 reach the same validation loss)."""
    return 1000 if table_rows >= 1000 else max(1, training_rows)


def build_mlp(input_dim: int, output_dim: int, layers: int, width: int, seed: int = 0) -> MLP:
    """The vanilla MLP, initialised under `seed`."""
    with seeded(seed):
        return MLP(input_dim, output_dim, layers, width)


def build_meta_neighborhoods_mlp(input_dim: int, output_dim: int, layers: int, width: int, *,
                                 targets: torch.Tensor | None = None, entries: int = 1000,
                                 temperature: float = 0.1, seed: int = 0, loss: str = "mse",
                                 **options) -> MetaNeighborhoodsMLP:
    """MN around the same MLP, initialised under `seed`: keys N(0, 0.01²), values U(min y, max y) of
    the (standardised) training `targets` for regression (MN Appendix B). `options` go to
    MetaNeighborhoodsMLP (similarity, step_size_init, key_init_std, entry_dropout, ...)."""
    with seeded(seed):
        model = MetaNeighborhoodsMLP(input_dim, output_dim, layers, width, entries, temperature=temperature,
                                     loss=loss, **options)
        if loss == "mse" and targets is not None:
            with torch.no_grad():
                model.dictionary.regression_values.copy_(values_in_target_range(entries, targets))
    return model


# ----------------------------------------------------------------------------------------------
# MN Table 2: k-fold cross-validation of kNN, the vanilla MLP and Meta-Neighborhoods
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RegressionCVConfig:
    """Settings of `cross_validate_regression`. Defaults: MN Appendix B and sec. 4.3 (5 folds, MLP
    layers in {2,3,4,5} x width in {32,64,128,256}, S = 1000, lr 1e-3, batch 128, patience 10).

    Searched on the validation split of every training fold (never on the test fold):
      neighbors                 kNN's k
      layers x widths x weight_decays   the vanilla MLP (MN then uses the chosen layers x width)
      temperatures x weight_decays      MN's T and weight decay (the paper chose T = 0.1 and the weight
                                        decay "based on the validation performance")
    `threads` 1: these networks are small; one intra-op thread is as fast on an idle CPU and far
    faster on a shared one (torch's own setting is restored afterwards).
    `layers` counts Linear layers (2 = one hidden layer). `entries` None: S = 1000 (Appendix B) for
    tables of 1000 rows or more (every Table 2 set), one entry per training row on smaller tables
    (`default_entries`). `step_size_init` 0.01: the initial |α|, chosen by validation loss on
    diabetes (with 0.1, MN overfitted within a few epochs).
    """
    dataset: str = "diabetes"
    folds: int = 5
    seed: int = 0
    neighbors: tuple[int, ...] = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100)
    layers: tuple[int, ...] = (2, 3, 4, 5)
    widths: tuple[int, ...] = (32, 64, 128, 256)
    weight_decays: tuple[float, ...] = (0.0,)
    entries: int | None = None
    temperatures: tuple[float, ...] = (0.1, 0.3, 1.0)
    step_size_init: float = 0.01
    similarity: str = "cosine"
    lr: float = 1e-3
    batch_size: int = 128
    patience: int = 10
    max_epochs: int = 1000
    validation_fraction: float = 0.2
    max_rows: int | None = None          # a seeded subset of the table (quick runs on the big sets)
    data_root: str | None = None
    device: str = "auto"
    threads: int | None = 1              # torch CPU threads while running (restored after); None: leave as is
    progress: bool = False

    def __post_init__(self):
        from ..datasets.tabular import available_tabular_datasets
        check_choice("dataset", self.dataset, available_tabular_datasets())
        check_positive("folds", self.folds, integer=True, minimum=2)
        for name, kind in (("neighbors", int), ("layers", int), ("widths", int), ("temperatures", float),
                           ("weight_decays", float)):
            values = getattr(self, name)                  # one value is a 1-grid; papermill's text too
            object.__setattr__(self, name, tuple(parameter_list(name, values, kind)))
            if not getattr(self, name):
                raise ValueError(f"{name} must list at least one value, got {values!r}")
        for k in self.neighbors:
            check_positive("neighbors k", k, integer=True, minimum=1)
        for value in self.layers:
            check_positive("layers", value, integer=True, minimum=1)
        for value in self.widths:
            check_positive("widths", value, integer=True, minimum=1)
        for value in self.temperatures:
            check_positive("temperature T", value)
        for value in self.weight_decays:
            check_positive("weight_decay", value, minimum=0)
        if self.entries is not None:
            check_positive("entries S", self.entries, integer=True, minimum=1)
        check_positive("step_size_init", self.step_size_init)
        check_positive("lr", self.lr)
        check_positive("batch_size", self.batch_size, integer=True, minimum=1)
        check_positive("patience", self.patience, integer=True, minimum=1)
        check_positive("max_epochs", self.max_epochs, integer=True, minimum=1)
        check_fraction("validation_fraction", self.validation_fraction)
        if self.threads is not None:
            check_threads("threads", self.threads)
        check_seed(self.seed)
        from ..similarity import SIMILARITIES
        check_choice("similarity", self.similarity, SIMILARITIES)
        if self.validation_fraction == 0:
            raise ValueError("validation_fraction must be > 0: hyper-parameters and early stopping need "
                             "validation data")


@dataclass
class RegressionCVResult:
    """Per-fold test MSEs (in the units of the normalised table), the hyper-parameters chosen in every
    fold, paired t-tests over the folds and the time taken."""
    config: RegressionCVConfig
    dataset: str
    n: int
    d: int
    targets: int
    folds: list[dict]                        # one row per fold: mses, choices, validation losses, epochs, seconds
    knn_mse: np.ndarray                      # (folds,)
    mlp_mse: np.ndarray
    mn_mse: np.ndarray
    ttests: dict[str, dict]                  # "mn_vs_mlp", "mn_vs_knn": {"statistic", "pvalue"}
    seconds: float = 0.0                     # wall clock
    cpu_seconds: float = 0.0                 # CPU time of this process (differs from wall when the CPU is shared)
    histories: list[dict] = field(default_factory=list)   # per fold: {"mlp": [...], "mn": [...]} epoch rows

    def summary(self) -> dict:
        from ..datasets.tabular import MN_TABLE2
        c = self.config
        out = {"dataset": self.dataset, "n": self.n, "d": self.d, "targets": self.targets, "folds": c.folds,
               "seed": c.seed, "seconds": round(self.seconds, 2),
               "cpu_seconds": round(self.cpu_seconds, 2), "entries": self.folds[0]["entries"]}
        for method in ("knn", "mlp", "mn"):
            values = getattr(self, f"{method}_mse")
            out[f"{method}_mse"] = float(values.mean())
            out[f"{method}_mse_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out["mn_vs_mlp_pvalue"] = self.ttests["mn_vs_mlp"]["pvalue"]
        out["mn_vs_knn_pvalue"] = self.ttests["mn_vs_knn"]["pvalue"]
        out["chosen"] = [{k: row[k] for k in ("k", "layers", "width", "mlp_weight_decay", "temperature",
                                             "mn_weight_decay")} for row in self.folds]
        paper = MN_TABLE2.get(self.dataset)
        if paper is not None:
            out.update({f"paper_{m}_mse": paper[key][0] for m, key in (("knn", "knn"), ("mlp", "vanilla"),
                                                                       ("mn", "mn"))})
        return out


def _paired_ttest(a: np.ndarray, b: np.ndarray) -> dict:
    """scipy.stats.ttest_rel over the folds (two-sided; nan when the differences are all equal)."""
    from scipy.stats import ttest_rel
    with np.errstate(invalid="ignore", divide="ignore"):
        result = ttest_rel(a, b)
    return {"statistic": float(result.statistic), "pvalue": float(result.pvalue),
            "mean_difference": float(np.mean(a - b))}


def _mse(predictions: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean((predictions.reshape(targets.shape) - targets) ** 2))


def cross_validate_regression(config: RegressionCVConfig | None = None, *, data=None,
                              **overrides) -> RegressionCVResult:
    """MN Table 2 for one table: `folds`-fold cross-validation (shuffled, seeded) of

      kNN            k chosen on the validation split, then refit on the whole training fold;
      vanilla MLP    layers x width x weight decay chosen by validation loss (each trained with
                     early stopping on the same split, best weights restored);
      MN             the chosen MLP architecture around an input-space dictionary (MN App. B), its
                     T x weight decay chosen by validation loss.

    Inside each fold, inputs and targets are standardised with training-fold statistics only; test
    MSEs are reported in the units of the normalised table (comparable with Table 2). Paired t-tests
    (scipy.stats.ttest_rel) compare MN with each baseline over the folds. `overrides` replace
    fields of `config`, e.g. cross_validate_regression(dataset="gom", folds=3). `data`: a
    nslviz.datasets.tabular.TabularData to use instead of loading `config.dataset` (your own table).
    """
    config = dataclasses.replace(config or RegressionCVConfig(), **overrides)
    with torch_threads(config.threads):
        return _cross_validate(config, data)


def _cross_validate(config: RegressionCVConfig, data) -> RegressionCVResult:
    from sklearn.model_selection import KFold, train_test_split
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.preprocessing import StandardScaler

    from ..datasets.tabular import load_tabular

    start, cpu_start = time.perf_counter(), time.process_time()
    if data is None:
        data = load_tabular(config.dataset, config.data_root, max_rows=config.max_rows, seed=config.seed)
    x, y = data.x, data.y.reshape(data.n, -1)                                   # y (n, targets)
    smallest_fold = data.n - math.ceil(data.n / config.folds)                  # training rows of a fold
    fitted = smallest_fold - math.ceil(smallest_fold * config.validation_fraction)   # as train_test_split rounds
    if data.n < config.folds or fitted < 2:
        raise ValueError(f"{data.name} has {data.n} rows: {config.folds} folds leave {smallest_fold} training rows per "
                         f"fold and {max(fitted, 0)} to fit on after holding out {config.validation_fraction:g} for "
                         f"validation; use more rows (max_rows, --max-rows) or fewer folds")
    device = resolve_device(config.device)
    fit_options = dict(lr=config.lr, batch_size=config.batch_size, max_epochs=config.max_epochs,
                       patience=config.patience)
    splitter = KFold(config.folds, shuffle=True, random_state=config.seed)
    rows, histories = [], []
    folds = tqdm(list(splitter.split(x)), desc=f"{data.name}: folds", disable=not config.progress)
    for fold, (train_index, test_index) in enumerate(folds):
        fold_start = time.perf_counter()
        fit_index, val_index = train_test_split(train_index, test_size=config.validation_fraction,
                                                random_state=config.seed + fold)
        x_scaler, y_scaler = StandardScaler().fit(x[train_index]), StandardScaler().fit(y[train_index])

        def tensor(array):
            return torch.as_tensor(array, dtype=torch.float32, device=device)

        x_fit, x_val, x_test = (tensor(x_scaler.transform(x[i])) for i in (fit_index, val_index, test_index))
        y_fit, y_val = tensor(y_scaler.transform(y[fit_index])), tensor(y_scaler.transform(y[val_index]))
        y_test = y[test_index]

        def test_mse(model) -> float:
            predictions = predict_tabular(model, x_test).double().cpu().numpy()
            return _mse(y_scaler.inverse_transform(predictions), y_test)

        # kNN: k by validation MSE, then all training rows
        k_scores = {}
        for k in config.neighbors:
            if k <= len(fit_index):
                knn = KNeighborsRegressor(n_neighbors=k).fit(x_fit.cpu().numpy(), y_fit.cpu().numpy())
                k_scores[k] = _mse(knn.predict(x_val.cpu().numpy()), y_val.cpu().numpy())
        if not k_scores:
            raise ValueError(f"no k in neighbors {config.neighbors} is <= the {len(fit_index)} rows kNN fits on in "
                             f"fold {fold}; give smaller k (--neighbors) or more rows")
        k = min(k_scores, key=k_scores.get)
        knn = KNeighborsRegressor(n_neighbors=k).fit(x_scaler.transform(x[train_index]),
                                                      y_scaler.transform(y[train_index]))
        knn_mse = _mse(y_scaler.inverse_transform(knn.predict(x_scaler.transform(x[test_index]))), y_test)

        # vanilla MLP: layers x width x weight decay by validation loss
        seed = config.seed * 1000 + fold
        best = None
        grid = list(itertools.product(config.layers, config.widths, config.weight_decays))
        for layers, width, weight_decay in tqdm(grid, desc="MLP grid", disable=not config.progress, leave=False):
            model = build_mlp(x.shape[1], y.shape[1], layers, width, seed=seed).to(device)
            fitted = fit_tabular(model, x_fit, y_fit, x_val, y_val, weight_decay=weight_decay, seed=seed,
                                 **fit_options)
            if best is None or fitted.best_validation_loss < best[0].best_validation_loss:
                best = (fitted, model, layers, width, weight_decay)
        mlp_fit, mlp, layers, width, mlp_weight_decay = best
        mlp_mse = test_mse(mlp)

        # Meta-Neighborhoods around the same network: T x weight decay by validation loss
        entries = config.entries or default_entries(data.n, len(fit_index))
        best = None
        for temperature, weight_decay in itertools.product(config.temperatures, config.weight_decays):
            model = build_meta_neighborhoods_mlp(x.shape[1], y.shape[1], layers, width, targets=y_fit.cpu(),
                                                 entries=entries, temperature=temperature, seed=seed,
                                                 similarity=config.similarity,
                                                 step_size_init=config.step_size_init).to(device)
            fitted = fit_tabular(model, x_fit, y_fit, x_val, y_val, weight_decay=weight_decay, seed=seed,
                                 progress=config.progress, desc=f"MN T={temperature:g}", **fit_options)
            if best is None or fitted.best_validation_loss < best[0].best_validation_loss:
                best = (fitted, model, temperature, weight_decay)
        mn_fit, mn, temperature, mn_weight_decay = best
        mn_mse = test_mse(mn)

        rows.append({"fold": fold, "knn_mse": knn_mse, "mlp_mse": mlp_mse, "mn_mse": mn_mse, "k": k, "entries": entries,
                     "layers": layers, "width": width, "mlp_weight_decay": mlp_weight_decay,
                     "temperature": temperature, "mn_weight_decay": mn_weight_decay,
                     "knn_validation_mse": k_scores[k], "mlp_validation_loss": mlp_fit.best_validation_loss,
                     "mn_validation_loss": mn_fit.best_validation_loss, "mlp_epochs": mlp_fit.best_epoch,
                     "mn_epochs": mn_fit.best_epoch, "learned_step_sizes":
                         {name: float(p.detach().abs()) for name, p in mn.inner_step_sizes.items()},
                     "train_rows": len(fit_index), "validation_rows": len(val_index), "test_rows": len(test_index),
                     "seconds": time.perf_counter() - fold_start})
        histories.append({"mlp": mlp_fit.history, "mn": mn_fit.history})
        folds.set_postfix(knn=f"{knn_mse:.4f}", mlp=f"{mlp_mse:.4f}", mn=f"{mn_mse:.4f}", refresh=False)

    mses = {m: np.array([row[f"{m}_mse"] for row in rows]) for m in ("knn", "mlp", "mn")}
    return RegressionCVResult(config=config, dataset=data.name, n=data.n, d=data.d, targets=y.shape[1], folds=rows,
                              knn_mse=mses["knn"], mlp_mse=mses["mlp"], mn_mse=mses["mn"],
                              ttests={"mn_vs_mlp": _paired_ttest(mses["mn"], mses["mlp"]),
                                      "mn_vs_knn": _paired_ttest(mses["mn"], mses["knn"])},
                              seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu_start,
                              histories=histories)
