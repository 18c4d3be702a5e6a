"""Pieces shared by the MN backbones (ResNet v2, DenseNet, ConvNet): BatchNorm as the official
TF contrib code configures it, Xavier-initialised bias-free convolutions, the Neural-Similarity
3x3 convolution factory, iFiLM-or-identity slots, validation of the builder options, and the
`Backbone` base class (input check, global average pooling, `feature_dim`).

Official settings (lupalab/Meta-Neighborhoods, network/*.py): `tf.contrib.layers.batch_norm` with
decay 0.9 (PyTorch momentum 0.1), eps 1e-3, centre and scale; every conv is bias-free with
`xavier_initializer_conv2d` (Glorot uniform, fans = k·k·C_in and k·k·C_out, as `xavier_uniform_`).

Deviation: the contrib moving mean is zero-debiased; PyTorch's running mean is not. The two agree
after a few dozen training steps (0.9^50 < 0.6%).
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch
import torch.nn as nn

from .._checks import check_choice, check_dtype, check_finite, check_flags, check_positive, check_tensor
from ..ifilm import IFILM_PLACEMENTS, IFiLM
from ..nsl import NSL_MODES, make_conv, prepare_nsl_options
from ..nsl import batch_norm2d as batch_norm     # eps 1e-3, momentum 0.1: the MN code's TF decay 0.9


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters, each shared tensor counted once."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@torch.no_grad()
def reestimate_batch_norm(model: nn.Module, norms: list[nn.Module], batches: Iterable[torch.Tensor]) -> None:
    """Running statistics of `norms` (BatchNorms inside `model`) as exact averages (momentum None) over
    `model(batch)` for every batch of `batches`, with the rest of the model in eval mode. Weights that
    moved faster than BatchNorm's exponential averages follow leave those averages stale; afterwards
    eval mode normalises as training mode would. The norms keep their momentum; `model` ends in eval
    mode. No batches, or an error on the way: the norms keep the statistics they had."""
    momenta = [norm.momentum for norm in norms]
    saved = [{name: buffer.clone() for name, buffer in norm.named_buffers()} for norm in norms]
    model.eval()
    try:
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None                                                # cumulative average
            norm.train()
        seen = 0
        for batch in batches:
            model(batch)
            seen += 1
        if seen == 0:
            raise ValueError("reestimate_batch_norm got no batches; expected at least one batch of inputs")
    except BaseException:                  # nothing (or not everything) averaged: put the old statistics back
        for norm, buffers in zip(norms, saved):
            for name, buffer in buffers.items():
                getattr(norm, name).copy_(buffer)
        raise
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.eval()


def film(channels: int, enabled: bool, entries: int) -> nn.Module:
    """An iFiLM slot: `IFiLM(channels, entries)` where the placement puts one, else nn.Identity."""
    return IFiLM(channels, entries) if enabled else nn.Identity()


def xavier_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free conv with symmetric padding k // 2, Glorot-uniform initialised. For odd kernels this
    is TF 'SAME' at stride 1; at stride 2 TF pads one more row and column after than before, so the
    output has the same size but its sampling grid is shifted by one pixel."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
    nn.init.xavier_uniform_(conv.weight)
    return conv


def network_nsl_options(nsl: str, nsl_options: Mapping | None) -> dict:
    """The options every 3x3 conv of one network receives (`nslviz.nsl.prepare_nsl_options`: checks
    them and turns `shared_predictor=True` into one predictor shared by the whole network)."""
    return prepare_nsl_options(nsl, dict(nsl_options or {}))


def similarity_conv3x3(nsl: str, in_channels: int, out_channels: int, stride: int = 1,
                       nsl_options: Mapping | None = None) -> nn.Module:
    """The 3x3 conv of a backbone body, built by `nslviz.nsl.make_conv` (plain conv for nsl="none",
    which checks and ignores `nsl_options`); pass options prepared by `network_nsl_options`.

    A plain nn.Conv2d gets the official Xavier init; an NSL module keeps the init its own
    definition gives it (NSL code: He-normal kernels, special predictor inits)."""
    conv = make_conv(nsl, in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False,
                     **dict(nsl_options or {}))
    if type(conv) is nn.Conv2d:
        nn.init.xavier_uniform_(conv.weight)
    return conv


def check_backbone_options(name: str, *, in_channels, image_size, min_image_size: int, ifilm, ifilm_entries,
                           nsl, final_relu, nsl_options, unsupported: Mapping) -> None:
    """The builder contract's validation (nslviz.models.registry): ValueError naming the bad option."""
    if unsupported:
        raise ValueError(f"backbone {name!r} does not take option(s) {', '.join(sorted(map(repr, unsupported)))}; "
                         "it takes in_channels, image_size, ifilm, ifilm_entries, nsl, nsl_options, final_relu"
                         + _EXTRA_OPTIONS.get(name.removesuffix("_64"), ""))
    check_positive("in_channels", in_channels, integer=True)
    check_positive("image_size", image_size, integer=True)
    if image_size < min_image_size:
        raise ValueError(f"backbone {name!r} needs image_size >= {min_image_size} (its poolings/strides leave "
                         f"no pixels otherwise), got {image_size}")
    check_choice("ifilm placement", ifilm, IFILM_PLACEMENTS)
    check_positive("ifilm_entries", ifilm_entries, integer=True)
    check_choice("nsl mode", nsl, NSL_MODES)
    check_flags(final_relu=final_relu)
    if nsl_options is not None and not isinstance(nsl_options, Mapping):
        raise ValueError(f"nsl_options must be a dict of keyword arguments for nslviz.nsl.make_conv or None, "
                         f"got {type(nsl_options).__name__}")


