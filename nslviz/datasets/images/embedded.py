"""The embedded sets, available offline: `digits` (scikit-learn's 1,797 handwritten 8×8 digits,
resized) and `synthetic` (generated oriented gratings, `make_synthetic_images`)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..._checks import check_choice, check_positive
from .digit_sets import DIGIT_NAMES
from .registry import ImageDataset, ImageSplit, _register, _Request
from .utils import _assemble, _labels, stratified_order

# digits' coarse labels (label_kind="coarse"): 5 groups of 2 look-alike digits, a small stand-in for
# CIFAR-100's superclasses in the sub-category discovery experiment (MN Appendix A.9).
DIGIT_COARSE_GROUPS = ((0, 6), (1, 7), (2, 5), (3, 8), (4, 9))
DIGIT_COARSE_NAMES = [f"{a}/{b}" for a, b in DIGIT_COARSE_GROUPS]


@_register("digits", "crop", manual="nothing to get: it ships with scikit-learn")
def _load_digits(request: _Request) -> ImageDataset:
    """scikit-learn's 1,797 handwritten digits (8×8, 17 grey levels, scaled to 0–255), resized to
    32×32, 1 channel: a seeded stratified split, test 20 % (359), val 10 % (180, `val_size`),
    train the rest (1,258). No flips in its augmentation ("crop"): a mirrored digit is another
    symbol. label_kind="coarse": the 5 groups of DIGIT_COARSE_GROUPS are the labels, with extras
    "fine_labels" (the digit) and "coarse_labels" (the group), as CIFAR-100's; same images and splits."""
    from sklearn.datasets import load_digits
    bunch = load_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    split = ImageSplit(images, _labels(bunch.target))
    order = stratified_order(split.labels, request.seed)
    class_names, extra_names = DIGIT_NAMES, None
    if request.label_kind == "coarse":
        group_of = torch.empty(10, dtype=torch.int64)
        for group, digits in enumerate(DIGIT_COARSE_GROUPS):
            group_of[list(digits)] = group
        coarse = group_of[split.labels]
        split = ImageSplit(images, coarse, {"coarse_labels": coarse, "fine_labels": split.labels})
        class_names, extra_names = DIGIT_COARSE_NAMES, {"coarse_labels": DIGIT_COARSE_NAMES, "fine_labels": DIGIT_NAMES}
    n_test = round(0.2 * len(split))
    n_val = round(0.1 * len(split)) if request.val_size is None else request.val_size
    if n_test + n_val >= len(split):
        raise ValueError(f"digits: val_size {n_val} leaves no training images ({len(split) - n_test} images "
                         f"to share between train and val)")
    test, val, train = (split.subset(order[:n_test]), split.subset(order[n_test:n_test + n_val]),
                        split.subset(order[n_test + n_val:]))
    return _assemble(request, train, val, test, class_names=class_names, native_size=32,
                     split_notes="seeded stratified split: test 20 %, val 10 %, train 70 %",
                     extra_names=extra_names)


@_register("synthetic", "crop", manual="nothing to get: it is generated",
           options=("num_classes", "train_size", "test_size", "noise", "channels"))
def _load_synthetic(request: _Request) -> ImageDataset:
    """Generated images (see `make_synthetic_images`); options: num_classes, train_size, test_size,
    noise, channels."""
    data = make_synthetic_images(**request.options, val_size=1000 if request.val_size is None else request.val_size,
                                 image_size=request.size(32), seed=request.seed)
    return _assemble(request, data.train, data.val, data.test, class_names=data.class_names,
                     native_size=data.image_size, split_notes=data.split_notes)


