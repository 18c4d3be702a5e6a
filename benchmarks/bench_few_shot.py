"""How many test episodes notebook 10's quick mode should adapt together: seconds for its four runs'
test-time adaptation (`run_named`: finetuning, or MAML's inner loop, on 60 episodes of glyphs) with
`episode_batch` episodes vectorised at once, against `--baseline` in the same run, interleaved rounds.

Batching the episodes changes no number (the accuracies of every episode are compared); on a CPU a
smaller batch is faster, where a GPU wants a large one (the full-mode default, 25). Pretraining runs
once, outside the timing. Prints one JSON object and writes benchmarks/results/few_shot_episode_batch_cpu.json.
Usage: python benchmarks/bench_few_shot.py [--batches 2 4 10 25] [--baseline 25] [--rounds 2] [--threads N]
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import environment, save_result  # noqa: E402  (benchmarks/_results.py)

from nslviz._threads import available_cpus  # noqa: E402
from nslviz.experiments.few_shot import (FewShotConfig, load_few_shot_data, pretrain_for_runs,  # noqa: E402
                                         quick_few_shot_config, run_named)

RUNS = ["none", "static_dns", "dynamic_dns", "static_dns_maml"]     # notebook 10's runs


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 4, 10, 25], help="episode_batch values")
    parser.add_argument("--baseline", type=int, default=25, help="the episode_batch the ratios are against")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the batches")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the CPUs available)")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/<name>.json)")
    args = parser.parse_args(argv)
    batches = list(dict.fromkeys([args.baseline, *args.batches]))
    torch.set_num_threads(args.threads or available_cpus())

    config = quick_few_shot_config(FewShotConfig(progress=False))
    data = load_few_shot_data(config)
    pretrained = pretrain_for_runs(config, data, RUNS)
    seconds = {batch: [] for batch in batches}
    accuracies = {}
    for round_ in range(args.rounds):
        for batch in batches[round_ % len(batches):] + batches[:round_ % len(batches)]:   # rotated order
            start = time.perf_counter()
            results = run_named(dataclasses.replace(config, episode_batch=batch), data, RUNS, pretrained)
            seconds[batch].append(time.perf_counter() - start)
            accuracies[batch] = {run: result.accuracies.tolist() for run, result in results.items()}
    median = {batch: statistics.median(times) for batch, times in seconds.items()}
    result = {"benchmark": "few_shot_episode_batch", "runs": RUNS, "episodes": config.episodes,
              "finetune_epochs": config.finetune_epochs, "baseline_episode_batch": args.baseline,
              "quick_episode_batch": quick_few_shot_config(FewShotConfig()).episode_batch,
              "seconds": {str(b): [round(t, 2) for t in times] for b, times in seconds.items()},
              "median_seconds": {str(b): round(t, 2) for b, t in median.items()},
              "time_over_baseline": {str(b): round(t / median[args.baseline], 3) for b, t in median.items()},
              "same_accuracies": all(accuracies[b] == accuracies[args.baseline] for b in batches),
              "environment": environment(torch.device("cpu"))}
    save_result(result, "few_shot_episode_batch_cpu", args.out)
    return result


if __name__ == "__main__":
    main()
