"""MetaNeighborsClassifier and MetaNeighborsRegressor against scikit-learn's MLPs and kNN, out of the box.

`compare_estimators(config)` cross-validates every method on public tables that need no download, with
default parameters and paired folds, and records each fold's score and fit time:

    mn           MetaNeighbors{Classifier,Regressor}()        (standardises inside; nslviz.estimators)
    mlp          StandardScaler -> MLP{Classifier,Regressor}()                     (hidden (100,))
    mlp_100_100  StandardScaler -> MLP{Classifier,Regressor}(hidden_layer_sizes=(100, 100))
    knn5         StandardScaler -> KNeighbors*(n_neighbors=5)
    knn_tuned    StandardScaler -> GridSearchCV(KNeighbors*, n_neighbors in 1..50, inner 5-fold CV)

Every method gets random_state = the fold index. Scores: accuracy (classification), R² (regression).
Fit time: wall seconds of `fit` on the training fold; within a fold the methods run in a rotated order,
so that a slow spell of a shared CPU does not always hit the same method. For each table:

    MN - baseline = 100 (score_MN - score_baseline), fold by fold, its mean and 95 % Student-t interval
    fit-time ratio = median fit seconds of MN / median fit seconds of the default MLP (same run)

Tables (TABLES, the small ones first): scikit-learn's iris, wine, breast_cancer, digits (classification) and
diabetes (regression); generated: "clusters" (`make_classification`, 4 classes of 3 clusters, 2,000
rows), "friedman1" (`make_friedman1`, 1,000 rows) and "sine" (y = sin(2 x0) + x1² + noise, 3 inputs).
The estimators' defaults were chosen on validation splits of these eight tables' training folds
(docs/estimators-selection.md). HELD_OUT_TABLES were first run after every default had been chosen:
"classes10" (`make_classification`, 10 classes of 2 clusters, 5,000 rows of 40 features) and
"friedman3" (`make_friedman3`, 2,000 rows).

`compare_draws(config, draws)` runs the same comparison on several shuffles of the rows into folds and
pools them (`pool_draws`): every method's mean over all the test folds, and the draws MN won.

Before any fit is timed, `warm_up` makes one small untimed MN fit: the first fit of a process also
starts torch's threads. Notebook 11, `python -m nslviz estimators` and benchmarks/bench_estimators.py
call this module.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.datasets import (load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine,
                              make_classification, make_friedman1, make_friedman3)

from .._checks import check_positive, check_seed, offset_seed

FOLDS = 5
SEED = 0
BASELINES = ("mlp", "mlp_100_100", "knn5", "knn_tuned")
METHODS = ("mn",) + BASELINES
METHOD_LABELS = {"mn": "MN", "mlp": "MLP (100)", "mlp_100_100": "MLP (100,100)", "knn5": "kNN 5",
                 "knn_tuned": "kNN tuned"}
NEIGHBOR_GRID = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50)
INNER_FOLDS = 5             # kNN tuned's inner cross-validation
GOAL_SHARE = 0.75           # the goal: MN at least the best baseline on three quarters of the tables


def sine_table(seed: int = 0, rows: int = 1000):
    """y = sin(2 x0) + x1² + 0.1 noise, x ~ U(-2, 2)³ (x2 is noise)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(rows, 3))
    return x, np.sin(2 * x[:, 0]) + x[:, 1] ** 2 + 0.1 * rng.normal(size=rows)


