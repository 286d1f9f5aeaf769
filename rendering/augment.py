"""Random, seeded, batched augmentation of ink, on the torch device.

Augmentations act on points, before rendering, so image models (through
:func:`rendering.rasterize_torch`) and sequence models see the same
distortions. Each one is a small frozen dataclass; :class:`Augment` chains
them. They take either layout used elsewhere in the toolkit:

* ragged: ``points`` ``(P, 3)`` ``[x, y, pen_up]`` with ``offsets`` ``(N + 1,)``;
* padded: ``points`` ``(B, T, 3)`` (no offsets; padding rows are transformed
  too, which is harmless since they are masked later).

Every sample draws its own parameters from the explicit ``generator`` (a
``torch.Generator`` on the points' device), so the same seed gives the same
batch, and nothing touches global RNG state. Inputs are never modified; the
``pen_up`` column is passed through. Results may leave the unit square: the
rasterizer clips safely. Numpy arrays are accepted too (converted to CPU
tensors and converted back).

Example:
    >>> aug = Augment((Affine(rotate=10), Jitter(0.003), Elastic(0.02)))
    >>> g = torch.Generator(device).manual_seed(0)
    >>> points = aug(points, offsets, generator=g)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = [
    "Affine",
    "Jitter",
    "Elastic",
    "StrokeOrder",
    "StrokeDirection",
    "Augment",
    "default_augment",
    "augment_preset",
    "PRESETS",
    "augment_from_config",
]


def _torch():
    import torch

    return torch


def _prepare(points, offsets, generator):
    """-> (xy (P, 2) float32 tensor, pen (P, 1), sample_of (P,), n_samples, restore)."""
    torch = _torch()
    as_numpy = isinstance(points, np.ndarray)
    if as_numpy:
        points = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
        if offsets is not None:
            offsets = torch.from_numpy(np.asarray(offsets, dtype=np.int64))
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"points must be a torch.Tensor or numpy array, got {type(points).__name__}")
    if generator is None or not isinstance(generator, torch.Generator):
        raise TypeError("pass an explicit generator=torch.Generator(device).manual_seed(seed)")
    if points.shape[-1] != 3 or points.ndim not in (2, 3):
        raise ValueError(f"points must be (P, 3) or (B, T, 3) [x, y, pen_up], got {tuple(points.shape)}")
    device = points.device
    if generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device} but points are on {device}")
    shape, dtype = points.shape, points.dtype
    if points.ndim == 3:
        if offsets is not None:
            raise ValueError("padded (B, T, 3) points take no offsets")
        n, t = shape[0], shape[1]
        flat = points.reshape(-1, 3)
        sample_of = torch.arange(n, device=device).repeat_interleave(t)  # (B*T,)
    else:
        if offsets is None:
            offsets = torch.tensor([0, shape[0]], device=device)
        offsets = torch.as_tensor(offsets, device=device).to(torch.int64)
        if offsets.ndim != 1 or int(offsets[0]) != 0 or int(offsets[-1]) != shape[0]:
            raise ValueError(f"offsets must rise from 0 to len(points)={shape[0]}")
        n = offsets.shape[0] - 1
        flat = points
        sample_of = torch.repeat_interleave(torch.arange(n, device=device), offsets[1:] - offsets[:-1])

    def restore(xy):
        out = torch.cat([xy.to(dtype), flat[:, 2:3]], dim=1).reshape(shape)  # (P, 3)
        return out.numpy() if as_numpy else out

    return flat[:, :2].to(torch.float32), sample_of, n, restore


class _Step:
    """A point transform: ``step(points, offsets=None, *, generator)``."""

    name = "step"

    def __call__(self, points, offsets=None, *, generator):
        xy, sample_of, n, restore = _prepare(points, offsets, generator)
        return restore(self.transform(xy, sample_of, n, generator))

    def transform(self, xy, sample_of, n, generator):  # pragma: no cover - interface
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        """The step as plain JSON data: its ``name`` and its fields."""
        d = dataclasses.asdict(self)
        return {"name": self.name, **{k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}}


def _uniform(generator, n, lo, hi, device):
    """(n,) float32 uniform in [lo, hi) from ``generator``."""
    torch = _torch()
    return lo + (hi - lo) * torch.rand(n, generator=generator, device=device)


@dataclass(frozen=True)
class Affine(_Step):
    """Random rotation, shear, anisotropic scale and translation about the square's centre."""

    name = "affine"
    rotate: float = 10.0  #: largest rotation either way, in degrees
    shear: float = 0.15  #: largest horizontal shear either way (x += shear * y)
    scale: tuple[float, float] = (0.9, 1.1)  #: range of the x and y scale factors, drawn independently
    translate: float = 0.05  #: largest shift either way per axis, in fractions of the square

    def __post_init__(self):
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be (lo, hi) with 0 < lo <= hi, got {self.scale}")
        for f in ("rotate", "shear", "translate"):
            if not getattr(self, f) >= 0:
                raise ValueError(f"{f} must be >= 0, got {getattr(self, f)}")

    def transform(self, xy, sample_of, n, generator):
        torch = _torch()
        dev = xy.device
        theta = _uniform(generator, n, -self.rotate, self.rotate, dev) * (math.pi / 180)  # (N,)
        shear = _uniform(generator, n, -self.shear, self.shear, dev)  # (N,)
        log_lo, log_hi = math.log(self.scale[0]), math.log(self.scale[1])
        sx = torch.exp(_uniform(generator, n, log_lo, log_hi, dev))  # (N,) log-uniform
        sy = torch.exp(_uniform(generator, n, log_lo, log_hi, dev))
        shift = _uniform(generator, 2 * n, -self.translate, self.translate, dev).reshape(n, 2)  # (N, 2)
        cos, sin = torch.cos(theta), torch.sin(theta)
        # A = R(theta) @ [[1, shear], [0, 1]] @ diag(sx, sy), per sample: (N, 2, 2)
        a = torch.stack(
            [
                torch.stack([cos * sx, (cos * shear - sin) * sy], dim=-1),
                torch.stack([sin * sx, (sin * shear + cos) * sy], dim=-1),
            ],
            dim=-2,
        )
        centred = xy - 0.5  # (P, 2)
        moved = torch.einsum("pij,pj->pi", a[sample_of], centred)  # (P, 2)
        return moved + 0.5 + shift[sample_of]


