"""The database failing mid-stream: the connection killed with pg_terminate_backend during a load, a COPY, an import.

A second connection terminates the loader's backend (found by a unique
``application_name`` in its DSN) at a chosen point of the stream, and waits
until that backend is gone, so every kill lands mid-stream, never before or
after: each test asserts where it landed. Real server, no mocks; the hooks
only watch the loader's own progress (rows parsed, COPY data read).
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlencode

import numpy as np
import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extensions import parse_dsn

import strokes
from strokes import cli
from strokes.dataset import StrokeDataset
from strokes.io import import_to_store, postgres
from strokes.io.detexify import RowParser
from strokes.io.postgres import load_postgres

pytestmark = pytest.mark.postgres

SECRET = "s3cretpw"  # put into the loader's DSN where the server lets a password through (trust auth)
ROWS = 20  # rows of the small table
KILL_AT = 5  # rows read before the kill (batch_size=1)


def execute(dsn: str, query, params=None):
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def count_rows(dsn: str, table: str):
    """Rows in ``table``, or None when it does not exist."""
    if execute(dsn, "SELECT to_regclass(%s)", (f'"{table}"',)) == [(None,)]:
        return None
    return execute(dsn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))[0][0]


def fill(dsn: str, table: str, n: int, first_id: int = 1) -> None:
    """Create ``table`` (if needed) and add ``n`` small valid rows with ids from ``first_id``."""
    tbl = sql.Identifier(table)
    execute(dsn, sql.SQL("CREATE TABLE IF NOT EXISTS {} (id integer PRIMARY KEY, key text NOT NULL, strokes text NOT NULL)").format(tbl))
    execute(
        dsn,
        sql.SQL(
            "INSERT INTO {} SELECT i, 'latex2e-OT1-_alpha', '[[[' || i || ',1],[2,3]]]' FROM generate_series(%s, %s) AS i"
        ).format(tbl),
        (first_id, first_id + n - 1),
    )


def _uri(params: dict) -> str:
    user = quote(params.get("user", ""), safe="")
    if params.get("password"):
        user += ":" + quote(params["password"], safe="")
    host = quote(params.get("host", ""), safe="")
    port = f":{params['port']}" if params.get("port") else ""
    rest = {k: v for k, v in params.items() if k not in ("user", "password", "host", "port", "dbname")}
    return f"postgresql://{user}{'@' if user else ''}{host}{port}/{quote(params.get('dbname', ''), safe='')}?{urlencode(rest)}"


class Victim:
    """The loader's DSN: a unique application_name, and a password in it where the server allows."""

    def __init__(self, pg_dsn: str):
        self.app = f"strokes-victim-{uuid.uuid4().hex[:12]}"
        params = {**parse_dsn(pg_dsn), "application_name": self.app}
        self.secret = params.get("password")
        self.dsn = _uri(params)
        if not self.secret:
            with_pw = _uri({**params, "password": SECRET})
            try:
                psycopg2.connect(with_pw).close()
            except psycopg2.OperationalError:
                pass  # the server checks passwords: test without one
            else:
                self.dsn, self.secret = with_pw, SECRET

    def check_message(self, msg: str) -> None:
        """The message names the server, never its password."""
        assert "postgresql://" in msg and self.app in msg, msg
        if self.secret:
            assert self.secret not in msg and "***" in msg, msg


