"""MetaNeighborsClassifier / MetaNeighborsRegressor against scikit-learn's MLP and kNN, out of the box.

The comparison of `nslviz.experiments.estimators` (its docstring lists the tables and the methods; notebook
11 and `python -m nslviz estimators` run the same), written to benchmarks/results/: 5-fold
cross-validation of the eight tables the estimators' defaults were chosen on, every method with default
parameters on the same folds, paired differences MN - baseline in points with 95 % intervals, and MN's
fit-time ratio to the default MLP, taken per table in the same run. `--cv-seed N` shuffles the rows into
other folds (the estimators' defaults were chosen, and the goal reported, on seed 0's): the same
comparison on another draw of the folds. The two held-out tables (first run after every default had been
chosen) run only when named, alone or together, never in a --select round (`--tables
classes10,friedman3`; results in bench_estimators_held_out*_cpu.json).

`--select CANDIDATES.json` instead scores candidate MN settings (a JSON list of parameter objects, each
on top of the defaults) on validation splits carved out of the training folds only (the test folds are
never read), and fits the default MLP on the same rows, so that every candidate's fit-time ratio to it
is measured in the same run; the estimators' defaults were chosen that way (docs/estimators-selection.md).
`--select-baselines all` fits the other three baselines on the same splits too, so that the candidates
can be set against the best of the four, as the goal sets MN on the test folds.

`--pool-draws` runs nothing: it pools the committed draws of the eight tables
(bench_estimators_cpu.json and bench_estimators_seed*_cpu.json) into bench_estimators_draws_cpu.json,
every method's mean over all their test folds and the draws on which MN is at least the best baseline
(`nslviz.experiments.estimators.pool_draws`); `--pool-draws width128` pools the draws kept under that
name (bench_estimators_width128_cpu.json, bench_estimators_width128_seed*_cpu.json) instead.

Usage: python benchmarks/bench_estimators.py [--quick] [--tables digits,sine] [--methods mn,mlp]
       [--mn-params '{"width": 128}'] [--out FILE]
       python benchmarks/bench_estimators.py --select CANDIDATES.json [--repeats 3] [--tables ...]
                                             [--select-baselines all]
       python benchmarks/bench_estimators.py --pool-draws [NAME] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import torch
from sklearn.model_selection import train_test_split

from nslviz.experiments.estimators import (ALL_TABLES, BASELINES, FOLDS, HELD_OUT_TABLES, METHODS, NEIGHBOR_GRID,  # noqa: F401
                                           SEED, TABLES, check_folds, check_names, compare_on_table, cv_folds,
                                           fit_and_score, load_table, make_estimator, pool_draws, summarise,
                                           warm_up)
from nslviz.training.rundir import atomic_write_json
from _results import RESULTS, environment, save_result  # noqa: E402  (benchmarks/_results.py)

QUICK_ROWS = 120            # --quick: a seeded subset of every table (smoke runs only, the numbers mean nothing)


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
        task, x, y = load_table(name, QUICK_ROWS if quick else None)
        keys = [json.dumps(c, sort_keys=True) for c in candidates] + list(baselines)
        per = {key: {"scores": [], "fit_seconds": []} for key in keys}
        draws = [(index, train, index + 1000 * repeat) for index, (train, _test) in
                 enumerate(cv_folds(task, x, y, fold_count)) for repeat in range(repeats)]
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


def draws_stem(name: str = "") -> str:
    """bench_estimators, or bench_estimators_<name> for the draws kept under a name (width128)."""
    return "bench_estimators" + (f"_{name}" if name else "")


def draw_files(name: str = "") -> list:
    """The committed draws of the eight tables, in the order of their seeds: bench_estimators_cpu.json
    (seed 0), then bench_estimators_seed<N>_cpu.json (the defaults); with a `name`,
    bench_estimators_<name>_cpu.json and bench_estimators_<name>_seed<N>_cpu.json."""
    stem = draws_stem(name)
    seeded = sorted(RESULTS.glob(f"{stem}_seed*_cpu.json"),
                    key=lambda path: int(path.stem.removeprefix(f"{stem}_seed").removesuffix("_cpu")))
    return [RESULTS / f"{stem}_cpu.json", *seeded]


def _names(text: str, allowed, what: str, parser, also: str = "") -> list[str]:
    try:
        return list(check_names(what, text, allowed))
    except ValueError as error:
        parser.error(f"{error}{also}")


def selection_stem(candidates: str) -> str:
    """The default file of a selection round: estimators_candidates_N.json's scores go to
    bench_estimators_selection_N_cpu.json (another candidates file: bench_estimators_selection_cpu.json)."""
    round_name = re.fullmatch(r"estimators_candidates_(\w+)\.json", Path(candidates).name)
    return "bench_estimators_selection" + (f"_{round_name.group(1)}" if round_name else "") + "_cpu"


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
                        help="score the MN settings listed in this JSON file on validation splits of the training folds "
                             "(estimators_candidates_N.json: into bench_estimators_selection_N_cpu.json)")
    parser.add_argument("--cv-seed", type=int, default=SEED,
                        help=f"seed of the shuffled folds (default {SEED}, the folds every default was reported on)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="--select: validation splits drawn per training fold (default 1)")
    parser.add_argument("--select-baselines", default="mlp",
                        help="--select: the baselines fitted on the same validation splits, comma-separated or all "
                        f"({','.join(BASELINES)}; default: mlp, the fit-time reference, which is always needed)")
    parser.add_argument("--pool-draws", nargs="?", const="", default=None, metavar="NAME",
                        help="run nothing: pool the committed draws of the folds (of bench_estimators_NAME_*, "
                        "when named) into bench_estimators[_NAME]_draws_cpu.json")
    parser.add_argument("--quick", action="store_true", help="120-row subsets and 2 folds: a smoke test")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/<name>.json)")
    args = parser.parse_args(argv)
    if args.pool_draws is not None:
        draws = [json.loads(path.read_text()) for path in draw_files(args.pool_draws) if path.exists()]
        try:
            pooled = pool_draws(draws)
        except ValueError as error:
            parser.error(f"{f'--pool-draws {args.pool_draws}'.strip()}: {error}")
        return save_result({"benchmark": "estimators_draws", **pooled}, f"{draws_stem(args.pool_draws)}_draws_cpu",
                           args.out)
    names = _names(args.tables, ALL_TABLES, "tables", parser)
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
        for name in names:
            check_folds(name, fold_count, QUICK_ROWS if args.quick else None)
    except ValueError as error:
        parser.error(str(error))
    try:
        mn_params = json.loads(args.mn_params) if args.mn_params else None
    except json.JSONDecodeError as error:
        parser.error(f"--mn-params: expected a JSON object, got {args.mn_params!r} ({error})")
    warm_up()                           # not timed: the first fit of a process starts torch's threads
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
        return save_result(result, selection_stem(args.select), args.out)
    result["tables"] = {}
    stem = "bench_estimators" + ("_held_out" if held_out else "") + \
        ("" if args.cv_seed == SEED else f"_seed{args.cv_seed}") + "_cpu"
    result["held_out"] = bool(held_out)
    out = args.out or RESULTS / f"{stem}.json"
    for name in names:
        result["tables"][name] = compare_on_table(name, methods, fold_count, args.cv_seed, mn_params,
                                                  QUICK_ROWS if args.quick else None)
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
