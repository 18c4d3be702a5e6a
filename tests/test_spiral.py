"""The spiral toy: data, training, determinism, CLI contract."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from cli import run_in_process
from nslviz._checks import offset_seed
from nslviz.datasets import make_spiral, spiral_splits
from nslviz.experiments.spiral import SpiralConfig, run_spiral


def test_spiral_data_shapes_labels_and_standardisation():
    x, y = make_spiral(50, seed=3)
    assert x.shape == (100, 2) and y.tolist() == [0] * 50 + [1] * 50
    x2, _ = make_spiral(50, seed=3)
    torch.testing.assert_close(x, x2)                                 # seeded
    x_train, y_train, x_test, y_test = spiral_splits(200, noise=0.5, seed=1)
    assert abs(float(x_train.mean())) < 1e-5 and abs(float(x_train.std()) - 1) < 1e-5
    assert not torch.allclose(x_train, x_test)                        # independent test draw
    quiet, _ = make_spiral(50, noise=0.0, seed=0)
    noisy, _ = make_spiral(50, noise=2.0, seed=0)
    assert not torch.allclose(quiet, noisy)


def test_the_test_spiral_is_standardised_with_the_training_sets_mean_and_deviation():
    """One affine map for both splits, the training set's: the test points are not standardised on
    their own statistics (which would move them by the test draw's own mean and spread)."""
    raw_train, _ = make_spiral(200, noise=0.5, seed=1)
    raw_test, _ = make_spiral(200, noise=0.5, seed=offset_seed(1, 1))
    x_train, _, x_test, _ = spiral_splits(200, noise=0.5, seed=1)
    mean, std = raw_train.mean(), raw_train.std()
    torch.testing.assert_close(x_train, (raw_train - mean) / std)
    torch.testing.assert_close(x_test, (raw_test - mean) / std)


@pytest.fixture(scope="module")
def short_run():
    return run_spiral(SpiralConfig(steps=600, frames=4, grid_size=20))


def test_short_run_learns_and_records_trajectories(short_run):
    r = short_run
    assert r.keys.shape == (4, 100, 2) and r.frame_steps.tolist()[0] == 0 and r.frame_steps[-1] == 600
    assert r.mn_grid_prob.shape == (4, 20, 20) and r.mn_test_pred.shape == (4, 1600)
    assert not np.allclose(r.keys[0], r.keys[-1])                     # the neighbors moved
    assert r.mn_test_acc > r.linear_test_acc + 0.15                   # MN beats the linear model early already
    assert r.linear_test_acc < 0.75
    assert sorted(set(r.entry_labels.tolist())) == [0, 1]


def test_same_seed_same_numbers(short_run):
    again = run_spiral(SpiralConfig(steps=600, frames=4, grid_size=20))
    assert again.mn_test_acc == short_run.mn_test_acc
    np.testing.assert_array_equal(again.keys, short_run.keys)
    other = run_spiral(SpiralConfig(steps=600, frames=4, grid_size=20, seed=1))
    assert not np.array_equal(other.keys, short_run.keys)


def test_run_dir_files(tmp_path):
    run_spiral(SpiralConfig(steps=20, frames=2, grid_size=5), run_dir=tmp_path / "r")
    assert json.loads((tmp_path / "r" / "config.json").read_text())["steps"] == 20
    rows = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2 and "NaN" not in rows[0]                       # strict JSON: no NaN
    assert json.loads(rows[0])["train_loss"] is None and json.loads(rows[1])["train_loss"] > 0
    assert "mn_test_acc" in json.loads((tmp_path / "r" / "summary.json").read_text())
    with pytest.raises(ValueError, match=r"already holds a finished run \(summary.json\); replace it"):
        run_spiral(SpiralConfig(steps=10, frames=2, grid_size=5), run_dir=tmp_path / "r")
    run_spiral(SpiralConfig(steps=10, frames=2, grid_size=5), run_dir=tmp_path / "r", overwrite=True)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["steps"] == 10
    for weights in ("best.pt", "checkpoint.pt"):                 # a training run's weights: never replaced by it
        (tmp_path / "r" / weights).write_bytes(b"weights of a training run")
        with pytest.raises(ValueError, match=r"holds a training run \(checkpoint.pt or best.pt\), which this command "
                                             r"does not replace, even with overwrite"):
            run_spiral(SpiralConfig(steps=10, frames=2, grid_size=5), run_dir=tmp_path / "r", overwrite=True)
        assert (tmp_path / "r" / weights).read_bytes() == b"weights of a training run"
        (tmp_path / "r" / weights).unlink()


def test_cli_refuses_an_unusable_or_used_run_dir_before_training(tmp_path, capsys):
    from nslviz.__main__ import main
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for run_dir, message in ((a_file, "is a file, not a folder"), (a_file / "sub", "cannot be made")):
        with pytest.raises(SystemExit) as exit_info:
            main(["spiral", "--steps", "10", "--run-dir", str(run_dir)])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert main(["spiral", "--steps", "10", "--run-dir", str(tmp_path / "r")]) == 0
    with pytest.raises(SystemExit):
        main(["spiral", "--steps", "10", "--run-dir", str(tmp_path / "r")])
    assert "already holds a finished run" in capsys.readouterr().err
    assert main(["spiral", "--steps", "10", "--run-dir", str(tmp_path / "r"), "--overwrite"]) == 0


@pytest.mark.parametrize("field,value", [("temperature", 0.0), ("entries", 0), ("steps", 0),
                                         ("similarity", "l1"), ("inner_steps", 0)])
def test_bad_config(field, value):
    with pytest.raises(ValueError, match=field.replace("entries", "entries S").replace("temperature", "temperature T")
                       if field != "similarity" else "unknown similarity"):
        SpiralConfig(**{field: value})


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "nslviz", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_json_last_line():
    out = _cli("spiral", "--steps", "50", "--entries", "20", "--temperature", "0.2", "--seed", "3", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ["mn_test_acc", "linear_test_acc", "steps", "entries", "temperature", "seconds"]:
        assert key in summary
    assert (summary["steps"], summary["entries"], summary["temperature"]) == (50, 20, 0.2)


@pytest.mark.parametrize("args", [["spiral", "--temperature", "0"], ["spiral", "--temperature", "-1"],
                                  ["spiral", "--entries", "0"], ["spiral", "--steps", "ten"],
                                  ["spiral", "--bogus"], ["nonsense"], []])
def test_cli_bad_arguments_exit_2_with_usage(args):
    out = run_in_process(*args)
    assert out.returncode == 2
    assert "usage:" in out.stderr


def test_explorer_sliders_redraw_the_boundary_as_widget_state(short_run):
    """The figure is the Output widget's state (its `outputs`), not a captured display: the capture
    raced with headless papermill runs and hung notebook 01's export about one run in two."""
    import plotly.io as pio

    import pandas as pd

    from nslviz.viz import setup_notebook
    from nslviz.viz.spiral import spiral_explorer
    calls, renderer, template = [], pio.renderers.default, pio.templates.default
    colwidth = pd.get_option("display.max_colwidth")
    setup_notebook()                                               # as the notebook does first

    def run(temperature, entries):
        calls.append((temperature, entries))
        return short_run

    try:
        explorer = spiral_explorer(run, [0.1, 0.5, 1.0, 2.0], [20, 50, 80, 100], start=(0.5, 100))
        box = explorer.widget
        sliders, note, out = box.children[0].children, box.children[1], box.children[2]
        assert [len(slider.options) for slider in sliders] == [4, 4]
        assert calls == [(0.5, 100)] and len(out.outputs) == 1         # starts where asked
        assert set(out.outputs[0]["data"]) == {"application/vnd.plotly.v1+json"}   # no second plotly.js
        assert f"{short_run.config.steps} training steps: MN test accuracy {short_run.mn_test_acc:.3f}" in note.value
        sliders[1].value = 50                                      # the S slider
        assert calls[-1] == (0.5, 50) and len(out.outputs) == 1   # replaced, not appended
        # JupyterLab draws the widget; a page without a kernel draws the note instead
        bundle = explorer._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle and "needs a running kernel" in bundle["text/html"]
    finally:
        pio.renderers.default, pio.templates.default = renderer, template
        pd.set_option("display.max_colwidth", colwidth)


def test_explorer_sliders_offer_each_value_once_in_increasing_order(short_run):
    """A list given out of order, or with a value twice (papermill -p sweep_temperatures 1,0.1,0.3,0.1), is
    not a slider that jumps back and forth or has two stops that show the same pair."""
    from nslviz.viz.spiral import spiral_explorer

    explorer = spiral_explorer(lambda t, s: short_run, [1.0, 0.1, 0.3, 0.1], [100, 10, 10], start=(0.3, 100))
    sliders = explorer.widget.children[0].children
    assert [tuple(slider.options) for slider in sliders] == [(0.1, 0.3, 1.0), (10, 100)]
    assert [slider.value for slider in sliders] == [0.3, 100]
    for temperatures, entries in (([], [10]), ([0.1], [])):
        with pytest.raises(ValueError, match="the sliders need at least one T and one S"):
            spiral_explorer(lambda t, s: short_run, temperatures, entries)


def test_explorer_note_says_when_a_pair_stops_and_which_pair_the_figure_still_shows(short_run):
    """A callback's error (or the kernel interrupted while a pair trains) reaches no cell in JupyterLab: the
    note said "training…" for good, over the figure of another pair than the sliders'. It says what happened."""
    from nslviz.viz.spiral import spiral_explorer

    def run(temperature, entries):
        if entries == 10:
            raise RuntimeError("out of memory")
        if entries == 30:
            raise KeyboardInterrupt
        return short_run

    explorer = spiral_explorer(run, [0.1, 1.0], [10, 30, 100], start=(0.1, 100))
    (t_slider, s_slider), note, out = explorer.widget.children[0].children, *explorer.widget.children[1:]
    shown = out.outputs
    for entries, reason in ((10, "RuntimeError: out of memory"), (30, "interrupted")):
        with pytest.raises((RuntimeError, KeyboardInterrupt)):          # still raised, for the log console
            s_slider.value = entries
        assert note.value.startswith(f"⚠ T=0.1, S={entries} did not finish ({reason})")
        assert "the figure below is still T=0.1, S=100" in note.value and "⏳" not in note.value
        assert out.outputs == shown
    s_slider.value = 100                                                # a pair that finishes is drawn
    t_slider.value = 1.0
    assert note.value.startswith(f"T=1, S=100, {short_run.config.steps} training steps: MN test accuracy")
    with pytest.raises(RuntimeError, match="out of memory"):             # the first draw's error: in the cell
        spiral_explorer(run, [0.1], [10])


def test_explorer_note_says_so_when_the_figure_of_a_pair_cannot_be_drawn(short_run, monkeypatch):
    """The pair trained, but turning its figure into the widget's state stopped (interrupted, or an
    error of the renderer): the note said "training…" for good."""
    import plotly.io as pio

    from nslviz.viz.spiral import spiral_explorer

    explorer = spiral_explorer(lambda t, s: short_run, [0.1], [10, 100], start=(0.1, 100))
    (_, s_slider), note, out = explorer.widget.children[0].children, *explorer.widget.children[1:]
    shown = out.outputs

    def stop(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(pio.renderers["plotly_mimetype"], "to_mimebundle", stop)
    with pytest.raises(KeyboardInterrupt):
        s_slider.value = 10
    assert note.value.startswith("⚠ T=0.1, S=10 did not finish (interrupted); the figure below is still T=0.1, S=100")
    assert out.outputs == shown


def test_configs_name_bad_seeds_and_sweeps_take_one_value_or_a_list():
    from nslviz.experiments.knn import KnnToyConfig
    from nslviz.experiments.spiral import SpiralConfig, spiral_sweep

    for make in (lambda: SpiralConfig(seed=-1), lambda: KnnToyConfig(seed=1.5)):
        with pytest.raises(ValueError, match="seed must be an integer from 0 to 2147483647"):
            make()
    with pytest.raises(ValueError, match="test_points must be >= 1, got 0"):
        KnnToyConfig(test_points=0)
    assert KnnToyConfig(temperatures=0.1, neighbors=5).temperatures == (0.1,)
    with pytest.raises(ValueError, match="entries must be a list of integers .* got 2.7"):
        spiral_sweep(0.1, [2.7], steps=2, progress=False)
    assert list(spiral_sweep(0.1, 10, steps=2, progress=False)) == [(0.1, 10)]


def test_linear_baseline_does_not_depend_on_t_or_s():
    """The left panel ("plain linear classifier") is the same model whatever the MN model's T and S:
    the same seeded batches, not the ones left after the dictionary's S-dependent initialisation."""
    small = run_spiral(SpiralConfig(steps=30, frames=2, grid_size=8, entries=10, temperature=0.3))
    large = run_spiral(SpiralConfig(steps=30, frames=2, grid_size=8, entries=60, temperature=0.1))
    assert small.linear_test_acc == large.linear_test_acc
    np.testing.assert_array_equal(small.linear_grid_prob, large.linear_grid_prob)
    assert not np.array_equal(small.mn_grid_prob[-1], large.mn_grid_prob[-1])
    other_seed = run_spiral(SpiralConfig(steps=30, frames=2, grid_size=8, entries=10, temperature=0.3, seed=1))
    assert not np.array_equal(other_seed.linear_grid_prob, small.linear_grid_prob)


def test_animation_draws_regions_and_boundary_in_every_frame(short_run):
    """Every frame carries the regions (class 1's cells as filled rectangles over class 0's box) and the
    boundary (a line computed in numpy), as scatter traces: plotly.js takes a heatmap off the plot while
    a frame's scatter traces move, and recomputed a contour trace too slowly to be seen. Every frame
    names every trace in order (a trace left out is drawn under the others while a frame draws)."""
    from nslviz.viz.isoline import isoline_segments, region_rectangles
    from nslviz.viz.spiral import FRAME_MS, REGION_COLORS, neighbor_animation

    fig = neighbor_animation(short_run)
    assert all(trace.type == "scatter" for trace in fig.data)
    assert [(trace.fill, trace.fillcolor) for trace in fig.data[:2]] == [("toself", color) for color in REGION_COLORS]
    assert fig.data[2].name == "decision boundary"
    assert len(fig.frames) == 4
    for f, frame in enumerate(fig.frames):
        assert frame.traces is None and len(frame.data) == len(fig.data)          # every trace, in order
        assert all(trace.type == "scatter" for trace in frame.data)
        assert frame.data[0].x is None and frame.data[4].x is None                # the box and trajectories stay
        expected_x, expected_y = region_rectangles(short_run.grid_x, short_run.grid_y, short_run.mn_grid_prob[f] > 0.5)
        np.testing.assert_allclose(np.asarray(frame.data[1].x, dtype=float), expected_x.astype(np.float32))
        np.testing.assert_allclose(np.asarray(frame.data[1].y, dtype=float), expected_y.astype(np.float32))
        assert np.isfinite(np.asarray(frame.data[1].x, dtype=float)).sum() >= 4   # class 1 has cells
        expected_x, _ = isoline_segments(short_run.grid_x, short_run.grid_y, short_run.mn_grid_prob[f])
        np.testing.assert_allclose(np.asarray(frame.data[2].x, dtype=float), expected_x.astype(np.float32))
        assert np.isfinite(np.asarray(frame.data[2].x, dtype=float)).sum() >= 2   # a boundary is drawn
    play = fig.layout.updatemenus[0].buttons[0]
    assert play.args[1]["frame"] == {"duration": FRAME_MS, "redraw": True}


def test_each_label_s_neighbors_are_a_trace_of_their_own_colour_in_every_frame(short_run):
    """The legend shows both labels' colours (one trace per label, not one trace of mixed colours, whose
    legend marker took the first neighbor's colour), and it stands right of the plot, clear of the title."""
    from nslviz.viz.common import NOTEBOOK_WIDTH
    from nslviz.viz.spiral import ENTRY_COLORS, linear_vs_meta_neighborhoods, neighbor_animation, sweep_figure

    fig = neighbor_animation(short_run)
    assert fig.layout.legend.x >= 1 and fig.layout.legend.xanchor == "left"
    for figure in (fig, linear_vs_meta_neighborhoods(short_run), sweep_figure({(0.1, 100): short_run})):
        assert figure.layout.width <= NOTEBOOK_WIDTH                     # whole in a notebook's output area
        neighbors = [trace for trace in figure.data if trace.name and trace.name.startswith("induced neighbors")]
        assert [(trace.name, trace.marker.color) for trace in neighbors] == \
            [("induced neighbors with label 0", ENTRY_COLORS[0]), ("induced neighbors with label 1", ENTRY_COLORS[1])]
    # the sweep's legend names what it draws: the boundary, the test points' colours and both labels' neighbors
    shown = [trace.name for trace in sweep_figure({(0.1, 100): short_run}).data if trace.showlegend is not False]
    assert shown == ["decision boundary", "test predictions<br>(blue: class 0, yellow: class 1)",
                     "induced neighbors with label 0", "induced neighbors with label 1"]
    # the test points are one trace of both colours, so its legend marker takes one point's colour (in the
    # animation another one from frame to frame): every figure's legend names the colours instead
    for figure in (fig, linear_vs_meta_neighborhoods(short_run)):
        points = [trace.name for trace in figure.data
                  if trace.name and trace.name.startswith("test predictions") and trace.showlegend is not False]
        assert len(points) == 1 and points[0].endswith("(blue: class 0, yellow: class 1)")
    for f, frame in enumerate(fig.frames):
        for label, trace in enumerate(frame.data[-2:]):
            keys = short_run.keys[f][short_run.entry_labels == label]
            np.testing.assert_allclose(np.column_stack([trace.x, trace.y]), keys.astype(np.float32))


def test_every_neighbor_of_every_frame_stays_on_the_plot(short_run):
    """The axes cover the decision surface's grid and every snapshot's neighbors, with a margin: a
    neighbor that walks past the grid's edge stays visible, and one on the edge is drawn whole."""
    import dataclasses

    from nslviz.viz.spiral import linear_vs_meta_neighborhoods, neighbor_animation, sweep_figure

    keys = short_run.keys.copy()
    keys[-1, 0] = [float(short_run.grid_x[0]) - 0.3, float(short_run.grid_y[-1])]   # off the grid, at the end
    moved = dataclasses.replace(short_run, keys=keys)
    for fig in (neighbor_animation(moved), linear_vs_meta_neighborhoods(moved), sweep_figure({(0.1, 100): moved})):
        for axis in (fig.layout.xaxis, fig.layout.yaxis):
            low, high = axis.range
            assert low < keys[..., 0].min() and low < keys[..., 1].min()
            assert high > float(short_run.grid_y[-1]) and high > keys.max()
    low, high = sweep_figure({(0.1, 100): short_run, (1.0, 100): moved}).layout.xaxis.range
    assert low < keys[..., 0].min()                                       # the sweep: every (T, S) run's neighbors


def test_sweep_starts_at_the_most_neighbors_and_sharpest_neighborhoods(short_run):
    from nslviz.viz.spiral import sweep_figure, sweep_order

    pairs = [(0.1, 10), (1.0, 100), (0.1, 100), (1.0, 10)]
    assert sweep_order(pairs) == [(0.1, 100), (1.0, 100), (0.1, 10), (1.0, 10)]
    fig = sweep_figure({pair: short_run for pair in pairs})
    assert [step.label.split(" (")[0] for step in fig.layout.sliders[0].steps] == \
        ["S=100, T=0.1", "S=100, T=1", "S=10, T=0.1", "S=10, T=1"]


def test_toy_data_refuse_bad_seeds():
    """make_spiral(seed=None) drew other data on every call; a float seed failed inside numpy or torch
    without naming the option."""
    from nslviz.datasets.toys import cluster_splits, make_clusters, make_spiral
    for bad in (None, 1.5, -1):
        with pytest.raises(ValueError, match="seed"):
            make_spiral(10, seed=bad)
        with pytest.raises(ValueError, match="seed"):
            make_clusters(10, seed=bad)
    with pytest.raises(ValueError, match="centers_seed"):
        make_clusters(10, centers_seed=-1)
    with pytest.raises(ValueError, match="centers_seed is not an option here"):
        cluster_splits(10, 10, centers_seed=1)


@pytest.mark.parametrize("command", [["spiral"], ["regress", "--quick"], ["implicit-reg"]])
def test_a_one_shot_command_never_replaces_a_training_run_even_with_overwrite(tmp_path, capsys, command):
    from nslviz.__main__ import main
    (tmp_path / "checkpoint.pt").write_bytes(b"weights of a training run")
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--run-dir", str(tmp_path), "--overwrite"])
    assert exit_info.value.code == 2 and "holds a training run" in capsys.readouterr().err
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"weights of a training run"


def test_accuracies_are_those_of_the_test_predictions_and_the_surfaces_are_the_predictions_on_a_grid(short_run):
    """The reported accuracies are the test points' (not the training set's), and each decision surface
    is drawn the right way round: at the grid point nearest a test point it predicts what the model
    predicts there (a surface drawn transposed disagrees on about half of them)."""
    r = short_run
    assert r.linear_test_acc == pytest.approx((r.linear_test_pred == r.y_test).mean())
    assert r.mn_test_acc == pytest.approx((r.mn_test_pred[-1] == r.y_test).mean())
    rows = np.abs(r.grid_y[None, :] - r.x_test[:, 1:2]).argmin(1)               # y picks the row
    columns = np.abs(r.grid_x[None, :] - r.x_test[:, :1]).argmin(1)             # x the column
    for surface, predicted in ((r.linear_grid_prob, r.linear_test_pred), (r.mn_grid_prob[-1], r.mn_test_pred[-1])):
        assert ((surface[rows, columns] > 0.5) == predicted).mean() > 0.9


def test_the_linear_baseline_is_trained_for_the_runs_own_number_of_steps():
    short, longer = (run_spiral(SpiralConfig(steps=steps, frames=2, grid_size=8)) for steps in (20, 60))
    assert not np.array_equal(short.linear_grid_prob, longer.linear_grid_prob)


def test_the_figures_show_each_models_own_numbers_on_labelled_axes(short_run):
    from types import SimpleNamespace

    from nslviz.viz.spiral import linear_vs_meta_neighborhoods, sweep_accuracy_heatmap, training_curve
    r = short_run
    panels = [annotation.text for annotation in linear_vs_meta_neighborhoods(r).layout.annotations[:2]]
    assert panels == [f"plain linear classifier: test acc {r.linear_test_acc:.3f}",
                      f"linear + induced neighbors (MN): test acc {r.mn_test_acc:.3f}"]
    curve = training_curve(r)
    assert curve.layout.shapes[0].y0 == r.linear_test_acc                     # the baseline line, not MN
    assert curve.data[0].showlegend and curve.data[0].name == "linear + induced neighbors (MN)"  # the solid line named
    assert (curve.layout.xaxis.title.text, curve.layout.yaxis.title.text) == ("iteration", "test accuracy")
    sweep = {(t, s): SimpleNamespace(mn_test_acc=t + s / 10_000) for t in (0.1, 1.0) for s in (10, 100, 1000)}
    heatmap = sweep_accuracy_heatmap(sweep)
    cells = heatmap.data[0]
    assert list(cells.x) == ["10", "100", "1000"] and list(cells.y) == ["0.1", "1"]      # S across, T down
    assert cells.z[1][2] == pytest.approx(1.0 + 0.1)                                   # T = 1, S = 1000
    assert (heatmap.layout.xaxis.title.text, heatmap.layout.yaxis.title.text) == ("dictionary size S", "temperature T")
