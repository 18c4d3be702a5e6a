"""Figures and tables of notebooks 02 and 06: titles, axis labels, sliders that reference real traces."""
import numpy as np
import pytest

from nslviz.experiments.knn import KnnToyConfig, KnnToyResult
from nslviz.experiments.regression_table import RegressionCVConfig, RegressionCVResult
from nslviz.viz import regression as viz


@pytest.fixture(scope="module")
def toy():
    grid = np.linspace(-3, 3, 11)
    curve = np.sin(grid)
    return KnnToyResult(
        config=KnnToyConfig(), x_train=grid, y_train=curve, grid=grid, truth=curve,
        knn={1: curve, 5: curve * 0.9, 20: curve * 0.5}, local_linear={5: curve, 20: curve * 0.8},
        mlp=curve * 0.7, mn={0.01: curve, 0.1: curve, 1.0: curve}, mn_keys={t: grid[:4] for t in (0.01, 0.1, 1.0)},
        mn_values={t: curve[:4] for t in (0.01, 0.1, 1.0)}, from_prior={a: 2 * a * curve for a in (0.0, 0.25, 0.5)},
        prior=0.0, test_mse={"knn": {1: 0.2, 5: 0.1, 20: 0.15}, "local_linear": {5: 0.11, 20: 0.12}, "mlp": 0.14,
                             "mn": {0.01: 0.13, 0.1: 0.1, 1.0: 0.09}, "from_prior": {0.0: 0.5, 0.25: 0.2, 0.5: 0.2}})


@pytest.fixture(scope="module")
def cv():
    folds = [{"fold": f, "knn_mse": 0.6 + f / 100, "mlp_mse": 0.5 + f / 100, "mn_mse": 0.49 + f / 100, "k": 15,
              "layers": 2, "width": 32, "mlp_weight_decay": 0.0, "temperature": 0.3, "mn_weight_decay": 0.0,
              "entries": 280, "mlp_epochs": 12, "mn_epochs": 9} for f in range(3)]
    history = [{"epoch": e, "validation_loss": 1.0 / (e + 1) + 0.01 * e} for e in range(20)]
    return RegressionCVResult(config=RegressionCVConfig(folds=3), dataset="diabetes", n=442, d=10, targets=1,
                              folds=folds, knn_mse=np.array([r["knn_mse"] for r in folds]),
                              mlp_mse=np.array([r["mlp_mse"] for r in folds]),
                              mn_mse=np.array([r["mn_mse"] for r in folds]),
                              ttests={"mn_vs_mlp": {"pvalue": 0.01, "mean_difference": -0.01},
                                      "mn_vs_knn": {"pvalue": 0.02, "mean_difference": -0.11}},
                              histories=[{"mlp": history, "mn": history}] * 3)


def _labelled(fig):
    assert fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text


def _slider_ok(fig, steps):
    slider = fig.layout.sliders[0]
    assert len(slider.steps) == steps
    for step in slider.steps:
        visible = step.args[0]["visible"]
        assert len(visible) == len(fig.data) and sum(visible) >= 3
    shown = [trace.visible is not False for trace in fig.data]
    assert shown == list(slider.steps[slider.active].args[0]["visible"])   # the initial view is the active step


def test_toy_figures(toy):
    fig = viz.knn_toy_figure(toy)
    _labelled(fig)
    _slider_ok(fig, 2)                                  # k = 5, 20: where both kNN and local linear exist
    assert [step.label for step in fig.layout.sliders[0].steps] == ["5", "20"]
    only_one = KnnToyResult(**{**vars(toy), "knn": {1: toy.knn[1]}, "local_linear": {}})   # toy_neighbors=[1]
    fig = viz.knn_toy_figure(only_one)
    _labelled(fig)
    assert not fig.layout.sliders and "no k ≥ 2 among the k run (1)" in fig.layout.annotations[0].text
    fig = viz.mn_toy_figure(toy)
    _labelled(fig)
    _slider_ok(fig, 3)
    assert fig.layout.sliders[0].active == 1             # T = 0.1 first
    # both toy figures keep one y-range for every slider step: the data's, with a margin
    data = np.concatenate([toy.y_train, toy.truth])
    for figure in (viz.knn_toy_figure(toy), fig):
        low, high = figure.layout.yaxis.range
        assert low < data.min() and high > data.max() and high - low < 2 * (data.max() - data.min())
    fig = viz.toy_error_figure(toy)
    _labelled(fig)
    noise = [shape.y0 for shape in fig.layout.shapes if shape.line.dash == "dot"]
    assert noise == [pytest.approx(toy.config.noise ** 2)]                      # the best possible MSE: σ²
    # two x axes, each with its own title and ticks at the values that were run
    assert fig.layout.xaxis.title.text.startswith("neighbors k") and fig.layout.xaxis2.title.text == "temperature T (MN)"
    assert list(fig.layout.xaxis.tickvals) == [1, 5, 20] and list(fig.layout.xaxis2.ticktext) == ["0.01", "0.1", "1"]


def test_toy_error_figure_draws_each_methods_own_errors(toy):
    fig = viz.toy_error_figure(toy)
    curves = {trace.name: trace for trace in fig.data}
    for method, name in (("knn", "kNN (x: k)"), ("local_linear", "local linear (x: k)"), ("mn", "MN (top axis: T)")):
        trace, values = curves[name], sorted(toy.test_mse[method])
        assert list(trace.x) == values
        np.testing.assert_allclose(trace.y, [toy.test_mse[method][v] for v in values])


