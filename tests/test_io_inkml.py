"""InkML (CROHME) reader: symbols, channels, writers, and bad files/symbols skipped with reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import strokes
from strokes.io import infer_format
from strokes.io.inkml import InkmlError, load_inkml, parse_inkml_file

NS = ' xmlns="http://www.w3.org/2003/InkML"'

GOOD = f"""<?xml version="1.0" encoding="UTF-8"?>
<ink{NS}>
<traceFormat>
<channel name="X" type="decimal"/>
<channel name="Y" type="decimal"/>
</traceFormat>
<annotation type="writer">alice</annotation>
<annotation type="truth">$x+1$</annotation>
<trace id="0">
10 20, 11 21, 12.5 22.25
</trace>
<trace id="1">30 40, 31 41</trace>
<trace id="2">50 60</trace>
<trace id="3">1 1, 2 2</trace>
<traceGroup xml:id="g0">
  <annotation type="truth">Segmentation</annotation>
  <traceGroup xml:id="g1">
    <annotation type="truth">x</annotation>
    <traceView traceDataRef="0"/>
  </traceGroup>
  <traceGroup xml:id="g2">
    <annotation type="truth">+</annotation>
    <traceView traceDataRef="1"/>
    <traceView traceDataRef="2"/>
  </traceGroup>
  <traceGroup xml:id="g3">
    <annotation type="truth">1</annotation>
    <traceView traceDataRef="3"/>
  </traceGroup>
