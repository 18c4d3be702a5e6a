"""Figures and tables of image-classification runs: learning curves from run directories, results
next to the paper's numbers, MN Fig. 4 (finetuning moves features towards their class prototype) and
Fig. 8 (accuracy against S and T). They read what the trainer wrote; they train nothing."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..training.rundir import RunDirectory
from .common import CLASS_COLORS, NOTEBOOK_WIDTH, finish_figure

METHOD_LABELS = {"vanilla": "vanilla", "vanilla_extra": "vanilla + extra layer", "vanilla_ifilm": "vanilla + iFiLM",
                 "mn": "MN", "mn_ifilm": "MN + iFiLM", "maxl": "MAXL"}
# one colour per method in every figure (the dictionary read alone, a curve of its own in heads_curves, has
# a fifth); labels not listed here take, in their order, the colours no listed method of the figure has
METHOD_COLORS = {"vanilla": CLASS_COLORS[0], "mn": CLASS_COLORS[1], "mn_ifilm": CLASS_COLORS[2],
                 "vanilla_ifilm": CLASS_COLORS[3], "vanilla_extra": CLASS_COLORS[5], "maxl": CLASS_COLORS[6]}
DICTIONARY_COLOR = CLASS_COLORS[4]


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of a run directory's metrics.jsonl, one per epoch (a ValueError when it has none)."""
    run = RunDirectory(run_dir, create=False)
    if not run.metrics_path.exists():
        raise ValueError(f"no metrics.jsonl in {str(run_dir)!r}; expected a run directory written by train()")
    return run.read_metrics()



def chance_line(fig: go.Figure, classes: int, col: int) -> None:
    """Chance accuracy, 1/classes, as a grey dashed line across panel `col` of the first row."""
    fig.add_hline(y=1 / classes, line=dict(color="grey", dash="dash"), annotation_text="chance", row=1, col=col)

def learning_curves(run_dirs: Mapping[str, str | Path], title: str = "Learning curves") -> go.Figure:
    """Training loss and validation accuracy per epoch for each run ({label: run_dir}); for MN runs
    the validation accuracy of the classifier before finetuning is the dotted line, and a third panel
    shows the accuracy of the dictionary read alone (the attended values Σ_j ω_ij v_j), with chance
    (1/C) as a grey line: the dictionary learning, or not, over the epochs. A run started from another
    run's trained backbone (init_backbone) says so in the legend: its epoch 1 is not a fresh start.
    The legend sits under the panels, so that they keep their width in a narrow window."""
    curves = {label: read_metrics(run_dir) for label, run_dir in run_dirs.items()}
    dictionary = any(rows and "val_attended_value_acc" in rows[0] for rows in curves.values())
    titles = ("training loss", "validation accuracy") + (("dictionary alone (attended values)",) if dictionary else ())
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.08)
    classes = None
    spare = iter([c for c in CLASS_COLORS if c not in {METHOD_COLORS.get(label) for label in curves}] * 2)
    for label, rows in curves.items():
        color = METHOD_COLORS.get(label) or next(spare, CLASS_COLORS[-1])
        method = METHOD_LABELS.get(label, label)
        name = method + _started_from(run_dirs[label])
        epochs = [r["epoch"] for r in rows]
        fig.add_trace(go.Scatter(x=epochs, y=[r["train_loss"] for r in rows], name=name, legendgroup=label,
                                 line=dict(color=color), mode="lines+markers"), 1, 1)
        fig.add_trace(go.Scatter(x=epochs, y=[r["val_acc"] for r in rows], name=name, legendgroup=label,
                                 showlegend=False, line=dict(color=color), mode="lines+markers"), 1, 2)
        if rows and "val_acc_before_finetune" in rows[0]:
            before = [r["val_acc_before_finetune"] for r in rows]
            hidden = all(b == r["val_acc"] for b, r in zip(before, rows))    # the step changes no prediction
            fig.add_trace(go.Scatter(x=epochs, y=before, legendgroup=label, line=dict(color=color, dash="dot"),
                                     name=f"{method}, before finetuning"
                                     + (" (= the solid line)" if hidden else ""), mode="lines"), 1, 2)
        if rows and "val_attended_value_acc" in rows[0]:
            fig.add_trace(go.Scatter(x=epochs, y=[r["val_attended_value_acc"] for r in rows], legendgroup=label,
                                     name=f"{name}, attended values", showlegend=False, line=dict(color=color),
                                     mode="lines+markers"), 1, 3)
            classes = classes or _classes(run_dirs[label])
    if dictionary and classes:
        chance_line(fig, classes, col=3)
    last_epoch = max((r["epoch"] for rows in curves.values() for r in rows), default=1)
    fig.update_xaxes(title_text="epoch", dtick=1 if last_epoch <= 12 else None)   # no 1.5 epochs on short runs
    fig.update_yaxes(title_text="cross-entropy", row=1, col=1)
    for col in range(2, len(titles) + 1):                  # accuracies on one fixed scale, chance included
        fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=col)
    return finish_figure(fig, title, height=480, margin=dict(b=110),
                         legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0))


