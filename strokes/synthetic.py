"""Procedurally generated, handwriting-like online strokes for a few dozen symbols.

.. warning::
   Everything this module produces is **synthetic**. It is generated from
   hand-written geometric templates plus random distortions; it is *not*
   real handwriting, was never written by a person, and must never be
   reported, published or passed off as real data. Datasets built here carry
   ``synthetic=True`` and ``info["format"] == "synthetic"``, and their writers
   are called ``synth-wNN``. Use it for tests, smoke runs and demos; measure
   models on real data (CROHME, detexify).

How a sample is made:

1. Every symbol (:data:`SYMBOLS`, LaTeX names as in CROHME) has one or more
   template *variants* (e.g. a one-stroke and a two-stroke ``4``), each a
   list of strokes built from polylines, elliptic arcs and Bézier curves in a
   unit box (y down, height about 1), densely resampled by arc length. A
   variant lists the stroke orders people use (``+`` vertical-first or
   horizontal-first, ``=`` top-first or bottom-first) and which strokes may
   be drawn backwards.
2. A :class:`WriterStyle` holds one writer's habits: slant, aspect ratio,
   glyph size, wobble and jitter amplitudes, pen speed, device sampling
   interval, pen-up pauses, and a habit seed that fixes, per symbol, the
   variant, stroke order and stroke directions the writer usually picks.
3. Per sample, on top of the style: a small rotation and slant/size/aspect
   change, a smooth random displacement field (low-frequency wobble), a
   small displacement of each stroke along its own path and of each later
   stroke as a whole (pen-placement error), slightly trimmed stroke ends,
   and per-point sensor jitter. The glyph is then placed at a random
   position of a pixel "canvas" (coordinates within about 50..400).
4. Each stroke is resampled in time. The pen slows down in tight curves
   (the two-thirds power law of handwriting) and at both ends of a stroke;
   points come at the writer's device sampling interval, uniform in time, so
   they crowd where the pen is slow (10 to 60 points per stroke; the interval
   stretches for long strokes). Timestamps are integer milliseconds from an
   epoch-like base (about ``1.4e12``), with pen-up pauses between strokes and
   a session clock per writer.

All randomness comes from :func:`numpy.random.default_rng` generators
derived from the ``seed`` (never the global RNG): the same arguments give
byte-identical arrays. Work is vectorized per sample and per stroke; there is
no Python loop over points.

Example:
    >>> from strokes.synthetic import generate
    >>> ds = generate(n_writers=2, samples_per_writer=1, symbols=["+", "\\\\alpha"])
    >>> len(ds), ds.synthetic
    (4, True)
"""

from __future__ import annotations

import functools
import logging
import math
import zlib
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from ._util import tqdm_disable
from .dataset import DatasetBuilder, StrokeDataset

log = logging.getLogger(__name__)

__all__ = ["SYMBOLS", "WriterStyle", "generate", "generate_ink", "parse_spec"]

GENERATOR_VERSION = 1  # bump when the output for a given seed changes

_DENSE = 128  # points per template stroke, uniform in arc length
_CANVAS = (50.0, 400.0)  # glyphs are placed inside this square of the pixel canvas
_EPOCH_MS = 1.4e12  # timestamps start near this epoch-like value (May 2014), in ms
_MIN_POINTS, _MAX_POINTS = 10, 60  # points per generated stroke
_MIN_STROKE_MS = 60.0
_PATH_FRACTION = np.linspace(0.0, 1.0, _DENSE)[None, :, None]  # position along a dense stroke
# the pen starts and stops slowly: speed factor per dense segment, 0.3 at the ends, 1 mid-stroke
_END_SLOWDOWN = 0.3 + 0.7 * np.sqrt(np.sin(np.pi * (np.arange(_DENSE - 1) + 0.5) / (_DENSE - 1)))


# --------------------------------------------------------------------------- template geometry
def _pts(*points: tuple[float, float]) -> np.ndarray:
    """A polyline through the given vertices."""
    return np.asarray(points, dtype=np.float64)


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float) -> np.ndarray:
    """An elliptic arc from angle ``a0`` to ``a1`` degrees.

    The y axis points down, so increasing angles run clockwise on screen:
    0 is the rightmost point, 90 the bottom, -90 the top.
    """
    n = max(8, int(abs(a1 - a0) / 4) + 1)
    a = np.radians(np.linspace(a0, a1, n))
    return np.column_stack([cx + rx * np.cos(a), cy + ry * np.sin(a)])


def _bezier(p0, p1, p2, p3, n: int = 40) -> np.ndarray:
    """A cubic Bézier curve through control points ``p0..p3``."""
    u = np.linspace(0.0, 1.0, n)[:, None]
    c = [np.asarray(p, dtype=np.float64) for p in (p0, p1, p2, p3)]
    return (1 - u) ** 3 * c[0] + 3 * (1 - u) ** 2 * u * c[1] + 3 * (1 - u) * u**2 * c[2] + u**3 * c[3]


