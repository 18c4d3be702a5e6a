"""Image dataset registry and loaders, each on tiny files written in the set's real on-disk format.

Images are solid colours that encode their label (and PACS domain), so label mapping survives
resizing and JPEG compression and can be read back from the loaded tensors.
"""
from __future__ import annotations

import gzip
import os
import pickle
import re
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from nslviz.datasets import images as image_module
from nslviz.datasets.images import utils as image_utils
from nslviz.datasets.images import (PACS_CLASSES, PACS_DOMAINS, ImageSplit, available_image_datasets,
                                    load_image_dataset, make_synthetic_images, stratified_order)

# the tiny CIFAR sets hold fewer images than the real ones, which loading warns about (tested below)
pytestmark = pytest.mark.filterwarnings(r"ignore:cifar10.*where CIFAR-10 has", r"ignore:cifar100.*where CIFAR-100 has")

ALL = ["cifar10", "cifar100", "cinic10", "tiny-imagenet", "imagenet64", "imagenet", "mnist", "svhn", "mnist-m", "pacs",
       "digits", "synthetic"]


def colour_of(label: int, domain: int = 0) -> tuple[int, int, int]:
    return (20 + 10 * label, 40 + 50 * domain, 120)


def solid(label: int, size: int, domain: int = 0) -> np.ndarray:
    return np.broadcast_to(np.array(colour_of(label, domain), dtype=np.uint8), (size, size, 3)).copy()


def marked(label: int, size: int) -> np.ndarray:
    """`solid` with a green block in the top rows' left half (rows 0-7, columns 0-15 at 32 px), so
    that a loader that flips or transposes the images is caught (`check_orientation`); red is untouched."""
    image = solid(label, size)
    image[: size // 4, : size // 2, 1] = 255
    return image


def check_orientation(split: ImageSplit) -> None:
    green, eighth = split.images[:, 1], split.images.shape[-1] // 8
    assert (green[:, eighth, 3 * eighth] == 255).all(), "the top-left marker moved"
    for row, column, what in ((3, 1, "transposed"), (7, 3, "flipped upside down"), (1, 7, "mirrored")):
        assert (green[:, row * eighth, column * eighth] != 255).all(), f"the images are {what}"


def read_labels(split: ImageSplit) -> torch.Tensor:
    """Recover the encoded label from each image's mean red value (tolerates JPEG error)."""
    red = split.images[:, 0].float().mean(dim=(1, 2))
    return torch.round((red - 20) / 10).long()


def check_split(split: ImageSplit, count: int, channels: int = 3, size: int = 32) -> None:
    assert split.images.shape == (count, channels, size, size)
    assert split.images.dtype == torch.uint8 and split.images.is_contiguous()
    assert split.labels.dtype == torch.int64 and split.labels.shape == (count,)
    assert len(split) == count


def save_png(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


# ----------------------------------------------------------------------------------------------
# registry and validation


def test_registry_lists_every_dataset_and_rejects_unknown_names():
    assert available_image_datasets() == ALL
    with pytest.raises(ValueError, match="unknown image dataset 'cifar11'.*cifar10.*tiny-imagenet.*synthetic"):
        load_image_dataset("cifar11")


@pytest.mark.parametrize("kwargs, message", [
    (dict(label_kind="domain"), "domain.*only for pacs"),
    (dict(label_kind="superclass"), "unknown label_kind"),
    (dict(val_size=-1), "val_size"),
    (dict(image_size=0), "image_size"),
    (dict(limit=0), "limit"),
    (dict(val_size=1500), "val_size 1500 leaves no training images"),
])
def test_bad_arguments_raise_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_image_dataset("digits", **kwargs)


def test_coarse_labels_exist_only_for_cifar100_and_digits():
    with pytest.raises(ValueError, match="coarse.*only for cifar100 and digits, not 'synthetic'"):
        load_image_dataset("synthetic", label_kind="coarse")


@pytest.mark.parametrize("name, path_part", [
    ("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("cinic10", "cinic-10"),
    ("tiny-imagenet", "tiny-imagenet-200"), ("imagenet64", "Imagenet64_train_part1_npz"), ("mnist", "MNIST"),
    ("svhn", "train_32x32.mat"), ("mnist-m", "mnist_m"), ("pacs", "pacs_data")])
def test_missing_files_name_the_dataset_the_path_and_how_to_get_it(tmp_path, name, path_part):
    with pytest.raises(FileNotFoundError) as error:
        load_image_dataset(name, tmp_path)
    message = str(error.value)
    assert message.startswith(f"{name}:") and str(tmp_path) in message and path_part in message
    assert "How to get it:" in message
    assert ("download=True" in message) == ("--download true" in message) == (name in ("cifar10", "cifar100", "mnist", "svhn"))


def test_failed_download_is_a_clear_connection_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(ConnectionError, match="cifar10: download failed.*Name or service.*cifar-10-python.tar.gz"):
        load_image_dataset("cifar10", tmp_path, download=True)


def test_stratified_order_prefixes_keep_class_proportions():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    order = stratified_order(labels, seed=3)
    assert torch.equal(torch.sort(order).values, torch.arange(100))
    for prefix in (10, 20, 50):
        counts = torch.bincount(labels[order[:prefix]], minlength=3).double()
        assert torch.allclose(counts, torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64) * prefix, atol=1)
    assert torch.equal(order, stratified_order(labels, seed=3))
    assert not torch.equal(order, stratified_order(labels, seed=4))


def test_stratified_order_puts_the_ith_image_of_a_class_of_n_at_fraction_i_plus_a_half_over_n():
    """A class of 2 among 22 images sits at a quarter and three quarters of the order (positions 5 and
    16, after the first 5 and 15 images of the class of 20), whatever the seed: never at the front,
    where it would be a third of a short prefix instead of a tenth."""
    labels = torch.tensor([0] * 2 + [1] * 20)
    for seed in range(5):
        order = stratified_order(labels, seed)
        assert torch.nonzero(labels[order] == 0).flatten().tolist() == [5, 16]


# ----------------------------------------------------------------------------------------------
# CIFAR


def write_cifar10(root, per_batch=4, test=6):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        count = test if name == "test_batch" else per_batch
        labels = rng.integers(0, 10, count).tolist()
        data = np.stack([marked(l, 32).transpose(2, 0, 1).reshape(-1) for l in labels])  # (n, 3072) CHW rows
        stored = {"data": data, "labels": labels, "batch_label": name}
        if name == "data_batch_1":                                  # Python-2 style: bytes keys
            stored = {key.encode(): value for key, value in stored.items()}
        with open(folder / name, "wb") as handle:
            pickle.dump(stored, handle, protocol=2)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, handle, protocol=2)


def test_cifar10_pickles_split_first_train_last_val(tmp_path):
    write_cifar10(tmp_path)
    data = load_image_dataset("cifar10", tmp_path, val_size=5)
    check_split(data.train, 15), check_split(data.val, 5), check_split(data.test, 6)
    assert data.num_classes == 10 and data.class_names[0] == "airplane" and data.paper_augment == "paper"
    assert data.channels == 3 and data.image_size == 32
    for split in data.splits().values():
        assert torch.equal(read_labels(split), split.labels)
        check_orientation(split)
    everything = torch.cat([data.train.labels, data.val.labels])
    batches = [pickle.load(open(tmp_path / "cifar-10-batches-py" / f"data_batch_{i}", "rb"), encoding="latin1")
               for i in range(1, 6)]
    on_disk = [int(l) for b in batches for l in (b.get("labels") or b.get(b"labels"))]
    assert everything.tolist() == on_disk                           # train = first 15, val = last 5, in order
    small = load_image_dataset("cifar10", tmp_path, val_size=5, image_size=16, limit=3)
    check_split(small.train, 3, size=16), check_split(small.test, 3, size=16)
    assert torch.equal(small.train.labels, data.train.labels[:3])
    assert torch.equal(read_labels(small.train), small.train.labels)   # solid colours survive the resize
    with pytest.raises(ValueError, match="val_size 5000 leaves no training images"):
        load_image_dataset("cifar10", tmp_path)                     # the paper's 5k split needs the real set


def write_cifar100(root, train=12, test=5):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, count in (("train", train), ("test", test)):
        fine = rng.integers(0, 24, count)
        coarse = fine // 5                                         # any fixed fine → coarse map
        data = np.stack([marked(int(l), 32).transpose(2, 0, 1).reshape(-1) for l in fine])
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": data, b"fine_labels": fine.tolist(), b"coarse_labels": coarse.tolist(),
                         b"filenames": [b"x.png"] * count}, handle, protocol=2)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}, handle, protocol=2)


