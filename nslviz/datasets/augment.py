"""Training augmentation on uint8 image batches, vectorised over the batch, on any device.

Every function takes a uint8 batch (B, C, H, W) (C = 1 or 3) on the CPU or a GPU and an optional
`torch.Generator` on the same device, draws all of its randomness from that generator (so a batch's
augmentation is a pure function of the generator's seed) and returns a new uint8 batch. There is no
Python loop over images: random crops are one gather, AutoAugment loops over its 14 operation types
and applies each to the images that drew it, with per-image magnitudes.

Policies of `augment_batch` (names in `AUGMENT_POLICIES`):

* "none"       unchanged.
* "flip"       horizontal flip, p = 0.5 (the "mild augmentation" of NSL Table 8).
* "crop"       zero-pad 4, random crop back to H×W (for digits, where flips change the class).
* "crop_flip"  zero-pad 4 + random crop + flip: the standard CIFAR recipe used for the NSL runs.
* "nsl"        the same with *symmetric* padding (numpy/TF "symmetric": the edge pixel is repeated),
               which is what the official NSL code does (docs/official-code.md §B.6).
* "paper"      the official Meta-Neighborhoods recipe (docs/official-code.md §A.7): zero-pad 4 +
               random crop, flip, AutoAugment with the CIFAR-10 policy (borders filled grey 128, as
               the official code's PIL AutoAugment does), Cutout 16×16.

AutoAugment follows torchvision's `AutoAugment(AutoAugmentPolicy.CIFAR10)` (Cubuk et al. 2019):
the same 25 sub-policies, probabilities, magnitude bins (10), signs, nearest-neighbour resampling
and fill 0, and it agrees with torchvision's functional ops image by image (tests/test_augment.py).
The official MN code used the common third-party PIL AutoAugment, whose geometric operations fill
the uncovered border with grey 128: the "paper" policy does too (`PAPER_AUTOAUGMENT_FILL`), while
`autoaugment_cifar10` fills 0 by default, as torchvision does. Deviation: that code's shears
resample bicubically; here every geometric operation is nearest-neighbour, as in torchvision. Where
the common PIL implementation differs from torchvision in other details (the sign of rotations, the
rounding of translations, the solarize thresholds), nslviz follows torchvision throughout.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import is_integer, is_number

AUGMENT_POLICIES = ("none", "flip", "crop", "crop_flip", "nsl", "paper")
PAPER_AUTOAUGMENT_FILL = 128     # the official code's PIL AutoAugment fills uncovered borders grey
PADDING_MODES = ("constant", "symmetric", "reflect", "circular")

# The AutoAugment CIFAR-10 policy (Cubuk et al. 2019, Appendix; torchvision AutoAugmentPolicy.CIFAR10):
# 25 sub-policies of two (operation, probability, magnitude bin) steps; bin None = no magnitude.
CIFAR10_POLICY: tuple[tuple[tuple[str, float, int | None], tuple[str, float, int | None]], ...] = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)

# Operation types, their magnitude ranges over the 10 bins and whether the magnitude takes a random sign.
OPERATIONS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
              "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert")
GEOMETRIC_OPERATIONS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
SIGNED_OPERATIONS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
                     "Contrast", "Sharpness")
NUM_BINS = 10


def magnitude_bins(height: int, width: int) -> dict[str, torch.Tensor | None]:
    """The magnitude of each bin of each operation for an H×W image, as torchvision defines them
    (float32 values, as torchvision computes them): shear 0–0.3, translate 0–150/331 of the side,
    rotate 0–30°, brightness/colour/contrast/sharpness 0–0.9 (factor 1 ± m), posterize 8–4 bits,
    solarize threshold 1–0 (times 255)."""
    space = {
        "ShearX": torch.linspace(0.0, 0.3, NUM_BINS),
        "ShearY": torch.linspace(0.0, 0.3, NUM_BINS),
        "TranslateX": torch.linspace(0.0, 150.0 / 331.0 * width, NUM_BINS),
        "TranslateY": torch.linspace(0.0, 150.0 / 331.0 * height, NUM_BINS),
        "Rotate": torch.linspace(0.0, 30.0, NUM_BINS),
        "Posterize": (8 - (torch.arange(NUM_BINS) / ((NUM_BINS - 1) / 4))).round().int(),
        "Solarize": torch.linspace(1.0, 0.0, NUM_BINS),
    }
    for name in ("Brightness", "Color", "Contrast", "Sharpness"):
        space[name] = torch.linspace(0.0, 0.9, NUM_BINS)
    return {name: space.get(name) for name in OPERATIONS}


# ----------------------------------------------------------------------------------------------
# validation and random draws


def _check_batch(images: torch.Tensor, generator: torch.Generator | None) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        got = (f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor)
               else type(images).__name__)
        raise ValueError(f"expected a uint8 image batch of shape (B, C, H, W), got {got}")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got images of shape {tuple(images.shape)}")
    if generator is not None and generator.device.type != images.device.type:
        raise ValueError(f"the generator is on {generator.device} but the images are on {images.device}; "
                         "create it with torch.Generator(device=images.device)")


def _check_fill(fill) -> None:
    """A border or hole value of a uint8 image: an integer in 0..255 (uint8 arithmetic would wrap 300 to 44)."""
    if not is_integer(fill) or not 0 <= fill <= 255:
        raise ValueError(f"fill must be an integer pixel value in 0..255, got {fill!r}")


def _uniform(shape, generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def _randint(high: int, shape, generator, device) -> torch.Tensor:
    return torch.randint(high, shape, generator=generator, device=device)


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


# ----------------------------------------------------------------------------------------------
# crop, flip, cutout


def _gather_pixels(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """out[b, c, i, j] = images[b, c, rows[b, i], cols[b, j]]: one gather for the whole batch.
    rows (B, H'), cols (B, W') index the last two axes of images (B, C, H, W)."""
    batch, channels, height, width = images.shape
    out_height, out_width = rows.shape[1], cols.shape[1]
    flat_index = (rows[:, :, None] * width + cols[:, None, :]).view(batch, 1, out_height * out_width)
    return images.reshape(batch, channels, height * width).gather(
        2, flat_index.expand(batch, channels, out_height * out_width)).view(batch, channels, out_height, out_width)


def _fold_index(index: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Map positions of a padded axis (possibly outside [0, size)) to source positions."""
    if mode == "circular":
        return index.remainder(size)
    if mode == "reflect":           # ... 2 1 | 0 1 2 ... (edge not repeated)
        period = max(2 * (size - 1), 1)
        folded = index.remainder(period)
        return torch.where(folded < size, folded, period - folded)
    period = 2 * size               # "symmetric": ... 1 0 | 0 1 ... (edge repeated, numpy/TF)
    folded = index.remainder(period)
    return torch.where(folded < size, folded, period - 1 - folded)