</traceGroup>
</ink>
"""


def ink_doc(traces: dict, groups: list, *, fmt: str | None = None, writer: str | None = None, ns: bool = True) -> str:
    """An InkML document: traces {id: text}; groups [(gid, label or None, [refs])] inside a container."""
    parts = [f"<ink{NS if ns else ''}>"]
    if fmt is not None:
        parts.append(fmt)
    if writer is not None:
        parts.append(f'<annotation type="writer">{writer}</annotation>')
    parts += [f'<trace id="{i}">{text}</trace>' for i, text in traces.items()]
    parts.append('<traceGroup xml:id="c"><annotation type="truth">Segmentation</annotation>')
    for gid, label, refs in groups:
        parts.append(f'<traceGroup xml:id="{gid}">')
        if label is not None:
            parts.append(f'<annotation type="truth">{label}</annotation>')
        parts += [f'<traceView traceDataRef="{r}"/>' for r in refs]
        parts.append("</traceGroup>")
    parts.append("</traceGroup></ink>")
    return "\n".join(parts)


def channels(*names: str) -> str:
    return "<traceFormat>" + "".join(f'<channel name="{n}" type="decimal"/>' for n in names) + "</traceFormat>"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def only(ds):
    assert len(ds) == 1, ds.skipped
    return ds[0]


# ------------------------------------------------------------------ one good file
def test_good_file_symbols_labels_points_writer(tmp_path):
    f = write(tmp_path / "good.inkml", GOOD)
    ds = strokes.load(f, progress=False)
    assert ds.label_names() == ["x", "+", "1"]  # document order; containers are not symbols
    assert ds.vocab == ["+", "1", "x"]
    assert ds.skipped == []
    assert ds.writers() == ["alice"] * 3
    assert ds.sources() == ["good.inkml"] * 3
    assert ds.t is None
    x, plus, one = ds[0], ds[1], ds[2]
    np.testing.assert_array_equal(x.strokes[0], [[10, 20], [11, 21], [12.5, 22.25]])
    assert len(plus.strokes) == 2
    np.testing.assert_array_equal(plus.strokes[0], [[30, 40], [31, 41]])
    np.testing.assert_array_equal(plus.strokes[1], [[50, 60]])
    np.testing.assert_array_equal(one.strokes[0], [[1, 1], [2, 2]])
    assert ds.info["files_in"] == 1 and ds.info["files_read"] == 1 and ds.info["files_skipped"] == 0
    assert ds.info["symbols_in"] == 3 and ds.info["symbols_skipped"] == 0
    assert ds.info["format"] == "inkml"


def test_parse_inkml_file_direct(tmp_path):
    f = write(tmp_path / "good.inkml", GOOD)
    symbols, problems, writer = parse_inkml_file(f)
    assert writer == "alice"
    assert problems == []
    assert [label for label, _ in symbols] == ["x", "+", "1"]
    assert [len(s) for _, s in symbols] == [1, 2, 1]


def test_non_namespaced_ink(tmp_path):
    f = write(tmp_path / "plain.inkml", GOOD.replace(NS, ""))
    ds = strokes.load(f, progress=False)
    assert ds.label_names() == ["x", "+", "1"]
    assert ds.writers() == ["alice"] * 3
    np.testing.assert_array_equal(ds[0].strokes[0], [[10, 20], [11, 21], [12.5, 22.25]])


@pytest.mark.parametrize("ns", [True, False])
def test_no_writer_annotation_gives_none(tmp_path, ns):
    f = write(tmp_path / "a.inkml", ink_doc({"0": "1 2, 3 4"}, [("s", "a", ["0"])], ns=ns))
    ds = strokes.load(f, progress=False)
    assert ds.writers() == [None]
    assert ds.writer_names == []
    assert ds.writer_ids.tolist() == [-1]


# ------------------------------------------------------------------ channels
def test_xyt_keeps_t(tmp_path):
    doc = ink_doc(
        {"0": "1 2 1000, 3 4 1016, 5 6 1032", "1": "7 8 1100"},
        [("s", "a", ["0", "1"])],
        fmt=channels("X", "Y", "T"),
    )
    ds = strokes.load(write(tmp_path / "t.inkml", doc), progress=False)
    s = only(ds)
    assert s.strokes[0].shape == (3, 3)
    assert s.strokes[0].shape[1] == 3
    np.testing.assert_array_equal(s.strokes[0], [[1, 2, 1000], [3, 4, 1016], [5, 6, 1032]])
    np.testing.assert_array_equal(s.strokes[1], [[7, 8, 1100]])
    np.testing.assert_array_equal(ds.t, [1000, 1016, 1032, 1100])
    np.testing.assert_array_equal(ds.xy, [[1, 2], [3, 4], [5, 6], [7, 8]])


def test_xyf_drops_f(tmp_path):
    doc = ink_doc({"0": "1 2 0.5, 3 4 0.75"}, [("s", "a", ["0"])], fmt=channels("X", "Y", "F"))
    ds = strokes.load(write(tmp_path / "f.inkml", doc), progress=False)
    s = only(ds)
    assert s.strokes[0].shape == (2, 2)
    np.testing.assert_array_equal(s.strokes[0], [[1, 2], [3, 4]])
    assert ds.t is None


def test_channel_order_follows_trace_format(tmp_path):
    doc = ink_doc({"0": "100 1 2, 110 3 4"}, [("s", "a", ["0"])], fmt=channels("T", "X", "Y"))
    ds = strokes.load(write(tmp_path / "o.inkml", doc), progress=False)
    np.testing.assert_array_equal(only(ds).strokes[0], [[1, 2, 100], [3, 4, 110]])


def test_trace_format_inside_definitions(tmp_path):
    fmt = "<definitions><context xml:id='c1'>" + channels("X", "Y", "T") + "</context></definitions>"
    doc = ink_doc({"0": "1 2 5, 3 4 6"}, [("s", "a", ["0"])], fmt=fmt)
    ds = strokes.load(write(tmp_path / "d.inkml", doc), progress=False)
    np.testing.assert_array_equal(only(ds).strokes[0], [[1, 2, 5], [3, 4, 6]])


def test_no_trace_format_defaults_to_xy(tmp_path):
    doc = ink_doc({"0": "1 2, 3 4, -5.5 6e1"}, [("s", "a", ["0"])])
    ds = strokes.load(write(tmp_path / "n.inkml", doc), progress=False)
    np.testing.assert_array_equal(only(ds).strokes[0], [[1, 2], [3, 4], [-5.5, 60]])
    assert ds.t is None


def test_no_trace_format_with_extra_values_keeps_xy(tmp_path):
    # no traceFormat means X Y; points written with a third value still give x, y
    doc = ink_doc({"0": "1 2 9, 3 4 9, 5 6 9"}, [("s", "a", ["0"])])
    ds = strokes.load(write(tmp_path / "n3.inkml", doc), progress=False)
    np.testing.assert_array_equal(only(ds).strokes[0], [[1, 2], [3, 4], [5, 6]])


def test_trace_format_without_x_y_skips_file(tmp_path):
    doc = ink_doc({"0": "1 2"}, [("s", "a", ["0"])], fmt=channels("A", "B"))
    ds = load_inkml(write(tmp_path / "ab.inkml", doc).parent, progress=False)
    assert len(ds) == 0
    assert [s.source for s in ds.skipped] == ["ab.inkml"]
    assert "X and Y" in ds.skipped[0].reason


# ------------------------------------------------------------------ bad files
def test_truncated_and_empty_files_are_skipped_with_reasons(tmp_path):
    write(tmp_path / "good.inkml", GOOD)
    write(tmp_path / "trunc.inkml", GOOD[: len(GOOD) // 2])
    write(tmp_path / "empty.inkml", "")
    ds = strokes.load(tmp_path, progress=False)
    assert len(ds) == 3
    by_source = {s.source: s.reason for s in ds.skipped}
    assert set(by_source) == {"trunc.inkml", "empty.inkml"}
    assert "malformed XML" in by_source["trunc.inkml"] and "truncated" in by_source["trunc.inkml"]
    assert "empty" in by_source["empty.inkml"]
    assert ds.info["files_in"] == 3
    assert ds.info["files_read"] == 1
    assert ds.info["files_skipped"] == 2


def test_parse_inkml_file_raises_for_unreadable_files(tmp_path):
    with pytest.raises(InkmlError, match="empty"):
        parse_inkml_file(write(tmp_path / "e.inkml", ""))
    with pytest.raises(InkmlError, match="malformed XML"):
        parse_inkml_file(write(tmp_path / "t.inkml", GOOD[:300]))
    with pytest.raises(InkmlError, match="not <ink>"):
        parse_inkml_file(write(tmp_path / "svg.inkml", "<svg><trace id='0'>1 2</trace></svg>"))
    assert issubclass(InkmlError, ValueError)


# ------------------------------------------------------------------ bad symbols
def test_symbol_level_skips_keep_the_rest_of_the_file(tmp_path):
    doc = ink_doc(
        {"0": "1 2, 3 4", "1": "5 6", "2": "7 8"},
        [
            ("ok1", "a", ["0"]),
            ("nolabel", None, ["1"]),
            ("blank", "   ", ["1"]),
            ("dangling", "b", ["1", "99"]),
            ("ok2", "c", ["1", "2"]),
        ],
        writer="bob",
    )
    ds = strokes.load(write(tmp_path / "sub" / "mixed.inkml", doc).parent.parent, progress=False)
    assert ds.label_names() == ["a", "c"]
    assert ds.writers() == ["bob", "bob"]
    skipped = {s.source: s.reason for s in ds.skipped}
    assert set(skipped) == {"sub/mixed.inkml#nolabel", "sub/mixed.inkml#blank", "sub/mixed.inkml#dangling"}
    assert "no truth annotation" in skipped["sub/mixed.inkml#nolabel"]
    assert "no truth annotation" in skipped["sub/mixed.inkml#blank"]
    assert "99" in skipped["sub/mixed.inkml#dangling"] and "no such trace" in skipped["sub/mixed.inkml#dangling"]
    assert ds.info["symbols_skipped"] == 3
    assert ds.info["symbols_in"] == 5
    assert ds.info["files_skipped"] == 0


def test_unparseable_trace_skips_only_its_symbol(tmp_path):
    doc = ink_doc(
        {"0": "1 2, 3 4", "1": "5 six, 7 8", "2": "9 10"},
        [("ok", "a", ["0"]), ("bad", "b", ["1"]), ("ok2", "c", ["2"])],
    )
    ds = strokes.load(write(tmp_path / "b.inkml", doc), progress=False)
    assert ds.label_names() == ["a", "c"]
    np.testing.assert_array_equal(ds[0].strokes[0], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(ds[1].strokes[0], [[9, 10]])
    assert [s.source for s in ds.skipped] == ["b.inkml#bad"]
    assert "unreadable trace" in ds.skipped[0].reason


def test_ragged_trace_width_skips_only_its_symbol(tmp_path):
    # 3 points with 2, 3 and 2 values: 7 values, which no 2-channel reading can use
    doc = ink_doc({"0": "1 2, 3 4 5, 6 7", "1": "8 9"}, [("bad", "a", ["0"]), ("ok", "b", ["1"])])
    ds = strokes.load(write(tmp_path / "r.inkml", doc), progress=False)
    assert ds.label_names() == ["b"]
    assert [s.source for s in ds.skipped] == ["r.inkml#bad"]


def test_malformed_trace_with_lucky_value_count_is_not_silently_reshaped(tmp_path):
    doc = ink_doc({"0": "1 2 3, 4", "1": "5 6, 7 8"}, [("bad", "a", ["0"]), ("ok", "b", ["1"])])
    ds = strokes.load(write(tmp_path / "lucky.inkml", doc), progress=False)
    assert ds.label_names() == ["b"]
    assert [s.source for s in ds.skipped] == ["lucky.inkml#bad"]


def test_non_finite_coordinates_skip_the_symbol(tmp_path):
    doc = ink_doc({"0": "1 nan, 3 4", "1": "5 6"}, [("nan", "a", ["0"]), ("ok", "b", ["1"])])
    ds = strokes.load(write(tmp_path / "nan.inkml", doc), progress=False)
    assert ds.label_names() == ["b"]
    assert ds.skipped[0].source == "nan.inkml#nan"
    assert "non-finite" in ds.skipped[0].reason
    assert np.isfinite(ds.xy).all()


def test_mixed_channel_counts_within_symbol_keep_xy_only(tmp_path):
    # trace 1 disagrees with the declared X Y T (only x, y): its symbol falls back to x, y for all strokes
    doc = ink_doc(
        {"0": "1 2 100, 3 4 110", "1": "5 6, 7 8, 9 10", "2": "0 0 5"},
        [("s", "a", ["0", "1"]), ("t", "b", ["2"])],
        fmt=channels("X", "Y", "T"),
    )
    ds = strokes.load(write(tmp_path / "m.inkml", doc), progress=False)
    assert ds.label_names() == ["a", "b"]
    a, b = ds[0], ds[1]
    assert [s.shape for s in a.strokes] == [(2, 2), (3, 2)]
    np.testing.assert_array_equal(a.strokes[1], [[5, 6], [7, 8], [9, 10]])
    np.testing.assert_array_equal(b.strokes[0], [[0, 0, 5]])


# ------------------------------------------------------------------ directories and counts
@pytest.fixture
def crohme_like(tmp_path) -> Path:
    root = tmp_path / "crohme"
    write(root / "A" / "a1.inkml", GOOD)
    write(root / "A" / "a2.inkml", ink_doc({"0": "1 2", "1": "3 4"}, [("s", "z", ["0"]), ("t", None, ["1"])], writer="carol"))
    write(root / "B" / "b1.inkml", GOOD.replace(NS, "").replace("alice", "dave"))
    write(root / "B" / "deep" / "b2.inkml", ink_doc({"0": "1 1 1, 2 2 2"}, [("s", "\\alpha", ["0"])], fmt=channels("X", "Y", "T")))
    write(root / "B" / "trunc.inkml", GOOD[:200])
    write(root / "B" / "empty.inkml", "")
    write(root / "B" / "notes.txt", "not inkml")
    return root


def test_directory_counts_invariants(crohme_like):
    ds = strokes.load(crohme_like, progress=False)
    info = ds.info
    assert info["files_in"] == 6
    assert info["files_in"] == info["files_read"] + info["files_skipped"]
    assert info["files_skipped"] == 2 and info["files_read"] == 4
    assert info["symbols_in"] == len(ds) + info["symbols_skipped"]
    assert len(ds) == 3 + 1 + 3 + 1
    assert info["symbols_skipped"] == 1
    assert info["records_in"] == 6
    assert len(ds.skipped) == info["files_skipped"] + info["symbols_skipped"]
    assert info["loaded"] == len(ds)
    assert {s.source for s in ds.skipped} == {"B/trunc.inkml", "B/empty.inkml", "A/a2.inkml#t"}


def test_directory_vocab_sorted_writers_sources(crohme_like):
    ds = strokes.load(crohme_like, progress=False)
    assert ds.vocab == sorted(ds.vocab)
    assert ds.vocab == sorted({"x", "+", "1", "z", "\\alpha"})
    assert ds.writer_names == ["alice", "carol", "dave"]
    assert sorted(set(ds.sources())) == ["A/a1.inkml", "A/a2.inkml", "B/b1.inkml", "B/deep/b2.inkml"]
    w = dict(zip(ds.sources(), ds.writers()))
    assert w["A/a1.inkml"] == "alice" and w["A/a2.inkml"] == "carol"
    assert w["B/b1.inkml"] == "dave" and w["B/deep/b2.inkml"] is None
    # every label index is consistent with its name
    assert [ds.vocab[i] for i in ds.labels] == ds.label_names()
    # one file with t among files without: t present, NaN elsewhere, the t sample gives (n, 3)
    assert ds.t is not None
    i = ds.sources().index("B/deep/b2.inkml")
    assert ds[i].strokes[0].shape == (2, 3)
    assert all(s.shape[1] == 2 for j in range(len(ds)) if j != i for s in ds[j].strokes)


def test_load_infers_inkml_for_directory_and_file(crohme_like):
    assert infer_format(crohme_like) == "inkml"
    assert infer_format(crohme_like / "A" / "a1.inkml") == "inkml"
    single = strokes.load(crohme_like / "A" / "a1.inkml", progress=False)
    assert single.label_names() == ["x", "+", "1"]
    assert single.sources() == ["a1.inkml"] * 3
    assert single.info["files_in"] == 1
    via_str = strokes.load(str(crohme_like / "A"), progress=False)
    assert len(via_str) == 4


def test_limit_reads_first_files_in_sorted_order(crohme_like):
    ds = strokes.load(crohme_like, progress=False, limit=2)
    assert ds.info["files_in"] == 2
    assert sorted(set(ds.sources())) == ["A/a1.inkml", "A/a2.inkml"]


def test_directory_without_inkml_and_missing_path(tmp_path):
    write(tmp_path / "x.txt", "hello")
    with pytest.raises(ValueError, match="no .inkml files"):
        load_inkml(tmp_path, progress=False)
    with pytest.raises(FileNotFoundError):
        load_inkml(tmp_path / "missing", progress=False)
    with pytest.raises(FileNotFoundError):
        strokes.load(tmp_path / "missing.inkml")


# ------------------------------------------------------------------ damage found by fuzzing
@pytest.mark.parametrize("encoding", ["UTF-9", "utf-32", "hex"])
def test_unusable_declared_encoding_skips_only_that_file(tmp_path, encoding):
    """A file whose XML declaration names an unknown or unsupported encoding is skipped with a reason; the others load."""
    write(tmp_path / "good.inkml", GOOD)
    write(tmp_path / "empty.inkml", "")
    (tmp_path / "enc.inkml").write_bytes(GOOD.replace("UTF-8", encoding).encode())
    ds = strokes.load(tmp_path, progress=False)
    assert ds.label_names() == ["x", "+", "1"]
    reasons = {s.source: s.reason for s in ds.skipped}
    assert set(reasons) == {"enc.inkml", "empty.inkml"}
    assert reasons["enc.inkml"].startswith("cannot decode the XML (")
    assert reasons["empty.inkml"] == "empty file (0 bytes)"  # its own reason, not the decoding one
    assert ds.info["files_in"] == 3 and ds.info["files_skipped"] == 2


def test_trace_lacking_the_x_or_y_column_skips_only_its_symbol(tmp_path):
    """With X, Y declared after another channel, a trace of only two values per point skips its symbol instead of crashing."""
    doc = ink_doc(
        {"0": "9 1 2, 9 3 4", "1": "1 2, 3 4"},
        [("ok", "a", ["0"]), ("narrow", "b", ["1"])],
        fmt=channels("F", "X", "Y"),
    )
    ds = strokes.load(write(tmp_path / "n.inkml", doc), progress=False)
    assert ds.label_names() == ["a"]
    np.testing.assert_array_equal(ds[0].strokes[0], [[1, 2], [3, 4]])
    assert [s.source for s in ds.skipped] == ["n.inkml#narrow"]
    assert "puts X and Y at positions 1 and 2" in ds.skipped[0].reason
    assert ds.info["symbols_in"] == 2 == len(ds) + ds.info["symbols_skipped"]


def test_coordinates_beyond_the_cap_skip_the_symbol(tmp_path):
    """An x or y beyond ±1e15 (as_ink's cap; past float32 it would load as inf) skips its symbol; 1e15 itself loads."""
    doc = ink_doc(
        {"0": "1e39 2, 3 4", "1": "5 -1e300", "2": "1e20 6", "3": "1e15 -1e15"},
        [("f32", "a", ["0"]), ("f64", "b", ["1"]), ("cap", "c", ["2"]), ("ok", "d", ["3"])],
    )
    ds = strokes.load(write(tmp_path / "big.inkml", doc), progress=False)
    assert ds.label_names() == ["d"]
    np.testing.assert_array_equal(ds[0].strokes[0], np.float32([[1e15, -1e15]]))
    assert [s.source for s in ds.skipped] == ["big.inkml#f32", "big.inkml#f64", "big.inkml#cap"]
    assert all("beyond ±1e+15" in s.reason for s in ds.skipped)
    assert ds.info["symbols_in"] == 4 == len(ds) + ds.info["symbols_skipped"]
