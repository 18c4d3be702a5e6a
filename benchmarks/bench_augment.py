"""Throughput of the batched augmentation against torchvision's per-image transforms.

Prints one JSON object: images/s of nslviz.datasets.augment.augment_batch (policies "paper" =
crop + flip + AutoAugment CIFAR-10 + Cutout 16, and "crop_flip") on a 128×3×32×32 uint8 batch,
and of the torchvision v2 Compose doing the same per image (RandomCrop(32, padding=4),
RandomHorizontalFlip, AutoAugment(CIFAR10), and a per-image Cutout), measured in the same run,
with their ratio. The machine's load average is recorded: other processes share the CPU.

Usage: python benchmarks/bench_augment.py [--threads 1] [--repeats 30] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torchvision.transforms.v2 as T

from nslviz.datasets.augment import augment_batch
from _results import device_name, save_result, synchronize  # noqa: E402  (benchmarks/_results.py)


def per_image_cutout(image: torch.Tensor, size: int = 16) -> torch.Tensor:
    """DeVries & Taylor's Cutout on one image: centre uniform, hole clipped at the borders."""
    height, width = image.shape[-2:]
    y, x = int(torch.randint(height, ())), int(torch.randint(width, ()))
    image = image.clone()
    image[..., max(0, y - size // 2):min(height, y + size // 2), max(0, x - size // 2):min(width, x + size // 2)] = 0
    return image


def seconds_per_batch(step, repeats: int, device: torch.device = torch.device("cpu")) -> float:
    """Median wall time of one call, after 3 warm-up calls."""
    for _ in range(3):
        step()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()
    images = torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    on_device = images.to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    torch.manual_seed(0)

    baselines = {
        "paper": T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                            T.AutoAugment(T.AutoAugmentPolicy.CIFAR10), per_image_cutout]),
        "crop_flip": T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]),
    }
    result = {"benchmark": "augment", "device": str(device), "batch": args.batch, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "device_name": device_name(device), "cpu_count": os.cpu_count()}
    for policy, compose in baselines.items():
        ours = seconds_per_batch(lambda: augment_batch(on_device, policy, generator), args.repeats, device)
        theirs = seconds_per_batch(lambda: torch.stack([compose(image) for image in images]), max(5, args.repeats // 3))
        result[policy] = {"nslviz_images_per_s": round(args.batch / ours, 1),
                          "torchvision_per_image_images_per_s": round(args.batch / theirs, 1),
                          "speedup": round(theirs / ours, 2),
                          "nslviz_ms_per_batch": round(1e3 * ours, 3),
                          "torchvision_ms_per_batch": round(1e3 * theirs, 3)}
    result["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    save_result(result, f"augment_{device.type}", args.out)
    return result


if __name__ == "__main__":
    main()