def _densify(points: np.ndarray, n: int = _DENSE) -> np.ndarray:
    """Resample a polyline to ``n`` points evenly spaced along its length."""
    seg = np.hypot(*np.diff(points, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    keep = np.concatenate([[True], seg > 1e-12])  # np.interp wants increasing abscissae
    cum, points = cum[keep], points[keep]
    s = np.linspace(0.0, cum[-1], n)
    return np.column_stack([np.interp(s, cum, points[:, 0]), np.interp(s, cum, points[:, 1])])


def _stroke(*parts: np.ndarray) -> np.ndarray:
    """One pen-down stroke: the parts joined end to end, densely resampled."""
    return _densify(np.concatenate(parts))


@dataclass(frozen=True, eq=False)
class _Variant:
    """One way to write a symbol: dense strokes, allowed orders, reversible strokes."""

    strokes: tuple[np.ndarray, ...]
    orders: tuple[tuple[int, ...], ...]  # the first is the most common
    reversible: tuple[int, ...]  # stroke indices (in template order) drawn either way
    weight: float
    even: bool = False  # True: all orders are equally common (no "usual" order)


def _v(
    *strokes: np.ndarray, orders=None, rev: Sequence[int] = (), weight: float = 1.0, even: bool = False
) -> _Variant:
    ident = tuple(range(len(strokes)))
    orders = tuple(tuple(o) for o in orders) if orders else (ident,)
    if any(sorted(o) != list(ident) for o in orders):
        raise ValueError("every stroke order must be a permutation of the strokes")
    return _Variant(tuple(strokes), orders, tuple(rev), float(weight), even)


def _mirror(variant: _Variant, width: float) -> _Variant:
    """The variant mirrored left-right within ``[0, width]``."""
    flip = np.array([-1.0, 1.0])
    strokes = tuple(s * flip + np.array([width, 0.0]) for s in variant.strokes)
    return _Variant(strokes, variant.orders, variant.reversible, variant.weight, variant.even)


def _lemniscate(cx, cy, w, h, u0, u1, *, vertical: bool) -> np.ndarray:
    """A lemniscate of Gerono (a figure-eight) from parameter ``u0`` to ``u1`` (radians)."""
    u = np.linspace(u0, u1, max(16, int(abs(u1 - u0) * 20)))
    a, b = np.cos(u), np.sin(u) * np.cos(u)
    if vertical:  # a tall 8 with a smaller upper loop
        top = a < 0
        y = np.where(top, 0.45, 0.55) * a
        x = np.where(top, 0.85, 1.0) * b * 1.6
        return np.column_stack([cx + w * x, cy + h * y])
    return np.column_stack([cx + w * a, cy + h * b])


def _build_templates() -> dict[str, tuple[_Variant, ...]]:
    """Every symbol's template variants (unit box, y down, height about 1)."""
    T: dict[str, tuple[_Variant, ...]] = {}
    S = _stroke

    # ------------------------------------------------------------------ digits
    T["0"] = (
        _v(S(_arc(0.3, 0.5, 0.28, 0.5, -80, -445)), rev=(0,)),  # counter-clockwise, small overlap
    )
    T["1"] = (
        _v(S(_pts((0.3, 0.0), (0.28, 1.0))), weight=1.0),
        _v(S(_pts((0.08, 0.25), (0.32, 0.0), (0.3, 1.0))), weight=1.5),
        _v(S(_pts((0.08, 0.25), (0.32, 0.0), (0.3, 1.0))), S(_pts((0.05, 1.0), (0.55, 1.0))), weight=0.5),
    )
    T["2"] = (
        _v(S(_arc(0.3, 0.28, 0.28, 0.28, -165, 30), _pts((0.0, 1.0), (0.62, 1.0)))),
        _v(S(_arc(0.3, 0.28, 0.28, 0.28, -165, 20), _bezier((0.56, 0.38), (0.4, 0.7), (0.1, 0.85), (0.0, 1.0)),
             _bezier((0.0, 1.0), (0.15, 0.9), (0.35, 1.05), (0.65, 0.97))), weight=0.6),
    )
    T["3"] = (
        _v(S(_arc(0.3, 0.25, 0.27, 0.25, -160, 105), _arc(0.3, 0.74, 0.3, 0.26, -105, 150))),
        _v(S(_pts((0.02, 0.02), (0.55, 0.0), (0.22, 0.42)), _arc(0.3, 0.72, 0.3, 0.28, -105, 150)), weight=0.4),
    )
    T["4"] = (
        _v(S(_pts((0.45, 0.0), (0.0, 0.65), (0.68, 0.65))), S(_pts((0.5, 0.28), (0.5, 1.0)))),
        _v(S(_pts((0.1, 0.0), (0.05, 0.6), (0.62, 0.6))), S(_pts((0.45, 0.05), (0.45, 1.0))), weight=0.8),
    )
    T["5"] = (
        _v(S(_pts((0.1, 0.0), (0.06, 0.47)), _arc(0.28, 0.7, 0.3, 0.28, -140, 150)),
           S(_pts((0.1, 0.0), (0.58, 0.0))), orders=((0, 1), (1, 0))),
        _v(S(_pts((0.58, 0.0), (0.1, 0.0), (0.06, 0.47)), _arc(0.28, 0.7, 0.3, 0.28, -140, 150)), weight=0.5),
    )
    T["6"] = (
        _v(S(_bezier((0.52, 0.02), (0.2, 0.02), (0.02, 0.3), (0.02, 0.72)), _arc(0.3, 0.72, 0.28, 0.27, 180, -170))),
    )
    T["7"] = (
        _v(S(_pts((0.0, 0.02), (0.62, 0.0), (0.22, 1.0)))),
        _v(S(_pts((0.0, 0.02), (0.62, 0.0), (0.22, 1.0))), S(_pts((0.18, 0.52), (0.55, 0.5))), weight=0.4),
    )
    T["8"] = (
        _v(S(_lemniscate(0.3, 0.5, 0.26, 1.0, np.pi + 0.3, -np.pi + 0.1, vertical=True))),
        _v(S(_arc(0.3, 0.24, 0.22, 0.24, -30, -270), _arc(0.3, 0.74, 0.28, 0.26, -90, 270),
             _arc(0.3, 0.24, 0.22, 0.24, 90, -20)), weight=0.6),
    )
    T["9"] = (
        _v(S(_arc(0.3, 0.27, 0.26, 0.27, -10, -370), _pts((0.56, 0.27), (0.5, 1.0)))),
        _v(S(_arc(0.3, 0.27, 0.26, 0.27, -10, -370),
             _bezier((0.56, 0.27), (0.58, 0.7), (0.45, 1.0), (0.15, 0.95))), weight=0.6),
    )

    # --------------------------------------------------------- operators and relations
    T["+"] = (
        _v(S(_pts((0.0, 0.3), (0.6, 0.3))), S(_pts((0.3, 0.0), (0.3, 0.6))), orders=((0, 1), (1, 0)), even=True),
    )
    T["-"] = (_v(S(_pts((0.0, 0.0), (0.6, 0.0))), rev=(0,)),)
    T["="] = (
        _v(S(_pts((0.0, 0.0), (0.6, 0.0))), S(_pts((0.0, 0.25), (0.6, 0.25))), orders=((0, 1), (1, 0))),
    )
    T["\\pm"] = (
        _v(S(_pts((0.0, 0.3), (0.6, 0.3))), S(_pts((0.3, 0.0), (0.3, 0.6))), S(_pts((0.0, 0.82), (0.6, 0.82))),
           orders=((0, 1, 2), (1, 0, 2), (2, 0, 1))),
    )
    T["\\times"] = (
        _v(S(_pts((0.0, 0.0), (0.42, 0.42))), S(_pts((0.42, 0.0), (0.0, 0.42))),
           orders=((0, 1), (1, 0)), rev=(1,), even=True),
    )
    T["<"] = (_v(S(_pts((0.5, 0.0), (0.0, 0.32), (0.5, 0.64)))),)
    T[">"] = (_mirror(T["<"][0], 0.5),)
    T["/"] = (_v(S(_pts((0.42, 0.0), (0.0, 1.0)))),)
    T["\\rightarrow"] = (
        _v(S(_pts((0.0, 0.2), (1.0, 0.2))), S(_pts((0.8, 0.02), (1.0, 0.2), (0.8, 0.38)))),
        _v(S(_pts((0.0, 0.2), (1.0, 0.2), (0.8, 0.02))), S(_pts((1.0, 0.2), (0.8, 0.38))), weight=0.5),
    )

    # -------------------------------------------------------------------- brackets
    T["("] = (_v(S(_arc(0.45, 0.5, 0.4, 0.55, -112, -248))),)
    T[")"] = (_mirror(T["("][0], 0.5),)
    T["["] = (
        _v(S(_pts((0.3, 0.0), (0.03, 0.0), (0.03, 1.0), (0.3, 1.0)))),
        _v(S(_pts((0.03, 0.0), (0.03, 1.0))), S(_pts((0.03, 0.0), (0.3, 0.0))), S(_pts((0.03, 1.0), (0.3, 1.0))),
           weight=0.3),
    )
    T["]"] = tuple(_mirror(v, 0.33) for v in T["["])

    # --------------------------------------------------------------------- letters
    T["a"] = (
        _v(S(_arc(0.25, 0.3, 0.22, 0.25, -40, -355), _pts((0.47, 0.28), (0.48, 0.04), (0.49, 0.5)),
             _bezier((0.49, 0.5), (0.5, 0.56), (0.55, 0.58), (0.6, 0.55)))),
        _v(S(_arc(0.25, 0.3, 0.22, 0.25, -30, -385)), S(_pts((0.48, 0.03), (0.5, 0.56))), weight=0.6),
    )
    T["b"] = (
        _v(S(_pts((0.05, 0.0), (0.05, 1.0), (0.05, 0.76)), _arc(0.27, 0.76, 0.23, 0.24, 180, 520))),
    )
    T["n"] = (
        _v(S(_pts((0.05, 0.0), (0.05, 0.55), (0.05, 0.22)), _arc(0.26, 0.22, 0.21, 0.2, 180, 360),
             _pts((0.47, 0.22), (0.48, 0.55)))),
    )
    T["x"] = (
        _v(S(_bezier((0.0, 0.0), (0.2, 0.1), (0.3, 0.45), (0.5, 0.55))),
           S(_bezier((0.5, 0.0), (0.35, 0.15), (0.15, 0.4), (0.0, 0.55))), orders=((0, 1), (1, 0)), rev=(1,)),
        _v(S(_arc(0.02, 0.27, 0.24, 0.28, -75, 80)), S(_arc(0.5, 0.27, 0.24, 0.28, -105, -260)), weight=0.6),
    )
    T["y"] = (
        _v(S(_pts((0.0, 0.0), (0.27, 0.5))), S(_pts((0.52, 0.0), (0.2, 0.75)), _bezier(
            (0.2, 0.75), (0.12, 0.95), (0.05, 1.0), (0.0, 0.92)))),
        _v(S(_pts((0.02, 0.0), (0.04, 0.3)), _arc(0.21, 0.3, 0.17, 0.2, 180, 0), _pts((0.38, 0.3), (0.39, 0.0),
             (0.38, 0.82)), _arc(0.24, 0.82, 0.14, 0.16, 0, 165)), weight=0.8),
    )

    # ---------------------------------------------------------------------- greek
    T["\\alpha"] = (  # a loop with two tails crossing on its right ("fish")
        _v(S(_pts((0.68, 0.02), (0.41, 0.48)), _arc(0.25, 0.3, 0.22, 0.26, 45, 315), _pts((0.41, 0.12), (0.68, 0.6))),
           rev=(0,)),
    )
    T["\\beta"] = (
        _v(S(_pts((0.05, 1.25), (0.05, 0.22)), _arc(0.25, 0.22, 0.2, 0.22, 180, 480),
             _arc(0.28, 0.68, 0.26, 0.24, -120, 160))),
    )
    T["\\pi"] = (
        _v(S(_pts((0.0, 0.08), (0.72, 0.04))), S(_pts((0.2, 0.07), (0.16, 0.7))),
           S(_pts((0.5, 0.06), (0.52, 0.6)), _bezier((0.52, 0.6), (0.53, 0.68), (0.58, 0.72), (0.66, 0.66))),
           orders=((0, 1, 2), (1, 2, 0))),
        _v(S(_pts((0.16, 0.7), (0.2, 0.1), (0.72, 0.05))),
           S(_pts((0.5, 0.07), (0.52, 0.6)), _bezier((0.52, 0.6), (0.53, 0.68), (0.58, 0.72), (0.66, 0.66))),
           weight=0.7),
    )
    T["\\theta"] = (
        _v(S(_arc(0.25, 0.5, 0.25, 0.5, -80, -440)), S(_pts((0.02, 0.5), (0.48, 0.5))), rev=(0,)),
        _v(S(_pts((0.02, 0.5), (0.5, 0.5)), _arc(0.25, 0.5, 0.25, 0.5, 0, -380)), weight=0.4),
    )
    T["\\lambda"] = (
        _v(S(_pts((0.05, 0.0), (0.6, 1.0))), S(_pts((0.3, 0.46), (0.0, 1.0)))),
        _v(S(_bezier((0.02, 0.02), (0.15, -0.02), (0.3, 0.3), (0.6, 1.0))), S(_pts((0.3, 0.46), (0.0, 1.0))),
           weight=0.7),
    )

    # -------------------------------------------------------------- big operators
    T["\\int"] = (
        _v(S(_arc(0.38, 0.08, 0.1, 0.07, 0, -180), _pts((0.28, 0.08), (0.16, 0.92)),
             _arc(0.06, 0.92, 0.1, 0.07, 0, 180))),
    )
    T["\\sum"] = (
        _v(S(_pts((0.62, 0.02), (0.0, 0.0), (0.36, 0.5), (0.0, 1.0), (0.64, 1.0)))),
        _v(S(_pts((0.0, 0.0), (0.62, 0.02))), S(_pts((0.0, 0.0), (0.36, 0.5), (0.0, 1.0), (0.64, 1.0))),
           weight=0.3),
    )
    T["\\sqrt"] = (
        _v(S(_pts((0.0, 0.62), (0.1, 0.55), (0.26, 1.0), (0.5, 0.0), (1.1, 0.0)))),
        _v(S(_pts((0.04, 0.6), (0.26, 1.0), (0.5, 0.0), (1.1, 0.0))), weight=0.6),
    )
    T["\\infty"] = (
        _v(S(_lemniscate(0.5, 0.25, 0.5, 0.5, np.pi / 2, np.pi / 2 + 2 * np.pi + 0.15, vertical=False)), rev=(0,)),
    )
    return T


_TEMPLATES: dict[str, tuple[_Variant, ...]] = _build_templates()

SYMBOLS: tuple[str, ...] = tuple(_TEMPLATES)
"""The labels :func:`generate` can produce (LaTeX names, as in CROHME)."""


# --------------------------------------------------------------------------- writer style
@dataclass(frozen=True)
class WriterStyle:
    """One synthetic writer's habits, fixed across all of that writer's samples.

    Attributes:
        slant_deg: shear angle in degrees; positive leans the tops to the right.
        aspect: width scale relative to the template (1 keeps its proportions).
        size_px: base scale, pixels per template unit (roughly the glyph height).
        wobble: amplitude of the smooth low-frequency distortion, in template units.
        jitter_px: standard deviation of the per-point sensor noise, in pixels.
        speed: pen speed in pixels per millisecond.
        sample_ms: device sampling interval in milliseconds.
        pen_up_ms: typical pause between strokes in milliseconds.
        habit_seed: fixes the stroke-order choices: per symbol, the variant, stroke
            order and stroke directions this writer usually uses.
        order_bias: probability that a habit is the most common order/direction.
        consistency: probability that a sample follows the writer's habit rather
            than a fresh random choice.
    """

    slant_deg: float = 8.0
    aspect: float = 1.0
    size_px: float = 70.0
    wobble: float = 0.02
    jitter_px: float = 0.4
    speed: float = 0.35
    sample_ms: float = 12.0
    pen_up_ms: float = 220.0
    habit_seed: int = 0
    order_bias: float = 0.85
    consistency: float = 0.9

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "habit_seed":
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise TypeError(f"WriterStyle.habit_seed must be an int, got {type(value).__name__}")
                if value < 0:
                    raise ValueError(f"WriterStyle.habit_seed must be >= 0, got {value}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"WriterStyle.{f.name} must be a number, got {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"WriterStyle.{f.name} must be finite, got {value}")
        for name in ("aspect", "size_px", "speed", "sample_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"WriterStyle.{name} must be > 0, got {getattr(self, name)}")
        for name in ("wobble", "jitter_px", "pen_up_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"WriterStyle.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("order_bias", "consistency"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"WriterStyle.{name} must be within [0, 1], got {getattr(self, name)}")
        if not -60 < self.slant_deg < 60:
            raise ValueError(f"WriterStyle.slant_deg must be within (-60, 60), got {self.slant_deg}")

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "WriterStyle":
        """A random plausible writer, drawn from ``rng``.

        Args:
            rng: the generator to draw from (it advances).

        Returns:
            A new :class:`WriterStyle`.

        Raises:
            TypeError: when ``rng`` is not a :class:`numpy.random.Generator`.
        """
        _check_rng(rng)
        return cls(
            slant_deg=float(np.clip(rng.normal(6.0, 7.0), -15.0, 30.0)),
            aspect=float(np.exp(rng.normal(0.0, 0.12))),
            size_px=float(rng.uniform(45.0, 110.0)),
            wobble=float(rng.uniform(0.008, 0.035)),
            jitter_px=float(rng.uniform(0.05, 0.35)),
            speed=float(np.exp(rng.normal(np.log(0.35), 0.3))),
            sample_ms=float(rng.uniform(7.0, 15.0)),
            pen_up_ms=float(rng.uniform(120.0, 400.0)),
            habit_seed=int(rng.integers(0, 2**31 - 1)),
            order_bias=float(rng.uniform(0.6, 0.97)),
            consistency=float(rng.uniform(0.8, 0.98)),
        )


def _check_rng(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")


def _symbol_key(symbol: str) -> int:
    """A stable integer per symbol name (independent of which symbols are generated)."""
    return zlib.crc32(symbol.encode("utf-8"))


def _check_symbol(symbol) -> str:
    if not isinstance(symbol, str):
        raise TypeError(f"symbol must be a str, got {type(symbol).__name__}")
    if symbol not in _TEMPLATES:
        raise ValueError(f"unknown symbol {symbol!r}; valid symbols: {' '.join(SYMBOLS)}")
    return symbol


_Choice = tuple[int, tuple[int, ...], frozenset]  # variant index, stroke order, reversed strokes


def _draw_choice(rng: np.random.Generator, variants: tuple[_Variant, ...], order_bias: float) -> _Choice:
    """Pick a variant, a stroke order and the strokes drawn backwards."""
    weights = np.array([v.weight for v in variants])
    vi = int(np.searchsorted(np.cumsum(weights) / weights.sum(), rng.random(), side="right"))
    vi = min(vi, len(variants) - 1)
    var = variants[vi]
    u = rng.random(2 + len(var.reversible))
    if var.even:
        order = var.orders[min(int(u[0] * len(var.orders)), len(var.orders) - 1)]
    elif len(var.orders) == 1 or u[0] < order_bias:
        order = var.orders[0]
    else:
        order = var.orders[1 + int(u[1] * (len(var.orders) - 1))]
    flipped = frozenset(i for i, x in zip(var.reversible, u[2:]) if x < 0.5 * (1.0 - order_bias) + 0.05)
    return vi, order, flipped


@functools.lru_cache(maxsize=4096)
def _habit(habit_seed: int, order_bias: float, symbol: str) -> _Choice:
    """The writer's usual way of writing ``symbol`` (deterministic in its arguments)."""
    rng = np.random.default_rng([habit_seed, _symbol_key(symbol)])
    return _draw_choice(rng, _TEMPLATES[symbol], order_bias)


# --------------------------------------------------------------------------- rendering
def _render(
    variant: _Variant,
    order: tuple[int, ...],
    flipped: frozenset,
    style: WriterStyle,
    rng: np.random.Generator,
    t0: float,
) -> list[np.ndarray]:
    """Distort, place and time one sample of ``variant``; returns (n, 3) [x, y, t] strokes."""
    k, m = len(order), _DENSE
    P = np.stack([variant.strokes[i][::-1] if i in flipped else variant.strokes[i] for i in order])  # (k, m, 2)

    # pen placement error of each later stroke, and wobble along each stroke's own path
    if k > 1:
        P[1:] += rng.normal(0.0, 0.018, (k - 1, 1, 2))
    s = _PATH_FRACTION
    freq = rng.uniform(0.3, 1.0, (k, 1, 2))
    phase = rng.uniform(0.0, 2 * np.pi, (k, 1, 2))
    P += 0.4 * style.wobble * rng.standard_normal((k, 1, 2)) * np.sin(2 * np.pi * freq * s + phase)

    # smooth random displacement field over the glyph (keeps crossings and joins coherent)
    flat = P.reshape(-1, 2)
    n_waves = 3
    F = rng.normal(0.0, 2 * np.pi * 0.6, (2, 2 * n_waves))
    ph = rng.uniform(0.0, 2 * np.pi, 2 * n_waves)
    amp = style.wobble * rng.uniform(0.5, 1.5) / np.sqrt(n_waves)
    flat = flat + amp * np.sin(flat @ F + ph).reshape(-1, 2, n_waves).sum(axis=2)

    # affine: aspect, slant (shear about the centre), rotation, size
    centre = 0.5 * (flat.min(axis=0) + flat.max(axis=0))
    slant = np.radians(style.slant_deg + rng.normal(0.0, 3.0))
    rot = np.radians(rng.normal(0.0, 3.0))
    sx = style.aspect * np.exp(rng.normal(0.0, 0.05))
    size = style.size_px * np.exp(rng.normal(0.0, 0.08))
    shear = np.array([[sx, -np.tan(slant)], [0.0, 1.0]])
    c, sn = np.cos(rot), np.sin(rot)
    A = size * np.array([[c, -sn], [sn, c]]) @ shear
    px = (flat - centre) @ A.T

    # place the glyph on the canvas
    lo, hi = px.min(axis=0), px.max(axis=0)
    room = np.maximum(_CANVAS[1] - _CANVAS[0] - (hi - lo), 0.0)
    px += _CANVAS[0] + rng.uniform(0.0, 1.0, 2) * room - lo
    P = px.reshape(k, m, 2)

    # timing: the pen slows down in curves (two-thirds power law) and at both ends of a
    # stroke; points come at the device's sampling interval, uniform in time
    d = np.diff(P, axis=1)  # (k, m - 1, 2)
    seg = np.hypot(d[..., 0], d[..., 1])
    a, b = d[:, :-1], d[:, 1:]
    turn = np.arctan2(a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0], (a * b).sum(axis=-1))  # (k, m - 2)
    vertex_curv = np.abs(turn) / np.maximum(0.5 * (seg[:, 1:] + seg[:, :-1]), 1e-9)
    curv = np.empty((k, m - 1))  # per segment: the mean of its two ends
    curv[:, 1:-1] = 0.5 * (vertex_curv[:, 1:] + vertex_curv[:, :-1])
    curv[:, 0], curv[:, -1] = vertex_curv[:, 0], vertex_curv[:, -1]
    radius = 1.0 / (curv + 1e-9)
    speed = style.speed * np.exp(rng.normal(0.0, 0.1) + rng.normal(0.0, 0.08, (k, 1)))
    local = speed * np.clip(np.cbrt(radius / (0.5 * style.size_px)), 0.35, 1.25)
    local = local * _END_SLOWDOWN
    cum_t = np.concatenate([np.zeros((k, 1)), np.cumsum(seg / local, axis=1)], axis=1)  # (k, m) ms
    total = cum_t[:, -1]
    trim = rng.uniform(0.0, 0.03, (k, 2)) * total[:, None]
    q0, q1 = trim[:, 0], total - trim[:, 1]
    dur = np.maximum(q1 - q0, _MIN_STROKE_MS)
    npts = np.clip(np.rint(dur / style.sample_ms).astype(np.int64) + 1, _MIN_POINTS, _MAX_POINTS)
    gaps = style.pen_up_ms * np.exp(rng.normal(0.0, 0.3, k))

    out = []
    t = float(t0)
    for j in range(k):
        n = int(npts[j])
        tau = np.linspace(0.0, 1.0, n)
        q = q0[j] + (q1[j] - q0[j]) * tau
        xy = np.column_stack([np.interp(q, cum_t[j], P[j, :, 0]), np.interp(q, cum_t[j], P[j, :, 1])])
        xy += rng.normal(0.0, style.jitter_px, (n, 2))
        ts = np.rint(t + tau * dur[j])
        out.append(np.column_stack([xy, ts]))
        if j + 1 < k:  # pen up: pause plus travel to the next stroke's start
            travel = float(np.hypot(*(P[j + 1, 0] - xy[-1])))
            t = float(ts[-1]) + gaps[j] + travel / (2.0 * style.speed)
    return out


def _sample_ink(symbol: str, rng: np.random.Generator, style: WriterStyle, t0: float) -> list[np.ndarray]:
    variants = _TEMPLATES[symbol]
    if rng.random() < style.consistency:
        vi, order, flipped = _habit(style.habit_seed, style.order_bias, symbol)
    else:
        vi, order, flipped = _draw_choice(rng, variants, style.order_bias)
    return _render(variants[vi], order, flipped, style, rng, t0)


def generate_ink(
    symbol: str,
    rng: np.random.Generator,
    style: WriterStyle | None = None,
    *,
    t0: float | None = None,
) -> list[np.ndarray]:
    """One synthetic sample of ``symbol`` (``ink`` format with timestamps).

    Args:
        symbol: a label from :data:`SYMBOLS`, e.g. ``"\\\\alpha"``.
        rng: the generator all randomness comes from (it advances).
        style: the writer; a random one drawn from ``rng`` when None.
        t0: timestamp of the first point in ms; drawn from ``rng`` near
            ``1.4e12`` when None.

    Returns:
        A list of strokes, each a float64 ``(n, 3)`` array ``[x, y, t]`` with
        10 to 60 points, y pointing down, t in integer milliseconds,
        non-decreasing across the whole sample.

    Raises:
        ValueError: for an unknown symbol or a non-finite ``t0``.
        TypeError: for arguments of the wrong type.
    """
    _check_symbol(symbol)
    _check_rng(rng)
    if style is None:
        style = WriterStyle.sample(rng)
    elif not isinstance(style, WriterStyle):
        raise TypeError(f"style must be a WriterStyle or None, got {type(style).__name__}")
    if t0 is None:
        t0 = _EPOCH_MS + float(rng.integers(0, 10**10))
    elif isinstance(t0, bool) or not isinstance(t0, (int, float, np.integer, np.floating)):
        raise TypeError(f"t0 must be a number of milliseconds, got {type(t0).__name__}")
    elif not math.isfinite(t0):
        raise ValueError(f"t0 must be finite, got {t0}")
    return _sample_ink(symbol, rng, style, float(t0))


# --------------------------------------------------------------------------- datasets
def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_symbols(symbols) -> tuple[str, ...]:
    if symbols is None:
        return SYMBOLS
    if isinstance(symbols, str):
        raise TypeError("symbols must be a sequence of labels, not one string; e.g. symbols=['+', '\\\\alpha']")
    symbols = tuple(symbols)
    if not symbols:
        raise ValueError("symbols is empty; pass None for all of them")
    for s in symbols:
        if not isinstance(s, str):
            raise TypeError(f"symbols must hold str labels, got {type(s).__name__}")
    unknown = [s for s in symbols if s not in _TEMPLATES]
    if unknown:
        raise ValueError(f"unknown symbols {unknown}; valid symbols: {' '.join(SYMBOLS)}")
    dupes = sorted({s for s in symbols if symbols.count(s) > 1})
    if dupes:
        raise ValueError(f"symbols listed more than once: {dupes}")
    return symbols


def generate(
    n_writers: int = 8,
    samples_per_writer: int = 4,
    *,
    seed: int = 0,
    symbols: Sequence[str] | None = None,
    progress: bool | None = None,
    **unused,
) -> StrokeDataset:
    """A synthetic dataset: every writer writes every symbol ``samples_per_writer`` times.

    The data is generated, not real handwriting (``ds.synthetic`` is True).
    Writer ``w`` and its samples of a symbol depend only on ``seed``, ``w``
    and the symbol, not on how many writers or which other symbols are asked
    for, except for timestamps, which follow one session clock per writer.

    Args:
        n_writers: number of synthetic writers (``synth-w00``, ``synth-w01``, ...).
        samples_per_writer: samples per writer and symbol.
        seed: non-negative seed; the same arguments give byte-identical arrays.
        symbols: labels to generate (a subset of :data:`SYMBOLS`); all when None.
        progress: show a progress bar (None: only on a terminal).
        **unused: other loader options (``limit``, ``max_points``, ...) are ignored.

    Returns:
        A :class:`~strokes.dataset.StrokeDataset` with
        ``n_writers * samples_per_writer * len(symbols)`` samples, timestamps,
        ``synthetic=True`` and ``info["format"] == "synthetic"``.

    Raises:
        ValueError: for unknown or repeated symbols, or counts/seed out of range.
        TypeError: for arguments of the wrong type.
    """
    n_writers = _check_count("n_writers", n_writers, 1)
    samples_per_writer = _check_count("samples_per_writer", samples_per_writer, 1)
    seed = _check_count("seed", seed, 0)
    syms = _check_symbols(symbols)
    if unused:
        log.info("synthetic data: ignoring options %s", ", ".join(sorted(unused)))

    params = f"writers={n_writers},samples={samples_per_writer},seed={seed}"
    if syms != SYMBOLS:
        params += f",symbols={len(syms)}"
    builder = DatasetBuilder(name=f"synthetic({params})", synthetic=True)
    for w in tqdm(range(n_writers), desc="synthetic", unit="writer", disable=tqdm_disable(progress)):
        wrng = np.random.default_rng([seed, w])
        style = WriterStyle.sample(wrng)
        clock = _EPOCH_MS + w * 86_400_000.0 + float(wrng.integers(0, 3_600_000))  # one session per writer
        writer, source = f"synth-w{w:02d}", f"synthetic/w{w:02d}"
        for symbol in syms:
            rng = np.random.default_rng([seed, w, _symbol_key(symbol)])
            for _ in range(samples_per_writer):
                ink = _sample_ink(symbol, rng, style, clock)
                builder.add(ink, symbol, writer, source)
                clock = float(ink[-1][-1, 2]) + float(rng.uniform(800.0, 4000.0))  # time to the next symbol
    n = len(builder)
    info = {
        "format": "synthetic",
        "records_in": n,
        "unit": "samples",
        "seed": seed,
        "writers": n_writers,
        "samples_per_writer": samples_per_writer,
        "symbols": list(syms),
        "generator_version": GENERATOR_VERSION,
    }
    ds = builder.build(info)
    log.info("generated %d synthetic samples (%d symbols, %d writers, seed %d)", n, len(syms), n_writers, seed)
    return ds


_SPEC_KEYS: dict[str, str] = {"writers": "n_writers", "samples": "samples_per_writer", "seed": "seed"}


def parse_spec(source: str) -> dict:
    """Parse a ``"synthetic[:key=value,...]"`` source into :func:`generate` arguments.

    Args:
        source: ``"synthetic"``, or e.g. ``"synthetic:writers=4,samples=2,seed=3"``
            (keys ``writers``, ``samples``, ``seed``; integer values).

    Returns:
        The keyword arguments, e.g. ``{"n_writers": 4, "samples_per_writer": 2, "seed": 3}``.

    Raises:
        ValueError: when the source is not a synthetic spec, a key is unknown or
            repeated, or a value is not an integer.
        TypeError: when ``source`` is not a str.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, got {type(source).__name__}")
    head, sep, rest = source.strip().partition(":")
    if head.strip() != "synthetic":
        raise ValueError(f"not a synthetic source: {source!r} (expected 'synthetic[:writers=8,samples=4,seed=0]')")
    out: dict[str, int] = {}
    for item in rest.split(","):
        if not item.strip():
            continue
        key, eq, value = (x.strip() for x in item.partition("="))
        if key not in _SPEC_KEYS:
            raise ValueError(f"unknown key {key!r} in {source!r}; valid keys: {', '.join(_SPEC_KEYS)}")
        if not eq or not value:
            raise ValueError(f"{key!r} needs a value in {source!r}, e.g. {key}=4")
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{key}={value!r} in {source!r} is not an integer") from None
        if _SPEC_KEYS[key] in out:
            raise ValueError(f"key {key!r} given twice in {source!r}")
        out[_SPEC_KEYS[key]] = number
    return out
