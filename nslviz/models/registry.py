"""Backbones by name.

Contract every builder follows (the trainer, the notebooks and the CLI rely on it):

    build_backbone(name, *, in_channels=3, image_size=<the network's input side>, ifilm="none",
                   ifilm_entries=10, nsl="none", nsl_options=None, final_relu=False) -> nn.Module

  (image_size defaults to 32, or to 64 for the *_64 networks, 84 for cnn4, 224 for cnn10.)

* The module maps float images (B, in_channels, image_size, image_size), values in [0, 1], to
  features (B, feature_dim) and exposes the int attribute `feature_dim`.
* `ifilm` is the iFiLM placement ("none", "all" or "last", MN eq. 4) with `ifilm_entries` S_l
  entries per BatchNorm; `nsl` is the Neural Similarity mode of the 3x3 convolutions
  (`nslviz.nsl.NSL_MODES`). `final_relu=False` is the cosine-classifier setting of the official
  MN code (final BN, no ReLU, then global pooling); True restores the ReLU (dot-product heads).
* A builder rejects an option it does not support (e.g. iFiLM on a network without BatchNorm, an
  image size it cannot take) with a ValueError that names the option and what it supports.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str):
    """Decorator: `@register_backbone("resnet29") def build(**options) -> nn.Module`."""
    def decorate(builder):
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        _BACKBONES[name] = builder
        return builder
    return decorate


def available_backbones() -> list[str]:
    """The registered backbone names, sorted."""
    return sorted(_BACKBONES)


def build_backbone(name: str, **options) -> nn.Module:
    """The backbone `name` built with `options` (the contract above; an unknown name is a ValueError)."""
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(available_backbones())}")
    return _BACKBONES[name](**options)
