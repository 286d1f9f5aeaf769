"""The rasterizer kernel, written once for numpy and torch.

The kernel turns a ragged batch of points-3 inks into images. It is written
against a tiny array shim (:class:`_NumpyOps` / :class:`_TorchOps`) so that the
numpy and the torch backends run the *same* sequence of float32 operations,
which is why they agree to within rounding (in practice bit for bit on CPU).

Algorithm, all vectorized over the whole batch (no loop per sample, stroke or
segment):

1. Points are scaled to pixel units (x * size, y * size). A *segment* joins two
   consecutive points of one stroke; a one-point stroke is a zero-length
   segment (a dot). Nothing joins two strokes.
2. Each segment is put in canonical order (lexicographically smaller endpoint
   first), so the image does not depend on the direction a stroke was drawn.
3. Each segment is clipped (Liang-Barsky) to the image grown by the reach of a
   pixel, so that far-away coordinates cost nothing and never wrap around.
4. Each clipped segment is cut into *pieces* no longer than ``L`` pixels (in
   the max norm); each piece gets a fixed ``W x W`` window of pixels that
   contains every pixel centre it can reach.
5. For every (piece, window pixel) pair the coverage of the pixel by the
   *whole* segment is computed: anti-aliased, ``clip(r + 0.5 - d, 0, 1)`` with
   ``d`` the Euclidean distance from the pixel centre to the segment and
   ``r = thickness / 2``; hard, 1 where the square of half-size ``r`` around
   the pixel centre meets the segment (max-norm distance <= r, a separating
   axis test without divisions).
6. Coverages are scattered into the output with a max, so overlapping strokes
   compose by max and ink never exceeds 1. Extra channels scatter
   ``coverage * value`` the same way.
"""

from __future__ import annotations

import math

import numpy as np

#: Names of the channels :func:`rendering.rasterize` can draw, with how many
#: image planes each one takes.
CHANNELS: dict[str, int] = {"ink": 1, "order": 1, "stroke": 1, "direction": 2}


class _NumpyOps:
    name = "numpy"
    chunk_entries = 1 << 16  # temporaries stay in the CPU cache

    def __init__(self):
        self.f32 = np.float32
        self.f64 = np.float64
        self.i64 = np.int64

    def asarray(self, a, dtype):
        return np.asarray(a, dtype=dtype)

    def arange(self, n, dtype=None):
        return np.arange(n, dtype=dtype or np.int64)

    def zeros(self, n, dtype):
        return np.zeros(n, dtype=dtype)

    def full(self, n, value, dtype):
        return np.full(n, value, dtype=dtype)

    def repeat(self, a, counts):
        return np.repeat(a, counts)

    def cumsum(self, a):
        return np.cumsum(a)

    def diff(self, a):
        return np.diff(a)

    def nonzero(self, mask):
        return np.flatnonzero(mask)

    def cat(self, arrays):
        return np.concatenate(arrays)

    def where(self, cond, a, b):
        return np.where(cond, a, b)

    def minimum(self, a, b):
        return np.minimum(a, b)

    def maximum(self, a, b):
        return np.maximum(a, b)

    def clip(self, a, lo, hi):
        return np.minimum(np.maximum(a, lo), hi)

    def floor_int(self, a):
        return np.floor(a).astype(np.int64)

    def ceil_int(self, a):
        return np.ceil(a).astype(np.int64)

    def sqrt(self, a):
        return np.sqrt(a)

    def abs(self, a):
        return np.abs(a)

    def to(self, a, dtype):
        return a.astype(dtype, copy=False)

    def isfinite_all(self, a):
        return bool(np.isfinite(a).all())

    def scatter_max(self, out, index, values):
        np.maximum.at(out, index, values)

    def total(self, a) -> int:
        return int(a.sum())

    def all_within(self, a, lo, hi) -> bool:
        return bool(a.min() >= lo and a.max() <= hi) if a.size else True

    def index_dtype(self, n):
        return np.int32 if n < 2**31 else np.int64

    def scatter_one(self, out, index):
        out[index] = 1.0

    def contiguous(self, a):
        return np.ascontiguousarray(a)


