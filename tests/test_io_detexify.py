"""Detexify data: keys and labels, the PostgreSQL dump (no server), the vectorized JSON parser, CouchDB JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import strokes
from strokes.dataset import DatasetBuilder, StrokeDataset
from strokes.io import infer_format
from strokes.io._pointsjson import parse_rows
from strokes.io.detexify import (
    key_to_label,
    label_to_key,
    load_couchdb_json,
    load_detexify_sql,
    save_detexify_sql,
    strokes_json,
)
from datasets import assert_same_data as assert_same
from datasets import small_dataset

BS = "\\"  # one backslash


# ------------------------------------------------------------------ keys
@pytest.mark.parametrize(
    "key, label",
    [
        ("latex2e-OT1-_alpha", r"\alpha"),  # old style: '_' for the backslash
        ("amssymb-OT1-\\not_sim", r"\not_sim"),  # new style: the backslash itself
        ("latex2e-OT1-__", r"\_"),
        ("amssymb-OT1-_bigstar", r"\bigstar"),
        ("latex2e-OT1-a", "a"),
        ("latex2e-OT1-(", "("),
        ("latex2e-OT1--", "-"),
        ("latex2e-OT1-\\{", r"\{"),
        ("stmaryrd-OT1-_llbracket", r"\llbracket"),
        ("nodashes", "nodashes"),  # no package-encoding prefix: unchanged
        ("latex2e-OT1-", "latex2e-OT1-"),  # empty command: unchanged
    ],
)
def test_key_to_label(key, label):
    assert key_to_label(key) == label
    assert key_to_label(key, "command") == label


@pytest.mark.parametrize("key", ["latex2e-OT1-_alpha", "amssymb-OT1-\\not_sim", "latex2e-OT1-__", "x"])
def test_key_style_key_keeps_raw(key):
    assert key_to_label(key, style="key") == key


def test_unknown_key_style_is_refused():
    with pytest.raises(ValueError, match="key style"):
        key_to_label("latex2e-OT1-_alpha", style="latex")


CROHME_LIKE = [
    "(", ")", "+", ",", "-", ".", "/", "0", "9", "=", "A", "[", "]", "a", "z",
    r"\alpha", r"\Delta", r"\{", r"\}", r"\_", r"\sqrt", r"\rightarrow", r"\ldots", r"\lt", r"\neq",
]  # fmt: skip


@pytest.mark.parametrize("label", CROHME_LIKE)
def test_label_key_label_round_trip(label):
    key = label_to_key(label)
    assert key.startswith("latex2e-OT1-")
    assert key_to_label(key) == label


def test_label_to_key_forms():
    assert label_to_key(r"\alpha") == "latex2e-OT1-\\alpha"
    assert label_to_key(r"\_") == "latex2e-OT1-__"
    assert label_to_key("x", package="amssymb", encoding="T1") == "amssymb-T1-x"


@pytest.mark.parametrize("label", ["_", "_x"])
def test_labels_starting_with_underscore_are_refused_by_sql_and_write_nothing(tmp_path, label):
    """A label starting with '_' (which a detexify key would read back as a backslash) is refused by .sql with a ValueError naming it, and no file is written."""
    b = DatasetBuilder()
    b.add([np.array([[1.0, 2.0]])], "a")
    b.add([np.array([[3.0, 4.0]])], label)
    ds = b.build()
    with pytest.raises(ValueError, match=rf"label {label!r} starts with '_'.*rename the class"):
        ds.save(tmp_path / "u.sql")
    assert list(tmp_path.iterdir()) == []  # refused before the atomic write began: no file, no temporary
    ds.save(tmp_path / "u.npz")  # the formats that can hold it still do
    assert strokes.load(tmp_path / "u.npz").vocab == ds.vocab


# ------------------------------------------------------------------ the dump
def dump_text(rows: list[str], *, table: str = "samples", cols: str = "id, key, strokes", end: bool = True) -> str:
    head = (
        "--\n-- PostgreSQL database dump\n--\n\n"
        "SET statement_timeout = 0;\nSET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n\n"
        f"CREATE TABLE {table} (\n    id integer NOT NULL,\n    key character varying(255),\n    strokes text\n);\n\n"
        f"COPY {table} ({cols}) FROM stdin;\n"
    )
    tail = "\\.\n\n\n--\n-- PostgreSQL database dump complete\n--\n" if end else ""
    return head + "".join(r + "\n" for r in rows) + tail


def row(*fields: str) -> str:
    return "\t".join(fields)


GOOD_ROWS = [
    row("1", "latex2e-OT1-_alpha", "[[[10,20,1400000000000],[11,21,1400000000016]],[[30,40,1400000000100]]]"),
    # a new-style key with a COPY-escaped backslash, and [x, y] points only
    row("2", "amssymb-OT1-" + BS + BS + "not_sim", "[[[1.5,-2.25],[3,4]]]"),
    # some points with t, some without: the sample has NaN t, so its strokes are (n, 2)
    row("3", "latex2e-OT1-__", "[[[0, 0, 5], [1, 1, 6]], [ [2,2],[3.25 , 3] ]]"),
    row("4", "latex2e-OT1-_alpha", "[[[-1.125,-2,1400000000200]]]"),
]


@pytest.fixture
def good_dump(tmp_path) -> Path:
    p = tmp_path / "detexify.sql"
    p.write_text(dump_text(GOOD_ROWS), encoding="utf-8")
    return p


def test_dump_points_t_labels(good_dump):
    assert infer_format(good_dump) == "detexify-sql"
    ds = strokes.load(good_dump, progress=False)
    assert len(ds) == 4 and ds.skipped == []
    assert ds.info["records_in"] == 4 and ds.info["format"] == "detexify-sql"
    assert ds.label_names() == [r"\alpha", r"\not_sim", r"\_", r"\alpha"]
    assert ds.vocab == sorted([r"\alpha", r"\not_sim", r"\_"])
    assert ds.sources() == ["id 1", "id 2", "id 3", "id 4"]
    assert ds.writers() == [None] * 4
    s0 = ds[0]
    assert [s.shape for s in s0.strokes] == [(2, 3), (1, 3)]
    np.testing.assert_array_equal(s0.strokes[0], [[10, 20, 1400000000000], [11, 21, 1400000000016]])
    np.testing.assert_array_equal(s0.strokes[1], [[30, 40, 1400000000100]])
    s1 = ds[1]
    assert [s.shape for s in s1.strokes] == [(2, 2)]
    np.testing.assert_array_equal(s1.strokes[0], [[1.5, -2.25], [3, 4]])
    s2 = ds[2]
    assert [s.shape for s in s2.strokes] == [(2, 2), (2, 2)]
    np.testing.assert_array_equal(s2.strokes[1], [[2, 2], [3.25, 3]])
    np.testing.assert_array_equal(ds[3].strokes[0], [[-1.125, -2, 1400000000200]])
    # the flat t: exact 13-digit timestamps, NaN where a point had none
    np.testing.assert_array_equal(
        ds.t,
        [1400000000000, 1400000000016, 1400000000100, np.nan, np.nan, 5, 6, np.nan, np.nan, 1400000000200],
    )


def test_dump_key_style_key(good_dump):
    ds = load_detexify_sql(good_dump, key_style="key", progress=False)
    assert ds.label_names() == ["latex2e-OT1-_alpha", "amssymb-OT1-\\not_sim", "latex2e-OT1-__", "latex2e-OT1-_alpha"]


def test_dump_limit(good_dump):
    ds = strokes.load(good_dump, progress=False, limit=2)
    assert len(ds) == 2 and ds.info["records_in"] == 2
    assert ds.sources() == ["id 1", "id 2"]


def test_dump_other_table_schema_and_column_order(tmp_path):
    other = dump_text([row("1", "x", "garbage")], table="other")
    mine = dump_text(
        [row("latex2e-OT1-_beta", "[[[1,2]]]", "7"), row("latex2e-OT1-a", "[[[3,4,5]]]", "8")],
        table="public.strokes_tbl",
        cols="key, strokes, id",
    )
    p = tmp_path / "two.sql"
    p.write_text(other + mine)
    ds = load_detexify_sql(p, table="strokes_tbl", progress=False)
    assert ds.label_names() == [r"\beta", "a"]
    assert ds.sources() == ["id 7", "id 8"]
    with pytest.raises(ValueError, match="no 'COPY samples"):
        load_detexify_sql(p, progress=False)


def test_dump_missing_columns(tmp_path):
    p = tmp_path / "cols.sql"
    p.write_text(dump_text([row("1", "[[[1,2]]]")], cols="id, strokes"))
    with pytest.raises(ValueError, match=r"lacks column.*key"):
        load_detexify_sql(p, progress=False)


def test_dump_without_copy_block(tmp_path):
    p = tmp_path / "nocopy.sql"
    p.write_text("-- just a schema\nCREATE TABLE samples (id integer);\n")
    with pytest.raises(ValueError, match=r"no 'COPY samples \(\.\.\.\) FROM stdin;' block found"):
        strokes.load(p, progress=False)


def test_dump_truncated_block(tmp_path):
    p = tmp_path / "trunc.sql"
    p.write_text(dump_text(GOOD_ROWS[:2], end=False))
    with pytest.raises(ValueError, match=r"does not end with '\\\.'.*truncated"):
        strokes.load(p, progress=False)


def test_dump_crlf_line_endings(tmp_path):
    p = tmp_path / "crlf.sql"
    p.write_bytes(dump_text(GOOD_ROWS).replace("\n", "\r\n").encode())
    ds = strokes.load(p, progress=False)
    assert len(ds) == 4 and ds.skipped == []
    assert ds.label_names()[1] == r"\not_sim"


BAD_ROWS = [
    row("1", "latex2e-OT1-_alpha", "[[[1,2,3]]]"),  # good
    row("2", "latex2e-OT1-_beta", "[[[1,2,3]]"),  # invalid JSON
    row("3", "latex2e-OT1-_beta", "[]"),  # no strokes
    row("4", "latex2e-OT1-_beta", "[[]]"),  # an empty stroke
    row("5", "latex2e-OT1-_beta", '[[["a","b"]]]'),  # non-numeric
    row("6", "latex2e-OT1-_beta", "[[[NaN,1]]]"),  # NaN text
    row("7", "latex2e-OT1-_beta", "\\N"),  # NULL strokes
    row("8", "latex2e-OT1-_beta"),  # wrong field count
    row("9", "\\N", "[[[1,2]]]"),  # NULL key
    row("10", "latex2e-OT1-_gamma", '[[{"x": 1, "y": 2, "t": 3}, {"x": 4, "y": 5, "t": 6}]]'),  # dicts: slow path reads it
    row("11", "latex2e-OT1-_beta", "[[[1,2,3,4]]]"),  # 4 values per point
    row("12", "latex2e-OT1-_beta", "[[[1,Infinity]]]"),  # inf
    row("13", "latex2e-OT1-_alpha", "[[[5,6]]]"),  # good
    "",  # an empty line inside the block
    row("14", "latex2e-OT1-_delta", "[[[1e1,2.5E-1]]]"),  # exponents: valid JSON, slow path reads it
]


def test_dump_bad_rows_skipped_with_sources_and_reasons(tmp_path):
    text = dump_text(BAD_ROWS)
    p = tmp_path / "bad.sql"
    p.write_text(text)
    ds = strokes.load(p, progress=False)
    lines = text.split("\n")
    line_of_8 = lines.index(row("8", "latex2e-OT1-_beta")) + 1
    line_of_empty = lines.index("", lines.index(BAD_ROWS[-3])) + 1

    assert ds.info["records_in"] == len(BAD_ROWS) == len(ds) + len(ds.skipped)
    loaded = dict(zip(ds.sources(), ds.label_names()))
    assert loaded == {"id 1": r"\alpha", "id 13": r"\alpha", "id 10": r"\gamma", "id 14": r"\delta"}
    i10 = ds.sources().index("id 10")
    np.testing.assert_array_equal(ds[i10].strokes[0], [[1, 2, 3], [4, 5, 6]])
    i14 = ds.sources().index("id 14")
    np.testing.assert_array_equal(ds[i14].strokes[0], [[10, 0.25]])

    reasons = {s.source: s.reason for s in ds.skipped}
    assert set(reasons) == {f"id {i}" for i in (2, 3, 4, 5, 6, 7, 9, 11, 12)} | {f"line {line_of_8}", f"line {line_of_empty}"}
    assert "not valid JSON" in reasons["id 2"]
    assert "empty" in reasons["id 3"]
    assert "stroke 0" in reasons["id 4"]
    assert "numbers" in reasons["id 5"]
    assert "NaN" in reasons["id 6"]
    assert "strokes is NULL" in reasons["id 7"]
    assert "expected 3 tab-separated fields, got 2" in reasons[f"line {line_of_8}"]
    assert "got 1" in reasons[f"line {line_of_empty}"]
    assert "key is empty or NULL" in reasons["id 9"]
    assert "2 (x, y) or 3 (x, y, t)" in reasons["id 11"]
    assert "infinite" in reasons["id 12"]
    assert ds.info["skipped"] == len(ds.skipped)


def test_dump_max_points_applies_to_fast_rows(tmp_path):
    long_row = "[[" + ",".join(f"[{i},{i}]" for i in range(50)) + "]]"
    p = tmp_path / "cap.sql"
    p.write_text(dump_text([row("1", "a-b-c", long_row), row("2", "a-b-d", "[[[1,2]]]")]))
    ds = load_detexify_sql(p, max_points=10, progress=False)
    assert ds.label_names() == ["d"]
    assert ds.skipped[0].source == "id 1" and "cap" in ds.skipped[0].reason


def test_dump_keeps_row_order_when_some_rows_take_the_slow_path(tmp_path):
    b = DatasetBuilder()
    b.add([np.array([[0.0, 1.0], [2.0, 3.0]])], "a")
    b.add([np.array([[1e-5, 1.0], [2.0, 3.0]])], "b")  # float32 1e-05 is written as '1e-05'
    b.add([np.array([[5.0, 1.0], [2.0, 3.0]])], "c")
    ds = b.build()
    ds.save(tmp_path / "order.sql")
    back = strokes.load(tmp_path / "order.sql", progress=False)
    assert back.sources() == ["id 1", "id 2", "id 3"]
    assert back.label_names() == ["a", "b", "c"]


def test_dump_mixed_width_stroke_loads_on_the_slow_path_too(tmp_path):
    p = tmp_path / "mixed.sql"
    p.write_text(dump_text([row("1", "a-b-x", "[[[10,2,3],[4,5]]]"), row("2", "a-b-x", "[[[1e1,2,3],[4,5]]]")]))
    ds = strokes.load(p, progress=False)
    assert ds.skipped == []
    np.testing.assert_array_equal(ds[0].strokes[0], ds[1].strokes[0])


# ------------------------------------------------------------------ writing
@pytest.mark.parametrize("with_t", [True, False])
def test_save_sql_load_round_trip(tmp_path, with_t):
    ds = small_dataset(with_t=with_t)
    p = tmp_path / "out.sql"
    ds.save(p)
    text = p.read_text()
    assert "COPY samples (id, key, strokes) FROM stdin;\n" in text
    assert "\tlatex2e-OT1-\\\\alpha\t" in text  # the backslash COPY-escaped
    assert "\tlatex2e-OT1-__\t" in text
    back = strokes.load(p, progress=False)
    assert back.skipped == []
    assert_same(ds, back)
    assert back.sources() == [f"id {i + 1}" for i in range(len(ds))]
    assert back.info["records_in"] == len(ds)


def test_save_sql_start_id_and_table(tmp_path):
    ds = small_dataset()
    p = tmp_path / "t.sql"
    save_detexify_sql(ds, p, table="my_samples", start_id=100)
    back = load_detexify_sql(p, table="my_samples", progress=False)
    assert back.sources()[0] == "id 100" and back.sources()[-1] == f"id {99 + len(ds)}"
    assert_same(ds, back)


def test_strokes_json_is_valid_json_matching_the_points():
    ds = small_dataset()
    rows = strokes_json(ds)
    assert len(rows) == len(ds)
    for i, text in enumerate(rows):
        data = json.loads(text)
        sample = ds[i]
        assert len(data) == len(sample.strokes)
        has_t = ds.t is not None and not np.isnan(ds.t[ds.point_offsets[i] : ds.point_offsets[i + 1]]).any()
        for stroke, arr in zip(data, sample.strokes):
            got = np.array(stroke, dtype=np.float64)
            assert got.shape[1] == (3 if has_t else 2)
            np.testing.assert_array_equal(got[:, :2].astype(np.float32), arr[:, :2].astype(np.float32))


def test_save_empty_dataset_round_trip(tmp_path):
    ds = DatasetBuilder().build()
    ds.save(tmp_path / "e.sql")
    back = strokes.load(tmp_path / "e.sql", progress=False)
    assert len(back) == 0 and back.skipped == [] and back.info["records_in"] == 0


def temp_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def test_save_sql_is_atomic(tmp_path):
    ds = small_dataset()
    p = tmp_path / "a.sql"
    p.write_text("OLD CONTENT")
    ds.save(p)
    assert p.read_text().startswith("-- detexify-format dump")
    assert temp_files(tmp_path) == []
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.sql"]

    # refused before writing: a table name that is not a plain identifier
    p.write_text("OLD CONTENT")
    with pytest.raises(ValueError, match="plain SQL identifier"):
        save_detexify_sql(ds, p, table="bad name; DROP TABLE x")
    assert p.read_text() == "OLD CONTENT"

    # fails in the middle of writing rows (a label index past the vocab): old file untouched, no temp left
    broken = small_dataset()
    broken.labels = broken.labels.copy()
    broken.labels[-1] = len(broken.vocab) + 5
    with pytest.raises(ValueError, match="inconsistent"):  # raised after the header is written
        broken.save(p)
    assert p.read_text() == "OLD CONTENT"
    assert temp_files(tmp_path) == []
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.sql"]


def test_save_unknown_suffix_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\.npz.*\.sql"):
        small_dataset().save(tmp_path / "x.csv")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ the vectorized parser
SEPS = st.sampled_from(["", " ", "  ", "\n", "\t", "\r\n", " \t "])
_digits = st.text(alphabet="0123456789", min_size=1, max_size=8)


@st.composite
def json_numbers(draw) -> str:
    """A JSON number token: ints, negatives, decimals, 13-digit timestamps, >15-digit decimals."""
    kind = draw(st.sampled_from(["int", "ts", "dec", "long", "float", "small"]))
    sign = draw(st.sampled_from(["", "-"]))
    if kind == "int":
        return sign + str(draw(st.integers(0, 10**6)))
    if kind == "ts":
        return str(draw(st.integers(10**12, 10**13 - 1)))
    if kind == "dec":
        return sign + str(draw(st.integers(0, 99999))) + "." + draw(_digits)
    if kind == "long":
        whole = str(draw(st.integers(0, 10**9)))
        frac = draw(st.text(alphabet="0123456789", min_size=16 - min(len(whole), 15), max_size=25))
        return sign + whole + "." + frac
    if kind == "small":
        return sign + "0.0000" + draw(_digits)
    x = draw(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
    r = repr(abs(x))
    return sign + r if "e" not in r else sign + "0"


@st.composite
def stroke_rows(draw):
    """The JSON text of one row: strokes of [x, y] / [x, y, t] points, JSON whitespace anywhere."""
    s = lambda: draw(SEPS)  # noqa: E731
    parts = [s(), "[", s()]
    for si in range(draw(st.integers(1, 4))):
        parts += [("," + s()) if si else "", "[", s()]
        for pi in range(draw(st.integers(1, 5))):
            nums = [draw(json_numbers()) for _ in range(draw(st.sampled_from([2, 3])))]
            parts += [("," + s()) if pi else "", "[", s(), ("," + s()).join(n + s() for n in nums), "]", s()]
        parts += ["]", s()]
    parts += ["]", s()]
    return "".join(parts)


BAD_SHAPES = st.sampled_from(
    ["[]", "[[]]", "[[[]]]", "[[[1]]]", "[[[1,2,3,4]]]", "[[1,2]]", "[[[1,2]]", "[[[1,2]]]]", "null", " ",
     "[[[1,2]],[]]", '[[{"x":1,"y":2}]]', "[[[1,NaN]]]", "[[[1,2]]][[[3,4]]]", "[[[1-2,3]]]", "[[[1..2,3]]]", "[[[-,3]]]"]
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(stroke_rows(), BAD_SHAPES), min_size=1, max_size=8))
def test_parse_rows_agrees_with_json_loads(rows):
    """parse_rows accepts every well-formed stroke row with exactly json.loads' values and rejects malformed ones."""
    parsed = parse_rows([r.encode() for r in rows])
    assert parsed.ok.shape == (len(rows),)
    good_rows = [r for r, ok in zip(rows, parsed.ok) if ok]
    exp_xy, exp_t, exp_len, exp_n = [], [], [], []
    for r, ok in zip(rows, parsed.ok):
        try:
            data = json.loads(r)
            well_formed = (
                isinstance(data, list) and data and all(isinstance(s, list) and s for s in data)
                and all(isinstance(p, list) and len(p) in (2, 3) for s in data for p in s)
                and all(isinstance(v, (int, float)) and math.isfinite(v) for s in data for p in s for v in p)
            )  # fmt: skip
        except ValueError:
            well_formed = False
        assert bool(ok) == bool(well_formed), r
        if ok:
            exp_n.append(len(data))
            for s in data:
                exp_len.append(len(s))
                for p in s:
                    exp_xy.append([float(p[0]), float(p[1])])
                    exp_t.append(float(p[2]) if len(p) == 3 else math.nan)
    assert len(good_rows) == len(exp_n)
    np.testing.assert_array_equal(parsed.row_nstrokes, np.array(exp_n, dtype=np.int64))
    np.testing.assert_array_equal(parsed.stroke_lengths, np.array(exp_len, dtype=np.int64))
    np.testing.assert_array_equal(parsed.xy, np.array(exp_xy, dtype=np.float64).reshape(-1, 2))
    np.testing.assert_array_equal(parsed.t, np.array(exp_t, dtype=np.float64))


