"""The boundary line and the regions of the spiral figures: marching squares and runs of cells on a grid."""
import numpy as np
import pytest

from nslviz.viz.isoline import cell_edges, isoline_segments, region_rectangles


def segments(x, y):
    return np.stack([x, y], axis=-1).reshape(-1, 3, 2)[:, :2]          # (segments, 2 ends, 2)


def test_circle_level_set_lies_on_the_circle_and_closes():
    axis = np.linspace(-1, 1, 41)
    xx, yy = np.meshgrid(axis, axis)
    x, y = isoline_segments(axis, axis, xx ** 2 + yy ** 2, level=0.3)      # no grid node on the circle
    assert len(x) % 3 == 0 and np.isnan(x[2::3]).all() and np.isnan(y[2::3]).all()   # NaN after every segment
    ends = segments(x, y)
    radius = np.hypot(ends[..., 0], ends[..., 1])
    assert np.abs(radius - 0.3 ** 0.5).max() < 0.01                           # on the circle, to the grid's accuracy
    # a closed curve: every end point is shared by exactly two segments
    _, counts = np.unique(np.round(ends.reshape(-1, 2), 9), axis=0, return_counts=True)
    assert (counts == 2).all()


def test_straight_boundary_and_no_boundary():
    axis = np.arange(5.0)
    xx, _ = np.meshgrid(axis, axis)
    x, y = isoline_segments(axis, axis, xx, level=1.5)                 # the vertical line x = 1.5
    ends = segments(x, y)
    assert len(ends) == 4 and np.allclose(ends[..., 0], 1.5)
    x, y = isoline_segments(axis, axis, np.zeros((5, 5)), level=0.5)
    assert x.size == 0 and y.size == 0


def test_saddle_cell_gets_two_segments_that_do_not_cross():
    z = np.array([[1.0, 0.0], [0.0, 1.0]])                             # opposite corners above 0.5
    x, y = isoline_segments(np.array([0.0, 1.0]), np.array([0.0, 1.0]), z + np.array([[0, 0], [0, 0.2]]), 0.5)
    ends = segments(x, y)
    assert len(ends) == 2
    # centre (0.55) above: the two corners below are cut off, each by a segment near it
    corners = {tuple(np.round(end.mean(0))) for end in ends}
    assert corners == {(1.0, 0.0), (0.0, 1.0)}


def test_grid_shape_is_checked():
    with pytest.raises(ValueError, match=r"z must have shape \(len\(y\), len\(x\)\) = \(3, 4\)"):
        isoline_segments(np.arange(4.0), np.arange(3.0), np.zeros((4, 3)))


def rectangles_of(corners_x, corners_y) -> np.ndarray:
    """(rectangles, 4) of [left, right, bottom, top], checking the 5-point layout (4 corners, then NaN)."""
    x, y = corners_x.reshape(-1, 5), corners_y.reshape(-1, 5)
    assert np.isnan(x[:, 4]).all() and np.isnan(y[:, 4]).all()
    np.testing.assert_array_equal(x[:, 0], x[:, 3]), np.testing.assert_array_equal(x[:, 1], x[:, 2])
    np.testing.assert_array_equal(y[:, 0], y[:, 1]), np.testing.assert_array_equal(y[:, 2], y[:, 3])
    return np.stack([x[:, 0], x[:, 1], y[:, 0], y[:, 2]], axis=1)


def test_region_rectangles_cover_exactly_the_cells_inside():
    """On an uneven grid and a random mask: every cell centre inside lies in exactly one rectangle, every
    other in none, the rectangles' area is the cells' area, and edges stand halfway between centres."""
    rng = np.random.default_rng(0)
    x, y = np.cumsum(rng.uniform(0.5, 2.0, 9)), np.cumsum(rng.uniform(0.5, 2.0, 7))
    inside = rng.random((7, 9)) > 0.5
    boxes = rectangles_of(*region_rectangles(x, y, inside))
    cx, cy = np.meshgrid(x, y)                                                      # (7, 9) cell centres
    holds = ((boxes[:, 0, None, None] < cx) & (cx < boxes[:, 1, None, None])
             & (boxes[:, 2, None, None] < cy) & (cy < boxes[:, 3, None, None]))    # (rectangles, 7, 9)
    np.testing.assert_array_equal(holds.sum(axis=0), inside.astype(int))
    edge_x, edge_y = cell_edges(x), cell_edges(y)
    np.testing.assert_allclose(edge_x[1:-1], (x[:-1] + x[1:]) / 2)
    np.testing.assert_allclose([edge_x[0], edge_x[-1]], [x[0] - (x[1] - x[0]) / 2, x[-1] + (x[-1] - x[-2]) / 2])
    cell_area = np.diff(edge_y)[:, None] * np.diff(edge_x)[None, :]
    area = ((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).sum()
    np.testing.assert_allclose(area, cell_area[inside].sum())
    assert len(boxes) == (np.diff(np.pad(inside, ((0, 0), (1, 0))).astype(int), axis=1) == 1).sum()   # one per run


def test_region_rectangles_of_empty_and_full_grids():
    axis = np.arange(4.0)
    x, y = region_rectangles(axis, axis, np.zeros((4, 4), bool))
    assert x.shape == y.shape == (0,)
    boxes = rectangles_of(*region_rectangles(axis, axis, np.ones((4, 4), bool)))   # one whole row each
    np.testing.assert_array_equal(boxes, [[-0.5, 3.5, i - 0.5, i + 0.5] for i in range(4)])
    with pytest.raises(ValueError, match=r"inside must have shape \(len\(y\), len\(x\)\) = \(3, 4\).*got \(4, 3\)"):
        region_rectangles(np.arange(4.0), np.arange(3.0), np.ones((4, 3), bool))
