"""Meta-Neighborhoods for tables: an MLP f_φ finetuned per input on induced neighbors that live in
the input space (MN sec. 4.3 and Appendix B), and the vanilla MLP it is compared with.

For regression the paper drops the feature extractor (µ_θ = identity): the dictionary keys k_j are
points of the (standardised) input space, the values v_j are targets, and for every input x_i the
whole network f_φ takes one step on the attention-weighted dictionary loss before predicting:

    φ_i = φ - α ∇_φ Σ_j ω(x_i, k_j) L(f_φ(k_j), v_j)                   MN eq. (1) with z_i = x_i
    ŷ_i = f_{φ_i}(x_i),     L_meta = 1/B Σ_i L(ŷ_i, y_i)                 MN eq. (2)

`MetaNeighborhoodsMLP` computes this exactly (second order) without ever forming the per-input
parameters φ_i. For a linear layer z = W a + b, the inner gradient is a weighted sum of outer
products, ∇_W L_i = Σ_j ω_ij δ_j a_jᵀ (δ_j = ∂L(f(k_j), v_j)/∂z at entry j, a_j the layer's input
at entry j), so the finetuned layer applied to the input's own activation a_i is

    W_i a_i + b_i = W a_i + b - Σ_j ω_ij (α_W a_jᵀ a_i + α_b) δ_j        (one (B, S) matmul per layer)

and the next layer sees the finetuned activation. This costs O(B·S·(d_in + d_out)) per layer instead
of the O(B·S·d_in·d_out) of materialising every φ_i (torch.func: `FunctionalMetaNeighborhoods`,
which it matches to float precision in values and in every gradient, see tests/test_regression.py).

Deviations and choices (the paper's regression code was never released, docs/official-code.md §A.1):
  * every parameter of f_φ is finetuned, one inner step, one learned step size α per parameter
    tensor (|α|, init `step_size_init` = 0.01, chosen by validation loss on diabetes; the official
    classification code starts at 0.05); the official classification code finetunes only the last
    layer, the regression paragraph says f_φ is finetuned;
  * keys ~ N(0, key_init_std²) with key_init_std = 0.01 (the paper's "N(0, 0.01)"); values
    U(min y, max y) of the standardised training targets (`values_in_target_range`);
  * cosine similarity and T = 0.1 (Appendix B); ReLU MLPs, `layers` counts the Linear layers.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import check_choice, check_features, check_finite, check_flags, check_positive
from ._memory import FLOAT_BYTES, check_memory
from .neighborhoods import LOSSES, InducedDictionary, check_values_and_loss, entry_loss_logit_gradient
from .similarity import SIMILARITIES, NeighborAttention


class MLP(nn.Sequential):
    """The vanilla network of MN Table 2: `layers` Linear layers, `layers - 1` hidden layers of
    `width` ReLU units (layers = 1 is a linear model). No normalisation layers, so it can be
    finetuned per input."""

    def __init__(self, input_dim: int, output_dim: int, layers: int = 2, width: int = 64):
        check_positive("input_dim", input_dim, integer=True, minimum=1)
        check_positive("output_dim", output_dim, integer=True, minimum=1)
        check_positive("layers", layers, integer=True, minimum=1)
        check_positive("width", width, integer=True, minimum=1)
        dims = [input_dim] + [width] * (layers - 1) + [output_dim]
        weights = sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(dims[:-1], dims[1:]))
        check_memory(f"an MLP of {layers} layers of width {width}",          # with its gradient and Adam's moments
                     {"weights": 4 * weights * FLOAT_BYTES}, "use a smaller width")
        modules: list[nn.Module] = []
        for index, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            modules.append(nn.Linear(fan_in, fan_out))
            if index < layers - 1:
                modules.append(nn.ReLU())
        super().__init__(*modules)
        self.input_dim, self.output_dim, self.layers, self.width = input_dim, output_dim, layers, width

    @property
    def linears(self) -> list[nn.Linear]:
        return [m for m in self if isinstance(m, nn.Linear)]

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        return []

    def extra_repr(self) -> str:
        return f"layers={self.layers}, width={self.width}"


def values_in_target_range(entries: int, targets: torch.Tensor, generator: torch.Generator | None = None
                           ) -> torch.Tensor:
    """Initial dictionary values v_j ~ U(min y, max y), per target column (MN Appendix B): (S, C)."""
    check_positive("entries", entries, integer=True, minimum=1)
    if targets.shape[0] == 0:
        raise ValueError("values_in_target_range needs at least one target, got an empty tensor")
    check_finite("targets", targets)
    targets = targets.reshape(targets.shape[0], -1).float()
    low, high = targets.min(dim=0).values, targets.max(dim=0).values          # (C,)
    return low + (high - low) * torch.rand(entries, targets.shape[1], generator=generator)


def mlp_memory(batch: int, input_dim: int, output_dim: int, layers: int, width: int, entries: int) -> dict[str, float]:
    """Bytes of the large float32 tensors of `MetaNeighborhoodsMLP` on a batch of B inputs (B = 0: the
    parameters alone), for `_memory.check_memory`: the dictionary S·(d + C) with its gradient and
    Adam's two moments (x4); f_φ on the S entries, every layer's input, pre-activation and signal δ
    (3 x S·(d + hidden + C)); the attention (B, S) with its similarities and, per layer, the overlaps
    a_i·a_j and the coefficients ω_ij(α_W a_i·a_j + α_b) ((2 + 2·layers) x B·S)."""
    s, hidden = entries, (layers - 1) * width
    return {"dictionary": 4 * s * (input_dim + output_dim) * FLOAT_BYTES,
            "entry activations": 3 * s * (input_dim + hidden + output_dim) * FLOAT_BYTES,
            "attention": (2 + 2 * layers) * batch * s * FLOAT_BYTES}


class MetaNeighborhoodsMLP(nn.Module):
    """MLP f_φ finetuned per input on an input-space dictionary, MN eq. (1)-(2), exact and batched.

    Args:
        input_dim, output_dim: d and C (C = number of targets, or of classes with cross-entropy).
        layers, width: the MLP (see `MLP`).
        entries: S.   similarity / temperature / learn_temperature / entry_dropout: see NeighborAttention.
        loss: "mse" (regression, values "regression") or "cross_entropy" (classification, values "soft").
        values: dictionary values, default "regression" for mse and "soft" for cross-entropy.
        step_size_init: initial |α| of every parameter tensor.   learn_step_size: learn α (default).
        first_order: drop the terms through φ inside the inner gradient (the dictionary, the
            attention and α still receive meta-gradients).
        key_init_std: keys ~ N(0, key_init_std²) unless `initial_keys` is given.
        initial_values: (S, C) initial values for "regression" values (see `values_in_target_range`).
    """

    def __init__(self, input_dim: int, output_dim: int, layers: int = 2, width: int = 64,
                 entries: int = 1000, *, similarity: str = "cosine", temperature: float = 0.1,
                 learn_temperature: bool = False, entry_dropout: float = 0.0, loss: str = "mse",
                 values: str | None = None, step_size_init: float = 0.01, learn_step_size: bool = True,
                 first_order: bool = False, key_init_std: float = 0.01,
                 initial_keys: torch.Tensor | None = None, initial_values: torch.Tensor | None = None):
        super().__init__()
        check_choice("loss", loss, LOSSES)
        check_choice("similarity", similarity, SIMILARITIES)
        check_positive("entries S", entries, integer=True, minimum=1)
        check_positive("step_size_init", step_size_init)
        if loss == "binary_cross_entropy":
            raise ValueError("MetaNeighborhoodsMLP supports loss 'mse' or 'cross_entropy' (use 2 outputs for "
                             "a binary problem), got 'binary_cross_entropy'")
        values = values or ("regression" if loss == "mse" else "soft")
        check_values_and_loss(values, loss, output_dim)
        check_flags(learn_step_size=learn_step_size, first_order=first_order, learn_temperature=learn_temperature)
        self.sizes = {"input_dim": input_dim, "output_dim": output_dim, "layers": layers, "width": width,
                      "entries": entries}
        check_memory(self._describe(), mlp_memory(0, **self.sizes), "use fewer entries S")
        self.loss, self.first_order = loss, first_order
        self.network = MLP(input_dim, output_dim, layers, width)
        self.dictionary = InducedDictionary(entries, input_dim, output_dim, values, key_init_std=key_init_std,
                                            initial_keys=initial_keys, initial_values=initial_values)
        self.attention = NeighborAttention(similarity, temperature, learn_temperature=learn_temperature,
                                           entry_dropout=entry_dropout)
        # one |α| per parameter tensor, named as in FunctionalMetaNeighborhoods ("0__weight", ...)
        self.inner_step_sizes = nn.ParameterDict({
            name.replace(".", "__"): nn.Parameter(torch.tensor(float(step_size_init)), requires_grad=learn_step_size)
            for name, _ in self.network.named_parameters()})

    @property
    def input_dim(self) -> int:
        return self.network.input_dim

    def _describe(self) -> str:
        layers, outputs = self.sizes["layers"], self.sizes["output_dim"]   # one layer: no width used
        what = f"MetaNeighborhoodsMLP of {layers} layers of width {self.sizes['width']}" if layers > 1 else \
            "MN's finetuned linear layer (a feature-space model's head)"
        return (f"{what} with {self.sizes['entries']} entries ({self.sizes['input_dim']} features, {outputs} "
                f"output{'s' if outputs != 1 else ''})")

    def check_memory(self, batch: int) -> None:
        """Refuse (TooLargeForMemory) batches of `batch` inputs that would not fit on the model's device."""
        check_memory(f"{self._describe()} on batches of {batch}", mlp_memory(batch, **self.sizes),
                     "use fewer entries S or a smaller batch", self.dictionary.keys.device)

    def _layer_step_sizes(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        names = [name for name, m in self.network.named_children() if isinstance(m, nn.Linear)]
        return [(self.inner_step_sizes[f"{n}__weight"].abs(), self.inner_step_sizes[f"{n}__bias"].abs())
                for n in names]

    def entry_signals(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """f_φ on the S entries: the input of every Linear layer a_l (S, d_l) and the back-propagated
        inner-loss signal at its output δ_l = ∂L(f(k_j), v_j)/∂z_l (S, d_{l+1}), in closed form."""
        linears = self.network.linears
        weights = [(m.weight.detach(), m.bias.detach()) if self.first_order else (m.weight, m.bias)
                   for m in linears]
        inputs, pre_activations = [], []
        hidden = self.dictionary.keys                                             # (S, d)
        for index, (weight, bias) in enumerate(weights):
            inputs.append(hidden)
            z = F.linear(hidden, weight, bias)                                    # (S, d_{l+1})
            pre_activations.append(z)
            hidden = z.relu() if index < len(weights) - 1 else z
        delta = entry_loss_logit_gradient(hidden, self.dictionary.values, self.loss)   # (S, C)
        signals = [delta]
        for index in range(len(weights) - 1, 0, -1):                              # back through ReLU layers
            delta = (delta @ weights[index][0]) * (pre_activations[index - 1] > 0)
            signals.insert(0, delta)
        return inputs, signals

    def forward(self, inputs: torch.Tensor, *, return_details: bool = False):
        """Outputs of the per-input finetuned network f_{φ_i}(x_i), (B, C)."""
        check_features("inputs", inputs, self.input_dim, dtype=self.dictionary.keys.dtype)
        dots = inputs @ self.dictionary.keys.T                                    # (B, S) x_i · k_j
        attention = self.attention(inputs, self.dictionary.keys, dots=dots)       # (B, S)
        entry_inputs, entry_signals = self.entry_signals()
        linears = self.network.linears
        hidden = inputs
        for index, (layer, (step_w, step_b)) in enumerate(zip(linears, self._layer_step_sizes())):
            # (B, S) a_i · a_j; the first layer's inputs are x_i and k_j, whose products the attention used
            overlap = dots if index == 0 else hidden @ entry_inputs[index].T
            coefficients = attention * torch.addcmul(step_b, step_w, overlap)     # (B, S) ω_ij (α_W a_i·a_j + α_b)
            z = torch.addmm(layer(hidden), coefficients, entry_signals[index], alpha=-1)   # (B, d_{l+1})
            hidden = z.relu() if index < len(linears) - 1 else z
        if not return_details:
            return hidden
        return {"outputs": hidden, "attention": attention, "base_outputs": self.network(inputs)}

    def initialize_from_examples(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Start the dictionary at S training rows: k_j = x_j (S, d), v_j = y_j (S, C) for "mse",
        class indices (S,) for "cross_entropy"; see `InducedDictionary.start_at_examples`."""
        self.dictionary.start_at_examples(inputs, targets, directions_only=False)     # f_φ reads the keys' length

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        """The dictionary, the step sizes and the temperature: not decayed (official MN "memory" scope)."""
        return [p for name, p in self.named_parameters() if not name.startswith("network.")]

    def extra_repr(self) -> str:
        return f"loss={self.loss!r}, first_order={self.first_order}"