TABLES = {   # name -> (task, loader returning X, y); the small ones first
    "iris": ("classification", lambda: load_iris(return_X_y=True)),
    "wine": ("classification", lambda: load_wine(return_X_y=True)),
    "breast_cancer": ("classification", lambda: load_breast_cancer(return_X_y=True)),
    "digits": ("classification", lambda: load_digits(return_X_y=True)),
    "clusters": ("classification", lambda: make_classification(
        n_samples=2000, n_features=20, n_informative=10, n_redundant=4, n_classes=4, n_clusters_per_class=3,
        class_sep=1.5, random_state=0)),
    "diabetes": ("regression", lambda: load_diabetes(return_X_y=True)),
    "friedman1": ("regression", lambda: make_friedman1(n_samples=1000, n_features=10, noise=1.0, random_state=0)),
    "sine": ("regression", sine_table),
}
HELD_OUT_TABLES = {
    "classes10": ("classification", lambda: make_classification(      # 4,000 training rows of 40 features
        n_samples=5000, n_features=40, n_informative=20, n_redundant=10, n_classes=10, n_clusters_per_class=2,
        class_sep=1.0, random_state=1)),
    "friedman3": ("regression", lambda: make_friedman3(n_samples=2000, noise=0.05, random_state=1)),
}
ALL_TABLES = {**TABLES, **HELD_OUT_TABLES}


def check_names(what: str, names, allowed) -> tuple[str, ...]:
    """`names` (a list, or text with commas as papermill and the command line pass it) as a tuple of
    distinct names from `allowed`; a ValueError names what is wrong and what was expected."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    names = tuple(names)
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ValueError(f"unknown {what} {bad}; expected one or more of {', '.join(allowed)}" if bad else
                         f"{what}: expected one or more of {', '.join(allowed)}, got none")
    if len(set(names)) < len(names):
        raise ValueError(f"{what}: {sorted({n for n in names if names.count(n) > 1})} given more than once")
    return names


def load_table(name: str, max_rows: int | None = None):
    """(task, X float64 (n, d), y) of a table; `max_rows`: a seeded subset of that many rows."""
    check_names("tables", [name], ALL_TABLES)
    if max_rows is not None:
        check_positive("max_rows", max_rows, integer=True, minimum=1)
    task, loader = ALL_TABLES[name]
    x, y = loader()
    x = np.asarray(x, dtype=np.float64)
    if max_rows is not None and max_rows < len(x):
        keep = np.random.default_rng(0).permutation(len(x))[:max_rows]
        x, y = x[keep], y[keep]
    return task, x, y


def cv_folds(task: str, x, y, count: int, seed: int = SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, test rows) of `count` shuffled folds, stratified for classes."""
    from sklearn.model_selection import KFold, StratifiedKFold
    splitter = (StratifiedKFold if task == "classification" else KFold)(count, shuffle=True, random_state=seed)
    return list(splitter.split(x, y))


