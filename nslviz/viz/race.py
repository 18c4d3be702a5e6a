"""Figures of the race between the backbone and the induced dictionary (nslviz.experiments.race): what
the trainer logged after every epoch, one line per arm (the mean over its seeds), and the paired table."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..analysis.paired import format_paired
from ..training.diagnostics import NOISE_FLOOR
from .common import CLASS_COLORS, finish_figure

# (metrics.jsonl key, panel title, y-axis title)
RACE_PANELS = (("val_acc", "validation accuracy<br>(dashed: vanilla twins)", "accuracy"),
               ("val_attended_value_acc", "the dictionary alone:<br>attended values", "accuracy"),
               ("val_changed_predictions", "predictions the<br>finetuning step changes", "share of images"),
               ("step_size", "inner step size α", "|α|"),
               ("keys_snr", "keys: Adam's |m̂|/√v̂", "signal-to-noise"),
               ("values_snr", "values: Adam's |m̂|/√v̂", "signal-to-noise"))


def mean_trace(traces: list[list[dict]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(iterations, mean over seeds of `key`) from one arm's metrics rows, one list per seed; the
    seeds' rows are paired by epoch (same schedule), and epochs some seed lacks are left out."""
    epochs = min(len(rows) for rows in traces)
    rows = [trace[:epochs] for trace in traces if all(key in row for row in trace[:epochs])]
    if not rows or epochs == 0:
        return np.array([]), np.array([])
    iterations = np.array([row["iteration"] for row in rows[0]])
    return iterations, np.mean([[row[key] for row in trace] for trace in rows], axis=0)


def race_curves(traces: Mapping[str, list[list[dict]]], title: str, *, classes: int | None = None,
                warmup: int | None = None) -> go.Figure:
    """Six panels over the training iterations, one line per arm ({arm: [metrics rows of each seed]},
    as `experiments.race.race_traces` reads them): validation accuracy (vanilla twins dashed), the
    attended values' accuracy (chance 1/`classes` in grey), the share of predictions the step changes,
    the step size α, and Adam's signal-to-noise of the keys' and the values' gradients with its
    zero-mean-noise floor (0.18) in grey. `warmup` (iterations) marks where a warm-up arm's frozen
    backbone starts to train, when one is drawn."""
    if not traces:
        raise ValueError("race_curves needs at least one arm, got none")
    fig = make_subplots(rows=2, cols=3, subplot_titles=[panel[1] for panel in RACE_PANELS],
                        horizontal_spacing=0.12, vertical_spacing=0.2)   # room for the axis titles between
    mn_arms = [arm for arm in traces if not arm.startswith("vanilla")]
    for index, (key, _, axis_title) in enumerate(RACE_PANELS):
        row, col = divmod(index, 3)
        for arm, arm_traces in traces.items():
            vanilla = arm.startswith("vanilla")
            if vanilla and key != "val_acc":
                continue
            twin = arm.removeprefix("vanilla").removeprefix("_") or "joint"
            color_index = mn_arms.index(twin) if twin in mn_arms else len(mn_arms) + list(traces).index(arm)
            x, y = mean_trace(arm_traces, key)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=arm, legendgroup=arm, showlegend=index == 0,
                                     line=dict(color=CLASS_COLORS[color_index % len(CLASS_COLORS)],
                                               dash="dash" if vanilla else "solid")), row + 1, col + 1)
        fig.update_yaxes(title_text=axis_title, row=row + 1, col=col + 1)
        fig.update_xaxes(title_text="iteration", row=row + 1, col=col + 1)
    for col in (1, 2):                                     # accuracies on one fixed scale
        fig.update_yaxes(range=[0, 1.02], row=1, col=col)
    fig.update_yaxes(rangemode="tozero", row=1, col=3)     # the changed share is small: from 0 to its largest
    fig.update_yaxes(type="log", row=2, col=1)
    if classes:
        fig.add_hline(y=1 / classes, line=dict(color="grey", dash="dot"), annotation_text="chance", row=1, col=2)
    for col in (2, 3):
        fig.add_hline(y=NOISE_FLOOR, line=dict(color="grey", dash="dot"), annotation_text="noise floor",
                      row=2, col=col)
    if warmup and any("warmup" in arm for arm in traces):
        for index in range(len(RACE_PANELS)):
            row, col = divmod(index, 3)
            label = dict(annotation_text="warm-up ends", annotation_position="top right") if index == 0 else {}
            fig.add_vline(x=warmup, line=dict(color="grey", dash="dash", width=1), row=row + 1, col=col + 1,
                          **label)   # one label: an annotation without text shows plotly.js's "new text"
    return finish_figure(fig, title, height=720, legend=dict(orientation="h", y=-0.12), margin=dict(t=120))


def _range_text(interval) -> str:
    """(low, high) in % as "low – high"; "" without one."""
    return f"{interval[0]:.1f} – {interval[1]:.1f}" if interval else ""


def seed_spread(per_seed: list[float] | None) -> str:
    """The lowest and highest seed's accuracy (fractions), in %: a mean near chance may hide one seed that
    learned; "" without per-seed values or with one seed (the mean says it all)."""
    return _range_text((100 * min(per_seed), 100 * max(per_seed))) if per_seed and len(per_seed) > 1 else ""


ATTENDED_INTERVAL = "attended values 95 % interval"


def race_table(report: Mapping[str, dict]) -> pd.DataFrame:
    """One dataset's `experiments.race.race_report` as a table: mean test accuracy, before finetuning,
    the paired differences (points, mean [95 % interval]) after − before and against the vanilla twin,
    the attended values' accuracy (mean, its 95 % interval over the seeds, and the lowest and highest
    seed's where the report has them) and the last epoch's α and keys' signal-to-noise."""
    def number(value, digits: int) -> str:                  # one precision a column; vanilla arms: blank, not NaN
        return "" if value is None or np.isnan(value) else f"{value:.{digits}f}"

    rows = {}
    for arm, entry in report.items():
        rows[arm] = {"test acc %": number(entry["mean_test_acc"], 1),
                     "before finetuning %": number(entry.get("mean_test_acc_before_finetune"), 1),
                     "after − before (points)": format_paired(entry.get("after_minus_before")),
                     "− vanilla twin (points)": format_paired(entry.get("minus_vanilla_twin")),
                     "attended values %": number(entry.get("attended_value_acc"), 1),
                     ATTENDED_INTERVAL: _range_text(entry.get("attended_value_acc_ci95")),
                     "lowest – highest seed %": seed_spread(entry.get("attended_value_acc_per_seed")),
                     "α": number(entry.get("final_step_size"), 3),
                     "keys |m̂|/√v̂": number(entry.get("final_keys_snr"), 3),
                     "seeds": len(entry["seeds"])}
    table = pd.DataFrame.from_dict(rows, orient="index")
    empty = [column for column in (ATTENDED_INTERVAL, "lowest – highest seed %") if (table[column] == "").all()]
    return table.drop(columns=empty)                   # one seed: no interval; an older report: no per-seed values
