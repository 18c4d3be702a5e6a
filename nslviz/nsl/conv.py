"""NSConv2d, the convolution with neural similarity WᵀMX (NSL eq. 1-5), and what builds and trains it:

    out(b, f, p) = Σ_c Σ_{s,t} W[f, c, s] · M_st · X(b, c, p + o_t)                       (eq. 1-2)

`dynamic_similarity_conv2d` computes it with one M per sample and position (the patches path
writes the M-mixing and the product with W as einsums; the tap-looping autograd Functions both
paths call are in fast.py);
`NSConv2d` holds W and M (static) or M's predictor (dynamic, predictor.py) in one of the modes of
`NSL_MODES`; `make_conv` and `prepare_nsl_options` build layers for a backbone; the
parameter-group helpers, `nsl_regularization` and `fold_static_nsl` serve trainers and deployment.
The modes, options and the deviations from the official code are described in nslviz.nsl's
docstring (nslviz/nsl/__init__.py). Shapes: B batch, C input channels, F filters, K = k·k taps,
H'×W' = L output positions.
"""
from __future__ import annotations

import copy
import inspect
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_choice, check_flags, check_maps, check_positive, square
from .._precision import autocast_enabled, autocast_off
from .fast import _Patches, _RecomputedShiftWeightSum, _ShiftWeightSum, channels_last_pixels, choose_dynamic_impl
from .global_similarity import GlobalSimilarityConv2d
from .predictor import PREDICTORS, SharedSimilarityPredictor, SimilarityPredictor, _kernel_size
from .sphere import SphereConv2d, conv_padding, he_std

NSL_MODES = ("none", "static_dns", "static_uns", "dynamic_dns", "dynamic_uns")
PARAMETRIZATIONS = ("free", "symmetric", "psd")
DNS_INITS = ("ones", "official")
DYNAMIC_IMPLS = ("auto", "taps", "patches")
RECOMPUTE_TAPS = False     # NSConv2d default: on CPU keeping Z is 1.3-1.5x faster; recomputing saves ~8x memory
OFFICIAL_UNS_L2 = 5e-3     # official L2 on the static UNS matrix


# ----------------------------------------------------------------------------------------------
# The convolution with a per-position similarity (dynamic NSL), vectorised over samples and positions
# ----------------------------------------------------------------------------------------------

def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a convolution of x runs in: autocast's when it is on for x's device, else x's."""
    kind = x.device.type
    if autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return x.dtype


