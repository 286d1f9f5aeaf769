"""Our compact, versioned ``.npz`` cache of a :class:`StrokeDataset`.

Plain arrays only (strings as fixed-width unicode), so it loads with
``allow_pickle=False``: opening a cache can never execute code.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .._util import atomic_write
from ..dataset import Skipped, StrokeDataset, _offsets

MAGIC = "strokes-npz"
VERSION = 1

__all__ = ["save_npz", "load_npz", "MAGIC", "VERSION"]


def _str_array(values) -> np.ndarray:
    values = list(values)
    return np.array(values, dtype=str) if values else np.zeros(0, dtype="<U1")


def save_npz(ds: StrokeDataset, path, *, compress: bool = True) -> None:
    """Write ``ds`` to ``path`` atomically (zip-deflated by default: smaller, and as fast to load)."""
    arrays = {
        "format": np.array(MAGIC),
        "version": np.array(VERSION),
        "xy": ds.xy,
        "stroke_lengths": np.diff(ds.stroke_offsets).astype(np.int32),
        "sample_nstrokes": np.diff(ds.sample_offsets).astype(np.int32),
        "labels": ds.labels.astype(np.int32),
        "vocab": _str_array(ds.vocab),
        "writer_ids": ds.writer_ids,
        "writer_names": _str_array(ds.writer_names),
        "source_ids": ds.source_ids,
        "source_names": _str_array(ds.source_names),
        "skipped_source": _str_array(s.source for s in ds.skipped),
        "skipped_reason": _str_array(s.reason for s in ds.skipped),
        "meta": np.array(json.dumps({"name": ds.name, "synthetic": ds.synthetic, "info": ds.info}, default=str)),
    }
    if ds.t is not None:
        arrays["t"] = ds.t
    with atomic_write(path) as fh:
        (np.savez_compressed if compress else np.savez)(fh, **arrays)


def load_npz(path, **_unused) -> StrokeDataset:
    """Read a cache written by :func:`save_npz` (``allow_pickle=False``)."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a strokes .npz cache, or a damaged one ({type(exc).__name__}: {exc}); "
                         "re-create it with ds.save() or strokes import") from None
    with z:
        if "format" not in z.files or str(z["format"]) != MAGIC:
            raise ValueError(f"{path}: not a strokes .npz cache (no '{MAGIC}' marker); write one with ds.save()")
        version = int(z["version"])
        if version > VERSION:
            raise ValueError(f"{path}: cache version {version} is newer than this strokes ({VERSION}); upgrade strokes")
        meta = json.loads(str(z["meta"]))
        info = dict(meta.get("info") or {})
        info["cache"] = str(path)
        return StrokeDataset(
            z["xy"],
            _offsets(z["stroke_lengths"]),
            _offsets(z["sample_nstrokes"]),
            z["labels"],
            z["vocab"].tolist(),
            t=z["t"] if "t" in z.files else None,
            writer_ids=z["writer_ids"],
            writer_names=z["writer_names"].tolist(),
            source_ids=z["source_ids"],
            source_names=z["source_names"].tolist(),
            skipped=[Skipped(s, r) for s, r in zip(z["skipped_source"].tolist(), z["skipped_reason"].tolist())],
            name=meta.get("name", str(path)),
            synthetic=bool(meta.get("synthetic", False)),
            info=info,
        )
