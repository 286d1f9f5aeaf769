"""Robustness probes: each changes raw ink exactly as documented, is a no-op where it should be, and is seeded."""

from __future__ import annotations

import numpy as np
import pytest

from strokes.probes import DEFAULT_PROBES, PROBES, apply_probe, parse_probes
from strokes.synthetic import generate


@pytest.fixture(scope="module")
def ds():
    return generate(n_writers=3, samples_per_writer=1, seed=2)


def _strokes(d, i):
    return [np.asarray(s[:, :2], np.float64) for s in d[i].strokes]


def _centre(d, i):
    xy = np.concatenate(_strokes(d, i))
    return (xy.min(0) + xy.max(0)) / 2


@pytest.mark.parametrize("name", DEFAULT_PROBES)
def test_every_probe_keeps_samples_labels_and_writers(ds, name):
    """A probe changes ink only: same number of samples, labels, writers, sources and vocabulary."""
    out = apply_probe(ds, name, seed=1)
    assert len(out) == len(ds) and out.vocab == ds.vocab
    assert np.array_equal(out.labels, ds.labels) and np.array_equal(out.writer_ids, ds.writer_ids)
    assert np.array_equal(out.source_ids, ds.source_ids) and out.info["probe"] == name
    assert np.isfinite(out.xy).all()
    assert (out.t is None) == (ds.t is None) and (out.t is None or len(out.t) == len(out.xy))


def test_reversed_reverses_each_stroke_and_twice_is_identity(ds):
    """Every stroke is drawn from its end; reversing twice gives the ink back."""
    out = apply_probe(ds, "reversed")
    for i in range(0, len(ds), 7):
        for a, b in zip(_strokes(ds, i), _strokes(out, i)):
            np.testing.assert_array_equal(b, a[::-1])
    np.testing.assert_array_equal(apply_probe(out, "reversed").xy, ds.xy)


