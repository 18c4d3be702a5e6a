"""python -m nslviz check-data: load a dataset as a run would and decode every file it reads during
training (nslviz.datasets.images.streamed.unreadable_files), so that a damaged file is found before a
long run, not when its batch comes.

    python -m nslviz check-data --dataset imagenet                 # every JPEG of ImageNet-2012, ~8 processes
    python -m nslviz check-data --dataset imagenet --data-root /data --workers 16 --json

Sets held in memory (every set but imagenet) are decoded completely when they load: loading them is
the whole check, and every damaged image file of theirs is listed. What loading warns about (e.g.
fewer images than the real CIFAR or ImageNet-2012 has) is printed and kept in the JSON. Exit code 0 when
every file reads, 1 when some do not (each is listed).
"""
from __future__ import annotations

import time
import warnings

from .common import add_progress_argument, emit_json, nonnegative_int


def add_parser(subparsers) -> None:
    from ..datasets.images import available_image_datasets
    p = subparsers.add_parser("check-data", help="decode every file of a dataset read from disk, before a long run",
                              description=__doc__)
    p.add_argument("--dataset", choices=available_image_datasets(), default="imagenet")
    p.add_argument("--data-root", default=None, help="dataset folder (default: $NSLVIZ_DATA or the repository's data/)")
    p.add_argument("--workers", type=nonnegative_int, default=None,
                   help="decoding processes (default: one per CPU, up to 8; 0: this process)")
    add_progress_argument(p)
    p.add_argument("--json", action="store_true", help="end the output with one JSON object")
    p.set_defaults(run=run, subparser=p)


def run(args) -> int:
    from ..datasets.images import load_image_dataset
    from ..datasets.images.streamed import FileSplit, unreadable_files
    from ..datasets.images.utils import UnreadableImages
    from ..paths import data_root
    from ..training.data import decoding_workers
    start = time.perf_counter()
    # val_size 0: the training split holds every training image (which a run holds out changes nothing here)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = load_image_dataset(args.dataset, data_root(args.data_root), val_size=0)
        except UnreadableImages as error:                 # a set held in memory with damaged files
            data, damaged = None, sorted(error.files)
    for warning in caught:
        print(f"check-data: warning: {warning.message}")
    workers = decoding_workers(args.workers)
    report = {"dataset": args.dataset, "splits": {}, "unreadable": [],
              "warnings": [str(warning.message) for warning in caught]}
    if data is None:
        print(f"check-data: {args.dataset}: {len(damaged)} image files unreadable", flush=True)
        for path, reason in damaged:
            print(f"  {path}: {reason}")
        report["unreadable"] = [{"path": path, "reason": reason} for path, reason in damaged]
        return _finish(args, report, start)
    for name, split in {"train": data.train, "test": data.test}.items():
        if not isinstance(split, FileSplit):
            print(f"check-data: {args.dataset} {name}: {len(split):,} images, decoded when the set loaded")
            report["splits"][name] = {"images": len(split), "read_from_files": False, "unreadable": 0}
            continue
        failures = sorted(unreadable_files(split, workers, progress=not args.no_progress))
        print(f"check-data: {args.dataset} {name}: {len(split):,} files, {len(failures)} unreadable", flush=True)
        for path, reason in failures:
            print(f"  {path}: {reason}")
        report["splits"][name] = {"images": len(split), "read_from_files": True, "unreadable": len(failures)}
        report["unreadable"] += [{"path": path, "reason": reason} for path, reason in failures]
    return _finish(args, report, start)


def _finish(args, report: dict, start: float) -> int:
    report["seconds"] = round(time.perf_counter() - start, 2)
    if report["unreadable"]:
        print(f"check-data: {len(report['unreadable'])} files cannot be read: get them again from the dataset's "
              "archive before training (removing them changes the splits)")
    if args.json:
        emit_json(report)
    return 1 if report["unreadable"] else 0
