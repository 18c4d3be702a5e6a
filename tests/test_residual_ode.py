"""NSL sec. 5.2 (nslviz.experiments.residual_ode): a similarity W̃ + M makes an NSL layer a residual
step whatever kernel it stores, and a stack of such layers is an ODE solver, first order for forward
Euler and second for Heun's method, both unstable above Δt = 1/4."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from cli import run_in_process
from nslviz.experiments.residual_ode import (METHODS, ResidualODEConfig, convergence_order, exact_heat,
                                             integrate, residual_similarity, run_residual_ode, step_layer,
                                             step_stencil)
from nslviz.viz.nsl import residual_ode_error_figure, residual_ode_maps_figure


def _laplacian_by_hand(x: torch.Tensor) -> torch.Tensor:
    """L x with zero outside the map, from the four neighbours: (H, W) float64 -> (H, W)."""
    padded = F.pad(x, (1, 1, 1, 1))
    return padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * x


@pytest.mark.parametrize("k", [3, 5])
def test_the_rank_one_similarity_makes_any_kernel_apply_the_stencil(k):
    generator = torch.Generator().manual_seed(1)
    kernel, stencil = (torch.randn(k, k, generator=generator, dtype=torch.float64) for _ in range(2))
    m = residual_similarity(kernel, stencil)                                   # (K, K)
    assert m.shape == (k * k, k * k)
    assert torch.allclose(kernel.flatten() @ m, stencil.flatten(), atol=1e-12)           # WᵀM′ = uᵀ
    centre = torch.zeros(k, k, dtype=torch.float64)
    centre[k // 2, k // 2] = 1
    assert torch.allclose(kernel.flatten() @ residual_similarity(kernel, centre), centre.flatten(), atol=1e-12)


def test_a_zero_kernel_or_mismatched_shapes_are_named():
    with pytest.raises(ValueError, match="all zeros"):
        residual_similarity(torch.zeros(3, 3), torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"same k×k shape, got \(3, 3\) and \(5, 5\)"):
        residual_similarity(torch.ones(3, 3), torch.ones(5, 5))
    with pytest.raises(ValueError, match="method"):
        step_stencil("rk4", 0.1)
    with pytest.raises(ValueError, match="dt"):
        step_stencil("euler", 0.0)


@pytest.mark.parametrize("method", list(METHODS))
def test_one_layer_is_one_step_of_its_method_whatever_kernel_it_stores(method):
    x = F.pad(torch.randn(9, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64), (2, 2, 2, 2))
    dt = 0.1
    lx = _laplacian_by_hand(x)
    expected = x + dt * lx if method == "euler" else x + dt * lx + dt ** 2 / 2 * _laplacian_by_hand(lx)
    layers = [step_layer(method, dt, torch.Generator().manual_seed(seed)) for seed in (0, 1)]
    for layer in layers:
        assert layer.kernel_size == (3 if method == "euler" else 5) and layer.mode == "static_uns"
        with torch.no_grad():
            out = layer(x[None, None])[0, 0]
        assert torch.allclose(out, expected, atol=1e-12)
        w, m = layer.weight.flatten(), layer.static_similarity()
        assert torch.allclose(w @ m, step_stencil(method, dt).flatten(), atol=1e-12)     # WᵀM′ = uᵀ
        assert torch.linalg.matrix_rank(m) == 1                                     # not I: W̃ + M
    assert not torch.allclose(layers[0].weight, layers[1].weight)                  # two random kernels, one step


def test_the_exact_solution_is_the_matrix_exponential():
    image = np.random.default_rng(0).standard_normal((5, 6))
    h, w = image.shape
    laplacian = np.kron(_second_difference(h), np.eye(w)) + np.kron(np.eye(h), _second_difference(w))
    expected = (scipy.linalg.expm(0.7 * laplacian) @ image.ravel()).reshape(h, w)
    np.testing.assert_allclose(exact_heat(image, 0.7), expected, atol=1e-12)
    np.testing.assert_allclose(exact_heat(image, 0.0), image, atol=1e-12)


def _second_difference(n: int) -> np.ndarray:
    return -2 * np.eye(n) + np.eye(n, k=1) + np.eye(n, k=-1)


def test_euler_is_first_order_heun_second_and_both_blow_up_above_a_quarter():
    result = run_residual_ode(layers=(10, 15, 30, 60))
    euler, heun = (convergence_order(result.errors[m], result.steps) for m in ("euler", "heun"))
    assert 0.9 < euler < 1.1 and 1.9 < heun < 2.2
    for method in METHODS:
        errors = result.errors[method]
        assert errors[10] > 20 * errors[15]                                  # Δt = 0.3 against 0.2
        assert errors[60] < errors[30] < errors[15]
    assert result.errors["heun"][60] < result.errors["euler"][60] / 10
    assert result.residual_difference < 1e-12
    assert result.config.margin == 13 and result.image.shape == result.exact.shape == (66, 66)


def test_the_stored_kernels_do_not_matter_and_the_same_seed_gives_the_same_numbers():
    image = F.pad(torch.randn(8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64), (3,) * 4)
    a, b = integrate(image, "heun", 6, 1.0, seed=0), integrate(image, "heun", 6, 1.0, seed=0)
    assert torch.equal(a, b)
    assert torch.allclose(integrate(image, "heun", 6, 1.0, seed=5), a, atol=1e-10)


def test_bad_settings_are_named(monkeypatch):
    for overrides, match in ((dict(t_end=0.0), "t_end"), (dict(layers=()), "at least one stack depth"),
                             (dict(layers=(10, 0)), "layers"), (dict(margin=-1), "margin"), (dict(size=2), "size"),
                             (dict(margin=12), r"margin 12 is too narrow for t_end 3: .* at least 13"),
                             (dict(t_end=10.0, margin=13), "at least 23")):
        with pytest.raises(ValueError, match=match):
            ResidualODEConfig(**overrides)
    with pytest.raises(ValueError, match="at least two depths"):
        convergence_order({10: 0.2, 12: 0.01}, {10: 0.3, 12: 0.25})
    # a typo in t_end sets a margin of 7,072 px: named with its memory before anything is allocated
    import nslviz._memory as memory
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 24 * 10**9)     # as on a 24 GB machine
    with pytest.raises(ValueError, match=r"residual-ode on a 14149×14149 map \(5 px and a 7072-px zero margin on each "
                                         r"side\) needs about .* GB .*use a smaller t_end"):
        run_residual_ode(ResidualODEConfig(t_end=1e6, layers=(10,), size=5))


def test_figures_draw_what_ran():
    result = run_residual_ode(layers=(10, 15, 30), size=12)
    maps = residual_ode_maps_figure(result)
    assert [trace.name.split("<br>")[0] for trace in maps.data] == ["input x(0)", "exact x(3)", "15 layers, Δt = 0.2",
                                                                     "10 layers, Δt = 0.3"]
    assert maps.layout.title.text.startswith("Stacks of NSL layers") and maps.layout.xaxis.title.text
    assert "Heun" in residual_ode_maps_figure(result, "heun", (30,)).layout.title.text
    with pytest.raises(ValueError, match=r"layers \[20\] were not run; the result has \[10, 15, 30\]"):
        residual_ode_maps_figure(result, layers=(20,))
    with pytest.raises(ValueError, match="method must be one of 'euler', 'heun', got 'rk4'"):
        residual_ode_maps_figure(result, "rk4")
    errors = residual_ode_error_figure(result)
    assert [trace.name.split(":")[0] for trace in errors.data] == ["forward Euler", "Heun (2nd-order Runge–Kutta)"]
    assert list(errors.data[0].x) == [0.1, 0.2, 0.3] and errors.layout.xaxis.type == "log"
    assert list(errors.layout.xaxis.ticktext) == ["0.1", "0.2", "0.3"]
    assert errors.layout.title.text and errors.layout.xaxis.title.text and errors.layout.yaxis.title.text


def test_command_prints_the_errors_and_one_json_object():
    result = run_in_process("residual-ode", "--layers", "10", "20", "40", "--size", "16", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["layers"] == [10, 20, 40] and set(summary["rms_error"]) == set(METHODS)
    assert summary["dt"]["20"] == 0.15 and any(line.startswith("order") and "heun 2." in line for line in lines)
    bad = run_in_process("residual-ode", "--size", "80")
    assert bad.returncode == 2 and "size must be at most 71" in bad.stderr
    narrow = run_in_process("residual-ode", "--margin", "6")
    assert narrow.returncode == 2 and "margin 6 is too narrow" in narrow.stderr
