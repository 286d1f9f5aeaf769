"""Normalization: a pipeline of small, immutable, configurable steps.

Every step maps a :class:`PenBatch`, a ragged batch of ``points-3`` inks
(see :mod:`strokes.formats`), to a *new* :class:`PenBatch`, vectorized over all
points of all samples at once; one ink is a batch of one. A :class:`Pipeline`
is a tuple of steps whose config is plain JSON (``to_config`` /
``Pipeline.from_config``), so it travels inside model checkpoints.

Steps:

* :class:`Dedup` removes consecutive duplicate points within a stroke.
* :class:`UnitSquare` translates and scales into the unit square, keeping the
  aspect ratio, centred, with a margin; y stays screen-down unless ``flip_y``.
* :class:`Resample` resamples each stroke by arc length, to a fixed spacing or
  to a fixed number of points per sample.
* :class:`Smooth` applies a [1/4, 1/2, 1/4] moving average along each stroke,
  keeping stroke end points fixed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Sequence

import numpy as np

from .ink import DEFAULT_MAX_POINTS, as_ink

__all__ = ["PenBatch", "Dedup", "UnitSquare", "Resample", "Smooth", "Pipeline", "normalize", "default_pipeline"]


@dataclass(frozen=True)
class PenBatch:
    """N inks in ``points-3`` format, stored ragged.

    ``data`` is ``(P, 3)`` float32 ``[x, y, pen_up]``; sample i is
    ``data[offsets[i]:offsets[i + 1]]``; every sample ends with ``pen_up == 1``.
    """

    data: np.ndarray  #: (P, 3) float32 (float64 before UnitSquare when built from raw ink)
    offsets: np.ndarray  #: (N + 1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.data[self.offsets[i] : self.offsets[i + 1]]

    def sample_ids(self) -> np.ndarray:
        """``(P,)`` int64, the sample of every point."""
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))

    def stroke_starts(self) -> np.ndarray:
        """``(P,)`` bool, True on the first point of every stroke."""
        start = np.zeros(len(self.data), dtype=bool)
        start[0:1] = True
        start[1:] = self.data[:-1, 2] > 0.5
        return start

    def to_list(self) -> list[np.ndarray]:
        return [self[i].copy() for i in range(len(self))]

    @classmethod
    def from_points3(cls, arrays: Sequence[np.ndarray]) -> "PenBatch":
        lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.concatenate(arrays).astype(np.float32) if arrays else np.zeros((0, 3), np.float32)
        return cls(data, offsets)

    @classmethod
    def from_dataset(cls, ds) -> "PenBatch":
        """The dataset's points as points-3 (timestamps dropped), no copy of structure needed."""
        data = np.empty((ds.num_points, 3), dtype=np.float32)
        data[:, :2] = ds.xy
        data[:, 2] = ds.pen_up()
        return cls(data, ds.point_offsets.copy())


def _stroke_ids(pen: np.ndarray) -> np.ndarray:
    """``(P,)`` global stroke index of each point (strokes end where pen_up == 1)."""
    sid = np.zeros(len(pen), dtype=np.int64)
    sid[1:] = np.cumsum(pen[:-1] > 0.5)
    return sid


class Step:
    """Base class: a frozen dataclass with a registered ``name``; ``__call__`` is pure."""

    name: ClassVar[str]

    def __call__(self, batch: PenBatch) -> PenBatch:  # pragma: no cover - interface
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        """The step as plain JSON data: ``{"step": name, **fields}``."""
        return {"step": self.name, **asdict(self)}


