"""Vectorised augmentation: crops, flips, Cutout and AutoAugment (CIFAR-10 policy).

Every AutoAugment operation is compared with torchvision.transforms.v2.functional applied to one
image at a time with the same magnitude: all of them agree exactly (tolerance 0) on the CPU,
the nearest-neighbour geometric ones included, for every magnitude bin and sign of the policy space.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

from nslviz.datasets import augment as A


def sample_images(count: int = 12, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """Noise, smooth images and low-contrast ones (flat channels too), so that autocontrast,
    equalize and solarize meet their edge cases."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (count, channels, 32, 32), generator=generator, dtype=torch.uint8)
    smooth = torch.nn.functional.avg_pool2d(noise.float(), 7, 1, 3).round().to(torch.uint8)
    low = (noise // 16 + 100).to(torch.uint8)
    low[0, 0] = 77                                                    # a flat channel
    return torch.cat([noise, smooth, low])


def torchvision_op(name: str, image: torch.Tensor, magnitude: float) -> torch.Tensor:
    """torchvision's own AutoAugment step (v2 _AutoAugmentBase._apply_image_or_video_transform)."""
    nearest = TF.InterpolationMode.NEAREST
    if name in ("ShearX", "ShearY"):
        shear = math.degrees(math.atan(magnitude))
        return TF.affine(image, angle=0.0, translate=[0, 0], scale=1.0, interpolation=nearest, center=[0, 0],
                         shear=[shear, 0.0] if name == "ShearX" else [0.0, shear])
    if name in ("TranslateX", "TranslateY"):
        shift = [int(magnitude), 0] if name == "TranslateX" else [0, int(magnitude)]
        return TF.affine(image, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0], interpolation=nearest)
    table = {"Rotate": lambda: TF.rotate(image, angle=magnitude, interpolation=nearest),
             "Brightness": lambda: TF.adjust_brightness(image, 1.0 + magnitude),
             "Color": lambda: TF.adjust_saturation(image, 1.0 + magnitude),
             "Contrast": lambda: TF.adjust_contrast(image, 1.0 + magnitude),
             "Sharpness": lambda: TF.adjust_sharpness(image, 1.0 + magnitude),
             "Posterize": lambda: TF.posterize(image, int(magnitude)),
             "Solarize": lambda: TF.solarize(image, 255.0 * magnitude),
             "AutoContrast": lambda: TF.autocontrast(image), "Equalize": lambda: TF.equalize(image),
             "Invert": lambda: TF.invert(image)}
    return table[name]()


def ours(name: str, images: torch.Tensor, magnitude: float) -> torch.Tensor:
    magnitudes = torch.full((images.shape[0],), magnitude, dtype=torch.float64)
    if name in A.GEOMETRIC_OPERATIONS:
        operation = torch.full((images.shape[0],), A.GEOMETRIC_OPERATIONS.index(name))
        return A.affine_operation(images, operation, magnitudes)
    return A._COLOUR_OPERATIONS[name](images, magnitudes)


# ----------------------------------------------------------------------------------------------
# AutoAugment against torchvision


def test_policy_table_and_magnitude_bins_are_torchvisions():
    reference = T.AutoAugment(T.AutoAugmentPolicy.CIFAR10)
    assert [tuple(step) for step in A.CIFAR10_POLICY] == [tuple(step) for step in reference._policies]
    assert len(A.CIFAR10_POLICY) == 25
    bins = A.magnitude_bins(32, 32)
    for name, (space, signed) in T.AutoAugment._AUGMENTATION_SPACE.items():
        expected = space(10, 32, 32)
        assert (bins[name] is None) == (expected is None), name
        if expected is not None:
            assert torch.equal(bins[name], expected), name
        assert (name in A.SIGNED_OPERATIONS) == signed, name


