"""iFiLM, MN eq. (4): identity at init, the equation itself, gradients, dtype/layout, validation."""
import pytest
import torch
import torch.nn as nn

from nslviz import IFiLM, ifilm_modules, ifilm_parameters


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors: see tests/conftest.py


def randomised(module: IFiLM, seed: int = 0) -> IFiLM:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in (module.gamma, module.beta, module.keys):
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return module


def reference_ifilm(module: IFiLM, activation: torch.Tensor) -> torch.Tensor:
    """Eq. (4) written out per example and per entry, the slow obvious way."""
    outputs = []
    for a in activation:                                            # (C, H, W) or (C,)
        g = a.mean(dim=(1, 2)) if a.dim() == 3 else a
        cos = torch.stack([torch.dot(g, k) / (g.norm() * k.norm()) for k in module.keys])
        w = torch.softmax(module.inverse_temperature * cos, dim=0)
        gamma_hat = sum(w[j] * module.gamma[j] for j in range(module.entries))
        beta_hat = sum(w[j] * module.beta[j] for j in range(module.entries))
        shape = (-1, 1, 1) if a.dim() == 3 else (-1,)
        outputs.append((1 + gamma_hat.view(shape)) * a + beta_hat.view(shape))
    return torch.stack(outputs)


def test_initialisation_matches_official():
    torch.manual_seed(0)
    module = IFiLM(256, entries=10)
    assert module.keys.shape == module.gamma.shape == module.beta.shape == (10, 256)
    assert torch.count_nonzero(module.gamma) == 0 and torch.count_nonzero(module.beta) == 0
    assert abs(module.keys.std().item() - 0.05) < 0.005
    assert module.inverse_temperature.item() == 5.0 and module.inverse_temperature.requires_grad
    assert sum(p.numel() for p in module.parameters()) == 3 * 10 * 256 + 1


@pytest.mark.parametrize("shape", [(4, 6, 5, 5), (4, 6)])
def test_identity_at_init(shape):
    torch.manual_seed(0)
    activation = torch.randn(shape)
    assert torch.equal(IFiLM(6)(activation), activation)


@pytest.mark.parametrize("shape", [(3, 5, 4, 4), (3, 5)])
def test_matches_equation_4(shape):
    torch.manual_seed(1)
    module = randomised(IFiLM(5, entries=7, temperature_init=3.0))
    activation = torch.randn(shape)
    torch.testing.assert_close(module(activation), reference_ifilm(module, activation), rtol=1e-5, atol=1e-6)


def test_attention_is_softmax_of_scaled_cosine():
    torch.manual_seed(2)
    module = randomised(IFiLM(8, entries=4))
    activation = torch.randn(6, 8, 3, 3)
    weights = module.attention(activation)
    assert weights.shape == (6, 4)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(6))
    with torch.no_grad():
        module.inverse_temperature.fill_(1e4)                        # sharp: one-hot at the most similar key
    sharp = module.attention(activation)
    query = activation.mean(dim=(2, 3))
    cosine = torch.nn.functional.cosine_similarity(query[:, None], module.keys[None], dim=-1)
    assert torch.equal(sharp.argmax(dim=1), cosine.argmax(dim=1))
    assert (sharp.max(dim=1).values > 0.99).all()


def test_modulation_is_per_instance_and_spatially_uniform():
    torch.manual_seed(3)
    module = randomised(IFiLM(4, entries=5))
    activation = torch.randn(2, 4, 3, 3)
    out = module(activation)
    scale_shift = torch.linalg.lstsq(                                 # fit out = s·a + b per (example, channel)
        torch.stack([activation.flatten(2), torch.ones_like(activation.flatten(2))], dim=-1),
        out.flatten(2).unsqueeze(-1)).solution.squeeze(-1)            # (B, C, 2)
    residual = out.flatten(2) - (scale_shift[..., :1] * activation.flatten(2) + scale_shift[..., 1:])
    assert residual.abs().max() < 1e-4                                 # one affine map per channel and example
    assert not torch.allclose(scale_shift[0], scale_shift[1])          # ... that differs between examples


def test_gradients_reach_every_parameter_after_one_step():
    torch.manual_seed(4)
    module = IFiLM(6, entries=3)
    activation = torch.randn(8, 6, 4, 4)
    target = torch.randn(8, 6, 4, 4)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)

    def step():
        optimizer.zero_grad()
        (module(activation) - target).square().mean().backward()

    step()
    # at init γ = β = 0, so the attention (keys, temperature) receives exactly zero gradient
    assert module.gamma.grad.abs().sum() > 0 and module.beta.grad.abs().sum() > 0
    assert module.keys.grad.abs().sum() == 0 and module.inverse_temperature.grad == 0
    optimizer.step()
    step()
    for name, parameter in module.named_parameters():
        assert parameter.grad.abs().sum() > 0, name


