"""NSL Tables 1-3 and 8 as one command each (`--nsl-variant`), the SphereNet-9 of Table 8 with its
global similarity and orthogonality penalty, training only M from a plain CNN, and the
no-validation option (train on every training image, test the last model)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from nslviz.__main__ import main
from nslviz.analysis.nsl import attention_maps
from nslviz.models.classifier import build_image_model
from nslviz.nsl import (GlobalSimilarityAttention, SphereConv2d, nsl_layers, nsl_regularization,
                        orthogonality_penalty, undecayed_parameters)
from nslviz.paper import nsl_table_row
from nslviz.training.config import TrainConfig
from nslviz.experiments.compare import NSL_ABLATION_VARIANTS, NSL_TABLES, nsl_variant_config, nsl_variant_preset
from nslviz.training.optim import parameter_groups
from nslviz.viz.nsl import attention_map_figure

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--dataset", "digits", "--epochs", "1", "--train-limit", "64", "--eval-limit", "32", "--image-size", "16",
        "--batch-size", "32", "--no-progress", "--json"]
TABLE_VARIANTS = sorted({v for table in ("1", "2", "3", "8") for v in NSL_TABLES[table]} | set(NSL_ABLATION_VARIANTS))


def run_cli(capsys, *args) -> tuple[dict, str]:
    assert main(["train", *args]) == 0
    out = capsys.readouterr().out
    return json.loads(out.strip().splitlines()[-1]), out


@pytest.mark.parametrize("variant", TABLE_VARIANTS)
def test_every_table_variant_trains_one_epoch_from_the_cli(variant, tmp_path, capsys):
    summary, out = run_cli(capsys, "--nsl-variant", variant, "--run-dir", str(tmp_path / variant), *TINY)
    config = json.loads((tmp_path / variant / "config.json").read_text())
    expected = nsl_variant_config(TrainConfig.from_preset(nsl_variant_preset(variant), backbone="cnn9"), variant)
    assert (config["backbone"], config["nsl"], config["nsl_options"]) == (expected.backbone, expected.nsl,
                                                                          expected.nsl_options)
    assert config["optimizer"] == ("adam" if variant in NSL_TABLES["8"] else "sgd")
    assert summary["iterations"] == 2 and np.isfinite(summary["test_loss"])
    assert f"{summary['parameters']:,} parameters" in out                    # the count is printed


def test_variant_configs_follow_the_paper_tables():
    base = TrainConfig.from_preset("nsl", backbone="cnn9", nsl_options={"l2_weight": 0.1})
    shared = nsl_variant_config(base, "dynamic_dns_shared")
    assert (shared.backbone, shared.nsl, shared.nsl_options) == ("cnn9", "dynamic_dns",
                                                                 {"shared_predictor": True, "l2_weight": 0.1})
    assert nsl_variant_config(base, "cnn++").nsl_options == {}                 # plain rows take no NSL options
    assert nsl_variant_config(base, "static_dns_joint").nsl_options["kernel_shape"] is True
    assert nsl_variant_config(base, "dynamic_dns_cnn_predictor").nsl_options["predictor"] == "cnn"
    table8 = nsl_variant_config(base, "spherenet_attention")
    assert (table8.backbone, table8.nsl, table8.nsl_options["global_similarity"]) == ("spherenet9", "none", True)
    with pytest.raises(ValueError, match="start from backbone 'cnn9'"):
        nsl_variant_config(table8, "dynamic_dns")
    with pytest.raises(ValueError, match="CNN-9 row .*backbone is 'convnet4': start from backbone 'cnn9'"):
        nsl_variant_config(dataclasses.replace(base, backbone="convnet4"), "static_dns")    # not the table's network
    with pytest.raises(ValueError, match="NSL variant"):
        nsl_variant_config(base, "dynamic_dns_shraed")
    assert nsl_table_row("3") == {"cnn": 92.22, "dynamic_dns_shared": 92.8, "dynamic_dns": 93.15}   # the baseline row too
    assert nsl_table_row("8")["spherenet_attention"] == 91.76 and nsl_table_row("2", "cifar100") is None
    global_recipe = TrainConfig.from_preset("nsl_global", dataset="cifar10")
    assert (global_recipe.optimizer, global_recipe.iterations, global_recipe.augment) == ("adam", 64_000, "flip")


def test_cli_errors_name_the_bad_value(tmp_path, capsys):
    for args, message in ((["--nsl-options", "[1, 2]"], "expected a JSON object"),
                          (["--nsl-variant", "static_dns", "--nsl", "dynamic_dns"], "contradicts --nsl-variant"),
                          (["--nsl-options", '{"kernel_shap": true}', "--nsl", "static_dns"], "kernel_shap"),
                          (["--similarity-only", "true"], "similarity_only")):
        with pytest.raises(SystemExit) as raised:
            main(["train", *args, "--run-dir", str(tmp_path / "bad"), *TINY])
        assert raised.value.code == 2
        assert message in capsys.readouterr().err


def test_similarity_only_from_a_plain_cnn_learns_only_m(tmp_path, capsys):
    """NSL sec. 4: a plain CNN's weights load into the NSL network (M starts at I, so it computes the
    same function), the kernels stay frozen and only M moves."""
    plain, _ = run_cli(capsys, "--preset", "nsl", "--backbone", "cnn9", "--run-dir", str(tmp_path / "cnn"), *TINY)
    summary, out = run_cli(capsys, "--preset", "nsl", "--backbone", "cnn9", "--nsl", "static_dns",
                           "--init-backbone", str(tmp_path / "cnn"), "--similarity-only", "true", "--lr", "0.05",
                           "--run-dir", str(tmp_path / "m"), *TINY)
    assert summary["parameters"] == 81 and summary["parameters_total"] == plain["parameters"] + 81
    assert "81 parameters trained of" in out
    before = torch.load(tmp_path / "cnn" / "best.pt", weights_only=True)
    after = torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=False)["model"]
    for name, value in before.items():
        if name.endswith("conv.weight") or name.startswith("head."):
            torch.testing.assert_close(after[name], value, rtol=0, atol=0)
    masks = [value for name, value in after.items() if name.endswith("similarity")]
    assert len(masks) == 9 and max(float((m - 1).abs().max()) for m in masks) > 1e-3
    # notebook 07's command for the same with the kernel shape: --nsl-variant sets nsl before the checks
    joint, _ = run_cli(capsys, "--preset", "nsl", "--nsl-variant", "static_dns_joint", "--init-backbone",
                       str(tmp_path / "cnn"), "--similarity-only", "true", "--run-dir", str(tmp_path / "j"), *TINY)
    assert joint["parameters"] == 162 and joint["parameters_total"] == plain["parameters"] + 162


def test_init_backbone_refuses_a_different_network(tmp_path, capsys):
    run_cli(capsys, "--preset", "nsl", "--backbone", "cnn9", "--nsl", "static_dns", "--run-dir",
            str(tmp_path / "dns"), *TINY)
    with pytest.raises(SystemExit):                   # an NSL run's M must be there when loading NSL into NSL
        main(["train", "--preset", "nsl", "--backbone", "cnn9", "--nsl", "dynamic_dns", "--init-backbone",
              str(tmp_path / "dns"), "--run-dir", str(tmp_path / "dyn"), *TINY])
    assert "does not fit this model" in capsys.readouterr().err


def test_val_size_zero_trains_on_everything_and_tests_the_last_model(tmp_path, capsys):
    summary, out = run_cli(capsys, "--preset", "nsl", "--backbone", "cnn9", "--val-size", "0", "--epochs", "2",
                           "--run-dir", str(tmp_path / "all"), *TINY[:2], *TINY[4:])
    assert summary["val_count"] == 0 and summary["best_epoch"] == 2
    assert summary["test_acc"] == summary["test_acc_last"]
    assert summary["val_acc"] is None                    # nothing validated: no number, not an accuracy of 0
    rows = [json.loads(line) for line in (tmp_path / "all" / "metrics.jsonl").read_text().splitlines()]
    assert [(row["val_acc"], row["val_loss"]) for row in rows] == [(None, None)] * 2
    assert "(no validation split, last epoch 2)" in out


def test_orthogonality_penalty_is_half_the_squared_distance_of_the_kernels_gram_from_the_identity():
    """½‖ŴᵀŴ − I‖²_F over the F output kernels (Ŵ: (k²C, F)), by hand on small kernels."""
    assert float(orthogonality_penalty(torch.eye(3).view(3, 3, 1, 1))) == 0.0        # orthonormal kernels
    assert float(orthogonality_penalty(torch.ones(2, 1, 1, 1))) == 1.0               # two equal unit kernels:
    assert float(orthogonality_penalty(torch.full((1, 2, 1, 1), 1.0))) == 0.5       # off-diagonal 1, twice; ½(2-1)²


def test_spherenet9_structure_penalty_and_weight_decay_groups():
    torch.manual_seed(0)
    model = build_image_model("vanilla", "spherenet9", 10, classifier="dot", image_size=16,
                              nsl_options={"global_similarity": True, "widths": (8, 12, 16)})
    blocks = [m for m in model.modules() if isinstance(m, GlobalSimilarityAttention)]
    assert [b.channels for b in blocks] == [8, 12]                              # after pool1 and pool2
    convs = [m for m in model.modules() if isinstance(m, SphereConv2d)]
    expected = sum(2e-4 * orthogonality_penalty(c.weight) for c in convs)
    torch.testing.assert_close(nsl_regularization(model), expected)
    backbone_kernels = {id(c.weight) for c in convs if not c.weight_decay}
    assert len(backbone_kernels) == 10                                          # 9 convs + fc6, no L2
    assert backbone_kernels == {id(p) for p in undecayed_parameters(model)}
    groups = parameter_groups(model, 5e-4, decay_everything=True)
    decayed = {id(p) for p in groups[0]["params"]}
    assert not decayed & backbone_kernels and id(blocks[0].query.weight) in decayed
    images = torch.rand(2, 3, 16, 16)
    assert model(images).shape == (2, 10)
    for shape in ((2, 3, 24, 16), (2, 1, 16, 16), (3, 16, 16)):     # another height made 3x1 maps, 768 features
        with pytest.raises(ValueError, match=r"SphereNet-9 expected images of shape \(batch, 3, 16, 16\)"):
            model.backbone(torch.rand(*shape))
    assert nsl_layers(model) == {}
    plain = build_image_model("vanilla", "spherenet9_plain", 10, image_size=16, nsl_options={"widths": (8, 8, 8)})
    assert all(m.normalize == "none" for m in plain.modules() if isinstance(m, SphereConv2d))


def test_spherenet9_angle_sets_every_sphereconv_and_reaches_it_from_the_command_line():
    """nsl_options angle: SphereNet's g(θ) at the 9 convs, fc6 and the attention convs; the plain network refuses it."""
    from nslviz.__main__ import build_parser
    from nslviz.cli.train import config_from_args
    from nslviz.training.config import build_model
    small = {"global_similarity": True, "widths": (8, 12, 16)}
    for angle in ("cosine", "linear", "sigmoid"):
        model = build_image_model("vanilla", "spherenet9", 10, image_size=16, nsl_options={**small, "angle": angle})
        assert [m.angle for m in model.modules() if isinstance(m, SphereConv2d)] == [angle] * 16   # 9 + fc6 + 2 × 3
    default = build_image_model("vanilla", "spherenet9", 10, image_size=16, nsl_options=small)
    assert {m.angle for m in default.modules() if isinstance(m, SphereConv2d)} == {"cosine"}
    with pytest.raises(ValueError, match="spherenet9_plain has plain convolutions, which have no angle function"):
        build_image_model("vanilla", "spherenet9_plain", 10, image_size=16, nsl_options={**small, "angle": "linear"})
    with pytest.raises(ValueError, match="unknown SphereNet-9 angle 'tanh'; expected one of 'cosine', 'linear'"):
        build_image_model("vanilla", "spherenet9", 10, image_size=16, nsl_options={"angle": "tanh"})
    args = build_parser("train").parse_args(["train", "--nsl-variant", "spherenet_attention", "--nsl-options",
                                             '{"angle": "sigmoid", "widths": [8, 12, 16]}', "--image-size", "16"])
    config = config_from_args(args)
    assert config.nsl_options == {"global_similarity": True, "angle": "sigmoid", "widths": [8, 12, 16]}
    model = build_model(config, 10, 3, 16)
    assert {m.angle for m in model.modules() if isinstance(m, SphereConv2d)} == {"sigmoid"}