@dataclass(frozen=True)
class Jitter(_Step):
    """Independent Gaussian noise on every point."""

    name = "jitter"
    sigma: float = 0.004  #: standard deviation, in fractions of the square

    def __post_init__(self):
        if not self.sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")

    def transform(self, xy, sample_of, n, generator):
        torch = _torch()
        noise = torch.randn(xy.shape, generator=generator, device=xy.device)  # (P, 2)
        return xy + self.sigma * noise


@dataclass(frozen=True)
class Elastic(_Step):
    """A smooth random displacement field: a sum of random plane waves per sample.

    ``d(p) = alpha * sum_k a_k sin(2 pi f_k . p + phi_k)`` per axis, with
    ``|f_k| <= frequency`` cycles per square, amplitudes ``a_k ~ N(0, 1/waves)``.
    Nearby points move together, so strokes bend instead of fraying.
    """

    name = "elastic"
    alpha: float = 0.02  #: typical displacement, in fractions of the square
    waves: int = 4  #: plane waves summed per axis
    frequency: float = 1.5  #: max spatial frequency, cycles per unit square

    def __post_init__(self):
        if not self.alpha >= 0 or not self.frequency >= 0:
            raise ValueError("alpha and frequency must be >= 0")
        if isinstance(self.waves, bool) or not isinstance(self.waves, int) or self.waves < 1:
            raise ValueError(f"waves must be a positive int, got {self.waves!r}")

    def transform(self, xy, sample_of, n, generator):
        torch = _torch()
        dev = xy.device
        k = self.waves
        amp = torch.randn((n, 2, k), generator=generator, device=dev) / math.sqrt(k)  # (N, 2, K)
        freq_r = self.frequency * torch.sqrt(torch.rand((n, 2, k), generator=generator, device=dev))
        freq_a = 2 * math.pi * torch.rand((n, 2, k), generator=generator, device=dev)
        freq = torch.stack([freq_r * torch.cos(freq_a), freq_r * torch.sin(freq_a)], dim=-1)  # (N, 2, K, 2)
        phase = 2 * math.pi * torch.rand((n, 2, k), generator=generator, device=dev)  # (N, 2, K)
        arg = torch.einsum("pakd,pd->pak", freq[sample_of], xy) * (2 * math.pi) + phase[sample_of]  # (P, 2, K)
        return xy + self.alpha * (amp[sample_of] * torch.sin(arg)).sum(-1)  # (P, 2)


