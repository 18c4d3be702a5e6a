"""NSL sec. 6 (nslviz.experiments.higher_order and the linear predictor): a dynamic NSL layer is a
higher-order function of its input, a convolution is linear; the released predictor is of degree one
in the contrast."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from nslviz.datasets.photos import grey_photo, photo_crops, photo_region
from nslviz.experiments.higher_order import (MODELS, TARGETS, HigherOrderConfig, build_model, contrast_degree,
                                             quadratic_form_by_hand, run_higher_order, target_map)
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


def test_contrast_degree_of_each_kind_of_layer():
    """Doubling the input doubles a convolution's output and a released-predictor layer's (its
    predictor sees X/‖X‖); a pure quadratic form (b′ = −1 removes the linear part) quadruples."""
    torch.manual_seed(0)
    x = torch.randn(8, 1, 12, 12)
    released = build_model("released_predictor")
    with torch.no_grad():
        released.predictor.output_weight.mul_(1000)                 # M visibly away from I
        released.train()(x)                                         # BatchNorm statistics of real inputs
    assert contrast_degree(build_model("convolution"), x) == pytest.approx(1, abs=1e-5)
    assert contrast_degree(released, x) == pytest.approx(1, abs=1e-3)
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
    assert degrees.iloc[0, 0] == round(a.degree["sobel"]["convolution"], 2)


@pytest.mark.parametrize("bad, message", [
    (dict(targets=("edge_energy", "blur")), "unknown target 'blur'"),
    (dict(models=("transformer",)), "unknown model 'transformer'"),
    (dict(targets=()), "targets must be a non-empty tuple"),
    (dict(models="convolution"), "models must be a non-empty tuple"),
    (dict(crop=2), "crop must be >= 3"),
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