def _started_from(run_dir: str | Path) -> str:
    """' (from <run>'s backbone)' for a run whose backbone started from another run's, else ''."""
    config = RunDirectory(run_dir, create=False).read_config() or {}
    start = config.get("init_backbone")
    return f" (from {Path(start).name}'s backbone)" if start else ""


HEAD_CURVES = (("vanilla_acc", "vanilla: cosine classifier", "solid", METHOD_COLORS["vanilla"]),
               ("mn_acc", "MN", "solid", METHOD_COLORS["mn"]),
               ("mn_acc_before_finetune", "MN before finetuning", "dot", METHOD_COLORS["mn"]),
               ("attended_value_acc", "MN dictionary alone (attended values)", "dash", DICTIONARY_COLOR))


def heads_curves(results: Mapping[str, object], title: str = "Vanilla and MN heads on fixed features") -> go.Figure:
    """Test accuracy over the optimiser steps of `experiments.heads.compare_heads` results ({label:
    result}, one panel each): vanilla's cosine classifier, MN, MN's classifier before finetuning and
    the dictionary read alone, with chance (1/C) as a grey line."""
    if not results:
        raise ValueError("heads_curves needs at least one result, got none")
    fig = make_subplots(rows=1, cols=len(results), subplot_titles=list(results), horizontal_spacing=0.06,
                        shared_yaxes=True)
    for col, result in enumerate(results.values(), start=1):
        steps = [row["step"] for row in result.history]
        for key, name, dash, color in HEAD_CURVES:
            fig.add_trace(go.Scatter(x=steps, y=[row[key] for row in result.history], name=name, legendgroup=key,
                                     showlegend=col == 1, line=dict(color=color, dash=dash),
                                     mode="lines"), 1, col)
        chance_line(fig, result.data["classes"], col=col)
    fig.update_xaxes(title_text="optimiser step")
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title_text="test accuracy", row=1, col=1)          # once, left of the panels that share it
    return finish_figure(fig, title, height=460, legend=dict(orientation="h", y=-0.22, yanchor="top"),
                         margin=dict(b=110))                              # the legend under the panels: full width


def heads_table(results: Mapping[str, object]) -> pd.DataFrame:
    """The last evaluation of each `compare_heads` result ({label: result}): test accuracies (%), the
    attention entropy beside log S (uniform attention) and the step size α (it starts at 0.05)."""
    rows = {}
    for label, result in results.items():
        last = result.final
        rows[label] = {"vanilla %": 100 * last["vanilla_acc"], "MN %": 100 * last["mn_acc"],
                       "MN before finetuning %": 100 * last["mn_acc_before_finetune"],
                       "dictionary alone %": 100 * last["attended_value_acc"],
                       "chance %": 100 / result.data["classes"],
                       "attention entropy": last["attention_entropy"],
                       "log S": math.log(result.training.entries), "α": last["step_size"], "steps": last["step"]}
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.round({column: 1 if column.endswith("%") else 3 for column in table.columns})


SWEEP_AXES = {"entries": "dictionary entries S", "temperature": "temperature T"}