@pytest.mark.parametrize("name", A.OPERATIONS)
def test_each_operation_matches_torchvision_exactly(name):
    """Each image of the batch gets its own magnitude (every bin, both signs, on a noisy and on a
    smooth image); torchvision runs on each image alone with that magnitude."""
    pool = sample_images()                                            # 12 noise, 12 smooth, 12 low-contrast
    bins = A.magnitude_bins(32, 32)[name]
    if bins is None:
        images, magnitudes = pool, [0.0] * len(pool)
    else:
        signs = (1, -1) if name in A.SIGNED_OPERATIONS else (1,)
        settings = [sign * float(bins[level]) for level in range(10) for sign in signs]
        images = torch.stack([pool[(k % 12) + 12 * part] for part in (0, 1) for k in range(len(settings))])
        magnitudes = settings * 2
    magnitude = torch.tensor(magnitudes, dtype=torch.float64)
    if name in A.GEOMETRIC_OPERATIONS:
        result = A.affine_operation(images, torch.full((len(images),), A.GEOMETRIC_OPERATIONS.index(name)), magnitude)
    else:
        result = A._COLOUR_OPERATIONS[name](images, magnitude)
    for image, value, got in zip(images, magnitudes, result):
        assert torch.equal(got, torchvision_op(name, image, value)), (name, value)


def test_mixed_geometric_operations_in_one_warp_match_torchvision():
    images = sample_images()
    generator = torch.Generator().manual_seed(9)
    operation = torch.randint(5, (len(images),), generator=generator)
    scale = torch.tensor([0.3, 0.3, 14.5, 14.5, 30.0], dtype=torch.float64)[operation]   # each op's range
    magnitude = (2 * torch.rand(len(images), generator=generator, dtype=torch.float64) - 1) * scale
    result = A.affine_operation(images, operation, magnitude)
    for image, op, value, got in zip(images, operation, magnitude.tolist(), result):
        name = A.GEOMETRIC_OPERATIONS[int(op)]
        assert torch.equal(got, torchvision_op(name, image, value)), (name, value)
    grey = A.affine_operation(images, torch.full((len(images),), 4), magnitude.abs() + 5, fill=128)
    expected = [TF.rotate(image, angle=float(v), interpolation=TF.InterpolationMode.NEAREST, fill=128)
                for image, v in zip(images, magnitude.abs() + 5)]
    assert torch.equal(grey, torch.stack(expected))                   # fill=128: the official code's grey border


@pytest.mark.parametrize("name", ["Color", "Contrast", "Sharpness", "Equalize", "AutoContrast", "Rotate"])
def test_single_channel_operations_match_torchvision(name):
    images = sample_images(channels=1)
    magnitude = 0.5 if name != "Rotate" else 20.0
    expected = torch.stack([torchvision_op(name, image, magnitude) for image in images])
    assert torch.equal(ours(name, images, magnitude), expected)


def test_sub_policies_with_given_decisions_match_torchvision_step_by_step():
    images = sample_images(40, seed=2)
    count = images.shape[0]
    generator = torch.Generator().manual_seed(5)
    sub_policy = torch.randint(25, (count,), generator=generator)
    applied = torch.rand((count, 2), generator=generator) < 0.7
    negative = torch.rand((count, 2), generator=generator) < 0.5
    result = A.apply_sub_policies(images, sub_policy, applied, negative)
    bins = A.magnitude_bins(32, 32)
    for i in range(count):
        image = images[i]
        for step, (name, _, level) in enumerate(A.CIFAR10_POLICY[int(sub_policy[i])]):
            if not applied[i, step]:
                continue
            magnitude = 0.0 if level is None else float(bins[name][level])
            if name in A.SIGNED_OPERATIONS and negative[i, step]:
                magnitude = -magnitude
            image = torchvision_op(name, image, magnitude)
        assert torch.equal(result[i], image), i


