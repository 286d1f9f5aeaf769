"""Validation and coercion of user-supplied ink (see :mod:`strokes.formats`).

:func:`as_ink` is the single gate through which ink from users enters the
toolkit (``normalize``, ``recognize``, the JSON loaders' slow path). It accepts
the shapes people actually have and raises a ``ValueError`` (or ``TypeError``)
that says exactly what is wrong otherwise.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["as_ink", "DEFAULT_MAX_POINTS", "InkError"]

#: Default cap on the number of points in one ink; larger input is refused.
DEFAULT_MAX_POINTS = 100_000
#: The largest |x| or |y| accepted: far past any device, far below where float64 arithmetic overflows.
MAX_COORDINATE = 1e15


class InkError(ValueError):
    """Malformed ink. A ``ValueError`` whose message says what is wrong."""


def _stroke_from_dicts(stroke: list, si: int) -> np.ndarray:
    has_t = "t" in stroke[0]
    rows = []
    for pi, p in enumerate(stroke):
        if not isinstance(p, dict):
            raise InkError(f"stroke {si}, point {pi}: mixes {{x, y}} dicts with {type(p).__name__}")
        if "x" not in p or "y" not in p:
            raise InkError(f"stroke {si}, point {pi}: a point dict needs keys 'x' and 'y', got {sorted(p)}")
        if has_t and "t" not in p:
            raise InkError(f"stroke {si}, point {pi}: has no 't' while earlier points do")
        rows.append((p["x"], p["y"], p["t"]) if has_t else (p["x"], p["y"]))
    return _numeric(rows, si)


def _has_bool(obj: Any) -> bool:
    """True when a nested list of points holds a bool (numpy would silently read it as 0/1)."""
    if isinstance(obj, np.ndarray):
        return obj.dtype.kind == "b"
    for p in obj:
        if isinstance(p, bool) or (isinstance(p, (list, tuple)) and any(isinstance(v, bool) for v in p)):
            return True
    return False


def _numeric(obj: Any, si: int) -> np.ndarray:
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biuf":
        arr = obj.astype(np.float64, copy=False)
    else:
        try:
            raw = np.asarray(obj)  # no dtype: strings and None must not be coerced to numbers
        except (TypeError, ValueError) as exc:
            raise InkError(f"stroke {si}: wrong nesting or points that are not numbers ({exc})") from None
        if raw.dtype.kind in "iuf" and _has_bool(obj):
            raise InkError(f"stroke {si}: points must be numbers, got booleans among them")
        if raw.dtype.kind not in "iuf":
            kinds = {"b": "booleans", "U": "strings", "S": "bytes", "O": "values that are not numbers"}
            raise InkError(f"stroke {si}: points must be numbers, got {kinds.get(raw.dtype.kind, raw.dtype.name)}")
        arr = raw.astype(np.float64, copy=False)
    if arr.size == 0:
        raise InkError(f"stroke {si}: is empty")
    if arr.ndim == 1 and arr.size in (2, 3) and not isinstance(obj, np.ndarray):
        raise InkError(f"stroke {si}: is a single point {arr.tolist()}; wrap it in a list of points")
    if arr.ndim != 2:
        raise InkError(
            f"stroke {si}: wrong nesting; expected a list of (x, y) or (x, y, t) points, "
            f"got an array of shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise InkError(f"stroke {si}: is empty")
    if arr.shape[1] not in (2, 3):
        raise InkError(f"stroke {si}: points need 2 (x, y) or 3 (x, y, t) values, got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        raise InkError(f"stroke {si}: contains NaN or infinite values")
    if np.abs(arr[:, :2]).max() > MAX_COORDINATE:
        # finite but so large that extents and scales overflow float64 (1e308 - -1e308 = inf)
        raise InkError(f"stroke {si}: has x or y beyond ±{MAX_COORDINATE:.0e}; no pen or screen writes there")
    return arr


def as_ink(ink: Any, *, max_points: int = DEFAULT_MAX_POINTS) -> list[np.ndarray]:
    """Coerce ``ink`` to a list of float64 ``(n_i, 2)`` or ``(n_i, 3)`` stroke arrays.

    Accepted shapes:

    * a list of strokes, each a list of ``(x, y)`` or ``(x, y, t)`` points;
    * a list of strokes, each a list of ``{"x", "y"[, "t"]}`` dicts (detexify);
    * a list of numpy arrays of shape ``(n, 2)`` or ``(n, 3)``;
    * a single ``(n, 3)`` numpy array in ``points-3`` format ``[x, y, pen_up]``
      (a bare array is always read as points-3; wrap it in a list to pass one
      stroke of ``[x, y, t]`` points).

    Raises:
        InkError: (a ``ValueError``) for empty ink, empty strokes, NaN or inf,
            non-numeric values, wrong nesting, or more than ``max_points`` points.
        TypeError: when ``ink`` is not a sequence at all.
    """
    if isinstance(ink, np.ndarray):
        if ink.ndim != 2 or ink.shape[1] != 3:
            raise InkError(
                f"a bare array must be points-3 [x, y, pen_up] of shape (n, 3), got {ink.shape}; "
                "pass a list of (n, 2) arrays for raw strokes"
            )
        if ink.shape[0] == 0:
            raise InkError("ink is empty: it has no points")
        if ink.shape[0] > max_points:
            raise InkError(f"ink has {ink.shape[0]} points, more than the cap of {max_points}")
        arr = _numeric(ink, 0)
        ends = np.flatnonzero(arr[:-1, 2] > 0.5) + 1
        return [s[:, :2].copy() for s in np.split(arr, ends)]
    if isinstance(ink, (str, bytes, dict)) or not hasattr(ink, "__len__"):
        raise TypeError(f"ink must be a list of strokes, got {type(ink).__name__}")
    if len(ink) == 0:
        raise InkError("ink is empty: it has no strokes")
    out: list[np.ndarray] = []
    total = 0
    for si, stroke in enumerate(ink):
        if isinstance(stroke, (str, bytes, dict)) or isinstance(stroke, numbers.Number):
            raise InkError(f"stroke {si}: wrong nesting; a stroke is a list of points, got {type(stroke).__name__}")
        if not isinstance(stroke, np.ndarray) and len(stroke) and isinstance(stroke[0], dict):
            arr = _stroke_from_dicts(stroke, si)
        else:
            arr = _numeric(stroke, si)
        total += arr.shape[0]
        if total > max_points:
            raise InkError(f"ink has more than {max_points} points (the cap); pass max_points= to raise it")
        out.append(arr)
    widths = {a.shape[1] for a in out}
    if len(widths) > 1:  # some strokes carry t, some do not: keep x, y only
        out = [a[:, :2] for a in out]
    return out
