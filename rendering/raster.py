"""Rasterize normalized ink (points-3, unit square) into images.

Geometry:
    An image of ``size x size`` pixels covers the unit square: pixel ``(row, col)``
    covers ``x in [col / size, (col + 1) / size)`` and ``y in [row / size,
    (row + 1) / size)``, so row 0 is the top (y points down, as in
    :func:`strokes.normalize` with ``flip_y=False``). Coordinates outside the
    square are allowed; whatever falls outside the image is clipped away.

What is drawn:
    Line segments join consecutive points of a stroke; a one-point stroke is a dot
    of the same thickness; nothing joins one stroke to the next. ``thickness`` is
    the line width in pixels (at least 1, so every point inks the pixel that holds
    it).

    * ``antialias=True``: a pixel's ink is ``clip(thickness / 2 + 0.5 - d, 0, 1)``
      where ``d`` is the distance (in pixels) from its centre to the nearest
      segment: a one-pixel linear ramp, the usual cheap approximation of area
      coverage.
    * ``antialias=False``: a pixel is inked (1.0) when the square of side
      ``thickness`` centred on it meets a segment (a "supercover" line); exact
      ties, such as a point on a pixel corner, count as ink (a 2e-5 pixel slack).

    Segments shorter than about 1e-19 pixels (their squared length underflows
    float32) are drawn as dots.

    Overlaps compose by max, never by sum, so ink stays in [0, 1].

Channels:
    ``channels`` picks the planes of the output, in order (see :data:`rendering.CHANNELS`):

    ``"ink"``
        the plain image above.
    ``"order"``
        point order as intensity: the k-th of n points of the ink has value
        ``k / n`` (1-based), interpolated along each segment and multiplied by the
        ink coverage, so late parts of the drawing are bright and early ones dim.
        Inks from :func:`strokes.normalize` with ``spacing=`` are evenly spaced,
        which makes this proportional to the distance travelled by the pen.
    ``"stroke"``
        stroke index as intensity: stroke j of m (1-based) has value ``j / m``.
    ``"direction"``
        two planes: the pen direction of each segment, ``(dx / |d| + 1) / 2`` and
        ``(dy / |d| + 1) / 2``, times the coverage (0.5 for dots).

    Where several segments cover a pixel, every plane takes the max over them of
    ``coverage * value``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._kernel import CHANNELS, _NumpyOps, _TorchOps, rasterize_ragged

log = logging.getLogger(__name__)

__all__ = [
    "CHANNELS",
    "RenderConfig",
    "rasterize",
    "rasterize_batch",
    "rasterize_dataset",
    "rasterize_torch",
    "render_image_dataset",
]

MAX_SIZE = 1024


@dataclass(frozen=True)
class RenderConfig:
    """How to render: travels with a model checkpoint (``to_config``/``from_config``)."""

    size: int = 32  #: image side in pixels
    thickness: float = 1.0  #: line width in pixels (>= 1)
    antialias: bool = True  #: a one-pixel linear ramp at the line edge, or (False) hard 0/1 pixels
    channels: tuple[str, ...] = ("ink",)  #: planes of the output, see CHANNELS

    def __post_init__(self):
        if isinstance(self.channels, str):
            object.__setattr__(self, "channels", (self.channels,))
        else:
            object.__setattr__(self, "channels", tuple(self.channels))
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)):
            raise TypeError(f"size must be an int, got {type(self.size).__name__}")
        if not 1 <= self.size <= MAX_SIZE:
            raise ValueError(f"size must be in [1, {MAX_SIZE}], got {self.size}")
        if not isinstance(self.thickness, (int, float, np.floating, np.integer)) or isinstance(
            self.thickness, bool
        ):
            raise TypeError(f"thickness must be a number, got {type(self.thickness).__name__}")
        if not (1.0 <= float(self.thickness) <= self.size):
            raise ValueError(
                f"thickness is in pixels and must be in [1, size={self.size}], got {self.thickness}"
            )
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "thickness", float(self.thickness))
        object.__setattr__(self, "antialias", bool(self.antialias))
        if not self.channels:
            raise ValueError(f"channels must name at least one of {sorted(CHANNELS)}")
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}; valid channels: {sorted(CHANNELS)}")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels must not repeat, got {list(self.channels)}")

    @property
    def n_planes(self) -> int:
        """C, the number of image planes (``direction`` takes two)."""
        return sum(CHANNELS[c] for c in self.channels)

    def to_config(self) -> dict:
        """The config as plain JSON data (``channels`` as a list)."""
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_config(cls, config: dict) -> "RenderConfig":
        """Rebuild a config from :meth:`to_config`; unknown keys raise ``ValueError``."""
        unknown = set(config) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown render option(s) {sorted(unknown)}")
        return cls(**config)


def _config(size, options) -> RenderConfig:
    cfg = options.pop("config", None)
    if options and cfg is not None:
        raise TypeError("pass either config= or individual options, not both")
    if cfg is not None:
        if not isinstance(cfg, RenderConfig):
            raise TypeError(f"config must be a RenderConfig, got {type(cfg).__name__}")
        return cfg
    unknown = set(options) - {"thickness", "antialias", "channels"}
    if unknown:
        raise TypeError(
            f"unknown option(s) {sorted(unknown)}; valid: size, thickness, antialias, channels, config"
        )
    return RenderConfig(size=size, **options)


def _check_points(points: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points)
    offsets = np.asarray(offsets)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (P, 3) [x, y, pen_up], got {points.shape}")
    if not np.issubdtype(points.dtype, np.number) or np.iscomplexobj(points):
        raise TypeError(f"points must be real numbers, got dtype {points.dtype}")
    if offsets.ndim != 1 or len(offsets) < 1 or not np.issubdtype(offsets.dtype, np.integer):
        raise ValueError("offsets must be a 1-D integer array of N + 1 entries")
    if offsets[0] != 0 or offsets[-1] != len(points) or np.any(np.diff(offsets) < 0):
        raise ValueError(
            f"offsets must rise from 0 to len(points)={len(points)}, got {offsets[0]}..{offsets[-1]}"
        )
    pts = points.astype(np.float32, copy=False)
    if not np.isfinite(pts[:, :2]).all():
        bad = int(np.searchsorted(offsets, np.flatnonzero(~np.isfinite(pts[:, :2]).all(1))[0], "right")) - 1
        raise ValueError(f"ink {bad} has a NaN or infinite coordinate (after conversion to float32)")
    return pts, offsets.astype(np.int64, copy=False)


def rasterize_batch(points: np.ndarray, offsets: np.ndarray, size: int = 32, **options) -> np.ndarray:
    """Render a ragged batch of normalized inks: the fast path, no Python loop per sample or segment.

    Args:
        points: ``(P, 3)`` ``[x, y, pen_up]``, the points of all inks one after another.
        offsets: ``(N + 1,)`` integers; ink i is ``points[offsets[i]:offsets[i + 1]]``
            (an empty ink gives a blank image).
        size: image side in pixels.
        **options: ``thickness``, ``antialias``, ``channels`` or ``config``, as for
            :func:`rasterize`.

    Returns:
        float32 ``(N, C, size, size)``, values in [0, 1].
    """
    cfg = _config(size, options)
    pts, offs = _check_points(points, offsets)
    return _render(_NumpyOps(), pts, offs, cfg)


def _render(ops, points, offsets, cfg: RenderConfig):
    """Run the kernel with ``ops`` and shape its output as ``(N, C, size, size)``."""
    flat = rasterize_ragged(
        ops,
        points,
        offsets,
        size=cfg.size,
        thickness=cfg.thickness,
        antialias=cfg.antialias,
        channels=cfg.channels,
    )
    return flat.reshape(int(offsets.shape[0]) - 1, cfg.n_planes, cfg.size, cfg.size)


def _as_ink_list(inks) -> list[np.ndarray]:
    if isinstance(inks, np.ndarray) and inks.ndim == 2:
        inks = [inks]
    elif isinstance(inks, np.ndarray) and inks.ndim == 3:
        inks = list(inks)
    elif isinstance(inks, np.ndarray):
        raise ValueError(
            f"inks must be one (n, 3) [x, y, pen_up] array, a stack (N, n, 3) or a sequence of them, "
            f"got an array of shape {inks.shape}"
        )
    elif isinstance(inks, (str, bytes)) or not isinstance(inks, Sequence):
        raise TypeError(
            "inks must be one (n, 3) [x, y, pen_up] array or a sequence of them "
            f"(see strokes.normalize), got {type(inks).__name__}"
        )
    out = []
    for i, ink in enumerate(inks):
        a = np.asarray(ink)
        if a.ndim != 2 or a.shape[1] != 3 or a.shape[0] == 0:
            raise ValueError(
                f"ink {i}: expected a non-empty (n, 3) [x, y, pen_up] array "
                f"(normalize raw strokes with strokes.normalize), got shape {a.shape}"
            )
        out.append(a)
    return out


def rasterize(inks, size: int = 32, **options) -> np.ndarray:
    """Render normalized inks into float32 images of shape ``(N, C, size, size)``.

    Args:
        inks: one ``(n, 3)`` ``[x, y, pen_up]`` array in the unit square (then
            N = 1) or a sequence of them, as :func:`strokes.normalize` returns.
        size: image side in pixels.
        thickness: line width in pixels (default 1, at least 1).
        antialias: anti-aliased edges (default True) or hard 0/1 pixels.
        channels: planes to draw, default ``("ink",)``; see :mod:`rendering.raster`.
        config: a :class:`RenderConfig` instead of the three options above.

    Returns:
        float32 ``(N, C, size, size)``, values in [0, 1]; see :mod:`rendering.raster`
        for the geometry.

    Raises:
        ValueError: for malformed inks (wrong shape, NaN or infinite coordinates)
            or options out of range.
        TypeError: for unknown options or inks of the wrong type.
    """
    ink_list = _as_ink_list(inks)
    lengths = np.fromiter((len(a) for a in ink_list), dtype=np.int64, count=len(ink_list))
    offsets = np.zeros(len(ink_list) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    points = (
        np.concatenate([a.astype(np.float32, copy=False) for a in ink_list])
        if ink_list
        else np.zeros((0, 3), np.float32)
    )
    return rasterize_batch(points, offsets, size, **options)


def rasterize_dataset(
    ds,
    pipeline=None,
    size: int = 32,
    *,
    batch_size: int = 4096,
    progress: bool | None = None,
    **options,
) -> np.ndarray:
    """Normalize and render every sample of a dataset, in chunks, straight from its ragged arrays.

    Args:
        ds: a :class:`strokes.StrokeDataset`.
        pipeline: the normalization; default :func:`strokes.normalize.default_pipeline`.
        size: image side in pixels.
        batch_size: samples normalized and rendered per chunk.
        progress: show a progress bar (None: only on a terminal).
        **options: ``thickness``, ``antialias``, ``channels`` or ``config``, as for
            :func:`rasterize`.

    Returns:
        float32 ``(len(ds), C, size, size)``.
    """
    from strokes._util import tqdm_disable
    from strokes.normalize import PenBatch, default_pipeline

    from tqdm.auto import tqdm

    cfg = _config(size, options)
    if pipeline is None:
        pipeline = default_pipeline()
    if not hasattr(pipeline, "apply_dataset"):
        raise TypeError(f"pipeline must be a strokes.normalize.Pipeline, got {type(pipeline).__name__}")
    batch: PenBatch = pipeline.apply_dataset(ds)
    out = np.empty((len(batch), cfg.n_planes, cfg.size, cfg.size), dtype=np.float32)
    starts = range(0, len(batch), batch_size)
    for s in tqdm(starts, desc="render", unit="batch", disable=tqdm_disable(progress)):
        e = min(s + batch_size, len(batch))
        offs = batch.offsets[s : e + 1]
        out[s:e] = rasterize_batch(batch.data[offs[0] : offs[-1]], offs - offs[0], config=cfg)
    return out


def render_image_dataset(ds, render=None, pipeline=None, *, batch_size: int = 4096, progress: bool | None = None):
    """Render a :class:`strokes.StrokeDataset` into a :class:`strokes.ImageDataset` (ink bright).

    Args:
        ds: the strokes.
        render: a :class:`RenderConfig` (or its config dict) with one channel;
            default ``RenderConfig()`` (32×32 anti-aliased ink).
        pipeline: the :class:`strokes.normalize.Pipeline` applied first;
            default :func:`strokes.normalize.default_pipeline`.
        batch_size: samples rendered per batch.
        progress: show a progress bar (None: when on a terminal).

    Returns:
        An :class:`strokes.ImageDataset` with the same labels, vocab, writers and sources.
    """
    from strokes.images import ImageDataset

    cfg = RenderConfig() if render is None else (render if isinstance(render, RenderConfig) else RenderConfig.from_config(render))
    if cfg.n_planes != 1:
        raise ValueError(f"an image dataset holds one plane per image; render channels {list(cfg.channels)} make {cfg.n_planes}")
    images = rasterize_dataset(ds, pipeline, cfg.size, config=cfg, batch_size=batch_size, progress=progress)[:, 0]  # (N, S, S)
    return ImageDataset.from_rendered(ds, images, info={"render": cfg.to_config()})


def rasterize_torch(points, offsets=None, *, lengths=None, size: int = 32, **options):
    """The torch backend: render on the device of ``points``; returns a tensor there.

    Args:
        points: a tensor in one of two layouts: ragged ``(P, 3)`` with ``offsets``,
            or padded ``(B, T, 3)`` with ``lengths``.
        offsets: ``(N + 1,)`` for ragged points; ink i is
            ``points[offsets[i]:offsets[i + 1]]`` (default: one ink of all P points).
        lengths: ``(B,)`` for padded points; rows past a sample's length are
            ignored (default: all T rows count).
        size: image side in pixels.
        **options: ``thickness``, ``antialias``, ``channels`` or ``config``, as for
            :func:`rasterize`.

    Returns:
        float32 ``(N, C, size, size)`` on ``points.device``, equal to the numpy
        backend within 1e-5 for the same options.
    """
    import torch

    cfg = _config(size, options)
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"points must be a torch.Tensor, got {type(points).__name__}")
    device = points.device
    if points.ndim == 3:
        if offsets is not None:
            raise ValueError("padded (B, T, 3) points take lengths=, not offsets")
        b, t, _ = points.shape
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.int64, device=device)
        lengths = torch.as_tensor(lengths, device=device).to(torch.int64)
        if lengths.shape != (b,) or bool(((lengths < 0) | (lengths > t)).any()):
            raise ValueError(f"lengths must be (B,) = ({b},) values in [0, {t}]")
        mask = torch.arange(t, device=device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
        points = points[mask]  # (P, 3), row-major keeps sample order
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64, device=device), torch.cumsum(lengths, 0)])
    elif points.ndim == 2:
        if offsets is None:
            offsets = torch.tensor([0, points.shape[0]], dtype=torch.int64, device=device)
        offsets = torch.as_tensor(offsets, device=device).to(torch.int64)
    else:
        raise ValueError(f"points must be (P, 3) with offsets or (B, T, 3) with lengths, got {tuple(points.shape)}")
    if points.shape[-1] != 3:
        raise ValueError(f"points must end in [x, y, pen_up], got last dim {points.shape[-1]}")
    if offsets.ndim != 1 or int(offsets[0]) != 0 or int(offsets[-1]) != points.shape[0] or bool(
        (offsets[1:] < offsets[:-1]).any()
    ):
        raise ValueError(f"offsets must rise from 0 to len(points)={points.shape[0]}")
    pts = points.to(torch.float32)
    if not bool(torch.isfinite(pts[:, :2]).all()):
        raise ValueError("points have a NaN or infinite coordinate")
    with torch.no_grad():
        return _render(_TorchOps(device), pts, offsets, cfg)