def heads_sweep_curves(results: Mapping[float, object]) -> dict[str, dict[float, float]]:
    """{curve: {value: test accuracy}} of `experiments.heads.sweep_clusters`' results: vanilla's head
    (which has neither S nor T: one flat line, the baseline), MN and MN's dictionary read alone."""
    return {name: {value: result.final[key] for value, result in results.items()}
            for key, name, _, _ in HEAD_CURVES if key in ("vanilla_acc", "mn_acc", "attended_value_acc")}


def sweep_figure(panels: Mapping[str, Mapping[str, Mapping[float, float]]], title: str,
                 classes: int | None = None) -> go.Figure:
    """MN Fig. 8: test accuracy against a setting, one panel per setting ({setting: {curve: {value:
    accuracy}}}; settings "entries" and "temperature" get their names, others their key), on a log
    axis where every value is a positive number, else one tick per value in the curves' order; with
    `classes`, chance (1/classes) as a grey line in every panel. From
    `heads_sweep_curves(sweep_clusters(...))` or `experiments.compare.read_sweep(group_dir, setting)`
    after `compare --sweep`."""
    if not panels or not all(panels.values()):
        raise ValueError("sweep_figure needs at least one setting with at least one curve")
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.08, shared_yaxes=True,
                        subplot_titles=[f"against {SWEEP_AXES.get(s, s)}" for s in panels])
    styles = {name: (color, dash) for _, name, dash, color in HEAD_CURVES}
    shown = set()
    for col, (setting, curves) in enumerate(panels.items(), start=1):
        for index, (name, curve) in enumerate(curves.items()):
            color, dash = styles.get(name, (METHOD_COLORS.get(name, CLASS_COLORS[index % len(CLASS_COLORS)]), "solid"))
            fig.add_trace(go.Scatter(x=list(curve), y=list(curve.values()), mode="lines+markers",
                                     name=METHOD_LABELS.get(name, name), legendgroup=name, showlegend=name not in shown,
                                     line=dict(color=color, dash=dash),
                                     hovertemplate=f"{SWEEP_AXES.get(setting, setting)} %{{x}}: %{{y:.3f}}<extra></extra>"),
                          1, col)
            shown.add(name)
        values = list(dict.fromkeys(value for curve in curves.values() for value in curve))
        if all(isinstance(v, (int, float)) and v > 0 for v in values):          # S, T, rates: a log axis
            values.sort()
            fig.update_xaxes(type="log", tickvals=values, ticktext=[f"{v:g}" for v in values], row=1, col=col)
        else:                                                                    # 0, a negative or a name
            fig.update_xaxes(type="category", categoryorder="array", categoryarray=values, row=1, col=col)
        fig.update_xaxes(title_text=SWEEP_AXES.get(setting, setting), row=1, col=col)
        if classes:
            chance_line(fig, classes, col=col)
    fig.update_yaxes(title_text="test accuracy", row=1, col=1)
    return finish_figure(fig, title, height=440, legend=dict(orientation="h", y=-0.25, yanchor="top"),
                         margin=dict(b=110))


def _classes(run_dir: str | Path) -> int | None:
    """Number of classes of a finished run (its summary), or None."""
    summary = RunDirectory(run_dir, create=False).read_summary()
    return summary.get("classes") if summary else None


