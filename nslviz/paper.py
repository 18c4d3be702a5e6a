"""The papers' reported numbers, for the tables that put a run next to them.

Sources: Meta-Neighborhoods (NeurIPS 2020) Tables 1-3, Appendix A.9; Neural Similarity Learning (NeurIPS 2019)
Tables 1-6 and 8. Accuracies in percent (mean of 3 runs for MN Table 1), MN Table 2 in test MSE, as printed
in the papers.
"""
from __future__ import annotations

MN_METHOD_COLUMNS = ("vanilla", "maxl", "vanilla_ifilm", "mn", "mn_ifilm")

# MN Table 1: test accuracy (%) per (backbone, dataset); columns MN_METHOD_COLUMNS.
MN_TABLE1: dict[tuple[str, str], tuple[float, ...]] = {
    ("convnet4", "mnist"): (99.44, 99.60, 99.40, 99.62, 99.58),
    ("convnet4", "svhn"): (93.02, 94.06, 93.95, 94.46, 94.92),
    ("convnet4", "mnist-m"): (96.18, 96.85, 96.99, 96.55, 97.40),
    ("convnet4", "pacs"): (92.55, 94.85, 94.45, 95.19, 95.22),
    ("densenet40", "cifar10"): (94.53, 94.83, 94.87, 95.04, 95.22),
    ("densenet40", "cifar100"): (73.92, 75.64, 74.66, 76.32, 76.96),
    ("densenet40", "cinic10"): (84.92, 85.42, 85.11, 85.73, 86.02),
    ("densenet40", "tiny-imagenet"): (49.28, 50.94, 50.86, 53.27, 54.36),
    ("resnet29", "cifar10"): (95.06, 95.31, 95.17, 95.56, 95.58),
    ("resnet29", "cifar100"): (76.51, 77.94, 77.16, 78.84, 79.84),
    ("resnet29", "cinic10"): (86.03, 86.34, 86.64, 86.86, 87.35),
    ("resnet29", "tiny-imagenet"): (54.82, 56.29, 55.59, 57.36, 57.94),
    ("resnet56", "cifar10"): (95.73, 96.06, 96.08, 96.36, 96.40),
    ("resnet56", "cifar100"): (79.64, 80.36, 80.04, 80.58, 80.90),
    ("resnet56", "cinic10"): (88.21, 88.30, 88.57, 88.61, 88.99),
    ("resnet56", "tiny-imagenet"): (57.92, 58.94, 58.31, 60.05, 60.78),
    ("resnet56_64", "imagenet64"): (48.41, 48.83, 52.03, 51.85, 54.23),
}

# MN Table 3 (Appendix A.5, A.6): test accuracy (%) per (backbone, dataset) of four vanilla baselines
# (dot-product or cosine classifier, SGD or AdamW), MAXL, and MN with 1 or 3 inner steps and a scalar or
# diagonal step size α; columns MN_TABLE3_COLUMNS. Its "cos-adamw", "maxl" and "mn_1_scalar" columns are
# Table 1's vanilla, MAXL and MN columns.
MN_TABLE3_COLUMNS = ("vanilla_dot_sgd", "vanilla_dot_adamw", "vanilla_cos_sgd", "vanilla_cos_adamw", "maxl",
                     "mn_1_scalar", "mn_1_diagonal", "mn_3_scalar", "mn_3_diagonal")
