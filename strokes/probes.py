"""Robustness probes: perturbations of raw ink, as a user's ink might arrive.

Each probe turns a :class:`strokes.StrokeDataset` into another with the same
samples, labels, writers and sources, and the ink changed in one documented
way. Probes act on the raw ink, before normalization, so a model sees them
exactly as it would see such a drawing. All of them are vectorized over the
ragged arrays (no Python loop per sample or stroke) and seeded where random.

The probes, by name:

- ``reversed``: every stroke is drawn from its end to its start.
- ``stroke-order``: the strokes of each sample in a random order.
- ``rotate-20``, ``rotate-10``, ``rotate+10``, ``rotate+20``: the ink rotated by that
  many degrees about its centre.
- ``slant``: sheared, x += 0.3 (y - centre y): a slanted hand.
- ``aspect``: x stretched by 1.5 about the centre.
- ``sparse-2``, ``sparse-3``: every 2nd / 3rd point kept (and each stroke's last): a
  device that samples more slowly.
- ``dense-4``: 4x the points, linearly interpolated: a device that samples faster.
- ``jitter``: Gaussian noise, 1% of the ink's size, on every point.
- ``last-stroke-missing``: the last stroke dropped (an unfinished drawing); a no-op for
  one-stroke samples.
- ``flip-y``: y mirrored about the centre: a client whose y axis points up.
  Informational: the fix is the client's (send y down, as ``strokes.normalize``
  expects), or ``UnitSquare(flip_y=True)`` in the pipeline.

Timestamps, where present, stay with their positions (times still increase
along the ink); ``dense-4`` interpolates them.

>>> from strokes.probes import PROBES, apply_probe
>>> rotated = apply_probe(ds, "rotate+10")
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .dataset import StrokeDataset, _offsets

__all__ = ["Probe", "PROBES", "DEFAULT_PROBES", "apply_probe", "parse_probes"]


@dataclass(frozen=True)
class Probe:
    """One perturbation of raw ink (see the module table)."""

    name: str  #: the probe's name in reports and on the command line
    kind: str  #: reverse | order | affine | sparse | dense | jitter | drop_last | flip_y
    value: float = 0.0  #: the angle in degrees, shear, x scale, keep-every-k, density factor or noise (of the ink's size)
    informational: bool = False  #: a client bug rather than a property of handwriting

    def __call__(self, ds: StrokeDataset, seed: int = 0) -> StrokeDataset:
        return apply_probe(ds, self, seed)


#: Every probe, by name, in report order.
PROBES: dict[str, Probe] = {
    p.name: p
    for p in (
        Probe("reversed", "reverse"),
        Probe("stroke-order", "order"),
        Probe("rotate-20", "rotate", -20.0),
        Probe("rotate-10", "rotate", -10.0),
        Probe("rotate+10", "rotate", 10.0),
        Probe("rotate+20", "rotate", 20.0),
        Probe("slant", "shear", 0.3),
        Probe("aspect", "aspect", 1.5),
        Probe("sparse-2", "sparse", 2),
        Probe("sparse-3", "sparse", 3),
        Probe("dense-4", "dense", 4),
        Probe("jitter", "jitter", 0.01),
        Probe("last-stroke-missing", "drop_last"),
        Probe("flip-y", "flip_y", informational=True),
    )
}
#: The probes ``strokes bench`` runs by default: all of them.
DEFAULT_PROBES = tuple(PROBES)


def parse_probes(spec) -> tuple[str, ...]:
    """``"all"`` / ``None`` -> every probe; ``"none"`` -> (); ``"reversed,jitter"`` -> those (validated)."""
    if spec is None or (isinstance(spec, str) and spec.strip() in ("", "all")):
        return DEFAULT_PROBES
    if isinstance(spec, str):
        if spec.strip() == "none":
            return ()
        names = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        names = list(spec)
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        raise ValueError(f"unknown probe(s) {', '.join(unknown)}; valid: all, none, or some of {', '.join(PROBES)}")
    return tuple(dict.fromkeys(names))


# ---------------------------------------------------------------- internals
def _rebuild(ds: StrokeDataset, xy, stroke_lengths, strokes_per_sample, t=None, what: str = "") -> StrokeDataset:
    return StrokeDataset(
        xy,
        _offsets(np.asarray(stroke_lengths, np.int64)),
        _offsets(np.asarray(strokes_per_sample, np.int64)),
        ds.labels.copy(),
        ds.vocab,
        t=t,
        writer_ids=ds.writer_ids.copy(),
        writer_names=ds.writer_names,
        source_ids=ds.source_ids.copy(),
        source_names=ds.source_names,
        name=f"{ds.name} [{what}]" if what else ds.name,
        synthetic=ds.synthetic,
        info={**ds.info, "probe": what},
    )


def _index(ds: StrokeDataset):
    """Per point: stroke id and position within the stroke; per stroke: sample id."""
    so = ds.stroke_offsets
    lens = np.diff(so)  # (S,)
    sid = np.repeat(np.arange(len(lens)), lens)  # (P,)
    pos = np.arange(len(ds.xy)) - so[sid]  # (P,)
    sample_of_stroke = np.repeat(np.arange(len(ds)), np.diff(ds.sample_offsets))  # (S,)
    return lens, sid, pos, sample_of_stroke


def _centres_and_sizes(ds: StrokeDataset, sample_of_point: np.ndarray):
    """Bounding-box centre (N, 2) and size max(w, h) (N,) of each sample's raw ink."""
    n = len(ds)
    lo = np.full((n, 2), np.inf)
    hi = np.full((n, 2), -np.inf)
    xy = ds.xy.astype(np.float64)
    np.minimum.at(lo, sample_of_point, xy)
    np.maximum.at(hi, sample_of_point, xy)
    centre = np.where(np.isfinite(lo), (lo + hi) / 2, 0.0)
    size = np.where(np.isfinite(lo), hi - lo, 0.0).max(1)
    return centre, size