class _TorchOps:
    name = "torch"

    def __init__(self, device):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        # CPU: chunks small enough to stay in cache (fresh large tensors page-fault);
        # GPU: large chunks, since every op is a kernel launch
        self.chunk_entries = 1 << 17 if self.device.type == "cpu" else 1 << 24
        self.f32 = torch.float32
        self.f64 = torch.float64
        self.i64 = torch.int64

    def asarray(self, a, dtype):
        return self.torch.as_tensor(a, dtype=dtype, device=self.device)

    def arange(self, n, dtype=None):
        return self.torch.arange(n, dtype=dtype or self.i64, device=self.device)

    def zeros(self, n, dtype):
        return self.torch.zeros(n, dtype=dtype, device=self.device)

    def full(self, n, value, dtype):
        return self.torch.full((n,), value, dtype=dtype, device=self.device)

    def repeat(self, a, counts):
        return self.torch.repeat_interleave(a, counts)

    def cumsum(self, a):
        return self.torch.cumsum(a, 0)

    def diff(self, a):
        return a[1:] - a[:-1]

    def nonzero(self, mask):
        return self.torch.nonzero(mask).reshape(-1)

    def cat(self, arrays):
        return self.torch.cat(arrays)

    def where(self, cond, a, b):
        t = self.torch
        if not isinstance(a, t.Tensor):
            a = t.tensor(a, dtype=b.dtype if isinstance(b, t.Tensor) else self.f32, device=self.device)
        if not isinstance(b, t.Tensor):
            b = t.tensor(b, dtype=a.dtype, device=self.device)
        return t.where(cond, a, b)

    def minimum(self, a, b):
        return self.torch.minimum(a, b)

    def maximum(self, a, b):
        return self.torch.maximum(a, b)

    def clip(self, a, lo, hi):
        return self.torch.clamp(a, lo, hi)

    def floor_int(self, a):
        return self.torch.floor(a).to(self.i64)

    def ceil_int(self, a):
        return self.torch.ceil(a).to(self.i64)

    def sqrt(self, a):
        return self.torch.sqrt(a)

    def abs(self, a):
        return self.torch.abs(a)

    def to(self, a, dtype):
        return a.to(dtype)

    def isfinite_all(self, a):
        return bool(self.torch.isfinite(a).all())

    def scatter_max(self, out, index, values):
        out.scatter_reduce_(0, index, values, reduce="amax", include_self=True)

    def total(self, a) -> int:
        return int(a.sum())

    def all_within(self, a, lo, hi) -> bool:
        return bool(((a >= lo) & (a <= hi)).all())

    def index_dtype(self, n):
        return self.i64  # scatter_reduce_ wants int64 indices

    def scatter_one(self, out, index):
        out[index] = 1.0

    def contiguous(self, a):
        return a.contiguous()


#: Hard lines ink pixels whose max-norm distance is within thickness / 2 plus
#: this many pixels: ties (a point exactly on a pixel corner) go to ink, however
#: float32 rounds them.
HARD_SLACK = 2e-5


def window_geometry(thickness: float, antialias: bool) -> tuple[float, int, float]:
    """Reach ``R`` (pixels), window width ``W`` and maximum piece length ``L``.

    A pixel can receive ink only if its centre lies within ``R`` of a segment
    (Euclidean distance for anti-aliased lines, where coverage is
    ``clip(R - d, 0, 1)`` and so zero at ``d = R``; max-norm distance for hard
    lines, inked up to and including ``d = R``). A piece whose bounding box is
    at most ``L`` wide can reach pixel centres in an interval of length
    ``L + 2R``, which holds at most ``W`` of them: ``W = ceil(L + 2R)`` for the
    open interval (anti-aliased) and ``floor(L + 2R) + 1`` for the closed one
    (hard). ``L`` is chosen just under the value that would need a wider
    window.
    """
    r = thickness / 2.0
    if antialias:
        reach = r + 0.5
        width = max(3, math.ceil(2 * reach + 1.0))
        length = width - 2 * reach
    else:
        reach = r + HARD_SLACK
        width = math.floor(2 * reach) + 1  # the narrowest window; pieces must then be short
        if width - 2 * reach < 0.5:  # ...too short (thickness just under a whole number): one more pixel
            width += 1
        length = width - 2 * reach
    return reach, width, length * (1 - 1e-3)