def dynamic_similarity_conv2d(x: torch.Tensor, weight: torch.Tensor, similarity: torch.Tensor, *, stride: int = 1,
                              padding: int = 1, bias: torch.Tensor | None = None, impl: str = "auto",
                              recompute: bool = False) -> torch.Tensor:
    """Convolution with a similarity matrix for every sample and output position (dynamic NSL,
    eq. 1-3 applied per patch): out(b, f, p) = Σ_{c,s,t} W[f, c, s] · M_st(b, p) · X(b, c, p + o_t).

    x (B, C, H, W); weight (F, C, k, k); similarity DNS (B, K, H', W') = diagonal m_s(b, p), or
    UNS (B, K, K, H', W') = M_st(b, p). Returns (B, F, H', W').

    impl "taps" (DNS only): the K per-tap responses Z = W_s·X from one 1×1 conv to K·F channels,
    weighted by m and summed over shifted maps; memory B·K·F·H·W, conv FLOPs. "patches":
    channels-last patches (B, L, K, C), mixed by M (batched K×K products), then one matrix
    product with W; memory B·K·C·L. "auto": `choose_dynamic_impl`. Both paths work channels-last
    inside and return a channels-last (B, F, H', W') tensor. `recompute=True` (taps only) keeps X
    instead of Z for backward and recomputes Z there: K·F/C times less memory for one more 1×1
    convolution (see the benchmark).

    Precision: M is used as given (float32 from NSConv2d, also under bf16 autocast: M = 1 + r near
    the identity would round to steps of 1/128 in bf16); the per-tap sum and the M-mixing of the
    patches run in float32 when M is float32 and the activations bf16. Both paths return the dtype
    a plain convolution of x would (autocast's when it is on), so the two are interchangeable."""
    check_choice("dynamic NSL implementation", impl, DYNAMIC_IMPLS)
    check_positive("stride", stride, integer=True, minimum=1)
    check_positive("padding", padding, integer=True, minimum=0)
    if x.dim() != 4 or weight.dim() != 4 or weight.shape[2] != weight.shape[3] or weight.shape[1] != x.shape[1]:
        raise ValueError(f"expected x (B, C, H, W) and a square weight (F, C, k, k) with the same C; got x "
                         f"{tuple(x.shape)} and weight {tuple(weight.shape)}")
    batch, channels, height, width = x.shape
    filters, _, k, _ = weight.shape
    if bias is not None and tuple(bias.shape) != (filters,):
        raise ValueError(f"expected a bias of shape ({filters},), one per filter of the weight, got "
                         f"{tuple(bias.shape)}")
    taps = k * k
    diagonal = similarity.dim() == 4
    out_h, out_w = (height + 2 * padding - k) // stride + 1, (width + 2 * padding - k) // stride + 1
    expected = (batch, taps, out_h, out_w) if diagonal else (batch, taps, taps, out_h, out_w)
    if tuple(similarity.shape) != expected:
        raise ValueError(f"similarity must have shape (B, K, H', W') for DNS or (B, K, K, H', W') for UNS with "
                         f"B={batch}, K={taps} and the convolution's output H'×W' = {out_h}×{out_w}; got "
                         f"{tuple(similarity.shape)}")
    compute = _compute_dtype(x)
    similarity = similarity.to(torch.promote_types(compute, similarity.dtype))     # never below the activations
    if impl == "auto":
        impl = choose_dynamic_impl(diagonal, stride, channels, filters)
    if recompute and impl != "taps":
        raise ValueError(f"recompute=True applies to impl='taps' (it recomputes the per-tap responses); "
                         f"this call uses impl={impl!r}")
    if impl == "taps":
        if not diagonal:
            raise ValueError("impl='taps' computes DNS (diagonal similarity) only; use 'patches' for UNS")
        per_tap = weight.permute(2, 3, 0, 1).reshape(taps * filters, channels, 1, 1)        # (K·F, C, 1, 1) W_s
        # m contiguous channels-last: a strided m makes every per-tap broadcast loop over positions
        # innermost and write Z's gradient K·F apart (about 10x slower on CPU)
        m = similarity.permute(0, 2, 3, 1).contiguous()                                      # (B, H', W', K)
        if recompute:
            pixels = channels_last_pixels(x.to(compute))                                    # (B, H, W, C)
            kernel = per_tap.to(compute).view(taps * filters, channels).t()                  # (C, K·F)
            with autocast_off(x.device.type):
                out = _RecomputedShiftWeightSum.apply(pixels, kernel, m, k, stride, padding)
        else:
            z = F.conv2d(channels_last_pixels(x).permute(0, 3, 1, 2), per_tap)                # (B, K·F, H, W) W_s·X(q)
            z = z.permute(0, 2, 3, 1).reshape(batch, height, width, taps, filters)            # channels-last view
            out = _ShiftWeightSum.apply(z, m, k, stride, padding)
        out = out.permute(0, 3, 1, 2).to(compute)                                            # (B, F, H', W')
    else:
        patches = _Patches.apply(x, k, stride, padding, out_h, out_w)                        # (B, H', W', K, C)
        kernel = weight.permute(0, 2, 3, 1).reshape(filters, taps, channels)                  # (F, K, C) W[f, c, s]
        with autocast_off(x.device.type):                                   # mix with M as it is
            if diagonal:
                mask = similarity.permute(0, 2, 3, 1)                                         # (B, H', W', K) m_s(b, p)
                mixed = patches * mask.unsqueeze(-1)                                          # (B, H', W', K, C)
            else:
                matrix = similarity.permute(0, 3, 4, 1, 2)                                    # (B, H', W', K, K) M_st
                mixed = torch.einsum("bijst,bijtc->bijsc", matrix, patches.to(matrix.dtype))   # Σ_t M_st X(p + o_t)
        out = torch.einsum("bijsc,fsc->bfij", mixed.to(compute), kernel)                     # (B, F, H', W')
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, -1, 1, 1)                                    # autocast's dtype kept
    return out


