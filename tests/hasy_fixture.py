"""Write a small dataset in HASYv2's exact layout: real PNG files and CSVs.

HASYv2 itself cannot be downloaded here, so the tests (and
``benchmarks/bench_hasy.py``) make data in its layout from strokes: each
symbol is drawn with PIL's ``ImageDraw`` (an independent renderer, not the
toolkit's) as black 1-pixel lines on white, fitted into 32×32 with its aspect
ratio kept, the way HASYv2's images look. The CSVs have HASYv2's columns and
relative paths (``hasy-data/v2-00000.png`` in ``hasy-data-labels.csv``,
``../../hasy-data/v2-00000.png`` in ``classification-task/fold-K/*.csv``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def draw_hasy_style(strokes, size: int = 32, margin: float = 1.0) -> Image.Image:
    """One ink (list of (n, 2+) arrays) as a ``size``×``size`` black-on-white greyscale image."""
    xy = np.concatenate([np.asarray(s, dtype=np.float64)[:, :2] for s in strokes])
    lo, hi = xy.min(0), xy.max(0)
    extent = max(float((hi - lo).max()), 1e-9)
    scale = (size - 1 - 2 * margin) / extent
    centre = (lo + hi) / 2
    im = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(im)
    for s in strokes:
        p = (np.asarray(s, dtype=np.float64)[:, :2] - centre) * scale + (size - 1) / 2
        pts = [tuple(map(float, q)) for q in p]
        if len(pts) == 1:
            draw.point(pts[0], fill=0)
        else:
            draw.line(pts, fill=0, width=1)
    return im


def write_hasy(root, ds, *, folds: int = 10, seed: int = 0, size: int = 32) -> Path:
    """Write ``ds`` (a :class:`strokes.StrokeDataset`) as a HASYv2-layout directory at ``root``.

    Symbol ids are assigned in vocab order from 31 (as HASYv2's first id), user
    ids are the writer names' positions. Folds are stratified by class.
    """
    root = Path(root)
    data_dir = root / "hasy-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    symbol_id = {c: 31 + i for i, c in enumerate(ds.vocab)}
    rows = []
    for i in range(len(ds)):
        sample = ds[i]
        name = f"v2-{i:05d}.png"
        draw_hasy_style(sample.strokes, size).save(data_dir / name)
        w = int(ds.writer_ids[i])
        rows.append((name, symbol_id[sample.label], sample.label, w if w >= 0 else 0))
    with open(root / "hasy-data-labels.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "symbol_id", "latex", "user_id"])
        out.writerows([(f"hasy-data/{n}", s, l, u) for n, s, l, u in rows])
    counts = np.bincount(ds.labels, minlength=len(ds.vocab))
    with open(root / "symbols.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["symbol_id", "latex", "training_samples", "test_samples"])
        out.writerows([(symbol_id[c], c, int(counts[k]), 0) for k, c in enumerate(ds.vocab)])
    if folds:
        rng = np.random.default_rng(seed)
        order = np.lexsort((rng.random(len(ds)), ds.labels))  # by class, shuffled within
        fold_of = np.empty(len(ds), np.int64)
        fold_of[order] = np.arange(len(ds)) % folds
        for k in range(folds):
            d = root / "classification-task" / f"fold-{k + 1}"
            d.mkdir(parents=True, exist_ok=True)
            for fname, pick in (("train.csv", fold_of != k), ("test.csv", fold_of == k)):
                with open(d / fname, "w", newline="", encoding="utf-8") as fh:
                    out = csv.writer(fh)
                    out.writerow(["path", "symbol_id", "latex", "user_id"])
                    out.writerows(
                        [(f"../../hasy-data/{rows[i][0]}", *rows[i][1:]) for i in np.flatnonzero(pick)]
                    )
    return root
