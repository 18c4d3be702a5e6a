"""The plain CNNs of the NSL paper (Table 7, Appendix A) with neural-similarity convolutions, and
their CNN++ baselines.

cnn9, CIFAR, as officially coded (wy1iu/NSL nsl_image_recog/*/architecture.py; docs/official-code.md §B.2):

    root     plain 3×3 conv 32 -> BN -> ReLU
    stage 1  3 × [NSL 3×3 conv 32  -> BN -> ReLU] -> max-pool 2×2/2          32 -> 16
    stage 2  3 × [NSL 3×3 conv 64  -> BN -> ReLU] -> max-pool 2×2/2          16 -> 8
    stage 3  3 × [NSL 3×3 conv 128 -> BN -> ReLU] -> max-pool 2×2/2          8 -> 4
    features the 4×4×128 map flattened (2048)

  The official classifier is a 4×4 VALID conv on the 4×4×128 map (no bias), i.e. a linear layer
  on these 2048 features: the trainer's linear classifier is the same function (plus a bias).
  There is no FC-256 although the paper's Table 7 lists one (docs/official-code.md §B.2).

cnn10, ImageNet (Table 7; no official code): 7×7/2 conv 64 -> BN -> ReLU -> 3×3/2 max-pool,
  three stages of 3 NSL convs (64 / 128 / 256) each followed by a 2×2 max-pool, then FC 512 ->
  BN -> ReLU (Table 7 lists the FC 512 only; the BN after it is our choice): 512 features (7×7×256 before the FC at 224 px, 2×2×256 at 64 px). The dynamic-DNS
  predictor has 32 hidden units (Appendix A). With 224 px and 1000 classes the plain network has
  8.90M parameters as in Table 5; Table 5's 9.61M for dynamic DNS matches 64 hidden units rather
  than the 32 the appendix states (pass nsl_options={"predictor_hidden": 64} for that count).

cnn4, the CNN-4 of few-shot learning (NSL Table 6, sec. 7.2 "Following [46]": Ravi & Larochelle's
  4 convolution layers with 32 3×3 filters, BN, ReLU, 2×2 max-pool): 4 × [NSL 3×3 conv 32 -> BN ->
  ReLU -> max-pool 2×2/2], 84 -> 42 -> 21 -> 10 -> 5 at Mini-ImageNet's 84 px, features the 5×5×32 map
  flattened (800). Every conv is an NSL conv (no plain root conv): with DNS, one 3×3 mask per layer.

CNN++ (Table 4/5 baselines, no official code): plain networks "deeper and wider" than CNN-9 /
  CNN-10 so that they have at least as many parameters as every NSN variant. Our choice:
  cnn9_plus = widths 64/128/256 with 4/3/3 convs (root 64): 2.04M with a CIFAR-10 classifier,
  against 2.01M for dynamic-UNS cnn9, the largest variant. cnn10_plus = 4/4/4 convs: 9.68M with
  an ImageNet classifier, against 9.26M (32 hidden) / 9.61M (64 hidden) for dynamic-DNS cnn10.

All convs are bias-free with the official He-normal init std √(2/(k²C_in)) (NSConv2d and its
predictor keep their own inits); BatchNorm eps 1e-3 with PyTorch momentum 0.1 (official EMA decay
0.999, see nslviz.nsl). `final_relu=False` drops the last ReLU (before the last pool for cnn9, after
the FC for cnn10); the official networks are `final_relu=True` (the trainer's dot classifier).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from .._checks import check_choice
from ..nsl import BN_EPS, batch_norm2d, he_std, make_conv, prepare_nsl_options
from .layers import check_backbone_options, check_images
from .registry import register_backbone

STEMS = ("cifar", "imagenet", "none")


def _plain_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
    nn.init.normal_(conv.weight, std=he_std(in_channels, kernel_size))
    return conv


class ConvUnit(nn.Module):
    """conv -> BN -> ReLU (or no ReLU)."""

    def __init__(self, conv: nn.Module, channels: int, relu: bool = True):
        super().__init__()
        self.conv, self.norm = conv, batch_norm2d(channels)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class NSLPlainCNN(nn.Module):
    """A VGG-like plain CNN whose 3×3 body convs are `nslviz.nsl.make_conv(nsl, ...)` (NSL sec. 4:
    stacking NSL convs gives the neural similarity network). `stem` "cifar" (root 3×3 conv),
    "imagenet" (7×7/2 conv + 3×3/2 max-pool) or "none" (every conv is a body conv, cnn4); `fc_width` None
    (the last map flattened: cnn9, cnn4) or the width of an FC layer (cnn10).
    Maps (B, in_channels, S, S) to (B, feature_dim)."""

    def __init__(self, *, widths=(32, 64, 128), depths=(3, 3, 3), stem: str = "cifar", stem_width: int = 32,
                 fc_width: int | None = None, in_channels: int = 3, image_size: int = 32, nsl: str = "none",
                 nsl_options: Mapping | None = None, final_relu: bool = True):
        super().__init__()
        check_choice("stem", stem, STEMS)
        self.in_channels, self.image_size, self.nsl, self.final_relu = in_channels, image_size, nsl, final_relu
        options = prepare_nsl_options(nsl, dict(nsl_options or {}))
        if stem == "none":                                                  # cnn4: the body starts at the image
            self.stem, stem_width = nn.Identity(), in_channels
            size = image_size
        elif stem == "cifar":
            self.stem = ConvUnit(_plain_conv(in_channels, stem_width, 3), stem_width)
            size = image_size
        else:
            self.stem = nn.Sequential(ConvUnit(_plain_conv(in_channels, stem_width, 7, stride=2), stem_width),
                                      nn.MaxPool2d(3, stride=2, padding=1))
            size = ((image_size + 1) // 2 + 1) // 2
        stages, channels = [], stem_width
        for s, (width, depth) in enumerate(zip(widths, depths)):
            units = []
            for i in range(depth):
                last = fc_width is None and s == len(widths) - 1 and i == depth - 1
                conv = make_conv(nsl, channels, width, 3, stride=1, padding=1, bias=False, **options)
                if type(conv) is nn.Conv2d:
                    nn.init.normal_(conv.weight, std=he_std(channels, 3))
                units.append(ConvUnit(conv, width, relu=final_relu or not last))
                channels = width
            stages.append(nn.Sequential(*units, nn.MaxPool2d(2, stride=2)))
            size //= 2
        self.stages = nn.Sequential(*stages)
        self.map_size = size
        flat = channels * size * size
        if fc_width is None:
            self.fc = None
            self.feature_dim = flat
        else:
            self.fc = nn.Sequential(nn.Flatten(), nn.Linear(flat, fc_width, bias=False),
                                    nn.BatchNorm1d(fc_width, eps=BN_EPS),
                                    nn.ReLU(inplace=True) if final_relu else nn.Identity())
            self.feature_dim = fc_width

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> the last stage's pooled map, (B, 128, 4, 4) for cnn9 at 32 px."""
        return self.stages(self.stem(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(self, images)
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expected images of shape (batch, {self.in_channels}, "
                             f"{self.image_size}, {self.image_size}), got {tuple(images.shape)}")
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):            # it flattens a fixed map
            raise ValueError(f"{type(self).__name__} was built for {self.image_size}×{self.image_size} images "
                             f"(features {self.feature_dim}), got {tuple(images.shape[-2:])}")
        fmap = self.feature_map(images)
        return fmap.flatten(1) if self.fc is None else self.fc(fmap)        # (B, feature_dim)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, image_size={self.image_size}, feature_dim={self.feature_dim}, "
                f"nsl={self.nsl!r}, final_relu={self.final_relu}")


