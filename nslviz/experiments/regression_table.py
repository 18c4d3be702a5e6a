"""MN Table 2 (sec. 4.3, Appendix B): k-fold cross-validation of kNN, the vanilla MLP and
Meta-Neighborhoods on a table of numbers.

`cross_validate_regression(RegressionCVConfig(...))`: k-fold cross-validation of a tuned kNN, the
vanilla MLP (layers x width searched) and MN with the same network; every hyper-parameter is chosen
on a validation split carved out of each training fold, never on the test fold; paired t-tests over
the folds. `python -m nslviz regress` and notebook 06 call it.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .._threads import torch_threads
from .._checks import check_choice, check_fraction, check_positive, check_seed, check_threads
from ..models.layers import count_parameters
from ..parameters import parameter_list
from ..training.distributed import resolve_device
from ..training.tabular import build_meta_neighborhoods_mlp, build_mlp, default_entries, fit_tabular, predict_tabular


@dataclass(frozen=True)
class RegressionCVConfig:
    """Settings of `cross_validate_regression`. Defaults: MN Appendix B and sec. 4.3 (5 folds, MLP
    layers in {2,3,4,5} x width in {32,64,128,256}, S = 1000, lr 1e-3, batch 128, patience 10).

    Searched on the validation split of every training fold (never on the test fold):
      neighbors                 kNN's k
      layers x widths x weight_decays   the vanilla MLP (MN then uses the chosen layers x width)
      temperatures x weight_decays      MN's T and weight decay (the paper chose T = 0.1 and the weight
                                        decay "based on the validation performance")
    `weight_decays` is (0.0,) by default, a grid of one: the paper chooses a weight decay per dataset
    but gives no grid, and each value multiplies the search's fits; pass e.g. (0.0, 1e-4, 1e-3)
    (CLI --weight-decay 0 1e-4 1e-3) to search one.
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
        if self.max_rows is not None:                     # what load_tabular takes, checked before the grid runs
            check_positive("max_rows", self.max_rows, integer=True, minimum=2)
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
    folds: list[dict]                        # one row per fold: mses, choices, validation losses, epochs, seconds,
                                             # every MLP size searched (mlp_grid)
    knn_mse: np.ndarray                      # (folds,)
    mlp_mse: np.ndarray
    mn_mse: np.ndarray
    ttests: dict[str, dict]                  # "mn_vs_mlp", "mn_vs_knn": {"statistic", "pvalue"}
    seconds: float = 0.0                     # wall clock
    cpu_seconds: float = 0.0                 # CPU time of this process (differs from wall when the CPU is shared)
    histories: list[dict] = field(default_factory=list)   # per fold: {"mlp": [...], "mn": [...]} epoch rows

    def summary(self) -> dict:
        from ..paper import MN_TABLE2
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
        out["mn_minus_mlp_mse"] = self.ttests["mn_vs_mlp"]["mean_difference"]   # < 0: MN lower, fold for fold
        out["mn_minus_knn_mse"] = self.ttests["mn_vs_knn"]["mean_difference"]
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


QUICK_ROWS = 2000


def quick_config(config: RegressionCVConfig) -> RegressionCVConfig:
    """Quick mode (notebook 06, `regress --quick`): the same protocol on the first two values of the
    layers, widths and temperatures grids, and at most 2000 rows of the table."""
    return dataclasses.replace(config, layers=config.layers[:2], widths=config.widths[:2],
                               temperatures=config.temperatures[:2],
                               max_rows=min(config.max_rows or QUICK_ROWS, QUICK_ROWS))


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
    if data.n < config.folds:                        # KFold needs a test row in every fold
        raise ValueError(f"{data.name} has {data.n} rows, fewer than the {config.folds} folds asked: each fold tests "
                         f"at least one row, so folds must be at most {data.n} (--folds; 5 as in MN Table 2)")
    if fitted < 2:
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
        best, mlp_grid = None, []
        grid = list(itertools.product(config.layers, config.widths, config.weight_decays))
        for layers, width, weight_decay in tqdm(grid, desc="MLP grid", disable=not config.progress, leave=False):
            model = build_mlp(x.shape[1], y.shape[1], layers, width, seed=seed).to(device)
            fitted = fit_tabular(model, x_fit, y_fit, x_val, y_val, weight_decay=weight_decay, seed=seed,
                                 **fit_options)
            # every size, for the capacity figure (MN sec. 4.3); its test MSE is drawn, it chooses nothing
            mlp_grid.append({"layers": layers, "width": width, "weight_decay": weight_decay,
                             "parameters": count_parameters(model),
                             "validation_loss": fitted.best_validation_loss, "test_mse": test_mse(model)})
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
                     "mlp_grid": mlp_grid,
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
