"""Stroke-format conversions come in inverse pairs: each is tested as a round trip."""

import numpy as np
import pytest
from hypothesis import given

from strokes import formats as F
from strategies import inks, points3


@given(inks())
def test_ink_points3_round_trip(ink):
    """points3_to_ink inverts ink_to_points3 (x, y kept; t dropped)."""
    back = F.points3_to_ink(F.ink_to_points3(ink, dtype=np.float64))
    assert len(back) == len(ink)
    for a, b in zip(ink, back):
        np.testing.assert_array_equal(a[:, :2], b)


@given(points3())
def test_points3_stroke3_round_trip(pts):
    """stroke3_to_points3 inverts points3_to_stroke3."""
    back = F.stroke3_to_points3(F.points3_to_stroke3(pts))
    np.testing.assert_allclose(back, pts, rtol=1e-9, atol=1e-6)


@given(points3())
def test_stroke3_stroke5_round_trip(pts):
    """stroke5_to_stroke3 inverts stroke3_to_stroke5 exactly."""
    s3 = F.points3_to_stroke3(pts)
    s5 = F.stroke3_to_stroke5(s3)
    assert s5.shape == (len(s3) + 1, 5)
    np.testing.assert_array_equal(s5[:, 2:].sum(axis=1), 1)  # one-hot pen state
    np.testing.assert_array_equal(F.stroke5_to_stroke3(s5), s3)


@given(inks())
def test_ragged_round_trip(ink):
    """ragged_to_ink inverts ink_to_ragged (float32 x, y)."""
    xy, off = F.ink_to_ragged(ink)
    assert off[0] == 0 and off[-1] == len(xy) and xy.dtype == np.float32
    back = F.ragged_to_ink(xy, off)
    for a, b in zip(ink, back):
        np.testing.assert_array_equal(a[:, :2].astype(np.float32), b)


def test_points3_marks_stroke_ends():
    pts = F.ink_to_points3([np.zeros((3, 2)), np.ones((1, 2))])
    np.testing.assert_array_equal(pts[:, 2], [0, 0, 1, 1])


def test_stroke3_first_row_is_offset_from_origin():
    s3 = F.points3_to_stroke3(np.array([[2.0, 3.0, 0], [5.0, 7.0, 1]]))
    np.testing.assert_array_equal(s3, [[2, 3, 0], [3, 4, 1]])


def test_conversions_do_not_modify_input():
    pts = np.array([[0.0, 0.0, 0], [1.0, 1.0, 1]])
    copy = pts.copy()
    F.points3_to_stroke3(pts)
    F.stroke3_to_points3(pts)
    np.testing.assert_array_equal(pts, copy)


@pytest.mark.parametrize(
    "func,arg",
    [
        (F.points3_to_ink, np.zeros((0, 3))),
        (F.points3_to_stroke3, np.zeros((4, 2))),
        (F.stroke5_to_stroke3, np.zeros((3, 3))),
        (F.stroke5_to_stroke3, np.array([[0, 0, 0, 0, 1.0]])),
        (F.ragged_to_ink, None),
    ],
)
def test_bad_shapes_raise_value_error(func, arg):
    with pytest.raises(ValueError):
        if arg is None:
            func(np.zeros((3, 2)), np.array([0, 2]))
        else:
            func(arg)
