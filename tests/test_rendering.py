"""Rendering: properties of the rasterizer, checked against a slow reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rendering import CHANNELS, RenderConfig, rasterize, rasterize_batch, rasterize_torch
from strokes import normalize
from strategies import (
    channel_sets,
    render_options,
    scales,
    spread_inks,
    translations,
    unit_inks,
    wild_inks,
)

ALL_CHANNELS = ("ink", "order", "stroke", "direction")
AA_TOL = 1e-5  # anti-aliased values: float32 kernel vs float64 reference
EDGE_TOL = 1e-4  # hard lines: pixels this close (in pixels) to the threshold may go either way
SHORT = 0.05  # pixels: order and direction values along shorter segments are not compared
FEW = settings(max_examples=60, deadline=None)


# -- helpers -------------------------------------------------------------------


def _stroke_indices(ink: np.ndarray) -> list[np.ndarray]:
    """Point indices of each stroke: pen_up == 1 ends one, and so does the last point."""
    ends = sorted(set(np.flatnonzero(ink[:, 2] > 0.5).tolist()) | {len(ink) - 1})
    starts = [0] + [e + 1 for e in ends[:-1]]
    return [np.arange(s, e + 1) for s, e in zip(starts, ends)]


def _split(ink: np.ndarray) -> list[np.ndarray]:
    """The strokes of a points-3 ink as (n, 2) arrays."""
    return [ink[idx, :2] for idx in _stroke_indices(ink)]


def _join(strokes: list[np.ndarray]) -> np.ndarray:
    """points-3 from (n, 2) strokes: pen_up == 1 on the last point of each."""
    parts = [np.column_stack([s, np.r_[np.zeros(len(s) - 1), 1.0]]) for s in strokes]
    return np.concatenate(parts).astype(np.float32)


def _render(ink, opts: dict, **extra) -> np.ndarray:
    """The ink plane of one ink, (size, size)."""
    return rasterize(ink, **opts, **extra)[0, 0]


def _pad(inks: list[np.ndarray], fill: float) -> tuple[np.ndarray, np.ndarray]:
    """(B, T, 3) padded with ``fill`` beyond each length, and the (B,) lengths."""
    t = max([len(a) for a in inks] + [1])
    out = np.full((len(inks), t, 3), fill, dtype=np.float32)
    for i, a in enumerate(inks):
        out[i, : len(a)] = a
    return out, np.array([len(a) for a in inks], dtype=np.int64)


def _ragged(inks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(P, 3) float32 points and (N + 1,) offsets."""
    offsets = np.r_[0, np.cumsum([len(a) for a in inks])].astype(np.int64)
    points = np.concatenate(inks).astype(np.float32) if inks else np.zeros((0, 3), np.float32)
    return points, offsets


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return torch.cuda.is_available()


# -- the slow, obviously correct reference rasterizer ---------------------------


def _reference_segments(ink: np.ndarray, size: int):
    """Every segment as (a, b, values at a, values at b), in float64 pixel units.

    A one-point stroke is the zero-length segment (p, p). ``values`` hold, per
    point, the order value k/n, the stroke value j/m and the two direction
    values of the segment (0.5 for zero-length ones).
    """
    ink = np.asarray(ink, dtype=np.float32)
    # scaled in float32 like the kernel (exact for power-of-two sizes), then float64
    xy = (ink[:, :2] * np.float32(size)).astype(np.float64)
    strokes = _stroke_indices(ink)
    n, m = len(ink), len(strokes)
    out = []
    for j, idx in enumerate(strokes, start=1):
        pairs = [(idx[0], idx[0])] if len(idx) == 1 else list(zip(idx[:-1], idx[1:]))
        for i, k in pairs:
            a, b = xy[i], xy[k]
            d = b - a
            length = math.hypot(d[0], d[1])
            direction = (d / length + 1) / 2 if length > 0 else np.array([0.5, 0.5])
            va = {"order": (i + 1) / n, "stroke": j / m, "dx": direction[0], "dy": direction[1]}
            vb = {"order": (k + 1) / n, "stroke": j / m, "dx": direction[0], "dy": direction[1]}
            out.append((a, b, va, vb))
    return out