def test_stroke_order_permutes_whole_strokes_and_is_seeded(ds):
    """Each sample keeps its strokes, in a seeded random order; one-stroke samples are unchanged."""
    a, b, c = (apply_probe(ds, "stroke-order", seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.xy, b.xy)
    moved = 0
    for i in range(len(ds)):
        before = sorted(map(lambda s: s.tobytes(), _strokes(ds, i)))
        assert sorted(map(lambda s: s.tobytes(), _strokes(a, i))) == before
        moved += any(x.tobytes() != y.tobytes() for x, y in zip(_strokes(ds, i), _strokes(a, i)))
        if len(ds[i].strokes) == 1:
            np.testing.assert_array_equal(_strokes(a, i)[0], _strokes(ds, i)[0])
    assert moved > 0 and not np.array_equal(a.xy, c.xy)


@pytest.mark.parametrize("name, degrees", [("rotate-20", -20), ("rotate-10", -10), ("rotate+10", 10), ("rotate+20", 20)])
def test_rotation_turns_the_ink_about_its_centre(ds, name, degrees):
    """Rotation keeps every distance and turns every vector from the centre by the angle."""
    out = apply_probe(ds, name)
    for i in range(0, len(ds), 5):
        c = _centre(ds, i)
        v0 = np.concatenate(_strokes(ds, i)) - c
        v1 = np.concatenate(_strokes(out, i)) - c
        np.testing.assert_allclose(np.hypot(*v1.T), np.hypot(*v0.T), rtol=1e-4, atol=1e-3)
        far = np.hypot(*v0.T) > 1e-2 * max(1.0, np.abs(v0).max())
        turn = np.degrees(np.arctan2(v1[far, 1], v1[far, 0]) - np.arctan2(v0[far, 1], v0[far, 0]))
        np.testing.assert_allclose((turn + 180) % 360 - 180, degrees, atol=0.05)


def test_slant_and_aspect_move_x_only(ds):
    """slant adds 0.3 (y - centre y) to x; aspect stretches x by 1.5 about the centre; y never moves."""
    slant, aspect = apply_probe(ds, "slant"), apply_probe(ds, "aspect")
    for i in range(0, len(ds), 5):
        c = _centre(ds, i)
        xy = np.concatenate(_strokes(ds, i))
        s, a = np.concatenate(_strokes(slant, i)), np.concatenate(_strokes(aspect, i))
        tol = 1e-5 * max(1.0, np.abs(xy).max())
        np.testing.assert_allclose(s[:, 1], xy[:, 1], atol=tol)
        np.testing.assert_allclose(s[:, 0], xy[:, 0] + 0.3 * (xy[:, 1] - c[1]), atol=tol)
        np.testing.assert_allclose(a[:, 1], xy[:, 1], atol=tol)
        np.testing.assert_allclose(a[:, 0] - c[0], 1.5 * (xy[:, 0] - c[0]), atol=tol)


def test_flip_y_mirrors_and_twice_is_identity(ds):
    """flip-y mirrors y about the centre, leaves x, and undoes itself."""
    out = apply_probe(ds, "flip-y")
    assert PROBES["flip-y"].informational
    i = 3
    c = _centre(ds, i)
    xy, f = np.concatenate(_strokes(ds, i)), np.concatenate(_strokes(out, i))
    np.testing.assert_allclose(f[:, 0], xy[:, 0], atol=1e-4)
    np.testing.assert_allclose(f[:, 1] - c[1], c[1] - xy[:, 1], atol=1e-4)
    np.testing.assert_allclose(apply_probe(out, "flip-y").xy, ds.xy, atol=1e-4)


@pytest.mark.parametrize("k", [2, 3])
def test_sparse_keeps_every_kth_point_and_the_stroke_ends(ds, k):
    """sparse-k keeps points 0, k, 2k, ... of each stroke and its last point, in order; one-point strokes stay."""
    out = apply_probe(ds, f"sparse-{k}")
    for i in range(0, len(ds), 3):
        for a, b in zip(_strokes(ds, i), _strokes(out, i)):
            want = sorted(set(range(0, len(a), k)) | {len(a) - 1})
            np.testing.assert_array_equal(b, a[want])
    assert len(out.xy) < len(ds.xy)


def test_dense_interpolates_three_points_per_segment(ds):
    """dense-4 turns a stroke of n points into 4(n - 1) + 1, the originals every 4th, the others on the segments."""
    out = apply_probe(ds, "dense-4")
    for i in range(0, len(ds), 3):
        for a, b in zip(_strokes(ds, i), _strokes(out, i)):
            assert len(b) == 4 * (len(a) - 1) + 1
            np.testing.assert_allclose(b[::4], a, atol=1e-4)
            if len(a) > 1:
                np.testing.assert_allclose(b[1:-1:4], 0.75 * a[:-1] + 0.25 * a[1:], atol=1e-3)
    if ds.t is not None:
        assert (np.diff(out.t[out.stroke_offsets[0] : out.stroke_offsets[1]]) >= 0).all()


def test_jitter_is_seeded_and_one_percent_of_the_size(ds):
    """jitter adds noise of about 1% of each ink's size, the same for the same seed."""
    a, b, c = (apply_probe(ds, "jitter", seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.xy, b.xy)
    assert not np.array_equal(a.xy, c.xy)
    rel = []
    for i in range(len(ds)):
        xy = np.concatenate(_strokes(ds, i))
        size = (xy.max(0) - xy.min(0)).max()
        rel.append((np.concatenate(_strokes(a, i)) - xy) / size)
    assert np.concatenate(rel).std() == pytest.approx(0.01, rel=0.15)


def test_last_stroke_missing_drops_one_stroke_and_leaves_single_strokes(ds):
    """The last stroke goes from samples of two or more strokes; one-stroke samples are untouched."""
    out = apply_probe(ds, "last-stroke-missing")
    for i in range(len(ds)):
        before, after = _strokes(ds, i), _strokes(out, i)
        if len(before) == 1:
            np.testing.assert_array_equal(after[0], before[0])
        else:
            assert len(after) == len(before) - 1
            for a, b in zip(before, after):
                np.testing.assert_array_equal(a, b)


def test_parse_probes():
    """all/none/lists parse; unknown names are refused with the valid ones listed."""
    assert parse_probes("all") == DEFAULT_PROBES == parse_probes(None)
    assert parse_probes("none") == ()
    assert parse_probes("jitter, reversed,jitter") == ("jitter", "reversed")
    with pytest.raises(ValueError, match="unknown probe.*valid: all, none"):
        parse_probes("upside-down")
    with pytest.raises(TypeError):
        apply_probe([1, 2], "reversed")
