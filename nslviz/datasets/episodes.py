"""N-way K-shot episodes, drawn in one batch, and the mean accuracy with its 95 % interval over them.

The few-shot protocol of NSL Table 6 (Ravi & Larochelle; Finn et al.): an episode picks `way`
classes of the novel split, `shot` support images and `query` query images of each; a learner
adapts on the support set and is scored on the query set. The table reports the mean query
accuracy over many episodes ± the 95 % confidence interval (1.96 standard errors).

    episodes = sample_episodes(split.labels, episodes=600, way=5, shot=5, query=15, seed=0)
    episodes.support          # int64 (600, 25)  indices into the split, class-major within an episode
    episodes.query            # int64 (600, 75)
    episodes.support_labels   # int64 (600, 25)  0..way-1, the episode's own class numbering

Every episode's classes and images come from one seeded draw for all episodes, without a Python
loop over episodes or images; support and query images of an episode are distinct draws without
replacement from the class, so a query image is never also a support image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import check_positive, check_seed


@dataclass(frozen=True)
class Episodes:
    """A batch of E episodes over one split: indices into it and the episode-local labels."""
    support: torch.Tensor          # (E, way·shot) int64
    query: torch.Tensor            # (E, way·query) int64
    support_labels: torch.Tensor   # (E, way·shot) int64 in [0, way)
    query_labels: torch.Tensor     # (E, way·query) int64 in [0, way)
    classes: torch.Tensor          # (E, way) int64: the split's label of each episode class
    way: int
    shot: int

    def __len__(self) -> int:
        return int(self.support.shape[0])

    def slice(self, start: int, stop: int) -> "Episodes":
        """Episodes start..stop-1 (to process a long run in chunks)."""
        return Episodes(self.support[start:stop], self.query[start:stop], self.support_labels[start:stop],
                        self.query_labels[start:stop], self.classes[start:stop], self.way, self.shot)


def check_episodes_fit(labels: torch.Tensor, *, way: int, shot: int, query: int, split: str = "the split") -> None:
    """Refuse, naming `split`, a split with fewer than `way` classes of at least `shot` + `query` images:
    the check `sample_episodes` makes, for a caller that wants it before expensive work."""
    _usable_classes(labels, way, shot, query, split)


def _usable_classes(labels: torch.Tensor, way: int, shot: int, query: int, split: str):
    """(present classes, their counts, the classes with >= shot + query images), or a ValueError."""
    for name, value, low in (("way", way, 2), ("shot", shot, 1), ("query", query, 1)):
        check_positive(name, value, integer=True, minimum=low)
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.dtype != torch.int64:
        raise ValueError(f"labels must be an int64 tensor of shape (N,), got "
                         f"{getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}")
    per_image = shot + query
    present, counts = torch.unique(labels, return_counts=True)
    usable = present[counts >= per_image]
    if usable.numel() < way:
        raise ValueError(f"a {way}-way {shot}-shot episode with {query} queries per class needs {way} classes of "
                         f">= {per_image} images; {split} has {usable.numel()} such classes "
                         f"({present.numel()} classes, at most {int(counts.max()) if counts.numel() else 0} images "
                         f"each): lower way, shot or query, or use a split with more images per class")
    return present, counts, usable


def sample_episodes(labels: torch.Tensor, *, episodes: int, way: int, shot: int, query: int,
                    seed: int = 0) -> Episodes:
    """Draw `episodes` N-way K-shot episodes from a split with int64 `labels` (N,).

    Each episode: `way` distinct classes, uniformly among the split's classes; for each, `shot` + `query`
    distinct images uniformly without replacement (the first `shot` are support, the rest query). Needs
    at least `way` classes with at least `shot` + `query` images each (classes with fewer are never
    drawn). Deterministic in `seed`: the same seed gives the same episodes, on the CPU whatever device
    `labels` are on (a split's labels on a GPU give the same CPU indices, which index it there too)."""
    check_positive("episodes", episodes, integer=True)
    check_seed(seed)
    present, counts, usable = _usable_classes(labels, way, shot, query, "the split")
    labels, counts, usable = labels.cpu(), counts.cpu(), usable.cpu()
    per_image = shot + query
    generator = torch.Generator().manual_seed(seed)
    # (U, M) table of each usable class's image indices, padded with -1
    order = torch.sort(labels, stable=True).indices
    sorted_labels = labels[order]
    class_start = torch.searchsorted(sorted_labels, usable)
    class_size = counts[counts >= per_image]
    width = int(class_size.max())
    column = torch.arange(width)
    table = order[(class_start[:, None] + column).clamp_max(labels.numel() - 1)]
    table = torch.where(column < class_size[:, None], table, torch.full_like(table, -1))      # (U, M)
    # classes: the first `way` of a random permutation of the usable classes, per episode
    chosen = torch.rand((episodes, usable.numel()), generator=generator).argsort(1)[:, :way]   # (E, way)
    # images: the first shot + query of a random permutation of each chosen class's images
    keys = torch.rand((episodes, way, width), generator=generator)
    keys = keys.masked_fill(column >= class_size[chosen].unsqueeze(-1), math.inf)           # padding sorts last
    picks = keys.argsort(-1)[..., :per_image]                                               # (E, way, K + Q)
    images = torch.gather(table[chosen], 2, picks)                                          # (E, way, K + Q)
    local = torch.arange(way).view(1, way, 1)
    return Episodes(support=images[..., :shot].reshape(episodes, way * shot),
                    query=images[..., shot:].reshape(episodes, way * query),
                    support_labels=local.expand(episodes, way, shot).reshape(episodes, way * shot),
                    query_labels=local.expand(episodes, way, query).reshape(episodes, way * query),
                    classes=usable[chosen], way=way, shot=shot)


def mean_confidence_interval(accuracies: torch.Tensor) -> tuple[float, float]:
    """(mean, half-width of the 95 % interval) of per-episode accuracies: 1.96 · std / √E
    (normal approximation, sample standard deviation; 0 for a single episode), as the few-shot
    tables report them."""
    values = torch.as_tensor(accuracies, dtype=torch.float64).flatten()
    if values.numel() == 0:
        raise ValueError("no episode accuracies to average; expected at least one")
    if not torch.isfinite(values).all():
        raise ValueError(f"episode accuracies must be finite numbers; got {int((~torch.isfinite(values)).sum())} "
                         f"that are not (nan or inf) among {values.numel()}")
    if values.numel() == 1:
        return float(values[0]), 0.0
    return float(values.mean()), float(1.96 * values.std() / math.sqrt(values.numel()))


__all__ = ["Episodes", "check_episodes_fit", "mean_confidence_interval", "sample_episodes"]
