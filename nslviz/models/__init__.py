"""Backbones by name: `build_backbone("resnet29", ...)`, `available_backbones()`."""
from .registry import available_backbones, build_backbone, register_backbone

__all__ = ["available_backbones", "build_backbone", "register_backbone"]