def make_estimator(method: str, task: str, seed: int, mn_params: dict | None = None, rows: int | None = None):
    """The estimator of `method` with default parameters. `mn_params`: MetaNeighbors* parameters on top of
    the defaults (one only the other estimator has, label_smoothing, is left out). `rows`: the training rows
    it will get, which bound kNN tuned's grid to the k an inner training fold can hold."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..estimators import MetaNeighborsClassifier, MetaNeighborsRegressor
    classify = task == "classification"
    if method == "mn":
        cls, other = ((MetaNeighborsClassifier, MetaNeighborsRegressor) if classify
                      else (MetaNeighborsRegressor, MetaNeighborsClassifier))
        own, others = cls().get_params(), other().get_params()
        return cls(random_state=seed, **{k: v for k, v in (mn_params or {}).items() if k in own or k not in others})
    if method in ("mlp", "mlp_100_100"):
        cls = MLPClassifier if classify else MLPRegressor
        hidden = (100,) if method == "mlp" else (100, 100)
        return make_pipeline(StandardScaler(), cls(hidden_layer_sizes=hidden, random_state=seed))
    knn = KNeighborsClassifier if classify else KNeighborsRegressor
    if method == "knn5":
        return make_pipeline(StandardScaler(), knn(n_neighbors=5))
    if method == "knn_tuned":
        inner = None if rows is None else rows - math.ceil(rows / INNER_FOLDS)   # the smallest inner training fold
        grid = [k for k in NEIGHBOR_GRID if inner is None or k <= inner] or [1]
        return make_pipeline(StandardScaler(), GridSearchCV(knn(), {"n_neighbors": grid}, cv=INNER_FOLDS))
    raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")


def fit_and_score(estimator, x_train, y_train, x_test, y_test) -> tuple[float, float]:
    """(score on the test rows, seconds of fit)."""
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)       # default MLPs often stop at max_iter
        start = time.perf_counter()
        estimator.fit(x_train, y_train)
        seconds = time.perf_counter() - start
    return float(estimator.score(x_test, y_test)), seconds


def compare_on_table(name: str, methods=METHODS, folds: int = FOLDS, seed: int = SEED,
                     mn_params: dict | None = None, max_rows: int | None = None, bar=None) -> dict:
    """One table: every method on the same `folds` folds of seed `seed`; scores, fit times, and MN
    against each baseline (paired over the folds). `bar`: a tqdm bar advanced once a fold."""
    from ..analysis.paired import paired_difference
    methods = list(methods)
    task, x, y = load_table(name, max_rows)
    scores = {m: [] for m in methods}
    seconds = {m: [] for m in methods}
    for index, (train, test) in enumerate(cv_folds(task, x, y, folds, seed)):
        order = methods[index % len(methods):] + methods[:index % len(methods)]        # rotated per fold
        for method in order:
            score, took = fit_and_score(make_estimator(method, task, index, mn_params, rows=len(train)),
                                        x[train], y[train], x[test], y[test])
            scores[method].append(score)
            seconds[method].append(took)
        if bar is not None:
            bar.update(1)
    row = {"task": task, "rows": int(x.shape[0]), "features": int(x.shape[1]),
           "metric": "accuracy" if task == "classification" else "r2",
           "classes": int(len(np.unique(y))) if task == "classification" else None, "methods": {}}
    for method in methods:
        row["methods"][method] = {
            "scores": [round(s, 5) for s in scores[method]], "mean": round(statistics.mean(scores[method]), 5),
            "std": round(statistics.stdev(scores[method]), 5) if len(scores[method]) > 1 else 0.0,
            "fit_seconds": [round(s, 4) for s in seconds[method]],
            "median_fit_seconds": round(statistics.median(seconds[method]), 4)}
    if "mn" in methods:
        baselines = [m for m in methods if m != "mn"]
        row["mn_vs"] = {m: paired_difference(scores["mn"], scores[m]) for m in baselines}
        if baselines:
            # means compared as stored, to 5 decimals: accuracies are fractions of the test rows, whose float
            # means differ in their last bits for the same count of rows right; a difference under 1e-5
            # (0.001 points) counts as a tie, for accuracy and R² alike
            best = max(baselines, key=lambda m: row["methods"][m]["mean"])
            row["best_baseline"] = best
            row["mn_at_least_best"] = row["methods"]["mn"]["mean"] >= row["methods"][best]["mean"]
        if "mlp" in methods:
            row["mn_fit_time_ratio_to_mlp"] = round(row["methods"]["mn"]["median_fit_seconds"]
                                                    / row["methods"]["mlp"]["median_fit_seconds"], 3)
    return row


def tables_at_the_top(means: list[dict[str, float]]) -> dict[str, int]:
    """The goal's rule applied to every method in turn: for each method, the tables on which its mean is
    at least every other method's (MN included; a tie at the top counts for all the tied methods).
    `means`: one {method: mean score} per table. For MN this is the goal's count; a baseline's count
    says how often it would meet the same rule against the others."""
    counts = {method: 0 for method in (means[0] if means else {})}
    for table in means:
        top = max(table.values())
        for method, mean in table.items():
            counts[method] += mean >= top
    return counts


def at_the_top_text(counts: dict[str, int]) -> str:
    """`tables_at_the_top`'s counts as the command and the results page print them: "MN: 5, MLP (100): 2, ..."."""
    return ", ".join(f"{METHOD_LABELS[method]}: {count}" for method, count in counts.items())