def random_crop(images: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None,
                fill: int = 0, padding_mode: str = "constant") -> torch.Tensor:
    """Pad by `padding` on every side and crop a random H×W window per image (offsets uniform in
    [0, 2·padding] along each axis), with one gather for the whole batch. `padding_mode`:
    "constant" (value `fill`), "symmetric" (edge repeated, numpy/TF), "reflect" (edge not repeated)
    or "circular"."""
    _check_batch(images, generator)
    _check_fill(fill)
    if not is_integer(padding) or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"unknown padding_mode {padding_mode!r}; expected one of {', '.join(PADDING_MODES)}")
    batch, _, height, width = images.shape
    if padding == 0 or batch == 0:
        return images.clone()
    device = images.device
    offsets = _randint(2 * padding + 1, (2, batch), generator, device)               # (2, B) top, left
    rows = offsets[0, :, None] + torch.arange(height, device=device)                  # (B, H) in padded coordinates
    cols = offsets[1, :, None] + torch.arange(width, device=device)                   # (B, W)
    if padding_mode == "constant":
        padded = F.pad(images, (padding,) * 4, value=fill)                            # (B, C, H+2p, W+2p)
        return _gather_pixels(padded, rows, cols)
    return _gather_pixels(images, _fold_index(rows - padding, height, padding_mode),
                          _fold_index(cols - padding, width, padding_mode))


