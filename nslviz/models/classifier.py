"""Image classifiers = backbone µ_θ + head f_φ, one per method of MN Table 1 / Table 3.

    vanilla         µ_θ + cosine (τ·cos, no bias) or dot-product linear classifier
    vanilla_extra   vanilla with one extra hidden layer holding as many parameters as MN's dictionary
                    (MN Appendix A.3: S·(d + C) extra parameters, i.e. a hidden layer of width S)
    vanilla_ifilm   vanilla with iFiLM after the BatchNorms (MN eq. 4)
    mn              µ_θ + MetaNeighborhoodsHead (per-input finetuned classifier, MN eq. 1-3)
    mn_ifilm        both
    maxl            vanilla with an auxiliary head of ψ·C classes whose labels a generator learns (MAXL,
                    the baseline of MN Table 1; nslviz.maxl, trained by the trainer's label generator)

The head always runs in float32, also under bf16 autocast: the inner loop's closed-form gradient
and the cosine normalisations lose too much in bf16 (features are cast up before the head).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .._checks import check_choice, check_flags, check_fraction, check_positive
from .._precision import autocast_off, full_precision
from ..ifilm import IFILM_PLACEMENTS
from ..maxl import HIERARCHY, MAXLHead
from ..neighborhoods import CLASS_VALUE_KINDS, CLASSIFIERS, STEP_SIZES, MetaNeighborhoodsHead, classifier_logits
from .registry import build_backbone

METHODS = ("vanilla", "vanilla_extra", "vanilla_ifilm", "mn", "mn_ifilm", "maxl")
# where the *_ifilm methods put iFiLM: after every BatchNorm, or after the last ones only
METHOD_IFILM_PLACEMENTS = tuple(place for place in IFILM_PLACEMENTS if place != "none")


class CosineClassifier(nn.Module):
    """f_φ(z) = τ · ẑᵀŵ_c: cosine similarity to one prototype per class, learnable scale τ (init 10),
    no bias (MN official code, docs/official-code.md §A.3). The same function MetaNeighborhoodsHead
    finetunes per input."""

    def __init__(self, feature_dim: int, num_classes: int, scale_init: float = 10.0):
        super().__init__()
        self.weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(num_classes, feature_dim)))  # (C, d)
        self.scale = nn.Parameter(torch.tensor(float(scale_init)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return classifier_logits(features, self.weight, None, self.scale, "cosine")          # (B, C)


def _classifier(feature_dim: int, num_classes: int, classifier: str) -> nn.Module:
    return CosineClassifier(feature_dim, num_classes) if classifier == "cosine" else nn.Linear(feature_dim, num_classes)


class ExtraLayerHead(nn.Module):
    """MN Appendix A.3's control: a hidden layer of width `hidden` (ReLU) before the classifier, so
    that the vanilla model gets about as many extra parameters as MN's dictionary: hidden = S gives a
    head of d·S + S·C = S·(d + C) weights, the dictionary's count, in place of the d·C classifier (so
    d·C fewer extra than MN's, 0.2 % of them at S = 5000 on CIFAR-10). The hidden layer is an ordinary layer
    and is weight-decayed; only the classifier and its scale are not (as every method's classifier)."""

    def __init__(self, feature_dim: int, num_classes: int, hidden: int, classifier: str):
        super().__init__()
        self.hidden = nn.Linear(feature_dim, hidden, bias=False)
        self.classifier = _classifier(hidden, num_classes, classifier)

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        return list(self.classifier.parameters())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.relu(self.hidden(features)))


class ImageClassifier(nn.Module):
    """logits = f_φ(µ_θ(x)). `forward(x, return_details=True)` also returns the features and, for MN,
    the attention over the dictionary and the logits before finetuning; for MAXL the auxiliary logits."""

    def __init__(self, backbone: nn.Module, head: nn.Module, method: str, num_classes: int):
        super().__init__()
        self.backbone, self.head, self.method, self.num_classes = backbone, head, method, num_classes

    @property
    def is_meta_neighborhoods(self) -> bool:
        return isinstance(self.head, MetaNeighborhoodsHead)

    def forward(self, images: torch.Tensor, *, return_details: bool = False):
        features = full_precision(self.backbone(images))                           # (B, d) fp32 under autocast
        with autocast_off(features.device.type):
            if self.is_meta_neighborhoods:
                details = self.head(features, return_details=True)
                logits = details["logits"]
            else:
                logits = self.head(features)
                details = {"logits": logits, "base_logits": logits}
                if return_details and isinstance(self.head, MAXLHead):
                    details["aux_logits"] = self.head.auxiliary(features)          # (B, ψ·C)
        if not return_details:
            return logits
        return {**details, "features": features}

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        """The head: classifier, scale τ and, for MN, the dictionary, α and T (official code: the
        "memory" scope is excluded from weight decay; the vanilla baseline uses the same exclusions).
        vanilla_extra's hidden layer is decayed (`ExtraLayerHead`)."""
        own = getattr(self.head, "no_weight_decay_parameters", None)
        return [p for p in (own() if own else self.head.parameters()) if p.requires_grad]


