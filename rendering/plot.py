"""Pictures of rendered ink: a labelled grid of samples, written with matplotlib."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ._kernel import CHANNELS

__all__ = ["planes_to_rgb", "save_grid"]


def _plane_names(channels: Sequence[str]) -> list[str]:
    names = []
    for c in channels:
        names += [c] if CHANNELS[c] == 1 else [f"{c}-x", f"{c}-y"]
    return names


def planes_to_rgb(image: np.ndarray, channels: Sequence[str]) -> np.ndarray:
    """One rendered sample as an RGB strip, one panel per channel.

    ``ink`` is dark on white. ``order`` and ``stroke`` show the channel value
    (divided by the ink coverage, which recovers the per-point value) as a
    viridis colour, faded by coverage. ``direction`` shows the pen angle as a
    hue.

    Args:
        image: ``(C, S, S)``, as :func:`rendering.rasterize` renders one sample.
        channels: the channels it was rendered with (k of them).

    Returns:
        float ``(S, k * S + k - 1, 3)`` RGB in [0, 1], the panels separated by
        one grey column.
    """
    import matplotlib

    image = np.asarray(image, dtype=np.float32)
    names = _plane_names(channels)
    if image.ndim != 3 or image.shape[0] != len(names):
        raise ValueError(f"image must be ({len(names)}, S, S) for channels {list(channels)}, got {image.shape}")
    s = image.shape[1]
    ink = image[names.index("ink")] if "ink" in names else image.max(0)
    cover = np.clip(ink, 0, 1)[..., None]  # (S, S, 1)
    safe = np.maximum(ink, 1e-6)
    panels = []
    for c in channels:
        if c == "ink":
            rgb = np.repeat(1.0 - cover, 3, axis=-1)
        elif c in ("order", "stroke"):
            value = np.clip(image[names.index(c)] / safe, 0, 1)
            rgb = 1.0 - cover * (1.0 - matplotlib.colormaps["viridis"](value)[..., :3])
        else:  # direction
            dx = image[names.index("direction-x")] / safe * 2 - 1
            dy = image[names.index("direction-y")] / safe * 2 - 1
            hue = (np.arctan2(dy, dx) / (2 * np.pi)) % 1.0
            rgb = 1.0 - cover * (1.0 - matplotlib.colormaps["hsv"](hue)[..., :3])
        panels.append(rgb)
        panels.append(np.full((s, 1, 3), 0.8))
    return np.concatenate(panels[:-1], axis=1)


def save_grid(
    images: np.ndarray,
    titles: Sequence[str],
    path,
    *,
    channels: Sequence[str] = ("ink",),
    columns: int | None = None,
    suptitle: str | None = None,
) -> Path:
    """Write a grid of rendered samples with a title over each, atomically.

    Args:
        images: ``(N, C, S, S)`` renders.
        titles: one title per sample.
        path: the output file; its suffix gives the format (``.png``, ``.pdf``,
            ``.svg``...).
        channels: the channels the images were rendered with (see
            :func:`planes_to_rgb`).
        columns: samples per row (default: about a 3:2 grid).
        suptitle: a title for the whole figure.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from strokes._util import atomic_write

    images = np.asarray(images)
    n = len(images)
    if n == 0:
        raise ValueError("nothing to draw: no samples were selected")
    if len(titles) != n:
        raise ValueError(f"{n} images but {len(titles)} titles")
    k = len(channels)
    cols = columns or max(1, min(n, int(math.ceil(math.sqrt(n * 1.5 / k)))))
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3 * k, rows * 1.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        ax.imshow(planes_to_rgb(images[i], channels), interpolation="nearest")
        ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format=fmt, dpi=110)
    plt.close(fig)
    return path