def test_parse_rows_empty_last_row_is_rejected_not_crashing():
    p = parse_rows([b"[[[1,2]]]", b""])
    assert p.ok.tolist() == [True, False]


def test_dump_empty_strokes_field_in_last_row_is_skipped(tmp_path):
    p = tmp_path / "e.sql"
    p.write_text(dump_text([row("1", "a-b-x", "[[[1,2]]]"), row("2", "a-b-x", "")]))
    ds = strokes.load(p, progress=False)
    assert ds.sources() == ["id 1"]
    assert [s.source for s in ds.skipped] == ["id 2"] and "not valid JSON" in ds.skipped[0].reason


def test_dump_empty_strokes_field_not_last_is_skipped(tmp_path):
    p = tmp_path / "e.sql"
    p.write_text(dump_text([row("2", "a-b-x", ""), row("1", "a-b-x", "[[[1,2]]]")]))
    ds = strokes.load(p, progress=False)
    assert ds.sources() == ["id 1"]
    assert [s.source for s in ds.skipped] == ["id 2"] and "not valid JSON" in ds.skipped[0].reason


def test_parse_rows_examples():
    p = parse_rows([b"[[[1400702665265,-3.5,7]]]", b"[]", b"[[[0.1234567890123456789,2]]]", b"[[[1e3,2]]]"])
    assert p.ok.tolist() == [True, False, True, False]
    np.testing.assert_array_equal(p.xy, [[1400702665265, -3.5], [0.1234567890123456789, 2]])
    np.testing.assert_array_equal(p.t, [7, np.nan])
    empty = parse_rows([])
    assert empty.ok.shape == (0,) and empty.xy.shape == (0, 2)


