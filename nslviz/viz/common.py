"""Shared figure conventions: every figure has a title and axis labels, and renders both live in
JupyterLab and in a static HTML export (plotly.js embedded once, no network needed)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from .._checks import check_positive

TEMPLATE = "plotly_white"
# The widest figure, in pixels, that a notebook's output area shows whole in a browser window 900 px wide
# (JupyterLab and the HTML export): wider ones are cut at the right edge, behind a scroll bar.
NOTEBOOK_WIDTH = 760


def padded_range(values, margin: float) -> list[float]:
    """[lowest, highest] of `values` (arrays of any shape), widened by `margin` of that span on each side
    (of 1 where all are equal): a fixed axis range that draws every point whole."""
    values = np.concatenate([np.ravel(v) for v in values])
    low, high = float(values.min()), float(values.max())
    pad = margin * (high - low or 1.0)
    return [low - pad, high + pad]


def panel_size(columns: int, preferred: int, margins: int) -> int:
    """Pixels a side for each of `columns` panels: `preferred`, or less where `columns` of them and the
    `margins` (axis titles, colour bar) would be wider than NOTEBOOK_WIDTH."""
    return min(preferred, (NOTEBOOK_WIDTH - margins) // columns)


CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def setup_notebook() -> None:
    """Call once at the top of a notebook: JupyterLab renders the plotly mimetype, and the same
    output carries HTML with plotly.js embedded so nbconvert's HTML export works offline; torch runs
    no more threads than the CPUs a container's quota allows (Binder: `match_threads_to_cpus`)."""
    import pandas as pd

    from .._threads import match_threads_to_cpus

    match_threads_to_cpus()

    pio.renderers.default = "plotly_mimetype+notebook"
    pio.templates.default = TEMPLATE
    pd.set_option("display.max_colwidth", None)   # a table's cells whole, not cut at 50 characters with "..."


def finish_figure(fig: go.Figure, title: str, xaxis: str | None = None, yaxis: str | None = None,
                  **layout) -> go.Figure:
    """The figure with its title and the project's template; `xaxis` / `yaxis` title every x / y axis
    (None: the caller titles the axes itself, subplot by subplot, or the figure shows none)."""
    fig.update_layout(title=dict(text=title), template=TEMPLATE, **layout)
    if xaxis is not None:
        fig.update_xaxes(title_text=xaxis)
    if yaxis is not None:
        fig.update_yaxes(title_text=yaxis)
    return fig


def summary_table(summary: Mapping[str, object], digits: int = 4, leave_out: Sequence[str] = ()):
    """A run's summary (a dict of names to numbers and settings) as a one-column table, floats written
    with `digits` significant digits, trailing zeros kept (0.9875 for 0.987500011920929, 1.000 for 1.0),
    rows in the dict's order; a dict value (a score per k, say) is one row "key: value, key: value", its
    floats written the same way."""
    import pandas as pd

    check_positive("digits", digits, integer=True, minimum=1)

    def written(value) -> str:
        if isinstance(value, Mapping):
            return ", ".join(f"{key}: {written(item)}" for key, item in value.items())
        return f"{value:#.{digits}g}".rstrip(".") if isinstance(value, float) else str(value)   # "1235." -> "1235"

    rows = {name: written(value) for name, value in summary.items() if name not in leave_out}
    return pd.DataFrame({"value": rows}).rename_axis("quantity")
