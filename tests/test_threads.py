"""Thread counts under a container's CPU quota: the quota read from cgroup v2 and v1 files written in
their real format, and torch's intra-op threads lowered to it (never raised, never against the user's
OMP_NUM_THREADS)."""
import os

import pytest
import torch

from nslviz import _threads
from nslviz._threads import cgroup_cpu_quota, match_threads_to_cpus


def _cgroup(tmp_path, files: dict[str, str], proc: str = "0::/\n"):
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "proc_cgroup").write_text(proc)
    return dict(root=root, proc_cgroup=tmp_path / "proc_cgroup")


@pytest.mark.parametrize("files, proc, expected", [
    ({"cpu.max": "200000 100000\n"}, "0::/\n", 2),                          # docker --cpus 2, cgroup v2
    ({"cpu.max": "max 100000\n"}, "0::/\n", None),                          # no quota
    ({"cpu.max": "150000 100000\n"}, "0::/\n", 1),                          # 1.5 CPUs: rounded down
    ({"cpu.max": "50000 100000\n"}, "0::/\n", 1),                           # half a CPU: at least one
    ({"kubepods/pod1/cpu.max": "400000 100000\n", "cpu.max": "max 100000\n"},
     "0::/kubepods/pod1\n", 4),                                             # the process's own v2 group
    ({"kubepods/pod1/cpu.max": "400000 100000\n", "cpu.max": "200000 100000\n"},
     "0::/kubepods/pod1\n", 2),                                             # the smallest limit counts
    ({"kubepods/pod1/cpu.max": "max 100000\n", "cpu.max": "300000 100000\n"},
     "0::/kubepods/pod1\n", 3),                                             # none on its own group, one above
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"},
     "1:cpu:/\n0::/\n", 3),                                                 # cgroup v1
    ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
     "2:cpu,cpuacct:/\n", None),                                            # v1 without a quota
    ({}, "", None),                                                         # no cgroup files at all
    ({"cpu.max": "garbled\n"}, "0::/\n", None),                             # unreadable: no cap
])
def test_cgroup_cpu_quota_reads_the_real_file_formats(tmp_path, files, proc, expected):
    assert cgroup_cpu_quota(**_cgroup(tmp_path, files, proc)) == expected


def test_this_machine_has_a_cpu_count():
    assert 1 <= _threads.available_cpus() <= len(os.sched_getaffinity(0))


def test_torch_threads_are_lowered_to_the_quota_never_raised(monkeypatch):
    for name in _threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(_threads, "available_cpus", lambda: 1)
        assert match_threads_to_cpus() == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(_threads, "available_cpus", lambda: 8)
        assert match_threads_to_cpus() == 1 and torch.get_num_threads() == 1       # never raised
        torch.set_num_threads(2)
        monkeypatch.setattr(_threads, "available_cpus", lambda: 1)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")                                  # the user's choice wins
        assert match_threads_to_cpus() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_notebooks_and_commands_match_their_threads(monkeypatch, tmp_path):
    """`setup_notebook` (every notebook's first cell) and `python -m nslviz` both apply the cap, the
    command before its work (here a notebook that does not exist, refused at once)."""
    calls = []
    monkeypatch.setattr(_threads, "match_threads_to_cpus", lambda: calls.append("called") or 1)
    from nslviz.viz.common import setup_notebook
    setup_notebook()
    assert calls == ["called"]
    from nslviz.__main__ import main
    with pytest.raises(SystemExit):
        main(["export-notebook", str(tmp_path / "missing.ipynb")])
    assert calls == ["called", "called"]


def test_torch_threads_restores_the_setting_after_the_block_even_after_an_error():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with _threads.torch_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), _threads.torch_threads(1):
            raise RuntimeError("the block failed")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
