"""The real data in ../shared/data: all of CROHME, the npz cache of it, and detexify's CouchDB sample."""

from __future__ import annotations

import time

import numpy as np
import pytest

import strokes

pytestmark = pytest.mark.shared

FOLDER_FILES = {"HAMEX": 1847, "KAIST": 993, "MathBrush": 2507, "MfrDB": 1207 - 2, "expressmatch": 501, "extension": 25}


_load_seconds: dict[str, float] = {}


@pytest.fixture(scope="module")
def crohme(shared_data):
    t0 = time.perf_counter()
    ds = strokes.load(shared_data / "crohme", progress=False)
    _load_seconds["crohme"] = time.perf_counter() - t0
    return ds


def test_crohme_counts(crohme):
    info = crohme.info
    assert info["files_in"] == 7080
    assert info["files_read"] == 7078
    assert info["files_skipped"] == 2
    assert info["files_in"] == info["files_read"] + info["files_skipped"]
    assert len(crohme) == 68211
    assert info["symbols_in"] == len(crohme) + info["symbols_skipped"]
    assert len(crohme.vocab) == 101
    assert crohme.vocab == sorted(crohme.vocab)
    assert {"x", "(", r"\alpha", r"\sqrt", r"\{", "-"} <= set(crohme.vocab)
    assert crohme.synthetic is False
    np.testing.assert_array_equal(np.bincount(crohme.labels, minlength=101) > 0, True)  # every class used


def test_crohme_bad_files_skipped_with_reasons(crohme):
    skipped = {s.source: s.reason for s in crohme.skipped}
    assert set(skipped) == {"MfrDB/MfrDB0104.inkml", "MfrDB/MfrDB3088.inkml"}
    assert "malformed XML" in skipped["MfrDB/MfrDB0104.inkml"]
    assert "truncated" in skipped["MfrDB/MfrDB0104.inkml"]
    assert "empty file" in skipped["MfrDB/MfrDB3088.inkml"]


def test_crohme_sources_and_writers(crohme):
    assert len(crohme.source_names) == 7078  # every readable file gave symbols
    folders = np.array([s.split("/")[0] for s in crohme.source_names])[crohme.source_ids]
    files_per_folder = {f: len(set(crohme.source_ids[folders == f].tolist())) for f in FOLDER_FILES}
    assert files_per_folder == FOLDER_FILES
    assert (crohme.source_ids >= 0).all()
    assert len(crohme.writer_names) > 100
    writers = np.array(crohme.writer_ids)
    assert (writers[folders == "HAMEX"] >= 0).all()
    assert all(crohme.writer_names[w].startswith("depart") for w in set(writers[folders == "HAMEX"].tolist()))
    assert (writers[folders == "MathBrush"] == -1).all()  # no writer annotation there
    assert (writers[folders == "KAIST"] >= 0).all()


def test_crohme_points_are_finite_and_structured(crohme):
    assert np.isfinite(crohme.xy).all()
    assert (crohme.points_per_sample() >= 1).all()
    assert (crohme.strokes_per_sample() >= 1).all()
    assert crohme.t is not None
    has_t = ~np.isnan(crohme.t)
    assert 0 < has_t.mean() < 1  # some collections record time
    assert np.isfinite(crohme.t[has_t]).all()
    # per sample, t is all-or-nothing, so [x, y, t] strokes come out whole
    po = crohme.point_offsets
    n_t = np.add.reduceat(has_t.astype(np.int64), po[:-1])
    assert np.all((n_t == 0) | (n_t == np.diff(po)))
    i = int(np.flatnonzero(n_t > 0)[0])
    assert crohme[i].strokes[0].shape[1] == 3


def test_crohme_nbytes_reasonable(crohme):
    p = crohme.num_points
    assert 2_500_000 < p < 4_000_000
    assert crohme.nbytes == sum(
        a.nbytes for a in (crohme.xy, crohme.t, crohme.stroke_offsets, crohme.sample_offsets, crohme.labels, crohme.writer_ids, crohme.source_ids)
    )
    assert 16 * p <= crohme.nbytes < 20 * p  # float32 xy + float64 t per point, small overhead
    assert crohme.nbytes < 80_000_000


def test_crohme_load_time(crohme):
    assert _load_seconds["crohme"] < 30  # ~5 s here; guards against a per-point Python slowdown


def test_crohme_npz_round_trip_is_fast(crohme, tmp_path):
    p = tmp_path / "crohme.npz"
    crohme.save(p)
    assert p.stat().st_size < crohme.nbytes
    t0 = time.perf_counter()
    back = strokes.load(p)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"npz load took {elapsed:.2f} s"
    for attr in ("xy", "stroke_offsets", "sample_offsets", "labels", "writer_ids", "source_ids"):
        np.testing.assert_array_equal(getattr(crohme, attr), getattr(back, attr))
    np.testing.assert_array_equal(crohme.t, back.t)
    assert back.vocab == crohme.vocab
    assert back.writer_names == crohme.writer_names and back.source_names == crohme.source_names
    assert back.skipped == crohme.skipped
    assert back.fingerprint() == crohme.fingerprint()
    assert back.info["files_read"] == 7078


def test_couchdb_sample(shared_data):
    ds = strokes.load(shared_data / "detexify" / "couchdb-sample.json", progress=False)
    assert len(ds) == 1 and ds.skipped == []
    assert ds.label_names() == [r"\bigstar"]
    assert ds.info["records_in"] == 1
    assert ds.t is not None and not np.isnan(ds.t).any()
    s = ds[0]
    assert all(st.shape[1] == 3 for st in s.strokes)
    np.testing.assert_array_equal(s.strokes[0][0], [223, 58, 1400702665265])
    assert np.all(np.diff(s.strokes[0][:, 2]) >= 0)  # time runs forward within a stroke
    raw = strokes.load(shared_data / "detexify" / "couchdb-sample.json", key_style="key", progress=False)
    assert raw.label_names() == ["amssymb-OT1-_bigstar"]