def test_attention_maps_and_figure():
    torch.manual_seed(1)
    model = build_image_model("vanilla", "spherenet9", 10, classifier="dot", image_size=16,
                              nsl_options={"global_similarity": True, "widths": (8, 12, 16)})
    with torch.no_grad():
        for block in model.modules():
            if isinstance(block, GlobalSimilarityAttention):
                block.gamma.fill_(0.5)
    images = torch.rand(3, 3, 16, 16)
    maps = attention_maps(model, images)
    assert [name.split(".")[:3] for name in maps] == [["backbone", "stages", "0"], ["backbone", "stages", "1"]]
    first, second = maps.values()
    assert first["attention"].shape == (3, 8, 8, 8, 8) and second["attention"].shape == (3, 4, 4, 4, 4)
    assert first["gamma"] == 0.5
    np.testing.assert_allclose(first["attention"].sum(axis=(3, 4)), 1.0, rtol=1e-5)
    fig = attention_map_figure(images[0], first["attention"][0], "stage 1 attention")
    assert fig.layout.title.text and len(fig.data) == 1 + 3 * 4
    with pytest.raises(ValueError, match="outside"):
        attention_map_figure(images[0], first["attention"][0], "b", queries=[(8, 0)])
    with pytest.raises(ValueError, match="no global-similarity"):
        attention_maps(build_image_model("vanilla", "cnn9", 10, image_size=16), images)