def test_autoaugment_draws_sub_policies_uniformly_and_steps_with_their_probabilities():
    images = sample_images(2)                                         # 6 images, repeated below
    batch = images.repeat(500, 1, 1, 1)                               # 3000 images
    out = A.autoaugment_cifar10(batch, torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)                      # replay the draws, in order
    sub_policy = torch.randint(25, (len(batch),), generator=generator)
    probability = torch.tensor([[p for _, p, _ in sub] for sub in A.CIFAR10_POLICY])
    applied = torch.rand((len(batch), 2), generator=generator) <= probability[sub_policy]
    negative = torch.rand((len(batch), 2), generator=generator) <= 0.5
    assert torch.equal(out, A.apply_sub_policies(batch, sub_policy, applied, negative))
    counts = torch.bincount(sub_policy, minlength=25).float()
    assert counts.min() > 80 and counts.max() < 160                   # uniform: 120 expected each
    rate = applied.float().mean().item()
    assert abs(rate - probability[sub_policy].mean().item()) < 0.03


# ----------------------------------------------------------------------------------------------
# crop, flip, cutout


@pytest.mark.parametrize("mode, numpy_mode", [("constant", "constant"), ("symmetric", "symmetric"),
                                              ("reflect", "reflect"), ("circular", "wrap")])
def test_random_crop_is_a_window_of_the_padded_image(mode, numpy_mode):
    images = sample_images(20, seed=3)[:20]                          # noise: every window is unique
    out = A.random_crop(images, 4, torch.Generator().manual_seed(1), padding_mode=mode)
    padded = torch.from_numpy(np.pad(images.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)), mode=numpy_mode))
    windows = padded.unfold(2, 32, 1).unfold(3, 32, 1)              # (B, C, 9, 9, 32, 32)
    matches = (windows == out[:, :, None, None]).all(dim=(-1, -2)).all(dim=1)   # (B, 9, 9)
    assert torch.equal(matches.flatten(1).sum(1), torch.ones(20, dtype=torch.int64))
    offsets = matches.flatten(1).float().argmax(1)
    assert len(set(offsets.tolist())) > 10                           # offsets vary from image to image


def test_random_crop_offsets_cover_the_full_range_and_fill_value():
    images = torch.full((2000, 1, 8, 8), 200, dtype=torch.uint8)
    out = A.random_crop(images, 2, torch.Generator().manual_seed(0), fill=7)
    column = out[:, 0, :, 4] == 7                                   # (B, H): the padded rows that show
    top, bottom = column[:, :2].sum(1), column[:, -2:].sum(1)
    assert not torch.any((top > 0) & (bottom > 0))
    assert set((bottom - top).tolist()) == {-2, -1, 0, 1, 2}        # the window moved up 2 ... down 2
    row = out[:, 0, 4, :] == 7
    assert set((row[:, -2:].sum(1) - row[:, :2].sum(1)).tolist()) == {-2, -1, 0, 1, 2}   # and left 2 ... right 2
    assert set(out.unique().tolist()) == {7, 200}


def test_random_flip_mirrors_about_half_of_the_images():
    images = sample_images(100, seed=4)
    out = A.random_flip(images, torch.Generator().manual_seed(0))
    flipped = (out == images.flip(-1)).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert torch.all(flipped ^ kept)
    assert 0.4 < flipped.float().mean().item() < 0.6


@pytest.mark.parametrize("p, share", [(0.0, 0.0), (0.2, 0.2), (1.0, 1.0)])
def test_random_flip_mirrors_each_image_with_probability_p(p, share):
    images = sample_images(500, seed=5)
    out = A.random_flip(images, torch.Generator().manual_seed(0), p=p)
    flipped = (out == images.flip(-1)).flatten(1).all(1)
    assert torch.all(flipped ^ (out == images).flatten(1).all(1))
    assert flipped.float().mean().item() == pytest.approx(share, abs=0.05)


