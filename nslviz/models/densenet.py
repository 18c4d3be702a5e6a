"""DenseNet40-BC as the official MN code defines it (`network/densenet.py`; docs/official-code.md §A.5, §A.6).

Growth rate k = 12:

    stem        conv3x3(24)                                               (no BN, no iFiLM)
    dense block 12 bottleneck layers; layer input c = all previous maps concatenated:
                BN -> iFiLM -> ReLU -> conv1x1(48) -> dropout 0.2 ->
                BN -> iFiLM -> ReLU -> conv3x3(12) -> dropout 0.2           (the 3x3 is NSL-able)
                output = concat(input, the 12 new maps of every layer)
    transition  BN -> iFiLM -> ReLU -> conv1x1(c/2) -> dropout 0.2 -> avg-pool 2x2/2
    channels    24 -> 168 -> 84 -> 228 -> 114 -> 258 (block, transition, block, transition, block)
    head        BN -> (ReLU only if final_relu) -> global average pool -> 258 features (no iFiLM)

With 12 bottleneck layers per block this is about 76 layers deep, not the standard 6-layers-per-block
DenseNet-BC-40; we keep the official definition because the paper's numbers come from it.

iFiLM placement: "all" = both BNs of every bottleneck layer (72 modules) plus the two transitions
(74); "last" = both BNs of the last bottleneck layer of each dense block plus the transitions (8);
"none". No iFiLM after the final BN, as officially.

Deviations from the official code:
- Transitions: the official code computes the transition iFiLM and discards its output (a bug: they
  are no-ops). Here they modulate for real by default; `transition_ifilm=False` reproduces the
  official network (no module is created, so no unused parameters).
- "last": officially only the (no-op) transitions are modulated, so the official "last" DenseNet has
  no working iFiLM; ours mirrors the ResNet meaning (last layer of each block) so that it does
  something.
- With nsl != "none" the 3x3 convs of the dense layers become NSL convs; the stem stays a plain conv,
  like the root conv of the official NSL CNN-9.
- `densenet40_64`: a stride-2 stem for 64x64 inputs (our choice; the paper's 64x64 network is not
  released).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .._checks import check_flags, check_fraction
from .layers import (Backbone, batch_norm, check_backbone_options, film, network_nsl_options,
                     similarity_conv3x3, xavier_conv)
from .registry import register_backbone

GROWTH = 12
LAYERS_PER_BLOCK = 12
BLOCKS = 3


class DenseLayer(nn.Module):
    """BN-iFiLM-ReLU-conv1x1(4k)-dropout -> BN-iFiLM-ReLU-conv3x3(k)-dropout: k new feature maps."""

    def __init__(self, in_channels: int, *, modulate: bool, entries: int, dropout: float, nsl: str, nsl_options):
        super().__init__()
        self.norm1 = batch_norm(in_channels)
        self.film1 = film(in_channels, modulate, entries)
        self.conv1 = xavier_conv(in_channels, 4 * GROWTH, 1)
        self.norm2 = batch_norm(4 * GROWTH)
        self.film2 = film(4 * GROWTH, modulate, entries)
        self.conv2 = similarity_conv3x3(nsl, 4 * GROWTH, GROWTH, nsl_options=nsl_options)
        self.act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:                  # (B, c, H, W) -> (B, k, H, W)
        x = self.dropout(self.conv1(self.act(self.film1(self.norm1(x)))))  # (B, 4k, H, W)
        return self.dropout(self.conv2(self.act(self.film2(self.norm2(x)))))


class DenseBlock(nn.Module):
    """Each layer reads the concatenation of the block input and every earlier layer's output."""

    def __init__(self, in_channels: int, *, modulate_last_only: bool, modulate: bool, entries: int,
                 dropout: float, nsl: str, nsl_options):
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * GROWTH, entries=entries, dropout=dropout, nsl=nsl, nsl_options=nsl_options,
                       modulate=modulate or (modulate_last_only and i == LAYERS_PER_BLOCK - 1))
            for i in range(LAYERS_PER_BLOCK))
        self.out_channels = in_channels + LAYERS_PER_BLOCK * GROWTH

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))            # (B, c + i·k, H, W) -> (B, k, H, W)
        return torch.cat(features, dim=1)                                  # (B, c + 12k, H, W)