# ------------------------------------------------------------------ CouchDB JSON
def stroke_dicts(pts):
    return [{"x": x, "y": y, "t": t} for x, y, t in pts]


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_couchdb_rows_doc(tmp_path):
    doc = {
        "_id": "739f8f94",
        "_rev": "1-abc",
        "id": "amssymb-OT1-_bigstar",
        "data": [stroke_dicts([(223, 58, 1400702665265), (223, 59, 1400702665392)]), stroke_dicts([(1, 2, 1400702666000)])],
    }
    p = write_json(tmp_path / "view.json", {"total_rows": 1, "offset": 0, "rows": [{"id": "739f8f94", "key": "k", "value": None, "doc": doc}]})
    assert infer_format(p) == "couchdb-json"
    ds = strokes.load(p, progress=False)
    assert ds.label_names() == [r"\bigstar"]
    assert ds.sources() == ["doc 739f8f94"]
    assert ds.t is not None
    s = ds[0]
    np.testing.assert_array_equal(s.strokes[0], [[223, 58, 1400702665265], [223, 59, 1400702665392]])
    np.testing.assert_array_equal(s.strokes[1], [[1, 2, 1400702666000]])
    assert ds.info["records_in"] == 1 and ds.info["format"] == "couchdb-json"


def test_couchdb_docs_and_bare_list(tmp_path):
    docs = [
        {"id": "latex2e-OT1-_alpha", "data": [[[1, 2], [3, 4]]]},
        {"key": "latex2e-OT1-x", "data": [[{"x": 5, "y": 6}]]},
    ]
    for obj in ({"docs": docs}, docs):
        ds = load_couchdb_json(write_json(tmp_path / "d.json", obj), progress=False)
        assert ds.label_names() == [r"\alpha", "x"]
        assert ds.t is None
        np.testing.assert_array_equal(ds[0].strokes[0], [[1, 2], [3, 4]])
        np.testing.assert_array_equal(ds[1].strokes[0], [[5, 6]])
    ds = load_couchdb_json(tmp_path / "d.json", key_style="key", progress=False)
    assert ds.label_names() == ["latex2e-OT1-_alpha", "latex2e-OT1-x"]


