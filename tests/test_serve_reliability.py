"""``strokes serve`` under abuse and failure: oversized bodies, inference that raises, fuzzed JSON (issue 18).

Real servers on 127.0.0.1 only: a ``strokes serve`` process where the test only
talks HTTP, and uvicorn in a thread of this process (``running_app``) where the
test needs to reach inside (a recognizer that fails on purpose, the batcher's
queue).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import re
import shutil
import subprocess
import threading
import time
import tracemalloc
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from conftest import need  # noqa: E402
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from serving import request, running_app, running_server  # noqa: E402
from strategies import json_request_bodies  # noqa: E402

from strokes.server import ServeConfig, _DrainUnreadBody, create_app  # noqa: E402
from strokes.synthetic import WriterStyle, generate_ink  # noqa: E402

BIG = b"[" * (3 * 1024 * 1024)  # 3 MiB, over the default 256 KiB limit, under the 16 MiB drain cap
POSTS = 500
POISON = 4242.0  # an ink whose first x is this makes the GatedRecognizer below fail


@pytest.fixture(scope="module")
def server():
    with running_server() as (host, port, proc):
        yield host, port, proc


@pytest.fixture(scope="module")
def recognizer():
    from strokes.recognizer import get_recognizer

    return get_recognizer(None)


def good_inks(n: int, seed: int = 0) -> list[list]:
    rng = np.random.default_rng(seed)
    symbols = ["\\alpha", "+", "x", "\\sum", "2", "\\int", "y", "-"]
    return [[s.tolist() for s in generate_ink(symbols[i % len(symbols)], rng, WriterStyle())] for i in range(n)]


def expected_top(recognizer, ink, k: int = 5) -> tuple[list[str], np.ndarray]:
    prob = recognizer.probabilities([[np.asarray(s, dtype=np.float64) for s in ink]])[0]
    top = np.argsort(-prob, kind="stable")[:k]
    return [str(recognizer.classes[j]) for j in top], prob[top]


# ------------------------------------------------------------ 1. 413 without a reset
def _urllib_post(opener, url: str, body: bytes, headers=None):
    """POST with urllib (which always sends Connection: close); the status, or the error text instead."""
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:  # URLError around ECONNRESET / EPIPE: the answer was lost
        return repr(exc), b""


def _tally(outcomes) -> dict:
    counts: dict = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def test_oversized_posts_get_413_not_a_reset_from_urllib(server):
    """500 back-to-back 3 MiB posts from urllib all read the 413 JSON; none gets a reset or broken pipe."""
    host, port, proc = server
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, whatever http_proxy says
    url = f"http://{host}:{port}/api/classify"
    outcomes = []
    for _ in range(POSTS):
        status, data = _urllib_post(opener, url, BIG)
        ok_json = status == 413 and "limit" in json.loads(data).get("error", "")
        outcomes.append(status if ok_json or status != 413 else "413 without the JSON")
    assert _tally(outcomes) == {413: POSTS}
    assert proc.poll() is None and request(host, port, "GET", "/healthz")[0] == 200


def _curl(tmp_path, url: str, n: int, *options: str) -> list[str]:
    """``n`` posts of BIG in one curl process (URL globbing); one ``status bytes-uploaded`` line each."""
    curl = shutil.which("curl")
    need(curl is not None, "curl is not installed")
    body = tmp_path / "big.json"
    body.write_bytes(BIG)
    cmd = [curl, "-sS", "--noproxy", "*", "--max-time", "30", "--data-binary", f"@{body}", "-H", "Content-Type: application/json",
           *options, "-w", r"\n@@ %{http_code} %{size_upload}\n", f"{url}?n=[1-{n}]"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    lines = [line[3:] for line in out.stdout.splitlines() if line.startswith("@@ ")]
    assert len(lines) == n, (out.returncode, out.stderr[-2000:])
    return lines


def test_oversized_posts_get_413_not_a_reset_from_curl(server, tmp_path):
    """500 3 MiB posts from curl on closing connections, sent whole (no Expect), all get the 413."""
    host, port, proc = server
    lines = _curl(tmp_path, f"http://{host}:{port}/api/classify", POSTS, "-H", "Expect:", "-H", "Connection: close")
    assert _tally(line.split()[0] for line in lines) == {"413": POSTS}
    assert proc.poll() is None


def test_curl_expecting_100_continue_is_refused_before_it_uploads(server, tmp_path):
    """curl's default Expect: 100-continue gets the 413 without being asked for the body: nothing is uploaded."""
    host, port, _ = server
    lines = _curl(tmp_path, f"http://{host}:{port}/api/classify", 20)
    assert _tally(lines) == {"413 0": 20}