def summarise(tables: dict) -> dict:
    """Tables on which MN's mean is at least the best baseline's (the goal: three quarters of them), the
    same count for every method against all the others (`tables_at_the_top`), and MN's fit-time ratios
    to the default MLP (the goal: at most 5 on every table)."""
    rows = [t for t in tables.values() if "mn_at_least_best" in t]
    summary = {}
    if len(rows) == len(tables) and rows:
        summary["tables_at_the_top"] = tables_at_the_top(
            [{m: entry["mean"] for m, entry in t["methods"].items()} for t in rows])
    if rows:
        wins = sum(t["mn_at_least_best"] for t in rows)
        summary.update({"mn_at_least_best_baseline": wins, "tables_compared": len(rows),
                        "accuracy_goal_met": wins >= GOAL_SHARE * len(rows),
                        "tables_lost": [n for n, t in tables.items() if t.get("mn_at_least_best") is False]})
    ratios = [t["mn_fit_time_ratio_to_mlp"] for t in tables.values() if "mn_fit_time_ratio_to_mlp" in t]
    if ratios:
        summary.update({"fit_time_ratio_to_mlp_median_over_tables": round(statistics.median(ratios), 3),
                        "fit_time_ratio_to_mlp_max": max(ratios),
                        "tables_over_5x": [n for n, t in tables.items() if t.get("mn_fit_time_ratio_to_mlp", 0) > 5],
                        "fit_time_goal_met": all(r <= 5 for r in ratios)})
    return summary


def pool_draws(draws: list[dict]) -> dict:
    """Several draws of the folds as one comparison. `draws`: results of the same comparison (same
    tables, methods, fold count and MN parameters) on different `seed`s, each a dict with "seed",
    "folds", "mn_params" and "tables" (compare_on_table's rows). For each table, every method's mean
    over all the test folds of all the draws, and

        MN - best = 100 (pooled mean of MN - the highest pooled mean of a baseline)      (points)

    with the draws on which MN was at least the best baseline of that draw, and MN minus that draw's best
    baseline draw by draw (mean over its folds, in points); overall, the tables on which
    MN is at least the best baseline pooled, and the draws on which it is on GOAL_SHARE of the tables
    (the goal of summarise).

    "mn_vs_best": MN minus the pooled best baseline over the draws x folds test folds, paired fold by
    fold, with a 95 % interval. Folds of different draws share rows, so the interval is the corrected
    resampled t (`paired_difference` with n_test / n_train = 1/(folds - 1)), wider than one that took
    the folds for independent."""
    from ..analysis.paired import paired_difference
    if len(draws) < 2:
        raise ValueError(f"pool_draws needs at least 2 draws of the folds, got {len(draws)}")
    seeds = [d["seed"] for d in draws]
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"pool_draws: every draw needs its own seed, got seeds {seeds}")
    first = draws[0]
    for d in draws:
        if (d.get("mn_params") or {}) != (first.get("mn_params") or {}):
            raise ValueError(f"pool_draws: the draw of seed {d['seed']} ran MN with {d.get('mn_params') or {}}, "
                             f"expected the parameters of the first draw, {first.get('mn_params') or {}}")
        if d["folds"] != first["folds"] or list(d["tables"]) != list(first["tables"]):
            raise ValueError(f"pool_draws: the draw of seed {d['seed']} has {d['folds']} folds of tables "
                             f"{list(d['tables'])}, expected {first['folds']} folds of {list(first['tables'])}")
    tables = {}
    for name, row in first["tables"].items():
        methods = list(row["methods"])
        if "mn" not in methods or len(methods) < 2:
            raise ValueError(f"pool_draws: table {name!r} needs MN and a baseline, got methods {methods}")
        scores = {m: [s for d in draws for s in d["tables"][name]["methods"][m]["scores"]] for m in methods}
        means = {m: round(statistics.mean(scores[m]), 5) for m in methods}
        best = max((m for m in methods if m != "mn"), key=means.get)
        ratios = [d["tables"][name]["mn_fit_time_ratio_to_mlp"] for d in draws
                  if "mn_fit_time_ratio_to_mlp" in d["tables"][name]]
        tables[name] = {"metric": row["metric"], "means": means, "best_baseline": best,
                        "mn_minus_best_points": round(100 * (means["mn"] - means[best]), 3),
                        "mn_vs_best": paired_difference(scores["mn"], scores[best],
                                                        test_train_ratio=1 / (first["folds"] - 1)),
                        "mn_at_least_best": means["mn"] >= means[best],
                        "draws_mn_at_least_best": sum(d["tables"][name]["mn_at_least_best"] for d in draws),
                        "mn_minus_best_points_per_draw": [d["tables"][name]["mn_vs"][d["tables"][name]["best_baseline"]]
                                                          ["mean_difference_points"] for d in draws],
                        "best_baseline_per_draw": [d["tables"][name]["best_baseline"] for d in draws],
                        "fit_time_ratio_to_mlp_max": max(ratios) if ratios else None}
    summaries = [summarise(d["tables"]) for d in draws]
    per_draw = [summary["mn_at_least_best_baseline"] for summary in summaries]
    at_the_top = [summary["tables_at_the_top"] for summary in summaries]
    won = sum(t["mn_at_least_best"] for t in tables.values())
    return {"seeds": seeds, "folds": first["folds"], "mn_params": first.get("mn_params") or None, "tables": tables,
            "summary": {"draws": len(draws), "test_folds": len(draws) * first["folds"],
                        "mn_at_least_best_per_draw": per_draw,
                        "tables_at_the_top_per_draw": {m: [counts[m] for counts in at_the_top] for m in at_the_top[0]},
                        "tables_at_the_top_pooled": tables_at_the_top([t["means"] for t in tables.values()]),
                        "draws_meeting_goal": sum(w >= GOAL_SHARE * len(tables) for w in per_draw),
                        "tables_mn_at_least_best_pooled": won, "tables_compared": len(tables),
                        "accuracy_goal_met_pooled": won >= GOAL_SHARE * len(tables),
                        "tables_lost_pooled": [n for n, t in tables.items() if not t["mn_at_least_best"]]}}


