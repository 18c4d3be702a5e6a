"""ImageNet-2012 read from its JPEG folders batch by batch: the loader (both on-disk layouts), the
central patches, the crops on the device, the stream's determinism, and training and resuming on it."""
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from nslviz.datasets.augment import window_crop
from nslviz.datasets.images import load_image_dataset
from nslviz.__main__ import main
from nslviz.datasets.images.streamed import FileSplit, ImageFileError, patch_size, read_patch, unreadable_files
from nslviz.training.config import TrainConfig
from nslviz.training.data import BatchStream, FileBatchStream, batch_stream
from nslviz.analysis.finetuning import finetuning_effect
from nslviz.analysis.neighbors import extract_features
from nslviz.experiments.compare import compare_runs
from nslviz.training.rundir import RunDirectoryError, load_run
from nslviz.training.trainer import train
from runs import interrupt_at, stable

WNIDS = ("n02", "n01", "n03")                 # sorted: n01 -> 0, n02 -> 1, n03 -> 2
SHAPES = ((48, 36), (30, 44), (40, 40))       # (width, height): wide, tall and square files


def red_of(label: int) -> int:
    return 30 + 60 * label


def picture(label: int, width: int, height: int) -> Image.Image:
    """The label in the red channel of the central square; the margins outside it blue; the
    central square's top half green 200 and bottom half green 0 (to catch a flipped or transposed read)."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 2] = 255                                              # margins: blue
    side = min(width, height)
    top, left = (height - side) // 2, (width - side) // 2
    centre = pixels[top:top + side, left:left + side]
    centre[..., 0], centre[..., 2] = red_of(label), 0
    centre[: side // 2, :, 1] = 200
    return Image.fromarray(pixels)


SYNSETS = (("n01", "tench, Tinca tinca"), ("n02", "goldfish"), ("n03", "shark, great white"))
LAYOUTS = ("folders", "csv", "devkit", "kaggle", "kaggle_in_imagenet")


def write_imagenet(root, per_class=6, val_per_class=2, layout="folders"):
    """A tiny ImageNet-2012 in one of its real layouts: "folders" (train/<wnid>/, val/<wnid>/); "csv"
    (val/ flat, imagenet/LOC_val_solution.csv); "devkit" (val/ flat, the devkit's meta.mat and
    ILSVRC2012_validation_ground_truth.txt); "kaggle" (ILSVRC/Data/CLS-LOC/ with val/ flat,
    LOC_val_solution.csv and LOC_synset_mapping.txt beside ILSVRC/, in the data root);
    "kaggle_in_imagenet" (the same unzipped into root/imagenet/). Returns the folder holding train/."""
    kaggle = Path("ILSVRC") / "Data" / "CLS-LOC"
    base = root / "imagenet" if layout != "kaggle" else root             # where the label files go
    folder = base / kaggle if layout.startswith("kaggle") else base
    label = {w: i for i, w in enumerate(sorted(WNIDS))}
    for wnid in WNIDS:
        for i in range(per_class):
            path = folder / "train" / wnid / f"{wnid}_{i}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            picture(label[wnid], *SHAPES[i % 3]).save(path, format="JPEG", quality=95)
    solution, truth = ["ImageId,PredictionString"], []
    for i in range(val_per_class * len(WNIDS)):
        wnid = WNIDS[i % len(WNIDS)]
        name = f"ILSVRC2012_val_{i + 1:08d}"
        path = folder / "val" / (wnid if layout == "folders" else "") / f"{name}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        image = picture(label[wnid], *SHAPES[i % 3])
        (image.convert("L").convert("RGB") if i == 0 else image).save(path, format="JPEG", quality=95)
        solution.append(f"{name},{wnid} 1 2 30 30 {wnid} 3 4 20 20")
        truth.append(str(label[wnid] + 1))                              # ILSVRC2012_IDs 1..3 = n01..n03
    if layout in ("csv", "kaggle", "kaggle_in_imagenet"):
        (base / "LOC_val_solution.csv").write_text("\n".join(solution) + "\n")
    if layout.startswith("kaggle"):
        (base / "LOC_synset_mapping.txt").write_text("".join(f"{w} {words}\n" for w, words in SYNSETS))
    if layout == "devkit":
        devkit = base / "ILSVRC2012_devkit_t12" / "data"
        devkit.mkdir(parents=True)
        (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(truth) + "\n")
        rows = [(i + 1, w, words, 0) for i, (w, words) in enumerate(SYNSETS)] + [(4, "n99", "fish", 3)]   # n99: no leaf
        fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
        synsets = np.array([(np.array(i), w, words, np.array(c)) for i, w, words, c in rows], dtype=fields)
        savemat(devkit / "meta.mat", {"synsets": synsets.reshape(-1, 1)})
    return folder


def labels_read(images: torch.Tensor) -> torch.Tensor:
    """The label each uint8 crop (B, 3, H, W) carries in its red channel."""
    return torch.round((images[:, 0].float().mean(dim=(1, 2)) - 30) / 60).long()



@pytest.mark.parametrize("layout", ["kaggle", "csv"])
def test_missing_validation_labels_are_expected_where_the_layout_keeps_them(tmp_path, layout):
    from nslviz.datasets.images import load_image_dataset
    write_imagenet(tmp_path, per_class=1, val_per_class=1, layout=layout)
    solution = next(tmp_path.rglob("LOC_val_solution.csv"))
    solution.unlink()
    with pytest.raises(FileNotFoundError) as error:
        load_image_dataset("imagenet", tmp_path)
    message = str(error.value)
    expected = message.split("Expected:")[1].split("Also searched")[0].split()
    assert str(solution) in expected and message.count(str(solution)) == 1
    searched = message.split("Also searched: ")[1].split("\n")[0].split(", ")
    assert len(searched) == len(set(searched))

@pytest.fixture
def imagenet(tmp_path):
    write_imagenet(tmp_path)
    return tmp_path


def test_the_class_folder_layout_gives_a_held_out_val_and_the_official_validation_as_test(imagenet):
    data = load_image_dataset("imagenet", imagenet, val_size=3, image_size=16)
    assert (len(data.train), len(data.val), len(data.test)) == (15, 3, 6)
    assert (data.num_classes, data.channels, data.image_size, data.paper_augment) == (3, 3, 16, "flip")
    assert data.class_names == ["n01", "n02", "n03"]                 # no synset mapping: the wnids
    assert torch.equal(torch.bincount(data.val.labels), torch.ones(3, dtype=torch.int64))   # stratified
    assert torch.equal(torch.bincount(data.test.labels[:3]), torch.ones(3, dtype=torch.int64))  # interleaved
    for split in data.splits().values():
        assert isinstance(split, FileSplit) and (split.size, split.resize) == (16, patch_size(16)) == (16, 18)
        assert torch.equal(labels_read(split.read(torch.arange(len(split)))), split.labels)
    assert {len(s) for s in load_image_dataset("imagenet", imagenet, val_size=3, limit=2).splits().values()} == {2}
    assert load_image_dataset("imagenet", imagenet, val_size=3).image_size == 224   # NSL Table 5's size
    other = load_image_dataset("imagenet", imagenet, val_size=3, image_size=16, seed=1)
    assert other.val.files.tolist() != data.val.files.tolist()
    assert data.val.path(0).endswith(".JPEG") and data.val.subset(torch.tensor([2, 0])).path(1) == data.val.path(0)
    with pytest.raises(TypeError, match=r"read from files batch by batch .*head\(n\).in_memory\(\)"):
        data.train.images
    few = data.test.head(4).in_memory()                               # what notebook 07 shows: central crops
    assert few.images.shape == (4, 3, 16, 16) and torch.equal(labels_read(few.images), data.test.labels[:4])
    assert torch.equal(few.images, data.test.read(torch.arange(4))[:, :, 1:17, 1:17])
    digits = load_image_dataset("digits", "data").test
    assert digits.in_memory() is digits


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_gives_the_same_labelled_validation_images(tmp_path, layout):
    write_imagenet(tmp_path, layout=layout)
    data = load_image_dataset("imagenet", tmp_path, val_size=3, image_size=16)
    assert (len(data.train), len(data.val), len(data.test)) == (15, 3, 6)
    assert torch.equal(labels_read(data.test.read(torch.arange(6))), data.test.labels)
    named = layout.startswith("kaggle") or layout == "devkit"           # a synset mapping or meta.mat
    assert data.class_names == (["tench", "goldfish", "shark"] if named else ["n01", "n02", "n03"])


def damage(tmp_path, layout, change):
    """write_imagenet, then change(folder, base) the files; returns the loader's error."""
    folder = write_imagenet(tmp_path, layout=layout)
    change(folder, tmp_path / "imagenet")
    return lambda: load_image_dataset("imagenet", tmp_path, val_size=3)


