"""``strokes serve`` against a real server process on loopback: API, bad input, limits, concurrency."""

from __future__ import annotations

import http.client
import json
import threading

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from serving import request, running_server  # noqa: E402

from strokes.glyphs import glyph  # noqa: E402
from strokes.server import ServeConfig, parse_ink, BadRequest  # noqa: E402
from strokes.synthetic import WriterStyle, generate_ink  # noqa: E402

PLUS = [[[0, 50], [50, 50], [100, 50]], [[50, 0], [50, 50], [50, 100]]]  # a "+" as [x, y] lists


def detexify_shape(strokes, t0=1_700_000_000_000):
    return {"strokes": [[{"x": float(p[0]), "y": float(p[1]), "t": t0 + 10 * i} for i, p in enumerate(s)] for s in strokes]}


@pytest.fixture(scope="module")
def server():
    with running_server("--max-points", "5000", "--max-strokes", "50") as (host, port, proc):
        yield host, port, proc


def call(server, method, path, body=None, headers=None):
    host, port, _ = server
    return request(host, port, method, path, body=body, headers=headers)


def test_healthz_symbols_and_page(server):
    status, health = call(server, "GET", "/healthz")
    assert status == 200 and health["status"] == "ok" and health["classes"] == 101
    status, syms = call(server, "GET", "/api/symbols")
    assert status == 200 and len(syms["symbols"]) == 101
    by = {s["symbol"]: s["unicode"] for s in syms["symbols"]}
    assert by["\\alpha"] == "α" and by["+"] == "+"
    status, page = call(server, "GET", "/")
    assert status == 200 and b"<canvas" in page and b"/static/app.js" in page
    assert b"http://" not in page and b"https://" not in page  # no external assets
    status, js = call(server, "GET", "/static/app.js")
    assert status == 200 and b"pointerdown" in js


def test_classify_detexify_shape(server):
    status, body = call(server, "POST", "/api/classify", detexify_shape(PLUS))
    assert status == 200
    results = body["results"]
    assert len(results) == 5
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    assert "+" in [r["symbol"] for r in results]
    assert all(r["unicode"] == glyph(r["symbol"]) for r in results)


@pytest.mark.parametrize("shape", ["lists", "lists_with_t", "object_of_lists"])
def test_classify_point_lists(server, shape):
    strokes = PLUS if shape == "lists" else [[[x, y, 1000 + i] for i, (x, y) in enumerate(s)] for s in PLUS]
    body = {"strokes": strokes} if shape == "object_of_lists" else strokes
    status, out = call(server, "POST", "/api/classify?k=3", body)
    assert status == 200 and len(out["results"]) == 3
    ref = call(server, "POST", "/api/classify?k=3", detexify_shape(PLUS))[1]
    assert [r["symbol"] for r in out["results"]] == [r["symbol"] for r in ref["results"]]


def test_k(server):
    assert len(call(server, "POST", "/api/classify?k=1", PLUS)[1]["results"]) == 1
    assert len(call(server, "POST", "/api/classify?k=50", PLUS)[1]["results"]) == 50


def test_synthetic_alpha_is_recognized(server):
    ink = generate_ink("\\alpha", np.random.default_rng(0), WriterStyle())
    status, out = call(server, "POST", "/api/classify", [s.tolist() for s in ink])
    assert status == 200 and "\\alpha" in [r["symbol"] for r in out["results"]]


BAD = [
    ("malformed json", b'{"strokes": [[{"x": 1, "y": 2}', "malformed JSON"),
    ("not utf-8", b"\xff\xfe[[[1, 2]]]", "UTF-8|malformed"),
    ("empty body", b"", "empty request body"),
    ("no strokes key", b'{"ink": []}', "'strokes' key"),
    ("strokes not a list", b'{"strokes": "abc"}', "array of strokes"),
    ("number", b"42", "array of strokes"),
    ("empty ink", b"[]", "empty"),
    ("empty stroke", b"[[]]", "empty|no points"),
    ("stroke not a list", b"[1, 2]", "stroke 0"),
    ("point wrong length", b"[[[1]]]", "point|coordinates|shape"),
    ("point not numbers", b'[[["a", "b"]]]', "numeric|number"),
    ("dict without y", b'{"strokes": [[{"x": 1}]]}', "y"),
    ("NaN literal", b"[[[1, NaN]]]", "non-finite"),
    ("Infinity literal", b"[[[Infinity, 1]]]", "non-finite"),
    ("overflow to inf", b"[[[1e999, 1]]]", "finite|inf"),
    ("booleans", b"[[[true, false]]]", "numeric|number|bool"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, "nested|malformed|point|coordinates"),
]


