"""PACS (Li et al., ICCV 2017): four domains (art painting, cartoon, photo, sketch) of seven
classes, trained on together as in MN Appendix A.1, with the paper's and a disjoint split."""
from __future__ import annotations

from pathlib import Path

import torch

from ..._checks import check_choice
from .registry import ImageDataset, _register, _Request
from .utils import _find_folder, _folder_dataset, _image_files, _labels, _missing, _ordered, stratified_order

PACS_DOMAINS = ["art_painting", "cartoon", "photo", "sketch"]
PACS_CLASSES = ["dog", "elephant", "giraffe", "guitar", "horse", "house", "person"]


@_register("pacs", "paper", options=("split",),
           manual="download PACS (Li et al., ICCV 2017; https://domaingeneralization.github.io/) and place either "
               "the 'pacs_data' folder as {root}/pacs_data/<domain>/<class>/*.jpg, or the 'kfold' folder as "
               "{root}/PACS/kfold/<domain>/<class>/* with the split lists <domain>_{{train,crossval,test}}_kfold.txt "
               "in {root}/PACS/ (optional)")
def _load_pacs(request: _Request) -> ImageDataset:
    """PACS, all four domains together (MN Appendix A.1: "we train on all domains"), 7 classes,
    227×227 resized to 32×32; extras "domain" and "class_labels".

    options["split"] = "paper" (default) reproduces the paper's 9K/1K/10K: train = the official
    *_train_kfold lists (8,977 images), val = the *_crossval_kfold lists (1,014), test = the
    *_test_kfold lists, which hold *every* image of each domain (9,991), so the test set contains
    the training images. Without the lists (e.g. the pacs_data layout), or with `val_size`, a seeded
    split with the same proportions is drawn: 10 % of every (domain, class) group for val, the rest for train, and test
    = all images. options["split"] = "disjoint" gives a seeded stratified 80/10/10 split with no
    overlap (the honest measure of generalisation; not comparable with the paper's numbers)."""
    protocol = request.options.get("split", "paper")
    check_choice("PACS split option", protocol, ("paper", "disjoint"))
    candidates = [request.root / "pacs_data", request.root / "pacs" / "pacs_data", request.root / "PACS" / "pacs_data",
                  request.root / "PACS" / "kfold", request.root / "pacs" / "kfold", request.root / "kfold"]
    folder = _find_folder(request, candidates, PACS_DOMAINS, "the PACS domain folders")
    files, classes, domains, empty = [], [], [], []
    for domain_label, domain in enumerate(PACS_DOMAINS):
        for class_label, name in enumerate(PACS_CLASSES):
            class_dir = folder / domain / name
            found = _image_files(class_dir) if class_dir.is_dir() else []
            empty += [] if found else [class_dir]
            files += found
            classes += [class_label] * len(found)
            domains += [domain_label] * len(found)
    if empty:                      # a half-extracted archive: refuse it rather than train on part of PACS
        raise _missing(request, empty, f"PACS images in {len(empty)} of the {len(PACS_DOMAINS) * len(PACS_CLASSES)} "
                                       f"domain/class folders")
    classes, domains = _labels(classes), _labels(domains)
    group = domains * len(PACS_CLASSES) + classes                                     # (domain, class) strata
    everything = torch.arange(len(files))
    lists = _pacs_split_lists(request, folder, files)
    if protocol == "disjoint":
        order = stratified_order(group, request.seed)
        n_val = round(0.1 * len(files)) if request.val_size is None else request.val_size
        n_test = round(0.1 * len(files))
        parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
        notes = "seeded stratified 80/10/10 split of all domains, disjoint"
    elif lists is not None and request.val_size is None:
        parts = {"train": lists["train"], "val": lists["crossval"], "test": lists["test"]}
        notes = "official kfold lists of all domains: train / crossval / test (test = every image)"
    else:
        order = stratified_order(group, request.seed)
        n_val = round(0.1 * len(files)) if request.val_size is None else request.val_size
        parts = {"train": order[n_val:], "val": order[:n_val], "test": everything}
        notes = "seeded: val = 10 % of each (domain, class), train = the rest, test = every image (as the paper)"
    splits = {}
    for name, index in parts.items():
        labels = domains[index] if request.label_kind == "domain" else classes[index]
        index, _, extra = _ordered(index, group[index], request.seed,
                                   {"labels": labels, "domain": domains[index], "class_labels": classes[index]})
        splits[name] = (index, extra.pop("labels"), extra)
    if parts["train"].numel() == 0:
        raise ValueError(f"val_size {request.val_size} leaves no PACS training images")
    names = PACS_DOMAINS if request.label_kind == "domain" else PACS_CLASSES
    return _folder_dataset(request, files, splits, mode="RGB", class_names=names, split_notes=notes,
                           extra_names={"domain": PACS_DOMAINS, "class_labels": PACS_CLASSES})


def _pacs_split_lists(request: _Request, folder: Path, files: list[Path]) -> dict[str, torch.Tensor] | None:
    """File indices of the official <domain>_{train,crossval,test}_kfold.txt lists, if all twelve
    are found next to (or in a 'splits'/'pacs_label' folder beside) the image folder."""
    position = {path.relative_to(folder).as_posix(): i for i, path in enumerate(files)}
    for place in (folder.parent, folder.parent / "splits", folder.parent / "pacs_label", folder / "splits", folder):
        paths = {(d, part): place / f"{d}_{part}_kfold.txt" for d in PACS_DOMAINS for part in ("train", "crossval", "test")}
        if all(path.exists() for path in paths.values()):
            break
    else:
        return None
    lists = {}
    for part in ("train", "crossval", "test"):
        index = []
        for domain in PACS_DOMAINS:
            for line in paths[(domain, part)].read_text().splitlines():
                if not line.strip():
                    continue
                name = line.split()[0].replace("\\", "/")
                if name not in position:
                    raise _missing(request, [folder / name], f"an image listed in {paths[(domain, part)]}")
                index.append(position[name])
        lists[part] = torch.tensor(index, dtype=torch.int64)
    return lists