def test_cutout_makes_one_clipped_hole_with_a_uniform_centre():
    images = torch.full((3000, 3, 32, 32), 9, dtype=torch.uint8)
    out = A.cutout(images, 16, torch.Generator().manual_seed(0))
    hole = out[:, 0] == 0                                            # (B, H, W)
    assert torch.equal(hole[:, None].expand_as(out), out == 0)       # same hole in every channel
    rows, cols = hole.any(2), hole.any(1)                            # (B, H), (B, W)
    assert torch.equal(hole, rows[:, :, None] & cols[:, None, :])    # a rectangle
    height, width = rows.sum(1), cols.sum(1)
    assert height.max() == 16 and width.max() == 16 and height.min() == 8 and width.min() == 8
    interior = (rows[:, 0] == 0) & (rows[:, -1] == 0)
    assert torch.all(height[interior] == 16)                         # clipped only at the borders
    first_row = rows.float().argmax(1)
    centre_row = torch.where(first_row > 0, first_row + 8, height - 8)   # first + 8, unless clipped at the top
    assert abs(centre_row.float().mean().item() - 15.5) < 0.5        # centre uniform over 0..31
    assert torch.equal(A.cutout(images, 0, torch.Generator().manual_seed(0)), images)


# ----------------------------------------------------------------------------------------------
# policies, determinism, errors


@pytest.mark.parametrize("policy", A.AUGMENT_POLICIES)
def test_policies_are_deterministic_given_the_generator(policy):
    images = sample_images(16, seed=5)
    first = A.augment_batch(images, policy, torch.Generator().manual_seed(11))
    assert first.dtype == torch.uint8 and first.shape == images.shape
    assert torch.equal(first, A.augment_batch(images, policy, torch.Generator().manual_seed(11)))
    if policy != "none":
        assert not torch.equal(first, A.augment_batch(images, policy, torch.Generator().manual_seed(12)))


def test_policies_are_the_documented_compositions():
    images = sample_images(16, seed=6)

    def generator():
        return torch.Generator().manual_seed(3)

    g = generator()
    expected = A.cutout(A.autoaugment_cifar10(A.random_flip(A.random_crop(images, 4, g), g), g, fill=128), 16, g)
    assert torch.equal(A.augment_batch(images, "paper", generator()), expected)
    g = generator()                                                  # grey borders, as the official code
    torchvision_fill = A.cutout(A.autoaugment_cifar10(A.random_flip(A.random_crop(images, 4, g), g), g), 16, g)
    assert not torch.equal(torchvision_fill, expected)
    g = generator()
    assert torch.equal(A.augment_batch(images, "crop_flip", generator()), A.random_flip(A.random_crop(images, 4, g), g))
    g = generator()
    assert torch.equal(A.augment_batch(images, "nsl", generator()),
                       A.random_flip(A.random_crop(images, 4, g, padding_mode="symmetric"), g))
    assert A.augment_batch(images, "none", generator()) is images


