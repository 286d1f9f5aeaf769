"""PostgreSQL: read detexify-shaped tables through psycopg2, and load dumps with COPY.

Identifiers (table and column names) are always quoted with
``psycopg2.sql.Identifier``; values are always passed as parameters. The DSN
comes from the argument, or, when empty, from the standard ``PG*`` environment
variables (``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGDATABASE``, ...).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from pathlib import Path

from tqdm.auto import tqdm

from .._util import tqdm_disable
from ..dataset import DatasetBuilder, StrokeDataset
from ..ink import DEFAULT_MAX_POINTS
from .detexify import DEFAULT_TABLE, RowParser, _copy_blocks, _find_copy, _finish, copy_rows

log = logging.getLogger(__name__)

__all__ = ["load_postgres", "copy_dump_to_postgres", "save_postgres", "redact_dsn", "connect"]

DEFAULT_COLUMNS = ("id", "key", "strokes")


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***`` (for names and logs)."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)


def connect(dsn: str | None = None):
    """Open a psycopg2 connection; an empty DSN uses the ``PG*`` environment variables."""
    import psycopg2

    try:
        return psycopg2.connect(dsn or "")
    except psycopg2.ProgrammingError as exc:
        raise ValueError(f"invalid PostgreSQL DSN {redact_dsn(dsn or '')!r}: {str(exc).strip()}") from None
    except psycopg2.OperationalError as exc:
        raise ConnectionError(
            f"cannot connect to PostgreSQL at {redact_dsn(dsn or '(PG* environment)')}: {str(exc).strip()}. "
            "Check that the server runs and the DSN (postgresql://user@host:port/db) or PG* variables are right."
        ) from None


def _table_ident(table: str):
    from psycopg2 import sql

    parts = table.split(".")
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise ValueError(f"table must be 'name' or 'schema.name', got {table!r}")
    return sql.Identifier(*parts)


def load_postgres(
    dsn: str | None = None,
    *,
    table: str = DEFAULT_TABLE,
    columns: tuple[str, str, str] = DEFAULT_COLUMNS,
    batch_size: int = 5000,
    key_style: str = "command",
    max_points: int = DEFAULT_MAX_POINTS,
    limit: int | None = None,
    progress: bool | None = None,
    builder=None,
    **_unused,
) -> StrokeDataset:
    """Read ``(id, key, strokes)`` rows through a server-side cursor, in batches.

    ``columns`` names the id, key and strokes columns. Strokes may be stored as
    ``json``, ``jsonb`` or ``text``: they are read as text and parsed by the same
    vectorized parser as the dump. Bad rows are skipped and reported.
    """
    import psycopg2
    from psycopg2 import sql

    if len(columns) != 3:
        raise ValueError("columns must name (id, key, strokes)")
    tbl = _table_ident(table)
    cid, ckey, cstrokes = (sql.Identifier(c) for c in columns)
    limit_sql = sql.SQL(" LIMIT {}").format(sql.Literal(int(limit))) if limit is not None else sql.SQL("")
    conn = connect(dsn)
    where = _where(dsn)
    if builder is None:  # a StoreWriter streams the rows to disk instead
        builder = DatasetBuilder(name=f"{where} table {table}")
    parser = RowParser(builder, key_style=key_style, max_points=max_points)
    total = None
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(tbl))
            total = cur.fetchone()[0]
        if limit is not None:
            total = min(total, int(limit))
        # the id stays uncast: "ORDER BY id" would otherwise sort the text output column
        query = sql.SQL("SELECT {}, {}::text, {}::text FROM {} ORDER BY {}").format(
            cid, ckey, cstrokes, tbl, cid
        ) + limit_sql
        with conn.cursor(name="strokes_load") as cur, tqdm(
            total=total, unit="row", desc="postgres", disable=tqdm_disable(progress)
        ) as bar:
            cur.itersize = batch_size
            cur.execute(query)
            while True:
                rows = cur.fetchmany(batch_size)
                if not rows:
                    break
                parser.add_batch(
                    [f"id {r[0]}" for r in rows],
                    [r[1] for r in rows],
                    [None if r[2] is None else r[2].encode() for r in rows],
                )
                bar.update(len(rows))
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        if not conn.closed:  # the server refused something (a timeout, a cancel): not a lost connection
            raise
        of = "" if total is None else f" of {total}"
        raise ConnectionError(
            f"PostgreSQL connection to {where} lost after {parser.rows_in}{of} rows of table {table!r} were read "
            f"({_reason(exc)}); nothing was loaded: load again once the server is back"
        ) from exc
    finally:
        conn.close()
    info = {"format": "postgres", "records_in": parser.rows_in, "unit": "rows", "table": table}
    return _finish(builder, info)


def _where(dsn: str | None) -> str:
    """The server, for messages: the DSN without its password."""
    return redact_dsn(dsn) if dsn else "(PG* environment)"


def _reason(exc: BaseException) -> str:
    """The first line of a driver error (libpq's messages run on over several lines)."""
    text = str(exc).strip()
    return redact_dsn(text.splitlines()[0]) if text else type(exc).__name__


class _CopyStream(io.RawIOBase):
    """A file-like reader over an iterator of byte blocks, for ``copy_expert``."""

    def __init__(self, blocks, bar=None):
        self._blocks = iter(blocks)
        self._buf = b""
        self._bar = bar
        self.error: Exception | None = None  # what broke the stream, re-raised after COPY aborts
        self.rows = 0  # rows handed to the driver so far (whole COPY lines)

    def readable(self):
        return True

    def _more(self) -> bool:
        try:
            data = next(self._blocks, None)
        except ValueError as exc:
            self.error = exc
            raise
        if data is None:
            return False
        if self._bar is not None:
            self._bar.update(len(data))
        self._buf += data
        return True

    def read(self, size=-1):
        while (size < 0 or len(self._buf) < size) and self._more():
            pass
        if size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        self.rows += out.count(b"\n")
        return out

    def readline(self, size=-1):
        while b"\n" not in self._buf and self._more():
            pass
        i = self._buf.find(b"\n")
        i = len(self._buf) if i < 0 else i + 1
        out, self._buf = self._buf[:i], self._buf[i:]
        self.rows += out.count(b"\n")
        return out


def _create_table(cur, table: str, columns, replace: bool) -> None:
    from psycopg2 import sql

    tbl = _table_ident(table)
    cid, ckey, cstrokes = (sql.Identifier(c) for c in columns)
    if replace:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(tbl))
    cur.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({} integer PRIMARY KEY, {} text NOT NULL, {} text NOT NULL)").format(
            tbl, cid, ckey, cstrokes
        )
    )