def results_table(summaries: Mapping[str, dict], paper_row: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per method: test accuracy (%) of the best-on-validation weights and their test loss
    (which tells apart two runs tied to the image), their top-5 accuracy (100 classes or more), before
    finetuning for MN, of the last epoch's weights, best epoch, seconds, and the paper's number for the
    same method when it reports one."""
    percent = lambda s, key: 100 * s[key] if key in s else np.nan                 # noqa: E731
    rows = []
    for method, s in summaries.items():
        row = {"method": METHOD_LABELS.get(method, method), "test acc %": 100 * s["test_acc"],
               "test loss": s.get("test_loss", np.nan),
               "top-5 %": percent(s, "test_top5_acc"), "before finetuning %": percent(s, "test_acc_before_finetune"),
               "last epoch %": percent(s, "test_acc_last"),
               "best epoch": s["best_epoch"], "epochs": s["epochs"], "parameters": s["parameters"],
               "seconds": s["seconds"]}
        if paper_row is not None:
            row["paper %"] = paper_row.get(method, np.nan)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("method")
    table = table.round({column: 4 if column == "test loss" else 2 for column in table.columns})
    empty = [column for column in ("test loss", "top-5 %", "before finetuning %", "last epoch %")
             if table[column].isna().all()]
    return table.drop(columns=empty)                       # e.g. no MN run: no "before finetuning" column


def dictionary_state_table(state: Mapping[str, float]) -> pd.DataFrame:
    """nslviz.analysis.finetuning.dictionary_state as a table: each quantity, its value, and the value
    that means "no effect" (uniform attention over S entries, undecided values, chance 1/C, no step)."""
    entries, classes = state["entries"], state["classes"]
    rows = [
        ("attention entropy (nats)", state["attention_entropy"], f"log S = {state['log_entries']:.2f}: uniform"),
        ("largest attention weight", state["attention_top_weight"], f"1/S = {1 / entries:.4f}: uniform"),
        ("value confidence (largest class probability)", state["value_confidence"], f"1/C = {1 / classes:.2f}: undecided"),
        ("inner step size |α|", state["step_size"], "0: no finetuning"),
        ("accuracy of the attended values alone %", 100 * state["attended_value_acc"], f"{100 / classes:.0f}: chance"),
        ("logit change by finetuning (relative)", state["logit_change"], "0: no effect"),
        ("predictions changed by finetuning %", 100 * state["changed_predictions"], "0: no effect"),
        ("accuracy before finetuning %", 100 * state["acc_before_finetune"], ""),
        ("accuracy after finetuning %", 100 * state["acc"], ""),
    ]
    table = pd.DataFrame(rows, columns=["quantity", "value", "no effect"]).set_index("quantity")
    # each value written on its own (an object column): percentages to 0.1, the rest to 4 significant digits
    table["value"] = pd.Series([round(float(v), 1) if q.endswith("%") else float(f"{float(v):.4g}")
                                for q, v in table["value"].items()], index=table.index, dtype=object)
    return table


def finetuning_scatter(effect, title: str = "Similarity to the true class prototype, before vs after finetuning") -> go.Figure:
    """MN Fig. 4: one point per test input; above the red diagonal = finetuning moved the classifier
    towards the input's true class."""
    lo = float(min(effect.before.min(), effect.after.min()))
    hi = float(max(effect.before.max(), effect.after.max()))
    status = np.where(effect.correct_after, np.where(effect.correct_before, "right before and after",
                                                     "fixed by finetuning"),
                      np.where(effect.correct_before, "broken by finetuning", "wrong before and after"))
    # the many right-before-and-after points light and small; the few others dark and larger, black for wrong
    markers = {"right before and after": dict(color="#4c72b0", size=4, opacity=0.5),
               "fixed by finetuning": dict(color="#2ca02c", size=7, opacity=0.9),
               "broken by finetuning": dict(color="#d62728", size=7, opacity=0.9),
               "wrong before and after": dict(color="black", size=6, opacity=0.9, symbol="x")}
    fig = go.Figure(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="no change (diagonal)",
                               line=dict(color="red", width=1, dash="dash")))    # under the points
    for label, marker in markers.items():
        mask = status == label
        if mask.any():
            fig.add_trace(go.Scattergl(x=effect.before[mask].astype(np.float32), y=effect.after[mask].astype(np.float32),
                                       mode="markers", name=f"{label} ({int(mask.sum())})", marker=marker))
    return finish_figure(fig, f"{title}<br><sup>{100 * effect.fraction_improved:.0f}% of the inputs above the diagonal, "
                              f"mean shift {effect.mean_shift:+.2g}</sup>",
                         "cos(z, φ[y]) before finetuning", "cos(z, φ_i[y]) after finetuning", height=520,
                         width=NOTEBOOK_WIDTH)
