"""Vectorized parser for detexify's stroke JSON: ``[[[x, y, t], [x, y], ...], ...]``.

``json.loads`` builds one Python list per point, about 25k samples/s here.
This parser works on the raw bytes of many rows at once, with numpy and no
Python loop per point or per stroke:

1. every byte is classified (bracket, digit, '.', '-', separator, other);
2. bracket depth comes from a cumulative sum over the brackets only, rebased
   at every row start, so one corrupt row cannot affect its neighbours;
3. numbers are the runs of digit/'.'/'-' bytes; each gets its enclosing point
   (the '[' at depth 3 before it), points get strokes (depth 2), strokes get rows;
4. values are assembled from their digits with ``bincount`` (exact for up to
   15 significant digits; longer tokens go through ``float()`` one by one).

A row that does not fit the shape (other characters such as exponents,
``null`` or dicts, wrong nesting, empty strokes, points without 2 or 3
numbers) is reported as not parsed. The caller sends such rows through the
strict slow path (``json.loads`` plus :func:`strokes.ink.as_ink`), which either
reads them or gives the precise reason they are bad.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# byte classes
_SEP, _OPEN, _CLOSE, _DIGIT, _DOT, _MINUS, _OTHER = range(7)
_CLASS = np.full(256, _OTHER, dtype=np.uint8)
for _c in b" \t\r\n,":
    _CLASS[_c] = _SEP
_CLASS[ord("[")] = _OPEN
_CLASS[ord("]")] = _CLOSE
_CLASS[ord("0") : ord("9") + 1] = _DIGIT
_CLASS[ord(".")] = _DOT
_CLASS[ord("-")] = _MINUS
_ISNUM = (_CLASS >= _DIGIT) & (_CLASS <= _MINUS)
_ISBR = (_CLASS == _OPEN) | (_CLASS == _CLOSE)
_ISOTHER = _CLASS == _OTHER
_POW10 = 10.0 ** np.arange(23)


@dataclass
class ParsedRows:
    """Points of the rows that parsed (``ok``), in row order, as ragged arrays."""

    ok: np.ndarray  #: (R,) bool, True where the fast path parsed the row
    xy: np.ndarray  #: (P, 2) float64
    t: np.ndarray  #: (P,) float64, NaN for [x, y] points
    stroke_lengths: np.ndarray  #: (S,) int64 points per stroke
    row_nstrokes: np.ndarray  #: (R_ok,) int64 strokes per parsed row


def _segment_ids(positions: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the segment (given by sorted start positions) each position falls in."""
    return np.searchsorted(starts, positions, side="right") - 1