# the options of `python -m nslviz train` that give each column (after --dataset and --backbone)
MN_TABLE3_OPTIONS = {
    "vanilla_dot_sgd": "--preset mn --method vanilla --classifier dot --optimizer sgd",
    "vanilla_dot_adamw": "--preset mn --method vanilla --classifier dot",
    "vanilla_cos_sgd": "--preset mn --method vanilla --optimizer sgd",
    "vanilla_cos_adamw": "--preset mn --method vanilla",
    "maxl": "--preset maxl",
    "mn_1_scalar": "--preset mn --method mn",
    "mn_1_diagonal": "--preset mn --method mn --step-size diagonal",
    "mn_3_scalar": "--preset mn --method mn --inner-steps 3",
    "mn_3_diagonal": "--preset mn --method mn --inner-steps 3 --step-size diagonal",
}
MN_TABLE3: dict[tuple[str, str], tuple[float, ...]] = {
    ("convnet4", "mnist"): (99.39, 99.47, 99.42, 99.44, 99.60, 99.62, 99.45, 99.50, 99.55),
    ("convnet4", "svhn"): (93.01, 93.12, 92.93, 93.02, 94.06, 94.46, 93.95, 94.05, 94.05),
    ("densenet40", "cifar10"): (94.56, 94.46, 94.52, 94.53, 94.83, 95.04, 94.79, 95.08, 95.12),
    ("densenet40", "cifar100"): (73.85, 73.68, 74.08, 73.92, 75.64, 76.32, 77.20, 76.04, 76.42),
    ("densenet40", "cinic10"): (85.13, 85.02, 85.10, 84.92, 85.42, 85.73, 85.76, 85.51, 85.21),
    ("densenet40", "tiny-imagenet"): (49.32, 49.21, 49.40, 49.28, 50.94, 53.27, 53.16, 52.88, 52.61),
    ("resnet29", "cifar10"): (94.91, 94.96, 95.02, 95.06, 95.31, 95.56, 95.28, 95.36, 95.26),
    ("resnet29", "cifar100"): (76.65, 76.72, 76.70, 76.51, 77.94, 78.84, 78.20, 78.04, 78.40),
    ("resnet29", "cinic10"): (85.86, 85.91, 85.96, 86.03, 86.34, 86.86, 86.41, 86.38, 86.51),
    ("resnet29", "tiny-imagenet"): (54.79, 54.67, 54.97, 54.82, 56.29, 57.36, 56.93, 57.64, 57.27),
    ("resnet56", "cifar10"): (95.64, 95.83, 95.71, 95.73, 96.06, 96.36, 96.32, 96.28, 96.04),
    ("resnet56", "cifar100"): (79.54, 79.68, 79.78, 79.64, 80.36, 80.58, 80.66, 80.20, 80.14),
    ("resnet56", "cinic10"): (88.03, 88.15, 87.90, 88.21, 88.30, 88.61, 88.47, 88.42, 88.38),
    ("resnet56", "tiny-imagenet"): (57.79, 57.95, 57.89, 57.92, 58.94, 60.05, 59.20, 59.85, 59.88),
}

# NSL Table 4: CIFAR error (%) of the CNN-9 family; keys are (variant, dataset).
NSL_TABLE4: dict[tuple[str, str], float] = {
    ("cnn", "cifar10"): 7.78, ("cnn", "cifar100"): 28.95,
    ("cnn++", "cifar10"): 7.29, ("cnn++", "cifar100"): 28.70,
    ("static_dns", "cifar10"): 7.15, ("static_dns", "cifar100"): 28.35,
    ("static_uns", "cifar10"): 7.38, ("static_uns", "cifar100"): 28.11,
    ("dynamic_dns", "cifar10"): 6.85, ("dynamic_dns", "cifar100"): 27.81,
    ("dynamic_uns", "cifar10"): 6.5, ("dynamic_uns", "cifar100"): 28.02,
}

# NSL Table 5: ImageNet top-1 / top-5 error (%) and parameters of CNN-10.
NSL_TABLE5: dict[str, tuple[float, float, str]] = {
    "cnn": (42.72, 19.11, "8.90M"), "cnn++": (42.11, 18.98, "9.71M"), "dynamic_dns": (40.61, 18.04, "9.61M"),
}


# NSL Tables 1-3: CIFAR-10 error (%) of CNN-9 variants (DNS), keyed by the variant names of
# nslviz.experiments.compare.NSL_TABLES; (J) = joint learning of the kernel shape D and R.
NSL_TABLES_1_3: dict[str, dict[str, float]] = {
    "1": {"cnn": 7.78, "dynamic_dns_cnn_predictor": 7.04, "dynamic_dns": 6.85},
    "2": {"cnn": 7.78, "static_dns": 7.15, "static_dns_joint": 6.92, "dynamic_dns": 6.85, "dynamic_dns_joint": 6.64},
    "3": {"cnn": 7.78, "dynamic_dns_shared": 7.20, "dynamic_dns": 6.85},
}

# NSL Table 8: CIFAR-10 accuracy (%) with mild augmentation (flips), widths 128/192/256.
NSL_TABLE8: dict[str, float] = {"cnn_global": 90.86, "cnn_global_attention": 90.69, "spherenet": 91.31,
                                "spherenet_attention": 91.76}


