"""A real ``strokes serve`` process on loopback, for the API, browser and load tests."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(*args: str, timeout: float = 60.0):
    """Start ``strokes serve`` on a free port; yield ``(host, port, process)``; stop it after."""
    port = free_port()
    cmd = [sys.executable, "-m", "strokes", "serve", "--port", str(port), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"strokes serve exited with {proc.returncode}: {proc.stdout.read()}")
            try:
                status, _ = request("127.0.0.1", port, "GET", "/healthz", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"strokes serve did not answer /healthz within {timeout} s")
            time.sleep(0.1)
        yield "127.0.0.1", port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_app(app, timeout: float = 30.0):
    """Serve an ASGI ``app`` with uvicorn in a thread of this process on a free loopback port; yield ``(host, port)``.

    For tests that reach into the server (a recognizer that fails on purpose, the
    batcher's queue), which a ``strokes serve`` process does not allow.
    """
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the in-process server stopped before it started")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the in-process server did not start within {timeout} s")
            time.sleep(0.02)
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)


def request(host, port, method, path, body=None, headers=None, timeout=10.0, conn=None):
    """One HTTP request; returns ``(status, parsed JSON or raw bytes)``."""
    own = conn is None
    conn = conn or http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        if resp.getheader("Content-Type", "").startswith("application/json"):
            return resp.status, json.loads(data)
        return resp.status, data
    finally:
        if own:
            conn.close()
