"""What the loaders share: resizing and seeded stratified ordering, held-out splits, the errors for
missing and damaged files (`_missing`, `_reading`), pickle reading, wrapping splits into an ImageDataset
(`_assemble` for sets read as arrays, `_folder_dataset` for image folders, decoded once and cached as a
tensor file under root/<name>/), and the downloads through torchvision's downloaders."""
from __future__ import annotations

import hashlib
import math
import os
import pickle
import socket
import sys
import warnings
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..._io import atomic_torch_save
from .registry import _REGISTRY, DatasetError, ImageDataset, ImageSplit, _Request

CACHE_FORMAT = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


# ----------------------------------------------------------------------------------------------
# shared helpers: resizing, ordering, splits, errors


def empty_images(shape: tuple[int, int, int, int], note: str) -> torch.Tensor:
    """An uninitialised uint8 tensor (N, C, S, S) for images; one too large for this machine is a
    ValueError saying how many GB it needs and to choose a smaller image_size (`note`: what to add)."""
    try:
        return torch.empty(shape, dtype=torch.uint8)
    except RuntimeError as error:                      # torch's allocator: "can't allocate memory"
        if "allocate" not in str(error):
            raise
        count, channels, size, _ = shape
        raise ValueError(f"image size {size}: {count:,} images of {channels}x{size}x{size} need "
                         f"{math.prod(shape) / 1e9:,.1f} GB, more than this machine can allocate; choose a smaller "
                         f"image_size ({note})") from None


def resize_images(images: torch.Tensor, size: int, *, chunk: int = 4096) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) to (N, C, size, size) with antialiased bilinear interpolation
    (rounded), in chunks of `chunk` images; returned unchanged (contiguous) when already that size."""
    if images.shape[-2:] == (size, size):
        return images.contiguous()
    out = empty_images((images.shape[0], images.shape[1], size, size),
                       f"these images are {images.shape[-2]}x{images.shape[-1]}")
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


def _warn_partial(request: _Request, title: str, folder: Path, counts: dict[str, tuple[int, int]]) -> None:
    """Warn for every split whose image count is not the real set's (counts: {"training": (count,
    real), ...}): it loads and trains, but a test accuracy on it is not comparable with the paper's."""
    for what, (count, real) in counts.items():
        if count != real:
            warnings.warn(f"{request.name}: {count:,} {what} images under {folder}, where {title} has {real:,}; "
                          "a test accuracy on them is not the paper's (is every archive unpacked in full, "
                          "every file the original?)", stacklevel=3)


def _how_to_get(request: _Request) -> str:
    """How to get the requested set into its root (download=True or the manual steps)."""
    return _REGISTRY[request.name].how_to_get(request.name, request.root)


def _missing(request: _Request, expected: list[Path], what: str, searched: list[Path] = (),
             found: str = "") -> FileNotFoundError:
    """The error for absent files: the dataset, what is missing, where it was expected, where else
    they were found (`found`, a sentence), how to get it."""
    where = "\n  ".join(str(path) for path in expected)
    also = f"\nAlso searched: {', '.join(str(path) for path in searched)}" if searched else ""
    found = f"\n{found}" if found else ""
    how = _how_to_get(request)
    return FileNotFoundError(f"{request.name}: {what} not found. Expected:\n  {where}{also}{found}\n"
                             f"How to get it: {how}")


def _find_folder(request: _Request, candidates: list[Path], required: list[str | tuple[str, ...]],
                 what: str) -> Path:
    """The first candidate folder that holds every required entry (a tuple = any one of them);
    with download=True and a downloader, fetch the set into the first candidate and look again."""
    def absent(folder: Path) -> list[str | tuple[str, ...]]:
        return [entry for entry in required
                if not any((folder / name).exists() for name in (entry if isinstance(entry, tuple) else (entry,)))]

    for attempt in range(2):
        for folder in candidates:
            if not absent(folder):
                return folder
        if attempt == 0 and request.download and _REGISTRY[request.name].downloadable:
            _download(request)
            continue
        break
    # the candidate holding the most of them (the first if none holds any): name only what it lacks
    closest = max(candidates, key=lambda folder: len(required) - len(absent(folder)))
    lacking = absent(closest)
    if len(lacking) < len(required):
        what = f"{len(lacking)} of {what} (the other {len(required) - len(lacking)} are in {closest})"
    expected = [closest / (entry[0] if isinstance(entry, tuple) else entry) for entry in lacking]
    found, deeper = "", _found_deeper(request.root, candidates, absent)
    if deeper is not None:
        folder, root = deeper
        found = (f"Found them farther down, in {folder}: use {root} as the data root (--data-root)"
                 + ("" if folder.is_relative_to(candidates[0]) else f", or move that folder to {candidates[0]}"))
    raise _missing(request, expected, what, searched=[folder for folder in candidates if folder != closest],
                   found=found)


