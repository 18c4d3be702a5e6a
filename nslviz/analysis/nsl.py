"""What NSL layers learned: static similarity masks per layer, dynamic masks predicted over an
image, and how much the dynamic masks vary across positions and images (notebook 07).

Arrays are numpy, keyed by the layer's qualified module name (e.g. "backbone.stages.0.1.conv").
DNS masks are shown as the k×k spatial mask diag(M_s) reshaped to the kernel's layout; UNS as the
K×K matrix M_s[s, t] (s: kernel tap, t: input tap). The kernel-shape mask D, when learned, is
already applied (NSL eq. 4).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from ..nsl import NSConv2d, nsl_layers


def _as_mask(similarity: torch.Tensor, layer: NSConv2d) -> np.ndarray:
    """(..., K) diagonal -> (..., k, k); (..., K, K) stays."""
    array = similarity.detach().float().cpu().numpy()
    if layer.diagonal:
        return array.reshape(*array.shape[:-1], layer.kernel_size, layer.kernel_size)
    return array


def static_masks(model: nn.Module) -> dict[str, np.ndarray]:
    """{layer name: DNS (k, k) spatial mask | UNS (K, K) matrix} for every static NSConv2d."""
    return {name: _as_mask(layer.static_similarity(), layer)
            for name, layer in nsl_layers(model).items() if not layer.dynamic}


def kernel_shapes(model: nn.Module) -> dict[str, np.ndarray]:
    """{layer name: (k, k) binary kernel-shape mask D} for the layers that learn one (NSL eq. 4-5)."""
    return {name: layer.kernel_shape_mask().detach().cpu().numpy().reshape(layer.kernel_size, layer.kernel_size)
            for name, layer in nsl_layers(model).items() if layer.shape_scores is not None}


@torch.no_grad()
def dynamic_masks(model: nn.Module, images: torch.Tensor, layers: list[str] | None = None) -> dict[str, np.ndarray]:
    """The similarity every dynamic NSConv2d predicts while `model(images)` runs in eval mode.

    images (B, C, H, W) -> {name: DNS (B, H', W', k, k) | UNS (B, H', W', K, K)}; a single image
    (C, H, W) drops the B axis. `layers` restricts the names. The model's train/eval mode is restored."""
    if not isinstance(images, torch.Tensor) or images.dim() not in (3, 4):
        raise ValueError(f"images must be a tensor (B, C, H, W) or one image (C, H, W), got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    single = images.dim() == 3
    batch = images.unsqueeze(0) if single else images
    chosen = {name: layer for name, layer in nsl_layers(model).items() if layer.dynamic}
    if layers is not None:
        unknown = sorted(set(layers) - set(chosen))
        if unknown:
            known = ", ".join(map(repr, chosen)) or "(none: the model has no dynamic layer)"
            raise ValueError(f"no dynamic NSL layer named {', '.join(map(repr, unknown))}; expected some of {known}")
        chosen = {name: chosen[name] for name in layers}
    if not chosen:
        raise ValueError("the model has no dynamic NSL layer (nsl='dynamic_dns' or 'dynamic_uns')")
    recorded: dict[str, np.ndarray] = {}

    def recorder(name):
        def hook(layer, inputs, output):
            m = layer.predict_similarity(inputs[0])                       # (B, K, H', W') | (B, K, K, H', W')
            m = m.permute(0, 2, 3, 1) if layer.diagonal else m.permute(0, 3, 4, 1, 2)
            recorded[name] = _as_mask(m, layer)
        return hook

    was_training = model.training
    handles = [layer.register_forward_hook(recorder(name)) for name, layer in chosen.items()]
    try:
        model.eval()
        model(batch.to(next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: (array[0] if single else array) for name, array in recorded.items()}


def _identity(shape: tuple[int, int]) -> np.ndarray:
    """M = I in the display layout: the K×K identity for a UNS matrix (K = k², k >= 3), all ones
    for a k×k DNS mask (a 9×9 DNS kernel would be taken for a UNS matrix; NSL uses 3×3)."""
    rows, cols = shape
    if rows == cols and rows >= 9 and math.isqrt(rows) ** 2 == rows:
        return np.eye(rows)
    return np.ones(shape)


def mask_variability(masks: dict[str, np.ndarray]) -> dict[str, dict]:
    """How dynamic the predicted similarity is, per layer, from `dynamic_masks(model, images)` with
    B >= 1 images. Returns {name: {...}} with
        mean           (r, c) mask averaged over images and positions
        position_std   (r, c) std across positions within an image, averaged over images
        image_std      (r, c) std across images at a fixed position, averaged over positions (0 for B = 1)
        position_spread, image_spread   the two above averaged over the mask entries (scalars)
        identity_distance               mean |M − I| over images, positions and entries
    """
    stats = {}
    for name, array in masks.items():
        if array.ndim != 5:
            raise ValueError(f"mask_variability needs masks of shape (B, H', W', r, c) from dynamic_masks(model, "
                             f"images) with a batch of images; layer {name!r} has shape {array.shape}")
        batch, height, width = array.shape[:3]
        flat = array.reshape(batch, height * width, *array.shape[3:]).astype(np.float64)
        position_std = flat.std(axis=1).mean(axis=0)
        image_std = flat.std(axis=0).mean(axis=0) if batch > 1 else np.zeros(array.shape[3:])
        identity = _identity(array.shape[3:])
        stats[name] = {"mean": flat.mean(axis=(0, 1)), "position_std": position_std, "image_std": image_std,
                       "position_spread": float(position_std.mean()), "image_spread": float(image_std.mean()),
                       "identity_distance": float(np.abs(flat - identity).mean()),
                       "positions": (height, width), "images": batch}
    return stats


def short_layer_name(name: str) -> str:
    """'backbone.stages.1.2.conv' -> 'stage 2 · conv 3' for cnn9-style names; other names unchanged."""
    parts = name.split(".")
    if "stages" in parts:
        i = parts.index("stages")
        if len(parts) > i + 2 and parts[i + 1].isdigit() and parts[i + 2].isdigit():
            return f"stage {int(parts[i + 1]) + 1} · conv {int(parts[i + 2]) + 1}"
    return name


__all__ = ["dynamic_masks", "kernel_shapes", "mask_variability", "short_layer_name", "static_masks"]
