"""How every benchmark reports: one JSON object, printed as the last line of the output and saved to
benchmarks/results/<name>.json (or --out); and how every benchmark waits for a device before reading a timer."""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

from nslviz.training.rundir import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def save_result(result: dict, name: str, out: str | Path | None = None) -> dict:
    # PyTorch's CPU allocator reads this once at import and it changes CPU timings: record it (in
    # `result` itself, which the benchmarks return)
    result["THP_MEM_ALLOC_ENABLE"] = os.environ.get("THP_MEM_ALLOC_ENABLE", "unset")
    # the command line, for RESULTS.md (benchmarks/make_results.py); only when run as a script
    script = Path(sys.argv[0]).resolve()
    if script.parent == RESULTS.parent and "command" not in result:
        result["command"] = shlex.join(["python", f"benchmarks/{script.name}", *sys.argv[1:]])
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")          # an interrupted run keeps the old file
    print(json.dumps(result))
    return result


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model (from /proc/cpuinfo on Linux)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        name = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                     if line.startswith("model name")), name)
    return name


def environment(device: torch.device) -> dict:
    """What the figures depend on besides the code: the device and its name, torch and CUDA versions,
    threads, and the machine's load when measured."""
    return {"device": str(device), "device_name": device_name(device), "torch": torch.__version__,
            "cuda": torch.version.cuda, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously), so that a timer read
    after it measures the work; nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(accuracies: list[float], reference: list[float]) -> dict:
    """Seeds on which a method is above / level with / below the reference (the same seed's vanilla),
    and the paired difference in accuracy points with a 95 % interval (nslviz.analysis.paired)."""
    from nslviz.analysis.paired import paired_difference     # here: scipy.stats costs a speed benchmark ~1 s
    return paired_difference(accuracies, reference)
