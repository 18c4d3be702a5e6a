"""Test-time finetuning of a pretrained (static or dynamic) NSN on an episode's support set, NSL sec. 7.2
"Few-shot learning" and Appendix (Table 6), batched over episodes.

Per episode, a new N-way linear classifier (zeros) is trained on the support images with SGD
(lr 0.01, momentum 0.9, dampening 0.9, weight decay 1e-3, 100 epochs: the paper's recipe), and the
query images are classified with it:

    static NSN    M of every NSL layer (from its pretrained value, I) and the classifier are finetuned
    dynamic NSN   the classifier only: M(X) is predicted from the input, no layer is retrained
    plain CNN     the classifier only (the "finetuning baseline" of Table 6)

An epoch is one full-batch step over the support set (5-25 images; the paper gives no batch size).
The appendix says "on query sets"; the query labels are what is predicted, so this finetunes on the
support set. Deviation: BatchNorm keeps the pretrained statistics (see nslviz.training.episodic).

Vectorised: the E episodes of a chunk are one batch. Each carries its own M per layer ((E, K) for
DNS, (E, K, K) for UNS) under `torch.vmap`, so the convolutions run as grouped convolutions; the loss
is the sum of the episodes' mean losses, so every episode's SGD trajectory is exactly its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import vmap

from .._checks import check_positive
from .episodic import (FunctionalBackbone, Parameters, episode_accuracy, episode_loss, linear_logits,
                       zero_classifier)


@dataclass(frozen=True)
class FinetuneProtocol:
    """The non-MAML test-time recipe of NSL Table 6 (Appendix): SGD on the support set."""
    epochs: int = 100
    lr: float = 0.01
    momentum: float = 0.9
    dampening: float = 0.9
    weight_decay: float = 1e-3

    def __post_init__(self):
        check_positive("finetune epochs", self.epochs, integer=True, minimum=0)
        check_positive("finetune lr", self.lr)
        for name in ("momentum", "dampening", "weight_decay"):
            check_positive(f"finetune {name}", getattr(self, name), minimum=0)


@dataclass
class EpisodeAdaptation:
    """What finetuning gave each of E episodes."""
    accuracies: torch.Tensor       # (E,) query accuracy
    similarity: Parameters         # finetuned M per static NSL layer, (E, K) or (E, K, K); {} if M is not finetuned
    classifier: Parameters         # weight (E, way, D), bias (E, way)


def _features(network: FunctionalBackbone, images: torch.Tensor, similarity: Parameters) -> torch.Tensor:
    """images (E, S, C, H, W) -> (E, S, D); with per-episode M (E, ...) when `similarity` is not empty."""
    if similarity:
        return vmap(network.features)(images, similarity)
    return network.features(images.flatten(0, 1)).unflatten(0, images.shape[:2])


def finetune_episodes(network: FunctionalBackbone, support: torch.Tensor, support_labels: torch.Tensor,
                      query: torch.Tensor, query_labels: torch.Tensor, *, way: int, adapt_similarity: bool,
                      protocol: FinetuneProtocol = FinetuneProtocol()) -> EpisodeAdaptation:
    """Finetune on each episode's support set; the query accuracies and the finetuned parameters.

    support (E, S, C, H, W) float, support_labels (E, S) in [0, way); query (E, Q, C, H, W), query_labels
    (E, Q). adapt_similarity=True finetunes the static M of every NSL layer with the classifier (static
    NSN); False the classifier alone on fixed features (dynamic NSN, plain CNN)."""
    episodes = support.shape[0]
    similarity = {}
    if adapt_similarity:
        if not network.similarity_names:
            raise ValueError("adapt_similarity=True needs a network with static NSL layers (nsl='static_dns' or "
                             "'static_uns'); plain and dynamic networks finetune the classifier only")
        similarity = {name: m.expand(episodes, *m.shape).clone().requires_grad_()
                      for name, m in network.initial_similarity().items()}          # (E, K) or (E, K, K) per layer
    classifier = {name: value.requires_grad_()
                  for name, value in zero_classifier(network, way, episodes).items()}
    optimizer = torch.optim.SGD([*similarity.values(), *classifier.values()], lr=protocol.lr,
                                momentum=protocol.momentum, dampening=protocol.dampening,
                                weight_decay=protocol.weight_decay)
    fixed_features = None
    if not adapt_similarity:
        with torch.no_grad():
            fixed_features = _features(network, support, {})                         # (E, S, D)
    for _ in range(protocol.epochs):
        features = fixed_features if fixed_features is not None else _features(network, support, similarity)
        loss = episode_loss(linear_logits(features, classifier), support_labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        similarity = {name: value.detach() for name, value in similarity.items()}
        classifier = {name: value.detach() for name, value in classifier.items()}
        logits = linear_logits(_features(network, query, similarity), classifier)    # (E, Q, way)
        return EpisodeAdaptation(episode_accuracy(logits, query_labels), similarity, classifier)


__all__ = ["EpisodeAdaptation", "FinetuneProtocol", "finetune_episodes"]