def _found_deeper(root: Path, candidates: list[Path], absent, depth: int = 4,
                  most: int = 5000) -> tuple[Path, Path] | None:
    """A folder up to `depth` levels below `root` that ends in the path of a candidate below root (an
    archive unpacked one folder too deep, or into a folder of its own: four levels for Kaggle's
    ILSVRC/Data/CLS-LOC) and holds every required entry
    (`absent` lists what a folder lacks), with the data root that would find it there; folders only,
    hidden ones skipped, None after `most` of them."""
    ends = [folder.relative_to(root).parts for folder in candidates if folder != root]
    level = [root]
    for _ in range(depth):
        below = []
        for folder in level:
            try:
                with os.scandir(folder) as entries:     # is_dir() from the listing: no stat per image file
                    below += sorted(Path(e.path) for e in entries if e.is_dir() and not e.name.startswith("."))
            except OSError:                             # unreadable or gone: nothing to find there
                continue
            if len(below) > most:
                return None
        for folder in below:
            end = next((end for end in ends if folder.parts[-len(end):] == end), None)
            if end is None or folder in candidates:
                continue
            try:
                if not absent(folder):
                    return folder, Path(*folder.parts[:-len(end)])
            except OSError:                             # a folder it cannot look into: not it
                continue
        level = below
    return None


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
    how = _how_to_get(request)
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


def _checked_labels(values, count: int, classes: int, what: str = "labels") -> torch.Tensor:
    """`_labels`, refused (a ValueError, which `_reading` turns into one naming the file) unless there
    are `count` of them, all in 0..classes-1."""
    labels = np.asarray(values).reshape(-1)
    if labels.size != count:
        raise ValueError(f"{labels.size} {what} for {count} images")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"{what} must be integers in 0..{classes - 1}, got values from {labels.min()} to "
                         f"{labels.max()}")
    return _labels(labels)


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


class UnreadableImages(DatasetError):
    """Damaged image files of a set decoded into memory, all of them: `files` lists (path, reason)."""

    def __init__(self, name: str, files: list[tuple[str, str]]):
        self.files = files
        first = files[0][1]                                    # "<name>: cannot read <path> (...) ..."
        super().__init__(first if len(files) == 1 else
                         f"{name}: {len(files)} image files cannot be read (`python -m nslviz check-data --dataset "
                         f"{name}` lists every one); the first: {first[len(name) + 2:]}")


def _read_or_reason(request: _Request, path: Path, mode: str) -> np.ndarray | str:
    """The image, or why it cannot be read when it is damaged (`_reading`'s ValueError; a missing file
    or a system error still raises)."""
    try:
        return _read_image(request, path, mode)
    except ValueError as error:
        return str(error)


def _decode_images(request: _Request, files: list[Path], size: int, mode: str) -> torch.Tensor:
    """Decode image files (PIL, a few threads) to uint8 (N, C, size, size): chunk by chunk, images
    of equal shape stacked and resized together. Damaged files are all read before one
    UnreadableImages names every one of them."""
    from tqdm.auto import tqdm
    channels = 1 if mode == "L" else 3
    out = torch.empty((len(files), channels, size, size), dtype=torch.uint8)
    chunk = 2048
    workers = max(1, min(8, os.cpu_count() or 1))
    unreadable: list[tuple[str, str]] = []
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(files), desc=request.name, unit="img",
                                                    disable=len(files) < 5000) as progress:
        for start in range(0, len(files), chunk):
            arrays = list(pool.map(lambda path: _read_or_reason(request, path, mode), files[start:start + chunk]))
            by_shape: dict[tuple, list[int]] = {}
            for position, array in enumerate(arrays):
                if isinstance(array, str):
                    unreadable.append((str(files[start + position]), array))
                    continue
                by_shape.setdefault(array.shape, []).append(position)
            for positions in by_shape.values():
                stacked = torch.from_numpy(np.stack([arrays[p] for p in positions]))   # (n, H, W[, C])
                stacked = stacked.unsqueeze(-1) if stacked.dim() == 3 else stacked
                rows = torch.tensor(positions) + start
                out[rows] = resize_images(stacked.permute(0, 3, 1, 2), size)
            progress.update(len(arrays))
    if unreadable:
        raise UnreadableImages(request.name, unreadable)
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
    try:
        atomic_torch_save(cache, {"fingerprint": fingerprint, "images": images, "files": len(files)})
    except OSError as error:                        # a read-only data folder (a shared mount): no cache
        warnings.warn(f"{request.name}: {error}; the {len(files)} images were decoded but not cached, so the "
                      f"next load decodes them again", stacklevel=2)
        return images
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


def _image_names(folder: Path) -> list[str]:
    """The names of the image files directly in `folder` (IMAGE_SUFFIXES, any case), sorted as strings
    (1.28M Paths sort slowly); hidden files (macOS's ._ copies) left out."""
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries if entry.is_file() and not entry.name.startswith(".")
                      and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES)


def _image_files(folder: Path) -> list[Path]:
    return [folder / name for name in _image_names(folder)]


def _class_folders(folder: Path) -> list[str]:
    """The names of the class folders in `folder`, sorted; hidden ones (.ipynb_checkpoints) left out."""
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries if entry.is_dir() and not entry.name.startswith("."))


def _ordered(index: torch.Tensor, labels: torch.Tensor, seed: int, extra=None):
    """(index, labels, extra) reordered by stratified_order(labels, seed)."""
    order = stratified_order(labels, seed)
    return index[order], labels[order], {key: value[order] for key, value in (extra or {}).items()}