def test_couchdb_bad_docs_skipped_with_reasons(tmp_path):
    rows = [
        {"doc": {"_id": "good", "id": "latex2e-OT1-a", "data": [[[1, 2]]]}},
        {"doc": None},  # deleted doc
        5,
        {"doc": {"_id": "nokey", "data": [[[1, 2]]]}},
        {"doc": {"_id": "nodata", "id": "latex2e-OT1-a"}},
        {"doc": {"_id": "empty", "id": "latex2e-OT1-a", "data": []}},
        {"doc": {"_id": "strdata", "id": "latex2e-OT1-a", "data": "oops"}},
        {"doc": {"_id": "missing_y", "id": "latex2e-OT1-a", "data": [[{"x": 1}]]}},
    ]
    ds = strokes.load(write_json(tmp_path / "bad.json", {"rows": rows}), progress=False)
    assert ds.sources() == ["doc good"]
    assert ds.info["records_in"] == len(rows) == len(ds) + len(ds.skipped)
    reasons = {s.source: s.reason for s in ds.skipped}
    assert "must be an object" in reasons["row 1"] and "NoneType" in reasons["row 1"]
    assert "must be an object" in reasons["row 2"]
    assert "no symbol key" in reasons["doc nokey"]
    assert "no 'data'" in reasons["doc nodata"]
    assert "empty" in reasons["doc empty"]
    assert "bad strokes" in reasons["doc strdata"]
    assert "'x' and 'y'" in reasons["doc missing_y"]


