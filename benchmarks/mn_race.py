"""The race between the backbone and the induced dictionary, measured (nslviz.experiments.race,
docs/dictionary-race.md): every arm on `digits` and `synthetic`, paired seeds, 800 iterations of the
official MN recipe otherwise. Prints one JSON object and writes benchmarks/results/mn_race_cpu.json.

    python benchmarks/mn_race.py --threads 1                        # every arm, both sets, seeds 0-4
    python benchmarks/mn_race.py --datasets digits --arms joint vanilla --seeds 0 1 --iterations 200

Runs go to --root (default runs/mn-race), one folder per dataset/seed/arm; a finished run is read
back and a cut one resumed, so a second call with more seeds trains only the new ones. Seeds and
settings are fixed before any result is seen; nothing is chosen on test data.
"""
from __future__ import annotations

import argparse
import sys

from nslviz.experiments.race import ARMS, RACE_DATASETS, race_report, run_race   # nslviz before torch (THP)
from nslviz.training.diagnostics import NOISE_FLOOR
import torch
from _results import environment, save_result  # noqa: E402  (benchmarks/_results.py)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=RACE_DATASETS, default=list(RACE_DATASETS))
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--iterations", type=int, default=800)
    parser.add_argument("--warmup", type=int, default=200, help="iterations of the warm-up arms' frozen backbone")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--root", default=None, help="run directories (default: runs/mn-race)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/mn_race_cpu.json")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = run_race(args.datasets, args.arms, args.seeds, iterations=args.iterations, warmup=args.warmup,
                       root=args.root, progress=False)
    first = next(iter(next(iter(results.values())).values()))[0]
    result = {"benchmark": "mn_race", "datasets": args.datasets, "arms": args.arms, "seeds": args.seeds,
              "iterations": args.iterations, "warmup": args.warmup, "backbone": first["backbone"],
              "adam_noise_floor": round(NOISE_FLOOR, 4), "report": race_report(results),
              "environment": environment(torch.device("cpu")),
              "command": "python benchmarks/mn_race.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    save_result(result, "mn_race_cpu", args.out)
    return result


if __name__ == "__main__":
    main()
