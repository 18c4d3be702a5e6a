"""Intra-op thread control: one thread for small workloads, and no more threads than the CPUs a
container's quota lets this process use."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from ._checks import check_threads


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run a block with `threads` torch intra-op CPU threads (None: unchanged), then restore the
    setting. Tiny tensors (the spiral, tabular MLPs, unit tests) run fastest on one thread, and on a
    shared CPU several times faster: idle OpenMP threads spin at every barrier."""
    if threads is not None:
        check_threads("threads", threads)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")      # a thread count the user chose


def _read_first_line(path: Path) -> str | None:
    try:
        return path.read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int | None:
    """The CPUs this process may use by its cgroup's CPU quota, rounded down (at least 1): a container's
    `--cpus 2`, a Kubernetes CPU limit (Binder's), a systemd CPUQuota. None where no quota is set or
    none can be read (bare metal, macOS, Windows).

    The quota throttles time; it does not hide cores. `os.cpu_count()`, the affinity mask and torch's
    default thread count still see every core of the host, so a 2-CPU pod on a 64-core node starts 32
    intra-op threads that spin at each barrier while the kernel throttles them.

    cgroup v2: "quota period" in cpu.max ("max": none); v1: cfs_quota_us (-1: none) over cfs_period_us;
    read in the process's own group and at the root (a container's own group), the smallest one counts."""
    try:
        lines = proc_cgroup.read_text().splitlines()                    # "id:controllers:/path" each
    except OSError:
        lines = []
    groups = [group for group in (line.split(":", 2) for line in lines) if len(group) == 3]
    own_v2 = [path for _, controllers, path in groups if controllers == ""]
    own_v1 = [path for _, controllers, path in groups if "cpu" in controllers.split(",")]
    places = [root / path.lstrip("/") / "cpu.max" for path in own_v2 + ["/"]]
    places += [root / hierarchy / path.lstrip("/") / "cpu.cfs_quota_us"
               for hierarchy in ("cpu", "cpu,cpuacct") for path in own_v1 + ["/"]]
    quotas = []
    for place in dict.fromkeys(places):                                 # each file once
        line = _read_first_line(place)
        if line is None:
            continue
        if place.name == "cpu.max":
            quota, _, period = line.partition(" ")
        else:
            quota, period = line, _read_first_line(place.with_name("cpu.cfs_period_us")) or ""
        try:
            quota, period = int(quota), int(period or 100000)
        except ValueError:                                              # "max", or unreadable: no limit here
            continue
        if quota > 0 and period > 0:                                    # v1's -1: no limit
            quotas.append(max(1, quota // period))
    return min(quotas) if quotas else None


def available_cpus() -> int:
    """The CPUs this process can run on: its affinity mask, capped by its cgroup's CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:                                            # macOS, Windows
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return min(cpus, quota) if quota is not None else cpus


def match_threads_to_cpus() -> int:
    """Lower torch's intra-op threads to `available_cpus()` where its default exceeds them (a container
    with a CPU quota: Binder, Docker `--cpus`, Kubernetes), unless OMP_NUM_THREADS or MKL_NUM_THREADS
    sets the count. Never raises it. Returns the thread count in force. Called by every notebook
    (`nslviz.viz.setup_notebook`) and command (`python -m nslviz`)."""
    threads = torch.get_num_threads()
    if any(os.environ.get(name) for name in THREAD_VARIABLES):
        return threads
    cpus = available_cpus()
    if threads > cpus:
        torch.set_num_threads(cpus)
        return cpus
    return threads
