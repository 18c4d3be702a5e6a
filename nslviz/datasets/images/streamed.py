"""Splits read from image files batch by batch, for sets too large to hold in memory (ImageNet-2012:
1.28M JPEGs, about 190 GB as 224×224 uint8).

A `FileSplit` holds paths and labels. Reading a batch decodes each file and keeps its central square,
resized to `resize`×`resize` (AlexNet's preprocessing, which NSL sec. 7 follows for ImageNet: the
shorter side to 256, the central 256×256 patch). The crop a model sees is taken from that patch on
the device, by the batch stream (`nslviz.training.data`): a random size×size window for training,
the central one for evaluation (224 of 256).

Decoding is the one step done file by file (each JPEG is its own bitstream); the trainer runs it in
DataLoader worker processes, batch by batch, and everything after it is vectorised over the batch.
The paths are one numpy array of bytes, not a list of Python strings: worker processes forked from
the trainer read them without touching reference counts, so they share its copy instead of each
copying 1.28M string objects.
PIL's JPEG draft mode decodes at the largest reduction (1/2, 1/4 or 1/8) that keeps the shorter side
at least `resize` pixels, then an antialiased bilinear resize brings it to `resize`. A file that
cannot be read stops a run with an `ImageFileError` naming it (an OSError: not a bad argument).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..augment import window_crop
from .registry import ImageSplit

# AlexNet's ratio: 224-pixel crops of a 256-pixel patch
PATCH_RATIO = 256 / 224


def patch_size(size: int) -> int:
    """The side of the central patch that size×size crops are taken from (256 for 224)."""
    return round(size * PATCH_RATIO)


class ImageFileError(OSError):
    """An image file of a FileSplit that cannot be read: `path`, and `reason` (what failed)."""

    def __init__(self, message: str, path: str = "", reason: str = ""):
        super().__init__(message)
        self.path, self.reason = path, reason

    def __reduce__(self):                      # pickled back from a decoding worker with its fields
        return type(self), (str(self), self.path, self.reason)


# what a run that stopped on a file can do; removing the file changes the splits (stratified orders)
_THEN = ("then continue the run (train --resume; compare and the notebooks resume a cut run when run again); "
         "removing the file instead changes the splits, on which a run that has started cannot go on")


def read_patch(path: str | Path, resize: int) -> np.ndarray:
    """One image file → its central square, resized to uint8 (resize, resize, 3) RGB. A file that is
    gone, unreadable or not an image raises ImageFileError naming it."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            image.draft("RGB", (resize, resize))          # JPEG: decode at a reduced scale, never below resize
            image = image.convert("RGB")
            width, height = image.size
            side = min(width, height)
            box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
            return np.asarray(image.resize((resize, resize), Image.Resampling.BILINEAR, box=box))
    except FileNotFoundError:
        raise ImageFileError(f"{path}: the image file is gone (it was there when the dataset was loaded); put it "
                             f"back, {_THEN}", str(path), "gone") from None
    except PermissionError as error:
        raise ImageFileError(f"{path} cannot be read ({error.strerror}); give this process read access, "
                             f"{_THEN}", str(path), error.strerror) from None
    except (OSError, ValueError, SyntaxError) as error:           # PIL's errors for damaged or foreign files
        raise ImageFileError(f"{path} is not a readable image ({error}); get the file again from the dataset's "
                             f"archive, {_THEN}", str(path), str(error)) from None


