"""Image classification datasets by name, as uint8 tensors: MN Table 1 (and NSL Table 4).

    data = load_image_dataset("cifar100", "data", label_kind="fine")
    data.train.images   # uint8 (45000, 3, 32, 32), contiguous, CPU
    data.train.labels   # int64 (45000,)
    data.train.extra["coarse_labels"]

Every set is read from its real on-disk format with our own readers (Python pickles, IDX, .mat,
.npz, PNG/JPEG folders; not torchvision's dataset classes, which verify MD5 sums) into memory once.
Splits follow the paper (MN Appendix A.1) and the official code (docs/official-code.md §A.7); each
loader's docstring and data/README.md state the split. Images are resized once at load time to
32×32 (64×64 for imagenet64) with antialiased bilinear interpolation, as the paper does for every set.
Folder sets (CINIC-10, Tiny-ImageNet, MNIST-M, PACS) are decoded once and cached as a tensor file
under root/<name>/, rebuilt when their files change (count, sizes and modification times).

Embedded, offline sets: `digits` (scikit-learn's 1,797 handwritten 8×8 digits, resized) and
`synthetic` (generated oriented gratings, see `make_synthetic_images`).

`limit` keeps the first `limit` images of every split. Splits that come class-sorted from disk are
stored in a seeded class-interleaved order, so any prefix has the split's class proportions.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import socket
import sys
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..._checks import check_choice, check_positive, check_seed
from ..._io import atomic_torch_save

CACHE_FORMAT = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
LABEL_KINDS = ("fine", "coarse", "domain")


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
            return f"load_image_dataset({name!r}, {str(root)!r}, download=True), or {manual}"
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


def load_image_dataset(name: str, root: str | Path = "data", *, val_size: int | None = None,
                       image_size: int | None = None, label_kind: str = "fine", download: bool = False,
                       limit: int | None = None, seed: int = 0, options: dict | None = None) -> ImageDataset:
    """Load an image dataset by name (see `available_image_datasets()` and data/README.md).

    root: the data folder (see data/README.md for each set's layout under it).
    val_size: images held out for validation; None = the paper's split (e.g. the last 5,000 of the
        CIFAR training set). For CINIC-10 it caps its own validation folder.
    image_size: side of the square images; None = 32 (64 for imagenet64), as in the paper.
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
    request = _Request(name, Path(root), val_size, image_size, label_kind, bool(download), limit, seed,
                       dict(options or {}))
    dataset = _REGISTRY[name].loader(request)
    for split_name, split in dataset.splits().items():
        if len(split) and (int(split.labels.min()) < 0 or int(split.labels.max()) >= dataset.num_classes):
            raise ValueError(f"{name}: the {split_name} labels read from {request.root} range over "
                             f"[{int(split.labels.min())}, {int(split.labels.max())}], expected 0..{dataset.num_classes - 1} "
                             f"({dataset.num_classes} classes); the label files are not {name}'s or are corrupt "
                             f"(e.g. labels numbered from 0 where the files number them from 1, or the reverse)")
    return dataset


# ----------------------------------------------------------------------------------------------
# shared helpers: resizing, ordering, splits, errors


