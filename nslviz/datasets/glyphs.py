"""Glyphs: an embedded few-shot set of procedurally drawn symbol classes (made on the fly, offline).

Mini-ImageNet (NSL Table 6) needs a download; quick runs and the tests need a set with enough
classes for episodes that appears from nothing. A glyph class is a random symbol: three pen strokes
(line segments) and, for half of the classes, a ring, with a class stroke width. Every image of the
class draws the symbol again with

    a rotation (±20°), a scale (0.8-1.15), a shift (up to 6 % of the image's width each way) and
    each stroke end moved by up to 2.5 % of the glyph's frame (so no two images are pixel copies), a
    random ink colour on a random two-colour gradient background, and Gaussian pixel noise,

so the class lies in the shape alone: a network has to learn stroke and ring detectors, and a
novel class is a new arrangement of parts it has seen, which is what few-shot transfer relies on.

    data = load_image_dataset("glyphs")      # 100 classes: train 0-63, val 64-79, test 80-99
    data.train.images                        # uint8 (64·60, 3, 32, 32)

Everything follows `seed`: the same seed gives the same classes and pixels. Splits hold disjoint
classes in Mini-ImageNet's proportions (64 % / 16 % / 20 %).
"""
from __future__ import annotations

import math

import torch

from .._checks import check_positive, check_seed
from .images import ImageDataset, ImageSplit, _assemble, _register, _Request, stratified_order
from .images.utils import empty_images

STROKES = 3                 # line segments per class
SPLIT_SHARES = (0.64, 0.16)  # train and val shares of the classes (Mini-ImageNet: 64 / 16 / 20 of 100)
RENDER_CHUNK = 512          # images drawn at once (bounds the (n, parts, H, W) distance tensors)


def glyph_class_split(num_classes: int) -> tuple[int, int, int]:
    """(train, val, test) class counts: 64 % / 16 % / the rest, each at least one."""
    check_positive("num_classes", num_classes, integer=True, minimum=3)
    train = max(1, round(SPLIT_SHARES[0] * num_classes))
    val = max(1, round(SPLIT_SHARES[1] * num_classes))
    if train + val >= num_classes:
        train = num_classes - val - 1
    return train, val, num_classes - train - val