def build_mn_head(feature_dim: int, num_classes: int, *, entries: int = 5000, temperature: float = 0.2,
                  learn_temperature: bool = False, entry_dropout: float = 0.5, classifier: str = "cosine",
                  values: str = "soft",
                  inner_steps: int = 1, step_size: str = "scalar", step_size_init: float = 0.05,
                  first_order: bool = False) -> MetaNeighborhoodsHead:
    """MN's classification head as the paper's image models use it (docs/official-code.md §A.2-§A.4):
    cosine attention with a fixed T = 0.2 over S entries, keys N(0, 0.05²), learnable soft values,
    50 % per-example entry dropout, a cosine classifier (τ init 10), one step of a learnable scalar
    α (init 0.05); `learn_temperature` learns T from there (appendix A.4's ablation). `build_image_model`
    puts it on a backbone; the clusters experiment uses it alone."""
    return MetaNeighborhoodsHead(feature_dim, num_classes, entries=entries, similarity="cosine",
                                 temperature=temperature, learn_temperature=learn_temperature,
                                 entry_dropout=entry_dropout, classifier=classifier,
                                 values=values, inner_steps=inner_steps, step_size=step_size,
                                 step_size_init=step_size_init, first_order=first_order)


def dot_mode_final_relu(backbone: str, classifier: str) -> bool:
    """Does the backbone end with a ReLU? Only with the dot classifier, and, as in the official code,
    only for the deep networks (ResNet, DenseNet, the NSL CNNs): the official 4-layer ConvNet has no
    dot-mode switch and never ends with a ReLU, nor does SphereNet-9 (its last layer is the SphereConv fc6)."""
    return classifier == "dot" and not backbone.startswith(("convnet", "spherenet"))


def build_image_model(method: str, backbone: str, num_classes: int, *, in_channels: int = 3,
                      image_size: int = 32, classifier: str = "cosine", entries: int = 5000,
                      temperature: float = 0.2, learn_temperature: bool = False, inner_steps: int = 1,
                      step_size: str = "scalar",
                      step_size_init: float = 0.05, entry_dropout: float = 0.5, first_order: bool = False,
                      values: str = "soft",
                      ifilm_placement: str = "all", ifilm_entries: int = 10, transition_ifilm: bool = True,
                      nsl: str = "none", nsl_options: dict | None = None,
                      hierarchy: int = HIERARCHY) -> ImageClassifier:
    """One model of MN Table 1/3 (or an NSL network with `nsl`), by name. Defaults are the paper's:
    cosine classifier, S = 5000 (the paper's CIFAR-10 and CINIC-10 size; 10000 for CIFAR-100 and
    Tiny-ImageNet), T = 0.2, one inner step, learnable scalar α (init 0.05 as coded),
    50% per-example entry dropout, iFiLM with S_l = 10 after every BatchNorm, learnable soft values
    (values="fixed": one-hot classes in contiguous blocks, the official `--fix_v=True`).
    transition_ifilm=False: DenseNet's transitions compute iFiLM and discard it, as the official code
    does (our default modulates them; only the densenet backbones take False). MAXL: ψ = `hierarchy`
    auxiliary classes per class."""
    check_choice("method", method, METHODS)
    check_choice("classifier", classifier, CLASSIFIERS)
    check_positive("num_classes", num_classes, integer=True, minimum=2)
    check_choice("ifilm_placement", ifilm_placement, METHOD_IFILM_PLACEMENTS)
    # the MN options are checked for every method, so that a mistyped value fails in a vanilla run too
    check_positive("entries S", entries, integer=True, minimum=1)
    check_positive("temperature T", temperature)
    check_positive("inner_steps", inner_steps, integer=True, minimum=1)
    check_choice("step_size", step_size, STEP_SIZES)
    check_positive("step_size_init", step_size_init)
    check_fraction("entry_dropout", entry_dropout)
    check_choice("values", values, CLASS_VALUE_KINDS)
    check_flags(first_order=first_order, learn_temperature=learn_temperature)
    check_positive("ifilm_entries", ifilm_entries, integer=True, minimum=1)
    check_positive("hierarchy", hierarchy, integer=True, minimum=1)
    ifilm = ifilm_placement if method.endswith("ifilm") else "none"
    check_flags(transition_ifilm=transition_ifilm)
    if not transition_ifilm and not backbone.startswith("densenet"):
        raise ValueError(f"transition_ifilm=False is the official DenseNet's transitions; backbone {backbone!r} "
                         f"has none (use a densenet40 backbone or leave it True)")
    densenet_options = {"transition_ifilm": transition_ifilm} if backbone.startswith("densenet") else {}
    net = build_backbone(backbone, in_channels=in_channels, image_size=image_size, ifilm=ifilm,
                         ifilm_entries=ifilm_entries, nsl=nsl, nsl_options=nsl_options,
                         final_relu=dot_mode_final_relu(backbone, classifier), **densenet_options)
    d = net.feature_dim
    if method.startswith("mn"):
        head = build_mn_head(d, num_classes, entries=entries, temperature=temperature,
                             learn_temperature=learn_temperature, entry_dropout=entry_dropout,
                             classifier=classifier, values=values, inner_steps=inner_steps,
                             step_size=step_size, step_size_init=step_size_init, first_order=first_order)
    elif method == "maxl":
        head = MAXLHead(_classifier(d, num_classes, classifier), _classifier(d, hierarchy * num_classes, classifier))
    elif method == "vanilla_extra":
        head = ExtraLayerHead(d, num_classes, hidden=entries, classifier=classifier)
    else:
        head = _classifier(d, num_classes, classifier)
    return ImageClassifier(net, head, method, num_classes)
