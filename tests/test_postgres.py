"""PostgreSQL: dumps loaded with COPY, tables read back, on a real server (no mocks)."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extensions import parse_dsn

import strokes
from strokes import cli
from strokes.dataset import DatasetBuilder, StrokeDataset
from strokes.io.postgres import connect, copy_dump_to_postgres, load_postgres, redact_dsn, save_postgres
from datasets import assert_same_data as assert_same
from datasets import small_dataset as _small

pytestmark = pytest.mark.postgres


def small_dataset():
    return _small(repeat_label=True)


def execute(dsn: str, query, params=None):
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def drop(dsn: str, *parts: str) -> None:
    execute(dsn, sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(*parts)))


# ------------------------------------------------------------------ round trips
def test_dump_copy_load_round_trip(tmp_path, pg_dsn, pg_table):
    ds = small_dataset()
    dump = tmp_path / "d.sql"
    ds.save(dump)
    n = copy_dump_to_postgres(dump, pg_dsn, table=pg_table, progress=False)
    assert n == len(ds)
    assert execute(pg_dsn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(pg_table))) == [(len(ds),)]
    back = strokes.load(pg_dsn, table=pg_table, progress=False)
    assert_same(ds, back)
    assert back.skipped == []
    assert back.sources() == [f"id {i}" for i in range(1, len(ds) + 1)]
    assert back.info["records_in"] == len(ds) and back.info["format"] == "postgres"
    assert back.info["table"] == pg_table
    # the key column holds real backslashes (COPY unescaped them)
    keys = execute(pg_dsn, sql.SQL("SELECT key FROM {} ORDER BY id").format(sql.Identifier(pg_table)))
    assert keys[0] == ("latex2e-OT1-\\alpha",) and keys[4] == ("latex2e-OT1-__",)


def test_copy_refuses_duplicates_and_replace_starts_over(tmp_path, pg_dsn, pg_table):
    ds = small_dataset()
    dump = tmp_path / "d.sql"
    ds.save(dump)
    copy_dump_to_postgres(dump, pg_dsn, table=pg_table, progress=False)
    with pytest.raises(psycopg2.IntegrityError):  # same primary keys again: one transaction, nothing added
        copy_dump_to_postgres(dump, pg_dsn, table=pg_table, progress=False)
    assert len(load_postgres(pg_dsn, table=pg_table, progress=False)) == len(ds)
    assert copy_dump_to_postgres(dump, pg_dsn, table=pg_table, replace=True, progress=False) == len(ds)
    assert_same(ds, load_postgres(pg_dsn, table=pg_table, progress=False))


def test_save_postgres_round_trip(pg_dsn, pg_table):
    ds = small_dataset()
    assert save_postgres(ds, pg_dsn, table=pg_table) == len(ds)
    assert_same(ds, strokes.load(pg_dsn, table=pg_table, progress=False))
    sub = ds[[1, 3]]
    assert save_postgres(sub, pg_dsn, table=pg_table, replace=True) == 2
    back = load_postgres(pg_dsn, table=pg_table, progress=False)
    assert back.label_names() == ["(", "-"]
    np.testing.assert_array_equal(back.xy, sub.xy)


def test_limit_and_batches(pg_dsn, pg_table):
    ds = small_dataset()
    save_postgres(ds, pg_dsn, table=pg_table)
    two = strokes.load(pg_dsn, table=pg_table, limit=2, progress=False)
    assert len(two) == 2 and two.info["records_in"] == 2
    assert two.sources() == ["id 1", "id 2"]
    assert two.label_names() == ds.label_names()[:2]
    tiny_batches = load_postgres(pg_dsn, table=pg_table, batch_size=2, progress=False)
    assert_same(ds, tiny_batches)


ROWS_JSON = [
    (1, "latex2e-OT1-_alpha", "[[[10,20,1400000000000],[11,21,1400000000016]],[[30,40,1400000000100]]]"),
    (2, "amssymb-OT1-\\not_sim", "[ [ [1.5, -2.25] , [3, 4] ] ]"),
    (3, "latex2e-OT1-__", "[[[0,0,5],[1,1,6]],[[2,2],[3.25,3]]]"),
    (10, "latex2e-OT1-_alpha", '[[{"x": 7, "y": 8, "t": 9}]]'),
]


@pytest.mark.parametrize("column_type", ["text", "json", "jsonb"])
def test_strokes_column_types_read_the_same(pg_dsn, pg_table, column_type):
    tbl = sql.Identifier(pg_table)
    execute(
        pg_dsn,
        sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, key text, strokes {})").format(tbl, sql.SQL(column_type)),
    )
    for r in ROWS_JSON:
        execute(pg_dsn, sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(tbl), r)
    ds = strokes.load(pg_dsn, table=pg_table, progress=False)
    assert ds.skipped == []
    assert ds.label_names() == [r"\alpha", r"\not_sim", r"\_", r"\alpha"]
    assert sorted(ds.sources()) == sorted(["id 1", "id 2", "id 3", "id 10"])
    by_src = {s: ds[i] for i, s in enumerate(ds.sources())}
    np.testing.assert_array_equal(by_src["id 1"].strokes[0], [[10, 20, 1400000000000], [11, 21, 1400000000016]])
    np.testing.assert_array_equal(by_src["id 2"].strokes[0], [[1.5, -2.25], [3, 4]])
    assert [s.shape for s in by_src["id 3"].strokes] == [(2, 2), (2, 2)]  # some points lack t
    np.testing.assert_array_equal(by_src["id 10"].strokes[0], [[7, 8, 9]])


def test_ids_sort_numerically(pg_dsn, pg_table):
    tbl = sql.Identifier(pg_table)
    execute(pg_dsn, sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, key text, strokes text)").format(tbl))
    for i in (10, 9, 100, 1):
        execute(pg_dsn, sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(tbl), (i, f"a-b-k{i}", f"[[[{i},0]]]"))
    ds = strokes.load(pg_dsn, table=pg_table, progress=False)
    assert ds.sources() == ["id 1", "id 9", "id 10", "id 100"]


def test_bad_rows_are_skipped_with_ids(pg_dsn, pg_table):
    tbl = sql.Identifier(pg_table)
    execute(pg_dsn, sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, key text, strokes text)").format(tbl))
    rows = [
        (1, "latex2e-OT1-_alpha", "[[[1,2,3]]]"),
        (2, "latex2e-OT1-_alpha", "not json at all"),
        (3, "latex2e-OT1-_alpha", "[]"),
        (4, "latex2e-OT1-_alpha", None),
        (5, None, "[[[1,2]]]"),
        (6, "", "[[[1,2]]]"),
        (7, "latex2e-OT1-_alpha", "[[[1,2]],[]]"),
        (8, "latex2e-OT1-_beta", "[[[4,5]]]"),
    ]
    for r in rows:
        execute(pg_dsn, sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(tbl), r)
    ds = strokes.load(pg_dsn, table=pg_table, progress=False)
    assert ds.info["records_in"] == len(rows) == len(ds) + len(ds.skipped)
    assert ds.sources() == ["id 1", "id 8"]
    assert ds.label_names() == [r"\alpha", r"\beta"]
    reasons = {s.source: s.reason for s in ds.skipped}
    assert set(reasons) == {"id 2", "id 3", "id 4", "id 5", "id 6", "id 7"}
    assert "not valid JSON" in reasons["id 2"]
    assert "empty" in reasons["id 3"]
    assert "strokes is NULL" in reasons["id 4"]
    assert "key is empty or NULL" in reasons["id 5"] and "key is empty or NULL" in reasons["id 6"]
    assert "stroke 1" in reasons["id 7"]


def test_custom_column_names(pg_dsn, pg_table):
    tbl = sql.Identifier(pg_table)
    execute(pg_dsn, sql.SQL('CREATE TABLE {} ("Sample Id" integer, symbol text, ink jsonb)').format(tbl))
    execute(pg_dsn, sql.SQL("INSERT INTO {} VALUES (5, 'latex2e-OT1-_pi', '[[[1,2],[3,4]]]')").format(tbl))
    ds = load_postgres(pg_dsn, table=pg_table, columns=("Sample Id", "symbol", "ink"), progress=False)
    assert ds.label_names() == [r"\pi"] and ds.sources() == ["id 5"]
    with pytest.raises(ValueError, match="columns"):
        load_postgres(pg_dsn, table=pg_table, columns=("a", "b"), progress=False)


# ------------------------------------------------------------------ identifiers
def test_table_name_needing_quotes(tmp_path, pg_dsn):
    weird = f'Weird Name"x {uuid.uuid4().hex[:6]}'
    ds = small_dataset()
    try:
        assert save_postgres(ds, pg_dsn, table=weird) == len(ds)
        assert_same(ds, strokes.load(pg_dsn, table=weird, progress=False))
        ds.save(tmp_path / "d.sql")
        assert copy_dump_to_postgres(tmp_path / "d.sql", pg_dsn, table=weird, replace=True, progress=False) == len(ds)
        assert_same(ds, load_postgres(pg_dsn, table=weird, progress=False))
        # the name really is stored verbatim (case, space and quote kept)
        found = execute(pg_dsn, "SELECT count(*) FROM pg_tables WHERE tablename = %s", (weird,))
        assert found == [(1,)]
    finally:
        drop(pg_dsn, weird)


def test_injection_shaped_table_name_is_just_a_name(pg_dsn, pg_table):
    save_postgres(small_dataset(), pg_dsn, table=pg_table)
    evil = f"{pg_table}; DROP TABLE {pg_table}; --"
    with pytest.raises(psycopg2.errors.UndefinedTable):
        load_postgres(pg_dsn, table=evil, progress=False)
    assert len(load_postgres(pg_dsn, table=pg_table, progress=False)) == len(small_dataset())


def test_schema_qualified_table(tmp_path, pg_dsn):
    schema = f"s_{uuid.uuid4().hex[:8]}"
    execute(pg_dsn, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        ds = small_dataset()
        ds.save(tmp_path / "d.sql")
        table = f"{schema}.samples"
        assert copy_dump_to_postgres(tmp_path / "d.sql", pg_dsn, table=table, progress=False) == len(ds)
        assert_same(ds, strokes.load(pg_dsn, table=table, progress=False))
        assert execute(pg_dsn, "SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.samples",)) == [(True,)]
    finally:
        execute(pg_dsn, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    for bad in ("a.b.c", ".x", "x.", ""):
        with pytest.raises(ValueError, match="schema.name"):
            load_postgres(pg_dsn, table=bad, progress=False)


# ------------------------------------------------------------------ connecting
def test_dsn_from_pg_environment(monkeypatch, pg_dsn, pg_table):
    ds = small_dataset()
    save_postgres(ds, pg_dsn, table=pg_table)
    params = parse_dsn(pg_dsn)
    for var in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGSERVICE", "PGHOSTADDR"):
        monkeypatch.delenv(var, raising=False)
    env = {"PGHOST": params.get("host"), "PGPORT": params.get("port"), "PGUSER": params.get("user"), "PGDATABASE": params.get("dbname")}
    for var, value in env.items():
        if value:
            monkeypatch.setenv(var, value)
    if params.get("password"):
        monkeypatch.setenv("PGPASSWORD", params["password"])
    back = strokes.load("", format="postgres", table=pg_table, progress=False)
    assert_same(ds, back)
    assert "(PG* environment)" in back.name
    assert_same(ds, strokes.load(None, format="postgres", table=pg_table, progress=False))
    # and save/copy through the environment too
    assert save_postgres(ds, None, table=pg_table, replace=True) == len(ds)


def test_env_dsn_that_points_nowhere_raises_connection_error(monkeypatch):
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", "1")
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "5")
    with pytest.raises(ConnectionError, match=r"PG\* environment"):
        strokes.load("", format="postgres", table="samples")


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://someone:s3cretpw@127.0.0.1:1/nodb",
        "postgres://someone:s3cretpw@127.0.0.1:1/nodb?connect_timeout=5",
        "host=127.0.0.1 port=1 user=someone password=s3cretpw dbname=nodb",
        "postgresql://someone@127.0.0.1:1/nodb?password=s3cretpw",
    ],
)
def test_bad_dsn_raises_connection_error_without_password(dsn):
    with pytest.raises(ConnectionError) as info:
        strokes.load(dsn, table="samples", progress=False)
    msg = str(info.value)
    assert "s3cretpw" not in msg
    assert "***" in msg
    assert "127.0.0.1" in msg


def test_redact_dsn_forms():
    assert redact_dsn("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_dsn("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_dsn("host=h password=pw dbname=d") == "host=h password=*** dbname=d"
    assert "pw" not in redact_dsn("host=h password = pw")


def test_quoted_password_is_fully_redacted():
    dsn = "host=127.0.0.1 port=1 dbname=x password='top secret'"
    assert "secret" not in redact_dsn(dsn)
    with pytest.raises(ConnectionError) as info:
        connect(dsn)
    assert "secret" not in str(info.value)


def test_malformed_dsn_raises_value_error_without_the_password():
    with pytest.raises(ValueError, match="invalid PostgreSQL DSN") as info:
        connect("host=127.0.0.1 port=1 password=s3cretpw bogus")
    assert "s3cretpw" not in str(info.value)


def test_missing_table_is_an_error(pg_dsn):
    with pytest.raises(psycopg2.errors.UndefinedTable):
        load_postgres(pg_dsn, table=f"no_such_{uuid.uuid4().hex[:8]}", progress=False)


# ------------------------------------------------------------------ broken dumps
def test_truncated_dump_writes_nothing(tmp_path, pg_dsn, pg_table):
    dump = tmp_path / "trunc.sql"
    small_dataset().save(dump)
    dump.write_text(dump.read_text().split("\\.")[0])  # cut off the end of the COPY block
    with pytest.raises(Exception, match="truncated"):
        copy_dump_to_postgres(dump, pg_dsn, table=pg_table, progress=False)
    assert execute(pg_dsn, "SELECT to_regclass(%s)", (pg_table,)) == [(None,)]  # not even the table


def test_dump_without_copy_block_raises_value_error(tmp_path, pg_dsn, pg_table):
    dump = tmp_path / "nocopy.sql"
    dump.write_text("CREATE TABLE samples (id integer);\n")
    with pytest.raises(ValueError, match="no 'COPY samples"):
        copy_dump_to_postgres(dump, pg_dsn, table=pg_table, progress=False)


def test_truncated_dump_raises_value_error(tmp_path, pg_dsn, pg_table):
    dump = tmp_path / "trunc.sql"
    small_dataset().save(dump)
    dump.write_text(dump.read_text().split("\\.")[0])
    with pytest.raises(ValueError, match="truncated"):
        copy_dump_to_postgres(dump, pg_dsn, table=pg_table, progress=False)


# ------------------------------------------------------------------ the CLI
def test_cli_db_load_dump_and_dataset(tmp_path, pg_dsn, pg_table, capfd):
    ds = small_dataset()
    dump = tmp_path / "d.sql"
    ds.save(dump)
    assert cli.main(["db", "load", str(dump), "--dsn", pg_dsn, "--table", pg_table]) == 0
    out = capfd.readouterr().out
    assert f"loaded {len(ds)} rows into table {pg_table}" in out
    assert_same(ds, strokes.load(pg_dsn, table=pg_table, progress=False))

    npz = tmp_path / "d.npz"
    ds[[0, 1]].save(npz)
    assert cli.main(["db", "load", str(npz), "--dsn", pg_dsn, "--table", pg_table, "--replace"]) == 0
    out = capfd.readouterr().out
    assert "loaded 2 rows" in out  # (the dataset summary goes to the import-time stdout: see test_cli.py)
    assert strokes.load(pg_dsn, table=pg_table, progress=False).label_names() == ds.label_names()[:2]


def test_cli_db_load_bad_dsn(tmp_path, capsys):
    dump = tmp_path / "d.sql"
    small_dataset().save(dump)
    rc = cli.main(["db", "load", str(dump), "--dsn", "postgresql://u:s3cretpw@127.0.0.1:1/x", "--table", "t"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "strokes: error: cannot connect" in err and "s3cretpw" not in err


# ------------------------------------------------------------------ all of CROHME through a server
@pytest.fixture(scope="module")
def crohme(shared_data):
    return strokes.load(shared_data / "crohme", progress=False)


@pytest.mark.shared
@pytest.mark.slow
def test_full_crohme_through_postgres(crohme, tmp_path, pg_dsn, pg_table):
    dump = tmp_path / "crohme.sql"
    crohme.save(dump)
    assert copy_dump_to_postgres(dump, pg_dsn, table=pg_table, progress=False) == len(crohme) == 68211
    back = strokes.load(pg_dsn, table=pg_table, progress=False)
    assert back.skipped == []
    assert_same(crohme, back)
