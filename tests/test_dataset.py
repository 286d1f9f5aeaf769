"""StrokeDataset: ragged storage, samples, subsets, validation, repr."""

import numpy as np
import pytest

from strokes import StrokeDataset
from strokes.dataset import DatasetBuilder


def _ds():
    b = DatasetBuilder(name="unit")
    b.add([np.array([[0, 0, 10], [1, 1, 20]], float)], "b", "w1", "f1")
    b.add([np.array([[5, 5]], float), np.array([[6, 6], [7, 7]], float)], "a", None, "f2")
    b.add([np.array([[9, 9], [8, 8], [7, 7]], float)], "b", "w2", "f3")
    return b.build()


def test_structure_and_samples():
    ds = _ds()
    assert len(ds) == 3 and ds.vocab == ["a", "b"] and ds.classes == ["a", "b"]
    assert ds.class_to_idx == {"a": 0, "b": 1}
    np.testing.assert_array_equal(ds.labels, [1, 0, 1])
    np.testing.assert_array_equal(ds.sample_offsets, [0, 1, 3, 4])
    np.testing.assert_array_equal(ds.stroke_offsets, [0, 2, 3, 5, 8])
    s = ds[0]
    assert s.label == "b" and s.writer == "w1" and s.source == "f1"
    assert s.strokes[0].shape == (2, 3) and s.strokes[0][1, 2] == 20  # t kept
    s1 = ds[1]
    assert [x.shape for x in s1.strokes] == [(1, 2), (2, 2)] and s1.writer is None  # no t here
    assert ds[-1].label == "b"
    with pytest.raises(IndexError):
        ds[3]


def test_subset_equals_gathering_samples():
    ds = _ds()
    sub = ds.subset([2, 0])
    assert len(sub) == 2 and sub.vocab == ds.vocab
    for i, j in ((0, 2), (1, 0)):
        for a, b in zip(sub[i].strokes, ds[j].strokes):
            np.testing.assert_array_equal(a, b)
        assert sub[i].label == ds[j].label and sub[i].writer == ds[j].writer
    mask = ds.subset(np.array([False, True, False]))
    assert len(mask) == 1 and mask[0].label == "a"
    assert len(ds[1:]) == 2


def test_pen_up_and_offsets():
    ds = _ds()
    np.testing.assert_array_equal(ds.pen_up(), [0, 1, 1, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(ds.point_offsets, [0, 2, 5, 8])
    np.testing.assert_array_equal(ds.points_per_sample(), [2, 3, 3])
    np.testing.assert_array_equal(ds.strokes_per_sample(), [1, 2, 1])


def test_inconsistent_arrays_are_refused():
    with pytest.raises(ValueError, match="stroke_offsets"):
        StrokeDataset(np.zeros((3, 2)), [0, 2], [0, 1], [0], ["a"])
    with pytest.raises(ValueError, match="labels"):
        StrokeDataset(np.zeros((2, 2)), [0, 2], [0, 1], [3], ["a"])
    with pytest.raises(ValueError, match="at least one point"):
        StrokeDataset(np.zeros((2, 2)), [0, 2, 2], [0, 2], [0], ["a"])


def test_repr_is_readable_and_marks_synthetic(tiny):
    text = repr(_ds())
    assert "real" in text and "samples: 3" in text and "classes: 2" in text
    assert "synthetic" in repr(tiny)


def test_fingerprint_tracks_content():
    a, b = _ds(), _ds()
    assert a.fingerprint() == b.fingerprint()
    assert a.subset([0, 1]).fingerprint() != a.fingerprint()
