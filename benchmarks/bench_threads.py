"""Training steps with as many torch threads as CPUs, and with more: what a container's CPU quota costs
when torch sizes its thread pool by the host's cores.

`python -m nslviz` and every notebook lower torch's intra-op threads to the CPUs the process may use
(`nslviz._threads.match_threads_to_cpus`: its affinity mask capped by its cgroup's CPU quota). This
measures what that saves: Adam steps of quick mode's ConvNet-4 on a batch of 16×16 images at
`available_cpus()` threads and at `--oversubscribe` times as many, interleaved rounds, the median
step of each. Then the same steps in `--processes` processes at once, each with threads = CPUs, with
OpenMP's default waiting (its threads spin at each barrier) and with OMP_WAIT_POLICY=PASSIVE (they sleep),
against one process alone: what a machine that other jobs share costs. Prints one JSON object.
Usage: python benchmarks/bench_threads.py [--oversubscribe 4 8] [--processes 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import environment, save_result  # noqa: E402  (benchmarks/_results.py)

from nslviz._threads import available_cpus  # noqa: E402
from nslviz.models import build_backbone  # noqa: E402


def step_seconds(threads: int, steps: int, batch: int, size: int) -> float:
    """Median seconds of one Adam step (forward, backward, update) at `threads` intra-op threads."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    backbone = build_backbone("convnet4", image_size=size)
    net = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.feature_dim, 10))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    images, labels = torch.rand(batch, 3, size, size), torch.randint(0, 10, (batch,))
    times = []
    for _ in range(steps + 2):                                    # two warm-up steps
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(images), labels).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


START_DELAY = 8.0          # seconds from launch to the common start: time enough to import torch


def processes_step_seconds(processes: int, passive: bool, threads: int, steps: int, batch: int, size: int) -> float:
    """Mean over `processes` processes started together of each one's median step (`step_seconds`), with
    OpenMP's default waiting or OMP_WAIT_POLICY=PASSIVE (read when a process starts, hence processes)."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    start = time.time() + START_DELAY                           # after every process's imports: all time at once
    code = (f"import sys, time; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            f"from bench_threads import step_seconds; time.sleep(max(0.0, {start} - time.time())); "
            f"print(step_seconds({threads}, {steps}, {batch}, {size}))")
    workers = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
               for _ in range(processes)]
    outputs = [worker.communicate()[0] for worker in workers]
    if any(worker.returncode for worker in workers):
        raise RuntimeError(f"a timing process failed (exit codes {[worker.returncode for worker in workers]})")
    return statistics.mean(float(out.strip().splitlines()[-1]) for out in outputs)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oversubscribe", type=int, nargs="+", default=[4, 8],
                        help="thread counts as multiples of the available CPUs")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every thread count")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--processes", type=int, default=2, help="processes sharing the CPUs at once (0: skip)")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/threads_cpu.json)")
    args = parser.parse_args(argv)
    if min(args.oversubscribe) < 2 or min(args.steps, args.rounds, args.batch, args.size) < 1 or args.processes < 0:
        parser.error(f"--oversubscribe takes multiples of at least 2, the counts must be positive and --processes "
                     f"at least 0, got {args.oversubscribe}, steps {args.steps}, rounds {args.rounds}, batch "
                     f"{args.batch}, size {args.size}, processes {args.processes}")
    previous, cpus = torch.get_num_threads(), available_cpus()
    counts = [cpus] + [cpus * factor for factor in args.oversubscribe]
    seconds = {n: [] for n in counts}
    try:
        for _ in range(args.rounds):                              # interleaved: drift hits every count alike
            for n in counts:
                seconds[n].append(step_seconds(n, args.steps, args.batch, args.size))
    finally:
        torch.set_num_threads(previous)
    median = {n: statistics.median(values) for n, values in seconds.items()}
    shared = {}
    if args.processes:
        settings = [(1, False), (1, True), (args.processes, False), (args.processes, True)]
        times = {setting: [] for setting in settings}
        for _ in range(args.rounds):
            for processes, passive in settings:
                times[(processes, passive)].append(
                    processes_step_seconds(processes, passive, cpus, args.steps, args.batch, args.size))
        shared = {"processes": args.processes, "threads_each": cpus,
                  "step_ms": {f"{'1 process' if p == 1 else f'{p} processes'}, "
                              f"{'OMP_WAIT_POLICY=PASSIVE' if passive else 'default waiting'}":
                              round(1000 * statistics.median(values), 2) for (p, passive), values in times.items()}}
    result = {"benchmark": "threads", "backbone": "convnet4", "batch": args.batch, "image_size": args.size,
              "steps": args.steps, "rounds": args.rounds, "available_cpus": cpus,
              "step_ms": {str(n): round(1000 * s, 2) for n, s in median.items()},
              "slowdown": {str(n): round(s / median[cpus], 2) for n, s in median.items()}, "shared": shared,
              **{key: value for key, value in environment(torch.device("cpu")).items() if key != "threads"}}
    return save_result(result, "threads_cpu", args.out)


if __name__ == "__main__":
    main()
