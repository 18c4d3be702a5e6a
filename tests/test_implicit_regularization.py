"""NSL sec. 5.1 (nslviz.experiments.implicit_regularization): the factorised flow's gradients, exact
properties of the standard flow, and the claim that the factorised flow ends at a lower nuclear norm."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from nslviz.__main__ import main
from nslviz.experiments.implicit_regularization import (ImplicitRegularizationConfig, factorized_velocity,
                                                     make_problem, run_implicit_regularization)

QUICK = dict(steps=4000, lr=0.3, snapshots=50)


def test_factorized_velocity_is_the_negative_gradient_and_eq6():
    rng = np.random.default_rng(0)
    n, m, N = 5, 4, 3
    x, y = rng.normal(size=(N, n)), rng.normal(size=(N, m))
    similarity, factor = rng.normal(size=(n, n)), rng.normal(size=(n, m))
    descent = x.T @ (y - x @ similarity.T @ factor)                       # −∇_W L at W = MᵀW′
    factor_velocity, similarity_velocity = factorized_velocity(similarity, factor, descent)
    M, Wp = (torch.tensor(a, requires_grad=True) for a in (similarity, factor))
    loss = 0.5 * (torch.tensor(y) - torch.tensor(x) @ M.t() @ Wp).square().sum()
    grad_m, grad_wp = torch.autograd.grad(loss, (M, Wp))
    np.testing.assert_allclose(factor_velocity, -grad_wp.numpy(), rtol=1e-10)
    np.testing.assert_allclose(similarity_velocity, -grad_m.numpy(), rtol=1e-10)
    end_to_end = similarity_velocity.T @ factor + similarity.T @ factor_velocity      # d(MᵀW′)/dt
    eq6 = similarity.T @ similarity @ descent + descent @ factor.T @ factor
    np.testing.assert_allclose(end_to_end, eq6, rtol=1e-10)


def test_standard_flow_keeps_the_null_space_part_of_its_start():
    """Exact for gradient descent on W: updates lie in span(x_i), so (I − P)W_t = (I − P)W_0."""
    result = run_implicit_regularization(observation="full", init_scale=0.5, **QUICK)
    config = result.config
    x, _, targets, truth = make_problem(config, np.random.default_rng(config.seed))
    null = np.eye(config.inputs) - np.linalg.pinv(x) @ x
    np.testing.assert_allclose(null @ result.standard.weights[-1], null @ result.standard.weights[0], atol=1e-10)
    np.testing.assert_allclose(x @ result.standard.final, targets, atol=1e-6)          # interpolates
    assert result.factorized.loss[-1] < 1e-3 * result.factorized.loss[0]
    np.testing.assert_allclose(result.min_frobenius, np.linalg.pinv(x) @ x @ truth, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_factorized_flow_reaches_lower_nuclear_norm(seed):
    """The paper's claim at small scale, with every parameter initialised at the same scale.
    Full observation: all exact solutions share W_F = X⁺Y, the min-Frobenius = min-nuclear-norm
    solution; the factorised flow ends near it, the standard flow keeps its start's null part.
    Projected observation: the factorised flow ends near the rank-1 truth (nuclear norm 1), the
    standard flow at the min-Frobenius solution (much larger nuclear norm)."""
    full = run_implicit_regularization(observation="full", init_scale=0.1, seed=seed, **QUICK).summary()
    assert full["standard_loss"] < 1e-6 and full["factorized_loss"] < 1e-3
    assert full["factorized_nuclear_norm"] < full["standard_nuclear_norm"] - 0.1
    assert full["factorized_nuclear_norm"] < 1.1 * full["min_frobenius_nuclear_norm"]

    projected = run_implicit_regularization(observation="projected", seed=seed, **QUICK).summary()
    assert projected["standard_loss"] < 1e-6 and projected["factorized_loss"] < 5e-3
    assert projected["factorized_nuclear_norm"] < 1.1 * projected["truth_nuclear_norm"]
    assert projected["standard_nuclear_norm"] > 1.4 * projected["factorized_nuclear_norm"]
    assert abs(projected["standard_nuclear_norm"] / projected["min_frobenius_nuclear_norm"] - 1) < 0.1
    assert projected["factorized_error_to_truth"] < 0.5 * projected["standard_error_to_truth"]


def test_identity_init_gives_no_advantage():
    """With NSL's own M₀ = I the two flows start at the same W and end at nearly the same nuclear
    norm: the implicit bias needs a small start of both factors."""
    s = run_implicit_regularization(observation="full", init="identity", init_scale=0.5, **QUICK).summary()
    assert abs(s["factorized_nuclear_norm"] - s["standard_nuclear_norm"]) < 0.1 * s["standard_nuclear_norm"]


def test_records_shapes_determinism_and_projection():
    config = ImplicitRegularizationConfig(inputs=6, outputs=4, steps=300, snapshots=31, observation="projected")
    a, b = run_implicit_regularization(config), run_implicit_regularization(config)
    S = len(a.steps)
    assert a.steps[0] == 0 and a.steps[1] == 1 and a.steps[-1] == 300 and 20 <= S <= 31
    assert np.all(np.diff(a.steps) > 0) and np.all(np.diff(np.log(a.steps[5:])) < 0.5)     # geometric
    assert a.standard.weights.shape == (S, 6, 4) and a.factorized.singular_values.shape == (S, 4)
    np.testing.assert_allclose(a.factorized.nuclear_norm, a.factorized.singular_values.sum(1))
    assert np.all(np.diff(a.standard.loss) <= 1e-12)                     # gradient descent, small steps
    np.testing.assert_array_equal(a.factorized.weights, b.factorized.weights)
    p = a.projection
    assert p["standard"].shape == (S, 2) and p["factorized"].shape == (S, 2) and p["truth"].shape == (2,)
    assert p["min_frobenius"][1] < 1e-10 < p["truth"][1]                 # W_F has no null-space part, W* has
    np.testing.assert_allclose(p["standard"][:, 1], p["standard"][0, 1])  # the standard flow keeps its own
    assert abs(p["min_frobenius"][0] - p["truth"][0]) < 1e-8            # both are exact solutions
    assert set(a.summary()) >= {"standard_nuclear_norm", "factorized_nuclear_norm", "min_frobenius_nuclear_norm",
                                "truth_nuclear_norm", "standard_stable_rank", "seconds"}


def test_bad_configurations():
    with pytest.raises(ValueError, match="unknown observation"):
        ImplicitRegularizationConfig(observation="partial")
    with pytest.raises(ValueError, match="under-determined"):
        ImplicitRegularizationConfig(samples=12)
    with pytest.raises(ValueError, match="lr"):
        ImplicitRegularizationConfig(lr=1.5)
    with pytest.raises(ValueError, match="rank must be"):
        ImplicitRegularizationConfig(rank=20)
    with pytest.raises(ValueError, match="unknown init"):
        run_implicit_regularization(init="zeros")
    with pytest.raises(ValueError, match="snapshots must be >= 2"):
        ImplicitRegularizationConfig(snapshots=1)


def test_a_diverging_flow_is_named_and_the_last_step_is_always_recorded(capsys):
    with pytest.raises(FloatingPointError, match=r"flow diverged by step \d+ \(init_scale=5, lr=0.1\).*lower init_scale"):
        run_implicit_regularization(init_scale=5, steps=200)
    assert main(["implicit-reg", "--init-scale", "5", "--steps", "200"]) == 1
    assert "diverged" in capsys.readouterr().err
    assert list(run_implicit_regularization(snapshots=2, steps=50).steps)[-1] == 50


def test_cli_json_and_run_dir(tmp_path, capsys):
    assert main(["implicit-reg", "--steps", "200", "--observation", "projected", "--json",
                 "--run-dir", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["observation"] == "projected" and summary["steps"] == 200
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and rows[-1]["step"] == 200 and len(rows) > 50
    assert rows[-1]["standard_nuclear_norm"] == pytest.approx(summary["standard_nuclear_norm"])
    with pytest.raises(SystemExit) as error:
        main(["implicit-reg", "--samples", "40"])
    assert error.value.code == 2


def test_figures_label_their_axes_and_keep_the_reference_lines_inside():
    """Notebook 08's three figures: titled, every axis labelled (subscripts as HTML, not TeX), and the
    nuclear-norm panel's range reaching above both reference lines and both flows."""
    from nslviz.viz.common import NOTEBOOK_WIDTH
    from nslviz.viz.nsl import flow_trajectories_figure, nuclear_norm_figure, singular_values_figure
    result = run_implicit_regularization(observation="full", init_scale=0.1, **QUICK)
    for fig in (flow_trajectories_figure(result), nuclear_norm_figure(result), singular_values_figure(result)):
        assert fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
        assert fig.layout.width <= NOTEBOOK_WIDTH and "full" in fig.layout.title.text   # which setting it shows
        texts = [fig.layout.xaxis.title.text, fig.layout.yaxis.title.text] + [a.text for a in fig.layout.annotations]
        assert not any("_F" in t or "_*" in t or "σ_k" in t for t in texts), texts
    fig = nuclear_norm_figure(result)
    lines = [trace for trace in fig.data if trace.xaxis == "x2"]
    top = max(max(trace.y) for trace in lines)
    assert fig.layout.yaxis2.range[0] == 0 and fig.layout.yaxis2.range[1] > top
    assert all(a.yshift >= 10 for a in fig.layout.annotations)          # panel titles above the top tick labels


def test_flow_time_stable_rank_projection_and_the_matched_start_are_as_written():
    """Time is steps × lr / λ_max (the step is lr / ‖A‖²₂); the stable rank is ‖W‖²_F / ‖W‖²₂; the
    "seen" coordinate of W_F is its own norm; the matched start begins both flows at the same W = MᵀW′."""
    config = ImplicitRegularizationConfig(inputs=6, outputs=4, steps=300, snapshots=31, observation="projected")
    run = run_implicit_regularization(config)
    np.testing.assert_allclose(run.flow_time, run.steps * config.lr / np.linalg.norm(run.operator, 2) ** 2)
    singular = np.linalg.svd(run.standard.weights[-1], compute_uv=False)
    assert run.summary()["standard_stable_rank"] == pytest.approx((singular ** 2).sum() / singular[0] ** 2)
    assert run.projection["min_frobenius"][0] == pytest.approx(np.linalg.norm(run.min_frobenius))
    matched = run_implicit_regularization(dataclasses.replace(config, init="matched"))
    np.testing.assert_allclose(matched.standard.weights[0], matched.factorized.weights[0])
