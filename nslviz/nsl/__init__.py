"""Neural Similarity Learning layers (NSL, Liu, Liu, Rehg & Song, NeurIPS 2019): the convolution
with a learned similarity WᵀMX and its helpers. The layers and their maths are in `conv`."""
from __future__ import annotations

from .conv import (ANGLE_FUNCTIONS, BN_EPS, DNS_INITS, DYNAMIC_IMPLS, NORM_EPS, NSL_MODES, NSL_OPTIONS,
                   OFFICIAL_UNS_L2, PARAMETRIZATIONS, PREDICTORS, RECOMPUTE_TAPS, SPHERE_NORMALIZATIONS,
                   GlobalSimilarityAttention, NSConv2d, SharedSimilarityPredictor, SimilarityPredictor, SphereConv2d,
                   batch_norm2d, choose_dynamic_impl, dynamic_similarity_conv2d, fold_static_nsl, he_std, make_conv,
                   nsl_layers, nsl_regularization, orthogonality_penalty, prepare_nsl_options,
                   similarity_only_parameters, similarity_parameters, sphere_conv2d, train_only_similarity,
                   undecayed_parameters)

__all__ = [
    "ANGLE_FUNCTIONS", "BN_EPS", "GlobalSimilarityAttention", "NSConv2d", "NSL_MODES", "NSL_OPTIONS",
    "PARAMETRIZATIONS", "PREDICTORS", "SharedSimilarityPredictor", "SimilarityPredictor", "SphereConv2d",
    "batch_norm2d", "choose_dynamic_impl", "dynamic_similarity_conv2d", "fold_static_nsl", "he_std", "make_conv", "nsl_layers",
    "nsl_regularization", "orthogonality_penalty", "prepare_nsl_options", "similarity_only_parameters",
    "similarity_parameters", "train_only_similarity", "undecayed_parameters",
    "sphere_conv2d",
]