def test_table5_compares_cnn10_rows_on_downsampled_imagenet(tmp_path, capsys):
    """NSL Table 5 from one command: the CNN-10 rows (cnn, cnn++, dynamic DNS) on ImageNet 64×64 with
    the paper's ImageNet schedule, reported with top-5 (tiny files in the real on-disk format)."""
    from test_image_datasets import write_imagenet64

    (tmp_path / "data").mkdir()
    write_imagenet64(tmp_path / "data", "parts_npz", np.random.default_rng(5))
    recipe = TrainConfig.from_preset("nsl", dataset="imagenet64", backbone="cnn10")
    assert (recipe.iterations, recipe.milestones) == (600_000, (200 / 600, 375 / 600, 550 / 600))
    assert recipe.optimizer == "sgd" and recipe.lr == 0.1
    notebook = TrainConfig.from_preset("nsl", dataset="imagenet64", backbone="cnn10", epochs=None, lr=0.1)   # nb 07
    assert (notebook.iterations, notebook.milestones) == (recipe.iterations, recipe.milestones)
    own_length = TrainConfig.from_preset("nsl", dataset="imagenet64", backbone="cnn10", epochs=60)
    assert own_length.milestones == recipe.milestones                     # ImageNet's decays, not CIFAR's
    assert TrainConfig.from_preset("nsl", dataset="imagenet64", epochs=60, milestones=(0.5,)).milestones == (0.5,)
    assert TrainConfig.from_preset("nsl", dataset="cifar10", epochs=60).milestones == (20 / 42.5, 30 / 42.5, 37.5 / 42.5)
    assert nsl_table_row("5", "imagenet64") == {"cnn": 57.28, "cnn++": 57.89, "dynamic_dns": 59.39}
    assert nsl_table_row("5", "cifar10") is None                     # an ImageNet table
    sizes = {name: sum(p.numel() for p in build_image_model("vanilla", backbone, 1000, image_size=64, classifier="dot",
                                                            nsl=nsl).parameters())
             for name, backbone, nsl in (("cnn", "cnn10", "none"), ("cnn++", "cnn10_plus", "none"),
                                         ("dynamic_dns", "cnn10", "dynamic_dns"))}
    assert {name: f"{n / 1e6:.2f}M" for name, n in sizes.items()} == {   # the counts docs/nsl-paper-tables.md gives
        "cnn": "3.00M", "cnn++": "3.78M", "dynamic_dns": "3.36M"}
    assert main(["compare", "--preset", "nsl", "--dataset", "imagenet64", "--backbone", "cnn10", "--variants", "cnn",
                 "cnn++", "dynamic_dns", "--data-root", str(tmp_path / "data"), "--val-size", "2", "--batch-size",
                 "4", "--epochs", "1", "--device", "cpu", "--group-dir", str(tmp_path / "runs"), "--no-progress",
                 "--json"]) == 0
    out = capsys.readouterr().out
    summaries = json.loads(out.strip().splitlines()[-1])
    assert {v: (s["backbone"], s["nsl"], s["classes"]) for v, s in summaries.items()} == {
        "cnn": ("cnn10", "none", 1000), "cnn++": ("cnn10_plus", "none", 1000), "dynamic_dns": ("cnn10", "dynamic_dns", 1000)}
    assert all(s["test_acc"] <= s["test_top5_acc"] for s in summaries.values())
    assert out.count("| top-5 ") == 3


