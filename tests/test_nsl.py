"""NSL layers (nslviz.nsl): folding, identity, gradients, the vectorised dynamic convolution against a
per-position reference, SphereConv, regularisers, shared predictors, global similarity, errors."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nslviz.nsl import (NSL_MODES, NSL_OPTIONS, PARAMETRIZATIONS, GlobalSimilarityAttention, NSConv2d,
                        SharedSimilarityPredictor, SphereConv2d, choose_dynamic_impl, dynamic_similarity_conv2d, fold_static_nsl,
                        make_conv, nsl_layers, nsl_regularization, prepare_nsl_options, similarity_parameters,
                        sphere_conv2d)

STATIC = ("static_dns", "static_uns")


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors: see tests/conftest.py


DYNAMIC = ("dynamic_dns", "dynamic_uns")


def reference_dynamic_conv(x, weight, similarity, stride, padding):
    """Slow ground truth: an explicit loop over samples, output positions, filters, taps."""
    batch, channels, height, width = x.shape
    filters, _, k, _ = weight.shape
    taps = k * k
    diagonal = similarity.dim() == 4
    out_h, out_w = similarity.shape[-2:]
    padded = F.pad(x, (padding,) * 4)
    out = torch.zeros(batch, filters, out_h, out_w, dtype=x.dtype)
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                patch = padded[b, :, i * stride:i * stride + k, j * stride:j * stride + k].reshape(channels, taps)
                if diagonal:
                    matrix = torch.diag(similarity[b, :, i, j])
                else:
                    matrix = similarity[b, :, :, i, j]
                mixed = patch @ matrix.t()                         # [c, s] = Σ_t M_st X(c, t)
                for f in range(filters):
                    out[b, f, i, j] = (weight[f].reshape(channels, taps) * mixed).sum()
    return out


def perturb_static(layer: NSConv2d, scale: float = 0.3, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.similarity.add_(scale * torch.randn(layer.similarity.shape, generator=generator))


def identity_predictor(layer: NSConv2d) -> None:
    """Zero the predictor's output conv: the prediction is exactly 0 (BN of a constant 0 with β = 0
    is 0 in train and eval mode), so M = I exactly."""
    with torch.no_grad():
        layer.predictor.weights()[1].zero_()


# -- folding --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", STATIC)
@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
@pytest.mark.parametrize("kernel_shape", [False, True])
def test_static_fold_equals_layer(mode, parametrization, kernel_shape):
    torch.manual_seed(0)
    layer = NSConv2d(3, 5, stride=2, bias=True, mode=mode, parametrization=parametrization, kernel_shape=kernel_shape)
    perturb_static(layer)
    if kernel_shape:
        with torch.no_grad():
            layer.shape_scores[[0, 4]] = 0.1            # two taps switched off
    x = torch.randn(2, 3, 9, 8)
    conv = layer.to_conv2d()
    assert type(conv) is nn.Conv2d and conv.stride == (2, 2) and conv.bias is not None
    torch.testing.assert_close(conv(x), layer(x), atol=1e-5, rtol=1e-5)
    if kernel_shape:                   # D masks the kernel taps s of W: changing them changes nothing
        before = layer(x)
        with torch.no_grad():
            layer.weight.view(5, 3, 9)[:, :, [0, 4]] += 1.0
        torch.testing.assert_close(layer(x), before)
        if mode == "static_dns":          # DNS: the folded kernel itself has the learned shape
            assert conv.weight.flatten(2)[:, :, [0, 4]].abs().max() == 0
            assert conv.weight.flatten(2)[:, :, [1, 8]].abs().min() > 0


@pytest.mark.parametrize("mode", STATIC)
@pytest.mark.parametrize("kernel_shape", [False, True])
def test_static_layer_is_equation_2_with_the_block_diagonal_matrix(mode, kernel_shape):
    """Float64, written out as the paper does: every output is Wᵀ diag(M_s, …, M_s) X (eq. 1-2) for the
    kernel W and the patch X flattened channel by channel (C blocks of HV), with M_s = D·R (eq. 4) when
    the kernel shape is learned, D = diag(1[D_r > α])."""
    torch.manual_seed(0)
    layer = NSConv2d(2, 3, stride=2, bias=True, mode=mode, kernel_shape=kernel_shape).double()
    perturb_static(layer)
    with torch.no_grad():
        layer.bias.normal_()
        if kernel_shape:
            layer.shape_scores[[1, 5]] = 0.2                         # below the threshold 0.5: two taps off
    raw = layer.similarity.detach()
    r = torch.diag(raw) if mode == "static_dns" else raw            # R (9, 9) [s, t]
    kept = layer.shape_scores.detach() > layer.shape_threshold if kernel_shape else torch.ones(9, dtype=torch.bool)
    d = torch.diag(kept.double())                                     # D (9, 9), binary diagonal
    m = torch.block_diag(*[d @ r] * 2)                                # eq. 2: C = 2 equal blocks M_s = D·R
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64)
    padded = F.pad(x, (1, 1, 1, 1))
    out = layer(x)
    for b in range(2):
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                patch = padded[b, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].reshape(-1)      # X: channel by channel
                for f in range(3):
                    expected = layer.weight[f].reshape(-1) @ m @ patch + layer.bias[f]
                    torch.testing.assert_close(out[b, f, i, j], expected.detach(), rtol=1e-12, atol=1e-12)


def test_fold_static_nsl_replaces_static_layers_only():
    torch.manual_seed(0)
    model = nn.Sequential(make_conv("static_uns", 3, 4), nn.ReLU(), make_conv("dynamic_dns", 4, 4),
                          nn.Sequential(make_conv("static_dns", 4, 2)))
    perturb_static(model[0])
    perturb_static(model[3][0])
    model.eval()
    folded = fold_static_nsl(model)
    assert type(folded[0]) is nn.Conv2d and type(folded[3][0]) is nn.Conv2d
    assert isinstance(folded[2], NSConv2d) and isinstance(model[0], NSConv2d)      # original untouched
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)


def test_fold_static_nsl_on_a_bare_layer():
    """Called on a layer, not a model: a static NSConv2d comes back as the equal plain nn.Conv2d
    (exactly that type), the original untouched; a dynamic one as a copy, still an NSConv2d."""
    torch.manual_seed(0)
    layer = NSConv2d(3, 4, mode="static_dns", bias=True)
    perturb_static(layer)
    x = torch.randn(2, 3, 6, 6)
    folded = fold_static_nsl(layer)
    assert type(folded) is nn.Conv2d, f"a bare static layer folded to {type(folded).__name__}, not nn.Conv2d"
    assert type(layer) is NSConv2d and folded.bias is not None
    torch.testing.assert_close(folded(x), layer(x), atol=1e-5, rtol=1e-5)
    assert folded.weight.requires_grad and folded.bias.requires_grad
    layer.weight.requires_grad_(False)                              # M still trains: so does MᵀW
    assert fold_static_nsl(layer).weight.requires_grad
    for name, parameter in layer.named_parameters():                # W and M frozen: MᵀW frozen
        parameter.requires_grad_(name == "bias")
    frozen = fold_static_nsl(layer)
    assert not frozen.weight.requires_grad and frozen.bias.requires_grad
    dynamic = NSConv2d(3, 4, mode="dynamic_dns").eval()
    copied = fold_static_nsl(dynamic)
    assert type(copied) is NSConv2d and copied is not dynamic and copied.mode == "dynamic_dns"
    torch.testing.assert_close(copied(x), dynamic(x))


# -- identity: every mode equals a plain convolution when M = I, forward and backward ----------------

@pytest.mark.parametrize("mode", NSL_MODES[1:])
@pytest.mark.parametrize("options", [{}, {"parametrization": "symmetric"}, {"parametrization": "psd"},
                                     {"kernel_shape": True}])
@pytest.mark.parametrize("stride", [1, 2])
def test_identity_similarity_equals_plain_conv(mode, options, stride):
    torch.manual_seed(1)
    layer = NSConv2d(4, 6, stride=stride, mode=mode, **options)
    if layer.dynamic:
        identity_predictor(layer)
    conv = nn.Conv2d(4, 6, 3, stride=stride, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(layer.weight)
    for train in (True, False):
        layer.train(train)
        x1 = torch.randn(3, 4, 7, 7, requires_grad=True)
        x2 = x1.detach().clone().requires_grad_()
        out, ref = layer(x1), conv(x2)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        upstream = torch.randn_like(ref)
        (out * upstream).sum().backward()
        (ref * upstream).sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(layer.weight.grad, conv.weight.grad, atol=1e-4, rtol=1e-5)
        layer.zero_grad(), conv.zero_grad()


def test_make_conv_none_is_a_plain_conv():
    conv = make_conv("none", 3, 8, stride=2, padding=1, dns_init="ones")
    assert type(conv) is nn.Conv2d and conv.stride == (2, 2) and conv.bias is None


def test_official_dns_init_pattern():
    layer = NSConv2d(2, 2, mode="static_dns", dns_init="official")
    assert layer.static_similarity().tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert NSConv2d(2, 2, mode="static_dns").static_similarity().tolist() == [1.0] * 9


# -- gradients reach M, D_r (straight-through), the predictor and W ---------------------------------

@pytest.mark.parametrize("mode", NSL_MODES[1:])
def test_gradients_reach_every_parameter(mode):
    torch.manual_seed(2)
    layer = NSConv2d(3, 4, mode=mode, kernel_shape=True)
    layer(torch.randn(2, 3, 6, 6)).square().mean().backward()
    named = dict(layer.named_parameters())
    expected = {"weight", "shape_scores"} | ({"predictor.hidden_weight", "predictor.output_weight"}
                                            if layer.dynamic else {"similarity"})
    assert expected <= set(named)
    for name, parameter in named.items():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("mode", ["static_uns", "dynamic_dns"])
def test_kernel_shape_is_straight_through(mode):
    """∂L/∂D_r equals ∂L/∂D of the same network with D as an explicit tensor (NSL eq. 5)."""
    torch.manual_seed(3)
    layer = NSConv2d(3, 4, mode=mode, kernel_shape=True).eval()
    with torch.no_grad():
        layer.shape_scores[2] = -1.0                           # tap 2 off
    x = torch.randn(2, 3, 5, 5)
    layer(x).sin().sum().backward()
    mask = torch.ones(9)
    mask[2] = 0
    mask.requires_grad_()
    if layer.dynamic:
        raw = layer.predictor(x) + 1                           # (B, 9, H, W)
        similarity = raw * mask.view(1, 9, 1, 1)
        out = dynamic_similarity_conv2d(x, layer.weight, similarity)
    else:
        similarity = layer.similarity * mask.view(9, 1)
        kernel = torch.einsum("fcs,st->fct", layer.weight.flatten(2), similarity).view_as(layer.weight)
        out = F.conv2d(x, kernel, padding=1)
    out.sin().sum().backward()
    torch.testing.assert_close(layer.shape_scores.grad, mask.grad, atol=1e-5, rtol=1e-4)
    assert layer.kernel_shape_mask().tolist() == mask.detach().tolist()


# -- the vectorised dynamic convolution equals the per-position reference ---------------------------

def dynamic_conv_inputs(generator, shape, filters, diagonal, stride, padding):
    """Float64 x (B, C, H, W), a 3×3 weight (F, C, 3, 3) and one similarity per sample and output position:
    DNS (B, 9, H', W') or UNS (B, 9, 9, H', W')."""
    batch, channels, height, width = shape
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    weight = torch.randn(filters, channels, 3, 3, generator=generator, dtype=torch.float64)
    out_h, out_w = (height + 2 * padding - 3) // stride + 1, (width + 2 * padding - 3) // stride + 1
    taps = (9,) if diagonal else (9, 9)
    return x, weight, torch.randn(batch, *taps, out_h, out_w, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("diagonal", [True, False])
@pytest.mark.parametrize("impl", ["auto", "taps", "taps_recompute", "patches"])
@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (1, 0), (2, 2)])
def test_dynamic_conv_matches_per_position_reference(diagonal, impl, stride, padding):
    if impl.startswith("taps") and not diagonal:
        pytest.skip("taps computes DNS only")
    recompute = impl == "taps_recompute"
    impl = "taps" if recompute else impl
    generator = torch.Generator().manual_seed(4)
    x, weight, similarity = dynamic_conv_inputs(generator, (2, 3, 6, 5), 4, diagonal, stride, padding)
    inputs = [t.clone().requires_grad_() for t in (x, weight, similarity)]
    out = dynamic_similarity_conv2d(*inputs[:2], inputs[2], stride=stride, padding=padding, impl=impl,
                                    recompute=recompute)
    ref_inputs = [t.clone().requires_grad_() for t in (x, weight, similarity)]
    ref = reference_dynamic_conv(*ref_inputs, stride, padding)
    torch.testing.assert_close(out, ref)
    upstream = torch.randn(ref.shape, generator=generator, dtype=torch.float64)
    (out * upstream).sum().backward()
    (ref * upstream).sum().backward()
    for mine, theirs in zip(inputs, ref_inputs):
        torch.testing.assert_close(mine.grad, theirs.grad)


def unfolded_dynamic_conv(x, weight, similarity, stride, padding):
    """The same sum from F.unfold and einsums: torch's own operations only, which every torch.func
    transform handles (the reference above writes into a buffer element by element, which vmap cannot)."""
    filters, channels, k, _ = weight.shape
    out_h, out_w = similarity.shape[-2:]
    patches = F.unfold(x, k, padding=padding, stride=stride).view(x.shape[0], channels, k * k, out_h, out_w)
    if similarity.dim() == 4:
        mixed = patches * similarity.unsqueeze(1)                              # m_s(p) X_c(p + o_s)
    else:
        mixed = torch.einsum("bstij,bctij->bcsij", similarity, patches)        # Σ_t M_st(p) X_c(p + o_t)
    return torch.einsum("fcs,bcsij->bfij", weight.reshape(filters, channels, k * k), mixed)


@pytest.mark.filterwarnings("error:There is a performance drop")   # vmap's per-sample fallback: our rules cover it
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")   # inside torch.func.hessian
@pytest.mark.parametrize("diagonal,impl", [(True, "taps"), (True, "taps_recompute"), (True, "patches"),
                                           (False, "patches")])
@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0)])
def test_dynamic_conv_goes_through_every_torch_func_transform(diagonal, impl, stride, padding):
    """torch.func on the tap-looping autograd Functions: grad, vmap (per-sample gradients, and over
    weights), jvp and hessian (forward over reverse) give what they give on the unfolded computation,
    in float64, without torch's per-sample fallback."""
    from torch.func import grad, hessian, jvp, vmap
    recompute = impl == "taps_recompute"
    generator = torch.Generator().manual_seed(5)
    x, weight, similarity = dynamic_conv_inputs(generator, (3, 2, 5, 4), 3, diagonal, stride, padding)

    def fast(x, weight, similarity):
        return dynamic_similarity_conv2d(x, weight, similarity, stride=stride, padding=padding,
                                         impl="taps" if recompute else impl, recompute=recompute)

    def unfolded(x, weight, similarity):
        return unfolded_dynamic_conv(x, weight, similarity, stride, padding)

    primals = (x, weight, similarity)
    tangents = tuple(torch.randn(t.shape, generator=generator, dtype=torch.float64) for t in primals)
    for transform in (
            lambda f: jvp(f, primals, tangents),                                            # forward mode
            lambda f: grad(lambda *a: f(*a).square().sum(), argnums=(0, 1, 2))(*primals),    # reverse mode
            lambda f: vmap(grad(lambda x, s: f(x[None], weight, s[None]).square().sum(), argnums=(0, 1)))(
                x, similarity),                                                             # per-sample
            lambda f: (vmap(lambda w: f(x, w, similarity))(torch.stack([weight, -2 * weight])),),   # over weights
            lambda f: hessian(lambda x: f(x, weight, similarity[:1]).square().sum())(x[:1])):   # second order
        for mine, theirs in zip(transform(fast), transform(unfolded)):
            torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize("options", [{"mode": "dynamic_dns"}, {"mode": "dynamic_dns", "recompute_taps": True},
                                     {"mode": "dynamic_dns", "dynamic_impl": "patches"}, {"mode": "dynamic_uns"}])
