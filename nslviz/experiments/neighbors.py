"""Notebook 05 and `python -m nslviz neighbors`: the analysis of the learned neighbors
(`nslviz.analysis.neighbors`, MN sec. 4.2, Fig. 5/6, App. A.8/A.9) run on trained run directories.

    analyze_neighbors(run_dir, vanilla_run_dir=...)   entry retrieval and sub-category discovery of an
                                                      MN run, next to a vanilla run of the same data
    subcategory_discovery(run_dir)                    MN App. A.9 on one run trained on coarse labels
    neighbors_group_dir(config)                       where notebook 05 keeps its runs
    check_analysis_options(k, embedding, ...)         notebook 05's analysis settings, before it trains
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._checks import check_choice, check_positive
from ..analysis.neighbors import (DEFAULT_K, EMBEDDINGS, EntryRetrieval, NeighborMap, Retrieval, SplitFeatures, embed,
                                  entry_classes, extract_features, load_run_features, random_rows,
                                  retrieve_for_entries, subcategory_report, subcategory_retrieval, umap_module)
from ..datasets.images import ImageDataset
from ..paper import MN_SUBCATEGORY_DISCOVERY
from ..paths import runs_root
from ..training.distributed import resolve_device
from ..training.rundir import load_run


def check_analysis_options(k: int, embedding: str, map_points: int, map_entries: int, grid_rows: int) -> None:
    """The analysis settings of notebook 05, checked in its set-up cell: a typo found only where they are
    used would stop the notebook after both runs have trained."""
    check_positive("k", k, integer=True, minimum=1)
    check_choice("embedding method", embedding, EMBEDDINGS)
    if embedding == "umap":
        umap_module()                                 # installed, or named now
    for name, value in (("map_points", map_points), ("map_entries", map_entries), ("grid_rows", grid_rows)):
        check_positive(name, value, integer=True, minimum=1)


def _check_coarse(split: SplitFeatures, label_kind: str, where: str) -> None:
    if label_kind != "coarse":
        raise ValueError(f"{where} was trained on label_kind={label_kind!r}; sub-category discovery needs a run "
                         "trained on coarse labels (TrainConfig(label_kind='coarse'), CLI --label-kind coarse)")
    if split.fine_labels is None:
        raise ValueError(f"{where} has no fine labels (extra['fine_labels']); expected cifar100 or digits")


@dataclass
class NeighborReport:
    """The analysis of one MN run (and optionally a vanilla run of the same data): extracted
    features, entry retrieval and sub-category discovery. `summary()` is JSON-ready."""
    run_dir: str
    method: str
    label_kind: str
    k: int
    data: ImageDataset
    features: dict[str, tuple[SplitFeatures, SplitFeatures]]     # method -> (train, test)
    keys: torch.Tensor | None = None                            # (S, d)
    entry_class: np.ndarray | None = None                       # (S,)
    retrieval: EntryRetrieval | None = None
    subcategory: dict[str, dict] = field(default_factory=dict)  # method -> subcategory_report
    notes: list[str] = field(default_factory=list)

    def neighbor_map(self, method: str = "tsne", *, max_points: int | None = 2000, max_entries: int | None = 1000,
                     seed: int = 0, max_iter: int = 1000) -> NeighborMap:
        """Fig. 5: embed (up to) `max_entries` keys with (up to) `max_points` random training features."""
        if self.keys is None:
            raise ValueError(f"run {self.run_dir!r} (method {self.method!r}) has no dictionary to map; "
                             "expected a Meta-Neighborhoods run")
        train = self.features[self.method][0]
        key_ids = random_rows(len(self.keys), max_entries, seed)
        data_ids = random_rows(len(train), max_points, seed + 1)
        data_rows = torch.as_tensor(data_ids, device=train.features.device)
        key_xy, data_xy = embed(self.keys[key_ids], train.features[data_rows], method, seed, max_iter=max_iter)
        return NeighborMap(key_xy, data_xy, self.entry_class[key_ids], train.labels.cpu().numpy()[data_ids],
                           key_ids, data_ids, list(self.data.class_names), method)

    def subcategory_retrieval(self, method: str, query_rows, k: int | None = None) -> Retrieval:
        """Fig. 6 for one of the report's runs ("mn", "vanilla", ...): the k nearest training images of
        each test image at `query_rows`, in the representation its kNN uses (A.9: attention for MN,
        features for vanilla); correct = same fine label."""
        if method not in self.features:
            raise ValueError(f"no run with method {method!r} in this report; expected one of {sorted(self.features)}")
        train, test = self.features[method]
        k = self.k if k is None else k
        check_positive("k", k, integer=True, minimum=1)
        space = "attention" if train.attention is not None else "features"
        return subcategory_retrieval(train, test, query_rows, space, k)

    def summary(self) -> dict:
        result = {"run_dir": self.run_dir, "method": self.method, "label_kind": self.label_kind, "k": self.k,
                  "dataset": self.data.name, "entries": None if self.keys is None else int(len(self.keys)),
                  "retrieval": None if self.retrieval is None else self.retrieval.summary(),
                  "subcategory": self.subcategory or None, "notes": self.notes}
        result["paper_subcategory"] = MN_SUBCATEGORY_DISCOVERY
        return result


def analyze_neighbors(run_dir: str | Path, vanilla_run_dir: str | Path | None = None, k: int = DEFAULT_K, *,
                      baseline_size: int | None = None, seed: int = 0, device: str = "cpu",
                      batch_size: int = 500) -> NeighborReport:
    """Load a run (MN for the entry analysis; any method for sub-category discovery) and, optionally,
    a vanilla run on the same data; extract train/test features once; retrieve each entry's k nearest
    test images (with the random-training-image baseline); and, for runs trained on coarse labels,
    the kNN accuracy on fine and coarse labels (MN App. A.8/A.9)."""
    check_positive("k", k, integer=True, minimum=1)
    device = resolve_device(device)
    model, config, data, (train, test) = load_run_features(run_dir, device, batch_size)
    if k > min(len(train), len(test)):           # before any retrieval or the second run's features
        raise ValueError(f"k={k} is more than the {len(test)} test images the entries retrieve from or the "
                         f"{len(train)} training images the kNN votes over ({str(run_dir)!r}); expected k <= "
                         f"{min(len(train), len(test))}")
    if vanilla_run_dir is not None and not model.is_meta_neighborhoods:
        raise ValueError(f"the first run {str(run_dir)!r} has method {config.method!r}, without a dictionary; "
                         f"expected the MN run first (run_dir, CLI --run-dir) and the vanilla run second "
                         f"(vanilla_run_dir, CLI --vanilla-run-dir)")
    report = NeighborReport(str(run_dir), config.method, config.label_kind, k, data, {config.method: (train, test)})
    if model.is_meta_neighborhoods:
        report.keys = model.head.dictionary.keys.detach()
        report.entry_class = entry_classes(model).cpu().numpy()
        report.retrieval = retrieve_for_entries(model, test, k, train_split=train, baseline_size=baseline_size,
                                                seed=seed)
    else:
        report.notes.append(f"method {config.method!r} has no dictionary: no entry retrieval")
    runs = [(config, train, test, str(run_dir))]
    if vanilla_run_dir is not None:
        vanilla_model, vanilla_config, vanilla_data, vanilla_features = load_run_features(vanilla_run_dir, device,
                                                                                          batch_size)
        if vanilla_model.is_meta_neighborhoods:
            raise ValueError(f"the run given as vanilla, {str(vanilla_run_dir)!r}, has method "
                             f"{vanilla_config.method!r}, with a dictionary; expected a run without one "
                             f"(vanilla) as vanilla_run_dir (CLI --vanilla-run-dir)")
        if vanilla_data.name != data.name or len(vanilla_data.test) != len(data.test):
            raise ValueError(f"the vanilla run {str(vanilla_run_dir)!r} uses {vanilla_data.name} "
                             f"({len(vanilla_data.test)} test images), the run {str(run_dir)!r} {data.name} "
                             f"({len(data.test)}); expected runs on the same data")
        if vanilla_config.method in report.features:
            raise ValueError(f"both runs have method {vanilla_config.method!r}; expected an MN run and a vanilla run")
        report.features[vanilla_config.method] = vanilla_features
        runs.append((vanilla_config, *vanilla_features, str(vanilla_run_dir)))
    if config.label_kind != "coarse" or train.fine_labels is None:
        report.notes.append(f"trained on label_kind={config.label_kind!r}: no sub-category discovery "
                            "(train with label_kind='coarse' on cifar100 or digits)")
        return report
    for run_config, run_train, run_test, where in runs:
        _check_coarse(run_train, run_config.label_kind, f"run {where!r}")
        report.subcategory[run_config.method] = subcategory_report(run_train, run_test, k)
    return report


def neighbors_group_dir(config) -> Path:
    """Default folder of notebook 05's runs: runs/<dataset>-<backbone>-<label_kind>-neighbors-seed<k>
    (kept apart from notebook 03's runs of the same dataset and backbone)."""
    return runs_root() / f"{config.dataset}-{config.backbone}-{config.label_kind}-neighbors-seed{config.seed}"


def subcategory_discovery(run_dir: str | Path, k: int = DEFAULT_K, *, representation: str = "paper",
                          device: str = "cpu", batch_size: int = 500) -> dict:
    """MN App. A.9 on a run directory trained with label_kind="coarse": kNN accuracy of the test set on
    the fine and the coarse labels, the training set as neighbors (see `subcategory_report`)."""
    device = resolve_device(device)
    model, config, data = load_run(run_dir, device=str(device))
    train = extract_features(model, data.train, batch_size=batch_size, device=device)
    test = extract_features(model, data.test, batch_size=batch_size, device=device)
    _check_coarse(train, config.label_kind, f"run {str(run_dir)!r}")
    return {"method": config.method, "run_dir": str(run_dir),
            **subcategory_report(train, test, k, representation=representation)}