def _centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres (x, y), each (size, size), indexed [row, col]."""
    c = np.arange(size) + 0.5
    return np.meshgrid(c, c)


def _nearest_u(ex, ey, vx, vy):
    """Parameter u in [0, 1] of the point a + u v nearest (Euclidean) to a + e."""
    l2 = vx * vx + vy * vy
    if l2 == 0:
        return np.zeros_like(ex)
    return np.clip((ex * vx + ey * vy) / l2, 0.0, 1.0)


def _linf_distance(ex, ey, vx, vy):
    """min over u in [0, 1] of max(|ex - u vx|, |ey - u vy|), exactly.

    The function is convex and piecewise linear in u, so its minimum lies at
    u = 0, u = 1 or a kink: where one of the two terms vanishes or where they
    are equal (ex - u vx = +-(ey - u vy)).
    """
    candidates = [np.zeros_like(ex), np.ones_like(ex)]
    for num, den in ((ex, vx), (ey, vy), (ex - ey, vx - vy), (ex + ey, vx + vy)):
        if den != 0:
            candidates.append(np.clip(num / den, 0.0, 1.0))
    return np.min([np.maximum(np.abs(ex - u * vx), np.abs(ey - u * vy)) for u in candidates], axis=0)


def _plane_values(channels) -> list[str | None]:
    """The value key of each output plane (None: plain ink)."""
    keys = {"ink": [None], "order": ["order"], "stroke": ["stroke"], "direction": ["dx", "dy"]}
    return [k for c in channels for k in keys[c]]


def reference_rasterize(ink, size, thickness=1.0, antialias=True, channels=("ink",)) -> np.ndarray:
    """(C, size, size) float64: every pixel centre against every segment.

    Anti-aliased coverage is clip(t/2 + 0.5 - d, 0, 1) with d the Euclidean
    distance; hard coverage is 1 where the max-norm distance is <= t/2. Every
    plane is the max over segments of coverage * value, the value interpolated
    at the nearest point of the segment.
    """
    cx, cy = _centres(size)
    planes = _plane_values(channels)
    out = np.zeros((len(planes), size, size))
    for a, b, va, vb in _reference_segments(ink, size):
        ex, ey, vx, vy = cx - a[0], cy - a[1], b[0] - a[0], b[1] - a[1]
        u = _nearest_u(ex, ey, vx, vy)
        if antialias:
            d = np.hypot(ex - u * vx, ey - u * vy)
            cover = np.clip(thickness / 2 + 0.5 - d, 0.0, 1.0)
        else:
            cover = (_linf_distance(ex, ey, vx, vy) <= thickness / 2).astype(float)
        for p, key in enumerate(planes):
            value = 1.0 if key is None else va[key] + u * (vb[key] - va[key])
            out[p] = np.maximum(out[p], cover * value)
    return out


def distance_to_ink(ink, size) -> np.ndarray:
    """(size, size) float64 Euclidean distance (pixels) from each pixel centre to the ink."""
    cx, cy = _centres(size)
    best = np.full((size, size), np.inf)
    for a, b, _, _ in _reference_segments(ink, size):
        ex, ey, vx, vy = cx - a[0], cy - a[1], b[0] - a[0], b[1] - a[1]
        u = _nearest_u(ex, ey, vx, vy)
        best = np.minimum(best, np.hypot(ex - u * vx, ey - u * vy))
    return best


def hard_edge(ink, size, thickness, tol=EDGE_TOL) -> np.ndarray:
    """(size, size) bool: pixels whose max-norm distance to some segment is within
    ``tol`` of thickness / 2, where float32 rounding may decide a hard pixel."""
    cx, cy = _centres(size)
    near = np.zeros((size, size), dtype=bool)
    for a, b, _, _ in _reference_segments(ink, size):
        d = _linf_distance(cx - a[0], cy - a[1], b[0] - a[0], b[1] - a[1])
        near |= np.abs(d - thickness / 2) <= tol
    return near


def near_short_segments(ink, size, thickness, short=SHORT) -> np.ndarray:
    """(size, size) bool: pixels a segment of length in (0, ``short``) pixels can reach.

    The value of order and direction along such a segment is ill-conditioned
    in float32 (the kernel's projection parameter has an error ~1e-7 / length;
    below ~1e-19 pixel the squared length underflows and the segment is drawn
    as a dot, direction 0.5), so those planes are not compared there.
    """
    cx, cy = _centres(size)
    near = np.zeros((size, size), dtype=bool)
    for a, b, _, _ in _reference_segments(ink, size):
        length = math.hypot(*(b - a))
        if 0 < length < short:
            near |= np.hypot(cx - a[0], cy - a[1]) < thickness / 2 + 0.5 + short
    return near


def assert_matches_reference(got, ink, size, thickness, antialias, channels=("ink",), atol=AA_TOL):
    """got (C, size, size) equals the reference within atol; hard lines may differ
    only on the threshold (hard_edge); value planes are not compared next to
    segments shorter than SHORT (near_short_segments)."""
    want = reference_rasterize(ink, size, thickness, antialias, channels)
    skip = np.zeros(want.shape, dtype=bool)
    values = [key is not None for key in _plane_values(channels)]
    if any(values):
        skip[values] = near_short_segments(ink, size, thickness)
    if not antialias:
        skip |= hard_edge(ink, size, thickness)[None]
    bad = (np.abs(got - want) > atol) & ~skip
    where = [tuple(int(v) for v in i) for i in np.argwhere(bad)[:5]]
    got_, want_ = [round(float(got[i]), 6) for i in where], [round(float(want[i]), 6) for i in where]
    assert not bad.any(), f"(plane, row, col) {where}: got {got_}, want {want_}"


# -- 1. shape, dtype, range ----------------------------------------------------


@FEW
@given(st.lists(unit_inks(), min_size=1, max_size=3), render_options(), channel_sets())
def test_shape_dtype_and_range(inks, opts, channels):
    """Shape (N, C, size, size), dtype float32 and values in [0, 1], degenerate ink included."""
    out = rasterize(inks, **opts, channels=channels)
    n_planes = sum(CHANNELS[c] for c in channels)
    assert out.shape == (len(inks), n_planes, opts["size"], opts["size"])
    assert out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(
    "ink",
    [
        [[0.53125, 0.53125, 1]],  # one point, on a pixel centre at size 16
        [[0.28125, 0.28125, 0], [0.28125, 0.28125, 0], [0.28125, 0.28125, 1]],  # identical points
        [[0.40625, 0.1, 0], [0.40625, 0.9, 1]],  # zero-width vertical line
        [[0.1, 0.65625, 0], [0.9, 0.65625, 1]],  # zero-height horizontal line
    ],
    ids=["one-point", "identical", "vertical", "horizontal"],
)
@pytest.mark.parametrize("antialias", [True, False])
def test_degenerate_ink_is_drawn(ink, antialias):
    """Degenerate ink renders with the right shape and matches the reference."""
    ink = np.array(ink, dtype=np.float32)
    out = rasterize(ink, 16, antialias=antialias, channels=ALL_CHANNELS)
    assert out.shape == (1, 5, 16, 16) and out.dtype == np.float32
    assert out[0, 0].max() == 1.0  # the pixel under the ink is fully covered
    assert_matches_reference(out[0], ink, 16, 1.0, antialias, ALL_CHANNELS)


def test_no_inks_gives_an_empty_batch():
    """An empty list of inks gives an (0, C, size, size) array."""
    assert rasterize([], 8, channels=("ink", "direction")).shape == (0, 3, 8, 8)


# -- 2. determinism ------------------------------------------------------------


@FEW
@given(st.lists(st.one_of(unit_inks(), wild_inks()), min_size=1, max_size=3), render_options(), channel_sets())
def test_deterministic(inks, opts, channels):
    """Two calls give identical arrays."""
    a = rasterize(inks, **opts, channels=channels)
    b = rasterize([ink.copy() for ink in inks], **opts, channels=channels)
    np.testing.assert_array_equal(a, b)


# -- 3. batch == one by one ----------------------------------------------------


@FEW
@given(st.lists(st.one_of(unit_inks(), wild_inks()), min_size=1, max_size=4), render_options(), channel_sets())
def test_batch_equals_one_by_one(inks, opts, channels):
    """Rendering a batch (list or ragged arrays) equals rendering each ink alone, exactly."""
    alone = np.concatenate([rasterize(ink, **opts, channels=channels) for ink in inks])
    np.testing.assert_array_equal(rasterize(inks, **opts, channels=channels), alone)
    # ragged, with an empty sample between every two: blank images there
    with_gaps = [x for ink in inks for x in (ink, np.zeros((0, 3), np.float32))]
    points, offsets = _ragged(with_gaps)
    out = rasterize_batch(points, offsets, **opts, channels=channels)
    np.testing.assert_array_equal(out[0::2], alone)
    assert not out[1::2].any()


# -- 4. numpy == torch ---------------------------------------------------------


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not _cuda_available(), reason="no CUDA device"))],
)
@settings(max_examples=40, deadline=None)
@given(inks=st.lists(st.one_of(unit_inks(), wild_inks()), min_size=1, max_size=4), opts=render_options())
def test_torch_matches_numpy(device, inks, opts):
    """The numpy and torch backends agree within 1e-5 (ragged and padded input, all channels)."""
    torch = pytest.importorskip("torch")
    want = rasterize(inks, **opts, channels=ALL_CHANNELS)
    points, offsets = _ragged(inks)
    ragged = rasterize_torch(
        torch.from_numpy(points).to(device), torch.from_numpy(offsets).to(device), **opts, channels=ALL_CHANNELS
    )
    assert ragged.device.type == device and ragged.dtype == torch.float32
    np.testing.assert_allclose(ragged.cpu().numpy(), want, atol=1e-5, rtol=0)
    padded, lengths = _pad(inks, fill=np.nan)  # rows past a sample's length are ignored
    out = rasterize_torch(
        torch.from_numpy(padded).to(device), lengths=torch.from_numpy(lengths), **opts, channels=ALL_CHANNELS
    )
    np.testing.assert_allclose(out.cpu().numpy(), want, atol=1e-5, rtol=0)


# -- 5. every point is inked ---------------------------------------------------


@FEW
@given(unit_inks(), render_options())
@example(np.array([[0.5, 0.5, 0], [0.1, 0.9, 1]], np.float32), dict(size=16, thickness=1.0, antialias=False))
def test_every_point_lies_on_ink(ink, opts):
    """Every input point in [0, 1) inks the pixel that holds it."""
    # Regression test: a hard line of thickness 1 leaving a point on a pixel corner
    # towards the lower left, here (8, 8) pixels to (1.6, 14.4), used to leave the
    # pixel that holds the point, (row 8, col 8), blank. Its max-norm distance is
    # exactly 0.5 = t/2, so it must be inked; the float32 separating-axis test
    # |ux*vy - uy*vx| <= r(|vx| + |vy|) decided the tie by rounding.
    img = _render(ink, opts)
    size = np.float32(opts["size"])
    cols = np.floor(ink[:, 0] * size).astype(int)  # float32 like the kernel (exact: size is 2^k)
    rows = np.floor(ink[:, 1] * size).astype(int)
    blank = img[rows, cols] == 0
    assert not blank.any(), f"points {ink[blank, :2].tolist()} leave {np.c_[rows, cols][blank].tolist()} blank"


# -- 6. no ink far from the polyline -------------------------------------------


@FEW
@given(st.one_of(unit_inks(), wild_inks()), render_options())
def test_no_ink_far_from_the_polyline(ink, opts):
    """No pixel farther than thickness + 1 pixels from the polyline receives ink."""
    img = _render(ink, opts)
    far = distance_to_ink(ink, opts["size"]) > opts["thickness"] + 1
    assert not img[far].any()


# -- 7. direction and stroke order do not matter -------------------------------


@FEW
@given(unit_inks(), render_options(), st.data())
def test_invariant_to_reversing_and_permuting_strokes(ink, opts, data):
    """The ink plane is exactly invariant to reversing strokes and permuting their order."""
    strokes = _split(ink)
    flip = data.draw(st.lists(st.booleans(), min_size=len(strokes), max_size=len(strokes)))
    order = data.draw(st.permutations(range(len(strokes))))
    moved = _join([strokes[i][::-1] if flip[i] else strokes[i] for i in order])
    np.testing.assert_array_equal(_render(moved, opts), _render(ink, opts))


# -- 8. mirror symmetry --------------------------------------------------------


@FEW
@given(unit_inks(), render_options(), st.sampled_from([0, 1]))
def test_mirroring_ink_mirrors_the_image(ink, opts, axis):
    """Mirroring x (or y) as 1 - x equals flipping the image left-right (or upside down)."""
    mirrored = ink.copy()
    mirrored[:, axis] = 1 - ink[:, axis].astype(np.float64)  # rounds to float32: <= 6e-8
    got = _render(mirrored, opts)
    want = np.flip(_render(ink, opts), axis=1 - axis)  # x -> columns (axis 1), y -> rows
    if opts["antialias"]:
        # float32: the kernel computes different roundings for the two; 1e-4 is far above them
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    else:
        edge = np.flip(hard_edge(ink, opts["size"], opts["thickness"]), axis=1 - axis)
        bad = (got != want) & ~edge
        assert not bad.any(), np.argwhere(bad)[:5].tolist()


# -- 9. monotonicity -----------------------------------------------------------


@FEW
@given(unit_inks(), st.one_of(unit_inks(), wild_inks()), render_options())
def test_adding_a_stroke_never_darkens(ink, extra, opts):
    """Adding strokes never lowers any pixel of the ink plane."""
    before = _render(ink, opts)
    after = _render(np.concatenate([ink, extra]), opts)
    assert (after >= before).all()


@FEW
@given(st.one_of(unit_inks(), wild_inks()), render_options(), st.floats(1, 4))
def test_thicker_lines_never_darken(ink, opts, other):
    """A larger thickness never lowers any pixel of the ink plane."""
    thin, thick = sorted([opts["thickness"], other])
    a = _render(ink, {**opts, "thickness": thin})
    b = _render(ink, {**opts, "thickness": thick})
    assert (b >= a).all()


# -- 10. normalization makes rendering invariant to translation and scale ------


@FEW
@given(spread_inks(), translations, scales, render_options())
def test_normalized_rendering_invariant_to_translation_and_scale(ink, shift, scale, opts):
    """Normalize-then-render is unchanged by translating or uniformly scaling the raw ink."""
    moved = [np.column_stack([s[:, 0] * scale + shift[0], s[:, 1] * scale + shift[1]]) for s in ink]
    a, b = normalize(ink), normalize(moved)
    ra, rb = _render(a, opts), _render(b, opts)
    # normalization works in float64 and rounds once to float32, so the two normalized
    # inks may differ by a float32 ulp (~6e-8 of the square, ~2e-6 pixel): 1e-3 is ample
    if opts["antialias"]:
        np.testing.assert_allclose(ra, rb, atol=1e-3, rtol=0)
    else:  # only pixels right on the threshold may flip
        edge = hard_edge(a, opts["size"], opts["thickness"], tol=1e-3)
        bad = (ra != rb) & ~edge
        assert not bad.any(), np.argwhere(bad)[:5].tolist()


# -- 11. coordinates outside the square ----------------------------------------


@FEW
@given(st.lists(wild_inks(), min_size=1, max_size=3), render_options(), channel_sets())
def test_outside_coordinates_are_safe(inks, opts, channels):
    """Coordinates far outside the square (up to 1e6) render without error, within [0, 1]."""
    out = rasterize(inks, **opts, channels=channels)
    assert out.shape[0] == len(inks) and np.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


@FEW
@given(wild_inks(huge=False), render_options(sizes=(12, 16)))
def test_outside_coordinates_match_reference(ink, opts):
    """Ink outside the square is clipped like the reference: nothing shifted or wrapped around."""
    got = rasterize(ink, **opts, channels=ALL_CHANNELS)[0]
    assert_matches_reference(got, ink, opts["size"], opts["thickness"], opts["antialias"], ALL_CHANNELS)


@FEW
@given(wild_inks(), render_options(sizes=(12, 16)))
@example(np.array([[-1e6, 1e6, 0], [3.1, -1.4, 1]], np.float32), dict(size=8, thickness=1.0, antialias=True))
def test_far_coordinates_match_reference(ink, opts):
    """A segment from a far point (1e6) into view is drawn where it lies, like the reference."""
    # Regression test: the kernel used to clip in float32 from the far end
    # (a + t0 * v with |a| = 1e6 * size), which cancels catastrophically: the
    # clipped line landed up to ~0.5 pixel off. The example: pixel (6, 7) was 1.0,
    # the reference 0.717; (7, 7) was 0.293, the reference 0.010. The error grew
    # with the far coordinate: ~3e-4 at 1e3, 2e-3 at 1e4, 2e-2 at 1e5, 0.28 at 1e6.
    got = rasterize(ink, **opts, channels=ALL_CHANNELS)[0]
    assert_matches_reference(got, ink, opts["size"], opts["thickness"], opts["antialias"], ALL_CHANNELS, atol=1e-3)


@FEW
@given(wild_inks(), render_options(), st.sampled_from(["left", "right", "above", "below"]))
def test_ink_beside_the_image_is_blank(ink, opts, side):
    """Ink wholly beyond one edge of the image, by more than its reach, leaves it blank."""
    margin = (opts["thickness"] / 2 + 0.5) / opts["size"]  # half a pixel more than a line can reach
    xy = ink[:, :2].astype(np.float64)
    axis = 0 if side in ("left", "right") else 1
    if side in ("left", "above"):
        xy[:, axis] = -margin - np.abs(xy[:, axis])
    else:
        xy[:, axis] = 1 + margin + np.abs(xy[:, axis])
    beside = np.column_stack([xy, ink[:, 2]]).astype(np.float32)
    assert not rasterize(beside, **opts, channels=ALL_CHANNELS).any()


def test_hard_lines_just_thinner_than_an_integer():
    """A hard line of thickness just below an integer renders like the reference, cheaply."""
    # Regression test: for hard lines window_geometry used to give pieces of length
    # floor(t) + 1 - t, which goes to 0 as t approaches an integer from below, so
    # the number of pieces was unbounded: t = 1.9999 was ~100x slower than t = 2,
    # and t = nextafter(2, 0) asked np.repeat for ~3e16 pieces (MemoryError,
    # "231 PiB"). Anti-aliased lines were not affected.
    ink = np.array([[0.05, 0.5, 0], [0.95, 0.5, 1]], np.float32)
    thickness = float(np.nextafter(2.0, 0.0))
    got = rasterize(ink, 8, thickness=thickness, antialias=False)[0]
    assert_matches_reference(got, ink, 8, thickness, False)


# -- the reference ---------------------------------------------------------------


@FEW
@given(unit_inks(), render_options(sizes=(12, 16)), channel_sets())
def test_matches_reference_rasterizer(ink, opts, channels):
    """rasterize equals the slow float64 reference (hard lines: except on the threshold)."""
    got = rasterize(ink, **opts, channels=channels)[0]
    assert_matches_reference(got, ink, opts["size"], opts["thickness"], opts["antialias"], channels)


def test_reference_hard_lines_are_supercover():
    """The reference itself: a hard 1-pixel diagonal inks exactly the cells it crosses, corners included."""
    ink = np.array([[0.0, 0.0, 0], [0.5, 0.5, 1]], np.float32)
    img = reference_rasterize(ink, 4, 1.0, False)[0]
    want = np.zeros((4, 4))
    want[[0, 0, 1, 1, 1, 2, 2], [0, 1, 0, 1, 2, 1, 2]] = 1  # centre at L-inf distance 0.5 also counts
    np.testing.assert_array_equal(img, want)


# -- channels ------------------------------------------------------------------


@pytest.mark.parametrize("left_to_right", [True, False])
def test_order_channel_is_brighter_at_the_end(left_to_right):
    """The order channel rises along a straight stroke, whichever way it is drawn."""
    x = np.linspace(0.1, 0.9, 9)
    x = x if left_to_right else x[::-1]
    ink = _join([np.column_stack([x, np.full(9, 0.53)])])
    order = rasterize(ink, 16, channels=("order",))[0, 0]
    row = order[8]  # y = 0.53 -> row 8
    start, end = (2, 14) if left_to_right else (14, 2)
    assert row[end] > row[start]
    assert row[end] > 0.8 and row[start] < 0.3


def test_stroke_channel_values():
    """In a two-stroke ink, stroke values are 1/2 and 2/2 where coverage is 1."""
    ink = _join([np.array([[0.1, 0.28125], [0.9, 0.28125]]), np.array([[0.1, 0.78125], [0.9, 0.78125]])])
    out = rasterize(ink, 16, channels=("ink", "stroke"))[0]
    full = out[0] == 1.0
    assert full[4].any() and full[12].any()
    np.testing.assert_allclose(out[1][4][full[4]], 0.5, atol=1e-6)
    np.testing.assert_allclose(out[1][12][full[12]], 1.0, atol=1e-6)


@pytest.mark.parametrize("antialias", [True, False])
def test_direction_channel_of_a_horizontal_line(antialias):
    """A left-to-right line has direction (1, 0.5) times coverage; right-to-left (0, 0.5)."""
    ink = np.array([[0.1, 0.53, 0], [0.9, 0.53, 1]], np.float32)
    out = rasterize(ink, 16, antialias=antialias, channels=("ink", "direction"))[0]
    np.testing.assert_allclose(out[1], out[0], atol=1e-6)
    np.testing.assert_allclose(out[2], 0.5 * out[0], atol=1e-6)
    back = rasterize(_join([ink[::-1, :2]]), 16, antialias=antialias, channels=("direction",))[0]
    np.testing.assert_allclose(back[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(back[1], 0.5 * out[0], atol=1e-6)


def test_last_point_ends_the_stroke_without_pen_up():
    """pen_up == 0 on the last point gives the same image as pen_up == 1."""
    ink = np.array([[0.1, 0.2, 0], [0.7, 0.8, 1], [0.3, 0.9, 0], [0.9, 0.1, 1]], np.float32)
    sloppy = ink.copy()
    sloppy[-1, 2] = 0
    np.testing.assert_array_equal(
        rasterize(sloppy, 16, channels=ALL_CHANNELS), rasterize(ink, 16, channels=ALL_CHANNELS)
    )


# -- errors and config ---------------------------------------------------------

INK = np.array([[0.2, 0.2, 0], [0.8, 0.8, 1]], np.float32)


@pytest.mark.parametrize("thickness", [0.5, 17.0])
def test_bad_thickness(thickness):
    """A thickness outside [1, size] raises ValueError."""
    with pytest.raises(ValueError, match="thickness"):
        rasterize(INK, 16, thickness=thickness)


def test_unknown_channel_lists_valid_ones():
    """An unknown channel raises ValueError naming it and every valid channel."""
    with pytest.raises(ValueError, match="colour") as err:
        rasterize(INK, 16, channels=("ink", "colour"))
    for name in CHANNELS:
        assert name in str(err.value)


@pytest.mark.parametrize(
    "inks",
    [
        pytest.param(np.zeros((3, 2)), id="two-columns"),
        pytest.param(np.zeros((0, 3)), id="empty"),
        pytest.param([np.zeros((2, 4))], id="four-columns"),
        pytest.param([np.zeros(3)], id="1-d-in-list"),
        # regression test: an array neither 2-D nor 3-D used to raise TypeError
        # "... or a sequence of them (see strokes.normalize), got ndarray", not a ValueError on its shape
        pytest.param(np.zeros(3), id="1-d"),
        pytest.param(np.zeros((2, 3, 3, 1)), id="4-d"),
    ],
)
def test_wrong_shape(inks):
    """An array of the wrong shape raises ValueError."""
    with pytest.raises(ValueError):
        rasterize(inks, 16)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_coordinates(bad):
    """A NaN or infinite coordinate raises ValueError."""
    ink = INK.copy()
    ink[1, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        rasterize(ink, 16)


@pytest.mark.parametrize("inks", ["ink", b"ink", 42, None])
def test_not_an_array(inks):
    """A str, bytes or other non-sequence raises TypeError."""
    with pytest.raises(TypeError):
        rasterize(inks, 16)


@pytest.mark.parametrize(
    "offsets", [np.array([0, 1]), np.array([1, 2]), np.array([0, 2, 1, 2]), np.array([0.0, 2.0])]
)
def test_bad_offsets(offsets):
    """Offsets that do not rise from 0 to len(points), or are not integers, raise ValueError."""
    with pytest.raises(ValueError, match="offsets"):
        rasterize_batch(INK, offsets, 16)


def test_options_and_config_do_not_mix():
    """config= with other options, or an unknown option, raises TypeError."""
    with pytest.raises(TypeError):
        rasterize(INK, config=RenderConfig(), thickness=2.0)
    with pytest.raises(TypeError):
        rasterize(INK, 16, colour="red")


def test_config_round_trip():
    """RenderConfig survives to_config -> JSON -> from_config, and renders the same."""
    cfg = RenderConfig(size=16, thickness=2.5, antialias=False, channels=("stroke", "ink"))
    back = RenderConfig.from_config(json.loads(json.dumps(cfg.to_config())))
    assert back == cfg and back.n_planes == 2
    np.testing.assert_array_equal(
        rasterize(INK, config=back), rasterize(INK, 16, thickness=2.5, antialias=False, channels=("stroke", "ink"))
    )


@pytest.mark.parametrize(
    "config,error",
    [
        ({"size": 16, "blur": 1}, ValueError),
        ({"size": 0}, ValueError),
        ({"size": 16.0}, TypeError),
        ({"size": True}, TypeError),
        ({"thickness": "2"}, TypeError),
        ({"channels": []}, ValueError),
        ({"channels": ["ink", "ink"]}, ValueError),
    ],
)
def test_bad_config(config, error):
    """Invalid RenderConfig fields raise ValueError or TypeError."""
    with pytest.raises(error):
        RenderConfig.from_config(config)


def test_config_is_frozen():
    """RenderConfig is immutable."""
    with pytest.raises(AttributeError):
        RenderConfig().size = 8  # type: ignore[misc]