@dataclass
class FileSplit:
    """One split read from files: paths (N,) (given as strings or Paths, kept as a numpy bytes array),
    int64 labels (N,), the side `size` of the crops a model sees and the side `resize` of the central
    patch they are taken from (`patch_size(size)`). Has the interface of `ImageSplit` but `images`:
    `read(index)` decodes the patches of some files, `in_memory()` all of them."""
    files: np.ndarray
    labels: torch.Tensor
    size: int
    resize: int
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if not (isinstance(self.files, np.ndarray) and self.files.dtype.kind == "S"):
            self.files = np.array([os.fsencode(path) for path in self.files], dtype=np.bytes_).reshape(-1)
        if self.labels.dtype != torch.int64 or self.labels.shape != (len(self.files),):
            raise ValueError(f"labels must be int64 of shape ({len(self.files)},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")
        if not 1 <= self.size <= self.resize:
            raise ValueError(f"crop size {self.size} must be in 1..{self.resize} (the patch it is taken from)")

    def __len__(self) -> int:
        return len(self.files)

    @property
    def images(self):
        raise TypeError(f"this split of {len(self)} images is read from files batch by batch (a FileSplit); "
                        "expected an in-memory ImageSplit here: decode a few with split.head(n).in_memory(), "
                        "or use a set that fits in memory (imagenet64 rather than imagenet)")

    def path(self, i: int) -> str:
        return os.fsdecode(self.files[i])

    def fingerprint(self) -> str:
        """Identity of the split: its labels and file names in order, not the folders that hold the
        files (a dataset moved elsewhere, or named by another path, keeps it). A run resumes only on
        the splits it started with. The names are the bytes after each path's last "/", whatever
        their encoding."""
        digest = hashlib.sha1(f"{len(self)} files\n".encode())
        digest.update(self.labels.numpy().tobytes())
        names = np.char.rpartition(self.files, b"/")[:, 2].tolist() if len(self) else []   # (N,) bytes
        digest.update(b"\n".join(names))
        return digest.hexdigest()

    def subset(self, index) -> "FileSplit":
        """The files at `index` (a slice, index tensor or boolean mask), in that order."""
        rows = torch.arange(len(self))[index]
        return FileSplit(self.files[rows.numpy()], self.labels[rows].contiguous(), self.size, self.resize,
                         {key: value[rows].contiguous() for key, value in self.extra.items()})

    def head(self, count: int) -> "FileSplit":
        return self if count >= len(self) else self.subset(slice(0, count))

    def in_memory(self) -> ImageSplit:
        """The split decoded into an ImageSplit of its central size×size crops (what evaluation sees);
        for a few images, e.g. `data.test.head(64).in_memory().images`."""
        patches = self.read(torch.arange(len(self)))                                 # (N, 3, R, R)
        return ImageSplit(window_crop(patches, self.size), self.labels.clone(), dict(self.extra))

    def read(self, index: torch.Tensor) -> torch.Tensor:
        """The central patches of the files at `index`: uint8 (B, 3, resize, resize)."""
        patches = [read_patch(self.path(i), self.resize) for i in index.tolist()]    # decoding: file by file
        if not patches:
            return torch.zeros((0, 3, self.resize, self.resize), dtype=torch.uint8)
        return torch.from_numpy(np.stack(patches)).permute(0, 3, 1, 2).contiguous()  # (B, 3, R, R)


class _FileChecks(torch.utils.data.Dataset):
    """Chunk i of a FileSplit's files, each decoded at the smallest scale: [(path, reason)] of those
    that cannot be read (what a DataLoader worker runs)."""
    CHUNK = 256

    def __init__(self, split: FileSplit):
        self.split = split

    def __len__(self) -> int:
        return -(-len(self.split) // self.CHUNK)

    def __getitem__(self, i: int) -> list[tuple[str, str]]:
        failures = []
        for index in range(i * self.CHUNK, min((i + 1) * self.CHUNK, len(self.split))):
            try:
                read_patch(self.split.path(index), 1)     # JPEG: decoded at 1/8, every coefficient still read
            except ImageFileError as error:
                failures.append((error.path, error.reason))
        return failures


def unreadable_files(split: FileSplit, workers: int = 0, progress: bool = True) -> list[tuple[str, str]]:
    """[(path, reason)] of every file of `split` that cannot be decoded (gone, unreadable, truncated,
    not an image), in `workers` processes (0: this one): what would stop a run when its batch is read,
    found before it starts. JPEGs are decoded at 1/8 scale, which reads every coefficient (a truncated
    file fails) at a fraction of the full decode's cost."""
    from tqdm.auto import tqdm
    loader = torch.utils.data.DataLoader(_FileChecks(split), batch_size=None, num_workers=workers)
    failures = []
    for found in tqdm(loader, desc="checking files", unit="chunk", disable=not progress):
        failures += found
    return failures
