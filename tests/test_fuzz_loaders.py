"""Fuzzed bytes for the InkML and detexify dump loaders: small valid files, damaged by flipped, inserted,
deleted and repeated bytes, tokens and truncation. The loaders never crash: one bad record is skipped
with its source and reason, a wholly unreadable dump is a ValueError naming the file, and every
record that goes in is either loaded or skipped."""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings

from strokes.ink import MAX_COORDINATE
from strokes.io import import_to_store
from strokes.io.detexify import _COPY_RE, load_detexify_sql
from strokes.io.inkml import load_inkml
from strategies import mutated_bytes
from test_io_detexify import GOOD_ROWS, dump_text
from test_io_inkml import GOOD

INK = GOOD.encode()
INK_TOKENS = (
    b"<", b">", b"&", b"&amp;", b"&bogus;", b"</trace>", b'<trace id="9">', b"<traceView traceDataRef=\"9\"/>",
    b"</traceGroup>", b'<channel name="T" type="decimal"/>', b'<channel name="F" type="decimal"/>',
    b"1e39", b"-1e400", b"nan", b"inf", b",", b" ", b"\xff", b"\x00", b"<!--", b"]]>", b"UTF-9", b"utf-32",
)  # fmt: skip

DUMP = dump_text(GOOD_ROWS).encode()
DUMP_TOKENS = (
    b"\t", b"\n", b"\\.", b"\\.\n", b"\\N", b"\\", b"\\t", b"\\x", b"\\377", b"[", b"]", b"[[[", b"]]]", b"{", b'{"x":',
    b",", b"-", b".", b"1e39", b"NaN", b"Infinity", b"\r\n", b"\xff", b"\x00", b"[" * 3000, b"9" * 40,
)  # fmt: skip

SETTINGS = settings(max_examples=150, deadline=None)


def _symbols_in(data: bytes):
    """Symbols (traceGroups holding traceViews) in an InkML document, or None when it does not parse."""
    try:
        root = ET.fromstring(data)
    except (ET.ParseError, LookupError, ValueError):
        return None
    local = lambda tag: tag.rsplit("}", 1)[-1]  # noqa: E731
    return sum(
        1 for g in root.iter() if local(g.tag) == "traceGroup" and any(local(c.tag) == "traceView" for c in g)
    )


@SETTINGS
@given(data=mutated_bytes(INK, INK_TOKENS))
@example(data=INK)
@example(data=INK.replace(b"UTF-8", b"UTF-9"))  # an unknown encoding: was a LookupError out of the loader
@example(data=INK.replace(b"UTF-8", b"utf-32"))  # a multi-byte one: was a bare ValueError that stopped the directory
@example(  # X and Y at positions 1 and 2, but most traces 2 values wide: was an IndexError
    data=INK.replace(b'<channel name="X"', b'<channel name="F" type="decimal"/><channel name="X"').replace(b"50 60", b"0 50 60")
)
@example(data=INK.replace(b"50 60", b"1e39 60"))  # past as_ink's cap and float32: was loaded as inf
def test_inkml_damaged_file_never_stops_the_directory(data):
    """A damaged .inkml file is read, partly skipped or skipped whole, never a crash; files and symbols in = loaded + skipped."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bad.inkml").write_bytes(data)
        (root / "good.inkml").write_bytes(INK)
        ds = load_inkml(root, progress=False)
    info = ds.info
    assert info["files_in"] == 2 == info["files_read"] + info["files_skipped"]
    assert info["symbols_in"] == len(ds) + info["symbols_skipped"]
    assert len(ds.skipped) == info["files_skipped"] + info["symbols_skipped"]
    assert info["loaded"] == len(ds)
    assert ds.sources().count("good.inkml") == 3  # the intact file always loads in full
    assert all(s.source.startswith("bad.inkml") and s.reason for s in ds.skipped)
    assert np.abs(ds.xy).max(initial=0) <= np.float32(MAX_COORDINATE)  # finite, within as_ink's cap
    # every symbol of the damaged file is accounted for: loaded or skipped, or the file skipped whole
    file_skips = [s for s in ds.skipped if s.source == "bad.inkml"]
    loaded_bad = ds.sources().count("bad.inkml")
    expected = _symbols_in(data)
    if file_skips:
        assert len(file_skips) == 1 and loaded_bad == 0 and len(ds.skipped) == 1
    else:
        assert expected is not None, "a file that is not XML must be skipped whole"
        assert loaded_bad + len(ds.skipped) == expected


def _is_copy_line(line: bytes) -> bool:
    m = _COPY_RE.match(line)  # where the block starts is the loader's call; what follows is counted here
    return bool(m) and m.group(2).strip(b'"') == b"samples"


def _rows_in(data: bytes):
    """Lines of the first samples COPY block, up to its end marker; None if there is no block or no end."""
    lines = data.split(b"\n")
    start = next((i for i, line in enumerate(lines) if _is_copy_line(line)), None)
    if start is None:
        return None
    body = lines[start + 1 :]
    for n, line in enumerate(body):
        if line in (b"\\.", b"\\.\r"):
            return n
    return None  # truncated


@SETTINGS
@given(data=mutated_bytes(DUMP, DUMP_TOKENS))
@example(data=DUMP)
@example(data=DUMP.replace(b"[[[-1.125", b"[" * 3000 + b"[[[-1.125"))  # too deep for json: was a RecursionError
@example(data=DUMP.replace(b"[[[-1.125", b"[[[1" + b"0" * 39 + b".5,1],[-1.125"))  # past the cap: was loaded as inf
@example(data=DUMP.replace(b"(id, key, strokes)", b"(id, k\xffey, strokes)"))  # was a UnicodeDecodeError naming no file
@example(data=DUMP.replace(b"\\.\n", b""))  # truncated: the error must name the file
def test_dump_damaged_bytes_load_or_raise_a_clean_value_error(data):
    """A damaged dump loads (rows in = loaded + skipped) or raises a ValueError naming the file; an import leaves no partial store."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.sql"
        path.write_bytes(data)
        try:
            ds = load_detexify_sql(path, progress=False)
        except ValueError as exc:
            assert str(path) in str(exc), f"the error does not name the file: {exc}"
            with pytest.raises(ValueError):
                import_to_store(path, Path(tmp) / "d.strokes")
            assert sorted(p.name for p in Path(tmp).iterdir()) == ["d.sql"]  # no store, no temporary directory
            return
        expected = _rows_in(data)
        assert expected is not None, "a dump without a whole COPY block must raise"
        assert ds.info["records_in"] == expected == len(ds) + len(ds.skipped)
        assert all(s.source and s.reason for s in ds.skipped)
        assert np.abs(ds.xy).max(initial=0) <= np.float32(MAX_COORDINATE)  # finite, within as_ink's cap
        store = import_to_store(path, Path(tmp) / "d.strokes")
        assert store.fingerprint() == ds.fingerprint()
        assert store.info["records_in"] == expected and len(store.skipped) == len(ds.skipped)