def test_cifar100_fine_and_coarse_labels(tmp_path):
    write_cifar100(tmp_path)
    fine = load_image_dataset("cifar100", tmp_path, val_size=4)
    check_split(fine.train, 8), check_split(fine.val, 4), check_split(fine.test, 5)
    assert fine.num_classes == 100 and fine.class_names[3] == "fine3"
    assert torch.equal(read_labels(fine.train), fine.train.labels)
    check_orientation(fine.test)
    for split in fine.splits().values():
        assert torch.equal(split.extra["coarse_labels"], split.labels // 5)
        assert torch.equal(split.extra["fine_labels"], split.labels)
    coarse = load_image_dataset("cifar100", tmp_path, val_size=4, label_kind="coarse")
    assert coarse.num_classes == 20 and coarse.class_names[1] == "coarse1"
    assert coarse.extra_names["coarse_labels"][1] == "coarse1"
    assert torch.equal(coarse.train.labels, fine.train.labels // 5)
    assert torch.equal(coarse.test.extra["fine_labels"], fine.test.labels)


@pytest.mark.parametrize("name, title, write", [("cifar10", "CIFAR-10", write_cifar10),
                                                  ("cifar100", "CIFAR-100", write_cifar100)])
def test_a_cifar_set_smaller_than_the_real_one_loads_with_a_warning_per_split(tmp_path, monkeypatch, capsys, name, title,
                                                                              write):
    """A partial or altered copy trains, but its test accuracy is not the paper's: loading (and so
    check-data) says so for each split; the real sizes load without a word."""
    import warnings
    write(tmp_path)
    with pytest.warns(UserWarning) as caught:
        data = load_image_dataset(name, tmp_path, val_size=4)
    folder = tmp_path / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    train, test = len(data.train) + len(data.val), len(data.test)
    assert [str(w.message) for w in caught] == [
        f"{name}: {count} {what} images under {folder}, where {title} has {real:,}; a test accuracy on them is not "
        "the paper's (is every archive unpacked in full, every file the original?)"
        for what, count, real in (("training", train, 50000), ("test", test, 10000))]
    from nslviz.__main__ import main
    assert main(["check-data", "--dataset", name, "--data-root", str(tmp_path), "--no-progress"]) == 0
    assert f"check-data: warning: {name}: {test} test images under {folder}, where {title} has 10,000" in capsys.readouterr().out
    monkeypatch.setattr("nslviz.datasets.images.cifar.CIFAR_TRAINING", train)
    monkeypatch.setattr("nslviz.datasets.images.cifar.CIFAR_TEST", test)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image_dataset(name, tmp_path, val_size=4)


@pytest.mark.parametrize("name, inner, outer", [
    ("cifar10", "cifar-10-batches-py", "cifar-10-batches-py"),       # unpacked one folder too deep
    ("cifar10", "cifar-10-batches-py", "cifar-10-python"),           # into a folder named like the archive
    ("cifar100", "cifar-100-python", "downloads/cifar100"),          # two folders down
    ("imagenet", "imagenet", "imagenet")])
def test_a_set_unpacked_farther_down_is_named_where_it_was_found(tmp_path, name, inner, outer):
    """The error still names where the files are expected, and adds where they are: a folder named like
    an expected one, up to four levels below the data root, holding everything required."""
    from test_imagenet_files import write_imagenet
    elsewhere = tmp_path / outer
    write_small_set(elsewhere, name) if name != "imagenet" else write_imagenet(elsewhere)
    (tmp_path / "decoy" / inner).mkdir(parents=True)                 # named like it, but empty: not it
    with pytest.raises(FileNotFoundError) as error:
        load_image_dataset(name, tmp_path, val_size=2)
    expected = tmp_path / inner
    inside = (elsewhere / inner).is_relative_to(expected)                 # then it cannot move there
    move = "" if inside else f", or move that folder to {expected}"
    assert (f"\nFound them farther down, in {elsewhere / inner}: use {elsewhere} as the data root "
            f"(--data-root){move}\nHow to get it:") in str(error.value)
    assert len(load_image_dataset(name, elsewhere, val_size=2).test) > 0     # as the message says
    if move:
        (elsewhere / inner).rename(expected)
        assert len(load_image_dataset(name, tmp_path, val_size=2).test) > 0


def test_kaggles_imagenet_unpacked_into_a_folder_of_its_own_is_named_where_it_was_found(tmp_path):
    """Kaggle's archive holds ILSVRC/Data/CLS-LOC/ and its label files beside ILSVRC/: unzipped into a
    folder of its own, the images are four levels below the data root."""
    from test_imagenet_files import write_imagenet
    download = tmp_path / "imagenet-object-localization-challenge"
    folder = write_imagenet(download, layout="kaggle")
    with pytest.raises(FileNotFoundError, match=f"Found them farther down, in {re.escape(str(folder))}: use "
                                                f"{re.escape(str(download))} as the data root"):
        load_image_dataset("imagenet", tmp_path, val_size=2)
    assert len(load_image_dataset("imagenet", download, val_size=2).test) > 0     # as the message says


def test_nothing_is_named_farther_down_when_nothing_is_there(tmp_path):
    for depth in range(4):                                            # folders, none of them the set
        (tmp_path / "/".join(["other"] * (depth + 1))).mkdir(parents=True, exist_ok=True)
    with pytest.raises(FileNotFoundError) as error:
        load_image_dataset("cifar10", tmp_path)
    assert "Found them" not in str(error.value)


# ----------------------------------------------------------------------------------------------
# MNIST, SVHN


def write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def test_mnist_idx_files_plain_and_gzipped(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    rng = np.random.default_rng(2)
    for prefix, count, compress in (("train", 12, True), ("t10k", 4, False)):
        labels = rng.integers(0, 10, count)
        images = np.stack([np.full((28, 28), 20 + 10 * l) for l in labels])
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress)
    data = load_image_dataset("mnist", tmp_path, val_size=3)
    check_split(data.train, 9, channels=1), check_split(data.val, 3, channels=1), check_split(data.test, 4, channels=1)
    assert data.channels == 1 and data.class_names == [str(d) for d in range(10)]
    for split in data.splits().values():                            # 28 → 32, solid images keep their value
        assert torch.equal(split.images[:, 0, 16, 16].long(), 20 + 10 * split.labels)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte has 11 bytes"):
        load_image_dataset("mnist", tmp_path, val_size=3)


def test_svhn_mat_files_map_label_10_to_0(tmp_path):
    from scipy.io import savemat
    folder = tmp_path / "svhn"
    folder.mkdir()
    for name, labels in (("train_32x32.mat", [10, 1, 2, 3, 10, 5, 6]), ("test_32x32.mat", [9, 10, 4])):
        digits = np.array(labels) % 10
        x = np.stack([marked(int(d), 32) for d in digits], axis=-1)    # (32, 32, 3, N) as in the real files
        savemat(folder / name, {"X": x, "y": np.array(labels, dtype=np.uint8).reshape(-1, 1)})
    data = load_image_dataset("svhn", tmp_path, val_size=2)
    check_split(data.train, 5), check_split(data.val, 2), check_split(data.test, 3)
    assert data.train.labels.tolist() == [0, 1, 2, 3, 0] and data.val.labels.tolist() == [5, 6]
    assert data.test.labels.tolist() == [9, 0, 4]
    for split in data.splits().values():
        assert torch.equal(read_labels(split), split.labels)
        check_orientation(split)


# ----------------------------------------------------------------------------------------------
# folder sets (decoded once and cached)


def write_cinic(root, per_class=3):
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for part in ("train", "valid", "test"):
        for label, name in enumerate(classes):
            for i in range(per_class):
                save_png(root / "cinic-10" / part / name / f"{part}-{i}.png", solid(label, 32))
    return classes


def test_cinic10_folders_cache_and_invalidation(tmp_path, monkeypatch):
    classes = write_cinic(tmp_path)
    data = load_image_dataset("cinic10", tmp_path)
    for split in data.splits().values():
        check_split(split, 30)
        assert torch.equal(read_labels(split), split.labels)
        assert torch.equal(torch.bincount(split.labels), torch.full((10,), 3))
        assert set(split.labels[:10].tolist()) == set(range(10))    # class-interleaved: any prefix is balanced
    assert data.class_names == classes
    cache = tmp_path / "cinic10" / "images-32px-RGB.pt"
    assert cache.exists()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache is valid")
    monkeypatch.setattr(image_utils, "_decode_images", no_decoding)
    again = load_image_dataset("cinic10", tmp_path)
    for name, split in data.splits().items():
        assert torch.equal(again.splits()[name].images, split.images)
        assert torch.equal(again.splits()[name].labels, split.labels)
    capped = load_image_dataset("cinic10", tmp_path, val_size=10, limit=5)
    check_split(capped.val, 5), check_split(capped.train, 5)
    assert torch.equal(capped.val.labels, data.val.labels[:5])
    monkeypatch.undo()
    changed = tmp_path / "cinic-10" / "test" / "bird" / "test-0.png"
    save_png(changed, solid(9, 32))                                 # a file changed: the cache is rebuilt
    os.utime(changed, ns=(1, 1))
    rebuilt = load_image_dataset("cinic10", tmp_path)
    row = int(torch.nonzero((rebuilt.test.labels == 2) & (read_labels(rebuilt.test) == 9))[0])
    assert rebuilt.test.images[row, 0, 0, 0] == colour_of(9)[0]
    # a file replaced by one of the same size: its modification time alone tells the cache it changed
    same_size = tmp_path / "cinic-10" / "test" / "airplane" / "test-0.png"
    size = same_size.stat().st_size
    save_png(same_size, solid(4, 32))
    assert same_size.stat().st_size == size
    os.utime(same_size, ns=(2, 2))
    rebuilt = load_image_dataset("cinic10", tmp_path)
    assert bool(((rebuilt.test.labels == 0) & (read_labels(rebuilt.test) == 4)).any())


def test_a_folder_set_loads_from_a_read_only_data_folder_without_its_cache(tmp_path, monkeypatch):
    """A shared read-only mount: the images are decoded and returned, with a warning, and nothing is written."""
    write_cinic(tmp_path, per_class=1)

    def read_only(path, obj):
        raise OSError(f"cannot write {str(path)!r}: Read-only file system")
    monkeypatch.setattr(image_utils, "atomic_torch_save", read_only)
    with pytest.warns(UserWarning, match=r"cinic10: cannot write .*Read-only file system; the 30 images were "
                                         r"decoded but not cached"):
        data = load_image_dataset("cinic10", tmp_path)
    assert len(data.train) == 10 and not (tmp_path / "cinic10" / "images-32px-RGB.pt").exists()


def test_a_limited_load_of_a_folder_set_decodes_only_the_images_it_keeps_and_caches_nothing(tmp_path, monkeypatch):
    """limit=4 on CINIC-10 (90 files) decodes the 12 images of the three prefixes, the same ones a full
    load gives, and writes no cache of a partial decoding."""
    write_cinic(tmp_path)
    decoded = []
    decode = image_utils._decode_images

    def counted(request, files, size, mode):
        decoded.append(len(files))
        return decode(request, files, size, mode)
    monkeypatch.setattr(image_utils, "_decode_images", counted)
    limited = load_image_dataset("cinic10", tmp_path, limit=4)
    assert decoded == [12] and not (tmp_path / "cinic10" / "images-32px-RGB.pt").exists()
    full = load_image_dataset("cinic10", tmp_path)
    for name, split in limited.splits().items():
        check_split(split, 4)
        assert torch.equal(split.images, full.splits()[name].images[:4])
        assert torch.equal(split.labels, full.splits()[name].labels[:4])


def test_the_data_folder_defaults_to_nslviz_data(tmp_path, monkeypatch):
    write_cinic(tmp_path, per_class=1)
    monkeypatch.setenv("NSLVIZ_DATA", str(tmp_path))
    assert len(load_image_dataset("cinic10").test) == 10


def write_tiny_imagenet(root, wnids=("n02", "n01", "n03"), per_class=4, val=6):
    folder = root / "tiny-imagenet-200"
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\tsalamander\nn03\tbullfrog, frog\n"
                                      "n99\tunused\n")
    label = {w: i for i, w in enumerate(sorted(wnids))}
    for wnid in wnids:
        for i in range(per_class):
            image = folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(solid(label[wnid], 64)).save(image, format="JPEG", quality=95)
    lines = []
    for i in range(val):
        wnid = sorted(wnids)[i % len(wnids)]
        image = folder / "val" / "images" / f"val_{i}.JPEG"
        image.parent.mkdir(parents=True, exist_ok=True)
        mode_image = Image.fromarray(solid(label[wnid], 64))
        if i == 0:
            mode_image = mode_image.convert("L")                   # a few real files are greyscale
        mode_image.save(image, format="JPEG", quality=95)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def test_tiny_imagenet_refuses_foreign_text_files_naming_them(tmp_path):
    write_tiny_imagenet(tmp_path)
    annotations = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    good = annotations.read_text()
    for text, message in ((good + "val_0.JPEG\tn01\t0\t0\t63\t63\n", "line 7 lists 'val_0.JPEG' a second time"),
                          (good.replace("val_2.JPEG\tn03\t0\t0\t63\t63", "val_2.JPEG n03 0 0 63 63"), "line 3 is 'val_2.JPEG n03"),
                          (good.replace("\tn03\t", "\tn77\t", 1), "line 3 names 'n77', which is not in wnids.txt")):
        annotations.write_text(text)
        with pytest.raises(ValueError, match=f"tiny-imagenet: cannot read .*val_annotations.txt .*{message}.*How to get it"):
            load_image_dataset("tiny-imagenet", tmp_path, val_size=3)
    annotations.write_text(good)
    (tmp_path / "tiny-imagenet-200" / "wnids.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="tiny-imagenet: cannot read .*wnids.txt"):
        load_image_dataset("tiny-imagenet", tmp_path, val_size=3)


def test_tiny_imagenet_val_folder_is_test_and_val_is_held_out_of_train(tmp_path):
    write_tiny_imagenet(tmp_path)
    data = load_image_dataset("tiny-imagenet", tmp_path, val_size=3)
    check_split(data.train, 9), check_split(data.val, 3), check_split(data.test, 6)
    assert data.class_names == ["goldfish", "salamander", "bullfrog"]     # wnids sorted: n01, n02, n03
    assert torch.equal(torch.bincount(data.val.labels), torch.ones(3, dtype=torch.int64))   # stratified
    for split in (data.train, data.val):
        assert torch.equal(read_labels(split), split.labels)
    assert data.test.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert torch.equal(read_labels(data.test)[1:], data.test.labels[1:])   # image 0 was stored greyscale
    assert data.test.images.shape[1] == 3
    other_seed = load_image_dataset("tiny-imagenet", tmp_path, val_size=3, seed=1)
    assert torch.equal(torch.bincount(other_seed.val.labels), torch.ones(3, dtype=torch.int64))
    assert (tmp_path / "tiny-imagenet" / "images-32px-RGB.pt").exists()
    native = load_image_dataset("tiny-imagenet", tmp_path, val_size=3, image_size=64)
    check_split(native.test, 6, size=64)


def test_mnist_m_png_folders_and_label_lists(tmp_path):
    folder = tmp_path / "mnist_m"
    rng = np.random.default_rng(3)
    for part, count in (("train", 10), ("test", 4)):
        labels = rng.integers(0, 10, count)
        lines = []
        for i, label in enumerate(labels):
            save_png(folder / f"mnist_m_{part}" / f"{i:08d}.png", solid(int(label), 28))
            lines.append(f"{i:08d}.png {label}")
        (folder / f"mnist_m_{part}_labels.txt").write_text("\n".join(lines) + "\n")
    data = load_image_dataset("mnist-m", tmp_path, val_size=3)
    check_split(data.train, 7), check_split(data.val, 3), check_split(data.test, 4)
    for split in data.splits().values():
        assert torch.equal(read_labels(split), split.labels)
    listed = [int(line.split()[1]) for line in (folder / "mnist_m_train_labels.txt").read_text().splitlines()]
    assert data.train.labels.tolist() == listed[:7] and data.val.labels.tolist() == listed[7:]
    os.remove(folder / "mnist_m_test" / "00000002.png")
    with pytest.raises(FileNotFoundError, match="mnist-m: 1 images listed in mnist_m_test_labels.txt"):
        load_image_dataset("mnist-m", tmp_path, val_size=3)


def write_pacs(folder, per_group=10, size=24):
    relative = []
    for d, domain in enumerate(PACS_DOMAINS):
        for c, name in enumerate(PACS_CLASSES):
            for i in range(per_group):
                suffix = ".png" if domain == "sketch" else ".jpg"    # the real sketch images are PNG
                path = folder / domain / name / f"pic_{i:03d}{suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(solid(c, size, d)).save(path, quality=95)
                relative.append(f"{domain}/{name}/{path.name} {c + 1}")
    return relative


def read_domains(split: ImageSplit) -> torch.Tensor:
    return torch.round((split.images[:, 1].float().mean(dim=(1, 2)) - 40) / 50).long()


def test_pacs_all_domains_paper_protocol_and_disjoint_option(tmp_path):
    write_pacs(tmp_path / "pacs_data")
    data = load_image_dataset("pacs", tmp_path)
    check_split(data.train, 252), check_split(data.val, 28), check_split(data.test, 280)   # 9 : 1 : all
    for split in data.splits().values():
        assert torch.equal(read_labels(split), split.labels)
        assert torch.equal(read_domains(split), split.extra["domain"])
        assert torch.equal(split.extra["class_labels"], split.labels)
    groups = data.val.extra["domain"] * 7 + data.val.labels
    assert torch.equal(torch.bincount(groups, minlength=28), torch.ones(28, dtype=torch.int64))   # 10 % per group
    assert data.class_names == PACS_CLASSES and data.extra_names["domain"] == PACS_DOMAINS
    by_domain = load_image_dataset("pacs", tmp_path, label_kind="domain")
    assert by_domain.num_classes == 4 and torch.equal(by_domain.test.labels, read_domains(by_domain.test))
    disjoint = load_image_dataset("pacs", tmp_path, options={"split": "disjoint"})
    sizes = [len(s) for s in disjoint.splits().values()]
    assert sizes == [224, 28, 28] and sum(sizes) == 280
    with pytest.raises(ValueError, match="unknown PACS split option 'leaky'"):
        load_image_dataset("pacs", tmp_path, options={"split": "leaky"})


def test_a_half_extracted_pacs_is_refused_naming_the_empty_folders(tmp_path):
    import shutil
    write_pacs(tmp_path / "pacs_data", per_group=2)
    shutil.rmtree(tmp_path / "pacs_data" / "photo" / "dog")
    for child in (tmp_path / "pacs_data" / "sketch" / "house").iterdir():
        child.unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)PACS images in 2 of the 28 domain/class folders not found.*photo/dog.*sketch/house"):
        load_image_dataset("pacs", tmp_path)


def test_pacs_kfold_layout_uses_the_official_lists(tmp_path):
    base = tmp_path / "PACS"
    relative = write_pacs(base / "kfold", per_group=3)
    for domain in PACS_DOMAINS:
        mine = [line for line in relative if line.startswith(domain + "/")]
        (base / f"{domain}_train_kfold.txt").write_text("\n".join(l for l in mine if "pic_000" not in l) + "\n")
        (base / f"{domain}_crossval_kfold.txt").write_text("\n".join(l for l in mine if "pic_000" in l) + "\n")
        (base / f"{domain}_test_kfold.txt").write_text("\n".join(mine) + "\n")
    data = load_image_dataset("pacs", tmp_path)
    check_split(data.train, 56), check_split(data.val, 28), check_split(data.test, 84)
    assert data.split_notes.startswith("official kfold lists")
    for split in data.splits().values():
        assert torch.equal(read_labels(split), split.labels)
    assert torch.equal(torch.bincount(data.val.extra["domain"] * 7 + data.val.labels), torch.ones(28, dtype=torch.int64))



def test_pacs_list_naming_an_absent_image_says_how_to_get_the_set(tmp_path):
    base = tmp_path / "PACS"
    relative = write_pacs(base / "kfold", per_group=3)
    for domain in PACS_DOMAINS:
        mine = [line for line in relative if line.startswith(domain + "/")]
        for part in ("train", "crossval", "test"):
            (base / f"{domain}_{part}_kfold.txt").write_text("\n".join(mine + ["sketch/dog/missing.png 1"]) + "\n")
    with pytest.raises(FileNotFoundError, match=r"(?s)pacs: an image listed in .*art_painting_train_kfold.txt not "
                                                r"found.*kfold/sketch/dog/missing.png.*How to get it"):
        load_image_dataset("pacs", tmp_path)


# ----------------------------------------------------------------------------------------------
# downsampled ImageNet


def imagenet64_rows(labels):
    return np.stack([marked(int(l) - 1, 64).transpose(2, 0, 1).reshape(-1) for l in labels])  # (N, 12288)


def write_imagenet64(root, layout, rng, batches=range(1, 11)):
    """The ten training batches (one image each, two in batch 1) and the val batch in one of the
    real layouts: "parts_npz" is the download (Imagenet64_train_part1_npz/ holds batches 1-5, part2
    6-10), "merged_npz" one train folder, "parts_pickle" the pickle variant's two parts. Labels are
    numbered from 1, as on disk."""
    suffix = ".npz" if layout.endswith("npz") else ""
    tail = "_npz" if suffix else ""
    folders = ({1: f"Imagenet64_train{tail}", 6: f"Imagenet64_train{tail}"} if layout == "merged_npz"
               else {1: f"Imagenet64_train_part1{tail}", 6: f"Imagenet64_train_part2{tail}"})
    batches = {f"train_data_batch_{i}": rng.integers(1, 11, 2 if i == 1 else 1) for i in batches}
    batches["val_data"] = rng.integers(1, 11, 4)
    for name, labels in batches.items():
        if name == "val_data":
            folder = root / f"Imagenet64_val{tail}"
        else:
            folder = root / folders[1 if int(name.rsplit("_", 1)[1]) <= 5 else 6]
        folder.mkdir(exist_ok=True)
        stored = {"data": imagenet64_rows(labels), "labels": labels.tolist()}
        if suffix:
            np.savez(folder / f"{name}.npz", **stored, **({"mean": np.zeros(12288)} if name != "val_data" else {}))
        else:
            with open(folder / name, "wb") as handle:
                pickle.dump(stored, handle, protocol=2)
    return batches


def test_imagenet64_without_its_validation_batch_names_only_that(tmp_path):
    write_imagenet64(tmp_path, "parts_npz", np.random.default_rng(4))
    (tmp_path / "Imagenet64_val_npz" / "val_data.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"imagenet64: the validation batch \(the 10 training batches beside "
                                                r"it were found; .*\) not found. Expected:\n  \S*val_data.npz\nHow"):
        load_image_dataset("imagenet64", tmp_path)


@pytest.mark.parametrize("layout", ["parts_npz", "merged_npz", "parts_pickle"])
def test_imagenet64_batches_in_the_download_layouts(tmp_path, layout):
    batches = write_imagenet64(tmp_path, layout, np.random.default_rng(4))
    (tmp_path / "map_clsloc.txt").write_text("n01 1 tench\nn02 2 goldfish\n")
    data = load_image_dataset("imagenet64", tmp_path, val_size=4)
    check_split(data.train, 7, size=64), check_split(data.val, 4, size=64), check_split(data.test, 4, size=64)
    assert data.num_classes == 1000 and data.class_names[:2] == ["tench", "goldfish"]
    for split in data.splits().values():
        assert torch.equal(read_labels(split), split.labels)
        check_orientation(split)
    train_labels = np.concatenate([batches[f"train_data_batch_{i}"] for i in range(1, 11)]) - 1
    assert sorted(torch.cat([data.train.labels, data.val.labels]).tolist()) == sorted(train_labels.tolist())
    assert data.test.labels.tolist() == (batches["val_data"] - 1).tolist()
    small = load_image_dataset("imagenet64", tmp_path, val_size=4, image_size=32)
    check_split(small.train, 7)


@pytest.mark.parametrize("layout", ["parts_npz", "parts_pickle"])
def test_imagenet64_refuses_a_val_size_as_large_as_the_training_set_before_reading_the_images(tmp_path, monkeypatch,
                                                                                              layout):
    """.npz: the batches' labels give the 11 rows, and no image is read; the pickle variant decodes its
    batches to count them, but never the validation batch. A negative val_size is refused before any file."""
    from nslviz.datasets.images import imagenet
    write_imagenet64(tmp_path, layout, np.random.default_rng(4))
    read, original = [], imagenet._read_imagenet64_batch
    def reading(request, path, labels_only=False):
        if not labels_only:
            read.append(path.name)
        return original(request, path, labels_only)
    monkeypatch.setattr(imagenet, "_read_imagenet64_batch", reading)
    with pytest.raises(ValueError, match=r"imagenet64: val_size 11 leaves no training images \(the training set "
                                         r"under \S+ has 11\)"):
        load_image_dataset("imagenet64", tmp_path, val_size=11)
    assert read == ([] if layout == "parts_npz" else [f"train_data_batch_{i}" for i in range(1, 11)])
    with pytest.raises(ValueError, match="val_size must be >= 0, got -1"):
        load_image_dataset("imagenet64", tmp_path / "nothing here", val_size=-1)
    assert len(load_image_dataset("imagenet64", tmp_path, val_size=10).train) == 1


def test_imagenet64_refuses_a_half_unzipped_training_set(tmp_path):
    write_imagenet64(tmp_path, "parts_npz", np.random.default_rng(7), batches=range(1, 6))   # part 2 not unzipped
    with pytest.raises(FileNotFoundError, match=r"(?s)imagenet64: training batches \[6, 7, 8, 9, 10\] of 10 .*"
                                                r"Imagenet64_train_part2_npz/train_data_batch_6.npz"):
        load_image_dataset("imagenet64", tmp_path, val_size=4)


def test_imagenet64_refuses_a_batch_twice_and_zero_based_labels(tmp_path):
    write_imagenet64(tmp_path, "parts_npz", np.random.default_rng(5))
    part1, part2 = tmp_path / "Imagenet64_train_part1_npz", tmp_path / "Imagenet64_train_part2_npz"
    (part2 / "train_data_batch_1.npz").write_bytes((part1 / "train_data_batch_1.npz").read_bytes())
    with pytest.raises(ValueError, match="train_data_batch_1.npz is in more than one"):
        load_image_dataset("imagenet64", tmp_path, val_size=4)
    (part2 / "train_data_batch_1.npz").unlink()
    labels = np.array([0])                                           # numbered from 0: not the real files
    np.savez(part1 / "train_data_batch_2.npz", data=imagenet64_rows(labels + 1), labels=labels)
    with pytest.raises(ValueError, match=r"imagenet64: the (train|val) labels .* range over \[-1, .*expected 0..999"):
        load_image_dataset("imagenet64", tmp_path, val_size=4)



def test_imagenet64_refuses_labels_above_its_1000_classes(tmp_path):
    """The files number the 1,000 classes 1..1000: 1000 is the last class (999), 1001 is refused
    with an error that names the split, the range read and the range expected."""
    write_imagenet64(tmp_path, "parts_npz", np.random.default_rng(8))
    val_file = tmp_path / "Imagenet64_val_npz" / "val_data.npz"
    np.savez(val_file, data=np.zeros((2, 12288), dtype=np.uint8), labels=np.array([1, 1000]))
    assert load_image_dataset("imagenet64", tmp_path, val_size=4).test.labels.tolist() == [0, 999]
    np.savez(val_file, data=np.zeros((2, 12288), dtype=np.uint8), labels=np.array([1, 1001]))
    with pytest.raises(ValueError, match=r"imagenet64: the test labels .* range over \[0, 1000\], expected 0..999 "
                                         r"\(1000 classes\)"):
        load_image_dataset("imagenet64", tmp_path, val_size=4)


def test_imagenet64_names_the_32_pixel_download_and_reads_the_first_complete_copy(tmp_path):
    first = write_imagenet64(tmp_path, "parts_npz", np.random.default_rng(6))
    for root, layout in [(tmp_path, "parts_pickle"), (tmp_path / "imagenet64", "parts_npz")]:
        root.mkdir(exist_ok=True)                                         # other complete copies, other labels
        assert write_imagenet64(root, layout, np.random.default_rng(9))["val_data"].tolist() != first["val_data"].tolist()
    data = load_image_dataset("imagenet64", tmp_path, val_size=4)        # data/ and .npz come first
    assert data.test.labels.tolist() == (first["val_data"] - 1).tolist()
    np.savez(tmp_path / "Imagenet64_train_part1_npz" / "train_data_batch_3.npz",
             data=np.zeros((1, 3 * 32 * 32), dtype=np.uint8), labels=[1])
    with pytest.raises(ValueError, match=r"(?s)train_data_batch_3.npz holds 'data' of shape \(1, 3072\) \(the "
                                         r"32×32 download\).*expected \(N, 12288\).*How to get it: register"):
        load_image_dataset("imagenet64", tmp_path, val_size=4)


# ----------------------------------------------------------------------------------------------
# damaged files, wrong options


def write_small_set(root, name):
    """A few images of `name` in its real format."""
    if name == "cifar10":
        write_cifar10(root)
    elif name == "cifar100":
        write_cifar100(root)
    elif name == "mnist":
        for prefix, count in (("train", 8), ("t10k", 4)):
            write_idx(root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", np.zeros((count, 28, 28)), True)
            write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10, True)
    elif name == "svhn":
        from scipy.io import savemat
        (root / "svhn").mkdir()
        for part in ("train", "test"):
            savemat(root / "svhn" / f"{part}_32x32.mat", {"X": np.zeros((32, 32, 3, 6), dtype=np.uint8),
                                                          "y": np.arange(1, 7, dtype=np.uint8).reshape(-1, 1)})
    elif name == "cinic10":
        write_cinic(root, per_class=1)
    else:
        write_imagenet64(root, "parts_npz", np.random.default_rng(6))


@pytest.mark.parametrize("name, file, damage", [
    ("cifar10", "cifar-10-batches-py/data_batch_3", "truncate"),
    ("cifar10", "cifar-10-batches-py/test_batch", "html"),
    ("cifar100", "cifar-100-python/train", "truncate"),
    ("mnist", "MNIST/raw/train-images-idx3-ubyte.gz", "truncate"),
    ("svhn", "svhn/test_32x32.mat", "truncate"),
    ("cinic10", "cinic-10/test/cat/test-0.png", "html"),
    ("imagenet64", "Imagenet64_train_part2_npz/train_data_batch_6.npz", "html"),
    ("imagenet64", "Imagenet64_val_npz/val_data.npz", "truncate"),
    ("svhn", "svhn/train_32x32.mat", "empty"),
])
def test_damaged_files_name_the_dataset_the_file_and_what_to_do(tmp_path, name, file, damage):
    write_small_set(tmp_path, name)
    path = tmp_path / file
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 3])
    elif damage == "empty":
        path.write_bytes(b"")
    else:                                                           # a failed download saved an error page
        path.write_text("<html>404 Not Found</html>")
    with pytest.raises(ValueError) as error:
        load_image_dataset(name, tmp_path, val_size=2)
    message = str(error.value)
    assert message.startswith(f"{name}: cannot read {path} ")
    assert "delete it and get it again" in message and "How to get it:" in message


