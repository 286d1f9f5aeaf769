"""The memory-mapped store: round trips, streaming import from dumps and PostgreSQL, sharing."""

from __future__ import annotations

import json

import numpy as np
import pytest

import strokes
from strokes.io import import_to_store, infer_format, load, save
from strokes.io.store import StoreWriter, is_store, load_store, save_store
from strokes.synthetic import generate


@pytest.fixture(scope="module")
def ds():
    return generate(n_writers=5, samples_per_writer=2, seed=2)


def _same(a, b):
    assert a.fingerprint() == b.fingerprint()
    assert a.vocab == b.vocab and a.writers() == b.writers() and a.sources() == b.sources()
    assert (a.t is None) == (b.t is None)
    if a.t is not None:
        assert np.array_equal(a.t, b.t, equal_nan=True)


def test_round_trip_is_exact_and_mapped(ds, tmp_path):
    path = tmp_path / "x.strokes"
    save(ds, path)
    assert is_store(path) and infer_format(path) == "store"
    back = load(path)
    _same(ds, back)
    assert back.info["format"] == "store" and back.info["source_format"] == "synthetic" and back.info["mmap"]
    # the big arrays are views of read-only file mappings, not copies
    base = back.xy
    while getattr(base, "base", None) is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)
    assert not back.xy.flags.writeable


def test_unmapped_load(ds, tmp_path):
    save_store(ds, tmp_path / "x.strokes")
    back = load_store(tmp_path / "x.strokes", mmap=False)
    _same(ds, back)
    assert back.xy.flags.writeable


def test_streaming_import_from_a_dump_equals_the_plain_load(ds, tmp_path):
    dump = tmp_path / "x.sql"
    ds.save(dump)
    plain = load(dump, progress=False)
    stored = import_to_store(dump, tmp_path / "x.strokes", progress=False)
    _same(plain, stored)
    assert stored.info["records_in"] == len(stored) + len(stored.skipped)
    assert stored.info["source_format"] == "detexify-sql"


def test_streaming_import_keeps_skipped_records(tmp_path):
    dump = tmp_path / "bad.sql"
    dump.write_text(
        "COPY public.samples (id, key, strokes) FROM stdin;\n"
        '1\tlatex2e-OT1-_alpha\t[[{"x":1,"y":2,"t":3},{"x":2,"y":3,"t":4}]]\n'
        "2\tlatex2e-OT1-_beta\tnot json\n"
        '3\tlatex2e-OT1-_alpha\t[[{"x":5,"y":2,"t":3}]]\n'
        "\\.\n"
    )
    stored = import_to_store(dump, tmp_path / "bad.strokes", progress=False)
    assert len(stored) == 2 and len(stored.skipped) == 1
    assert "not valid JSON" in stored.skipped[0].reason
    assert stored.info["records_in"] == 3
    meta = json.loads((tmp_path / "bad.strokes" / "meta.json").read_text())
    assert len(meta["skipped"]) == 1


@pytest.mark.postgres
def test_streaming_import_from_postgres(ds, pg_dsn, pg_table):
    from strokes.io.postgres import save_postgres

    save_postgres(ds, pg_dsn, table=pg_table, replace=True)
    import tempfile
    from pathlib import Path

    out = Path(tempfile.mkdtemp()) / "pg.strokes"
    stored = import_to_store(pg_dsn, out, table=pg_table, progress=False)
    plain = load(pg_dsn, table=pg_table, progress=False)
    _same(plain, stored)


def test_a_failed_import_leaves_nothing(tmp_path):
    w = StoreWriter(tmp_path / "half.strokes")
    w.add([np.zeros((2, 2))], "a")
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_to_clobber(tmp_path, ds):
    save_store(ds, tmp_path / "x.strokes")
    with pytest.raises(FileExistsError, match="overwrite"):
        StoreWriter(tmp_path / "x.strokes")


def test_writer_chunks_and_single_samples_mix_in_order(tmp_path):
    w = StoreWriter(tmp_path / "m.strokes")
    w.add([np.array([[0.0, 0.0], [1, 1]])], "b", "w2", "s1")
    w.add_chunk(np.array([[5.0, 5.0], [6, 6], [7, 7]]), None, [2, 1], [2], ["a"], [None], ["s2"])
    w.add([np.array([[9.0, 9.0, 100.0]])], "c", "w1", None)
    got = w.build()
    assert [s.label for s in got] == ["b", "a", "c"]
    assert got.vocab == ["a", "b", "c"] and got.writer_names == ["w1", "w2"]
    assert [s.writer for s in got] == ["w2", None, "w1"]
    assert [len(s.strokes) for s in got] == [1, 2, 1]
    assert np.isnan(got.t[0]) and got.t[-1] == 100.0


def test_not_a_store(tmp_path):
    with pytest.raises(ValueError, match="not a strokes store"):
        load_store(tmp_path)


def test_newer_version_is_refused(ds, tmp_path):
    save_store(ds, tmp_path / "x.strokes")
    meta = json.loads((tmp_path / "x.strokes" / "meta.json").read_text())
    meta["version"] = 99
    (tmp_path / "x.strokes" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="upgrade strokes"):
        load_store(tmp_path / "x.strokes")


def test_source_names_stream_with_bounded_memory(monkeypatch, tmp_path):
    monkeypatch.setattr(StoreWriter, "SOURCE_MEMORY", 3)
    w = StoreWriter(tmp_path / "s.strokes")
    names = [f"row {i % 5}" for i in range(12)]  # repeats beyond the remembered window
    for i, n in enumerate(names):
        w.add([np.array([[float(i), 0.0]])], "a", None, n)
    got = w.build()
    assert got.sources() == names
    assert len(got.source_names) <= 12 and set(got.source_names) == set(names)


def test_cli_import_streams_into_a_store(tmp_path, ds, capsys):
    from strokes.cli import main

    dump = tmp_path / "x.sql"
    ds.save(dump)
    assert main(["import", str(dump), "-o", str(tmp_path / "x.strokes")]) == 0
    assert "wrote" in capsys.readouterr().out
    back = load(tmp_path / "x.strokes")
    assert back.info["source_format"] == "detexify-sql" and back.fingerprint() == load(dump, progress=False).fingerprint()