def _squared_segment_distance(points: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Squared distance from points (n, 1, P, 2) to segments start/end (n, K, 1, 2): (n, K, P)."""
    direction = end - start
    offset = points - start                                                          # (n, K, P, 2)
    t = (offset * direction).sum(-1) / direction.square().sum(-1).clamp_min(1e-8)   # (n, K, P)
    return (offset - t.clamp_(0, 1).unsqueeze(-1) * direction).square().sum(-1)


def _draw(strokes: torch.Tensor, ring: torch.Tensor, width: torch.Tensor, image_size: int,
          generator: torch.Generator) -> torch.Tensor:
    """Draw n glyphs with their own random pose, colours and noise.

    strokes (n, K, 2, 2) stroke ends in the glyph's frame [-1, 1]²; ring (n, 3) centre x, y and radius
    (radius 0: no ring); width (n,) stroke half-width. Returns uint8 (n, 3, S, S)."""
    n = strokes.shape[0]

    def uniform(*shape, low=0.0, high=1.0):
        return low + (high - low) * torch.rand(shape, generator=generator)

    angle = uniform(n, low=-math.pi / 9, high=math.pi / 9)
    scale = uniform(n, low=0.8, high=1.15)
    shift = uniform(n, 1, 2, low=-0.12, high=0.12)
    strokes = strokes + uniform(*strokes.shape, low=-0.05, high=0.05)                   # (n, K, 2, 2)
    axis = (torch.arange(image_size, dtype=torch.float32) + 0.5) * (2 / image_size) - 1
    pixels = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).view(1, -1, 2)  # (1, P, 2) x, y
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)   # (n, 2, 2) R⁻¹
    local = ((pixels - shift) @ rotation.transpose(1, 2)) / scale.view(n, 1, 1)       # (n, P, 2) glyph frame
    squared = _squared_segment_distance(local.unsqueeze(1), strokes[:, :, :1], strokes[:, :, 1:2])   # (n, K, P)
    ring_distance = ((local - ring[:, None, :2]).norm(dim=-1) - ring[:, None, 2]).abs()        # (n, P)
    ring_distance = torch.where(ring[:, None, 2] > 0, ring_distance, torch.full_like(ring_distance, math.inf))
    nearest = torch.minimum(squared.amin(1).sqrt_(), ring_distance)                                    # (n, P)
    softness = 2.0 / image_size                                                                 # about a pixel
    ink = torch.sigmoid((width.view(n, 1) - nearest) / softness).view(n, 1, image_size, image_size)
    background = uniform(n, 2, 3, 1, 1, low=0.0, high=0.6)                                  # two colours
    ramp = axis.view(1, 1, 1, image_size) * torch.cos(uniform(n, 1, 1, 1, high=2 * math.pi)) \
        + axis.view(1, 1, image_size, 1) * torch.sin(uniform(n, 1, 1, 1, high=2 * math.pi))
    ramp = (ramp * 0.5 + 0.5).clamp(0, 1)                                                   # (n, 1, S, S)
    paper = background[:, 0] * (1 - ramp) + background[:, 1] * ramp                          # (n, 3, S, S)
    colour = uniform(n, 3, 1, 1, low=0.5, high=1.0)
    image = paper * (1 - ink) + colour * ink
    image = image + 0.05 * torch.randn(image.shape, generator=generator)
    return image.clamp_(0, 1).mul_(255).round_().to(torch.uint8)


def make_glyphs(num_classes: int = 100, per_class: int = 60, *, image_size: int = 32,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` images of each of `num_classes` glyph classes (see the module docstring):
    uint8 images (num_classes·per_class, 3, S, S) and int64 labels, class-major. Deterministic in `seed`."""
    check_positive("num_classes", num_classes, integer=True, minimum=1)
    check_positive("per_class", per_class, integer=True, minimum=1)
    check_positive("image_size", image_size, integer=True, minimum=8)
    check_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    strokes = torch.rand((num_classes, STROKES, 2, 2), generator=generator) * 1.4 - 0.7     # (C, K, end, xy)
    ring = torch.cat([torch.rand((num_classes, 2), generator=generator) * 0.8 - 0.4,
                      torch.rand((num_classes, 1), generator=generator) * 0.3 + 0.2], 1)  # (C, 3)
    ring[:, 2] *= (torch.rand(num_classes, generator=generator) < 0.5).float()            # half have no ring
    width = torch.rand(num_classes, generator=generator) * 0.06 + 0.06                      # (C,)
    labels = torch.arange(num_classes).repeat_interleave(per_class)                         # (N,)
    images = empty_images((labels.shape[0], 3, image_size, image_size), "the glyphs are drawn at that size")
    for start in range(0, labels.shape[0], RENDER_CHUNK):
        rows = labels[start:start + RENDER_CHUNK]
        images[start:start + RENDER_CHUNK] = _draw(strokes[rows], ring[rows], width[rows], image_size, generator)
    return images, labels


@_register("glyphs", "crop", manual="nothing to get: it is generated", options=("num_classes", "per_class"),
           few_shot=True)
def _load_glyphs(request: _Request) -> ImageDataset:
    """The glyph classes of `make_glyphs` (options num_classes = 100, per_class = 60), split by class
    64 % / 16 % / 20 % into train / val / test, each split in a seeded class-interleaved order."""
    num_classes = request.options.get("num_classes", 100)
    per_class = request.options.get("per_class", 60)
    train, val, _ = glyph_class_split(num_classes)
    images, labels = make_glyphs(num_classes, per_class, image_size=request.size(32), seed=request.seed)
    splits = []
    for low, high in ((0, train), (train, train + val), (train + val, num_classes)):
        rows = torch.nonzero((labels >= low) & (labels < high)).squeeze(1)
        split = ImageSplit(images[rows], labels[rows])
        splits.append(split.subset(stratified_order(split.labels, request.seed)))
    return _assemble(request, *splits, class_names=[f"glyph{c:03d}" for c in range(num_classes)],
                     native_size=request.size(32),
                     split_notes=f"generated with seed {request.seed}: {train} / {val} / {num_classes - train - val} "
                                 f"disjoint classes of {per_class} images (train / val / test)")


__all__ = ["glyph_class_split", "make_glyphs"]