def test_quick_mode_thins_the_default_rows_keeps_those_asked_and_names_a_misspelled_one():
    """Notebook 07's quick mode trains the plain and the dynamic DNS row in place of Table 4's six (its
    default), and the rows asked otherwise; a misspelled name is refused with the choices (not dropped)."""
    from nslviz.experiments.compare import NSL_TABLES, QUICK_NSL_VARIANTS, quick_nsl_variants

    assert quick_nsl_variants(list(NSL_TABLES["4"])) == list(QUICK_NSL_VARIANTS)
    assert quick_nsl_variants(["cnn", "static_dns", "dynamic_dns"]) == ["cnn", "static_dns", "dynamic_dns"]
    assert quick_nsl_variants(["static_dns", "static_uns"]) == ["static_dns", "static_uns"]
    with pytest.raises(ValueError, match="unknown NSL variant 'statc_dns'; expected one of 'cnn', 'cnn\\+\\+'"):
        quick_nsl_variants(["cnn", "statc_dns"])


def test_predictor_lr_scale_slows_the_dynamic_predictors_only():
    from nslviz.training.optim import build_optimizer
    model = build_image_model("vanilla", "cnn9", 10, in_channels=1, image_size=16, nsl="dynamic_dns")
    plain = build_optimizer(model, TrainConfig(optimizer="adamw", lr=1e-3))
    assert [g["name"] for g in plain.param_groups] == ["decay", "no_decay"]       # scale 1: the official groups
    scaled = build_optimizer(model, TrainConfig(optimizer="adamw", lr=1e-3, predictor_lr_scale=0.1))
    predictors = {id(p) for layer in nsl_layers(model).values() for p in layer.predictor.parameters()}
    for group in scaled.param_groups:
        in_predictor = {id(p) in predictors for p in group["params"]}
        assert len(in_predictor) == 1                                             # no group mixes the two
        assert group["lr"] == pytest.approx(1e-3 * (0.1 if in_predictor == {True} else 1))
    assert sum(len(g["params"]) for g in scaled.param_groups) == sum(len(g["params"]) for g in plain.param_groups)
    assert TrainConfig.from_preset("nsl", dataset="cifar10", backbone="cnn9").predictor_lr_scale == 1.0   # official