def nsl_table_row(table: str, dataset: str = "cifar10") -> dict[str, float] | None:
    """{variant: accuracy %} of NSL Table 1, 2, 3, 4, 5 or 8 on `dataset`; None where the paper has
    no such row (Tables 1-3 and 8 are CIFAR-10 only). Table 5 is top-1 on ImageNet-2012 at 224 px
    (`imagenet`), also returned for downsampled ImageNet 64×64 (`imagenet64`), to compare with."""
    if str(table) == "4":
        return nsl_table4_row(dataset)
    if str(table) == "5":
        return {variant: round(100 - top1, 2) for variant, (top1, _, _) in NSL_TABLE5.items()} \
            if dataset in ("imagenet", "imagenet64") else None
    if dataset != "cifar10":
        return None
    if str(table) == "8":
        return dict(NSL_TABLE8)
    errors = NSL_TABLES_1_3.get(str(table))
    if errors is None:
        raise ValueError(f"NSL tables with variants are 1, 2, 3, 4, 5 and 8, got {table!r}")
    return {variant: round(100 - error, 2) for variant, error in errors.items()}

# NSL Table 6: Mini-ImageNet 5-way 5-shot test accuracy (%) ± the printed interval; method -> (backbone,
# accuracy, interval). The paper follows the protocol of its refs. [46, 14] and states neither the
# interval's level nor the number of test episodes; runs here report 95 % intervals over their episodes.
# Rows marked [46], [52], [14], [54] are the paper's citations of other methods.
NSL_TABLE6: dict[str, tuple[str, float, float]] = {
    "Finetuning baseline [46]": ("CNN-4", 49.79, 0.79),
    "Nearest-neighbour baseline [46]": ("CNN-4", 51.04, 0.65),
    "MatchingNet [46]": ("CNN-4", 55.31, 0.73),
    "ProtoNet [52]": ("CNN-4", 68.20, 0.66),
    "MAML [14]": ("CNN-4", 63.15, 0.91),
    "RelationNet [54]": ("CNN-4", 65.32, 0.70),
    "Static NSN": ("CNN-4", 65.74, 0.68),
    "Meta-learned static NSN": ("CNN-4", 66.21, 0.69),
    "Dynamic NSN": ("CNN-4", 71.26, 0.65),
    "Dynamic NSN (CNN-9)": ("CNN-9", 77.44, 0.63),
}

# (nsl mode, few-shot method, backbone) of `python -m nslviz few-shot` -> its row of Table 6 (the plain CNN
# rows are the nearest published baselines: finetuning the classifier of a pretrained CNN-4, and MAML).
NSL_TABLE6_ROWS = {
    ("static_dns", "finetune", "cnn4"): "Static NSN", ("static_dns", "maml", "cnn4"): "Meta-learned static NSN",
    ("dynamic_dns", "finetune", "cnn4"): "Dynamic NSN", ("none", "finetune", "cnn4"): "Finetuning baseline [46]",
    ("none", "maml", "cnn4"): "MAML [14]", ("dynamic_dns", "finetune", "cnn9"): "Dynamic NSN (CNN-9)",
}


def nsl_table6_reference(nsl: str, method: str, way: int = 5, shot: int = 5, backbone: str = "cnn4") -> dict | None:
    """{row, backbone, accuracy, interval95} of NSL Table 6 for this few-shot run, or None (the table is
    5-way 5-shot only, and has one CNN-9 row). interval95 is the ± the table prints, named as a run's
    own 95 % interval is: the paper does not state its level."""
    row = NSL_TABLE6_ROWS.get((nsl, method, backbone))
    if row is None or (way, shot) != (5, 5):
        return None
    backbone, accuracy, interval = NSL_TABLE6[row]
    return {"row": row, "backbone": backbone, "accuracy": accuracy, "interval95": interval}


def nsl_table4_row(dataset: str) -> dict[str, float] | None:
    """{variant: accuracy %} of NSL Table 4 (100 - the printed error) for cifar10 / cifar100, else None."""
    row = {variant: round(100 - error, 2) for (variant, name), error in NSL_TABLE4.items() if name == dataset}
    return row or None


def _mn_table_key(backbone: str, dataset: str) -> tuple[str, str]:
    """The (backbone, dataset) of MN Tables 1 and 3 for a run: a `_64` backbone (the same network with a
    stride-2 stem) takes its 32-pixel network's row, unless the table has a row of its own
    (resnet56_64 on imagenet64)."""
    if (backbone, dataset) not in MN_TABLE1:
        backbone = backbone.removesuffix("_64")
    return backbone, dataset


