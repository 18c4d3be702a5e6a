"""Figures and tables for the scikit-learn estimators (notebook 11): one fitted estimator's loss curves,
the comparison with scikit-learn's MLPs and kNN (`nslviz.experiments.estimators.EstimatorComparison`),
and that comparison on several draws of the folds (`pool_draws`). They draw what they are given; they
train nothing."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .common import CLASS_COLORS, finish_figure

METHOD_COLORS = {"mn": CLASS_COLORS[3], "mlp": CLASS_COLORS[1], "mlp_100_100": CLASS_COLORS[4],
                 "knn5": CLASS_COLORS[0], "knn_tuned": CLASS_COLORS[9]}
FIT_TIME_GOAL = 5.0         # MN's fit at most 5x the default MLP's (docs/estimators.md)


def loss_curves_figure(estimator) -> go.Figure:
    """A fitted MetaNeighbors* estimator's first member: training loss and early-stopping loss per epoch,
    the epoch kept marked (`loss_curve_`, `validation_loss_curve_`, `best_epoch_`). The training loss of an
    epoch is the mean over its batches while the weights change, so it is drawn half an epoch back; for the
    classifier, the lowest training loss smoothed labels allow, H((1 - ε) one-hot + ε/C), is drawn too."""
    from sklearn.base import is_classifier
    from sklearn.utils.validation import check_is_fitted

    from ..estimators import MetaNeighborsClassifier, MetaNeighborsRegressor
    if not isinstance(estimator, (MetaNeighborsClassifier, MetaNeighborsRegressor)):
        raise TypeError(f"loss_curves_figure draws a MetaNeighborsClassifier or MetaNeighborsRegressor, got "
                        f"{type(estimator).__name__}")
    check_is_fitted(estimator, "validation_loss_curve_")
    validation = estimator.validation_loss_curve_                     # epochs 0 (as built) .. n
    training = estimator.loss_curve_                                   # epochs 1 .. n
    fig = go.Figure()
    smoothed = is_classifier(estimator) and estimator.label_smoothing > 0     # the two losses' targets differ
    fig.add_trace(go.Scatter(x=[epoch - 0.5 for epoch in range(1, len(training) + 1)], y=training, mode="lines",
                             name="training rows" + (", smoothed labels" if smoothed else "") + " (mean over the epoch)",
                             line=dict(color=CLASS_COLORS[0], width=2)))
    fig.add_trace(go.Scatter(x=list(range(len(validation))), y=validation, mode="lines",
                             name="early-stopping rows" + (", plain labels" if smoothed else ""),
                             line=dict(color=CLASS_COLORS[3], width=2)))
    best = estimator.best_epoch_
    fig.add_trace(go.Scatter(x=[best], y=[validation[best]], mode="markers", name=f"kept: epoch {best}",
                             marker=dict(color=CLASS_COLORS[3], size=13, symbol="star")))
    if is_classifier(estimator):
        smoothing, classes = estimator.label_smoothing, len(estimator.classes_)
        target = np.full(classes, smoothing / classes)
        target[0] += 1 - smoothing
        floor = float(-(target[target > 0] * np.log(target[target > 0])).sum())
        fig.add_hline(y=floor, line=dict(color=CLASS_COLORS[0], dash="dot"),
                      annotation_text=f"lowest training loss with ε = {smoothing:g}", annotation_position="bottom right")
    loss = "cross-entropy" if is_classifier(estimator) else "squared error (standardised targets)"
    fig.update_layout(height=380, legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    fig.update_yaxes(range=[0, 1.08 * max(max(training, default=0), max(validation, default=0))])  # every point in view
    return finish_figure(fig, f"{type(estimator).__name__}, first member: loss per epoch (star: the weights kept)",
                         "epoch (0 = the weights as built)", loss)


def comparison_table(result):
    """Every table's score per method (mean ± standard deviation over the test folds, as the header says),
    MN minus the best baseline (points, 95 % interval) and MN's fit time as a multiple of the default MLP's
    (pandas DataFrame)."""
    import pandas as pd

    from ..analysis.paired import format_paired
    from ..experiments.estimators import METHOD_LABELS
    rows = []
    for name, table in result.tables.items():
        row = {"table": name, "rows x features": f"{table['rows']} x {table['features']}", "metric": table["metric"]}
        row.update({METHOD_LABELS[m]: f"{v['mean']:.3f}\u00a0±\u00a0{v['std']:.3f}"     # kept on one line
                    for m, v in table["methods"].items()})
        if "best_baseline" in table:
            best = table["best_baseline"]
            row["MN - best baseline, points [95 % CI]"] = f"{format_paired(table['mn_vs'][best])} vs {METHOD_LABELS[best]}"
            row["MN ≥ best"] = "yes" if table["mn_at_least_best"] else "no"
        if "mn_fit_time_ratio_to_mlp" in table:
            row["MN fit / MLP (100) fit"] = f"{table['mn_fit_time_ratio_to_mlp']:.2f}x"
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("table")
    frame.columns.name = "score: mean ± std over the test folds"
    return frame


def _best_baselines(result) -> dict[str, str]:
    best = {name: table.get("best_baseline") for name, table in result.tables.items()}
    if not all(best.values()):
        raise ValueError("the comparison has no MN against a baseline: run it with 'mn' and at least one baseline "
                         f"among its methods, got {list(result.config.methods)}")
    return best


def paired_differences_figure(result) -> go.Figure:
    """MN minus the best baseline of each table, fold by fold (dots), with the mean and its 95 % interval."""
    from ..experiments.estimators import METHOD_LABELS
    best = _best_baselines(result)
    labels = [f"{name}<br>vs {METHOD_LABELS[best[name]]}" for name in result.tables]
    fig = go.Figure()
    for index, (label, (name, table)) in enumerate(zip(labels, result.tables.items())):
        differences = 100 * (np.array(table["methods"]["mn"]["scores"])
                             - np.array(table["methods"][best[name]]["scores"]))
        _add_dots(fig, label, differences, "one test fold", index == 0,
                  f"{name}, one fold: %{{y:+.2f}} points<extra></extra>")
    _add_diamonds(fig, labels, [table["mn_vs"][best[name]] for name, table in result.tables.items()],
                  "mean over folds, 95 % interval")
    return _finish_differences(fig, "MN minus the best baseline of each table, fold by fold (above 0: MN scored higher)",
                               "table, and its best baseline by mean score")


def _add_diamonds(fig: go.Figure, labels: list[str], differences: list[dict], name: str) -> None:
    """One diamond a table at the mean difference, with its 95 % interval as error bars
    (`nslviz.analysis.paired.paired_difference`'s dicts; none where there is no interval)."""
    means = [d["mean_difference_points"] for d in differences]
    intervals = [d["ci95_points"] or [m, m] for d, m in zip(differences, means)]
    fig.add_trace(go.Scatter(x=labels, y=means, mode="markers", name=name,
                             marker=dict(color=METHOD_COLORS["mn"], size=13, symbol="diamond"),
                             error_y=dict(type="data", symmetric=False, visible=True,
                                          array=[high - m for (_, high), m in zip(intervals, means)],
                                          arrayminus=[m - low for (low, _), m in zip(intervals, means)])))


def _add_dots(fig: go.Figure, label: str, values, name: str, first: bool, hover: str, customdata=None) -> None:
    """Grey dots at one table's label, jittered to the left of its diamond: an invisible box whose
    points are the values (one trace a table; the legend shows the first)."""
    fig.add_trace(go.Box(x=[label] * len(values), y=values, boxpoints="all", jitter=0.5, pointpos=-1.6,
                         fillcolor="rgba(0,0,0,0)", line=dict(color="rgba(0,0,0,0)"),
                         marker=dict(color="#808080", size=7), name=name, legendgroup=name, showlegend=first,
                         customdata=customdata, hovertemplate=hover))


def _finish_differences(fig: go.Figure, title: str, x_title: str) -> go.Figure:
    """The 0 line (above it MN scored higher), the legend on top, titles and axis labels."""
    fig.add_hline(y=0, line=dict(color="#444444", dash="dash"))
    fig.update_layout(height=430, legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    return finish_figure(fig, title, x_title, "MN - best baseline (points of accuracy or R²)")


def fit_times_figure(result) -> go.Figure:
    """Each method's median fit time as a multiple of the default MLP's, per table: bars from 1x (as fast as
    that MLP) up or down, on a log axis."""
    from ..experiments.estimators import METHOD_LABELS
    if "mlp" not in result.config.methods:
        raise ValueError(f"fit times are shown relative to the default MLP: run the comparison with 'mlp' among "
                         f"its methods, got {list(result.config.methods)}")
    names = list(result.tables)
    fig = go.Figure()
    shown = [FIT_TIME_GOAL, 1.0]
    for method in result.config.methods:
        if method == "mlp":
            continue
        ratios = [t["methods"][method]["median_fit_seconds"] / t["methods"]["mlp"]["median_fit_seconds"]
                  for t in result.tables.values()]
        shown += ratios
        fig.add_trace(go.Bar(x=names, y=[r - 1 for r in ratios], base=1, name=METHOD_LABELS[method],
                             marker_color=METHOD_COLORS[method], customdata=ratios,
                             hovertemplate=f"{METHOD_LABELS[method]}: %{{customdata:.2f}}x<extra></extra>"))
    fig.add_hline(y=1, line=dict(color="#444444", width=1))
    fig.add_hline(y=FIT_TIME_GOAL, line=dict(color=METHOD_COLORS["mn"], dash="dash"))
    # the lines' labels stand in the right margin, where no bar reaches them; on a log axis an annotation's
    # y is log10 of the value (add_hline's own annotation lands elsewhere)
    for value, text, color in ((FIT_TIME_GOAL, f"{FIT_TIME_GOAL:g}x: MN's goal", METHOD_COLORS["mn"]),
                               (1.0, "1x: MLP (100)", "#444444")):
        fig.add_annotation(x=1, xref="paper", xanchor="left", xshift=6, y=np.log10(value), yanchor="middle",
                           text=text, showarrow=False, font=dict(color=color))
    low, high = np.log10(min(shown)) - 0.3, np.log10(max(shown)) + 0.3
    ticks = [v for v in (0.001, 0.01, 0.1, 1, 5, 10, 100) if low <= np.log10(v) <= high]
    fig.update_yaxes(type="log", range=[low, high], tickvals=ticks, ticktext=[f"{v:g}x" for v in ticks])
    fig.update_layout(height=420, barmode="group", legend=dict(orientation="h", y=1.02, yanchor="bottom"),
                      margin=dict(r=130))
    return finish_figure(fig, "Median fit time per fold, as a multiple of the default MLP's (1 = as fast)",
                         "table", "fit time / MLP (100)'s (log scale)")


def draws_figure(pooled: dict) -> go.Figure:
    """The same comparison on several draws of the folds (`nslviz.experiments.estimators.pool_draws`):
    per table, MN minus the best baseline of each draw (mean over its test folds; dots), and MN minus the
    best baseline over every test fold of every draw (diamond) with its 95 % interval, widened for folds
    that share rows (pool_draws' "mn_vs_best")."""
    from ..experiments.estimators import METHOD_LABELS
    names = list(pooled.get("tables", ()))
    if not names or "seeds" not in pooled:
        raise ValueError(f"draws_figure needs the result of pool_draws (seeds, tables), got keys {sorted(pooled)}")
    per_draw = {name: pooled["tables"][name]["mn_minus_best_points_per_draw"] for name in names}
    # the diamond is against the best baseline over all the draws, each dot against its own draw's best
    labels = [f"{name}<br>pooled best:<br>{METHOD_LABELS[pooled['tables'][name]['best_baseline']]}" for name in names]
    fig = go.Figure()
    for index, (label, name) in enumerate(zip(labels, names)):
        bests = pooled["tables"][name].get("best_baseline_per_draw")     # absent from results before it was kept
        against = [METHOD_LABELS[b] for b in bests] if bests else ["that draw's best baseline"] * len(pooled["seeds"])
        _add_dots(fig, label, per_draw[name], f"one draw ({pooled['folds']} test folds)", index == 0,
                  f"{name}, folds of seed %{{customdata[0]}}: %{{y:+.2f}} points against %{{customdata[1]}}"
                  "<extra></extra>", list(zip(pooled["seeds"], against)))
    _add_diamonds(fig, labels, [pooled["tables"][name]["mn_vs_best"] for name in names],
                  f"every test fold of the {len(pooled['seeds'])} draws, 95 % interval for folds that share rows")
    return _finish_differences(fig, f"MN minus the best baseline on {len(pooled['seeds'])} shuffles of the rows "
                               "into folds (above 0: MN scored higher)", "table")
