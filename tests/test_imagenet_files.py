"""ImageNet-2012 read from its JPEG folders batch by batch: the loader (both on-disk layouts), the
central patches, the crops on the device, the stream's determinism, and training and resuming on it."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from nslviz.datasets.augment import window_crop
from nslviz.datasets.images import load_image_dataset
from nslviz.datasets.images.streamed import FileSplit, patch_size, read_patch
from nslviz.training.config import TrainConfig
from nslviz.training.data import BatchStream, FileBatchStream, batch_stream
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


def write_imagenet(root, per_class=6, val_per_class=2, layout="folders"):
    """A tiny ImageNet-2012 in one of its real layouts: "folders" (train/<wnid>/, val/<wnid>/) or
    "kaggle" (ILSVRC/Data/CLS-LOC/ with a flat val/ and LOC_val_solution.csv beside ILSVRC/)."""
    folder = root / "imagenet" if layout == "folders" else root / "ILSVRC" / "Data" / "CLS-LOC"
    label = {w: i for i, w in enumerate(sorted(WNIDS))}
    for wnid in WNIDS:
        for i in range(per_class):
            path = folder / "train" / wnid / f"{wnid}_{i}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            picture(label[wnid], *SHAPES[i % 3]).save(path, format="JPEG", quality=95)
    solution = ["ImageId,PredictionString"]
    for i in range(val_per_class * len(WNIDS)):
        wnid = WNIDS[i % len(WNIDS)]
        name = f"ILSVRC2012_val_{i + 1:08d}"
        path = folder / "val" / (wnid if layout == "folders" else "") / f"{name}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        image = picture(label[wnid], *SHAPES[i % 3])
        (image.convert("L").convert("RGB") if i == 0 else image).save(path, format="JPEG", quality=95)
        solution.append(f"{name},{wnid} 1 2 30 30 {wnid} 3 4 20 20")
    if layout == "kaggle":
        (root / "LOC_val_solution.csv").write_text("\n".join(solution) + "\n")
        (root / "LOC_synset_mapping.txt").write_text("n01 tench, Tinca tinca\nn02 goldfish\nn03 shark, great white\n")
    return folder


def labels_read(images: torch.Tensor) -> torch.Tensor:
    """The label each uint8 crop (B, 3, H, W) carries in its red channel."""
    return torch.round((images[:, 0].float().mean(dim=(1, 2)) - 30) / 60).long()


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


def test_kaggles_layout_reads_the_flat_validation_folder_with_its_solution_file(tmp_path):
    write_imagenet(tmp_path, layout="kaggle")
    data = load_image_dataset("imagenet", tmp_path, val_size=3, image_size=16)
    assert data.class_names == ["tench", "goldfish", "shark"]
    assert len(data.test) == 6
    assert torch.equal(labels_read(data.test.read(torch.arange(6))), data.test.labels)
    solution = tmp_path / "LOC_val_solution.csv"
    good = solution.read_text()
    solution.write_text(good.replace(",n02 1 2", ",n77 1 2", 1))
    with pytest.raises(ValueError, match=r"imagenet: cannot read .*LOC_val_solution.csv.*line \d is .*n77"):
        load_image_dataset("imagenet", tmp_path, val_size=3)
    solution.write_text(good.replace("ImageId,PredictionString", "id;labels"))
    with pytest.raises(ValueError, match="first line is 'id;labels'"):
        load_image_dataset("imagenet", tmp_path, val_size=3)
    solution.unlink()
    with pytest.raises(FileNotFoundError, match="the labels of the validation images .*LOC_val_solution.csv"):
        load_image_dataset("imagenet", tmp_path, val_size=3)


def test_missing_or_mismatched_folders_are_named_with_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)imagenet: the ImageNet-2012 folder not found.*imagenet/train"
                                                r".*How to get it: register at https://image-net.org"):
        load_image_dataset("imagenet", tmp_path)
    folder = write_imagenet(tmp_path)
    (folder / "val" / "n09").mkdir()
    with pytest.raises(ValueError, match=r"class folders \['n09'\] that train/ does not have"):
        load_image_dataset("imagenet", tmp_path, val_size=3)
    (folder / "val" / "n09").rmdir()
    with pytest.raises(ValueError, match="val_size 18 leaves no training images"):
        load_image_dataset("imagenet", tmp_path, val_size=18)


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
    with pytest.raises(ValueError, match="broken.JPEG is not a readable image"):
        read_patch(broken, 20)


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


IMAGENET_RUN = dict(dataset="imagenet", backbone="convnet4", image_size=16, val_size=3, epochs=2, batch_size=4,
                    checkpoint_every=2, device="cpu", workers=0, entries=6)


def test_training_on_files_resumes_to_the_same_numbers_and_workers_change_nothing(imagenet, tmp_path):
    config = TrainConfig(**IMAGENET_RUN, data_root=str(imagenet), method="mn", dictionary_init="data")
    whole = train(config, tmp_path / "whole", progress=False)
    assert (whole["iterations"], whole["test_count"], whole["val_count"]) == (6, 6, 3)
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["augment"] == "flip"
    interrupt_at(config, tmp_path / "cut", 3)                          # checkpoint at 2; step 3 is lost
    resumed = train(TrainConfig(**{**IMAGENET_RUN, "workers": 2}, data_root=str(imagenet), method="mn",
                                dictionary_init="data"), tmp_path / "cut", resume=True, progress=False)
    assert stable(resumed) == stable(whole)


def test_the_nsl_preset_on_imagenet_keeps_the_crops_of_the_reader_and_the_papers_schedule():
    config = TrainConfig.from_preset("nsl", dataset="imagenet", backbone="cnn10")
    assert (config.iterations, config.augment) == (600_000, None)                # None: the set's own, flip
    assert config.milestones == pytest.approx((200 / 600, 375 / 600, 550 / 600))
    assert TrainConfig.from_preset("nsl", dataset="imagenet", augment="nsl").augment == "nsl"
    assert TrainConfig.from_preset("nsl", dataset="imagenet64").augment == "nsl"
