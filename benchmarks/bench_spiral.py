"""Wall time and accuracy of the default spiral run (MN sec. 4.1) on this machine.

Prints one JSON object: the run's summary (MN and linear test accuracy, seconds) for `--repeats`
runs with the default configuration, plus the median time. Usage: python benchmarks/bench_spiral.py
"""
from __future__ import annotations

import argparse
import statistics

import torch

from nslviz.experiments.spiral import SpiralConfig, run_spiral
from _results import save_result  # noqa: E402  (benchmarks/_results.py)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/<name>.json)")
    args = parser.parse_args(argv)
    runs = [run_spiral(SpiralConfig()).summary() for _ in range(args.repeats)]
    result = {"benchmark": "spiral_default", "threads": torch.get_num_threads(), "torch": torch.__version__,
              "median_seconds": round(statistics.median(r["seconds"] for r in runs), 3),
              "mn_test_acc": runs[0]["mn_test_acc"], "linear_test_acc": runs[0]["linear_test_acc"],
              "runs": runs}
    save_result(result, "spiral_cpu", args.out)
    return result


if __name__ == "__main__":
    main()