def test_an_empty_batch_goes_through_every_dynamic_path_and_back(options):
    layer = NSConv2d(4, 3, **options).eval()                               # C ≥ F: DNS takes the taps path
    x = torch.randn(0, 4, 5, 5, requires_grad=True)
    out = layer(x)
    out.sum().backward()
    assert out.shape == (0, 3, 5, 5) and x.grad.shape == x.shape


def test_one_sample_on_one_position_in_training_mode_names_the_predictors_batch_norm():
    """Its BatchNorm has nothing to normalise over: the layer says so, where torch's error named no layer;
    two samples, two positions or eval mode go through, and UNS's predictor has no BatchNorm."""
    layer = NSConv2d(4, 3, mode="dynamic_dns").train()
    with pytest.raises(ValueError, match=r"dynamic NSL layer in training mode normalises its predictor over the "
                                         r"batch and the output positions, and got one of each .*\.eval\(\)"):
        layer(torch.randn(1, 4, 1, 1))
    for x in (torch.randn(2, 4, 1, 1), torch.randn(1, 4, 1, 2)):
        assert layer(x).shape == (x.shape[0], 3, *x.shape[2:])
    assert layer.eval()(torch.randn(1, 4, 1, 1)).shape == (1, 3, 1, 1)
    assert NSConv2d(4, 3, mode="dynamic_uns").train()(torch.randn(1, 4, 1, 1)).shape == (1, 3, 1, 1)


