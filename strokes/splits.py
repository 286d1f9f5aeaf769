"""Deterministic train/val/test splits and k-fold cross-validation.

Every split takes an explicit seed and uses its own ``numpy`` generator.
Labels keep the vocabulary of the *whole* dataset, so a label id means the
same class in every split.

* ``random``: stratified by class; every class with at least 3 samples gets at
  least one sample in train, val and test.
* ``writer``: whole writers are held out (no writer is in two splits). Samples
  without a writer are grouped by source (see :func:`groups`). Class coverage
  is balanced greedily; classes that could not reach every split are reported.
* :func:`kfold`: stratified (or grouped) k folds.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import numpy as np

from .dataset import StrokeDataset

log = logging.getLogger(__name__)

__all__ = ["Split", "split", "kfold", "groups"]


@dataclass(frozen=True)
class Split:
    """Index arrays into one dataset; disjoint, and together all samples."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    mode: str
    seed: int
    missing: dict = field(default_factory=dict)  # split name -> classes (>= 3 samples) absent from it

    def __iter__(self):
        return iter((self.train, self.val, self.test))

    def describe(self, ds: StrokeDataset | None = None) -> str:
        parts = [f"{self.mode} split (seed {self.seed}): train {len(self.train)}, val {len(self.val)}, test {len(self.test)}"]
        if ds is not None and ds.writer_ids is not None:
            for name, idx in zip(("train", "val", "test"), self):
                parts.append(f"{name} writers: {len(np.unique(ds.writer_ids[idx][ds.writer_ids[idx] >= 0]))}")
        for name, classes in self.missing.items():
            if classes:
                parts.append(f"{len(classes)} class(es) missing from {name}")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "seed": self.seed, "sizes": [len(self.train), len(self.val), len(self.test)]}


_SESSION = re.compile(r"-\d+$")


def groups(ds: StrokeDataset) -> np.ndarray:
    """``(N,)`` int64 group id per sample for writer-disjoint splits.

    The writer when known. Otherwise the source: for a file ``dir/NAME-K.inkml``
    the group is ``dir/NAME`` (CROHME's MathBrush names files after a recording
    session, ``2009210-947-0.inkml``, so one session stays together); any other
    source is its own group. Samples with neither are each their own group.
    """
    n = len(ds)
    keys = np.empty(n, dtype=object)
    has_w = ds.writer_ids >= 0
    keys[has_w] = ["w:" + ds.writer_names[w] for w in ds.writer_ids[has_w]]
    src_keys = []
    for s in ds.source_names:
        stem, dot, ext = s.rpartition(".")
        base = stem if dot and "/" not in ext else s
        src_keys.append("s:" + _SESSION.sub("", base))
    no_w = ~has_w
    sid = ds.source_ids[no_w]
    keys[no_w] = [src_keys[s] if s >= 0 else f"i:{i}" for s, i in zip(sid, np.flatnonzero(no_w))]
    _, inverse = np.unique(keys.astype(str), return_inverse=True)
    return inverse.astype(np.int64)


def collections(ds) -> tuple[np.ndarray, list[str]]:
    """``(N,)`` collection id per sample (-1 where unknown) and the collection names.

    The collection is the recording setup a sample comes from: for CROHME the
    folder under the data root (``HAMEX``, ``KAIST``, ``MathBrush``, ``MfrDB``,
    ``expressmatch``...), which the InkML loader keeps as the first component of
    each source name (``KAIST/KME1G3_11_sub_10.inkml``). A loader that knows a
    device or collection field may put ``{"collections": [name per source]}`` in
    ``ds.info`` instead. Sources without either have no collection.
    """
    names_of_source = ds.info.get("collections")
    if names_of_source is None or len(names_of_source) != len(ds.source_names):
        names_of_source = [s.split("/", 1)[0] if "/" in s else "" for s in ds.source_names]
    names = sorted({n for n in names_of_source if n})
    index = {n: i for i, n in enumerate(names)}
    per_source = np.array([index.get(n, -1) for n in names_of_source] + [-1], dtype=np.int64)  # [-1]: no source
    return per_source[ds.source_ids], names


def _check_fractions(val: float, test: float) -> None:
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val and test fractions must be in [0, 1) and sum below 1, got {val} and {test}")


def _stratified(labels: np.ndarray, val: float, test: float, rng: np.random.Generator):
    n = len(labels)
    order = np.lexsort((rng.random(n), labels))  # shuffled within each class
    sorted_labels = labels[order]
    first = np.searchsorted(sorted_labels, sorted_labels)  # start of each sample's class run
    rank = np.arange(n) - first
    count = np.bincount(labels)[sorted_labels]
    n_test = np.round(count * test).astype(np.int64)
    n_val = np.round(count * val).astype(np.int64)
    enough = count >= 3
    n_test = np.where(enough & (test > 0), np.maximum(n_test, 1), n_test)
    n_val = np.where(enough & (val > 0), np.maximum(n_val, 1), n_val)
    which = np.where(rank < n_test, 2, np.where(rank < n_test + n_val, 1, 0))
    out = np.empty(n, dtype=np.int8)
    out[order] = which
    return out


