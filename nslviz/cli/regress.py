"""python -m nslviz regress: MN Table 2 on one table (k-fold CV of tuned kNN, vanilla MLP and MN);
python -m nslviz knn-toy: the 1-D toy of notebook 02 (kNN, local linear and MN fits)."""
from __future__ import annotations

import dataclasses

from ..datasets.tabular import available_tabular_datasets
from .common import add_progress_argument, emit_json, folder_path, positive_float, positive_int, seed_value, thread_count


def add_parser(subparsers) -> None:
    from ..experiments.regression_table import RegressionCVConfig

    d = RegressionCVConfig()
    p = subparsers.add_parser("regress", help="MN Table 2: cross-validate kNN, the vanilla MLP and MN on a table",
                              description="k-fold cross-validation of kNN (k tuned), the vanilla MLP (layers x "
                                          "width tuned) and Meta-Neighborhoods with the same network (T tuned); "
                                          "every choice is made on a validation split of the training folds. "
                                          "Test MSE in the units of the normalised table, as in MN Table 2.")
    p.add_argument("--dataset", default=d.dataset, choices=available_tabular_datasets(),
                   help="diabetes works offline; the UCI sets download into the data folder on first use")
    p.add_argument("--folds", type=positive_int, default=d.folds)
    p.add_argument("--seed", type=seed_value, default=d.seed)
    p.add_argument("--entries", type=positive_int, default=None,
                   help="S (default: 1000 for tables of 1000+ rows, else one per training row)")
    p.add_argument("--temperature", type=positive_float, nargs="+", default=list(d.temperatures),
                   help="MN temperatures T to choose from on validation")
    p.add_argument("--neighbors", type=positive_int, nargs="+", default=list(d.neighbors), help="kNN k grid")
    p.add_argument("--layers", type=positive_int, nargs="+", default=list(d.layers),
                   help="MLP depths to search (Linear layers; 2 = one hidden layer)")
    p.add_argument("--widths", type=positive_int, nargs="+", default=list(d.widths), help="MLP widths to search")
    p.add_argument("--weight-decay", type=float, nargs="+", default=list(d.weight_decays),
                   help="weight decays to search (AdamW, decoupled); the paper chose one per dataset from a "
                        "grid it does not give: e.g. --weight-decay 0 1e-4 1e-3 1e-2")
    p.add_argument("--max-epochs", type=positive_int, default=d.max_epochs)
    p.add_argument("--max-rows", type=positive_int, default=None, help="use a seeded subset of the table")
    p.add_argument("--quick", action="store_true",
                   help="notebook 06's quick mode: the first two values of --layers, --widths and --temperature, "
                        "and at most 2000 rows")
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    p.add_argument("--data-root", default=None, help="data folder (default: $NSLVIZ_DATA or the repository's data/)")
    p.add_argument("--threads", type=thread_count, default=d.threads,
                   help="torch CPU threads while it runs (default: 1, fastest for these small networks)")
    p.add_argument("--run-dir", type=folder_path, default=None, help="write config.json, metrics.jsonl (one row per fold), summary.json")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --run-dir (default: refuse)")
    add_progress_argument(p)
    p.add_argument("--json", action="store_true", help="end the output with one JSON object")
    p.set_defaults(run=run, subparser=p)

    t = subparsers.add_parser("knn-toy", help="notebook 02's 1-D toy: kNN, local linear and MN fits",
                              description="Fit kNN and local linear regression for several k, and train "
                                          "Meta-Neighborhoods for several T, on a noisy 1-D function.")
    t.add_argument("--quick", action="store_true", help="fewer epochs and temperatures")
    t.add_argument("--seed", type=seed_value, default=0)
    t.add_argument("--json", action="store_true", help="end the output with one JSON object")
    t.set_defaults(run=run_toy, subparser=t)


def run(args) -> int:
    from ..training.rundir import claimed_run_dir, write_run
    from ..experiments.regression_table import RegressionCVConfig, cross_validate_regression, quick_config

    config = RegressionCVConfig(dataset=args.dataset, folds=args.folds, seed=args.seed, entries=args.entries,
                                temperatures=tuple(args.temperature), neighbors=tuple(args.neighbors),
                                layers=tuple(args.layers), widths=tuple(args.widths),
                                weight_decays=tuple(args.weight_decay), max_epochs=args.max_epochs,
                                max_rows=args.max_rows, device=args.device, data_root=args.data_root,
                                threads=args.threads, progress=not args.no_progress)
    if args.quick:
        config = quick_config(config)
    with claimed_run_dir(args.run_dir, overwrite=args.overwrite, one_shot=True):            # before the work, not after
        result = cross_validate_regression(config)
        s = result.summary()
        print(f"regress {s['dataset']} (n={s['n']}, d={s['d']}, {s['folds']} folds, S={s['entries']}): test MSE "
              f"kNN {s['knn_mse']:.4f} ± {s['knn_mse_std']:.4f} | MLP {s['mlp_mse']:.4f} ± {s['mlp_mse_std']:.4f} | "
              f"MN {s['mn_mse']:.4f} ± {s['mn_mse_std']:.4f} | paired t-test MN vs MLP p={s['mn_vs_mlp_pvalue']:.3g}, "
              f"vs kNN p={s['mn_vs_knn_pvalue']:.3g} | {s['seconds']:.1f} s", flush=True)
        if args.run_dir is not None:
            write_run(args.run_dir, dataclasses.asdict(config), result.folds, s)
    if args.json:
        emit_json(s)
    return 0


def run_toy(args) -> int:
    from ..experiments.knn import KnnToyConfig, run_knn_toy

    config = KnnToyConfig(seed=args.seed)
    if args.quick:
        config = config.quick()
    result = run_knn_toy(config)
    s = result.summary()
    best = lambda scores: min(scores, key=scores.get)            # noqa: E731
    print(f"knn-toy: test MSE kNN best k={best(s['knn_mse'])} {min(s['knn_mse'].values()):.4f} | local linear "
          f"best k={best(s['local_linear_mse'])} {min(s['local_linear_mse'].values()):.4f} | MLP {s['mlp_mse']:.4f} | "
          f"MN best T={best(s['mn_mse'])} {min(s['mn_mse'].values()):.4f} | one step from the prior "
          f"(k={s['prior_neighbors']}) best α={best(s['from_prior_mse'])} {min(s['from_prior_mse'].values()):.4f} | "
          f"{s['seconds']:.1f} s", flush=True)
    if args.json:
        emit_json(s)
    return 0
