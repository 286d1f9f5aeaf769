"""Tests for the synthetic stroke generator (generated data, never real handwriting)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from strokes.io import load
from strokes.synthetic import SYMBOLS, WriterStyle, generate, generate_ink, parse_spec

SMALL = dict(n_writers=3, samples_per_writer=2)


@pytest.fixture(scope="module")
def ds():
    return generate(**SMALL, seed=0)


# ------------------------------------------------------------------ symbols
def test_symbols_are_latex_labels():
    assert len(SYMBOLS) >= 30
    assert len(set(SYMBOLS)) == len(SYMBOLS)
    assert {"0", "9", "+", "=", "\\alpha", "\\int", "\\sum", "\\sqrt", "\\infty"} <= set(SYMBOLS)
    assert "alpha" not in SYMBOLS  # CROHME-style names carry the backslash


# ------------------------------------------------------------------ determinism
def test_same_seed_gives_identical_arrays(ds):
    again = generate(**SMALL, seed=0)
    assert again.xy.tobytes() == ds.xy.tobytes()
    assert again.t.tobytes() == ds.t.tobytes()
    assert np.array_equal(again.labels, ds.labels)
    assert again.label_names() == ds.label_names()
    assert np.array_equal(again.stroke_offsets, ds.stroke_offsets)
    assert again.writers() == ds.writers()
    assert again.fingerprint() == ds.fingerprint()


def test_different_seed_differs(ds):
    other = generate(**SMALL, seed=1)
    assert other.fingerprint() != ds.fingerprint()
    n = min(len(other.xy), len(ds.xy))
    assert not np.allclose(other.xy[:n], ds.xy[:n])


def test_global_rng_is_untouched():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    generate(n_writers=1, samples_per_writer=1, symbols=["+", "8"], seed=4)
    generate_ink("\\beta", np.random.default_rng(0))
    assert np.array_equal(np.random.get_state()[1], before)


def test_generate_ink_is_deterministic():
    a = generate_ink("\\theta", np.random.default_rng(7))
    b = generate_ink("\\theta", np.random.default_rng(7))
    assert len(a) == len(b)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b))


def test_writer_and_symbol_streams_do_not_depend_on_the_rest():
    # writer 0's samples of a symbol are the same whether or not other symbols or writers are asked for
    full = generate(n_writers=2, samples_per_writer=2, seed=3, symbols=["+", "\\pi"])
    part = generate(n_writers=1, samples_per_writer=2, seed=3, symbols=["\\pi"])
    mask = (np.array(full.label_names()) == "\\pi") & (np.array(full.writers()) == "synth-w00")
    assert full.subset(mask).xy.tobytes() == part.xy.tobytes()


# ------------------------------------------------------------------ contents
def test_counts_and_flags(ds):
    assert len(ds) == SMALL["n_writers"] * SMALL["samples_per_writer"] * len(SYMBOLS)
    assert ds.synthetic is True
    assert ds.vocab == sorted(SYMBOLS)
    assert sorted(set(ds.label_names())) == sorted(SYMBOLS)
    counts = np.bincount(ds.labels, minlength=len(ds.vocab))
    assert np.all(counts == SMALL["n_writers"] * SMALL["samples_per_writer"])
    assert ds.writer_names == [f"synth-w{w:02d}" for w in range(SMALL["n_writers"])]
    assert len(set(ds.writers())) == SMALL["n_writers"]
    assert ds.source_names == [f"synthetic/w{w:02d}" for w in range(SMALL["n_writers"])]
    assert ds.skipped == []


def test_info_and_name(ds):
    info = ds.info
    assert info["format"] == "synthetic"
    assert info["unit"] == "samples"
    assert info["records_in"] == len(ds) == info["loaded"]
    assert info["seed"] == 0
    assert info["skipped"] == 0
    assert ds.name.startswith("synthetic(") and "seed=0" in ds.name
    assert "synthetic" in repr(ds)


def test_points_are_finite_and_on_the_canvas(ds):
    assert ds.t is not None
    assert np.isfinite(ds.xy).all()
    assert np.isfinite(ds.t).all()
    assert ds.xy.min() >= 0 and ds.xy.max() <= 450
    assert ds.t.min() > 1e12  # epoch-like milliseconds


def test_points_per_stroke_are_realistic(ds):
    per_stroke = np.diff(ds.stroke_offsets)
    assert per_stroke.min() >= 10
    assert per_stroke.max() <= 60
    # no stroke collapses to a point
    for s in ds[:: max(1, len(ds) // 40)]:
        for stroke in s.strokes:
            assert np.ptp(stroke[:, :2], axis=0).max() > 1.0


def test_time_is_non_decreasing_within_each_sample(ds):
    po = ds.point_offsets
    dt = np.diff(ds.t)
    inside = np.ones(len(dt), dtype=bool)
    inside[po[1:-1] - 1] = False  # the step from one sample to the next
    assert (dt[inside] >= 0).all()
    # pen-up pauses: a stroke starts after the previous one ends
    starts = ds.stroke_offsets[1:-1]
    first_stroke = np.zeros(ds.num_strokes, dtype=bool)
    first_stroke[ds.sample_offsets[:-1]] = True
    later = starts[~first_stroke[1:]]
    assert (ds.t[later] > ds.t[later - 1]).all()


def test_each_writer_has_a_session_clock(ds):
    po = ds.point_offsets
    for w in range(len(ds.writer_names)):
        idx = np.flatnonzero(ds.writer_ids == w)
        assert (np.diff(ds.t[po[idx]]) > 0).all()


def test_symbol_subset():
    sub = generate(n_writers=2, samples_per_writer=3, symbols=["=", "\\int"], seed=5)
    assert len(sub) == 2 * 3 * 2
    assert sub.vocab == ["=", "\\int"]
    assert sorted(set(np.diff(sub.sample_offsets))) <= [1, 2]
    assert "symbols=2" in sub.name


def test_symbols_are_distinguishable():
    """A 1-NN on resampled, box-normalized shapes tells unseen writers' symbols apart."""
    data = generate(n_writers=4, samples_per_writer=2, seed=11)

    def features(sample, n=16):
        pts = np.concatenate([s[:, :2] for s in sample.strokes])
        pts = (pts - pts.min(axis=0)) / max(np.ptp(pts, axis=0).max(), 1e-9)
        cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
        q = np.linspace(0.0, cum[-1], n)
        return np.concatenate([np.interp(q, cum, pts[:, 0]), np.interp(q, cum, pts[:, 1])])

    X = np.stack([features(s) for s in data])
    test = data.writer_ids == 3
    d = ((X[test][:, None] - X[~test][None]) ** 2).sum(axis=-1)
    accuracy = (data.labels[~test][d.argmin(axis=1)] == data.labels[test]).mean()
    assert accuracy > 0.7  # chance is about 3%


