"""Teaching symbols: strokes.teach, recognize(..., user_symbols=...), the stores, the CLI (issue 17)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import strokes
from strokes import cli
from strokes.io import infer_format
from strokes.io.user_symbols import (
    ENV_STORE,
    MAX_INKS_PER_CALL,
    MAX_LABEL_CHARS,
    PostgresStore,
    SQLiteStore,
    check_label,
    label_to_store_key,
)
from datasets import star
from strokes.probes import Probe, apply_probe
from strokes.recognizer import get_recognizer
from strokes.teach import METHODS, build_head, calibrate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stars():
    rng = np.random.default_rng(0)
    return [star(rng) for _ in range(40)]


@pytest.fixture(scope="module")
def mini():
    return strokes.load("crohme-mini")


@pytest.fixture(scope="module")
def builtin_sample(mini):
    """300 crohme-mini drawings, their labels, and the untaught model's top-1 for them."""
    sub = mini.subset(np.random.default_rng(1).choice(len(mini), 300, replace=False))
    inks = [sub[i].strokes for i in range(len(sub))]
    truth = np.asarray(sub.vocab, dtype=object)[sub.labels]
    base = np.array([r[0][0] for r in strokes.recognize_batch(inks, k=1)], dtype=object)
    return inks, truth, base


def drawings_of(ds, label, n=None):
    idx = np.flatnonzero(np.asarray(ds.vocab, dtype=object)[ds.labels] == label)[:n]
    return [ds[i].strokes for i in idx]