@pytest.mark.parametrize("mode", DYNAMIC)
def test_per_sample_gradients_of_a_dynamic_layer_with_torch_func(mode):
    """vmap(grad(...)) over a batch, through functional_call (eval mode: the predictor's BatchNorm uses
    its running averages), gives each sample's gradient as autograd does one sample at a time."""
    from torch.func import functional_call, grad, vmap
    torch.manual_seed(0)
    layer = NSConv2d(2, 3, mode=mode).double().eval()
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    params = {name: p.detach() for name, p in layer.named_parameters()}

    def loss(params, sample):                                             # one sample (C, H, W)
        return functional_call(layer, params, (sample[None],)).square().sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, x)          # name -> (4, *shape)
    for i in range(len(x)):
        layer.zero_grad()
        layer(x[i:i + 1]).square().sum().backward()
        for name, p in layer.named_parameters():
            torch.testing.assert_close(per_sample[name][i], p.grad, msg=name)


@pytest.mark.parametrize("in_channels,out_channels,stride,expected", [
    (8, 8, 1, "taps"), (16, 8, 1, "taps"), (4, 8, 1, "patches"), (8, 8, 2, "patches")])
def test_dns_path_choice_and_both_paths_agree(in_channels, out_channels, stride, expected):
    """choose_dynamic_impl decides for the layer (patches when it widens or strides); whichever it
    picks, the taps path (kept or recomputed Z) and the patches path give the same outputs and gradients."""
    assert choose_dynamic_impl(True, stride, in_channels, out_channels) == expected
    assert choose_dynamic_impl(False, 1, 16, 8) == "patches"                   # UNS: patches only
    torch.manual_seed(7)
    layer = NSConv2d(in_channels, out_channels, stride=stride, mode="dynamic_dns")
    with torch.no_grad():
        layer.predictor.output_weight.mul_(300)                              # M visibly away from I
    x = torch.randn(2, in_channels, 6, 6)
    results = {}
    for impl, recompute in (("taps", False), ("taps", True), ("patches", False)):
        layer.dynamic_impl, layer.recompute_taps = impl, recompute
        layer.zero_grad()
        xx = x.clone().requires_grad_()
        out = layer(xx)
        out.square().mean().backward()
        results[impl, recompute] = (out.detach(), xx.grad, layer.weight.grad.clone(),
                                    layer.predictor.output_weight.grad.clone())
    reference = results["patches", False]
    for key, values in results.items():
        for mine, theirs in zip(values, reference):
            torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-4, msg=f"{key} differs from patches")


@pytest.mark.parametrize("mode", ["static_dns", "static_uns", "dynamic_dns", "dynamic_uns"])
@pytest.mark.parametrize("options", [{}, {"parametrization": "psd"}])
def test_similarity_is_formed_in_float32_under_bf16_autocast(mode, options):
    """At initialisation M = I + a residual of about 0.03: formed in bf16 most entries of a DNS mask
    would round to 1 ± k/128 (28 % to exactly 1). Under bf16 autocast M must come out float32 and
    agree with the float32 computation: exactly for static M (a parameter), and to the precision of
    the bf16 predictor's residual r for dynamic M, i.e. |ΔM| << |r| and far below bf16's 1/128 step."""
    torch.manual_seed(8)
    layer = NSConv2d(8, 8, mode=mode, **options)
    x = torch.randn(4, 8, 8, 8)
    with torch.no_grad():
        reference = layer.static_similarity() if not layer.dynamic else layer.predict_similarity(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            m = layer.static_similarity() if not layer.dynamic else layer.predict_similarity(x)
    assert m.dtype == torch.float32
    if not layer.dynamic:
        torch.testing.assert_close(m, reference, atol=1e-7, rtol=0)
        return
    eye = torch.ones_like(reference) if layer.diagonal else torch.eye(9).view(1, 9, 9, 1, 1).expand_as(reference)
    residual = (reference - eye).abs()
    assert residual.mean() > 1e-6                                            # something to lose
    if layer.diagonal and not options:
        # formed in bf16, M would be a multiple of 1/128 near 1: it is not
        steps = (m - 1) * 128
        assert (steps - steps.round()).abs().mean() > 0.1
        assert (m == 1).float().mean() < 0.01
    error = (m - reference).abs()
    assert error.max() < 2 ** -8, error.max()                                # below half a bf16 step at 1
    assert error.mean() < 0.05 * residual.mean()


def test_bf16_dynamic_convolution_keeps_the_float32_mask():
    """Under bf16 autocast the taps path sums m·Z in float32 with the float32 m: the result is the
    float32 layer's up to bf16 rounding of the per-tap responses, for kept and recomputed Z, and
    gradients reach m, W and X in their own dtypes. Every path returns what a plain convolution
    under autocast returns, bf16, so that choosing a path never changes the next layer's dtype."""
    torch.manual_seed(9)
    x = torch.randn(2, 8, 6, 6)
    weight = torch.randn(8, 8, 3, 3) * 0.2
    mask = 1 + 0.01 * torch.randn(2, 9, 6, 6)
    reference = dynamic_similarity_conv2d(x, weight, mask, impl="taps")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = torch.nn.functional.conv2d(x, weight, padding=1)
        patches = dynamic_similarity_conv2d(x, weight, mask, impl="patches")
        matrix = dynamic_similarity_conv2d(x, weight, torch.eye(9).view(1, 9, 9, 1, 1).expand(2, 9, 9, 6, 6),
                                           impl="patches")
    assert plain.dtype == patches.dtype == matrix.dtype == torch.bfloat16
    torch.testing.assert_close(patches.float(), reference, atol=0.05, rtol=0.02)
    for recompute in (False, True):
        inputs = [t.clone().requires_grad_() for t in (x, weight, mask)]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = dynamic_similarity_conv2d(*inputs, impl="taps", recompute=recompute)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.02)
        out.sum().backward()
        assert all(t.grad is not None and t.grad.dtype == torch.float32 for t in inputs)


