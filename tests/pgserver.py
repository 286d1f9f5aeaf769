"""Start and stop a throwaway PostgreSQL cluster (trust auth, temp dir) for tests and CI.

Usage from the shell (``.ci/run``)::

    eval "$(python tests/pgserver.py start)"   # exports STROKES_TEST_DSN and STROKES_PG_DIR
    python tests/pgserver.py stop "$STROKES_PG_DIR"

As root the cluster is owned by the ``postgres`` user (initdb refuses root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def find_bindir() -> str | None:
    """Directory holding initdb and pg_ctl: PATH first, then Debian's layout."""
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return os.path.dirname(shutil.which("initdb"))
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    return dirs[-1] if dirs else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def start() -> tuple[str, str]:
    """Create and start a cluster; return (dsn, directory)."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    root = tempfile.mkdtemp(prefix="strokes-pg-")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data = os.path.join(root, "data")
    port = _free_port()
    subprocess.run(
        _as_owner([f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8"]),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    subprocess.run(
        _as_owner([f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(root, "log"), "-w", "-t", "60", "start"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    for _ in range(50):  # pg_ctl -w waits, but be sure the TCP port answers
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return dsn, root


def stop(root: str) -> None:
    bindir = find_bindir()
    data = os.path.join(root, "data")
    if bindir and os.path.isdir(data):
        subprocess.run(_as_owner([f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"]), stdout=subprocess.DEVNULL)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["start"]:
        dsn, root = start()
        print(f"export STROKES_TEST_DSN={dsn} STROKES_PG_DIR={root}")
    elif sys.argv[1:2] == ["stop"] and len(sys.argv) == 3:
        stop(sys.argv[2])
    else:
        sys.exit("usage: pgserver.py start | stop DIR")