def _keep_largest(m: torch.Tensor, k: int | None, dim: int) -> torch.Tensor:
    """m with all but the k largest-magnitude entries along `dim` at 0 in the forward pass (k None: m);
    the gradient passes to every entry, as for the kernel shape D, so an entry at 0 can come back."""
    if k is None or k >= m.shape[dim]:
        return m
    kept = torch.zeros_like(m).scatter_(dim, m.abs().topk(k, dim=dim).indices, 1.0)
    return m + (m * kept - m).detach()


def _straight_through_step(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """D = 1[D_r > α] forward; ∂L/∂D_r = ∂L/∂D backward (NSL eq. 5, straight-through)."""
    hard = (scores > threshold).to(scores.dtype)
    return hard + (scores - scores.detach())


# ----------------------------------------------------------------------------------------------
# NSConv2d: the convolution with neural similarity
# ----------------------------------------------------------------------------------------------

class NSConv2d(nn.Module):
    """Convolution with neural similarity WᵀMX, NSL eq. (1)-(5); one M_s per layer, shared by all
    kernels and input channels (sec. 4; official: yes). See nslviz.nsl's docstring for the modes.

    `padding` None (default) is k // 2 at any stride, as in the papers' networks; "same" (odd k,
    stride 1) keeps the map's size; nn.Conv2d's default is 0: pass padding=0 or "valid". `stride` and
    an integer `padding` may be pairs of equal numbers, as an nn.Conv2d stores them. The dynamic
    modes return a channels-last tensor whatever the input's layout (they compute channels-last, and
    a copy back would cost time): use .reshape or .flatten on it, not .view.

    Keyword options (`make_conv(..., **nsl_options)` forwards them):
      dns_init         "ones" (M = I) or "official" ([1,0,0,0,1,0,0,0,1]) for static DNS
      parametrization  "free"; "symmetric" M = (A + Aᵀ)/2; "psd" M = LLᵀ with L lower triangular
                       (Cholesky factor, sec. 3.4; for DNS m = l²). Dynamic: applied to I + prediction
                       (symmetric: I + (P + Pᵀ)/2; psd: L = I + tril(P)).
      nonzeros_per_row UNS, hard sparsity (sec. 3.4): only the k largest-magnitude entries of each row s
                       of M are kept, so kernel tap s reads k input taps; 1 is the sparsity-one pattern,
                       one shift per tap. The gradient passes to every entry (straight-through); the
                       l1/l2 penalties see the kept entries only.
      kernel_shape     learn M = D·R, D = diag(1[D_r > shape_threshold]) (eq. 4-5), D_r initialised to
                       shape_init, updated straight-through. D masks rows s: kernel taps switched off.
      predictor        "sphere" (official), "full_sphere", "cnn", "linear" (sec. 6: M = I + W′X + b′,
                       free: a quadratic form of the patch); predictor_hidden (64 DNS / 128 UNS; not linear);
                       predictor_gain_init, the starting scale γ of the predictor's output BatchNorm
                       (1 as officially; 0: M = I exactly at the start, see SimilarityPredictor);
                       predictor_identity=False predicts M itself, not M − I (sec. 3.3.1's "identity
                       residuals" taken out); predictor_output_norm=False drops the predictor's output
                       BatchNorm (sec. 7.1 by Table 1: with a CNN predictor left unnormalised, dynamic
                       NSN "can not converge"). Both are ablations, not in the official code;
      shared_predictor a SharedSimilarityPredictor used by several layers (sec. 3.3.2)
      l2_weight        l2 · ½‖M‖²_F (default: 5e-3 for static_uns as officially, else 0)
      l1_weight        l1 · ‖M‖₁ (sparsity, sec. 3.4); dynamic modes: mean over samples and positions
      dynamic_impl     "auto", "taps", "patches" (see dynamic_similarity_conv2d, choose_dynamic_impl)
      recompute_taps   the taps path keeps X and recomputes the per-tap responses Z in backward
                       instead of keeping Z (9× a plain convolution's output): much less activation
                       memory for a little more time (benchmarks/bench_nsl.py)
    The penalties are not added to the loss by the layer: `regularization()` returns them (for
    dynamic modes, those of the last forward in training mode, 0 after an eval-mode forward),
    `nsl_regularization(model)` sums them.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride: int = 1,
                 padding: int | str | None = None, bias: bool = False, mode: str = "static_dns", *,
                 dns_init: str = "ones", parametrization: str = "free", nonzeros_per_row: int | None = None,
                 kernel_shape: bool = False, shape_threshold: float = 0.5,
                 shape_init: float = 1.0, predictor: str = "sphere", predictor_hidden: int | None = None,
                 predictor_gain_init: float = 1.0, predictor_identity: bool = True,
                 predictor_output_norm: bool = True,
                 shared_predictor: SharedSimilarityPredictor | None = None, l2_weight: float | None = None,
                 l1_weight: float = 0.0, dynamic_impl: str = "auto", recompute_taps: bool = RECOMPUTE_TAPS):
        super().__init__()
        check_choice("nsl mode of NSConv2d", mode, NSL_MODES[1:])
        check_positive("in_channels", in_channels, integer=True)
        check_positive("out_channels", out_channels, integer=True)
        k = _kernel_size(kernel_size)
        stride = square("stride", stride)                               # conv.stride of an nn.Conv2d is a pair
        check_positive("stride", stride, integer=True)
        padding = conv_padding(padding, k, stride)
        check_choice("dns_init", dns_init, DNS_INITS)
        check_choice("parametrization", parametrization, PARAMETRIZATIONS)
        check_choice("dynamic_impl", dynamic_impl, DYNAMIC_IMPLS)
        l2_weight = (OFFICIAL_UNS_L2 if mode == "static_uns" else 0.0) if l2_weight is None else l2_weight
        check_positive("l2_weight", l2_weight, minimum=0)
        check_positive("l1_weight", l1_weight, minimum=0)
        check_positive("shape_init", shape_init, minimum=-math.inf)
        check_positive("shape_threshold", shape_threshold, minimum=-math.inf)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.padding, self.mode, self.parametrization = stride, padding, mode, parametrization
        self.dynamic, self.diagonal = mode.startswith("dynamic"), mode.endswith("dns")
        self.taps = k * k
        self.l2_weight, self.l1_weight, self.dynamic_impl = float(l2_weight), float(l1_weight), dynamic_impl
        check_flags(recompute_taps=recompute_taps, kernel_shape=kernel_shape, bias=bias,
                    predictor_identity=predictor_identity, predictor_output_norm=predictor_output_norm)
        self.predictor_identity = predictor_identity
        if dynamic_impl == "taps" and not (self.dynamic and self.diagonal):
            raise ValueError(f"dynamic_impl='taps' computes dynamic DNS only, mode is {mode!r}; use 'auto' or "
                             f"'patches'")
        check_choice("similarity predictor", predictor, PREDICTORS)       # checked in every mode: a typo is
        if predictor_hidden is not None:                                  # named even where it is unused
            check_positive("predictor_hidden", predictor_hidden, integer=True)
        check_positive("predictor_gain_init", predictor_gain_init, minimum=0)
        if kernel_shape and not shape_init > shape_threshold:
            raise ValueError(f"shape_init must be above shape_threshold (every tap starts on), got shape_init="
                             f"{shape_init!r} and shape_threshold={shape_threshold!r}: the layer would output 0")
        if nonzeros_per_row is not None:
            check_positive("nonzeros_per_row", nonzeros_per_row, integer=True)
            if self.diagonal or parametrization != "free" or nonzeros_per_row > self.taps:
                raise ValueError(f"nonzeros_per_row keeps 1 to {self.taps} entries of each row of a free UNS matrix "
                                 f"(DNS has one per row; hard sparsity of its taps is kernel_shape=True); got "
                                 f"{nonzeros_per_row!r} with mode {mode!r} and parametrization {parametrization!r}")
        self.nonzeros_per_row = nonzeros_per_row
        self.recompute_taps = bool(recompute_taps)
        self.shape_threshold = float(shape_threshold)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, k, k) * he_std(in_channels, k))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        if shared_predictor is not None and not self.dynamic:
            raise ValueError(f"shared_predictor is for the dynamic modes; mode is {mode!r}")
        if shared_predictor is True:
            raise ValueError("shared_predictor=True must be turned into one shared module first: "
                             "options = prepare_nsl_options(mode, options)")
        if dns_init == "official" and not (self.diagonal and not self.dynamic):
            raise ValueError(f"dns_init='official' applies to static_dns only, mode is {mode!r}")
        if self.dynamic:
            self.predictor = SimilarityPredictor(in_channels, self.diagonal, kernel_size=k, stride=stride,
                                                 padding=padding, hidden=predictor_hidden, kind=predictor,
                                                 shared=shared_predictor, gain_init=predictor_gain_init,
                                                 output_norm=predictor_output_norm)
        else:
            self.similarity = nn.Parameter(self._static_init(dns_init))
        self.shape_scores = nn.Parameter(torch.full((self.taps,), float(shape_init))) if kernel_shape else None
        self._dynamic_penalty: torch.Tensor | None = None

    def _static_init(self, dns_init: str) -> torch.Tensor:
        """The raw parameter whose parametrisation gives M = I (or the official DNS pattern)."""
        if self.diagonal:
            init = torch.eye(self.kernel_size).flatten() if dns_init == "official" else torch.ones(self.taps)
            if self.parametrization == "psd" and dns_init == "official":
                raise ValueError("dns_init='official' with parametrization='psd' (m = l²) would freeze the zero taps")
            return init                                                     # m, or l with m = l² (l = 1 -> m = 1)
        return torch.eye(self.taps)                                         # M, A or L, all giving M = I

    # -- M ----------------------------------------------------------------------------------------
    def kernel_shape_mask(self) -> torch.Tensor | None:
        """D (K,): 1 for the taps kept, 0 for those switched off (straight-through w.r.t. D_r)."""
        return None if self.shape_scores is None else _straight_through_step(self.shape_scores, self.shape_threshold)

    def static_similarity(self) -> torch.Tensor:
        """Static M_s with D applied: DNS the diagonal (K,), UNS the matrix (K, K) [s, t]. Formed in
        the parameters' dtype (float32), also under bf16 autocast."""
        if self.dynamic:
            raise ValueError(f"mode {self.mode!r} has no static similarity; use predict_similarity(x)")
        with autocast_off(self.similarity.device.type):
            return self._static_similarity(self.similarity)

    def _static_similarity(self, raw: torch.Tensor) -> torch.Tensor:
        if self.diagonal:
            m = raw.square() if self.parametrization == "psd" else raw
        elif self.parametrization == "symmetric":
            m = 0.5 * (raw + raw.t())
        elif self.parametrization == "psd":
            lower = torch.tril(raw)
            m = lower @ lower.t()
        else:
            m = _keep_largest(raw, self.nonzeros_per_row, dim=1)          # rows s of M (K, K)
        mask = self.kernel_shape_mask()
        if mask is None:
            return m
        return m * mask if self.diagonal else m * mask.unsqueeze(1)          # D·R: rows s of R

    def predict_similarity(self, x: torch.Tensor) -> torch.Tensor:
        """Dynamic M for every sample and output position, with D applied:
        DNS (B, K, H', W') diagonal; UNS (B, K, K, H', W') [b, s, t, i, j].

        M = I + residual is formed in float32 (at least) even when the predictor runs under bf16
        autocast: in bf16, 1 + r is rounded to steps of 1/128 ≈ 0.008 near 1, larger than a residual
        that starts a few thousandths in size (mean |r| about 0.004 in a fresh CNN-9)."""
        if not self.dynamic:
            raise ValueError(f"mode {self.mode!r} is static; use static_similarity()")
        residual = self.predictor(x)                                          # (B, K or K², H', W')
        with autocast_off(residual.device.type):
            return self._similarity_from_residual(residual.to(torch.promote_types(residual.dtype, torch.float32)))

    def _similarity_from_residual(self, residual: torch.Tensor) -> torch.Tensor:
        identity = float(self.predictor_identity)                             # M = I + r, or M = r
        if self.diagonal:
            m = identity + residual
            if self.parametrization == "psd":
                m = m.square()
        else:
            batch, _, out_h, out_w = residual.shape
            p = residual.view(batch, self.taps, self.taps, out_h, out_w)
            eye = identity * torch.eye(self.taps, device=p.device, dtype=p.dtype).view(1, self.taps, self.taps, 1, 1)
            if self.parametrization == "symmetric":
                m = eye + 0.5 * (p + p.transpose(1, 2))
            elif self.parametrization == "psd":
                lower = eye + p * torch.ones(self.taps, self.taps, device=p.device, dtype=p.dtype).tril().view_as(eye)
                m = torch.einsum("bsrij,btrij->bstij", lower, lower)          # L Lᵀ at every position
            else:
                m = _keep_largest(eye + p, self.nonzeros_per_row, dim=2)     # rows s of each M(b, p)
        mask = self.kernel_shape_mask()
        if mask is not None:
            m = m * mask.view(1, -1, *([1] * (m.dim() - 2)))
        return m

    # -- forward / fold ---------------------------------------------------------------------------
    def effective_weight(self) -> torch.Tensor:
        """Static modes: the folded kernel W_eff[f, c, t] = Σ_s W[f, c, s] M_st, shape (F, C, k, k)."""
        m = self.static_similarity()
        kernel = self.weight.view(self.out_channels, self.in_channels, self.taps)        # (F, C, K)
        with autocast_off(kernel.device.type):                          # folded in float32
            if self.diagonal:
                folded = kernel * m
            else:
                folded = torch.einsum("fcs,st->fct", kernel, m)
        return folded.view_as(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_maps("NSConv2d", x, self.in_channels, self.weight.dtype, kernel_size=self.kernel_size,
                   padding=self.padding)
        if not self.dynamic:
            return F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding)
        m = self.predict_similarity(x)
        self._dynamic_penalty = self._penalty(m, reduce_positions=True) if self.training else None
        impl = self.dynamic_impl
        if impl == "auto":
            impl = choose_dynamic_impl(self.diagonal, self.stride, self.in_channels, self.out_channels)
        # channels-last as computed: a copy back to the input's layout costs a dynamic CNN-4 10-15 % on a CPU
        return dynamic_similarity_conv2d(x, self.weight, m, stride=self.stride, padding=self.padding,
                                         bias=self.bias, impl=impl,
                                         recompute=self.recompute_taps and impl == "taps" and torch.is_grad_enabled())

    def __getstate__(self) -> dict:
        """copy.deepcopy and pickle leave out the last training forward's penalty: it belongs to that
        forward's autograd graph, which cannot be copied."""
        state = super().__getstate__()
        return {**state, "_dynamic_penalty": None} if state.get("_dynamic_penalty") is not None else state

    def to_conv2d(self) -> nn.Conv2d:
        """The equal plain nn.Conv2d for deployment (static modes; NSL sec. 3.2), in the same training
        mode; its kernel MᵀW is frozen where W and M both are, its bias where the bias is."""
        if self.dynamic:
            raise ValueError(f"mode {self.mode!r} depends on the input and cannot be folded into a plain convolution")
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                         padding=self.padding, bias=self.bias is not None, device=self.weight.device,
                         dtype=self.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.effective_weight())
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        conv.weight.requires_grad_(any(p.requires_grad for name, p in self.named_parameters() if name != "bias"))
        if self.bias is not None:
            conv.bias.requires_grad_(self.bias.requires_grad)
        conv.train(self.training)
        return conv

    # -- regularisation ---------------------------------------------------------------------------
    def _penalty(self, m: torch.Tensor, reduce_positions: bool) -> torch.Tensor | None:
        if self.l2_weight == 0 and self.l1_weight == 0:
            return None
        scale = 1.0
        if reduce_positions:                     # dynamic: mean over samples and positions
            scale = 1.0 / (m.shape[0] * m.shape[-1] * m.shape[-2])
        penalty = m.new_zeros(())
        if self.l2_weight:
            penalty = penalty + self.l2_weight * 0.5 * m.square().sum() * scale
        if self.l1_weight:
            penalty = penalty + self.l1_weight * m.abs().sum() * scale
        return penalty

    def regularization(self) -> torch.Tensor:
        """The NSL penalty on M (sec. 3.4) to add to the loss: l2·½‖M‖²_F + l1·‖M‖₁; for dynamic
        modes the mean over samples and positions of the last forward if it ran in training mode (0
        after an eval-mode forward); 0 when unused."""
        penalty = self._dynamic_penalty if self.dynamic else self._penalty(self.static_similarity(), False)
        return self.weight.new_zeros(()) if penalty is None else penalty

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, mode={self.mode!r}")
        if self.parametrization != "free":
            text += f", parametrization={self.parametrization!r}"
        if self.nonzeros_per_row is not None:
            text += f", nonzeros_per_row={self.nonzeros_per_row}"
        if self.shape_scores is not None:
            text += f", kernel_shape=True, shape_threshold={self.shape_threshold}"
        return text + (", bias=True" if self.bias is not None else "")