_EXTRA_OPTIONS = {"densenet40": ", dropout, transition_ifilm"}


def contract_builder(name: str, make, *, default_image_size: int, min_image_size: int):
    """The builder of a backbone that takes the contract's options and no others: they are checked by
    `check_backbone_options`, then `make(**options)` builds the network, which records
    `min_image_size`."""
    def build(*, in_channels: int = 3, image_size: int = default_image_size, ifilm: str = "none",
              ifilm_entries: int = 10, nsl: str = "none", nsl_options: dict | None = None,
              final_relu: bool = False, **unsupported) -> Backbone:
        options = dict(in_channels=in_channels, image_size=image_size, ifilm=ifilm, ifilm_entries=ifilm_entries,
                       nsl=nsl, nsl_options=nsl_options, final_relu=final_relu)
        check_backbone_options(name, min_image_size=min_image_size, unsupported=unsupported, **options)
        return make(**options).with_min_image_size(min_image_size)
    return build


def check_images(backbone: nn.Module, images) -> None:
    """What every backbone takes: a floating-point tensor in its weights' dtype (autocast aside), as
    `nslviz.datasets.augment.to_float` makes from uint8 images, of finite values (checked on the CPU)."""
    name = type(backbone).__name__
    check_tensor(f"{name} images", images, "(batch, channels, H, W)")
    dtype = next(backbone.parameters()).dtype
    if not images.is_floating_point():
        raise ValueError(f"{name} expected floating-point images in [0, 1] ({dtype}), got dtype {images.dtype}; "
                         f"convert uint8 images with nslviz.datasets.augment.to_float")
    check_dtype(f"{name} images", images, dtype)
    if (images.device.type == "cpu" and not torch.compiler.is_compiling()
            and not torch._C._functorch.is_functorch_wrapped_tensor(images)):
        # on the GPU this check would stall the queue once per batch (a host sync), and under torch.func
        # (vmap over few-shot episodes) a batched tensor has no one answer; the trainer's data are uint8
        # and cannot hold NaN, and it stops on a non-finite training loss
        check_finite("images", images)


class Backbone(nn.Module):
    """Base of every backbone: images (B, in_channels, H, W) in [0, 1] -> features (B, feature_dim).

    Subclasses set `feature_dim` and implement `feature_map(images) -> (B, feature_dim, h, w)`; the
    final activation choice (BN, optional ReLU) is theirs, the global average pool is here."""

    feature_dim: int
    min_image_size: int = 1          # the smallest side its poolings and strides leave a pixel of

    def __init__(self, *, in_channels: int, image_size: int, ifilm: str, nsl: str, final_relu: bool):
        super().__init__()
        self.in_channels = in_channels
        self.image_size = image_size
        self.ifilm = ifilm
        self.nsl = nsl
        self.final_relu = final_relu

    def with_min_image_size(self, size: int) -> "Backbone":
        self.min_image_size = size
        return self

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(self, images)
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expected images of shape (batch, {self.in_channels}, H, W), "
                             f"got {tuple(images.shape)}")
        if min(images.shape[-2:]) < self.min_image_size:
            raise ValueError(f"{type(self).__name__} needs images of at least {self.min_image_size}x{self.min_image_size} "
                             f"pixels (its poolings leave none otherwise), got {images.shape[-2]}x{images.shape[-1]}")
        return self.feature_map(images).mean(dim=(2, 3))          # (B, feature_dim) global average pool

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, image_size={self.image_size}, feature_dim={self.feature_dim}, "
                f"ifilm={self.ifilm!r}, nsl={self.nsl!r}, final_relu={self.final_relu}")
