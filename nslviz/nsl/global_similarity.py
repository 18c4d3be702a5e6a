"""Global neural similarity: the similarity of every position with every other one, as self-attention
(NSL Appendix B, eq. 10-11; official nsl_global_ns). One block, `GlobalSimilarityAttention`."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_flags, check_positive
from .sphere import SphereConv2d


class GlobalSimilarityAttention(nn.Module):
    """Dynamic global neural similarity as self-attention, NSL Appendix B eq. (10)-(11), as in the
    official `nsl_global_ns` (docs/official-code.md §B.7):

        f = ReLU(φ_f(X)) (C/8 channels), g = φ_g(X) (C/8), h = φ_h(X) (C), φ 1×1 convolutions
        β = softmax over positions j of f(i)ᵀ g(j)        (B, N, N), N = H·W; M_G(X) = β
        out = γ · (β h) + X,  γ a scalar initialised at 0 (the block starts as the identity)

    `cosine=True` makes φ fully cosine SphereConvs (the SphereNet rows of Table 8), False plain
    convs (the CNN rows). `orthogonality_weight` gives the three convs the official ½‖WᵀW − I‖²
    penalty (2e-4 officially; default 0), summed by `regularization()` and `nsl_regularization`;
    they are weight-decayed as well, as officially.

    Against the paper's eq. (11), M_G(X) = G1(X) G2(X)ᵀ with G1, G2 1×1 convolutions of width C and the
    layer's own weights applied after: the official block (and this one) adds the softmax over positions,
    ReLU on f, width C/8, the value convolution h and the γ-gated residual, the self-attention block of
    SAGAN that the paper names as the same mechanism."""

    def __init__(self, channels: int, reduction: int = 8, cosine: bool = True, orthogonality_weight: float = 0.0):
        super().__init__()
        check_positive("channels", channels, integer=True)
        check_positive("reduction", reduction, integer=True)
        check_positive("orthogonality_weight", orthogonality_weight, minimum=0)
        check_flags(cosine=cosine)
        inner = max(1, channels // reduction)
        self.channels, self.cosine, self.orthogonality_weight = channels, bool(cosine), float(orthogonality_weight)
        self.query, self.key, self.value = (self._conv(channels, inner), self._conv(channels, inner),
                                            self._conv(channels, channels))
        self.gamma = nn.Parameter(torch.zeros(()))

    def _conv(self, channels: int, out_channels: int) -> SphereConv2d:
        return SphereConv2d(channels, out_channels, 1, padding=0, normalize="full" if self.cosine else "none",
                            orthogonality_weight=self.orthogonality_weight)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """β (B, N, N): row i is how position i attends over all positions j."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"GlobalSimilarityAttention expects (batch, {self.channels}, height, width), "
                             f"got {tuple(x.shape)}")
        f = F.relu(self.query(x)).flatten(2)                                      # (B, C/8, N)
        g = self.key(x).flatten(2)                                                # (B, C/8, N)
        return torch.softmax(torch.einsum("bci,bcj->bij", f, g), dim=-1)         # (B, N, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.attention(x)
        h = self.value(x).flatten(2)                                              # (B, C, N)
        attended = torch.einsum("bij,bcj->bci", beta, h).view_as(x)              # (B, C, H, W)
        return x + self.gamma * attended

    def regularization(self) -> torch.Tensor:
        """The orthogonality penalties of φ_f, φ_g, φ_h (0 when orthogonality_weight is 0)."""
        return sum(conv.regularization() for conv in (self.query, self.key, self.value))
