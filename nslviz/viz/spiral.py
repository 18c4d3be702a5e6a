"""Figures for the spiral toy (MN Fig. 3). They draw a `SpiralResult`; they train nothing.

All of them are plain plotly figures with frames and sliders where they animate, so they work in
JupyterLab, in nbviewer and in a static HTML export with no kernel.
"""
from __future__ import annotations

import html
import time
from typing import Callable, Mapping

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from .common import NOTEBOOK_WIDTH, finish_figure, padded_range
from .isoline import cell_edges, isoline_segments, region_rectangles

CLASS_POINT_COLORS = ("#4c72b0", "#e5c400")      # test predictions: blue / yellow, as in Fig. 3
CLASS_COLOR_NOTE = "(blue: class 0, yellow: class 1)"   # in each legend: one trace draws both colours
ENTRY_COLORS = ("#1f3d7a", "#9c7f00")            # induced neighbors: dark blue / dark yellow by their fixed label
REGION_COLORS = ("#dbe6f5", "#fbf1c2")           # predicted regions: light blue / light yellow, P(class 1) < / > 50 %
POINT_SCALE = [[0.0, CLASS_POINT_COLORS[0]], [1.0, CLASS_POINT_COLORS[1]]]


def _regions(x, y, prob) -> list:
    """Predicted regions (light blue / light yellow) and the decision boundary P = 0.5 (black line),
    all computed in numpy: the grid's box in light blue, the cells of class 1 as light yellow
    rectangles over it, and the boundary line. Plain scatter traces, not a heatmap: plotly.js takes
    a heatmap off the plot while an animation's scatter traces move, and the regions blinked out
    now and then while playing."""
    line_x, line_y = isoline_segments(x, y, prob, 0.5)
    edge_x, edge_y = cell_edges(x), cell_edges(y)
    box_x = np.array([edge_x[0], edge_x[-1], edge_x[-1], edge_x[0], np.nan])
    box_y = np.array([edge_y[0], edge_y[0], edge_y[-1], edge_y[-1], np.nan])
    return [_fill(box_x, box_y, REGION_COLORS[0], "predicted class 0"),
            _class_one(x, y, prob), _boundary(line_x, line_y)]


def _class_one(x, y, prob) -> go.Scatter:
    """The grid cells predicted class 1 (P > 50 %), as light yellow rectangles."""
    return _fill(*region_rectangles(x, y, prob > 0.5), REGION_COLORS[1], "predicted class 1")


def _fill(corners_x, corners_y, color, name) -> go.Scatter:
    return go.Scatter(x=corners_x.astype(np.float32), y=corners_y.astype(np.float32), mode="none", fill="toself",
                      fillcolor=color, name=name, hoverinfo="skip", showlegend=False)


def _boundary(line_x, line_y) -> go.Scatter:
    return go.Scatter(x=line_x.astype(np.float32), y=line_y.astype(np.float32), mode="lines",
                      name="decision boundary", line=dict(color="black", width=2), hoverinfo="skip",
                      connectgaps=False)


def _points(xy, labels, name, size=4) -> go.Scatter:
    return go.Scatter(x=xy[:, 0].astype(np.float32), y=xy[:, 1].astype(np.float32), mode="markers", name=name,
                      marker=dict(color=labels.astype(np.int8), cmin=0, cmax=1, colorscale=POINT_SCALE,
                                  size=size, opacity=0.7), hoverinfo="skip")


def _trajectories(keys: np.ndarray) -> go.Scatter:
    """Dotted path of every key through the snapshots. keys (F, S, 2)."""
    frames, entries, _ = keys.shape
    paths = np.concatenate([keys.transpose(1, 0, 2), np.full((entries, 1, 2), np.nan)], axis=1)
    paths = paths.reshape(-1, 2).astype(np.float32)
    return go.Scatter(x=paths[:, 0], y=paths[:, 1], mode="lines", name="neighbor trajectories",
                      line=dict(color="black", width=1, dash="dot"), hoverinfo="skip", connectgaps=False)