def resize_images(images: torch.Tensor, size: int, *, chunk: int = 4096) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) to (N, C, size, size) with antialiased bilinear interpolation
    (rounded), in chunks of `chunk` images; returned unchanged (contiguous) when already that size."""
    if images.shape[-2:] == (size, size):
        return images.contiguous()
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk].float()
        block = F.interpolate(block, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start:start + chunk] = block.round_().clamp_(0, 255).to(torch.uint8)
    return out


def stratified_order(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded permutation of range(N) whose every prefix holds each class in proportion to its
    size (the i-th image of a class of n sits at fraction (i + ½)/n), so that a prefix is a
    stratified sample: held-out splits and `limit` take prefixes of it."""
    count = labels.shape[0]
    if count == 0:
        return torch.zeros(0, dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(count, generator=generator)
    label = labels[shuffled]
    by_class = torch.sort(label, stable=True).indices                                 # class-major, random within
    class_sizes = torch.bincount(label)
    class_start = torch.cumsum(class_sizes, 0) - class_sizes
    rank = torch.empty(count, dtype=torch.int64)
    rank[by_class] = torch.arange(count) - class_start[label[by_class]]               # rank within its class
    position = (rank.double() + 0.5) / class_sizes[label].double()
    return shuffled[torch.sort(position, stable=True).indices]


def _check_held_out(request: _Request, held_out: int, total: int, what: str = "training set") -> None:
    """A validation split of `held_out` must leave training images."""
    if held_out >= total:
        raise ValueError(f"{request.name}: val_size {held_out} leaves no training images (the {what} under "
                         f"{request.root} has {total}); pass a smaller val_size, or check that the files are "
                         f"complete")


def _split_last(request: _Request, split: ImageSplit, count: int) -> tuple[ImageSplit, ImageSplit]:
    """(all but the last `count`, the last `count`), e.g. CIFAR's first 45k / last 5k."""
    _check_held_out(request, count, len(split))
    cut = len(split) - count
    return split.subset(slice(0, cut)), split.subset(slice(cut, None))


def _missing(request: _Request, expected: list[Path], what: str, searched: list[Path] = ()) -> FileNotFoundError:
    """The error for absent files: the dataset, what is missing, where it was expected, how to get it."""
    where = "\n  ".join(str(path) for path in expected)
    also = f"\nAlso searched: {', '.join(str(path) for path in searched)}" if searched else ""
    how = _REGISTRY[request.name].how_to_get(request.name, request.root)
    return FileNotFoundError(f"{request.name}: {what} not found. Expected:\n  {where}{also}\nHow to get it: {how}")


def _find_folder(request: _Request, candidates: list[Path], required: list[str | tuple[str, ...]],
                 what: str) -> Path:
    """The first candidate folder that holds every required entry (a tuple = any one of them);
    with download=True and a downloader, fetch the set into the first candidate and look again."""
    def complete(folder: Path) -> bool:
        return all(any((folder / name).exists() for name in (entry if isinstance(entry, tuple) else (entry,)))
                   for entry in required)

    for attempt in range(2):
        for folder in candidates:
            if complete(folder):
                return folder
        if attempt == 0 and request.download and _REGISTRY[request.name].downloadable:
            _download(request)
            continue
        break
    expected = [candidates[0] / (entry[0] if isinstance(entry, tuple) else entry) for entry in required]
    raise _missing(request, expected, what, searched=candidates[1:])


@contextmanager
def _reading(request: _Request, path: Path):
    """Turn a failure to read `path` into an error that names the dataset, the file and what to do:
    a truncated, corrupt or foreign file (any parser's error) is a ValueError advising to get it
    again; a file the system cannot read (permissions, an I/O error) is an OSError saying so, with
    no advice to delete it; a missing file stays a FileNotFoundError; an error that already names
    the dataset passes unchanged."""
    try:
        yield
    except FileNotFoundError:
        raise
    except ValueError as error:
        if str(error).startswith(f"{request.name}:"):
            raise
        raise _damaged(request, path, error) from error
    except OSError as error:
        if error.errno is not None:                  # the system's own error: permissions, the disk
            raise OSError(error.errno, f"{request.name}: cannot read {path} ({error.strerror}); check the "
                                       f"file's permissions and the disk") from error
        raise _damaged(request, path, error) from error   # e.g. gzip's or PIL's "truncated" errors
    except Exception as error:                       # noqa: BLE001 - every parser has its own errors
        raise _damaged(request, path, error) from error


def _damaged(request: _Request, path: Path, error: Exception) -> ValueError:
    how = _REGISTRY[request.name].how_to_get(request.name, request.root)
    return ValueError(f"{request.name}: cannot read {path} ({type(error).__name__}: {error}). The file is "
                      f"truncated, corrupt or not in the expected format; delete it and get it again. "
                      f"How to get it: {how}")


def _read_pickle(request: _Request, path: Path, required: tuple[str, ...] = ()) -> dict:
    """A pickled dict (Python 2 pickles of CIFAR/ImageNet64 included), with str keys and names;
    `required`: keys it must hold."""
    with _reading(request, path), open(path, "rb") as handle:
        data = pickle.load(handle, encoding="latin1")
    if not isinstance(data, dict):
        raise ValueError(f"{request.name}: {path} should hold a pickled dict, it holds a {type(data).__name__}; "
                         f"delete it and get it again")
    def text(value):
        return value.decode() if isinstance(value, bytes) else value

    data = {text(key): ([text(item) for item in value] if isinstance(value, list) else value)
            for key, value in data.items()}
    missing = [key for key in required if key not in data]
    if missing:
        raise ValueError(f"{request.name}: {path} lacks the entries {missing} (it holds {sorted(data)}); it is not "
                         f"a {request.name} file, or it is corrupt: delete it and get it again")
    return data


def _assemble(request: _Request, train: ImageSplit, val: ImageSplit, test: ImageSplit, *, class_names,
              native_size: int, split_notes: str, extra_names=None) -> ImageDataset:
    """Apply `limit`, resize to the requested size and wrap the splits (array-backed sets)."""
    size = request.size(native_size)
    splits = []
    for split in (train, val, test):
        split = split.head(request.limit) if request.limit else split
        splits.append(ImageSplit(resize_images(split.images, size), split.labels.contiguous(), split.extra))
    return ImageDataset(request.name, *splits, num_classes=len(class_names), class_names=list(class_names),
                        channels=int(train.images.shape[1]), image_size=size,
                        paper_augment=_REGISTRY[request.name].paper_augment,
                        extra_names=dict(extra_names or {}), split_notes=split_notes)


def _labels(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.int64))