@pytest.mark.parametrize("name, body, message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_400_with_a_message(server, name, body, message):
    status, out = call(server, "POST", "/api/classify", body)
    assert status == 400, out
    assert isinstance(out, dict) and set(out) == {"error"}
    import re

    assert re.search(message, out["error"], re.I), out["error"]


@pytest.mark.parametrize("k", ["0", "-1", "abc", "1.5", "102", "51"])
def test_bad_k(server, k):
    status, out = call(server, "POST", f"/api/classify?k={k}", PLUS)
    assert status == 400 and "k must" in out["error"]


def test_limits_on_points_and_strokes(server):
    many_points = [[[i % 100, i // 100] for i in range(5001)]]
    status, out = call(server, "POST", "/api/classify", many_points)
    assert status == 400 and "too many points" in out["error"]
    many_strokes = [[[i, i]] for i in range(51)]
    status, out = call(server, "POST", "/api/classify", many_strokes)
    assert status == 400 and "too many strokes" in out["error"]


def test_body_over_the_limit_gets_413(server):
    big = b"[[" + b",".join(b"[1.000000, 2.000000]" for _ in range(14_000)) + b"]]"
    assert len(big) > 256 * 1024
    status, out = call(server, "POST", "/api/classify", big)
    assert status == 413 and "limit" in out["error"]


def test_chunked_body_over_the_limit_gets_413(server):
    host, port, _ = server
    conn = http.client.HTTPConnection(host, port, timeout=10)

    def chunks():
        for _ in range(300):
            yield b"[" * 1024  # 300 KiB in 1 KiB chunks, no Content-Length

    conn.request("POST", "/api/classify", body=chunks(), headers={"Content-Type": "application/json"}, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 413
    assert "limit" in json.loads(resp.read())["error"]
    conn.close()


@pytest.mark.parametrize(
    "method, path",
    [("GET", "/api/classify"), ("PUT", "/api/classify"), ("POST", "/"), ("DELETE", "/healthz"), ("POST", "/api/symbols")],
)
def test_wrong_method_gets_405(server, method, path):
    status, out = call(server, method, path, body=b"[]" if method in ("POST", "PUT") else None)
    assert status == 405 and "not allowed" in out["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/../server.py",
        "/static/%2e%2e/server.py",
        "/static/..%2fserver.py",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/static/..%5cserver.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/../pyproject.toml",
        "/nope",
    ],
)
def test_no_file_outside_the_static_assets(server, path):
    host, port, _ = server
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)  # sent as is, not normalized
    conn.endheaders()
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    assert resp.status in (400, 404), (path, resp.status)
    assert b"def create_app" not in data and b"[project]" not in data and b"root:" not in data


def test_bad_requests_never_take_the_server_down(server):
    host, port, proc = server
    for _, body, _ in BAD:
        call(server, "POST", "/api/classify", body)
    # a client that sends half a body and leaves
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.putrequest("POST", "/api/classify")
    conn.putheader("Content-Length", "1000")
    conn.endheaders()
    conn.send(b'{"strokes": [[')
    conn.close()
    assert proc.poll() is None
    assert call(server, "GET", "/healthz")[0] == 200
    assert call(server, "POST", "/api/classify", PLUS)[0] == 200


def test_concurrent_clients_get_their_own_answers(server):
    """16 clients posting at once get the answers they would get alone, and their inks share micro-batches."""
    host, port, _ = server
    rng = np.random.default_rng(1)
    inks = {sym: [s.tolist() for s in generate_ink(sym, rng, WriterStyle())] for sym in ("\\alpha", "+", "x", "\\sum")}
    expected = {sym: call(server, "POST", "/api/classify?k=5", ink)[1]["results"] for sym, ink in inks.items()}
    errors, mismatches = [], []
    symbols = list(inks)
    clients, rounds = 16, 12
    start = threading.Barrier(clients, timeout=30)  # all first requests leave together, so they queue together

    def client(i):
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.connect()
            start.wait()
            for j in range(rounds):
                sym = symbols[(i + j) % len(symbols)]
                status, out = request(host, port, "POST", "/api/classify?k=5", inks[sym], conn=conn)
                if status != 200:
                    errors.append((status, out))
                elif [r["symbol"] for r in out["results"]] != [r["symbol"] for r in expected[sym]]:
                    mismatches.append(sym)
                else:
                    got = np.array([r["score"] for r in out["results"]])
                    want = np.array([r["score"] for r in expected[sym]])
                    if not np.allclose(got, want, atol=1e-5):
                        mismatches.append(sym)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            conn.close()

    before = call(server, "GET", "/healthz")[1]
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and mismatches == []
    after = call(server, "GET", "/healthz")[1]
    inks_done, batches = after["inks"] - before["inks"], after["batches"] - before["batches"]
    assert inks_done == clients * rounds  # every request classified once, nothing else in between
    # fewer batches than inks: at least one forward pass held inks of several clients (with 16
    # requests in flight at once, the inference thread always finds more than one queued)
    assert batches < inks_done, (batches, inks_done)


# ------------------------------------------------------------ in-process
def test_parse_ink_names_the_bad_point():
    with pytest.raises(BadRequest, match="stroke 1"):
        parse_ink([[[0, 0]], "x"], ServeConfig())
    ink = parse_ink({"strokes": [[{"x": 1, "y": 2, "t": 3}, {"x": 2, "y": 3, "t": 4}]]}, ServeConfig())
    assert len(ink) == 1 and ink[0].shape == (2, 3)


def test_serve_config_validates():
    with pytest.raises(ValueError, match="max_body"):
        ServeConfig(max_body=0)


def test_glyphs():
    assert glyph("\\sum") == "∑" and glyph("x") == "x" and glyph("\\unknowncommand") is None
    with pytest.raises(TypeError):
        glyph(3)
