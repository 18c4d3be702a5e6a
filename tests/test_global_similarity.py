"""Static global neural similarity (nslviz.nsl.GlobalSimilarityConv2d, NSL Appendix B.1 eq. 8-9):
the layer against eq. (8) written with explicit matrices in float64, its identity start, the diagonal
case as a spatial mask, how it differs from local similarity (NSConv2d), and its errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nslviz.nsl import GNS_STRUCTURES, GlobalSimilarityConv2d, NSConv2d, similarity_parameters

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors: see tests/conftest.py


def convolution_matrix(weight, height, width, circular):
    """W_Gᵀ of eq. (8): the (F·N, C·N) matrix of a stride-1, dimension-preserving k×k convolution,
    written entry by entry (rows: filter-major output positions; columns: channel-major input ones)."""
    filters, channels, k, _ = weight.shape
    n, r = height * width, k // 2
    matrix = torch.zeros(filters * n, channels * n, dtype=weight.dtype)
    for f in range(filters):
        for i in range(height):
            for j in range(width):
                for c in range(channels):
                    for dy in range(k):
                        for dx in range(k):
                            y, x = i + dy - r, j + dx - r
                            if circular:
                                y, x = y % height, x % width
                            elif not (0 <= y < height and 0 <= x < width):
                                continue                                  # a zero of the padding
                            matrix[f * n + i * width + j, c * n + y * width + x] += weight[f, c, dy, dx]
    return matrix


def eq8(layer, x):
    """F = W_Gᵀ M_G X_F with M_G = I_C ⊗ M_G^s (eq. 9), one sample at a time, float64."""
    height, width = layer.size
    w_g = convolution_matrix(layer.weight.double(), height, width, layer.padding_mode == "circular")
    m_g = torch.kron(torch.eye(layer.in_channels, dtype=torch.float64), layer.similarity_matrix().double())
    return torch.stack([(w_g @ m_g @ sample.double().flatten()).view(-1, height, width) for sample in x])


def perturbed(layer, seed=0):
    """The layer with M_G^s moved away from I (it starts there)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        layer.similarity.add_(0.5 * torch.randn_like(layer.similarity))
    return layer


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize("structure", GNS_STRUCTURES)
def test_layer_is_equation_8(structure, padding_mode):
    torch.manual_seed(1)
    layer = perturbed(GlobalSimilarityConv2d(3, 4, (5, 6), structure=structure, padding_mode=padding_mode))
    x = torch.randn(2, 3, 5, 6)
    out = layer(x)
    assert out.shape == (2, 4, 5, 6)
    torch.testing.assert_close(out.double(), eq8(layer, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("structure", GNS_STRUCTURES)
def test_starts_as_the_plain_convolution(structure):
    torch.manual_seed(2)
    layer = GlobalSimilarityConv2d(3, 4, 6, kernel_size=5, bias=True, structure=structure)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=2))
    torch.testing.assert_close(layer.similarity_matrix(), torch.eye(36))


def test_diagonal_is_a_spatial_mask_on_the_input_map():
    """Diagonal M_G^s: the Hadamard product of the map with one (H, W) mask, then the convolution."""
    torch.manual_seed(3)
    layer = perturbed(GlobalSimilarityConv2d(3, 4, (5, 6)))
    x = torch.randn(2, 3, 5, 6)
    mask = layer.similarity.detach()
    assert mask.shape == (5, 6)
    torch.testing.assert_close(layer(x), F.conv2d(x * mask, layer.weight, padding=1))
    # a mask that is 0 on the left half: the output there reads only the right half, through the kernel
    with torch.no_grad():
        layer.similarity.fill_(1.0)
        layer.similarity[:, :3] = 0.0
    out = layer(x)
    torch.testing.assert_close(out[..., :2], torch.zeros_like(out[..., :2]))


