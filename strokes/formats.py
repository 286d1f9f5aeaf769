"""Stroke formats and the conversions between them.

This docstring is the one place where the formats are defined. Everything else
in the toolkit refers here.

Formats:
    ``ink`` (raw strokes)
        A list of strokes, each a float array of shape ``(n_i, 2)`` holding
        ``[x, y]`` or ``(n_i, 3)`` holding ``[x, y, t]``. ``t`` is a timestamp in
        milliseconds (any origin). The y axis points down, as on a screen. This is
        what loaders return per sample (``ds[i].strokes``) and what
        :func:`strokes.recognize` accepts, together with the looser shapes handled
        by :func:`strokes.ink.as_ink` (lists of tuples, ``{x, y, t}`` dicts).

    ``points-3`` (absolute pen format, our normalized format)
        One float array of shape ``(n, 3)`` holding ``[x, y, pen_up]``, where
        ``pen_up == 1`` on the *last* point of every stroke and ``0`` elsewhere.
        The last row therefore always has ``pen_up == 1``. :func:`strokes.normalize`
        returns this format, with x and y in the unit square.

    ``stroke-3`` (sketch-rnn deltas)
        One float array of shape ``(n, 3)`` holding ``[dx, dy, pen_up]``. Row 0
        holds the first point itself (its offset from the origin ``(0, 0)``), and
        row ``i > 0`` holds ``p_i - p_{i-1}``. ``pen_up`` is the same as in
        points-3: the pen lifts *after* this point. Summing the deltas gives back
        the absolute points.

    ``stroke-5`` (sketch-rnn with explicit end)
        One float array of shape ``(n + 1, 5)`` holding ``[dx, dy, p1, p2, p3]``:
        ``p1 = 1`` while the pen stays down after the point, ``p2 = 1`` when it
        lifts, and a final row ``[0, 0, 0, 0, 1]`` marks the end of the drawing.

    ``ragged`` (CSR, how datasets store many inks)
        ``xy`` of shape ``(P, 2)`` float32 with all points of all strokes, and
        ``stroke_offsets`` of shape ``(S + 1,)`` int64, so that stroke ``j`` is
        ``xy[stroke_offsets[j]:stroke_offsets[j + 1]]``. A dataset adds
        ``sample_offsets`` of shape ``(N + 1,)`` into the strokes, and an optional
        float64 ``t`` of shape ``(P,)`` (NaN where unknown).

Every conversion comes as an inverse pair, tested as a round trip:

=========================================  =========================================
:func:`ink_to_points3`                     :func:`points3_to_ink`
:func:`points3_to_stroke3`                 :func:`stroke3_to_points3`
:func:`stroke3_to_stroke5`                 :func:`stroke5_to_stroke3`
:func:`ink_to_ragged`                      :func:`ragged_to_ink`
=========================================  =========================================

All functions are pure: they never modify their input.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "ink_to_points3",
    "points3_to_ink",
    "points3_to_stroke3",
    "stroke3_to_points3",
    "stroke3_to_stroke5",
    "stroke5_to_stroke3",
    "ink_to_ragged",
    "ragged_to_ink",
]


def _check_pen_array(arr: np.ndarray, name: str, width: int = 3) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{name} must have shape (n, {width}), got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it needs at least one point")
    return arr


def ink_to_points3(ink: Sequence[np.ndarray], dtype=np.float32) -> np.ndarray:
    """Raw strokes (``ink``) to one ``(n, 3)`` ``[x, y, pen_up]`` array (``points-3``).

    Timestamps, if present, are dropped.
    """
    strokes = [np.asarray(s) for s in ink]
    if not strokes or any(s.ndim != 2 or s.shape[0] == 0 or s.shape[1] < 2 for s in strokes):
        raise ValueError("ink must be a non-empty list of (n, 2) or (n, 3) arrays with n >= 1")
    lengths = np.fromiter((s.shape[0] for s in strokes), dtype=np.int64, count=len(strokes))
    out = np.zeros((int(lengths.sum()), 3), dtype=dtype)
    out[:, :2] = np.concatenate([s[:, :2] for s in strokes])
    out[np.cumsum(lengths) - 1, 2] = 1  # pen lifts after the last point of each stroke
    return out


def points3_to_ink(points: np.ndarray) -> list[np.ndarray]:
    """``points-3`` ``[x, y, pen_up]`` to raw strokes (``ink``) of ``(n_i, 2)`` arrays.

    A missing final pen-up is implied: the last point always ends a stroke.
    """
    points = _check_pen_array(points, "points-3 array")
    ends = np.flatnonzero(points[:-1, 2] > 0.5) + 1  # split after each pen-up
    return [s[:, :2].copy() for s in np.split(points, ends)]


def points3_to_stroke3(points: np.ndarray) -> np.ndarray:
    """``points-3`` (absolute) to ``stroke-3`` (deltas, first row relative to the origin)."""
    points = _check_pen_array(points, "points-3 array")
    out = points.copy()
    out[1:, :2] = points[1:, :2] - points[:-1, :2]  # (n-1, 2) deltas
    return out


def stroke3_to_points3(deltas: np.ndarray) -> np.ndarray:
    """``stroke-3`` (deltas) to ``points-3`` (absolute): the cumulative sum of the deltas."""
    deltas = _check_pen_array(deltas, "stroke-3 array")
    out = deltas.copy()
    out[:, :2] = np.cumsum(deltas[:, :2], axis=0, dtype=np.float64).astype(deltas.dtype, copy=False)
    return out


def stroke3_to_stroke5(deltas: np.ndarray) -> np.ndarray:
    """``stroke-3`` to ``stroke-5``: one-hot pen state plus an end-of-drawing row."""
    deltas = _check_pen_array(deltas, "stroke-3 array")
    n = deltas.shape[0]
    out = np.zeros((n + 1, 5), dtype=deltas.dtype)
    out[:n, :2] = deltas[:, :2]
    up = deltas[:, 2] > 0.5
    out[:n, 2] = ~up  # p1: pen stays down
    out[:n, 3] = up  # p2: pen lifts
    out[n, 4] = 1  # p3: end of drawing
    return out


def stroke5_to_stroke3(s5: np.ndarray) -> np.ndarray:
    """``stroke-5`` to ``stroke-3``: drops the end row and everything after it."""
    s5 = _check_pen_array(s5, "stroke-5 array", width=5)
    end = np.flatnonzero(s5[:, 4] > 0.5)
    n = int(end[0]) if end.size else s5.shape[0]
    if n == 0:
        raise ValueError("stroke-5 array ends before its first point")
    out = np.zeros((n, 3), dtype=s5.dtype)
    out[:, :2] = s5[:n, :2]
    out[:, 2] = s5[:n, 3] > 0.5
    out[n - 1, 2] = 1  # the drawing ends with the pen up
    return out


def ink_to_ragged(ink: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Raw strokes to ``ragged`` ``(xy, stroke_offsets)``; timestamps are dropped."""
    strokes = [np.asarray(s) for s in ink]
    lengths = np.fromiter((s.shape[0] for s in strokes), dtype=np.int64, count=len(strokes))
    offsets = np.zeros(len(strokes) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    xy = (np.concatenate([s[:, :2] for s in strokes]) if strokes else np.zeros((0, 2))).astype(np.float32)
    return xy, offsets


def ragged_to_ink(xy: np.ndarray, stroke_offsets: np.ndarray) -> list[np.ndarray]:
    """``ragged`` ``(xy, stroke_offsets)`` to raw strokes (copies, not views)."""
    offsets = np.asarray(stroke_offsets)
    if offsets.ndim != 1 or offsets.size == 0 or offsets[0] != 0 or offsets[-1] != len(xy):
        raise ValueError("stroke_offsets must start at 0 and end at len(xy)")
    return [a.copy() for a in np.split(np.asarray(xy), offsets[1:-1])]
