"""Analysis and figures of NSL networks (nslviz.analysis.nsl, nslviz.viz.nsl) on small untrained models."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from nslviz.analysis.nsl import (dynamic_masks, effective_kernels, kernel_shapes, mask_variability,
                                 reestimate_predictor_batchnorm, short_layer_name, static_masks)
from nslviz.models import build_backbone
from nslviz.nsl import NSConv2d, nsl_layers
from nslviz.viz.common import NOTEBOOK_WIDTH
from nslviz.viz.nsl import (dynamic_mask_figure, mask_positions, effective_kernel_figure, mask_variability_figure, static_mask_figure,
                            tap_maps_figure)


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors: see tests/conftest.py


def classifier(nsl: str, **options) -> nn.Module:
    """An untrained cnn9 on 16×16 grey images with a linear head, as the trainer builds it."""
    torch.manual_seed(0)
    backbone = build_backbone("cnn9", in_channels=1, image_size=16, nsl=nsl, final_relu=True, nsl_options=options)
    model = nn.Sequential(backbone, nn.Linear(backbone.feature_dim, 10))
    return model


def axis_titles(fig, axis: str) -> set:
    return {getattr(fig.layout, name).title.text for name in dir(fig.layout) if name.startswith(axis + "axis")}


def test_static_masks_shapes_and_figure():
    model = classifier("static_dns", kernel_shape=True)
    masks = static_masks(model)
    assert len(masks) == 9 and all(m.shape == (3, 3) for m in masks.values())
    assert np.all(next(iter(masks.values())) == 1)                      # identity at initialisation
    assert list(masks)[0] == "0.stages.0.0.conv" and short_layer_name("0.stages.0.0.conv") == "stage 1 · conv 1"
    assert all(d.shape == (3, 3) and set(np.unique(d)) == {1.0} for d in kernel_shapes(model).values())
    fig = static_mask_figure(masks)
    assert len(fig.data) == 9 and "DNS" in fig.layout.title.text
    assert axis_titles(fig, "x") == {"kernel column"} and axis_titles(fig, "y") == {"kernel row", None}
    assert [fig.layout[f"yaxis{n}"].title.text for n in ("", 4, 7)] == ["kernel row"] * 3     # the first column only
    assert fig.layout.coloraxis.cmid == 1.0 and fig.layout.xaxis.dtick == fig.layout.yaxis.dtick == 1
    uns = static_masks(classifier("static_uns"))
    assert all(m.shape == (9, 9) for m in uns.values())
    fig = static_mask_figure(uns)
    assert "UNS" in fig.layout.title.text and axis_titles(fig, "x") == {"input tap t"}
    # drawn as M − I: the identity is 0 everywhere, the diagonal included
    first = next(iter(uns.values()))
    np.testing.assert_allclose(np.asarray(fig.data[0].z), first - np.eye(9), atol=1e-6)
    assert fig.layout.coloraxis.cmid == 0.0 and fig.layout.coloraxis.colorbar.title.text == "M − I value"
    assert static_masks(classifier("dynamic_dns")) == {}
    # four layers fill a 2×2 grid; five leave one cell of a 2×3 grid, whose axes are hidden
    four = static_mask_figure(dict(list(masks.items())[:4]))
    assert (four.layout.width, four.layout.height) == (2 * 300 + 120, 2 * 300 + 80) and four.layout.xaxis4.visible is not False
    five = static_mask_figure(dict(list(masks.items())[:5]))
    assert five.layout.width <= NOTEBOOK_WIDTH                # three columns fit a notebook's output area
    assert five.layout.xaxis6.visible is False and five.layout.yaxis6.visible is False
    assert five.layout.xaxis5.visible is not False


@pytest.mark.parametrize("nsl,shape", [("dynamic_dns", (3, 3)), ("dynamic_uns", (9, 9))])
def test_dynamic_masks_over_images(nsl, shape):
    model = classifier(nsl)
    model.train()
    images = torch.rand(3, 1, 16, 16)
    masks = dynamic_masks(model, images)
    assert model.training                                                # mode restored
    sizes = [16] * 3 + [8] * 3 + [4] * 3
    assert [m.shape for m in masks.values()] == [(3, s, s, *shape) for s in sizes]
    first = next(iter(masks.values()))
    identity = np.ones(shape) if shape == (3, 3) else np.eye(9)
    assert np.abs(first - identity).max() < 0.5                          # M ≈ I at initialisation
    assert first.std(axis=(1, 2)).max() > 0                              # but it does vary over positions
    layer = nsl_layers(model)[list(masks)[0]]                            # same as the layer's own prediction
    model.eval()
    with torch.no_grad():
        expected = layer.predict_similarity(model[0].stem(images)).numpy()
    expected = expected.transpose(0, 2, 3, 1).reshape(first.shape) if shape == (3, 3) \
        else expected.transpose(0, 3, 4, 1, 2)
    np.testing.assert_allclose(first, expected, atol=1e-5)
    one = dynamic_masks(model, images[0], layers=[list(masks)[3]])
    assert list(one) == [list(masks)[3]] and one[list(masks)[3]].shape == (8, 8, *shape)


def test_variability_statistics_and_figures():
    model = classifier("dynamic_dns")
    with torch.no_grad():                                                 # a visibly dynamic predictor
        for layer in nsl_layers(model).values():
            layer.predictor.output_weight.mul_(300)
    images = torch.rand(4, 1, 16, 16)
    masks = dynamic_masks(model, images)
    stats = mask_variability(masks)
    name = list(masks)[0]
    s = stats[name]
    assert s["mean"].shape == (3, 3) and s["position_std"].shape == (3, 3) and s["images"] == 4
    assert s["position_spread"] > 0 and s["image_spread"] > 0 and s["identity_distance"] > 0
    np.testing.assert_allclose(s["position_std"], masks[name].reshape(4, -1, 3, 3).std(axis=1).mean(axis=0),
                               rtol=1e-4)
    np.testing.assert_allclose(s["image_std"], masks[name].reshape(4, -1, 3, 3).std(axis=0).mean(axis=0), rtol=1e-4)
    single = mask_variability({name: masks[name][:1]})
    assert single[name]["image_spread"] == 0

    fig = mask_variability_figure(stats)
    assert len(fig.data) == 3 and list(fig.data[0].x)[:2] == ["stage 1 · conv 1", "stage 1 · conv 2"]
    assert fig.layout.title.text and fig.layout.xaxis.title.text == "layer" and fig.layout.yaxis.title.text

    fig = dynamic_mask_figure(images[0], masks[name][0], name, max_frames=16)
    assert len(fig.frames) == 16 and len(fig.layout.sliders[0].steps) == 16 and fig.layout.width <= NOTEBOOK_WIDTH
    assert [tuple(map(int, s.label.strip("()").split(", "))) for s in fig.layout.sliders[0].steps] == \
        mask_positions(16, 16, max_frames=16)                              # the positions a figure can cross-check
    assert fig.frames[0].traces == (1, 2) and np.asarray(fig.frames[3].data[1].z).shape == (3, 3)
    assert "stage 1 · conv 1" in fig.layout.title.text
    assert fig.layout.xaxis.title.text == "image column (pixels)" and fig.layout.xaxis2.title.text == "kernel column"
    deep = list(masks)[8]                                                 # 4×4 positions: all of them
    assert len(dynamic_mask_figure(images[0], masks[deep][0], deep).frames) == 16

    fig = tap_maps_figure(masks[name][1], name)
    assert len(fig.data) == 9 and np.asarray(fig.data[0].z).shape == (16, 16) and fig.layout.width <= NOTEBOOK_WIDTH
    assert axis_titles(fig, "x") == {"output column", None} and axis_titles(fig, "y") == {"output row", None}
    assert [fig.layout[f"xaxis{n}"].title.text for n in (7, 8, 9)] == ["output column"] * 3   # the bottom row
    assert [fig.layout[f"yaxis{n}"].title.text for n in (1, 4, 7)] == ["output row"] * 3      # the left column

    uns = dynamic_masks(classifier("dynamic_uns"), images[:1])
    uname = list(uns)[-1]
    fig = dynamic_mask_figure(images[0, 0], uns[uname][0], uname)
    assert fig.layout.xaxis2.title.text == "input tap t" and np.asarray(fig.frames[0].data[1].z).shape == (9, 9)
    # a UNS matrix is drawn as M − I, like the static figure: white (0) is the identity, the diagonal included
    position = [int(v) for v in fig.frames[0].name.strip("()").split(", ")]
    np.testing.assert_allclose(np.asarray(fig.frames[0].data[1].z), uns[uname][0][position[0], position[1]] - np.eye(9),
                               atol=1e-6)
    assert fig.layout.coloraxis.cmid == 0.0 and fig.layout.coloraxis.colorbar.title.text == "M − I value"


def test_rgb_image_and_errors():
    model = build_backbone("cnn9", image_size=16, nsl="dynamic_dns")
    image = torch.rand(3, 16, 16)
    masks = dynamic_masks(model, image)
    name = list(masks)[0]
    fig = dynamic_mask_figure(image, masks[name], name)
    assert fig.data[0].type == "image"
    with pytest.raises(ValueError, match="no dynamic NSL layer"):
        dynamic_masks(build_backbone("cnn9", image_size=16, nsl="static_dns"), image)
    with pytest.raises(ValueError, match="no dynamic NSL layer named 'nope'"):
        dynamic_masks(model, image, layers=["nope"])
    with pytest.raises(ValueError, match="images must be"):
        dynamic_masks(model, torch.rand(16, 16))
    with pytest.raises(ValueError, match="with a batch of images"):
        mask_variability({name: masks[name]})
    with pytest.raises(ValueError, match="DNS masks"):
        tap_maps_figure(np.zeros((4, 4, 9, 9)), "x")
    with pytest.raises(ValueError, match="no static masks"):
        static_mask_figure({})


@pytest.mark.parametrize("mode", ["dynamic_dns", "dynamic_uns"])
def test_effective_kernel_applied_to_the_patch_is_the_layer_output(mode):
    """M(p)ᵀW at position p, applied to the patch X(p) as a plain kernel, gives the layer's output at p."""
    torch.manual_seed(3)
    layer = NSConv2d(2, 3, mode=mode).eval()
    with torch.no_grad():
        layer.predictor.output_weight.mul_(300)
    x = torch.randn(1, 2, 6, 6)
    with torch.no_grad():
        out = layer(x)[0]                                                       # (F, 6, 6)
        m = layer.predict_similarity(x)[0]
    m = m.permute(1, 2, 0).reshape(6, 6, 3, 3) if layer.diagonal else m.permute(2, 3, 0, 1)
    padded = torch.nn.functional.pad(x[0], (1, 1, 1, 1))
    for i, j in [(0, 0), (2, 3), (5, 4)]:
        kernels = effective_kernels(layer, m[i, j].numpy())                     # (F, C, 3, 3)
        expected = np.einsum("fcab,cab->f", kernels, padded[:, i:i + 3, j:j + 3].numpy())
        np.testing.assert_allclose(expected, out[:, i, j].numpy(), rtol=1e-4, atol=1e-5)
    fig = effective_kernel_figure(x[0, :1], kernels[0, 0], kernels[:2, 0], [(0, 0), (5, 4)], "conv")
    assert fig.layout.title.text and len(fig.data) == 2 + 2 * 2
    markers = [t.marker.color for t in fig.data if t.type == "scatter"]        # each title in its marker's colour
    assert [(a.text, a.font.color) for a in fig.layout.annotations[2:4]] == \
        [("● M(p)ᵀW at (0, 0)", markers[0]), ("● M(p)ᵀW at (5, 4)", markers[1])]
    four = effective_kernel_figure(x[0, :1], kernels[0, 0], np.repeat(kernels[:1, 0], 4, axis=0),
                                   [(0, 0), (5, 4), (1, 1), (2, 2)], "conv")
    assert four.layout.width <= NOTEBOOK_WIDTH              # four positions fit a notebook's output area: on a 2nd row
    assert [a.text for a in four.layout.annotations if a.text.startswith("●")] == \
        ["● M(p)ᵀW at (0, 0)", "● M(p)ᵀW at (5, 4)", "● M(p)ᵀW at (1, 1)", "● M(p)ᵀW at (2, 2)"]
    assert four.layout.yaxis2.title.text == four.layout.yaxis3.title.text == "kernel row"   # W, first kernel
    assert four.layout.yaxis4.title.text is None
    with pytest.raises(ValueError, match="1 to 4 positions .*got 5"):
        effective_kernel_figure(x[0, :1], kernels[0, 0], np.repeat(kernels[:1, 0], 5, axis=0), [(0, 0)] * 5, "conv")
    with pytest.raises(ValueError, match="positions"):
        effective_kernel_figure(x[0, :1], kernels[0, 0], kernels[:1, 0], [(0, 0), (5, 4)], "conv")


