"""How every benchmark reports: one JSON object, printed as the last line of the output and saved to
benchmarks/results/<name>.json (or --out); and how every benchmark waits for a device before reading a timer."""
from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import scipy.stats
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def save_result(result: dict, name: str, out: str | Path | None = None) -> dict:
    # PyTorch's CPU allocator reads this once at import and it changes CPU timings: record it (in
    # `result` itself, which the benchmarks return)
    result["THP_MEM_ALLOC_ENABLE"] = os.environ.get("THP_MEM_ALLOC_ENABLE", "unset")
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously), so that a timer read
    after it measures the work; nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(accuracies: list[float], reference: list[float]) -> dict:
    """Seeds on which a method is above / level with / below the reference (the same seed's vanilla),
    and the paired difference in accuracy points: its mean over seeds and a 95 % confidence interval
    (Student t over the per-seed differences; None with a single seed)."""
    pairs = list(zip(accuracies, reference))
    differences = [100 * (a - b) for a, b in pairs]
    mean = statistics.mean(differences)
    if len(differences) > 1:
        half = scipy.stats.t.ppf(0.975, len(differences) - 1) * statistics.stdev(differences) / len(differences) ** 0.5
        interval = [round(mean - half, 3), round(mean + half, 3)]
    else:
        interval = None
    return {"above": sum(a > b for a, b in pairs), "level": sum(a == b for a, b in pairs),
            "below": sum(a < b for a, b in pairs), "mean_difference_points": round(mean, 3),
            "ci95_points": interval}