def test_local_similarity_is_shift_equivariant_and_global_is_not():
    """LNS's diagonal M weights the taps of every window (the layer is still a convolution: shift the
    input and the output shifts); GNS's diagonal M_G^s weights positions of the map (it is not)."""
    torch.manual_seed(4)
    local = NSConv2d(2, 3, mode="static_dns")
    with torch.no_grad():
        local.similarity.normal_()
    x = torch.randn(1, 2, 12, 12)
    x[..., :3, :], x[..., -3:, :], x[..., :, :3], x[..., :, -3:] = 0, 0, 0, 0     # room to shift inside the map
    shifted = torch.roll(x, shifts=(2, 1), dims=(2, 3))
    torch.testing.assert_close(local(shifted), torch.roll(local(x), (2, 1), (2, 3)))          # the layer itself
    global_ = GlobalSimilarityConv2d(2, 3, 12)
    with torch.no_grad():
        global_.similarity.normal_()
        global_.weight.copy_(local.weight)
    assert not torch.allclose(global_(shifted), torch.roll(global_(x), (2, 1), (2, 3)), atol=1e-3)


def test_local_and_global_agree_on_a_one_by_one_map():
    """On a 1×1 map only the centre tap of each window lies inside the map: a = m_centre makes the
    diagonal local and global similarities the same layer (the one case Appendix B calls equivalent)."""
    torch.manual_seed(5)
    local = NSConv2d(4, 3, mode="static_dns")
    global_ = GlobalSimilarityConv2d(4, 3, 1)
    with torch.no_grad():
        local.similarity.normal_()
        global_.weight.copy_(local.weight)
        global_.similarity.fill_(float(local.similarity[4]))      # the centre of the 3×3 mask
    x = torch.randn(5, 4, 1, 1)
    torch.testing.assert_close(global_(x), local(x))


def test_full_similarity_mixes_positions_and_learns():
    torch.manual_seed(6)
    layer = GlobalSimilarityConv2d(2, 2, (3, 4), structure="full")
    assert layer.similarity.shape == (12, 12)
    with torch.no_grad():                        # a permutation: every position reads another one
        layer.similarity.copy_(torch.eye(12)[torch.randperm(12)])
    x = torch.randn(1, 2, 3, 4)
    mixed = layer.mix_positions(x)
    torch.testing.assert_close(mixed.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)
    layer(x).square().sum().backward()
    assert layer.similarity.grad.abs().sum() > 0 and layer.weight.grad.abs().sum() > 0
    assert any(p is layer.similarity for p in similarity_parameters(torch.nn.Sequential(layer)))


def test_sizes_as_numpy_integers_or_nn_conv2d_pairs():
    layer = GlobalSimilarityConv2d(2, 3, np.int64(4), kernel_size=(3, 3))
    assert layer.size == (4, 4) and type(layer.size[0]) is int and layer.kernel_size == 3
    assert layer(torch.randn(1, 2, 4, 4)).shape == (1, 3, 4, 4)


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="unknown structure of GlobalSimilarityConv2d 'dense'"):
        GlobalSimilarityConv2d(2, 2, 4, structure="dense")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        GlobalSimilarityConv2d(2, 2, 4, kernel_size=4)
    with pytest.raises(ValueError, match="size must be the input map's \\(height, width\\)"):
        GlobalSimilarityConv2d(2, 2, (4, 4, 4))
    with pytest.raises(ValueError, match="size width must be"):
        GlobalSimilarityConv2d(2, 2, (4, 0))
    with pytest.raises(ValueError, match="size height must be an integer, got 4.0"):    # not "float is not iterable"
        GlobalSimilarityConv2d(2, 2, 4.0)
    with pytest.raises(ValueError, match="unknown padding_mode 'reflect'"):
        GlobalSimilarityConv2d(2, 2, 4, padding_mode="reflect")
    with pytest.raises(ValueError, match="kernel_size 5 needs a map of at least 2×2"):
        GlobalSimilarityConv2d(2, 2, 1, kernel_size=5, padding_mode="circular")
    layer = GlobalSimilarityConv2d(2, 3, (4, 5))
    with pytest.raises(ValueError, match="expects \\(batch, 2, 4, 5\\).*got \\(1, 2, 5, 4\\)"):
        layer(torch.randn(1, 2, 5, 4))
    with pytest.raises(ValueError, match="expects \\(batch, 2, 4, 5\\)"):
        layer(torch.randn(2, 4, 5))


# -- the teaching comparison (notebook 07): one kernel, a local and a global diagonal similarity ---------------