def test_channels_last_and_bf16_autocast():
    torch.manual_seed(5)
    module = randomised(IFiLM(8))
    activation = torch.randn(4, 8, 6, 6).to(memory_format=torch.channels_last)
    out = module(activation)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, reference_ifilm(module, activation.contiguous()), rtol=1e-5, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = module(activation.bfloat16())
        weights = module.attention(activation)
    assert low.dtype == torch.bfloat16 and low.is_contiguous(memory_format=torch.channels_last)
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights, module.attention(activation))   # attention computed in float32
    torch.testing.assert_close(low.float(), out, rtol=0.05, atol=0.05)


def test_finds_modules_and_parameters():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), IFiLM(4), nn.Conv2d(4, 5, 1), IFiLM(5, entries=2))
    assert [m.channels for m in ifilm_modules(model)] == [4, 5]
    assert sum(p.numel() for p in ifilm_parameters(model)) == (3 * 10 * 4 + 1) + (3 * 2 * 5 + 1)


@pytest.mark.parametrize("kwargs", [dict(channels=0), dict(channels=2.5), dict(channels=4, entries=0),
                                    dict(channels=4, temperature_init=float("nan")),
                                    dict(channels=4, temperature_init=True), dict(channels=4, temperature_init=0.0),
                                    dict(channels=4, temperature_init=-5.0)])
def test_bad_construction(kwargs):
    with pytest.raises(ValueError):
        IFiLM(**kwargs)


@pytest.mark.parametrize("shape", [(2, 5, 3, 3), (2, 4, 3), (2, 5)])
def test_bad_activation_shape(shape):
    with pytest.raises(ValueError, match="iFiLM expected an activation of shape"):
        IFiLM(4)(torch.randn(shape))


def test_integer_activations_are_refused_with_what_was_expected():
    with pytest.raises(ValueError, match="iFiLM activations must be floating point \\(torch.float32\\), got torch.int64"):
        IFiLM(4)(torch.ones(2, 4, 3, 3, dtype=torch.long))


@pytest.mark.parametrize("backbone", ["convnet4", "resnet29", "densenet40"])
def test_every_ifilm_modulates_a_batchnorm_output(backbone):
    """MN eq. (4) sits right after a BatchNorm: the IFiLM gets the BatchNorm's output tensor itself,
    before any ReLU. (The ResNet's projection shortcuts and its very first layer have no BatchNorm; their
    iFiLM slots modulate a conv's output or the stem's, as officially coded, and are left out here.)"""
    from nslviz.models.registry import build_backbone

    torch.manual_seed(0)
    net = build_backbone(backbone, in_channels=3, ifilm="all").eval()
    bn_outputs, film_inputs = set(), {}
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.register_forward_hook(lambda m, args, out: bn_outputs.add(id(out)))
        elif isinstance(module, IFiLM):
            module.register_forward_hook(lambda m, args, out, name=name: film_inputs.__setitem__(name, args[0]))
    with torch.no_grad():
        net(torch.rand(2, 3, 32, 32))
    checked = {name: x for name, x in film_inputs.items()
               if backbone != "resnet29" or not (name.endswith("shortcut.film") or name == "stages.0.0.layer1.film")}
    assert len(film_inputs) == sum(isinstance(m, IFiLM) for m in net.modules()) and len(checked) >= 4
    for name, x in checked.items():
        assert id(x) in bn_outputs, f"{name} does not modulate a BatchNorm's output"
        assert (x < 0).any(), f"{name} sees no negative values: a ReLU ran first"   # (an in-place ReLU keeps the id)


def test_forward_and_backward_stay_few_operations():
    """On a GPU a network with iFiLM in every block waits on the CPU that dispatches iFiLM's small
    operations (RESULTS.md backbones_cuda*.json), so their number is part of its speed: 97 aten calls
    for one forward and backward under bf16 autocast with plain matrix products, 161 with einsum."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    module = IFiLM(16)
    activation = torch.randn(4, 16, 5, 5, requires_grad=True)
    with Count():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = module(activation)
        output.float().sum().backward()
    assert Count.calls <= 110, f"{Count.calls} aten calls for one iFiLM forward and backward"