def test_dynamic_layer_uses_per_sample_per_position_masks():
    torch.manual_seed(5)
    layer = NSConv2d(3, 4, mode="dynamic_uns").eval()
    with torch.no_grad():
        layer.predictor.output_weight.mul_(300)               # a visibly non-identity prediction
    x = torch.randn(2, 3, 5, 5)
    m = layer.predict_similarity(x)
    assert m.shape == (2, 9, 9, 5, 5)
    assert m[0, :, :, 1, 1].sub(m[1, :, :, 1, 1]).abs().max() > 1e-3        # varies across samples
    assert m[0, :, :, 1, 1].sub(m[0, :, :, 3, 2]).abs().max() > 1e-3        # and across positions
    torch.testing.assert_close(layer(x), reference_dynamic_conv(x, layer.weight, m, 1, 1), atol=1e-4, rtol=1e-4)


# -- SphereConv --------------------------------------------------------------------------------------

def test_sphere_conv_input_normalised_matches_definition():
    torch.manual_seed(6)
    x, weight = torch.randn(2, 3, 5, 5, dtype=torch.float64), torch.randn(4, 3, 3, 3, dtype=torch.float64)
    out = sphere_conv2d(x, weight, stride=1, padding=1, normalize="input")
    patches = F.unfold(x, 3, padding=1)                                   # (B, 27, L)
    expected = torch.einsum("fk,bkl->bfl", weight.flatten(1), patches) / torch.sqrt(
        patches.square().sum(1, keepdim=True) + 1e-4)
    torch.testing.assert_close(out.flatten(2), expected)
    full = sphere_conv2d(x, weight, padding=1, normalize="full")
    assert full.abs().max() <= 1


@pytest.mark.parametrize("angle", ["cosine", "linear", "sigmoid"])
def test_sphere_conv_input_normalised_angles_match_a_float64_computation(angle):
    """normalize="input": ‖w‖ · g(θ), cos θ = wᵀx(p) / (‖w‖ ‖x(p)‖), norms √(Σ² + 1e-4), for every
    angle function g, computed here directly from the unfolded patches in float64 (stride 2)."""
    torch.manual_seed(7)
    x, weight = torch.randn(2, 3, 6, 6, dtype=torch.float64), torch.randn(4, 3, 3, 3, dtype=torch.float64)
    out = sphere_conv2d(x, weight, stride=2, padding=1, normalize="input", angle=angle, sigmoid_k=0.3)
    assert out.shape == (2, 4, 3, 3)
    patches = F.unfold(x, 3, padding=1, stride=2)                                      # (B, 27, L)
    w = weight.flatten(1)                                                              # (F, 27)
    weight_norm = torch.sqrt(w.square().sum(1) + 1e-4).view(1, -1, 1)                 # (1, F, 1)
    patch_norm = torch.sqrt(patches.square().sum(1, keepdim=True) + 1e-4)             # (B, 1, L)
    cos = torch.einsum("fk,bkl->bfl", w, patches) / (weight_norm * patch_norm)
    theta, k = torch.acos(cos), 0.3
    half = math.pi / (2 * k)
    g = {"cosine": cos, "linear": 1 - 2 * theta / math.pi,
         "sigmoid": (1 + math.exp(-half)) / (1 - math.exp(-half))
         * (1 - torch.exp(theta / k - half)) / (1 + torch.exp(theta / k - half))}[angle]
    assert (weight_norm - 1).abs().min() > 0.5                                         # ‖w‖ is no stand-in for 1
    torch.testing.assert_close(out.flatten(2), weight_norm * g, msg=f"normalize='input', angle={angle!r}")


@pytest.mark.parametrize("angle", ["cosine", "linear", "sigmoid"])
def test_sphere_conv_angle_functions(angle):
    theta = torch.tensor([0.0, 0.5, 1.0, math.pi / 2, 2.5])
    x = torch.stack([torch.cos(theta), torch.sin(theta)], 0).view(1, 2, 1, 5) * 3.0     # 5 positions
    conv = SphereConv2d(2, 1, kernel_size=1, padding=0, normalize="full", angle=angle)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1) * 2.0)
    out = conv(x).flatten()
    k, half = 0.3, math.pi / (2 * 0.3)
    expected = {"cosine": torch.cos(theta), "linear": 1 - 2 * theta / math.pi,
                "sigmoid": (1 + math.exp(-half)) / (1 - math.exp(-half))
                * (1 - torch.exp(theta / k - half)) / (1 + torch.exp(theta / k - half))}[angle]
    torch.testing.assert_close(out, expected, atol=5e-3, rtol=0)   # eps 1e-4 in the norms: θ(0) ≈ 0.006
    assert abs(out[0] - 1) < 5e-3 and abs(out[3]) < 2e-3                     # g(0) = 1, g(π/2) = 0


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0)])
def test_a_cosine_sphere_conv_is_dynamic_nsl_with_the_identity_over_the_patch_norm(stride, padding):
    """NSL sec. 6: hyperspherical convolution is the special case M = I/(‖W‖‖X‖) of dynamic NSL; with
    unit kernels, M(b, p) = I/‖x(p)‖ through the dynamic convolution is the fully cosine SphereConv."""
    from nslviz.nsl import NORM_EPS, sphere_similarity

    torch.manual_seed(12)
    x, w = torch.randn(2, 5, 9, 9, dtype=torch.float64), torch.randn(4, 5, 3, 3, dtype=torch.float64)
    unit = w / (w.flatten(1).square().sum(1) + NORM_EPS).sqrt().view(-1, 1, 1, 1)
    m = sphere_similarity(x, 3, stride, padding)
    assert m.shape == (2, 9, *sphere_conv2d(x, w, stride, padding).shape[-2:])
    torch.testing.assert_close(dynamic_similarity_conv2d(x, unit, m, stride=stride, padding=padding),
                               sphere_conv2d(x, w, stride, padding, normalize="full"))


# -- regularisers and parametrisations ---------------------------------------------------------------