def count_rows(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM samples").fetchone()[0]


# ------------------------------------------------------------------------------------ the method
@pytest.mark.parametrize("method", METHODS)
def test_taught_new_symbol_is_recognized_and_builtin_ones_stay(tmp_path, stars, builtin_sample, method):
    """Five drawings of a symbol the model lacks make it the top answer for new drawings; built-in answers do not change."""
    store = tmp_path / "u.sqlite"
    rec = get_recognizer()
    before = [r[0][0] for r in rec.batch(stars[10:], 1)]
    assert "\\star" not in before
    result = strokes.teach("\\star", stars[:5], user_symbols=store)
    assert result.count == 5 and result.total == 5 and result.ids == (1, 2, 3, 4, 5)
    top = [r[0][0] for r in rec.batch(stars[10:], 1, store, method)]
    assert np.mean(np.array(top) == "\\star") >= 0.9, top
    inks, truth, base = builtin_sample
    after = np.array([r[0][0] for r in rec.batch(inks, 1, store, method)], dtype=object)
    assert np.mean(after == base) >= 0.98
    assert np.mean(after == truth) >= np.mean(base == truth) - 0.01


def test_one_drawing_is_enough(tmp_path, stars):
    """A single taught drawing already names the symbol (the leave-one-out spread falls back to its prior)."""
    strokes.teach("\\star", stars[:1], user_symbols=tmp_path / "u.sqlite")
    top = [r[0][0] for r in strokes.recognize_batch(stars[10:], k=1, user_symbols=tmp_path / "u.sqlite")]
    assert np.mean(np.array(top) == "\\star") >= 0.8


def test_teaching_a_known_label_adapts_it_to_the_users_style(tmp_path, mini):
    """Rotated 'a's, taught as 'a', are recognized far better afterwards; 'a' is listed once, not twice."""
    ds = mini.subset(np.flatnonzero(np.asarray(mini.vocab, dtype=object)[mini.labels] == "a"))
    rotated = apply_probe(ds, Probe("style", "rotate", 35.0))
    inks = [rotated[i].strokes for i in range(len(rotated))]
    base = np.mean([r[0][0] == "a" for r in strokes.recognize_batch(inks[5:], k=1)])
    strokes.teach("a", inks[:5], user_symbols=tmp_path / "u.sqlite")
    res = strokes.recognize_batch(inks[5:], k=10, user_symbols=tmp_path / "u.sqlite")
    adapted = np.mean([r[0][0] == "a" for r in res])
    assert adapted >= base + 0.2, (base, adapted)
    assert all(len({label for label, _ in r}) == 10 for r in res)  # no label twice
    # the usual way of writing 'a' still works
    plain = drawings_of(mini, "a")[5:60]
    before = np.mean([r[0][0] == "a" for r in strokes.recognize_batch(plain, k=1)])
    after = np.mean([r[0][0] == "a" for r in strokes.recognize_batch(plain, k=1, user_symbols=tmp_path / "u.sqlite")])
    assert after >= before - 0.02


def test_probabilities_cover_builtin_and_taught_labels(tmp_path, stars):
    """With k large, every built-in and taught label comes back once and the probabilities sum to 1."""
    strokes.teach("\\star", stars[:3], user_symbols=tmp_path / "u.sqlite")
    strokes.teach("a", stars[3:5], user_symbols=tmp_path / "u.sqlite")  # a known label: no new entry
    res = strokes.recognize(stars[20], k=10_000, user_symbols=tmp_path / "u.sqlite")
    labels = [lab for lab, _ in res]
    vocab = get_recognizer().classes
    assert sorted(labels) == sorted(vocab + ["\\star"])
    assert sum(p for _, p in res) == pytest.approx(1.0, abs=1e-4)
    assert [p for _, p in res] == sorted((p for _, p in res), reverse=True)


def test_batch_equals_one_by_one(tmp_path, stars, mini):
    """recognize_batch with taught symbols gives what recognize gives ink by ink."""
    strokes.teach("\\star", stars[:4], user_symbols=tmp_path / "u.sqlite")
    inks = stars[30:34] + drawings_of(mini, "x", 4)
    batch = strokes.recognize_batch(inks, k=3, user_symbols=tmp_path / "u.sqlite")
    single = [strokes.recognize(ink, k=3, user_symbols=tmp_path / "u.sqlite") for ink in inks]
    for b, s in zip(batch, single):
        assert [lab for lab, _ in b] == [lab for lab, _ in s]
        np.testing.assert_allclose([p for _, p in b], [p for _, p in s], atol=1e-5)


def test_methods_agree_on_the_math():
    """build_head: imprinted rows are linear in the embedding; both methods give a label's own drawings the target logit scale."""
    rng = np.random.default_rng(0)
    D, K = 16, 5
    W, b = rng.normal(size=(K, D)), rng.normal(size=K) * 0.1
    ref = np.abs(rng.normal(size=(200, D)))
    cal = calibrate(ref, W, b)
    centre = np.abs(rng.normal(size=D)) * 3
    feats = centre + rng.normal(size=(6, D)) * 0.3
    for method in METHODS:
        head = build_head([f"c{i}" for i in range(K)], feats, ["new"] * 6, cal, method)
        assert list(head.labels) == [f"c{i}" for i in range(K)] + ["new"]
        own = head.taught_logits(feats)[:, 0]
        # the median leave-one-out similarity is mapped to T; with the full prototype the own drawings score about there
        assert np.median(own) == pytest.approx(cal.target, rel=0.25)
        assert head.taught_logits(cal.mean[None].astype(np.float32))[0, 0] == pytest.approx(cal.background, abs=1e-3)
    imprint = build_head([f"c{i}" for i in range(K)], feats, ["new"] * 6, cal, "imprint")
    x, y = feats[:2].astype(np.float32)
    lin = imprint.taught_logits(np.stack([x, y, 0.5 * (x + y)]))[:, 0]
    assert lin[2] == pytest.approx(0.5 * (lin[0] + lin[1]), rel=1e-5)
    with pytest.raises(ValueError, match="method must be one of"):
        build_head(["c"], feats, ["new"] * 6, cal, "nearest")


def test_cap_keeps_reference_drawings_with_their_built_in_class():
    """The cap: no reference drawing of a built-in class scores higher on a taught row than on its own class's top logit; without labels, no cap."""
    rng = np.random.default_rng(1)
    D, K = 16, 5
    W, b = rng.normal(size=(K, D)), rng.normal(size=K) * 0.1
    ref = np.abs(rng.normal(size=(200, D)))
    ref_labels = [f"c{i % K}" for i in range(100)] + [None] * 100  # half of them of no built-in class
    feats = ref[:6] + rng.normal(size=(6, D)) * 0.05  # taught drawings right on top of built-in reference drawings
    capped_cal, plain_cal = calibrate(ref, W, b, ref_labels), calibrate(ref, W, b)
    assert len(capped_cal.negatives) == 100 and plain_cal.negatives is None
    for method in METHODS:
        plain = build_head([f"c{i}" for i in range(K)], feats, ["new"] * 6, plain_cal, method)
        capped = build_head([f"c{i}" for i in range(K)], feats, ["new"] * 6, capped_cal, method)
        assert plain.cap.tolist() == [0.0] and capped.cap[0] > 0
        neg = capped_cal.negatives.astype(np.float32)
        assert (plain.taught_logits(neg)[:, 0] > capped_cal.negative_top).any()  # uncapped, it would take some
        assert (capped.taught_logits(neg)[:, 0] <= capped_cal.negative_top + 1e-4).all()
        np.testing.assert_allclose(capped.taught_logits(feats) + capped.cap, plain.taught_logits(feats), rtol=1e-5, atol=1e-4)
    # a label's own reference drawings do not cap it: teaching "c0" (a built-in class) from them
    own = build_head([f"c{i}" for i in range(K)], ref[:100:K], ["c0"] * 20, capped_cal, "imprint")
    others = np.array([lab != "c0" for lab in capped_cal.negative_labels])
    excess = own.taught_logits(capped_cal.negatives[others].astype(np.float32))[:, 0] - capped_cal.negative_top[others]
    assert excess.max() <= 1e-4
    with pytest.raises(ValueError, match="one class"):
        calibrate(ref, W, b, ref_labels[:10])


def test_cap_at_a_quantile_leaves_that_share_of_references_alone():
    """With quantile q, a taught row beats the top class of at most a (1 - q) share of the reference drawings, and is capped less than at q = 1."""
    import dataclasses

    rng = np.random.default_rng(2)
    D, K = 16, 5
    W, b = rng.normal(size=(K, D)), rng.normal(size=K) * 0.1
    ref = np.abs(rng.normal(size=(400, D)))
    cal = calibrate(ref, W, b, [f"c{i % K}" for i in range(400)])
    feats = ref[:6] + rng.normal(size=(6, D)) * 0.05
    vocab = [f"c{i}" for i in range(K)]
    strict = build_head(vocab, feats, ["new"] * 6, cal)
    for q in (0.99, 0.95):
        loose = build_head(vocab, feats, ["new"] * 6, dataclasses.replace(cal, quantile=q))
        taken = loose.taught_logits(cal.negatives.astype(np.float32))[:, 0] > cal.negative_top + 1e-4
        assert taken.mean() <= 1 - q + 1e-9
        assert 0 <= loose.cap[0] <= strict.cap[0]


def test_teach_references_travel_in_the_checkpoint(tmp_path, mini, stars):
    """add_teach_references writes real-drawing negatives into a checkpoint that loads weights-only; the recognizer caps with them."""
    from strokes.teach import REFERENCE_QUANTILE, add_teach_references, model_calibration, reference_features
    from strokes.training.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

    default = ROOT / "strokes" / "data" / "default_model.pt"
    inks = [mini[i].strokes for i in range(len(mini))]
    labels = [mini.vocab[c] for c in mini.labels]
    out = add_teach_references(default, inks, labels, out=tmp_path / "refs.pt", per_class=2, seed=0)
    refs = read_checkpoint(out)["teach_references"]
    counts = np.bincount(refs["labels"].numpy())
    assert counts.max() <= 2 and len(refs["labels"]) == sum(min(2, n) for n in np.bincount(mini.labels) if n)
    assert refs["features"].dtype == torch.float16 and refs["top"].shape == refs["labels"].shape
    rec = get_recognizer(str(out))
    cal = model_calibration(rec)
    assert cal.source == "references" and cal.quantile == REFERENCE_QUANTILE and len(cal.negatives) == len(refs["labels"])
    assert model_calibration(rec, references=False).source == "synthetic"
    store = tmp_path / "taught.sqlite"
    strokes.teach("\\star", stars[:5], user_symbols=str(store))
    top5 = strokes.recognize_batch(stars[5:15], k=5, model=str(out), user_symbols=str(store))
    assert np.mean(["\\star" in [lab for lab, _ in r] for r in top5]) >= 0.8
    with pytest.raises(ValueError, match="built-in classes"):
        reference_features(rec, inks[:2], ["not-a-class", labels[1]])
    ckpt = read_checkpoint(out)
    ckpt["teach_references"] = {"features": ckpt["teach_references"]["features"], "top": "x", "labels": None}
    save_checkpoint(ckpt, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="teach_references"):
        load_checkpoint(tmp_path / "bad.pt")


# ------------------------------------------------------------------------------------ caching and speed
def test_cache_follows_the_store(tmp_path, stars):
    """A label taught after the first recognize() shows at once; rows deleted behind its back disappear."""
    path = tmp_path / "u.sqlite"
    strokes.teach("\\star", stars[:3], user_symbols=path)
    labels = lambda: {lab for lab, _ in strokes.recognize(stars[30], k=10_000, user_symbols=path)}  # noqa: E731
    assert "\\star" in labels() and "\\pentagram" not in labels()
    strokes.teach("\\pentagram", stars[3:6], user_symbols=path)
    assert {"\\star", "\\pentagram"} <= labels()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM samples WHERE key = ?", ("\\star",))
    got = labels()
    assert "\\star" not in got and "\\pentagram" in got


def test_recognize_with_100_taught_symbols_does_no_per_call_rework(tmp_path, mini, monkeypatch):
    """With 100 taught symbols, a recognize() call after the first embeds only the ink and reuses the cached taught rows.

    (What this costs in milliseconds, and what teach() costs, is measured by
    benchmarks/bench_teach.py, never timed in a unit test.)
    """
    from strokes.io.user_symbols import open_store
    from strokes.recognizer import get_recognizer
    from strokes.teach import taught_head

    path = tmp_path / "u.sqlite"
    rng = np.random.default_rng(0)
    for i in range(100):
        idx = rng.choice(len(mini), 5, replace=False)
        strokes.teach(f"\\sym{i}", [mini[int(j)].strokes for j in idx], user_symbols=path)
    ink = mini[0].strokes
    strokes.recognize(ink, user_symbols=path)  # embeds the 500 drawings once
    rec = get_recognizer()
    head = taught_head(rec, path)
    embedded, rows_read = [], []
    real_embed, store = rec.logits_and_features, open_store(path)
    real_rows = store.rows
    monkeypatch.setattr(rec, "logits_and_features", lambda inks: embedded.append(len(inks)) or real_embed(inks))
    monkeypatch.setattr(store, "rows", lambda *a, **k: rows_read.append(1) or real_rows(*a, **k))
    for _ in range(5):
        res = strokes.recognize(ink, k=3, user_symbols=path)
        assert len(res) == 3
    assert embedded == [1] * 5  # the ink alone, once per call
    assert rows_read == []  # the stored drawings are not read again
    assert taught_head(rec, path) is head  # nor are the rows rebuilt
    strokes.teach("\\one", [ink], user_symbols=path)
    strokes.recognize(ink, user_symbols=path)
    assert embedded[5:] == [1, 1] and len(rows_read) == 1  # a teach: only the new drawing is read and embedded
    assert taught_head(rec, path) is not head


# ------------------------------------------------------------------------------------ storage
def test_store_reads_back_with_load(tmp_path, stars):
    """strokes.load reads a SQLite store like a detexify table: labels as taught, points as given, timestamps kept."""
    path = tmp_path / "u.sqlite"
    timed = [np.column_stack([s, 1000 + 10 * np.arange(len(s))]) for s in stars[0]]
    strokes.teach("\\star", [timed, stars[1]], user_symbols=path)
    strokes.teach("a-b-c", [stars[2]], user_symbols=path)  # dashes: stored under a prefixed key
    assert infer_format(path) == "sqlite" and "sqlite" in strokes.FORMATS
    ds = strokes.load(path)
    assert ds.info["format"] == "sqlite" and ds.info["records_in"] == 3 and not ds.skipped
    assert ds.label_names() == ["\\star", "\\star", "a-b-c"]
    np.testing.assert_allclose(ds[0].strokes[0][:, :2], stars[0][0], rtol=1e-6)
    assert ds[0].strokes[0][0, 2] == 1000
    with sqlite3.connect(path) as conn:
        keys = [k for (k,) in conn.execute("SELECT key FROM samples ORDER BY id")]
    assert keys == ["\\star", "\\star", "latex2e-OT1-a-b-c"]
    assert "a-b-c" in {lab for lab, _ in strokes.recognize(stars[2], k=10_000, user_symbols=path)}


def test_bad_rows_are_skipped_and_reported(tmp_path, stars, caplog):
    """Rows damaged behind the store's back: the loader keeps in = loaded + skipped, recognize ignores them with a warning."""
    path = tmp_path / "u.sqlite"
    strokes.teach("\\star", stars[:3], user_symbols=path)
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO samples (key, strokes) VALUES (?, ?)",
            [("\\x", "not json"), ("", "[[[0,0],[1,1]]]"), ("\\y", "[]"), ("\\z", '[[[0, "a"]]]')],
        )
    ds = strokes.load(path)
    assert ds.info["records_in"] == 7 == len(ds) + len(ds.skipped)
    assert len(ds) == 3
    reasons = " ".join(s.reason for s in ds.skipped)
    assert "not valid JSON" in reasons and "key is empty" in reasons
    with caplog.at_level("WARNING", logger="strokes.teach"):
        res = strokes.recognize(stars[20], k=10_000, user_symbols=path)
    labels = {lab for lab, _ in res}
    assert "\\star" in labels and not {"\\x", "\\y", "\\z"} & labels
    mine = [r.getMessage() for r in caplog.records if r.name == "strokes.teach"]
    assert len(mine) == 4 and all("skipped" in m for m in mine)
    assert "id 4 skipped: strokes is not valid JSON" in mine[0]


