"""Figures of few-shot learning with neural similarity (notebook 10). They draw what
nslviz.experiments.few_shot returns; they train nothing.

    episode_figure(split, episodes, 0)        one N-way K-shot episode: support and query images per class
    accuracy_figure([result.summary(), ...])  mean query accuracy ± 95 % interval per run, beside Table 6
    meta_training_figure(result.meta_history) MAML's query accuracy and loss over outer steps
    adapted_masks_figure(result.similarity)   the static DNS masks after finetuning (mean over episodes)
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .common import CLASS_COLORS, NOTEBOOK_WIDTH, finish_figure
from .nsl import static_mask_figure


def episode_figure(split, episodes, index: int = 0, max_query: int = 5, title: str | None = None) -> go.Figure:
    """Episode `index` of `episodes` (datasets.episodes.Episodes) over `split` (an ImageSplit): one row
    per episode class, its K support images, a gap, then up to `max_query` of its query images."""
    if not 0 <= index < len(episodes):
        raise ValueError(f"episode index {index} is outside 0..{len(episodes) - 1}")
    way, shot = episodes.way, episodes.shot
    support = split.images[episodes.support[index]].view(way, shot, *split.images.shape[1:])
    queries = split.images[episodes.query[index]].view(way, -1, *split.images.shape[1:])        # (way, Q, C, S, S)
    query = queries[:, :max_query]
    channels, size = split.images.shape[1], split.images.shape[-1]
    gap = torch.full((way, 1, channels, size, size), 255, dtype=torch.uint8)
    tiles = torch.cat([support, gap, query], 1)                                        # (way, columns, C, S, S)
    columns = tiles.shape[1]
    mosaic = tiles.permute(0, 3, 1, 4, 2).reshape(way * size, columns * size, channels)   # (rows·S, columns·S, C)
    if channels == 1:
        mosaic = mosaic.expand(-1, -1, 3)
    fig = go.Figure(go.Image(z=mosaic.numpy(), hoverinfo="skip"))
    fig.update_xaxes(tickvals=[(c + 0.5) * size for c in range(columns)],
                     ticktext=[f"support {c + 1}" if c < shot else ("" if c == shot else f"query {c - shot}")
                               for c in range(columns)])
    fig.update_yaxes(tickvals=[(r + 0.5) * size for r in range(way)],
                     ticktext=[f"class {int(c)}" for c in episodes.classes[index]])
    width = min(NOTEBOOK_WIDTH, 90 * columns + 150)
    plot_width = width - 160                                                   # the default left and right margins
    fig.update_layout(width=width, height=round(plot_width * way / columns) + 190)   # + title and axis: no empty band
    shown = "" if query.shape[1] == queries.shape[1] else f", the first {query.shape[1]} of {queries.shape[1]} a class"
    return finish_figure(fig, title or f"One {way}-way {shot}-shot episode: support images (left), queries (right{shown})",
                         "image", "episode class (label in the split)")


NETWORK_LABELS = {"none": "plain CNN", "static_dns": "static NSN", "dynamic_dns": "dynamic NSN"}
METHOD_LABELS = {"finetune": "finetune", "maml": "MAML"}


def accuracy_figure(summaries: Sequence[Mapping], title: str | None = None) -> go.Figure:
    """Each run's mean query accuracy with its 95 % interval (bars), and the Table 6 number of the same
    method where the paper has one (diamonds; Mini-ImageNet 5-way 5-shot)."""
    if not summaries:
        raise ValueError("no few-shot results to draw")
    names = [f"{NETWORK_LABELS.get(s['nsl'], s['nsl'])}{_backbone_label(s)} · "
             f"{METHOD_LABELS.get(s['method'], s['method'])}" for s in summaries]
    fig = go.Figure(go.Bar(x=names, y=[s["accuracy"] for s in summaries], name="this run",
                           marker_color=CLASS_COLORS[0], texttemplate="%{y:.1f} %", textposition="inside",
                           insidetextanchor="start",                        # at the base: clear of error bars and diamonds
                           error_y=dict(type="data", array=[s["interval95"] for s in summaries]),
                           hovertemplate="%{x}: %{y:.2f} %<extra>this run</extra>"))
    papers = [(name, s["paper"]) for name, s in zip(names, summaries) if s.get("paper")]
    if papers:
        fig.add_trace(go.Scatter(x=[n for n, _ in papers], y=[p["accuracy"] for _, p in papers], mode="markers",
                                 name="NSL Table 6 (Mini-ImageNet)", marker=dict(symbol="diamond", size=12,
                                                                                 color=CLASS_COLORS[3]),
                                 error_y=dict(type="data", array=[p["interval95"] for _, p in papers]),
                                 text=[p["row"] for _, p in papers],
                                 hovertemplate="%{text}: %{y:.2f} %<extra>Table 6</extra>"))
    way = summaries[0]["way"]
    fig.add_hline(y=100 / way, line_dash="dot")
    fig.add_annotation(text=f"chance ({100 / way:.0f} %)", x=1.01, xref="paper", xanchor="left", y=100 / way,
                       yref="y", showarrow=False)                    # in the right margin, clear of the bars
    first = summaries[0]
    return finish_figure(fig, title or f"{first['dataset']}: {way}-way {first['shot']}-shot query accuracy over "
                                       f"{first['episodes']} episodes (± 95 % interval)",
                         "network · test-time method", "query accuracy (%)", margin=dict(r=110))


def _backbone_label(summary: Mapping) -> str:
    """' (CNN-9)' for a run on another network than the CNN-4 of most of Table 6, else ''."""
    backbone = summary.get("backbone", "cnn4")
    return "" if backbone == "cnn4" else f" ({backbone.upper().replace('CNN', 'CNN-')})"


def meta_training_figure(history: Sequence[Mapping], title: str | None = None) -> go.Figure:
    """MAML's outer loop: the query accuracy after adaptation and, dashed, that of the start itself before
    any inner step (left axis, when the history has it), and the meta-loss (right)."""
    if not history:
        raise ValueError("no meta-training history: the run was not method 'maml' or had no meta-iterations")
    steps = [row["step"] for row in history]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=steps, y=[100 * row["query_acc"] for row in history],
                             name="query accuracy after the inner loop (%)", line=dict(color=CLASS_COLORS[0])),
                  secondary_y=False)
    fig.add_trace(go.Scatter(x=steps, y=[row["meta_loss"] for row in history], name="meta-loss (eq. 7)",
                             line=dict(color=CLASS_COLORS[1])), secondary_y=True)
    if all("query_acc_before" in row for row in history):
        fig.add_trace(go.Scatter(x=steps, y=[100 * row["query_acc_before"] for row in history],
                                 name="query accuracy of the start, before the inner loop (%)",
                                 line=dict(color=CLASS_COLORS[0], dash="dash")), secondary_y=False)
    finish_figure(fig, title or "Meta-learning static M and the classifier: tasks of the train classes", "outer step")
    fig.update_yaxes(title_text="query accuracy (%)", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="meta-loss", tickformat=".2f", rangemode="tozero", secondary_y=True)
    fig.update_xaxes(dtick=max(1, math.ceil((steps[-1] - steps[0]) / 10)))   # whole steps: no tick at 1.5
    fig.update_layout(height=460, width=NOTEBOOK_WIDTH, legend=dict(orientation="h", y=-0.22))
    return fig


def adapted_masks_figure(similarity: Mapping[str, torch.Tensor], title: str | None = None) -> go.Figure:
    """The static DNS masks M (k×k, identity = all ones) after adaptation: the mean over episodes of
    each layer's finetuned M ((E, K) tensors), or meta-learned M ((K,) tensors). Adaptation moves M
    by thousandths, so the colours span the largest change, however small, and taps have 3 decimals."""
    if not similarity:
        raise ValueError("no adapted masks: only a static NSN adapts M (nsl='static_dns')")
    masks = {}
    for name, values in similarity.items():
        mean = values.float().reshape(-1, values.shape[-1]).mean(0) if values.dim() > 1 else values.float()
        side = int(round(mean.numel() ** 0.5))
        masks[name.removesuffix(".similarity")] = np.asarray(mean.view(side, side).cpu())
    return static_mask_figure(masks, title or "Static masks M after test-time adaptation (mean over episodes)",
                              min_spread=1e-4, decimals=3)


__all__ = ["accuracy_figure", "adapted_masks_figure", "episode_figure", "meta_training_figure"]
