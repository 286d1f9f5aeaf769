"""Detexify data: its PostgreSQL dump (read with no server), keys, CouchDB JSON.

The dump holds ``COPY samples (id, key, strokes) FROM stdin;`` followed by
tab-separated rows in PostgreSQL's COPY text format, ended by ``\\.``.
``strokes`` is JSON: a list of strokes, each a list of ``[x, y, t]`` or
``[x, y]`` points. A key is ``package-encoding-command``; older rows write
``_`` for the backslash (``latex2e-OT1-_alpha``), newer rows write the
backslash (``amssymb-OT1-\\not_sim``), and ``latex2e-OT1-__`` means ``\\_``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
from tqdm.auto import tqdm

from .._util import atomic_write, tqdm_disable
from ..dataset import DatasetBuilder, StrokeDataset
from ..ink import DEFAULT_MAX_POINTS, MAX_COORDINATE, InkError, as_ink
from ._pointsjson import ParsedRows, parse_rows

log = logging.getLogger(__name__)

__all__ = [
    "key_to_label",
    "label_to_key",
    "load_detexify_sql",
    "save_detexify_sql",
    "load_couchdb_json",
    "RowParser",
]

DEFAULT_TABLE = "samples"
PARALLEL_BYTES = 32 << 20  # dumps larger than this are parsed by worker processes by default
BATCH_BYTES = 1 << 20  # JSON bytes parsed per vectorized batch (bounds temporaries to ~35 MB)


def key_to_label(key: str, style: str = "command") -> str:
    """Map a detexify key to a label.

    ``style="command"`` gives the LaTeX command (``latex2e-OT1-_alpha`` →
    ``\\alpha``, ``amssymb-OT1-\\not_sim`` → ``\\not_sim``, ``latex2e-OT1-__`` →
    ``\\_``); ``style="key"`` keeps the raw key. A key without the
    ``package-encoding-`` prefix is returned unchanged.
    """
    if style == "key":
        return key
    if style != "command":
        raise ValueError(f"unknown key style {style!r}; use 'command' or 'key'")
    parts = key.split("-", 2)
    if len(parts) < 3 or not parts[2]:
        return key
    cmd = parts[2]
    if cmd == "__":
        return "\\_"
    if cmd.startswith("_"):
        return "\\" + cmd[1:]
    return cmd


def label_to_key(label: str, package: str = "latex2e", encoding: str = "OT1") -> str:
    """Inverse of :func:`key_to_label` for labels (new key style; ``\\_`` becomes ``__``).

    Raises:
        ValueError: for a label starting with ``_`` (other than ``\\_``): detexify
            reads a leading ``_`` as a backslash, so it would come back changed.
    """
    if label.startswith("_"):
        raise ValueError(
            f"label {label!r} starts with '_', which detexify keys read as a backslash; rename the class"
        )
    if not label:
        raise ValueError("an empty label cannot be written as a detexify key")
    cmd = "__" if label == "\\_" else label
    return f"{package}-{encoding}-{cmd}"


# ---------------------------------------------------------------- COPY text
_UNESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))", re.S)
_SIMPLE = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def _unescape_copy(field: bytes) -> bytes:
    """Undo PostgreSQL COPY text escaping (\\\\, \\t, \\n, octal, hex)."""
    if b"\\" not in field:
        return field

    def sub(m):
        if m.group(1):
            return bytes([int(m.group(1), 8) & 0xFF])
        if m.group(2):
            return bytes([int(m.group(2), 16)])
        return _SIMPLE.get(m.group(3), m.group(3))

    return _UNESCAPE.sub(sub, field)


def _escape_copy(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


_COPY_RE = re.compile(rb"^COPY\s+(?:(\"?[\w$]+\"?)\.)?(\"?[\w$]+\"?)\s*\(([^)]*)\)\s+FROM\s+stdin", re.I)


def _find_copy(fh: BinaryIO, table: str = DEFAULT_TABLE, source: str = "the dump") -> tuple[int, list[str]]:
    """Read up to the ``COPY table (...) FROM stdin;`` line; return its line number and columns."""
    lineno = 0
    for line in fh:
        lineno += 1
        m = _COPY_RE.match(line)
        if m and m.group(2).strip(b'"').decode() == table:
            cols = m.group(3).decode("utf-8", errors="replace")  # a damaged name then fails the column check
            return lineno, [c.strip().strip('"') for c in cols.split(",")]
    raise ValueError(
        f"{source}: no 'COPY {table} (...) FROM stdin;' block found; is this a detexify PostgreSQL dump? "
        "(pass table= if the table has another name)"
    )


@dataclass
class PreparedRows:
    """Rows after the pure, parallelizable part of loading: checked, parsed, capped.

    ``sources``/``keys``/``ok`` cover the usable rows in input order; ``parsed``
    holds the points of the ``ok`` ones; ``slow`` the raw JSON of the others,
    in order, for the strict slow path.
    """

    rows_in: int
    skips: list  #: (source, reason) for rows that cannot be used at all
    sources: list
    keys: list
    ok: np.ndarray
    parsed: ParsedRows
    slow: list


def prepare_rows(sources, keys, strokes, max_points: int = DEFAULT_MAX_POINTS, skips=None) -> PreparedRows:
    """Check and parse one batch of ``(source, key, strokes_json)`` rows (pure: no builder)."""
    skips = list(skips or [])
    rows_in = len(sources) + len(skips)  # the given skips are rows that never became (source, key, strokes)
    usable = []
    for i in range(len(sources)):
        if not keys[i]:
            skips.append((sources[i], "key is empty or NULL"))
        elif strokes[i] is None:
            skips.append((sources[i], "strokes is NULL"))
        else:
            usable.append(i)
    raws = [strokes[i] for i in usable]
    parsed = parse_rows(raws)
    ok = parsed.ok
    if ok.any():  # the point cap holds on the fast path too: over-long rows go the slow way
        row_start = np.r_[0, np.cumsum(parsed.row_nstrokes)[:-1]]
        row_points = np.add.reduceat(parsed.stroke_lengths, row_start)
        over = row_points > max_points
        big = np.abs(parsed.xy).max(axis=1) > MAX_COORDINATE  # and rows as_ink refuses (past the float32 range too)
        if big.any():
            over |= np.bincount(np.repeat(np.arange(len(row_points)), row_points)[big], minlength=len(row_points)) > 0
        if over.any():
            ok = ok.copy()
            ok[np.flatnonzero(ok)[over]] = False
            parsed = parse_rows([raws[j] for j in np.flatnonzero(ok)])
    return PreparedRows(
        rows_in=rows_in,
        skips=skips,
        sources=[sources[i] for i in usable],
        keys=[keys[i] for i in usable],
        ok=ok,
        parsed=parsed,
        slow=[raws[j] for j in np.flatnonzero(~ok)],
    )


def _prepare_copy_block(block: bytes, first_lineno: int, cols: tuple, max_points: int) -> PreparedRows:
    """Split a block of whole COPY lines into fields and prepare them (runs in a worker)."""
    ci, ck, cs, ncols = cols
    lines = block.split(b"\n")
    lines.pop()  # the block ends with a newline
    sources, keys, strokes, skips = [], [], [], []
    key_cache: dict[bytes, str | None] = {}
    for n, line in enumerate(lines):
        if line.endswith(b"\r"):
            line = line[:-1]
        fields = line.split(b"\t")
        if len(fields) != ncols:
            skips.append((f"line {first_lineno + n}", f"expected {ncols} tab-separated fields, got {len(fields)}"))
            continue
        sources.append(f"id {fields[ci].decode(errors='replace')}")
        k = fields[ck]
        key = key_cache.get(k, "")
        if key == "":  # few distinct keys: unescape each once
            key = key_cache[k] = None if k == b"\\N" else _unescape_copy(k).decode("utf-8", errors="replace")
        keys.append(key)
        st = fields[cs]
        strokes.append(None if st == b"\\N" else _unescape_copy(st))
    return prepare_rows(sources, keys, strokes, max_points, skips)


class RowParser:
    """Adds prepared batches of rows to a dataset builder, in input order.

    Fast-path rows come from the vectorized parser; the rest get the strict slow
    path (``json.loads`` + :func:`as_ink`), which reads them or records why not.
    """

    def __init__(self, builder: DatasetBuilder, *, key_style: str = "command", max_points: int = DEFAULT_MAX_POINTS):
        self.builder = builder
        self.key_style = key_style
        self.max_points = max_points
        self._labels: dict[str, str] = {}
        self.rows_in = 0

    def label(self, key: str) -> str:
        lab = self._labels.get(key)
        if lab is None:
            lab = self._labels[key] = key_to_label(key, self.key_style)
        return lab

    def add_batch(self, sources: list[str], keys: list[str | None], strokes: list[bytes | None]) -> None:
        """Prepare and add rows, in sub-batches of at most ``BATCH_BYTES`` of JSON.

        The vectorized parser needs about 35 bytes of temporaries per input byte,
        so batches are bounded by bytes, not rows: memory stays flat however
        long the rows are.
        """
        start, size = 0, 0
        for i, raw in enumerate(strokes):
            size += len(raw) if raw else 0
            if size > BATCH_BYTES:
                end = max(i, start + 1)
                self.apply(prepare_rows(sources[start:end], keys[start:end], strokes[start:end], self.max_points))
                start, size = end, sum(len(r) for r in strokes[end : i + 1] if r)
        if start < len(sources):
            self.apply(prepare_rows(sources[start:], keys[start:], strokes[start:], self.max_points))

    def apply(self, rows: PreparedRows) -> None:
        """Add a prepared batch: runs of fast rows as chunks, slow rows one by one, in order."""
        b = self.builder
        self.rows_in += rows.rows_in
        for source, reason in rows.skips:
            b.skip(source, reason)
        ok, parsed = rows.ok, rows.parsed
        stroke_cut = np.r_[0, np.cumsum(parsed.row_nstrokes)]  # per parsed row
        point_cut = np.r_[0, np.cumsum(parsed.stroke_lengths)]  # per parsed stroke
        rank = np.cumsum(ok) - ok  # index among parsed rows
        slow = iter(rows.slow)
        j = 0
        while j < len(ok):
            k = j
            while k < len(ok) and ok[k] == ok[j]:
                k += 1
            if ok[j]:
                r0, r1 = rank[j], rank[j] + (k - j)
                s0, s1 = stroke_cut[r0], stroke_cut[r1]
                p0, p1 = point_cut[s0], point_cut[s1]
                b.add_chunk(
                    parsed.xy[p0:p1],
                    parsed.t[p0:p1],
                    parsed.stroke_lengths[s0:s1],
                    parsed.row_nstrokes[r0:r1],
                    [self.label(key) for key in rows.keys[j:k]],
                    [None] * (k - j),
                    rows.sources[j:k],
                )
            else:
                for i in range(j, k):
                    self._slow(rows.sources[i], rows.keys[i], next(slow))
            j = k

    def _slow(self, source: str, key: str, raw: bytes) -> None:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            self.builder.skip(source, f"strokes is not valid JSON ({exc})")
            return
        except RecursionError:
            self.builder.skip(source, "strokes is JSON nested too deeply to read")
            return
        if isinstance(data, list):  # a stroke mixing [x, y, t] and [x, y] points keeps x, y
            data = [
                [p[:2] for p in s]
                if isinstance(s, list) and len({len(p) for p in s if isinstance(p, list)}) > 1
                else s
                for s in data
            ]
        try:
            ink = as_ink(data, max_points=self.max_points)
        except (InkError, TypeError) as exc:
            self.builder.skip(source, f"bad strokes: {exc}")
            return
        self.builder.add(ink, self.label(key), None, source)


def _end_line(data: bytes, at_eof: bool = False) -> int:
    """Offset of the line ``\\.`` that ends a COPY block in ``data``, or -1.

    Found with ``bytes.find`` (a regex here cost a third of the load time). At
    the end of the file the line may lack its newline.
    """
    start = 0
    while True:
        i = 0 if start == 0 and data.startswith(b"\\.") else data.find(b"\n\\.", max(start - 1, 0))
        if i < 0:
            return -1
        line_at = i if (i == 0 and data.startswith(b"\\.")) else i + 1
        rest = data[line_at + 2 : line_at + 4]
        if rest[:1] == b"\n" or rest == b"\r\n" or (at_eof and rest in (b"", b"\r") and line_at + 2 + len(rest) == len(data)):
            return line_at
        start = line_at + 2  # "\\." starting a longer line: not the end marker


def _copy_blocks(
    fh: BinaryIO, first_lineno: int, limit: int | None, bar, source: str = "the dump"
) -> Iterator[tuple[bytes, int]]:
    """Yield ``(block, lineno)``: ~1 MiB of whole COPY lines at a time, up to the ``\\.`` line."""
    rest, lineno, left = b"", first_lineno, limit
    done = False
    while not done:
        chunk = fh.read(BATCH_BYTES)
        bar.update(len(chunk))
        data = rest + chunk
        if chunk:
            cut = data.rfind(b"\n") + 1  # whole lines only
            block, rest = data[:cut], data[cut:]
            end_at = _end_line(block)
        else:
            block, rest = data, b""
            end_at = _end_line(block, at_eof=True)
            if end_at < 0:
                raise ValueError(f"{source}: COPY block does not end with '\\.' (the dump is truncated)")
        if end_at >= 0:
            block, done = block[:end_at], True
        if left is not None:  # limit: stop after that many rows
            nl = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
            if len(nl) >= left:
                block, done = block[: nl[left - 1] + 1] if left else b"", True
            left -= len(nl)
        if block:
            yield block, lineno
            lineno += block.count(b"\n")


def load_detexify_sql(
    path,
    *,
    table: str = DEFAULT_TABLE,
    key_style: str = "command",
    max_points: int = DEFAULT_MAX_POINTS,
    limit: int | None = None,
    progress: bool | None = None,
    workers: int | None = None,
    builder=None,
    **_unused,
) -> StrokeDataset:
    """Stream a detexify PostgreSQL dump (``.sql``) with no server, in bounded memory.

    Every row of the COPY block is either loaded or listed in ``ds.skipped``
    with its line number and reason: ``info["records_in"] == loaded + skipped``.

    ``workers`` processes split and parse the rows while this one reads the file
    (default: one per core, up to 2, for dumps over ``PARALLEL_BYTES``; 1 does it
    all in-process). The result is the same either way.
    """
    path = Path(path)
    builder = builder if builder is not None else DatasetBuilder(name=str(path))  # a StoreWriter streams to disk
    parser = RowParser(builder, key_style=key_style, max_points=max_points)
    size = path.stat().st_size
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if size > PARALLEL_BYTES else 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    with open(path, "rb") as fh, tqdm(
        total=size, unit="B", unit_scale=True, desc="dump", disable=tqdm_disable(progress)
    ) as bar:
        lineno, names = _find_copy(fh, table, str(path))
        missing = {"id", "key", "strokes"} - set(names)
        if missing:
            raise ValueError(f"table {table!r} in {path} lacks column(s) {sorted(missing)}; it has {names}")
        cols = (names.index("id"), names.index("key"), names.index("strokes"), len(names))
        blocks = _copy_blocks(fh, lineno + 1, limit, bar, str(path))
        if workers == 1:
            for block, first in blocks:
                parser.apply(_prepare_copy_block(block, first, cols, max_points))
        else:
            with ProcessPoolExecutor(workers) as pool:
                queue: deque = deque()
                for block, first in blocks:
                    queue.append(pool.submit(_prepare_copy_block, block, first, cols, max_points))
                    while len(queue) > 2 * workers:  # bounded: memory stays flat
                        parser.apply(queue.popleft().result())
                while queue:
                    parser.apply(queue.popleft().result())
    info = {"format": "detexify-sql", "records_in": parser.rows_in, "unit": "rows", "workers": workers}
    return _finish(builder, info)


def _finish(builder: DatasetBuilder, info: dict) -> StrokeDataset:
    ds = builder.build(info)
    if ds.skipped:
        log.warning("%s: skipped %d of %d rows", info["format"], len(ds.skipped), info["records_in"])
    if info["records_in"] != len(ds) + len(ds.skipped):  # the invariant every loader keeps
        raise RuntimeError(f"row accounting broke: {info['records_in']} in, {len(ds)} loaded, {len(ds.skipped)} skipped")
    return ds


# ---------------------------------------------------------------- writing
def _fmt(values: np.ndarray) -> np.ndarray:
    """Shortest round-tripping decimal strings; integral values without '.0'."""
    out = values.astype(str)
    expo = np.flatnonzero(np.char.find(out, "e") >= 0)  # 1e-05: write positionally instead
    if expo.size:
        out = out.astype(object)
        out[expo] = [np.format_float_positional(v, unique=True, trim="-") for v in values[expo]]
        out = out.astype(str)
    integral = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 1e15) & ~np.signbit(values)
    if integral.any():
        out = out.astype(object)
        out[integral] = values[integral].astype(np.int64).astype(str)
        out = out.astype(str)
    return out


def strokes_json(ds: StrokeDataset) -> list[str]:
    """Every sample's strokes as detexify JSON (``[[[x, y, t], ...], ...]``), vectorized per point."""
    xs, ys = _fmt(ds.xy[:, 0]), _fmt(ds.xy[:, 1])
    pt = np.char.add(np.char.add(np.char.add("[", xs), ","), ys)
    if ds.t is not None:
        has_t = ~np.isnan(ds.t)
        if has_t.any():
            tt = np.full(len(ds.t), "", dtype=object)
            tt[has_t] = np.char.add(",", _fmt(ds.t[has_t]))
            pt = np.char.add(pt, tt.astype(str))
    n = len(ds.xy)
    first_of_stroke = np.zeros(n, bool)
    first_of_stroke[ds.stroke_offsets[:-1]] = True
    first_of_sample = np.zeros(n, bool)
    first_of_sample[ds.point_offsets[:-1]] = True
    last_of_stroke = np.zeros(n, bool)
    last_of_stroke[ds.stroke_offsets[1:] - 1] = True
    last_of_sample = np.zeros(n, bool)
    last_of_sample[ds.point_offsets[1:] - 1] = True
    prefix = np.where(first_of_sample, "[[", np.where(first_of_stroke, "[", ""))
    suffix = np.where(last_of_sample, "]]]", np.where(last_of_stroke, "]],", "],"))
    pieces = np.char.add(np.char.add(prefix, pt), suffix)
    lengths = np.char.str_len(pieces)
    bounds = np.r_[0, np.cumsum(lengths)][ds.point_offsets]
    text = "".join(pieces.tolist())
    return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def copy_rows(ds: StrokeDataset, start_id: int = 1, chunk: int = 10_000) -> Iterator[str]:
    """The dataset as COPY text rows ``id<TAB>key<TAB>strokes``, in blocks of ``chunk`` samples.

    Chunking bounds memory: the string building needs about 30x the bytes of
    the points it formats. Keys are checked (and may raise) before anything is yielded.
    """
    keys = [_escape_copy(label_to_key(v)) for v in ds.vocab]

    def blocks():
        for a in range(0, len(ds), chunk):
            part = ds.subset(np.arange(a, min(a + chunk, len(ds))))
            rows = strokes_json(part)
            yield "".join(f"{start_id + a + i}\t{keys[lab]}\t{row}\n" for i, (lab, row) in enumerate(zip(part.labels, rows)))

    return blocks()


