"""Splits: deterministic, disjoint, complete, stratified, writer-disjoint; k-fold partitions."""

import numpy as np
import pytest

from strokes import kfold, split
from strokes.dataset import DatasetBuilder
from strokes.splits import groups


def _covers(ds, sp):
    allidx = np.concatenate(list(sp))
    assert len(allidx) == len(ds) and len(np.unique(allidx)) == len(ds)


@pytest.mark.parametrize("mode", ["random", "writer"])
def test_deterministic_disjoint_complete(tiny, mode):
    a, b, c = split(tiny, mode=mode, seed=1), split(tiny, mode=mode, seed=1), split(tiny, mode=mode, seed=2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))
    _covers(tiny, a)


def test_random_split_is_stratified(tiny):
    sp = split(tiny, mode="random", val=0.1, test=0.1, seed=0)
    counts = np.bincount(tiny.labels)
    for idx in sp:
        present = np.unique(tiny.labels[idx])
        np.testing.assert_array_equal(present, np.flatnonzero(counts >= 3))


def test_every_class_with_three_samples_reaches_each_split():
    b = DatasetBuilder()
    pt = [np.zeros((2, 2))]
    for label, n in (("a", 3), ("b", 50), ("c", 2)):
        for _ in range(n):
            b.add(pt, label)
    ds = b.build()
    sp = split(ds, mode="random", val=0.1, test=0.1, seed=0)
    for idx in sp:
        assert 0 in ds.labels[idx] and 1 in ds.labels[idx]  # 'a' (3 samples) everywhere


def test_writer_split_holds_out_whole_writers(tiny):
    sp = split(tiny, mode="writer", val=0.2, test=0.2, seed=0)
    w = [set(tiny.writer_ids[idx]) for idx in sp]
    assert not (w[0] & w[1]) and not (w[0] & w[2]) and not (w[1] & w[2])
    assert all(len(s) for s in w)


def test_writerless_samples_group_by_source_session():
    b = DatasetBuilder()
    pt = [np.zeros((2, 2))]
    for src in ("MathBrush/2009-9-0.inkml", "MathBrush/2009-9-1.inkml", "MathBrush/2010-3-0.inkml"):
        b.add(pt, "x", None, src)
    b.add(pt, "x", "alice", "other.inkml")
    g = groups(b.build())
    assert g[0] == g[1] and g[0] != g[2] and g[3] not in g[:3]


def test_labels_keep_the_whole_vocab(tiny):
    sp = split(tiny, mode="writer", seed=0)
    sub = tiny.subset(sp.test)
    assert sub.vocab == tiny.vocab
    np.testing.assert_array_equal(sub.labels, tiny.labels[sp.test])


def test_bad_arguments():
    from strokes.synthetic import generate

    ds = generate(n_writers=2, samples_per_writer=1)
    with pytest.raises(ValueError, match="fractions"):
        split(ds, val=0.6, test=0.5)
    with pytest.raises(ValueError, match="mode"):
        split(ds, mode="alphabetical")
    with pytest.raises(ValueError, match="k must"):
        kfold(ds, 1)


@pytest.mark.parametrize("by", ["class", "writer"])
def test_kfold_partitions(tiny, by):
    folds = kfold(tiny, 4, seed=0, by=by)
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(len(tiny)))
    for tr, te in folds:
        assert not set(tr) & set(te) and len(tr) + len(te) == len(tiny)
    if by == "writer":
        for tr, te in folds:
            assert not set(tiny.writer_ids[tr]) & set(tiny.writer_ids[te])
    else:  # stratified: fold sizes per class differ by at most one
        per = np.array([np.bincount(tiny.labels[te], minlength=len(tiny.vocab)) for _, te in folds])
        assert (per.max(axis=0) - per.min(axis=0)).max() <= 1
