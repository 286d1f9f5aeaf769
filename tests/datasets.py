"""Small hand-made datasets and comparisons shared by the I/O tests."""

from __future__ import annotations

import numpy as np

from strokes.dataset import DatasetBuilder, StrokeDataset

T0 = 1400702665265.0


def small_dataset(*, with_t: bool = True, repeat_label: bool = False) -> StrokeDataset:
    """Five samples covering t / no t, negative and fractional values, escaped labels."""
    b = DatasetBuilder(name="small")
    b.add([np.array([[0, 0, T0], [1, 2, T0 + 16], [2, 4, T0 + 33]]), np.array([[5, 5, T0 + 100]])], r"\alpha")
    b.add([np.array([[1.5, -2.25], [3.125, 4]])], "(")
    b.add([np.array([[10.5, 20.25, 0.5], [11, 21, 1.25]])], r"\{")
    b.add([np.array([[-7, 8]]), np.array([[9, -10]]), np.array([[0.1, 0.2], [0.3, 0.7]])], "-")
    b.add([np.array([[123.456, 789.012, T0], [100, 100, T0 + 1]])], r"\_")
    if repeat_label:
        b.add([np.array([[3, 3], [4, 4]])], r"\alpha")
    ds = b.build()
    if not with_t:
        ds = StrokeDataset(ds.xy, ds.stroke_offsets, ds.sample_offsets, ds.labels, ds.vocab)
    return ds


def assert_same_data(a: StrokeDataset, b: StrokeDataset) -> None:
    """Same points, structure, labels, vocabulary and timestamps (NaN equal to NaN)."""
    np.testing.assert_array_equal(a.xy, b.xy)
    assert b.xy.dtype == np.float32
    np.testing.assert_array_equal(a.stroke_offsets, b.stroke_offsets)
    np.testing.assert_array_equal(a.sample_offsets, b.sample_offsets)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.vocab == b.vocab
    assert a.label_names() == b.label_names()
    if a.t is None:
        assert b.t is None
    else:
        assert b.t is not None
        np.testing.assert_array_equal(a.t, b.t)


def star(rng, n: int = 10) -> list[np.ndarray]:
    """A pentagram in one stroke, randomly rotated, sheared, scaled, moved and jittered: a symbol the model lacks."""
    k = np.arange(6) * 4 * np.pi / 5 + np.pi / 2
    v = np.stack([np.cos(k), -np.sin(k)], 1)  # y down
    seg = np.linspace(0, 1, n, endpoint=False)[:, None]
    pts = np.concatenate([v[i] + seg * (v[i + 1] - v[i]) for i in range(5)] + [v[5:6]])  # (5n + 1, 2)
    a, sh = rng.normal(0, 0.12), rng.normal(0, 0.1)
    m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.array([[1, sh], [0, 1]])
    s = rng.uniform(50, 150)
    pts = (pts @ m.T) * s * np.array([rng.uniform(0.85, 1.15), 1]) + rng.uniform(0, 300, 2)
    return [pts + rng.normal(0, 0.01 * s, pts.shape)]