def test_local_and_global_similarity_outputs():
    from nslviz.analysis.nsl import local_and_global_similarity

    rng = np.random.default_rng(0)
    image, kernel = rng.random((6, 7)), rng.standard_normal((3, 3))
    local_mask, global_mask = rng.standard_normal((3, 3)), rng.random((6, 7))
    result = local_and_global_similarity(image, kernel, local_mask, global_mask)
    conv = lambda x, w: F.conv2d(torch.tensor(x, dtype=torch.float32)[None, None],           # noqa: E731
                                 torch.tensor(w, dtype=torch.float32)[None, None], padding=1)[0, 0].numpy()
    np.testing.assert_allclose(result["plain"], conv(image, kernel), atol=1e-6)
    np.testing.assert_allclose(result["local"], conv(image, kernel * local_mask), atol=1e-6)   # MᵀW everywhere
    np.testing.assert_allclose(result["global"], conv(image * global_mask, kernel), atol=1e-6)  # W ∗ (mask ⊙ X)
    np.testing.assert_allclose(result["local_kernel"], kernel * local_mask, atol=1e-6)
    assert {name: a.shape for name, a in result.items()} == {
        "image": (6, 7), "plain": (6, 7), "local": (6, 7), "global": (6, 7), "local_mask": (3, 3),
        "global_mask": (6, 7), "local_kernel": (3, 3)}
    with pytest.raises(ValueError, match="global_mask must be shape \\(6, 7\\), got shape \\(7, 6\\)"):
        local_and_global_similarity(image, kernel, local_mask, global_mask.T)
    with pytest.raises(ValueError, match="local_mask must be shape \\(3, 3\\)"):
        local_and_global_similarity(image, kernel, np.ones((5, 5)), global_mask)
    with pytest.raises(ValueError, match="kernel must be square with an odd size, got shape \\(2, 2\\)"):
        local_and_global_similarity(image, np.ones((2, 2)), local_mask, global_mask)
    with pytest.raises(ValueError, match="image must be a 2-D array, got shape \\(1, 6, 7\\)"):
        local_and_global_similarity(image[None], kernel, local_mask, global_mask)


def test_local_global_figure():
    from nslviz.analysis.nsl import local_and_global_similarity
    from nslviz.viz.common import NOTEBOOK_WIDTH
    from nslviz.viz.nsl import local_global_figure

    rng = np.random.default_rng(1)
    result = local_and_global_similarity(rng.random((8, 9)), np.full((3, 3), 1 / 9),
                                         [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], rng.random((8, 9)))
    fig = local_global_figure(result)
    assert "Local against global similarity" in fig.layout.title.text and fig.layout.width <= NOTEBOOK_WIDTH
    heatmaps = {trace.name: trace for trace in fig.data}
    assert set(heatmaps) == {"input", "plain output", "local output", "global output", "local mask", "global mask"}
    np.testing.assert_allclose(heatmaps["local mask"].customdata, result["local_kernel"])   # the kernel, on hover
    assert heatmaps["local mask"].zmid == 1 and heatmaps["global mask"].zmid == 1          # white = plain conv
    # the local mask prints its values; the global one reads off a colour bar whose 1 is the plain convolution
    assert heatmaps["local mask"].texttemplate and not heatmaps["local mask"].showscale
    assert heatmaps["global mask"].showscale and "1: plain" in heatmaps["global mask"].colorbar.ticktext
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == "input X" and titles[3] == "plain convolution WᵀX"
    assert fig.layout.xaxis2.title.text == "kernel column" and fig.layout.yaxis.title.text == "image row"
    with pytest.raises(ValueError, match="result lacks \\['local_kernel'\\]"):
        local_global_figure({k: v for k, v in result.items() if k != "local_kernel"})


def test_circular_padding_may_wrap_the_whole_map():
    """A k×k circular convolution wraps k // 2 pixels: as many as the map has is allowed, one more is not."""
    layer = GlobalSimilarityConv2d(1, 1, size=(2, 3), kernel_size=5, padding_mode="circular")
    assert layer(torch.randn(1, 1, 2, 3)).shape == (1, 1, 2, 3)
    with pytest.raises(ValueError, match="wraps at most the map's size"):
        GlobalSimilarityConv2d(1, 1, size=(2, 3), kernel_size=7, padding_mode="circular")