def window_crop(images: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A size×size window of each image (B, C, H, W): at a random place (top and left uniform in
    [0, H − size] and [0, W − size], drawn from `generator`) when `generator` is given, else at the
    centre. One gather for the whole batch."""
    if generator is not None:
        _check_batch(images, generator)
    batch, _, height, width = images.shape
    if not is_integer(size) or not 1 <= size <= min(height, width):
        raise ValueError(f"window size must be an integer in 1..{min(height, width)} (the images are "
                         f"{height}x{width}), got {size!r}")
    device = images.device
    if generator is None:
        top = torch.full((batch,), (height - size) // 2, device=device)
        left = torch.full((batch,), (width - size) // 2, device=device)
    else:
        top = _randint(height - size + 1, (batch,), generator, device)                 # (B,)
        left = _randint(width - size + 1, (batch,), generator, device)                 # (B,)
    rows = top[:, None] + torch.arange(size, device=device)                            # (B, size)
    cols = left[:, None] + torch.arange(size, device=device)                           # (B, size)
    return _gather_pixels(images, rows, cols)


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability p."""
    _check_batch(images, generator)
    if not is_number(p) or not 0 <= p <= 1:
        raise ValueError(f"flip probability p must be a number in [0, 1], got {p!r}")
    batch, _, height, width = images.shape
    device = images.device
    flip = _uniform((batch, 1), generator, device) < p                                 # (B, 1)
    cols = torch.arange(width, device=device).expand(batch, width)
    cols = torch.where(flip, width - 1 - cols, cols)                                  # (B, W)
    return _gather_pixels(images, torch.arange(height, device=device).expand(batch, height), cols)


def cutout(images: torch.Tensor, size: int = 16, generator: torch.Generator | None = None,
           fill: int = 0) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017) as in the official code: one size×size hole per image, its
    centre uniform over the image, clipped at the borders (so holes near an edge are smaller). An odd
    size gives a (size - 1)×(size - 1) hole, as the official code's `length // 2` each side of the centre."""
    _check_batch(images, generator)
    _check_fill(fill)
    if not is_integer(size) or size < 0:
        raise ValueError(f"cutout size must be an integer >= 0, got {size!r}")
    batch, _, height, width = images.shape
    device = images.device
    centre_y = _randint(height, (batch, 1), generator, device)
    centre_x = _randint(width, (batch, 1), generator, device)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    in_rows = (rows >= centre_y - size // 2) & (rows < centre_y + size // 2)          # (B, H)
    in_cols = (cols >= centre_x - size // 2) & (cols < centre_x + size // 2)          # (B, W)
    hole = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]                       # (B, 1, H, W)
    return _masked_fill(images, hole, fill)


def _masked_fill(images: torch.Tensor, mask: torch.Tensor, fill: int) -> torch.Tensor:
    """images with `fill` where mask (broadcastable bool); uint8 arithmetic, several times faster on
    the CPU than masked_fill/where with a broadcast mask."""
    keep = (~mask).to(torch.uint8)
    out = images * keep
    return out.add_((1 - keep) * fill) if fill else out


# ----------------------------------------------------------------------------------------------
# AutoAugment operations, each with one parameter per image (magnitudes: float64 (N,))


def _to_uint8(values: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 255] and truncate, as torchvision's blends do."""
    return values.clamp_(0, 255).to(torch.uint8)


def _blend(image: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """ratio·image + (1 − ratio)·other per image; both weights rounded to float32 from float64."""
    weight = _per_image(ratio.float())
    other_weight = _per_image((1.0 - ratio).float())
    return _to_uint8(torch.addcmul(image.float().mul_(weight), other, other_weight))


def _grayscale(image: torch.Tensor) -> torch.Tensor:
    """Luma (ITU-R 601-2) floored, float32 (N, 1, H, W); grey images are returned as they are."""
    if image.shape[1] == 1:
        return image.float()
    red, green, blue = image.float().unbind(1)
    return red.mul(0.2989).add_(green, alpha=0.587).add_(blue, alpha=0.114).floor_().unsqueeze(1)


def adjust_brightness(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with black: factor·x."""
    return _to_uint8(image.float().mul_(_per_image(factor.float())))


def adjust_color(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Saturation ("Color"): blend with the image's own grey version."""
    if image.shape[1] == 1:
        return image.clone()
    return _blend(image, _grayscale(image), factor)


def adjust_contrast(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean grey level."""
    mean = _grayscale(image).mean(dim=(1, 2, 3), keepdim=True)                        # (N, 1, 1, 1)
    return _blend(image, mean, factor)


def adjust_sharpness(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with a 3×3 smoothed copy (kernel [1 1 1; 1 5 1; 1 1 1]/13, rounded); borders unchanged."""
    channels, height, width = image.shape[1:]
    if height <= 2 or width <= 2:
        return image.clone()
    kernel = torch.full((3, 3), 1.0 / 13.0, device=image.device)
    kernel[1, 1] = 5.0 / 13.0
    output = image.float()
    blurred = F.conv2d(output, kernel.expand(channels, 1, 3, 3), groups=channels).round_()
    inner = output[..., 1:-1, 1:-1]
    inner.addcmul_(blurred.sub_(inner), _per_image((1.0 - factor).float()))
    return _to_uint8(output)


def posterize(image: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the `bits` most significant bits of every value (bits per image, 0–8)."""
    bits = bits.to(device=image.device, dtype=torch.int32)
    ones = torch.ones_like(bits)
    mask = torch.bitwise_left_shift(torch.bitwise_left_shift(ones, bits) - 1, 8 - bits).to(torch.uint8)
    return image & _per_image(mask)


def solarize(image: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert every value >= threshold (threshold per image, on the 0–255 scale)."""
    above = image.float() >= _per_image(threshold.float())
    return torch.where(above, image.bitwise_not(), image)


def autocontrast(image: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image to the full range [0, 255] (flat channels unchanged)."""
    values = image.float()
    low = values.amin(dim=(-2, -1), keepdim=True)
    high = values.amax(dim=(-2, -1), keepdim=True)
    flat = high == low
    scale = (high - low).mul_(1.0 / 255.0).masked_fill_(flat, 1.0)
    return _to_uint8(values.sub_(low.masked_fill(flat, 0.0)).div_(scale))


def equalize(image: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation of each channel of each image with PIL's lookup table
    (lut[k] = (cdf[k−1] + step//2) // step, step = (#pixels − #pixels at the top value) // 255),
    from one batched histogram (scatter_add over (N·C, 256)). Channels with step 0 are unchanged."""
    batch, channels, height, width = image.shape
    flat = image.reshape(batch * channels, height * width).long()                     # (N·C, H·W)
    histogram = torch.zeros(batch * channels, 256, dtype=torch.int64, device=image.device)
    histogram.scatter_add_(1, flat, torch.ones_like(flat))
    top_count = histogram.gather(1, flat.amax(dim=1, keepdim=True))                   # (N·C, 1)
    step = (height * width - top_count).div(255, rounding_mode="floor")
    cumulative = histogram.cumsum(dim=1)[:, :-1]
    lut = (cumulative + step // 2).div(step.clamp(min=1), rounding_mode="floor").clamp_(0, 255)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut], dim=1).to(torch.uint8)       # (N·C, 256)
    equalized = lut.gather(1, flat).view_as(image)
    return torch.where((step > 0).view(batch, channels, 1, 1), equalized, image)


def invert(image: torch.Tensor) -> torch.Tensor:
    return image.bitwise_not()


def _inverse_affine_matrices(height: int, width: int, *, angle: torch.Tensor, shear_x: torch.Tensor,
                             shear_y: torch.Tensor, translate_x: torch.Tensor, translate_y: torch.Tensor,
                             top_left_centre: bool) -> torch.Tensor:
    """Per-image inverse affine matrices (N, 2, 3), float32, in pixel units relative to the image
    centre, by torchvision's formula: the output→input map of T·C·R(angle)·Sh_y·Sh_x·C⁻¹, computed in
    float64. Angles and shears in degrees (float64 (N,) each); `top_left_centre`: C is the top-left
    corner (AutoAugment's shears) instead of the image centre."""
    rotation, shear_x, shear_y = torch.deg2rad(angle), torch.deg2rad(shear_x), torch.deg2rad(shear_y)
    cx, cy = (-0.5 * width, -0.5 * height) if top_left_centre else (0.0, 0.0)
    a = torch.cos(rotation - shear_y) / torch.cos(shear_y)
    b = -(a * torch.tan(shear_x) + torch.sin(rotation))
    c = torch.sin(rotation - shear_y) / torch.cos(shear_y)
    d = torch.cos(rotation) - c * torch.tan(shear_x)
    # inverse of the rotate-shear part (its determinant is 1), then of the centre and translation
    x_offset = cx - d * (cx + translate_x) + b * (cy + translate_y)
    y_offset = cy + c * (cx + translate_x) - a * (cy + translate_y)
    return torch.stack([d, -b, x_offset, -c, a, y_offset], dim=1).view(-1, 2, 3).float()


def _warp(images: torch.Tensor, theta: torch.Tensor, fill: int) -> torch.Tensor:
    """Nearest-neighbour warp of each image by its own inverse matrix (N, 2, 3), uncovered pixels
    `fill`. Same sampling grid as torchvision (normalised coordinates, align_corners=False, ties
    rounded to even as grid_sample does), but read with one integer gather on the uint8 batch."""
    batch, channels, height, width = images.shape
    device = images.device
    x = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=device).repeat(height)
    y = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=device).repeat_interleave(width)
    rescaled = theta.to(device).transpose(1, 2) / torch.tensor([0.5 * width, 0.5 * height], device=device)
    grid_x = x * rescaled[:, 0, 0, None] + y * rescaled[:, 1, 0, None] + rescaled[:, 2, 0, None]   # (N, H·W)
    grid_y = x * rescaled[:, 0, 1, None] + y * rescaled[:, 1, 1, None] + rescaled[:, 2, 1, None]
    source_x = torch.round(((grid_x + 1) * width - 1) / 2)                            # pixel column read
    source_y = torch.round(((grid_y + 1) * height - 1) / 2)
    inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)
    flat_index = (source_y.clamp(0, height - 1) * width + source_x.clamp(0, width - 1)).long()
    warped = images.reshape(batch, channels, height * width).gather(
        2, flat_index[:, None].expand(batch, channels, height * width))
    return _masked_fill(warped, ~inside[:, None], fill).view(batch, channels, height, width)


def affine_operation(images: torch.Tensor, operation: torch.Tensor, magnitude: torch.Tensor,
                     fill: int = 0) -> torch.Tensor:
    """The five geometric AutoAugment operations, each image with its own operation index into
    GEOMETRIC_OPERATIONS and signed magnitude, in one warp (torchvision's inverse-matrix formula):
    ShearX/Y by atan(m) about the top-left corner, TranslateX/Y by int(m) pixels, Rotate by m degrees
    (counter-clockwise) about the centre; nearest neighbour, uncovered pixels `fill`."""
    _check_fill(fill)
    height, width = images.shape[-2:]
    magnitude = magnitude.double()
    is_op = {name: operation == index for index, name in enumerate(GEOMETRIC_OPERATIONS)}
    zero = torch.zeros_like(magnitude)
    shear = torch.rad2deg(torch.atan(magnitude))
    shift = torch.trunc(magnitude)
    shear_theta = _inverse_affine_matrices(
        height, width, angle=zero, shear_x=torch.where(is_op["ShearX"], shear, zero),
        shear_y=torch.where(is_op["ShearY"], shear, zero), translate_x=zero, translate_y=zero,
        top_left_centre=True)
    other_theta = _inverse_affine_matrices(
        height, width, angle=torch.where(is_op["Rotate"], -magnitude.remainder(360.0), zero),
        shear_x=zero, shear_y=zero, translate_x=torch.where(is_op["TranslateX"], shift, zero),
        translate_y=torch.where(is_op["TranslateY"], shift, zero), top_left_centre=False)
    is_shear = (is_op["ShearX"] | is_op["ShearY"]).view(-1, 1, 1)
    return _warp(images, torch.where(is_shear, shear_theta, other_theta), fill)


_COLOUR_OPERATIONS = {
    "Brightness": lambda x, m: adjust_brightness(x, 1.0 + m),
    "Color": lambda x, m: adjust_color(x, 1.0 + m),
    "Contrast": lambda x, m: adjust_contrast(x, 1.0 + m),
    "Sharpness": lambda x, m: adjust_sharpness(x, 1.0 + m),
    "Posterize": lambda x, m: posterize(x, m.int()),
    "Solarize": lambda x, m: solarize(x, 255.0 * m),
    "AutoContrast": lambda x, m: autocontrast(x),
    "Equalize": lambda x, m: equalize(x),
    "Invert": lambda x, m: invert(x),
}


_TABLES: dict = {}


def _policy_tables(policy, height: int, width: int, device) -> tuple[torch.Tensor, ...]:
    """(operation index, probability, magnitude) of each step of each sub-policy: (P, 2) tensors,
    built once per (policy, image size, device)."""
    key = (policy, height, width, str(device))
    if key not in _TABLES:
        _TABLES[key] = _build_policy_tables(policy, height, width, device)
    return _TABLES[key]


def _build_policy_tables(policy, height: int, width: int, device) -> tuple[torch.Tensor, ...]:
    bins = magnitude_bins(height, width)
    operation = torch.tensor([[OPERATIONS.index(op) for op, _, _ in sub] for sub in policy], device=device)
    probability = torch.tensor([[p for _, p, _ in sub] for sub in policy], device=device)
    magnitude = torch.tensor([[0.0 if level is None else float(bins[op][level]) for op, _, level in sub]
                              for sub in policy], dtype=torch.float64, device=device)
    return operation, probability, magnitude


def autoaugment_cifar10(images: torch.Tensor, generator: torch.Generator | None = None,
                        fill: int = 0) -> torch.Tensor:
    """AutoAugment with the CIFAR-10 policy: each image draws one of the 25 sub-policies; each of its
    two steps is applied with the step's probability, with the bin's magnitude and, for signed
    operations, a random sign (torchvision's AutoAugment, per image)."""
    _check_batch(images, generator)
    batch, device = images.shape[0], images.device
    sub_policy = _randint(len(CIFAR10_POLICY), (batch,), generator, device)            # (B,)
    probability = _policy_tables(CIFAR10_POLICY, 1, 1, device)[1]
    applied = _uniform((batch, 2), generator, device) <= probability[sub_policy]      # (B, 2)
    negative = _uniform((batch, 2), generator, device) <= 0.5
    return apply_sub_policies(images, sub_policy, applied, negative, fill=fill)


def apply_sub_policies(images: torch.Tensor, sub_policy: torch.Tensor, applied: torch.Tensor,
                       negative: torch.Tensor, *, policy=CIFAR10_POLICY, fill: int = 0) -> torch.Tensor:
    """The deterministic part of AutoAugment: image i runs sub-policy `sub_policy[i]`, doing step s
    when `applied[i, s]`, with its magnitude negated when `negative[i, s]` (signed operations only).
    Vectorised by looping over the two steps and the operation types (the five geometric operations
    together in one warp), each applied to the images that drew it."""
    _check_batch(images, None)
    _check_fill(fill)
    batch = images.shape[0]
    for name, tensor, shape in (("sub_policy", sub_policy, (batch,)), ("applied", applied, (batch, 2)),
                                ("negative", negative, (batch, 2))):
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must be a tensor of shape {shape} for a batch of {batch} images, got "
                             f"{tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__}")
    if applied.dtype != torch.bool or negative.dtype != torch.bool:
        raise ValueError(f"applied and negative must be bool tensors, got {applied.dtype} and {negative.dtype}")
    if sub_policy.dtype.is_floating_point or sub_policy.dtype == torch.bool or (
            batch and not 0 <= int(sub_policy.min()) <= int(sub_policy.max()) < len(policy)):
        raise ValueError(f"sub_policy must hold integer indices in 0..{len(policy) - 1}, got {sub_policy.tolist()[:8]}")
    height, width, device = images.shape[-2], images.shape[-1], images.device
    operation_table, _, magnitude_table = _policy_tables(policy, height, width, device)
    signed = torch.tensor([op in SIGNED_OPERATIONS for op in OPERATIONS], device=device)
    sub_policy, applied, negative = sub_policy.to(device), applied.to(device), negative.to(device)
    operation = operation_table[sub_policy]                                           # (B, 2)
    magnitude = magnitude_table[sub_policy]
    magnitude = torch.where(negative & signed[operation], -magnitude, magnitude)
    geometric = operation < len(GEOMETRIC_OPERATIONS)                                 # listed first in OPERATIONS
    output = images.clone()
    for step in range(2):
        chosen = applied[:, step]
        index = torch.nonzero(chosen & geometric[:, step]).squeeze(1)
        if index.numel():
            output[index] = affine_operation(output[index], operation[index, step], magnitude[index, step], fill)
        for name, function in _COLOUR_OPERATIONS.items():
            index = torch.nonzero(chosen & (operation[:, step] == OPERATIONS.index(name))).squeeze(1)
            if index.numel():
                output[index] = function(output[index], magnitude[index, step])
    return output


# ----------------------------------------------------------------------------------------------
# policies


def augment_batch(images: torch.Tensor, policy: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a uint8 (B, C, H, W) batch with one of AUGMENT_POLICIES (see the module docstring);
    returns uint8. Deterministic given the generator (which must live on the batch's device)."""
    if policy not in AUGMENT_POLICIES:
        raise ValueError(f"unknown augmentation policy {policy!r}; expected one of {', '.join(AUGMENT_POLICIES)}")
    _check_batch(images, generator)
    if policy == "none":
        return images
    if policy == "flip":
        return random_flip(images, generator)
    if policy == "crop":
        return random_crop(images, 4, generator)
    if policy == "nsl":
        return random_flip(random_crop(images, 4, generator, padding_mode="symmetric"), generator)
    images = random_flip(random_crop(images, 4, generator), generator)
    if policy == "crop_flip":
        return images
    return cutout(autoaugment_cifar10(images, generator, fill=PAPER_AUTOAUGMENT_FILL), 16, generator)


def to_float(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images → floats in [0, 1] (the official MN code uses no mean/std normalisation)."""
    if images.dtype != torch.uint8:
        raise ValueError(f"to_float expects uint8 images, got {images.dtype}")
    return images.to(dtype).div_(255.0)
