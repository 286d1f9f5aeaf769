"""Hypothesis strategies for ink, shared by every property test."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

coords = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def strokes(draw, min_points=1, max_points=30, with_t=False):
    """One stroke: an (n, 2) float array, or (n, 3) with increasing t."""
    n = draw(st.integers(min_points, max_points))
    xy = draw(arrays(np.float64, (n, 2), elements=coords))
    if not with_t:
        return xy
    dt = draw(arrays(np.float64, (n,), elements=st.floats(0, 50, allow_nan=False)))
    return np.column_stack([xy, 1.4e12 + np.cumsum(dt)])


@st.composite
def inks(draw, max_strokes=5, max_points=30, with_t=None):
    """Raw ink: a list of 1..max_strokes strokes (all with t, or none)."""
    t = draw(st.booleans()) if with_t is None else with_t
    k = draw(st.integers(1, max_strokes))
    return [draw(strokes(max_points=max_points, with_t=t)) for _ in range(k)]


@st.composite
def spread_inks(draw, max_strokes=4, max_points=20):
    """Ink whose points are not all identical (a non-degenerate bounding box)."""
    ink = draw(inks(max_strokes=max_strokes, max_points=max_points, with_t=False))
    pts = np.concatenate(ink)
    if np.ptp(pts, axis=0).max() < 1e-2:
        ink = ink + [pts[:1] + np.array([[1.0, 0.5]])]
    return ink


@st.composite
def points3(draw, max_strokes=5, max_points=30):
    """A points-3 array [x, y, pen_up] with pen_up == 1 ending every stroke."""
    ink = draw(inks(max_strokes=max_strokes, max_points=max_points, with_t=False))
    from strokes.formats import ink_to_points3

    return ink_to_points3(ink, dtype=np.float64)


translations = st.tuples(
    st.floats(-1e3, 1e3, allow_nan=False), st.floats(-1e3, 1e3, allow_nan=False)
)
scales = st.floats(0.01, 100, allow_nan=False)


# -- rendering ---------------------------------------------------------------

# x or y of normalized ink: any float32 in [0, 1), or a multiple of 1/64, which
# lies on a pixel edge or centre for every size in {8, 16, 32} (boundary cases)
unit_coords = st.one_of(
    st.floats(0, 1, exclude_max=True, width=32),
    st.integers(0, 63).map(lambda k: k / 64),
)


def _as_points3(xy: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """float32 [x, y, pen_up] with pen_up == 1 on the last point of every stroke."""
    pen = np.asarray(ends, dtype=bool).copy()
    pen[-1] = True
    return np.column_stack([xy, pen]).astype(np.float32)


@st.composite
def unit_inks(draw, max_points=12):
    """Normalized points-3 ink (float32, coordinates in [0, 1)), degenerate ones included.

    Kinds: random strokes; the output of strokes.normalize on raw ink; one point;
    all-identical points (in one or several strokes); a zero-width vertical or
    zero-height horizontal set of collinear strokes.
    """
    kind = draw(st.sampled_from(["random", "normalized", "one_point", "identical", "vertical", "horizontal"]))
    if kind == "normalized":
        from strokes import normalize

        return normalize(draw(inks(max_strokes=3, max_points=max_points // 3 + 1, with_t=False)))
    n = 1 if kind == "one_point" else draw(st.integers(1, max_points))
    xy = draw(arrays(np.float64, (n, 2), elements=unit_coords))
    ends = draw(arrays(np.bool_, (n,), elements=st.booleans()))
    if kind == "identical":
        xy[:] = xy[0]
    elif kind == "vertical":
        xy[:, 0] = xy[0, 0]
    elif kind == "horizontal":
        xy[:, 1] = xy[0, 1]
    return _as_points3(xy, ends)


@st.composite
def _wild_coord(draw, huge: bool):
    """A float32 coordinate in [-5, 6], or with ``huge`` one time in ten -1e6 or 1e6."""
    if huge and draw(st.integers(0, 9)) == 0:  # one coordinate in ten is far away
        return draw(st.sampled_from([-1e6, 1e6]))
    return draw(st.floats(-5, 6, width=32))


@st.composite
def wild_inks(draw, max_points=8, huge=True):
    """Points-3 ink (float32) with coordinates far outside the unit square: in [-5, 6],
    and with ``huge`` about one coordinate in ten at -1e6 or 1e6."""
    n = draw(st.integers(1, max_points))
    xy = draw(arrays(np.float64, (n, 2), elements=_wild_coord(huge)))
    ends = draw(arrays(np.bool_, (n,), elements=st.booleans()))
    return _as_points3(xy, ends)


@st.composite
def render_options(draw, sizes=(8, 16, 32)):
    """Keyword options for rendering.rasterize: size, thickness in [1, 4] pixels, antialias."""
    size = draw(st.sampled_from(sizes))
    antialias = draw(st.booleans())
    thickness = draw(st.one_of(st.floats(1, 4), st.sampled_from([1.0, 2.0, float(np.nextafter(2, 0)), 2.9999])))
    return {"size": size, "thickness": thickness, "antialias": antialias}


def channel_sets():
    """A non-empty tuple of distinct rendering channels, in any order."""
    from rendering import CHANNELS

    return st.lists(st.sampled_from(sorted(CHANNELS)), min_size=1, max_size=len(CHANNELS), unique=True).map(tuple)


# -- JSON request bodies (fuzzing strokes serve) -------------------------------

#: any JSON scalar, awkward ones included: integers far past int64 and float64,
#: floats past float32 or subnormal, NaN and the infinities (json.dumps writes
#: them as NaN / Infinity literals, which are not JSON and must be refused)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.builds(lambda sign, digits: sign * 10**digits, st.sampled_from([-1, 1]), st.integers(18, 400)),  # from int64's end to past float64's
    st.floats(),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-300, 3.5e38, 1e308, -1e308, 2**63, 2**64]),
    st.text(max_size=12),
)

#: any JSON value: scalars nested in arrays and objects (keys sometimes the ones the server looks for)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(["strokes", "x", "y", "t"]), st.text(max_size=6)), inner, max_size=5),
    ),
    max_leaves=30,
)

# coordinates of ink that parses: mostly tame, sometimes huge, tiny or past float32
_ink_numbers = st.one_of(
    st.floats(-1e4, 1e4),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 5e-324, 1e-300, 3.5e38, -3.5e38, 1e308, -1e308, 2**53 + 1]),
)


@st.composite
def ink_json(draw, max_strokes=5, max_points=10):
    """Ink-shaped JSON, valid or one thing away from it.

    Strokes of ``[x, y]``, ``[x, y, t]`` or ``{"x", "y"[, "t"]}`` points (one kind
    per ink), zero strokes and empty strokes included, with numbers from tame to
    extreme; then, half the time, one stroke, point or coordinate replaced by any
    JSON value. Returned bare or under ``"strokes"`` (with other keys beside it).
    """
    kind = draw(st.sampled_from(["xy", "xyt", "dict", "dict_t"]))

    def point():
        x, y, t = draw(_ink_numbers), draw(_ink_numbers), draw(_ink_numbers)
        if kind.startswith("dict"):
            return {"x": x, "y": y, "t": t} if kind == "dict_t" else {"x": x, "y": y}
        return [x, y, t] if kind == "xyt" else [x, y]

    strokes_ = [[point() for _ in range(draw(st.integers(0, max_points)))] for _ in range(draw(st.integers(0, max_strokes)))]
    if strokes_ and draw(st.booleans()):  # one thing wrong
        si = draw(st.integers(0, len(strokes_) - 1))
        stroke = strokes_[si]
        where = draw(st.sampled_from(["stroke", "point", "coordinate"]))
        if where == "stroke" or not stroke:
            strokes_[si] = draw(json_values)
        else:
            pi = draw(st.integers(0, len(stroke) - 1))
            if where == "point":
                stroke[pi] = draw(json_values)
            elif isinstance(stroke[pi], dict):
                stroke[pi][draw(st.sampled_from(["x", "y", "t"]))] = draw(json_scalars)
            else:
                stroke[pi][draw(st.integers(0, len(stroke[pi]) - 1))] = draw(json_scalars)
    if draw(st.booleans()):
        return strokes_
    return {"strokes": strokes_, **draw(st.dictionaries(st.text(max_size=6).filter(lambda k: k != "strokes"), json_values, max_size=2))}


@st.composite
def json_request_bodies(draw, oversize=None):
    """Request bodies (bytes) for ``POST /api/classify``: :func:`ink_json` or any
    JSON value, serialized, and sometimes truncated, deeply nested, not UTF-8, or
    padded with whitespace past ``oversize`` bytes (the server's ``max_body``)."""
    import json

    text = json.dumps(draw(st.one_of(ink_json(), json_values)), ensure_ascii=draw(st.booleans()))
    body = text.encode("utf-8")
    how = draw(st.sampled_from(["as is", "as is", "as is", "truncated", "nested", "not utf-8"] + (["padded"] if oversize else [])))
    if how == "truncated":
        body = body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    elif how == "nested":  # around json's recursion limit, and past it
        depth = draw(st.integers(1, 3000))
        body = b"[" * depth + body + b"]" * depth
    elif how == "not utf-8":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) + body[at:]
    elif how == "padded":
        body = body + b" " * (oversize - len(body) + draw(st.integers(1, 1000)))
    return body


