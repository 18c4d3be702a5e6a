"""Backbones by name.

Every backbone is a module whose forward maps images (B, C_in, H, W) to features (B, feature_dim)
and which exposes `feature_dim`. Classifier heads (vanilla or Meta-Neighborhoods) are separate.
Builders take keyword options and must reject the ones they do not support with a ValueError.
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
    return sorted(_BACKBONES)


def build_backbone(name: str, **options) -> nn.Module:
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(available_backbones())}")
    return _BACKBONES[name](**options)
