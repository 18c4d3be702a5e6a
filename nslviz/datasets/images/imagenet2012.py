"""ImageNet-2012 (ILSVRC2012 classification) at full size, read from its JPEG folders batch by batch
(NSL Table 5). The splits are `FileSplit`s of paths (streamed.py): 1.28M images do not fit in memory.

The training images are train/<wnid>/*.JPEG (one folder per class, as the training tar's class tars
unpack); any other folder there (__MACOSX, a folder of samples) is refused by name, since it would be
taken for a class and shift every label after it. The validation images come in one of three ways,
each with its labels, and each image in one file:

* val/<wnid>/*.JPEG, one folder per class;
* val/*.JPEG flat, with the devkit's labels: ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_
  ground_truth.txt (one ILSVRC2012_ID per image, in the order of the file names) and meta.mat (which
  wnid each ID is), as image-net.org distributes them;
* val/*.JPEG flat, with Kaggle's LOC_val_solution.csv (ImageId,PredictionString; the first word of
  PredictionString is the wnid), as in the ImageNet Object Localization Challenge download.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from .registry import ImageDataset, _register, _Request
from .streamed import FileSplit, patch_size
from .utils import (_check_held_out, _class_folders, _find_folder, _image_names, _labels, _missing, _reading,
                    _warn_partial, stratified_order)

IMAGENET_CLASSES, IMAGENET_TRAINING, IMAGENET_VALIDATION = 1000, 1281167, 50000   # the real set's (checks only)
DEVKIT = Path("ILSVRC2012_devkit_t12") / "data"
KAGGLE = Path("ILSVRC") / "Data" / "CLS-LOC"


WNID = re.compile(r"n\d+")       # a WordNet ID, the name of an ImageNet class folder


def _check_one_file_each(stems: list[str], where: Path) -> None:
    """The same image twice (ILSVRC2012_val_00000001.JPEG beside a .jpg of it) would be tested twice."""
    twice = sorted(stem for stem, count in Counter(stems).items() if count > 1)
    if twice:
        raise ValueError(f"imagenet: {where} holds {len(twice)} validation images in two files each (e.g. "
                         f"{twice[0]} with two extensions); expected one file per image")


def _images_in(folder: Path) -> list[str]:
    """The image files directly in `folder`, as strings, sorted by name."""
    return [os.path.join(folder, name) for name in _image_names(folder)]


@_register("imagenet", "flip",
           manual="register at https://image-net.org/download-images.php and download ILSVRC2012_img_train.tar, "
               "ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz; untar the training tar and each class's "
               "tar inside it into {root}/imagenet/train/<wnid>/, the validation tar into {root}/imagenet/val/ and "
               "the devkit into {root}/imagenet/ (giving {root}/imagenet/ILSVRC2012_devkit_t12/); or unzip "
               "Kaggle's ImageNet Object Localization Challenge download into {root}")
def _load_imagenet(request: _Request) -> ImageDataset:
    """ImageNet-2012 at full size (see the module docstring for the layouts). Labels: the wnids of
    train/ sorted (1,000 for the real set); class names from LOC_synset_mapping.txt or the devkit's
    meta.mat when present. test = the official validation set (50,000); val = a stratified, seeded
    10,000 (`val_size`) held out of the training images; every split in a seeded class-interleaved
    order. image_size (default 224, NSL Table 5) is the side of the crops, taken from the central
    patch_size(image_size) square (256 for 224), as AlexNet's preprocessing, which NSL follows."""
    root = request.root
    folder = _find_folder(request, [root / "imagenet", root / "ILSVRC2012", root / KAGGLE, root / "imagenet" / KAGGLE,
                                    root], ["train", "val"], "the ImageNet-2012 folder")   # root: --data-root is it
    bases = [folder, folder.parents[2] if folder.parts[-3:] == KAGGLE.parts else folder, root]   # Kaggle: beside ILSVRC/
    wnids = _class_folders(folder / "train")
    strays = [name for name in wnids if not WNID.fullmatch(name)]
    if strays:      # a stray folder taken as a class would shift every label after it without a word
        raise ValueError(f"imagenet: {folder / 'train'} holds folders that are not WordNet IDs (n and digits, such "
                         f"as n01440764): {strays[:5]}; expected only the class folders there (move the others "
                         f"out; __MACOSX is left by unzipping on macOS)")
    if not wnids:
        raise _missing(request, [folder / "train" / "n01440764"], "the class folders of the training images")
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    files, train_labels = [], []
    for wnid in wnids:
        found = _images_in(folder / "train" / wnid)
        if not found:
            raise _missing(request, [folder / "train" / wnid / f"{wnid}_1.JPEG"], f"the training images of class {wnid}")
        files += found
        train_labels += [label_of[wnid]] * len(found)
    test_files, test_labels = _validation(request, folder, bases, label_of)
    if len(wnids) == IMAGENET_CLASSES:      # the real set's classes: are all its images there?
        _warn_partial(request, "ImageNet-2012", folder, {"training": (len(files), IMAGENET_TRAINING),
                                                         "validation": (len(test_files), IMAGENET_VALIDATION)})
    names = dict.fromkeys(wnids)
    devkit = next((base / DEVKIT for base in bases if (base / DEVKIT / "meta.mat").exists()), None)
    if devkit is not None:
        names.update({wnid: name for wnid, name in _read_meta(request, devkit)[1].items() if wnid in names})
    mapping = next((base / "LOC_synset_mapping.txt" for base in bases if (base / "LOC_synset_mapping.txt").exists()), None)
    if mapping is not None:
        with _reading(request, mapping):
            for line in mapping.read_text().splitlines():
                wnid, _, text = line.partition(" ")
                if wnid in names:
                    names[wnid] = text.split(",")[0].strip()
    size = request.size(224)
    training = FileSplit(files, _labels(train_labels), size, patch_size(size))
    validation = FileSplit(test_files, _labels(test_labels), size, patch_size(size))
    order = stratified_order(training.labels, request.seed)
    held_out = 10000 if request.val_size is None else request.val_size
    _check_held_out(request, held_out, len(order))
    built = {"train": training.subset(order[held_out:]), "val": training.subset(order[:held_out]),
             "test": validation.subset(stratified_order(validation.labels, request.seed))}
    built = {name: split.head(request.limit) if request.limit else split for name, split in built.items()}
    return ImageDataset(request.name, built["train"], built["val"], built["test"], num_classes=len(wnids),
                        class_names=[names[w] or w for w in wnids], channels=3, image_size=size,
                        paper_augment="flip",
                        split_notes=f"train = the training images but a stratified {held_out:,} held out as val "
                                    "(seeded), test = the official validation images; read from the JPEG files "
                                    "batch by batch")


