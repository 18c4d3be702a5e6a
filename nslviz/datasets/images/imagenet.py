"""The ImageNet-derived sets: Tiny-ImageNet (200 classes, JPEG folders), downsampled ImageNet
64×64 (1,000 classes, .npz or pickled batches) and Mini-ImageNet (few-shot, Ravi & Larochelle's
class split). ImageNet-2012 at full size is imagenet2012.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .registry import ImageDataset, ImageSplit, _register, _Request
from .utils import (_assemble, _check_held_out, _find_folder, _folder_dataset, _how_to_get, _image_files, _labels,
                    _missing, _ordered, _read_pickle, _reading, stratified_order)


# ----------------------------------------------------------------------------------------------
# Tiny-ImageNet


@_register("tiny-imagenet", "paper",
           manual="download http://cs231n.stanford.edu/tiny-imagenet-200.zip and run "
               "`unzip tiny-imagenet-200.zip -d {root}` (gives {root}/tiny-imagenet-200/)")
def _load_tiny_imagenet(request: _Request) -> ImageDataset:
    """Tiny-ImageNet (200 classes, 64×64 JPEG, resized to 32×32 as in the paper) from
    tiny-imagenet-200/: test = the official val folder (10,000 labelled images); val = a stratified,
    seeded 10,000 (`val_size`) held out of the 100,000 training images, train = the other 90,000.
    Deviation: the official code used the val folder as both validation and test set, which
    selects the checkpoint on the test set; here the two are disjoint. Labels: wnids sorted."""
    folder = _find_folder(request, [request.root / "tiny-imagenet-200",
                                    request.root / "tiny-imagenet" / "tiny-imagenet-200"],
                          ["wnids.txt", "train", "val/val_annotations.txt", "val/images"],
                          "the Tiny-ImageNet folder")
    with _reading(request, folder / "wnids.txt"):              # a foreign or damaged file names itself
        wnids = sorted((folder / "wnids.txt").read_text().split())
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    words = {}
    if (folder / "words.txt").exists():
        with _reading(request, folder / "words.txt"):
            lines = (folder / "words.txt").read_text().splitlines()
        for line in lines:
            wnid, _, text = line.partition("\t")
            words[wnid] = text.split(",")[0].strip()
    files, train_labels = [], []
    for wnid in wnids:
        found = _image_files(folder / "train" / wnid / "images") if (folder / "train" / wnid / "images").is_dir() else []
        if not found:
            raise _missing(request, [folder / "train" / wnid / "images"], f"the training images of class {wnid}")
        files += found
        train_labels += [label_of[wnid]] * len(found)
    test_labels = []
    test_start = len(files)
    annotations = folder / "val" / "val_annotations.txt"
    with _reading(request, annotations):                       # each error names the file and how to get it
        seen = set()
        for number, line in enumerate(annotations.read_text().splitlines(), 1):
            parts = line.split("\t")
            if not line.strip():
                continue
            if len(parts) < 2:
                raise ValueError(f"line {number} is {line!r}; expected '<image>\\t<wnid>\\t...'")
            if parts[1] not in label_of:
                raise ValueError(f"line {number} names {parts[1]!r}, which is not in wnids.txt")
            if parts[0] in seen:
                raise ValueError(f"line {number} lists {parts[0]!r} a second time")
            seen.add(parts[0])
            files.append(folder / "val" / "images" / parts[0])
            test_labels.append(label_of[parts[1]])
    missing = [path for path in files[test_start:] if not path.exists()]
    if missing:
        raise _missing(request, missing[:5], f"{len(missing)} validation images listed in val_annotations.txt")
    train_labels = _labels(train_labels)
    order = stratified_order(train_labels, request.seed)
    held_out = 10000 if request.val_size is None else request.val_size
    _check_held_out(request, held_out, len(order))
    splits = {"train": (order[held_out:], train_labels[order[held_out:]], {}),
              "val": (order[:held_out], train_labels[order[:held_out]], {}),
              "test": (torch.arange(test_start, len(files)), _labels(test_labels), {})}
    return _folder_dataset(request, files, splits, mode="RGB", class_names=[words.get(w, w) for w in wnids],
                           split_notes="train = 90k of the training images, val = a stratified 10k held out of "
                                       "them (seeded), test = the official val folder")


# ----------------------------------------------------------------------------------------------
# Downsampled ImageNet 64×64


@_register("imagenet64", "paper",
           manual="register at https://image-net.org/download-images.php, download 'Downsampled ImageNet "
               "64x64' (Imagenet64_train_part1_npz.zip, Imagenet64_train_part2_npz.zip and "
               "Imagenet64_val_npz.zip) and unzip all three into {root}")
def _load_imagenet64(request: _Request) -> ImageDataset:
    """Downsampled ImageNet 64×64 (Chrabaszcz et al. 2017), 1,000 classes, kept at 64×64, as
    downloaded: Imagenet64_train_part1_npz/train_data_batch_1..5.npz,
    Imagenet64_train_part2_npz/train_data_batch_6..10.npz and Imagenet64_val_npz/val_data.npz
    ('data' (N, 12288) uint8 in CHW order, 'labels' numbered from 1). The ten training batches may
    also sit in one Imagenet64_train_npz/ folder, and the pickle variant (Imagenet64_train_part1/,
    Imagenet64_train_part2/ or Imagenet64_train/, and Imagenet64_val/) is accepted. test = the
    official validation set (50,000); val = a seeded random 10,000 (`val_size`) held out of the
    1.28M training images. The .npz batches are read twice (labels first, then each batch straight
    into one preallocated tensor: about 16 GB in full); the pickle variant holds the decoded
    batches and the tensor at once (about 32 GB)."""
    base, batch_files, val_file = _imagenet64_files(request)
    held_out = 10000 if request.val_size is None else request.val_size
    train_images, train_labels = _read_imagenet64_training(request, batch_files, held_out)  # (N, 3, 64, 64), (N,)
    test_images, test_labels = _read_imagenet64_batch(request, val_file)             # the official validation set
    names = _imagenet64_class_names(request, base)
    train, val = _hold_out(train_images, train_labels, held_out, request.seed)
    return _assemble(request, train, val, ImageSplit(torch.from_numpy(test_images), torch.from_numpy(test_labels)),
                     class_names=names, native_size=64,
                     split_notes="train = training batches minus a seeded random 10k (val); test = official val")


# the .npz download, then the pickle variant: (training folders, validation folder, file suffix)
_IMAGENET64_LAYOUTS = ((("Imagenet64_train_part1_npz", "Imagenet64_train_part2_npz", "Imagenet64_train_npz"),
                       "Imagenet64_val_npz", ".npz"),
                      (("Imagenet64_train_part1", "Imagenet64_train_part2", "Imagenet64_train"), "Imagenet64_val", ""))


def _imagenet64_batch_number(path: Path, suffix: str) -> int:
    """n of train_data_batch_<n><suffix>, -1 if the name holds no number there."""
    number = path.name[len("train_data_batch_"):len(path.name) - len(suffix)]
    return int(number) if number.isdigit() else -1


def _imagenet64_files(request: _Request) -> tuple[Path, list[Path], Path]:
    """(folder, training batches 1..10 in order, validation batch) of the first complete copy: root
    before root/imagenet64, .npz before pickle. FileNotFoundError naming what is missing (a batch,
    the validation file, everything); ValueError for a batch found in two folders."""
    without_val = None
    for base in (request.root, request.root / "imagenet64"):
        for train_dirs, val_dir, suffix in _IMAGENET64_LAYOUTS:
            found = [path for train_dir in train_dirs for path in (base / train_dir).glob(f"train_data_batch_*{suffix}")
                     if _imagenet64_batch_number(path, suffix) >= 0 and (suffix or not path.name.endswith(".npz"))]
            val_file = base / val_dir / f"val_data{suffix}"
            if found and not val_file.exists():
                without_val = without_val or (val_file, len(found))
            elif found:
                numbers = [_imagenet64_batch_number(path, suffix) for path in found]
                twice = sorted({n for n in numbers if numbers.count(n) > 1})
                if twice:
                    raise ValueError(f"imagenet64: train_data_batch_{twice[0]}{suffix} is in more than one of "
                                     f"{', '.join(str(base / d) for d in train_dirs)}; keep one copy of each batch")
                missing = sorted(set(range(1, 11)) - set(numbers))
                if missing:
                    raise _missing(request, [base / train_dirs[0 if n <= 5 else 1] / f"train_data_batch_{n}{suffix}"
                                             for n in missing[:3]],
                                   f"training batches {missing} of 10 (found {sorted(numbers)}; unzip every "
                                   f"training archive)")
                return base, sorted(found, key=lambda path: _imagenet64_batch_number(path, suffix)), val_file
    if without_val is not None:                        # the training batches are there, not the validation one
        raise _missing(request, [without_val[0]], f"the validation batch (the {without_val[1]} training batches "
                                                  f"beside it were found; unzip the validation archive)")
    raise _missing(request, [request.root / "Imagenet64_train_part1_npz" / "train_data_batch_1.npz",
                             request.root / "Imagenet64_train_part2_npz" / "train_data_batch_6.npz",
                             request.root / "Imagenet64_val_npz" / "val_data.npz"],
                   "the downsampled ImageNet 64x64 batches",
                   searched=[request.root / "Imagenet64_train_npz", request.root / "Imagenet64_train_part1",
                             request.root / "Imagenet64_train", request.root / "imagenet64"])


def _read_imagenet64_batch(request: _Request, path: Path,
                           labels_only: bool = False) -> tuple[np.ndarray | None, np.ndarray]:
    """One batch file (.npz or pickle): images (N, 3, 64, 64) uint8 (None with `labels_only`) and
    labels (N,) int64 numbered from 0. A 'data' array of another shape (the 32×32 or 16×16
    download) is a ValueError naming the file."""
    if path.suffix == ".npz":
        with _reading(request, path), np.load(path) as archive:
            labels = archive["labels"]
            data = None if labels_only else archive["data"]
    else:                                                      # _read_pickle names its own errors
        stored = _read_pickle(request, path, ("data", "labels"))
        data, labels = stored["data"], stored["labels"]
    labels = np.asarray(labels, dtype=np.int64).reshape(-1) - 1                       # 1-based on disk
    if labels_only:
        return None, labels
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 64 * 64 or data.shape[0] != len(labels):
        other = {3 * 32 * 32: " (the 32×32 download)", 3 * 16 * 16: " (the 16×16 download)"}.get(
            data.shape[-1] if data.ndim == 2 else -1, "")
        raise ValueError(f"imagenet64: {path} holds 'data' of shape {data.shape}{other} and {len(labels)} "
                         f"labels, expected (N, 12288) = N images of 3×64×64 and N labels. How to get it: "
                         f"{_how_to_get(request)}")
    return data.reshape(-1, 3, 64, 64), labels


def _read_imagenet64_training(request: _Request, batch_files: list[Path],
                              held_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training batches, in order, as one tensor: images (N, 3, 64, 64) uint8, labels (N,) int64.
    .npz batches: the labels are read first to size the tensor, then each batch is copied into it and
    dropped (one copy of the images in memory); pickled batches are all decoded first. A validation
    split of `held_out` rows must leave training rows: checked on N before the .npz images are read
    (a pickle has no header, so its N comes only with the decoded images)."""
    if all(path.suffix == ".npz" for path in batch_files):
        counts = [len(_read_imagenet64_batch(request, path, labels_only=True)[1]) for path in batch_files]
        parts = None
    else:
        parts = [_read_imagenet64_batch(request, path) for path in batch_files]
        counts = [len(labels) for _, labels in parts]
    total = sum(counts)
    _check_held_out(request, held_out, total)
    images = torch.empty((total, 3, 64, 64), dtype=torch.uint8)
    labels = torch.empty(total, dtype=torch.int64)
    start = 0
    for index, path in enumerate(batch_files):
        batch_images, batch_labels = _read_imagenet64_batch(request, path) if parts is None else parts[index]
        count = len(batch_labels)
        if count != counts[index]:
            raise ValueError(f"imagenet64: {path} changed while it was read ({counts[index]} then {count} labels)")
        images[start:start + count] = torch.from_numpy(batch_images)
        labels[start:start + count] = torch.from_numpy(batch_labels)
        start += count
        if parts is not None:
            parts[index] = None                                        # free each decoded batch once copied
    return images, labels


