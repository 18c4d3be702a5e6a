"""The 4-layer ConvNet ("shallownet") of the official MN code (`network/shallownet.py`;
docs/official-code.md §A.5, §A.6).

    conv3x3(24)  -> BN -> iFiLM -> ReLU -> max-pool 3x3/2 VALID          32 -> 15
    conv3x3(96)  -> BN -> iFiLM -> ReLU -> max-pool 3x3/2 VALID          15 -> 7
    conv3x3(192) -> BN -> iFiLM -> ReLU
    conv3x3(192) -> BN -> iFiLM -> (ReLU only if final_relu) -> global average pool -> 192 features

Convs are bias-free, 'SAME'-padded and Xavier-initialised; BN eps 1e-3, momentum 0.1.

iFiLM placement: "all" = after each of the 4 BNs (official); "last" = after the last BN only (our
extension: the official code modulates nothing for "last"); "none".

Deviations: with nsl != "none" the last three convs become NSL convs, the first stays a plain conv
(the root conv of the official NSL CNN-9 is plain too). `convnet4_64` gives the first conv stride 2
so that a 64x64 input meets the same 32x32 pipeline (our choice; no official 64x64 ConvNet).
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn

from .layers import (Backbone, batch_norm, contract_builder, film, network_nsl_options,
                     similarity_conv3x3, xavier_conv)
from .registry import register_backbone

WIDTHS = (24, 96, 192, 192)


class ConvBlock(nn.Module):
    """conv -> BN -> iFiLM -> ReLU (or no ReLU) -> max-pool 3x3/2 (or none)."""

    def __init__(self, conv: nn.Module, channels: int, *, modulate: bool, entries: int, relu: bool, pool: bool):
        super().__init__()
        self.conv = conv
        self.norm = batch_norm(channels)
        self.film = film(channels, modulate, entries)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.pool = nn.MaxPool2d(3, stride=2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.film(self.norm(self.conv(x)))))


class ConvNet4(Backbone):
    """The official 4-layer ConvNet, 192 features."""

    def __init__(self, *, in_channels: int = 3, image_size: int = 32, stem_stride: int = 1, ifilm: str = "none",
                 ifilm_entries: int = 10, nsl: str = "none", nsl_options=None, final_relu: bool = False):
        super().__init__(in_channels=in_channels, image_size=image_size, ifilm=ifilm, nsl=nsl, final_relu=final_relu)
        nsl_options = network_nsl_options(nsl, nsl_options)
        blocks, channels = [], in_channels
        for i, width in enumerate(WIDTHS):
            last = i == len(WIDTHS) - 1
            conv = (xavier_conv(channels, width, 3, stem_stride) if i == 0
                    else similarity_conv3x3(nsl, channels, width, nsl_options=nsl_options))
            blocks.append(ConvBlock(conv, width, modulate=ifilm == "all" or (ifilm == "last" and last),
                                    entries=ifilm_entries, relu=final_relu or not last, pool=i < 2))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = channels                                         # 192

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.blocks(images)                                          # (B, 192, 7, 7) at 32 px


def _build(name: str, stem_stride: int, default_image_size: int):
    # two 3x3/2 VALID max-pools need a >= 7x7 map after the first conv (7 -> 3 -> 1)
    min_image_size = 7 if stem_stride == 1 else 13

    build = contract_builder(name, functools.partial(ConvNet4, stem_stride=stem_stride),
                             default_image_size=default_image_size, min_image_size=min_image_size)
    build.__doc__ = (f"{name}: the official 4-layer ConvNet (24/96/192/192), 192 features, "
                     f"{'stride-2 first conv for 64x64 inputs' if stem_stride == 2 else '32x32 inputs'}.")
    return register_backbone(name)(build)


build_convnet4 = _build("convnet4", stem_stride=1, default_image_size=32)
build_convnet4_64 = _build("convnet4_64", stem_stride=2, default_image_size=64)
