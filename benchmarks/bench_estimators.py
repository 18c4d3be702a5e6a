"""MetaNeighborsClassifier / MetaNeighborsRegressor against scikit-learn's MLP and kNN, out of the box.

Tables (all offline): scikit-learn's digits, wine, breast_cancer, iris (classification) and diabetes
(regression); generated: `make_classification` with 3 clusters per class ("clusters"), `make_friedman1`
("friedman1") and a sine table ("sine": y = sin(2 x0) + x1^2 + noise, 3 inputs). Two more tables are
held out: first run after every default had been chosen, never in a --select round, and only when named
(`--tables classes10` or `--tables friedman3`, alone or together; results in
bench_estimators_held_out*_cpu.json): "classes10", `make_classification` with 10 classes of 2 clusters,
5,000 rows of 40 features (4,000 training rows a fold), and "friedman3", `make_friedman3`, 2,000 rows.

Every table: 5-fold cross-validation (stratified for classes, shuffled, seed 0); every method sees the
same folds (paired). Methods, all with default parameters and random_state = the fold index:
  mn          MetaNeighbors{Classifier,Regressor}()        (standardises inside)
  mlp         StandardScaler -> MLP{Classifier,Regressor}()            (hidden (100,))
  mlp_100_100 StandardScaler -> MLP{Classifier,Regressor}(hidden_layer_sizes=(100, 100))
  knn5        StandardScaler -> KNeighbors*(n_neighbors=5)
  knn_tuned   StandardScaler -> GridSearchCV(KNeighbors*, n_neighbors in 1..50, inner 5-fold CV)
Scores: accuracy (classification), R² (regression). Fit time: wall seconds of `fit` on the training
fold; the ratio to the default MLP's median fit time is taken per table in the same run. Within a fold
the methods run in a rotated order, so that a slow spell of a shared CPU does not always hit the same
method. Paired differences MN - baseline over the folds, in points (100 x accuracy or R²), with a 95 %
Student-t interval. `--cv-seed N` shuffles the rows into other folds (the estimators' defaults were
chosen, and the goal reported, on seed 0's): the same comparison on another draw of the folds.

`--select CANDIDATES.json` instead scores candidate MN settings (a JSON list of parameter objects, each
on top of the defaults) on validation splits carved out of the training folds only (the test folds are
never read), and fits the default MLP on the same rows, so that every candidate's fit-time ratio to it
is measured in the same run; the estimators' defaults were chosen that way (docs/estimators.md).
`--select-baselines all` fits the other three baselines on the same splits too, so that the candidates
can be set against the best of the four, as the goal sets MN on the test folds.

Usage: python benchmarks/bench_estimators.py [--quick] [--tables digits,sine] [--methods mn,mlp]
       [--mn-params '{"width": 128}'] [--out FILE]
       python benchmarks/bench_estimators.py --select CANDIDATES.json [--repeats 3] [--tables ...]
                                             [--select-baselines all]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import (load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine,
                              make_classification, make_friedman1, make_friedman3)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, train_test_split
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nslviz.estimators import MetaNeighborsClassifier, MetaNeighborsRegressor
from nslviz.training.rundir import atomic_write_json
from _results import RESULTS, compare, environment, save_result  # noqa: E402  (benchmarks/_results.py)

FOLDS = 5
SEED = 0
BASELINES = ("mlp", "mlp_100_100", "knn5", "knn_tuned")
METHODS = ("mn",) + BASELINES
NEIGHBOR_GRID = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50)
INNER_FOLDS = 5             # kNN tuned's inner cross-validation


def _sine(seed: int = 0, rows: int = 1000):
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
    "sine": ("regression", _sine),
}
# Tables first run after every default had been chosen, to see how the estimators do on data the
# choices never touched (nothing is chosen on them); they are not among the eight tables the defaults were chosen
# on (TABLES), and run only when named in --tables.
HELD_OUT_TABLES = {
    "classes10": ("classification", lambda: make_classification(      # 4,000 training rows of 40 features
        n_samples=5000, n_features=40, n_informative=20, n_redundant=10, n_classes=10, n_clusters_per_class=2,
        class_sep=1.0, random_state=1)),
    "friedman3": ("regression", lambda: make_friedman3(n_samples=2000, noise=0.05, random_state=1)),
}


def make_estimator(method: str, task: str, seed: int, mn_params: dict | None = None, rows: int | None = None):
    """The estimator of `method`; `rows`: the training rows it will get, which bound kNN tuned's grid to the
    k an inner training fold can hold (only --quick's tiny subsets have fewer than 50 such rows)."""
    classify = task == "classification"
    if method == "mn":
        cls, other = ((MetaNeighborsClassifier, MetaNeighborsRegressor) if classify
                      else (MetaNeighborsRegressor, MetaNeighborsClassifier))
        own, others = cls().get_params(), other().get_params()
        # a parameter of the other estimator only (label_smoothing: the classifier's) is not passed
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


def load_table(name: str, quick: bool):
    task, loader = {**TABLES, **HELD_OUT_TABLES}[name]
    x, y = loader()
    x = np.asarray(x, dtype=np.float64)
    if quick:            # a seeded subset: smoke runs only, the numbers mean nothing
        keep = np.random.default_rng(0).permutation(len(x))[:120]
        x, y = x[keep], y[keep]
    return task, x, y


def folds(task: str, x, y, count: int, seed: int = SEED):
    splitter = (StratifiedKFold if task == "classification" else KFold)(count, shuffle=True, random_state=seed)
    return list(splitter.split(x, y))


def fit_and_score(estimator, x_train, y_train, x_test, y_test) -> tuple[float, float]:
    """(score on the test rows, seconds of fit)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)       # default MLPs often stop at max_iter
        start = time.perf_counter()
        estimator.fit(x_train, y_train)
        seconds = time.perf_counter() - start
    return float(estimator.score(x_test, y_test)), seconds


def run_table(name: str, methods: list[str], fold_count: int, quick: bool, mn_params: dict | None,
              cv_seed: int = SEED) -> dict:
    task, x, y = load_table(name, quick)
    splits = folds(task, x, y, fold_count, cv_seed)
    scores = {m: [] for m in methods}
    seconds = {m: [] for m in methods}
    for index, (train, test) in enumerate(splits):
        order = methods[index % len(methods):] + methods[:index % len(methods)]        # rotated per fold
        for method in order:
            score, took = fit_and_score(make_estimator(method, task, index, mn_params, rows=len(train)),
                                        x[train], y[train], x[test], y[test])
            scores[method].append(score)
            seconds[method].append(took)
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
        row["mn_vs"] = {m: compare(scores["mn"], scores[m]) for m in baselines}
        if baselines:
            best = max(baselines, key=lambda m: row["methods"][m]["mean"])
            row["best_baseline"] = best
            row["mn_at_least_best"] = row["methods"]["mn"]["mean"] >= row["methods"][best]["mean"]
        if "mlp" in methods:
            row["mn_fit_time_ratio_to_mlp"] = round(row["methods"]["mn"]["median_fit_seconds"]
                                                    / row["methods"]["mlp"]["median_fit_seconds"], 3)
    return row


def summarise(tables: dict) -> dict:
    rows = [t for t in tables.values() if "mn_at_least_best" in t]
    summary = {}
    if rows:
        wins = sum(t["mn_at_least_best"] for t in rows)
        summary.update({"mn_at_least_best_baseline": wins, "tables_compared": len(rows),
                        "accuracy_goal_met": wins >= 0.75 * len(rows),
                        "tables_lost": [n for n, t in tables.items() if t.get("mn_at_least_best") is False]})
    ratios = [t["mn_fit_time_ratio_to_mlp"] for t in tables.values() if "mn_fit_time_ratio_to_mlp" in t]
    if ratios:
        summary.update({"fit_time_ratio_to_mlp_median_over_tables": round(statistics.median(ratios), 3),
                        "fit_time_ratio_to_mlp_max": max(ratios),
                        "tables_over_5x": [n for n, t in tables.items() if t.get("mn_fit_time_ratio_to_mlp", 0) > 5],
                        "fit_time_goal_met": all(r <= 5 for r in ratios)})
    return summary


def select(candidates: list[dict], names: list[str], fold_count: int, quick: bool, repeats: int = 1,
           baselines: tuple[str, ...] = ("mlp",)) -> dict:
    """Validation scores of candidate MN settings: within every training fold, 20 % of its rows
    (stratified for classes) are held out and scored, `repeats` times with different draws (repeat r of
    fold i draws with seed i + 1000 r, so repeat 0 is the single split of repeats=1); the test folds are
    never used. "scores" lists fold by fold, repeats within a fold. The default MLP is fitted on the same
    rows ("mlp" entry), so that every candidate's fit-time ratio to it (`fit_time_ratio_to_mlp`, the ratio
    of the median fit times) is measured within the run; the other `baselines` as well when asked, so
    that the candidates can be set against the best of them, as the goal sets MN on the test folds."""
    out = {}
    for name in names:
        task, x, y = load_table(name, quick)
        keys = [json.dumps(c, sort_keys=True) for c in candidates] + list(baselines)
        per = {key: {"scores": [], "fit_seconds": []} for key in keys}
        draws = [(index, train, index + 1000 * repeat) for index, (train, _test) in
                 enumerate(folds(task, x, y, fold_count)) for repeat in range(repeats)]
        for turn, (index, train, split_seed) in enumerate(draws):
            inner, valid = train_test_split(train, test_size=0.2, random_state=split_seed,
                                            stratify=y[train] if task == "classification" else None)
            runs = list(zip(keys, candidates + [None] * len(baselines)))
            runs = runs[turn % len(runs):] + runs[:turn % len(runs)]              # rotated per draw
            for key, candidate in runs:
                estimator = make_estimator(key, task, index, rows=len(inner)) if candidate is None else \
                    make_estimator("mn", task, index, candidate)
                score, took = fit_and_score(estimator, x[inner], y[inner], x[valid], y[valid])
                per[key]["scores"].append(round(score, 5))
                per[key]["fit_seconds"].append(round(took, 4))
        for entry in per.values():
            entry["mean"] = round(statistics.mean(entry["scores"]), 5)
            entry["median_fit_seconds"] = round(statistics.median(entry["fit_seconds"]), 4)
        for entry in per.values():
            entry["fit_time_ratio_to_mlp"] = round(entry["median_fit_seconds"] / per["mlp"]["median_fit_seconds"], 3)
        out[name] = per
        print(name, {k: (v["mean"], v["fit_time_ratio_to_mlp"]) for k, v in per.items()}, file=sys.stderr, flush=True)
    return out


def _names(text: str, allowed, what: str, parser, also: str = "") -> list[str]:
    names = [n for n in text.split(",") if n]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        parser.error(f"unknown {what} {bad or text!r}; expected names from {', '.join(allowed)}{also}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        parser.error(f"{what} named more than once: {repeated}")
    return names


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES),
                        help=f"comma-separated (default: the eight tables the defaults were chosen on); held out: "
                        f"{', '.join(HELD_OUT_TABLES)}")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated (default: all)")
    parser.add_argument("--folds", type=int, default=FOLDS)
    parser.add_argument("--mn-params", default=None, help="JSON object of MetaNeighbors* parameters (default: none); "
                        "one that only the other estimator has (label_smoothing) is not passed")
    parser.add_argument("--select", default=None, metavar="CANDIDATES.json",
                        help="score the MN settings listed in this JSON file on validation splits of the training folds")
    parser.add_argument("--cv-seed", type=int, default=SEED,
                        help=f"seed of the shuffled folds (default {SEED}, the folds every default was reported on)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="--select: validation splits drawn per training fold (default 1)")
    parser.add_argument("--select-baselines", default="mlp",
                        help="--select: the baselines fitted on the same validation splits, comma-separated or all "
                        f"({','.join(BASELINES)}; default: mlp, the fit-time reference, which is always needed)")
    parser.add_argument("--quick", action="store_true", help="120-row subsets and 2 folds: a smoke test")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/<name>.json)")
    args = parser.parse_args(argv)
    names = _names(args.tables, {**TABLES, **HELD_OUT_TABLES}, "tables", parser)
    held_out = [n for n in names if n in HELD_OUT_TABLES]
    if held_out and (args.select or len(held_out) < len(names)):
        parser.error(f"held-out tables {held_out} run alone and never with --select (nothing is chosen on them)")
    methods = _names(args.methods, METHODS, "methods", parser)
    baselines = list(BASELINES) if args.select_baselines == "all" else \
        _names(args.select_baselines, BASELINES, "baselines", parser, also=", or all")
    if args.select_baselines != "mlp" and not args.select:
        parser.error("--select-baselines applies to --select rounds (a comparison runs the --methods)")
    if "mlp" not in baselines:
        parser.error(f"--select-baselines must include mlp (every fit-time ratio is taken to it), got {args.select_baselines!r}")
    if (args.quick or args.mn_params) and not args.out:
        parser.error("--quick and --mn-params runs need --out FILE: the default files in benchmarks/results hold "
                     "full runs with the default parameters")
    fold_count = 2 if args.quick else args.folds
    if fold_count < 2:
        parser.error(f"--folds: expected an integer >= 2, got {args.folds}")
    if args.repeats < 1:
        parser.error(f"--repeats: expected an integer >= 1, got {args.repeats}")
    try:
        mn_params = json.loads(args.mn_params) if args.mn_params else None
    except json.JSONDecodeError as error:
        parser.error(f"--mn-params: expected a JSON object, got {args.mn_params!r} ({error})")
    start = time.perf_counter()
    result = {"benchmark": "estimators", "folds": fold_count, "seed": args.cv_seed, "quick": args.quick,
              "mn_params": mn_params, **environment(torch.device("cpu"))}
    if args.select:
        with open(args.select) as handle:
            candidates = json.load(handle)
        result["benchmark"] = "estimators_selection"
        result["candidates"] = candidates
        result["repeats"] = args.repeats
        result["baselines"] = baselines
        result["selection"] = select(candidates, names, fold_count, args.quick, args.repeats, tuple(baselines))
        result["seconds"] = round(time.perf_counter() - start, 1)
        return save_result(result, "bench_estimators_selection_cpu", args.out)
    result["tables"] = {}
    stem = "bench_estimators" + ("_held_out" if held_out else "") + \
        ("" if args.cv_seed == SEED else f"_seed{args.cv_seed}") + "_cpu"
    result["held_out"] = bool(held_out)
    out = args.out or RESULTS / f"{stem}.json"
    for name in names:
        result["tables"][name] = run_table(name, methods, fold_count, args.quick, mn_params, args.cv_seed)
        atomic_write_json(out, {**result, "complete": False})          # a long run keeps what it has
        t = result["tables"][name]
        print(name, {m: (v["mean"], v["median_fit_seconds"]) for m, v in t["methods"].items()},
              file=sys.stderr, flush=True)
    result["summary"] = summarise(result["tables"])
    result["complete"] = True
    result["seconds"] = round(time.perf_counter() - start, 1)
    return save_result(result, stem, args.out)


if __name__ == "__main__":
    main()
