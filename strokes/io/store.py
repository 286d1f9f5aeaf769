"""A memory-mapped dataset store: a directory of ``.npy`` arrays plus ``meta.json``.

Layout of ``NAME.strokes/``::

    meta.json            format, version, counts, vocab, writer and source names, info, skipped
    xy.npy               (P, 2) float32        points
    t.npy                (P,)   float64        timestamps (only when the data has them)
    stroke_offsets.npy   (S + 1,) int64
    sample_offsets.npy   (N + 1,) int64
    labels.npy           (N,)   int64          into meta["vocab"]
    writer_ids.npy       (N,)   int32          into meta["writer_names"], -1 unknown
    source_ids.npy       (N,)   int32          into source_names.jsonl, -1 unknown
    source_names.jsonl   one JSON string per line: the source names, in id order

:func:`load_store` opens the arrays with ``np.load(mmap_mode="r")``: nothing
is read until used, and DataLoader worker processes (fork) share the page
cache instead of each holding a copy of the dataset. The ``.npz`` cache is
compressed, so it cannot be memory-mapped; this store is its uncompressed,
mappable sibling.

:class:`StoreWriter` writes a store while a loader streams records into it
(it has the :class:`strokes.dataset.DatasetBuilder` interface): every chunk
is appended to the ``.npy`` files at once and the headers are rewritten with
the final shapes at the end, so importing a dump of any size needs memory for
one chunk, not for the dataset::

    strokes.io.import_to_store("detexify.sql", "detexify.strokes")
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from ..dataset import Skipped, StrokeDataset

log = logging.getLogger(__name__)

__all__ = ["StoreWriter", "save_store", "load_store", "is_store", "STORE_FORMAT"]

STORE_FORMAT = "strokes-store"
STORE_VERSION = 1
_HEADER_BYTES = 128  # every .npy header is padded to this, so it can be rewritten in place


def is_store(path) -> bool:
    p = Path(path)
    if not (p / "meta.json").is_file():
        return False
    try:
        return json.loads((p / "meta.json").read_text()).get("format") == STORE_FORMAT
    except (OSError, ValueError):
        return False


class _NpyAppender:
    """An ``.npy`` file written in appended chunks; the header gets its final shape on close."""

    def __init__(self, path: Path, dtype, inner_shape=()):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.inner = tuple(inner_shape)
        self.rows = 0
        self.fh = open(path, "wb")
        self.fh.write(self._header(0))

    def _header(self, rows: int) -> bytes:
        d = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (rows, *self.inner)}
        body = repr(d).encode("latin1")
        pad = _HEADER_BYTES - 10 - len(body) - 1
        if pad < 0:
            raise ValueError(f"{self.path.name}: header too long")
        return b"\x93NUMPY\x01\x00" + (_HEADER_BYTES - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"

    def append(self, arr) -> None:
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        if arr.shape[1:] != self.inner:
            raise ValueError(f"{self.path.name}: chunk of shape {arr.shape}, expected (*, {self.inner})")
        self.fh.write(arr.tobytes())
        self.rows += arr.shape[0]

    def close(self) -> None:
        self.fh.flush()
        self.fh.seek(0)
        self.fh.write(self._header(self.rows))
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


class StoreWriter:
    """Stream samples into a store directory (a ``DatasetBuilder`` look-alike).

    Labels, writers and sources are interned as they come; at :meth:`build`
    the vocabulary is sorted and ``labels.npy`` remapped in place (one small
    pass). The directory is written under a temporary name and renamed into
    place at the end, so a failed import leaves no half-written store.
    """

    FLUSH = 4096

    def __init__(self, path, *, name: str = "", synthetic: bool = False, overwrite: bool = False):
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; remove it or pass overwrite=True")
        self.name = name or str(path)
        self.synthetic = synthetic
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self._xy = _NpyAppender(self.tmp / "xy.npy", np.float32, (2,))
        self._t = _NpyAppender(self.tmp / "t.npy", np.float64)
        self._stroke_len = _NpyAppender(self.tmp / "stroke_lengths.tmp.npy", np.int64)
        self._sample_nstrokes = _NpyAppender(self.tmp / "sample_nstrokes.tmp.npy", np.int64)
        self._labels = _NpyAppender(self.tmp / "labels.npy", np.int64)
        self._writers = _NpyAppender(self.tmp / "writer_ids.npy", np.int32)
        self._sources = _NpyAppender(self.tmp / "source_ids.npy", np.int32)
        self._label_ids: dict[str, int] = {}
        self._writer_ids: dict[str, int] = {}
        # sources are often one per record (dump rows): their names stream to a file, and only
        # recent ones are remembered for de-duplication, so memory does not grow with the source
        self._source_ids: dict[str, int] = {}
        self._n_sources = 0
        self._source_file = open(self.tmp / "source_names.jsonl", "w", encoding="utf-8")
        self._any_t = False
        self._pending: list = []
        self._n = 0
        self.skipped: list[Skipped] = []

    # -- the DatasetBuilder interface ---------------------------------------
    def add(self, strokes: Sequence[np.ndarray], label: str, writer: str | None = None, source: str | None = None):
        self._pending.append((strokes, label, writer, source))
        if len(self._pending) >= self.FLUSH:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        strokes = [s for p in pending for s in p[0]]
        xy = np.concatenate([np.asarray(s)[:, :2] for s in strokes])
        t = None
        if any(np.shape(s)[1] >= 3 for s in strokes):
            t = np.concatenate([s[:, 2] if s.shape[1] >= 3 else np.full(len(s), np.nan) for s in strokes])
        self.add_chunk(
            xy, t, [len(s) for s in strokes], [len(p[0]) for p in pending],
            [p[1] for p in pending], [p[2] for p in pending], [p[3] for p in pending],
        )

    @staticmethod
    def _ids(values, table: dict) -> np.ndarray:
        out = np.empty(len(values), np.int64)
        for i, v in enumerate(values):
            if v is None:
                out[i] = -1
            else:
                out[i] = table.setdefault(v, len(table))
        return out

    SOURCE_MEMORY = 65536  # source names remembered for de-duplication

    def _source_chunk(self, sources) -> np.ndarray:
        out = np.empty(len(sources), np.int64)
        lines = []
        for i, src in enumerate(sources):
            if src is None:
                out[i] = -1
                continue
            sid = self._source_ids.get(src)
            if sid is None:
                if len(self._source_ids) >= self.SOURCE_MEMORY:
                    self._source_ids.clear()  # a name seen again later gets a new id (same name)
                sid = self._source_ids[src] = self._n_sources
                self._n_sources += 1
                lines.append(json.dumps(src))
            out[i] = sid
        if lines:
            self._source_file.write("\n".join(lines) + "\n")
        return out

    def add_chunk(self, xy, t, stroke_lengths, sample_nstrokes, labels, writers, sources) -> None:
        if self._pending:
            self._flush()
        if len(labels) != len(sample_nstrokes) or len(writers) != len(labels) or len(sources) != len(labels):
            raise ValueError("labels, writers and sources need one entry per sample")
        xy = np.asarray(xy, dtype=np.float32).reshape(-1, 2)
        if t is None:
            t = np.full(len(xy), np.nan)
        else:
            t = np.asarray(t, dtype=np.float64)
            self._any_t = self._any_t or not bool(np.isnan(t).all())
        self._xy.append(xy)
        self._t.append(t)
        self._stroke_len.append(np.asarray(stroke_lengths, np.int64))
        self._sample_nstrokes.append(np.asarray(sample_nstrokes, np.int64))
        self._labels.append(self._ids(labels, self._label_ids))
        self._writers.append(self._ids(writers, self._writer_ids))
        self._sources.append(self._source_chunk(sources))
        self._n += len(labels)

    def skip(self, source: str, reason: str) -> None:
        self.skipped.append(Skipped(str(source), str(reason)))

    def __len__(self) -> int:
        return self._n + len(self._pending)

    def _offsets_from(self, lengths_path: Path, out_path: Path, chunk: int = 1 << 22) -> None:
        """Cumulative offsets (with a leading 0) of a lengths .npy, streamed in chunks."""
        lengths = np.load(lengths_path, mmap_mode="r")
        out = _NpyAppender(out_path, np.int64)
        out.append(np.zeros(1, np.int64))
        total = 0
        for s in range(0, len(lengths), chunk):
            c = np.cumsum(lengths[s : s + chunk], dtype=np.int64) + total
            out.append(c)
            total = int(c[-1]) if len(c) else total
        out.close()
        del lengths
        lengths_path.unlink()

    def build(self, info: dict | None = None, vocab: Sequence[str] | None = None) -> StrokeDataset:
        """Finish the files, rename the store into place and open it (memory-mapped)."""
        self._flush()
        for f in (self._xy, self._t, self._stroke_len, self._sample_nstrokes, self._labels, self._writers, self._sources):
            f.close()
        self._source_file.close()
        self._offsets_from(self.tmp / "stroke_lengths.tmp.npy", self.tmp / "stroke_offsets.npy")
        self._offsets_from(self.tmp / "sample_nstrokes.tmp.npy", self.tmp / "sample_offsets.npy")
        if not self._any_t:
            (self.tmp / "t.npy").unlink()
        seen = list(self._label_ids)
        if vocab is None:
            vocab = sorted(seen)
        lookup = {c: i for i, c in enumerate(vocab)}
        missing = set(seen) - lookup.keys()
        if missing:
            raise ValueError(f"labels not in the given vocab: {sorted(missing)[:10]}")
        remap = np.array([lookup[c] for c in seen], dtype=np.int64)
        labels = np.load(self.tmp / "labels.npy", mmap_mode="r+")
        if len(labels):
            labels[:] = remap[labels]
        labels.flush()
        del labels
        writer_names = sorted(self._writer_ids)
        rank = {w: i for i, w in enumerate(writer_names)}
        # first-seen id -> sorted id; the extra last entry maps -1 (unknown) to -1
        wmap = np.array([rank[w] for w in self._writer_ids] + [-1], dtype=np.int32)
        writers = np.load(self.tmp / "writer_ids.npy", mmap_mode="r+")
        if len(writers):
            writers[:] = wmap[writers]
        writers.flush()
        del writers
        info = dict(info or {})
        info.setdefault("loaded", self._n)
        info.setdefault("skipped", len(self.skipped))
        meta = {
            "format": STORE_FORMAT,
            "version": STORE_VERSION,
            "name": self.name,
            "synthetic": self.synthetic,
            "samples": self._n,
            "vocab": list(vocab),
            "writer_names": writer_names,
            "sources": self._n_sources,
            "info": info,
            "skipped": [[s.source, s.reason] for s in self.skipped],
        }
        (self.tmp / "meta.json").write_text(json.dumps(meta))
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        log.info("wrote store %s: %d samples, %d classes", self.path, self._n, len(vocab))
        return load_store(self.path)

    def abort(self) -> None:
        for f in (self._xy, self._t, self._stroke_len, self._sample_nstrokes, self._labels, self._writers, self._sources):
            if not f.fh.closed:
                f.fh.close()
        self._source_file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def save_store(ds: StrokeDataset, path, *, chunk_samples: int = 65536, overwrite: bool = True) -> None:
    """Write ``ds`` as a store (chunk by chunk, so a memory-mapped source stays mapped)."""
    w = StoreWriter(path, name=ds.name, synthetic=ds.synthetic, overwrite=overwrite)
    try:
        names = np.asarray(ds.vocab, dtype=object)
        wnames = np.asarray(list(ds.writer_names) + [None], dtype=object)
        snames = np.asarray(list(ds.source_names) + [None], dtype=object)
        for s in range(0, len(ds), chunk_samples):
            part = ds.subset(np.arange(s, min(s + chunk_samples, len(ds))))
            w.add_chunk(
                part.xy, part.t, np.diff(part.stroke_offsets), np.diff(part.sample_offsets),
                list(names[part.labels]), list(wnames[part.writer_ids]), list(snames[part.source_ids]),
            )
        w.skipped = list(ds.skipped)
        w.build({**ds.info, "loaded": len(ds)}, vocab=ds.vocab)
    except BaseException:
        w.abort()
        raise


def load_store(path, *, mmap: bool = True, **_unused) -> StrokeDataset:
    """Open a store; arrays are memory-mapped (read-only) unless ``mmap=False``."""
    path = Path(path)
    if not is_store(path):
        raise ValueError(f"{path} is not a strokes store (no meta.json with format {STORE_FORMAT!r})")
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("version", 0) > STORE_VERSION:
        raise ValueError(f"{path} is store version {meta['version']}; this strokes reads up to {STORE_VERSION}: upgrade strokes")
    mode = "r" if mmap else None

    def arr(name):
        return np.load(path / f"{name}.npy", mmap_mode=mode)

    t = arr("t") if (path / "t.npy").exists() else None
    with open(path / "source_names.jsonl", encoding="utf-8") as fh:
        source_names = [json.loads(line) for line in fh if line.strip()]
    return StrokeDataset(
        arr("xy"),
        arr("stroke_offsets"),
        arr("sample_offsets"),
        arr("labels"),
        meta["vocab"],
        t=t,
        writer_ids=arr("writer_ids"),
        writer_names=meta["writer_names"],
        source_ids=arr("source_ids"),
        source_names=source_names,
        skipped=[Skipped(a, b) for a, b in meta.get("skipped", [])],
        name=meta["name"],
        synthetic=meta.get("synthetic", False),
        info={**meta.get("info", {}), "source_format": meta.get("info", {}).get("format"), "format": "store", "mmap": mmap},
    )
