"""Figures and tables for kNN-as-multi-task-learning (notebook 02) and MN regression (notebook 06).
They draw results they are given (`KnnToyResult`, `RegressionCVResult`); they train nothing.

Sliders are plotly slider steps that toggle trace visibility (method "update"), so they work in
JupyterLab, nbviewer and a static HTML export with no kernel.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from .common import CLASS_COLORS, finish_figure, padded_range

METHOD_COLORS = {"knn": CLASS_COLORS[0], "local_linear": CLASS_COLORS[2], "mlp": CLASS_COLORS[1],
                 "mn": CLASS_COLORS[3], "truth": "#444444"}
METHOD_NAMES = {"knn": "kNN", "mlp": "vanilla MLP", "mn": "Meta-Neighborhoods", "local_linear": "local linear"}


def _f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _visibility_slider(labels: Sequence[str], fixed: int, per_step: int, prefix: str, active: int = 0) -> list[dict]:
    """One slider; step i shows the `fixed` always-visible traces and traces
    fixed + i*per_step ... fixed + (i+1)*per_step - 1."""
    steps = []
    for i, label in enumerate(labels):
        visible = [True] * fixed + [False] * (per_step * len(labels))
        for j in range(per_step):
            visible[fixed + i * per_step + j] = True
        steps.append(dict(label=label, method="update", args=[{"visible": visible}]))
    return [dict(active=active, currentvalue=dict(prefix=prefix), pad=dict(t=40), steps=steps)]


def _data_traces(result) -> list[go.Scatter]:
    return [go.Scatter(x=_f32(result.x_train), y=_f32(result.y_train), mode="markers", name="noisy samples",
                       marker=dict(color="#9e9e9e", size=5, opacity=0.7), hoverinfo="skip"),
            go.Scatter(x=_f32(result.grid), y=_f32(result.truth), mode="lines", name="true curve",
                       line=dict(color=METHOD_COLORS["truth"], dash="dot", width=1.5))]


def _data_y_range(result, margin: float = 0.25, also=()) -> list[float]:
    """The samples' and the true curve's y-range (and that of the arrays in `also`), widened by `margin`
    of it on each side: fixed for every slider step, so that a fit that shoots off at the edge (a line
    through 3 neighbors) does not squash the data into a band."""
    return padded_range([result.y_train, result.truth, *also], margin)


def knn_toy_figure(result) -> go.Figure:
    """kNN and local linear fits of the 1-D toy; the slider picks k (test MSE in the legend)."""
    ks = sorted(k for k in result.knn if k in result.local_linear)
    fig = go.Figure(_data_traces(result))
    for index, k in enumerate(ks):
        visible = index == len(ks) // 2
        fig.add_trace(go.Scatter(x=_f32(result.grid), y=_f32(result.knn[k]), mode="lines", visible=visible,
                                 line=dict(color=METHOD_COLORS["knn"], width=2, shape="hv"),
                                 name=f"kNN, k={k} (test MSE {result.test_mse['knn'][k]:.3f})"))
        fig.add_trace(go.Scatter(x=_f32(result.grid), y=_f32(result.local_linear[k]), mode="lines",
                                 visible=visible, line=dict(color=METHOD_COLORS["local_linear"], width=2),
                                 name=f"local linear, k={k} (test MSE {result.test_mse['local_linear'][k]:.3f})"))
    if not ks:                                          # toy_neighbors without a k of 2 or more
        fig.add_annotation(text=f"no k ≥ 2 among the k run ({', '.join(map(str, sorted(result.knn)))}): a line needs "
                                "two neighbors<br>(kNN with these k is in the error figure)",
                           xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, bgcolor="white")
    slider = _visibility_slider([str(k) for k in ks], 2, 2, "neighbors k = ", len(ks) // 2) if ks else []
    fig.update_layout(sliders=slider, height=520, legend=dict(orientation="h", y=1.02, yanchor="bottom"),
                      margin=dict(t=150))                 # the legend's rows (up to three) under the title
    fig.update_yaxes(range=_data_y_range(result))
    return finish_figure(fig, "A constant (kNN) or a line (local linear) fitted on each query's k neighbors",
                         "x", "y")


def mn_toy_figure(result) -> go.Figure:
    """MN fits of the 1-D toy with their learned induced neighbors (key, value); slider over T."""
    temperatures = sorted(result.mn)
    fig = go.Figure(_data_traces(result))
    fig.add_trace(go.Scatter(x=_f32(result.grid), y=_f32(result.mlp), mode="lines",
                             line=dict(color=METHOD_COLORS["mlp"], width=2, dash="dash"),
                             name=f"vanilla MLP (test MSE {result.test_mse['mlp']:.3f})"))
    middle = min(range(len(temperatures)), key=lambda i: abs(np.log10(temperatures[i]) + 1))   # T nearest 0.1
    for index, t in enumerate(temperatures):
        visible = index == middle
        fig.add_trace(go.Scatter(x=_f32(result.grid), y=_f32(result.mn[t]), mode="lines", visible=visible,
                                 line=dict(color=METHOD_COLORS["mn"], width=2.5),
                                 name=f"MN, T={t:g} (test MSE {result.test_mse['mn'][t]:.3f})"))
        fig.add_trace(go.Scatter(x=_f32(result.mn_keys[t]), y=_f32(result.mn_values[t]), mode="markers",
                                 visible=visible, name="induced neighbors (k<sub>j</sub>, v<sub>j</sub>)",
                                 marker=dict(symbol="x", size=9, color=METHOD_COLORS["mn"],
                                             line=dict(width=1, color="black"))))
    grid = [float(result.grid[0]), float(result.grid[-1])]
    keys = [result.mn_keys[t] for t in temperatures]                      # every entry of every T on the plot
    inside = all(grid[0] <= float(k.min()) and float(k.max()) <= grid[1] for k in map(np.asarray, keys))
    fig.update_xaxes(range=grid if inside else padded_range([grid, *keys], 0.03))
    fig.update_yaxes(range=_data_y_range(result, also=[result.mn_values[t] for t in temperatures]))
    fig.update_layout(sliders=_visibility_slider([f"{t:g}" for t in temperatures], 3, 2, "temperature T = ",
                                                 middle),
                      height=540, legend=dict(orientation="h", y=1.02, yanchor="bottom"),
                      margin=dict(t=150))                 # the legend's rows (up to three) under the title
    return finish_figure(fig, "Meta-Neighborhoods: one MLP, finetuned per input on learned neighbors",
                         "x (the keys k<sub>j</sub> live here too)", "y (the values v<sub>j</sub> live here too)")


def toy_error_figure(result) -> go.Figure:
    """Test MSE of every toy fit against its locality parameter (k, or T for MN)."""
    fig = go.Figure()
    for method in ("knn", "local_linear"):
        ks = sorted(result.test_mse[method])
        fig.add_trace(go.Scatter(x=ks, y=[result.test_mse[method][k] for k in ks], mode="lines+markers",
                                 name=f"{METHOD_NAMES[method]} (x: k)", line=dict(color=METHOD_COLORS[method])))
    temperatures = sorted(result.test_mse["mn"])
    fig.add_trace(go.Scatter(x=temperatures, y=[result.test_mse["mn"][t] for t in temperatures], xaxis="x2",
                             mode="lines+markers", name="MN (top axis: T)", line=dict(color=METHOD_COLORS["mn"])))
    fig.add_hline(y=result.test_mse["mlp"], line_dash="dash", line_color=METHOD_COLORS["mlp"],
                  annotation_text=f"vanilla MLP {result.test_mse['mlp']:.3f}")
    fig.add_hline(y=result.config.noise ** 2, line_dash="dot", line_color="#444444",
                  annotation_text="noise variance (best possible)", annotation_position="bottom right")
    ks = sorted(set(result.test_mse["knn"]) | set(result.test_mse["local_linear"]))
    # each axis is labelled at the values that were run (plotly's own log ticks crowd with minor digits)
    fig.update_layout(xaxis=dict(type="log", tickvals=ks, ticktext=[str(k) for k in ks],
                                 title_text="neighbors k (kNN, local linear)"),
                      xaxis2=dict(type="log", overlaying="x", side="top", tickvals=temperatures,
                                  ticktext=[f"{t:g}" for t in temperatures], title_text="temperature T (MN)"),
                      height=440, margin=dict(t=110), legend=dict(orientation="h", y=-0.25))
    # the two x axes have their own titles, so finish_figure sets only the y axis's
    return finish_figure(fig, "Locality trades bias for variance: test error against k and T", yaxis="test MSE")


def cv_folds_figure(result) -> go.Figure:
    """Test MSE of kNN, the vanilla MLP and MN in every fold (paired: one line per fold) and their means."""
    methods = ["knn", "mlp", "mn"]
    labels = [METHOD_NAMES[m] for m in methods]
    fig = go.Figure()
    for row in result.folds:
        fig.add_trace(go.Scatter(x=labels, y=[row[f"{m}_mse"] for m in methods], mode="lines+markers",
                                 line=dict(color="#b0b0b0", width=1), marker=dict(size=6, color="#808080"),
                                 name=f"fold {row['fold'] + 1}", showlegend=False,
                                 hovertemplate=f"fold {row['fold'] + 1}: %{{y:.4f}}<extra></extra>"))
    means = [float(getattr(result, f"{m}_mse").mean()) for m in methods]
    stds = [float(getattr(result, f"{m}_mse").std(ddof=1)) for m in methods]
    fig.add_trace(go.Scatter(x=labels, y=means, mode="markers", name="mean ± std over folds",
                             error_y=dict(type="data", array=stds, visible=True),
                             marker=dict(size=14, symbol="diamond", color="black")))   # one colour: the legend matches
    p, difference = result.ttests["mn_vs_mlp"]["pvalue"], result.ttests["mn_vs_mlp"]["mean_difference"]
    fig.update_layout(height=430, legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    fig.update_layout(margin=dict(t=130))                                        # a two-line title
    return finish_figure(fig, f"{result.dataset}: test MSE per fold (lines join the same fold)<br>MN − MLP = "
                              f"{difference:+.3f} on average, paired t-test p = {p:.2g}", "method",
                         "test MSE (standardised target)")


def capacity_figure(result) -> go.Figure:
    """MN sec. 4.3's claim that a larger vanilla MLP does not help: the test MSE of every MLP of the
    searched grid (mean ± std over the folds) against its number of weights, beside the MLP that
    validation chose and MN (lines: their means). The test folds only draw the figure; they choose nothing."""
    sizes: dict[tuple, list[dict]] = {}
    for row in result.folds:
        for point in row["mlp_grid"]:
            sizes.setdefault((point["layers"], point["width"], point["weight_decay"]), []).append(point)
    keys = sorted(sizes, key=lambda key: sizes[key][0]["parameters"])
    weights = np.array([sizes[key][0]["parameters"] for key in keys])
    mse = [np.array([point["test_mse"] for point in sizes[key]]) for key in keys]   # (folds,) per size
    fig = go.Figure(go.Scatter(
        x=weights, y=[m.mean() for m in mse], mode="markers", name="every MLP of the grid",
        error_y=dict(type="data", array=[m.std(ddof=1) if len(m) > 1 else 0 for m in mse], visible=True),
        marker=dict(size=9, color="#808080"),
        text=[f"{layers} layers of {width}" + (f", weight decay {decay:g}" if decay else "")
              for layers, width, decay in keys],
        hovertemplate="%{text}: %{x} weights, test MSE %{y:.4f}<extra></extra>"))
    span = [weights.min() / 1.5, weights.max() * 1.5]
    for method, label, dash in (("mlp", "the MLP validation chose", "dot"), ("mn", METHOD_NAMES["mn"], "solid")):
        mean = float(getattr(result, f"{method}_mse").mean())
        fig.add_trace(go.Scatter(x=span, y=[mean, mean], mode="lines", name=f"{label}: {mean:.3f}",
                                 line=dict(color=METHOD_COLORS[method], dash=dash, width=2), hoverinfo="skip"))
    ticks = [m * 10 ** e for e in range(1, 8) for m in (1, 2, 5) if span[0] <= m * 10 ** e <= span[1]]
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=[f"{t:,}" for t in ticks])
    fig.update_layout(height=440, legend=dict(orientation="h", y=1.02, yanchor="bottom"), margin=dict(t=110))
    return finish_figure(fig, f"{result.dataset}: test MSE of every MLP size searched (mean ± std over the folds)",
                         "weights of the MLP (log scale)", "test MSE (standardised target)")


def table2_comparison(result, paper: Mapping[str, dict] | None = None):
    """MN Table 2 (mean ± std test MSE over 5 folds) with this run's row added (pandas DataFrame)."""
    import pandas as pd

    from ..paper import MN_TABLE2

    paper = MN_TABLE2 if paper is None else paper
    rows = []
    for name, entry in paper.items():
        rows.append({"dataset": name, "source": "paper (MN Table 2)", "n": entry["n"], "d": entry["d"],
                     **{METHOD_NAMES[m]: f"{entry[key][0]:.4f} ± {entry[key][1]:.4f}"
                        for m, key in (("knn", "knn"), ("mlp", "vanilla"), ("mn", "mn"))}})
    ours = {"dataset": result.dataset, "source": f"this run ({result.config.folds} folds)",
            "n": result.n, "d": result.d}
    for method in ("knn", "mlp", "mn"):
        values = getattr(result, f"{method}_mse")
        ours[METHOD_NAMES[method]] = f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"
    rows.append(ours)
    return pd.DataFrame(rows).set_index(["dataset", "source"])