def test_the_predictor_lr_scale_multiplies_the_backbone_lr_scale():
    # the predictors sit in the backbone: with both scales they train at lr × backbone scale × predictor scale
    from nslviz.training.optim import build_optimizer
    model = build_image_model("vanilla", "cnn9", 10, in_channels=1, image_size=16, nsl="dynamic_dns")
    optimizer = build_optimizer(model, TrainConfig(optimizer="adamw", lr=1e-3, backbone_lr_scale=0.5,
                                                   predictor_lr_scale=0.1))
    predictors = {id(p) for layer in nsl_layers(model).values() for p in layer.predictor.parameters()}
    backbone = {id(p) for p in model.backbone.parameters()}
    assert predictors and predictors < backbone
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        expected = 1e-3 * 0.5 * 0.1 if ids <= predictors else 1e-3 * 0.5 if ids <= backbone else 1e-3
        assert group["lr"] == pytest.approx(expected), group["name"]
    rates = sorted({round(group["lr"], 12) for group in optimizer.param_groups})
    assert rates == [5e-5, 5e-4, 1e-3]


def test_spherenet9_maps_pixels_as_the_official_code():
    """(x − 127.5) / 128 on 0–255 pixels: 0 -> −127.5/128, 1 -> 127.5/128."""
    from nslviz.models import build_backbone
    net = build_backbone("spherenet9", image_size=8, nsl_options={"widths": (4, 4, 4)}).eval()
    seen = []
    net.stages[0][0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    images = torch.tensor([0.0, 1.0, 0.5]).view(3, 1, 1, 1).expand(3, 3, 8, 8).contiguous()
    with torch.no_grad():
        net(images)
    torch.testing.assert_close(seen[0][:, 0, 0, 0], torch.tensor([-127.5 / 128, 127.5 / 128, 0.0]))
