"""Figures of the learned-neighbor analysis (MN sec. 4.2, Fig. 5/6, App. A.8/A.9): the 2-D map of
keys "+" among training features "o", grids of retrieved images with green/red outlines, and the
sub-category kNN accuracy next to the paper's. They draw what `nslviz.analysis.neighbors` computed.

Image grids are one picture (a PNG data URI in a plotly Image trace: small in the notebook, exact
pixels, works in a static HTML export) with an invisible hover layer naming every image."""
from __future__ import annotations

import base64
import io
import re
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go

from ..paper import MN_SUBCATEGORY_DISCOVERY
from .common import CLASS_COLORS, NOTEBOOK_WIDTH, finish_figure
from .training import METHOD_COLORS, METHOD_LABELS

GREEN, RED, GREY, WHITE = (44, 160, 44), (214, 39, 40), (150, 150, 150), (255, 255, 255)
WEBGL_ABOVE = 5000          # points; beyond this the map uses WebGL (Scattergl)


def class_colors(count: int) -> list[str]:
    """Distinct colours for `count` classes (the project's 10, then plotly's 24 / 26)."""
    if count <= len(CLASS_COLORS):
        return list(CLASS_COLORS)
    if count <= 24:
        return list(plotly.colors.qualitative.Dark24)
    palette = plotly.colors.qualitative.Alphabet
    return [palette[i % len(palette)] for i in range(count)]


def neighbor_scatter(neighbor_map, title: str | None = None) -> go.Figure:
    """MN Fig. 5: learned neighbors (keys k_j, "+", class argmax v_j) and training features ("o"),
    embedded together, coloured by class."""
    axis = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}.get(neighbor_map.method, neighbor_map.method)
    names = neighbor_map.class_names
    colors = class_colors(len(names))
    points = len(neighbor_map.key_xy) + len(neighbor_map.data_xy)
    scatter = go.Scattergl if points > WEBGL_ABOVE else go.Scatter
    fig = go.Figure()
    m = neighbor_map
    for kind, xy, classes, ids, symbol, size in (
            ("training features (o)", m.data_xy, m.data_class, m.data_ids, "circle-open", 6),
            ("learned neighbors (+)", m.key_xy, m.key_class, m.key_ids, "cross", 9)):
        what = "training image" if kind.startswith("training") else "entry"
        for c in np.unique(classes):
            mask = classes == c
            fig.add_trace(scatter(
                x=xy[mask, 0].astype(np.float32), y=xy[mask, 1].astype(np.float32), mode="markers",
                name=f"{names[c]}", legendgroup=kind, legendgrouptitle_text=kind,
                marker=dict(symbol=symbol, size=size, color=colors[c % len(colors)],
                            line=dict(width=1.5 if symbol == "circle-open" else 0.5,
                                      color=colors[c % len(colors)] if symbol == "circle-open" else "black"),
                            opacity=0.55 if symbol == "circle-open" else 0.95),
                text=[f"{what} {i}, class {names[c]}" for i in ids[mask]], hoverinfo="text"))
    title = title or (f"{axis} of {len(neighbor_map.key_xy)} learned neighbors (+) and "
                      f"{len(neighbor_map.data_xy)} training features (o), coloured by class")
    legend_lines = len(fig.data) + 2                                      # an entry per trace, two group titles
    return finish_figure(fig, title, f"{axis} 1", f"{axis} 2", height=max(560, 140 + 21 * legend_lines),
                         legend=dict(groupclick="toggleitem"))              # tall enough to show every entry


# ----------------------------------------------------------------------------------------------
# image grids