def _entries(keys: np.ndarray, labels: np.ndarray) -> list[go.Scatter]:
    """The induced neighbors, one trace per fixed label (so that the legend shows each label's colour).
    keys (S, 2), labels (S,)."""
    traces = []
    for label, color in enumerate(ENTRY_COLORS):
        mine = keys[labels == label].astype(np.float32)                                    # (S_label, 2)
        traces.append(go.Scatter(x=mine[:, 0], y=mine[:, 1], mode="markers",
                                 name=f"induced neighbors with label {label}",
                                 marker=dict(color=color, size=10, symbol="x", line=dict(width=1, color="black"))))
    return traces


# test points drawn by the animation: SVG markers are most of a frame's drawing time (all 1,600 of the
# spiral's test set: about 480 ms a frame in headless Chromium, 400 of them: about 260 ms, none: 180 ms;
# benchmarks/bench_spiral_interactive.py), and the regions already show every prediction
ANIMATION_POINTS = 400


def _shown_points(result) -> np.ndarray:
    """Indices of the test points the animation draws: ANIMATION_POINTS of them, evenly spaced."""
    count = len(result.x_test)
    return np.linspace(0, count - 1, min(count, ANIMATION_POINTS)).round().astype(int)


def _frame_data(result, f: int, full: bool = True) -> list:
    """Traces for snapshot f: regions (class 0's box, class 1's rectangles) and boundary, test predictions
    (of the `_shown_points`), the key trajectories (whole training, static) and the keys. With full=False
    only what changes between frames (plotly merges a frame's partial traces into the figure's), which
    keeps the animation small: per frame the class-1 rectangles, the boundary's points, one byte per
    shown test point and the keys. A frame names every trace, the static ones with an empty update:
    plotly.js moves the traces a frame leaves out under the others while it draws the frame."""
    shown = _shown_points(result)
    prob, pred = result.mn_grid_prob[f], result.mn_test_pred[f][shown]
    entries = _entries(result.keys[f], result.entry_labels)
    if not full:
        class_one = _class_one(result.grid_x, result.grid_y, prob)
        line_x, line_y = isoline_segments(result.grid_x, result.grid_y, prob, 0.5)
        return [go.Scatter(), go.Scatter(x=class_one.x, y=class_one.y),
                go.Scatter(x=line_x.astype(np.float32), y=line_y.astype(np.float32)),
                go.Scatter(marker=dict(color=pred.astype(np.int8))), go.Scatter(), *entries]
    return [*_regions(result.grid_x, result.grid_y, prob),
            _points(result.x_test[shown], pred,
                    f"test predictions ({len(shown)} of {len(result.x_test)})<br>{CLASS_COLOR_NOTE}"),
            _trajectories(result.keys), *entries]


def _axis_range(*results, margin: float = 0.04) -> list[float]:
    """One range for both axes: the decision surface's grid and every neighbor of every snapshot, widened
    by `margin` of it on each side, so that no neighbor leaves the plot and none at the edge is cut in half."""
    return padded_range([v for r in results for v in (r.grid_x, r.grid_y, r.keys)], margin)


# the animation's moving regions and boundary in the page plotly.js draws: class 1's rectangles and the
# boundary line, the second and third scatter traces (the browser tests and
# benchmarks/bench_spiral_interactive.py watch them while it plays)
PAINTED_REGIONS = ".scatterlayer > .trace:nth-child(2) path.js-fill"
PAINTED_BOUNDARY = ".scatterlayer > .trace:nth-child(3)"


# milliseconds per animation frame while playing: above the time Chromium takes to draw one frame of
# neighbor_animation (benchmarks/bench_spiral_interactive.py measures it), so playback shows every frame whole
FRAME_MS = 500


PLAY_MARGIN = 110          # px left of the plot: the y axis's title above, the Play/Pause buttons below


