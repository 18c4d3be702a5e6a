"""The similarity predictor of dynamic NSL (NSL sec. 3.3, Appendix A; docs/official-code.md §B.4):
the small network that predicts M_θ(X) − I for every sample and output position of a layer, its
shared variant (sec. 3.3.2), and the BatchNorm and kernel-size check they share with NSConv2d.
Shapes: B batch, C input channels, K = k·k taps, H'×W' output positions."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_choice, check_positive, is_integer, square
from .sphere import he_std, sphere_conv2d

PREDICTORS = ("sphere", "full_sphere", "cnn", "linear")
HAVE_OUTPUT_NORM = "dynamic DNS with predictor 'sphere', 'full_sphere' or 'cnn' has one, and UNS with 'cnn'"
BN_EPS = 1e-3              # official hand-written BatchNorm


def batch_norm2d(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with the official eps 1e-3 and PyTorch's momentum 0.1 (see nslviz.nsl's docstring)."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.1)


def _kernel_size(kernel_size) -> int:
    """A square kernel k×k with k >= 2, given as k or (k, k)."""
    kernel_size = square("neural similarity's kernel_size", kernel_size)
    if not is_integer(kernel_size) or kernel_size < 2:
        raise ValueError(f"neural similarity needs a square kernel of size >= 2 (3 in the paper), got "
                         f"kernel_size={kernel_size!r}; a 1×1 kernel has a single tap, use nn.Conv2d")
    return kernel_size


def _hidden_width(diagonal: bool, hidden: int | None) -> int:
    """The predictor's hidden channels: `hidden`, or the official 64 (DNS) and 128 (UNS)."""
    width = (64 if diagonal else 128) if hidden is None else hidden     # 0 is an error, not the default
    check_positive("predictor_hidden", width, integer=True)
    return width


def _two_layer_weights(in_channels: int, hidden: int, outputs: int, k: int) -> tuple[nn.Parameter, nn.Parameter]:
    """The k×k hidden conv (hidden, C, k, k) at 0.1·He and the 3×3 output conv (outputs, hidden, 3, 3) at
    0.001·He, the official initialisation: the predicted M − I starts near 0."""
    return (nn.Parameter(torch.randn(hidden, in_channels, k, k) * (0.1 * he_std(in_channels, k))),
            nn.Parameter(torch.randn(outputs, hidden, 3, 3) * (1e-3 * he_std(hidden, 3))))


class SharedSimilarityPredictor(nn.Module):
    """One predictor shared by several NSL layers (NSL sec. 3.3.2, "shared", Table 3).

    Holds the two conv weights of the predictor (hidden: k×k `channels` -> `hidden`; output: 3×3
    `hidden` -> K or K²). Each layer that uses it keeps its own adaptation layer (a 1×1 conv from
    its input channels to `channels`, since layers see different widths), its own BatchNorms and
    its own stride. Not in the official code: the adaptation layer and the `channels` = 64 default
    are our choices. Pass the same instance to every layer (`prepare_nsl_options` does it)."""

    def __init__(self, diagonal: bool, *, channels: int = 64, hidden: int | None = None, kind: str = "sphere",
                 kernel_size: int = 3):
        super().__init__()
        check_positive("shared predictor channels", channels, integer=True)
        check_choice("similarity predictor", kind, PREDICTORS)
        if kind == "linear":
            raise ValueError("the linear predictor is one k×k conv on each layer's own input: it has no hidden "
                             "layer to share; use shared_predictor with kind 'sphere', 'full_sphere' or 'cnn'")
        k = _kernel_size(kernel_size)
        self.diagonal, self.channels, self.kind, self.kernel_size = bool(diagonal), channels, kind, k
        self.hidden = _hidden_width(diagonal, hidden)
        outputs = k * k if diagonal else (k * k) ** 2
        self.hidden_weight, self.output_weight = _two_layer_weights(channels, self.hidden, outputs, k)


