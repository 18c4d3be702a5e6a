"""python -m nslviz estimators: MetaNeighborsClassifier / MetaNeighborsRegressor against scikit-learn's
MLPs and kNN on public tables, every method with default parameters on the same folds
(nslviz.experiments.estimators; notebook 11).

    python -m nslviz estimators                                   # the eight tables, 5 folds (about a minute)
    python -m nslviz estimators --tables iris,wine,diabetes --json
    python -m nslviz estimators --tables classes10,friedman3 --seed 1
    python -m nslviz estimators --tables iris,wine --draws 10            # ten shuffles of the folds, pooled

Prints, per table, every method's mean score, MN minus the best baseline in points with its 95 %
interval, and MN's fit time as a multiple of the default MLP's. With --draws N, the same comparison on
N shuffles of the rows into folds (seeds --seed, --seed + 1, ...), then per table every method's mean over
all their test folds, MN minus the best of those means (fold by fold, with a 95 % interval widened for
folds that share rows), and the draws on which MN was at least the best baseline; then, for every
method, the tables on which its mean is at least every other method's.
"""
from __future__ import annotations

from ..experiments.estimators import HELD_OUT_TABLES, METHODS, TABLES, EstimatorComparisonConfig
from .common import add_progress_argument, emit_json, integer_at_least, positive_int, seed_value


def add_parser(subparsers) -> None:
    d = EstimatorComparisonConfig()
    p = subparsers.add_parser("estimators", help="the scikit-learn estimators against scikit-learn's MLPs and kNN",
                              description=__doc__)
    p.add_argument("--tables", default=",".join(d.tables),
                   help=f"comma-separated, from {', '.join(TABLES)} (the default) and the held-out "
                        f"{', '.join(HELD_OUT_TABLES)}")
    p.add_argument("--methods", default=",".join(d.methods), help=f"comma-separated, from {', '.join(METHODS)}")
    p.add_argument("--folds", type=integer_at_least(2), default=d.folds,
                   help="cross-validation folds, the same for every method")
    p.add_argument("--seed", type=seed_value, default=d.seed, help="shuffles the rows into folds")
    p.add_argument("--max-rows", type=positive_int, default=None, help="a seeded subset of every table")
    p.add_argument("--draws", type=positive_int, default=1,
                   help="shuffles of the rows into folds, seeds --seed, --seed + 1, ..., pooled (default: 1)")
    add_progress_argument(p)
    p.add_argument("--json", action="store_true", help="end the output with one JSON object")
    p.set_defaults(run=run, subparser=p)


def run(args) -> int:
    from ..analysis.paired import format_paired
    from ..experiments.estimators import METHOD_LABELS, at_the_top_text, compare_estimators
    config = EstimatorComparisonConfig(tables=args.tables, methods=args.methods, folds=args.folds, seed=args.seed,
                                       max_rows=args.max_rows, progress=not args.no_progress)
    if args.draws > 1:
        return _run_draws(config, args)
    result = compare_estimators(config)
    for name, table in result.tables.items():
        means = ", ".join(f"{METHOD_LABELS[m]} {v['mean']:.3f}" for m, v in table["methods"].items())
        line = f"{name} ({table['metric']}): {means}"
        if "best_baseline" in table:
            best = table["best_baseline"]
            line += f" | MN - {METHOD_LABELS[best]}: {format_paired(table['mn_vs'][best])} points"
        if "mn_fit_time_ratio_to_mlp" in table:
            line += f" | MN fit {table['mn_fit_time_ratio_to_mlp']:.2f}x the MLP's"
        print(line, flush=True)
    summary = result.summary()
    if "tables_compared" in summary:
        print(f"MN at least as good as the best baseline on {summary['mn_at_least_best_baseline']} of "
              f"{summary['tables_compared']} tables | {summary['seconds']:.0f} s", flush=True)
    if "tables_at_the_top" in summary:
        print(f"Tables on which each method's mean is at least every other's: "
              f"{at_the_top_text(summary['tables_at_the_top'])}", flush=True)
    if args.json:
        emit_json({**summary, "per_table": result.tables})
    return 0


def _run_draws(config, args) -> int:
    from ..analysis.paired import format_paired
    from ..experiments.estimators import METHOD_LABELS, compare_draws
    comparisons, pooled = compare_draws(config, args.draws)
    folds = pooled["summary"]["test_folds"]
    for name, table in pooled["tables"].items():
        means = ", ".join(f"{METHOD_LABELS[m]} {mean:.4f}" for m, mean in table["means"].items())
        print(f"{name} ({table['metric']}, mean of {folds} test folds): {means} | MN - "
              f"{METHOD_LABELS[table['best_baseline']]}: {format_paired(table['mn_vs_best'])} points | MN at least "
              f"the best baseline on {table['draws_mn_at_least_best']} of {args.draws} draws", flush=True)
    summary = pooled["summary"]
    print(f"MN at least as good as the best baseline, draw by draw: {summary['mn_at_least_best_per_draw']} of "
          f"{summary['tables_compared']} tables; pooled: {summary['tables_mn_at_least_best_pooled']} | "
          f"{sum(c.seconds for c in comparisons):.0f} s", flush=True)
    print("Tables on which each method's mean is at least every other's, draw by draw: " + "; ".join(
        f"{METHOD_LABELS[m]} {counts}" for m, counts in summary["tables_at_the_top_per_draw"].items()), flush=True)
    if args.json:
        emit_json(pooled)
    return 0
