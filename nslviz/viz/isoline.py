"""The level set {z = level} of a function sampled on a grid, as line segments (marching squares),
and the cells on one side of it as filled rectangles.

A plotly contour trace computes its lines in the browser on every redraw, which is slow inside an
animation (a frame took over a second to draw); these segments are computed once, in numpy, and
drawn as a plain line trace, which the browser draws in milliseconds.
"""
from __future__ import annotations

import numpy as np


def isoline_segments(x: np.ndarray, y: np.ndarray, z: np.ndarray, level: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Marching squares: the segments of {z = level} for z sampled at (x[j], y[i]), z of shape (len(y), len(x)).

    In every grid cell whose corners are not all on one side of `level`, the line crosses each edge
    with a sign change at the linearly interpolated point t = (level - z_a) / (z_b - z_a) between
    its end corners a and b. A cell with two crossings holds one segment; a saddle cell (four
    crossings, opposite corners on the same side) holds two, paired by the value at the cell's
    centre (the mean of its corners). Returns x and y of the segments' end points, each segment
    followed by a NaN so that a plotly line trace draws them unconnected: shape (3 × segments,).
    """
    x, y, z = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(z, np.float64)
    if z.shape != (len(y), len(x)) or min(z.shape) < 2:
        raise ValueError(f"z must have shape (len(y), len(x)) = ({len(y)}, {len(x)}) with both at least 2; "
                         f"got {z.shape}")
    above = z > level                                                           # (Gy, Gx)
    z00, z01, z10, z11 = z[:-1, :-1], z[:-1, 1:], z[1:, :-1], z[1:, 1:]          # (Gy-1, Gx-1) corners
    a00, a01, a10, a11 = above[:-1, :-1], above[:-1, 1:], above[1:, :-1], above[1:, 1:]
    x0, x1 = np.broadcast_to(x[:-1], z00.shape), np.broadcast_to(x[1:], z00.shape)
    y0, y1 = np.broadcast_to(y[:-1, None], z00.shape), np.broadcast_to(y[1:, None], z00.shape)

    def crossing(za, zb):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.clip((level - za) / (zb - za), 0.0, 1.0)

    # the four edges of every cell: bottom (y0), top (y1), left (x0), right (x1); (Gy-1, Gx-1) each
    edges = {
        "bottom": (a00 != a01, x0 + crossing(z00, z01) * (x1 - x0), y0),
        "top": (a10 != a11, x0 + crossing(z10, z11) * (x1 - x0), y1),
        "left": (a00 != a10, x0, y0 + crossing(z00, z10) * (y1 - y0)),
        "right": (a01 != a11, x1, y0 + crossing(z01, z11) * (y1 - y0)),
    }
    cut = {name: edge[0] for name, edge in edges.items()}
    count = sum(c.astype(np.int8) for c in cut.values())
    saddle = count == 4
    centre_above = (z00 + z01 + z10 + z11) / 4 > level
    # pairs of crossed edges joined by a segment; the saddle's two pairings depend on the centre:
    # the centre on the side of the bottom-left corner keeps that corner's region connected to it
    pairs = [("bottom", "top"), ("left", "right"), ("bottom", "left"), ("bottom", "right"),
             ("top", "left"), ("top", "right")]
    starts, ends = [], []
    for first, second in pairs:
        both = cut[first] & cut[second]
        joined = both & ~saddle & (count == 2)
        if (first, second) in (("bottom", "right"), ("top", "left")):
            joined = joined | (saddle & (centre_above == a00))       # bottom-left region cut off by both
        if (first, second) in (("bottom", "left"), ("top", "right")):
            joined = joined | (saddle & (centre_above != a00))
        starts.append(np.stack([edges[first][1][joined], edges[first][2][joined]], axis=-1))
        ends.append(np.stack([edges[second][1][joined], edges[second][2][joined]], axis=-1))
    start, end = np.concatenate(starts), np.concatenate(ends)                   # (segments, 2)
    points = np.stack([start, end, np.full_like(start, np.nan)], axis=1).reshape(-1, 2)   # (3 segments, 2)
    return points[:, 0], points[:, 1]


def cell_edges(centres: np.ndarray) -> np.ndarray:
    """The edges of the cells centred on `centres` (G,), each reaching halfway to its neighbours and the
    end cells as far out as in: shape (G + 1,)."""
    centres = np.asarray(centres, np.float64)
    middle = (centres[:-1] + centres[1:]) / 2
    return np.concatenate([[2 * centres[0] - middle[0]], middle, [2 * centres[-1] - middle[-1]]])


def region_rectangles(x: np.ndarray, y: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grid cells where `inside` holds, as filled rectangles: each row's runs of consecutive cells.

    Cell (i, j) is centred on (x[j], y[i]) and reaches halfway to its neighbours (a heatmap's cells);
    a run of cells j0 .. j1 - 1 in row i is the rectangle [e_x[j0], e_x[j1]] × [e_y[i], e_y[i + 1]]
    between the cell edges e. inside of shape (len(y), len(x)), bool. Returns x and y of the
    rectangles' corners, each rectangle followed by a NaN, so that a plotly trace with fill="toself"
    fills each one: shape (5 × rectangles,). A scatter trace where a heatmap would stand keeps an
    animation's regions on screen: plotly.js removes a heatmap while a frame's scatter traces move.
    """
    inside = np.asarray(inside, bool)
    if inside.shape != (len(y), len(x)) or min(inside.shape) < 2:
        raise ValueError(f"inside must have shape (len(y), len(x)) = ({len(y)}, {len(x)}) with both at least 2; "
                         f"got {inside.shape}")

    edge_x, edge_y = cell_edges(x), cell_edges(y)
    padded = np.pad(inside, ((0, 0), (1, 1))).astype(np.int8)                  # (Gy, Gx + 2)
    step = np.diff(padded, axis=1)                                               # (Gy, Gx + 1): +1 run start, -1 run end
    row, start = np.nonzero(step == 1)                                          # (runs,) each, row-major order
    _, stop = np.nonzero(step == -1)                                            # the same runs' exclusive ends
    left, right, bottom, top = edge_x[start], edge_x[stop], edge_y[row], edge_y[row + 1]
    nan = np.full_like(left, np.nan)
    corners_x = np.stack([left, right, right, left, nan], axis=1).reshape(-1)  # (5 runs,)
    corners_y = np.stack([bottom, bottom, top, top, nan], axis=1).reshape(-1)
    return corners_x, corners_y
