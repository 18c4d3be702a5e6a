"""What per-input finetuning does to the classifier, MN Fig. 4.

With a cosine classifier the rows φ[c] are class prototypes. For each test input, compare the cosine
similarity between its feature z_i and the prototype of its true class before finetuning, φ[y_i],
and after, φ_i[y_i]: points above the diagonal are inputs the neighbors moved in the right direction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets.augment import to_float


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


@torch.no_grad()
def finetuning_effect(model, split, batch_size: int = 256, device: str | torch.device = "cpu") -> FinetuningEffect:
    """Prototype similarities before/after finetuning for every image of `split` (an ImageSplit).
    `model` is an ImageClassifier with a MetaNeighborhoodsHead."""
    if not getattr(model, "is_meta_neighborhoods", False):
        raise ValueError(f"finetuning_effect needs a Meta-Neighborhoods model (method mn or mn_ifilm), "
                         f"got method {getattr(model, 'method', type(model).__name__)!r}")
    model = model.to(device).eval()
    parts = {"before": [], "after": [], "correct_before": [], "correct_after": []}
    for start in range(0, len(split.labels), batch_size):
        images = to_float(split.images[start:start + batch_size].to(device))
        labels = split.labels[start:start + batch_size].to(device)
        details = model(images, return_details=True)
        z = F.normalize(details["features"], dim=-1)                                  # (B, d)
        prototypes = F.normalize(model.head.weight, dim=-1)[labels]                    # (B, d)
        adapted = F.normalize(details["weight"], dim=-1)                               # (B, C, d)
        adapted = adapted[torch.arange(len(labels), device=device), labels]            # (B, d)
        parts["before"].append((z * prototypes).sum(-1))
        parts["after"].append((z * adapted).sum(-1))
        parts["correct_before"].append(details["base_logits"].argmax(1) == labels)
        parts["correct_after"].append(details["logits"].argmax(1) == labels)
    return FinetuningEffect(**{k: torch.cat(v).cpu().numpy() for k, v in parts.items()})
