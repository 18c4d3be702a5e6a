"""Neural Similarity Learning layers: NSL eq. (1)-(5) and Appendix B (Liu, Liu, Rehg & Song, NeurIPS 2019).

A convolution scores every k×k×C input patch X against every kernel W with the inner product WᵀX.
NSL replaces it with a bilinear similarity WᵀMX (eq. 1) where M is block-diagonal with one shared
K×K block M_s per layer, K = k² kernel taps (eq. 2). Written per output position p:

    out(b, f, p) = Σ_c Σ_{s,t} W[f, c, s] · M_st · X(b, c, p + o_t)                       (eq. 1-2)

s indexes the tap of the kernel W, t the tap of the input patch and o_t its offset. Shapes below:
B batch, C input channels, F filters, K = k·k taps, H'×W' = L output positions.

Modes (`NSL_MODES`; "none" is a plain nn.Conv2d):
    static_dns   M_s = diag(m): one learned k×k spatial mask per layer            (sec. 3.1-3.2)
    static_uns   M_s: one learned, unconstrained K×K matrix per layer
    dynamic_dns  m(b, p) = 1 + predictor(X)(b, p): one mask per sample and position (sec. 3.3)
    dynamic_uns  M(b, p) = I + predictor(X)(b, p)
Options of every mode: `kernel_shape=True` learns M = D·R with a binary diagonal D (eq. 4-5);
`parametrization` "symmetric" or "psd" (M = LLᵀ through a Cholesky factor, sec. 3.4);
`nonzeros_per_row=k` keeps k entries in each row of a UNS matrix (hard sparsity; k = 1, a shift per tap);
dynamic modes: `predictor` (its kind), `predictor_hidden`, `predictor_gain_init`, `shared_predictor`,
and the ablations `predictor_identity=False` (M = predictor(X), no identity residual) and
`predictor_output_norm=False` (no BatchNorm on the predictor's output);
`l2_weight` / `l1_weight` penalties, returned by `NSConv2d.regularization()` for the trainer to add.

Static similarity folds into an ordinary kernel W_eff[f, c, t] = Σ_s W[f, c, s] M_st (the paper's
MᵀW): `NSConv2d.to_conv2d()` and `fold_static_nsl(model)` give the deployable plain network.

Deviations from the official code (wy1iu/NSL; docs/official-code.md §B and §C), on purpose:
* Static DNS starts at all ones (M = I: the network starts as the plain one; the paper starts static
  M at the identity where it says, on a pretrained backbone, sec. 7.2, and gives no start for CIFAR). The official code
  reshapes the 3×3 identity, [1,0,0, 0,1,0, 0,0,1], which switches six taps off at the start;
  it is available as `dns_init="official"`.
* BatchNorm in the predictor (and in nslviz.models.cnn) uses the official eps = 1e-3 but PyTorch's
  momentum 0.1 instead of the official EMA decay 0.999 (momentum 0.001): with 0.001 the running
  statistics are still near their initial values after the few hundred steps of a CPU run.
* Kernel shape (eq. 4-5) is not in the official code and the paper gives no threshold α. Here the
  scores D_r start at 1.0 and α = 0.5 (`shape_init`, `shape_threshold`): a tap is switched off
  once the accumulated straight-through gradient has pushed its score down by half its initial
  value, the amount by which a static DNS mask entry would have shrunk in the same time. The static
  M gets no weight decay in the official code, and neither does D_r here: see `similarity_parameters`.
* The CNN predictor, the shared predictor, the symmetric / PSD parametrisations and the hard
  sparsity of M are described in the paper only (Tables 1 and 3, sec. 3.4), and the linear
  predictor M = I + W′X + b′ only as sec. 6's example of a higher-order layer; their construction
  here is ours (see the classes).
* The UNS predictor adds I₉ as the official code does (the paper says it does not).
* `predictor_gain_init` (default 1, as officially) is ours: at 0 the predictor's output BatchNorm
  starts with γ = 0, so M = I exactly and the dynamic network starts as the plain one
  (SimilarityPredictor's docstring; docs/not-reproduced.md measures it on the generated gratings).
* `predictor_identity` and `predictor_output_norm` (default True, as officially) are ours: they take
  out the identity residual of sec. 3.3.1 and the output normalisation of sec. 7.1, the two things
  the paper says dynamic NSN needs to converge.
* L2 on the static UNS matrix keeps the official 5e-3 · ½‖M‖²_F (pulling M toward 0, not I) as
  the default of `l2_weight` for static_uns; every other penalty defaults to 0.

The package, one concept per file:
    conv.py               NSConv2d, dynamic_similarity_conv2d, make_conv / prepare_nsl_options, the
                          parameter-group helpers, nsl_regularization, fold_static_nsl
    predictor.py          the similarity predictor of the dynamic modes (and its shared variant)
    sphere.py             SphereConv (the predictor's convolution; sphere_similarity: it as dynamic NSL,
                          sec. 6), he_std, orthogonality_penalty
    global_similarity.py  global neural similarity (Appendix B): static GlobalSimilarityConv2d (eq. 8-9)
                          and dynamic GlobalSimilarityAttention (self-attention, eq. 10-11)
    fast.py               the tap-looping autograd Functions of the dynamic path (CPU speed and memory)
"""
from __future__ import annotations

from .conv import (DNS_INITS, DYNAMIC_IMPLS, NSL_MODES, NSL_OPTIONS, OFFICIAL_UNS_L2, PARAMETRIZATIONS, RECOMPUTE_TAPS,
                   NSConv2d, dynamic_similarity_conv2d, fold_static_nsl, make_conv, nsl_layers, nsl_regularization,
                   prepare_nsl_options, similarity_only_parameters, similarity_parameters, train_only_similarity,
                   undecayed_parameters)
from .fast import choose_dynamic_impl
from .global_similarity import GNS_STRUCTURES, GlobalSimilarityAttention, GlobalSimilarityConv2d
from .predictor import BN_EPS, PREDICTORS, SharedSimilarityPredictor, SimilarityPredictor, batch_norm2d
from .sphere import (ANGLE_FUNCTIONS, NORM_EPS, SPHERE_NORMALIZATIONS, SphereConv2d, he_std, orthogonality_penalty,
                     sphere_conv2d, sphere_similarity)

__all__ = [
    "ANGLE_FUNCTIONS", "BN_EPS", "GNS_STRUCTURES", "GlobalSimilarityAttention", "GlobalSimilarityConv2d", "NSConv2d", "NSL_MODES", "NSL_OPTIONS",
    "PARAMETRIZATIONS", "PREDICTORS", "SharedSimilarityPredictor", "SimilarityPredictor", "SphereConv2d",
    "batch_norm2d", "choose_dynamic_impl", "dynamic_similarity_conv2d", "fold_static_nsl", "he_std", "make_conv", "nsl_layers",
    "nsl_regularization", "orthogonality_penalty", "prepare_nsl_options", "similarity_only_parameters",
    "similarity_parameters", "train_only_similarity", "undecayed_parameters",
    "sphere_conv2d", "sphere_similarity",
]
