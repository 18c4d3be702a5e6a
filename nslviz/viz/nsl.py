"""Figures of what NSL layers learned (notebook 07) and of NSL secs. 5-6 (notebook 08). They draw arrays
from nslviz.analysis.nsl and the experiments' results; they train nothing. Sliders are plotly frames, so
they work in a static HTML export too.

    static_mask_figure(static_masks(model))                      learned 3×3 masks (or 9×9 M) per layer
    dynamic_mask_figure(image, dynamic_masks(model, image)[name], name, stride=layer.stride)   mask per position
    tap_maps_figure(dynamic_masks(model, image)[name], name)     each tap's value over the whole image
    mask_variability_figure(mask_variability(masks))             across positions vs across images
    attention_map_figure(image, attention_maps(model, images)[name]["attention"][0], name)   global similarity
    local_global_figure(local_and_global_similarity(image, kernel, local_mask, global_mask))  Appendix B.1

NSL sec. 5.1, implicit regularisation (an ImplicitRegularizationResult, notebook 08):
    flow_trajectories_figure(result)     both gradient flows in the plane of W's two main directions
    nuclear_norm_figure(result)          loss and nuclear norm over gradient-flow time
    singular_values_figure(result)       every singular value over time, per flow

NSL sec. 5.2, a stack of NSL layers is an ODE solver (a ResidualODEResult, notebook 08):
    residual_ode_maps_figure(result)     the input, the exact heat-equation solution and two stacks' outputs
    residual_ode_error_figure(result)    each solver's error against the step Δt, and its order

NSL sec. 6, a dynamic layer is a higher-order function of its input (a HigherOrderResult, notebook 08):
    higher_order_figure(result)          R² of every one-layer model on every target
    higher_order_maps_figure(result)     what each model computes on one test region, beside the target
    higher_order_degree_table(result)    each trained model's degree in the contrast
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..analysis.nsl import identity_mask, short_layer_name
from .._checks import check_positive
from .common import NOTEBOOK_WIDTH, finish_figure, panel_size

COLORSCALE = "RdBu_r"


def _is_matrix(mask: np.ndarray) -> bool:
    """A K×K UNS matrix rather than a k×k DNS spatial mask (see analysis.nsl.identity_mask)."""
    return not np.all(identity_mask(mask.shape[-2:]) == 1)


MIN_COLOR_SPREAD = 0.05    # a colour axis spans at least identity ± 5 %, so that ±1 % noise stays pale


def _shown(mask, matrix: bool) -> np.ndarray:
    """What a similarity figure draws: a DNS mask as it is (identity: all ones) and a UNS matrix as
    M − I (identity: 0), so that white is the identity everywhere and a diagonal entry that left 1
    shows as plainly as an off-diagonal one. mask (..., r, c)."""
    mask = np.asarray(mask, dtype=np.float32)
    return mask - identity_mask(mask.shape[-2:]).astype(np.float32) if matrix else mask


def _color_axis(shown, matrix: bool, min_spread: float = MIN_COLOR_SPREAD) -> dict:
    """A diverging colour axis for `_shown` arrays, centred on the identity (1 for masks, 0 for M − I),
    spanning the largest deviation, and at least ±min_spread."""
    mid = 0.0 if matrix else 1.0
    spread = max([float(np.abs(np.asarray(a, dtype=np.float64) - mid).max()) for a in shown] + [min_spread])
    return dict(colorscale=COLORSCALE, cmid=mid, cmin=mid - spread, cmax=mid + spread,
                colorbar=dict(title=f"{_value_name(matrix)} value", thickness=14))


def _value_name(matrix: bool) -> str:
    return "M − I" if matrix else "M"


def _axis_titles(matrix: bool) -> tuple[str, str]:
    return ("input tap t", "kernel tap s") if matrix else ("kernel column", "kernel row")


def static_mask_figure(masks: Mapping[str, np.ndarray], title: str | None = None, columns: int = 3, *,
                       min_spread: float = MIN_COLOR_SPREAD, decimals: int = 2) -> go.Figure:
    """The learned static similarity of every layer: DNS k×k masks (identity = all ones, shown white)
    or UNS K×K matrices, drawn as M − I (identity = 0, shown white, so that a diagonal entry that left 1
    shows as plainly as an off-diagonal one). One heatmap per layer, one shared colour scale spanning
    the largest deviation from the identity and at least ±min_spread; DNS taps written with `decimals`
    decimals."""
    if not masks:
        raise ValueError("no static masks to draw: the model has no static NSL layer")
    check_positive("columns", columns, integer=True, minimum=1)
    names = list(masks)
    rows = math.ceil(len(names) / min(columns, len(names)))
    columns = math.ceil(len(names) / rows)                    # as few empty cells as the rows allow: 4 layers in 2×2
    matrix = _is_matrix(masks[names[0]])
    shown = {name: _shown(masks[name], matrix) for name in names}                  # UNS: M − I
    value = _value_name(matrix)
    cell = panel_size(columns, 300, margins=120)                             # px a heatmap, colour bar beside
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[short_layer_name(n) for n in names],
                        horizontal_spacing=0.08, vertical_spacing=100 / (cell * rows + 80))  # 100 px: room for x titles
    for i, name in enumerate(names):
        fig.add_trace(go.Heatmap(z=shown[name], coloraxis="coloraxis", name=short_layer_name(name),
                                 texttemplate=None if matrix else f"%{{z:.{decimals}f}}",
                                 hovertemplate=f"row %{{y}}, column %{{x}}: {value} = %{{z:.3f}}<extra></extra>"),
                      row=i // columns + 1, col=i % columns + 1)
    fig.update_layout(coloraxis=_color_axis(shown.values(), matrix, min_spread), height=cell * rows + 80,
                      width=cell * columns + 120)
    kind = "UNS similarity matrices M_s − I" if matrix else "DNS spatial masks diag(M_s)"
    x_title, y_title = _axis_titles(matrix)
    finish_figure(fig, title or f"Learned static {kind}, one per layer", x_title)
    fig.update_xaxes(dtick=1)
    fig.update_yaxes(autorange="reversed", dtick=1)
    for row in range(1, rows + 1):                    # the row title once, left of the grid, clear of the heatmaps
        fig.update_yaxes(title_text=y_title, row=row, col=1)
    for cell in range(len(names), rows * columns):                          # the empty cells of the last row
        fig.update_xaxes(visible=False, row=cell // columns + 1, col=cell % columns + 1)
        fig.update_yaxes(visible=False, row=cell // columns + 1, col=cell % columns + 1)
    return fig


def _image_trace(image) -> tuple[go.BaseTraceType, int, int]:
    """A model input (C, H, W) or (H, W) with values in [0, 1] as a plotly image (RGB) or grey
    heatmap, with its height and width."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    if array.ndim == 2:
        trace = go.Heatmap(z=array.astype(np.float32), colorscale="gray", showscale=False, name="input",
                           hovertemplate="pixel (%{y}, %{x}): %{z:.2f}<extra></extra>")
        return trace, *array.shape
    if array.ndim == 3 and array.shape[-1] == 3:
        return go.Image(z=np.clip(array * 255, 0, 255).astype(np.uint8), name="input"), *array.shape[:2]
    raise ValueError(f"image must be (C, H, W) with C in (1, 3) or (H, W), got shape {array.shape}")


