"""SphereConv, the hyperspherical convolution (SphereNet, Liu et al. NeurIPS 2017; NSL ref. [39]):
the convolution of the dynamic-NSL similarity predictor (NSL sec. 3.3.1) and of the
global-NS SphereNet (Appendix B.2). Also the official He initialisation `he_std` every NSL layer
uses and the orthogonality penalty ½‖ŴᵀŴ − I‖²_F of the official global-NS networks.

    sphere_conv2d(x, w)(b, f, p) = scale · g(θ),  cos θ = wᵀx(p) / (‖w‖ ‖x(p)‖)

x(p) the k×k×C input patch at output position p, g the angle function (`ANGLE_FUNCTIONS`), scale
‖w‖ or 1 (`SPHERE_NORMALIZATIONS`).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_choice, check_flags, check_maps, check_positive, square

ANGLE_FUNCTIONS = ("cosine", "linear", "sigmoid")
SPHERE_NORMALIZATIONS = ("input", "full", "none")
NORM_EPS = 1e-4            # official SphereConv: sqrt(Σ x² + 1e-4)


def he_std(in_channels: int, kernel_size: int) -> float:
    """Official conv initialisation: normal with std √(2 / (k²·C_in))."""
    return math.sqrt(2.0 / (kernel_size * kernel_size * in_channels))


def _angle_function(cos: torch.Tensor, angle: str, sigmoid_k: float) -> torch.Tensor:
    """g(θ) of SphereNet: cosine cos θ; linear 1 − 2θ/π; sigmoid (k = 0.3 officially)
    (1 + e^{−π/2k}) / (1 − e^{−π/2k}) · (1 − e^{θ/k − π/2k}) / (1 + e^{θ/k − π/2k}). All map θ ∈ [0, π] onto [1, −1]."""
    if angle == "cosine":
        return cos
    theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
    if angle == "linear":
        return 1 - 2 * theta / math.pi
    half = math.pi / (2 * sigmoid_k)
    scale = (1 + math.exp(-half)) / (1 - math.exp(-half))
    return scale * torch.tanh((half - theta / sigmoid_k) / 2)     # (1 − e^{a}) / (1 + e^{a}) = tanh(−a/2)


def _check_sphere_options(normalize: str, angle: str, sigmoid_k: float) -> None:
    check_choice("SphereConv normalization", normalize, SPHERE_NORMALIZATIONS)
    check_choice("SphereConv angle function", angle, ANGLE_FUNCTIONS)
    check_positive("sigmoid_k", sigmoid_k)
    if normalize == "none" and angle != "cosine":
        raise ValueError(f"SphereConv normalize='none' is the plain convolution and has no angle function; "
                         f"use angle='cosine', got {angle!r}")


def conv_padding(padding, kernel_size: int, stride: int = 1) -> int:
    """The zero padding of a k×k convolution: None (the default) k // 2, the papers' layers at any
    stride; "same" k // 2 for odd k at stride 1, where the map keeps its size; "valid" 0; or an
    integer >= 0 as given (or as a pair (p, p), as nn.Conv2d stores it)."""
    padding = square("padding", padding)
    if padding is None:
        return kernel_size // 2
    if padding == "same":
        if kernel_size % 2 == 0 or stride != 1:
            raise ValueError(f"padding 'same' keeps the map's size with an odd kernel_size at stride 1, got "
                             f"kernel_size={kernel_size}, stride={stride}; give padding as an integer")
        return kernel_size // 2
    if padding == "valid":
        return 0
    if isinstance(padding, str):
        raise ValueError(f"padding must be None (k // 2), 'same', 'valid' or an integer >= 0, got {padding!r}")
    check_positive("padding", padding, integer=True, minimum=0)
    return padding


def sphere_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0,
                  normalize: str = "input", angle: str = "cosine", sigmoid_k: float = 0.3) -> torch.Tensor:
    """Hyperspherical convolution: scale · g(θ) with cos θ = wᵀx(p) / (‖w‖ ‖x(p)‖) for the k×k×C
    patch x(p) (zero padded). normalize="input": scale = ‖w‖, so with g = cos the output is
    wᵀx / ‖x‖ (the official predictor, "only x normalised"); "full": scale = 1 (fully cosine);
    "none": the plain convolution wᵀx (the CNN rows of NSL Table 8; `angle` must be "cosine").
    Norms are √(Σ² + 1e-4) as officially. x (B, C, H, W), weight (F, C, k, k) -> (B, F, H', W')."""
    _check_sphere_options(normalize, angle, sigmoid_k)
    raw = F.conv2d(x, weight, stride=stride, padding=padding)                              # (B, F, H', W') wᵀx
    if normalize == "none":
        return raw
    patch_norm = _patch_norm(x, weight.shape[-1], stride, padding)                          # (B, 1, H', W') ‖x(p)‖
    weight_norm = torch.sqrt(weight.square().sum((1, 2, 3)) + NORM_EPS).view(1, -1, 1, 1)   # (1, F, 1, 1) ‖w‖
    if angle == "cosine":
        return raw / patch_norm if normalize == "input" else raw / (patch_norm * weight_norm)
    g = _angle_function(raw / (patch_norm * weight_norm), angle, sigmoid_k)
    return weight_norm * g if normalize == "input" else g


def _patch_norm(x: torch.Tensor, k: int, stride: int, padding: int) -> torch.Tensor:
    """‖x(p)‖ = √(Σ x² + 1e-4) over each k×k×C patch (zero padded): (B, C, H, W) -> (B, 1, H', W')."""
    ones = x.new_ones(1, 1, k, k)
    return torch.sqrt(F.conv2d(x.square().sum(1, keepdim=True), ones, stride=stride, padding=padding) + NORM_EPS)


def sphere_similarity(x: torch.Tensor, kernel_size: int, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """A fully cosine SphereConv written as dynamic NSL (NSL sec. 6: hyperspherical convolution is the
    special case M = I/(‖W‖‖X‖)): the DNS mask m_s(b, p) = 1/‖x(p)‖ at every tap s, which with kernels
    of unit norm gives `sphere_conv2d(..., normalize="full")` through `dynamic_similarity_conv2d`, up to
    that layer's 1e-4 under the kernels' norm (it takes ‖w‖ = √(Σ w² + 1e-4)).
    x (B, C, H, W) -> (B, k², H', W')."""
    check_positive("kernel_size", kernel_size, integer=True)
    inverse = 1 / _patch_norm(x, kernel_size, stride, padding)                        # (B, 1, H', W')
    return inverse.expand(-1, kernel_size * kernel_size, -1, -1)                      # (B, K, H', W')


class SphereConv2d(nn.Module):
    """Hyperspherical convolution (SphereNet, NSL ref. [39]) as a layer: the backbone of the global-NS
    SphereNet (Appendix B.2) and of its attention. See `sphere_conv2d`, which dynamic NSL's
    similarity predictor (sec. 3.3.1) also calls, on its own weights (initialised at 0.1 · He there).
    No bias. Initialisation: normal, `init_gain` · √(2/(k²C)).

    `orthogonality_weight` w > 0: `regularization()` returns w · ½‖ŴᵀŴ − I‖²_F (the official
    global-NS networks, w = 2e-4); `weight_decay=False` keeps the kernel out of weight decay (the
    official SphereNet-9 backbone convs have the orthogonality penalty instead of L2; see
    `undecayed_parameters`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | str | None = None, normalize: str = "input", angle: str = "cosine",
                 sigmoid_k: float = 0.3, init_gain: float = 1.0, orthogonality_weight: float = 0.0, weight_decay: bool = True):
        super().__init__()
        check_positive("in_channels", in_channels, integer=True)
        check_positive("out_channels", out_channels, integer=True)
        kernel_size = square("SphereConv2d's kernel_size", kernel_size)   # k or (k, k), as nn.Conv2d takes it
        check_positive("kernel_size", kernel_size, integer=True)
        stride = square("stride", stride)
        check_positive("stride", stride, integer=True)
        padding = conv_padding(padding, kernel_size, stride)
        _check_sphere_options(normalize, angle, sigmoid_k)
        check_positive("orthogonality_weight", orthogonality_weight, minimum=0)
        check_positive("init_gain", init_gain, minimum=0)       # the scale of the starting weights
        check_flags(weight_decay=weight_decay)
        self.orthogonality_weight, self.weight_decay = float(orthogonality_weight), weight_decay
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding = stride, padding
        self.normalize, self.angle, self.sigmoid_k = normalize, angle, sigmoid_k
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size)
                                   * (init_gain * he_std(in_channels, kernel_size)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_maps("SphereConv2d", x, self.in_channels, self.weight.dtype, kernel_size=self.kernel_size,
                   padding=self.padding)
        return sphere_conv2d(x, self.weight, self.stride, self.padding, self.normalize, self.angle, self.sigmoid_k)

    def regularization(self) -> torch.Tensor:
        """w · ½‖ŴᵀŴ − I‖²_F (0 when orthogonality_weight is 0)."""
        if not self.orthogonality_weight:
            return self.weight.new_zeros(())
        return self.orthogonality_weight * orthogonality_penalty(self.weight)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, normalize={self.normalize!r}, angle={self.angle!r}")


def orthogonality_penalty(weight: torch.Tensor) -> torch.Tensor:
    """½‖ŴᵀŴ − I‖²_F with Ŵ the kernel reshaped to (k²C_in, C_out): the official global-NS
    regulariser (weight 2e-4 there)."""
    matrix = weight.reshape(weight.shape[0], -1).t()                         # (k²C, F)
    gram = matrix.t() @ matrix                                               # (F, F)
    return 0.5 * (gram - torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)).square().sum()