def test_reestimating_predictor_batchnorm_makes_eval_mode_predict_as_training_mode():
    """Stale running statistics (as after a short run) make the eval-mode M differ from the training-mode
    one; re-estimating them on the same images brings eval mode back to what training mode predicts."""
    model = classifier("dynamic_dns")
    with torch.no_grad():
        for layer in nsl_layers(model).values():
            layer.predictor.output_weight.mul_(100)                              # the predictor moved on
    images = torch.rand(64, 1, 16, 16)
    layer = next(iter(nsl_layers(model).values()))
    with torch.no_grad():
        inputs = model.eval()[0].stem(images)                                    # the first NSL layer's input
        trained = layer.train().predict_similarity(inputs)                       # batch statistics
        stale = layer.eval().predict_similarity(inputs)                          # running statistics
    assert (stale - trained).abs().mean() > 0.1
    running = {name: buffer.clone() for name, buffer in model.named_buffers()}
    assert reestimate_predictor_batchnorm(model, images, batch_size=64) == 2 * 9
    assert not model.training
    with torch.no_grad():
        repaired = layer.predict_similarity(inputs)
    assert (repaired - trained).abs().mean() < 0.05 * (stale - trained).abs().mean()
    for name, buffer in model.named_buffers():                                   # the backbone's own BN untouched
        if ".predictor." not in name:
            torch.testing.assert_close(buffer, running[name])
    with pytest.raises(ValueError, match="no dynamic NSL predictor"):
        reestimate_predictor_batchnorm(classifier("static_dns"), images)