class Killer:
    """Terminates the victim's backend from a second connection, and waits until it is gone."""

    def __init__(self, pg_dsn: str, victim: Victim):
        self.conn = psycopg2.connect(pg_dsn)
        self.conn.autocommit = True
        self.app = victim.app
        self.at = None  # how far the stream had got when the kill happened

    def query(self, q, params=()):
        with self.conn.cursor() as cur:
            cur.execute(q, params)
            return cur.fetchall()

    def pids(self) -> list[int]:
        return [r[0] for r in self.query("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.app,))]

    def copy_progress(self, timeout: float = 30.0) -> int:
        """Wait until the victim's COPY has inserted rows on the server; return how many."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.query(
                "SELECT p.tuples_processed FROM pg_stat_progress_copy p JOIN pg_stat_activity a USING (pid) "
                "WHERE a.application_name = %s",
                (self.app,),
            )
            if got and got[0][0] > 0:
                return got[0][0]
            time.sleep(0.02)
        raise AssertionError("the COPY never got going on the server")

    def kill(self, at) -> None:
        pids = self.pids()
        assert len(pids) == 1, f"expected one backend named {self.app}, found {pids}"
        assert self.query("SELECT pg_terminate_backend(%s)", (pids[0],)) == [(True,)]
        deadline = time.monotonic() + 30
        while pids[0] in self.pids():  # gone for sure: the loader's next request fails
            assert time.monotonic() < deadline, "the terminated backend did not exit"
            time.sleep(0.02)
        self.at = at

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def victim(pg_dsn) -> Victim:
    return Victim(pg_dsn)


@pytest.fixture
def killer(pg_dsn, victim):
    k = Killer(pg_dsn, victim)
    yield k
    k.close()


@pytest.fixture
def kill_after_rows(monkeypatch, killer):
    """Arm: kill once the loader has parsed at least ``n`` rows (checked after each batch)."""

    def arm(n: int) -> None:
        apply = RowParser.apply

        def watched(self, rows):
            apply(self, rows)
            if killer.at is None and self.rows_in >= n:
                killer.kill(at=self.rows_in)

        monkeypatch.setattr(RowParser, "apply", watched)

    return arm


@pytest.fixture
def kill_during_copy(monkeypatch, killer):
    """Arm: before COPY data is read for the second time (the first ~1 MiB is already sent), wait until
    the server has inserted rows, then kill. Returns the rows the server had inserted at the kill."""
    state = {"reads": 0, "sent": 0, "server_rows": None}

    def arm() -> dict:
        read = postgres._CopyStream.read

        def watched(self, size=-1):
            state["reads"] += 1
            if state["reads"] == 2 and killer.at is None:
                state["server_rows"] = killer.copy_progress()
                killer.kill(at=state["sent"])  # rows handed to the driver so far
            out = read(self, size)
            state["sent"] += out.count(b"\n")
            return out

        monkeypatch.setattr(postgres._CopyStream, "read", watched)
        return state

    if int(killer.query("SHOW server_version_num")[0][0]) < 140000:
        pytest.skip("needs PostgreSQL 14+ (pg_stat_progress_copy) to see the COPY mid-stream")
    return arm


def same_store(a: Path, b: Path) -> None:
    """Two stores hold the same files with the same bytes."""
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for p in a.iterdir():
        assert p.read_bytes() == (b / p.name).read_bytes(), p.name


# ------------------------------------------------------------------ reading: load_postgres
def test_load_batch_size_1_killed_mid_stream_raises_connection_error(pg_dsn, pg_table, victim, killer, kill_after_rows):
    """A connection killed after 5 of 20 rows (batch_size=1) gives a ConnectionError naming the server and the row count."""
    fill(pg_dsn, pg_table, ROWS)
    kill_after_rows(KILL_AT)
    with pytest.raises(ConnectionError) as info:
        load_postgres(victim.dsn, table=pg_table, batch_size=1, progress=False)
    assert killer.at == KILL_AT  # mid-stream: after the 5th row, with 15 still to come
    msg = str(info.value)
    assert f"lost after {KILL_AT} of {ROWS} rows of table {pg_table!r}" in msg, msg
    assert "nothing was loaded" in msg
    victim.check_message(msg)
    # the server is fine and nothing is left over: the same load now reads every row
    ds = load_postgres(victim.dsn, table=pg_table, batch_size=1, progress=False)
    assert len(ds) == ROWS and ds.info["records_in"] == ROWS and ds.skipped == []


# ------------------------------------------------------------------ importing into a store
@pytest.mark.parametrize("before", ["nothing", "an older store"])
def test_import_to_store_killed_mid_stream_leaves_no_partial_store(
    tmp_path, pg_dsn, pg_table, victim, killer, kill_after_rows, before
):
    """import_to_store from postgresql:// killed mid-stream raises ConnectionError and leaves no partial store (an older one stays as it was)."""
    fill(pg_dsn, pg_table, ROWS)
    out = tmp_path / "out" / "db.strokes"
    out.parent.mkdir()
    if before == "an older store":
        strokes.load("synthetic:writers=2,samples=1,seed=0").save(out)
        shutil.copytree(out, tmp_path / "old.strokes")
    kill_after_rows(KILL_AT)
    with pytest.raises(ConnectionError) as info:
        import_to_store(victim.dsn, out, table=pg_table, batch_size=1, progress=False)
    assert killer.at == KILL_AT
    msg = str(info.value)
    assert f"lost after {KILL_AT} of {ROWS} rows" in msg, msg
    victim.check_message(msg)
    if before == "nothing":
        assert list(out.parent.iterdir()) == []  # no store, no temporary directory
    else:
        assert list(out.parent.iterdir()) == [out]
        same_store(out, tmp_path / "old.strokes")
    # and once the server answers, the import writes the whole store
    ds = import_to_store(victim.dsn, out, table=pg_table, batch_size=1, progress=False)
    assert len(ds) == ROWS and ds.info["records_in"] == ROWS
    assert list(out.parent.iterdir()) == [out]


@pytest.mark.parametrize("suffix", [".npz", ".strokes"])
def test_cli_import_killed_mid_stream_writes_nothing(tmp_path, pg_dsn, pg_table, victim, killer, kill_after_rows, capsys, suffix):
    """`strokes import postgresql://... -o OUT` killed after the first batch exits 2 with a clean error and writes no OUT."""
    n = 12_000  # more than one batch at the default batch size
    fill(pg_dsn, pg_table, n)
    out = tmp_path / f"db{suffix}"
    kill_after_rows(1)  # after the first batch, whatever its size
    rc = cli.main(["import", victim.dsn, "-o", str(out), "--table", pg_table])
    assert rc == 2
    assert killer.at is not None and 0 < killer.at < n
    err = capsys.readouterr().err
    assert "strokes: error: PostgreSQL connection to" in err
    assert f"lost after {killer.at} of {n} rows" in err, err
    victim.check_message(err)
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file or directory


# ------------------------------------------------------------------ writing: strokes db load (COPY)
N_COPY = 40_000  # ~2.5 MB of COPY text: several reads of 1 MiB


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> dict:
    """A dataset of N_COPY one-stroke samples, as a detexify dump and as an .npz cache."""
    rng = np.random.default_rng(0)
    xy = np.round(rng.uniform(-500, 500, size=(3 * N_COPY, 2)), 2)
    offsets = np.arange(0, 3 * N_COPY + 1, 3)
    ds = StrokeDataset(xy, offsets, np.arange(N_COPY + 1), rng.integers(0, 3, N_COPY), ["a", "b", r"\alpha"], name="big")
    root = tmp_path_factory.mktemp("big")
    ds.save(root / "big.sql")
    ds.save(root / "big.npz")
    return {"dump": root / "big.sql", "dataset": root / "big.npz"}


OLD_ROWS = 3  # rows already in the table, with ids that cannot clash (1_000_001...)


@pytest.mark.parametrize(
    "source, table_before",
    [("dump", "missing"), ("dump", "has rows"), ("dump", "has rows, --replace"), ("dataset", "missing")],
)
def test_db_load_killed_mid_copy_writes_nothing(
    big, pg_dsn, pg_table, victim, killer, kill_during_copy, capsys, source, table_before
):
    """`strokes db load` killed mid-COPY exits 2 with a clean error and is all or nothing: 0 new rows (no table, or the old rows only)."""
    args = ["db", "load", str(big[source]), "--dsn", victim.dsn, "--table", pg_table]
    if table_before != "missing":
        fill(pg_dsn, pg_table, OLD_ROWS, first_id=1_000_001)
    if "--replace" in table_before:
        args.append("--replace")
    state = kill_during_copy()
    rc = cli.main(args)
    assert rc == 2
    # mid-stream: the server had inserted rows, and the client had more to send
    assert state["server_rows"] is not None and 0 < state["server_rows"] < N_COPY
    assert 0 < killer.at < N_COPY
    err = capsys.readouterr().err
    assert "strokes: error: PostgreSQL connection to" in err, err
    assert "lost during the COPY of" in err and f"into table {pg_table!r}" in err, err
    assert "rolled back: no rows were written" in err, err
    if source == "dump":
        assert str(big["dump"]) in err
    victim.check_message(err)
    if table_before == "missing":
        assert count_rows(pg_dsn, pg_table) is None  # not even the table
    else:
        assert count_rows(pg_dsn, pg_table) == OLD_ROWS  # 0 new rows; --replace's DROP undone too
    # the same command, with the server answering, loads every row
    assert cli.main(args) == 0
    expect = N_COPY + (OLD_ROWS if table_before == "has rows" else 0)
    assert count_rows(pg_dsn, pg_table) == expect


@pytest.fixture
def dies_at_commit(pg_dsn, pg_table):
    """``pg_table``, made so that the backend committing rows into it terminates itself (a deferred trigger)."""
    fn = sql.Identifier(f"die_{uuid.uuid4().hex[:10]}")
    tbl = sql.Identifier(pg_table)
    execute(pg_dsn, sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, key text NOT NULL, strokes text NOT NULL)").format(tbl))
    execute(
        pg_dsn,
        sql.SQL(
            "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(10); RETURN NULL; END $$"
        ).format(fn),
    )
    execute(
        pg_dsn,
        sql.SQL(
            "CREATE CONSTRAINT TRIGGER die_at_commit AFTER INSERT ON {} DEFERRABLE INITIALLY DEFERRED "
            "FOR EACH ROW EXECUTE FUNCTION {}()"
        ).format(tbl, fn),
    )
    yield pg_table
    execute(pg_dsn, sql.SQL("DROP TABLE IF EXISTS {}").format(tbl))
    execute(pg_dsn, sql.SQL("DROP FUNCTION IF EXISTS {}()").format(fn))


def test_db_load_killed_while_committing_says_the_outcome_is_unknown(tmp_path, pg_dsn, dies_at_commit, victim, capsys):
    """A connection lost during the COMMIT of `strokes db load` is a clean error that says the outcome is unknown (not 'nothing written')."""
    from datasets import small_dataset

    dump = tmp_path / "d.sql"
    small_dataset().save(dump)
    rc = cli.main(["db", "load", str(dump), "--dsn", victim.dsn, "--table", dies_at_commit])
    assert rc == 2
    err = capsys.readouterr().err
    assert "strokes: error: PostgreSQL connection to" in err, err
    assert f"lost while committing the COPY of {dump} (5 rows) into table {dies_at_commit!r}" in err, err
    assert "whether the rows were written is unknown" in err and "rolled back" not in err
    victim.check_message(err)
    assert count_rows(pg_dsn, dies_at_commit) == 0  # here the server did roll back