def test_regularization_values():
    uns = NSConv2d(2, 3, mode="static_uns")                        # official 5e-3 · ½‖I₉‖²
    assert uns.regularization().item() == pytest.approx(5e-3 * 0.5 * 9)
    dns = NSConv2d(2, 3, mode="static_dns", l1_weight=0.1)
    assert dns.regularization().item() == pytest.approx(0.1 * 9)
    assert NSConv2d(2, 3, mode="static_dns").regularization().item() == 0
    dyn = NSConv2d(2, 3, mode="dynamic_dns", l2_weight=0.5)
    identity_predictor(dyn)
    dyn.train()(torch.randn(2, 2, 4, 4))
    assert dyn.regularization().item() == pytest.approx(0.5 * 0.5 * 9)     # mean over samples, positions of ½‖I‖²
    dyn.eval()(torch.randn(2, 2, 4, 4))
    assert dyn.regularization().item() == 0
    model = nn.Sequential(uns, dns)
    assert nsl_regularization(model).item() == pytest.approx(5e-3 * 4.5 + 0.9)
    assert nsl_regularization(nn.Sequential(nn.Conv2d(1, 1, 3))).item() == 0
    params = similarity_parameters(nn.Sequential(uns, NSConv2d(2, 2, mode="dynamic_dns", kernel_shape=True)))
    assert params[0] is uns.similarity and len(params) == 2


def test_regularization_gradient_reaches_similarity():
    layer = NSConv2d(2, 3, mode="static_uns", l1_weight=0.01)
    perturb_static(layer)
    nsl_regularization(layer).backward()
    assert layer.similarity.grad.abs().sum() > 0


@pytest.mark.parametrize("dynamic", [False, True])
def test_psd_and_symmetric_parametrizations(dynamic):
    torch.manual_seed(7)
    for parametrization in ("symmetric", "psd"):
        layer = NSConv2d(2, 2, mode="dynamic_uns" if dynamic else "static_uns", parametrization=parametrization)
        if dynamic:
            with torch.no_grad():
                layer.predictor.output_weight.mul_(1000)
            m = layer.predict_similarity(torch.randn(2, 2, 4, 4)).permute(0, 3, 4, 1, 2).reshape(-1, 9, 9)
        else:
            perturb_static(layer, scale=1.0)
            m = layer.static_similarity().unsqueeze(0)
        torch.testing.assert_close(m, m.transpose(1, 2))
        assert (m - torch.eye(9)).abs().max() > 1e-2
        if parametrization == "psd":
            assert torch.linalg.eigvalsh(m.double()).min() > -1e-6



@pytest.mark.parametrize("dynamic", [False, True])
def test_psd_makes_the_dns_mask_nonnegative(dynamic):
    """For DNS, psd is m = l² tap by tap: a mask pushed far from 1 stays >= 0 (free would go negative)."""
    torch.manual_seed(7)
    masks = {}
    for parametrization in ("free", "psd"):
        torch.manual_seed(7)
        layer = NSConv2d(2, 2, mode="dynamic_dns" if dynamic else "static_dns", parametrization=parametrization)
        with torch.no_grad():
            if dynamic:
                layer.predictor.output_weight.mul_(3000)
            else:
                for name, value in layer.named_parameters():
                    if "similarity" in name:
                        value.copy_(torch.linspace(-2.0, 2.0, value.numel()).view_as(value))
        if dynamic:
            masks[parametrization] = layer.predict_similarity(torch.randn(2, 2, 6, 6))
        else:
            masks[parametrization] = layer.static_similarity()
    assert masks["free"].min() < 0 and masks["psd"].min() >= 0


@pytest.mark.parametrize("k", [1, 3])
def test_hard_sparsity_keeps_k_entries_per_row_straight_through(k):
    """nonzeros_per_row (sec. 3.4): each row s of the static UNS matrix keeps its k largest-magnitude
    entries (k = 1: every kernel tap reads one input tap, a shift); the layer and its folded kernel use
    that matrix, and the gradient reaches every entry, so an entry at 0 can grow back."""
    torch.manual_seed(11)
    layer = NSConv2d(2, 3, mode="static_uns", nonzeros_per_row=k)
    x = torch.randn(2, 2, 6, 6)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, padding=1))        # M = I: still the plain conv
    with torch.no_grad():
        layer.similarity.normal_()
    raw = layer.similarity.detach()
    m = layer.static_similarity()
    kept = raw.abs().topk(k, dim=1).indices
    expected = torch.zeros_like(raw).scatter_(1, kept, raw.gather(1, kept))
    torch.testing.assert_close(m, expected)
    assert ((m != 0).sum(1) == k).all()
    folded = torch.einsum("fcs,st->fct", layer.weight.detach().view(3, 2, 9), expected).view(3, 2, 3, 3)
    torch.testing.assert_close(layer(x), F.conv2d(x, folded, padding=1), atol=1e-5, rtol=1e-5)
    layer(x).square().sum().backward()
    assert (layer.similarity.grad != 0).all()                                  # pruned entries get gradient too
    dynamic = NSConv2d(2, 3, mode="dynamic_uns", nonzeros_per_row=k)
    with torch.no_grad():
        dynamic.predictor.output_weight.normal_()
    predicted = dynamic.predict_similarity(x)                                   # (B, K, K, H, W)
    assert ((predicted != 0).sum(2) == k).all()
    with torch.no_grad():                                                       # the layer convolves with that M
        torch.testing.assert_close(dynamic(x), dynamic_similarity_conv2d(x, dynamic.weight, predicted, padding=1),
                                   atol=1e-5, rtol=1e-5)


# -- shared predictor -----------------------------------------------------------------------------------

def test_shared_predictor_is_shared_across_layers():
    torch.manual_seed(8)
    options = prepare_nsl_options("dynamic_dns", {"shared_predictor": True, "shared_channels": 8})
    shared = options["shared_predictor"]
    assert isinstance(shared, SharedSimilarityPredictor)
    model = nn.Sequential(make_conv("dynamic_dns", 3, 5, **options), nn.ReLU(),
                          make_conv("dynamic_dns", 5, 6, stride=2, **options))
    assert model[0].predictor.shared is model[2].predictor.shared is shared
    n_params = sum(p.numel() for p in model.parameters())
    n_unique = sum(p.numel() for p in {id(p): p for m in model.modules() for p in m.parameters(recurse=False)}.values())
    assert n_params == n_unique                                             # counted once
    out = model(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 6, 4, 4)
    out.square().mean().backward()
    assert shared.hidden_weight.grad.abs().sum() > 0
    assert model[0].predictor.adapt.weight.grad.abs().sum() > 0
    identity_predictor(model[0])                                            # zeroes the shared output conv
    assert model[2].predictor.weights()[1].abs().max() == 0


# -- global neural similarity (Appendix B) ----------------------------------------------------------------

@pytest.mark.parametrize("cosine", [True, False])
def test_global_similarity_attention(cosine):
    torch.manual_seed(9)
    block = GlobalSimilarityAttention(16, cosine=cosine, orthogonality_weight=2e-4)
    x = torch.randn(2, 16, 4, 5)
    torch.testing.assert_close(block(x), x)                                  # γ = 0: identity at the start
    beta = block.attention(x)
    assert beta.shape == (2, 20, 20)
    # β from its definition (Appendix B eq. 10), not from the block: softmax_j( ReLU(φ_f x_i)ᵀ φ_g x_j )
    query, key = F.relu(block.query(x)).flatten(2), block.key(x).flatten(2)       # (B, C/8, N)
    torch.testing.assert_close(beta, torch.softmax(query.transpose(1, 2) @ key, dim=-1))
    assert not torch.allclose(beta, beta.transpose(1, 2), atol=1e-3)          # not symmetric: i attends over j
    torch.testing.assert_close(beta.sum(-1), torch.ones(2, 20))
    with torch.no_grad():
        block.gamma.fill_(0.7)
    h = block.value(x).flatten(2)                                            # (B, C, N)
    expected = x + 0.7 * torch.bmm(h, beta.transpose(1, 2)).view_as(x)     # o_i = Σ_j β_ij h_j
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)
    assert block.regularization().item() > 0
    block(x).sum().backward()
    assert block.gamma.grad is not None and block.query.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("recompute", [False, True])