def _imagenet64_class_names(request: _Request, base: Path, num_classes: int = 1000) -> list[str]:
    """Names from map_clsloc.txt (lines `<wnid> <1-based index> <name>`) beside the batches or in the
    root, else class_0..class_999."""
    names = [f"class_{i}" for i in range(num_classes)]
    mapping = next((p for p in (base / "map_clsloc.txt", request.root / "map_clsloc.txt") if p.exists()), None)
    if mapping is not None:
        for line in mapping.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[1].isdigit() and 1 <= int(fields[1]) <= num_classes:
                names[int(fields[1]) - 1] = fields[2]
    return names


def _hold_out(images: torch.Tensor, labels: torch.Tensor, held_out: int, seed: int) -> tuple[ImageSplit, ImageSplit]:
    """(train, val) from images (N, 3, H, W) and labels (N,): val = `held_out` rows drawn by a seeded
    random permutation (kept in file order), train = the other N - held_out rows, moved to the front
    of `images` and `labels` in place (no second copy of the set; the inputs are overwritten)."""
    total = len(labels)
    permutation = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    val_rows = torch.sort(permutation[:held_out]).values
    val = ImageSplit(images[val_rows], labels[val_rows])                   # (held_out, 3, H, W), a copy
    keep = torch.ones(total, dtype=torch.bool)
    keep[val_rows] = False
    kept_rows = torch.nonzero(keep).squeeze(1)                             # (N - held_out,) ascending
    for start in range(0, len(kept_rows), 65536):                          # kept_rows[i] >= i: moving rows down
        rows = kept_rows[start:start + 65536]                              # never overwrites one still to move
        images[start:start + len(rows)] = images[rows]
        labels[start:start + len(rows)] = labels[rows]
    return ImageSplit(images[:len(kept_rows)], labels[:len(kept_rows)]), val


