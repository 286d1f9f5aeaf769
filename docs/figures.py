"""Draw the figures of the documentation from the code as it is now.

``docs/conf.py`` calls :func:`draw_all` when a build starts, so the pictures
cannot go stale: they come from the real normalization pipeline, rasterizer
and augmentation, applied to fixed synthetic ink (``strokes.synthetic``,
generated, not real handwriting; the same seed always gives the same ink).
The output folder, ``docs/_generated/``, is gitignored.

Run by hand with ``python docs/figures.py [OUTDIR]``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

#: The channels figure draws these symbols, each from its own fixed seed.
CHANNEL_SYMBOLS = (("\\alpha", 3), ("\\sqrt", 1), ("4", 2), ("\\pm", 0))
#: Every figure is drawn with this DPI.
DPI = 100

FIGURES = (
    "channels.png",
    "channels-rgb.png",
    "normalize.png",
    "sequence-vs-raster.png",
    "render-options.png",
    "augment.png",
)


def _ink(symbol: str, seed: int) -> list[np.ndarray]:
    """One synthetic sample of ``symbol``: raw ``ink`` ``[x, y, t]`` in canvas pixels."""
    from strokes.synthetic import generate_ink

    return generate_ink(symbol, np.random.default_rng(seed))


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Write ``fig`` to ``path`` atomically (a build reading it never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        _plt().close(fig)


def _plane_names(channels) -> list[str]:
    from rendering.raster import CHANNELS

    names: list[str] = []
    for c in channels:
        names += [c] if CHANNELS[c] == 1 else [f"{c}-x", f"{c}-y"]
    return names


def draw_channels(out: Path) -> None:
    """``channels.png``: every plane of one render, as the CNN sees it (value 0..1)."""
    import rendering
    import strokes

    plt = _plt()
    channels = ("ink", "order", "stroke", "direction")
    names = _plane_names(channels)
    inks = [strokes.normalize(_ink(sym, seed)) for sym, seed in CHANNEL_SYMBOLS]
    images = rendering.rasterize(inks, 32, thickness=1.5, channels=channels)  # (N, 5, 32, 32)
    n, c = images.shape[:2]
    fig, axes = plt.subplots(n, c, figsize=(1.55 * c + 0.6, 1.6 * n), squeeze=False)
    for i in range(n):
        for j in range(c):
            ax = axes[i, j]
            im = ax.imshow(images[i, j], cmap="magma", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(names[j], fontsize=10)
            if j == 0:
                ax.set_ylabel(CHANNEL_SYMBOLS[i][0], fontsize=11, family="monospace")
    fig.colorbar(im, ax=axes, shrink=0.6, label="plane value")
    _save(fig, out / "channels.png")


def draw_channels_rgb(out: Path) -> None:
    """``channels-rgb.png``: the same renders as ``strokes render --channels`` shows them."""
    import rendering
    import strokes
    from rendering.plot import planes_to_rgb

    plt = _plt()
    channels = ("ink", "order", "stroke", "direction")
    inks = [strokes.normalize(_ink(sym, seed)) for sym, seed in CHANNEL_SYMBOLS]
    images = rendering.rasterize(inks, 32, thickness=1.5, channels=channels)
    fig, axes = plt.subplots(len(inks), 1, figsize=(6.2, 1.6 * len(inks)), squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        ax.imshow(planes_to_rgb(images[i], channels), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(CHANNEL_SYMBOLS[i][0], fontsize=11, family="monospace")
        if i == 0:
            ax.set_title("ink  |  order  |  stroke  |  direction", fontsize=10)
    _save(fig, out / "channels-rgb.png")


def _plot_points(ax, pts: np.ndarray, *, title: str, unit_square: bool) -> None:
    """Draw a points-3 array: strokes as lines, points as dots, pen-ups as squares."""
    ends = np.flatnonzero(pts[:, 2] > 0.5)
    start = 0
    for e in ends:
        s = pts[start : e + 1]
        ax.plot(s[:, 0], s[:, 1], "-", lw=1, color="0.55")
        ax.plot(s[:, 0], s[:, 1], ".", ms=3.5)
        start = e + 1
    ax.plot(pts[ends, 0], pts[ends, 1], "s", ms=5, mfc="none", mec="crimson")
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
    if unit_square:
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)  # y down, as on screen
        ax.add_patch(_plt().Rectangle((0, 0), 1, 1, fill=False, lw=0.8, ls=":", color="0.3"))
    else:
        ax.invert_yaxis()
    ax.tick_params(labelsize=7)


def draw_normalize(out: Path) -> None:
    """``normalize.png``: raw ink, then the steps of the normalization pipeline."""
    from strokes.formats import ink_to_points3
    from strokes.normalize import Dedup, Pipeline, Resample, Smooth, UnitSquare

    plt = _plt()
    ink = _ink("\\beta", 5)
    raw = ink_to_points3(ink)
    stages = [
        ("raw ink (canvas pixels)", raw, False),
        ("UnitSquare(margin=0.05)", Pipeline((UnitSquare(margin=0.05),)).apply(ink), True),
        (
            "+ Dedup, Resample(n_points=32)",
            Pipeline((UnitSquare(margin=0.05), Dedup(), Resample(n_points=32))).apply(ink),
            True,
        ),
        (
            "Smooth(2) first, then the rest",
            Pipeline((Smooth(iterations=2), UnitSquare(margin=0.05), Dedup(), Resample(n_points=32))).apply(ink),
            True,
        ),
    ]
    fig, axes = plt.subplots(1, len(stages), figsize=(3.0 * len(stages), 3.2))
    for ax, (title, pts, unit) in zip(axes, stages):
        _plot_points(ax, np.asarray(pts), title=f"{title}\n{len(pts)} points", unit_square=unit)
    _save(fig, out / "normalize.png")


def draw_sequence_vs_raster(out: Path) -> None:
    """``sequence-vs-raster.png``: one symbol as a point sequence and as a 32x32 image."""
    import rendering
    import strokes

    plt = _plt()
    pts = strokes.normalize(_ink("\\alpha", 3), n_points=48)
    image = rendering.rasterize(pts, 32)[0, 0]
    fig = plt.figure(figsize=(11, 3.2))
    grid = fig.add_gridspec(1, 3, width_ratios=(1, 1.7, 1))
    ax = fig.add_subplot(grid[0])
    _plot_points(ax, pts, title="points-3 in the unit square", unit_square=True)
    ax = fig.add_subplot(grid[1])
    k = np.arange(len(pts))
    ax.plot(k, pts[:, 0], label="x")
    ax.plot(k, pts[:, 1], label="y")
    ax.step(k, pts[:, 2], where="mid", label="pen_up", color="crimson")
    ax.set_xlabel("time step (row of the (T, 3) input)", fontsize=8)
    ax.set_title(f"what a sequence model reads: {len(pts)} rows [x, y, pen_up]", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.tick_params(labelsize=7)
    ax = fig.add_subplot(grid[2])
    ax.imshow(image, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title("what a CNN reads: 1 x 32 x 32", fontsize=9)
    ax.set_xticks([0, 31])
    ax.set_yticks([0, 31])
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    _save(fig, out / "sequence-vs-raster.png")


def draw_render_options(out: Path) -> None:
    """``render-options.png``: one ink under several :class:`rendering.RenderConfig` settings."""
    import rendering
    import strokes

    plt = _plt()
    pts = strokes.normalize(_ink("\\sqrt", 1))
    configs = [
        ("size=32 (default)", dict(size=32)),
        ("thickness=1.5", dict(size=32, thickness=1.5)),
        ("thickness=3", dict(size=32, thickness=3.0)),
        ("antialias=False", dict(size=32, antialias=False)),
        ("size=16", dict(size=16)),
        ("size=64, thickness=2", dict(size=64, thickness=2.0)),
    ]
    fig, axes = plt.subplots(1, len(configs), figsize=(1.9 * len(configs), 2.2))
    for ax, (title, options) in zip(axes, configs):
        cfg = rendering.RenderConfig(**options)
        ax.imshow(rendering.rasterize(pts, config=cfg)[0, 0], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    _save(fig, out / "render-options.png")


def draw_augment(out: Path) -> None:
    """``augment.png``: one ink, then eight draws of :func:`rendering.augment.default_augment`."""
    import torch

    import rendering
    import strokes
    from rendering.augment import default_augment

    plt = _plt()
    pts = strokes.normalize(_ink("\\pi", 4))
    n = 8
    batch = np.concatenate([pts] * n)
    offsets = np.arange(n + 1, dtype=np.int64) * len(pts)
    moved = default_augment()(batch, offsets, generator=torch.Generator().manual_seed(0))
    images = np.concatenate(
        [rendering.rasterize(pts, 32, thickness=1.5), rendering.rasterize_batch(moved, offsets, 32, thickness=1.5)]
    )
    fig, axes = plt.subplots(1, n + 1, figsize=(1.3 * (n + 1), 1.6))
    for i, ax in enumerate(axes):
        ax.imshow(images[i, 0], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title("original" if i == 0 else f"draw {i}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    _save(fig, out / "augment.png")


def draw_all(out) -> list[Path]:
    """Draw every figure into ``out`` (created if missing); returns the files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for draw in (
        draw_channels,
        draw_channels_rgb,
        draw_normalize,
        draw_sequence_vs_raster,
        draw_render_options,
        draw_augment,
    ):
        draw(out)
    return [out / name for name in FIGURES]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "_generated"
    for path in draw_all(target):
        print(path)