def _scan(rows: list[bytes]):
    """Parse rows; return per-row validity and, when all are valid, the arrays."""
    nrows = len(rows)
    lens = np.fromiter((len(r) for r in rows), dtype=np.int64, count=nrows)
    row_start = np.zeros(nrows, dtype=np.int64)
    np.cumsum(lens[:-1] + 1, out=row_start[1:])  # rows joined by one separator byte
    a = np.frombuffer(b"\n".join(rows), dtype=np.uint8)
    row_mark = np.zeros(len(a), dtype=np.int32)
    later = row_start[1:]
    row_mark[later[later < len(a)]] = 1  # an empty last row starts past the end
    row_of_byte = np.cumsum(row_mark, dtype=np.int32)  # (len(a),) row of every byte
    del row_mark
    bad = np.zeros(nrows, dtype=bool)

    other = np.flatnonzero(_ISOTHER[a])
    if other.size:
        bad[row_of_byte[other]] = True

    # --- bracket structure
    isbr = _ISBR[a]
    br = np.flatnonzero(isbr)  # (B,) bracket positions
    brcum = np.cumsum(isbr, dtype=np.int32)  # brackets up to and including each byte
    is_open = a[br] == 91  # '['
    delta = np.where(is_open, 1, -1)
    cum = np.cumsum(delta)
    br_row = row_of_byte[br]
    first = np.searchsorted(br_row, np.arange(nrows))  # first bracket of each row
    has_br = first < len(br)
    has_br[has_br] = br_row[first[has_br]] == np.flatnonzero(has_br)
    bad |= ~has_br
    base = np.zeros(nrows, dtype=np.int64)
    base[has_br] = (cum - delta)[first[has_br]]
    depth = cum - base[br_row]  # depth after each bracket, relative to its row
    # opens must land at depth 1..3 (row, stroke, point), closes at 0..2, never below 0
    wrong = np.where(is_open, (depth < 1) | (depth > 3), depth < 0)
    # exactly one top-level array per row, and it must close by the row's end
    wrong |= is_open & (depth == 1) & (np.r_[True, br_row[1:] != br_row[:-1]] == 0)
    last = np.r_[br_row[1:] != br_row[:-1], True] if len(br) else np.zeros(0, bool)
    wrong |= last & (depth != 0)
    if wrong.any():
        bad[br_row[wrong]] = True

    # --- number tokens
    isnum = _ISNUM[a]  # digit, '.' or '-'
    start = isnum.copy()
    start[1:] &= ~isnum[:-1]
    end = isnum  # reuses isnum's memory: a token ends where the next byte is no number
    end[:-1] &= ~isnum[1:]
    ts, te = np.flatnonzero(start), np.flatnonzero(end) + 1  # token [start, end)
    del start, end, isnum
    k = brcum[ts]  # brackets before each token (a token byte is no bracket)
    tok_row = row_of_byte[ts]
    prev_in_row = (k > 0) & (br_row[np.maximum(k - 1, 0)] == tok_row) if len(br) else np.zeros(len(ts), bool)
    tok_depth = np.where(prev_in_row, depth[np.maximum(k - 1, 0)] if len(br) else 0, 0)
    if np.any(tok_depth != 3):
        bad[tok_row[tok_depth != 3]] = True

    point_open = is_open & (depth == 3)
    stroke_open = is_open & (depth == 2)
    point_of_br = np.cumsum(point_open) - 1
    tok_point = point_of_br[np.maximum(k - 1, 0)] if len(br) else np.zeros(len(ts), np.int64)
    npoints = int(point_open.sum())
    ntok = np.bincount(tok_point[tok_depth == 3], minlength=npoints) if npoints else np.zeros(0, np.int64)
    pt_pos = br[point_open]
    pt_row = br_row[point_open]
    bad_pt = (ntok < 2) | (ntok > 3)
    if bad_pt.any():
        bad[pt_row[bad_pt]] = True
    st_pos = br[stroke_open]
    st_row = br_row[stroke_open]
    pt_stroke = _segment_ids(pt_pos, st_pos)
    stroke_npts = np.bincount(pt_stroke, minlength=len(st_pos)) if len(st_pos) else np.zeros(0, np.int64)
    if np.any(stroke_npts == 0):
        bad[st_row[stroke_npts == 0]] = True
    row_nstrokes = np.bincount(st_row, minlength=nrows) if len(st_row) else np.zeros(nrows, np.int64)
    bad |= row_nstrokes == 0

    # --- values, by Horner's rule over character positions. Tokens are sorted by
    # length so that step j touches only the prefix of tokens longer than j.
    tlen = te - ts
    order = np.argsort(-np.minimum(tlen, 127).astype(np.int8), kind="stable")  # radix sort
    ts_o, tlen_o = ts[order], tlen[order]
    n_longer = np.searchsorted(-tlen_o, -np.arange(int(tlen_o[0]) if len(ts) else 0), side="left")
    mant = np.zeros(len(ts), dtype=np.int64)
    ndig = np.zeros(len(ts), dtype=np.int64)
    frac = np.full(len(ts), -1, dtype=np.int64)  # digits seen when the '.' came
    neg = np.zeros(len(ts), dtype=bool)
    bad_tok = np.zeros(len(ts), dtype=bool)
    for j, m in enumerate(n_longer):
        c = a[ts_o[:m] + j]
        isd = (c - 48) < 10  # uint8 wrap: digits only
        mant[:m] = np.where(isd, mant[:m] * 10 + (c - 48), mant[:m])
        ndig[:m] += isd
        dot = c == 46
        if dot.any():
            bad_tok[:m] |= dot & (frac[:m] >= 0)  # a second '.'
            frac[:m] = np.where(dot, ndig[:m], frac[:m])
        minus = c == 45
        if minus.any():
            if j == 0:
                neg[:m] = minus
            else:
                bad_tok[:m] |= minus  # '-' inside a number
    bad_tok |= ndig == 0
    if bad_tok.any():
        bad[tok_row[order[bad_tok]]] = True
    if bad.any():
        return bad, None
    nfrac = np.where(frac >= 0, ndig - frac, 0)
    vals_o = mant / _POW10[np.minimum(nfrac, 22)]
    vals_o[neg] *= -1
    long = np.flatnonzero(ndig > 15)  # beyond exact float64 digit sums: parse these one by one
    if long.size:
        buf = a.tobytes()
        vals_o[long] = [float(buf[s : s + n]) for s, n in zip(ts_o[long], tlen_o[long])]
    vals = np.empty_like(vals_o)
    vals[order] = vals_o

    first_tok = np.zeros(npoints, dtype=np.int64)
    np.cumsum(ntok[:-1], out=first_tok[1:])
    xy = np.column_stack([vals[first_tok], vals[first_tok + 1]])
    t = np.full(npoints, np.nan)
    has_t = ntok == 3
    t[has_t] = vals[first_tok[has_t] + 2]
    return bad, (xy, t, stroke_npts.astype(np.int64), row_nstrokes.astype(np.int64))


def parse_rows(rows: list[bytes]) -> ParsedRows:
    """Parse many JSON stroke rows at once; rows the fast path can't read get ``ok=False``."""
    if not rows:
        z = np.zeros(0, np.int64)
        return ParsedRows(np.zeros(0, bool), np.zeros((0, 2)), np.zeros(0), z, z)
    bad, arrays = _scan(rows)
    if arrays is None:
        good = np.flatnonzero(~bad)
        if good.size == 0:
            z = np.zeros(0, np.int64)
            return ParsedRows(~bad, np.zeros((0, 2)), np.zeros(0), z, z)
        bad2, arrays = _scan([rows[i] for i in good])
        if arrays is None:  # cannot happen: the rows were valid alone; be strict anyway
            raise RuntimeError("fast stroke parser disagreed with itself")
    xy, t, stroke_lengths, row_nstrokes = arrays
    return ParsedRows(~bad, xy, t, stroke_lengths, row_nstrokes)