# ------------------------------------------------------------------ generate_ink and WriterStyle
@pytest.mark.parametrize("symbol", SYMBOLS)
def test_generate_ink_every_symbol(symbol):
    rng = np.random.default_rng(SYMBOLS.index(symbol))
    ink = generate_ink(symbol, rng, WriterStyle(), t0=1.4e12)
    assert isinstance(ink, list) and ink
    for stroke in ink:
        assert stroke.ndim == 2 and stroke.shape[1] == 3
        assert 10 <= len(stroke) <= 60
        assert np.isfinite(stroke).all()
    t = np.concatenate([s[:, 2] for s in ink])
    assert t[0] == 1.4e12
    assert (np.diff(t) >= 0).all()


def test_writer_style():
    style = WriterStyle.sample(np.random.default_rng(0))
    assert style == WriterStyle.sample(np.random.default_rng(0))
    assert style != WriterStyle.sample(np.random.default_rng(1))
    assert style.speed > 0 and style.size_px > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        style.slant_deg = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="speed"):
        WriterStyle(speed=0.0)
    with pytest.raises(ValueError, match="consistency"):
        WriterStyle(consistency=1.5)
    with pytest.raises(TypeError, match="habit_seed"):
        WriterStyle(habit_seed=1.5)
    with pytest.raises(TypeError, match="Generator"):
        WriterStyle.sample(np.random.RandomState(0))


def test_generate_ink_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="valid symbols"):
        generate_ink("alpha", rng)
    with pytest.raises(TypeError, match="Generator"):
        generate_ink("+", 0)
    with pytest.raises(TypeError, match="WriterStyle"):
        generate_ink("+", rng, style={"slant_deg": 3})


# ------------------------------------------------------------------ argument checks
def test_unknown_symbol_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown symbols") as err:
        generate(n_writers=1, samples_per_writer=1, symbols=["+", "\\foo"])
    assert "\\alpha" in str(err.value) and "\\foo" in str(err.value)


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(n_writers=0), ValueError),
        (dict(samples_per_writer=-1), ValueError),
        (dict(seed=-1), ValueError),
        (dict(n_writers=2.0), TypeError),
        (dict(seed=True), TypeError),
        (dict(symbols="+"), TypeError),
        (dict(symbols=[]), ValueError),
        (dict(symbols=["+", "+"]), ValueError),
        (dict(symbols=[1]), TypeError),
    ],
)
def test_generate_rejects_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        generate(**{"n_writers": 1, "samples_per_writer": 1, **kwargs})


def test_unused_options_are_ignored():
    ds = generate(n_writers=1, samples_per_writer=1, symbols=["-"], limit=5, max_points=10, progress=False)
    assert len(ds) == 1


# ------------------------------------------------------------------ parse_spec and load
@pytest.mark.parametrize(
    "spec, expected",
    [
        ("synthetic", {}),
        ("synthetic:", {}),
        ("synthetic:writers=4,samples=2,seed=3", {"n_writers": 4, "samples_per_writer": 2, "seed": 3}),
        ("synthetic: seed = 9 ", {"seed": 9}),
        ("synthetic:samples=1", {"samples_per_writer": 1}),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(
    "spec, match",
    [
        ("synthetic:writer=4", "valid keys: writers, samples, seed"),
        ("synthetic:writers=four", "not an integer"),
        ("synthetic:writers=", "needs a value"),
        ("synthetic:seed=1,seed=2", "twice"),
        ("inkml:writers=1", "not a synthetic source"),
    ],
)
def test_parse_spec_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(spec)


def test_parse_spec_type_error():
    with pytest.raises(TypeError):
        parse_spec(None)  # type: ignore[arg-type]


def test_load_synthetic_source():
    ds = load("synthetic:writers=2,samples=1")
    assert ds.synthetic is True
    assert len(ds) == 2 * 1 * len(SYMBOLS)
    assert ds.info["format"] == "synthetic"
    assert len(ds.writer_names) == 2
    same = load("synthetic:writers=2,samples=1,seed=0", progress=False)
    assert same.fingerprint() == ds.fingerprint()
