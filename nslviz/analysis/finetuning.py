"""What per-input finetuning does to the classifier (MN Fig. 4) and whether the dictionary has learned.

With a cosine classifier the rows φ[c] are class prototypes. For each test input, compare the cosine
similarity between its feature z_i and the prototype of its true class before finetuning, φ[y_i],
and after, φ_i[y_i]: points above the diagonal are inputs the neighbors moved in the right direction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_positive
from .._modes import eval_mode
from ..training.data import batch_stream
from ..neighborhoods import DICTIONARY_SUMS, dictionary_sums


@dataclass
class FinetuningEffect:
    before: np.ndarray          # (N,) cos(z_i, φ[y_i])
    after: np.ndarray           # (N,) cos(z_i, φ_i[y_i])
    correct_before: np.ndarray  # (N,) bool, prediction of the classifier φ
    correct_after: np.ndarray   # (N,) bool, prediction after finetuning

    @property
    def fraction_improved(self) -> float:
        return float((self.after > self.before).mean())

    @property
    def mean_shift(self) -> float:
        """Mean of after - before: how far the points sit above the diagonal (a dictionary that has
        not learned yet puts most points a hair above it, ~1e-4)."""
        return float((self.after - self.before).mean())


def _check_meta_neighborhoods(model, what: str) -> None:
    if not getattr(model, "is_meta_neighborhoods", False):
        raise ValueError(f"{what} needs a Meta-Neighborhoods model (method mn or mn_ifilm), "
                         f"got method {getattr(model, 'method', type(model).__name__)!r}")


def _detailed_batches(model, split, batch_size: int, device, what: str):
    """(labels, details) for consecutive batches of `split` (an ImageSplit or FileSplit, not empty), the
    model on `device` in eval mode while they are drawn; its training mode is restored afterwards."""
    check_positive("batch_size", batch_size, integer=True)
    if len(split.labels) == 0:
        raise ValueError(f"{what} needs a split with at least one image, got an empty one")
    with eval_mode(model.to(device)):
        for images, labels in batch_stream(split, batch_size, shuffle=False, device=device).epoch(0):
            yield labels, model(images, return_details=True)


@torch.no_grad()
def finetuning_effect(model, split, batch_size: int = 256, device: str | torch.device = "cpu") -> FinetuningEffect:
    """Prototype similarities before/after finetuning for every image of `split` (an ImageSplit).
    `model` is an ImageClassifier with a MetaNeighborhoodsHead."""
    _check_meta_neighborhoods(model, "finetuning_effect")
    parts = {"before": [], "after": [], "correct_before": [], "correct_after": []}
    for labels, details in _detailed_batches(model, split, batch_size, device, "finetuning_effect"):
        z = F.normalize(details["features"], dim=-1)                                  # (B, d)
        prototypes = F.normalize(model.head.weight, dim=-1)[labels]                    # (B, d)
        adapted = F.normalize(details["weight"], dim=-1)                               # (B, C, d)
        adapted = adapted[torch.arange(len(labels), device=labels.device), labels]     # (B, d)
        parts["before"].append((z * prototypes).sum(-1))
        parts["after"].append((z * adapted).sum(-1))
        parts["correct_before"].append(details["base_logits"].argmax(1) == labels)
        parts["correct_after"].append(details["logits"].argmax(1) == labels)
    return FinetuningEffect(**{k: torch.cat(v).cpu().numpy() for k, v in parts.items()})


@torch.no_grad()
def dictionary_state(model, split, batch_size: int = 256, device: str | torch.device = "cpu") -> dict[str, float]:
    """Has the dictionary learned? Numbers that tell a dictionary that shapes the predictions from one
    that is still noise, over the images of `split` (an ImageSplit):

    entries, log_entries      S, and log S: the entropy of uniform attention
    classes                   C, the number of classes (1/C: chance for attended_value_acc)
    attention_entropy         mean over images of H(ω_i) in nats; near log S every entry weighs about
                              the same, so the inner step averages over the whole dictionary
    attention_top_weight      mean of max_j ω_ij (uniform attention: 1/S)
    value_confidence          mean over entries of max_c v_jc (fixed one-hot values: 1; the soft values
                              at initialisation: about 1/C)
    step_size                 mean |α| of the inner step
    attended_value_acc        share of images whose attended value Σ_j ω_ij v_j puts most mass on the
                              image's class: the dictionary read alone as a soft kNN (chance: about 1/C)
    logit_change              mean |f_φi(z_i) - f_φ(z_i)| over mean |f_φ(z_i)|: how far the per-input
                              step moves the logits, relative to their size
    changed_predictions       share of images whose predicted class the finetuning changes
    acc_before_finetune, acc  accuracy of the classifier φ, and after finetuning
    """
    _check_meta_neighborhoods(model, "dictionary_state")
    values = model.head.dictionary.values.to(device).float()                          # (S, C)
    totals = 0.0
    for labels, details in _detailed_batches(model, split, batch_size, device, "dictionary_state"):
        logits, base = details["logits"].float(), details["base_logits"].float()        # (B, C)
        # sums over the batch: DICTIONARY_SUMS, then |f_φi(z_i) - f_φ(z_i)| and |f_φ(z_i)|
        totals = totals + torch.cat([dictionary_sums(details, values, labels),
                                     torch.stack([(logits - base).abs().sum(), base.abs().sum()]).double()])
    *sums, change, magnitude = totals.tolist()
    entries = values.shape[0]
    state = {"entries": entries, "log_entries": math.log(entries), "classes": values.shape[1]}
    state.update({name: total / len(split.labels) for name, total in zip(DICTIONARY_SUMS, sums)})
    state["value_confidence"] = float(values.max(1).values.mean())
    state["step_size"] = float(model.head.inner_step_size.abs().mean())
    state["logit_change"] = change / magnitude if magnitude else 0.0
    return state