def rasterize_ragged(
    ops,
    points,
    offsets,
    *,
    size: int,
    thickness: float,
    antialias: bool,
    channels: tuple[str, ...],
):
    """Render a ragged batch; returns a flat float32 array of N * C * size * size.

    ``points`` is ``(P, 3)`` ``[x, y, pen_up]`` (unit-square coordinates) and
    ``offsets`` ``(N + 1,)``; sample i is ``points[offsets[i]:offsets[i + 1]]``
    (it may be empty: a blank image). Both are already ``ops`` arrays.
    """
    f32, i64 = ops.f32, ops.i64
    n_samples = int(offsets.shape[0]) - 1
    n_planes = sum(CHANNELS[c] for c in channels)
    plane = size * size
    n_points = int(points.shape[0])
    if n_points == 0 or n_samples == 0:
        return ops.zeros(n_samples * n_planes * plane, f32)

    # -- points and strokes --------------------------------------------------
    px = points[:, 0] * float(size)  # (P,) pixel units, x to the right
    py = points[:, 1] * float(size)  # (P,) pixel units, y down
    lengths = ops.diff(offsets)  # (N,) points per sample
    sample_of = ops.repeat(ops.arange(n_samples), lengths)  # (P,)
    nonempty = ops.nonzero(lengths > 0)
    stroke_end = points[:, 2] > 0.5  # (P,) pen lifts after this point
    stroke_end[offsets[1:][nonempty] - 1] = True  # a sample's last point ends a stroke
    stroke_start = ops.zeros(n_points, stroke_end.dtype)  # (P,)
    stroke_start[0] = True
    stroke_start[1:] = stroke_end[:-1]

    # -- segments: consecutive points of a stroke, plus dots -----------------
    seg_i = ops.nonzero(~stroke_end)  # (K1,) segment i -> i + 1
    dot_i = ops.nonzero(stroke_start & stroke_end)  # (K2,) one-point strokes
    ia = ops.cat([seg_i, dot_i])  # (K,) first endpoint
    ib = ops.cat([seg_i + 1, dot_i])  # (K,) second endpoint
    ax, ay, bx, by = px[ia], py[ia], px[ib], py[ib]  # (K,) each
    seg_sample = sample_of[ia]  # (K,)

    # per-segment channel values at both endpoints (coverage is multiplied in)
    values = []  # per output plane: None (plain ink) or ((K,) value at a, (K,) value at b)
    if any(c != "ink" for c in channels):
        first = offsets[:-1][sample_of]  # (P,) index of the sample's first point
        n_in_sample = ops.to(lengths[sample_of], f32)  # (P,)
        order = ops.to(ops.arange(n_points) - first + 1, f32) / n_in_sample  # (P,) in (0, 1]
        stroke_no = ops.cumsum(ops.to(stroke_start, i64))  # (P,) global stroke number, 1-based
        strokes_before = ops.cat([ops.zeros(1, i64), stroke_no])[first]  # (P,)
        stroke_count = ops.zeros(n_samples, i64)
        stroke_count[nonempty] = stroke_no[offsets[1:][nonempty] - 1]
        stroke_count[nonempty] -= ops.cat([ops.zeros(1, i64), stroke_no])[offsets[:-1][nonempty]]
        stroke_val = ops.to(stroke_no - strokes_before, f32) / ops.to(
            stroke_count[sample_of], f32
        )  # (P,) in (0, 1]
        dx, dy = bx - ax, by - ay  # (K,) drawing direction
        norm = ops.sqrt(dx * dx + dy * dy)
        moving = norm > 0
        safe = ops.where(moving, norm, 1.0)
        dir_x = ops.where(moving, (dx / safe + 1.0) * 0.5, 0.5)  # (K,) in [0, 1]
        dir_y = ops.where(moving, (dy / safe + 1.0) * 0.5, 0.5)
        for c in channels:
            if c == "ink":
                values.append(None)
            elif c == "order":
                values.append((order[ia], order[ib]))
            elif c == "stroke":
                values.append((stroke_val[ia], stroke_val[ia]))
            else:  # direction: two planes
                values.append((dir_x, dir_x))
                values.append((dir_y, dir_y))
    else:
        values = [None] * n_planes

    # -- canonical order: the smaller endpoint first -------------------------
    swap = (ax > bx) | ((ax == bx) & (ay > by))
    ax, bx = ops.where(swap, bx, ax), ops.where(swap, ax, bx)
    ay, by = ops.where(swap, by, ay), ops.where(swap, ay, by)
    values = [
        None if v is None else (ops.where(swap, v[1], v[0]), ops.where(swap, v[0], v[1]))
        for v in values
    ]

    # -- clip to the grown image (Liang-Barsky) ------------------------------
    reach, width, max_len = window_geometry(thickness, antialias)
    lo, hi = -reach - 1.0, size + reach + 1.0
    vx, vy = bx - ax, by - ay  # (K,)
    n_seg = int(ax.shape[0])
    if not (ops.all_within(px, lo, hi) and ops.all_within(py, lo, hi)):  # else clipping is a no-op
        # float64: a cut point computed from a far-away endpoint keeps its precision
        f64 = ops.f64
        ax64, ay64, bx64, by64 = (ops.to(c, f64) for c in (ax, ay, bx, by))
        vx64, vy64 = bx64 - ax64, by64 - ay64  # (K,)
        t0 = ops.zeros(n_seg, f64)
        t1 = ops.full(n_seg, 1.0, f64)
        keep = ops.full(n_seg, True, swap.dtype)
        for a, v in ((ax64, vx64), (ay64, vy64)):
            still = v == 0
            keep = keep & ~(still & ((a < lo) | (a > hi)))
            safe_v = ops.where(still, 1.0, v)
            ta = (lo - a) / safe_v
            tb = (hi - a) / safe_v
            t0 = ops.where(still, t0, ops.maximum(t0, ops.minimum(ta, tb)))
            t1 = ops.where(still, t1, ops.minimum(t1, ops.maximum(ta, tb)))
        keep = keep & (t0 <= t1)
        clipped_a, clipped_b = t0 > 0, t1 < 1
        kept = ops.nonzero(keep)
        t0_32, t1_32 = ops.to(t0, f32), ops.to(t1, f32)
        values = [
            None
            if v is None
            else (
                ops.where(clipped_a, v[0] + t0_32 * (v[1] - v[0]), v[0])[kept],
                ops.where(clipped_b, v[0] + t1_32 * (v[1] - v[0]), v[1])[kept],
            )
            for v in values
        ]
        ax, ay, bx, by = (
            ops.to(ops.where(clipped_a, ax64 + t0 * vx64, ax64)[kept], f32),
            ops.to(ops.where(clipped_a, ay64 + t0 * vy64, ay64)[kept], f32),
            ops.to(ops.where(clipped_b, ax64 + t1 * vx64, bx64)[kept], f32),
            ops.to(ops.where(clipped_b, ay64 + t1 * vy64, by64)[kept], f32),
        )
        seg_sample = seg_sample[kept]
        vx, vy = bx - ax, by - ay
        n_seg = int(ax.shape[0])
    if n_seg == 0:
        return ops.zeros(n_samples * n_planes * plane, f32)

    # -- pieces, each with a W x W window of pixels ---------------------------
    extent = ops.maximum(ops.abs(vx), ops.abs(vy))  # (K,) max-norm length
    n_pieces = ops.maximum(ops.ceil_int(extent / max_len), ops.full(n_seg, 1, i64))  # (K,)
    n_total = ops.total(n_pieces)
    if n_total == n_seg:  # every segment is one piece (the common case for dense ink)
        piece_seg = None
        min_x, min_y = ax, ops.minimum(ay, by)  # (M,); canonical order has ax <= bx
    else:
        piece_seg = ops.repeat(ops.arange(n_seg), n_pieces)  # (M,)
        k = ops.arange(n_total) - ops.repeat(ops.cumsum(n_pieces) - n_pieces, n_pieces)  # (M,)
        step = 1.0 / ops.to(n_pieces, f32)  # (K,) fraction of the segment per piece
        pstep = step[piece_seg]
        frac0 = ops.to(k, f32) * pstep  # (M,) where the piece starts along its segment
        pvy = vy[piece_seg]
        min_x = ax[piece_seg] + frac0 * vx[piece_seg]  # (M,)
        min_y = ay[piece_seg] + ops.where(pvy >= 0, frac0, frac0 + pstep) * pvy

    def per_piece(a):  # (K,) segment quantity -> (M,) piece quantity
        return a if piece_seg is None else a[piece_seg]

    # first pixel whose centre can be reached: c + 0.5 > min - reach
    col0 = ops.ceil_int(min_x - reach - 0.5)  # (M,)
    row0 = ops.ceil_int(min_y - reach - 0.5)
    pad = int(math.ceil(2 * reach)) + 3  # windows of clipped pieces never leave the canvas
    side = size + 2 * pad
    canvas = side * side
    idx_t = ops.index_dtype(n_samples * n_planes * canvas)
    pieces = _Pieces(
        ux0=ops.to(col0, f32) + 0.5 - per_piece(ax),  # (M,) first window centre minus a
        uy0=ops.to(row0, f32) + 0.5 - per_piece(ay),
        vx=per_piece(vx),  # (M,) the whole segment b - a
        vy=per_piece(vy),
        base=ops.to(per_piece(seg_sample), idx_t) * (n_planes * canvas)
        + ops.to(row0 + pad, idx_t) * side
        + ops.to(col0 + pad, idx_t),  # (M,) flat canvas index of the window's first pixel
        values=[None if v is None else (per_piece(v[0]), per_piece(v[1])) for v in values],
    )
    big = ops.zeros(n_samples * n_planes * canvas, f32)
    window = _Window(ops, width, side, idx_t)
    chunk = max(1, ops.chunk_entries // (width * width))
    for s in range(0, n_total, chunk):  # chunks of pieces keep temporaries in cache
        _draw(ops, big, pieces.slice(s, s + chunk), window, canvas, reach, thickness, antialias)
    big = big.reshape(n_samples * n_planes, side, side)[:, pad : pad + size, pad : pad + size]
    return ops.contiguous(big).reshape(-1)


class _Pieces:
    """Per-piece arrays, (M,) each."""

    def __init__(self, ux0, uy0, vx, vy, base, values):
        self.ux0, self.uy0, self.vx, self.vy, self.base, self.values = ux0, uy0, vx, vy, base, values

    def slice(self, s, e) -> "_Pieces":
        return _Pieces(
            self.ux0[s:e],
            self.uy0[s:e],
            self.vx[s:e],
            self.vy[s:e],
            self.base[s:e],
            [None if v is None else (v[0][s:e], v[1][s:e]) for v in self.values],
        )


class _Window:
    """Offsets of the W x W window pixels from its first pixel."""

    def __init__(self, ops, width, side, idx_t):
        span = ops.arange(width)
        dc = (span.reshape(1, -1) + 0 * span.reshape(-1, 1)).reshape(-1, 1)  # (W*W, 1) columns
        dr = (span.reshape(-1, 1) + 0 * span.reshape(1, -1)).reshape(-1, 1)  # (W*W, 1) rows
        self.dx = ops.to(dc, ops.f32)
        self.dy = ops.to(dr, ops.f32)
        self.flat = ops.to(dr * side + dc, idx_t)


def _draw(ops, big, p: _Pieces, window: _Window, canvas, reach, thickness, antialias):
    """Scatter the coverage of one chunk of pieces into the canvases ``big``."""
    # window-major layout, (W*W, m): the long axis is innermost, which vectorizes well
    ux = window.dx + p.ux0.reshape(1, -1)  # (W*W, m) pixel centre minus segment start
    uy = window.dy + p.uy0.reshape(1, -1)
    svx, svy = p.vx.reshape(1, -1), p.vy.reshape(1, -1)  # (1, m)
    index = (window.flat + p.base.reshape(1, -1)).reshape(-1)  # (W*W * m,)
    need_t = antialias or any(v is not None for v in p.values)
    if need_t:
        len2 = svx * svx + svy * svy  # (1, m)
        inv_len2 = ops.where(len2 > 0, 1.0 / ops.where(len2 > 0, len2, 1.0), 0.0)
        t = ops.clip((ux * svx + uy * svy) * inv_len2, 0.0, 1.0)  # (W*W, m) nearest point
    if antialias:
        ex = ux - t * svx
        ey = uy - t * svy
        cover = ops.clip(reach - ops.sqrt(ex * ex + ey * ey), 0.0, 1.0)  # (W*W, m)
    else:
        r = thickness / 2.0 + HARD_SLACK
        hit = (ops.abs(2.0 * ux - svx) <= 2.0 * r + ops.abs(svx)) & (
            ops.abs(2.0 * uy - svy) <= 2.0 * r + ops.abs(svy)
        )
        hit = hit & (ops.abs(ux * svy - uy * svx) <= r * (ops.abs(svx) + ops.abs(svy)))
        cover = None
    for plane_no, v in enumerate(p.values):  # one scatter per output plane
        if v is None and cover is None:  # hard plain ink: every hit is 1.0
            ops.scatter_one(big, index[hit.reshape(-1)] + plane_no * canvas)
            continue
        c = cover if cover is not None else ops.to(hit, ops.f32)
        if v is not None:
            va, vb = v[0].reshape(1, -1), v[1].reshape(1, -1)
            c = c * (va + t * (vb - va))
        ops.scatter_max(big, index + plane_no * canvas, c.reshape(-1))