# ----------------------------------------------------------------------------------------------
# Entry points for backbones and trainers
# ----------------------------------------------------------------------------------------------

NSL_OPTIONS = tuple(name for name, p in inspect.signature(NSConv2d.__init__).parameters.items()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _check_options(nsl_options: dict) -> None:
    unknown = sorted(set(nsl_options) - set(NSL_OPTIONS))
    if unknown:
        raise ValueError(f"unknown nsl option(s) {', '.join(map(repr, unknown))}; expected some of "
                         f"{', '.join(NSL_OPTIONS)}")


def prepare_nsl_options(mode: str, nsl_options: dict | None) -> dict:
    """Options for all the layers of one network: a copy of `nsl_options` in which
    `shared_predictor=True` becomes one SharedSimilarityPredictor (for a dynamic `mode`), so every
    `make_conv(mode, ..., **options)` call of the network shares it. `shared_channels` (default 64)
    sets its adaptation width. Builders call this once, before their make_conv calls."""
    check_choice("nsl mode", mode, NSL_MODES)
    options = dict(nsl_options or {})
    shared_channels = options.pop("shared_channels", 64)
    _check_options(options)
    if options.get("shared_predictor") is True:
        if not mode.startswith("dynamic"):
            raise ValueError(f"shared_predictor applies to the dynamic modes; mode is {mode!r}")
        options["shared_predictor"] = SharedSimilarityPredictor(
            mode.endswith("dns"), channels=shared_channels, hidden=options.get("predictor_hidden"),
            kind=options.get("predictor", "sphere"))
    elif options.get("shared_predictor") is False:
        options.pop("shared_predictor")
    return options


def make_conv(mode: str, in_channels: int, out_channels: int, kernel_size=3, stride: int = 1,
              padding: int | str | None = None, bias: bool = False, **nsl_options) -> nn.Module:
    """The convolution a backbone uses for its 3×3 layers: a plain nn.Conv2d for mode "none" (the
    options' names are checked, their values ignored), an NSConv2d with `nsl_options` otherwise;
    `padding` default k // 2 (else as NSConv2d, or for mode "none" as nn.Conv2d takes it)."""
    check_choice("nsl mode", mode, NSL_MODES)
    _check_options(nsl_options)
    if mode == "none":
        if padding is None:                                          # k // 2 per side; else nn.Conv2d's own
            padding = tuple(k // 2 for k in torch.nn.modules.utils._pair(kernel_size))
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
    return NSConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias, mode=mode,
                    **nsl_options)


def nsl_layers(model: nn.Module) -> dict[str, NSConv2d]:
    """{qualified name: NSConv2d} in module order."""
    return {name: module for name, module in model.named_modules() if isinstance(module, NSConv2d)}


def nsl_regularization(model: nn.Module) -> torch.Tensor:
    """Σ of the NSL penalties of every NSConv2d (on M) and SphereConv2d (orthogonality; those of
    GlobalSimilarityAttention and the SphereNet-9 backbone) in `model`, to add to the training loss
    after the forward pass (0 when no layer has a penalty)."""
    total = None
    for module in model.modules():
        if isinstance(module, NSConv2d) or (isinstance(module, SphereConv2d) and module.orthogonality_weight):
            penalty = module.regularization()
            total = penalty if total is None else total + penalty
    if total is None:
        parameter = next(model.parameters(), None)
        return torch.zeros(()) if parameter is None else parameter.new_zeros(())
    return total


def similarity_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The static similarity parameters (M, or its symmetric / Cholesky factor; the global M_G^s of a
    GlobalSimilarityConv2d) and the kernel-shape scores D_r. The official code gives static M no weight
    decay (UNS: its own L2 instead, returned by `nsl_regularization`); weight decay would also drag D_r
    below the threshold. Put these in a parameter group with weight_decay=0. Predictor weights are
    ordinary weights (decay 5e-4 officially)."""
    params = []
    for layer in nsl_layers(model).values():
        if not layer.dynamic:
            params.append(layer.similarity)
        if layer.shape_scores is not None:
            params.append(layer.shape_scores)
    params += [m.similarity for m in model.modules() if isinstance(m, GlobalSimilarityConv2d)]
    return params


def undecayed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimiser should not weight-decay: `similarity_parameters(model)` and the
    kernels of SphereConv2d layers built with weight_decay=False (official SphereNet-9: the
    orthogonality penalty replaces L2 on its backbone convolutions)."""
    params = similarity_parameters(model)
    params += [m.weight for m in model.modules() if isinstance(m, SphereConv2d) and not m.weight_decay]
    return params


def similarity_only_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What "learn only M" trains (NSL sec. 4, training from a pretrained CNN): the static M (or its
    factor), the kernel-shape scores D_r and the dynamic predictors of every NSConv2d, each shared
    tensor once. Everything else (convolution kernels, BatchNorm γ/β, classifier) stays as loaded."""
    params, seen = [], set()
    for layer in nsl_layers(model).values():
        own = [layer.similarity] if not layer.dynamic else list(layer.predictor.parameters())
        if layer.shape_scores is not None:
            own.append(layer.shape_scores)
        for p in own:
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def train_only_similarity(model: nn.Module) -> list[nn.Parameter]:
    """Freeze every parameter of `model` except `similarity_only_parameters(model)` (requires_grad);
    returns those. A model without NSL layer is an error (there would be nothing to train)."""
    params = similarity_only_parameters(model)
    if not params:
        raise ValueError("train_only_similarity: the model has no NSL layer, so nothing would be trained; "
                         "build it with nsl='static_dns', 'static_uns', 'dynamic_dns' or 'dynamic_uns'")
    model.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    return params


def fold_static_nsl(model: nn.Module) -> nn.Module:
    """A deployment copy of `model` in which every static NSConv2d is replaced by the equal plain
    nn.Conv2d (NSL sec. 3.2: same parameters and speed as the CNN). Dynamic layers stay."""
    folded = copy.deepcopy(model)
    if isinstance(folded, NSConv2d):
        return folded if folded.dynamic else folded.to_conv2d()
    for name, module in list(folded.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, NSConv2d) and not child.dynamic:
                setattr(module, child_name, child.to_conv2d())
    return folded
