"""Mini-batches of an image split, augmented on the device: in memory (BatchStream), or read from
files batch by batch (FileBatchStream).

Images stay uint8 (N, C, H, W) until the batch is on its device (the GPU when the split fits there,
so an epoch never touches the host). The batch order of epoch e is a permutation drawn from
(seed, e); the augmentation of batch b from (seed, e, b, rank). So any batch of any epoch can be
recomputed exactly, which is what makes a killed run resume to the same numbers, and every DDP
rank reads its own disjoint shard of the same permutation.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from .._checks import check_positive
from ..datasets.augment import augment_batch, to_float, window_crop
from ..datasets.images import ImageDataset, load_image_dataset
from ..datasets.images.streamed import FileSplit, ImageFileError
from ..paths import data_root

if TYPE_CHECKING:
    from .config import TrainConfig


def derived_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy SeedSequence), the same on every machine.

    SeedSequence pads its entropy with zeros, so (s, e) and (s, e, 0, 0) give the same seed. The
    trainer's streams, the epoch's order (seed, epoch), a batch's augmentation (seed, epoch, batch,
    rank) and a step's global generator (seed, rank, iteration), therefore share some seeds: on rank 0
    in epoch 0, step i's dropout draws start from the numbers of batch i's crops. Runs stay
    reproducible; separating the streams (a stream tag first) would change every trained number."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint64)[0] >> 1)


def _fits_on_device(tensor: torch.Tensor, device: torch.device, fraction: float = 0.25) -> bool:
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return tensor.numel() * tensor.element_size() < fraction * free


class BatchStream:
    """Batches (float images in [0, 1] on `device`, int64 labels) of one split.

    shuffle=True: a fresh permutation per epoch and drop_last (every training step sees a full
    batch); shuffle=False: the split in order, the last batch possibly smaller (evaluation).
    With world_size > 1, `batch_size` is the global batch and each rank gets batch_size/world_size
    of it; evaluation shards are disjoint and cover the split exactly once.
    """

    def __init__(self, split, batch_size: int, *, shuffle: bool, augment: str = "none",
                 device: torch.device | str = "cpu", seed: int = 0, rank: int = 0, world_size: int = 1,
                 channels_last: bool = False):
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {world_size}")
        self.device = torch.device(device)
        self.shuffle, self.augment, self.seed = shuffle, augment, seed
        self.rank, self.world_size, self.channels_last = rank, world_size, channels_last
        self.local_batch = batch_size // world_size
        self.batch_size = batch_size
        self._hold(split)
        self.size = len(split.labels)
        if shuffle and self.size < batch_size:
            raise ValueError(f"the training split has {self.size} images, fewer than one batch of {batch_size}; "
                             "lower batch_size (CLI --batch-size)")

    def __len__(self) -> int:
        """Batches per epoch (for this rank)."""
        if self.shuffle:
            return self.size // self.batch_size
        return -(-self._shard_size() // self.local_batch)

    def _shard_size(self) -> int:
        return len(range(self.rank, self.size, self.world_size))

    def _order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.rank, self.size, self.world_size)
        generator = torch.Generator().manual_seed(derived_seed(self.seed, epoch))
        order = torch.randperm(self.size, generator=generator)[: len(self) * self.batch_size]
        return order.view(len(self), self.world_size, self.local_batch)[:, self.rank].reshape(-1)

    def _hold(self, split) -> None:
        on_device = _fits_on_device(split.images, self.device)
        self.images = split.images.to(self.device) if on_device else split.images
        self.labels = split.labels.to(self.device) if on_device else split.labels

    def _read(self, batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """uint8 images (B, C, H, W) and labels of each batch of indices, on any device."""
        for index in batches:
            index = index.to(self.images.device)
            yield self.images[index], self.labels[index]

    @property
    def _random_crops(self) -> bool:
        """Whether `_crop` draws from the batch's generator."""
        return False

    def _crop(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return images

    def epoch(self, epoch: int = 0, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order(epoch)
        batches = [order[b * self.local_batch:(b + 1) * self.local_batch] for b in range(start_batch, len(self))]
        for b, (images, labels) in enumerate(self._read(batches), start_batch):
            images = images.to(self.device, non_blocking=True)                          # uint8 (B, C, H, W)
            labels = labels.to(self.device, non_blocking=True)
            generator = None
            if self.augment != "none" or self._random_crops:
                generator = torch.Generator(device=self.device)
                generator.manual_seed(derived_seed(self.seed, epoch, b, self.rank))
            images = self._crop(images, generator)
            if self.augment != "none":
                images = augment_batch(images, self.augment, generator)
            images = to_float(images)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, labels

    def __iter__(self):
        return self.epoch(0)


class _FileBatches(torch.utils.data.Dataset):
    """A batch of indices (B,) decoded from a FileSplit (what a DataLoader worker runs). A file that
    cannot be read comes back as its ImageFileError, raised again by the stream's process (raised in a
    worker, it would come back with the worker's traceback in its message)."""

    def __init__(self, split: FileSplit):
        self.split = split

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor | ImageFileError, torch.Tensor | None]:
        try:
            return self.split.read(index), self.split.labels[index]
        except ImageFileError as error:
            return error, None


class _EpochBatches(torch.utils.data.Sampler):
    """The index batches of the pass the stream is reading, set before each pass. A sampler is iterated
    in the stream's process, so the workers (started once, persistent) never need the new order."""

    def __init__(self):
        self.batches: list[torch.Tensor] = []

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class FileBatchStream(BatchStream):
    """A BatchStream over a split read from files (`FileSplit`, e.g. ImageNet-2012 at 224 px).

    `workers` DataLoader processes decode the batches ahead (0: in this process), each batch's files
    into their central patches; on the device a training batch then takes a random size×size window
    of each patch and an evaluation batch the central one. The window is drawn from the batch's own
    generator (seed, epoch, batch, rank) before the augment policy's draws, so a batch is the same
    whatever the number of workers, and a resumed run reads the same batches as an uncut one.
    """

    def __init__(self, split: FileSplit, batch_size: int, *, workers: int = 0, **options):
        check_positive("workers", workers, integer=True, minimum=0)
        self.workers = workers
        super().__init__(split, batch_size, **options)
        self._batches = _EpochBatches()
        # one loader for every epoch: its workers start (and receive the split) once, not at every pass
        self._loader = torch.utils.data.DataLoader(_FileBatches(split), batch_size=None, sampler=self._batches,
                                                   num_workers=workers, persistent_workers=workers > 0,
                                                   pin_memory=self.device.type == "cuda")

    def _hold(self, split: FileSplit) -> None:
        self.split, self.labels = split, split.labels

    def _read(self, batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._batches.batches = batches
        for images, labels in self._loader:
            if isinstance(images, ImageFileError):
                raise images
            yield images, labels

    @property
    def _random_crops(self) -> bool:
        return self.shuffle                               # training: random windows; evaluation: the centre

    def _crop(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return window_crop(images, self.split.size, generator if self.shuffle else None)


def decoding_workers(requested: int | None = None) -> int:
    """Processes that decode a split read from files: `requested`, else one per CPU this process may
    use, up to 8 (under torchrun, each process's share of them)."""
    if requested is not None:
        return requested
    from .._threads import available_cpus
    from .distributed import launched_world_size
    return min(8, max(1, available_cpus() // max(1, launched_world_size())))


def batch_stream(split, batch_size: int, *, workers: int | None = None, **options) -> BatchStream:
    """The stream of a split: a FileBatchStream for a split read from files (with `workers` decoding
    processes, default `decoding_workers()`), else a BatchStream; `options` are BatchStream's."""
    if isinstance(split, FileSplit):
        return FileBatchStream(split, batch_size, workers=decoding_workers(workers), **options)
    return BatchStream(split, batch_size, **options)


def load_data(config: TrainConfig) -> ImageDataset:
    """The image dataset of a run: `config`'s dataset, split and size, limited to train_limit / eval_limit."""
    data = load_image_dataset(config.dataset, data_root(config.data_root), val_size=config.val_size,
                              image_size=config.image_size, label_kind=config.label_kind,
                              download=config.download, seed=config.seed)
    if config.train_limit is not None:
        data.train = data.train.subset(slice(0, config.train_limit))
    if config.eval_limit is not None:
        data.val, data.test = (split.subset(slice(0, config.eval_limit)) for split in (data.val, data.test))
    return data
