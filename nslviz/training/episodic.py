"""What the few-shot learners share: a pretrained backbone as a function of its static similarity M,
an episode's images on the device, and the linear N-way classifier retrained in every episode.

`FunctionalBackbone(backbone).features(images, similarity)` runs the backbone with the static DNS masks
M given as tensors (torch.func.functional_call), so a batch of episodes can each carry their own M
under `torch.vmap`, and gradients reach M without touching the module. Every other weight is frozen
(detached) and BatchNorm uses the running statistics of pretraining (eval mode): an episode's 5-25
support images are too few to estimate them, and with fixed statistics every image is classified
on its own.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from ..datasets.augment import to_float
from ..nsl import nsl_layers

Parameters = dict[str, torch.Tensor]


class FunctionalBackbone:
    """A trained backbone (images (B, C, H, W) in [0, 1] -> features (B, D)) as a pure function of
    its static similarity parameters (NSL sec. 3.2: M_s of each static NSConv2d). `similarity=False`
    freezes M too (a static NSN at M = I treated as the plain CNN it equals)."""

    def __init__(self, backbone: nn.Module, similarity: bool = True):
        self.backbone = backbone.eval()
        self.similarity_names = [f"{name}.similarity" for name, layer in nsl_layers(backbone).items()
                                 if not layer.dynamic] if similarity else []
        self.frozen = {name: parameter.detach() for name, parameter in backbone.named_parameters()}
        self.feature_dim = int(backbone.feature_dim)
        reference = next(iter(self.frozen.values()))
        self.device, self.dtype = reference.device, reference.dtype

    def initial_similarity(self) -> Parameters:
        """Copies of the pretrained M of every static NSL layer ({} for plain and dynamic networks)."""
        return {name: self.frozen[name].clone() for name in self.similarity_names}

    def features(self, images: torch.Tensor, similarity: Parameters | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, D) with the given M (the pretrained ones where None); differentiable in M."""
        params = {**self.frozen, **similarity} if similarity else self.frozen
        return functional_call(self.backbone, params, (images,))


def episode_images(images: torch.Tensor, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 split images (N, C, H, W) gathered at index (E, S) -> float (E, S, C, H, W) in [0, 1] on `device`."""
    return to_float(images[index.cpu()].to(device, non_blocking=True))


def zero_classifier(network: FunctionalBackbone, way: int, *episodes: int) -> Parameters:
    """A fresh N-way linear classifier on the network's features, all zeros (every class equally likely,
    no seed needed): weight (*episodes, way, D), bias (*episodes, way)."""
    options = dict(device=network.device, dtype=network.dtype)
    return {"weight": torch.zeros(*episodes, way, network.feature_dim, **options),
            "bias": torch.zeros(*episodes, way, **options)}


def linear_logits(features: torch.Tensor, classifier: Parameters) -> torch.Tensor:
    """features (..., S, D) under weight (..., way, D) and bias (..., way) -> logits (..., S, way)."""
    return features @ classifier["weight"].transpose(-1, -2) + classifier["bias"].unsqueeze(-2)


def episode_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Σ over episodes of each episode's mean cross-entropy: logits (E, S, way), labels (E, S) -> ().
    Summing keeps every episode's gradient its own (a mean over episodes would scale it by 1/E)."""
    return F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="sum") / labels.shape[-1]


def episode_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(E, S, way), (E, S) -> (E,) fraction of correct predictions per episode."""
    return (logits.argmax(-1) == labels).float().mean(-1)


__all__ = ["FunctionalBackbone", "episode_accuracy", "episode_images", "episode_loss", "linear_logits",
           "zero_classifier"]