class _OrderStep:
    """A step that moves points within each sample (strokes reordered or reversed), not their coordinates.

    Only the ragged layout: ``points`` ``(P, 3)`` with ``offsets``. The ``pen_up``
    column is rebuilt, so each stroke still ends with pen up.
    """

    name = "order-step"

    def __call__(self, points, offsets=None, *, generator):
        torch = _torch()
        as_numpy = isinstance(points, np.ndarray)
        if as_numpy:
            points = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
            offsets = None if offsets is None else torch.from_numpy(np.asarray(offsets, dtype=np.int64))
        _prepare(points, offsets, generator)  # the same checks as every step
        if points.ndim != 2:
            raise ValueError(f"{type(self).__name__} needs ragged (P, 3) points with offsets, not a padded batch")
        if offsets is None:
            offsets = torch.tensor([0, points.shape[0]], device=points.device)
        out = self.reorder(points, torch.as_tensor(offsets, device=points.device).to(torch.int64), generator)
        return out.numpy() if as_numpy else out

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}


def _stroke_index(points, offsets):
    """Per point its stroke; per stroke its first and last point and its sample."""
    torch = _torch()
    n_pts = points.shape[0]
    dev = points.device
    pen = points[:, 2] > 0.5
    ends = pen.clone()
    ends[offsets[1:] - 1] = True  # a sample's last point always closes a stroke
    ends = ends[:n_pts] if n_pts else ends
    stroke_of = torch.cumsum(ends.to(torch.int64), 0) - ends.to(torch.int64)  # (P,)
    last = torch.nonzero(ends).flatten()  # (S,)
    first = torch.cat([torch.zeros(1, dtype=torch.int64, device=dev), last[:-1] + 1]) if len(last) else last
    sample_of_stroke = torch.searchsorted(offsets, first, right=True) - 1  # (S,)
    return stroke_of, first, last, sample_of_stroke


@dataclass(frozen=True)
class StrokeDirection(_OrderStep):
    """Each stroke is reversed (drawn end to start) with probability ``p``: a model learns to ignore direction."""

    name = "stroke_direction"
    p: float = 0.5  #: probability that a stroke is reversed

    def __post_init__(self):
        if not 0 <= self.p <= 1:
            raise ValueError(f"p must be in [0, 1], got {self.p}")

    def reorder(self, points, offsets, generator):
        torch = _torch()
        if points.shape[0] == 0:
            return points.clone()
        stroke_of, first, last, _ = _stroke_index(points, offsets)
        flip = torch.rand(len(first), generator=generator, device=points.device) < self.p  # (S,)
        idx = torch.arange(points.shape[0], device=points.device)
        src = torch.where(flip[stroke_of], first[stroke_of] + last[stroke_of] - idx, idx)  # (P,)
        out = points.clone()
        out[:, :2] = points[src, :2]  # a stroke keeps its place, so pen_up stays where it is
        return out


@dataclass(frozen=True)
class StrokeOrder(_OrderStep):
    """The strokes of a sample are put in a random order, with probability ``p`` per sample."""

    name = "stroke_order"
    p: float = 0.5  #: probability that a sample's strokes are shuffled

    def __post_init__(self):
        if not 0 <= self.p <= 1:
            raise ValueError(f"p must be in [0, 1], got {self.p}")

    def reorder(self, points, offsets, generator):
        torch = _torch()
        if points.shape[0] == 0:
            return points.clone()
        dev = points.device
        stroke_of, first, last, sample_of_stroke = _stroke_index(points, offsets)
        n = offsets.shape[0] - 1
        shuffle = torch.rand(n, generator=generator, device=dev) < self.p  # (N,)
        local = torch.arange(len(first), device=dev, dtype=torch.float64) / max(len(first), 1)  # keeps order
        rnd = torch.rand(len(first), generator=generator, device=dev, dtype=torch.float64)
        key = sample_of_stroke.to(torch.float64) * 2 + torch.where(shuffle[sample_of_stroke], rnd, local)
        perm = torch.argsort(key)  # (S,) strokes, grouped by sample, shuffled within the chosen ones
        lens = (last - first + 1)[perm]  # (S,)
        new_first = torch.cumsum(lens, 0) - lens
        new_stroke = torch.repeat_interleave(torch.arange(len(perm), device=dev), lens, output_size=points.shape[0])
        src = first[perm][new_stroke] + torch.arange(points.shape[0], device=dev) - new_first[new_stroke]  # (P,)
        out = points[src].clone()
        pen = torch.zeros(points.shape[0], dtype=points.dtype, device=dev)
        pen[new_first + lens - 1] = 1  # each stroke, in its new place, ends with pen up
        out[:, 2] = pen
        return out


