"""Global neural similarity (NSL Appendix B): the similarity acts on the whole input map, not on the
k×k window of each position. Static, eq. (8)-(9): `GlobalSimilarityConv2d`. Dynamic, as
self-attention, eq. (10)-(11) and the official nsl_global_ns: `GlobalSimilarityAttention`."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_choice, check_dtype, check_flags, check_maps, check_positive, check_tensor, square
from .sphere import SphereConv2d, he_std

GNS_STRUCTURES = ("diagonal", "full")
GNS_PADDING_MODES = ("zeros", "circular")


class GlobalSimilarityConv2d(nn.Module):
    """Static global neural similarity, NSL Appendix B.1 eq. (8)-(9): a k×k convolution (stride 1,
    dimension-preserving padding) of an H×W map whose similarity matrix mixes the map's positions:

        F = W_Gᵀ M_G X_F                                                          (eq. 8)
        M_G = blockdiag(M_G^s, …, M_G^s): C equal blocks of N×N, N = H·W           (eq. 9)

    X_F is the map flattened channel by channel (C·N) and W_G the matrix of the convolution (block
    Toeplitz with zero padding; block circulant, the paper's word, with `padding_mode="circular"`).
    Eq. (8) is computed without forming either matrix: mix the positions of every channel with the
    same M_G^s, then convolve.

        X'[b, c] = M_G^s · X[b, c].flatten()        (B, C, N) = (B, C, N) @ (N, N)ᵀ
        out = conv2d(X', W)                          (B, F, H, W)

    structure  "diagonal": M_G^s = diag(a) with a (H, W), a spatial mask on the input map shared by
               every channel (the paper's "spatial attention mask"): H·W numbers.
               "full": any N×N matrix, N² numbers (a million for a 32×32 map).
    M_G^s starts at I, so the layer starts as the plain convolution. Like a static NSConv2d's M, it
    belongs in a parameter group without weight decay (`similarity_parameters` lists it).

    Against static local similarity (NSConv2d, eq. 1-2): the local M weights the taps of each k×k
    window, the same at every position, so the layer stays a convolution (shift a map and its output
    shifts; it folds into the kernel MᵀW). M_G^s weights positions of the map before the convolution,
    so the layer is no longer shift-equivariant and folds into no kernel. With both diagonal, local M
    reshapes the kernel everywhere and global M_G^s masks regions of the map. They can agree only on a
    1×1 map with zero padding: the window has a single tap inside the map, so the global entry a and
    the local centre tap m_centre scale the same product, and a = m_centre gives the same output
    whatever the other taps."""

    def __init__(self, in_channels: int, out_channels: int, size, kernel_size: int = 3, bias: bool = False,
                 structure: str = "diagonal", padding_mode: str = "zeros"):
        super().__init__()
        check_positive("in_channels", in_channels, integer=True)
        check_positive("out_channels", out_channels, integer=True)
        kernel_size = square("kernel_size", kernel_size)
        check_positive("kernel_size", kernel_size, integer=True)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (dimension-preserving padding at stride 1), got {kernel_size}")
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)   # 8 or (8, 8)
        if len(size) != 2:
            raise ValueError(f"size must be the input map's (height, width), got {size!r}")
        for name, value in zip(("height", "width"), size):
            check_positive(f"size {name}", value, integer=True)
        size = tuple(int(value) for value in size)                              # NumPy integers too
        check_choice("structure of GlobalSimilarityConv2d", structure, GNS_STRUCTURES)
        check_choice("padding_mode", padding_mode, GNS_PADDING_MODES)
        check_flags(bias=bias)
        if padding_mode == "circular" and kernel_size // 2 > min(size):
            raise ValueError(f"padding_mode='circular' wraps at most the map's size: kernel_size {kernel_size} "
                             f"needs a map of at least {kernel_size // 2}×{kernel_size // 2}, got size {size}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.size, self.structure, self.padding_mode = size, structure, padding_mode
        positions = size[0] * size[1]
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size)
                                   * he_std(in_channels, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.similarity = nn.Parameter(torch.ones(size) if structure == "diagonal" else torch.eye(positions))

    def similarity_matrix(self) -> torch.Tensor:
        """M_G^s (N, N), N = H·W, row-major positions: diag(a) for "diagonal"."""
        return torch.diag(self.similarity.flatten()) if self.structure == "diagonal" else self.similarity

    def mix_positions(self, x: torch.Tensor) -> torch.Tensor:
        """X' = M_G^s X per channel, (B, C, H, W) -> (B, C, H, W): the map the convolution reads."""
        check_tensor("GlobalSimilarityConv2d input", x, f"(batch, {self.in_channels}, {self.size[0]}, {self.size[1]})")
        if x.dim() != 4 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != self.size:
            raise ValueError(f"GlobalSimilarityConv2d expects (batch, {self.in_channels}, {self.size[0]}, "
                             f"{self.size[1]}) (its M_G^s is built for one map size), got {tuple(x.shape)}")
        check_dtype("GlobalSimilarityConv2d inputs", x, self.weight.dtype)
        if self.structure == "diagonal":
            return x * self.similarity                                            # (B, C, H, W) · (H, W)
        return (x.flatten(2) @ self.similarity.t()).view_as(x)                   # (B, C, N) @ (N, N)ᵀ

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.mix_positions(x)                                             # (B, C, H, W)
        pad = self.kernel_size // 2
        if self.padding_mode == "circular":
            return F.conv2d(F.pad(mixed, (pad,) * 4, mode="circular"), self.weight, self.bias)
        return F.conv2d(mixed, self.weight, self.bias, padding=pad)              # (B, F, H, W)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, size={self.size}, kernel_size={self.kernel_size}, "
                f"structure={self.structure!r}, padding_mode={self.padding_mode!r}, bias={self.bias is not None}")


class GlobalSimilarityAttention(nn.Module):
    """Dynamic global neural similarity as self-attention, NSL Appendix B eq. (10)-(11), as in the
    official `nsl_global_ns` (docs/official-code.md §B.7):

        f = ReLU(φ_f(X)) (C/8 channels), g = φ_g(X) (C/8), h = φ_h(X) (C), φ 1×1 convolutions
        β = softmax over positions j of f(i)ᵀ g(j)        (B, N, N), N = H·W; M_G(X) = β
        out = γ · (β h) + X,  γ a scalar initialised at 0 (the block starts as the identity)

    `cosine=True` makes φ fully cosine SphereConvs (the SphereNet rows of Table 8), False plain
    convs (the CNN rows); `angle` is their angle function g(θ) (`ANGLE_FUNCTIONS`, cosine only
    when `cosine` is False). `orthogonality_weight` gives the three convs the official ½‖WᵀW − I‖²
    penalty (2e-4 officially; default 0), summed by `regularization()` and `nsl_regularization`;
    they are weight-decayed as well, as officially.

    Against the paper's eq. (11), M_G(X) = G1(X) G2(X)ᵀ with G1, G2 1×1 convolutions of width C and the
    layer's own weights applied after: the official block (and this one) adds the softmax over positions,
    ReLU on f, width C/8, the value convolution h and the γ-gated residual, the self-attention block of
    SAGAN that the paper names as the same mechanism."""

    def __init__(self, channels: int, reduction: int = 8, cosine: bool = True, orthogonality_weight: float = 0.0,
                 angle: str = "cosine"):
        super().__init__()
        check_positive("channels", channels, integer=True)
        check_positive("reduction", reduction, integer=True)
        check_positive("orthogonality_weight", orthogonality_weight, minimum=0)
        check_flags(cosine=cosine)
        inner = max(1, channels // reduction)
        self.channels, self.cosine, self.orthogonality_weight = channels, bool(cosine), float(orthogonality_weight)
        self.angle = angle
        self.query, self.key, self.value = (self._conv(channels, inner), self._conv(channels, inner),
                                            self._conv(channels, channels))
        self.gamma = nn.Parameter(torch.zeros(()))

    def _conv(self, channels: int, out_channels: int) -> SphereConv2d:
        return SphereConv2d(channels, out_channels, 1, padding=0, normalize="full" if self.cosine else "none",
                            angle=self.angle, orthogonality_weight=self.orthogonality_weight)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """β (B, N, N): row i is how position i attends over all positions j."""
        check_maps("GlobalSimilarityAttention", x, self.channels, self.value.weight.dtype)
        f = F.relu(self.query(x)).flatten(2)                                      # (B, C/8, N)
        g = self.key(x).flatten(2)                                                # (B, C/8, N)
        return torch.softmax(torch.einsum("bci,bcj->bij", f, g), dim=-1)         # (B, N, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.attention(x)                                                  # checks x
        h = self.value(x).flatten(2)                                              # (B, C, N)
        attended = torch.einsum("bij,bcj->bci", beta, h).view_as(x)              # (B, C, H, W)
        return x + self.gamma * attended

    def regularization(self) -> torch.Tensor:
        """The orthogonality penalties of φ_f, φ_g, φ_h (0 when orthogonality_weight is 0)."""
        return sum(conv.regularization() for conv in (self.query, self.key, self.value))