def test_a_partly_missing_set_names_only_what_is_missing(tmp_path):
    write_small_set(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError) as error:
        load_image_dataset("cifar10", tmp_path)
    expected = str(error.value).split("Expected:")[1].split("Also searched")[0]
    assert str(error.value).startswith(f"cifar10: 1 of the CIFAR-10 python batches (the other 5 are in "
                                       f"{tmp_path / 'cifar-10-batches-py'}) not found")
    assert expected.split() == [str(tmp_path / "cifar-10-batches-py" / "data_batch_3")]


def test_check_data_lists_every_damaged_file_of_a_set_held_in_memory(tmp_path, capsys):
    """Loading stops at none of them: one error names the count and the first, check-data lists all,
    exits 1 and ends with its JSON object."""
    import json
    from nslviz.__main__ import main
    write_cinic(tmp_path, per_class=1)
    (tmp_path / "cinic-10" / "train" / "cat" / "train-0.png").write_text("<html>404 Not Found</html>")
    truncated = tmp_path / "cinic-10" / "test" / "dog" / "test-0.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"^cinic10: 2 image files cannot be read \(`python -m nslviz check-data "
                                         r"--dataset cinic10` lists every one\); the first: cannot read "):
        load_image_dataset("cinic10", tmp_path)
    assert main(["check-data", "--dataset", "cinic10", "--data-root", str(tmp_path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(os.path.basename(f["path"]) for f in report["unreadable"]) == ["test-0.png", "train-0.png"]
    assert all("delete it and get it again" in f["reason"] for f in report["unreadable"])


def test_reading_errors_are_sorted_into_damaged_files_and_system_errors(tmp_path):
    """A parser's error means a damaged file (get it again); an OS error with an errno (permissions,
    the disk) does not, and says so; an error that already names the set passes unchanged."""
    request = image_module._Request("cifar10", tmp_path, None, None, "fine", False, None, 0, {})
    path = tmp_path / "data_batch_1"

    def failing(error):
        with image_module._reading(request, path):
            raise error

    with pytest.raises(PermissionError, match=rf"cifar10: cannot read {path} \(Permission denied\); check the file's"):
        failing(PermissionError(13, "Permission denied"))
    for error in (gzip.BadGzipFile("Not a gzipped file"), SyntaxError("broken PNG file"), EOFError("ran out")):
        with pytest.raises(ValueError, match=rf"cifar10: cannot read {path} \({type(error).__name__}: .*get it again"):
            failing(error)
    with pytest.raises(ValueError, match="^cifar10: already named$"):
        failing(ValueError("cifar10: already named"))
    with pytest.raises(FileNotFoundError):
        failing(FileNotFoundError(2, "No such file"))


def test_a_damaged_pickle_variant_batch_is_named_once(tmp_path):
    write_imagenet64(tmp_path, "parts_pickle", np.random.default_rng(8))
    path = tmp_path / "Imagenet64_train_part1" / "train_data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError) as error:
        load_image_dataset("imagenet64", tmp_path, val_size=4)
    assert str(error.value).count("cannot read") == 1 and str(error.value).count("How to get it") == 1


def test_a_pickle_without_the_expected_entries_is_named(tmp_path):
    write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_2", "wb") as handle:
        pickle.dump({"images": np.zeros((4, 3072), dtype=np.uint8)}, handle)
    with pytest.raises(ValueError, match=r"cifar10: .*data_batch_2 lacks the entries \['data', 'labels'\]"):
        load_image_dataset("cifar10", tmp_path, val_size=5)


def test_out_of_range_labels_are_refused_where_they_are_read(tmp_path):
    folder = tmp_path / "mnist_m"
    for part, count in (("train", 6), ("test", 3)):
        lines = []
        for i in range(count):
            save_png(folder / f"mnist_m_{part}" / f"{i}.png", solid(i % 10, 28))
            lines.append(f"{i}.png {12 if (part, i) == ('test', 2) else i % 10}")
        (folder / f"mnist_m_{part}_labels.txt").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"mnist-m: cannot read .*mnist_m_test_labels.txt .*line 3 is '2.png 12'; "
                                         r"expected '<file> <digit 0-9>'.*How to get it"):
        load_image_dataset("mnist-m", tmp_path, val_size=2)
    (folder / "mnist_m_test_labels.txt").write_text("0.png 0\n1.png,1\n")   # a malformed line is not skipped
    with pytest.raises(ValueError, match=r"line 2 is '1.png,1'"):
        load_image_dataset("mnist-m", tmp_path, val_size=2)


def test_svhn_and_cifar_refuse_foreign_labels_and_arrays_naming_the_file(tmp_path):
    from scipy.io import savemat
    svhn = tmp_path / "svhn"
    svhn.mkdir()
    x = np.zeros((32, 32, 3, 4), np.uint8)
    savemat(svhn / "test_32x32.mat", {"X": x, "y": np.array([[1], [2], [10], [3]])})
    savemat(svhn / "train_32x32.mat", {"X": x, "y": np.array([[1], [11], [10], [3]])})
    with pytest.raises(ValueError, match=r"svhn: cannot read .*train_32x32.mat .*digits 1..10 .*got 1 to 11"):
        load_image_dataset("svhn", tmp_path, val_size=1)
    savemat(svhn / "train_32x32.mat", {"X": x.astype(np.float64) + 0.5, "y": np.array([[1], [2], [10], [3]])})
    with pytest.raises(ValueError, match=r"svhn: cannot read .*train_32x32.mat .*'X' must be uint8"):
        load_image_dataset("svhn", tmp_path, val_size=1)
    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [0, 1] if name != "data_batch_3" else [0, 1, 2]               # one label too many
        (cifar / name).write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": labels}))
    with pytest.raises(ValueError, match=r"cifar10: cannot read .*data_batch_3 .*3 labels for 2 images"):
        load_image_dataset("cifar10", tmp_path, val_size=1)
    (cifar / "data_batch_3").write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}))
    (cifar / "batches.meta").write_bytes(pickle.dumps({"names": ["a"]}))
    with pytest.raises(ValueError, match=r"cifar10: .*batches.meta lacks the entries \['label_names'\]"):
        load_image_dataset("cifar10", tmp_path, val_size=1)


