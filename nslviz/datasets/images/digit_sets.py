"""The digit sets read from disk: MNIST (IDX files), SVHN (.mat files) and MNIST-M (PNG images with
label lists), ten classes named by `DIGIT_NAMES`."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from .registry import ImageDataset, ImageSplit, _register, _Request
from .utils import (_assemble, _check_held_out, _checked_labels, _find_folder, _folder_dataset, _labels, _missing,
                    _reading, _split_last)

DIGIT_NAMES = [str(d) for d in range(10)]


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped): magic 0x00 0x00 <type 0x08 = uint8> <ndim>, then big-endian
    int32 sizes, then the values."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(raw) != expected:
        raise ValueError(f"{path} has {len(raw)} bytes, its header announces {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@_register("mnist", "paper", downloadable=True,
           manual="put train-images-idx3-ubyte, "
               "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (or their .gz, from "
               "https://ossci-datasets.s3.amazonaws.com/mnist/) into {root}/MNIST/raw/")
def _load_mnist(request: _Request) -> ImageDataset:
    """MNIST from MNIST/raw/*-ubyte[.gz] (1 channel, 28×28 resized to 32×32): train = first 55,000,
    val = the last 5,000 of the training set (`val_size`), test = 10,000."""
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    folder = _find_folder(request, [request.root / "MNIST" / "raw", request.root / "mnist" / "raw", request.root / "mnist"],
                          [(name, name + ".gz") for name in names], "the MNIST IDX files")

    def read(name):
        path = folder / name
        path = path if path.exists() else folder / (name + ".gz")
        with _reading(request, path):
            return _read_idx(path)

    def split(prefix):
        images, labels = read(f"{prefix}-images-idx3-ubyte"), read(f"{prefix}-labels-idx1-ubyte")
        label_file = folder / f"{prefix}-labels-idx1-ubyte"
        with _reading(request, label_file if label_file.exists() else label_file.with_name(label_file.name + ".gz")):
            if images.ndim != 3:                                  # the message names the file and how to get it
                raise ValueError(f"the {prefix} images are {images.shape}, expected (N, 28, 28)")
            checked = _checked_labels(labels, images.shape[0], 10, f"{prefix} labels")
        return ImageSplit(torch.from_numpy(images.copy()).unsqueeze(1), checked)

    train, val = _split_last(request, split("train"), 5000 if request.val_size is None else request.val_size)
    return _assemble(request, train, val, split("t10k"), class_names=DIGIT_NAMES, native_size=32,
                     split_notes="train = first 55k of the training set, val = last 5k, test = t10k")


@_register("svhn", "paper", downloadable=True,
           manual="download "
               "http://ufldl.stanford.edu/housenumbers/train_32x32.mat and test_32x32.mat into {root}/svhn/")
def _load_svhn(request: _Request) -> ImageDataset:
    """SVHN (cropped digits) from svhn/{train,test}_32x32.mat ('X' (32, 32, 3, N), 'y' with 10 for
    the digit 0): train = first 68,257, val = the last 5,000 of train_32x32 (`val_size`),
    test = 26,032. The 'extra' set is not used."""
    from scipy.io import loadmat
    folder = _find_folder(request, [request.root / "svhn", request.root / "SVHN", request.root],
                          ["train_32x32.mat", "test_32x32.mat"], "the SVHN .mat files")

    def split(name):
        with _reading(request, folder / name):                      # a foreign array or label names the file
            stored = loadmat(folder / name)
            x, y = stored["X"], np.asarray(stored["y"]).reshape(-1)
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
                raise ValueError(f"'X' must be uint8 images of shape (32, 32, 3, N), got {x.dtype} {x.shape}")
            if y.size and (not np.issubdtype(y.dtype, np.number) or y.min() < 1 or y.max() > 10):
                raise ValueError(f"'y' must hold the digits 1..10 (10 for the digit 0), got {y.min()} to {y.max()}")
            labels = _checked_labels(y.astype(np.int64) % 10, x.shape[3], 10, "'y' labels")   # 10 means digit 0
        images = np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1)))                   # (N, 3, H, W)
        return ImageSplit(torch.from_numpy(images), labels)

    train, val = _split_last(request, split("train_32x32.mat"), 5000 if request.val_size is None else request.val_size)
    return _assemble(request, train, val, split("test_32x32.mat"), class_names=DIGIT_NAMES, native_size=32,
                     split_notes="train = train_32x32 minus its last 5k, val = last 5k, test = test_32x32")


@_register("mnist-m", "paper",
           manual="download the MNIST-M archive mnist_m.tar.gz of Ganin & Lempitsky (DANN, ICML 2015; linked "
               "from http://yaroslav.ganin.net/) and run `tar -xzf mnist_m.tar.gz -C {root}` "
               "(gives {root}/mnist_m/)")
def _load_mnist_m(request: _Request) -> ImageDataset:
    """MNIST-M from mnist_m/{mnist_m_train, mnist_m_test}/*.png with mnist_m_{train,test}_labels.txt
    ("<file> <label>" per line); 28×28 RGB resized to 32×32. train = the training list minus its
    last 5,000 (`val_size`), val = those 5,000, test = the test list (paper: 55k/5k/10k; the
    archive holds 59,001 + 9,001 images)."""
    folder = _find_folder(request, [request.root / "mnist_m", request.root / "mnist-m",
                                    request.root / "mnist_m" / "mnist_m"],
                          ["mnist_m_train", "mnist_m_train_labels.txt", "mnist_m_test", "mnist_m_test_labels.txt"],
                          "the MNIST-M images and label lists")
    files, splits = [], {}
    for part in ("train", "test"):
        start, labels = len(files), []
        listing = folder / f"mnist_m_{part}_labels.txt"
        with _reading(request, listing):                            # a malformed line names the file
            for number, line in enumerate(listing.read_text().splitlines(), 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) > 9:
                    raise ValueError(f"line {number} is {line!r}; expected '<file> <digit 0-9>'")
                labels.append(int(fields[1]))
                files.append(folder / f"mnist_m_{part}" / fields[0])
        missing = [path for path in files[start:] if not path.exists()]
        if missing:
            raise _missing(request, missing[:5], f"{len(missing)} images listed in mnist_m_{part}_labels.txt")
        splits[part] = (torch.arange(start, len(files)), _labels(labels), {})
    train_index, train_labels, _ = splits.pop("train")
    held_out = 5000 if request.val_size is None else request.val_size
    _check_held_out(request, held_out, len(train_index), "training list")
    cut = len(train_index) - held_out
    splits = {"train": (train_index[:cut], train_labels[:cut], {}),
              "val": (train_index[cut:], train_labels[cut:], {}), "test": splits["test"]}
    return _folder_dataset(request, files, splits, mode="RGB", class_names=DIGIT_NAMES,
                           split_notes="train = training list minus its last 5k, val = last 5k, test = test list")