# -- damaged files (fuzzing the loaders) ---------------------------------------


@st.composite
def mutated_bytes(draw, base: bytes, tokens=(), max_ops: int = 8):
    """``base`` damaged by 1..max_ops edits: a bit flipped, a byte set, bytes or a
    token (from ``tokens``) inserted or written over a run, a run deleted or
    repeated, or the rest cut off. Positions favour the first 64 bytes half the
    time (headers: the XML declaration, a dump's first lines)."""
    data = bytearray(base)
    ops = ["flip", "set", "insert", "delete", "truncate", "repeat"] + (["token", "overwrite"] if tokens else [])
    for _ in range(draw(st.integers(1, max_ops))):
        if not data:
            data = bytearray(draw(st.binary(min_size=1, max_size=4)))
        n = len(data)
        i = draw(st.one_of(st.integers(0, min(63, n - 1)), st.integers(0, n - 1)))
        op = draw(st.sampled_from(ops))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "token":
            data[i:i] = draw(st.sampled_from(tokens))
        elif op == "overwrite":
            tok = draw(st.sampled_from(tokens))
            data[i : i + len(tok)] = tok
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 32))]
        elif op == "truncate":
            del data[i:]
        else:  # repeat a run
            data[i:i] = data[i : i + draw(st.integers(1, 64))]
    return bytes(data)