@pytest.mark.parametrize("name, options, message", [
    ("pacs", {"splt": "disjoint"}, r"pacs has no option\(s\) \['splt'\]; expected some of split"),
    ("cifar10", {"split": "disjoint"}, r"cifar10 has no option\(s\) \['split'\]; it takes no options"),
    ("digits", {"noise": 1.0}, r"digits has no option\(s\) \['noise'\]"),
])
def test_options_a_dataset_does_not_read_are_refused(tmp_path, name, options, message):
    with pytest.raises(ValueError, match=message):
        load_image_dataset(name, tmp_path, options=options)


def test_a_too_large_validation_split_names_the_dataset_and_folder(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(ValueError, match=rf"cifar10: val_size 5000 leaves no training images \(the training set "
                                         rf"under {tmp_path} has 20\)"):
        load_image_dataset("cifar10", tmp_path)


# ----------------------------------------------------------------------------------------------
# embedded sets


def test_digits_split_is_stratified_deterministic_and_complete():
    data = load_image_dataset("digits")
    check_split(data.train, 1258, channels=1), check_split(data.val, 180, channels=1)
    check_split(data.test, 359, channels=1)
    assert data.paper_augment == "crop" and data.num_classes == 10
    class_share = torch.bincount(torch.cat([s.labels for s in data.splits().values()])).double() / 1797
    for split in data.splits().values():
        counts = torch.bincount(split.labels, minlength=10).double()
        assert (counts - len(split) * class_share).abs().max() <= 1   # every class in proportion
    again = load_image_dataset("digits")
    assert all(torch.equal(a.images, b.images) for a, b in zip(data.splits().values(), again.splits().values()))
    reseeded = load_image_dataset("digits", seed=1)
    assert not torch.equal(reseeded.test.images, data.test.images)
    from sklearn.datasets import load_digits
    original = torch.from_numpy(np.round(load_digits().images * 255 / 16).astype(np.uint8)).unsqueeze(1)
    pooled = torch.cat([s.images for s in data.splits().values()])   # the splits partition the 1,797 images
    assert torch.equal(torch.sort(pooled.flatten(1).sum(1)).values,
                       torch.sort(image_module.resize_images(original, 32).flatten(1).sum(1)).values)
    with pytest.raises(ValueError, match=r"image size 100000: 1,797 images of 1x100000x100000 need 17,970.0 GB, "
                                         r"more than this machine can allocate; choose a smaller image_size"):
        image_module.resize_images(original, 100_000)                   # a typo's size: named, not a traceback
    from nslviz.datasets.glyphs import make_glyphs                      # drawn at that size, not resized
    with pytest.raises(ValueError, match=r"image size 100000: 500 images of 3x100000x100000 need 15,000.0 GB, more "
                                         r"than this machine can allocate; .*\(the glyphs are drawn at that size\)"):
        make_glyphs(20, 25, image_size=100_000)
    small = load_image_dataset("digits", image_size=16, val_size=100, limit=50)
    check_split(small.train, 50, channels=1, size=16), check_split(small.val, 50, channels=1, size=16)


def test_synthetic_is_deterministic_balanced_and_sized_by_options():
    data = load_image_dataset("synthetic")
    check_split(data.train, 5000), check_split(data.val, 1000), check_split(data.test, 2000)
    for split in data.splits().values():
        assert torch.equal(torch.bincount(split.labels), torch.full((10,), len(split) // 10))
    first = make_synthetic_images(train_size=100, val_size=20, test_size=20)
    assert torch.equal(make_synthetic_images(train_size=100, val_size=20, test_size=20).test.images, first.test.images)
    assert not torch.equal(make_synthetic_images(train_size=100, val_size=20, test_size=20, seed=1).test.images,
                           first.test.images)
    small = load_image_dataset("synthetic", val_size=40, image_size=16,
                               options={"num_classes": 4, "train_size": 80, "test_size": 40, "channels": 1})
    check_split(small.train, 80, channels=1, size=16), check_split(small.val, 40, channels=1, size=16)
    assert small.num_classes == 4 and len(small.class_names) == 4
    with pytest.raises(ValueError, match="synthetic has no option.*'classes'"):
        load_image_dataset("synthetic", options={"classes": 3})


def test_synthetic_class_is_in_the_spectrum_not_in_the_pixels():
    """Not trivial: a nearest class-mean classifier on raw pixels is near chance (random phases
    cancel the gratings). Learnable: the same classifier on the 2-D power spectrum is far above it."""
    data = make_synthetic_images(train_size=2000, val_size=0, test_size=1000)

    def nearest_mean(features_train, features_test):
        means = torch.stack([features_train[data.train.labels == c].mean(0) for c in range(10)])
        predictions = torch.cdist(features_test, means).argmin(1)
        return (predictions == data.test.labels).float().mean().item()

    pixels = lambda split: split.images.float().flatten(1) / 255                   # noqa: E731
    spectrum = lambda split: torch.fft.fft2(split.images.float().mean(1) / 255).abs().pow(2).flatten(1).log1p()  # noqa: E731
    assert nearest_mean(pixels(data.train), pixels(data.test)) < 0.3
    assert nearest_mean(spectrum(data.train), spectrum(data.test)) > 0.5


def test_mnist_refuses_labels_that_do_not_match_naming_the_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    for prefix, count in (("train", 4), ("t10k", 2)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", np.zeros((count, 28, 28)), compress=False)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count if prefix == "t10k" else count - 1), compress=False)
    with pytest.raises(ValueError, match=r"mnist: cannot read .*train-labels-idx1-ubyte .*3 train labels for 4 images"):
        load_image_dataset("mnist", tmp_path, val_size=1)


def test_glyph_classes_split_64_16_20_with_every_part_kept():
    from nslviz.datasets.glyphs import glyph_class_split
    assert glyph_class_split(100) == (64, 16, 20)                       # Mini-ImageNet's split
    assert glyph_class_split(3) == (1, 1, 1) and glyph_class_split(4) == (2, 1, 1)
    for classes in range(3, 40):
        split = glyph_class_split(classes)
        assert sum(split) == classes and min(split) >= 1, (classes, split)
