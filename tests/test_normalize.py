"""Normalization: properties, degenerate input, the steps and the pipeline config."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strokes import Pipeline, default_pipeline, normalize
from strokes.normalize import Dedup, PenBatch, Resample, Smooth, UnitSquare
from strategies import inks, scales, spread_inks, translations

TOL = 2e-5


def _bbox(pts):
    return pts[:, :2].min(axis=0), pts[:, :2].max(axis=0)


@given(inks())
def test_output_shape_dtype_and_range(ink):
    """Output is float32 (n, 3), finite, inside the unit square, ending with pen_up."""
    out = normalize(ink)
    assert out.dtype == np.float32 and out.ndim == 2 and out.shape[1] == 3
    assert np.isfinite(out).all()
    assert out[:, :2].min() >= -TOL and out[:, :2].max() <= 1 + TOL
    assert out[-1, 2] == 1 and set(np.unique(out[:, 2])) <= {0.0, 1.0}


@given(inks())
def test_idempotent(ink):
    """Normalizing normalized ink changes nothing."""
    once = normalize(ink)
    twice = normalize(once)
    np.testing.assert_allclose(twice, once, atol=TOL)


@given(spread_inks(), translations, scales)
def test_invariant_to_translation_and_uniform_scale(ink, shift, scale):
    """Translating or uniformly scaling the raw ink leaves the output unchanged."""
    moved = [np.column_stack([s[:, 0] * scale + shift[0], s[:, 1] * scale + shift[1]]) for s in ink]
    a, b = normalize(ink), normalize(moved)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-4)


@given(spread_inks())
def test_aspect_ratio_kept(ink):
    """Width/height of the output equals that of the input; the longer side fills 1 - 2*margin."""
    pts = np.concatenate(ink)
    w, h = np.ptp(pts[:, 0]), np.ptp(pts[:, 1])
    out = normalize(ink, margin=0.1)
    ow, oh = np.ptp(out[:, 0]), np.ptp(out[:, 1])
    assert max(ow, oh) == pytest.approx(0.8, abs=1e-4)
    assert ow * max(w, h) == pytest.approx(w * max(ow, oh), abs=1e-3 * max(w, h) + 1e-9)
    assert oh * max(w, h) == pytest.approx(h * max(ow, oh), abs=1e-3 * max(w, h) + 1e-9)


@given(inks())
def test_centred(ink):
    """The bounding box is centred on (0.5, 0.5)."""
    lo, hi = _bbox(normalize(ink))
    np.testing.assert_allclose((lo + hi) / 2, [0.5, 0.5], atol=1e-4)


@given(inks())
def test_input_is_not_modified(ink):
    """Steps are pure: the caller's arrays are untouched."""
    copies = [s.copy() for s in ink]
    normalize(ink, n_points=16, smooth=1)
    for a, b in zip(ink, copies):
        np.testing.assert_array_equal(a, b)


def test_flip_y():
    ink = [np.array([[0.0, 0.0], [0.0, 10.0]])]
    down, up = normalize(ink), normalize(ink, flip_y=True)
    assert down[0, 1] < down[1, 1] and up[0, 1] > up[1, 1]


@pytest.mark.parametrize(
    "ink,expect",
    [
        ([np.array([[3.0, 4.0]])], [[0.5, 0.5, 1]]),  # a single point lands at the centre
        ([np.array([[3.0, 4.0]] * 5)], [[0.5, 0.5, 1]]),  # identical points: deduplicated
        ([np.array([[2.0, 0.0], [2.0, 10.0]])], [[0.5, 0.05, 0], [0.5, 0.95, 1]]),  # zero-width |
        ([np.array([[0.0, 7.0], [10.0, 7.0]])], [[0.05, 0.5, 0], [0.95, 0.5, 1]]),  # zero-height -
    ],
)
def test_degenerate_input_is_finite_and_sensible(ink, expect):
    np.testing.assert_allclose(normalize(ink), expect, atol=1e-6)


def test_identical_points_without_dedup_stay_at_centre():
    out = normalize([np.array([[1.0, 1.0]] * 3)], dedup=False)
    np.testing.assert_allclose(out[:, :2], 0.5)


def test_dedup_removes_consecutive_duplicates_only_within_strokes():
    ink = [np.array([[0, 0], [0, 0], [1, 1], [1, 1]], float), np.array([[1, 1], [2, 2]], float)]
    out = normalize(ink, margin=0)
    np.testing.assert_allclose(out, [[0, 0, 0], [0.5, 0.5, 1], [0.5, 0.5, 0], [1, 1, 1]])


@given(inks(max_strokes=4), st.integers(1, 64))
def test_resample_n_points(ink, n):
    """Resampling to n points gives max(n, strokes) points and keeps stroke ends."""
    base = normalize(ink)
    out = normalize(ink, n_points=n)
    k = int(base[:, 2].sum())
    assert len(out) == max(n, k)
    assert int(out[:, 2].sum()) == k
    starts_b = np.r_[0, np.flatnonzero(base[:-1, 2]) + 1]
    starts_o = np.r_[0, np.flatnonzero(out[:-1, 2]) + 1]
    np.testing.assert_allclose(out[starts_o, :2], base[starts_b, :2], atol=1e-5)
    ends_o, ends_b = np.flatnonzero(out[:, 2]), np.flatnonzero(base[:, 2])
    two = (ends_o - starts_o) >= 1  # strokes that kept two or more points keep their end too
    np.testing.assert_allclose(out[ends_o[two], :2], base[ends_b[two], :2], atol=1e-5)
    lengths = np.array([np.hypot(*np.diff(s[:, :2], axis=0).T).sum() for s in np.split(base, ends_b[:-1] + 1)])
    if n >= np.where(lengths > 0, 2, 1).sum():
        assert two[lengths > 0].all()