@dataclass(frozen=True)
class EstimatorComparisonConfig:
    tables: tuple[str, ...] = tuple(TABLES)     # names of TABLES or HELD_OUT_TABLES
    methods: tuple[str, ...] = METHODS          # "mn" and any of BASELINES
    folds: int = FOLDS                          # cross-validation folds (>= 2)
    seed: int = SEED                            # shuffles the rows into folds (0: the folds docs/estimators.md reports)
    max_rows: int | None = None                 # a seeded subset of every table (None: all rows)
    mn_params: dict = field(default_factory=dict)   # MetaNeighbors* parameters on top of the defaults
    progress: bool = False                      # a tqdm bar over the folds

    def __post_init__(self):
        object.__setattr__(self, "tables", check_names("tables", self.tables, ALL_TABLES))
        object.__setattr__(self, "methods", check_names("methods", self.methods, METHODS))
        check_positive("folds", self.folds, integer=True, minimum=2)
        check_seed(self.seed)
        if self.max_rows is not None:
            check_positive("max_rows", self.max_rows, integer=True)
            if self.max_rows < 2 * self.folds:
                raise ValueError(f"max_rows must be at least 2 x folds = {2 * self.folds} (two rows a fold), "
                                 f"got {self.max_rows}")
        if not isinstance(self.mn_params, dict):
            raise ValueError(f"mn_params: expected a dict of MetaNeighbors* parameters, got {self.mn_params!r}")


