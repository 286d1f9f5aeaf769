"""``strokes serve``: the drawing page and a JSON API over :func:`strokes.recognize`.

Routes:

* ``GET /``: the drawing page (``strokes/web/``; no external assets).
* ``GET /static/<file>``: its script and style sheet, from that directory only.
* ``POST /api/classify[?k=5]``: ink in, the top-k symbols out.
  The body is detexify's shape, ``{"strokes": [[{"x": .., "y": .., "t": ..}, ..], ..]}``,
  or a bare list of strokes of ``[x, y]`` / ``[x, y, t]`` points (also under
  ``"strokes"``). The answer is ``{"results": [{"symbol": "\\\\alpha",
  "score": 0.93, "unicode": "α"}, ..]}``, best first.
* ``GET /api/symbols``: the model's vocabulary, with Unicode previews.
* ``GET /healthz``: liveness and the model's name.

Every error is JSON, ``{"error": "what is wrong"}``: 400 for malformed JSON,
wrong shapes, non-finite numbers, empty ink, a bad ``k``, or more points or
strokes than configured; 413 for a body over ``max_body`` bytes; 404 and 405
for unknown paths and wrong methods. A bad request never reaches the model.
An ink the model itself refuses (a ``ValueError``) gets a 400 of its own; any
other failure inside the server a logged 500. Either way the other inks of
its micro-batch still get their answers, and the server, and the client's
keep-alive connection, carry on.

An answer given before the whole body has been read (a 413, a bad ``k``, a 404
or 405) is sent only after the rest of the body has been read and thrown away,
up to ``max_drain`` bytes and ``drain_seconds``: closing a socket with unread
bytes makes the kernel reset the connection, and the client would see
ECONNRESET instead of the answer (nginx's "lingering close" does the same).

Concurrency: requests are parsed and validated on the event loop, then queued
to one inference thread that takes whatever has queued up (up to
``max_batch`` inks) and classifies it in one vectorized
:meth:`~strokes.recognizer.Recognizer.probabilities` call, so throughput
grows with load instead of threads fighting over two cores.

Needs the ``serve`` extra: ``pip install -c constraints.txt -e '.[serve]'``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["ServeConfig", "create_app", "serve", "WEB_DIR"]

WEB_DIR = Path(__file__).resolve().parent / "web"


@dataclass(frozen=True)
class ServeConfig:
    """Limits and batching of the server."""

    max_body: int = 256 * 1024  #: bytes of request body; more gets 413
    max_points: int = 20_000  #: points per request; more gets 400
    max_strokes: int = 200  #: strokes per request; more gets 400
    max_k: int = 50  #: largest ?k= (and never more than the vocabulary)
    max_batch: int = 64  #: inks classified together by the inference thread
    #: bytes of a refused request's unread body read and discarded before the
    #: answer, so the client can read it; a longer body gets the answer and a close
    max_drain: int = 16 * 1024 * 1024
    drain_seconds: float = 5.0  #: and the time allowed for that

    def __post_init__(self):
        for name in ("max_body", "max_points", "max_strokes", "max_k", "max_batch", "max_drain"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        v = self.drain_seconds
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
            raise ValueError(f"drain_seconds must be a positive finite number, got {v!r}")


class BadRequest(ValueError):
    """A client error: the HTTP status and a message for the JSON answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _reject_constant(name: str):
    raise BadRequest(f"non-finite number {name} in the JSON; coordinates must be finite")


def parse_ink(payload, config: ServeConfig) -> list[np.ndarray]:
    """Validate a decoded request body into a list of ``(n, 2)`` or ``(n, 3)`` float64 strokes.

    Args:
        payload: the decoded JSON, ``{"strokes": STROKES}`` or ``STROKES``, where
            each stroke is a list of ``{"x", "y"[, "t"]}`` objects or
            ``[x, y(, t)]`` lists.
        config: the limits (points, strokes) to enforce.

    Raises:
        BadRequest: naming the stroke and point that are wrong.
    """
    from .ink import as_ink

    if isinstance(payload, dict):
        if "strokes" not in payload:
            raise BadRequest(f"the JSON object needs a 'strokes' key; got keys {sorted(payload)[:10]}")
        payload = payload["strokes"]
    if not isinstance(payload, list):
        raise BadRequest(f"strokes must be a JSON array of strokes, got {type(payload).__name__}")
    if not payload:
        raise BadRequest("the ink is empty: draw at least one stroke")
    if len(payload) > config.max_strokes:
        raise BadRequest(f"too many strokes: {len(payload)} > {config.max_strokes}")
    n_points = 0
    for i, stroke in enumerate(payload):
        if not isinstance(stroke, list):
            raise BadRequest(f"stroke {i} must be an array of points, got {type(stroke).__name__}")
        n_points += len(stroke)
    if n_points > config.max_points:
        raise BadRequest(f"too many points: {n_points} > {config.max_points}")
    try:
        return as_ink(payload, max_points=config.max_points)
    except (ValueError, TypeError) as exc:
        raise BadRequest(str(exc)) from None