def teach_from_threads(store_for, threads: int = 8, calls: int = 4) -> list:
    """Each of ``threads`` threads teaches its own label ``calls`` times (3 drawings each) into ``store_for()``,
    a store (or path) made in that thread; returns every TeachResult, and fails on any thread's error."""
    results, errors = [], []

    def work(t):
        try:
            store = store_for()
            for j in range(calls):
                ink = [[[0, 0], [10 + t, 10 + j]], [[5, 0], [0, 5]]]
                results.append(strokes.teach(f"\\t{t}", [ink] * 3, user_symbols=store))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not errors, errors
    return results


def test_concurrent_teach_from_threads_loses_nothing_sqlite(tmp_path):
    """Eight threads teaching at once into one SQLite file: every call stored, ids unique and contiguous per call."""
    path = tmp_path / "u.sqlite"
    results = teach_from_threads(lambda: path)
    ids = sorted(i for r in results for i in r.ids)
    assert ids == list(range(1, 97))
    assert all(list(r.ids) == list(range(r.ids[0], r.ids[0] + 3)) for r in results)
    assert count_rows(path) == 96
    ds = strokes.load(path)
    assert sorted(np.bincount(ds.labels).tolist()) == [12] * 8


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    import strokes
    from strokes.io.user_symbols import PostgresStore
    target = sys.argv[1] if len(sys.argv) == 2 else PostgresStore(sys.argv[1], table=sys.argv[2])
    strokes.teach("\\\\killed", [[[[0, 0], [1, 1]], [[1, 0], [0, 1]]]] * 3, user_symbols=target)
    print("committed")
    """
)


def start_killable_teach(*args) -> subprocess.Popen:
    env = dict(os.environ, STROKES_TEST_TEACH_SLEEP="60", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, *map(str, args)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for(condition, proc, what: str, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the teaching process ended before {what}: {proc.communicate()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_process_killed_mid_teach_leaves_sqlite_consistent(tmp_path, stars):
    """SIGKILL inside the write transaction: none of that call's rows exist, the lock is free, ids continue."""
    path = tmp_path / "u.sqlite"
    strokes.teach("\\star", stars[:2], user_symbols=path)
    proc = start_killable_teach(path)
    journal = Path(f"{path}-journal")
    wait_for(lambda: journal.exists() and journal.stat().st_size > 0, proc, "the transaction to write")
    proc.kill()
    proc.wait(timeout=30)
    assert journal.exists()  # a hot journal: the half-done transaction is on disk, to be rolled back
    ds = strokes.load(path)
    assert ds.label_names() == ["\\star", "\\star"] and ds.info["records_in"] == 2
    assert SQLiteStore(path).state() == (2, 2)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert strokes.teach("\\after", stars[2:3], user_symbols=path).ids == (3,)
    assert {"\\star", "\\after"} <= {lab for lab, _ in strokes.recognize(stars[5], k=10_000, user_symbols=path)}


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "label, error, match",
    [
        ("", ValueError, "empty"),
        ("   ", ValueError, "empty"),
        ("x" * (MAX_LABEL_CHARS + 1), ValueError, f"limit of {MAX_LABEL_CHARS}"),
        ("\\alpha\n", ValueError, "control"),
        ("a\x00b", ValueError, "control"),
        (" \\alpha", ValueError, "white space"),
        ("_a-b-c", ValueError, "starts with '_'"),
        (None, TypeError, "string"),
        (b"\\alpha", TypeError, "string"),
    ],
)
def test_bad_labels_are_refused_and_nothing_is_stored(tmp_path, label, error, match):
    """Empty, over-long, control-character and non-string labels get a clear error; the store is not even created."""
    with pytest.raises(error, match=match):
        strokes.teach(label, [[[[0, 0], [1, 1]]]], user_symbols=tmp_path / "u.sqlite")
    assert not (tmp_path / "u.sqlite").exists()


