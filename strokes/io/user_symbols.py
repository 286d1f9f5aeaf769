"""Stores of user-taught symbols, in detexify's table shape, and the SQLite loader.

A store is one table ``samples (id, key, strokes)``, the shape of detexify's
PostgreSQL dump, so that ``strokes.load(store)`` and ``strokes train`` read it
back like any detexify data:

===========  ========  ==============================================================
column       type      holds
===========  ========  ==============================================================
``id``       integer   primary key, assigned in the order drawings were taught
``key``      text      the label as typed (``\\alpha``, ``\\mysymbol``); a label that
                       detexify's key rule would read differently (one with two
                       dashes, ``a-b-c``) is written as ``latex2e-OT1-LABEL``, which
                       reads back as LABEL (see :func:`label_to_store_key`)
``strokes``  text      JSON: a list of strokes, each a list of ``[x, y, t]`` (or
                       ``[x, y]``) points, as validated by :func:`strokes.as_ink`
===========  ========  ==============================================================

Where it lives:

* **SQLite** (the default, stdlib ``sqlite3``): a file, by default
  :func:`default_store_path` (``$STROKES_USER_SYMBOLS``, else
  ``~/.strokes/user_symbols.sqlite``). Rollback-journal mode: a process killed
  in the middle of a teach call leaves a journal that the next connection
  rolls back, so the store never holds half a call.
* **PostgreSQL**: a ``postgresql://`` (or ``postgres://``) DSN; the table is
  created when missing (``id integer PRIMARY KEY, key text, strokes text``, the
  same as ``strokes db load``).

Every :meth:`UserSymbolStore.add` is one transaction holding the store's write
lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL an advisory lock plus ``LOCK TABLE
... IN SHARE ROW EXCLUSIVE MODE``, which readers pass): concurrent teach calls
from threads or processes are serialized, none is lost, and ids increase in
commit order.

Limits (module constants): :data:`MAX_LABEL_CHARS` characters per label (no
control characters, not blank), :data:`MAX_INKS_PER_CALL` drawings per call,
:data:`MAX_POINTS_PER_INK` points per drawing.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import unicodedata
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

import numpy as np

from .._util import tqdm_disable
from ..dataset import DatasetBuilder, StrokeDataset
from ..ink import DEFAULT_MAX_POINTS, InkError, as_ink

# strokes.io.detexify (the row parser, the key rule) is imported where used: `import strokes`
# imports this module, and the parser's imports would double the package's import time

log = logging.getLogger(__name__)

__all__ = [
    "MAX_LABEL_CHARS",
    "MAX_INKS_PER_CALL",
    "MAX_POINTS_PER_INK",
    "SQLITE_SUFFIXES",
    "ENV_STORE",
    "UserSymbolStore",
    "SQLiteStore",
    "PostgresStore",
    "check_label",
    "check_inks",
    "ink_json",
    "label_to_store_key",
    "default_store_path",
    "open_store",
    "load_sqlite",
]

#: The longest label accepted, in characters (LaTeX commands are far shorter).
MAX_LABEL_CHARS = 64
#: The most drawings one teach call stores (for more, teach in several calls).
MAX_INKS_PER_CALL = 50
#: The most points one taught drawing may have (a pen gives a few hundred per symbol).
MAX_POINTS_PER_INK = 10_000
#: File name endings read as SQLite stores by :func:`strokes.load`.
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
#: The environment variable naming the default store (a path or a DSN).
ENV_STORE = "STROKES_USER_SYMBOLS"
#: Seconds a writer waits for another's write lock before giving up.
LOCK_TIMEOUT_S = 30.0
#: Seconds a PostgreSQL store's (row count, largest id) is reused before it is asked again: a
#: recognize() call then costs no server round trip, and another process's teach shows within this
#: time (this process's own at once). SQLite stores are asked on every call (a local read).
STATE_TTL_S = 0.25
#: Test hook: seconds to sleep inside the write transaction, after the rows are
#: inserted and before the commit (lets a test kill a process mid-transaction).
_SLEEP_ENV = "STROKES_TEST_TEACH_SLEEP"

_IS_DSN = ("postgresql://", "postgres://")
DEFAULT_TABLE = "samples"  #: detexify's table name (strokes.io.detexify.DEFAULT_TABLE)


def default_store_path() -> str:
    """``$STROKES_USER_SYMBOLS`` when set, else ``~/.strokes/user_symbols.sqlite``."""
    return os.environ.get(ENV_STORE) or str(Path("~/.strokes/user_symbols.sqlite").expanduser())


def check_label(label) -> str:
    """``label`` if it is a usable symbol name; TypeError/ValueError saying why not.

    A label is a non-blank string of at most :data:`MAX_LABEL_CHARS` characters with
    no control characters (newlines, tabs, NUL): it is a name shown in a list.
    """
    if not isinstance(label, str):
        raise TypeError(f"label must be a string such as '\\\\alpha', got {type(label).__name__}")
    if not label.strip():
        raise ValueError("label is empty: name the symbol, e.g. '\\\\alpha' or '\\\\mysymbol'")
    if len(label) > MAX_LABEL_CHARS:
        raise ValueError(f"label is {len(label)} characters long, more than the limit of {MAX_LABEL_CHARS}")
    bad = [c for c in label if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") and c != "\u200d"]
    if bad:
        raise ValueError(f"label {label!r} holds control or unassigned characters {sorted(set(map(repr, bad)))}; use printable text")
    if label != label.strip():
        raise ValueError(f"label {label!r} starts or ends with white space; remove it")
    label_to_store_key(label)  # refuses the one label no key can hold
    return label


def label_to_store_key(label: str) -> str:
    """The ``key`` column for ``label``: the label as typed when detexify's key rule reads it back
    unchanged, else ``latex2e-OT1-LABEL`` (which does)."""
    from .detexify import key_to_label

    if key_to_label(label) == label:
        return label
    key = f"latex2e-OT1-{label}"
    if key_to_label(key) != label:  # a label starting with '_' and holding two dashes
        raise ValueError(f"label {label!r} cannot be stored as a detexify key (it starts with '_'); rename it")
    return key


def check_inks(inks) -> list[list[np.ndarray]]:
    """Validate a list of drawings through :func:`strokes.as_ink`; errors name the drawing."""
    if isinstance(inks, (str, bytes, dict, np.ndarray)) or not hasattr(inks, "__len__"):
        raise TypeError(f"inks must be a list of drawings (each a list of strokes), got {type(inks).__name__}")
    if len(inks) == 0:
        raise ValueError("no drawings given: teach takes at least one")
    if len(inks) > MAX_INKS_PER_CALL:
        raise ValueError(f"{len(inks)} drawings given, more than the limit of {MAX_INKS_PER_CALL} per call; teach them in parts")
    out = []
    for i, ink in enumerate(inks):
        try:
            out.append(as_ink(ink, max_points=MAX_POINTS_PER_INK))
        except (InkError, TypeError) as exc:
            msg = str(exc)
            if "max_points" in msg:  # as_ink's advice does not apply here
                msg = f"ink has more than {MAX_POINTS_PER_INK} points, the limit for a taught drawing"
            if i == 0 and _is_one_ink(inks):
                msg += "; it looks like one drawing: pass a list of drawings, e.g. teach(label, [ink])"
            raise type(exc)(f"drawing {i}: {msg}") from None
    return out


def _is_one_ink(inks) -> bool:
    try:
        as_ink(inks, max_points=MAX_POINTS_PER_INK)
        return True
    except (ValueError, TypeError):
        return False


def ink_json(ink: Sequence[np.ndarray]) -> str:
    """A validated ink as detexify JSON: ``[[[x, y, t], ...], ...]`` (``[x, y]`` points when untimed)."""
    return json.dumps([np.asarray(s, dtype=np.float64).tolist() for s in ink], separators=(",", ":"))


def _sleep_in_transaction() -> None:
    seconds = os.environ.get(_SLEEP_ENV)
    if seconds:
        time.sleep(float(seconds))


class UserSymbolStore:
    """Where taught drawings live: a table ``(id, key, strokes)``. Thread-safe."""

    kind = "?"
    location = "?"  #: for messages and cache keys (no password)

    def add(self, key: str, strokes_json: Sequence[str]) -> tuple[list[int], int]:
        """Insert rows for one key in one transaction; return (their ids, rows now under that key)."""
        raise NotImplementedError

    def state(self, fresh: bool = False) -> tuple[int, int]:
        """``(row count, largest id)``: cheap, changes whenever rows are added or removed.

        A server store may answer from a cache up to ``STATE_TTL_S`` old unless
        ``fresh``; its own :meth:`add` clears that cache.
        """
        raise NotImplementedError

    def rows(self, after_id: int = 0) -> list[tuple[int, str, str]]:
        """``(id, key, strokes)`` of the rows with ``id > after_id``, in id order."""
        raise NotImplementedError

    def exists(self) -> bool:
        """Whether the store is there at all (a missing one reads as empty)."""
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"


class SQLiteStore(UserSymbolStore):
    """A SQLite file (created with its table on the first teach)."""

    kind = "sqlite"

    def __init__(self, path, *, table: str = DEFAULT_TABLE):
        _check_identifier(table)
        self.path = Path(path).expanduser().resolve()
        self.table = table
        self.location = str(self.path)
        self._local = threading.local()

    def exists(self) -> bool:
        return self.path.is_file()

    def _connect(self, create: bool) -> sqlite3.Connection:
        mode = "rwc" if create else "rw"
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                f"file:{quote(str(self.path))}?mode={mode}", uri=True, timeout=LOCK_TIMEOUT_S, isolation_level=None
            )
        except sqlite3.OperationalError as exc:
            if not self.path.exists():
                raise FileNotFoundError(f"no user-symbol store at {self.path}: teach a symbol first (strokes teach)") from None
            raise ConnectionError(f"cannot open the user-symbol store {self.path}: {exc}") from None
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect(create=False)
        return conn

    def _fail(self, exc: sqlite3.Error, doing: str):
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return ConnectionError(f"{self.path}: the store stayed locked by another writer for {LOCK_TIMEOUT_S:.0f} s while {doing}")
        if isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc):
            return ValueError(f"{self.path} has no table {self.table!r}: it is not a user-symbol store")
        return ValueError(f"{self.path} is not a usable user-symbol store ({type(exc).__name__}: {exc}) while {doing}")

    def add(self, key: str, strokes_json: Sequence[str]) -> tuple[list[int], int]:
        conn = self._connect(create=True)
        try:
            conn.execute("BEGIN IMMEDIATE")  # the write lock, now: concurrent writers wait (busy timeout)
            try:
                conn.execute(
                    f'CREATE TABLE IF NOT EXISTS "{self.table}" '
                    "(id INTEGER PRIMARY KEY, key TEXT NOT NULL, strokes TEXT NOT NULL)"
                )
                _check_sqlite_columns(conn, self.table, self.path)
                first = conn.execute(f'SELECT coalesce(max(id), 0) + 1 FROM "{self.table}"').fetchone()[0]
                ids = list(range(first, first + len(strokes_json)))
                conn.executemany(
                    f'INSERT INTO "{self.table}" (id, key, strokes) VALUES (?, ?, ?)',
                    [(i, key, s) for i, s in zip(ids, strokes_json)],
                )
                total = conn.execute(f'SELECT count(*) FROM "{self.table}" WHERE key = ?', (key,)).fetchone()[0]
                _sleep_in_transaction()
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._fail(exc, "teaching") from None
        finally:
            conn.close()
        return ids, int(total)

    def _read(self, query: str, params=()) -> list | None:
        """Rows of ``query``, or None when the file holds no tables at all (a store whose
        first teach never committed); another database without the table is an error."""
        try:
            return self._reader().execute(query, params).fetchall()
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc):
                try:
                    if self._reader().execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                        return None
                except sqlite3.Error:
                    pass
            self._drop_reader()
            raise self._fail(exc, "reading") from None

    def state(self, fresh: bool = False) -> tuple[int, int]:
        got = self._read(f'SELECT count(*), coalesce(max(id), 0) FROM "{self.table}"')
        return (0, 0) if got is None else (int(got[0][0]), int(got[0][1]))

    def rows(self, after_id: int = 0) -> list[tuple[int, str, str]]:
        got = self._read(
            f'SELECT id, CAST(key AS TEXT), CAST(strokes AS TEXT) FROM "{self.table}" WHERE id > ? ORDER BY id',
            (int(after_id),),
        )
        return [] if got is None else got

    def _drop_reader(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()


def _check_identifier(table: str) -> None:
    import re

    if not isinstance(table, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
        raise ValueError(f"table name {table!r} must be a plain SQL identifier")


def _check_sqlite_columns(conn, table: str, where) -> None:
    cols = {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')}
    missing = {"id", "key", "strokes"} - cols
    if missing:
        raise ValueError(f"table {table!r} in {where} lacks column(s) {sorted(missing)}; it has {sorted(cols)}")


class PostgresStore(UserSymbolStore):
    """A table on a PostgreSQL server (created on the first teach)."""

    kind = "postgres"

    def __init__(self, dsn: str, *, table: str = DEFAULT_TABLE):
        from .postgres import _table_ident, redact_dsn

        _table_ident(table)
        self.dsn = dsn
        self.table = table
        self.location = f"{redact_dsn(dsn)} table {table}"
        self._local = threading.local()
        self._state = None  # (monotonic time, state) of the last state() query

    def _ident(self):
        from .postgres import _table_ident

        return _table_ident(self.table)

    def _reader(self):
        from .postgres import connect

        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = connect(self.dsn)
            conn.autocommit = True
        return conn

    def _lost(self, exc, doing: str) -> ConnectionError:
        from .postgres import _reason

        return ConnectionError(f"PostgreSQL store {self.location}: connection failed while {doing} ({_reason(exc)})")

    def add(self, key: str, strokes_json: Sequence[str]) -> tuple[list[int], int]:
        import psycopg2
        from psycopg2 import sql
        from psycopg2.extras import execute_values

        from .postgres import connect

        tbl = self._ident()
        conn = connect(self.dsn)
        try:
            with conn.cursor() as cur:
                # serializes teach calls (the CREATE included), then keeps other writers out of the table
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"strokes-user-symbols:{self.table}",))
                cur.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} (id integer PRIMARY KEY, key text NOT NULL, strokes text NOT NULL)").format(tbl)
                )
                cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(tbl))
                cur.execute(sql.SQL("SELECT coalesce(max(id), 0) + 1 FROM {}").format(tbl))
                first = cur.fetchone()[0]
                ids = list(range(first, first + len(strokes_json)))
                execute_values(
                    cur, sql.SQL("INSERT INTO {} (id, key, strokes) VALUES %s").format(tbl).as_string(conn),
                    [(i, key, s) for i, s in zip(ids, strokes_json)],
                )  # fmt: skip
                cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE key = %s").format(tbl), (key,))
                total = cur.fetchone()[0]
                _sleep_in_transaction()
            conn.commit()
            self._state = None  # this process sees its own teach at once
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            if conn.closed:
                raise self._lost(exc, "teaching (nothing was stored)") from exc
            conn.rollback()
            raise
        except psycopg2.Error as exc:
            conn.rollback()
            raise ValueError(f"PostgreSQL store {self.location}: {str(exc).strip().splitlines()[0]}") from None
        finally:
            conn.close()
        return ids, int(total)

    def _query(self, query, params=()):
        import psycopg2

        try:
            with self._reader().cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()
        except psycopg2.errors.UndefinedTable:
            return None
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            conn = getattr(self._local, "conn", None)
            if conn is not None and not conn.closed:
                conn.close()
            raise self._lost(exc, "reading") from exc

    def state(self, fresh: bool = False) -> tuple[int, int]:
        from psycopg2 import sql

        now = time.monotonic()
        cached = self._state
        if not fresh and cached is not None and now - cached[0] < STATE_TTL_S:
            return cached[1]
        got = self._query(sql.SQL("SELECT count(*), coalesce(max(id), 0) FROM {}").format(self._ident()))
        state = (0, 0) if got is None else (int(got[0][0]), int(got[0][1]))
        self._state = (now, state)
        return state

    def rows(self, after_id: int = 0) -> list[tuple[int, str, str]]:
        from psycopg2 import sql

        got = self._query(
            sql.SQL("SELECT id, key::text, strokes::text FROM {} WHERE id > %s ORDER BY id").format(self._ident()),
            (int(after_id),),
        )
        return [] if got is None else got


_stores: dict[tuple, UserSymbolStore] = {}
_stores_lock = threading.Lock()


def open_store(spec=None) -> UserSymbolStore:
    """The store for ``spec``: a :class:`UserSymbolStore` (returned as is), a ``postgresql://``
    DSN, a SQLite path, or None for :func:`default_store_path`. Cached per spec."""
    if isinstance(spec, UserSymbolStore):
        return spec
    if spec is None:
        spec = default_store_path()
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"user_symbols must be a path, a postgresql:// DSN or a store, got {type(spec).__name__}")
    text = os.fspath(spec)
    if not text.strip():
        raise ValueError("user_symbols is empty: give a SQLite path or a postgresql:// DSN")
    if text.startswith(_IS_DSN):
        key = ("postgres", text)
    else:
        key = ("sqlite", str(Path(text).expanduser().resolve()))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = PostgresStore(text) if key[0] == "postgres" else SQLiteStore(key[1])
            if len(_stores) > 32:
                _stores.clear()
            _stores[key] = store
    return store


def load_sqlite(
    path,
    *,
    table: str = DEFAULT_TABLE,
    columns: tuple[str, str, str] = ("id", "key", "strokes"),
    batch_size: int = 5000,
    key_style: str = "command",
    max_points: int = DEFAULT_MAX_POINTS,
    limit: int | None = None,
    progress: bool | None = None,
    builder=None,
    **_unused,
) -> StrokeDataset:
    """Read a detexify-shaped ``(id, key, strokes)`` table from a SQLite file (a user-symbol store).

    Rows are parsed like a detexify dump's; bad rows are skipped and listed in
    ``ds.skipped``: ``info["records_in"] == loaded + skipped``.
    """
    from tqdm.auto import tqdm

    from .detexify import RowParser, _finish

    path = Path(path)
    _check_identifier(table)
    if len(columns) != 3:
        raise ValueError("columns must name (id, key, strokes)")
    for c in columns:
        _check_identifier(c)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:  # read-write (not created): a hot journal left by a killed writer gets rolled back first
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=rw", uri=True, timeout=LOCK_TIMEOUT_S)
    except sqlite3.OperationalError:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=LOCK_TIMEOUT_S)
    builder = builder if builder is not None else DatasetBuilder(name=str(path))
    parser = RowParser(builder, key_style=key_style, max_points=max_points)
    cid, ckey, cstrokes = (f'"{c}"' for c in columns)
    try:
        try:
            have = {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')}
            if not have:
                raise ValueError(f"{path} has no table {table!r} (pass table= if it has another name)")
            missing = set(columns) - have
            if missing:
                raise ValueError(f"table {table!r} in {path} lacks column(s) {sorted(missing)}; it has {sorted(have)}")
            total = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            if limit is not None:
                total = min(total, int(limit))
            cur = conn.execute(
                f'SELECT {cid}, CAST({ckey} AS TEXT), CAST({cstrokes} AS BLOB) FROM "{table}" ORDER BY {cid}'
                + (f" LIMIT {int(limit)}" if limit is not None else "")
            )
            with tqdm(total=total, unit="row", desc="sqlite", disable=tqdm_disable(progress)) as bar:
                while True:
                    rows = cur.fetchmany(batch_size)
                    if not rows:
                        break
                    parser.add_batch(
                        [f"id {r[0]}" for r in rows],
                        [r[1] for r in rows],
                        [None if r[2] is None else bytes(r[2]) for r in rows],
                    )
                    bar.update(len(rows))
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{path} is not a readable SQLite database ({exc})") from None
    finally:
        conn.close()
    info = {"format": "sqlite", "records_in": parser.rows_in, "unit": "rows", "table": table}
    return _finish(builder, info)