def _parse_k(raw: str | None, n_classes: int, config: ServeConfig) -> int:
    if raw is None:
        return min(5, n_classes)
    try:
        k = int(raw)
    except ValueError:
        raise BadRequest(f"k must be an integer, got {raw!r}") from None
    top = min(config.max_k, n_classes)
    if not 1 <= k <= top:
        raise BadRequest(f"k must be between 1 and {top}, got {k}")
    return k


class _Batcher:
    """Queue inks from many requests; one thread classifies what has queued, in one batch."""

    def __init__(self, recognizer, max_batch: int):
        self.recognizer = recognizer
        self.max_batch = max_batch
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="strokes-infer")
        self.batches = 0
        self.inks = 0

    async def start(self):
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def stop(self):
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.pool.shutdown(wait=True)

    async def submit(self, ink) -> np.ndarray:
        if self.task is None or self.task.done():  # else the request would wait forever
            raise RuntimeError("the inference loop is not running")
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((ink, fut))
        return await fut

    def _probabilities(self, inks) -> np.ndarray:
        probs = self.recognizer.probabilities(inks)
        if len(probs) != len(inks):  # a row per ink, or the answers would go to the wrong clients
            raise RuntimeError(f"the recognizer returned {len(probs)} rows for {len(inks)} inks")
        return probs

    def _classify(self, inks):
        try:
            return self._probabilities(inks), None
        except Exception:  # isolate the ink that fails, so the others still get answers
            out, errors = [], []
            for ink in inks:
                try:
                    out.append(self._probabilities([ink])[0])
                    errors.append(None)
                except Exception as exc:  # noqa: BLE001 - reported to that one client
                    out.append(None)
                    errors.append(exc)
            return out, errors

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            while len(items) < self.max_batch and not self.queue.empty():
                items.append(self.queue.get_nowait())
            items = [(ink, fut) for ink, fut in items if not fut.cancelled()]  # clients that left
            if not items:
                continue
            try:
                probs, errors = await loop.run_in_executor(self.pool, self._classify, [ink for ink, _ in items])
            except Exception as exc:  # noqa: BLE001 - never let the loop die
                probs, errors = [None] * len(items), [exc] * len(items)
            self.batches += 1
            self.inks += len(items)
            for j, (_, fut) in enumerate(items):
                if fut.done():
                    continue
                err = errors[j] if errors is not None else None
                if err is None:
                    fut.set_result(probs[j])
                elif isinstance(err, StopIteration):
                    # a future refuses StopIteration (TypeError), which would end this loop
                    # and leave every later request waiting forever
                    fut.set_exception(RuntimeError(f"inference failed: {err!r}"))
                else:
                    fut.set_exception(err)


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class _DrainUnreadBody:
    """ASGI middleware: before an answer goes out, read and discard what the app left of the request body.

    An answer given before the body is read (a 413 on the declared length, a bad
    ``k``, a 404 or 405) is followed by a close when the client asked for one
    (``Connection: close``, which urllib always sends). Closing a socket with
    unread bytes in it makes the kernel answer with a TCP reset, which can
    destroy the answer on its way: the client gets ECONNRESET or EPIPE instead
    of the 413. Like nginx's lingering close, the rest of the body is read
    first, chunk by chunk as the server hands it over, and dropped (memory stays
    at one chunk), up to ``limit`` bytes and ``seconds`` seconds. A body beyond
    those stays unread, and the answer says ``Connection: close``.
    """

    def __init__(self, app, *, limit: int, seconds: float):
        self.app = app
        self.limit = limit
        self.seconds = seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        try:
            length = int(declared) if declared is not None else None
        except ValueError:  # the HTTP server refuses such requests before they get here
            length = None
        chunked = _header(scope, b"transfer-encoding") is not None
        state = {"read_all": not chunked and not length, "asked": False}

        async def tracked_receive():
            state["asked"] = True
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                state["read_all"] = True
            return message

        async def draining_send(message):
            if message["type"] == "http.response.start" and not state["read_all"]:
                if not await self._drain(scope, receive, length, state["asked"]):
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
                state["read_all"] = True
            await send(message)

        await self.app(scope, tracked_receive, draining_send)

    async def _drain(self, scope, receive, length: int | None, asked: bool) -> bool:
        """Read and drop the rest of the body; True when all of it was read."""
        expect = (_header(scope, b"expect") or b"").lower()
        if expect == b"100-continue" and not asked:
            # the client sends the body only after "100 Continue", which the first
            # receive() would send: asking for the body now invites the upload being
            # refused; unsent, it leaves nothing behind to reset the connection with
            return False
        if length is not None and length > self.limit:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        drained = 0
        while drained <= self.limit:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                message = await asyncio.wait_for(receive(), remaining)
            except asyncio.TimeoutError:
                log.info("gave up draining a slow request body after %.1f s", self.seconds)
                return False
            if message["type"] != "http.request":
                return True  # the client left: nothing more to read
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return False


