"""The boundary line of the spiral figures: marching squares on a grid."""
import numpy as np
import pytest

from nslviz.viz.isoline import isoline_segments


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
