"""Neural Similarity Learning layers, NSL eq. (1)-(5).

(Placeholder interface: only `make_conv(mode="none", ...)` exists so far; the NSL layers land here.)
"""
from __future__ import annotations

import torch.nn as nn

from ._checks import check_choice

NSL_MODES = ("none", "static_dns", "static_uns", "dynamic_dns", "dynamic_uns")


def make_conv(mode: str, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
              padding: int = 1, bias: bool = False) -> nn.Module:
    """The convolution a backbone uses for its 3x3 layers: a plain nn.Conv2d for mode "none",
    an NSConv2d otherwise."""
    check_choice("nsl mode", mode, NSL_MODES)
    if mode == "none":
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
    raise ValueError(f"nsl mode {mode!r} is not implemented yet")
