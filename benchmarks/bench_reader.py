"""How fast the ImageNet-2012 reader decodes: images a second per process, and with worker processes.

Writes `--images` JPEGs of ImageNet's typical size (500×375, quality 90) cut from scikit-learn's two
bundled photographs into a temporary ImageNet folder, and a few of twice that size, then times, in
interleaved rounds:

* one image's central patch (`nslviz.datasets.images.streamed.read_patch`: JPEG draft decoding at a
  reduced scale, then one resize of the central square) against the plain pipeline (decode at full
  size, scale the shorter side to 256, cut the centre), single-threaded, at both image sizes, and
  the check of `python -m nslviz check-data` (a decode at 1/8 scale);
* training batches of `FileBatchStream` (decode, 224 crops, flips) with 0 workers (the training
  process decodes) and with 1 to `available_cpus()` worker processes: images a second.

A GPU trains CNN-10 at a few thousand images a second, so this says how many decoding processes it
needs. Prints one JSON object. Usage: python benchmarks/bench_reader.py [--images 512] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import environment, save_result  # noqa: E402  (benchmarks/_results.py)

from nslviz._threads import available_cpus  # noqa: E402
from nslviz.datasets.images import load_image_dataset  # noqa: E402
from nslviz.datasets.images.streamed import patch_size, read_patch  # noqa: E402
from nslviz.training.data import batch_stream  # noqa: E402

SIZES = ((500, 375), (1000, 750))    # ImageNet's most common training image size, and twice it


def write_images(root: Path, count: int, classes: int = 4, seed: int = 0, size: tuple[int, int] = SIZES[0]) -> None:
    """`count` JPEGs of `size` (width, height) in root/imagenet/train/<wnid>/ and a few in val/<wnid>/,
    each a random window of one of scikit-learn's photographs, scaled and mirrored at random."""
    from PIL import Image
    from sklearn.datasets import load_sample_images
    photos = [Image.fromarray(photo) for photo in load_sample_images().images]         # 640×427 each
    generator = np.random.default_rng(seed)
    width, height = size
    for i in range(count + 2 * classes):
        split, wnid = ("train", f"n{i % classes:08d}") if i < count else ("val", f"n{i % classes:08d}")
        photo = photos[i % len(photos)]
        scale = generator.uniform(1.0, 1.6) * max(width / photo.width, height / photo.height, 1.0)
        big = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BILINEAR)
        left, top = generator.integers(0, big.width - width + 1), generator.integers(0, big.height - height + 1)
        image = big.crop((left, top, left + width, top + height))
        if generator.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = root / "imagenet" / split / wnid / f"{wnid}_{i}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="JPEG", quality=90)


def plain_patch(path: str, resize: int) -> np.ndarray:
    """The plain pipeline: full-size decode, shorter side to `resize`, the central square."""
    from PIL import Image
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = resize / min(image.size)
        image = image.resize((max(resize, round(image.width * scale)), max(resize, round(image.height * scale))),
                             Image.Resampling.BILINEAR)
        left, top = (image.width - resize) // 2, (image.height - resize) // 2
        return np.asarray(image.crop((left, top, left + resize, top + resize)))


def per_image_ms(read, files: list[str], resize: int) -> float:
    start = time.perf_counter()
    for path in files:
        read(path, resize)
    return 1000 * (time.perf_counter() - start) / len(files)


def stream_images_per_second(split, workers: int, batch: int) -> float:
    """Images a second of one training epoch of FileBatchStream with `workers` decoding processes
    (worker start-up included: the trainer starts them once an epoch)."""
    stream = batch_stream(split, batch, shuffle=True, augment="flip", seed=0, workers=workers)
    start = time.perf_counter()
    count = sum(len(labels) for _, labels in stream.epoch(0))
    return count / (time.perf_counter() - start)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="training JPEGs written and read")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every setting")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224, help="crop side (the patch is 8/7 of it)")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/reader_cpu.json)")
    args = parser.parse_args(argv)
    if min(args.images, args.rounds, args.batch, args.size) < 1 or args.images < args.batch:
        parser.error(f"the counts must be positive and --images at least one batch, got images {args.images}, "
                     f"rounds {args.rounds}, batch {args.batch}, size {args.size}")
    cpus, previous = available_cpus(), torch.get_num_threads()
    worker_counts = list(range(cpus + 1))                          # 0: the training process decodes
    names = [f"{width}x{height}" for width, height in SIZES]
    readers = {"draft": read_patch, "plain": plain_patch, "check": lambda path, _: read_patch(path, 1)}
    decode = {(name, reader): [] for name in names for reader in readers}
    stream = {n: [] for n in worker_counts}
    with tempfile.TemporaryDirectory() as folder:
        write_images(Path(folder), args.images)
        data = load_image_dataset("imagenet", folder, val_size=0, image_size=args.size)
        files = {names[0]: [data.train.path(i) for i in range(min(64, len(data.train)))]}
        for name, size in zip(names[1:], SIZES[1:]):
            write_images(Path(folder) / name, min(args.images, 32), size=size)
            split = load_image_dataset("imagenet", Path(folder) / name, val_size=0).train
            files[name] = [split.path(i) for i in range(len(split))]
        resize = patch_size(args.size)
        torch.set_num_threads(1)                                   # one core per decoding process
        try:
            for _ in range(args.rounds):                           # interleaved: drift hits every setting alike
                for name, reader in decode:
                    decode[name, reader].append(per_image_ms(readers[reader], files[name], resize))
                for n in worker_counts:
                    stream[n].append(stream_images_per_second(data.train, n, args.batch))
        finally:
            torch.set_num_threads(previous)
    ms = {key: statistics.median(values) for key, values in decode.items()}
    rate = {n: statistics.median(values) for n, values in stream.items()}
    result = {"benchmark": "reader", "images": args.images, "image_size": names[0],
              "size": args.size, "patch": resize, "batch": args.batch, "rounds": args.rounds, "available_cpus": cpus,
              "patch_ms": {name: {reader: round(ms[name, reader], 3) for reader in readers} for name in names},
              "plain_over_draft": {name: round(ms[name, "plain"] / ms[name, "draft"], 2) for name in names},
              "stream_images_per_s": {str(n): round(r, 1) for n, r in rate.items()},
              "stream_speedup": {str(n): round(r / rate[0], 2) for n, r in rate.items()},
              **environment(torch.device("cpu"))}
    return save_result(result, "reader_cpu", args.out)


if __name__ == "__main__":
    main()