def test_bf16_taps_path_weights_the_taps_by_the_float32_mask_itself(recompute):
    """Under bf16 autocast the taps path weights the per-tap responses by M as given (float32): with
    Z = +1 on one tap and −1 on another, out = m_0 − m_1 = 2⁻⁹, which bf16 holds exactly but which a
    mask rounded to bf16 (1 + 2⁻⁹ -> 1) would turn into 0."""
    x = torch.ones(1, 1, 3, 3)
    weight = torch.zeros(1, 1, 3, 3)
    weight[0, 0, 0, 0], weight[0, 0, 0, 1] = 1.0, -1.0
    mask = torch.ones(1, 9, 1, 1)
    mask[0, 0] = 1 + 2 ** -9
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = dynamic_similarity_conv2d(x, weight, mask, padding=0, impl="taps", recompute=recompute)
    assert out.dtype == torch.bfloat16
    assert out.item() == 2 ** -9


def test_recomputed_taps_give_the_kernel_its_gradient_when_the_input_needs_none():
    """A first layer on images: X needs no gradient, W does. Recomputing Z in backward must still give
    W the gradient that keeping Z gives."""
    torch.manual_seed(3)
    x = torch.randn(2, 3, 5, 5)
    mask = 1 + 0.1 * torch.randn(2, 9, 5, 5)
    grads = []
    for recompute in (False, True):
        weight = (0.3 * torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(4))).requires_grad_()
        dynamic_similarity_conv2d(x, weight, mask, impl="taps", recompute=recompute).square().sum().backward()
        grads.append(weight.grad)
    assert grads[1] is not None
    torch.testing.assert_close(grads[1], grads[0])


def test_a_kernel_shape_score_at_the_threshold_switches_its_tap_off():
    """Eq. (5): D = 1[D_r > α], strictly: a score equal to α gives 0."""
    layer = NSConv2d(1, 1, mode="static_dns", kernel_shape=True, shape_threshold=0.5)
    with torch.no_grad():
        layer.shape_scores.copy_(torch.tensor([0.5, 0.5 + 1e-6, 0.4, 2.0, 0.5, 0.6, -1.0, 0.51, 0.5]))
    assert layer.kernel_shape_mask().tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 0]


def test_static_psd_similarity_is_the_cholesky_product_l_lt():
    """Sec. 3.4: psd stores the lower-triangular Cholesky factor L and uses M = LLᵀ (not LᵀL); the
    entries above the diagonal of the stored matrix are not used."""
    layer = NSConv2d(1, 1, mode="static_uns", parametrization="psd").double()
    lower = torch.randn(9, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64).tril()
    with torch.no_grad():
        layer.similarity.copy_(lower + torch.ones(9, 9, dtype=torch.float64).triu(1))
    torch.testing.assert_close(layer.static_similarity(), lower @ lower.T)


def test_dynamic_psd_similarity_is_l_lt_with_l_the_identity_plus_the_lower_prediction():
    """Dynamic psd: L = I + tril(P) at every position and M = LLᵀ. With the linear predictor at W′ = 0,
    P = b′ everywhere."""
    layer = NSConv2d(1, 1, mode="dynamic_uns", parametrization="psd", predictor="linear").double()
    prediction = torch.randn(9, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        layer.predictor.output_bias.copy_(prediction.flatten())
    m = layer.predict_similarity(torch.randn(2, 1, 4, 4, dtype=torch.float64))           # (2, 9, 9, 4, 4)
    lower = torch.eye(9, dtype=torch.float64) + prediction.tril()
    torch.testing.assert_close(m, (lower @ lower.T).view(1, 9, 9, 1, 1).expand(2, 9, 9, 4, 4))


def test_the_released_predictor_normalises_only_the_input_of_its_hidden_layer():
    """predictor "sphere" (UNS: no hidden BatchNorm): the hidden layer is wᵀx/‖x‖, linear in its
    weights, so doubling them doubles M − I; a fully cosine hidden layer would leave it unchanged."""
    torch.manual_seed(5)
    layer = NSConv2d(3, 3, mode="dynamic_uns", predictor="sphere").double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        residual = layer.predictor(x)
        layer.predictor.hidden_weight.mul_(2)
        torch.testing.assert_close(layer.predictor(x), 2 * residual)


def test_default_padding_is_half_the_kernel_for_even_kernels_too():
    """padding None is k // 2 at any kernel size: a 2×2 kernel pads by 1 (the map grows by one), a 4×4
    kernel at stride 2 by 2."""
    assert NSConv2d(1, 1, 2).padding == 1 and SphereConv2d(1, 1, 2).padding == 1
    assert NSConv2d(1, 1, 4, stride=2).padding == 2
    assert NSConv2d(1, 1, 2)(torch.randn(1, 1, 4, 4)).shape == (1, 1, 5, 5)


def test_attention_query_and_key_are_an_eighth_of_the_channels_wide():
    block = GlobalSimilarityAttention(64)
    assert (block.query.out_channels, block.key.out_channels, block.value.out_channels) == (8, 8, 64)


def test_cosine_attention_does_not_depend_on_the_scale_of_its_kernels():
    """cosine=True: φ_f and φ_g are fully cosine SphereConvs, so β stays when their kernels are scaled
    (up to the 1e-4 inside ‖w‖); with only the input normalised, f and g would grow with the kernels
    and β sharpen."""
    torch.manual_seed(0)
    block = GlobalSimilarityAttention(16, cosine=True).double()
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        beta = block.attention(x)
        block.query.weight.mul_(5)
        block.key.weight.mul_(5)
        torch.testing.assert_close(block.attention(x), beta, rtol=1e-4, atol=1e-5)


# -- errors -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel_size", [1, 0, (3, 5), 2.5])
@pytest.mark.parametrize("mode", ["static_dns", "dynamic_uns"])
def test_unsupported_kernel_size(kernel_size, mode):
    with pytest.raises(ValueError, match="kernel"):
        make_conv(mode, 3, 4, kernel_size=kernel_size)


def test_options_and_functional_inputs_are_checked():
    x, weight = torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3)
    for similarity in (torch.randn(2, 9, 4, 4), torch.randn(2, 9, 6, 6)):        # the output is 5×5 at padding 1
        with pytest.raises(ValueError, match="the convolution's output H'×W' = 5×5; got"):
            dynamic_similarity_conv2d(x, weight, similarity)
    good = torch.randn(2, 9, 5, 5)
    for kwargs, message in ((dict(stride=0), "stride must be >= 1"), (dict(padding=-1), "padding must be >= 0")):
        with pytest.raises(ValueError, match=message):
            dynamic_similarity_conv2d(x, weight, good, **kwargs)
    for bad_x, bad_w in ((x[0], weight), (x, torch.randn(4, 2, 3, 3)), (x, torch.randn(4, 3, 3, 2))):
        with pytest.raises(ValueError, match="expected x \\(B, C, H, W\\) and a square weight"):
            dynamic_similarity_conv2d(bad_x, bad_w, good)
    with pytest.raises(ValueError, match="kernel_shape must be True or False"):
        NSConv2d(3, 4, mode="static_dns", kernel_shape="no")
    with pytest.raises(ValueError, match="unknown similarity predictor 'bogus'"):
        NSConv2d(3, 4, mode="static_dns", predictor="bogus")                  # named even where unused
    with pytest.raises(ValueError, match="shape_init must be above shape_threshold.*output 0"):
        NSConv2d(3, 4, mode="static_dns", kernel_shape=True, shape_init=0.2)
    from nslviz.nsl.predictor import SharedSimilarityPredictor
    with pytest.raises(ValueError, match="predictor_hidden must be > 0, got 0"):
        SharedSimilarityPredictor(True, hidden=0)
    from nslviz.nsl.sphere import sphere_conv2d
    with pytest.raises(ValueError, match="unknown SphereConv normalization 'bogus'"):
        sphere_conv2d(x, weight, normalize="bogus")
    with pytest.raises(ValueError, match="normalize='none' is the plain convolution"):
        sphere_conv2d(x, weight, normalize="none", angle="linear")
    with pytest.raises(ValueError, match="cosine must be True or False"):
        GlobalSimilarityAttention(8, cosine="no")


