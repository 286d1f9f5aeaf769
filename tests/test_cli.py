"""The ``strokes`` command line, run as a real process (and in-process where that is enough)."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import strokes
from strokes import cli


def strokes_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "strokes"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("strokes")
    return [found] if found else [sys.executable, "-m", "strokes"]


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*strokes_cmd(), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


INK = """<ink xmlns="http://www.w3.org/2003/InkML">
<annotation type="writer">{writer}</annotation>
<trace id="0">1 2, 3 4</trace><trace id="1">5 6</trace>
<traceGroup><annotation type="truth">Segmentation</annotation>
<traceGroup xml:id="1"><annotation type="truth">x</annotation><traceView traceDataRef="0"/></traceGroup>
<traceGroup xml:id="2"><annotation type="truth">{label}</annotation><traceView traceDataRef="1"/></traceGroup>
<traceGroup xml:id="3"><traceView traceDataRef="1"/></traceGroup>
</traceGroup></ink>
"""


@pytest.fixture
def inkml_dir(tmp_path) -> Path:
    d = tmp_path / "ink"
    d.mkdir()
    (d / "a.inkml").write_text(INK.format(writer="w1", label="y"))
    (d / "b.inkml").write_text(INK.format(writer="w2", label="x"))
    (d / "broken.inkml").write_text(INK[:120])
    return d


DUMP = (
    "COPY samples (id, key, strokes) FROM stdin;\n"
    "1\tlatex2e-OT1-_alpha\t[[[1,2,3],[4,5,6]]]\n"
    "2\tlatex2e-OT1-_alpha\t[[[7,8]]]\n"
    "3\tlatex2e-OT1-_beta\t[[[1,1]],[[2,2]]]\n"
    "4\tlatex2e-OT1-_beta\tnot json\n"
    "5\tlatex2e-OT1-_alpha\t[[[0,0]]]\n"
    "\\.\n"
)


@pytest.fixture
def dump(tmp_path) -> Path:
    p = tmp_path / "d.sql"
    p.write_text(DUMP)
    return p


# ------------------------------------------------------------------ help
@pytest.mark.parametrize(
    "args",
    [[], ["import"], ["stats"], ["render"], ["train"], ["eval"], ["recognize"], ["export-onnx"], ["bench"], ["tune"],
     ["serve"], ["db"], ["db", "load"]],
)
def test_help_exits_zero(args):
    r = run(*args, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: strokes")
    assert r.stderr == ""


def test_help_lists_subcommands():
    out = run("--help").stdout
    for name in ("import", "stats", "db"):
        assert re.search(rf"^\s+{name}\s", out, re.M), out


def test_python_dash_m_works():
    r = subprocess.run([sys.executable, "-m", "strokes", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "usage: strokes" in r.stdout


def test_no_command_is_a_usage_error():
    r = run()
    assert r.returncode == 2
    assert "usage: strokes" in r.stderr


# ------------------------------------------------------------------ import
def test_import_inkml_writes_npz_and_summary(inkml_dir, tmp_path):
    out = tmp_path / "out" / "c.npz"
    r = run("import", inkml_dir, "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.exists()
    assert "in: 3 files; read: 2; skipped: 1 files, 2 symbols" in r.stdout
    assert "samples: 4, classes: 2, writers: 2" in r.stdout
    assert "real data, format inkml" in r.stdout
    assert f"wrote {out}" in r.stdout
    assert "broken.inkml" in r.stdout  # an example of what was skipped
    ds = strokes.load(out)
    direct = strokes.load(inkml_dir, progress=False)
    assert ds.fingerprint() == direct.fingerprint()
    assert ds.writer_names == ["w1", "w2"]
    assert sorted(s.source for s in ds.skipped) == ["a.inkml#3", "b.inkml#3", "broken.inkml"]


def test_import_dump_summary_in_loaded_skipped(dump, tmp_path):
    out = tmp_path / "d.npz"
    r = run("import", dump, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "in: 5 rows; loaded: 4; skipped: 1" in r.stdout
    assert "samples: 4, classes: 2" in r.stdout
    assert "not valid JSON" in r.stdout and "id 4" in r.stdout
    ds = strokes.load(out)
    assert ds.label_names() == [r"\alpha", r"\alpha", r"\beta", r"\alpha"]
    assert ds.info["records_in"] == 5


def test_import_limit_and_sql_output(dump, tmp_path):
    out = tmp_path / "two.sql"
    r = run("import", dump, "--limit", "2", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "in: 2 rows; loaded: 2; skipped: 0" in r.stdout
    back = strokes.load(out, progress=False)
    assert back.label_names() == [r"\alpha", r"\alpha"]
    np.testing.assert_array_equal(back.xy, [[1, 2], [4, 5], [7, 8]])


def test_import_with_explicit_format(dump, tmp_path):
    renamed = tmp_path / "dump.txt"
    renamed.write_text(dump.read_text())
    r = run("import", renamed, "-o", tmp_path / "x.npz")
    assert r.returncode == 2 and "cannot tell the format" in r.stderr
    r = run("import", renamed, "--format", "detexify-sql", "-o", tmp_path / "x.npz")
    assert r.returncode == 0, r.stderr
    assert len(strokes.load(tmp_path / "x.npz")) == 4


# ------------------------------------------------------------------ stats
def test_stats_prints_class_counts(dump):
    r = run("stats", dump)
    assert r.returncode == 0, r.stderr
    counts = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\s+(\d+)  (\\\w+)$", r.stdout, re.M)}
    assert counts == {r"\alpha": 3, r"\beta": 1}
    assert "class counts (min 1, median 2, max 3)" in r.stdout
    assert re.search(r"^\s+points\s", r.stdout, re.M) and re.search(r"^\s+strokes\s", r.stdout, re.M)


def test_stats_top_and_all(dump):
    r = run("stats", dump, "--top", "1")
    assert r.returncode == 0
    assert re.search(r"^\s+3  \\alpha$", r.stdout, re.M)
    assert not re.search(r"\\beta$", r.stdout, re.M)
    assert "... 1 more (--all shows every class)" in r.stdout
    r = run("stats", dump, "--top", "1", "--all")
    assert re.search(r"^\s+1  \\beta$", r.stdout, re.M)
    assert "more (--all" not in r.stdout


def test_stats_in_process(inkml_dir, capfd):
    assert cli.main(["stats", str(inkml_dir)]) == 0
    out = capfd.readouterr().out
    assert re.search(r"^\s+3  x$", out, re.M) and re.search(r"^\s+1  y$", out, re.M)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("sub", ["import", "stats"])
def test_bad_source_path_exit_2(tmp_path, sub):
    missing = tmp_path / "no_such_dir"
    extra = ["-o", str(tmp_path / "o.npz")] if sub == "import" else []
    r = run(sub, missing, *extra)
    assert r.returncode == 2
    assert r.stderr.startswith("strokes: error:")
    assert "no_such_dir" in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    assert not (tmp_path / "o.npz").exists()


def test_unreadable_dump_exit_2(tmp_path):
    p = tmp_path / "x.sql"
    p.write_text("no copy block here\n")
    r = run("stats", p)
    assert r.returncode == 2
    assert "strokes: error:" in r.stderr and "COPY samples" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_output_suffix_exit_2(dump, tmp_path):
    r = run("import", dump, "-o", tmp_path / "out.csv")
    assert r.returncode == 2
    assert "strokes: error:" in r.stderr and ".npz" in r.stderr
    assert not (tmp_path / "out.csv").exists()


def test_in_process_error_returns_2(tmp_path, capsys):
    assert cli.main(["stats", str(tmp_path / "nothing.npz")]) == 2
    assert "strokes: error:" in capsys.readouterr().err


def test_damaged_npz_exit_2(tmp_path):
    p = tmp_path / "empty.npz"
    p.write_bytes(b"")
    r = run("stats", p)
    assert r.returncode == 2
    assert r.stderr.startswith("strokes: error:")


def test_summary_follows_redirected_stdout(dump, tmp_path):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(["import", str(dump), "-o", str(tmp_path / "r.npz")]) == 0
    text = buf.getvalue()
    assert "wrote" in text
    assert "in: 5 rows; loaded: 4; skipped: 1" in text


# -- strokes render --------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_render_writes_a_labelled_grid(tmp_path):
    out = tmp_path / "grid.png"
    r = run("render", "synthetic:writers=2,samples=2", "-o", out, "--n", "6")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "(6 samples)" in r.stdout
    w, h = _png_size(out)
    assert w > 200 and h > 100
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temporary behind


def test_render_label_channels_and_augment_in_process(tmp_path, capsys):
    from strokes.synthetic import generate

    ds = generate(2, 2)
    label = ds.classes[3]
    out = tmp_path / "alpha.svg"
    code = cli.main(
        ["render", "synthetic:writers=2,samples=2", "-o", str(out), "--label", label,
         "--channels", "ink,order,stroke,direction", "--augment", "--hard", "--thickness", "2"]
    )
    assert code == 0
    text = out.read_text()
    assert "<svg" in text
    n_expected = int((ds.labels == 3).sum())
    assert f"({n_expected} samples)" in capsys.readouterr().out


def test_render_unknown_label_or_channel_exit_2(tmp_path):
    r = run("render", "synthetic", "-o", tmp_path / "x.png", "--label", "\\nosuchsymbol")
    assert r.returncode == 2 and "not in" in r.stderr
    r = run("render", "synthetic", "-o", tmp_path / "x.png", "--channels", "ink,colour")
    assert r.returncode == 2 and "valid channels" in r.stderr
    assert not (tmp_path / "x.png").exists()