def _rgb(images: np.ndarray) -> np.ndarray:
    """(..., C, H, W) uint8 with C in {1, 3} -> (..., H, W, 3)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim < 3 or images.shape[-3] not in (1, 3):
        raise ValueError(f"expected uint8 images (..., C, H, W) with C = 1 or 3, got {images.dtype} {images.shape}")
    images = np.moveaxis(images, -3, -1)
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def image_mosaic(images: np.ndarray, outline: np.ndarray, *, scale: int, border: int, gap: int) -> np.ndarray:
    """(R, K, C, H, W) uint8 images and (R, K, 3) outline colours -> one (R·T, K·T, 3) uint8 picture,
    each image enlarged `scale` times (nearest pixel), framed `border` pixels wide, `gap` apart."""
    tiles = _rgb(images)                                                              # (R, K, H, W, 3)
    tiles = tiles.repeat(scale, axis=2).repeat(scale, axis=3)                         # (R, K, sH, sW, 3)
    rows, cols, height, width, _ = tiles.shape
    framed = np.broadcast_to(np.asarray(outline, np.uint8)[:, :, None, None, :],
                             (rows, cols, height + 2 * border, width + 2 * border, 3)).copy()
    framed[:, :, border:border + height, border:border + width] = tiles
    cell = np.full((rows, cols, height + 2 * border + gap, width + 2 * border + gap, 3), 255, np.uint8)
    cell[:, :, :framed.shape[2], :framed.shape[3]] = framed
    return cell.transpose(0, 2, 1, 3, 4).reshape(rows * cell.shape[2], cols * cell.shape[3], 3)


def _png_uri(picture: np.ndarray) -> str:
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def retrieval_grid(neighbor_images, correct, row_labels: Sequence[str], *, title: str,
                   query_images=None, hover_text=None, scale: int | None = None,
                   xaxis: str = "retrieved image (1 = most similar)", yaxis: str = "query") -> go.Figure:
    """MN Fig. 6 / Fig. 9: one row per query, its k retrieved images framed green (correct) or red
    (wrong). neighbor_images (R, k, C, H, W) uint8; correct (R, k) bool; query_images (R, C, H, W)
    shown first in a grey frame when given; hover_text (R, k) strings."""
    neighbor_images = np.asarray(neighbor_images)
    correct = np.asarray(correct, dtype=bool)
    if neighbor_images.ndim != 5 or correct.shape != neighbor_images.shape[:2]:
        raise ValueError(f"expected neighbor_images (R, k, C, H, W) and correct (R, k), got "
                         f"{neighbor_images.shape} and {correct.shape}")
    rows, k = correct.shape
    if len(row_labels) != rows:
        raise ValueError(f"expected {rows} row labels, got {len(row_labels)}")
    outline = np.where(correct[..., None], np.array(GREEN, np.uint8), np.array(RED, np.uint8))   # (R, k, 3)
    images, columns = neighbor_images, [str(i + 1) for i in range(k)]
    if query_images is not None:
        query_images = np.asarray(query_images)
        images = np.concatenate([query_images[:, None], neighbor_images], axis=1)
        outline = np.concatenate([np.broadcast_to(np.array(GREY, np.uint8), (rows, 1, 3)), outline], axis=1)
        columns = ["query"] + columns
    size = images.shape[-1]
    scale = scale or max(1, 64 // size)
    border, gap = max(2, scale * size // 20), 6
    picture = image_mosaic(images, outline, scale=scale, border=border, gap=gap)
    cell = scale * size + 2 * border + gap
    centres = np.arange(len(columns)) * cell + (cell - gap) / 2
    row_centres = np.arange(rows) * cell + (cell - gap) / 2
    fig = go.Figure(go.Image(source=_png_uri(picture), hoverinfo="skip"))
    if hover_text is not None:
        hover = np.asarray(hover_text, dtype=object)
        if query_images is not None:
            hover = np.concatenate([np.array([[f"query: {label}"] for label in row_labels], dtype=object), hover], axis=1)
        xs, ys = np.meshgrid(centres, row_centres)
        fig.add_trace(go.Scatter(x=xs.ravel(), y=ys.ravel(), mode="markers", text=hover.ravel().tolist(),
                                 hoverinfo="text", marker=dict(size=scale * size, opacity=0), showlegend=False))
    # the axes span the picture exactly: the hover markers (64 px wide) would otherwise widen the ranges
    # and leave a band of white between the column numbers and the first row
    fig.update_xaxes(tickvals=centres.tolist(), ticktext=columns, showgrid=False, zeroline=False, side="top",
                     range=[-0.5, picture.shape[1] - 0.5], autorange=False)
    fig.update_yaxes(tickvals=row_centres.tolist(), ticktext=list(row_labels), showgrid=False, zeroline=False,
                     range=[picture.shape[0] - 0.5, -0.5], autorange=False)
    # wide enough for the title's longest line (about 8 px a character at the title's 17 px font); the
    # title at the top of the figure, the x axis's title and numbers below it, on top of the picture, so
    # the bottom margin only needs room for nothing
    lines = title.split("<br>")
    longest = max(len(re.sub(r"<[^>]+>", "", line)) for line in lines)
    top, height = 22 * len(lines) + 80, picture.shape[0] + 22 * len(lines) + 110
    fig = finish_figure(fig, title, xaxis, yaxis, width=int(min(NOTEBOOK_WIDTH, max(picture.shape[1] + 320, 8 * longest + 80))),
                        height=int(height), margin=dict(l=200, t=top, b=30))
    return fig.update_layout(title=dict(yref="container", y=1 - 35 / height, yanchor="top"))


def entry_retrieval_grid(retrieval, images, entries: Sequence[int], class_names: Sequence[str], *,
                         fine_names: Sequence[str] | None = None, title: str | None = None) -> go.Figure:
    """MN Fig. 9/10 (App. A.8): for the chosen dictionary `entries`, the k nearest images of the
    searched split (`images`, uint8 (N, C, H, W)), green when of the entry's class argmax v_j."""
    retrieval = getattr(retrieval, "entries", retrieval)                            # EntryRetrieval or Retrieval
    entries = np.asarray(entries)
    position = {int(j): i for i, j in enumerate(retrieval.query_ids)}
    rows = np.array([position[int(j)] for j in entries])
    index, labels = retrieval.index[rows], retrieval.retrieved_labels[rows]
    classes = retrieval.query_class[rows]
    fine = None if retrieval.retrieved_fine is None else retrieval.retrieved_fine[rows]
    similarity = retrieval.similarity[rows]                                        # (R, k), gathered once
    hover = [[f"{class_names[labels[r, i]]}" + (f" ({fine_names[fine[r, i]]})" if fine is not None and fine_names else "")
              + f", cos {similarity[r, i]:.4f}" for i in range(retrieval.k)] for r in range(len(rows))]
    row_labels = [f"entry #{j} “{class_names[c]}”" for j, c in zip(entries, classes)]
    title = title or (f"The {retrieval.k} nearest test images of {len(entries)} learned neighbors"
                      "<br><sup>green: of the entry's class, argmax<sub>c</sub> v<sub>j</sub>[c]</sup>")
    return retrieval_grid(np.asarray(images)[index], retrieval.correct[rows], row_labels, title=title,
                          hover_text=hover, yaxis="dictionary entry (class = argmax<sub>c</sub> v<sub>j</sub>[c])")