class SimilarityPredictor(nn.Module):
    """M_θ(X) − I for one NSL layer (sec. 3.3.1): a two-layer conv net on the layer's own input, run
    at the layer's kernel size, stride and padding, so it predicts one K-vector (DNS) or K×K matrix
    (UNS, row-major (s, t)) for every sample and output position. As officially coded:

        DNS  hidden: k×k SphereConv ("only x normalised") -> 64, BN, ReLU;  output: 3×3 conv -> 9, BN
        UNS  hidden: k×k SphereConv ("only x normalised") -> 128, ReLU;     output: 3×3 conv -> 81
        init std 0.001·He (both output layers) and 0.1·He (the DNS hidden layer, here the UNS one
        too); BN eps 1e-3, so M ≈ I at the start.

    kind "full_sphere" makes both layers fully cosine (official `nsl_fspherenet`; cosines do not shrink
    with the weights, so M starts about 0.15 away from I rather than 0.005); kind "cnn" makes
    both plain convs and puts BN after both layers in both modes (paper Table 1: an unnormalised
    CNN predictor does not converge). With `shared`, the conv weights come from a
    SharedSimilarityPredictor and a per-layer 1×1 adaptation conv comes first.

    kind "linear" is our form of sec. 6's one-layer predictor M_θ(X) = W′Xᵀ (an outer product there;
    here W′ maps the patch linearly to every entry of M − I): one k×k conv with a bias, run on the
    layer's own k×k window, no BatchNorm, weight and bias starting at 0 (M = I exactly). M − I = W′X + b′
    is affine in the patch, so with the free parametrisation the layer computes a static DNS / UNS
    layer's output (from b′) plus a quadratic form of the patch (from W′), sec. 6's WᵀW′XᵀX
    (nslviz.experiments.higher_order writes it out; "psd" squares M, a cubic). Not in the official
    code; it cannot be shared and has no hidden width.

    Not bounded: sec. 3.3.1 motivates a SphereNet predictor by its outputs, cosines in [−1, 1]. As
    coded (kind "sphere") only the hidden layer divides by the input's norm and the output layer is a
    plain conv, so M − I is unbounded (notebook 07 measures taps below 0 and above 2); only "full_sphere"
    in UNS mode, whose output layer is cosine with no BatchNorm after it, keeps every entry in [−1, 1].

    `gain_init` is the starting scale γ of the output BatchNorm (1, PyTorch's and the official value).
    That BatchNorm gives M − I unit variance as soon as the output conv's variance exceeds its eps, a
    few steps into training, so M is soon I ± 1 noise that the rest of the network must learn around.
    At 0, M = I exactly until γ has learned how far to move (the zero-γ start of the last BatchNorm of
    a residual branch, Goyal et al. 2017): the dynamic network starts as the plain one. Not in the
    paper or the official code."""

    def __init__(self, in_channels: int, diagonal: bool, *, kernel_size: int = 3, stride: int = 1, padding: int = 1,
                 hidden: int | None = None, kind: str = "sphere", shared: SharedSimilarityPredictor | None = None,
                 gain_init: float = 1.0, output_norm: bool = True):
        super().__init__()
        check_choice("similarity predictor", kind, PREDICTORS)
        k = _kernel_size(kernel_size)
        self.diagonal, self.kind, self.kernel_size, self.stride, self.padding = bool(diagonal), kind, k, stride, padding
        outputs = k * k if diagonal else (k * k) ** 2
        if kind == "linear" and (shared is not None or hidden is not None):
            raise ValueError(f"the linear predictor is one k×k conv: it has no hidden layer to share or size; got "
                             f"{'a shared predictor' if shared is not None else f'predictor_hidden={hidden!r}'}")
        if kind == "linear":
            self.shared, self.adapt, hidden = None, None, None
            self.output_weight = nn.Parameter(torch.zeros(outputs, in_channels, k, k))          # W′: M starts at I
            self.output_bias = nn.Parameter(torch.zeros(outputs))                              # b′
        elif shared is not None:
            if not isinstance(shared, SharedSimilarityPredictor):
                raise ValueError(f"shared_predictor must be a SharedSimilarityPredictor (see prepare_nsl_options), "
                                 f"got {type(shared).__name__}")
            if (shared.diagonal, shared.kind, shared.kernel_size) != (self.diagonal, kind, k):
                raise ValueError(f"the shared predictor was built for diagonal={shared.diagonal}, "
                                 f"kind={shared.kind!r}, kernel_size={shared.kernel_size}; this layer needs "
                                 f"diagonal={self.diagonal}, "
                                 f"kind={kind!r}, kernel_size={k}")
            self.shared = shared
            self.adapt = nn.Conv2d(in_channels, shared.channels, 1, bias=False)               # per-layer adaptation
            nn.init.normal_(self.adapt.weight, std=he_std(in_channels, 1))
            hidden = shared.hidden
        else:
            self.shared, self.adapt = None, None
            hidden = _hidden_width(diagonal, hidden)
            self.hidden_weight, self.output_weight = _two_layer_weights(in_channels, hidden, outputs, k)
        self.hidden = hidden
        normalize_both = (diagonal or kind == "cnn") and kind != "linear"
        if not output_norm and not normalize_both:
            raise ValueError(f"predictor_output_norm=False drops the predictor's output BatchNorm, and the {kind!r} "
                             f"predictor of {'DNS' if diagonal else 'UNS'} has none ({HAVE_OUTPUT_NORM})")
        self.hidden_norm = batch_norm2d(hidden) if normalize_both else nn.Identity()
        self.output_norm = batch_norm2d(outputs) if normalize_both and output_norm else nn.Identity()
        check_positive("predictor_gain_init", gain_init, minimum=0)
        if isinstance(self.output_norm, nn.BatchNorm2d):
            nn.init.constant_(self.output_norm.weight, float(gain_init))
        elif gain_init != 1:
            raise ValueError(f"predictor_gain_init={gain_init!r} sets the scale of the predictor's output BatchNorm, "
                             f"and the {kind!r} predictor of {'DNS' if diagonal else 'UNS'} "
                             + ("has it switched off (predictor_output_norm=False)" if normalize_both else
                                f"has none ({HAVE_OUTPUT_NORM})"))

    def weights(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(hidden-layer weight, output-layer weight); the linear predictor has no hidden layer (None)."""
        if self.kind == "linear":
            return None, self.output_weight
        source = self.shared if self.shared is not None else self
        return source.hidden_weight, source.output_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, K or K², H', W'): the residual M − I before the parametrisation."""
        if self.kind == "linear":                                        # W′X(p) + b′ on the layer's own window
            return F.conv2d(x, self.output_weight, self.output_bias, self.stride, self.padding)
        hidden_weight, output_weight = self.weights()
        if self.adapt is not None:
            x = self.adapt(x)
        if self.kind == "cnn":
            h = F.conv2d(x, hidden_weight, stride=self.stride, padding=self.padding)
        else:
            h = sphere_conv2d(x, hidden_weight, self.stride, self.padding,
                              normalize="input" if self.kind == "sphere" else "full")
        if isinstance(self.hidden_norm, nn.BatchNorm2d) and self.hidden_norm.training and h[:, 0].numel() == 1:
            raise ValueError(f"a dynamic NSL layer in training mode normalises its predictor over the batch and the "
                             f"output positions, and got one of each (input {tuple(x.shape)}): train on a batch of "
                             f"two or more, or call .eval() to use the running statistics")
        h = F.relu(self.hidden_norm(h))                                                      # (B, hidden, H', W')
        if self.kind == "full_sphere":
            out = sphere_conv2d(h, output_weight, 1, 1, normalize="full")
        else:
            out = F.conv2d(h, output_weight, padding=1)
        return self.output_norm(out)

    def extra_repr(self) -> str:
        return (f"kind={self.kind!r}, diagonal={self.diagonal}, hidden={self.hidden}, stride={self.stride}, "
                f"shared={self.shared is not None}")
