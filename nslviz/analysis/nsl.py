"""What NSL layers learned: static similarity masks per layer, dynamic masks predicted over an
image, and how much the dynamic masks vary across positions and images (notebook 07); and one kernel
applied with a local and a global similarity (Appendix B.1, `local_and_global_similarity`).

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

from .._modes import eval_mode
from ..models.layers import reestimate_batch_norm
from ..nsl import GlobalSimilarityAttention, GlobalSimilarityConv2d, NSConv2d, nsl_layers


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

    def record(layer, x):
        m = layer.predict_similarity(x)                                   # (B, K, H', W') | (B, K, K, H', W')
        return _as_mask(m.permute(0, 2, 3, 1) if layer.diagonal else m.permute(0, 3, 4, 1, 2), layer)

    recorded = _record_inputs_in_eval_mode(model, chosen, batch, record)
    return {name: (array[0] if single else array) for name, array in recorded.items()}


def _record_inputs_in_eval_mode(model: nn.Module, modules: dict[str, nn.Module], images: torch.Tensor,
                                record) -> dict:
    """{name: record(module, its input)} for each of `modules` while model(images) runs in eval mode
    (train/eval mode restored afterwards)."""
    recorded = {}

    def recorder(name):
        def hook(module, inputs, output):
            recorded[name] = record(module, inputs[0])
        return hook

    handles = [module.register_forward_hook(recorder(name)) for name, module in modules.items()]
    try:
        with eval_mode(model):
            model(images.to(next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return recorded


@torch.no_grad()
def attention_maps(model: nn.Module, images: torch.Tensor) -> dict[str, dict]:
    """The global similarity β (NSL Appendix B eq. 10-11) of every GlobalSimilarityAttention block
    while `model(images)` runs in eval mode: {name: {"attention": (B, h, w, h, w) array, β[b, i, j]
    reshaped so that [b, qi, qj] is the map over positions that query (qi, qj) attends to; rows sum
    to 1, "gamma": γ, the block's weight on the attended values (0 at the start: out = x)}}.
    images (B, C, H, W). The model's train/eval mode is restored."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a tensor (B, C, H, W), got {getattr(images, 'shape', type(images).__name__)}")
    blocks = {name: m for name, m in model.named_modules() if isinstance(m, GlobalSimilarityAttention)}
    if not blocks:
        raise ValueError("the model has no global-similarity (attention) block; build spherenet9 or "
                         "spherenet9_plain with nsl_options={'global_similarity': True}")

    def record(block, x):
        beta = block.attention(x).float()                                  # (B, N, N)
        h, w = x.shape[-2:]
        return {"attention": beta.view(x.shape[0], h, w, h, w).cpu().numpy(), "gamma": float(block.gamma)}

    return _record_inputs_in_eval_mode(model, blocks, images, record)


def effective_kernels(layer: NSConv2d, masks: np.ndarray) -> np.ndarray:
    """The kernel a dynamic layer actually applies at each given position, M(p)ᵀW (NSL eq. 1-2:
    WᵀM(p)X = (M(p)ᵀW)ᵀX): W_eff[f, c, t] = Σ_s W[f, c, s] M_st(p). masks: DNS (..., k, k) or UNS
    (..., K, K) from `dynamic_masks` (or a static mask); returns (..., F, C, k, k)."""
    kernel = layer.weight.detach().float().cpu().numpy().reshape(layer.out_channels, layer.in_channels, layer.taps)
    masks = np.asarray(masks, dtype=np.float32)
    if layer.diagonal:
        m = masks.reshape(*masks.shape[:-2], 1, 1, layer.taps)                 # (..., 1, 1, K)
        folded = kernel * m
    else:
        folded = np.einsum("fcs,...st->...fct", kernel, masks)
    return folded.reshape(*folded.shape[:-1], layer.kernel_size, layer.kernel_size)


def _as_2d(name: str, array, shape: tuple | None = None) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(array, dtype=np.float32))
    if tensor.dim() != 2 or (shape is not None and tuple(tensor.shape) != shape):
        expected = "a 2-D array" if shape is None else f"shape {shape}"
        raise ValueError(f"{name} must be {expected}, got shape {tuple(tensor.shape)}")
    return tensor


@torch.no_grad()
def local_and_global_similarity(image, kernel, local_mask, global_mask) -> dict[str, np.ndarray]:
    """One k×k kernel W applied to one grey image three ways, by the layers themselves (NSL Appendix
    B.1, its Figure 4): the plain convolution WᵀX; local similarity WᵀMX with M = diag(local_mask),
    one weight per kernel tap, the same in every window (an NSConv2d, static DNS); global similarity
    W_Gᵀ M_G X_F with M_G^s = diag(global_mask), one weight per pixel of the map (a
    GlobalSimilarityConv2d). image (H, W), kernel and local_mask (k, k), global_mask (H, W).

    Returns (H, W) arrays "image", "plain", "local", "global", the two masks, and "local_kernel"
    (k, k): the kernel the local M makes, MᵀW, which the layer applies at every position."""
    image = _as_2d("image", image)                                                 # (H, W)
    kernel = _as_2d("kernel", kernel)                                              # (k, k)
    k = kernel.shape[0]
    if kernel.shape[1] != k or k % 2 == 0:
        raise ValueError(f"kernel must be square with an odd size, got shape {tuple(kernel.shape)}")
    local_mask = _as_2d("local_mask", local_mask, (k, k))
    global_mask = _as_2d("global_mask", global_mask, tuple(image.shape))
    x = image[None, None]                                                          # (1, 1, H, W)
    local = NSConv2d(1, 1, k, padding=k // 2, mode="static_dns")
    global_ = GlobalSimilarityConv2d(1, 1, tuple(image.shape), kernel_size=k)
    for layer in (local, global_):
        layer.weight.copy_(kernel[None, None])
    local.similarity.copy_(local_mask.flatten())
    global_.similarity.copy_(global_mask)
    plain = torch.nn.functional.conv2d(x, kernel[None, None], padding=k // 2)
    arrays = {"image": image, "plain": plain[0, 0], "local": local(x)[0, 0], "global": global_(x)[0, 0],
              "local_mask": local_mask, "global_mask": global_mask, "local_kernel": local.effective_weight()[0, 0]}
    return {name: array.numpy() for name, array in arrays.items()}


@torch.no_grad()
def reestimate_predictor_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> int:
    """Recompute the running statistics of the BatchNorms inside every dynamic similarity predictor
    from `images` (B, C, H, W), as exact averages over the batches (momentum None), with the rest
    of the model in eval mode. Training moves the predictor faster than BatchNorm's exponential
    averages follow, so in eval mode the predicted M can be far from the one the network was
    trained with; afterwards eval mode predicts what training mode would. Returns the number of
    BatchNorms re-estimated. The model is left in eval mode."""
    norms = [m for layer in nsl_layers(model).values() if layer.dynamic
             for m in layer.predictor.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        raise ValueError("the model has no dynamic NSL predictor with BatchNorm (nsl='dynamic_dns' or a "
                         "predictor='cnn' layer)")
    device = next(model.parameters()).device
    reestimate_batch_norm(model, norms, (images[start:start + batch_size].to(device)
                                         for start in range(0, len(images), batch_size)))
    return len(norms)


def identity_mask(shape: tuple[int, int]) -> np.ndarray:
    """M = I in the layout of these masks, for a mask of `shape` (r, c): the K×K identity for a UNS
    matrix (K = k², k >= 3), all ones for a k×k DNS mask (a 9×9 DNS kernel would be taken for a UNS
    matrix; NSL uses 3×3)."""
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
        identity = identity_mask(array.shape[3:])
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


__all__ = ["attention_maps", "dynamic_masks", "effective_kernels", "reestimate_predictor_batchnorm", "kernel_shapes",
           "identity_mask", "local_and_global_similarity", "mask_variability", "short_layer_name", "static_masks"]