def make_synthetic_images(num_classes: int = 10, train_size: int = 5000, val_size: int = 1000,
                          test_size: int = 2000, *, image_size: int = 32, channels: int = 3,
                          noise: float = 1.0, seed: int = 0) -> ImageDataset:
    """Class-conditional images that a small CNN learns but a linear model on pixels does not.

    Class c is an oriented sinusoidal grating: orientation π·⌊c/2⌋/⌈C/2⌉, jittered uniformly by ±½
    of the spacing (neighbouring classes touch), and 2.5 or 4.5 cycles per image for even/odd c.
    Each image draws a random phase (so the class is in no fixed pixel pattern), amplitude and
    colour (weakly tilted towards a class colour), sits on a smooth random background of three
    colour blobs and gets Gaussian pixel noise of `noise` × the grating amplitude. With the
    defaults, logistic regression on pixels in [0, 1] scores 16 % on the test split (chance 10 %)
    with scikit-learn's C = 0.01 (10 % with its default C = 1, which overfits the 5,000 images) and a
    3-layer CNN about 83 % after 4 epochs of Adam. Classes are balanced (exactly, for split sizes
    that are multiples of num_classes); everything follows `seed`. Horizontal flips change the
    orientation, hence the class: augment with "crop", not "crop_flip".
    """
    for option, value, low in (("num_classes", num_classes, 2), ("train_size", train_size, 1),
                               ("val_size", val_size, 0), ("test_size", test_size, 1),
                               ("image_size", image_size, 4)):
        check_positive(option, value, integer=True, minimum=low)
    check_choice("channels", channels, (1, 3))
    check_positive("noise", noise, minimum=0)
    generator = torch.Generator().manual_seed(seed)
    sizes = (train_size, val_size, test_size)
    total = sum(sizes)
    labels = torch.cat([torch.randperm(n, generator=generator) % num_classes for n in sizes])   # balanced per split

    def uniform(*shape):
        return torch.rand(shape, generator=generator)

    def normal(*shape):
        return torch.randn(shape, generator=generator)

    orientations = math.ceil(num_classes / 2)
    spacing = math.pi / orientations
    angle = (labels // 2).float() * spacing + (uniform(total) - 0.5) * spacing
    frequency = torch.where(labels % 2 == 0, 2.5, 4.5) * (2 * math.pi / image_size)
    phase = uniform(total) * 2 * math.pi
    coordinate = torch.arange(image_size, dtype=torch.float32)                        # pixel centres
    centred = coordinate - (image_size - 1) / 2
    along = (torch.cos(angle)[:, None, None] * centred[None, None, :]
             + torch.sin(angle)[:, None, None] * centred[None, :, None])                # (N, S, S)
    grating = torch.cos(along.mul_(frequency[:, None, None]).add_(phase[:, None, None]))
    class_colour = F.normalize(torch.randn((num_classes, 3), generator=torch.Generator().manual_seed(10_000 + num_classes)),
                               dim=1)                                                 # fixed per task, not per seed
    colour = F.normalize(0.6 * class_colour[labels] + normal(total, 3), dim=1)         # (N, 3)
    amplitude = 0.15 + 0.1 * uniform(total)                                           # (N,)
    image = (grating[:, None] * (colour * amplitude[:, None])[:, :, None, None]).add_(0.5)   # (N, 3, S, S)
    # background: three separable Gaussian blobs per image, each with its own colour
    centre = uniform(total, 3, 2) * image_size                                        # (N, blob, yx)
    width = (0.15 + 0.2 * uniform(total, 3)) * image_size                             # (N, blob)
    profile = torch.exp(-(coordinate - centre[..., None]) ** 2 / (2 * width[..., None, None] ** 2))   # (N, blob, yx, S)
    blob_colour = 0.2 * normal(total, 3, 3)                                           # (N, blob, channel)
    for blob in range(3):                                                             # (N, 3, S, S) each
        image += (profile[:, blob, 0, :, None] * profile[:, blob, 1, None, :])[:, None] * blob_colour[:, blob, :, None, None]
    image += normal(total, 3, image_size, image_size).mul_((noise * amplitude)[:, None, None, None])
    if channels == 1:
        image = image.mean(dim=1, keepdim=True)
    pixels = image.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    split_points = np.cumsum([0, *sizes])
    splits = [ImageSplit(pixels[a:b].contiguous(), labels[a:b].clone()) for a, b in zip(split_points[:-1], split_points[1:])]
    names = [f"{round(math.degrees((c // 2) * spacing))}deg-{'low' if c % 2 == 0 else 'high'}"
             for c in range(num_classes)]
    return ImageDataset("synthetic", *splits, num_classes=num_classes, class_names=names, channels=channels,
                        image_size=image_size, paper_augment="crop",
                        split_notes=f"generated with seed {seed}: {train_size}/{val_size}/{test_size}")
