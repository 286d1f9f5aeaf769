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


# -- rendering ---------------------------------------------------------------

# x or y of normalized ink: any float32 in [0, 1), or a multiple of 1/64, which
# lies on a pixel edge or centre for every size in {8, 16, 32} (boundary cases)
unit_coords = st.one_of(
    st.floats(0, 1, exclude_max=True, width=32),
    st.integers(0, 63).map(lambda k: k / 64),
)


def _as_points3(xy: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """float32 [x, y, pen_up] with pen_up == 1 on the last point of every stroke."""
    pen = np.asarray(ends, dtype=bool).copy()
    pen[-1] = True
    return np.column_stack([xy, pen]).astype(np.float32)


@st.composite
def unit_inks(draw, max_points=12):
    """Normalized points-3 ink (float32, coordinates in [0, 1)), degenerate ones included.

    Kinds: random strokes; the output of strokes.normalize on raw ink; one point;
    all-identical points (in one or several strokes); a zero-width vertical or
    zero-height horizontal set of collinear strokes.
    """
    kind = draw(st.sampled_from(["random", "normalized", "one_point", "identical", "vertical", "horizontal"]))
    if kind == "normalized":
        from strokes import normalize

        return normalize(draw(inks(max_strokes=3, max_points=max_points // 3 + 1, with_t=False)))
    n = 1 if kind == "one_point" else draw(st.integers(1, max_points))
    xy = draw(arrays(np.float64, (n, 2), elements=unit_coords))
    ends = draw(arrays(np.bool_, (n,), elements=st.booleans()))
    if kind == "identical":
        xy[:] = xy[0]
    elif kind == "vertical":
        xy[:, 0] = xy[0, 0]
    elif kind == "horizontal":
        xy[:, 1] = xy[0, 1]
    return _as_points3(xy, ends)


@st.composite
def _wild_coord(draw, huge: bool):
    """A float32 coordinate in [-5, 6], or with ``huge`` one time in ten -1e6 or 1e6."""
    if huge and draw(st.integers(0, 9)) == 0:  # one coordinate in ten is far away
        return draw(st.sampled_from([-1e6, 1e6]))
    return draw(st.floats(-5, 6, width=32))


@st.composite
def wild_inks(draw, max_points=8, huge=True):
    """Points-3 ink (float32) with coordinates far outside the unit square: in [-5, 6],
    and with ``huge`` about one coordinate in ten at -1e6 or 1e6."""
    n = draw(st.integers(1, max_points))
    xy = draw(arrays(np.float64, (n, 2), elements=_wild_coord(huge)))
    ends = draw(arrays(np.bool_, (n,), elements=st.booleans()))
    return _as_points3(xy, ends)


@st.composite
def render_options(draw, sizes=(8, 16, 32)):
    """Keyword options for rendering.rasterize: size, thickness in [1, 4] pixels, antialias."""
    size = draw(st.sampled_from(sizes))
    antialias = draw(st.booleans())
    thickness = draw(st.one_of(st.floats(1, 4), st.sampled_from([1.0, 2.0, float(np.nextafter(2, 0)), 2.9999])))
    return {"size": size, "thickness": thickness, "antialias": antialias}


def channel_sets():
    """A non-empty tuple of distinct rendering channels, in any order."""
    from rendering import CHANNELS

    return st.lists(st.sampled_from(sorted(CHANNELS)), min_size=1, max_size=len(CHANNELS), unique=True).map(tuple)