def _play_controls(frame_names: list[str], prefix: str, duration: int = FRAME_MS):
    # the Play/Pause buttons stand in the left margin (PLAY_MARGIN px), left of the slider: whatever the
    # plot's width, they cover neither its handle nor its label
    slider = dict(active=0, currentvalue=dict(prefix=prefix), pad=dict(t=50), x=0.0, len=1.0,
                  steps=[dict(label=name, method="animate",
                              args=[[name], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                                 transition=dict(duration=0))])
                         for name in frame_names])
    buttons = dict(type="buttons", direction="down", x=-0.02, y=0, xanchor="right", yanchor="top",
                   pad=dict(t=50, r=10), showactive=False,
                   buttons=[dict(label="▶ Play", method="animate",
                                 args=[None, dict(frame=dict(duration=duration, redraw=True), fromcurrent=True,
                                                  transition=dict(duration=0))]),
                            dict(label="❚❚ Pause", method="animate",
                                 args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False),
                                                    transition=dict(duration=0))])])
    return [slider], [buttons]


def neighbor_animation(result) -> go.Figure:
    """MN Fig. 3 (a)-(c) as an animation: the induced neighbors (x, dark blue / dark yellow = fixed label, the
    colours of the classes' regions) move along their dotted trajectories over the predicted regions;
    test points are coloured by the prediction."""
    names = [str(int(step)) for step in result.frame_steps]
    fig = go.Figure(data=_frame_data(result, 0),
                    frames=[go.Frame(data=_frame_data(result, f, full=False), name=name)
                            for f, name in enumerate(names)])
    sliders, menus = _play_controls(names, "iteration ")
    rng = _axis_range(result)
    fig.update_layout(sliders=sliders, updatemenus=menus, height=560, width=NOTEBOOK_WIDTH, margin=dict(l=PLAY_MARGIN),
                      legend=dict(x=1.02, xanchor="left", y=1, yanchor="top"))
    fig.update_xaxes(range=rng, autorange=False, constrain="domain")
    fig.update_yaxes(range=rng, autorange=False, scaleanchor="x", scaleratio=1)
    return finish_figure(fig, f"Induced neighbors during meta-training (S={result.config.entries}, "
                              f"T={result.config.temperature:g})", "x₁ (standardised)", "x₂ (standardised)")


def linear_vs_meta_neighborhoods(result) -> go.Figure:
    """The plain linear classifier next to the same linear classifier finetuned on induced neighbors."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=(
        f"plain linear classifier: test acc {result.linear_test_acc:.3f}",
        f"linear + induced neighbors (MN): test acc {result.mn_test_acc:.3f}"))
    for col, prob, pred in [(1, result.linear_grid_prob, result.linear_test_pred),
                            (2, result.mn_grid_prob[-1], result.mn_test_pred[-1])]:
        for trace in _regions(result.grid_x, result.grid_y, prob):
            fig.add_trace(trace.update(showlegend=col == 1 and trace.fill != "toself"), 1, col)
        fig.add_trace(_points(result.x_test, pred, f"test predictions {CLASS_COLOR_NOTE}", size=3)
                      .update(showlegend=col == 1), 1, col)
    fig.add_traces(_entries(result.keys[-1], result.entry_labels), rows=1, cols=2)
    rng = _axis_range(result)
    fig.update_xaxes(range=rng, title_text="x₁ (standardised)")
    fig.update_yaxes(range=rng, title_text="x₂ (standardised)")
    fig.update_layout(height=480, width=NOTEBOOK_WIDTH, legend=dict(orientation="h", y=-0.18))
    fig.update_layout(margin=dict(t=110))                                       # a two-line title
    return finish_figure(fig, "One linear model: alone (left, independent of T and S)<br>and finetuned per input "
                              f"on S={result.config.entries} neighbors at T={result.config.temperature:g} (right)")


def training_curve(result) -> go.Figure:
    """MN's test accuracy at every snapshot of training, beside the plain linear classifier's (dashed)."""
    steps = [row["step"] for row in result.history]
    fig = go.Figure(go.Scatter(x=steps, y=[row["test_acc"] for row in result.history], mode="lines+markers",
                               name="linear + induced neighbors (MN)", showlegend=True))   # named, not only implied
    fig.add_hline(y=result.linear_test_acc, line_dash="dash",
                  annotation_text=f"plain linear classifier {result.linear_test_acc:.3f}")
    fig.update_yaxes(range=[0.4, 1.02])
    return finish_figure(fig, "Test accuracy while the neighbors are learned", "iteration", "test accuracy",
                         height=380, legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"))


def sweep_order(pairs) -> list[tuple]:
    """(T, S) pairs from the most neighbors and the sharpest neighborhoods to the fewest and the
    blurriest: S descending, then T ascending. The sweep figure starts at the first, a good model
    (the paper's S=100 at small T), and stepping the slider shows what is lost."""
    return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))