def _window(i: int, j: int, k: int, stride: int, padding: int, scale_y: float, scale_x: float) -> tuple[list, list]:
    """Outline of a k×k window (stride, padding) at output position (i, j), and its centre, in image
    pixels; scale_* = image pixels per pixel of the layer's input."""
    top, left = i * stride - padding, j * stride - padding                 # the window's first input row, column
    y0, y1 = top * scale_y - 0.5, (top + k) * scale_y - 0.5
    x0, x1 = left * scale_x - 0.5, (left + k) * scale_x - 0.5
    centre_y, centre_x = (top + (k - 1) / 2 + 0.5) * scale_y - 0.5, (left + (k - 1) / 2 + 0.5) * scale_x - 0.5
    return [x0, x1, x1, x0, x0, None, centre_x], [y0, y0, y1, y1, y0, None, centre_y]


def mask_positions(out_h: int, out_w: int, max_frames: int = 64) -> list[tuple[int, int]]:
    """The output positions (row, column) that `dynamic_mask_figure`'s slider steps through: a regular
    grid of at most `max_frames` positions, every `step`-th row and column from step // 2 (from the
    last row or column where the map is thinner than that)."""
    check_positive("max_frames", max_frames, integer=True, minimum=1)
    for size in (out_h, out_w):
        check_positive("the map's height and width", size, integer=True, minimum=1)
    step = max(1, math.ceil(math.sqrt(out_h * out_w / max_frames)))
    while math.ceil(out_h / step) * math.ceil(out_w / step) > max_frames:
        step += 1
    return [(i, j) for i in range(min(step // 2, out_h - 1), out_h, step)
            for j in range(min(step // 2, out_w - 1), out_w, step)]


def dynamic_mask_figure(image, masks: np.ndarray, layer_name: str, max_frames: int = 64,
                        title: str | None = None, *, stride: int = 1, padding: int | None = None) -> go.Figure:
    """The similarity a dynamic layer predicts at each output position of one image. Left: the
    image with the layer's k×k window at the chosen position; right: the predicted mask there
    (DNS k×k) or matrix (UNS K×K, K = k², drawn as M − I as in `static_mask_figure`). A slider steps through positions (at most `max_frames`, on
    a regular grid); masks (H', W', r, c) from dynamic_masks(model, image)[layer_name].

    The window is drawn on the layer's input grid, H' · stride rows by W' · stride columns, scaled to
    the image: pass the layer's `stride` and `padding` (default (k - 1) / 2, "same") for a strided
    layer, e.g. nsl_layers(model)[layer_name].stride."""
    check_positive("max_frames", max_frames, integer=True, minimum=1)
    check_positive("stride", stride, integer=True, minimum=1)
    masks = np.asarray(masks, dtype=np.float32)
    if masks.ndim != 4:
        raise ValueError(f"masks must be (H', W', r, c) for one image (dynamic_masks(model, image)[name]), "
                         f"got shape {masks.shape}")
    matrix = _is_matrix(masks[0, 0])
    k = math.isqrt(masks.shape[-1]) if matrix else masks.shape[-1]            # UNS K×K with K = k·k; DNS k×k
    padding = (k - 1) // 2 if padding is None else padding
    check_positive("padding", padding, integer=True, minimum=0)
    image_trace, height, width = _image_trace(image)
    out_h, out_w = masks.shape[:2]
    scale_y, scale_x = height / (out_h * stride), width / (out_w * stride)    # image pixels per layer-input pixel
    positions = mask_positions(out_h, out_w, max_frames)
    shown = _shown(masks, matrix)                                                  # UNS: M − I at every position
    color = _color_axis([shown], matrix)

    def window_trace(i, j):
        xs, ys = _window(i, j, k, stride, padding, scale_y, scale_x)
        return go.Scatter(x=xs, y=ys, mode="lines+markers", line=dict(color="#e41a1c", width=3),
                          marker=dict(size=[0, 0, 0, 0, 0, 0, 10], color="#e41a1c"), name=f"{k}×{k} window",
                          hoverinfo="skip")

    def mask_trace(i, j):
        return go.Heatmap(z=shown[i, j], coloraxis="coloraxis", name=f"predicted {_value_name(matrix)}",
                          texttemplate=None if matrix else "%{z:.2f}",
                          hovertemplate=f"row %{{y}}, column %{{x}}: {_value_name(matrix)} = %{{z:.3f}}"
                                        "<extra></extra>")

    # the slider starts at the position nearest the image's centre, where the content usually is
    start = min(range(len(positions)), key=lambda n: (positions[n][0] - (out_h - 1) / 2) ** 2
                + (positions[n][1] - (out_w - 1) / 2) ** 2)
    first = positions[start]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.12,
                        subplot_titles=(f"input image and the layer's {k}×{k} window",
                                        "predicted similarity at that position"))
    fig.add_trace(image_trace, 1, 1)
    fig.add_trace(window_trace(*first), 1, 1)
    fig.add_trace(mask_trace(*first), 1, 2)
    names = [f"({i}, {j})" for i, j in positions]
    fig.frames = [go.Frame(data=[window_trace(i, j), mask_trace(i, j)], traces=[1, 2], name=name)
                  for (i, j), name in zip(positions, names)]
    # the slider's label sits well under the image's axis title (pad), not against it
    slider = dict(active=start, currentvalue=dict(prefix="output position (row, column): "), pad=dict(t=65),
                  steps=[dict(label=name, method="animate",
                              args=[[name], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                                 transition=dict(duration=0))]) for name in names])
    fig.update_layout(sliders=[slider], coloraxis=color, height=530, width=NOTEBOOK_WIDTH, showlegend=False,
                      margin=dict(t=110))                                         # a two-line title
    fig.update_xaxes(range=[-0.5, width - 0.5], constrain="domain", title_text="image column (pixels)", row=1, col=1)
    fig.update_yaxes(range=[height - 0.5, -0.5], title_text="image row (pixels)", scaleanchor="x", row=1, col=1)
    x_title, y_title = _axis_titles(matrix)
    rows, columns = masks.shape[2:]
    fig.update_xaxes(title_text=x_title, tickvals=list(range(columns)), row=1, col=2)
    fig.update_yaxes(autorange="reversed", title_text=y_title, tickvals=list(range(rows)), row=1, col=2)
    kind = "matrix M(p) − I" if matrix else "mask m(p)"
    return finish_figure(fig, title or f"Dynamic similarity {kind} over the image, {short_layer_name(layer_name)}"
                                       f"<br>({out_h}×{out_w} positions, {len(positions)} on the slider)")


def tap_maps_figure(masks: np.ndarray, layer_name: str, title: str | None = None) -> go.Figure:
    """For a dynamic DNS layer on one image: each of the k×k taps of the predicted mask as a map over
    all output positions (masks (H', W', k, k)), laid out like the kernel. White = 1 = plain conv."""
    masks = np.asarray(masks, dtype=np.float32)
    if masks.ndim != 4 or _is_matrix(masks[0, 0]):
        raise ValueError(f"tap_maps_figure draws DNS masks (H', W', k, k) for one image, got shape {masks.shape}")
    k = masks.shape[-1]
    fig = make_subplots(rows=k, cols=k, horizontal_spacing=0.03, vertical_spacing=0.07,
                        subplot_titles=[f"tap ({a}, {b})" for a in range(k) for b in range(k)])
    for a in range(k):
        for b in range(k):
            fig.add_trace(go.Heatmap(z=masks[:, :, a, b], coloraxis="coloraxis", name=f"tap ({a}, {b})",
                                     hovertemplate="position (%{y}, %{x}): %{z:.3f}<extra></extra>"), a + 1, b + 1)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="output column", row=k)          # on the outer edges only: inside the grid
    fig.update_yaxes(title_text="output row", col=1)             # a title would lie over the next panel
    cell = panel_size(k, 220, margins=140)
    fig.update_layout(coloraxis=_color_axis([masks], matrix=False), height=(cell + 10) * k + 100,
                      width=cell * k + 140)
    return finish_figure(fig, title or f"Each tap of the predicted mask over the image, {short_layer_name(layer_name)}")


def mask_variability_figure(stats: Mapping[str, dict], title: str | None = None) -> go.Figure:
    """Per dynamic layer: how much the predicted mask entries vary across positions of one image,
    across images at one position, and how far they are from the identity (plain convolution)."""
    if not stats:
        raise ValueError("no layers to draw: pass mask_variability(dynamic_masks(model, images))")
    labels = [short_layer_name(name) for name in stats]
    series = [("position_spread", "std across positions (same image)", "#1f77b4"),
              ("image_spread", "std across images (same position)", "#ff7f0e"),
              ("identity_distance", "mean |M − I|", "#7f7f7f")]
    fig = go.Figure([go.Bar(x=labels, y=[s[key] for s in stats.values()], name=name, marker_color=color)
                     for key, name, color in series])
    images = next(iter(stats.values()))["images"]
    fig.update_layout(barmode="group", height=430, legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    return finish_figure(fig, title or f"How dynamic the predicted similarity is ({images} images)",
                         "layer", "mean over mask entries")


def effective_kernel_figure(image, kernel: np.ndarray, effective: np.ndarray, positions, layer_name: str,
                            scale: float = 1.0, title: str | None = None) -> go.Figure:
    """What "dynamic" means: the image with a few output positions marked, the layer's stored k×k
    kernel W (one filter, one input channel), and the kernel M(p)ᵀW it applies at each marked
    position (`analysis.nsl.effective_kernels`). kernel (k, k); effective (P, k, k) for the P
    positions (row, column) on the layer's output map; `scale` = image pixels per output position."""
    kernel, effective = np.asarray(kernel, dtype=np.float32), np.asarray(effective, dtype=np.float32)
    positions = [tuple(int(v) for v in p) for p in positions]
    if kernel.ndim != 2 or effective.ndim != 3 or len(effective) != len(positions):
        raise ValueError(f"kernel must be (k, k) and effective (P, k, k) with P = {len(positions)} positions; "
                         f"got {kernel.shape} and {effective.shape}")
    image_trace, height, width = _image_trace(image)
    colors = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628")
    if not 1 <= len(positions) <= 4:
        raise ValueError(f"effective_kernel_figure draws 1 to 4 positions (what a notebook's width shows), got "
                         f"{len(positions)}")
    # one row (image, W, the kernels) up to two positions; else the image and W above, the kernels below
    one_row = len(positions) <= 2
    columns = len(positions) + 2 if one_row else max(3, len(positions))
    cell = panel_size(columns, 180, margins=100)
    if one_row:
        specs, cells = [[{}] * columns], [(1, 1), (1, 2)] + [(1, n + 3) for n in range(len(positions))]
    else:                                                 # the image over two columns, W in the third
        specs = [[{"colspan": 2}, None, {}] + [None] * (columns - 3), [{}] * columns]
        cells = [(1, 1), (1, 3)] + [(2, n + 1) for n in range(len(positions))]
    rows = cells[-1][0]
    fig = make_subplots(rows=rows, cols=columns, specs=specs, horizontal_spacing=0.09, vertical_spacing=0.2,
                        subplot_titles=["image and positions", "stored kernel W"]
                        + [f"M(p)ᵀW at ({i}, {j})" for i, j in positions])
    fig.add_trace(image_trace, 1, 1)
    spread = float(max(np.abs(kernel).max(), np.abs(effective).max(), 1e-6))
    fig.add_trace(go.Heatmap(z=kernel, coloraxis="coloraxis", texttemplate="%{z:.2f}", name="W"), *cells[1])
    for n, (i, j) in enumerate(positions):
        color = colors[n % len(colors)]
        fig.add_trace(go.Scatter(x=[(j + 0.5) * scale - 0.5], y=[(i + 0.5) * scale - 0.5], mode="markers",
                                 marker=dict(size=14, color=color, line=dict(color="white", width=2)),
                                 name=f"({i}, {j})", hoverinfo="name"), 1, 1)
        fig.add_trace(go.Heatmap(z=effective[n], coloraxis="coloraxis", texttemplate="%{z:.2f}",
                                 name=f"M(p)ᵀW at ({i}, {j})"), *cells[n + 2])
    marked = [a for a in fig.layout.annotations if a.text.startswith("M(p)")]
    for n, annotation in enumerate(marked):                                  # each title in its marker's colour
        annotation.update(text=f"● {annotation.text}", font=dict(color=colors[n % len(colors)]))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="image column", constrain="domain", row=1, col=1)   # square pixels, however
    fig.update_yaxes(title_text="image row", scaleanchor="x", constrain="domain", row=1, col=1)   # its cell
    titled = cells[1:2] if one_row else cells[1:3]          # "kernel row" left of W (and of the second row)
    for row, col in cells[1:]:
        fig.update_xaxes(title_text="kernel column", tickvals=list(range(kernel.shape[1])), row=row, col=col)
        fig.update_yaxes(title_text="kernel row" if (row, col) in titled else None,
                         tickvals=list(range(kernel.shape[0])), row=row, col=col)
    fig.update_layout(coloraxis=dict(colorscale=COLORSCALE, cmid=0, cmin=-spread, cmax=spread,
                                     colorbar=dict(title="weight", thickness=14)),
                      height=(cell + 160) * rows, width=cell * columns + 100, showlegend=False)
    return finish_figure(fig, title or f"The kernel {short_layer_name(layer_name)} applies, position by position")


def attention_map_figure(image, attention: np.ndarray, block_name: str, queries=None,
                         title: str | None = None) -> go.Figure:
    """Global neural similarity (self-attention, NSL Appendix B) of one block on one image: the image
    with a few query positions marked (left), then for each query the map β(query, ·) over all
    positions of the block's feature map, i.e. where that position gathers its values from.
    attention (h, w, h, w) from attention_maps(model, image[None])[name]["attention"][0]; queries
    a list of (row, column) on the h×w map (default: four spread over the map)."""
    attention = np.asarray(attention, dtype=np.float32)
    if attention.ndim != 4 or attention.shape[:2] != attention.shape[2:]:
        raise ValueError(f"attention must be (h, w, h, w) for one image, got shape {attention.shape}")
    h, w = attention.shape[:2]
    if queries is None:
        queries = [(h // 4, w // 4), (h // 4, 3 * w // 4), (3 * h // 4, w // 4), (h // 2, w // 2)]
    queries = [tuple(int(v) for v in q) for q in queries]
    for qi, qj in queries:
        if not (0 <= qi < h and 0 <= qj < w):
            raise ValueError(f"query ({qi}, {qj}) is outside the {h}×{w} feature map")
    image_trace, height, width = _image_trace(image)
    scale_y, scale_x = height / h, width / w
    colors = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628")
    fig = make_subplots(rows=1, cols=len(queries) + 1, horizontal_spacing=0.04,
                        subplot_titles=["image and query positions"]
                        + [f"query ({qi}, {qj})" for qi, qj in queries])
    fig.add_trace(image_trace, 1, 1)
    uniform = 1.0 / (h * w)
    top = float(max(attention[qi, qj].max() for qi, qj in queries))
    for n, (qi, qj) in enumerate(queries):
        color = colors[n % len(colors)]
        fig.add_trace(go.Scatter(x=[(qj + 0.5) * scale_x - 0.5], y=[(qi + 0.5) * scale_y - 0.5], mode="markers",
                                 marker=dict(size=14, color=color, line=dict(color="white", width=2)),
                                 name=f"query ({qi}, {qj})", hoverinfo="name"), 1, 1)
        fig.add_trace(go.Heatmap(z=attention[qi, qj], coloraxis="coloraxis", name=f"β from ({qi}, {qj})",
                                 hovertemplate="position (%{y}, %{x}): β = %{z:.4f}<extra></extra>"), 1, n + 2)
        fig.add_trace(go.Scatter(x=[qj], y=[qi], mode="markers", showlegend=False, hoverinfo="skip",
                                 marker=dict(size=10, color=color, symbol="x")), 1, n + 2)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="image column", row=1, col=1)
    fig.update_yaxes(title_text="image row", row=1, col=1)
    for n in range(len(queries)):
        fig.update_xaxes(title_text="map column", row=1, col=n + 2)
        fig.update_yaxes(title_text="map row" if n == 0 else None, scaleanchor=f"x{n + 2}", row=1, col=n + 2)
    fig.update_layout(coloraxis=dict(colorscale="Viridis", cmin=0, cmax=max(top, 2 * uniform),
                                     colorbar=dict(title="β", thickness=14)),
                      height=340, width=min(NOTEBOOK_WIDTH, 250 * (len(queries) + 1) + 100), showlegend=False)
    return finish_figure(fig, title or f"Global similarity β of {block_name} ({h}×{w} map; uniform would be "
                                       f"{uniform:.4f} everywhere)")


M_G = "M<sub>G</sub><sup>s</sup>"     # the global similarity block of NSL eq. (9), as plotly text


def local_global_figure(result: Mapping[str, np.ndarray], title: str | None = None) -> go.Figure:
    """Local against global similarity with diagonal matrices (NSL Appendix B.1, Figure 4), from
    `local_and_global_similarity`. Columns: the plain convolution, local similarity, global
    similarity. Top: the input and the two masks (white = 1, the plain convolution; red above, blue
    below; the k×k mask with its values, and on hover the kernel MᵀW it makes). Bottom: the three
    outputs."""
    missing = {"image", "plain", "local", "global", "local_mask", "global_mask", "local_kernel"} - set(result)
    if missing:
        raise ValueError(f"result lacks {sorted(missing)}: pass local_and_global_similarity(...)'s dict")
    fig = make_subplots(rows=2, cols=3, vertical_spacing=0.2, horizontal_spacing=0.09, subplot_titles=[
        "input X", "local M: a weight per tap", f"global {M_G}: a weight per pixel",
        "plain convolution WᵀX", "local: WᵀMX in every window", "global: W ∗ (mask ⊙ X)"])
    grey = dict(colorscale="gray", showscale=False)
    for col, name in enumerate(("plain", "local", "global"), start=1):
        fig.add_trace(go.Heatmap(z=result[name], name=f"{name} output", **grey,
                                 hovertemplate="pixel (%{y}, %{x}): %{z:.3f}<extra></extra>"), 2, col)
    fig.add_trace(go.Heatmap(z=result["image"], name="input", **grey,
                             hovertemplate="pixel (%{y}, %{x}): %{z:.2f}<extra></extra>"), 1, 1)
    hover = {"local_mask": "tap (%{y}, %{x}): M = %{z:.3f}, kernel MᵀW = %{customdata:.3f}<extra></extra>",
             "global_mask": "pixel (%{y}, %{x}): M = %{z:.3f}<extra></extra>"}
    for col, name, text in ((2, "local_mask", "%{z:.2g}"), (3, "global_mask", None)):
        mask = np.asarray(result[name], dtype=np.float32)
        spread = max(float(np.abs(mask - 1).max()), MIN_COLOR_SPREAD)
        # the local mask prints its values; the global one has a colour bar (white: 1, the plain convolution)
        ticks = [1 - spread, 1 - spread / 2, 1, 1 + spread / 2, 1 + spread]
        scale = dict(showscale=True, colorbar=dict(
            title=dict(text="M", side="top"), thickness=12, len=0.42, y=1.0, yanchor="top", x=1.01, tickvals=ticks,
            ticktext=[f"{tick:.2g}" if tick != 1 else "1: plain" for tick in ticks])) if col == 3 else {}
        fig.add_trace(go.Heatmap(z=mask, colorscale=COLORSCALE, zmid=1, zmin=1 - spread, zmax=1 + spread,
                                 showscale=False, texttemplate=text, name=name.replace("_", " "),
                                 customdata=result["local_kernel"] if col == 2 else None,
                                 hovertemplate=hover[name]).update(**scale), 1, col)
    fig.update_yaxes(autorange="reversed", constrain="domain")
    fig.update_xaxes(constrain="domain")
    for row in (1, 2):
        for col in (1, 2, 3):
            axis = (row - 1) * 3 + col
            fig.update_yaxes(scaleanchor=f"x{axis}" if axis > 1 else "x", row=row, col=col)
    fig.update_xaxes(title_text="kernel column", dtick=1, row=1, col=2)
    fig.update_yaxes(title_text="kernel row", dtick=1, row=1, col=2)
    for row, col in ((1, 1), (1, 3), (2, 1), (2, 2), (2, 3)):
        fig.update_xaxes(title_text="image column", row=row, col=col)
    for row in (1, 2):
        fig.update_yaxes(title_text="image row", row=row, col=1)
    fig.update_layout(height=600, width=NOTEBOOK_WIDTH, showlegend=False, margin=dict(t=130, l=60, r=90))
    return finish_figure(fig, title or f"Local against global similarity, both diagonal:<br>the local M changes the "
                                       f"kernel everywhere, the global {M_G} chooses where the map is read")


FLOW_COLORS = {"standard": "#1f77b4", "factorized": "#d62728"}
FLOW_NAMES = {"standard": "gradient descent on W", "factorized": "gradient descent on (W′, M), W = MᵀW′"}


def flow_trajectories_figure(result, title: str | None = None) -> go.Figure:
    """The two gradient flows from their starts (circles) to their ends (squares) in the plane
    (coordinate along the minimum-Frobenius solution W_F, size of the null-space part the data
    cannot see): see experiments.implicit_regularization.project_trajectories. Every exact solution
    lies on the vertical line through W_F (×); the ground truth W* (★) is one of them."""
    p = result.projection
    fig = go.Figure()
    for name in ("standard", "factorized"):
        xy = p[name]
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines+markers", name=FLOW_NAMES[name],
                                 line=dict(color=FLOW_COLORS[name], width=2), marker=dict(size=4),
                                 customdata=np.stack([result.flow_time, result.steps], axis=1),
                                 hovertemplate="t = %{customdata[0]:.3g} (step %{customdata[1]})<extra></extra>"))
        fig.add_trace(go.Scatter(x=xy[[0, -1], 0], y=xy[[0, -1], 1], mode="markers", showlegend=False,
                                 marker=dict(symbol=["circle-open", "square"], size=12, color=FLOW_COLORS[name]),
                                 hoverinfo="skip"))
    solution_x = float(p["min_frobenius"][0])
    top = max(float(np.max(p["standard"][:, 1])), float(np.max(p["factorized"][:, 1])), float(p["truth"][1])) * 1.1
    fig.add_trace(go.Scatter(x=[solution_x, solution_x], y=[0, top or 1.0], mode="lines", name="exact solutions",
                             line=dict(color="grey", dash="dot", width=1)))
    for key, label, symbol in (("min_frobenius", "minimum-Frobenius solution W<sub>F</sub>", "x"),
                               ("truth", "ground truth W*", "star")):
        fig.add_trace(go.Scatter(x=[p[key][0]], y=[p[key][1]], mode="markers", name=label,
                                 marker=dict(symbol=symbol, size=14, color="black")))
    fig.update_layout(height=600, width=NOTEBOOK_WIDTH, margin=dict(b=170),
                      legend=dict(orientation="h", y=-0.2, yanchor="top"))   # below the axis title, off the title
    return finish_figure(fig, title or f"Two gradient flows for the same {result.config.observation}-observation "
                                       f"regression (start ○, end □)",
                         "coordinate of W along the minimum-Frobenius solution W<sub>F</sub>",
                         "size of W's null-space part ‖W − P(W)‖<sub>F</sub> (unseen by the data)")


def nuclear_norm_figure(result, title: str | None = None) -> go.Figure:
    """Training loss and nuclear norm ‖W‖_* of both flows over gradient-flow time, with the nuclear
    norms of the minimum-Frobenius exact solution and of the ground truth as reference lines."""
    time_axis = result.flow_time[1:]                                   # log axis: t > 0
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
        "loss ½Σ‖residual‖²", "nuclear norm ‖W‖<sub>*</sub> = Σ singular values"))
    for name in ("standard", "factorized"):
        flow = getattr(result, name)
        fig.add_trace(go.Scatter(x=time_axis, y=np.maximum(flow.loss[1:], 1e-16), name=FLOW_NAMES[name],
                                 line=dict(color=FLOW_COLORS[name]), legendgroup=name), 1, 1)
        fig.add_trace(go.Scatter(x=time_axis, y=flow.nuclear_norm[1:], name=FLOW_NAMES[name], showlegend=False,
                                 line=dict(color=FLOW_COLORS[name]), legendgroup=name), 1, 2)
    for matrix, label, dash in ((result.min_frobenius, "minimum-Frobenius solution", "dot"),
                                (result.truth, "ground truth W*", "dash")):
        value = float(np.linalg.svd(matrix, compute_uv=False).sum())
        fig.add_trace(go.Scatter(x=time_axis[[0, -1]], y=[value, value], mode="lines", name=label,
                                 line=dict(color="black", dash=dash, width=1)), 1, 2)
    fig.update_xaxes(type="log", title_text="gradient-flow time t = steps × step size lr/λ<sub>max</sub>")
    fig.update_yaxes(type="log", exponentformat="power", title_text="loss", row=1, col=1)
    references = [float(np.linalg.svd(m, compute_uv=False).sum()) for m in (result.min_frobenius, result.truth)]
    top = max([*references, *(float(getattr(result, n).nuclear_norm.max()) for n in ("standard", "factorized"))])
    fig.update_yaxes(title_text="nuclear norm", range=[0, 1.1 * top], row=1, col=2)   # the reference lines inside
    fig.update_annotations(yshift=10)                  # the panel titles clear the top tick labels
    fig.update_layout(height=430, width=NOTEBOOK_WIDTH, legend=dict(orientation="h", y=-0.25))
    return finish_figure(fig, title or f"Both flows fit the data ({result.config.observation} observation); they stop "
                                       f"at different nuclear norms")