def mn_table1_row(backbone: str, dataset: str) -> dict[str, float] | None:
    """{method: accuracy %} of MN Table 1 for this backbone and dataset, or None if the paper has no row."""
    row = MN_TABLE1.get(_mn_table_key(backbone, dataset))
    return None if row is None else dict(zip(MN_METHOD_COLUMNS, row))


def mn_paper_row(backbone: str, dataset: str, *, classifier: str = "cosine", optimizer: str = "adamw",
                 inner_steps: int = 1, step_size: str = "scalar") -> dict[str, float] | None:
    """{method: accuracy %} that MN Tables 1 and 3 report for runs with these settings, or None if the
    paper has no such row (every row of Table 3 is one of Table 1's). Table 1's recipe (cosine
    classifier, AdamW, one inner step, scalar α) gives its five columns; a vanilla run with a
    dot-product classifier or SGD takes its Table 3 column (dot-sgd, dot-adamw, cos-sgd), an MN run
    with 3 inner steps or a diagonal α its column (ft:1+D, ft:3+S, ft:3+D). A method the paper did not
    run with these settings is left out (the iFiLM columns exist for Table 1's recipe only; Table 3 has
    no MNIST-M, PACS or ImageNet row). MAXL keeps Table 1's number, trained with its own recipe (MN
    appendix A.2)."""
    table1 = mn_table1_row(backbone, dataset)
    if table1 is None:
        return None
    table3 = MN_TABLE3.get(_mn_table_key(backbone, dataset))
    table3 = {} if table3 is None else dict(zip(MN_TABLE3_COLUMNS, table3))
    recipe = classifier == "cosine" and optimizer == "adamw"
    one_scalar_step = inner_steps == 1 and step_size == "scalar"
    row = {}
    for method, accuracy in table1.items():
        if method == "maxl" or (recipe and (method.startswith("vanilla") or one_scalar_step)):
            row[method] = accuracy
    if table3:
        name = {"cosine": "cos", "dot": "dot"}.get(classifier)
        if name is not None and optimizer in ("sgd", "adamw"):
            row["vanilla"] = table3[f"vanilla_{name}_{optimizer}"]
        if recipe and inner_steps in (1, 3) and step_size in ("scalar", "diagonal"):
            row["mn"] = table3[f"mn_{inner_steps}_{step_size}"]
    return row


# MN Appendix A.9 (and sec. 4.2): sub-category discovery on CIFAR-100. DenseNet40 models trained on the
# 20 coarse labels only (MN with S = 5000; vanilla = the cosine classifier trained with AdamW), then a kNN
# classifier on the test set ("induction accuracy"; the appendix names neither its reference set nor
# k: nslviz uses the training set and k = 5), on the 20 coarse and the
# 100 fine labels, in percent. The vanilla kNN uses the features z, MN's the attention vector ω.
MN_SUBCATEGORY_DISCOVERY: dict[str, dict[str, float]] = {
    "vanilla": {"coarse": 80.30, "fine": 59.28},
    "mn": {"coarse": 80.18, "fine": 63.3},
}


# MN Table 2: test MSE (mean ± std over 5 folds) of kNN, the vanilla MLP and Meta-Neighborhoods,
# with the n and d the paper lists. Targets and features standardised (Appendix B).
MN_TABLE2: dict[str, dict] = {
    "music": {"n": 515_345, "d": 90, "knn": (0.6812, 0.0062), "vanilla": (0.6236, 0.0056), "mn": (0.6088, 0.0050)},
    "toms": {"n": 28_179, "d": 96, "knn": (0.0602, 0.0083), "vanilla": (0.0594, 0.0080), "mn": (0.0531, 0.0073)},
    "cte": {"n": 53_500, "d": 384, "knn": (0.00134, 0.00023), "vanilla": (0.00121, 0.00022), "mn": (0.00109, 0.00015)},
    "super": {"n": 21_263, "d": 80, "knn": (0.1126, 0.0061), "vanilla": (0.1132, 0.0060), "mn": (0.1077, 0.0068)},
    "gom": {"n": 1_059, "d": 116, "knn": (0.5982, 0.0521), "vanilla": (0.5949, 0.0515), "mn": (0.5681, 0.0563)},
}
