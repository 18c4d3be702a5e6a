"""Meta-Neighborhoods for tables with the dictionary in a learned feature space (MN eq. (1)-(3), sec. 2).

The image models of the paper split the network into a feature extractor µ_θ and a last layer f_φ,
keep the dictionary in the feature space and finetune only f_φ per input:

    z_i = µ_θ(x_i)                                                       (features, width d)
    φ_i = φ - α ∇_φ Σ_j ω(z_i, k_j) L(f_φ(k_j), v_j)                     MN eq. (1), (3)
    ŷ_i = f_{φ_i}(z_i),      L_meta = 1/B Σ_i L(ŷ_i, y_i)                MN eq. (2)

`MetaNeighborhoodsFeatureMLP` does this on tables: µ_θ is an MLP trunk (`layers - 1` Linear + ReLU
layers of `width` units) and f_φ is a linear last layer z ↦ W z + b, finetuned per input in closed form.
For a linear layer the inner gradient is a weighted sum of outer products,
∇_W L_i = Σ_j ω_ij δ_j k_jᵀ with δ_j = ∂L(f(k_j), v_j)/∂f(k_j), so the finetuned layer applied to z_i is

    W_i z_i + b_i = W z_i + b - Σ_j ω_ij (α_W k_j·z_i + α_b) δ_j          (one (B, S) matmul)

which is `nslviz.regression.MetaNeighborhoodsMLP` with one layer (its dictionary now holds features).
A batch costs O(B·S·(d + C)) on top of the trunk, and no per-input weight is ever formed.
Classification: soft dictionary values and cross-entropy (the official MN values softmax(10·V_raw));
regression: real-valued values and squared error.

Choice: the image models' cosine classifier (`nslviz.neighborhoods.MetaNeighborhoodsHead`) needs the
per-input weights (B, C, d) for its row normalisation. Measured in one run (batch 128, 64 inputs, trunk
2 x 128, 10 classes, S = 128, one thread; benchmarks/bench_feature_heads.py), a training step with it
costs about 8.5x the plain MLP's, and with the linear last layer 2.0x: the cosine head is 4.3x the
linear one, so the estimators use the linear last layer (docs/estimators.md).

Deviation: the trunk ends with a ReLU, so the features are >= 0. The paper (sec. 2.3) removes µ_θ's last
non-linearity so that the features are roughly Gaussian, like the keys' Gaussian init. With the cosine
attention only the keys' directions count, and on the estimators' validation splits the paper's trunk
(`feature_relu=False`) scored lower on 6 of the 8 tables and higher on 1 (docs/estimators-selection.md,
round 19), so the ReLU stays the default.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ._checks import check_choice, check_features, check_flags, check_positive
from .regression import MLP, MetaNeighborhoodsMLP

FEATURE_LOSSES = ("cross_entropy", "mse")


class MetaNeighborhoodsFeatureMLP(nn.Module):
    """An MLP trunk µ_θ and a per-input finetuned linear last layer f_φ on a feature-space dictionary,
    MN eq. (1)-(3) with z_i = µ_θ(x_i).

    Args:
        input_dim, output_dim: d_in and C (classes for "cross_entropy", targets for "mse").
        layers: Linear layers in all (>= 2): `layers - 1` in the trunk, the last one is f_φ.
        width: units of every trunk layer, the feature width d.
        entries: S.   temperature, similarity: the attention ω (NeighborAttention).
        loss: "cross_entropy" (soft values) or "mse" (real-valued values).
        step_size_init: initial |α_W| and |α_b| of the inner step (learned).
        key_init_std: keys ~ N(0, key_init_std²) (only their direction counts for cosine similarity).
        feature_relu: end the trunk with a ReLU (default); False is the paper's µ_θ without its last
            non-linearity (sec. 2.3).
    """

    def __init__(self, input_dim: int, output_dim: int, layers: int = 3, width: int = 128,
                 entries: int = 128, *, temperature: float = 0.1, similarity: str = "cosine",
                 loss: str = "cross_entropy", step_size_init: float = 0.05, key_init_std: float = 0.01,
                 feature_relu: bool = True):
        super().__init__()
        check_positive("layers", layers, integer=True, minimum=2)
        check_choice("loss", loss, FEATURE_LOSSES)
        check_flags(feature_relu=feature_relu)
        self.loss = loss
        # the trunk: `layers - 1` Linear layers of `width` units, each followed by a ReLU (the last one
        # only with feature_relu)
        self.trunk = nn.Sequential(MLP(input_dim, width, layers - 1, width), *([nn.ReLU()] if feature_relu else []))
        self.head = MetaNeighborhoodsMLP(width, output_dim, layers=1, entries=entries, similarity=similarity,
                                         temperature=temperature, loss=loss, step_size_init=step_size_init,
                                         key_init_std=key_init_std)

    @property
    def input_dim(self) -> int:
        return self.trunk[0].input_dim

    @property
    def dictionary(self):
        return self.head.dictionary

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, d_in) -> outputs of the per-input finetuned last layer, (B, C)."""
        check_features("inputs", inputs, self.input_dim, dtype=self.head.dictionary.keys.dtype)
        return self.head(self.trunk(inputs))                                    # features (B, width)

    def check_memory(self, batch: int) -> None:
        """Refuse (TooLargeForMemory) batches of `batch` inputs whose attention and per-input finetuning
        would not fit on the model's device (the trunk's activations are small beside them)."""
        self.head.check_memory(batch)

    @torch.no_grad()
    def initialize_from_examples(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Start the dictionary at S training rows: k_j = µ_θ(x_j) (S, width) under the current trunk,
        v_j = y_j (S, C) for "mse", class indices (S,) for "cross_entropy"."""
        self.head.initialize_from_examples(self.trunk(inputs), targets)

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        """The dictionary and the step sizes: not decayed (official MN "memory" scope)."""
        return self.head.no_weight_decay_parameters()