def subcategory_retrieval_grid(retrieval, query_images, neighbor_images, fine_names: Sequence[str], *,
                               title: str) -> go.Figure:
    """MN Fig. 6: each query test image and its k nearest training images, green when of the query's
    fine label (a sub-category the model was never told about)."""
    query_rows, index = retrieval.query_ids, retrieval.index
    hover = [[f"{fine_names[f]}, cos {s:.4f}" for f, s in zip(fine_row, sim_row)]
             for fine_row, sim_row in zip(retrieval.retrieved_labels, retrieval.similarity)]
    row_labels = [f"test #{q} “{fine_names[c]}”" for q, c in zip(query_rows, retrieval.query_class)]
    return retrieval_grid(np.asarray(neighbor_images)[index], retrieval.correct, row_labels, title=title,
                          query_images=np.asarray(query_images)[query_rows], hover_text=hover,
                          yaxis="test image (fine label)")


# ----------------------------------------------------------------------------------------------
# tables and bars


def retrieval_table(entry_retrieval) -> pd.DataFrame:
    """Purity of the k retrieved test images: dictionary entries vs random training images and random
    directions. "same label" = share of the most common label, whatever the query's class."""
    rows = {"learned neighbors (keys k_j)": entry_retrieval.entries.summary()}
    if entry_retrieval.baseline is not None:
        rows["random training images"] = entry_retrieval.baseline.summary()
    if entry_retrieval.random_directions is not None:
        rows["random directions (class: most common)"] = entry_retrieval.random_directions.summary()
    table = pd.DataFrame(rows).T
    columns = {"queries": "queries", "purity": "purity %", "all_correct": "all k correct %",
               "label_consistency": "same label %", "fine_consistency": "same sub-category %",
               "mean_similarity": "mean cos"}
    table = table[[c for c in columns if c in table]].rename(columns=columns)
    for column in ("purity %", "all k correct %", "same label %", "same sub-category %"):
        if column in table:
            table[column] = 100 * table[column].astype(float)
    return table.astype({"queries": int}).round(2)


