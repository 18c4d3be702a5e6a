"""How every benchmark reports: one JSON object, printed as the last line of the output and saved to
benchmarks/results/<name>.json (or --out); and how every benchmark waits for a device before reading a timer."""
from __future__ import annotations

import json
import os
from pathlib import Path

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
