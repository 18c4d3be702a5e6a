"""ResNet-29 / 56 / 110: the Keras-style pre-activation bottleneck ResNet v2 of the official MN code.

Depth 9n + 2 (n = 3, 6 or 12 bottleneck blocks per stage), as `network/resnet.py` of
lupalab/Meta-Neighborhoods (docs/official-code.md §A.5, §A.6):

    stem      conv3x3(16) -> BN -> ReLU                                   (never iFiLM-modulated)
    stage s   n bottlenecks, width 16/64/128, output 64/128/256; each bottleneck is
              [BN -> iFiLM -> ReLU -> conv1x1(width, stride)]             layer 1
              [BN -> iFiLM -> ReLU -> conv3x3(width)]                     layer 2 (NSL-able)
              [BN -> iFiLM -> ReLU -> conv1x1(output)]                    layer 3
              + shortcut: identity, or in block 0 conv1x1(output, stride) -> iFiLM (no BN)
              stage 0 block 0 layer 1 has no BN and no ReLU (its input is the stem's ReLU output),
              but is still modulated on its input; stride 2 on layer 1 and the shortcut of block 0
              in stages 1 and 2.
    head      BN -> iFiLM -> (ReLU only if final_relu) -> global average pool -> 256 features

ResNet-110 is the same family at n = 12. The MN paper names it only to say that it gains 0.14
(CIFAR-10) and 0.40 (CIFAR-100) points over ResNet-56 with twice the parameters (3.29 M against
1.66 M here), where MN adds 0.63 and 0.94 points to ResNet-56 (Table 1).

iFiLM placement: "all" = every slot above (ResNet-29: 31 modules, ResNet-56: 58, ResNet-110: 112); "last" = the
three layer slots of the last block of each stage, plus the final BN (10 modules; the projection
shortcut belongs to block 0, so it is modulated under "last" only when n = 1); "none".

The 64x64 variants (`resnet29_64`, `resnet56_64`) use a stride-2 stem, so the stages see the same
32x32 maps, cost and receptive fields as on CIFAR. The paper's ImageNet 64x64 network is not in the
released code; this choice is ours.

Deviations from the official code: none in the architecture (bias-free Xavier convs, BN eps 1e-3,
momentum 0.1; see nslviz.models.layers for the BN moving-mean debiasing). With nsl != "none" the
3x3 convs of the bottlenecks become NSL convs; the stem stays a plain conv, like the root conv of
the official NSL CNN-9.
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn

from .layers import (Backbone, batch_norm, contract_builder, film, network_nsl_options,
                     similarity_conv3x3, xavier_conv)
from .registry import register_backbone

STEM_WIDTH = 16


class PreActivationLayer(nn.Module):
    """BN -> iFiLM -> ReLU -> conv, one layer of a v2 bottleneck. `preactivate=False` drops the BN
    and the ReLU (stage 0 block 0 layer 1) but keeps the iFiLM slot on the input."""

    def __init__(self, conv: nn.Module, in_channels: int, *, preactivate: bool = True, modulate: bool = False,
                 entries: int = 10):
        super().__init__()
        self.norm = batch_norm(in_channels) if preactivate else nn.Identity()
        self.film = film(in_channels, modulate, entries)
        self.act = nn.ReLU(inplace=True) if preactivate else nn.Identity()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.film(self.norm(x))))


class ProjectionShortcut(nn.Module):
    """conv1x1(stride) -> iFiLM (no BN), the shortcut of the first block of each stage."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, *, modulate: bool, entries: int):
        super().__init__()
        self.conv = xavier_conv(in_channels, out_channels, 1, stride)
        self.film = film(out_channels, modulate, entries)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.film(self.conv(x))