# ----------------------------------------------------------------------------------------------
# Mini-ImageNet (few-shot: Ravi & Larochelle's class split)


MINI_IMAGENET_SPLITS = (("train", "train.csv"), ("val", "val.csv"), ("test", "test.csv"))


@_register("mini-imagenet", "crop_flip", few_shot=True,
           manual="get Mini-ImageNet's images/ folder (84×84 or full-size JPEGs named like "
               "n0153282900000005.jpg) and Ravi & Larochelle's split files train.csv, val.csv, test.csv "
               "(lines `filename,label`), and put them as {root}/mini-imagenet/images/ and "
               "{root}/mini-imagenet/{{train,val,test}}.csv")
def _load_mini_imagenet(request: _Request) -> ImageDataset:
    """Mini-ImageNet (100 ImageNet classes, 600 images each) in Ravi & Larochelle's split, the few-shot
    protocol of NSL Table 6: train 64 classes (38,400 images), val 16 (9,600), test 20 (12,000),
    classes disjoint. Layout: mini-imagenet/images/*.jpg and mini-imagenet/{train,val,test}.csv with a
    `filename,label` header and one `n0153282900000005.jpg,n01532829` line per image. Images are
    resized to 84×84 (`image_size`), antialiased bilinear. Labels: the wnids numbered in order of
    first appearance through train.csv, val.csv, test.csv (train 0-63, val 64-79, test 80-99); each
    split is stored in a seeded class-interleaved order, so `limit` keeps every class."""
    folder = _find_folder(request, [request.root / "mini-imagenet", request.root / "miniImagenet",
                                    request.root / "miniimagenet"],
                          ["images", *(name for _, name in MINI_IMAGENET_SPLITS)], "the Mini-ImageNet split files")
    files, splits, wnids = [], {}, {}
    for split, csv_name in MINI_IMAGENET_SPLITS:
        path = folder / csv_name
        with _reading(request, path):
            lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            if not lines or [cell.strip() for cell in lines[0].split(",")] != ["filename", "label"]:
                raise ValueError(f"the first line is {lines[0] if lines else ''!r}, expected 'filename,label'")
            rows = [line.split(",") for line in lines[1:]]
            bad = next((row for row in rows if len(row) != 2), None)
            if bad is not None:
                raise ValueError(f"a line has {len(bad)} fields, expected 2 (filename,label): {','.join(bad)!r}")
        first_label = len(wnids)
        for _, wnid in rows:
            wnids.setdefault(wnid.strip(), len(wnids))
        start = len(files)
        files += [folder / "images" / name.strip() for name, _ in rows]
        labels = _labels([wnids[wnid.strip()] for _, wnid in rows])
        if len(rows) and int(labels.min()) < first_label:
            shared = sorted({wnid.strip() for _, wnid in rows} & set(list(wnids)[:first_label]))
            raise ValueError(f"mini-imagenet: {path} shares classes with an earlier split ({', '.join(shared[:3])}); "
                             f"the few-shot splits must hold disjoint classes")
        index, labels, _ = _ordered(torch.arange(start, len(files)), labels, request.seed)
        splits[split] = (index, labels, {})
    absent = [path for path in files if not path.is_file()]
    if absent:
        raise _missing(request, absent[:3], f"{len(absent)} of the {len(files)} images listed in the split files")
    sizes = {split: len(torch.unique(labels)) for split, (_, labels, _) in splits.items()}
    return _folder_dataset(request, files, splits, mode="RGB", class_names=list(wnids), native_size=84,
                           split_notes=f"Ravi & Larochelle's class split: {sizes['train']} / {sizes['val']} / "
                                       f"{sizes['test']} disjoint classes (train / val / test)")
