"""Wall time and accuracy of the default spiral run (MN sec. 4.1) on this machine.

Prints one JSON object: the run's summary (MN and linear test accuracy, seconds) for `--repeats`
runs with the default configuration, plus the median time. Usage: python benchmarks/bench_spiral.py
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from nslviz.training.spiral import SpiralConfig, run_spiral

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "spiral_cpu.json"))
    args = parser.parse_args(argv)
    runs = [run_spiral(SpiralConfig()).summary() for _ in range(args.repeats)]
    result = {"benchmark": "spiral_default", "threads": torch.get_num_threads(), "torch": torch.__version__,
              "median_seconds": round(statistics.median(r["seconds"] for r in runs), 3),
              "mn_test_acc": runs[0]["mn_test_acc"], "linear_test_acc": runs[0]["linear_test_acc"],
              "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