def chosen_hyperparameters(result):
    """What validation chose in every fold (pandas DataFrame)."""
    import pandas as pd

    columns = {"fold": "fold", "k": "kNN k", "layers": "MLP layers", "width": "MLP width",
               "mlp_weight_decay": "MLP weight decay", "temperature": "MN T", "mn_weight_decay": "MN weight decay",
               "entries": "MN S", "mlp_epochs": "MLP epochs kept", "mn_epochs": "MN epochs kept",
               "knn_mse": "kNN test MSE", "mlp_mse": "MLP test MSE", "mn_mse": "MN test MSE"}
    frame = pd.DataFrame([{label: row[key] for key, label in columns.items()} for row in result.folds])
    frame["fold"] += 1
    mse = [label for key, label in columns.items() if key.endswith("_mse")]
    frame[mse] = frame[mse].round(4)
    return frame.set_index("fold")


def agreement_table(rows: Sequence[dict]):
    """The numerical checks of notebook 02 (a list of dicts from nslviz.experiments.knn.derivation_checks or
    posterior_checks, indexed by their first key), written for reading: differences (|Δ| columns) as
    1.1e-16 (exact zeros as 0), agreement as a percentage, other numbers to 3 digits (inf as ∞), and
    "empty" where a check does not apply (the local linear fit for k = 1)."""
    import pandas as pd
    if not rows:
        raise ValueError("no checks to show: pass derivation_checks(neighbors=...) with at least one k")
    table = pd.DataFrame(rows).set_index(next(iter(rows[0])))

    def cell(column: str, value) -> str:
        if pd.isna(value):
            return "empty"
        if "agrees" in column:
            return f"{100 * value:.0f} %"
        if "|Δ|" in column:
            return "0" if value == 0 else f"{value:.1e}"
        return "∞" if value == float("inf") else f"{value:.3g}"

    return pd.DataFrame({column: [cell(column, value) for value in table[column]] for column in table.columns},
                        index=table.index)


