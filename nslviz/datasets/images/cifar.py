"""CIFAR-10 and CIFAR-100 (python pickles) and CINIC-10 (PNG folders): the 32×32 sets of ten and
a hundred classes."""
from __future__ import annotations

import numpy as np
import torch

from .registry import ImageDataset, ImageSplit, _register, _Request
from .utils import (_assemble, _checked_labels, _class_folders, _find_folder, _folder_dataset, _image_files, _labels,
                    _missing, _ordered, _read_pickle, _reading, _split_last, _warn_partial)

CIFAR_TRAINING, CIFAR_TEST = 50000, 10000      # the real sets' sizes, CIFAR-10 and CIFAR-100 alike (checks only)
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ----------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (python pickles)


@_register("cifar10", "paper", downloadable=True,
           manual="download "
               "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and run "
               "`tar -xzf cifar-10-python.tar.gz -C {root}` (gives {root}/cifar-10-batches-py/)")
def _load_cifar10(request: _Request) -> ImageDataset:
    """CIFAR-10 from cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: train = the
    first 45,000 training images, val = the last 5,000 (`val_size`), test = the 10,000 test images."""
    batches = [f"data_batch_{i}" for i in range(1, 6)]
    folder = _find_folder(request, [request.root / "cifar-10-batches-py",
                                    request.root / "cifar10" / "cifar-10-batches-py"],
                          batches + ["test_batch"], "the CIFAR-10 python batches")

    def read(names):
        images, labels = [], []
        for name in names:
            part = _read_pickle(request, folder / name, ("data", "labels"))
            with _reading(request, folder / name):                  # a foreign shape or label names the file
                images.append(np.asarray(part["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.append(_checked_labels(part["labels"], len(images[-1]), 10))
        return ImageSplit(torch.from_numpy(np.concatenate(images)), torch.cat(labels))

    meta = folder / "batches.meta"
    names = _read_pickle(request, meta, ("label_names",))["label_names"] if meta.exists() else CIFAR10_CLASSES
    train, test = read(batches), read(["test_batch"])
    _warn_partial(request, "CIFAR-10", folder, {"training": (len(train), CIFAR_TRAINING),
                                                "test": (len(test), CIFAR_TEST)})
    train, val = _split_last(request, train, 5000 if request.val_size is None else request.val_size)
    return _assemble(request, train, val, test, class_names=names, native_size=32,
                     split_notes="train = first 45k of the training batches, val = last 5k, test = test_batch")


@_register("cifar100", "paper", downloadable=True,
           manual="download "
               "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and run "
               "`tar -xzf cifar-100-python.tar.gz -C {root}` (gives {root}/cifar-100-python/)")
def _load_cifar100(request: _Request) -> ImageDataset:
    """CIFAR-100 from cifar-100-python/{train, test, meta}: 100 fine classes (or, with
    label_kind="coarse", the 20 superclasses); extras "coarse_labels" and "fine_labels" always.
    Split as CIFAR-10: first 45,000 / last 5,000 / test 10,000."""
    folder = _find_folder(request, [request.root / "cifar-100-python", request.root / "cifar100" / "cifar-100-python"],
                          ["train", "test"], "the CIFAR-100 python files")

    def read(name):
        part = _read_pickle(request, folder / name, ("data", "fine_labels", "coarse_labels"))
        with _reading(request, folder / name):                      # a foreign shape or label names the file
            images = np.asarray(part["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            fine = _checked_labels(part["fine_labels"], len(images), 100, "fine_labels")
            coarse = _checked_labels(part["coarse_labels"], len(images), 20, "coarse_labels")
        labels = coarse if request.label_kind == "coarse" else fine
        return ImageSplit(torch.from_numpy(images), labels.clone(), {"coarse_labels": coarse, "fine_labels": fine})

    meta_path = folder / "meta"
    meta = _read_pickle(request, meta_path) if meta_path.exists() else {}
    fine_names = meta.get("fine_label_names", [f"class_{i}" for i in range(100)])
    coarse_names = meta.get("coarse_label_names", [f"superclass_{i}" for i in range(20)])
    train, test = read("train"), read("test")
    _warn_partial(request, "CIFAR-100", folder, {"training": (len(train), CIFAR_TRAINING),
                                                 "test": (len(test), CIFAR_TEST)})
    train, val = _split_last(request, train, 5000 if request.val_size is None else request.val_size)
    return _assemble(request, train, val, test,
                     class_names=coarse_names if request.label_kind == "coarse" else fine_names, native_size=32,
                     extra_names={"coarse_labels": coarse_names, "fine_labels": fine_names},
                     split_notes="train = first 45k of the training set, val = last 5k, test = test set")


# ----------------------------------------------------------------------------------------------
# CINIC-10 (PNG folders train/valid/test)


@_register("cinic10", "paper",
           manual="download https://datashare.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz and run "
               "`mkdir -p {root}/cinic-10 && tar -xzf CINIC-10.tar.gz -C {root}/cinic-10`")
def _load_cinic10(request: _Request) -> ImageDataset:
    """CINIC-10 from cinic-10/{train,valid,test}/<class>/*.png: its own 90k/90k/90k splits (as in
    the official code); `val_size` keeps a stratified part of the validation folder."""
    folder = _find_folder(request, [request.root / "cinic-10", request.root / "CINIC-10", request.root / "cinic10"],
                          ["train", "valid", "test"], "the CINIC-10 image folders")
    classes = _class_folders(folder / "train")
    files, splits = [], {}
    for split, part in (("train", "train"), ("val", "valid"), ("test", "test")):
        start, labels = len(files), []
        for label, name in enumerate(classes):
            class_dir = folder / part / name
            if not class_dir.is_dir():
                raise _missing(request, [class_dir], f"the class folder {name!r} of {part}/")
            found = _image_files(class_dir)
            files += found
            labels += [label] * len(found)
        index, labels = torch.arange(start, len(files)), _labels(labels)
        index, labels, _ = _ordered(index, labels, request.seed)
        if split == "val" and request.val_size is not None:
            index, labels = index[:request.val_size], labels[:request.val_size]
        splits[split] = (index, labels, {})
    return _folder_dataset(request, files, splits, mode="RGB", class_names=classes,
                           split_notes="CINIC-10's own train / valid / test folders")
