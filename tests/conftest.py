"""Shared fixtures.

* ``shared_data``: ``../shared/data`` beside the checkout. Skipped where absent;
  under ``CI=true`` a missing folder is a failure, not a skip.
* ``pg_dsn``: a real PostgreSQL server. ``STROKES_TEST_DSN`` when set (``.ci/run``
  sets it); otherwise a throwaway cluster started for the session from the
  local server binaries; skipped where there are none, failed under ``CI=true``.
* ``tiny``: a small synthetic dataset (generated, labelled synthetic).
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["ci_skips", "pytester"]  # under CI=true a skip fails (see tests/ci_skips.py)

# never read or write the user's own taught symbols (~/.strokes/user_symbols.sqlite): every test,
# and every server or CLI process a test starts, gets a store of its own unless it names one
os.environ["STROKES_USER_SYMBOLS"] = os.path.join(__import__("tempfile").mkdtemp(prefix="strokes-test-store-"), "user_symbols.sqlite")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, why: str) -> None:
    """Skip when a resource is missing, but fail under CI=true."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI=true but {why}")
        pytest.skip(why)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    need((SHARED / "crohme").is_dir(), f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def _pg_server():
    dsn = os.environ.get("STROKES_TEST_DSN")
    if dsn:
        yield dsn
        return
    import pgserver

    if pgserver.find_bindir() is None:
        yield None
        return
    try:
        dsn, root = pgserver.start()
    except Exception as exc:  # noqa: BLE001 - reported through the skip/fail below
        yield f"error: {exc}"
        return
    yield dsn
    pgserver.stop(root)


@pytest.fixture
def pg_dsn(_pg_server) -> str:
    need(_pg_server is not None, "no PostgreSQL: set STROKES_TEST_DSN or install the server binaries")
    need(not str(_pg_server).startswith("error:"), f"could not start PostgreSQL ({_pg_server})")
    return _pg_server


@pytest.fixture
def pg_table(pg_dsn):
    """A fresh table name, dropped afterwards."""
    import psycopg2
    from psycopg2 import sql

    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    conn = psycopg2.connect(pg_dsn)
    with conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
    conn.close()


@pytest.fixture(scope="session")
def tiny():
    from strokes.synthetic import generate

    return generate(n_writers=6, samples_per_writer=2, seed=0)
