"""The attention ω(x, k_j) over dictionary entries, MN eq. (5).

    ω(x_i, k_j) = exp(sim(x_i, k_j) / T) / Σ_s exp(sim(x_i, k_s) / T)

sim is cosine similarity, negative squared Euclidean distance or a dot product. T is fixed or
learned (stored as log(1/T) so that it stays positive). During training each example may keep its
own random subset of the entries ("entry dropout", official code: 50% per example, without
replacement, softmax renormalised over the kept entries); evaluation always uses all entries.

Deviation from the paper, as in the official code: the paper's "negative Euclidean distance" is
implemented, as in the official spiral code, as the negative *squared* distance.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import check_choice, check_fraction, check_positive

SIMILARITIES = ("cosine", "neg_sq_euclidean", "dot")
NORM_FLOOR = 1e-12          # F.normalize's eps: a zero vector has cosine similarity 0 with everything


def similarity_scores(queries: torch.Tensor, keys: torch.Tensor, similarity: str,
                      dots: torch.Tensor | None = None) -> torch.Tensor:
    """sim(x_i, k_j) for every pair, before the temperature: (B, d) x (S, d) -> (B, S).

    dots: the products x_i·k_j = queries @ keys.T (B, S), given by a caller that needs them anyway (the
    inner step of `MetaNeighborhoodsMLP`); every similarity is then formed from them without a second
    (B, S, d) product, cosine as x·k / (‖x‖ ‖k‖) (norms floored at 1e-12, as F.normalize)."""
    check_choice("similarity", similarity, SIMILARITIES)
    if queries.dim() != 2 or keys.dim() != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(f"expected queries (batch, d) and keys (entries, d) of the same width d, got "
                         f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)}")
    if dots is not None and dots.shape != (queries.shape[0], keys.shape[0]):
        raise ValueError(f"dots must be queries @ keys.T of shape {(queries.shape[0], keys.shape[0])}, "
                         f"got {tuple(dots.shape)}")
    if similarity == "cosine":
        if dots is None:
            return F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T
        return dots / (queries.norm(dim=-1, keepdim=True).clamp_min(NORM_FLOOR) * keys.norm(dim=-1).clamp_min(NORM_FLOOR))
    dots = queries @ keys.T if dots is None else dots
    if similarity == "neg_sq_euclidean":
        # -‖x - k‖² = 2 x·k - ‖x‖² - ‖k‖²: one matmul, no (B, S, d) difference tensor
        return 2 * dots - queries.pow(2).sum(-1, keepdim=True) - keys.pow(2).sum(-1)
    return dots


def entry_dropout_mask(batch: int, entries: int, drop_rate: float, *, device=None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, S) boolean mask; each row keeps its own random ⌊(1 - drop_rate)·S⌋ entries (at least one)."""
    check_positive("batch", batch, integer=True, minimum=0)
    check_positive("entries", entries, integer=True)
    check_fraction("entry drop_rate", drop_rate)
    keep = max(1, math.floor(entries * (1.0 - drop_rate) + 1e-9))   # + 1e-9: (1 − 0.9)·100 is 9.99… in floats
    scores = torch.rand(batch, entries, device=device, generator=generator)
    kept = scores.topk(keep, dim=1).indices                                   # (B, keep)
    return torch.zeros(batch, entries, dtype=torch.bool, device=device).scatter(1, kept, True)   # not in place: vmap


class NeighborAttention(nn.Module):
    """ω(x, k_j): softmax over the S entries of sim(x, k_j) / T, MN eq. (5).

    Entry dropout draws from `self.generator` when one is set (the tabular training loop sets its own
    for the length of a fit, so that fits in several threads never share a stream), else from torch's
    global generator."""

    def __init__(self, similarity: str = "cosine", temperature: float = 0.2, *,
                 learn_temperature: bool = False, entry_dropout: float = 0.0):
        super().__init__()
        check_choice("similarity", similarity, SIMILARITIES)
        check_positive("temperature T", temperature)
        check_fraction("entry_dropout", entry_dropout)
        self.similarity = similarity
        self.entry_dropout = float(entry_dropout)
        self.generator: torch.Generator | None = None
        log_inverse_temperature = torch.tensor(math.log(1.0 / float(temperature)))
        if learn_temperature:
            self.log_inverse_temperature = nn.Parameter(log_inverse_temperature)
        else:
            self.register_buffer("log_inverse_temperature", log_inverse_temperature)

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.log_inverse_temperature.detach()))

    def logits(self, queries: torch.Tensor, keys: torch.Tensor, dots: torch.Tensor | None = None) -> torch.Tensor:
        """sim / T, (B, S); `dots` = queries @ keys.T if the caller has them (`similarity_scores`)."""
        return similarity_scores(queries, keys, self.similarity, dots) * self.log_inverse_temperature.exp()

    def forward(self, queries: torch.Tensor, keys: torch.Tensor,
                keep_mask: torch.Tensor | None = None, dots: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.logits(queries, keys, dots)                             # (B, S)
        if keep_mask is not None:                                             # given: checked
            if keep_mask.dtype != torch.bool or keep_mask.shape != logits.shape:
                raise ValueError(f"keep_mask must be a bool tensor of shape {tuple(logits.shape)} (batch, entries), "
                                 f"got {keep_mask.dtype} of shape {tuple(keep_mask.shape)}")
            if (keep_mask.device.type == "cpu" and not torch.compiler.is_compiling()
                    and not torch._C._functorch.is_functorch_wrapped_tensor(keep_mask)   # no one answer under vmap
                    and not keep_mask.any(-1).all()):
                raise ValueError("keep_mask drops every entry for some example: each row needs at least one True")
        elif self.training and self.entry_dropout > 0:                        # drawn: keeps one entry or more
            keep_mask = entry_dropout_mask(*logits.shape, self.entry_dropout, device=logits.device,
                                           generator=self.generator)
        if keep_mask is not None:
            logits = logits.masked_fill(~keep_mask, float("-inf"))
        return logits.softmax(dim=-1)

    def extra_repr(self) -> str:
        learned = isinstance(self.log_inverse_temperature, nn.Parameter)
        return (f"similarity={self.similarity!r}, temperature={self.temperature:.4g}"
                f"{' (learned)' if learned else ''}, entry_dropout={self.entry_dropout}")
