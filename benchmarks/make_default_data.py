#!/usr/bin/env python
"""Build ``strokes/data/crohme-mini.npz``, the real handwriting that ``strokes bench`` runs on by default.

A small subset of the CROHME 2013 training data (``../shared/data/crohme``),
drawn from **whole writers** so that it splits writer-disjointly:

1. writers with a writer annotation and at most ``--max-per-writer`` symbols
   (so that no single person dominates) are shuffled with ``--seed``;
2. writers are taken in that order until ``--target`` symbols are reached;
3. classes with fewer than ``--min-class`` symbols in the result are dropped
   (too rare to appear in both the training and the test writers), and the
   vocabulary is reduced to the classes kept.

Nothing else is changed: the ink is the raw InkML ink (coordinates and
timestamps), with its writer and source file. The file is written with
:meth:`strokes.StrokeDataset.save` and the counts are printed, for
``strokes/data/crohme-mini.md``.

Usage::

    .venv/bin/python benchmarks/make_default_data.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_io import DEFAULT_DATA  # noqa: E402


def build(ds, *, target: int, max_per_writer: int, min_class: int, seed: int):
    """The subset of ``ds`` described in the module docstring."""
    from strokes.dataset import StrokeDataset

    writers = ds.writer_ids
    counts = np.bincount(writers[writers >= 0], minlength=len(ds.writer_names))
    rng = np.random.default_rng(seed)
    chosen, total = [], 0
    for w in rng.permutation(len(counts)):
        if total >= target:
            break
        if 0 < counts[w] <= max_per_writer:
            chosen.append(int(w))
            total += int(counts[w])
    idx = np.flatnonzero(np.isin(writers, chosen))
    per_class = np.bincount(ds.labels[idx], minlength=len(ds.vocab))
    keep = per_class >= min_class
    idx = idx[keep[ds.labels[idx]]]
    sub = ds.subset(idx)
    # a vocabulary of the classes kept, in the original order
    kept = np.flatnonzero(keep)
    remap = np.full(len(ds.vocab), -1, np.int64)
    remap[kept] = np.arange(len(kept))
    # only the writers and source files that remain
    w_used, w_ids = np.unique(sub.writer_ids, return_inverse=True)
    s_used, s_ids = np.unique(sub.source_ids, return_inverse=True)
    return StrokeDataset(
        sub.xy,
        sub.stroke_offsets,
        sub.sample_offsets,
        remap[sub.labels],
        [ds.vocab[i] for i in kept],
        t=sub.t,
        writer_ids=w_ids,
        writer_names=[sub.writer_names[i] for i in w_used],
        source_ids=s_ids,
        source_names=[sub.source_names[i] for i in s_used],
        name="crohme-mini (CROHME 2013 training data, TC-11; a writer subset)",
        info={
            "format": "inkml",
            "subset_of": "CROHME 2013 training data (TC-11)",
            "selection": {"target": target, "max_per_writer": max_per_writer, "min_class": min_class, "seed": seed},
            "writers": len(chosen),
        },
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="the CROHME InkML folder (default ../shared/data/crohme)")
    ap.add_argument("--target", type=int, default=6000, help="symbols to reach, taking whole writers (default 6000)")
    ap.add_argument("--max-per-writer", type=int, default=450, help="skip writers with more symbols (default 450)")
    ap.add_argument("--min-class", type=int, default=30, help="drop classes with fewer symbols (default 30)")
    ap.add_argument("--seed", type=int, default=0, help="writer shuffle seed (default 0)")
    ap.add_argument("--out", default=str(ROOT / "strokes" / "data" / "crohme-mini.npz"))
    args = ap.parse_args(argv)

    import strokes

    ds = strokes.load(args.data)
    sub = build(ds, target=args.target, max_per_writer=args.max_per_writer, min_class=args.min_class, seed=args.seed)
    sub.save(args.out)
    out = Path(args.out)
    counts = np.bincount(sub.labels, minlength=len(sub.vocab))
    collections = sorted({s.split("/")[0] for s in sub.source_names})
    print(sub)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}: {out.stat().st_size / 1e6:.2f} MB")
    print(f"{len(sub)} symbols, {len(sub.vocab)} classes ({counts.min()}-{counts.max()} per class), "
          f"{len(np.unique(sub.writer_ids))} writers, {len(sub.source_names)} InkML files from {', '.join(collections)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