def _affine(ds, matrix, sample_of_point, what):
    centre, _ = _centres_and_sizes(ds, sample_of_point)
    c = centre[sample_of_point]  # (P, 2)
    xy = (ds.xy.astype(np.float64) - c) @ np.asarray(matrix, np.float64).T + c  # (P, 2)
    return _rebuild(ds, xy, np.diff(ds.stroke_offsets), np.diff(ds.sample_offsets), ds.t, what)


def apply_probe(ds: StrokeDataset, probe, seed: int = 0) -> StrokeDataset:
    """``ds`` with ``probe`` (a name from :data:`PROBES` or a :class:`Probe`) applied to every sample.

    Args:
        ds: raw ink (not normalized).
        probe: the perturbation.
        seed: seeds the random probes (``stroke-order``, ``jitter``); the others ignore it.

    Returns:
        A new :class:`StrokeDataset`: same samples, labels, writers, sources and vocabulary.
    """
    if isinstance(probe, str):
        if probe not in PROBES:
            raise ValueError(f"unknown probe {probe!r}; valid: {', '.join(PROBES)}")
        probe = PROBES[probe]
    if not isinstance(probe, Probe):
        raise TypeError(f"probe must be a name or a Probe, got {type(probe).__name__}")
    if not isinstance(ds, StrokeDataset):
        raise TypeError(f"probes perturb strokes: ds must be a StrokeDataset, got {type(ds).__name__}")
    lens, sid, pos, sample_of_stroke = _index(ds)
    so = ds.stroke_offsets
    sample_of_point = sample_of_stroke[sid] if len(sid) else np.zeros(0, np.int64)
    n_strokes = np.diff(ds.sample_offsets)
    kind, what = probe.kind, probe.name

    if kind == "reverse":  # the point at position i of a stroke [a, b) comes from b - 1 - i
        src = so[sid + 1] - 1 - pos
        return _rebuild(ds, ds.xy[src], lens, n_strokes, ds.t, what)

    if kind == "order":  # a random permutation of each sample's strokes
        rng = np.random.default_rng(seed)
        perm = np.lexsort((rng.random(len(lens)), sample_of_stroke))  # (S,) strokes, grouped by sample, shuffled within
        new_lens = lens[perm]
        new_so = _offsets(new_lens)
        new_sid = np.repeat(np.arange(len(perm)), new_lens)  # (P,)
        src = so[perm][new_sid] + (np.arange(len(ds.xy)) - new_so[new_sid])
        return _rebuild(ds, ds.xy[src], new_lens, n_strokes, ds.t, what)

    if kind == "rotate":
        a = math.radians(probe.value)
        return _affine(ds, [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], sample_of_point, what)
    if kind == "shear":
        return _affine(ds, [[1.0, probe.value], [0.0, 1.0]], sample_of_point, what)
    if kind == "aspect":
        return _affine(ds, [[probe.value, 0.0], [0.0, 1.0]], sample_of_point, what)
    if kind == "flip_y":
        return _affine(ds, [[1.0, 0.0], [0.0, -1.0]], sample_of_point, what)

    if kind == "sparse":  # every k-th point from each stroke's start, and its last point
        k = int(probe.value)
        keep = (pos % k == 0) | (pos == lens[sid] - 1)
        new_lens = np.bincount(sid[keep], minlength=len(lens))
        t = None if ds.t is None else ds.t[keep]
        return _rebuild(ds, ds.xy[keep], new_lens, n_strokes, t, what)

    if kind == "dense":  # f points per segment (f - 1 interpolated), then the stroke's last point
        f = int(probe.value)
        last = pos == lens[sid] - 1
        counts = np.where(last, 1, f)  # (P,) points each original point becomes
        src = np.repeat(np.arange(len(ds.xy)), counts)  # (P',)
        j = np.arange(len(src)) - np.repeat(np.cumsum(counts) - counts, counts)  # 0..f-1 within the segment
        nxt = np.minimum(src + 1, len(ds.xy) - 1)
        w = (j / f)[:, None]
        xy = ds.xy[src].astype(np.float64) * (1 - w) + ds.xy[nxt].astype(np.float64) * w
        t = None if ds.t is None else ds.t[src] * (1 - w[:, 0]) + ds.t[nxt] * w[:, 0]
        new_lens = np.bincount(sid, weights=counts, minlength=len(lens)).astype(np.int64)
        return _rebuild(ds, xy, new_lens, n_strokes, t, what)

    if kind == "jitter":
        rng = np.random.default_rng(seed)
        _, size = _centres_and_sizes(ds, sample_of_point)
        sigma = probe.value * np.maximum(size, 1e-9)[sample_of_point][:, None]  # (P, 1)
        xy = ds.xy.astype(np.float64) + rng.standard_normal(ds.xy.shape) * sigma
        return _rebuild(ds, xy, lens, n_strokes, ds.t, what)

    if kind == "drop_last":  # the last stroke of every sample that has two or more
        last_stroke = ds.sample_offsets[1:] - 1  # (N,)
        drop = np.zeros(len(lens), bool)
        drop[last_stroke[n_strokes >= 2]] = True
        keep_pt = ~drop[sid]
        t = None if ds.t is None else ds.t[keep_pt]
        return _rebuild(ds, ds.xy[keep_pt], lens[~drop], n_strokes - (n_strokes >= 2), t, what)

    raise ValueError(f"unknown probe kind {kind!r}")