def test_resample_spacing_gives_even_steps():
    ink = [np.array([[0.0, 0.0], [10.0, 0.0]])]
    out = normalize(ink, margin=0, spacing=0.1)
    assert len(out) == 11
    np.testing.assert_allclose(np.diff(out[:, 0]), 0.1, atol=1e-6)
    bent = normalize([np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])], margin=0, spacing=0.25)
    steps = np.hypot(*np.diff(bent[:, :2], axis=0).T)
    assert len(bent) == 9
    assert steps.max() <= 0.25 + 1e-6


def test_smooth_keeps_ends_and_reduces_zigzag():
    x = np.linspace(0, 1, 21)
    y = np.where(np.arange(21) % 2, 0.1, 0.0)
    pts = np.column_stack([x, y, np.r_[np.zeros(20), 1]]).astype(np.float32)
    out = Smooth(iterations=2)(PenBatch(pts, np.array([0, 21]))).data
    np.testing.assert_allclose(out[[0, -1]], pts[[0, -1]])
    assert np.abs(np.diff(out[:, 1])).max() < np.abs(np.diff(pts[:, 1])).max() / 2
    # through normalize: still fills the square up to the margin
    norm = normalize([pts[:, :2]], smooth=2, margin=0.05)
    assert np.ptp(norm[:, 0]) == pytest.approx(0.9, abs=1e-5)


def test_batch_equals_one_by_one(tiny):
    pipe = default_pipeline(n_points=20, smooth=1)
    batch = pipe.apply_dataset(tiny)
    assert len(batch) == len(tiny)
    for i in (0, 7, len(tiny) - 1):
        np.testing.assert_allclose(batch[i], pipe.apply(tiny[i].strokes), atol=1e-5)


def test_pipeline_config_round_trips_through_json():
    pipe = Pipeline((Dedup(), UnitSquare(margin=0.1, flip_y=True), Resample(n_points=32), Smooth(iterations=2)))
    config = json.loads(json.dumps(pipe.to_config()))
    assert Pipeline.from_config(config) == pipe
    assert repr(pipe) == (
        "Pipeline(Dedup(), UnitSquare(margin=0.1, flip_y=True), "
        "Resample(spacing=None, n_points=32), Smooth(iterations=2))"
    )


@pytest.mark.parametrize(
    "config,message",
    [
        ([{"step": "blur"}], "unknown normalization step 'blur'"),
        ([{"step": "resample", "points": 3}], "no option"),
        ([{"step": "resample"}], "exactly one"),
        ([{"step": "unit_square", "margin": 0.7}], "margin"),
    ],
)
def test_bad_pipeline_config(config, message):
    with pytest.raises(ValueError, match=message):
        Pipeline.from_config(config)


def test_steps_are_immutable():
    step = UnitSquare()
    with pytest.raises(AttributeError):
        step.margin = 0.2  # type: ignore[misc]


@settings(max_examples=30)
@given(inks(max_strokes=3, max_points=10))
def test_penbatch_from_points3_round_trip(ink):
    """PenBatch.to_list inverts PenBatch.from_points3."""
    arrays = [normalize(ink), normalize(ink, n_points=5)]
    back = PenBatch.from_points3(arrays).to_list()
    for a, b in zip(arrays, back):
        np.testing.assert_array_equal(a, b)


def _strokes_of(points3: np.ndarray) -> list[np.ndarray]:
    """Split a points-3 array into its strokes (pen_up closes a stroke)."""
    ends = np.flatnonzero(points3[:, 2] > 0.5)
    return [s for s in np.split(points3[:, :2], ends[:-1] + 1) if len(s)]


@given(inks(max_strokes=5), st.one_of(st.none(), st.integers(1, 64)), st.integers(0, 2))
def test_stroke_count_is_preserved(ink, n, smooth):
    """Every normalization (dedup, resample, smooth) keeps the number of strokes the ink was drawn with."""
    out = normalize(ink, n_points=n, smooth=smooth)
    assert int(out[:, 2].sum()) == len(ink)
    assert out[-1, 2] == 1  # the last point closes the last stroke


def _distance_to_polyline(p: np.ndarray, line: np.ndarray) -> float:
    """Euclidean distance from point ``p`` (2,) to the polyline ``line`` (m, 2)."""
    if len(line) == 1:
        return float(np.hypot(*(p - line[0])))
    a, b = line[:-1], line[1:]  # (m - 1, 2) segments
    ab = b - a
    denom = np.maximum((ab**2).sum(1), 1e-30)
    t = np.clip(((p - a) * ab).sum(1) / denom, 0.0, 1.0)[:, None]
    return float(np.hypot(*(a + t * ab - p).T).min())


@given(inks(max_strokes=4), st.integers(1, 64))
def test_resampled_points_lie_on_the_original_polyline(ink, n):
    """Resampling only moves along the ink: every new point lies on its own stroke's original polyline."""
    base = normalize(ink)  # unit square and dedup, no resampling
    out = normalize(ink, n_points=n)
    before, after = _strokes_of(base), _strokes_of(out)
    assert len(before) == len(after)
    for old, new in zip(before, after):
        scale = max(1.0, float(np.abs(old).max()))
        for p in new:
            assert _distance_to_polyline(p.astype(np.float64), old.astype(np.float64)) <= 1e-5 * scale
