"""The ragged (CSR) stroke dataset, its samples, and a builder the loaders share.

A dataset of N symbols is a handful of flat numpy arrays (see the ``ragged``
format in :mod:`strokes.formats`); nothing is held as one Python object per
point or per stroke.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["StrokeDataset", "Sample", "Skipped", "DatasetBuilder"]


@dataclass(frozen=True)
class Skipped:
    """A record a loader could not use: where it came from and why."""

    source: str  # file path, "file#group", "row 17" or a database id
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass(frozen=True)
class Sample:
    """One symbol: its strokes (``ink`` format), label, writer and origin."""

    strokes: list  # list of (n, 2) or (n, 3) float arrays; (n, 3) holds [x, y, t]
    label: str
    writer: str | None
    source: str | None
    index: int


def sample_position(index, n: int) -> int:
    """``index`` (an int, negative counts from the end) as a position in ``range(n)``; IndexError outside."""
    i = int(index)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"sample index {index} out of range for {n} samples")
    return i


def subset_indices(indices, n: int) -> np.ndarray:
    """Sample indices or a boolean mask of length ``n`` as non-negative int64 positions, checked."""
    idx = np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"boolean mask must have shape ({n},), got {idx.shape}")
        idx = np.flatnonzero(idx)
    idx = idx.astype(np.int64, copy=False).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"subset indices out of range for {n} samples")
    return np.where(idx < 0, idx + n, idx)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _intern(values: Sequence[str | None], sort: bool = True) -> tuple[np.ndarray, list[str]]:
    """Map strings to int ids into a name list (sorted, or in first-seen order); None becomes -1."""
    lookup: dict[str, int] = {}
    if sort:
        lookup = {n: i for i, n in enumerate(sorted({v for v in values if v is not None}))}
    ids = np.fromiter(
        (-1 if v is None else lookup.setdefault(v, len(lookup)) for v in values), dtype=np.int32, count=len(values)
    )
    return ids, list(lookup)


class StrokeDataset:
    """Handwritten symbols as ragged arrays.

    Attributes:
        xy: ``(P, 2)`` float32, every point of every stroke.
        t: ``(P,)`` float64 timestamps in ms (NaN where unknown), or None when
            no sample has any.
        stroke_offsets: ``(S + 1,)`` int64; stroke j is ``xy[so[j]:so[j+1]]``.
        sample_offsets: ``(N + 1,)`` int64 into the strokes.
        labels: ``(N,)`` int64 indices into :attr:`vocab`.
        vocab: sorted list of class names (LaTeX), fixed for the whole dataset.
        writer_ids: ``(N,)`` int32 into ``writer_names``, -1 when unknown.
        writer_names: the writers' names.
        source_ids: ``(N,)`` int32 into ``source_names``, -1 when unknown.
        source_names: where samples came from (files, ``file#group``, row ids).
        skipped: records the loader could not use, with reasons.
        name: where the data came from (a path, a DSN without password, ...).
        synthetic: True for procedurally generated data, never passed off as real.
        info: loader counts (``records_in``, ``loaded``, ``skipped``, ...).
    """

    def __init__(
        self,
        xy: np.ndarray,
        stroke_offsets: np.ndarray,
        sample_offsets: np.ndarray,
        labels: np.ndarray,
        vocab: Sequence[str],
        *,
        t: np.ndarray | None = None,
        writer_ids: np.ndarray | None = None,
        writer_names: Sequence[str] = (),
        source_ids: np.ndarray | None = None,
        source_names: Sequence[str] = (),
        skipped: Iterable[Skipped] = (),
        name: str = "",
        synthetic: bool = False,
        info: dict | None = None,
    ) -> None:
        self.xy = np.ascontiguousarray(xy, dtype=np.float32).reshape(-1, 2)
        self.stroke_offsets = np.asarray(stroke_offsets, dtype=np.int64)
        self.sample_offsets = np.asarray(sample_offsets, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.vocab = list(vocab)
        n = len(self.labels)
        self.t = None if t is None else np.asarray(t, dtype=np.float64)
        self.writer_ids = np.full(n, -1, np.int32) if writer_ids is None else np.asarray(writer_ids, np.int32)
        self.writer_names = list(writer_names)
        self.source_ids = np.full(n, -1, np.int32) if source_ids is None else np.asarray(source_ids, np.int32)
        self.source_names = list(source_names)
        self.skipped = list(skipped)
        self.name = name
        self.synthetic = synthetic
        self.info = dict(info or {})
        self._validate()

    # ------------------------------------------------------------------ checks
    def _validate(self) -> None:
        so, sa, n = self.stroke_offsets, self.sample_offsets, len(self.labels)
        problems = []
        if so.ndim != 1 or so.size == 0 or so[0] != 0 or so[-1] != len(self.xy):
            problems.append("stroke_offsets must run from 0 to the number of points")
        elif np.any(np.diff(so) <= 0):
            problems.append("every stroke needs at least one point")
        if sa.ndim != 1 or sa.size != n + 1 or sa[0] != 0 or sa[-1] != so.size - 1:
            problems.append("sample_offsets must run from 0 to the number of strokes, one entry per sample + 1")
        elif np.any(np.diff(sa) <= 0):
            problems.append("every sample needs at least one stroke")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.vocab)):
            problems.append("labels must index into vocab")
        if self.t is not None and self.t.shape != (len(self.xy),):
            problems.append("t must have one entry per point")
        for attr, names in (("writer_ids", self.writer_names), ("source_ids", self.source_names)):
            ids = getattr(self, attr)
            if ids.shape != (n,) or (n and (ids.min() < -1 or ids.max() >= len(names))):
                problems.append(f"{attr} must have one entry per sample, indexing its names or -1")
        if problems:
            raise ValueError("inconsistent StrokeDataset: " + "; ".join(problems))

    # --------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> list[str]:
        """The class names (torchvision style); the same list as :attr:`vocab`."""
        return self.vocab

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.vocab)}

    @property
    def num_points(self) -> int:
        return len(self.xy)

    @property
    def num_strokes(self) -> int:
        return len(self.stroke_offsets) - 1

    @property
    def point_offsets(self) -> np.ndarray:
        """``(N + 1,)`` offsets of each sample's points in :attr:`xy`."""
        return self.stroke_offsets[self.sample_offsets]

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (points, offsets, ids)."""
        arrays = [self.xy, self.stroke_offsets, self.sample_offsets, self.labels, self.writer_ids, self.source_ids]
        return sum(a.nbytes for a in arrays) + (0 if self.t is None else self.t.nbytes)

    def points_per_sample(self) -> np.ndarray:
        return np.diff(self.point_offsets)

    def strokes_per_sample(self) -> np.ndarray:
        return np.diff(self.sample_offsets)

    def pen_up(self) -> np.ndarray:
        """``(P,)`` float32, 1 on the last point of every stroke (the points-3 pen column)."""
        pen = np.zeros(len(self.xy), np.float32)
        pen[self.stroke_offsets[1:] - 1] = 1
        return pen

    def writers(self) -> list[str | None]:
        return [None if w < 0 else self.writer_names[w] for w in self.writer_ids]

    def sources(self) -> list[str | None]:
        return [None if s < 0 else self.source_names[s] for s in self.source_ids]

    def label_names(self) -> list[str]:
        return [self.vocab[i] for i in self.labels]

    def __repr__(self) -> str:
        kind = "synthetic" if self.synthetic else "real"
        lines = [
            f"StrokeDataset({kind}: {self.name or '?'})",
            f"    samples: {len(self)}, classes: {len(self.vocab)}, writers: {len(self.writer_names)}",
            f"    strokes: {self.num_strokes}, points: {self.num_points}, timestamps: {self.t is not None}",
            f"    size: {self.nbytes / 1e6:.1f} MB, skipped: {len(self.skipped)}",
        ]
        return "\n".join(lines)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            i = sample_position(index, len(self))
            s0, s1 = self.sample_offsets[i], self.sample_offsets[i + 1]
            bounds = self.stroke_offsets[s0 : s1 + 1]
            p0, p1 = bounds[0], bounds[-1]
            pts = self.xy[p0:p1].astype(np.float64)
            if self.t is not None and not np.isnan(self.t[p0:p1]).any():
                pts = np.column_stack([pts, self.t[p0:p1]])
            strokes = np.split(pts, bounds[1:-1] - p0)
            w, s = self.writer_ids[i], self.source_ids[i]
            return Sample(
                strokes=strokes,
                label=self.vocab[self.labels[i]],
                writer=None if w < 0 else self.writer_names[w],
                source=None if s < 0 else self.source_names[s],
                index=i,
            )
        if isinstance(index, slice):
            return self.subset(np.arange(len(self))[index])
        return self.subset(index)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # --------------------------------------------------------------- subsets
    def subset(self, indices) -> "StrokeDataset":
        """A new dataset of the given samples (indices or a boolean mask), same vocab.

        Vectorized: no Python loop over samples or points.
        """
        idx = subset_indices(indices, len(self))
        s_start, s_count = self.sample_offsets[idx], np.diff(self.sample_offsets)[idx]
        stroke_idx = _gather_ranges(s_start, s_count)  # strokes of the chosen samples, in order
        p_start, p_count = self.stroke_offsets[stroke_idx], np.diff(self.stroke_offsets)[stroke_idx]
        point_idx = _gather_ranges(p_start, p_count)
        return StrokeDataset(
            self.xy[point_idx],
            _offsets(p_count),
            _offsets(s_count),
            self.labels[idx],
            self.vocab,
            t=None if self.t is None else self.t[point_idx],
            writer_ids=self.writer_ids[idx],
            writer_names=self.writer_names,
            source_ids=self.source_ids[idx],
            source_names=self.source_names,
            name=self.name,
            synthetic=self.synthetic,
            info={"subset_of": self.name, **{k: v for k, v in self.info.items() if k == "format"}},
        )

    def fingerprint(self) -> str:
        """A short content hash (points, structure, labels, vocab): same data, same hash."""
        h = hashlib.sha256()
        for a in (self.xy, self.stroke_offsets, self.sample_offsets, self.labels):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update("\x00".join(self.vocab).encode())
        return h.hexdigest()[:16]

    def save(self, path, **options) -> None:
        """Write ``.npz`` (ours) or ``.sql`` (detexify dump format), by extension, atomically."""
        from .io import save

        save(self, path, **options)


def _gather_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, s + c)`` for every (s, c), vectorized."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    # each output position = its range's start + position within the range
    out = np.arange(total, dtype=np.int64)
    out -= np.repeat(ends - counts, counts)
    out += np.repeat(np.asarray(starts, dtype=np.int64), counts)
    return out


@dataclass
class DatasetBuilder:
    """Accumulates samples, in per-sample or bulk chunks, into a :class:`StrokeDataset`.

    Loaders feed it; it concatenates once at the end, so memory stays near the
    size of the points.
    """

    name: str = ""
    synthetic: bool = False
    _xy: list = field(default_factory=list)
    _t: list = field(default_factory=list)
    _stroke_len: list = field(default_factory=list)
    _sample_nstrokes: list = field(default_factory=list)
    _labels: list = field(default_factory=list)
    _writers: list = field(default_factory=list)
    _sources: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    _any_t: bool = False
    _pending: list = field(default_factory=list)

    def add(self, strokes: Sequence[np.ndarray], label: str, writer: str | None = None, source: str | None = None):
        """Add one sample given as ``ink`` (list of (n, 2) or (n, 3) arrays).

        Samples are buffered and stored as one chunk per ``FLUSH`` samples, so
        that memory is not spent on many small arrays.
        """
        self._pending.append((strokes, label, writer, source))
        if len(self._pending) >= self.FLUSH:
            self._flush()

    FLUSH = 4096

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        strokes = [s for p in pending for s in p[0]]
        lens = np.fromiter((len(s) for s in strokes), dtype=np.int64, count=len(strokes))
        xy = np.concatenate([np.asarray(s)[:, :2] for s in strokes])
        if any(np.shape(s)[1] >= 3 for s in strokes):
            t = np.concatenate([s[:, 2] if s.shape[1] >= 3 else np.full(len(s), np.nan) for s in strokes])
        else:
            t = None
        self.add_chunk(
            xy,
            t,
            lens,
            np.fromiter((len(p[0]) for p in pending), dtype=np.int64, count=len(pending)),
            [p[1] for p in pending],
            [p[2] for p in pending],
            [p[3] for p in pending],
        )

    def add_chunk(self, xy, t, stroke_lengths, sample_nstrokes, labels, writers, sources) -> None:
        """Add many samples at once as ragged arrays (t may be None or hold NaN)."""
        if self._pending:  # keep sample order
            self._flush()
        if len(labels) != len(sample_nstrokes) or len(writers) != len(labels) or len(sources) != len(labels):
            raise ValueError("labels, writers and sources need one entry per sample")
        self._xy.append(np.asarray(xy, dtype=np.float32))
        if t is None:
            t = np.full(len(xy), np.nan)
        else:
            t = np.asarray(t, dtype=np.float64)
            self._any_t = self._any_t or not np.isnan(t).all()
        self._t.append(t)
        self._stroke_len.append(np.asarray(stroke_lengths, dtype=np.int64))
        self._sample_nstrokes.append(np.asarray(sample_nstrokes, dtype=np.int64))
        self._labels.extend(labels)
        self._writers.extend(writers)
        self._sources.extend(sources)

    def skip(self, source: str, reason: str) -> None:
        log.debug("skipped %s: %s", source, reason)
        self.skipped.append(Skipped(str(source), str(reason)))

    def __len__(self) -> int:
        return len(self._labels) + len(self._pending)

    def build(self, info: dict | None = None, vocab: Sequence[str] | None = None) -> StrokeDataset:
        """Concatenate everything into a dataset (vocab sorted unless given)."""
        self._flush()
        if vocab is None:
            vocab = sorted(set(self._labels))
        lookup = {c: i for i, c in enumerate(vocab)}
        missing = set(self._labels) - lookup.keys()
        if missing:
            raise ValueError(f"labels not in the given vocab: {sorted(missing)[:10]}")
        labels = np.fromiter((lookup[c] for c in self._labels), dtype=np.int64, count=len(self._labels))
        cat = lambda parts, dt, shape: np.concatenate(parts) if parts else np.zeros(shape, dt)  # noqa: E731
        xy = cat(self._xy, np.float32, (0, 2))
        self._xy.clear()  # release chunk memory as soon as it is copied
        t = cat(self._t, np.float64, (0,)) if self._any_t else None
        self._t.clear()
        writer_ids, writer_names = _intern(self._writers)
        source_ids, source_names = _intern(self._sources, sort=False)  # often one per sample: skip the sort
        info = dict(info or {})
        info.setdefault("loaded", len(labels))
        info.setdefault("skipped", len(self.skipped))
        return StrokeDataset(
            xy,
            _offsets(cat(self._stroke_len, np.int64, (0,))),
            _offsets(cat(self._sample_nstrokes, np.int64, (0,))),
            labels,
            vocab,
            t=t,
            writer_ids=writer_ids,
            writer_names=writer_names,
            source_ids=source_ids,
            source_names=source_names,
            skipped=self.skipped,
            name=self.name,
            synthetic=self.synthetic,
            info=info,
        )
