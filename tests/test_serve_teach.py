"""``strokes serve`` with a user-symbol store: teach, collect, taught symbols in classify and /api/symbols, package and mode (issue 17).

Real servers on 127.0.0.1 with a temporary SQLite store: ``strokes serve``
processes where the test only talks HTTP, uvicorn in a thread of this process
(``running_app``) where it needs to reach inside.
"""

from __future__ import annotations

import http.client
import json
import re
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from datasets import star  # noqa: E402
from serving import ROOT, request, running_app, running_server  # noqa: E402

from strokes.glyphs import symbol_info  # noqa: E402
from strokes.io.user_symbols import MAX_INKS_PER_CALL, MAX_LABEL_CHARS, MAX_POINTS_PER_INK  # noqa: E402
from strokes.server import BadRequest, ServeConfig, create_app, parse_teach  # noqa: E402
from strokes.synthetic import WriterStyle, generate_ink  # noqa: E402

LABEL = "\\bigstar"  # amssymb; the model does not know it


STARS = [[s.tolist() for s in star(np.random.default_rng(i))] for i in range(8)]  # JSON-ready
PLUS = [[[0, 50], [50, 50], [100, 50]], [[50, 0], [50, 50], [50, 100]]]


def count_rows(path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM samples").fetchone()[0]


def symbols_of(out) -> list[str]:
    return [r["symbol"] for r in out["results"]]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return tmp_path_factory.mktemp("teach") / "user_symbols.sqlite"


@pytest.fixture(scope="module")
def server(store_path):
    with running_server("--user-symbols", str(store_path), "--max-points", "5000", "--max-strokes", "50") as (host, port, proc):
        yield host, port, proc


@pytest.fixture(scope="module")
def collecting(tmp_path_factory):
    path = tmp_path_factory.mktemp("collect") / "collected.sqlite"
    with running_server("--user-symbols", str(path), "--collect") as (host, port, proc):
        yield host, port, path


def call(server, method, path, body=None, headers=None):
    return request(server[0], server[1], method, path, body=body, headers=headers)


# ------------------------------------------------------------ teach, then classify
def test_teach_then_classify_finds_the_taught_symbol(server, store_path):
    """Before teaching, a star is not in the top 5; after POST /api/teach of 3 stars, a fourth star is, marked taught."""
    status, before = call(server, "POST", "/api/classify", STARS[5])
    assert status == 200 and LABEL not in symbols_of(before)
    status, out = call(server, "POST", "/api/teach", {"label": LABEL, "drawings": STARS[:3]})
    assert status == 200, out
    assert out["label"] == LABEL and out["stored"] == 3 and out["total"] == 3
    assert out["package"] == "amssymb" and out["mode"] == "math" and out["unicode"] == "★"
    assert count_rows(store_path) == 3
    status, after = call(server, "POST", "/api/classify", STARS[5])
    assert status == 200
    assert LABEL in symbols_of(after), after
    hit = next(r for r in after["results"] if r["symbol"] == LABEL)
    assert hit["taught"] is True and hit["package"] == "amssymb"
    assert all(r["taught"] is False for r in after["results"] if r["symbol"] != LABEL)
    # the same ink in detexify's {x, y, t} shape, inside the teach body, works too
    detexify = {"strokes": [[{"x": x, "y": y, "t": 1000 + 10 * i} for i, (x, y) in enumerate(s)] for s in STARS[3]]}
    status, out = call(server, "POST", "/api/teach", {"label": LABEL, "drawings": [detexify]})
    assert status == 200 and out["stored"] == 1 and out["total"] == 4
    assert count_rows(store_path) == 4


def test_symbols_list_taught_symbols(server):
    """/api/symbols has the 101 built-in symbols, then the taught one, marked taught with its drawing count; /symbols shows it."""
    status, out = call(server, "POST", "/api/teach", {"label": "\\mysym<b>", "drawings": STARS[6:8]})
    assert status == 200, out
    status, syms = call(server, "GET", "/api/symbols")
    assert status == 200
    by = {s["symbol"]: s for s in syms["symbols"]}
    assert sum(s["builtin"] for s in syms["symbols"]) == 101
    assert by[LABEL]["taught"] is True and by[LABEL]["builtin"] is False and by[LABEL]["drawings"] >= 3
    assert by["\\mysym<b>"]["drawings"] == 2 and by["\\mysym<b>"]["package"] is None  # unknown: the default
    assert by["\\alpha"]["taught"] is False and by["\\alpha"]["builtin"] is True and by["\\alpha"]["drawings"] == 0
    status, page = call(server, "GET", "/symbols")
    assert status == 200 and isinstance(page, bytes)
    text = page.decode()
    assert 'data-symbol="\\bigstar"' in text and "\\usepackage{amssymb}" in text
    assert "\\mysym&lt;b&gt;" in text and "<b>" not in text  # labels are escaped, never HTML
    assert text.count('class="symbol-card') == len(syms["symbols"])
    assert "http://" not in text and "https://" not in text  # nothing from outside the server


# ------------------------------------------------------------ bad input
def _teach(label=LABEL, drawings=None):
    return json.dumps({"label": label, "drawings": STARS[:3] if drawings is None else drawings}).encode()


BAD_TEACH = [
    ("empty label", _teach(""), "label is empty"),
    ("blank label", _teach("   "), "label is empty"),
    ("over-long label", _teach("\\" + "a" * MAX_LABEL_CHARS), f"limit of {MAX_LABEL_CHARS}"),
    ("label with a newline", _teach("\\a\nb"), "control"),
    ("label with spaces around", _teach(" \\a"), "white space"),
    ("label not a string", json.dumps({"label": 3, "drawings": STARS[:1]}).encode(), "must be a string"),
    ("no label", json.dumps({"drawings": STARS[:1]}).encode(), "missing key"),
    ("no drawings", json.dumps({"label": "\\a"}).encode(), "missing key"),
    ("unknown key", json.dumps({"label": "\\a", "drawings": STARS[:1], "drawing": 1}).encode(), "unknown key"),
    ("not an object", b"[[[1, 2]]]", "JSON object"),
    ("drawings not a list", _teach(drawings="abc"), "array of drawings"),
    ("no drawings given", _teach(drawings=[]), "drawings is empty"),
    ("too many drawings", _teach(drawings=[PLUS] * (MAX_INKS_PER_CALL + 1)), f"limit of {MAX_INKS_PER_CALL}"),
    ("one drawing, not a list of them", _teach(drawings=PLUS), "looks like one drawing"),
    ("malformed drawing", _teach(drawings=[PLUS, [[["a", "b"]]]]), "drawing 1: .*(numeric|number)"),
    ("empty drawing", _teach(drawings=[PLUS, []]), "drawing 1: .*empty"),
    ("drawing with too many points", _teach(drawings=[[[[i % 100, i // 100] for i in range(5001)]]]), "drawing 0: too many points"),
    ("drawing with too many strokes", _teach(drawings=[[[[i, i]] for i in range(51)]]), "drawing 0: too many strokes"),
    ("NaN", b'{"label": "\\\\a", "drawings": [[[[1, NaN]]]]}', "non-finite"),
    ("malformed JSON", b'{"label": "\\\\a", "drawings": [', "malformed JSON"),
    ("not UTF-8", b"\xff\xfe{}", "UTF-8|malformed"),
    ("empty body", b"", "empty request body"),
]


@pytest.mark.parametrize("name, body, message", BAD_TEACH, ids=[b[0] for b in BAD_TEACH])
def test_bad_teach_requests_get_400_json_and_store_nothing(server, store_path, name, body, message):
    """Each malformed teach request gets a 400 {"error": ...} that says what is wrong, and the store is unchanged."""
    rows = count_rows(store_path)
    status, out = call(server, "POST", "/api/teach", body)
    assert status == 400, out
    assert isinstance(out, dict) and set(out) == {"error"}
    assert re.search(message, out["error"], re.I), out["error"]
    assert count_rows(store_path) == rows


def test_teach_limits_match_the_library():
    """A drawing over the library's MAX_POINTS_PER_INK is refused even when the server allows more points per request."""
    config = ServeConfig(max_points=MAX_POINTS_PER_INK + 5000)
    label, inks = parse_teach({"label": "\\a", "drawings": [[[[i, i] for i in range(MAX_POINTS_PER_INK)]]]}, config)
    assert label == "\\a" and len(inks) == 1
    with pytest.raises(BadRequest, match="too many points"):
        parse_teach({"label": "\\a", "drawings": [[[[i, i] for i in range(MAX_POINTS_PER_INK + 1)]]]}, config)


def test_oversize_teach_bodies_get_413_and_the_server_stays_up(server, store_path):
    """A teach body over --max-body gets a 413 JSON answer, declared or chunked, and nothing is stored."""
    rows = count_rows(store_path)
    points = ",".join("[1.000000, 2.000000]" for _ in range(14_000))
    big = f'{{"label": "\\\\big", "drawings": [[[{points}]]]}}'.encode()
    assert len(big) > 256 * 1024
    status, out = call(server, "POST", "/api/teach", big)
    assert status == 413 and "limit" in out["error"]
    conn = http.client.HTTPConnection(server[0], server[1], timeout=10)
    conn.request("POST", "/api/teach", body=(b"[" * 1024 for _ in range(300)), headers={"Content-Type": "application/json"}, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 413 and "limit" in json.loads(resp.read())["error"]
    conn.close()
    assert count_rows(store_path) == rows
    assert call(server, "GET", "/healthz")[0] == 200


def test_bad_requests_never_take_the_server_down(server):
    """After every bad teach and collect request, a wrong method and a half-sent body, the server still classifies."""
    host, port, proc = server
    for _, body, _ in BAD_TEACH:
        call(server, "POST", "/api/teach", body)
        call(server, "POST", "/api/collect", body)
    status, out = call(server, "GET", "/api/teach")
    assert status == 405 and set(out) == {"error"}
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.putrequest("POST", "/api/teach")
    conn.putheader("Content-Length", "1000")
    conn.endheaders()
    conn.send(b'{"label": "\\\\a", "drawings": [[')
    conn.close()
    assert proc.poll() is None
    assert call(server, "GET", "/healthz")[0] == 200
    assert call(server, "POST", "/api/classify", PLUS)[0] == 200


def test_teach_needs_a_json_content_type(server, store_path):
    """A teach body sent as a form or text/plain (what another site's page can send without a preflight) gets 415 and stores nothing."""
    rows = count_rows(store_path)
    body = _teach("\\fromform")
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, out = call(server, "POST", "/api/teach", body, headers={"Content-Type": ctype})
        assert status == 415 and set(out) == {"error"} and "application/json" in out["error"], (ctype, out)
    status, out = call(server, "POST", "/api/teach", body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 200 and out["label"] == "\\fromform"
    assert count_rows(store_path) == rows + 3


# ------------------------------------------------------------ collect
def test_collect_is_off_by_default(server, store_path):
    """Without --collect, /healthz says so and POST /api/collect gets a 403 JSON error and stores nothing."""
    assert call(server, "GET", "/healthz")[1]["collect"] is False
    rows = count_rows(store_path)
    status, out = call(server, "POST", "/api/collect", {"label": "\\alpha", "drawing": PLUS})
    assert status == 403 and set(out) == {"error"} and "--collect" in out["error"]
    assert count_rows(store_path) == rows


def test_collect_stores_a_labelled_sample(collecting):
    """With --collect, a picked result is stored as one row under its label; an unknown label or bad ink is refused."""
    host, port, path = collecting
    assert request(host, port, "GET", "/healthz")[1]["collect"] is True
    assert count_rows(path) == 0
    alpha = [s.tolist() for s in generate_ink("\\alpha", np.random.default_rng(0), WriterStyle())]
    status, out = request(host, port, "POST", "/api/collect", {"label": "\\alpha", "drawing": alpha})
    assert status == 200 and out["label"] == "\\alpha" and out["stored"] == 1 and out["total"] == 1, out
    assert count_rows(path) == 1
    with sqlite3.connect(path) as conn:
        key, strokes = conn.execute("SELECT key, strokes FROM samples").fetchone()
    assert key == "\\alpha" and np.allclose(json.loads(strokes)[0], alpha[0])
    for body, message in [
        ({"label": "\\nosuchsymbol", "drawing": alpha}, "unknown symbol"),
        ({"label": "\\alpha", "drawing": []}, "empty"),
        ({"label": "", "drawing": alpha}, "label is empty"),
        ({"label": "\\alpha"}, "missing key"),
    ]:
        status, out = request(host, port, "POST", "/api/collect", body)
        assert status == 400 and set(out) == {"error"} and re.search(message, out["error"]), out
    status, out = request(host, port, "POST", "/api/collect", {"label": "\\alpha", "drawing": alpha}, headers={"Content-Type": "text/plain"})
    assert status == 415 and set(out) == {"error"}
    assert count_rows(path) == 1
    # a taught label can be collected too
    assert request(host, port, "POST", "/api/teach", {"label": "\\mine", "drawings": STARS[:3]})[0] == 200
    status, out = request(host, port, "POST", "/api/collect", {"label": "\\mine", "drawing": STARS[4]})
    assert status == 200 and out["total"] == 4
    assert count_rows(path) == 5


# ------------------------------------------------------------ package and mode
def test_package_and_mode_in_classify_and_symbols(server):
    """Every result and every listed symbol carries package and mode; known commands get the right ones."""
    alpha = [s.tolist() for s in generate_ink("\\alpha", np.random.default_rng(0), WriterStyle())]
    status, out = call(server, "POST", "/api/classify?k=10", alpha)
    assert status == 200
    for r in out["results"]:
        info = symbol_info(r["symbol"])
        assert (r["package"], r["mode"]) == (info.package, info.mode)
    status, syms = call(server, "GET", "/api/symbols")
    by = {s["symbol"]: s for s in syms["symbols"]}
    assert all(s["mode"] in ("math", "text", "both") and "package" in s for s in syms["symbols"])
    assert (by["\\alpha"]["package"], by["\\alpha"]["mode"]) == (None, "math")
    assert (by["x"]["package"], by["x"]["mode"]) == (None, "both")
    assert (by["\\ldots"]["package"], by["\\ldots"]["mode"]) == (None, "both")
    assert by["\\gt"]["note"] and "LaTeX" in by["\\gt"]["note"]


def test_symbol_info_table():
    """The table covers the model's whole vocabulary and common amssymb and latexsym commands; unknown ones get the default."""
    from strokes.recognizer import get_recognizer

    assert all(symbol_info(c).known for c in get_recognizer().classes)
    for label, package, mode in [
        ("\\mathbb{R}", "amssymb", "math"), ("\\mathbb R", "amssymb", "math"), ("\\leqslant", "amssymb", "math"),
        ("\\nexists", "amssymb", "math"), ("\\checkmark", "amssymb", "both"), ("\\Box", "latexsym", "math"),
        ("\\mho", "amssymb", "math"), ("\\iint", "amsmath", "math"), ("\\mathscr{L}", "mathrsfs", "math"),
        ("\\textdegree", "textcomp", "text"), ("\\ss", None, "text"), ("\\S", None, "both"), ("\\int", None, "math"),
        ("<", None, "math"), ("7", None, "both"), ("\\'{e}", None, "text"),
    ]:  # fmt: skip
        info = symbol_info(label)
        assert (info.package, info.mode, info.known) == (package, mode, True), label
    for unknown in ("\\mysymbol", "\\mathbbX", "α", "%", ""):
        assert (symbol_info(unknown).package, symbol_info(unknown).mode, symbol_info(unknown).known) == (None, "math", False)
    with pytest.raises(TypeError):
        symbol_info(None)


# ------------------------------------------------------------ in-process
@pytest.fixture(scope="module")
def recognizer():
    from strokes.recognizer import get_recognizer

    return get_recognizer(None)


def test_without_a_store_teaching_is_refused(recognizer):
    """A server without a store answers teach and collect with 403 JSON, and says so in /healthz."""
    with running_app(create_app(recognizer)) as (host, port):
        assert request(host, port, "GET", "/healthz")[1]["teach"] is False
        for path, body in [("/api/teach", {"label": "\\a", "drawings": [PLUS]}), ("/api/collect", {"label": "x", "drawing": PLUS})]:
            status, out = request(host, port, "POST", path, body)
            assert status == 403 and set(out) == {"error"}, out
        assert len(request(host, port, "GET", "/api/symbols")[1]["symbols"]) == 101


def test_collect_needs_a_store(recognizer, tmp_path):
    """create_app refuses collect without a store, and a collect that is not a bool; the CLI refuses --collect with --user-symbols none."""
    with pytest.raises(ValueError, match="user_symbols"):
        create_app(recognizer, collect=True)
    with pytest.raises(TypeError, match="collect"):
        create_app(recognizer, user_symbols=tmp_path / "s.sqlite", collect="yes")
    proc = subprocess.run(
        [sys.executable, "-m", "strokes", "serve", "--collect", "--user-symbols", "none", "--port", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "--collect" in proc.stderr


def test_teaching_runs_off_the_event_loop(recognizer, tmp_path, monkeypatch):
    """While a teach call is held inside its transaction, other requests are answered; the next classify sees the taught symbol."""
    monkeypatch.setenv("STROKES_TEST_TEACH_SLEEP", "3")  # the store's test hook: sleep before the commit
    path = tmp_path / "slow.sqlite"
    with running_app(create_app(recognizer, user_symbols=path)) as (host, port):
        answer = {}

        def teach():
            answer["teach"] = request(host, port, "POST", "/api/teach", {"label": LABEL, "drawings": STARS[:3]}, timeout=60)
            answer["done"] = time.monotonic()

        t = threading.Thread(target=teach)
        t0 = time.monotonic()
        t.start()
        while not path.exists() and time.monotonic() - t0 < 10:
            time.sleep(0.01)  # the teach call is in its transaction once the file exists
        status, out = request(host, port, "POST", "/api/classify", STARS[5], timeout=30)
        answered = time.monotonic()
        assert status == 200 and LABEL not in symbols_of(out)  # not committed yet
        t.join(60)
        assert answer["teach"][0] == 200, answer
        assert answered < answer["done"]  # classify did not wait for the teach call
        status, out = request(host, port, "POST", "/api/classify", STARS[5], timeout=30)
        assert status == 200 and LABEL in symbols_of(out)
