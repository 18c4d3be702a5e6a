"""nslviz: Meta-Neighborhoods and Neural Similarity Learning, to read, run and explore.

Meta-Neighborhoods (MN):
    NeighborAttention            ω(x, k_j), MN eq. (5)
    InducedDictionary            the learned neighbors {(k_j, v_j)}
    MetaNeighborhoodsHead        per-input finetuned classifier, MN eq. (1)-(3), batched in closed form
    FunctionalMetaNeighborhoods  the same around any small model (torch.func)
    MetaNeighborhoodsMLP         an MLP finetuned per input on an input-space dictionary (MN regression)
    IFiLM                        instance-wise FiLM after a BatchNorm, MN eq. (4)
    MLP                          the vanilla MLP of MN Table 2
    the pieces of the inner loop and of eq. (5): classifier_logits, entry_loss, inner_gradient,
    finetune_functional, SIMILARITIES, similarity_scores, entry_dropout_mask, ifilm_modules, ifilm_parameters

Neural Similarity Learning (NSL):
    NSConv2d                     convolution with a learned similarity WᵀMX: static / dynamic, DNS / UNS (eq. 1-5)
    SphereConv2d                 hyperspherical convolution (the dynamic predictor's layer)
    GlobalSimilarityConv2d       static global neural similarity: a similarity over the whole map (App. B.1)
    GlobalSimilarityAttention    dynamic global neural similarity / self-attention block (Appendix B)
    fold_static_nsl, nsl_regularization, make_conv

Notebooks: quick_mode, parameter_list / parameter_dict (list and dict parameters from papermill -p),
check_parameters (a papermill -p NAME the notebook does not have, or a value of the wrong kind,
stops the run).

Subpackages and modules (imported on first use): models (backbones by name), datasets, training (the
trainer, configs, run directories), experiments (one per notebook and command), analysis, viz (plotly
figures), estimators (scikit-learn), paper (the papers' numbers).
"""
from __future__ import annotations

import importlib
import os

from .parameters import check_parameters, parameter_dict, parameter_list, truth_value

# the layers, by the module that defines them: imported on first use, so `import nslviz` loads no torch
# and changes nothing in its host (huge pages for torch's CPU tensors, THP_MEM_ALLOC_ENABLE, are set by
# the command line's entry point, the Makefile, environment.yml and Binder's setup; docs/install.md)
_LAYERS = {
    "neighborhoods": ("FunctionalMetaNeighborhoods", "InducedDictionary", "MetaNeighborhoodsHead", "classifier_logits",
                      "entry_loss", "finetune_functional", "inner_gradient"),
    "similarity": ("SIMILARITIES", "NeighborAttention", "entry_dropout_mask", "similarity_scores"),
    "regression": ("MLP", "MetaNeighborhoodsMLP"),
    "ifilm": ("IFiLM", "ifilm_modules", "ifilm_parameters"),
    "nsl": ("GlobalSimilarityAttention", "GlobalSimilarityConv2d", "NSConv2d", "SphereConv2d", "fold_static_nsl", "make_conv", "nsl_regularization"),
}
_DEFINED_IN = {name: module for module, names in _LAYERS.items() for name in names}

__version__ = "0.1.0"


def quick_mode(quick: bool | None = None) -> bool:
    """Resolve a notebook's `quick` parameter: an explicit True/False wins (also as papermill's text,
    `-p quick false`, and 1/0), otherwise the environment variable NSLVIZ_QUICK=1 turns quick mode on
    (as `make test` does)."""
    if quick is None:
        return truth_value(os.environ.get("NSLVIZ_QUICK", "0")) is True
    if isinstance(quick, str) and truth_value(quick) is not None:
        return truth_value(quick)
    if isinstance(quick, (bool, int)) and quick in (0, 1):
        return bool(quick)
    raise ValueError(f"quick must be True or False (or None: follow NSLVIZ_QUICK), got {quick!r}")


_SUBMODULES = {"analysis", "datasets", "estimators", "experiments", "models", "nsl", "training", "viz", "ifilm",
               "regression", "paper", "neighborhoods", "similarity"}


def __getattr__(name: str):
    """`nslviz.NSConv2d`, `nslviz.viz`, ... import on first use (keeps `import nslviz` light)."""
    if name in _DEFINED_IN:
        value = getattr(importlib.import_module(f".{_DEFINED_IN[name]}", __name__), name)
        globals()[name] = value                                  # found directly from now on
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'nslviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_DEFINED_IN) | _SUBMODULES)


__all__ = [*_DEFINED_IN, "check_parameters", "parameter_dict", "parameter_list", "quick_mode"]