def test_hard_sparsity_is_for_free_uns_matrices():
    for mode, options in (("static_dns", {}), ("static_uns", {"parametrization": "psd"}), ("dynamic_uns", {})):
        k = 10 if mode == "dynamic_uns" else 2
        with pytest.raises(ValueError, match=f"nonzeros_per_row keeps 1 to 9 entries of each row of a free UNS matrix "
                                             f".*got {k} with mode '{mode}'"):
            NSConv2d(2, 2, mode=mode, nonzeros_per_row=k, **options)
    with pytest.raises(ValueError, match="nonzeros_per_row must be an integer"):
        NSConv2d(2, 2, mode="static_uns", nonzeros_per_row=1.5)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="unknown nsl mode 'dynamic_xyz'"):
        make_conv("dynamic_xyz", 3, 4)
    with pytest.raises(ValueError, match="expects input \\(batch, 3, height, width\\)"):
        make_conv("static_dns", 3, 4)(torch.randn(2, 5, 6, 6))
    with pytest.raises(ValueError, match="expects input"):
        make_conv("dynamic_dns", 3, 4)(torch.randn(5, 6, 6))
    with pytest.raises(ValueError, match="unknown nsl option"):
        make_conv("none", 3, 4, predcitor="cnn")
    with pytest.raises(ValueError, match="unknown similarity predictor"):
        make_conv("dynamic_dns", 3, 4, predictor="mlp")
    with pytest.raises(ValueError, match="cannot be folded"):
        make_conv("dynamic_dns", 3, 4).to_conv2d()
    with pytest.raises(ValueError, match="taps"):
        dynamic_similarity_conv2d(torch.randn(1, 2, 4, 4), torch.randn(3, 2, 3, 3), torch.randn(1, 9, 9, 4, 4),
                                  impl="taps")
    with pytest.raises(ValueError, match="similarity must have shape"):
        dynamic_similarity_conv2d(torch.randn(1, 2, 4, 4), torch.randn(3, 2, 3, 3), torch.randn(1, 4, 4, 4))
    shared = SharedSimilarityPredictor(diagonal=True, channels=4)
    with pytest.raises(ValueError, match="shared predictor was built for"):
        make_conv("dynamic_uns", 3, 4, shared_predictor=shared)
    with pytest.raises(ValueError, match="prepare_nsl_options"):
        make_conv("dynamic_dns", 3, 4, shared_predictor=True)
    with pytest.raises(ValueError, match="dynamic modes"):
        prepare_nsl_options("static_dns", {"shared_predictor": True})
    with pytest.raises(ValueError, match="dns_init"):
        make_conv("static_uns", 3, 4, dns_init="official")
    with pytest.raises(ValueError, match="l2_weight"):
        make_conv("static_uns", 3, 4, l2_weight=-1.0)
    with pytest.raises(ValueError, match="in_channels"):
        make_conv("static_uns", 0, 4)


def test_option_names_and_layer_listing():
    assert {"dns_init", "parametrization", "kernel_shape", "predictor", "shared_predictor",
            "l2_weight", "l1_weight", "dynamic_impl"} <= set(NSL_OPTIONS)
    model = nn.Sequential(make_conv("static_dns", 3, 4), nn.Sequential(make_conv("dynamic_uns", 4, 4)))
    assert list(nsl_layers(model)) == ["0", "1.0"]


def test_inputs_of_the_wrong_dtype_and_a_zero_predictor_width_are_named():
    conv = NSConv2d(3, 4, mode="dynamic_dns")
    with pytest.raises(ValueError, match="must be floating point .* got torch.uint8; uint8 images: .*to_float"):
        conv(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="NSConv2d inputs are torch.float64 but the layer's parameters are torch.float32"):
        conv(torch.zeros(2, 3, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="predictor_hidden must be > 0, got 0"):
        NSConv2d(3, 4, mode="dynamic_dns", predictor_hidden=0)


def test_only_the_fully_cosine_uns_predictor_is_bounded():
    """SimilarityPredictor's docstring: the paper's bounded SphereNet outputs hold for kind "full_sphere"
    in UNS mode only; the released "sphere" predictor's plain output conv is unbounded."""
    from nslviz.nsl.predictor import SimilarityPredictor
    torch.manual_seed(0)
    x = torch.randn(4, 8, 10, 10) * 50
    ranges = {}
    for kind in ("sphere", "full_sphere"):
        predictor = SimilarityPredictor(8, diagonal=False, kind=kind)
        with torch.no_grad():
            predictor.output_weight.mul_(1e6)
        ranges[kind] = predictor(x).abs().max().item()
    assert ranges["full_sphere"] <= 1 + 1e-5 and ranges["sphere"] > 10


@pytest.mark.parametrize("options", [{}, {"predictor": "full_sphere"}, {"predictor": "cnn"}])
def test_a_zero_predictor_gain_starts_the_dynamic_layer_as_the_plain_convolution_and_then_learns(options):
    """predictor_gain_init=0: the output BatchNorm's γ starts at 0, so M = I exactly (the layer is the
    plain convolution, forward and backward through x); γ gets a gradient, so one step moves M off I."""
    torch.manual_seed(0)
    layer = NSConv2d(4, 6, mode="dynamic_dns", predictor_gain_init=0, **options).train()
    default = NSConv2d(4, 6, mode="dynamic_dns", **options).train()
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(layer.weight)
    x = torch.randn(3, 4, 7, 7)
    with torch.no_grad():
        assert float((layer.predict_similarity(x) - 1).abs().max()) == 0
        assert float((default.predict_similarity(x) - 1).abs().max()) > 1e-3     # the official start is near I only
    torch.testing.assert_close(layer(x), conv(x), atol=1e-5, rtol=1e-5)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x).square().mean().backward()
    assert float(layer.predictor.output_norm.weight.grad.abs().max()) > 0
    optimizer.step()
    with torch.no_grad():
        assert float((layer.predict_similarity(x) - 1).abs().max()) > 1e-4


