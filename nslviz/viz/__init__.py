"""Figures (plotly) and controls (ipywidgets). Draws what it is given; trains nothing."""
from .common import finish_figure, setup_notebook, summary_table

__all__ = ["finish_figure", "setup_notebook", "summary_table"]