# ----------------------------------------------------------------------------------------------
# downloads (torchvision's downloaders: CIFAR, MNIST, SVHN)


def _download(request: _Request) -> None:
    """Fetch a set with torchvision's download utilities (MD5-checked) into the data root. Any
    failure (no network, a timeout, a bad checksum) becomes a ConnectionError that says what to do."""
    from torchvision.datasets import CIFAR10, CIFAR100, MNIST, SVHN
    from torchvision.datasets.utils import download_and_extract_archive, download_url

    root = request.root
    root.mkdir(parents=True, exist_ok=True)
    jobs = {
        "cifar10": lambda: download_and_extract_archive(CIFAR10.url, root, filename=CIFAR10.filename,
                                                        md5=CIFAR10.tgz_md5),
        "cifar100": lambda: download_and_extract_archive(CIFAR100.url, root, filename=CIFAR100.filename,
                                                         md5=CIFAR100.tgz_md5),
        "mnist": lambda: _download_mnist(MNIST, download_and_extract_archive, root / "MNIST" / "raw"),
        "svhn": lambda: [download_url(url, root / "svhn", filename, md5)
                         for url, filename, md5 in (SVHN.split_list["train"], SVHN.split_list["test"])],
    }
    print(f"{request.name}: downloading into {root} ...", file=sys.stderr)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        jobs[request.name]()
    except Exception as error:                                                      # noqa: BLE001
        manual = _REGISTRY[request.name].manual.format(root=root)
        raise ConnectionError(f"{request.name}: download failed ({type(error).__name__}: {error}). "
                              f"Without network access, get the files by hand: {manual}") from error
    finally:
        socket.setdefaulttimeout(previous)


def _download_mnist(mnist_class, download_and_extract_archive, folder: Path) -> None:
    for filename, md5 in mnist_class.resources:
        errors = []
        for mirror in mnist_class.mirrors:
            try:
                download_and_extract_archive(mirror + filename, folder, filename=filename, md5=md5)
                break
            except Exception as error:                                              # noqa: BLE001
                errors.append(f"{mirror}: {error}")
        else:
            raise OSError(f"every mirror failed for {filename}: " + "; ".join(errors))


# ----------------------------------------------------------------------------------------------
# folder sets: decode once, cache as a tensor file


def _fingerprint(files: list[Path], root: Path) -> str:
    """Identity of a list of files: their paths (relative to the data root), sizes and
    modification times, in order."""
    digest = hashlib.sha1(f"format {CACHE_FORMAT}; {len(files)} files\n".encode())
    for path in files:
        stat = path.stat()
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
        digest.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _read_image(request: _Request, path: Path, mode: str) -> np.ndarray:
    from PIL import Image
    with _reading(request, path), Image.open(path) as image:
        return np.asarray(image.convert(mode))


def _decode_images(request: _Request, files: list[Path], size: int, mode: str) -> torch.Tensor:
    """Decode image files (PIL, a few threads) to uint8 (N, C, size, size): chunk by chunk, images
    of equal shape stacked and resized together."""
    from tqdm.auto import tqdm
    channels = 1 if mode == "L" else 3
    out = torch.empty((len(files), channels, size, size), dtype=torch.uint8)
    chunk = 2048
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(files), desc=request.name, unit="img",
                                                    disable=len(files) < 5000) as progress:
        for start in range(0, len(files), chunk):
            arrays = list(pool.map(lambda path: _read_image(request, path, mode), files[start:start + chunk]))
            by_shape: dict[tuple, list[int]] = {}
            for position, array in enumerate(arrays):
                by_shape.setdefault(array.shape, []).append(position)
            for positions in by_shape.values():
                stacked = torch.from_numpy(np.stack([arrays[p] for p in positions]))   # (n, H, W[, C])
                stacked = stacked.unsqueeze(-1) if stacked.dim() == 3 else stacked
                rows = torch.tensor(positions) + start
                out[rows] = resize_images(stacked.permute(0, 3, 1, 2), size)
            progress.update(len(arrays))
    return out