def test_a_predictor_gain_needs_an_output_batchnorm():
    for mode, options in (("dynamic_uns", {}), ("dynamic_dns", {"predictor": "linear"})):
        with pytest.raises(ValueError, match="predictor_gain_init=0 sets the scale of the predictor's output "
                                             "BatchNorm, and the .* predictor of .* has none"):
            NSConv2d(4, 6, mode=mode, predictor_gain_init=0, **options)
    with pytest.raises(ValueError, match="predictor_gain_init must be >= 0, got -1"):
        NSConv2d(4, 6, mode="static_dns", predictor_gain_init=-1)                # checked where unused too
    assert NSConv2d(4, 6, mode="dynamic_uns", predictor="cnn", predictor_gain_init=0).predictor.output_norm.weight.sum() == 0


def test_a_dilated_convolution_is_a_static_dns_layer_with_a_fixed_sparse_mask():
    """Sec. 3.4: dilation is a structural and sparse M_s. The snippet of docs/nsl-paper-tables.md: a 5×5
    static DNS layer keeping the 9 taps of the dilation-2 grid is the 3×3 convolution with dilation 2."""
    torch.manual_seed(0)
    layer = NSConv2d(3, 4, kernel_size=5, mode="static_dns")
    mask = torch.zeros(5, 5)
    mask[::2, ::2] = 1
    with torch.no_grad():
        layer.similarity.copy_(mask.flatten())
    x = torch.randn(2, 3, 9, 9)
    dilated = F.conv2d(x, layer.weight[:, :, ::2, ::2], padding=2, dilation=2)
    torch.testing.assert_close(layer(x), dilated)
    torch.testing.assert_close(layer.to_conv2d()(x), dilated)                 # folded: a sparse 5×5 kernel


@pytest.mark.parametrize("mode,options", [("dynamic_dns", {}), ("dynamic_dns", {"parametrization": "psd"}),
                                          ("dynamic_uns", {}), ("dynamic_uns", {"parametrization": "symmetric"}),
                                          ("dynamic_uns", {"parametrization": "psd"})])
def test_without_the_identity_residual_the_predictor_gives_m_itself(mode, options):
    """predictor_identity=False (the ablation of sec. 3.3.1's identity residuals): M is formed from the
    predictor's output r exactly as M from I + r is, with I left out. Same weights, same input."""
    torch.manual_seed(0)
    with_identity = NSConv2d(4, 6, mode=mode, **options).eval()
    without = NSConv2d(4, 6, mode=mode, predictor_identity=False, **options).eval()
    without.load_state_dict(with_identity.state_dict())
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        r = with_identity.predictor(x)                                              # (B, K or K², H', W')
        if mode == "dynamic_dns":
            expected = r.square() if options else r                                 # psd: m = (0 + r)²
        else:
            p = r.view(2, 9, 9, 5, 5)
            expected = {"free": p, "symmetric": 0.5 * (p + p.transpose(1, 2)),
                        "psd": torch.einsum("bsrij,btrij->bstij", p * torch.ones(9, 9).tril().view(1, 9, 9, 1, 1),
                                            p * torch.ones(9, 9).tril().view(1, 9, 9, 1, 1))}[options.get("parametrization", "free")]
        torch.testing.assert_close(without.predict_similarity(x), expected)
        assert float((with_identity.predict_similarity(x) - without.predict_similarity(x)).abs().max()) > 0.1
        assert float(without.predict_similarity(x).abs().mean()) < 0.2             # M near 0, not near I


def test_without_the_output_batchnorm_the_predictor_ends_in_its_conv():
    """predictor_output_norm=False (sec. 7.1's unnormalised predictor): no BatchNorm after the output
    conv, so M − I is that conv's output, a thousandth of the normalised one's size at the start; the
    options that need the BatchNorm, or a predictor that has none, are refused by name."""
    torch.manual_seed(0)
    layer = NSConv2d(4, 6, mode="dynamic_dns", predictor="cnn", predictor_output_norm=False).train()
    normalised = NSConv2d(4, 6, mode="dynamic_dns", predictor="cnn").train()
    assert isinstance(layer.predictor.output_norm, nn.Identity)
    assert isinstance(layer.predictor.hidden_norm, nn.BatchNorm2d)                   # the hidden one stays
    x = torch.randn(3, 4, 7, 7)
    with torch.no_grad():
        h = F.relu(layer.predictor.hidden_norm(F.conv2d(x, layer.predictor.hidden_weight, padding=1)))
        torch.testing.assert_close(layer.predict_similarity(x) - 1, F.conv2d(h, layer.predictor.output_weight, padding=1))
        residual, normalised_residual = layer.predict_similarity(x) - 1, normalised.predict_similarity(x) - 1
    assert float(residual.abs().max()) < 0.05 < float(normalised_residual.abs().max())
    with pytest.raises(ValueError, match=r"predictor_gain_init=0 sets .* has it switched off \(predictor_output_norm=False\)"):
        NSConv2d(4, 6, mode="dynamic_dns", predictor_output_norm=False, predictor_gain_init=0)
    for mode, options in (("dynamic_uns", {}), ("dynamic_dns", {"predictor": "linear"})):
        with pytest.raises(ValueError, match="predictor_output_norm=False drops the predictor's output BatchNorm, "
                                             "and the .* predictor of .* has none"):
            NSConv2d(4, 6, mode=mode, predictor_output_norm=False, **options)
    for name in ("predictor_identity", "predictor_output_norm"):
        with pytest.raises(ValueError, match=f"{name} must be True or False, got 'no'"):
            NSConv2d(4, 6, mode="dynamic_dns", **{name: "no"})


@pytest.mark.parametrize("impl,recompute", [("taps", False), ("taps", True), ("patches", False)])
def test_dynamic_dns_gradients_can_be_differentiated_again(impl, recompute):
    """create_graph through every dynamic path (gradient penalties, MAXL's look-ahead step): gradgradcheck
    in float64, and a double backward through the layer's default (taps) path."""
    from nslviz.nsl.conv import dynamic_similarity_conv2d
    generator = torch.Generator().manual_seed(0)
    x, w, m = (torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=True)
               for shape in ((1, 2, 3, 3), (2, 2, 3, 3), (1, 9, 3, 3)))
    assert torch.autograd.gradgradcheck(
        lambda x, w, m: dynamic_similarity_conv2d(x, w, m, padding=1, impl=impl, recompute=recompute), (x, w, m))
    layer = NSConv2d(4, 4, mode="dynamic_dns", recompute_taps=recompute)
    inputs = torch.randn(2, 4, 5, 5, requires_grad=True)
    (grad,) = torch.autograd.grad(layer(inputs).square().sum(), inputs, create_graph=True)
    grad.square().sum().backward()
    assert layer.weight.grad.abs().sum() > 0


def test_starting_weights_are_the_stated_multiples_of_he():
    """SphereConv's init_gain scales He's std (the official predictor's 0.1); the shared predictor's
    output layer starts at 0.001·He and its hidden layer at 0.1·He, so M ≈ I at the start."""
    from nslviz.nsl.predictor import SharedSimilarityPredictor
    from nslviz.nsl.sphere import SphereConv2d
    he = math.sqrt(2 / (9 * 64))
    torch.manual_seed(0)
    assert SphereConv2d(64, 32, init_gain=0.1).weight.std().item() == pytest.approx(0.1 * he, rel=0.05)
    torch.manual_seed(0)
    shared = SharedSimilarityPredictor(True, channels=64)
    assert shared.hidden_weight.std().item() == pytest.approx(0.1 * he, rel=0.05)
    assert shared.output_weight.std().item() == pytest.approx(1e-3 * math.sqrt(2 / (9 * 64)), rel=0.1)