def test_to_float_and_input_validation():
    images = torch.tensor([[[[0, 51, 255]]]], dtype=torch.uint8)
    floats = A.to_float(images)
    assert floats.dtype == torch.float32 and torch.allclose(floats, torch.tensor([[[[0.0, 0.2, 1.0]]]]))
    with pytest.raises(ValueError, match="uint8"):
        A.to_float(floats)
    with pytest.raises(ValueError, match="unknown augmentation policy 'autoaugment'.*crop_flip.*paper"):
        A.augment_batch(images, "autoaugment", None)
    with pytest.raises(ValueError, match="expected a uint8 image batch of shape \\(B, C, H, W\\), got torch.float32"):
        A.augment_batch(floats, "paper", None)
    with pytest.raises(ValueError, match="expected 1 or 3 channels"):
        A.random_flip(torch.zeros(2, 4, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="padding_mode"):
        A.random_crop(images, 1, padding_mode="edge")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_for_the_same_decisions():
    images = sample_images(40, seed=7)
    generator = torch.Generator().manual_seed(0)
    sub_policy = torch.randint(25, (images.shape[0],), generator=generator)
    applied = torch.rand((images.shape[0], 2), generator=generator) < 0.8
    negative = torch.rand((images.shape[0], 2), generator=generator) < 0.5
    cpu = A.apply_sub_policies(images, sub_policy, applied, negative)
    gpu = A.apply_sub_policies(images.cuda(), sub_policy, applied, negative).cpu()
    assert (cpu.int() - gpu.int()).abs().max() <= 1                  # colour blends may round differently (FMA)
    cuda_generator = torch.Generator(device="cuda").manual_seed(0)
    out = A.augment_batch(images.cuda(), "paper", cuda_generator)
    assert out.device.type == "cuda" and out.dtype == torch.uint8
    with pytest.raises(ValueError, match="generator is on cpu"):
        A.augment_batch(images.cuda(), "paper", torch.Generator())


def test_bad_fill_probability_and_decisions_are_named():
    """uint8 arithmetic wrapped fill=300 to 44 and fill=-1 to 255, p=2 or NaN was accepted, and decision
    tensors of the wrong length left images silently unaugmented."""
    from nslviz.datasets.augment import (affine_operation, apply_sub_policies, autoaugment_cifar10, cutout,
                                         random_crop, random_flip)
    images, g = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8), torch.Generator().manual_seed(0)
    for call in (lambda: cutout(images, 4, g, fill=300), lambda: cutout(images, 4, g, fill=-1),
                 lambda: random_crop(images, 2, g, fill=0.5), lambda: autoaugment_cifar10(images, g, fill=256),
                 lambda: affine_operation(images, torch.zeros(4, dtype=torch.long), torch.zeros(4), fill=300)):
        with pytest.raises(ValueError, match="fill must be an integer pixel value in 0..255"):
            call()
    for p in (2, float("nan"), "a"):
        with pytest.raises(ValueError, match="flip probability p must be a number in \\[0, 1\\]"):
            random_flip(images, g, p=p)
    good = dict(sub_policy=torch.zeros(4, dtype=torch.long), applied=torch.ones(4, 2, dtype=torch.bool),
                negative=torch.zeros(4, 2, dtype=torch.bool))
    assert apply_sub_policies(images, **good).shape == images.shape
    for change, match in ((dict(sub_policy=torch.zeros(2, dtype=torch.long)), r"sub_policy must be a tensor of shape \(4,\)"),
                          (dict(sub_policy=torch.full((4,), 30)), r"sub_policy must hold integer indices in 0..24"),
                          (dict(applied=torch.ones(4, 2)), "applied and negative must be bool tensors")):
        with pytest.raises(ValueError, match=match):
            apply_sub_policies(images, **{**good, **change})


def test_batched_autoaugment_equals_torchvisions_autoaugment_object_image_by_image():
    """End to end against `T.AutoAugment(CIFAR10)` itself: each image's random draws are replayed in
    torchvision's order (the sub-policy, then for each step whether it applies and, for a signed
    operation that applies, its sign), and the batched result must equal torchvision's, pixel for pixel."""
    from nslviz.datasets.augment import CIFAR10_POLICY, SIGNED_OPERATIONS, apply_sub_policies
    generator = torch.Generator().manual_seed(3)
    noise = torch.randint(0, 256, (24, 3, 32, 32), generator=generator, dtype=torch.uint8)
    smooth = torch.nn.functional.avg_pool2d(noise.float(), 5, 1, 2).round().to(torch.uint8) // 3 + 60
    images = torch.cat([noise, smooth])
    reference, sub_policies, applied, negative = [], [], [], []
    autoaugment = T.AutoAugment(T.AutoAugmentPolicy.CIFAR10)
    for index, image in enumerate(images):
        torch.manual_seed(100 + index)
        reference.append(autoaugment(image))
        torch.manual_seed(100 + index)                                   # the same draws, read back
        policy = int(torch.randint(len(CIFAR10_POLICY), ()))
        steps, signs = [], []
        for name, probability, level in CIFAR10_POLICY[policy]:
            steps.append(bool(torch.rand(()) <= probability))
            signed = steps[-1] and level is not None and name in SIGNED_OPERATIONS
            signs.append(bool(torch.rand(()) <= 0.5) if signed else False)
        sub_policies.append(policy), applied.append(steps), negative.append(signs)
    ours = apply_sub_policies(images, torch.tensor(sub_policies), torch.tensor(applied), torch.tensor(negative))
    assert torch.equal(ours, torch.stack(reference))