def _by_groups(labels, grp, val, test, rng, num_classes):
    """Assign whole groups to splits, balancing sizes and class coverage greedily."""
    ngroups = int(grp.max()) + 1 if len(grp) else 0
    size = np.bincount(grp, minlength=ngroups)
    # (G, C) samples per group and class, as a sparse list of pairs
    pair = grp * num_classes + labels
    upair, pcount = np.unique(pair, return_counts=True)
    g_of, c_of = upair // num_classes, upair % num_classes
    g_start = np.searchsorted(g_of, np.arange(ngroups + 1))
    total = len(labels)
    target = np.array([1 - val - test, val, test]) * total
    have = np.zeros(3)
    covered = np.zeros((3, num_classes), dtype=bool)
    class_total = np.bincount(labels, minlength=num_classes)
    wanted = class_total >= 3
    assign = np.zeros(ngroups, dtype=np.int8)
    # big groups first (they are hardest to place), ties broken by the seeded generator
    order = np.lexsort((rng.random(ngroups), -size))
    for g in order:
        cls = c_of[g_start[g] : g_start[g + 1]]
        deficit = (target - have) / np.maximum(target, 1)
        gain = np.array([(~covered[s, cls] & wanted[cls]).sum() for s in range(3)]) / max(len(cls), 1)
        score = deficit + 0.5 * gain * (target > 0)
        score[target <= 0] = -np.inf
        s = int(np.argmax(score))
        assign[g] = s
        have[s] += size[g]
        covered[s, cls] = True
    return assign[grp], covered, wanted


def split(
    ds: StrokeDataset,
    *,
    mode: str = "writer",
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
) -> Split:
    """Split ``ds`` into train/val/test index arrays.

    Args:
        mode: ``"random"`` (stratified by class) or ``"writer"`` (writer-disjoint;
            falls back to source groups for samples without a writer).
        val, test: fractions of the samples for validation and test.
        seed: seeds the split's own generator; the same seed gives the same split.
    """
    _check_fractions(val, test)
    if mode not in ("random", "writer"):
        raise ValueError(f"unknown split mode {mode!r}; use 'random' or 'writer' (or kfold() for folds)")
    rng = np.random.default_rng(seed)
    labels = ds.labels
    missing: dict[str, list[str]] = {}
    if mode == "random":
        which = _stratified(labels, val, test, rng)
    else:
        which, covered, wanted = _by_groups(labels, groups(ds), val, test, rng, len(ds.vocab))
        for s, name in enumerate(("train", "val", "test")):
            if (name == "val" and val == 0) or (name == "test" and test == 0):
                continue
            miss = np.flatnonzero(wanted & ~covered[s])
            if miss.size:
                missing[name] = [ds.vocab[c] for c in miss]
                log.info("writer split: %d class(es) have no sample in %s: %s", miss.size, name, missing[name][:10])
    idx = [np.flatnonzero(which == s) for s in range(3)]
    return Split(idx[0], idx[1], idx[2], mode, seed, missing)


def kfold(ds: StrokeDataset, k: int = 10, *, seed: int = 0, by: str = "class") -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, test) index pairs; each sample is in exactly one test fold.

    ``by="class"`` stratifies (class members dealt round-robin over folds after
    a seeded shuffle); ``by="writer"`` keeps each writer group in one fold.
    """
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    if k > len(ds):
        raise ValueError(f"k={k} folds need at least {k} samples, the dataset has {len(ds)}")
    rng = np.random.default_rng(seed)
    n = len(ds)
    if by == "class":
        order = np.lexsort((rng.random(n), ds.labels))
        first = np.searchsorted(ds.labels[order], ds.labels[order])
        offset = rng.integers(0, k, size=len(ds.vocab))[ds.labels[order]]  # spread small classes
        fold = np.empty(n, dtype=np.int64)
        fold[order] = (np.arange(n) - first + offset) % k
    elif by == "writer":
        grp = groups(ds)
        ngroups = int(grp.max()) + 1
        size = np.bincount(grp, minlength=ngroups)
        order = np.lexsort((rng.random(ngroups), -size))
        load = np.zeros(k)
        gfold = np.empty(ngroups, dtype=np.int64)
        for g in order:  # largest groups first into the emptiest fold
            f = int(np.argmin(load))
            gfold[g] = f
            load[f] += size[g]
        fold = gfold[grp]
    else:
        raise ValueError(f"unknown kfold grouping {by!r}; use 'class' or 'writer'")
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]
