"""Induced neighbors and per-input finetuning, MN eq. (1)-(3).

A parametric model f_φ is finetuned, separately for every input x_i, on a learned dictionary of
"induced neighbors" {(k_j, v_j)}, each entry's loss weighted by its attention ω(x_i, k_j):

    φ_i = φ - α ∇_φ Σ_j ω(x_i, k_j) L(f_φ(k_j), v_j)                    (1), (3) with z_i = µ_θ(x_i)
    L_meta = 1/B Σ_i L(f_{φ_i}(z_i), y_i)                                (2)

Two ways to compute the per-input finetuning, both exact and differentiable (second order):

* `MetaNeighborhoodsHead`: f_φ is a cosine or dot-product classifier (the paper's image models).
  The inner gradient has a closed form, so the whole batch is one einsum: with
  δ_j = ∂L/∂f(k_j) (for softmax cross-entropy δ_j = softmax(f(k_j)) - v_j),
      ∇_W L_i = Σ_j ω_ij δ_j k_jᵀ        (dot)      -> einsum("bs,bsc,sd->bcd")
  and for the cosine classifier the same with k̂_j, scaled by τ and mapped through the row
  normalisation ŵ_c = w_c / ‖w_c‖.
* `FunctionalMetaNeighborhoods`: any small f_φ (an MLP for regression), per-example gradients
  with torch.func (`vmap(grad(...))`).

Both match a plain per-example autograd loop to 1e-5 in values and in every gradient (tests).

Deviations from the paper, as in the official code (docs/official-code.md §A.2-§A.4): entry keys are
N(0, 0.05²) as coded (the paper says 0.01); soft values are softmax(10 · V_raw) as coded. `first_order=True`
drops only the terms through φ inside the inner gradient (its Hessian); the paths through the
dictionary, the attention and the step size are kept, so the dictionary still learns.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from ._checks import (check_choice, check_features, check_finite, check_flags, check_fraction, check_positive,
                      is_number)
from ._memory import FLOAT_BYTES, check_memory
from ._modes import eval_mode
from ._precision import autocast_off
from .similarity import SIMILARITIES, NeighborAttention

CLASS_VALUE_KINDS = ("soft", "fixed")                 # the values of a classifier's dictionary
VALUE_KINDS = CLASS_VALUE_KINDS + ("regression",)
CLASSIFIERS = ("cosine", "dot")
LOSSES = ("cross_entropy", "binary_cross_entropy", "mse")
STEP_SIZES = ("scalar", "diagonal")


def check_values_and_loss(values: str, loss: str, outputs: int, outputs_name: str = "output_dim") -> None:
    """The combinations of dictionary values, inner loss and output count that can learn."""
    if values == "soft" and outputs == 1:
        raise ValueError(f"values='soft' needs {outputs_name} >= 2 (a softmax over one output is always 1); use "
                         f"{outputs_name}=2 for two classes, values='fixed' with loss='binary_cross_entropy' for "
                         f"0/1 labels in one output, or values='regression' with loss='mse' for a real target")
    if values == "regression" and loss != "mse":
        raise ValueError(f"values='regression' (real-valued targets) needs loss='mse', got loss={loss!r}")
    if loss == "cross_entropy" and outputs == 1:
        raise ValueError(f"loss='cross_entropy' needs {outputs_name} >= 2 (over one output it is always 0 and "
                         f"nothing learns); use {outputs_name}=2 for two classes")


# ----------------------------------------------------------------------------------------------
# losses of f on dictionary entries: value per entry and its gradient w.r.t. the logits
# ----------------------------------------------------------------------------------------------

def _check_widths(logits: torch.Tensor, targets: torch.Tensor, loss: str) -> None:
    """One value per output (binary cross-entropy also takes one 0/1 target for every output)."""
    if loss != "binary_cross_entropy" and logits.shape[-1] != targets.shape[-1]:
        raise ValueError(f"the model gives {logits.shape[-1]} output(s) but the dictionary values have "
                         f"{targets.shape[-1]}: output_dim must be the model's output width")


def entry_loss(logits: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    """L(f(k_j), v_j) for every entry: (..., C) logits and (..., C) targets -> (...)."""
    _check_widths(logits, targets, loss)
    if loss == "cross_entropy":       # soft-label cross-entropy, targets are distributions
        return -(targets * logits.log_softmax(dim=-1)).sum(-1)
    if loss == "binary_cross_entropy":
        return F.binary_cross_entropy_with_logits(logits, targets.expand_as(logits),
                                                  reduction="none").sum(-1)
    if loss == "mse":
        return (logits - targets).pow(2).mean(-1)
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")


def entry_loss_logit_gradient(logits: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    """δ = ∂L(f(k_j), v_j)/∂f(k_j), same shape as `logits` (closed form of `entry_loss`'s gradient)."""
    _check_widths(logits, targets, loss)
    if loss == "cross_entropy":
        return logits.softmax(dim=-1) * targets.sum(-1, keepdim=True) - targets
    if loss == "binary_cross_entropy":
        return torch.sigmoid(logits) - targets
    if loss == "mse":
        return 2.0 * (logits - targets) / logits.shape[-1]
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")


# ----------------------------------------------------------------------------------------------
# the dictionary
# ----------------------------------------------------------------------------------------------

def class_block_labels(entries: int, classes: int) -> torch.Tensor:
    """Class of each entry when classes are assigned in contiguous, (almost) equal blocks: (S,)."""
    return torch.arange(entries) * classes // entries


def starting_examples(count: int, entries: int, generator: torch.Generator) -> torch.Tensor:
    """Indices (S,) of the `entries` examples, of `count`, that a dictionary starts at
    (`InducedDictionary.start_at_examples`): distinct, drawn with replacement only when S > count."""
    check_positive("count", count, integer=True, minimum=1)
    check_positive("entries", entries, integer=True, minimum=1)
    if entries <= count:
        return torch.randperm(count, generator=generator)[:entries]
    return torch.randint(count, (entries,), generator=generator)


class InducedDictionary(nn.Module):
    """The dictionary M = {(k_j, v_j)}_{j=1..S} of induced neighbors (MN sec. 2.1, Fig. 2).

    values:
      "soft"        learnable class distributions v_j = softmax(value_scale · V_raw_j); V_raw ~ N(0, 0.01²)
                    (deviation: not truncated at ±2σ as the official TF truncated normal is; about 4.5 %
                    of the entries lie beyond ±0.02, which moves v_j by under 0.5 % at value_scale 10)
      "fixed"       fixed targets: one-hot classes in contiguous blocks (value_dim >= 2), 0/1 labels in two
                    blocks (value_dim == 1, binary), or the `fixed_values` given
      "regression"  learnable real-valued targets (initial_values, default U(-1, 1))
    """

    def __init__(self, entries: int, key_dim: int, value_dim: int, values: str = "soft", *,
                 key_init_std: float = 0.05, value_scale: float = 10.0,
                 initial_keys: torch.Tensor | None = None, fixed_values: torch.Tensor | None = None,
                 initial_values: torch.Tensor | None = None):
        super().__init__()
        check_positive("entries S", entries, integer=True, minimum=1)
        check_positive("key_dim", key_dim, integer=True, minimum=1)
        check_positive("value_dim", value_dim, integer=True, minimum=1)
        check_choice("values", values, VALUE_KINDS)
        self.value_kind = values
        check_positive("key_init_std", key_init_std)
        check_positive("value_scale", value_scale)
        if values == "soft" and value_dim == 1:
            raise ValueError("values='soft' needs value_dim >= 2 (a softmax over one output is always 1); use "
                             "value_dim=2 for two classes, or values='fixed' for 0/1 labels")
        self.key_init_std = float(key_init_std)
        for name, tensor, kind in (("fixed_values", fixed_values, "fixed"), ("initial_values", initial_values, "regression")):
            if tensor is not None and values != kind:                    # it would be dropped without a word
                raise ValueError(f"{name} is read only with values={kind!r}; got values={values!r}")

        def given(name: str, tensor, width: int) -> torch.Tensor:
            tensor = torch.as_tensor(tensor)                                     # numpy arrays too
            if tuple(tensor.shape) != (entries, width):
                raise ValueError(f"expected {name} of shape ({entries}, {width}), got {tuple(tensor.shape)}")
            check_finite(name, tensor)
            return tensor

        if initial_keys is None:
            initial_keys = torch.randn(entries, key_dim) * key_init_std
        else:
            initial_keys = given("initial_keys", initial_keys, key_dim)
        dtype = torch.get_default_dtype()                                        # as every other parameter
        self.keys = nn.Parameter(initial_keys.detach().clone().to(dtype))         # (S, d)

        if values == "soft":
            # N(0, 0.01²): trunc_normal_'s bounds are absolute (±2, i.e. ±200σ here), so nothing is
            # truncated (TF's truncated normal would cut at ±2σ; docs/official-code.md)
            self.value_logits = nn.Parameter(nn.init.trunc_normal_(torch.empty(entries, value_dim), std=0.01, a=-2.0, b=2.0))
            self.register_buffer("value_scale", torch.tensor(float(value_scale)))
        elif values == "fixed":
            if fixed_values is None:
                if value_dim == 1:
                    fixed_values = class_block_labels(entries, 2).float()[:, None]
                else:
                    fixed_values = F.one_hot(class_block_labels(entries, value_dim), value_dim).float()
            fixed_values = given("fixed_values", fixed_values, value_dim)
            self.register_buffer("fixed_values", fixed_values.detach().clone().to(dtype))
        else:
            if initial_values is None:
                initial_values = torch.rand(entries, value_dim) * 2 - 1
            initial_values = given("initial_values", initial_values, value_dim)
            self.regression_values = nn.Parameter(initial_values.detach().clone().to(dtype))

    @property
    def entries(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def set_entries(self, keys: torch.Tensor, targets: torch.Tensor, *, confidence: float = 0.9) -> None:
        """Overwrite every entry with given keys (S, d) and targets: class indices (S,) for "soft" and
        "fixed" values (soft values start with probability `confidence` on the class), real targets
        (S,) or (S, value_dim) for "regression" values."""
        entries, key_dim = self.keys.shape
        if tuple(keys.shape) != (entries, key_dim):
            raise ValueError(f"expected keys of shape ({entries}, {key_dim}), got {tuple(keys.shape)}")
        check_finite("keys", keys)
        if self.value_kind == "regression":
            if targets.shape[:1] != (entries,) or targets.numel() != self.regression_values.numel():
                raise ValueError(f"expected targets of shape {tuple(self.regression_values.shape)}, got {tuple(targets.shape)}")
            targets = targets.reshape(self.regression_values.shape)
            check_finite("targets", targets)
            self.regression_values.copy_(targets)
        else:
            classes = self.value_logits.shape[1] if self.value_kind == "soft" else self.fixed_values.shape[1]
            classes = max(classes, 2)                                   # value_dim 1: binary 0/1 labels
            if tuple(targets.shape) != (entries,) or targets.dtype.is_floating_point or targets.dtype == torch.bool:
                raise ValueError(f"expected integer class labels of shape ({entries},), got {targets.dtype} "
                                 f"of shape {tuple(targets.shape)}")
            if len(targets) and (targets.min() < 0 or targets.max() >= classes):
                raise ValueError(f"class labels must lie in [0, {classes - 1}], got [{int(targets.min())}, "
                                 f"{int(targets.max())}]")
            if self.value_kind == "fixed":
                targets = targets.to(self.fixed_values.device)
                fixed = targets.float()[:, None] if self.fixed_values.shape[1] == 1 else F.one_hot(targets, classes).float()
                self.fixed_values.copy_(fixed)
            else:
                if classes != self.value_logits.shape[1]:
                    raise ValueError("soft values need value_dim >= 2 to start from class labels")
                if not (is_number(confidence) and 1.0 / classes < confidence < 1.0):
                    raise ValueError(f"confidence must lie in (1/C, 1) = ({1.0 / classes:.3g}, 1), got {confidence!r}")
                # softmax(value_scale · V_raw) puts `confidence` on the class when its logit is this
                logit = math.log(confidence * (classes - 1) / (1.0 - confidence)) / float(self.value_scale)
                self.value_logits.copy_(F.one_hot(targets.to(self.value_logits.device), classes).float() * logit)
        self.keys.copy_(keys)

    @torch.no_grad()
    def start_at_examples(self, features: torch.Tensor, targets: torch.Tensor, *, directions_only: bool,
                          confidence: float = 0.9) -> None:
        """Start every entry at a real example: k_j = its features z_j (S, d), v_j = its target (see
        `set_entries`). Not in the paper or the official code; it meets the paper's requirement (sec.
        2.3) that keys start "with a similar distribution to z_i", so that they receive a training
        signal from the first step.

        `directions_only`: the attention and the inner loss L(f_φ(k_j), v_j) both see only the keys'
        directions (cosine similarity and a cosine classifier). Then the keys keep the norm of the
        Gaussian init (key_init_std · √d), so that the optimiser moves them at the same relative rate as
        random keys. Otherwise k_j = z_j exactly: f_φ(k_j) must be f_φ(z_j), not f_φ of a shrunken z_j."""
        check_features("features", features, self.keys.shape[1], allow_empty=False)
        if features.shape[0] != self.entries:
            raise ValueError(f"the dictionary has S = {self.entries} entries, so it starts at exactly {self.entries} "
                             f"examples; got {features.shape[0]}")
        check_finite("features", features)
        keys = features.detach().to(self.keys.device, self.keys.dtype)
        if directions_only:
            keys = F.normalize(keys, dim=-1) * (self.key_init_std * math.sqrt(keys.shape[1]))
        self.set_entries(keys, targets, confidence=confidence)

    @property
    def values(self) -> torch.Tensor:
        """v_j for every entry, (S, value_dim)."""
        if self.value_kind == "soft":
            return (self.value_scale * self.value_logits).softmax(dim=-1)
        if self.value_kind == "fixed":
            return self.fixed_values
        return self.regression_values

    def extra_repr(self) -> str:
        return f"entries={self.keys.shape[0]}, key_dim={self.keys.shape[1]}, values={self.value_kind!r}"


def attention_entropy(attention: torch.Tensor) -> torch.Tensor:
    """H(ω_i) = -Σ_j ω_ij log ω_ij for every row, in nats (0 log 0 = 0): (B, S) -> (B,). It is log S when
    every entry weighs the same and 0 when one entry takes all the weight."""
    return -torch.special.xlogy(attention, attention).sum(-1)


def attended_values(attention: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Σ_j ω_ij v_j, the dictionary read alone as a soft kNN: attention (B, S), values (S, C) -> (B, C)."""
    return attention @ values


# what dictionary_sums adds up over a batch, in its order
DICTIONARY_SUMS = ("acc", "acc_before_finetune", "attended_value_acc", "attention_entropy", "attention_top_weight",
                   "changed_predictions")


def dictionary_sums(details: dict[str, torch.Tensor], values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The numbers that show a classification dictionary at work, summed over a batch, in DICTIONARY_SUMS'
    order, (6,) float64 (divide by the batch size for means):

    acc, acc_before_finetune   inputs classified right after the per-input finetuning, and before it
    attended_value_acc         inputs whose attended value Σ_j ω_ij v_j puts most mass on their class
    attention_entropy          H(ω_i) in nats (log S: uniform attention)
    attention_top_weight       max_j ω_ij (uniform attention: 1/S)
    changed_predictions        inputs whose predicted class the finetuning changes

    details: an MN head's return_details dict, of which logits and base_logits (B, C) and attention
    (B, S); values (S, C); labels (B,)."""
    logits, base, attention = details["logits"].float(), details["base_logits"].float(), details["attention"].float()
    predicted, predicted_before = logits.argmax(1), base.argmax(1)                          # (B,)
    sums = [(predicted == labels).sum(), (predicted_before == labels).sum(),
            (attended_values(attention, values.float()).argmax(1) == labels).sum(),
            attention_entropy(attention).sum(), attention.max(1).values.sum(), (predicted != predicted_before).sum()]
    return torch.stack([value.double() for value in sums])


# ----------------------------------------------------------------------------------------------
# the classifier f_φ and its closed-form inner gradient
# ----------------------------------------------------------------------------------------------

def classifier_logits(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      scale: torch.Tensor | None, classifier: str) -> torch.Tensor:
    """f_W(x): cosine (τ · x̂ᵀŵ_c, no bias) or dot (xᵀw_c + b_c).

    inputs (N, d) with a shared weight (C, d)         -> (N, C)
    inputs (B, d) with per-example weights (B, C, d)  -> (B, C), input i under weight i
    """
    if classifier not in CLASSIFIERS:
        check_choice("classifier", classifier, CLASSIFIERS)
    if classifier == "cosine":
        inputs = F.normalize(inputs, dim=-1)
        weight = F.normalize(weight, dim=-1)
    if weight.dim() == 2:
        logits = inputs @ weight.T                                            # (N, C)
    else:
        logits = torch.einsum("bd,bcd->bc", inputs, weight)                    # (B, C)
    if classifier == "cosine":
        return scale * logits
    return logits + bias


def _entry_logits(keys: torch.Tensor, weight: torch.Tensor, bias, scale, classifier: str) -> torch.Tensor:
    """f_W(k_j) for every entry: (1, S, C) for a shared weight, (B, S, C) for per-example weights."""
    if weight.dim() == 2:
        return classifier_logits(keys, weight, bias, scale, classifier)[None]
    if classifier == "cosine":
        return scale * torch.einsum("sd,bcd->bsc", F.normalize(keys, dim=-1), F.normalize(weight, dim=-1))
    return torch.einsum("sd,bcd->bsc", keys, weight) + bias[:, None, :]


def inner_gradient(attention: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                   weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor | None,
                   classifier: str, loss: str):
    """∇_W and ∇_b of L_inner_i = Σ_j ω_ij L(f_W(k_j), v_j) for the whole batch, in closed form.

    attention (B, S); keys (S, d); values (S, C); weight (C, d) shared or (B, C, d) per example.
    Returns (grad_weight (B, C, d), grad_bias (B, C) or None). Differentiable: autograd through it
    gives the exact second-order meta-gradient.
    """
    delta = entry_loss_logit_gradient(_entry_logits(keys, weight, bias, scale, classifier),
                                      values, loss)                            # (1|B, S, C)
    # Σ_j ω_ij δ_jc k_j for every (i, c): built directly in (B, C, S) layout so that the contraction
    # over the S entries is one (B·C, S) @ (S, d) matrix product, forward and backward (no permuted copy)
    weighted = attention[:, None, :] * delta.transpose(-1, -2).contiguous()    # (B, C, S)
    batch, classes, entries = weighted.shape

    def contract(k: torch.Tensor) -> torch.Tensor:                             # "bcs,sd->bcd"
        return (weighted.reshape(batch * classes, entries) @ k).view(batch, classes, k.shape[-1])

    if classifier == "dot":
        return contract(keys), weighted.sum(dim=-1)                             # (B, C, d), (B, C)
    # cosine: gradient w.r.t. the normalised rows ŵ_c, then through ŵ_c = w_c / ‖w_c‖
    grad_unit = scale * contract(F.normalize(keys, dim=-1))                    # (B, C, d)
    norm = weight.norm(dim=-1, keepdim=True)                                    # (C|B, C, 1)
    unit = weight / norm
    radial = (grad_unit * unit).sum(dim=-1, keepdim=True)                       # (B, C, 1)
    return (grad_unit - radial * unit) / norm, None


def head_memory(batch: int, feature_dim: int, classes: int, entries: int, inner_steps: int = 1) -> dict[str, float]:
    """Bytes of the large float32 tensors of `MetaNeighborhoodsHead` on a batch of B features (B = 0:
    the parameters alone), for `_memory.check_memory`: the dictionary S·(d + C) with its gradient and
    Adam's two moments (x4); the attention ω (B, S) and its similarities (x2); per inner step the
    entries' logits and loss gradients δ under the per-example weights and Σ_j ω_ij δ_j (3 x B·S·C,
    eq. (1)) and the finetuned weights φ_i with their gradient (2 x B·C·d)."""
    b, d, c, s = batch, feature_dim, classes, entries
    return {"dictionary": 4 * s * (d + c) * FLOAT_BYTES, "attention": 2 * b * s * FLOAT_BYTES,
            "per-example finetuning": inner_steps * (3 * b * s * c + 2 * b * c * d) * FLOAT_BYTES}


CHECKED_BYTES = 2 ** 30        # a head's forward estimates its memory first when a batch needs more than this


def _xavier_weight(rows: int, cols: int) -> torch.Tensor:
    return nn.init.xavier_uniform_(torch.empty(rows, cols))


class MetaNeighborhoodsHead(nn.Module):
    """Classifier f_φ finetuned per input on induced neighbors, MN eq. (1)-(3), batched in closed form.

    Given features z (B, d): attention ω(z_i, k_j) over the dictionary (eq. 5), `inner_steps` steps
    of φ_i ← φ_i - α ∇_φ Σ_j ω_ij L(f_{φ_i}(k_j), v_j) on the classifier weight (and bias for the
    dot classifier) only, then the prediction f_{φ_i}(z_i). The scale τ, the dictionary and the
    backbone are not adapted; they receive meta-gradients. The attention is computed once and reused
    at every step (as in the official code); the entries are re-scored under the current φ_i.

    Args:
        feature_dim: d, the width of z.   num_outputs: C (1 with values="fixed" and
            loss="binary_cross_entropy": 0/1 labels).
        entries: S.   similarity / temperature / learn_temperature / entry_dropout: see NeighborAttention.
        classifier: "cosine" (learnable scale τ, init 10, no bias) or "dot" (weight and bias).
        values: "soft", "fixed" or "regression", see InducedDictionary.
        loss: default "cross_entropy" for C >= 2, "binary_cross_entropy" for C == 1.
        inner_steps: n >= 1 finetuning steps.
        step_size: "scalar" α or "diagonal" (one α per feature dimension, shared by the classes;
            for the dot classifier one more for the bias). Used as |α|, init `step_size_init`.
        learn_step_size: learn α (default) or keep it fixed.
        first_order: drop the terms through φ inside the inner gradient (see module docstring).
    """

    def __init__(self, feature_dim: int, num_outputs: int, entries: int = 1000, *,
                 similarity: str = "cosine", temperature: float = 0.2, learn_temperature: bool = False,
                 entry_dropout: float = 0.0, classifier: str = "cosine", values: str = "soft",
                 loss: str | None = None, inner_steps: int = 1, step_size: str = "scalar",
                 step_size_init: float = 0.05, learn_step_size: bool = True, first_order: bool = False,
                 scale_init: float = 10.0, key_init_std: float = 0.05,
                 initial_keys: torch.Tensor | None = None, fixed_values: torch.Tensor | None = None):
        super().__init__()
        check_positive("feature_dim", feature_dim, integer=True, minimum=1)
        check_positive("num_outputs", num_outputs, integer=True, minimum=1)
        check_positive("entries S", entries, integer=True, minimum=1)
        check_positive("inner_steps", inner_steps, integer=True, minimum=1)
        check_positive("step_size_init", step_size_init)
        check_positive("scale_init", scale_init)                                # τ of the cosine classifier
        check_choice("classifier", classifier, CLASSIFIERS)
        check_choice("step_size", step_size, STEP_SIZES)
        check_choice("similarity", similarity, SIMILARITIES)
        check_fraction("entry_dropout", entry_dropout)
        check_flags(learn_step_size=learn_step_size, first_order=first_order, learn_temperature=learn_temperature)
        loss = loss or ("binary_cross_entropy" if num_outputs == 1 else "cross_entropy")
        check_choice("loss", loss, LOSSES)
        check_values_and_loss(values, loss, num_outputs, "num_outputs")
        check_memory(f"MetaNeighborhoodsHead with {entries} entries of width {feature_dim} and {num_outputs} outputs",
                     head_memory(0, feature_dim, num_outputs, entries), "use fewer entries S")
        self.feature_dim, self.num_outputs = feature_dim, num_outputs
        self._checked_batch = 0                                                 # see check_memory
        self.classifier, self.loss, self.inner_steps = classifier, loss, inner_steps
        self.step_size_kind, self.first_order = step_size, first_order

        self.dictionary = InducedDictionary(entries, feature_dim, num_outputs, values,
                                            key_init_std=key_init_std, initial_keys=initial_keys,
                                            fixed_values=fixed_values)
        self.attention = NeighborAttention(similarity, temperature, learn_temperature=learn_temperature,
                                           entry_dropout=entry_dropout)
        self.weight = nn.Parameter(_xavier_weight(num_outputs, feature_dim))       # (C, d)
        if classifier == "cosine":
            self.scale = nn.Parameter(torch.tensor(float(scale_init)))
            self.bias = None
        else:
            self.scale = None
            self.bias = nn.Parameter(torch.zeros(num_outputs))
        step_shape = () if step_size == "scalar" else (feature_dim + (classifier == "dot"),)
        step = torch.full(step_shape, float(step_size_init))
        if learn_step_size:
            self.inner_step_size = nn.Parameter(step)
        else:
            self.register_buffer("inner_step_size", step)

    @torch.no_grad()
    def initialize_from_examples(self, features: torch.Tensor, labels: torch.Tensor, *,
                                 confidence: float = 0.9) -> None:
        """Start the dictionary at S real examples: k_j = their features z_j (S, d), v_j = their labels
        (S,) (soft values: probability `confidence` on the label); see `InducedDictionary.start_at_examples`."""
        directions_only = self.attention.similarity == "cosine" and self.classifier == "cosine"
        self.dictionary.start_at_examples(features, labels, directions_only=directions_only, confidence=confidence)

    def base_logits(self, features: torch.Tensor) -> torch.Tensor:
        """f_φ(z) without finetuning, (B, C)."""
        return classifier_logits(features, self.weight, self.bias, self.scale, self.classifier)

    def finetune(self, attention: torch.Tensor):
        """Per-example parameters after `inner_steps` steps: weight (B, C, d), bias (B, C) or None."""
        keys, values = self.dictionary.keys, self.dictionary.values
        step = self.inner_step_size.abs()
        weight_step, bias_step = (step, step) if step.dim() == 0 else (step[: self.feature_dim], step[-1])
        weight, bias = self.weight, self.bias
        for _ in range(self.inner_steps):
            w_in, b_in = weight, bias
            if self.first_order:
                w_in = w_in.detach()
                b_in = None if b_in is None else b_in.detach()
            grad_weight, grad_bias = inner_gradient(attention, keys, values, w_in, b_in, self.scale,
                                                    self.classifier, self.loss)
            weight = weight - weight_step * grad_weight                          # (B, C, d)
            if bias is not None:
                bias = bias - bias_step * grad_bias                              # (B, C)
        return weight, bias

    def forward(self, features: torch.Tensor, *, return_details: bool = False):
        """Logits after per-input finetuning, (B, C); with return_details also the attention
        (B, S), the logits before finetuning and the finetuned parameters. In the head's dtype (float32
        or better) also under bf16/fp16 autocast: in half precision the closed-form inner gradient and
        the cosine normalisations lose more than the finetuning changes."""
        check_features("features", features, self.feature_dim, dtype=self.dictionary.keys.dtype)
        batch = features.shape[0]
        if (not torch.compiler.is_compiling() and batch > self._checked_batch
                and sum(self._batch_memory(batch).values()) > CHECKED_BYTES):
            self.check_memory(batch)              # once per larger batch: on a GPU, asking is a host sync
        with autocast_off(features.device.type):
            features = features.to(self.dictionary.keys.dtype)                  # (B, d): a no-op outside autocast
            attention = self.attention(features, self.dictionary.keys)          # (B, S)
            weight, bias = self.finetune(attention)
            logits = classifier_logits(features, weight, bias, self.scale, self.classifier)
            if not return_details:
                return logits
            return {"logits": logits, "attention": attention, "base_logits": self.base_logits(features),
                    "weight": weight, "bias": bias}

    def _batch_memory(self, batch: int) -> dict[str, float]:
        """head_memory's tensors of a batch; the dictionary is allocated already."""
        sizes = head_memory(batch, self.feature_dim, self.num_outputs, self.dictionary.entries, self.inner_steps)
        return {name: size for name, size in sizes.items() if name != "dictionary"}

    def check_memory(self, batch: int) -> None:
        """Refuse (TooLargeForMemory) batches of `batch` features whose attention and per-input finetuning
        would not fit in the memory left on the head's device. forward() asks once for each batch size
        larger than any asked for before, when the batch needs over a GiB (CHECKED_BYTES)."""
        check_memory(f"MetaNeighborhoodsHead with {self.dictionary.entries} entries of width {self.feature_dim} and "
                     f"{self.num_outputs} outputs on batches of {batch}", self._batch_memory(batch),
                     "use smaller batches or fewer entries S", device=self.dictionary.keys.device)
        self._checked_batch = max(self._checked_batch, batch)

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        """The dictionary, classifier, scale, step size and temperature: excluded from weight decay
        (official code: everything in the "memory" scope)."""
        return [p for p in self.parameters() if p.requires_grad]

    def extra_repr(self) -> str:
        return (f"feature_dim={self.feature_dim}, num_outputs={self.num_outputs}, classifier={self.classifier!r}, "
                f"loss={self.loss!r}, inner_steps={self.inner_steps}, step_size={self.step_size_kind!r}, "
                f"first_order={self.first_order}")


# ----------------------------------------------------------------------------------------------
# generic f_φ through torch.func
# ----------------------------------------------------------------------------------------------

def finetune_functional(model: nn.Module, params: dict[str, torch.Tensor], attention: torch.Tensor,
                        keys: torch.Tensor, values: torch.Tensor, loss: str,
                        step_sizes: dict[str, torch.Tensor], steps: int = 1,
                        first_order: bool = False) -> dict[str, torch.Tensor]:
    """Per-example parameters φ_i after `steps` steps of MN eq. (1) for any module f_φ.

    params: name -> tensor (shared); attention (B, S); keys (S, d_in); values (S, C).
    step_sizes: name -> step (a scalar, or a tensor of the parameter's shape for a diagonal α).
    Returns name -> (B, *shape). Differentiable (torch.func composes with autograd: second order).
    """
    def inner_loss(p, weights_row):                                           # weights_row (S,)
        outputs = functional_call(model, p, (keys,))                          # (S, C)
        return (weights_row * entry_loss(outputs, values, loss)).sum()

    check_positive("inner steps", steps, integer=True, minimum=0)
    if steps == 0:                                   # no step: every example keeps φ, batched like the others
        return {k: v.expand(attention.shape[0], *v.shape) for k, v in params.items()}
    per_example_grad = grad(inner_loss)
    adapted, batched = params, False
    for _ in range(steps):
        source = {k: v.detach() for k, v in adapted.items()} if first_order else adapted
        grads = vmap(per_example_grad, in_dims=(0 if batched else None, 0))(source, attention)
        adapted = {k: adapted[k] - step_sizes[k].abs() * grads[k] for k in params}   # (B, *shape)
        batched = True
    return adapted


def predict_functional(model: nn.Module, adapted: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    """f_φi(x_i): input i (B, d) under its own parameters adapted[name][i] (B, *shape) -> (B, C)."""
    return vmap(lambda params, x: functional_call(model, params, (x[None],))[0])(adapted, inputs)


@torch.no_grad()
def _check_input_width(model: nn.Module, input_dim: int) -> None:
    """The model takes inputs (B, input_dim): one zero input goes through it, in eval mode and with the
    random state put back, so the probe changes nothing a seed decides."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    probe = torch.zeros(1, input_dim, dtype=parameter.dtype if parameter is not None else None, device=device)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), eval_mode(model):
            model(probe)
    except RuntimeError as error:
        raise ValueError(f"input_dim={input_dim} must be the width of the model's inputs, but "
                         f"{type(model).__name__} fails on an input of shape (1, {input_dim}): {error}") from None


class FunctionalMetaNeighborhoods(nn.Module):
    """Meta-Neighborhoods around any small model f_φ (an MLP for regression), MN eq. (1)-(2).

    The dictionary lives in the model's input space (keys (S, d_in)); each input finetunes all of
    f's parameters on the attention-weighted entry losses, then predicts with its own φ_i.
    step_size "scalar" (one α) or "diagonal" (one α per parameter element, Meta-SGD style).
    Buffers of `model` (e.g. BatchNorm statistics) are not supported: use norm-free models.
    """

    def __init__(self, model: nn.Module, input_dim: int, output_dim: int, entries: int = 1000, *,
                 similarity: str = "cosine", temperature: float = 0.1, learn_temperature: bool = False,
                 entry_dropout: float = 0.0, values: str = "regression", loss: str = "mse",
                 inner_steps: int = 1, step_size: str = "scalar", step_size_init: float = 0.05,
                 learn_step_size: bool = True, first_order: bool = False, key_init_std: float = 1.0,
                 initial_keys: torch.Tensor | None = None, initial_values: torch.Tensor | None = None,
                 fixed_values: torch.Tensor | None = None):
        super().__init__()
        if not isinstance(model, nn.Module):                      # its parameters are what each input finetunes
            raise ValueError(f"model must be an nn.Module whose parameters are finetuned per input, got "
                             f"{type(model).__name__}")
        check_positive("input_dim", input_dim, integer=True, minimum=1)
        check_positive("output_dim", output_dim, integer=True, minimum=1)
        check_positive("inner_steps", inner_steps, integer=True, minimum=1)
        check_positive("step_size_init", step_size_init)
        check_choice("step_size", step_size, STEP_SIZES)
        check_choice("loss", loss, LOSSES)
        check_values_and_loss(values, loss, output_dim)
        check_flags(learn_step_size=learn_step_size, first_order=first_order, learn_temperature=learn_temperature)
        if len(list(model.buffers())):
            raise ValueError("FunctionalMetaNeighborhoods needs a model without buffers (no BatchNorm); "
                             f"got {type(model).__name__} with buffers {[n for n, _ in model.named_buffers()]}")
        _check_input_width(model, input_dim)
        self.model, self.input_dim, self.output_dim = model, input_dim, output_dim
        self.loss, self.inner_steps, self.first_order = loss, inner_steps, first_order
        self.step_size_kind = step_size
        self.dictionary = InducedDictionary(entries, input_dim, output_dim, values, key_init_std=key_init_std,
                                            initial_keys=initial_keys, initial_values=initial_values,
                                            fixed_values=fixed_values)
        self.attention = NeighborAttention(similarity, temperature, learn_temperature=learn_temperature,
                                           entry_dropout=entry_dropout)
        steps = {name.replace(".", "__"): torch.full(() if step_size == "scalar" else p.shape, float(step_size_init))
                 for name, p in model.named_parameters()}
        self.inner_step_sizes = nn.ParameterDict(
            {k: nn.Parameter(v, requires_grad=learn_step_size) for k, v in steps.items()})

    def _step_sizes(self) -> dict[str, torch.Tensor]:
        return {name: self.inner_step_sizes[name.replace(".", "__")] for name, _ in self.model.named_parameters()}

    def forward(self, inputs: torch.Tensor, *, return_details: bool = False):
        check_features("inputs", inputs, self.input_dim, dtype=self.dictionary.keys.dtype)
        attention = self.attention(inputs, self.dictionary.keys)                  # (B, S)
        params = dict(self.model.named_parameters())
        adapted = finetune_functional(self.model, params, attention, self.dictionary.keys,
                                      self.dictionary.values, self.loss, self._step_sizes(),
                                      self.inner_steps, self.first_order)
        outputs = predict_functional(self.model, adapted, inputs)                 # (B, C)
        if not return_details:
            return outputs                                                        # (B, C)
        return {"outputs": outputs, "attention": attention, "base_outputs": self.model(inputs),
                "params": adapted}

