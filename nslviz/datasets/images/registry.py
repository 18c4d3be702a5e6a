"""The dataset registry and its containers: `ImageSplit` and `ImageDataset`, the `_register`
decorator with which each family module (cifar, imagenet, digit_sets, pacs, embedded, and
nslviz.datasets.glyphs) adds its loaders, `available_image_datasets` / `available_few_shot_datasets`,
and `load_image_dataset`, which checks a request and calls the named loader."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..._checks import check_choice, check_flags, check_positive, check_seed
from ...paths import data_root

LABEL_KINDS = ("fine", "coarse", "domain")


class DatasetError(ValueError):
    """A dataset's files are incomplete, damaged or inconsistent (raised while loading them): the
    message names the set, the file and how to mend it. A ValueError; the command line prints the
    message alone, as for a missing dataset, not its usage."""


# ----------------------------------------------------------------------------------------------
# containers


@dataclass
class ImageSplit:
    """One split: uint8 images (N, C, H, W), int64 labels (N,), and optional per-image extras
    (e.g. {"coarse_labels": (N,)} for CIFAR-100, {"domain": (N,)} for PACS)."""
    images: torch.Tensor
    labels: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 of shape ({self.images.shape[0]},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")
        for key, value in self.extra.items():
            if value.shape[:1] != self.labels.shape:
                raise ValueError(f"extra[{key!r}] has {value.shape[0]} rows, expected {len(self.labels)}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index) -> "ImageSplit":
        """The images at `index` (a slice, index tensor or boolean mask), in that order."""
        return ImageSplit(self.images[index].contiguous(), self.labels[index].contiguous(),
                          {key: value[index].contiguous() for key, value in self.extra.items()})

    def head(self, count: int) -> "ImageSplit":
        return self if count >= len(self) else self.subset(slice(0, count))

    def fingerprint(self) -> str:
        """Identity of the split: its size and labels in order (the images are not read: cheap for
        every set). A run resumes only on the splits it started with."""
        digest = hashlib.sha1(f"{len(self)} images {tuple(self.images.shape[1:])}\n".encode())
        digest.update(self.labels.numpy().tobytes())
        return digest.hexdigest()

    def in_memory(self) -> "ImageSplit":
        """The split itself (a FileSplit decodes its images here: `data.test.head(64).in_memory()`
        works for every set)."""
        return self


@dataclass
class ImageDataset:
    """A dataset's three splits and what a model needs to know about it.

    paper_augment: the `nslviz.datasets.augment.augment_batch` policy the paper runs use for its
    training images ("paper" = crop, flip, AutoAugment, Cutout as in the official MN code).
    extra_names: the class names of integer extras (e.g. {"coarse_labels": [...20 names]}).
    split_notes: how the splits were made (also in data/README.md).
    """
    name: str
    train: ImageSplit
    val: ImageSplit
    test: ImageSplit
    num_classes: int
    class_names: list[str]
    channels: int
    image_size: int
    paper_augment: str
    extra_names: dict[str, list[str]] = field(default_factory=dict)
    split_notes: str = ""

    def splits(self) -> dict[str, ImageSplit]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def fingerprint(self) -> str:
        """Identity of the three splits (each split's `fingerprint`), 16 hex digits."""
        parts = "".join(f"{name}:{split.fingerprint()}\n" for name, split in self.splits().items())
        return hashlib.sha1(parts.encode()).hexdigest()[:16]

    def summary(self) -> dict:
        """JSON-ready description (sizes, shape, classes), e.g. for a run's config.json."""
        return {"name": self.name, "num_classes": self.num_classes, "channels": self.channels,
                "image_size": self.image_size, "paper_augment": self.paper_augment,
                "sizes": {name: len(split) for name, split in self.splits().items()},
                "split_notes": self.split_notes}


# ----------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class _Source:
    loader: Callable
    paper_augment: str
    manual: str         # how to get the files by hand ({root} is replaced by the data root)
    downloadable: bool = False
    options: tuple[str, ...] = ()   # the keys of load_image_dataset's `options` it reads
    few_shot: bool = False          # class-disjoint splits (base / validation / novel classes)

    def how_to_get(self, name: str, root: Path) -> str:
        manual = self.manual.format(root=root)
        if self.downloadable:
            return (f"load_image_dataset({name!r}, {str(root)!r}, download=True) (on the command line: --download "
                    f"true), or {manual}")
        return f"{manual} (automatic download is not available for {name})"


_REGISTRY: dict[str, _Source] = {}


def _register(name: str, paper_augment: str, manual: str, downloadable: bool = False,
              options: tuple[str, ...] = (), few_shot: bool = False):
    def decorate(loader):
        _REGISTRY[name] = _Source(loader, paper_augment, manual, downloadable, options, few_shot)
        return loader
    return decorate


def available_image_datasets() -> list[str]:
    """Classification sets (train, val and test share the classes) accepted by `load_image_dataset`,
    in the order of MN Table 1, then the embedded sets."""
    return [name for name, source in _REGISTRY.items() if not source.few_shot]


def available_few_shot_datasets() -> list[str]:
    """Few-shot sets accepted by `load_image_dataset`: their train / val / test splits hold disjoint
    classes (base classes to learn from, validation classes, novel classes to test on), with labels
    numbered across the three (e.g. Mini-ImageNet: train 0-63, val 64-79, test 80-99)."""
    return [name for name, source in _REGISTRY.items() if source.few_shot]


@dataclass
class _Request:
    name: str
    root: Path
    val_size: int | None
    image_size: int | None
    label_kind: str
    download: bool
    limit: int | None
    seed: int
    options: dict

    def size(self, native: int) -> int:
        return self.image_size or native

    @property
    def cache_dir(self) -> Path:
        return self.root / self.name


def load_image_dataset(name: str, root: str | Path | None = None, *, val_size: int | None = None,
                       image_size: int | None = None, label_kind: str = "fine", download: bool = False,
                       limit: int | None = None, seed: int = 0, options: dict | None = None) -> ImageDataset:
    """Load an image dataset by name (see `available_image_datasets()` and data/README.md).

    root: the data folder (see data/README.md for each set's layout under it); None: $NSLVIZ_DATA,
        else the repository's data/ (as the trainer and the notebooks).
    val_size: images held out for validation; None = the paper's split (e.g. the last 5,000 of the
        CIFAR training set). For CINIC-10 it caps its own validation folder.
    image_size: side of the square images; None = 32 (64 for imagenet64, 84 for mini-imagenet, 224
        for imagenet, the crops of its files), as in the papers.
    label_kind: "fine" (default); "coarse" = the 20 CIFAR-100 superclasses (digits: 5 pairs of
        look-alike digits, DIGIT_COARSE_GROUPS); "domain" = PACS domains.
    download: fetch CIFAR-10/100, MNIST or SVHN with torchvision's downloaders when missing.
    limit: keep only the first `limit` images of every split (quick runs).
    seed: seeds every random split and ordering (splits of the same seed are identical everywhere).
    options: dataset-specific settings: synthetic (num_classes, train_size, test_size, noise,
        channels), pacs (split="paper" | "disjoint").
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown image dataset {name!r}; expected one of {', '.join(_REGISTRY)}")
    check_choice("label_kind", label_kind, LABEL_KINDS)
    check_flags(download=download)                  # "false" would count as True and go to the network
    if val_size is not None and _REGISTRY[name].few_shot:
        raise ValueError(f"{name} is a few-shot set whose validation split is a fixed set of classes; "
                         f"val_size must be None, got {val_size!r}")
    if val_size is not None:
        check_positive("val_size", val_size, integer=True, minimum=0)
    if image_size is not None:
        check_positive("image_size", image_size, integer=True, minimum=1)
    if limit is not None:
        check_positive("limit", limit, integer=True, minimum=1)
    check_seed(seed)
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"options must be a dict, got {type(options).__name__}")
    accepted = _REGISTRY[name].options
    unknown = sorted(set(options or {}) - set(accepted))
    if unknown:
        raise ValueError(f"{name} has no option(s) {unknown}; "
                         + (f"expected some of {', '.join(accepted)}" if accepted else "it takes no options"))
    if label_kind == "coarse" and name not in ("cifar100", "digits"):
        raise ValueError(f"label_kind='coarse' exists only for cifar100 and digits, not {name!r}")
    if label_kind == "domain" and name != "pacs":
        raise ValueError(f"label_kind='domain' exists only for pacs, not {name!r}")
    request = _Request(name, data_root(root), val_size, image_size, label_kind, bool(download), limit, seed,
                       dict(options or {}))
    try:
        dataset = _REGISTRY[name].loader(request)
    except DatasetError:
        raise
    except ValueError as error:                       # what the files hold, not how the function was called
        raise DatasetError(str(error)) from error
    for split_name, split in dataset.splits().items():
        if len(split) and (int(split.labels.min()) < 0 or int(split.labels.max()) >= dataset.num_classes):
            raise DatasetError(f"{name}: the {split_name} labels read from {request.root} range over "
                             f"[{int(split.labels.min())}, {int(split.labels.max())}], expected 0..{dataset.num_classes - 1} "
                             f"({dataset.num_classes} classes); the label files are not {name}'s or are corrupt "
                             f"(e.g. labels numbered from 0 where the files number them from 1, or the reverse)")
    return dataset