_STEPS = {cls.name: cls for cls in (Affine, Jitter, Elastic, StrokeOrder, StrokeDirection)}


@dataclass(frozen=True)
class Augment:
    """A chain of augmentation steps, applied in order."""

    steps: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "steps", tuple(self.steps))
        for s in self.steps:
            if not isinstance(s, (_Step, _OrderStep)):
                raise TypeError(f"augmentation steps must be one of {', '.join(c.__name__ for c in _STEPS.values())}, got {s!r}")

    def __call__(self, points, offsets=None, *, generator):
        # stroke order and direction first (they move points), then the coordinate transforms
        for step in self.steps:
            if isinstance(step, _OrderStep):
                points = step(points, offsets, generator=generator)
        xy, sample_of, n, restore = _prepare(points, offsets, generator)
        for step in self.steps:
            if isinstance(step, _Step):
                xy = step.transform(xy, sample_of, n, generator)
        return restore(xy)

    def geometric(self) -> "Augment":
        """The chain without the stroke order and direction steps (what can warp an image)."""
        return Augment(tuple(s for s in self.steps if isinstance(s, _Step)))

    def to_config(self) -> list[dict[str, Any]]:
        """The chain as plain JSON data, one entry per step; :meth:`from_config` reverses it."""
        return [s.to_config() for s in self.steps]

    @classmethod
    def from_config(cls, config: Sequence[dict[str, Any]]) -> "Augment":
        """Rebuild a chain from :meth:`to_config` (see :func:`augment_from_config`)."""
        return augment_from_config(config)


def augment_from_config(config: Sequence[dict[str, Any]]) -> Augment:
    """Rebuild an :class:`Augment` from :meth:`Augment.to_config`."""
    steps = []
    for entry in config:
        entry = dict(entry)
        name = entry.pop("name", None)
        if name not in _STEPS:
            raise ValueError(f"unknown augmentation {name!r}; valid: {sorted(_STEPS)}")
        if "scale" in entry:
            entry["scale"] = tuple(entry["scale"])
        steps.append(_STEPS[name](**entry))
    return Augment(tuple(steps))


def default_augment() -> Augment:
    """Mild distortions that keep every symbol recognizable."""
    return Augment((Affine(), Elastic(), Jitter()))


#: Named augmentation chains (``augment_preset``, ``strokes bench --augment``):
#: ``default`` the mild distortions; ``none``; ``strokes`` the default plus random stroke
#: order and direction (what the ``reversed`` and ``stroke-order`` probes test);
#: ``probes`` that plus the probes' geometry (rotation up to 20 degrees, slant up to 0.3,
#: aspect up to 1.5).
PRESETS = ("default", "none", "strokes", "probes")


def augment_preset(name: str) -> Augment:
    """The augmentation chain called ``name`` (see :data:`PRESETS`)."""
    if name == "default":
        return default_augment()
    if name == "none":
        return Augment(())
    if name == "strokes":
        return Augment((StrokeOrder(0.5), StrokeDirection(0.5), *default_augment().steps))
    if name == "probes":
        return Augment((StrokeOrder(0.5), StrokeDirection(0.5), Affine(rotate=20, shear=0.3, scale=(0.8, 1.25)), Elastic(), Jitter()))
    raise ValueError(f"unknown augmentation preset {name!r}; valid: {', '.join(PRESETS)}")