def test_label_limits_accept_the_edge():
    """A label of exactly the maximum length, and unicode text, are fine; keys round-trip."""
    assert check_label("x" * MAX_LABEL_CHARS) == "x" * MAX_LABEL_CHARS
    assert check_label("\\♥") == "\\♥"
    assert label_to_store_key("\\alpha") == "\\alpha"
    assert label_to_store_key("a-b-c") == "latex2e-OT1-a-b-c"


@pytest.mark.parametrize(
    "inks, error, match",
    [
        ([], ValueError, "no drawings"),
        ([[[[0, 0], [1, 1]]]] * (MAX_INKS_PER_CALL + 1), ValueError, f"limit of {MAX_INKS_PER_CALL}"),
        ([[[[0, 0], [1, 1]]], [[[0, 0], [1, 1]]], []], ValueError, "drawing 2: ink is empty"),
        ([[[[0, 0], [1, float("nan")]]]], ValueError, "drawing 0: stroke 0: contains NaN"),
        ([[[[0, 0], [1, "x"]]]], ValueError, "drawing 0: stroke 0: points must be numbers"),
        ([[[[0, 0]] * 10_001]], ValueError, "drawing 0: ink has more than 10000 points, the limit"),
        ([[[0, 0], [1, 1]]], ValueError, "pass a list of drawings"),  # one ink, not wrapped
        ("[[[0, 0]]]", TypeError, "list of drawings"),
        (np.zeros((4, 3)), TypeError, "list of drawings"),
        ([5], TypeError, "drawing 0"),
    ],
)
def test_malformed_inks_are_refused_and_nothing_is_stored(tmp_path, inks, error, match):
    """Too few or too many drawings, or one malformed drawing, refuse the whole call, naming the drawing."""
    path = tmp_path / "u.sqlite"
    strokes.teach("\\ok", [[[[0, 0], [1, 1]]]], user_symbols=path)
    with pytest.raises(error, match=match):
        strokes.teach("\\star", inks, user_symbols=path)
    assert count_rows(path) == 1


