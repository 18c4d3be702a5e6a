"""Backbones by name: `build_backbone("resnet29", ...)`, `available_backbones()`."""
from .registry import available_backbones, build_backbone, register_backbone
from . import convnet, densenet, resnet  # noqa: F401  (register the MN backbones)
from . import cnn  # noqa: F401  (register the NSL backbones: cnn9, cnn9_plus, cnn10, cnn10_plus)
from . import spherenet  # noqa: F401  (NSL Table 8: spherenet9, spherenet9_plain)

__all__ = ["available_backbones", "build_backbone", "register_backbone"]