@pytest.mark.parametrize(
    "path, status",
    [("/api/classify?k=abc", 400), ("/api/classify?k=0", 400), ("/nope", 404), ("/", 405), ("/api/symbols", 405)],
)
def test_other_answers_before_the_body_get_through_too(server, path, status):
    """A 400 for a bad k, a 404 and a 405, given before the body is read, also reach a closing client."""
    host, port, _ = server
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    outcomes = [_urllib_post(opener, f"http://{host}:{port}{path}", BIG)[0] for _ in range(100)]
    assert _tally(outcomes) == {status: 100}


def _raw_post(host, port, declared: int, sent: bytes, timeout=10):
    """Headers claiming ``declared`` bytes, then only ``sent``; the answer read while the rest never comes."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.putrequest("POST", "/api/classify")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(declared))
    conn.endheaders()
    if sent:
        conn.send(sent)
    t0 = time.monotonic()
    resp = conn.getresponse()
    out = resp.status, resp.getheader("Connection"), json.loads(resp.read()), time.monotonic() - t0
    conn.close()
    return out


def test_drain_is_capped_in_bytes_and_time(recognizer):
    """Past max_drain the 413 comes at once with Connection: close; a stalled body is given up after drain_seconds."""
    config = ServeConfig(max_body=1000, max_drain=100_000, drain_seconds=1.0)
    with running_app(create_app(recognizer, config=config)) as (host, port):
        status, connection, out, seconds = _raw_post(host, port, 10_000_000, b"")  # past the cap: not waited for
        assert status == 413 and connection == "close" and "limit" in out["error"] and seconds < 0.9
        status, connection, out, seconds = _raw_post(host, port, 50_000, b"[" * 2000)  # under the cap, then silence
        assert status == 413 and connection == "close" and 0.9 < seconds < 10
        assert request(host, port, "GET", "/healthz")[0] == 200


@pytest.mark.parametrize("bad", [{"max_drain": 0}, {"max_drain": 1.5}, {"drain_seconds": 0}, {"drain_seconds": float("nan")},
                                 {"drain_seconds": float("inf")}, {"drain_seconds": True}])  # fmt: skip
def test_drain_limits_are_validated(bad):
    """max_drain must be a positive int and drain_seconds a positive finite number."""
    with pytest.raises(ValueError, match=next(iter(bad))):
        ServeConfig(**bad)


def test_drain_discards_the_body_instead_of_keeping_it():
    """The drain reads a 12.8 MB body chunk by chunk with at most a few chunks alive (tracemalloc peak < 1 MB)."""
    chunks, size = 200, 64 * 1024
    received, sent = [], []

    async def refuse_at_once(scope, receive, send):  # like the 413 on the declared length
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": bytes(size), "more_body": len(received) < chunks}

    async def send(message):
        sent.append((message["type"], len(received)))

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", str(chunks * size).encode())]}
    app = _DrainUnreadBody(refuse_at_once, limit=64 * 1024 * 1024, seconds=30)
    tracemalloc.start()
    try:
        asyncio.run(app(scope, receive, send))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sent[0] == ("http.response.start", chunks)  # the answer went out after the last chunk was read
    assert peak < 1024 * 1024, peak


# ------------------------------------------------------------ 2. failures inside the server
class GatedRecognizer:
    """The real recognizer behind a gate that the test opens; records batch sizes; fails on POISON inks.

    ``failure`` is an exception to raise, or ``"short"`` for one row too few,
    whenever a batch holds an ink whose first x is POISON.
    """

    def __init__(self, real, failure=None, open_gate=True):
        self.real = real
        self.failure = failure
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []
        if open_gate:
            self.gate.set()

    def __getattr__(self, name):  # classes, loaded, ...: the real recognizer's
        return getattr(self.real, name)

    def probabilities(self, inks):
        self.batches.append(len(inks))
        self.entered.set()
        if not self.gate.wait(30):
            raise RuntimeError("the test never opened the gate")
        poisoned = any(float(ink[0][0, 0]) == POISON for ink in inks)
        if poisoned and self.failure == "short":
            return self.real.probabilities(inks)[:-1]
        if poisoned and self.failure is not None:
            raise self.failure
        return self.real.probabilities(inks)


POISONED = [[[POISON, 0.0], [10.0, 10.0], [20.0, 0.0]]]


@pytest.mark.parametrize(
    "failure, bad_status",
    [(ValueError("injected: this ink cannot be classified"), 400), (RuntimeError("injected failure"), 500)],
    ids=["model-refuses-the-ink", "model-crashes"],
)
def test_one_failing_ink_does_not_sink_its_batch(recognizer, failure, bad_status):
    """Seven requests queued into one micro-batch: the ink that breaks inference gets its own error, the six others 200 and the right answers."""
    gated = GatedRecognizer(recognizer, failure, open_gate=False)
    app = create_app(gated)
    inks = good_inks(7)
    batch = inks[1:4] + [POISONED] + inks[4:7]  # the bad ink in the middle of the batch
    answers: dict[int, tuple] = {}

    def post(i, ink):
        try:
            answers[i] = request(host, port, "POST", "/api/classify?k=5", ink, timeout=60)
        except Exception as exc:  # noqa: BLE001 - a dropped connection is an answer to check too
            answers[i] = (repr(exc), None)

    with running_app(app) as (host, port):
        plug = threading.Thread(target=post, args=(-1, inks[0]))
        plug.start()
        assert gated.entered.wait(30)  # the inference thread is held on the plug: the next requests queue up
        threads = [threading.Thread(target=post, args=(i, ink)) for i, ink in enumerate(batch)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while app.state.batcher.queue.qsize() < len(batch) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.state.batcher.queue.qsize() == len(batch)
        gated.gate.set()
        for t in [plug, *threads]:
            t.join(60)
        assert request(host, port, "GET", "/healthz")[0] == 200

    # the plug alone, then all seven in one batch, which failed; then each of them alone
    assert gated.batches == [1, len(batch)] + [1] * len(batch)
    status, out = answers[3]
    assert status == bad_status and set(out) == {"error"}, (status, out)
    for i, ink in enumerate(batch):
        if i == 3:
            continue
        status, out = answers[i]
        assert status == 200, (i, status, out)
        symbols, scores = expected_top(recognizer, ink)
        assert [r["symbol"] for r in out["results"]] == symbols
        np.testing.assert_allclose([r["score"] for r in out["results"]], scores, atol=1e-5)


@pytest.mark.parametrize(
    "failure, status",
    [(RuntimeError("injected failure"), 500), (StopIteration(), 500), ("short", 500), (ValueError("refused"), 400), (ZeroDivisionError(), 500)],
    ids=["RuntimeError", "StopIteration", "one-row-short", "ValueError", "ZeroDivisionError"],
)
def test_server_errors_are_json_and_the_server_carries_on(recognizer, caplog, failure, status):
    """Inference that raises (anything) or returns too few rows: a JSON error, logged once, and the same connection serves the next request."""
    app = create_app(GatedRecognizer(recognizer, failure))
    good = good_inks(1)[0]
    caplog.set_level(logging.ERROR, logger="strokes.server")
    with running_app(app) as (host, port):
        conn = http.client.HTTPConnection(host, port, timeout=15)
        for _ in range(3):
            got, out = request(host, port, "POST", "/api/classify", POISONED, conn=conn)
            assert got == status and set(out) == {"error"}, (got, out)
            assert request(host, port, "POST", "/api/classify", good, conn=conn)[0] == 200
        conn.close()
        assert request(host, port, "GET", "/healthz")[0] == 200
    logged = [r for r in caplog.records if r.name == "strokes.server" and r.levelno >= logging.ERROR]
    assert len(logged) == (3 if status == 500 else 0)
    assert all(r.exc_info for r in logged)


# ------------------------------------------------------------ 3. fuzzing
FUZZ_MAX_BODY = 20_000


@pytest.fixture(scope="module")
def small_server():
    args = ("--max-body", str(FUZZ_MAX_BODY), "--max-points", "300", "--max-strokes", "20")
    with running_server(*args) as (host, port, proc):
        yield host, port, proc


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # each example is an HTTP round trip
@given(body=json_request_bodies(oversize=FUZZ_MAX_BODY))
def test_fuzzed_json_gets_200_400_or_413(small_server, body):
    """Any body, valid ink or one thing off it, nested, truncated or oversized: 200, 400 or 413 with JSON, never 500 or a drop."""
    host, port, proc = small_server
    status, out = request(host, port, "POST", "/api/classify?k=3", body, timeout=30)
    event(f"status {status}")  # --hypothesis-show-statistics: how many bodies got how far
    assert status in (200, 400, 413), (status, out, body[:300])
    assert isinstance(out, dict), out
    if status == 200:
        assert len(out["results"]) == 3 and all(np.isfinite(r["score"]) for r in out["results"])
    else:
        assert set(out) == {"error"} and out["error"]


def test_server_is_up_after_the_fuzzing(small_server):
    """After the fuzzed bodies, the process is alive and /healthz and a real classification still answer."""
    host, port, proc = small_server
    assert proc.poll() is None
    assert request(host, port, "GET", "/healthz")[0] == 200
    assert request(host, port, "POST", "/api/classify", good_inks(1)[0])[0] == 200
    assert not re.search(r"Traceback|Exception in ASGI", _drain_output(proc)), "the server logged an error"


def _drain_output(proc) -> str:
    """What the server process printed so far, without blocking (its stdout is a pipe)."""
    import os
    import selectors

    out = []
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        for _ in range(1000):  # bounded: the pipe holds at most 64 KiB
            if not sel.select(timeout=0.1):
                break
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            out.append(data.decode(errors="replace"))
    return "".join(out)
