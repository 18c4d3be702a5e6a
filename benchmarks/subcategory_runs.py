"""Sub-category discovery (MN Appendix A.9) in notebook 05's quick setting, over paired seeds: vanilla and
MN trained on the 5 coarse labels of `digits` (pairs of look-alike digits), MN started from the vanilla
run (`mn_start="vanilla"`), then a kNN (k = 5, the training set as neighbors) on the coarse labels and
on the 10 digits neither model was trained on; MN's kNN over its attention vectors (the paper's) and
over its features. Prints one JSON object and writes benchmarks/results/subcategory_digits_cpu.json.

    python benchmarks/subcategory_runs.py --threads 2                 # seeds 0-5
    python benchmarks/subcategory_runs.py --seeds 0 --root /tmp/sub  # one seed, runs elsewhere
    python benchmarks/subcategory_runs.py --entries 1000 --out benchmarks/results/subcategory_digits_s1000_cpu.json

Runs go to --root (default runs/subcategory), one group per seed; a finished run is read back. Seeds and
settings are notebook 05's quick mode, fixed before any result is seen.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from nslviz.experiments.compare import compare_methods, quick_config   # nslviz before torch (THP)
from nslviz.experiments.neighbors import analyze_neighbors
from nslviz.paper import MN_SUBCATEGORY_DISCOVERY
from nslviz.paths import runs_root
from nslviz.training.config import TrainConfig
import torch
from _results import compare, environment, save_result  # noqa: E402  (benchmarks/_results.py)

K = 5
QUICK_EPOCHS = 3                  # notebook 05's quick mode
# (representation in the report, method whose report holds it)
REPRESENTATIONS = {"mn_attention": ("mn", "attention"), "mn_features": ("mn", "features"),
                   "vanilla_features": ("vanilla", "features")}


def one_seed(seed: int, root: Path, entries: int = 100, epochs: int = QUICK_EPOCHS) -> dict:
    """Notebook 05's quick runs for one seed (S = `entries`, `epochs`), and their kNN accuracies on coarse
    and fine labels."""
    config = TrainConfig.from_preset("mn", dataset="cifar100", backbone="densenet40", label_kind="coarse",
                                     entries=5000, epochs=400, batch_size=128, device="cpu", seed=seed)
    config = dataclasses.replace(quick_config(config, epochs=epochs), entries=entries)   # digits, convnet4
    summaries = compare_methods(config, ["vanilla", "mn"], group_dir=root / f"seed{seed}", mn_start="vanilla",
                                progress=False)
    report = analyze_neighbors(summaries["mn"]["run_dir"], summaries["vanilla"]["run_dir"], k=K, seed=seed,
                               device="cpu")
    row = {"seed": seed, "test_acc": {method: summaries[method]["test_acc"] for method in ("vanilla", "mn")}}
    for name, (method, representation) in REPRESENTATIONS.items():
        row[name] = report.subcategory[method]["by_representation"][representation]    # fine_acc, coarse_acc
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--entries", type=int, default=100, help="S (notebook 05's quick mode: 100)")
    parser.add_argument("--epochs", type=int, default=QUICK_EPOCHS, help="(notebook 05's quick mode: 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--root", default=None, help="run directories (default: runs/subcategory)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/subcategory_digits_cpu.json")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    root = Path(args.root) if args.root else runs_root() / "subcategory" / f"S{args.entries}-{args.epochs}epochs"
    rows = [one_seed(seed, root, args.entries, args.epochs) for seed in args.seeds]
    differences = {f"{name}_minus_vanilla": {labels: compare([row[name][f"{labels}_acc"] for row in rows],
                                                             [row["vanilla_features"][f"{labels}_acc"] for row in rows])
                                             for labels in ("fine", "coarse")}
                   for name in ("mn_attention", "mn_features")}
    result = {"benchmark": "subcategory_digits", "dataset": "digits", "coarse_labels": "5 pairs of look-alike digits",
              "k": K, "entries": args.entries, "epochs": args.epochs, "mn_start": "vanilla", "seeds": args.seeds, "per_seed": rows,
              **differences, "paper": MN_SUBCATEGORY_DISCOVERY, "environment": environment(torch.device("cpu")),
              "command": "python benchmarks/subcategory_runs.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    save_result(result, "subcategory_digits_cpu", args.out)
    return result


if __name__ == "__main__":
    main()