def sweep_figure(sweep: Mapping[tuple, object]) -> go.Figure:
    """Final decision surface for every (T, S) of a sweep, one slider step each (static-export safe),
    in `sweep_order`."""
    if not sweep:
        raise ValueError("the sweep is empty: pass spiral_sweep(temperatures, entries) with at least one T and S")
    pairs = sweep_order(sweep)
    first = sweep[pairs[0]]

    def data(pair):
        r = sweep[pair]
        regions = _regions(r.grid_x, r.grid_y, r.mn_grid_prob[-1])
        return [*(trace.update(showlegend=trace.fill != "toself") for trace in regions),
                _points(r.x_test, r.mn_test_pred[-1], f"test predictions<br>{CLASS_COLOR_NOTE}", size=3),
                *_entries(r.keys[-1], r.entry_labels)]

    names = [f"S={s}, T={t:g} (acc {sweep[(t, s)].mn_test_acc:.3f})" for t, s in pairs]
    fig = go.Figure(data=data(pairs[0]), frames=[go.Frame(data=data(p), name=n) for p, n in zip(pairs, names)])
    sliders, _ = _play_controls(names, "")
    rng = _axis_range(*sweep.values())
    fig.update_layout(sliders=sliders, height=600, width=NOTEBOOK_WIDTH,            # the legend right of the plot
                      legend=dict(x=1.02, xanchor="left", y=1, yanchor="top"))
    fig.update_xaxes(range=rng, autorange=False, constrain="domain")
    fig.update_yaxes(range=rng, autorange=False, scaleanchor="x", scaleratio=1)
    return finish_figure(fig, "Decision surface after training, for each dictionary size S and temperature T",
                         "x₁ (standardised)", "x₂ (standardised)")


def sweep_accuracy_heatmap(sweep: Mapping[tuple, object]) -> go.Figure:
    """MN's final test accuracy for every (T, S) of a sweep ({(T, S): SpiralResult}), T by row, S by column."""
    temperatures = sorted({t for t, _ in sweep})
    sizes = sorted({s for _, s in sweep})
    acc = np.array([[sweep[(t, s)].mn_test_acc for s in sizes] for t in temperatures])
    fig = go.Figure(go.Heatmap(z=acc, x=[str(s) for s in sizes], y=[f"{t:g}" for t in temperatures],
                               colorscale="Viridis", zmin=0.5, zmax=1.0, text=np.round(acc, 3),
                               texttemplate="%{text}", colorbar=dict(title="test acc")))
    return finish_figure(fig, "MN test accuracy over temperature T and dictionary size S",
                         "dictionary size S", "temperature T", height=380, width=560)


KERNEL_NOTE = ("<p style=\"border:1px solid #c8c8c8;padding:6px 10px;background:#f7f7f7\"><b>Live sliders: "
               "this cell needs a running kernel.</b> Open the notebook in JupyterLab and run it to drag T and S; "
               "on this page, the sweep figure above steps through the pairs that were trained.</p>")