def test_couchdb_not_json_or_wrong_shape(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"rows": [')
    with pytest.raises(ValueError, match="not valid JSON"):
        strokes.load(p, progress=False)
    with pytest.raises(ValueError, match="CouchDB view"):
        load_couchdb_json(write_json(tmp_path / "obj.json", {"something": 1}), progress=False)


def test_worker_processes_give_the_same_dataset(tmp_path, monkeypatch):
    """Parsing in worker processes changes nothing: same samples, order and skipped rows."""
    import strokes.io.detexify as det
    from strokes.synthetic import generate

    ds = generate(n_writers=3, samples_per_writer=2, seed=5)
    p = tmp_path / "w.sql"
    ds.save(p)
    text = p.read_text().replace("\n\\.\n", "\n999\tlatex2e-OT1-x\tnot json\n1000\tlatex2e-OT1-y\t[[]]\n\\.\n")
    p.write_text(text)
    monkeypatch.setattr(det, "BATCH_BYTES", 2048)  # many small batches in flight
    one = det.load_detexify_sql(p, workers=1, progress=False)
    two = det.load_detexify_sql(p, workers=2, progress=False)
    assert one.fingerprint() == two.fingerprint() == ds.fingerprint()
    assert one.sources() == two.sources()
    assert [(s.source, s.reason) for s in one.skipped] == [(s.source, s.reason) for s in two.skipped]
    assert len(two.skipped) == 2 and two.info["records_in"] == len(two) + 2
    with pytest.raises(ValueError, match="workers"):
        det.load_detexify_sql(p, workers=0)


# ------------------------------------------------------------------ damage found by fuzzing
def test_dump_errors_name_the_file(tmp_path):
    """A dump with no COPY block, a truncated one, or an undecodable column name raises a ValueError naming the file."""
    nocopy = tmp_path / "nocopy.sql"
    nocopy.write_bytes(b"\x00garbage\n")
    with pytest.raises(ValueError, match="no 'COPY samples") as info:
        load_detexify_sql(nocopy, progress=False)
    assert str(nocopy) in str(info.value)
    trunc = tmp_path / "trunc.sql"
    trunc.write_text(dump_text(GOOD_ROWS[:2], end=False))
    with pytest.raises(ValueError, match="truncated") as info:
        load_detexify_sql(trunc, progress=False)
    assert str(trunc) in str(info.value)
    cols = tmp_path / "cols.sql"
    cols.write_bytes(dump_text(GOOD_ROWS).encode().replace(b"(id, key, strokes)", b"(id, k\xffey, strokes)"))
    with pytest.raises(ValueError, match=r"lacks column.*key") as info:
        load_detexify_sql(cols, progress=False)
    assert str(cols) in str(info.value)


def test_dump_deeply_nested_strokes_are_skipped(tmp_path):
    """Strokes JSON nested deeper than the parser can go (RecursionError) is a skipped row, not a crash."""
    p = tmp_path / "deep.sql"
    p.write_text(dump_text([row("1", "latex2e-OT1-a", "[" * 100_000 + "]" * 100_000), row("2", "latex2e-OT1-b", "[[[1,2]]]")]))
    ds = load_detexify_sql(p, progress=False)
    assert ds.sources() == ["id 2"]
    assert [(s.source, s.reason) for s in ds.skipped] == [("id 1", "strokes is JSON nested too deeply to read")]
    assert ds.info["records_in"] == 2 == len(ds) + len(ds.skipped)


@pytest.mark.parametrize(
    "strokes_json",
    [
        "[[[1" + "0" * 39 + ".5,2]]]",  # digits and a point only: the fast parser reads it (as 1e39, inf in float32)
        "[[[1" + "0" * 20 + ".0,2]]]",  # the fast parser again: 1e20 fits float32, but is past the cap
        "[[[1e39,2],[3,4]]]",  # an exponent: the slow path
        '[[{"x": 1, "y": -1e300}]]',  # dicts: the slow path
    ],
)
def test_dump_coordinates_beyond_the_cap_are_skipped(tmp_path, strokes_json):
    """An x or y beyond ±1e15 (as_ink's cap) skips its row on either parser path, never loading as inf; 1e15 itself loads."""
    p = tmp_path / "big.sql"
    p.write_text(dump_text([row("1", "latex2e-OT1-a", strokes_json), row("2", "latex2e-OT1-b", "[[[1000000000000000,1]]]")]))
    ds = load_detexify_sql(p, progress=False)
    assert ds.sources() == ["id 2"]
    np.testing.assert_array_equal(ds[0].strokes[0], np.float32([[1e15, 1]]))
    assert [s.source for s in ds.skipped] == ["id 1"] and "beyond" in ds.skipped[0].reason
    assert ds.info["records_in"] == 2


def test_couchdb_too_deep_and_too_large(tmp_path):
    """CouchDB JSON nested too deeply is a ValueError naming the file; a doc with coordinates beyond the cap is skipped."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply") as info:
        load_couchdb_json(deep, progress=False)
    assert str(deep) in str(info.value)
    docs = [{"_id": "big", "id": "latex2e-OT1-a", "data": [[[1e39, 2]]]}, {"_id": "ok", "id": "latex2e-OT1-a", "data": [[[1, 2]]]}]
    ds = load_couchdb_json(write_json(tmp_path / "big.json", {"docs": docs}), progress=False)
    assert ds.sources() == ["doc ok"] and [s.source for s in ds.skipped] == ["doc big"]
    assert "beyond" in ds.skipped[0].reason and np.isfinite(ds.xy).all()