def test_prior_to_knn_figure_starts_at_knn_and_steps_through_every_step_size(toy):
    fig = viz.prior_to_knn_figure(toy)
    _labelled(fig)
    _slider_ok(fig, 3)
    assert [step.label for step in fig.layout.sliders[0].steps] == ["0", "0.25", "0.5"]
    assert fig.layout.sliders[0].active == 2                               # α = 1/2, kNN, first
    shown = [trace for trace in fig.data if trace.visible is not False]
    assert "the prior" in shown[2].name and list(shown[2].y) == [0.0, 0.0]
    assert "α = 0.5" in shown[3].name and "test MSE 0.200" in shown[3].name
    np.testing.assert_allclose(shown[3].y, toy.from_prior[0.5], atol=1e-6)


def test_mn_toy_figure_shows_every_entry(toy):
    """A learned entry whose key or value lies beyond the data (a key left of the grid, a value above
    the curve) stays on the plot, at every temperature of the slider."""
    import dataclasses
    keys = {t: np.array([-3.4, 0.0, 3.0, 1.0]) for t in toy.mn_keys}
    values = {t: np.array([0.0, 2.6, -2.3, 0.5]) for t in toy.mn_values}
    fig = viz.mn_toy_figure(dataclasses.replace(toy, mn_keys=keys, mn_values=values))
    (x_low, x_high), (y_low, y_high) = fig.layout.xaxis.range, fig.layout.yaxis.range
    assert x_low < -3.4 and x_high >= 3.0 and y_low < -2.3 and y_high > 2.6
    assert viz.mn_toy_figure(toy).layout.xaxis.range == (-3.0, 3.0)       # keys inside the grid: the grid's range


def test_cv_figures_and_tables(cv):
    fig = viz.cv_folds_figure(cv)
    _labelled(fig)
    assert "p = 0.01" in fig.layout.title.text and "MN − MLP = -0.010 on average" in fig.layout.title.text
    assert len(fig.data) == 4
    _labelled(viz.validation_curves_figure(cv, fold=1))
    table = viz.table2_comparison(cv)
    assert ("gom", "paper (MN Table 2)") in table.index and ("diabetes", "this run (3 folds)") in table.index
    assert table.loc[("gom", "paper (MN Table 2)"), "Meta-Neighborhoods"] == "0.5681 ± 0.0563"   # as printed
    assert table.loc[("diabetes", "this run (3 folds)"), "Meta-Neighborhoods"].startswith("0.5")
    chosen = viz.chosen_hyperparameters(cv)
    assert list(chosen.index) == [1, 2, 3] and chosen.loc[1, "MN T"] == 0.3 and "MLP test MSE" in chosen.columns
    assert list(viz.agreement_table([{"k": 1, "x": 0.0}, {"k": 5, "x": 1e-16}]).index) == [1, 5]
    posterior = viz.agreement_table([{"step size α": 0.1, "τ²/σ²": 0.25, "max |Δ|": 0.0},
                                     {"step size α": 0.5, "τ²/σ²": float("inf"), "max |Δ|": 4.4e-16}])
    assert posterior.index.name == "step size α" and list(posterior.index) == [0.1, 0.5]
    assert list(posterior["τ²/σ²"]) == ["0.25", "∞"] and list(posterior["max |Δ|"]) == ["0", "4.4e-16"]


def test_empty_inputs_are_named():
    from nslviz.viz import nsl, spiral
    from nslviz.viz.neighbors import subcategory_table

    for draw, match in ((lambda: spiral.sweep_figure({}), "the sweep is empty"),
                        (lambda: viz.agreement_table([]), "no checks to show"),
                        (lambda: subcategory_table({}), "no methods to show"),
                        (lambda: nsl.static_mask_figure({"a": np.ones((3, 3))}, columns=0), "columns must be >= 1"),
                        (lambda: nsl.dynamic_mask_figure(np.zeros((1, 8, 8)), np.ones((8, 8, 3, 3)), "a", max_frames=0),
                         "max_frames must be >= 1")):
        with pytest.raises(ValueError, match=match):
            draw()


def test_summary_table_writes_a_score_per_k_on_one_row_whole_and_rounded(toy):
    """Notebook 02's summary holds a test MSE per k (per T for MN): one row each, every float rounded,
    and a notebook shows the row whole instead of cutting it at 50 characters."""
    import pandas as pd

    from nslviz.viz import setup_notebook, summary_table
    table = summary_table({**toy.summary(), "knn_mse": {1: 0.18047340844954826, 3: 0.1219120037759854}},
                          leave_out=["seconds"])
    assert table.loc["knn_mse", "value"] == "1: 0.1805, 3: 0.1219"
    assert table.loc["mn_mse", "value"] == "0.01: 0.1300, 0.1: 0.1000, 1.0: 0.09000"    # one precision throughout
    assert table.loc["mlp_mse", "value"] == "0.1400" and "seconds" not in table.index
    assert summary_table({"acc": 1.0, "seconds": 1234.5, "loss": 7.75e-06}, digits=4)["value"].tolist() == \
        ["1.000", "1234", "7.750e-06"]
    colwidth = pd.get_option("display.max_colwidth")
    try:
        setup_notebook()
        assert "1: 0.1805, 3: 0.1219" in pd.DataFrame({"value": ["x" * 60 + " 1: 0.1805, 3: 0.1219"]})._repr_html_()
    finally:
        pd.set_option("display.max_colwidth", colwidth)