def _load_cached_images(request: _Request, files: list[Path], size: int, mode: str,
                        wanted: torch.Tensor | None) -> torch.Tensor:
    """Images of `files[wanted]` (all files if wanted is None) at size×size. The whole list is cached
    under root/<name>/; with `limit` only the wanted files are decoded (and nothing is written)."""
    cache = request.cache_dir / f"images-{size}px-{mode}.pt"
    fingerprint = _fingerprint(files, request.root)
    if cache.exists():
        try:
            stored = torch.load(cache, weights_only=True)
        except Exception:                                                           # noqa: BLE001
            stored = None                                                           # torn or foreign file: rebuild
        if isinstance(stored, dict) and stored.get("fingerprint") == fingerprint:
            images = stored["images"]
            return images if wanted is None else images[wanted]
    if wanted is not None and len(wanted) < len(files):
        return _decode_images(request, [files[i] for i in wanted.tolist()], size, mode)
    images = _decode_images(request, files, size, mode)
    atomic_torch_save(cache, {"fingerprint": fingerprint, "images": images, "files": len(files)})
    print(f"{request.name}: cached {len(files)} decoded images in {cache}", file=sys.stderr)
    return images


def _folder_dataset(request: _Request, files: list[Path], splits: dict[str, tuple[torch.Tensor, torch.Tensor, dict]],
                    *, mode: str, class_names, split_notes: str, extra_names=None,
                    native_size: int = 32) -> ImageDataset:
    """splits: name → (file index (n,), labels (n,), extras) in the split's final order; images are
    resized to `request.image_size`, else to `native_size` (the paper's size for the set)."""
    size = request.size(native_size)
    if request.limit:
        splits = {name: (index[:request.limit], labels[:request.limit],
                         {key: value[:request.limit] for key, value in extra.items()})
                  for name, (index, labels, extra) in splits.items()}
        wanted = torch.unique(torch.cat([index for index, _, _ in splits.values()]))   # sorted
    else:
        wanted = None
    images = _load_cached_images(request, files, size, mode, wanted)
    built = {}
    for name, (index, labels, extra) in splits.items():
        rows = index if wanted is None else torch.searchsorted(wanted, index)
        built[name] = ImageSplit(images[rows].contiguous(), labels.contiguous(), extra)
    return ImageDataset(request.name, built["train"], built["val"], built["test"], num_classes=len(class_names),
                        class_names=list(class_names), channels=1 if mode == "L" else 3, image_size=size,
                        paper_augment=_REGISTRY[request.name].paper_augment,
                        extra_names=dict(extra_names or {}), split_notes=split_notes)


def _image_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)


def _ordered(index: torch.Tensor, labels: torch.Tensor, seed: int, extra=None):
    """(index, labels, extra) reordered by stratified_order(labels, seed)."""
    order = stratified_order(labels, seed)
    return index[order], labels[order], {key: value[order] for key, value in (extra or {}).items()}


# ----------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (python pickles)


@_register("cifar10", "paper", downloadable=True,
           manual="download "
               "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and run "
               "`tar -xzf cifar-10-python.tar.gz -C {root}` (gives {root}/cifar-10-batches-py/)")
def _load_cifar10(request: _Request) -> ImageDataset:
    """CIFAR-10 from cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: train = the
    first 45,000 training images, val = the last 5,000 (`val_size`), test = the 10,000 test images."""
    batches = [f"data_batch_{i}" for i in range(1, 6)]
    folder = _find_folder(request, [request.root / "cifar-10-batches-py",
                                    request.root / "cifar10" / "cifar-10-batches-py"],
                          batches + ["test_batch"], "the CIFAR-10 python batches")

    def read(names):
        parts = [_read_pickle(request, folder / name, ("data", "labels")) for name in names]
        images = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts]).reshape(-1, 3, 32, 32)
        return ImageSplit(torch.from_numpy(images), _labels(np.concatenate([p["labels"] for p in parts])))

    meta = folder / "batches.meta"
    names = _read_pickle(request, meta)["label_names"] if meta.exists() else CIFAR10_CLASSES
    train, val = _split_last(request, read(batches), 5000 if request.val_size is None else request.val_size)
    return _assemble(request, train, val, read(["test_batch"]), class_names=names, native_size=32,
                     split_notes="train = first 45k of the training batches, val = last 5k, test = test_batch")