class Transition(nn.Module):
    """BN -> iFiLM -> ReLU -> conv1x1(c/2) -> dropout -> avg-pool 2x2/2."""

    def __init__(self, in_channels: int, *, modulate: bool, entries: int, dropout: float):
        super().__init__()
        self.out_channels = in_channels // 2
        self.norm = batch_norm(in_channels)
        self.film = film(in_channels, modulate, entries)
        self.act = nn.ReLU(inplace=True)
        self.conv = xavier_conv(in_channels, self.out_channels, 1)
        self.dropout = nn.Dropout(dropout)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.dropout(self.conv(self.act(self.film(self.norm(x))))))


class DenseNet(Backbone):
    """The official "DenseNet40-BC": 3 dense blocks of 12 bottleneck layers, growth 12, 258 features."""

    def __init__(self, *, in_channels: int = 3, image_size: int = 32, stem_stride: int = 1, ifilm: str = "none",
                 ifilm_entries: int = 10, nsl: str = "none", nsl_options=None, final_relu: bool = False,
                 dropout: float = 0.2, transition_ifilm: bool = True):
        super().__init__(in_channels=in_channels, image_size=image_size, ifilm=ifilm, nsl=nsl, final_relu=final_relu)
        self.transition_ifilm = transition_ifilm
        nsl_options = network_nsl_options(nsl, nsl_options)
        channels = 2 * GROWTH                                               # 24
        self.stem = xavier_conv(in_channels, channels, 3, stem_stride)
        body = []
        for block in range(BLOCKS):
            dense = DenseBlock(channels, modulate=ifilm == "all", modulate_last_only=ifilm == "last",
                               entries=ifilm_entries, dropout=dropout, nsl=nsl, nsl_options=nsl_options)
            body.append(dense)
            channels = dense.out_channels                                   # 168, 228, 258
            if block < BLOCKS - 1:
                transition = Transition(channels, modulate=transition_ifilm and ifilm != "none",
                                        entries=ifilm_entries, dropout=dropout)
                body.append(transition)
                channels = transition.out_channels                          # 84, 114
        self.body = nn.Sequential(*body)
        self.feature_dim = channels                                         # 258
        self.final_norm = batch_norm(channels)
        self.final_act = nn.ReLU(inplace=True) if final_relu else nn.Identity()

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.final_act(self.final_norm(self.body(self.stem(images))))   # (B, 258, h, w)


def _build(name: str, stem_stride: int, default_image_size: int):
    min_image_size = 4 if stem_stride == 1 else 7    # two 2x2 avg-pools need a >= 4x4 map after the stem

    def build(*, in_channels: int = 3, image_size: int = default_image_size, ifilm: str = "none",
              ifilm_entries: int = 10, nsl: str = "none", nsl_options: dict | None = None,
              final_relu: bool = False, dropout: float = 0.2, transition_ifilm: bool = True,
              **unsupported) -> DenseNet:
        check_backbone_options(name, in_channels=in_channels, image_size=image_size, min_image_size=min_image_size,
                               ifilm=ifilm, ifilm_entries=ifilm_entries, nsl=nsl, final_relu=final_relu,
                               nsl_options=nsl_options, unsupported=unsupported)
        check_fraction("dropout", dropout)
        check_flags(transition_ifilm=transition_ifilm)
        return DenseNet(in_channels=in_channels, image_size=image_size, stem_stride=stem_stride, ifilm=ifilm,
                        ifilm_entries=ifilm_entries, nsl=nsl, nsl_options=nsl_options, final_relu=final_relu,
                        dropout=dropout, transition_ifilm=transition_ifilm).with_min_image_size(min_image_size)

    build.__doc__ = (f"{name}: the official DenseNet40-BC (3 x 12 bottleneck layers, growth 12), 258 features, "
                     f"{'stride-2 stem for 64x64 inputs' if stem_stride == 2 else '32x32 inputs'}.")
    return register_backbone(name)(build)


build_densenet40 = _build("densenet40", stem_stride=1, default_image_size=32)
build_densenet40_64 = _build("densenet40_64", stem_stride=2, default_image_size=64)
