"""Our .npz cache: exact round trip, no pickles, versioned, atomic."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

import strokes
from strokes.dataset import DatasetBuilder, Skipped, StrokeDataset
from strokes.io import infer_format
from strokes.io.npz import MAGIC, VERSION, load_npz, save_npz
from datasets import assert_same_data


def full_dataset() -> StrokeDataset:
    """Every attribute set: t (some NaN), writers, sources, skipped records, info, synthetic."""
    b = DatasetBuilder(name="unit-test data", synthetic=True)
    t0 = 1400702665265.0
    b.add([np.array([[0, 0, t0], [1.5, 2.25, t0 + 16]]), np.array([[5, 5, t0 + 100]])], r"\alpha", "w1", "HAMEX/a.inkml")
    b.add([np.array([[1.5, -2.25], [3.125, 4]])], "(", None, "HAMEX/a.inkml")
    b.add([np.array([[10, 20, 0.5]])], "ü∑", "writer ünicode", None)
    b.add([np.array([[-7, 8]]), np.array([[9, -10]]), np.array([[0.1, 0.2], [0.3, 0.7]])], r"\{", "w1", "b.inkml")
    b.skip("MfrDB/MfrDB0104.inkml", "malformed XML (line 15); the file is probably truncated")
    b.skip("x.inkml#7", "symbol has no truth annotation")
    return b.build({"format": "inkml", "files_in": 3, "records_in": 3})


def assert_equal(a: StrokeDataset, b: StrokeDataset) -> None:
    assert_same_data(a, b)
    np.testing.assert_array_equal(a.writer_ids, b.writer_ids)
    np.testing.assert_array_equal(a.source_ids, b.source_ids)
    assert a.writer_names == b.writer_names
    assert a.source_names == b.source_names
    assert a.writers() == b.writers() and a.sources() == b.sources()
    assert a.skipped == b.skipped
    assert a.name == b.name
    assert a.synthetic == b.synthetic
    assert a.fingerprint() == b.fingerprint()
    for i in range(len(a)):
        sa, sb = a[i], b[i]
        assert sa.label == sb.label and sa.writer == sb.writer and sa.source == sb.source
        assert len(sa.strokes) == len(sb.strokes)
        for x, y in zip(sa.strokes, sb.strokes):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_everything(tmp_path, compress):
    ds = full_dataset()
    p = tmp_path / "cache.npz"
    save_npz(ds, p, compress=compress)
    back = load_npz(p)
    assert_equal(ds, back)
    assert back.synthetic is True
    assert [str(s) for s in back.skipped] == [str(s) for s in ds.skipped]
    assert isinstance(back.skipped[0], Skipped)
    assert back.info["files_in"] == 3 and back.info["format"] == "inkml"
    assert back.info["cache"] == str(p)
    assert back[2].writer == "writer ünicode" and back[2].label == "ü∑"


def test_round_trip_without_t_and_real(tmp_path):
    b = DatasetBuilder(name="real")
    b.add([np.array([[1.0, 2.0], [3.0, 4.0]])], "a")
    b.add([np.array([[5.0, 6.0]])], "b")
    ds = b.build()
    assert ds.t is None
    ds.save(tmp_path / "r.npz")
    back = strokes.load(tmp_path / "r.npz")
    assert_equal(ds, back)
    assert back.synthetic is False and back.t is None
    assert back.writers() == [None, None] and back.skipped == []


def test_round_trip_empty_dataset(tmp_path):
    ds = DatasetBuilder(name="empty").build()
    ds.save(tmp_path / "e.npz")
    back = strokes.load(tmp_path / "e.npz")
    assert len(back) == 0 and back.vocab == [] and back.xy.shape == (0, 2)


def test_subset_round_trip(tmp_path):
    ds = full_dataset()[[3, 0]]
    ds.save(tmp_path / "s.npz")
    assert_equal(ds, strokes.load(tmp_path / "s.npz"))


def test_load_infers_npz(tmp_path):
    p = tmp_path / "x.npz"
    full_dataset().save(p)
    assert infer_format(p) == "npz"
    assert infer_format(str(p)) == "npz"
    assert_equal(full_dataset(), strokes.load(str(p)))
    with pytest.raises(FileNotFoundError):
        strokes.load(tmp_path / "missing.npz")


# ------------------------------------------------------------------ refusing unsafe or foreign files
def _arrays_of(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class _Marker:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("field", ["vocab", "format", "xy"])
def test_object_arrays_are_refused(tmp_path, field):
    good = tmp_path / "good.npz"
    full_dataset().save(good)
    arrays = _arrays_of(good)
    marker = tmp_path / "pwned"
    arrays[field] = np.array([_Marker(marker), "x"], dtype=object)
    evil = tmp_path / "evil.npz"
    np.savez(evil, allow_pickle=True, **arrays)
    with pytest.raises(ValueError):
        load_npz(evil)
    assert not marker.exists()


def test_plain_pickle_with_npz_name_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "p.npz"
    p.write_bytes(pickle.dumps(_Marker(marker)))
    with pytest.raises(ValueError, match="not a strokes .npz cache"):
        strokes.load(p)
    assert not marker.exists()


def test_wrong_magic_or_no_magic(tmp_path):
    arrays = _arrays_of(_saved(tmp_path))
    arrays["format"] = np.array("someone-elses-npz")
    np.savez(tmp_path / "wrong.npz", **arrays)
    with pytest.raises(ValueError, match=f"no '{MAGIC}' marker"):
        load_npz(tmp_path / "wrong.npz")
    np.savez(tmp_path / "plain.npz", a=np.arange(3))
    with pytest.raises(ValueError, match="not a strokes .npz cache"):
        strokes.load(tmp_path / "plain.npz")


def test_newer_version_is_refused(tmp_path):
    arrays = _arrays_of(_saved(tmp_path))
    assert int(arrays["version"]) == VERSION
    arrays["version"] = np.array(VERSION + 1)
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(ValueError, match=rf"version {VERSION + 1} is newer.*upgrade"):
        load_npz(tmp_path / "future.npz")


def _saved(tmp_path: Path) -> Path:
    p = tmp_path / "base.npz"
    full_dataset().save(p)
    return p


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_damaged_cache_raises_value_error(tmp_path, damage):
    good = _saved(tmp_path)
    data = good.read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    with pytest.raises(ValueError, match="bad.npz"):
        load_npz(bad)


# ------------------------------------------------------------------ atomic writes
def _temps(d: Path) -> list[str]:
    return [p.name for p in d.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_leaves_no_temp_and_replaces(tmp_path):
    p = tmp_path / "c.npz"
    p.write_bytes(b"old")
    full_dataset().save(p)
    assert _temps(tmp_path) == []
    assert sorted(x.name for x in tmp_path.iterdir()) == ["c.npz"]
    assert_equal(full_dataset(), load_npz(p))
    (tmp_path / "sub" / "dir").mkdir(parents=True)
    full_dataset().save(tmp_path / "sub" / "dir" / "n.npz")
    assert sorted(x.name for x in (tmp_path / "sub" / "dir").iterdir()) == ["n.npz"]


class _Bomb:
    def __array__(self, *args, **kwargs):
        raise RuntimeError("boom while writing")


def test_failure_mid_write_keeps_old_file(tmp_path):
    p = tmp_path / "c.npz"
    p.write_bytes(b"old content")
    ds = full_dataset()
    ds.t = _Bomb()  # the last array written: fails after the others are in the zip
    with pytest.raises(RuntimeError, match="boom"):
        save_npz(ds, p)
    assert p.read_bytes() == b"old content"
    assert _temps(tmp_path) == []
    assert sorted(x.name for x in tmp_path.iterdir()) == ["c.npz"]


def test_atomic_write_permissions_follow_umask_or_replaced_file(tmp_path):
    old = os.umask(0o022)
    try:
        p = tmp_path / "new.npz"
        full_dataset().save(p)
        assert p.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
        q = tmp_path / "kept.npz"
        q.write_bytes(b"old")
        q.chmod(0o640)
        full_dataset().save(q)
        assert q.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
