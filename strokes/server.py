"""``strokes serve``: the drawing page and a JSON API over :func:`strokes.recognize`.

Routes:

* ``GET /``: the drawing page (``strokes/web/``; no external assets), with a
  "Not in the list? Teach it" form.
* ``GET /symbols``: every symbol the server knows, built-in and taught, with
  previews, package and mode (plain HTML, no script).
* ``GET /static/<file>``: the page's scripts and style sheet, from that directory only.
* ``POST /api/classify[?k=5]``: ink in, the top-k symbols out.
  The body is detexify's shape, ``{"strokes": [[{"x": .., "y": .., "t": ..}, ..], ..]}``,
  or a bare list of strokes of ``[x, y]`` / ``[x, y, t]`` points (also under
  ``"strokes"``). The answer is ``{"results": [{"symbol": "\\\\alpha",
  "score": 0.93, "unicode": "α", "package": null, "mode": "math", "taught": false}, ..]}``,
  best first; ``package`` and ``mode`` come from :func:`strokes.glyphs.symbol_info`
  (``"note"`` is added where it has one), ``taught`` says that the user-symbol
  store holds drawings of the symbol. Taught and built-in symbols are ranked
  together (see :mod:`strokes.teach`).
* ``POST /api/teach``: ``{"label": "\\\\heartsuit", "drawings": [INK, ..]}``, each
  ``INK`` in a shape ``/api/classify`` accepts, stores the drawings as examples
  of ``label`` (:func:`strokes.teach.teach`), in a thread off the event loop; the
  next ``/api/classify`` ranks it. The answer is ``{"label": .., "stored": 3,
  "total": 3, "unicode": .., "package": .., "mode": ..}`` (``total``: drawings
  of that label in the store now). Limits: the body, points and strokes limits
  of ``/api/classify`` (per drawing, and never more than
  ``strokes.io.user_symbols.MAX_POINTS_PER_INK`` points), a label of at most
  ``MAX_LABEL_CHARS`` characters, 1 to ``MAX_INKS_PER_CALL`` drawings per
  request. 403 when the server has no store (``--user-symbols none``).
* ``POST /api/collect`` (only with ``collect=True``, ``strokes serve --collect``):
  ``{"label": "\\\\alpha", "drawing": INK}`` stores one drawing under a symbol the
  server knows (built-in or taught), the way detexify collects the symbol a
  user picked; answered like ``/api/teach``. Off by default: then it answers
  403 and the page does not post.
* ``GET /api/symbols``: ``{"symbols": [{"symbol", "unicode", "package", "mode",
  "builtin", "taught", "drawings"}, ..], "model": ..}``: the model's
  vocabulary, then the labels only the store knows (sorted); ``drawings`` is
  how many drawings of it the store holds.
* ``GET /healthz``: liveness, the model's name, whether teaching and
  collecting are on (``"teach"``, ``"collect"``), and the teaching limits
  (``"max_label_chars"``, ``"max_drawings"``).

Every error is JSON, ``{"error": "what is wrong"}``: 400 for malformed JSON,
wrong shapes, non-finite numbers, empty ink, a bad ``k``, a bad label, too
many drawings, or more points or strokes than configured; 413 for a body over
``max_body`` bytes; 415 for a teach or collect body that is not sent as
``Content-Type: application/json`` (a page of another web site cannot send
that without a CORS preflight, which this server never grants, so it cannot
write to the store); 403 for teaching or collecting when they are off; 404 and
405 for unknown paths and wrong methods; 503 when the user-symbol store is
locked or unreachable. A bad request never reaches the model or the store.
An ink the model itself refuses (a ``ValueError``) gets a 400 of its own; any
other failure inside the server a logged 500. Either way the other inks of
its micro-batch still get their answers, and the server, and the client's
keep-alive connection, carry on. A store that cannot be read (damaged, or its
server down) is logged, and classification carries on with the built-in
symbols.

An answer given before the whole body has been read (a 413, a bad ``k``, a 404
or 405) is sent only after the rest of the body has been read and thrown away,
up to ``max_drain`` bytes and ``drain_seconds``: closing a socket with unread
bytes makes the kernel reset the connection, and the client would see
ECONNRESET instead of the answer (nginx's "lingering close" does the same).

Concurrency: requests are parsed and validated on the event loop, then queued
to one inference thread that takes whatever has queued up (up to
``max_batch`` inks) and classifies it in one vectorized call (with the
taught symbols of the store, when there is one), so throughput grows with
load instead of threads fighting over two cores. Teaching, collecting and
listing the store's symbols run on a separate small thread pool.

Needs the ``serve`` extra: ``pip install -c constraints.txt -e '.[serve]'``.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
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


def _check_label(value) -> str:
    from .io.user_symbols import check_label

    try:
        return check_label(value)
    except (ValueError, TypeError) as exc:
        raise BadRequest(str(exc)) from None


def _check_keys(payload, required: tuple[str, ...], example: str) -> None:
    if not isinstance(payload, dict):
        raise BadRequest(f"send a JSON object like {example}, not {type(payload).__name__}")
    unknown = sorted(set(payload) - set(required))
    if unknown:
        raise BadRequest(f"unknown key(s) {unknown[:10]}; expected {list(required)}")
    missing = [k for k in required if k not in payload]
    if missing:
        raise BadRequest(f"missing key(s) {missing}; send a JSON object like {example}")


def _drawing_config(config: ServeConfig) -> ServeConfig:
    """The limits of one taught drawing: the server's, and never over the library's ``MAX_POINTS_PER_INK``."""
    from .io.user_symbols import MAX_POINTS_PER_INK

    return replace(config, max_points=min(config.max_points, MAX_POINTS_PER_INK))


def parse_teach(payload, config: ServeConfig) -> tuple[str, list[list[np.ndarray]]]:
    """Validate a ``POST /api/teach`` body into ``(label, drawings)``.

    Args:
        payload: the decoded JSON, ``{"label": LABEL, "drawings": [INK, ...]}``, each
            ``INK`` in a shape :func:`parse_ink` accepts.
        config: the limits; each drawing gets the point and stroke limits of one
            classify request (points never more than ``MAX_POINTS_PER_INK``).

    Raises:
        BadRequest: for a bad label (empty, over ``MAX_LABEL_CHARS``, control
            characters), no drawings, more than ``MAX_INKS_PER_CALL``, or a bad
            drawing (naming which).
    """
    from .io.user_symbols import MAX_INKS_PER_CALL

    example = '{"label": "\\\\heartsuit", "drawings": [[[[x, y], ...], ...], ...]}'
    _check_keys(payload, ("label", "drawings"), example)
    label = _check_label(payload["label"])
    drawings = payload["drawings"]
    if not isinstance(drawings, list):
        raise BadRequest(f"drawings must be a JSON array of drawings, got {type(drawings).__name__}")
    if not drawings:
        raise BadRequest("drawings is empty: send at least one drawing of the symbol")
    if len(drawings) > MAX_INKS_PER_CALL:
        raise BadRequest(f"{len(drawings)} drawings, more than the limit of {MAX_INKS_PER_CALL} per request; teach them in parts")
    limits = _drawing_config(config)
    inks = []
    for i, drawing in enumerate(drawings):
        try:
            inks.append(parse_ink(drawing, limits))
        except BadRequest as exc:
            hint = ""
            if i == 0:
                try:
                    parse_ink(drawings, limits)
                    hint = "; it looks like one drawing: send a list of drawings, [INK]"
                except BadRequest:
                    pass
            raise BadRequest(f"drawing {i}: {exc}{hint}") from None
    return label, inks


def parse_collect(payload, config: ServeConfig) -> tuple[str, list[np.ndarray]]:
    """Validate a ``POST /api/collect`` body, ``{"label": LABEL, "drawing": INK}``, into ``(label, ink)``.

    Raises:
        BadRequest: for a bad label or a bad drawing.
    """
    _check_keys(payload, ("label", "drawing"), '{"label": "\\\\alpha", "drawing": [[[x, y], ...], ...]}')
    label = _check_label(payload["label"])
    return label, parse_ink(payload["drawing"], _drawing_config(config))


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


class _View:
    """The labels of one way of ranking (built-in only, or with a store's taught rows)."""

    def __init__(self, labels, taught=None):
        self.labels = [str(x) for x in labels]
        self.taught = np.zeros(len(self.labels), bool) if taught is None else taught


class _Batcher:
    """Queue inks from many requests; one thread classifies what has queued, in one batch.

    With a user-symbol ``store``, each batch is ranked with its taught symbols
    (:func:`strokes.teach.taught_head`, which asks the store whether it changed
    and re-reads only then), so a drawing taught a moment ago counts from the
    next batch on. A store that cannot be read is logged, and the batch is
    ranked with the built-in symbols.
    """

    def __init__(self, recognizer, max_batch: int, store=None):
        self.recognizer = recognizer
        self.max_batch = max_batch
        self.store = store
        self.builtin = _View(recognizer.classes)
        self._last: tuple = (None, self.builtin)  # (head, its view)
        self._store_error: str | None = None
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

    async def submit(self, ink) -> tuple[np.ndarray, _View]:
        """The probabilities of ``ink`` and the labels they are of."""
        if self.task is None or self.task.done():  # else the request would wait forever
            raise RuntimeError("the inference loop is not running")
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((ink, fut))
        return await fut

    def _head(self):
        """The taught head of the store now, or None (no store, an empty or unreadable one)."""
        if self.store is None:
            return None
        from .teach import taught_head

        try:
            head = taught_head(self.recognizer, self.store) if self.store.exists() else None
        except Exception as exc:  # noqa: BLE001 - a broken store must not stop classification
            msg = f"{type(exc).__name__}: {exc}"
            if msg != self._store_error:  # once per distinct failure, not once per batch
                log.warning("user symbols %s cannot be read; ranking built-in symbols only: %s", self.store.location, msg)
            self._store_error = msg
            return None
        if self._store_error is not None:
            log.warning("user symbols %s readable again", self.store.location)
            self._store_error = None
        return head

    def _view(self, head) -> _View:
        if head is None:
            return self.builtin
        last_head, view = self._last
        if last_head is not head:
            taught = np.zeros(len(head.labels), bool)
            taught[head.rows] = True
            view = _View(head.labels, taught)
            self._last = (head, view)
        return view

    def _probabilities(self, inks, head) -> np.ndarray:
        if head is None:
            probs = self.recognizer.probabilities(inks)
        else:
            probs = head.probabilities(*self.recognizer.logits_and_features(inks))
        if len(probs) != len(inks):  # a row per ink, or the answers would go to the wrong clients
            raise RuntimeError(f"the recognizer returned {len(probs)} rows for {len(inks)} inks")
        return probs

    def _classify(self, inks):
        head = self._head()  # one state of the store for the whole batch
        view = self._view(head)
        try:
            return self._probabilities(inks, head), None, view
        except Exception:  # isolate the ink that fails, so the others still get answers
            out, errors = [], []
            for ink in inks:
                try:
                    out.append(self._probabilities([ink], head)[0])
                    errors.append(None)
                except Exception as exc:  # noqa: BLE001 - reported to that one client
                    out.append(None)
                    errors.append(exc)
            return out, errors, view

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
                probs, errors, view = await loop.run_in_executor(self.pool, self._classify, [ink for ink, _ in items])
            except Exception as exc:  # noqa: BLE001 - never let the loop die
                probs, errors, view = [None] * len(items), [exc] * len(items), None
            self.batches += 1
            self.inks += len(items)
            for j, (_, fut) in enumerate(items):
                if fut.done():
                    continue
                err = errors[j] if errors is not None else None
                if err is None:
                    fut.set_result((probs[j], view))
                elif isinstance(err, StopIteration):
                    # a future refuses StopIteration (TypeError), which would end this loop
                    # and leave every later request waiting forever
                    fut.set_exception(RuntimeError(f"inference failed: {err!r}"))
                else:
                    fut.set_exception(err)


class _TaughtIndex:
    """The labels a user-symbol store holds, and how many drawings of each (for ``/api/symbols``).

    Reads only the rows added since the last call (all of them again when rows
    were removed); asks the store for its ``(row count, largest id)`` first, so
    an unchanged store costs one small query. Thread-safe.
    """

    def __init__(self, store):
        self.store = store
        self.lock = threading.Lock()
        self.state: tuple[int, int] = (0, 0)  # (rows read, largest id read)
        self.counts: dict[str, int] = {}

    def counts_now(self) -> dict[str, int]:
        """``{label: drawings}``, up to date with the store."""
        from .io.detexify import key_to_label

        if not self.store.exists():
            return {}
        state = self.store.state(fresh=True)
        with self.lock:
            if state != self.state:
                rows = self.store.rows(after_id=self.state[1])
                counts, n = self.counts, self.state[0]
                if state[0] != n + len(rows):  # rows were removed (or written meanwhile): read all again
                    rows = self.store.rows(after_id=0)
                    counts, n = {}, 0
                counts = dict(counts)
                for _, key, _ in rows:
                    label = key_to_label(key or "")
                    if label:
                        counts[label] = counts.get(label, 0) + 1
                last = max([self.state[1] if n else 0, *(int(r[0]) for r in rows)])
                self.counts, self.state = counts, (n + len(rows), last)
            return dict(self.counts)


@functools.lru_cache(maxsize=8192)
def _describe(label: str) -> dict:
    """``unicode``, ``package``, ``mode`` (and ``note``) of a label, for the JSON answers."""
    from .glyphs import glyph, symbol_info

    return {"unicode": glyph(label), **symbol_info(label).as_dict()}


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


_MODE_TEXT = {"math": "math mode", "text": "text mode", "both": "math and text mode"}


def _symbols_html(entries: list[dict], model_name: str) -> str:
    """The ``GET /symbols`` page: a card per symbol (every string escaped; no script)."""
    esc = html.escape

    def card(e: dict) -> str:
        sym = e["symbol"]
        preview = f'<span class="glyph" aria-hidden="true">{esc(e["unicode"])}</span>' if e["unicode"] else '<span class="glyph none" aria-hidden="true">–</span>'
        package = f'<span class="pkg">\\usepackage{{{esc(e["package"])}}}</span>' if e["package"] else '<span class="pkg none">no package</span>'
        parts = [preview, f"<code>{esc(sym)}</code>", package, f'<span class="mode">{esc(_MODE_TEXT.get(e["mode"], e["mode"]))}</span>']
        if e.get("note"):
            parts.append(f'<span class="note">{esc(e["note"])}</span>')
        if e["taught"]:
            n = e["drawings"]
            parts.append(f'<span class="badge">{"taught" if not e["builtin"] else "built-in, and taught"} · {n} drawing{"s" if n != 1 else ""}</span>')
        return f'<li class="symbol-card {"builtin" if e["builtin"] else "taught"}" data-symbol="{esc(sym)}">{"".join(parts)}</li>'

    builtin = [e for e in entries if e["builtin"]]
    taught = [e for e in entries if not e["builtin"]]
    sections = []
    if taught:
        sections.append(f'<h2>Taught on this server</h2>\n    <ul class="symbol-grid" id="taught-symbols">{"".join(map(card, taught))}</ul>')
    sections.append(f'<h2>Built-in</h2>\n    <ul class="symbol-grid" id="builtin-symbols">{"".join(map(card, builtin))}</ul>')
    body = "\n    ".join(sections)
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="color-scheme" content="light dark">
  <title>strokes — all symbols</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/static/style.css">
</head>
<body class="symbols-page">
  <header class="site-header">
    <h1><a href="/">strokes</a></h1>
    <p class="tagline">Every symbol the recognizer knows: <span id="count-builtin">{len(builtin)}</span> built-in,
      <span id="count-taught">{len(taught)}</span> taught. <a href="/">Draw a symbol</a></p>
  </header>
  <main class="symbols-main">
    {body}
  </main>
  <footer class="site-footer"><p>Model: {esc(model_name)}. Packages and modes as detexify shows them; a command
    the table does not know is shown as math mode with no package.</p></footer>
</body>
</html>
"""


def create_app(
    recognizer=None,
    *,
    model=None,
    device: str = "cpu",
    config: ServeConfig | None = None,
    user_symbols=None,
    collect: bool = False,
):
    """The Starlette application: the drawing page and the JSON API.

    Args:
        recognizer: a :class:`strokes.recognizer.Recognizer` to classify with.
        model: or a checkpoint path to load one from (default: the shipped model).
        device: where to run the model.
        config: limits and batching (default: :class:`ServeConfig` defaults).
        user_symbols: the store of taught symbols (a SQLite path, created on the
            first teach; a ``postgresql://`` DSN; or a store object), ranked with
            the built-in symbols and written by ``POST /api/teach``. None: built-in
            symbols only, and teaching answers 403.
        collect: store the drawing and the label when a user picks a result
            (``POST /api/collect``); off by default, and it needs ``user_symbols``.

    Raises:
        ValueError: ``collect`` without ``user_symbols``, or ``user_symbols`` with a
            model that has no final linear layer to rank taught symbols with.
        TypeError: ``collect`` that is not a bool, or ``user_symbols`` of a wrong type.
    """
    try:
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.middleware import Middleware
        from starlette.requests import ClientDisconnect, Request
        from starlette.responses import FileResponse, HTMLResponse, JSONResponse
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "strokes serve needs the 'serve' extra: pip install -c constraints.txt -e '.[serve]'"
        ) from exc
    import contextlib

    from .io.user_symbols import MAX_INKS_PER_CALL, MAX_LABEL_CHARS
    from .recognizer import get_recognizer

    if not isinstance(collect, bool):
        raise TypeError(f"collect must be True or False, got {collect!r}")
    config = config or ServeConfig()
    if recognizer is None:
        recognizer = get_recognizer(model, device=device)
    store = None
    if user_symbols is not None:
        from .io.user_symbols import open_store

        store = open_store(user_symbols)
        if getattr(recognizer, "classifier", None) is None:
            raise ValueError(
                f"{recognizer.loaded.name} has no final linear layer, so it cannot rank taught symbols; "
                "serve it without a user-symbol store (--user-symbols none)"
            )
    if collect and store is None:
        raise ValueError("collecting stores the picked drawings in the user-symbol store: give user_symbols too")
    vocab = [str(v) for v in recognizer.classes]
    builtin = set(vocab)
    model_name = recognizer.loaded.title  # e.g. late_fusion (vgg_gap + tcn)
    batcher = _Batcher(recognizer, config.max_batch, store)
    index = _TaughtIndex(store) if store is not None else None
    store_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="strokes-store")

    def error(message: str, status: int) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def index_page(request: Request):
        return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8")

    async def healthz(request: Request):
        return JSONResponse({
            "status": "ok", "model": model_name, "classes": len(vocab), "batches": batcher.batches, "inks": batcher.inks,
            "teach": store is not None, "collect": collect, "max_label_chars": MAX_LABEL_CHARS, "max_drawings": MAX_INKS_PER_CALL,
        })  # fmt: skip

    async def in_store_thread(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(store_pool, functools.partial(fn, *args))

    async def taught_counts(strict: bool) -> dict[str, int]:
        """``{label: drawings}`` of the store; a store that cannot be read raises (strict) or counts as empty."""
        if index is None:
            return {}
        try:
            return await in_store_thread(index.counts_now)
        except Exception as exc:  # noqa: BLE001 - the built-in symbols are still worth listing
            if strict:
                raise
            log.warning("user symbols %s cannot be listed: %s: %s", store.location, type(exc).__name__, exc)
            return {}

    async def symbol_entries() -> list[dict]:
        counts = await taught_counts(strict=False)
        entries = [{"symbol": s, **_describe(s), "builtin": True, "taught": s in counts, "drawings": counts.get(s, 0)} for s in vocab]
        entries += [
            {"symbol": s, **_describe(s), "builtin": False, "taught": True, "drawings": counts[s]}
            for s in sorted(set(counts) - builtin)
        ]
        return entries

    async def api_symbols(request: Request):
        return JSONResponse({"symbols": await symbol_entries(), "model": model_name})

    async def symbols_page(request: Request):
        return HTMLResponse(_symbols_html(await symbol_entries(), model_name))

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

    async def read_json(request: Request, example: str):
        body = await read_body(request)
        if not body.strip():
            raise BadRequest(f"empty request body; send JSON like {example}")
        try:
            return json.loads(body, parse_constant=_reject_constant)
        except UnicodeDecodeError:
            raise BadRequest("the request body is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise BadRequest(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except RecursionError:
            raise BadRequest("the JSON is nested too deeply") from None

    async def classify(request: Request):
        try:
            k = _parse_k(request.query_params.get("k"), len(vocab), config)
            payload = await read_json(request, '{"strokes": [[{"x": 1, "y": 2}, ...]]}')
            ink = parse_ink(payload, config)
        except BadRequest as exc:
            return error(str(exc), exc.status)
        except ClientDisconnect:
            return error("client disconnected", 400)
        try:
            prob, view = await batcher.submit(ink)
        except (ValueError, TypeError) as exc:  # the pipeline refused this ink
            return error(f"could not classify this ink: {exc}", 400)
        top = np.argsort(-prob, kind="stable")[:k]
        results = [
            {"symbol": view.labels[j], "score": float(prob[j]), **_describe(view.labels[j]), "taught": bool(view.taught[j])}
            for j in top
        ]
        return JSONResponse({"results": results})

    async def store_drawings(label: str, inks: list) -> JSONResponse:
        """Teach ``inks`` (validated) as ``label``, in the store thread pool."""
        from .teach import teach

        try:
            result = await in_store_thread(functools.partial(teach, label, inks, user_symbols=store))
        except ConnectionError as exc:
            log.warning("could not store %d drawing(s) of %r: %s", len(inks), label, exc)
            return error("the user-symbol store is busy or unreachable; nothing was stored, try again", 503)
        except (ValueError, TypeError):  # label and drawings were checked already: the store refused them
            log.exception("the user-symbol store %s refused %d drawing(s) of %r", store.location, len(inks), label)
            return error("the user-symbol store refused the drawings; nothing was stored (the server logged why)", 500)
        return JSONResponse({"label": result.label, "stored": result.count, "total": result.total, **_describe(result.label)})

    def require_json(request: Request) -> None:
        """Writing endpoints take only ``Content-Type: application/json``: another web site's page cannot
        send that to this server without a CORS preflight, which it never grants."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise BadRequest(f"send the body as Content-Type: application/json, not {ctype or 'none'!r}", 415)

    async def json_body(request: Request, example: str, parse):
        """``(parse(body, config), None)`` for a JSON request body, or ``(None, the 4xx answer)``."""
        try:
            require_json(request)
            return parse(await read_json(request, example), config), None
        except BadRequest as exc:
            return None, error(str(exc), exc.status)
        except ClientDisconnect:
            return None, error("client disconnected", 400)

    async def api_teach(request: Request):
        if store is None:
            return error("teaching is off: this server has no user-symbol store (it runs with --user-symbols none)", 403)
        parsed, refusal = await json_body(request, '{"label": "\\\\mysymbol", "drawings": [INK, INK, INK]}', parse_teach)
        if refusal is not None:
            return refusal
        return await store_drawings(*parsed)

    async def api_collect(request: Request):
        if not collect:
            return error("collecting drawings is off: start the server with --collect to store the symbols users pick", 403)
        parsed, refusal = await json_body(request, '{"label": "\\\\alpha", "drawing": INK}', parse_collect)
        if refusal is not None:
            return refusal
        label, ink = parsed
        if label not in builtin:
            try:
                known = label in await taught_counts(strict=True)
            except ConnectionError as exc:
                log.warning("user symbols %s cannot be listed: %s", store.location, exc)
                return error("the user-symbol store is busy or unreachable; nothing was stored, try again", 503)
            if not known:
                return error(
                    f"unknown symbol {label!r}: collect stores drawings of symbols the server knows; "
                    "teach a new one with POST /api/teach",
                    400,
                )
        return await store_drawings(label, [ink])

    async def http_error(request: Request, exc: HTTPException):
        messages = {404: f"no such path: {request.url.path}", 405: f"method {request.method} is not allowed on {request.url.path}"}
        headers = getattr(exc, "headers", None)
        return JSONResponse({"error": messages.get(exc.status_code, exc.detail)}, status_code=exc.status_code, headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        log.info(
            "serving %s (%d classes; user symbols: %s; collecting: %s)",
            model_name, len(vocab), store.location if store is not None else "none", "on" if collect else "off",
        )  # fmt: skip
        yield
        await batcher.stop()
        store_pool.shutdown(wait=True)  # a teach call in flight finishes (its transaction commits or rolls back)

    routes = [
        Route("/", index_page, methods=["GET", "HEAD"]),
        Route("/symbols", symbols_page, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/api/symbols", api_symbols, methods=["GET", "HEAD"]),
        Route("/api/classify", classify, methods=["POST"]),
        Route("/api/teach", api_teach, methods=["POST"]),
        Route("/api/collect", api_collect, methods=["POST"]),
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
    app.state.store = store
    app.state.collect = collect
    return app


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    model=None,
    device: str = "cpu",
    config: ServeConfig | None = None,
    log_level: str = "info",
    user_symbols=None,
    collect: bool = False,
) -> None:
    """Run the server until interrupted (binds to loopback unless ``host`` says otherwise).

    ``user_symbols`` and ``collect`` are those of :func:`create_app`.
    """
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover
        raise ImportError("strokes serve needs the 'serve' extra: pip install -c constraints.txt -e '.[serve]'") from exc
    app = create_app(model=model, device=device, config=config, user_symbols=user_symbols, collect=collect)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding to %s: the server is reachable from other machines", host)
        if user_symbols is not None:
            log.warning("anyone who can reach %s can teach symbols into the user-symbol store (POST /api/teach)", host)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
