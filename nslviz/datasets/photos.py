"""Grey crops of the two photographs bundled with scikit-learn (`china.jpg`, `flower.jpg`): natural
image patches with no download, for the single-layer experiments (NSL sec. 6, notebook 08).

Each photo is turned grey (the mean of R, G, B), halved in size by 2×2 averaging (213×320) and
standardised to mean 0 and standard deviation 1. Training crops come from the top two thirds of each
photo, test crops and the example region from the bottom third: no test pixel is ever seen in training.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .._checks import check_choice, check_positive, check_seed

PHOTOS = ("china.jpg", "flower.jpg")
SPLITS = ("train", "test")


@functools.lru_cache(maxsize=len(PHOTOS))
def _decoded_grey_photo(name: str) -> torch.Tensor:
    from sklearn.datasets import load_sample_image
    rgb = torch.tensor(load_sample_image(name), dtype=torch.float32)          # (H, W, 3) in 0..255, a copy
    grey = F.avg_pool2d(rgb.mean(-1)[None, None] / 255, 2)[0, 0]               # (H/2, W/2)
    return (grey - grey.mean()) / grey.std()


def grey_photo(name: str) -> torch.Tensor:
    """(H, W) float32: one bundled photo, grey, halved, standardised (decoded once; a copy each call)."""
    check_choice("photo", name, PHOTOS)
    return _decoded_grey_photo(name).clone()


def split_rows(photo: torch.Tensor, split: str) -> torch.Tensor:
    """The rows of `photo` (H, W) a split draws from: "train" the top two thirds, "test" the rest."""
    check_choice("split", split, SPLITS)
    cut = photo.shape[0] * 2 // 3
    return photo[:cut] if split == "train" else photo[cut:]


def photo_crops(split: str, count: int, size: int, seed: int = 0) -> torch.Tensor:
    """(count, 1, size, size): random crops, half from each photo, from the split's rows."""
    check_choice("split", split, SPLITS)
    check_positive("count", count, integer=True, minimum=2)
    check_positive("size", size, integer=True, minimum=3)
    check_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    crops = []
    for index, name in enumerate(PHOTOS):
        region = split_rows(grey_photo(name), split)                          # (h, W)
        if size > min(region.shape):
            raise ValueError(f"size must be at most {min(region.shape)} (the {split} rows of {name}), got {size}")
        n = count // 2 + (count % 2 if index == 0 else 0)
        top = torch.randint(0, region.shape[0] - size + 1, (n,), generator=generator)
        left = torch.randint(0, region.shape[1] - size + 1, (n,), generator=generator)
        rows = top[:, None] + torch.arange(size)                               # (n, size)
        columns = left[:, None] + torch.arange(size)
        crops.append(region[rows[:, :, None], columns[:, None, :]])           # (n, size, size), no loop over crops
    return torch.cat(crops)[:, None]


def photo_region(size: int, name: str = "flower.jpg") -> torch.Tensor:
    """(1, 1, size, size): the centre of the test rows of one photo, to look at a model's output."""
    check_positive("size", size, integer=True, minimum=3)
    region = split_rows(grey_photo(name), "test")
    if size > min(region.shape):
        raise ValueError(f"size must be at most {min(region.shape)} (the test rows of {name}), got {size}")
    top, left = (region.shape[0] - size) // 2, (region.shape[1] - size) // 2
    return region[top:top + size, left:left + size][None, None].clone()