@dataclass
class EstimatorComparison:
    config: EstimatorComparisonConfig
    tables: dict[str, dict]                     # name -> compare_on_table's row
    seconds: float

    @property
    def record(self) -> dict:
        """The draw as benchmarks/bench_estimators.py records it, for `pool_draws`."""
        return {"seed": self.config.seed, "folds": self.config.folds, "mn_params": self.config.mn_params or None,
                "tables": self.tables}

    def summary(self) -> dict:
        return {"tables": list(self.tables), "methods": list(self.config.methods), "folds": self.config.folds,
                "seed": self.config.seed, "max_rows": self.config.max_rows,
                **{f"{name}_mn_minus_best_points": t["mn_vs"][t["best_baseline"]]["mean_difference_points"]
                   for name, t in self.tables.items() if "best_baseline" in t},
                **summarise(self.tables), "seconds": round(self.seconds, 1)}


def check_folds(name: str, folds: int, max_rows: int | None = None) -> None:
    """Refuse, before anything runs, more folds than a table can fill: every test fold needs a row (of
    every class, for the stratified folds of a classification table)."""
    task, _, y = load_table(name, max_rows)
    if task == "classification":
        smallest, what = int(np.unique(y, return_counts=True)[1].min()), "rows in its smallest class"
    else:
        smallest, what = len(y), "rows"
    if folds > smallest:
        raise ValueError(f"folds={folds} is more than table {name!r} can fill: it has {smallest} {what}"
                         f"{'' if max_rows is None else f' in its {max_rows}-row subset'}")


def warm_up() -> None:
    """One small, untimed MN fit: the first fit of a process also pays for starting torch's threads and
    kernels (about 1 s on a CPU), which would otherwise count in the first fold's fit time."""
    from ..estimators import MetaNeighborsClassifier
    rows = np.random.default_rng(0).normal(size=(20, 3))
    fit_and_score(MetaNeighborsClassifier(max_epochs=1, n_estimators=2, random_state=0), rows, np.arange(20) % 2,
                  rows, np.arange(20) % 2)


def compare_estimators(config: EstimatorComparisonConfig | None = None, **overrides) -> EstimatorComparison:
    """Run the comparison of `config` (defaults: the eight tables, every method, 5 folds of seed 0);
    `overrides` replace fields of `config`."""
    from tqdm.auto import tqdm
    config = dataclasses.replace(config or EstimatorComparisonConfig(), **overrides)
    for name in config.tables:
        check_folds(name, config.folds, config.max_rows)
    if "mn" in config.methods:
        warm_up()
    start = time.perf_counter()
    tables = {}
    with tqdm(total=len(config.tables) * config.folds, desc="folds", disable=not config.progress) as bar:
        for name in config.tables:
            bar.set_postfix_str(name)
            tables[name] = compare_on_table(name, config.methods, config.folds, config.seed,
                                            config.mn_params or None, config.max_rows, bar)
    return EstimatorComparison(config, tables, time.perf_counter() - start)


def check_draws(draws) -> None:
    """What `compare_draws` takes: an integer >= 2 (one draw has nothing to pool); notebook 11 checks it
    before its first parts run."""
    check_positive("draws", draws, integer=True, minimum=2)


def compare_draws(config: EstimatorComparisonConfig | None = None, draws: int = 10,
                  first: EstimatorComparison | None = None) -> tuple[list[EstimatorComparison], dict]:
    """The comparison of `config` on `draws` shuffles of the rows into folds, seeds config.seed,
    config.seed + 1, ... (`first`: the comparison of config.seed, when it has run already), and what
    `pool_draws` makes of them."""
    config = config or EstimatorComparisonConfig()
    check_draws(draws)
    if "mn" not in config.methods or len(config.methods) < 2:      # what pooling compares, checked before any fit
        raise ValueError(f"draws pool MN against the baselines: methods must hold mn and at least one other method, "
                         f"got {list(config.methods)}")
    if first is not None and first.config != config:
        raise ValueError(f"first: expected the comparison of {config}, got that of {first.config}")
    comparisons = [first or compare_estimators(config)]
    comparisons += [compare_estimators(config, seed=offset_seed(config.seed, k)) for k in range(1, draws)]
    return comparisons, pool_draws([comparison.record for comparison in comparisons])