def save_detexify_sql(ds: StrokeDataset, path, *, table: str = DEFAULT_TABLE, start_id: int = 1) -> None:
    """Write ``ds`` as a detexify-format PostgreSQL dump, atomically.

    The file loads with ``psql -f`` or ``strokes db load``, and reads back with
    :func:`load_detexify_sql`. Labels become new-style keys
    (``latex2e-OT1-\\alpha``); coordinates keep their float32 values exactly.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
        raise ValueError(f"table name {table!r} must be a plain SQL identifier")
    blocks = copy_rows(ds, start_id)
    with atomic_write(path, "w") as fh:
        fh.write(
            "-- detexify-format dump written by strokes\n"
            "SET client_encoding = 'UTF8';\n"
            "SET standard_conforming_strings = on;\n\n"
            f"CREATE TABLE IF NOT EXISTS {table} (\n"
            "    id integer PRIMARY KEY,\n    key text NOT NULL,\n    strokes text NOT NULL\n);\n\n"
            f"COPY {table} (id, key, strokes) FROM stdin;\n"
        )
        for block in blocks:
            fh.write(block)
        fh.write("\\.\n\n")


# ---------------------------------------------------------------- CouchDB JSON
def load_couchdb_json(
    path, *, key_style: str = "command", max_points: int = DEFAULT_MAX_POINTS, progress: bool | None = None, **_unused
) -> StrokeDataset:
    """Load detexify's CouchDB JSON: ``{"rows": [{"doc": {"id": KEY, "data": STROKES}}]}``.

    Also accepts ``{"docs": [...]}`` or a bare list of docs. Points are
    ``{x, y, t}`` dicts or ``[x, y(, t)]`` lists.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            doc = json.load(fh)
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply to read") from None
    if isinstance(doc, dict) and "rows" in doc:
        docs = [r.get("doc", r) if isinstance(r, dict) else r for r in doc["rows"]]
    elif isinstance(doc, dict) and "docs" in doc:
        docs = doc["docs"]
    elif isinstance(doc, list):
        docs = doc
    else:
        raise ValueError(f"{path}: expected a CouchDB view ({{'rows': [...]}}), {{'docs': [...]}} or a list of docs")
    builder = DatasetBuilder(name=str(path))
    for n, d in enumerate(tqdm(docs, desc="couchdb", unit="doc", disable=tqdm_disable(progress))):
        src = f"row {n}"
        if not isinstance(d, dict):
            builder.skip(src, f"a doc must be an object, got {type(d).__name__}")
            continue
        src = f"doc {d.get('_id', n)}"
        key = d.get("id") or d.get("key")
        if not isinstance(key, str) or not key:
            builder.skip(src, "doc has no symbol key ('id')")
            continue
        if "data" not in d:
            builder.skip(src, "doc has no 'data' (strokes)")
            continue
        try:
            ink = as_ink(d["data"], max_points=max_points)
        except (InkError, TypeError) as exc:
            builder.skip(src, f"bad strokes: {exc}")
            continue
        builder.add(ink, key_to_label(key, key_style), None, src)
    info = {"format": "couchdb-json", "records_in": len(docs), "unit": "docs"}
    return _finish(builder, info)