def prior_to_knn_figure(result) -> go.Figure:
    """A constant started at the prior (the samples' mean) and stepped once on each input's
    prior_neighbors nearest samples; the slider picks the step size α (test MSE in the legend)."""
    alphas = sorted(result.from_prior)
    fig = go.Figure(_data_traces(result))
    fig.add_trace(go.Scatter(x=_f32(result.grid[[0, -1]]), y=_f32([result.prior] * 2), mode="lines",
                             name=f"the prior C<sub>0</sub> = the samples' mean, {result.prior:.2f}",
                             line=dict(color=METHOD_COLORS["mlp"], dash="dash", width=2)))
    k = result.config.prior_neighbors
    for alpha in alphas:
        fig.add_trace(go.Scatter(x=_f32(result.grid), y=_f32(result.from_prior[alpha]), mode="lines",
                                 visible=alpha == alphas[-1],
                                 line=dict(color=METHOD_COLORS["knn"], width=2, shape="hv"),
                                 name=f"one step of α = {alpha:g} on the {k} nearest (test MSE "
                                      f"{result.test_mse['from_prior'][alpha]:.3f})"))
    fig.update_layout(sliders=_visibility_slider([f"{alpha:g}" for alpha in alphas], 3, 1, "step size α = ",
                                                 len(alphas) - 1),
                      height=520, legend=dict(orientation="h", y=1.02, yanchor="bottom"), margin=dict(t=150))
    fig.update_yaxes(range=_data_y_range(result))
    return finish_figure(fig, "One inner step from the prior: α weighs the prior against the neighbors", "x", "y")


def validation_curves_figure(result, fold: int = 0) -> go.Figure:
    """Validation loss per epoch of the chosen vanilla MLP and MN in one fold (the kept epoch marked)."""
    fig = go.Figure()
    for method in ("mlp", "mn"):
        rows = result.histories[fold][method]
        epochs = [row["epoch"] for row in rows]
        losses = [row["validation_loss"] for row in rows]
        fig.add_trace(go.Scatter(x=epochs, y=losses, mode="lines", name=METHOD_NAMES[method],
                                 line=dict(color=METHOD_COLORS[method], width=2)))
        best = int(np.argmin(losses))
        fig.add_trace(go.Scatter(x=[epochs[best]], y=[losses[best]], mode="markers", showlegend=False,
                                 marker=dict(color=METHOD_COLORS[method], size=11, symbol="star"),
                                 hovertemplate=f"{METHOD_NAMES[method]}: kept epoch %{{x}}<extra></extra>"))
    fig.update_layout(height=380, legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    # a linear axis: the losses span less than a factor 3, where a log axis shows one or two labels
    return finish_figure(fig, f"Fold {fold + 1}: validation loss while training (stars: the weights kept)",
                         "epoch (0 = initial weights)", "validation MSE (standardised)")