def test_bad_stores_are_named(tmp_path, stars):
    """Not a database, a database without the table, a missing file, a wrong type: errors say which store and why."""
    junk = tmp_path / "junk.sqlite"
    junk.write_text("hello, I am not a database\n" * 100)
    with pytest.raises(ValueError, match="junk.sqlite"):
        strokes.teach("\\star", stars[:1], user_symbols=junk)
    with pytest.raises(ValueError, match="junk.sqlite"):
        strokes.recognize(stars[0], user_symbols=junk)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(ValueError, match="no table 'samples'"):
        strokes.recognize(stars[0], user_symbols=other)
    with pytest.raises(FileNotFoundError, match="teach a symbol first"):
        strokes.recognize(stars[0], user_symbols=tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()
    with pytest.raises(TypeError, match="user_symbols"):
        strokes.recognize(stars[0], user_symbols=5)
    with pytest.raises(ValueError, match="empty"):
        strokes.teach("\\star", stars[:1], user_symbols="")


def test_empty_store_changes_nothing(tmp_path, stars):
    """A store whose first teach never committed (no tables yet) reads as empty: the built-in answer."""
    path = tmp_path / "u.sqlite"
    sqlite3.connect(path).close()  # an empty database file
    assert strokes.recognize(stars[0], k=3, user_symbols=path) == strokes.recognize(stars[0], k=3)


# ------------------------------------------------------------------------------------ the command line
def write_drawings(tmp_path, inks, stem="d") -> list[Path]:
    paths = []
    for i, ink in enumerate(inks):
        p = tmp_path / f"{stem}{i}.json"
        p.write_text(json.dumps({"strokes": [np.asarray(s).tolist() for s in ink]}))
        paths.append(p)
    return paths


def test_cli_teach_then_recognize(tmp_path, stars, capsys):
    """`strokes teach` stores the files' drawings; `strokes recognize --user-symbols` then names the symbol."""
    store = tmp_path / "u.sqlite"
    files = write_drawings(tmp_path, stars[:4])
    assert cli.main(["teach", "\\star", *map(str, files), "--user-symbols", str(store)]) == 0
    out = capsys.readouterr().out
    assert "taught \\star: 4 drawing(s)" in out and str(store) in out and "it now has 4" in out
    query = write_drawings(tmp_path, stars[20:21], stem="q")[0]
    assert cli.main(["recognize", str(query), "--user-symbols", str(store), "--json", "-k", "2"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got[str(query)][0][0] == "\\star"
    assert cli.main(["recognize", str(query), "--user-symbols", "none", "--json", "-k", "2"]) == 0
    assert json.loads(capsys.readouterr().out)[str(query)][0][0] != "\\star"


def test_cli_teach_errors_name_the_file(tmp_path, stars, capsys):
    """A malformed drawing file, a bad label or too many files: exit 2 with one line naming the problem; nothing stored."""
    store = tmp_path / "u.sqlite"
    good = write_drawings(tmp_path, stars[:2])
    bad = tmp_path / "bad.json"
    bad.write_text('[[[0, "x"]]]')
    assert cli.main(["teach", "\\star", str(good[0]), str(bad), "--user-symbols", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("strokes: error: ") and "bad.json" in err and "must be numbers" in err
    assert cli.main(["teach", "", str(good[0]), "--user-symbols", str(store)]) == 2
    assert "label is empty" in capsys.readouterr().err
    many = [str(good[0])] * (MAX_INKS_PER_CALL + 1)
    assert cli.main(["teach", "\\star", *many, "--user-symbols", str(store)]) == 2
    assert f"limit of {MAX_INKS_PER_CALL}" in capsys.readouterr().err
    notjson = tmp_path / "n.json"
    notjson.write_text("{")
    assert cli.main(["teach", "\\star", str(notjson), "--user-symbols", str(store)]) == 2
    assert "n.json" in capsys.readouterr().err
    assert not store.exists()


def test_cli_default_store_in_a_real_process(tmp_path, stars):
    """Without --user-symbols, `strokes teach` writes $STROKES_USER_SYMBOLS and `strokes recognize` reads it."""
    store = tmp_path / "home" / "user_symbols.sqlite"
    env = dict(os.environ, **{ENV_STORE: str(store)}, OMP_NUM_THREADS="1")
    exe = Path(sys.executable).parent / "strokes"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "strokes"]
    files = write_drawings(tmp_path, stars[:3])
    r = subprocess.run([*cmd, "teach", "\\star", *map(str, files)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert store.is_file() and count_rows(store) == 3
    query = write_drawings(tmp_path, stars[25:26], stem="q")[0]
    r = subprocess.run([*cmd, "recognize", str(query), "-k", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "\\star" in r.stdout
    r = subprocess.run([*cmd, "teach", "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "usage: strokes teach" in r.stdout and str(MAX_INKS_PER_CALL) in r.stdout


# ------------------------------------------------------------------------------------ PostgreSQL
@pytest.mark.postgres
def test_postgres_store_teach_recognize_load(pg_dsn, pg_table, stars):
    """On a real server: teach creates the table, recognize sees each teach at once, strokes.load reads it back."""
    import psycopg2.extensions

    store = PostgresStore(pg_dsn, table=pg_table)
    assert store.state() == (0, 0)  # no table yet: empty
    r = strokes.teach("\\star", stars[:4], user_symbols=store)
    assert r.ids == (1, 2, 3, 4) and r.total == 4 and pg_table in r.store
    password = psycopg2.extensions.parse_dsn(pg_dsn).get("password")
    assert not password or password not in r.store
    top = [x[0][0] for x in strokes.recognize_batch(stars[20:30], k=1, user_symbols=store)]
    assert np.mean(np.array(top) == "\\star") >= 0.9
    strokes.teach("a-b-c", stars[4:6], user_symbols=store)
    assert "a-b-c" in {lab for lab, _ in strokes.recognize(stars[30], k=10_000, user_symbols=store)}  # no TTL wait
    ds = strokes.load(pg_dsn, table=pg_table, progress=False)
    assert ds.label_names() == ["\\star"] * 4 + ["a-b-c"] * 2 and ds.info["records_in"] == 6
    np.testing.assert_allclose(ds[0].strokes[0][:, :2], stars[0][0], rtol=1e-6)


@pytest.mark.postgres
def test_concurrent_teach_from_threads_loses_nothing_postgres(pg_dsn, pg_table):
    """Eight threads teaching at once into a table that does not exist yet: every call stored, ids unique and contiguous."""
    results = teach_from_threads(lambda: PostgresStore(pg_dsn, table=pg_table))  # a store per thread, as processes would have
    ids = sorted(i for r in results for i in r.ids)
    assert ids == list(range(1, 97))
    assert all(list(r.ids) == list(range(r.ids[0], r.ids[0] + 3)) for r in results)
    ds = strokes.load(pg_dsn, table=pg_table, progress=False)
    assert len(ds) == 96 and sorted(np.bincount(ds.labels).tolist()) == [12] * 8


@pytest.mark.postgres
def test_process_killed_mid_teach_leaves_postgres_consistent(pg_dsn, pg_table, stars):
    """SIGKILL while the server holds the open teach transaction: none of its rows exist, and teaching goes on."""
    import psycopg2

    store = PostgresStore(pg_dsn, table=pg_table)
    strokes.teach("\\star", stars[:2], user_symbols=store)
    app = f"strokes-kill-{pg_table}"
    os.environ["PGAPPNAME"] = app
    try:
        proc = start_killable_teach(pg_dsn, pg_table)
    finally:
        del os.environ["PGAPPNAME"]
    watch = psycopg2.connect(pg_dsn)
    watch.autocommit = True

    def backends(state=None):
        with watch.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND (%s IS NULL OR state = %s)",
                (app, state, state),
            )
            return cur.fetchone()[0]

    try:
        wait_for(lambda: backends("idle in transaction") == 1, proc, "the transaction to open")
        with watch.cursor() as cur:  # the rows are inserted, but not visible outside the transaction
            cur.execute(f'SELECT count(*) FROM "{pg_table}"')
            assert cur.fetchone()[0] == 2
        proc.kill()
        proc.wait(timeout=30)
        end = time.monotonic() + 30
        while backends() and time.monotonic() < end:
            time.sleep(0.05)
        assert backends() == 0
    finally:
        watch.close()
    ds = strokes.load(pg_dsn, table=pg_table, progress=False)
    assert ds.label_names() == ["\\star", "\\star"]
    assert store.state(fresh=True) == (2, 2)
    assert strokes.teach("\\after", stars[2:3], user_symbols=store).ids == (3,)


def test_recognize_from_threads_while_teaching(tmp_path, stars):
    """Threads recognizing while another thread teaches: no errors, and the last teach is seen by all afterwards."""
    path = tmp_path / "u.sqlite"
    strokes.teach("\\star", stars[:3], user_symbols=path)
    errors, stop = [], threading.Event()

    def reader():
        try:
            while not stop.is_set():
                res = strokes.recognize_batch(stars[20:24], k=3, user_symbols=path)
                assert len(res) == 4 and all(len(r) == 3 for r in res)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for th in readers:
        th.start()
    try:
        for i in range(10):
            strokes.teach(f"\\s{i}", stars[3 + i : 4 + i], user_symbols=path)
    finally:
        stop.set()
        for th in readers:
            th.join()
    assert not errors, errors
    labels = {lab for lab, _ in strokes.recognize(stars[30], k=10_000, user_symbols=path)}
    assert {f"\\s{i}" for i in range(10)} | {"\\star"} <= labels


def test_comparison_experiment_tells_the_methods_apart(mini):
    """compare() on real data: per-class calibration keeps both accuracies high; a large global offset wrecks built-in top-1."""
    from strokes.teach import compare, format_comparison

    sub = mini.subset(np.flatnonzero(np.isin(mini.writer_ids, np.arange(40))))
    res = compare(sub, shots=(3,), n_new=4, reps=2, min_count=10, offsets=(-6.0, 2.0))
    new = res["new"][3]
    builtin = new["untaught"][1]
    for method in METHODS:
        taught_top1, builtin_top1 = new[method]
        assert taught_top1 >= 0.8 and builtin_top1 >= builtin - 0.05, (method, new[method], builtin)
    assert new["global-raw+2"][1] < builtin - 0.3  # the taught rows swallow everything
    for method in METHODS:
        assert res["adapt"][3][method][0] > res["adapt"][3]["untaught"][0]
    table = format_comparison(res)
    assert "| imprint |" in table and "Adaptation" in table


def test_bench_fit_rows_learn_a_new_class_and_leave_the_references_alone():
    """benchmarks/bench_teach.fit_rows: a fitted row wins on its class's drawings and not on the built-in ones."""
    from scripts import load_benchmark

    fit_rows = load_benchmark("bench_teach").fit_rows
    rng = np.random.default_rng(0)
    D, C = 6, 3
    centres = np.eye(D)[: C + 1] * 4.0  # three built-in classes and a new one, each along its own axis
    W, b = np.eye(D)[:C] * np.array([[2.0], [1.0], [3.0]]), np.array([1.5, -1.0, 0.3])  # the frozen classifier: the first three axes, unequal
    refs = np.concatenate([centres[c] + rng.normal(0, 0.5, (40, D)) for c in range(C)])
    ref_rows = np.repeat(np.arange(C), 40)
    pos = centres[C] + rng.normal(0, 0.5, (5, D))
    Wn, bn, mean = fit_rows(pos, np.full(5, C), refs, ref_rows, W, b, n_new=1)
    test_new = centres[C] + rng.normal(0, 0.5, (50, D))
    test_old = np.concatenate([centres[c] + rng.normal(0, 0.5, (20, D)) for c in range(C)])

    def predict(f):
        return np.concatenate([f @ W.T + b, (f - mean) @ Wn.T + bn], 1).argmax(1)

    assert Wn.shape == (1, D) and bn.shape == (1,) and np.allclose(mean, refs.mean(0))
    assert (predict(test_new) == C).mean() > 0.95
    assert (predict(test_old) == (test_old @ W.T + b).argmax(1)).mean() > 0.95  # the built-in drawings keep the model's answer


def spiral(rng, turns: float = 2.5, n: int = 60) -> list[np.ndarray]:
    """One stroke: an Archimedean spiral from the centre out, slightly jittered."""
    t = np.linspace(0, 2 * np.pi * turns, n)
    r = t / t[-1]
    pts = np.stack([r * np.cos(t), r * np.sin(t)], 1) * rng.uniform(0.8, 1.2)
    return [pts + rng.normal(0, 0.01, pts.shape)]


def test_bench_drawings_needed_reads_each_method_within_the_target(builtin_sample):
    """benchmarks/bench_teach.drawings_needed: per number of drawings, each method's best point within 0.5 pt names each new class."""
    import argparse

    from scripts import load_benchmark

    bench = load_benchmark("bench_teach")
    rec = get_recognizer()
    rng = np.random.default_rng(3)
    inks, truth, _ = builtin_sample
    V = len(rec.classes)
    names = ["\\zstar", "\\aspiral"]  # new rows V, V + 1; a head sorts its new labels by name, the other way round
    test_new = [star(rng) for _ in range(30)] + [spiral(rng) for _ in range(30)]
    pool_inks = [star(rng) for _ in range(25)] + [spiral(rng) for _ in range(25)]
    logits, feats = rec.logits_and_features(list(inks) + test_new)
    col = {c: i for i, c in enumerate(rec.classes)}
    target = np.array([col[t] for t in truth] + [V] * 30 + [V + 1] * 30)
    is_new = target >= V
    refs = rec.loaded.checkpoint["teach_references"]
    run = lambda rows: bench.drawings_needed(  # noqa: E731
        argparse.Namespace(seed=0, reps=2), rec, (logits, feats, target, is_new),
        (rec.logits_and_features(pool_inks)[1], np.repeat([V, V + 1], 25)),
        (refs["features"].double().numpy(), refs["labels"].numpy().astype(np.int64)), rows, names,
    )  # fmt: skip
    needed = run([V, V + 1])
    assert [r["per_class"] for r in needed] == list(bench.NEEDED_SHOTS)
    assert needed[-1]["drawings"] == 25 and needed[-2]["drawings"] == 25  # 40 asked, 25 there
    for r in needed:
        for method in ("prototype", "fit"):
            assert r[method] is not None, (r["per_class"], method)  # some setting of each stays within 0.5 pt
    for method in ("prototype", "fit"):
        per_class = needed[0][method]["per_class_top1"]
        assert per_class[names[0]] >= 0.8 and per_class[names[1]] >= 0.8, (method, per_class)  # each new class named as itself
    section = "\n".join(bench._needed_section(needed, None, {}))
    assert "| 5 | " in section and "all (about 25)" in section
    with pytest.raises(ValueError, match="new_rows"):
        run([V + 1, V])


def test_bench_teach_refuses_a_model_trained_otherwise(tmp_path):
    """benchmarks/bench_teach: --part train into an --out whose model was trained with other options stops and names them."""
    import argparse

    from scripts import load_benchmark

    bench = load_benchmark("bench_teach")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "done.json").write_text(json.dumps({"model": "vgg_gap", "epochs": 12}))  # written before the options existed
    args = argparse.Namespace(out=str(tmp_path), model="vgg_gap", model_options={"cosine_scale": 16.0}, label_smoothing=0.1, epochs=12)
    with pytest.raises(SystemExit, match="model_options"):
        bench.train_part(args, None, None)
    args.model_options = {}
    assert bench.train_part(args, None, None) == tmp_path / "model" / "best.pt"  # the same options: reused
    for bad in ("[1]", "{not json"):
        with pytest.raises(SystemExit):
            bench.main(["--part", "report", "--model-options", bad])