@_register("cifar100", "paper", downloadable=True,
           manual="download "
               "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and run "
               "`tar -xzf cifar-100-python.tar.gz -C {root}` (gives {root}/cifar-100-python/)")
def _load_cifar100(request: _Request) -> ImageDataset:
    """CIFAR-100 from cifar-100-python/{train, test, meta}: 100 fine classes (or, with
    label_kind="coarse", the 20 superclasses); extras "coarse_labels" and "fine_labels" always.
    Split as CIFAR-10: first 45,000 / last 5,000 / test 10,000."""
    folder = _find_folder(request, [request.root / "cifar-100-python", request.root / "cifar100" / "cifar-100-python"],
                          ["train", "test"], "the CIFAR-100 python files")

    def read(name):
        part = _read_pickle(request, folder / name, ("data", "fine_labels", "coarse_labels"))
        images = np.asarray(part["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        fine, coarse = _labels(part["fine_labels"]), _labels(part["coarse_labels"])
        labels = coarse if request.label_kind == "coarse" else fine
        return ImageSplit(torch.from_numpy(images), labels.clone(), {"coarse_labels": coarse, "fine_labels": fine})

    meta_path = folder / "meta"
    meta = _read_pickle(request, meta_path) if meta_path.exists() else {}
    fine_names = meta.get("fine_label_names", [f"class_{i}" for i in range(100)])
    coarse_names = meta.get("coarse_label_names", [f"superclass_{i}" for i in range(20)])
    train, val = _split_last(request, read("train"), 5000 if request.val_size is None else request.val_size)
    return _assemble(request, train, val, read("test"),
                     class_names=coarse_names if request.label_kind == "coarse" else fine_names, native_size=32,
                     extra_names={"coarse_labels": coarse_names, "fine_labels": fine_names},
                     split_notes="train = first 45k of the training set, val = last 5k, test = test set")


# ----------------------------------------------------------------------------------------------
# CINIC-10 (PNG folders train/valid/test)


@_register("cinic10", "paper",
           manual="download https://datashare.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz and run "
               "`mkdir -p {root}/cinic-10 && tar -xzf CINIC-10.tar.gz -C {root}/cinic-10`")
def _load_cinic10(request: _Request) -> ImageDataset:
    """CINIC-10 from cinic-10/{train,valid,test}/<class>/*.png: its own 90k/90k/90k splits (as in
    the official code); `val_size` keeps a stratified part of the validation folder."""
    folder = _find_folder(request, [request.root / "cinic-10", request.root / "CINIC-10", request.root / "cinic10"],
                          ["train", "valid", "test"], "the CINIC-10 image folders")
    classes = sorted(path.name for path in (folder / "train").iterdir() if path.is_dir())
    files, splits = [], {}
    for split, part in (("train", "train"), ("val", "valid"), ("test", "test")):
        start, labels = len(files), []
        for label, name in enumerate(classes):
            class_dir = folder / part / name
            if not class_dir.is_dir():
                raise _missing(request, [class_dir], f"the class folder {name!r} of {part}/")
            found = _image_files(class_dir)
            files += found
            labels += [label] * len(found)
        index, labels = torch.arange(start, len(files)), _labels(labels)
        index, labels, _ = _ordered(index, labels, request.seed)
        if split == "val" and request.val_size is not None:
            index, labels = index[:request.val_size], labels[:request.val_size]
        splits[split] = (index, labels, {})
    return _folder_dataset(request, files, splits, mode="RGB", class_names=classes,
                           split_notes="CINIC-10's own train / valid / test folders")


# ----------------------------------------------------------------------------------------------
# Tiny-ImageNet


@_register("tiny-imagenet", "paper",
           manual="download http://cs231n.stanford.edu/tiny-imagenet-200.zip and run "
               "`unzip tiny-imagenet-200.zip -d {root}` (gives {root}/tiny-imagenet-200/)")
def _load_tiny_imagenet(request: _Request) -> ImageDataset:
    """Tiny-ImageNet (200 classes, 64×64 JPEG, resized to 32×32 as in the paper) from
    tiny-imagenet-200/: test = the official val folder (10,000 labelled images); val = a stratified,
    seeded 10,000 (`val_size`) held out of the 100,000 training images, train = the other 90,000.
    Deviation: the official code used the val folder as both validation and test set, which
    selects the checkpoint on the test set; here the two are disjoint. Labels: wnids sorted."""
    folder = _find_folder(request, [request.root / "tiny-imagenet-200",
                                    request.root / "tiny-imagenet" / "tiny-imagenet-200"],
                          ["wnids.txt", "train", "val/val_annotations.txt", "val/images"],
                          "the Tiny-ImageNet folder")
    wnids = sorted((folder / "wnids.txt").read_text().split())
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    words = {}
    if (folder / "words.txt").exists():
        for line in (folder / "words.txt").read_text().splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid] = text.split(",")[0].strip()
    files, train_labels = [], []
    for wnid in wnids:
        found = _image_files(folder / "train" / wnid / "images") if (folder / "train" / wnid / "images").is_dir() else []
        if not found:
            raise _missing(request, [folder / "train" / wnid / "images"], f"the training images of class {wnid}")
        files += found
        train_labels += [label_of[wnid]] * len(found)
    test_labels = []
    test_start = len(files)
    for line in (folder / "val" / "val_annotations.txt").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        if parts[1] not in label_of:
            raise ValueError(f"tiny-imagenet: {folder / 'val' / 'val_annotations.txt'} names {parts[1]!r}, "
                             "which is not in wnids.txt")
        files.append(folder / "val" / "images" / parts[0])
        test_labels.append(label_of[parts[1]])
    missing = [path for path in files[test_start:] if not path.exists()]
    if missing:
        raise _missing(request, missing[:5], f"{len(missing)} validation images listed in val_annotations.txt")
    train_labels = _labels(train_labels)
    order = stratified_order(train_labels, request.seed)
    held_out = 10000 if request.val_size is None else request.val_size
    _check_held_out(request, held_out, len(order))
    splits = {"train": (order[held_out:], train_labels[order[held_out:]], {}),
              "val": (order[:held_out], train_labels[order[:held_out]], {}),
              "test": (torch.arange(test_start, len(files)), _labels(test_labels), {})}
    return _folder_dataset(request, files, splits, mode="RGB", class_names=[words.get(w, w) for w in wnids],
                           split_notes="train = 90k of the training images, val = a stratified 10k held out of "
                                       "them (seeded), test = the official val folder")


# ----------------------------------------------------------------------------------------------
# Downsampled ImageNet 64×64


@_register("imagenet64", "paper",
           manual="register at https://image-net.org/download-images.php, download 'Downsampled ImageNet "
               "64x64' (Imagenet64_train_part1_npz.zip, Imagenet64_train_part2_npz.zip and "
               "Imagenet64_val_npz.zip) and unzip all three into {root}")
def _load_imagenet64(request: _Request) -> ImageDataset:
    """Downsampled ImageNet 64×64 (Chrabaszcz et al. 2017), 1,000 classes, kept at 64×64, as
    downloaded: Imagenet64_train_part1_npz/train_data_batch_1..5.npz,
    Imagenet64_train_part2_npz/train_data_batch_6..10.npz and Imagenet64_val_npz/val_data.npz
    ('data' (N, 12288) uint8 in CHW order, 'labels' numbered from 1). The ten training batches may
    also sit in one Imagenet64_train_npz/ folder, and the pickle variant (Imagenet64_train_part1/,
    Imagenet64_train_part2/ or Imagenet64_train/, and Imagenet64_val/) is accepted. test = the
    official validation set (50,000); val = a seeded random 10,000 (`val_size`) held out of the
    1.28M training images. The .npz batches are read twice (labels first, then each batch straight
    into one preallocated tensor: about 16 GB in full); the pickle variant holds the decoded
    batches and the tensor at once (about 32 GB)."""
    bases = [request.root, request.root / "imagenet64"]
    layouts = [(("Imagenet64_train_part1_npz", "Imagenet64_train_part2_npz", "Imagenet64_train_npz"),
                "Imagenet64_val_npz", ".npz"),
               (("Imagenet64_train_part1", "Imagenet64_train_part2", "Imagenet64_train"), "Imagenet64_val", "")]

    def batch_number(path: Path, suffix: str) -> int:
        number = path.name[len("train_data_batch_"):len(path.name) - len(suffix)]
        return int(number) if number.isdigit() else -1

    chosen = None
    for base in bases:
        for train_dirs, val_dir, suffix in layouts:
            found = [path for train_dir in train_dirs for path in (base / train_dir).glob(f"train_data_batch_*{suffix}")
                     if batch_number(path, suffix) >= 0 and (suffix or not path.name.endswith(".npz"))]
            if found and (base / val_dir / f"val_data{suffix}").exists():
                numbers = [batch_number(path, suffix) for path in found]
                twice = sorted({n for n in numbers if numbers.count(n) > 1})
                if twice:
                    raise ValueError(f"imagenet64: train_data_batch_{twice[0]}{suffix} is in more than one of "
                                     f"{', '.join(str(base / d) for d in train_dirs)}; keep one copy of each batch")
                missing = sorted(set(range(1, 11)) - set(numbers))
                if missing:
                    raise _missing(request, [base / train_dirs[0 if n <= 5 else 1] / f"train_data_batch_{n}{suffix}"
                                             for n in missing[:3]],
                                   f"training batches {missing} of 10 (found {sorted(numbers)}; unzip every "
                                   f"training archive)")
                chosen = (base, sorted(found, key=lambda path: batch_number(path, suffix)),
                          base / val_dir / f"val_data{suffix}")
                break
        if chosen:
            break
    if chosen is None:
        raise _missing(request, [request.root / "Imagenet64_train_part1_npz" / "train_data_batch_1.npz",
                                 request.root / "Imagenet64_train_part2_npz" / "train_data_batch_6.npz",
                                 request.root / "Imagenet64_val_npz" / "val_data.npz"],
                       "the downsampled ImageNet 64x64 batches",
                       searched=[request.root / "Imagenet64_train_npz", request.root / "Imagenet64_train_part1",
                                 request.root / "Imagenet64_train", request.root / "imagenet64"])
    base, batch_files, val_file = chosen

    def read(path: Path, labels_only: bool = False) -> tuple[np.ndarray | None, np.ndarray]:
        if path.suffix == ".npz":
            with _reading(request, path), np.load(path) as archive:
                labels = archive["labels"]
                data = None if labels_only else archive["data"]
        else:                                                      # _read_pickle names its own errors
            stored = _read_pickle(request, path, ("data", "labels"))
            data, labels = stored["data"], stored["labels"]
        labels = np.asarray(labels, dtype=np.int64).reshape(-1) - 1                       # 1-based on disk
        if labels_only:
            return None, labels
        data = np.asarray(data, dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 64 * 64 or data.shape[0] != len(labels):
            raise ValueError(f"imagenet64: {path} holds 'data' of shape {data.shape} and {len(labels)} labels, "
                             f"expected (N, 12288) and N labels")
        return data.reshape(-1, 3, 64, 64), labels

    if all(path.suffix == ".npz" for path in batch_files):
        counts = [len(read(path, labels_only=True)[1]) for path in batch_files]
        parts = None
    else:
        parts = [read(path) for path in batch_files]
        counts = [len(labels) for _, labels in parts]
    total = sum(counts)
    train_images = torch.empty((total, 3, 64, 64), dtype=torch.uint8)
    train_labels = torch.empty(total, dtype=torch.int64)
    start = 0
    for index, path in enumerate(batch_files):
        data, labels = read(path) if parts is None else parts[index]
        if len(labels) != counts[index]:
            raise ValueError(f"imagenet64: {path} changed while it was read ({counts[index]} then {len(labels)} labels)")
        train_images[start:start + len(labels)] = torch.from_numpy(data)
        train_labels[start:start + len(labels)] = torch.from_numpy(labels)
        start += len(labels)
        if parts is not None:
            parts[index] = None
    del parts
    val_images, val_labels = read(val_file)
    num_classes = 1000
    names = [f"class_{i}" for i in range(num_classes)]
    mapping = next((p for p in (base / "map_clsloc.txt", request.root / "map_clsloc.txt") if p.exists()), None)
    if mapping is not None:
        for line in mapping.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[1].isdigit() and 1 <= int(fields[1]) <= num_classes:
                names[int(fields[1]) - 1] = fields[2]
    held_out = 10000 if request.val_size is None else request.val_size
    _check_held_out(request, held_out, total)
    permutation = torch.randperm(total, generator=torch.Generator().manual_seed(request.seed))
    val_rows = torch.sort(permutation[:held_out]).values
    val = ImageSplit(train_images[val_rows], train_labels[val_rows])
    keep = torch.ones(total, dtype=torch.bool)
    keep[val_rows] = False
    kept_rows = torch.nonzero(keep).squeeze(1)
    for start in range(0, len(kept_rows), 65536):                                   # compact in place (no 2nd copy):
        rows = kept_rows[start:start + 65536]                                       # kept_rows[i] >= i
        train_images[start:start + len(rows)] = train_images[rows]
        train_labels[start:start + len(rows)] = train_labels[rows]
    train = ImageSplit(train_images[:len(kept_rows)], train_labels[:len(kept_rows)])
    return _assemble(request, train, val, ImageSplit(torch.from_numpy(val_images), torch.from_numpy(val_labels)),
                     class_names=names, native_size=64,
                     split_notes="train = training batches minus a seeded random 10k (val); test = official val")


# ----------------------------------------------------------------------------------------------
# Mini-ImageNet (few-shot: Ravi & Larochelle's class split)


MINI_IMAGENET_SPLITS = (("train", "train.csv"), ("val", "val.csv"), ("test", "test.csv"))


@_register("mini-imagenet", "crop_flip", few_shot=True,
           manual="get Mini-ImageNet's images/ folder (84×84 or full-size JPEGs named like "
               "n0153282900000005.jpg) and Ravi & Larochelle's split files train.csv, val.csv, test.csv "
               "(lines `filename,label`), and put them as {root}/mini-imagenet/images/ and "
               "{root}/mini-imagenet/{{train,val,test}}.csv")
def _load_mini_imagenet(request: _Request) -> ImageDataset:
    """Mini-ImageNet (100 ImageNet classes, 600 images each) in Ravi & Larochelle's split, the few-shot
    protocol of NSL Table 6: train 64 classes (38,400 images), val 16 (9,600), test 20 (12,000),
    classes disjoint. Layout: mini-imagenet/images/*.jpg and mini-imagenet/{train,val,test}.csv with a
    `filename,label` header and one `n0153282900000005.jpg,n01532829` line per image. Images are
    resized to 84×84 (`image_size`), antialiased bilinear. Labels: the wnids numbered in order of
    first appearance through train.csv, val.csv, test.csv (train 0-63, val 64-79, test 80-99); each
    split is stored in a seeded class-interleaved order, so `limit` keeps every class."""
    folder = _find_folder(request, [request.root / "mini-imagenet", request.root / "miniImagenet",
                                    request.root / "miniimagenet"],
                          ["images", *(name for _, name in MINI_IMAGENET_SPLITS)], "the Mini-ImageNet split files")
    files, splits, wnids = [], {}, {}
    for split, csv_name in MINI_IMAGENET_SPLITS:
        path = folder / csv_name
        with _reading(request, path):
            lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            if not lines or [cell.strip() for cell in lines[0].split(",")] != ["filename", "label"]:
                raise ValueError(f"the first line is {lines[0] if lines else ''!r}, expected 'filename,label'")
            rows = [line.split(",") for line in lines[1:]]
            bad = next((row for row in rows if len(row) != 2), None)
            if bad is not None:
                raise ValueError(f"a line has {len(bad)} fields, expected 2 (filename,label): {','.join(bad)!r}")
        first_label = len(wnids)
        for _, wnid in rows:
            wnids.setdefault(wnid.strip(), len(wnids))
        start = len(files)
        files += [folder / "images" / name.strip() for name, _ in rows]
        labels = _labels([wnids[wnid.strip()] for _, wnid in rows])
        if len(rows) and int(labels.min()) < first_label:
            shared = sorted({wnid.strip() for _, wnid in rows} & set(list(wnids)[:first_label]))
            raise ValueError(f"mini-imagenet: {path} shares classes with an earlier split ({', '.join(shared[:3])}); "
                             f"the few-shot splits must hold disjoint classes")
        index, labels, _ = _ordered(torch.arange(start, len(files)), labels, request.seed)
        splits[split] = (index, labels, {})
    absent = [path for path in files if not path.is_file()]
    if absent:
        raise _missing(request, absent[:3], f"{len(absent)} of the {len(files)} images listed in the split files")
    sizes = {split: len(torch.unique(labels)) for split, (_, labels, _) in splits.items()}
    return _folder_dataset(request, files, splits, mode="RGB", class_names=list(wnids), native_size=84,
                           split_notes=f"Ravi & Larochelle's class split: {sizes['train']} / {sizes['val']} / "
                                       f"{sizes['test']} disjoint classes (train / val / test)")