def subcategory_table(results: Mapping[str, dict], paper: Mapping[str, Mapping[str, float]] | None = None) -> pd.DataFrame:
    """kNN accuracy (%) on the coarse labels trained on and the fine labels never seen, per method
    ({method: subcategory_report}), next to MN App. A.9."""
    if not results:
        raise ValueError("no methods to show: pass analyze_neighbors(...).subcategory")
    paper = MN_SUBCATEGORY_DISCOVERY if paper is None else paper
    rows = []
    for method, r in results.items():
        row = {"method": METHOD_LABELS.get(method, method), "kNN on": r["representation"],
               "coarse kNN %": 100 * r["coarse_acc"], "fine kNN %": 100 * r["fine_acc"]}
        base = "mn" if method.startswith("mn") else "vanilla"
        row["paper coarse %"] = paper.get(base, {}).get("coarse", np.nan)
        row["paper fine %"] = paper.get(base, {}).get("fine", np.nan)
        rows.append(row)
    return pd.DataFrame(rows).set_index("method").round(2)


def subcategory_bars(results: Mapping[str, dict], paper: Mapping[str, Mapping[str, float]] | None = None,
                     title: str = ("Sub-category discovery: kNN accuracy on labels trained on (coarse) "
                                   "and never seen (fine)"),
                     setting: str = "this run") -> go.Figure:
    """Bars per label set (coarse, fine) for each method of this run and of the paper (CIFAR-100,
    DenseNet40, S = 5000; hatched), each method in its colour of the learning curves."""
    paper = MN_SUBCATEGORY_DISCOVERY if paper is None else paper
    groups = ["coarse labels (trained on)", "fine labels (sub-categories)"]
    fig = go.Figure()
    for i, (method, r) in enumerate(results.items()):
        name = METHOD_LABELS.get(method, method)
        fig.add_trace(go.Bar(name=f"{name}, {setting}", x=groups, y=[100 * r["coarse_acc"], 100 * r["fine_acc"]],
                             marker_color=METHOD_COLORS.get(method, CLASS_COLORS[i % len(CLASS_COLORS)]),
                             text=[f"{100 * r['coarse_acc']:.1f}", f"{100 * r['fine_acc']:.1f}"], textposition="outside"))
    for i, method in enumerate(results):
        base = "mn" if method.startswith("mn") else "vanilla"
        if base in paper:
            fig.add_trace(go.Bar(name=f"{METHOD_LABELS.get(base, base)}, paper (CIFAR-100)", x=groups,
                                 y=[paper[base]["coarse"], paper[base]["fine"]],
                                 marker=dict(color=METHOD_COLORS.get(base, CLASS_COLORS[i % len(CLASS_COLORS)]),
                                             opacity=0.45,
                                             pattern_shape="/"),
                                 text=[f"{paper[base]['coarse']:.1f}", f"{paper[base]['fine']:.1f}"],
                                 textposition="outside"))
    fig.update_yaxes(range=[0, 105])
    return finish_figure(fig, title, "label set", "kNN test accuracy (%)", barmode="group", height=440)