@dataclass(frozen=True)
class Dedup(Step):
    """Remove consecutive duplicate points within a stroke (keeps the last of a run)."""

    name: ClassVar[str] = "dedup"

    def __call__(self, batch: PenBatch) -> PenBatch:
        d = batch.data
        if len(d) < 2:
            return PenBatch(d.copy(), batch.offsets.copy())
        # drop point i when the pen stays down and the next point is the same
        same_next = np.zeros(len(d), dtype=bool)
        same_next[:-1] = (d[:-1, 2] < 0.5) & np.all(d[:-1, :2] == d[1:, :2], axis=1)
        keep = ~same_next
        sid = batch.sample_ids()
        counts = np.bincount(sid[keep], minlength=len(batch))
        offsets = np.zeros(len(batch) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return PenBatch(d[keep], offsets)


@dataclass(frozen=True)
class UnitSquare(Step):
    """Fit each ink into the unit square: aspect ratio kept, centred, with a margin.

    The longer side spans ``[margin, 1 - margin]``; the shorter one is centred.
    A single point or identical points land at the centre (0.5, 0.5); a
    zero-width ``|`` or zero-height ``-`` keeps its length along its axis.
    """

    margin: float = 0.05  #: empty border on each side, as a fraction of the square
    flip_y: bool = False  #: make y point up (mathematical axes) instead of screen-down

    name: ClassVar[str] = "unit_square"

    def __post_init__(self):
        if not 0 <= self.margin < 0.5:
            raise ValueError(f"margin must be in [0, 0.5), got {self.margin}")

    def __call__(self, batch: PenBatch) -> PenBatch:
        d = batch.data
        if len(batch) == 0:
            return PenBatch(d.copy(), batch.offsets.copy())
        starts = batch.offsets[:-1]
        xy = d[:, :2].astype(np.float64)
        lo = np.minimum.reduceat(xy, starts, axis=0)  # (N, 2)
        hi = np.maximum.reduceat(xy, starts, axis=0)  # (N, 2)
        extent = (hi - lo).max(axis=1)  # (N,) longer side
        scale = np.where(extent > 0, (1 - 2 * self.margin) / np.where(extent > 0, extent, 1), 1.0)
        centre = (lo + hi) / 2
        sid = batch.sample_ids()
        out = np.empty(d.shape, dtype=np.float32)  # rounds once, after scaling
        out[:, :2] = (xy - centre[sid]) * scale[sid, None] + 0.5
        if self.flip_y:
            out[:, 1] = 1 - out[:, 1]
        out[:, 2] = d[:, 2]
        return PenBatch(out, batch.offsets.copy())


@dataclass(frozen=True)
class Resample(Step):
    """Resample each stroke at equal arc-length steps.

    Exactly one of ``spacing`` (distance between points, in the units of the
    input: after :class:`UnitSquare`, fractions of the square) or ``n_points``
    (points per sample, shared among its strokes by length; every stroke keeps
    at least one point, and two, its ends, when it has length and the budget
    allows) must be set. Stroke end points are kept.
    """

    spacing: float | None = None  #: distance between consecutive points
    n_points: int | None = None  #: points per sample (at least the number of strokes)

    name: ClassVar[str] = "resample"

    def __post_init__(self):
        if (self.spacing is None) == (self.n_points is None):
            raise ValueError("Resample needs exactly one of spacing= or n_points=")
        if self.spacing is not None and not self.spacing > 0:
            raise ValueError(f"spacing must be > 0, got {self.spacing}")
        if self.n_points is not None and self.n_points < 1:
            raise ValueError(f"n_points must be >= 1, got {self.n_points}")

    def __call__(self, batch: PenBatch) -> PenBatch:
        d = batch.data
        if len(d) == 0:
            return PenBatch(d.copy(), batch.offsets.copy())
        xy = d[:, :2].astype(np.float64)
        pen = d[:, 2]
        sid = _stroke_ids(pen)  # (P,)
        nstrokes = int(sid[-1]) + 1
        seg = np.zeros(len(d))  # length of the segment arriving at each point
        seg[1:] = np.hypot(*(xy[1:] - xy[:-1]).T)
        seg[np.r_[True, pen[:-1] > 0.5]] = 0  # no segment across a pen lift
        cum = np.cumsum(seg)
        stroke_first = np.flatnonzero(np.r_[True, pen[:-1] > 0.5])  # (S,)
        stroke_last = np.flatnonzero(pen > 0.5)  # (S,)
        s_within = cum - cum[stroke_first][sid]  # arc length from the stroke start
        length = s_within[stroke_last]  # (S,)
        sample_of_stroke = np.searchsorted(batch.offsets, stroke_first, side="right") - 1

        if self.spacing is not None:
            k = 1 + np.floor(length / self.spacing + 0.5).astype(np.int64)  # points per stroke
        else:
            k = self._share(length, sample_of_stroke, len(batch))
        # target arc lengths: j * L / (k - 1) for j in 0..k-1, per stroke
        total = int(k.sum())
        stroke_of_out = np.repeat(np.arange(nstrokes), k)
        first_out = np.cumsum(k) - k
        j = np.arange(total) - first_out[stroke_of_out]
        denom = np.maximum(k - 1, 1)[stroke_of_out]
        target = j * (length[stroke_of_out] / denom)
        # locate each target on its stroke: strokes are made disjoint on one axis
        big = float(length.max()) + 1.0
        key = s_within + sid * big
        tkey = target + stroke_of_out * big
        idx = np.searchsorted(key, tkey, side="right") - 1
        idx = np.clip(idx, stroke_first[stroke_of_out], stroke_last[stroke_of_out])
        nxt = np.minimum(idx + 1, stroke_last[stroke_of_out])
        span = s_within[nxt] - s_within[idx]
        w = np.where(span > 0, (target - s_within[idx]) / np.where(span > 0, span, 1), 0.0)
        w = np.clip(w, 0, 1)[:, None]
        out_xy = xy[idx] * (1 - w) + xy[nxt] * w
        out = np.zeros((total, 3), dtype=np.float32)
        out[:, :2] = out_xy
        out[np.cumsum(k) - 1, 2] = 1
        counts = np.bincount(sample_of_stroke, weights=k, minlength=len(batch)).astype(np.int64)
        offsets = np.zeros(len(batch) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return PenBatch(out, offsets)

    def _share(self, length: np.ndarray, sample_of_stroke: np.ndarray, n: int) -> np.ndarray:
        """Points per stroke so that each sample gets n_points (largest remainder)."""
        # every stroke keeps one point; a stroke with length keeps both ends when the budget allows
        need = np.where(length > 0, 2, 1)
        fits = np.bincount(sample_of_stroke, weights=need, minlength=n) <= self.n_points
        minimum = np.where(fits[sample_of_stroke], need, 1)
        used = np.bincount(sample_of_stroke, weights=minimum, minlength=n).astype(np.int64)
        free = np.maximum(self.n_points - used, 0)[sample_of_stroke]  # beyond the minimum
        total_len = np.bincount(sample_of_stroke, weights=length, minlength=n)[sample_of_stroke]
        share = np.where(total_len > 0, length / np.where(total_len > 0, total_len, 1), 0.0)
        # samples with zero length: give the free points to their first stroke
        zero = total_len == 0
        first = np.r_[True, sample_of_stroke[1:] != sample_of_stroke[:-1]]
        share[zero & first] = 1.0
        exact = share * free
        base = np.floor(exact).astype(np.int64)
        left = (free - np.bincount(sample_of_stroke, weights=base, minlength=n)[sample_of_stroke]).astype(np.int64)
        # hand the leftover points to the strokes with the largest remainders, per sample
        rem = exact - base
        order = np.lexsort((-rem, sample_of_stroke))
        rank = np.empty(len(order), dtype=np.int64)
        grp_first = np.searchsorted(sample_of_stroke[order], sample_of_stroke[order])
        rank[order] = np.arange(len(order)) - grp_first
        base += rank < left
        return minimum + base


@dataclass(frozen=True)
class Smooth(Step):
    """Moving average [1/4, 1/2, 1/4] along each stroke, ``iterations`` times; ends stay."""

    iterations: int = 1  #: how many passes of the kernel

    name: ClassVar[str] = "smooth"

    def __post_init__(self):
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")

    def __call__(self, batch: PenBatch) -> PenBatch:
        d = batch.data
        xy = d[:, :2].astype(np.float64)
        start = batch.stroke_starts()
        end = d[:, 2] > 0.5
        prev_i = np.where(start, np.arange(len(d)), np.arange(len(d)) - 1)
        next_i = np.where(end, np.arange(len(d)), np.arange(len(d)) + 1)
        ends = (start | end)[:, None]
        for _ in range(self.iterations):
            xy = np.where(ends, xy, 0.25 * xy[prev_i] + 0.5 * xy + 0.25 * xy[next_i])
        out = d.copy()
        out[:, :2] = xy
        return PenBatch(out, batch.offsets.copy())


STEPS: dict[str, type[Step]] = {cls.name: cls for cls in (Dedup, UnitSquare, Resample, Smooth)}


@dataclass(frozen=True)
class Pipeline:
    """An ordered, immutable tuple of steps; its config is plain JSON."""

    steps: tuple[Step, ...] = ()

    def __call__(self, batch: PenBatch) -> PenBatch:
        for step in self.steps:
            batch = step(batch)
        return batch

    def apply(self, ink, *, max_points: int = DEFAULT_MAX_POINTS) -> np.ndarray:
        """Validate one raw ink (any shape :func:`strokes.ink.as_ink` takes); return points-3."""
        from .formats import ink_to_points3

        # float64 until UnitSquare rounds once to float32: large raw coordinates keep their precision
        pts = ink_to_points3(as_ink(ink, max_points=max_points), dtype=np.float64)
        return self(PenBatch(pts, np.array([0, len(pts)], dtype=np.int64))).data.astype(np.float32, copy=False)

    def apply_dataset(self, ds) -> PenBatch:
        """Normalize every sample of a dataset at once (vectorized, no per-sample loop)."""
        return self(PenBatch.from_dataset(ds))

    def to_config(self) -> list[dict[str, Any]]:
        """The pipeline as plain JSON data, one entry per step; :meth:`from_config` reverses it."""
        return [s.to_config() for s in self.steps]

    @classmethod
    def from_config(cls, config: Sequence[dict[str, Any]]) -> "Pipeline":
        """Rebuild a pipeline from :meth:`to_config`.

        Raises:
            ValueError: for an unknown step name or an option the step does not take.
        """
        steps = []
        for entry in config:
            entry = dict(entry)
            name = entry.pop("step", None)
            if name not in STEPS:
                raise ValueError(f"unknown normalization step {name!r}; valid steps: {', '.join(STEPS)}")
            known = {f.name for f in fields(STEPS[name])}
            unknown = set(entry) - known
            if unknown:
                raise ValueError(f"step {name!r} has no option(s) {sorted(unknown)}; it takes {sorted(known)}")
            steps.append(STEPS[name](**entry))
        return cls(tuple(steps))

    def __repr__(self) -> str:
        return "Pipeline(" + ", ".join(repr(s) for s in self.steps) + ")"


def default_pipeline(
    *,
    margin: float = 0.05,
    flip_y: bool = False,
    spacing: float | None = None,
    n_points: int | None = None,
    smooth: int = 0,
    dedup: bool = True,
) -> Pipeline:
    """The standard pipeline: [smooth], unit square, [dedup], [resample].

    Smoothing comes first so that the result still fills the square up to the
    margin; dedup comes after scaling so that points that coincide in float32
    are merged (which makes normalization idempotent); resampling comes last so
    that ``spacing`` is in fractions of the square.
    """
    steps: list[Step] = []
    if smooth:
        steps.append(Smooth(iterations=smooth))
    steps.append(UnitSquare(margin=margin, flip_y=flip_y))
    if dedup:
        steps.append(Dedup())
    if spacing is not None or n_points is not None:
        steps.append(Resample(spacing=spacing, n_points=n_points))
    return Pipeline(tuple(steps))


def normalize(
    ink,
    *,
    margin: float = 0.05,
    flip_y: bool = False,
    spacing: float | None = None,
    n_points: int | None = None,
    smooth: int = 0,
    dedup: bool = True,
    max_points: int = DEFAULT_MAX_POINTS,
) -> np.ndarray:
    """Normalize one ink to float32 ``(n, 3)`` ``[x, y, pen_up]`` in the unit square.

    Args:
        ink: raw strokes in any shape :func:`strokes.ink.as_ink` accepts.
        margin: empty border on each side (fraction of the square).
        flip_y: make y point up; by default it stays screen-down.
        spacing: resample each stroke at this arc-length spacing (after scaling).
        n_points: or resample to this many points per ink.
        smooth: passes of a [1/4, 1/2, 1/4] moving average along strokes.
        dedup: remove consecutive duplicate points.
        max_points: refuse inks with more points than this.

    Raises:
        ValueError: for malformed ink (empty, NaN/inf, non-numeric, wrong
            nesting, too many points) or bad options.
    """
    pipe = default_pipeline(
        margin=margin, flip_y=flip_y, spacing=spacing, n_points=n_points, smooth=smooth, dedup=dedup
    )
    return pipe.apply(ink, max_points=max_points)
