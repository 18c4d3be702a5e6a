"""SphereNet-9 with global neural similarity: the network of NSL Table 8 (Appendix B).

Appendix B reads self-attention as a *global* neural similarity: one similarity over all positions
of a feature map instead of the k×k patch of a convolution (`nslviz.nsl.GlobalSimilarityAttention`,
eq. 10-11). Table 8 puts it into the CNN-9 of SphereNet [39] with 128 / 192 / 256 filters, as the
official global-similarity code builds it (docs/nsl-paper-tables.md):

    input    (x − 127.5) / 128 on 0–255 pixels, i.e. x·255/128 − 127.5/128 on our [0, 1] images
    stage 1  3 × [3×3 conv 128 -> BN -> ReLU] -> max-pool 2×2/2      32 -> 16
             global similarity (attention) on the 16×16×128 map       (global_similarity=True)
    stage 2  3 × [3×3 conv 192 -> BN -> ReLU] -> max-pool 2×2/2      16 -> 8
             global similarity on the 8×8×192 map
    stage 3  3 × [3×3 conv 256 -> BN -> ReLU] -> max-pool 2×2/2      8 -> 4
    fc6      a conv over the whole 4×4 map (VALID) to 256 features, no BN, no ReLU
    (the trainer's linear "dot" classifier is the official 1×1 score conv)

"spherenet9": every conv is a fully cosine SphereConv (‖w‖ and ‖x‖ normalised, the SphereNet rows);
"spherenet9_plain": the same network with plain convolutions (the CNN rows). `angle` picks SphereNet's
angle function g(θ), θ = ∠(w, x(p)) (`nslviz.nsl.ANGLE_FUNCTIONS`): "cosine" cos θ (Table 8, the
default), "linear" 1 − 2θ/π or "sigmoid" (k = 0.3), the three of the SphereNet code. A SphereNet is
built of SphereConvs of one g (its code switches fc6 with the 3×3 convs), so `angle` sets all of them:
the 9 convs, fc6 and the attention convs φ_f, φ_g, φ_h; spherenet9_plain has no g and refuses any
but "cosine". The convs carry the orthogonality penalty w·½‖ŴᵀŴ − I‖²_F (w = 2e-4) instead of weight
decay; `nslviz.nsl.nsl_regularization(model)` sums it and `undecayed_parameters` keeps their kernels
out of L2. The attention convs have both, as officially. Options through `nsl_options` (the trainer's
field): global_similarity (default False), orthogonality_weight (2e-4), widths ((128, 192, 256)),
angle ("cosine").
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from .._checks import check_choice, check_flags, check_positive
from ..nsl import ANGLE_FUNCTIONS, GlobalSimilarityAttention, SphereConv2d, batch_norm2d
from .layers import check_backbone_options, check_images
from .registry import register_backbone

OFFICIAL_ORTHOGONALITY = 2e-4
WIDTHS = (128, 192, 256)
SPHERENET_OPTIONS = ("global_similarity", "orthogonality_weight", "widths", "angle")


class SphereNet9(nn.Module):
    """Maps (B, C, S, S) images in [0, 1] to (B, 256) features; see the module docstring."""

    def __init__(self, *, cosine: bool = True, global_similarity: bool = False, widths=WIDTHS,
                 orthogonality_weight: float = OFFICIAL_ORTHOGONALITY, in_channels: int = 3, image_size: int = 32,
                 features: int = 256, angle: str = "cosine"):
        super().__init__()
        check_flags(cosine=cosine, global_similarity=global_similarity)
        check_choice("SphereNet-9 angle", angle, ANGLE_FUNCTIONS)
        if not cosine and angle != "cosine":
            raise ValueError(f"spherenet9_plain has plain convolutions, which have no angle function; angle is "
                             f"an option of spherenet9, got angle={angle!r}")
        widths = tuple(widths)
        if len(widths) != 3:
            raise ValueError(f"SphereNet-9 has three stages; widths must be three channel counts, got {widths!r}")
        for width in widths:
            check_positive("SphereNet-9 width", width, integer=True)
        check_positive("orthogonality_weight", orthogonality_weight, minimum=0)
        if image_size < 8:
            raise ValueError(f"SphereNet-9 pools three times; it needs image_size >= 8, got {image_size}")
        self.in_channels, self.image_size, self.cosine, self.angle = in_channels, image_size, cosine, angle
        normalize = "full" if cosine else "none"
        stages, channels = [], in_channels
        for s, width in enumerate(widths):
            units = []
            for _ in range(3):
                units += [SphereConv2d(channels, width, 3, padding=1, normalize=normalize, angle=angle,
                                       orthogonality_weight=orthogonality_weight, weight_decay=False),
                          batch_norm2d(width), nn.ReLU(inplace=True)]
                channels = width
            units.append(nn.MaxPool2d(2, stride=2))
            if global_similarity and s < 2:                   # after pool1 and pool2
                units.append(GlobalSimilarityAttention(width, cosine=cosine, angle=angle,
                                                       orthogonality_weight=orthogonality_weight))
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.map_size = image_size // 8
        self.fc6 = SphereConv2d(channels, features, self.map_size, padding=0, normalize=normalize, angle=angle,
                                orthogonality_weight=orthogonality_weight, weight_decay=False)
        self.feature_dim = features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(self, images)
        if images.dim() != 4 or tuple(images.shape[1:]) != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(f"SphereNet-9 expected images of shape (batch, {self.in_channels}, {self.image_size}, "
                             f"{self.image_size}), got {tuple(images.shape)}")
        x = images * (255 / 128) - 127.5 / 128                      # official (x − 127.5) / 128 on 0–255
        return self.fc6(self.stages(x)).flatten(1)                   # (B, 256)

    def extra_repr(self) -> str:
        return (f"cosine={self.cosine}, angle={self.angle!r}, image_size={self.image_size}, "
                f"feature_dim={self.feature_dim}")


def _register(name: str, cosine: bool):
    def build(*, in_channels: int = 3, image_size: int = 32, ifilm: str = "none", ifilm_entries: int = 10,
              nsl: str = "none", nsl_options: Mapping | None = None, final_relu: bool = False,
              **unsupported) -> SphereNet9:
        if ifilm != "none":                         # the shared check would offer placements this network lacks
            raise ValueError(f"backbone {name!r} has no iFiLM; use ifilm='none', got {ifilm!r}")
        if nsl != "none":
            raise ValueError(f"backbone {name!r} has global neural similarity only (nsl_options="
                             f"{{'global_similarity': True}}); use nsl='none', got {nsl!r}")
        check_backbone_options(name, in_channels=in_channels, image_size=image_size, min_image_size=8, ifilm=ifilm,
                               ifilm_entries=ifilm_entries, nsl=nsl, final_relu=final_relu, nsl_options=nsl_options,
                               unsupported=unsupported)
        options = dict(nsl_options or {})
        unknown = sorted(set(options) - set(SPHERENET_OPTIONS))
        if unknown:
            raise ValueError(f"backbone {name!r} does not take nsl option(s) {', '.join(map(repr, unknown))}; "
                             f"expected some of {', '.join(SPHERENET_OPTIONS)}")
        if final_relu is not False:                                   # official: no ReLU after fc6
            raise ValueError(f"backbone {name!r} ends with its SphereConv fc6, never with a ReLU; expected "
                             f"final_relu=False, got {final_relu!r}")
        return SphereNet9(cosine=cosine, in_channels=in_channels, image_size=image_size, **options)

    build.__doc__ = f"{name}: NSL Table 8's network, see nslviz.models.spherenet."
    build.__name__ = f"build_{name}"
    return register_backbone(name)(build)


build_spherenet9 = _register("spherenet9", True)
build_spherenet9_plain = _register("spherenet9_plain", False)

__all__ = ["SphereNet9", "SPHERENET_OPTIONS"]