# (widths, depths, stem, stem width, FC width, smallest image size, predictor hidden default)
ARCHITECTURES = {
    "cnn4": ((32, 32, 32, 32), (1, 1, 1, 1), "none", None, None, 16, None),
    "cnn9": ((32, 64, 128), (3, 3, 3), "cifar", 32, None, 8, None),
    "cnn9_plus": ((64, 128, 256), (4, 3, 3), "cifar", 64, None, 8, None),
    "cnn10": ((64, 128, 256), (3, 3, 3), "imagenet", 64, 512, 29, 32),
    "cnn10_plus": ((64, 128, 256), (4, 4, 4), "imagenet", 64, 512, 29, 32),
}


def _register(name: str, default_image_size: int):
    widths, depths, stem, stem_width, fc_width, min_size, hidden = ARCHITECTURES[name]
    plain_only = name.endswith("_plus")

    def build(*, in_channels: int = 3, image_size: int = default_image_size, ifilm: str = "none",
              ifilm_entries: int = 10, nsl: str = "none", nsl_options: dict | None = None,
              final_relu: bool = False, **unsupported) -> NSLPlainCNN:
        if ifilm != "none":                         # the shared check would offer placements this network lacks
            raise ValueError(f"backbone {name!r} has no iFiLM (it is the NSL paper's plain CNN); "
                             f"use ifilm='none', got {ifilm!r}")
        check_backbone_options(name, in_channels=in_channels, image_size=image_size, min_image_size=min_size,
                               ifilm=ifilm, ifilm_entries=ifilm_entries, nsl=nsl, final_relu=final_relu,
                               nsl_options=nsl_options, unsupported=unsupported)
        if plain_only and nsl != "none":
            raise ValueError(f"backbone {name!r} is the plain CNN++ baseline; use nsl='none', got {nsl!r}")
        options = dict(nsl_options or {})
        if hidden is not None and nsl.startswith("dynamic") and options.get("predictor") != "linear":
            options.setdefault("predictor_hidden", hidden)          # the linear predictor has no hidden layer
        return NSLPlainCNN(widths=widths, depths=depths, stem=stem, stem_width=stem_width, fc_width=fc_width,
                           in_channels=in_channels, image_size=image_size, nsl=nsl, nsl_options=options,
                           final_relu=final_relu)

    build.__doc__ = f"{name}: see nslviz.models.cnn ({'x'.join(map(str, depths))} convs of widths {widths})."
    build.__name__ = f"build_{name}"
    return register_backbone(name)(build)


build_cnn4 = _register("cnn4", 84)
build_cnn9 = _register("cnn9", 32)
build_cnn9_plus = _register("cnn9_plus", 32)
build_cnn10 = _register("cnn10", 224)
build_cnn10_plus = _register("cnn10_plus", 224)


__all__ = ["ARCHITECTURES", "NSLPlainCNN"]
