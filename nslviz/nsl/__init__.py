"""Neural Similarity Learning layers (NSL, Liu, Liu, Rehg & Song, NeurIPS 2019): the convolution
with a learned similarity WᵀMX and its helpers. The layers and their maths are in `conv`."""
from __future__ import annotations

from .conv import (BN_EPS, DNS_INITS, DYNAMIC_IMPLS, NSL_MODES, NSL_OPTIONS, OFFICIAL_UNS_L2, PARAMETRIZATIONS,
                   PREDICTORS, RECOMPUTE_TAPS, NSConv2d, SharedSimilarityPredictor, SimilarityPredictor, batch_norm2d,
                   dynamic_similarity_conv2d, fold_static_nsl, make_conv, nsl_layers, nsl_regularization,
                   prepare_nsl_options, similarity_only_parameters, similarity_parameters, train_only_similarity,
                   undecayed_parameters)
from .fast import choose_dynamic_impl
from .global_similarity import GlobalSimilarityAttention
from .sphere import (ANGLE_FUNCTIONS, NORM_EPS, SPHERE_NORMALIZATIONS, SphereConv2d, he_std, orthogonality_penalty,
                     sphere_conv2d)

__all__ = [
    "ANGLE_FUNCTIONS", "BN_EPS", "GlobalSimilarityAttention", "NSConv2d", "NSL_MODES", "NSL_OPTIONS",
    "PARAMETRIZATIONS", "PREDICTORS", "SharedSimilarityPredictor", "SimilarityPredictor", "SphereConv2d",
    "batch_norm2d", "choose_dynamic_impl", "dynamic_similarity_conv2d", "fold_static_nsl", "he_std", "make_conv", "nsl_layers",
    "nsl_regularization", "orthogonality_penalty", "prepare_nsl_options", "similarity_only_parameters",
    "similarity_parameters", "train_only_similarity", "undecayed_parameters",
    "sphere_conv2d",
]