def test_dynamic_mask_window_follows_the_layers_stride_and_kernel():
    """The window is drawn on the layer's input grid: a stride-2 3×3 layer on a 16×16 image has an 8×8
    output, and output (2, 3) reads input rows 3..5 and columns 5..7 (padding 1), not a 6-pixel block."""
    image = torch.rand(1, 16, 16)
    layer = NSConv2d(1, 2, stride=2, mode="dynamic_dns").eval()
    masks = dynamic_masks(nn.Sequential(layer), image)["0"]                 # (8, 8, 3, 3)
    fig = dynamic_mask_figure(image, masks, "0", max_frames=64, stride=layer.stride, padding=layer.padding)
    frame = next(f for f in fig.frames if f.name == "(2, 3)")
    xs, ys = frame.data[0].x, frame.data[0].y
    assert (min(v for v in ys if v is not None), max(v for v in ys[:5])) == (2.5, 5.5)
    assert (min(v for v in xs[:5]), max(v for v in xs[:5])) == (4.5, 7.5)
    assert (xs[-1], ys[-1]) == (6.0, 4.0)                                  # the centre tap: input (4, 6)
    assert fig.layout.annotations[0].text == "input image and the layer's 3×3 window"
    # the slider starts near the centre, and the figure shows that frame before the slider is touched
    active = fig.layout.sliders[0].active
    assert fig.layout.sliders[0].steps[active].label == "(3, 3)" and fig.frames[active].name == "(3, 3)"
    assert fig.data[1].x == fig.frames[active].data[0].x

    uns = NSConv2d(1, 2, kernel_size=5, padding=2, mode="dynamic_uns").eval()
    matrices = dynamic_masks(nn.Sequential(uns), image)["0"]               # (16, 16, 25, 25)
    fig = dynamic_mask_figure(image, matrices, "0", max_frames=4)
    assert fig.data[1].name == "5×5 window" and max(fig.data[1].x[:5]) - min(fig.data[1].x[:5]) == 5
    with pytest.raises(ValueError, match="stride"):
        dynamic_mask_figure(image, masks, "0", stride=0)


@pytest.mark.parametrize("height,width,frames", [(16, 16, 64), (2, 64, 16), (4, 100, 10), (1, 64, 16), (3, 3, 64)])
def test_mask_positions_stay_within_the_map_and_the_frame_budget(height, width, frames):
    positions = mask_positions(height, width, frames)
    assert 1 <= len(positions) <= frames and len(set(positions)) == len(positions)
    assert all(0 <= i < height and 0 <= j < width for i, j in positions)