def rewrite(path, old, new):
    path.write_text(path.read_text().replace(old, new))


@pytest.mark.parametrize("layout, change, error, message", [
    ("folders", lambda f, b: [p.unlink() for p in (f / "val").rglob("*.JPEG")], FileNotFoundError,
     r"imagenet: the validation images of class n01 not found"),
    ("folders", lambda f, b: [p.unlink() for p in (f / "val" / "n02").iterdir()], FileNotFoundError,
     "the validation images of class n02 not found"),
    ("folders", lambda f, b: __import__("shutil").rmtree(f / "val" / "n03"), ValueError,
     r"class folders of .*val differ from those of train/: \['n03'\] missing from val/"),
    ("folders", lambda f, b: (f / "val" / "n09").mkdir(), ValueError, r"\['n09'\] only in val/"),
    ("folders", lambda f, b: picture(0, 20, 20).save(f / "val" / "stray.JPEG"), ValueError,
     "holds both class folders and 1 images outside them"),
    ("csv", lambda f, b: rewrite(b / "LOC_val_solution.csv", "ILSVRC2012_val_00000002,n01", "x,n01"), ValueError,
     "1 images in .*val have no label in .*LOC_val_solution.csv .*ILSVRC2012_val_00000002"),
    ("csv", lambda f, b: (f / "val" / "ILSVRC2012_val_00000004.JPEG").unlink(), FileNotFoundError,
     "1 validation images that LOC_val_solution.csv labels"),
    ("csv", lambda f, b: rewrite(b / "LOC_val_solution.csv", "String\n", "String\nILSVRC2012_val_00000003,n02 1\n"),
     ValueError, r"line \d+ lists 'ILSVRC2012_val_00000003' a second time"),
    ("csv", lambda f, b: rewrite(b / "LOC_val_solution.csv", ",n02 1 2", ",n77 1 2"), ValueError,
     r"wnids \['n77'\] that train/ has no folder for"),
    ("csv", lambda f, b: rewrite(b / "LOC_val_solution.csv", "ImageId,PredictionString", "id;labels"), ValueError,
     "first line is 'id;labels'"),
    ("csv", lambda f, b: (b / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n"), ValueError,
     "labels no image"),
    ("csv", lambda f, b: (b / "LOC_val_solution.csv").unlink(), FileNotFoundError,
     "the labels of the 6 validation images .*the devkit's, or Kaggle's LOC_val_solution.csv"),
    ("devkit", lambda f, b: rewrite(b / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt",
                                    "\n2\n", "\n4\n"), ValueError, r"line \d is '4'; expected an ILSVRC2012_ID"),
    ("devkit", lambda f, b: (b / "ILSVRC2012_devkit_t12" / "data" / "meta.mat").write_bytes(b"not a mat file"),
     ValueError, r"imagenet: cannot read .*meta.mat"),
    ("kaggle", lambda f, b: [p.unlink() for p in (f / "val").iterdir()], FileNotFoundError,
     "the validation images not found"),
    # a folder in train/ that is not a wnid would be a class and shift the labels after it
    ("folders", lambda f, b: __import__("shutil").copytree(f / "train" / "n01", f / "train" / "extracted"), ValueError,
     r"train holds folders that are not WordNet IDs \(n and digits, such as n01440764\): \['extracted'\]"),
    ("csv", lambda f, b: (f / "train" / "__MACOSX" / "n01").mkdir(parents=True), ValueError,
     r"not WordNet IDs .*\['__MACOSX'\].*__MACOSX is left by unzipping on macOS"),
    # the same validation image twice, under two extensions, would be tested twice
    ("csv", lambda f, b: __import__("shutil").copy(f / "val" / "ILSVRC2012_val_00000001.JPEG",
                                                   f / "val" / "ILSVRC2012_val_00000001.jpg"), ValueError,
     r"val holds 1 validation images in two files each \(e.g. ILSVRC2012_val_00000001 with two extensions\)"),
    ("folders", lambda f, b: __import__("shutil").copy(f / "val" / "n02" / "ILSVRC2012_val_00000001.JPEG",
                                                       f / "val" / "n02" / "ILSVRC2012_val_00000001.png"), ValueError,
     "1 validation images in two files each"),
])
def test_incomplete_or_inconsistent_validation_labels_are_refused_by_name(tmp_path, layout, change, error, message):
    load = damage(tmp_path, layout, change)
    with pytest.raises(error, match=f"(?s){message}"):
        load()


def test_missing_folders_are_named_with_how_to_get_them_and_hidden_folders_are_not_classes(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"(?s)imagenet: the ImageNet-2012 folder not found.*imagenet/train"
                                                r".*How to get it: register at https://image-net.org"):
        load_image_dataset("imagenet", tmp_path)
    folder = write_imagenet(tmp_path)
    (folder / "train" / ".ipynb_checkpoints").mkdir()
    (folder / "train" / "n01" / "._n01_0.JPEG").write_bytes(b"macOS metadata")          # hidden: not an image
    data = load_image_dataset("imagenet", tmp_path, val_size=3)
    assert data.num_classes == 3 and len(data.train) + len(data.val) == 18
    assert len(load_image_dataset("imagenet", folder, val_size=3).train) == 15          # --data-root at the set
    with pytest.raises(ValueError, match="val_size 18 leaves no training images"):
        load_image_dataset("imagenet", tmp_path, val_size=18)
    monkeypatch.setattr("nslviz.datasets.images.imagenet2012.IMAGENET_CLASSES", 3)   # as if the real 1,000
    with pytest.warns(UserWarning) as caught:
        load_image_dataset("imagenet", tmp_path, val_size=3)
    assert [str(w.message).split(" under ")[0] for w in caught] == ["imagenet: 18 training images",
                                                                   "imagenet: 6 validation images"]
    assert "where ImageNet-2012 has 50,000" in str(caught[1].message)
    monkeypatch.setattr("nslviz.datasets.images.imagenet2012.IMAGENET_TRAINING", 18)
    monkeypatch.setattr("nslviz.datasets.images.imagenet2012.IMAGENET_VALIDATION", 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image_dataset("imagenet", tmp_path, val_size=3)


def test_a_patch_is_the_central_square_upright_and_a_damaged_file_is_named(tmp_path):
    for width, height in SHAPES:
        path = tmp_path / f"{width}x{height}.JPEG"
        picture(2, width, height).save(path, format="JPEG", quality=95)
        patch = read_patch(path, 20)                                   # (20, 20, 3) uint8
        assert patch.shape == (20, 20, 3) and patch.dtype == np.uint8
        assert abs(patch[..., 0].astype(float).mean() - red_of(2)) < 8   # no blue margin came in
        assert patch[1:-1, 1:-1, 2].max() < 40           # (the edge pixels may blend in the margin: JPEG, filter)
        assert patch[:8, :, 1].mean() > 180 and patch[12:, :, 1].mean() < 20   # green on top: upright
    broken = tmp_path / "broken.JPEG"
    broken.write_bytes(b"<html>error page</html>")
    with pytest.raises(ImageFileError, match=r"broken.JPEG is not a readable image .*continue the run \(train --resume"):
        read_patch(broken, 20)
    with pytest.raises(ImageFileError, match="gone.JPEG: the image file is gone .*put it back"):
        read_patch(tmp_path / "gone.JPEG", 20)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_file_damaged_after_loading_stops_the_stream_with_its_name_alone(imagenet, workers):
    """Found only when its batch is read: the error names the file, without a worker's traceback."""
    split = load_image_dataset("imagenet", imagenet, val_size=3, image_size=16).test
    Path(split.path(4)).write_bytes(b"truncated")
    stream = batch_stream(split, 2, shuffle=False, workers=workers)
    with pytest.raises(ImageFileError) as caught:
        list(stream.epoch(0))
    message = str(caught.value)
    assert message.startswith(split.path(4)) and "not a readable image" in message
    assert "Traceback" not in message and "worker" not in message
    assert caught.value.path == split.path(4) and "cannot identify" in caught.value.reason


def test_window_crop_takes_the_centre_or_a_seeded_random_window_of_each_image():
    images = torch.arange(4 * 3 * 9 * 7, dtype=torch.int64).view(4, 3, 9, 7).to(torch.uint8)
    centre = window_crop(images, 5)
    assert torch.equal(centre, images[:, :, 2:7, 1:6])
    first = window_crop(images, 5, torch.Generator().manual_seed(3))
    assert torch.equal(first, window_crop(images, 5, torch.Generator().manual_seed(3)))
    for image, crop in zip(images, first):                            # each crop is some 5x5 window
        assert any(torch.equal(crop, image[:, top:top + 5, left:left + 5]) for top in range(5) for left in range(3))
    places = {tuple(window_crop(images, 5, torch.Generator().manual_seed(s))[:, 0, 0, 0].tolist()) for s in range(20)}
    assert len(places) > 10
    with pytest.raises(ValueError, match="window size must be an integer in 1..7 .*got 8"):
        window_crop(images, 8)


def test_the_file_stream_gives_the_same_batches_with_any_number_of_workers_and_resumes_mid_epoch(imagenet):
    split = load_image_dataset("imagenet", imagenet, val_size=3, image_size=16).train
    stream = batch_stream(split, 4, shuffle=True, augment="flip", seed=5, workers=0)
    assert isinstance(stream, FileBatchStream) and len(stream) == 3
    batches = list(stream.epoch(1))
    for images, labels in batches:
        assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
        assert torch.equal(labels_read((images * 255).round().to(torch.uint8)), labels)
    with_workers = list(batch_stream(split, 4, shuffle=True, augment="flip", seed=5, workers=2).epoch(1))
    for (a, la), (b, lb) in zip(batches, with_workers, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    for (a, _), (b, _) in zip(batches[1:], stream.epoch(1, start_batch=1), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(batches[0][0], next(stream.epoch(2))[0])    # another epoch, other batches
    evaluation = batch_stream(split, 4, shuffle=False, workers=0)
    images, labels = next(evaluation.epoch(0))
    patches = split.read(torch.arange(4))                             # (4, 3, 18, 18): the centre is 1:17
    assert torch.equal(images, patches[:, :, 1:17, 1:17].float() / 255)
    assert isinstance(batch_stream(load_image_dataset("digits", "data").test, 8, shuffle=False), BatchStream)


def test_the_decoding_workers_start_once_and_serve_every_epoch_even_after_an_abandoned_pass(imagenet):
    """Each pass used to start its workers (and send them the split) again: on ImageNet-2012, a few
    seconds per epoch for training and for validation."""
    split = load_image_dataset("imagenet", imagenet, val_size=3, image_size=16).train
    expected = {epoch: list(batch_stream(split, 4, shuffle=True, seed=5, workers=0).epoch(epoch)) for epoch in (0, 1)}
    stream = batch_stream(split, 4, shuffle=True, seed=5, workers=2)
    next(stream.epoch(0))                                             # a pass left after one batch
    pids = [worker.pid for worker in stream._loader._iterator._workers]
    for epoch in (0, 1, 0):
        for (a, la), (b, lb) in zip(expected[epoch], stream.epoch(epoch), strict=True):
            assert torch.equal(a, b) and torch.equal(la, lb)
        assert [worker.pid for worker in stream._loader._iterator._workers] == pids


IMAGENET_RUN = dict(dataset="imagenet", backbone="convnet4", image_size=16, val_size=3, epochs=2, batch_size=4,
                    checkpoint_every=2, device="cpu", workers=0, entries=6)


def test_training_on_files_resumes_to_the_same_numbers_and_workers_change_nothing(imagenet, tmp_path):
    config = TrainConfig(**IMAGENET_RUN, data_root=str(imagenet), method="mn", dictionary_init="data")
    whole = train(config, tmp_path / "whole", progress=False)
    assert (whole["iterations"], whole["test_count"], whole["val_count"]) == (6, 6, 3)
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["augment"] == "flip"
    interrupt_at(config, tmp_path / "cut", 3)                          # checkpoint at 2; step 3 is lost
    removed = imagenet / "imagenet" / "train" / "n02" / "n02_5.JPEG"
    kept = removed.read_bytes()
    removed.unlink()                                                   # the held-out val would shift
    with pytest.raises(RunDirectoryError, match="cannot resume: the dataset's splits differ .*restore them"):
        train(config, tmp_path / "cut", resume=True, progress=False)
    removed.write_bytes(kept)
    resumed = train(TrainConfig(**{**IMAGENET_RUN, "workers": 2}, data_root=str(imagenet), method="mn",
                                dictionary_init="data"), tmp_path / "cut", resume=True, progress=False)
    assert stable(resumed) == stable(whole)
    model, _, data = load_run(tmp_path / "whole")                     # the analyses read files too
    features = extract_features(model, data.test, batch_size=4)
    assert features.features.shape[0] == 6 and features.attention.shape == (6, 6)
    assert finetuning_effect(model, data.test, batch_size=4).before.shape == (6,)


def test_the_nsl_preset_on_imagenet_keeps_the_crops_of_the_reader_and_the_papers_schedule():
    config = TrainConfig.from_preset("nsl", dataset="imagenet", backbone="cnn10")
    assert (config.iterations, config.augment) == (600_000, None)                # None: the set's own, flip
    assert config.milestones == pytest.approx((200 / 600, 375 / 600, 550 / 600))
    assert TrainConfig.from_preset("nsl", dataset="imagenet", augment="nsl").augment == "nsl"
    assert TrainConfig.from_preset("nsl", dataset="imagenet64").augment == "nsl"


def test_check_data_lists_every_unreadable_file_before_a_run(imagenet, capsys):
    """Truncated, foreign and vanished files are all found (with 0 or 2 processes); the command says
    which and exits 1, and 0 once they are mended."""
    folder = imagenet / "imagenet"
    good = (folder / "train" / "n01" / "n01_0.JPEG").read_bytes()
    truncated, foreign = folder / "train" / "n02" / "n02_1.JPEG", folder / "val" / "n03" / "ILSVRC2012_val_00000003.JPEG"
    truncated.write_bytes(truncated.read_bytes()[:300])
    foreign.write_bytes(b"<html>error page</html>")
    split = load_image_dataset("imagenet", imagenet, val_size=0).train
    gone = Path(split.path(7))
    gone.unlink()
    for workers in (0, 2):
        failures = dict(unreadable_files(split, workers, progress=False))
        assert set(failures) == {str(truncated), str(gone)}
        assert "truncated" in failures[str(truncated)].lower() and failures[str(gone)] == "gone"
    gone.write_bytes(good)
    assert main(["check-data", "--data-root", str(imagenet), "--workers", "0", "--no-progress", "--json"]) == 1
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert [entry["path"] for entry in report["unreadable"]] == [str(truncated), str(foreign)]
    assert report["splits"] == {"train": {"images": 18, "read_from_files": True, "unreadable": 1},
                                "test": {"images": 6, "read_from_files": True, "unreadable": 1}}
    assert "2 files cannot be read" in out
    truncated.write_bytes(good), foreign.write_bytes(good)
    assert main(["check-data", "--data-root", str(imagenet), "--workers", "0", "--no-progress"]) == 0
    assert main(["check-data", "--dataset", "digits", "--no-progress"]) == 0
    assert "decoded when the set loaded" in capsys.readouterr().out


def test_check_data_says_what_loading_warns_about(imagenet, capsys, monkeypatch):
    monkeypatch.setattr("nslviz.datasets.images.imagenet2012.IMAGENET_CLASSES", 3)   # as if the real 1,000
    monkeypatch.setattr("nslviz.datasets.images.imagenet2012.IMAGENET_TRAINING", 18)
    assert main(["check-data", "--data-root", str(imagenet), "--workers", "0", "--no-progress", "--json"]) == 0
    out = capsys.readouterr().out
    assert "check-data: warning: imagenet: 6 validation images under" in out
    report = json.loads(out.strip().splitlines()[-1])
    assert len(report["warnings"]) == 1 and "where ImageNet-2012 has 50,000" in report["warnings"][0]


def test_a_split_fingerprint_hashes_its_labels_and_each_file_name_as_bytes():
    """FileSplit.fingerprint against a loop over the files: the labels, then the bytes after each
    path's last "/" (paths of any depth, a bare name, UTF-8 and non-UTF-8 names, an empty split)."""
    import hashlib

    def reference(files, labels):
        digest = hashlib.sha1(f"{len(files)} files\n".encode())
        digest.update(labels.numpy().tobytes())
        digest.update(b"\n".join(path.rsplit(b"/", 1)[-1] for path in files))
        return digest.hexdigest()

    files = [b"/data/imagenet/train/n01/n01_1.JPEG", b"relative/n02/x.jpeg", b"bare.JPEG",
             "/data/caf\u00e9/\u00e9t\u00e9.JPEG".encode(), b"/data/n03/latin1-\xe9.JPEG"]
    labels = torch.tensor([0, 1, 1, 2, 2])
    split = FileSplit([os.fsdecode(path) for path in files], labels, 16, 18)   # as a loader gives them
    assert split.fingerprint() == reference(files, labels)
    assert split.subset(slice(0, 0)).fingerprint() == reference([], labels[:0])


def test_the_splits_do_not_depend_on_the_layout_or_on_where_the_folder_is(tmp_path):
    """The same images in class folders or flat with the devkit's labels give one test split, in one
    order, with the devkit's class names either way; a copy under a longer path, or the folder named
    by a relative path, keeps the fingerprint that a resumed run checks."""
    folders, devkit = tmp_path / "a", tmp_path / "b"
    write_imagenet(folders, layout="folders")
    write_imagenet(devkit, layout="devkit")
    shutil.copytree(devkit / "imagenet" / "ILSVRC2012_devkit_t12", folders / "imagenet" / "ILSVRC2012_devkit_t12")
    one, two = (load_image_dataset("imagenet", root, val_size=3, image_size=16) for root in (folders, devkit))
    assert [Path(one.test.path(i)).name for i in range(6)] == [Path(two.test.path(i)).name for i in range(6)]
    assert torch.equal(one.test.labels, two.test.labels) and one.fingerprint() == two.fingerprint()
    assert one.class_names == two.class_names == ["tench", "goldfish", "shark"]       # meta.mat in both
    moved = tmp_path / "a much longer folder name for the same data"
    shutil.copytree(folders, moved)
    assert load_image_dataset("imagenet", moved, val_size=3, image_size=16).fingerprint() == one.fingerprint()
    relative = Path(os.path.relpath(folders, Path.cwd()))
    assert load_image_dataset("imagenet", relative, val_size=3, image_size=16).fingerprint() == one.fingerprint()
    (folders / "imagenet" / "ILSVRC2012_devkit_t12" / "data" / "meta.mat").unlink()
    (devkit / "imagenet" / "ILSVRC2012_devkit_t12" / "data" / "meta.mat").unlink()
    assert load_image_dataset("imagenet", folders, val_size=3).class_names == ["n01", "n02", "n03"]
    with pytest.raises(FileNotFoundError, match="imagenet: the devkit's meta.mat .* not found"):
        load_image_dataset("imagenet", devkit, val_size=3)


def test_the_command_line_names_damaged_data_without_its_usage(tmp_path, capsys):
    folder = write_imagenet(tmp_path)
    picture(0, 20, 20).save(folder / "val" / "stray.JPEG")
    with pytest.raises(SystemExit) as stopped:
        main(["check-data", "--data-root", str(tmp_path), "--no-progress"])
    error = capsys.readouterr().err
    assert stopped.value.code == 2
    assert "holds both class folders and 1 images outside them" in error and "usage:" not in error


def test_compare_starts_a_run_cut_on_changed_splits_again_only_when_asked(imagenet, tmp_path):
    """A file goes bad in the middle of a compare run; removed instead of mended, the splits change:
    running compare again says so, and with overwrite trains the run again from the start."""
    config = TrainConfig(**IMAGENET_RUN, data_root=str(imagenet), method="vanilla")
    group = tmp_path / "group"
    bad = imagenet / "imagenet" / "train" / "n03" / "n03_2.JPEG"
    kept = bad.read_bytes()
    bad.write_bytes(b"half a file")
    with pytest.raises(ImageFileError, match="n03_2.JPEG is not a readable image .*compare .* resume"):
        compare_runs({"vanilla": config}, group, progress=False)
    assert (group / "vanilla" / "checkpoint.pt").exists()                 # cut after its first checkpoint
    bad.unlink()
    with pytest.raises(RunDirectoryError, match="splits differ .*pass overwrite=True"):
        compare_runs({"vanilla": config}, group, progress=False)
    again = compare_runs({"vanilla": config}, group, progress=False, overwrite=True)["vanilla"]
    assert again["iterations"] == 6
    bad.write_bytes(kept)
