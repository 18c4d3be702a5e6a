"""Where mixed precision stops: the MN head and iFiLM's attention run in float32 or better."""
from __future__ import annotations

import contextlib

import torch

HALF_DTYPES = (torch.float16, torch.bfloat16)


def full_precision_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types (bf16/fp16 autocast outputs), the dtype itself otherwise (float32 stays
    float32, a float64 model stays float64: gradient checks and exact comparisons need it)."""
    return torch.float32 if dtype in HALF_DTYPES else dtype


def full_precision(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(full_precision_dtype(tensor.dtype))


def autocast_available(device_type: str) -> bool:
    """Whether torch has autocast for the device type (not the meta device, where shapes are worked out
    without data). torch < 2.4 cannot say, and has it for the CPU and CUDA."""
    available = getattr(torch.amp, "is_autocast_available", None)
    return available(device_type) if available is not None else device_type in ("cpu", "cuda")


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for the device type now (never on a device without it)."""
    if not autocast_available(device_type):
        return False
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:                                 # torch < 2.4: no device argument
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def autocast_off(device_type: str):
    """torch.autocast(device_type, enabled=False): what runs inside keeps its dtypes. A device that has
    no autocast (the meta device) needs nothing turned off."""
    if autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()