def _validation(request: _Request, folder: Path, bases: list[Path], label_of: dict[str, int]) -> tuple[list[str], list[int]]:
    """The official validation images and their labels, sorted by file name (so that every layout
    gives the same split). Every image in val/ must have a label and every label an image."""
    val = folder / "val"
    classes, flat = _class_folders(val), _images_in(val)
    if classes:
        if flat:
            raise ValueError(f"imagenet: {val} holds both class folders and {len(flat)} images outside them "
                             f"(e.g. {Path(flat[0]).name}); expected one or the other")
        unknown, absent = sorted(set(classes) - set(label_of)), sorted(set(label_of) - set(classes))
        if unknown or absent:
            raise ValueError(f"imagenet: the class folders of {val} differ from those of train/: "
                             + "; ".join(part for part in (f"{unknown[:5]} only in val/" if unknown else "",
                                                           f"{absent[:5]} missing from val/" if absent else "") if part)
                             + "; expected the same wnids in both (an unpacking that stopped halfway?)")
        labelled = []
        for wnid in classes:
            found = _images_in(val / wnid)
            if not found:
                raise _missing(request, [val / wnid / "ILSVRC2012_val_00000001.JPEG"], f"the validation images of class {wnid}")
            labelled += [(os.path.basename(path), path, label_of[wnid]) for path in found]
        labelled.sort()
        _check_one_file_each([Path(name).stem for name, _, _ in labelled], val)
        return [path for _, path, _ in labelled], [label for _, _, label in labelled]
    if not flat:
        raise _missing(request, [val / "ILSVRC2012_val_00000001.JPEG", val / "n01440764"], "the validation images")
    solution = next((base / "LOC_val_solution.csv" for base in bases if (base / "LOC_val_solution.csv").exists()), None)
    devkit = next((base / DEVKIT for base in bases if (base / DEVKIT / "ILSVRC2012_validation_ground_truth.txt").exists()),
                  None)
    if solution is not None:
        wnid_of, source = _read_solution(request, solution), solution
    elif devkit is not None:
        wnid_of, source = _read_devkit(request, devkit), devkit / "ILSVRC2012_validation_ground_truth.txt"
    else:
        places = list(dict.fromkeys(bases))                    # each folder once (Kaggle's is beside ILSVRC/)
        kaggle = folder.parts[-3:] == KAGGLE.parts and len(places) > 1
        expected = [places[0] / DEVKIT / "ILSVRC2012_validation_ground_truth.txt",
                    places[1 if kaggle else 0] / "LOC_val_solution.csv"]
        searched = [path for base in places for path in (base / DEVKIT / "ILSVRC2012_validation_ground_truth.txt",
                                                         base / "LOC_val_solution.csv") if path not in expected]
        raise _missing(request, expected,
                       f"the labels of the {len(flat):,} validation images in {val} (the devkit's, or Kaggle's "
                       "LOC_val_solution.csv; or put the images in one folder per class)", searched=searched)
    stems = [Path(path).stem for path in flat]
    _check_one_file_each(stems, val)
    unlabelled = [stem for stem in stems if stem not in wnid_of]
    if unlabelled:
        raise ValueError(f"imagenet: {len(unlabelled)} images in {val} have no label in {source} (e.g. "
                         f"{unlabelled[0]}); expected a label for every validation image")
    missing = sorted(set(wnid_of) - set(stems))
    if missing:
        raise _missing(request, [val / f"{stem}.JPEG" for stem in missing[:5]],
                       f"{len(missing)} validation images that {source.name} labels")
    unknown = sorted({wnid_of[stem] for stem in stems} - set(label_of))
    if unknown:
        raise ValueError(f"imagenet: {source} labels validation images with wnids {unknown[:5]} that train/ has no "
                         "folder for; expected the wnids of train/")
    return flat, [label_of[wnid_of[stem]] for stem in stems]