ZERO_FLOOR = 1e-12         # singular values below this are drawn on it (the log axis cannot show 0)


def singular_values_figure(result, title: str | None = None) -> go.Figure:
    """Every singular value of W over gradient-flow time: standard flow (left), factorised (right)."""
    time_axis = result.flow_time[1:]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.09,
                        subplot_titles=[FLOW_NAMES["standard"], FLOW_NAMES["factorized"]])
    for col, name in enumerate(("standard", "factorized"), start=1):
        values = getattr(result, name).singular_values[1:]
        for k in range(values.shape[1]):
            fig.add_trace(go.Scatter(x=time_axis, y=np.maximum(values[:, k], ZERO_FLOOR), mode="lines",
                                     name=f"σ{k + 1}", showlegend=col == 1, legendgroup=f"s{k}",
                                     line=dict(color=FLOW_COLORS[name], width=2.5 if k == 0 else 1),
                                     opacity=1.0 if k < result.config.rank else 0.5), 1, col)
    fig.update_xaxes(type="log", title_text="gradient-flow time t = steps × lr/λ<sub>max</sub>")
    fig.update_yaxes(type="log", exponentformat="power", showticklabels=True)   # the right panel's ticks too
    fig.update_yaxes(title_text="singular value σ<sub>k</sub> of W", row=1, col=1)
    fig.add_hline(y=ZERO_FLOOR, line=dict(color="grey", dash="dot", width=1))
    for axis in ("", "2"):                 # on a log axis an annotation's y is log10 of the value
        fig.add_annotation(x=0, xref=f"x{axis} domain", y=math.log10(ZERO_FLOOR), yref=f"y{axis}",
                           text=f"≤ {ZERO_FLOOR:.0e}: numerically zero", showarrow=False,   # left: the curves
                           xanchor="left", yanchor="bottom", font=dict(size=11, color="grey"))  # reach it late
    fig.update_layout(height=430, width=NOTEBOOK_WIDTH, showlegend=False)
    return finish_figure(fig, title or f"Singular values of W during training ({result.config.observation} observation, "
                                       f"ground truth rank {result.config.rank})")