def _copy_in(conn, dsn: str | None, table: str, names, stream: _CopyStream, replace: bool, what: str) -> int:
    """Create ``table`` and COPY ``stream`` into it, in one transaction: all rows or none; return the count.

    A dump that breaks re-raises its own error; a connection lost before the
    commit is a ConnectionError saying that nothing was written (the server
    rolls back a transaction whose connection is gone); one lost during the
    commit says that the outcome is unknown.
    """
    import psycopg2
    from psycopg2 import sql

    where = _where(dsn)
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        _table_ident(table), sql.SQL(", ").join(sql.Identifier(c) for c in names)
    )
    try:
        with conn.cursor() as cur:
            _create_table(cur, table, DEFAULT_COLUMNS, replace)
            cur.copy_expert(copy.as_string(conn), stream, size=1 << 20)
            count = cur.rowcount
    except Exception as exc:
        if not conn.closed:
            with contextlib.suppress(psycopg2.Error):  # a failed rollback must not hide why COPY failed
                conn.rollback()
        if stream.error is not None:  # the dump broke, not the server: say why
            raise stream.error from None
        if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and conn.closed:
            raise ConnectionError(
                f"PostgreSQL connection to {where} lost during {what} into table {table!r}, after {stream.rows} "
                f"rows were sent ({_reason(exc)}); the transaction was rolled back: no rows were written"
            ) from exc
        raise
    try:
        conn.commit()
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        if not conn.closed:
            raise
        raise ConnectionError(
            f"PostgreSQL connection to {where} lost while committing {what} ({count} rows) into table {table!r} "
            f"({_reason(exc)}); whether the rows were written is unknown: check the table"
        ) from exc
    return count


def copy_dump_to_postgres(
    dump,
    dsn: str | None = None,
    *,
    table: str = DEFAULT_TABLE,
    dump_table: str = DEFAULT_TABLE,
    replace: bool = False,
    progress: bool | None = None,
) -> int:
    """Stream a detexify dump's COPY block into ``table`` with COPY; return the row count.

    Creates the table when missing; ``replace=True`` drops it first. The whole
    load is one transaction: on error (a broken dump, a lost connection)
    nothing is written.
    """
    dump = Path(dump)
    conn = connect(dsn)
    try:
        with open(dump, "rb") as fh, tqdm(
            total=dump.stat().st_size, unit="B", unit_scale=True, desc="COPY", disable=tqdm_disable(progress)
        ) as bar:
            lineno, names = _find_copy(fh, dump_table, str(dump))
            stream = _CopyStream(block for block, _ in _copy_blocks(fh, lineno + 1, None, bar, str(dump)))
            count = _copy_in(conn, dsn, table, names, stream, replace, f"the COPY of {dump}")
    finally:
        conn.close()
    log.info("COPY loaded %d rows from %s into %s", count, dump, table)
    return count


def save_postgres(ds: StrokeDataset, dsn: str | None = None, *, table: str = DEFAULT_TABLE, replace: bool = False) -> int:
    """Write a dataset into a detexify-shaped table with COPY, in one transaction; return the row count."""
    blocks = copy_rows(ds)  # checks the labels before connecting
    conn = connect(dsn)
    try:
        stream = _CopyStream(b.encode() for b in blocks)
        return _copy_in(conn, dsn, table, DEFAULT_COLUMNS, stream, replace, f"the COPY of dataset {ds.name!r}")
    finally:
        conn.close()