class KernelOnly:
    """A widget whose output also carries a note for pages without a kernel: JupyterLab draws the
    widget (its mimetype ranks first), a static HTML export draws the note instead
    (nslviz.cli.export_notebook drops the widget data, which has no saved state)."""

    def __init__(self, widget, note: str = KERNEL_NOTE):
        self.widget, self.note = widget, note

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle = bundle[0] if isinstance(bundle, tuple) else bundle
        return {**bundle, "text/html": self.note}


def spiral_explorer(run: Callable[[float, int], object], temperatures, entries, start: tuple | None = None):
    """ipywidgets sliders for T and S (continuous_update off): `run(T, S)` must return a SpiralResult
    (pass a cached function, e.g. nslviz.experiments.spiral.cached_spiral, so that a revisited pair is
    instant); on release the figure is redrawn, after a note while a pair not seen yet trains.
    Each slider offers its values once, in increasing order, whatever the order given.
    `start` = (T, S) to show first (default: the smallest of each). Needs a live kernel; the returned
    object shows a note saying so in a static export, where `sweep_figure` is the counterpart.

    A pair whose training stops (an error, or the kernel interrupted) says so in the note, above the
    figure of the pair drawn last: a callback's error reaches no cell, only JupyterLab's log console."""
    import ipywidgets as widgets

    temperatures, entries = sorted({float(t) for t in temperatures}), sorted({int(s) for s in entries})
    if not temperatures or not entries:
        raise ValueError(f"the sliders need at least one T and one S, got temperatures {temperatures} and "
                         f"entries {entries}")
    start_t, start_s = start if start is not None else (temperatures[0], entries[0])
    t_slider = widgets.SelectionSlider(options=temperatures, description="T", continuous_update=False,
                                       value=min(temperatures, key=lambda t: abs(t - start_t)))
    s_slider = widgets.SelectionSlider(options=entries, description="S", continuous_update=False,
                                       value=min(entries, key=lambda s: abs(s - start_s)))
    note = widgets.HTML()
    out = widgets.Output()
    drawn = []                                   # the (T, S) of the figure on show, once there is one

    def redraw(*_):
        t, s = t_slider.value, s_slider.value
        note.value = f"⏳ T={t:g}, S={s}: training (a pair not seen before takes a few seconds)…"
        started = time.perf_counter()
        try:
            result = run(t, s)
            figure = linear_vs_meta_neighborhoods(result)
            # the figure becomes the widget's state (IPython's mimebundle protocol) rather than a display
            # captured with `with out: ...`: that capture (and clear_output) races with headless
            # nbclient/papermill runs and hung about one run in two of notebook 01's export
            # the plotly mimetype alone, which JupyterLab draws: not the "notebook" renderer's HTML too,
            # which can display a second copy of plotly.js (4.8 MB) into the cell
            bundle = pio.renderers["plotly_mimetype"].to_mimebundle(figure.to_dict())
            out.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
            drawn[:] = [(t, s)]
        except BaseException as error:           # KeyboardInterrupt too: the kernel's ■ stops a long pair
            below = (f"the figure below is still T={drawn[-1][0]:g}, S={drawn[-1][1]}" if drawn
                     else "no figure yet")
            reason = "interrupted" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {error}"
            note.value = (f"⚠ T={t:g}, S={s} did not finish ({html.escape(reason)}); {below}. "
                          "Move a slider to try again.")
            raise
        note.value = (f"T={t:g}, S={s}, {result.config.steps} training steps: MN test accuracy "
                      f"{result.mn_test_acc:.3f}, plain linear {result.linear_test_acc:.3f} (ready in {time.perf_counter() - started:.1f} s; revisiting a pair is instant)")

    t_slider.observe(redraw, names="value")
    s_slider.observe(redraw, names="value")
    redraw()
    return KernelOnly(widgets.VBox([widgets.HBox([t_slider, s_slider]), note, out]))