class _JSONServerErrors:
    """ASGI middleware: an exception in a handler becomes a logged ``{"error": ...}`` 500.

    Starlette's own last-resort handler answers, then re-raises, and the HTTP
    server then logs the traceback a second time and drops the client's
    keep-alive connection. Here the exception is logged once and answered, and
    the connection stays usable. An exception after the answer has started
    cannot be answered; it is re-raised so that the server cuts the truncated
    answer off.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            body = json.dumps({"error": "internal error; the server logged it"}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": body})


def create_app(recognizer=None, *, model=None, device: str = "cpu", config: ServeConfig | None = None):
    """The Starlette application: the drawing page and the JSON API.

    Args:
        recognizer: a :class:`strokes.recognizer.Recognizer` to classify with.
        model: or a checkpoint path to load one from (default: the shipped model).
        device: where to run the model.
        config: limits and batching (default: :class:`ServeConfig` defaults).
    """
    try:
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.middleware import Middleware
        from starlette.requests import ClientDisconnect, Request
        from starlette.responses import FileResponse, JSONResponse
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "strokes serve needs the 'serve' extra: pip install -c constraints.txt -e '.[serve]'"
        ) from exc
    import contextlib

    from .glyphs import glyph
    from .recognizer import get_recognizer

    config = config or ServeConfig()
    if recognizer is None:
        recognizer = get_recognizer(model, device=device)
    vocab = [str(v) for v in recognizer.classes]
    symbols = [{"symbol": s, "unicode": glyph(s)} for s in vocab]
    model_name = recognizer.loaded.name
    batcher = _Batcher(recognizer, config.max_batch)

    def error(message: str, status: int) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def index(request: Request):
        return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8")

    async def healthz(request: Request):
        return JSONResponse({"status": "ok", "model": model_name, "classes": len(vocab), "batches": batcher.batches, "inks": batcher.inks})

    async def api_symbols(request: Request):
        return JSONResponse({"symbols": symbols, "model": model_name})

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise BadRequest("invalid Content-Length header") from None
            if length > config.max_body:
                raise BadRequest(f"request body of {length} bytes is over the limit of {config.max_body}", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_body:
                raise BadRequest(f"request body is over the limit of {config.max_body} bytes", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def classify(request: Request):
        try:
            k = _parse_k(request.query_params.get("k"), len(vocab), config)
            body = await read_body(request)
            if not body.strip():
                raise BadRequest("empty request body; send JSON like {\"strokes\": [[{\"x\": 1, \"y\": 2}, ...]]}")
            try:
                payload = json.loads(body, parse_constant=_reject_constant)
            except UnicodeDecodeError:
                raise BadRequest("the request body is not UTF-8 text") from None
            except json.JSONDecodeError as exc:
                raise BadRequest(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
            except RecursionError:
                raise BadRequest("the JSON is nested too deeply") from None
            ink = parse_ink(payload, config)
        except BadRequest as exc:
            return error(str(exc), exc.status)
        except ClientDisconnect:
            return error("client disconnected", 400)
        try:
            prob = await batcher.submit(ink)
        except (ValueError, TypeError) as exc:  # the pipeline refused this ink
            return error(f"could not classify this ink: {exc}", 400)
        top = np.argsort(-prob, kind="stable")[:k]
        results = [{"symbol": vocab[j], "score": float(prob[j]), "unicode": symbols[j]["unicode"]} for j in top]
        return JSONResponse({"results": results})

    async def http_error(request: Request, exc: HTTPException):
        messages = {404: f"no such path: {request.url.path}", 405: f"method {request.method} is not allowed on {request.url.path}"}
        headers = getattr(exc, "headers", None)
        return JSONResponse({"error": messages.get(exc.status_code, exc.detail)}, status_code=exc.status_code, headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        log.info("serving %s (%d classes)", model_name, len(vocab))
        yield
        await batcher.stop()

    routes = [
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/api/symbols", api_symbols, methods=["GET", "HEAD"]),
        Route("/api/classify", classify, methods=["POST"]),
        Mount("/static", StaticFiles(directory=WEB_DIR), name="static"),
    ]
    middleware = [
        # outermost first: a 500 answer, too, goes out only after the body is read
        Middleware(_DrainUnreadBody, limit=config.max_drain, seconds=config.drain_seconds),
        Middleware(_JSONServerErrors),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.config = config
    return app


def serve(host: str = "127.0.0.1", port: int = 8000, *, model=None, device: str = "cpu", config: ServeConfig | None = None, log_level: str = "info") -> None:
    """Run the server until interrupted (binds to loopback unless ``host`` says otherwise)."""
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover
        raise ImportError("strokes serve needs the 'serve' extra: pip install -c constraints.txt -e '.[serve]'") from exc
    app = create_app(model=model, device=device, config=config)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding to %s: the server is reachable from other machines", host)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