def _read_solution(request: _Request, path: Path) -> dict[str, str]:
    """{image stem: wnid} from Kaggle's LOC_val_solution.csv."""
    wnid_of = {}
    with _reading(request, path):
        lines = path.read_text().splitlines()
        if not lines or not lines[0].startswith("ImageId,"):
            raise ValueError(f"its first line is {lines[0] if lines else ''!r}; expected 'ImageId,PredictionString'")
        for number, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            image, _, prediction = line.partition(",")
            words = prediction.split()
            if not image or not words or not words[0].startswith("n"):
                raise ValueError(f"line {number} is {line[:60]!r}; expected 'ImageId,<wnid> <box> ...'")
            if image in wnid_of:
                raise ValueError(f"line {number} lists {image!r} a second time")
            wnid_of[image] = words[0]
    if not wnid_of:
        raise ValueError(f"imagenet: {path} labels no image; expected a line per validation image")
    return wnid_of


def _read_meta(request: _Request, devkit: Path) -> tuple[dict[int, str], dict[str, str]]:
    """({ILSVRC2012_ID: wnid}, {wnid: class name}) of the 1,000 leaf synsets of the devkit's meta.mat."""
    from scipy.io import loadmat
    meta = devkit / "meta.mat"
    if not meta.exists():
        raise _missing(request, [meta], "the devkit's meta.mat (which wnid each ILSVRC2012_ID is)")
    with _reading(request, meta):
        leaves = [s for s in loadmat(str(meta), squeeze_me=True)["synsets"] if int(s["num_children"]) == 0]
        return ({int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in leaves},
                {str(s["WNID"]): str(s["words"]).split(",")[0].strip() for s in leaves})


def _read_devkit(request: _Request, devkit: Path) -> dict[str, str]:
    """{image stem: wnid} from the devkit: meta.mat gives each ILSVRC2012_ID (1..1000) its wnid;
    ILSVRC2012_validation_ground_truth.txt gives the ID of each validation image, in the order of
    the image numbers (ILSVRC2012_val_00000001 first)."""
    wnid_by_id, _ = _read_meta(request, devkit)
    truth = devkit / "ILSVRC2012_validation_ground_truth.txt"
    with _reading(request, truth):
        ids = [line.strip() for line in truth.read_text().splitlines() if line.strip()]
        bad = next(((number, value) for number, value in enumerate(ids, 1)
                    if not value.isdigit() or int(value) not in wnid_by_id), None)
        if bad is not None:
            raise ValueError(f"line {bad[0]} is {bad[1]!r}; expected an ILSVRC2012_ID of meta.mat "
                             f"(1..{len(wnid_by_id)})")
    return {f"ILSVRC2012_val_{number:08d}": wnid_by_id[int(value)] for number, value in enumerate(ids, 1)}