MODEL_COLORS = {"convolution": "#7f7f7f", "linear_predictor": "#d62728", "released_predictor": "#1f77b4"}
R2_FLOOR = -0.5            # bars below this are drawn down to it; their text gives the value


def higher_order_figure(result, title: str | None = None) -> go.Figure:
    """Test R² of each one-layer model (bars) on each target (groups), from `run_higher_order`; hover
    a bar for the model's degree in the contrast (`contrast_degree`)."""
    from ..experiments.higher_order import MODELS, TARGETS
    targets = [t for t in TARGETS if t in result.r2]
    labels = [TARGETS[t].replace(" (", "<br>(") for t in targets]
    fig = go.Figure()
    for model, name in ((m, n) for m, n in MODELS.items() if m in result.r2[targets[0]]):
        values = [result.r2[t][model] for t in targets]
        degrees = [result.degree[t][model] for t in targets]
        fig.add_trace(go.Bar(x=labels, y=[max(v, R2_FLOOR) for v in values], name=name,
                             text=[f"{v:.2f}" for v in values], textposition="outside", cliponaxis=False,
                             marker_color=MODEL_COLORS[model], customdata=np.stack([values, degrees], axis=1),
                             hovertemplate=f"{name}<br>%{{x}}: R² %{{customdata[0]:.3f}}, degree in the contrast "
                                           f"%{{customdata[1]:.2f}}<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="black", width=1))
    fig.update_yaxes(range=[R2_FLOOR, 1.2], tickvals=[-0.5, 0, 0.5, 1])
    fig.update_layout(barmode="group", height=500, width=NOTEBOOK_WIDTH, margin=dict(t=90, b=150),
                      uniformtext=dict(minsize=10, mode="show"),
                      legend=dict(orientation="h", y=-0.22, yanchor="top", x=0))
    return finish_figure(fig, title or f"One layer, three targets: R² on held-out photo crops "
                                       f"({result.config.steps} steps each)",
                         "target, a function of each 3×3 patch X", "R² on the test crops (1: exact; 0: the mean)")


def higher_order_degree_table(result):
    """Each trained model's degree in the contrast (`contrast_degree`): rows the targets, columns the models,
    every degree written with two decimals ("1.00", not "1.0")."""
    import pandas as pd
    from ..experiments.higher_order import MODELS, TARGETS
    table = pd.DataFrame(result.degree).T                                   # (targets, models)
    table.index = [TARGETS[t] for t in table.index]
    table.columns = pd.Index([MODELS[m] for m in table.columns], name="degree in the contrast")
    return table.map(lambda degree: f"{degree:.2f}")


def higher_order_maps_figure(result, title: str | None = None) -> go.Figure:
    """One test region through every model: rows are the targets, columns the target itself and each
    model's output, each row on the target's colour range (white = the target's largest value)."""
    from ..experiments.higher_order import MODELS, TARGETS
    example = result.example
    targets = [t for t in TARGETS if t in example["targets"]]
    models = [m for m in MODELS if m in example["outputs"][targets[0]]]
    short = {"convolution": "convolution", "linear_predictor": "linear predictor",
             "released_predictor": "released predictor"}
    titles = [f"{TARGETS[t].split(' (')[0]}: target" if c == 0 else short[m]
              for t in targets for c, m in enumerate([None, *models])]
    fig = make_subplots(rows=len(targets), cols=1 + len(models), subplot_titles=titles,
                        horizontal_spacing=0.02, vertical_spacing=0.07)
    for row, target in enumerate(targets, start=1):
        truth = example["targets"][target]
        low, high = float(truth.min()), float(truth.max())
        maps = [truth, *(example["outputs"][target][m] for m in models)]
        for col, image in enumerate(maps, start=1):
            fig.add_trace(go.Heatmap(z=image, zmin=low, zmax=high, colorscale="gray", showscale=False,
                                     hovertemplate="pixel (%{y}, %{x}): %{z:.3f}<extra></extra>"), row, col)
    fig.update_yaxes(autorange="reversed", showticklabels=False, constrain="domain")
    fig.update_xaxes(showticklabels=False, constrain="domain")
    columns = 1 + len(models)
    for row in range(1, len(targets) + 1):
        for col in range(1, columns + 1):
            axis = (row - 1) * columns + col                                 # square pixels in every panel
            fig.update_yaxes(scaleanchor=f"x{axis}" if axis > 1 else "x", row=row, col=col)
    for row in range(1, len(targets) + 1):
        fig.update_yaxes(title_text="image row", row=row, col=1)
    for col in range(1, columns + 1):
        fig.update_xaxes(title_text="image column", row=len(targets), col=col)
    fig.update_layout(height=240 * len(targets) + 110, width=NOTEBOOK_WIDTH, margin=dict(t=110, l=60, r=20))
    size = example["image"].shape[0]
    return finish_figure(fig, title or f"What each layer computes on a {size}×{size} test region "
                                       f"(each row on its target's grey scale)")


__all__ = ["attention_map_figure", "dynamic_mask_figure", "effective_kernel_figure", "flow_trajectories_figure",
           "higher_order_degree_table", "higher_order_figure", "higher_order_maps_figure", "local_global_figure",
           "mask_positions", "mask_variability_figure", "nuclear_norm_figure", "residual_ode_error_figure",
           "residual_ode_maps_figure", "singular_values_figure", "static_mask_figure", "tap_maps_figure"]


ODE_COLORS = {"euler": "#1f77b4", "heun": "#d62728"}


def residual_ode_maps_figure(result, method: str = "euler", layers: tuple[int, int] | None = None,
                             title: str | None = None) -> go.Figure:
    """The input, the exact solution at t_end, and two stacks of `method`'s step layers (from
    `run_residual_ode`), by default the shallowest with Δt below the stability limit 1/4 and the
    deepest with Δt above it (if any). One grey scale, the input's, for every panel: a stack that blows
    up saturates it."""
    from ..experiments.residual_ode import METHODS, STABILITY_LIMIT
    if method not in result.outputs:
        raise ValueError(f"method must be one of {', '.join(map(repr, result.outputs))}, got {method!r}")
    depths = sorted(result.outputs[method])
    if layers is None:
        stable = [n for n in depths if result.steps[n] < STABILITY_LIMIT]
        unstable = [n for n in depths if result.steps[n] > STABILITY_LIMIT]
        layers = tuple(([stable[0]] if stable else []) + ([unstable[-1]] if unstable else []))
    missing = [n for n in layers if n not in result.outputs[method]]
    if missing:
        raise ValueError(f"layers {missing} were not run; the result has {depths}")
    t = result.config.t_end
    names = [f"{n} layers, Δt = {result.steps[n]:.3g}<br>" + ("above the limit 1/4" if result.steps[n] > STABILITY_LIMIT
                                                             else "below the limit 1/4") for n in layers]
    panels = [("input x(0)", result.image), (f"exact x({t:g})", result.exact)]
    panels += [(name, result.outputs[method][n]) for name, n in zip(names, layers)]
    low, high = float(result.image.min()), float(result.image.max())
    size = panel_size(len(panels), 240, 80)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[name for name, _ in panels],
                        horizontal_spacing=0.03)
    for col, (name, array) in enumerate(panels, start=1):
        fig.add_trace(go.Heatmap(z=array, colorscale="gray", zmin=low, zmax=high, showscale=False, name=name,
                                 hovertemplate="pixel (%{y}, %{x}): %{z:.3f}<extra></extra>"), 1, col)
        fig.update_xaxes(title_text="column", row=1, col=col)
        fig.update_yaxes(scaleanchor=f"x{col}" if col > 1 else "x", autorange="reversed", constrain="domain",
                         showticklabels=col == 1, row=1, col=col)
    fig.update_yaxes(title_text="row", row=1, col=1)
    fig.update_layout(width=NOTEBOOK_WIDTH, height=size + 230, margin=dict(t=170, l=60, r=20, b=50))
    return finish_figure(fig, title or f"Stacks of NSL layers integrate the heat equation dx/dt = Lx to t = {t:g}"
                                       f"<br>{METHODS[method]}<br>(each layer stores its own random kernel)")


def residual_ode_error_figure(result, title: str | None = None) -> go.Figure:
    """RMS error of every stack against the exact solution, over Δt on log axes, one line per method
    (from `run_residual_ode`), with the measured order of each in its legend entry and the stability
    limit Δt = 1/4 drawn."""
    from ..experiments.residual_ode import METHODS, STABILITY_LIMIT, convergence_order
    fig = go.Figure()
    for method, errors in result.errors.items():
        depths = sorted(errors, key=lambda n: result.steps[n])
        order = convergence_order(errors, result.steps)
        fig.add_trace(go.Scatter(x=[result.steps[n] for n in depths], y=[errors[n] for n in depths],
                                 mode="lines+markers", marker_color=ODE_COLORS.get(method), customdata=depths,
                                 name=f"{METHODS[method].split(': ')[0]}: order {order:.2f}",
                                 hovertemplate="%{customdata} layers, Δt = %{x:.3g}: RMS error %{y:.2e}"
                                               "<extra></extra>"))
    fig.add_vline(x=STABILITY_LIMIT, line=dict(color="grey", dash="dot"))
    fig.add_annotation(x=math.log10(STABILITY_LIMIT), y=0.02, yref="paper", xanchor="right", showarrow=False,
                       text="stability limit Δt = 1/4 ")                # a log axis places annotations by log10
    steps = sorted(result.steps.values())
    fig.update_xaxes(type="log", range=[math.log10(steps[0]) - 0.1, math.log10(steps[-1]) + 0.1],
                     tickvals=steps, ticktext=[f"{dt:.3g}" for dt in steps])   # every Δt run, written out
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_layout(width=NOTEBOOK_WIDTH, height=460, legend=dict(x=0.02, y=0.98))
    return finish_figure(fig, title or f"The error of the stack against the exact x({result.config.t_end:g}): "
                                       f"first order for Euler's layers, second for Heun's",
                         "step Δt = t / number of layers", "RMS error over the pixels")
