"""NSL sec. 6 (nslviz.experiments.higher_order and the linear predictor): a dynamic NSL layer is a
higher-order function of its input, a convolution is linear; the released predictor is of degree one
in the contrast."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from nslviz.datasets.photos import grey_photo, photo_crops, photo_region, split_rows
from nslviz.experiments.higher_order import (MODELS, TARGETS, HigherOrderConfig, build_model, contrast_degree,
                                             quadratic_form_by_hand, r_squared, run_higher_order, target_map)
from nslviz.models import build_backbone
from nslviz.nsl import NSConv2d, prepare_nsl_options
from cli import run_in_process
from nslviz.viz.nsl import higher_order_degree_table, higher_order_figure, higher_order_maps_figure


def _random_linear_predictor_layer(channels: int, filters: int, padding: int) -> NSConv2d:
    layer = NSConv2d(channels, filters, 3, padding=padding, bias=True, mode="dynamic_dns", predictor="linear")
    with torch.no_grad():
        for p in (layer.predictor.output_weight, layer.predictor.output_bias, layer.bias):
            p.normal_()
    return layer


@pytest.mark.parametrize("padding", [0, 1])
def test_linear_predictor_layer_is_the_sec6_polynomial(padding):
    """The layer (eq. 1 with M = I + W′X + b′, through the library's dynamic convolution) and the
    polynomial of sec. 6 written out by einsum give the same outputs: a linear part plus WᵀW′XᵀX."""
    torch.manual_seed(0)
    layer = _random_linear_predictor_layer(channels=2, filters=3, padding=padding)
    x = torch.randn(4, 2, 9, 7)
    with torch.no_grad():
        assert torch.allclose(layer(x), quadratic_form_by_hand(layer, x), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("mode", ["dynamic_dns", "dynamic_uns"])
def test_linear_predictor_starts_as_the_plain_convolution(mode):
    """W′ and b′ start at 0, so M = I exactly and the layer is its kernel's convolution; the predictor
    still gets a gradient."""
    torch.manual_seed(0)
    layer = NSConv2d(3, 4, mode=mode, predictor="linear")
    x = torch.randn(2, 3, 8, 8)
    out = layer(x)
    assert torch.allclose(out, F.conv2d(x, layer.weight, padding=1), atol=1e-5)
    out.square().sum().backward()
    assert layer.predictor.output_weight.grad.abs().sum() > 0


def _far_from_identity(layer: NSConv2d, x: torch.Tensor) -> NSConv2d:
    """A dynamic layer whose eval-mode M is far from I: large output weights, and BatchNorm running
    statistics of these inputs (training-mode forwards until they have caught up)."""
    with torch.no_grad():
        layer.predictor.output_weight.mul_(1000)
        for _ in range(60):
            layer.train()(x)
    return layer


def test_contrast_degree_of_each_kind_of_layer():
    """Doubling the input doubles a convolution's output and a released-predictor layer's (its
    predictor normalises each window); a pure quadratic form (b′ = −1 removes the linear part)
    quadruples; a predictor that does not normalise (kind "cnn") is of neither degree."""
    torch.manual_seed(0)
    x = torch.randn(8, 1, 12, 12)
    released = _far_from_identity(build_model("released_predictor"), x)
    unnormalised = _far_from_identity(NSConv2d(1, 1, 3, padding=0, bias=True, mode="dynamic_dns", predictor="cnn"), x)
    with torch.no_grad():
        assert float((released.predict_similarity(x) - 1).abs().mean()) > 0.3       # M is not the identity
    assert contrast_degree(build_model("convolution"), x) == pytest.approx(1, abs=1e-5)
    assert contrast_degree(released, x) == pytest.approx(1, abs=1e-3)
    assert abs(contrast_degree(unnormalised, x) - 1) > 0.05
    quadratic = _random_linear_predictor_layer(1, 1, padding=0)
    with torch.no_grad():
        quadratic.predictor.output_bias.fill_(-1)
    assert contrast_degree(quadratic, x) == pytest.approx(2, abs=1e-4)


def test_targets_are_linear_even_and_quadratic():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 10, 10)
    assert torch.allclose(target_map("sobel", -x), -target_map("sobel", x))
    for name in ("edge_strength", "edge_energy"):
        assert torch.equal(target_map(name, -x), target_map(name, x))         # even: no linear fit
    assert torch.allclose(target_map("edge_energy", 2 * x), 4 * target_map("edge_energy", x))
    assert torch.allclose(target_map("edge_strength", 2 * x), 2 * target_map("edge_strength", x))
    assert torch.allclose(target_map("edge_strength", x).square(), target_map("edge_energy", x), atol=1e-5)
    assert target_map("sobel", x).shape == (4, 1, 8, 8)
    with pytest.raises(ValueError, match="unknown target 'blur'"):
        target_map("blur", x)


def test_photo_crops_are_standardised_and_split_by_rows():
    photo = grey_photo("china.jpg")
    assert photo.shape == (213, 320)
    assert abs(float(photo.mean())) < 1e-4 and float(photo.std()) == pytest.approx(1, abs=1e-4)
    crops = photo_crops("train", 5, 12, seed=3)
    assert crops.shape == (5, 1, 12, 12)
    assert torch.equal(crops, photo_crops("train", 5, 12, seed=3))
    assert not torch.equal(crops, photo_crops("train", 5, 12, seed=4))
    # the test rows of a photo are its bottom third: the largest test crop is that whole band's height
    assert photo_crops("test", 2, 71).shape == (2, 1, 71, 71)
    with pytest.raises(ValueError, match="size must be at most 71"):
        photo_crops("test", 2, 72)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        photo_crops("val", 2, 12)
    assert photo_region(64).shape == (1, 1, 64, 64)
    rows = torch.arange(30.0)[:, None].expand(30, 4)                              # row r holds r
    train, test = split_rows(rows, "train"), split_rows(rows, "test")
    assert torch.equal(torch.cat([train, test]), rows) and train[:, 0].max() < test[:, 0].min()


@pytest.mark.slow
def test_a_convolution_cannot_fit_edge_energy_and_the_linear_predictor_can():
    """The experiment's claim at a small size: R² ≤ 0 for the convolution (no linear function tells X
    from −X), well above it for the quadratic layer; degrees 1 and about 2."""
    result = run_higher_order(steps=800, targets=("edge_energy",), models=("convolution", "linear_predictor"))
    r2, degree = result.r2["edge_energy"], result.degree["edge_energy"]
    assert r2["convolution"] < 0.05
    assert r2["linear_predictor"] > 0.6
    assert degree["convolution"] == pytest.approx(1, abs=1e-4)
    assert degree["linear_predictor"] > 1.8
    assert result.example["outputs"]["edge_energy"]["linear_predictor"].shape == (62, 62)


def test_same_seed_same_numbers_and_figures_draw_what_ran():
    config = HigherOrderConfig(steps=15, train_crops=32, test_crops=16, targets=("sobel", "edge_strength"),
                               models=("convolution", "released_predictor"))
    a, b = run_higher_order(config), run_higher_order(config)
    assert a.r2 == b.r2 and a.degree == b.degree
    assert set(a.summary()["r2"]) == {"sobel", "edge_strength"}
    bars = higher_order_figure(a)
    assert [trace.name for trace in bars.data] == [MODELS["convolution"], MODELS["released_predictor"]]
    assert bars.layout.title.text and bars.layout.xaxis.title.text and bars.layout.yaxis.title.text
    maps = higher_order_maps_figure(a)
    assert len(maps.data) == 2 * 3                                              # 2 targets × (target + 2 models)
    assert maps.layout.title.text and any(axis.title.text == "image column" for axis in maps.select_xaxes())
    degrees = higher_order_degree_table(a)
    assert list(degrees.index) == [TARGETS["sobel"], TARGETS["edge_strength"]]
    assert list(degrees.columns) == [MODELS["convolution"], MODELS["released_predictor"]]
    assert degrees.iloc[0, 0] == f"{a.degree['sobel']['convolution']:.2f}"
    assert degrees.columns.name == "degree in the contrast"


@pytest.mark.parametrize("options", [dict(parametrization="psd"), dict(kernel_shape=True),
                                     dict(predictor="sphere"), dict(stride=2)])
def test_the_polynomial_is_refused_for_layers_it_does_not_describe(options):
    """psd squares M (a cubic), a kernel shape switches taps off, another predictor is not linear."""
    layer = NSConv2d(1, 1, 3, mode="dynamic_dns", **{"predictor": "linear", **options})
    with pytest.raises(ValueError, match="quadratic_form_by_hand writes out"):
        quadratic_form_by_hand(layer, torch.randn(1, 1, 8, 8))


def test_measures_refuse_what_they_cannot_measure():
    with pytest.raises(ValueError, match="same shape"):
        r_squared(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="targets that vary"):
        r_squared(torch.zeros(5), torch.ones(5))
    constant = torch.nn.Conv2d(1, 1, 3)
    with torch.no_grad():
        constant.weight.zero_()
    with pytest.raises(ValueError, match="Conv2d gives the same output"):
        contrast_degree(constant, torch.randn(2, 1, 8, 8))


def test_every_nsl_backbone_takes_the_linear_predictor():
    """cnn10 sets a hidden width for its predictors; the linear one has none and must still build."""
    for name in ("cnn9", "cnn10"):
        backbone = build_backbone(name, nsl="dynamic_dns", nsl_options={"predictor": "linear"})
        assert {layer.predictor.kind for layer in backbone.modules() if isinstance(layer, NSConv2d)} == {"linear"}


@pytest.mark.parametrize("bad, message", [
    (dict(targets=("edge_energy", "blur")), "unknown target 'blur'"),
    (dict(models=("transformer",)), "unknown model 'transformer'"),
    (dict(targets=()), "targets must be a non-empty tuple"),
    (dict(models="convolution"), "models must be a non-empty tuple"),
    (dict(crop=2), "crop must be >= 3"),
    (dict(crop=80), "crop must be at most 71"),
    (dict(example_size=72), "example_size must be at most 71"),
    (dict(test_crops=1), "test_crops must be >= 2"),
    (dict(lr=0), "lr must be > 0"),
])
def test_bad_settings_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        HigherOrderConfig(**bad)


def test_linear_predictor_has_no_hidden_layer_to_size_or_share():
    with pytest.raises(ValueError, match="predictor_hidden=8"):
        NSConv2d(2, 2, mode="dynamic_dns", predictor="linear", predictor_hidden=8)
    with pytest.raises(ValueError, match="no hidden layer to share"):
        prepare_nsl_options("dynamic_dns", dict(predictor="linear", shared_predictor=True))


def test_command_prints_a_table_and_one_json_object():
    result = run_in_process("higher-order", "--steps", "5", "--no-progress", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert set(summary["r2"]) == set(TARGETS) and all(set(v) == set(MODELS) for v in summary["r2"].values())
    assert any(line.startswith(TARGETS["edge_energy"]) for line in lines)
    bad = run_in_process("higher-order", "--crop", "2")
    assert bad.returncode == 2 and "crop must be >= 3" in bad.stderr


def test_a_batch_too_small_for_the_predictors_batchnorm_and_a_fit_that_went_nowhere_are_named():
    """BatchNorm's own "Expected more than 1 value per channel" named no option; a diverged fit was
    reported as a model whose contrast degree cannot be measured, with no word of the learning rate."""
    from nslviz.experiments.higher_order import HigherOrderConfig, run_higher_order
    with pytest.raises(ValueError, match=r"batch_size × \(crop − 2\)² must be at least 2 .* got batch_size=1 with crop=3"):
        HigherOrderConfig(batch_size=1, crop=3)
    HigherOrderConfig(batch_size=2, crop=3)
    with pytest.raises(ValueError, match=r"the released_predictor model of sobel did not learn \(at lr 1000000000.0 its "
                                         r"fit may have diverged; try a smaller lr\)"):
        run_higher_order(lr=1e9, steps=3, crop=5, train_crops=8, test_crops=8, example_size=8,
                         models=("released_predictor",), targets=("sobel",))


def test_edge_targets_are_the_gradient_of_a_ramp():
    """Central differences (x[j+1] − x[j−1]) / 2: on the ramp 0.3·column − 0.4·row, |∇X| = 0.5 and
    |∇X|² = 0.25 at every window."""
    rows, cols = torch.meshgrid(torch.arange(6.0), torch.arange(7.0), indexing="ij")
    ramp = (0.3 * cols - 0.4 * rows)[None, None]
    torch.testing.assert_close(target_map("edge_strength", ramp), torch.full((1, 1, 4, 5), 0.5))
    torch.testing.assert_close(target_map("edge_energy", ramp), torch.full((1, 1, 4, 5), 0.25))
