"""Hypothesis strategies for ink, shared by every property test."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

coords = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def strokes(draw, min_points=1, max_points=30, with_t=False):
    """One stroke: an (n, 2) float array, or (n, 3) with increasing t."""
    n = draw(st.integers(min_points, max_points))
    xy = draw(arrays(np.float64, (n, 2), elements=coords))
    if not with_t:
        return xy
    dt = draw(arrays(np.float64, (n,), elements=st.floats(0, 50, allow_nan=False)))
    return np.column_stack([xy, 1.4e12 + np.cumsum(dt)])


@st.composite
def inks(draw, max_strokes=5, max_points=30, with_t=None):
    """Raw ink: a list of 1..max_strokes strokes (all with t, or none)."""
    t = draw(st.booleans()) if with_t is None else with_t
    k = draw(st.integers(1, max_strokes))
    return [draw(strokes(max_points=max_points, with_t=t)) for _ in range(k)]


@st.composite
def spread_inks(draw, max_strokes=4, max_points=20):
    """Ink whose points are not all identical (a non-degenerate bounding box)."""
    ink = draw(inks(max_strokes=max_strokes, max_points=max_points, with_t=False))
    pts = np.concatenate(ink)
    if np.ptp(pts, axis=0).max() < 1e-2:
        ink = ink + [pts[:1] + np.array([[1.0, 0.5]])]
    return ink


@st.composite
def points3(draw, max_strokes=5, max_points=30):
    """A points-3 array [x, y, pen_up] with pen_up == 1 ending every stroke."""
    ink = draw(inks(max_strokes=max_strokes, max_points=max_points, with_t=False))
    from strokes.formats import ink_to_points3

    return ink_to_points3(ink, dtype=np.float64)


translations = st.tuples(
    st.floats(-1e3, 1e3, allow_nan=False), st.floats(-1e3, 1e3, allow_nan=False)
)
scales = st.floats(0.01, 100, allow_nan=False)
