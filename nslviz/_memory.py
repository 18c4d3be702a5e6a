"""Memory estimates before large allocations.

A size that cannot fit (a dictionary of 10⁹ entries, 100,000 classes finetuned per example) is
refused before anything is allocated, with the estimate and the limit, instead of torch asking for
160 GB or the kernel's out-of-memory killer ending the process without a word. The estimates count
the large tensors only (dictionary, attention, per-example finetuning) and are approximate: they
catch sizes that are orders of magnitude too large, not the last 10 %.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

FLOAT_BYTES = 4


class TooLargeForMemory(ValueError):
    """The estimated memory of a computation exceeds what the device has available."""


def format_bytes(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def available_bytes(device: str | torch.device = "cpu") -> int | None:
    """Memory free for new tensors on `device`: CUDA's free memory and what PyTorch's caching allocator
    holds without using it (both can serve a new tensor), or on the CPU the kernel's MemAvailable
    bounded by the container's (cgroup) limit. None where it cannot be read."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free) + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    limits = [value for value in (_meminfo_available(), _cgroup_available()) if value is not None]
    if not limits:
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(limits)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """The container's limit minus what it uses (cgroup v2, then v1); None without a limit."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = (Path("/sys/fs/cgroup") / limit_file).read_text().strip()
            usage = int((Path("/sys/fs/cgroup") / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:               # "max" or a huge number: no limit
            return max(int(limit) - usage, 0)
    return None


def check_memory(what: str, tensors: dict[str, float], advice: str, device: str | torch.device = "cpu") -> None:
    """Refuse (TooLargeForMemory) when the `tensors` ({description: bytes}) of `what` need more than
    `device` has available; the message gives the estimate, its largest parts, the limit and `advice`."""
    need = sum(tensors.values())
    limit = available_bytes(device)
    if limit is None or need <= limit:
        return
    parts = sorted(((name, size) for name, size in tensors.items() if size), key=lambda item: -item[1])[:3]
    details = ", ".join(f"{name} {format_bytes(size)}" for name, size in parts)
    raise TooLargeForMemory(f"{what} needs about {format_bytes(need)} ({details}), more than the "
                            f"{format_bytes(limit)} of memory available on {torch.device(device)}; {advice}")