class Bottleneck(nn.Module):
    """Pre-activation bottleneck: x + conv1x1(conv3x3(conv1x1(x))), each conv preceded by BN-iFiLM-ReLU."""

    def __init__(self, in_channels: int, width: int, out_channels: int, *, stride: int, first_of_network: bool,
                 project: bool, modulate: bool, entries: int, nsl: str, nsl_options):
        super().__init__()
        self.layer1 = PreActivationLayer(xavier_conv(in_channels, width, 1, stride), in_channels,
                                         preactivate=not first_of_network, modulate=modulate, entries=entries)
        self.layer2 = PreActivationLayer(similarity_conv3x3(nsl, width, width, nsl_options=nsl_options), width,
                                         modulate=modulate, entries=entries)
        self.layer3 = PreActivationLayer(xavier_conv(width, out_channels, 1), width, modulate=modulate,
                                         entries=entries)
        self.shortcut = (ProjectionShortcut(in_channels, out_channels, stride, modulate=modulate, entries=entries)
                         if project else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.layer3(self.layer2(self.layer1(x)))


class PreActResNet(Backbone):
    """Pre-activation bottleneck ResNet v2, depth 9n + 2, 256 output features (see module docstring)."""

    def __init__(self, blocks_per_stage: int, *, in_channels: int = 3, image_size: int = 32, stem_stride: int = 1,
                 ifilm: str = "none", ifilm_entries: int = 10, nsl: str = "none", nsl_options=None,
                 final_relu: bool = False):
        super().__init__(in_channels=in_channels, image_size=image_size, ifilm=ifilm, nsl=nsl, final_relu=final_relu)
        self.depth = 9 * blocks_per_stage + 2
        nsl_options = network_nsl_options(nsl, nsl_options)
        self.stem = nn.Sequential(xavier_conv(in_channels, STEM_WIDTH, 3, stem_stride), batch_norm(STEM_WIDTH),
                                  nn.ReLU(inplace=True))
        stages, channels, width = [], STEM_WIDTH, STEM_WIDTH
        for stage in range(3):
            out_channels = width * 4 if stage == 0 else width * 2          # 64, 128, 256
            blocks = []
            for block in range(blocks_per_stage):
                last_block = block == blocks_per_stage - 1
                blocks.append(Bottleneck(
                    channels, width, out_channels, stride=2 if stage > 0 and block == 0 else 1,
                    first_of_network=stage == 0 and block == 0, project=block == 0,
                    modulate=ifilm == "all" or (ifilm == "last" and last_block), entries=ifilm_entries,
                    nsl=nsl, nsl_options=nsl_options))
                channels = out_channels
            stages.append(nn.Sequential(*blocks))
            width = out_channels                                          # next bottleneck width: 64, 128
        self.stages = nn.Sequential(*stages)
        self.feature_dim = channels                                       # 256
        self.final_norm = batch_norm(channels)
        self.final_film = film(channels, ifilm != "none", ifilm_entries)
        self.final_act = nn.ReLU(inplace=True) if final_relu else nn.Identity()

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(images))                                # (B, 256, h, w)
        return self.final_act(self.final_film(self.final_norm(x)))


def _build(name: str, blocks_per_stage: int, stem_stride: int, default_image_size: int):
    min_image_size = 1        # no pooling: strided convs with SAME padding keep at least one pixel

    build = contract_builder(name, functools.partial(PreActResNet, blocks_per_stage, stem_stride=stem_stride),
                             default_image_size=default_image_size, min_image_size=min_image_size)
    build.__doc__ = (f"{name}: pre-activation bottleneck ResNet v2, depth {9 * blocks_per_stage + 2}, "
                     f"256 features, {'stride-2 stem for 64x64 inputs' if stem_stride == 2 else '32x32 inputs'}.")
    return register_backbone(name)(build)


build_resnet29 = _build("resnet29", 3, stem_stride=1, default_image_size=32)
build_resnet56 = _build("resnet56", 6, stem_stride=1, default_image_size=32)
build_resnet110 = _build("resnet110", 12, stem_stride=1, default_image_size=32)
build_resnet29_64 = _build("resnet29_64", 3, stem_stride=2, default_image_size=64)
build_resnet56_64 = _build("resnet56_64", 6, stem_stride=2, default_image_size=64)
