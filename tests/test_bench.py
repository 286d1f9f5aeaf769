"""``strokes bench``: the harness end to end on tiny synthetic data, resume, splits, timing rules."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest

from strokes.bench import (
    BenchConfig,
    PeakMemory,
    check_models,
    latency_stats,
    make_splits,
    measure_latency,
    parse_split,
    run_bench,
)
from strokes.bench_report import converged, equal_compute, summarize, verdict
from strokes.cli import main
from strokes.synthetic import generate
from strokes.training.train import TrainConfig, Trainer

TINY = {
    "gru": {"hidden": 16, "layers": 1},
    "lenet5": {},
    "fusion": {"seq_hidden": 16, "seq_layers": 1, "image_width": 8},
}
SYMBOLS = ["+", "-", "x", "0", "1", "\\alpha"]


@pytest.fixture(scope="module")
def data():
    return generate(n_writers=10, samples_per_writer=1, seed=3, symbols=SYMBOLS)


def _config(**kw) -> BenchConfig:
    base = dict(
        models=("gru", "lenet5", "fusion"),
        epochs=1,
        seeds=2,
        device="cpu",
        batch_size=16,
        latency_samples=6,
        latency_warmup=2,
        infer_batch_size=32,
        val=0.2,
        test=0.2,
        model_options=TINY,
    )
    base.update(kw)
    base["model_options"] = {m: o for m, o in TINY.items() if m in base["models"]}
    return BenchConfig(**base)


@pytest.fixture(scope="module")
def bench(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    t0 = time.perf_counter()
    results = run_bench(data, _config(), out, command="strokes bench --test", progress=False)
    return out, results, time.perf_counter() - t0


def test_writes_every_output(bench):
    out, results, seconds = bench
    names = {p.name for p in out.iterdir()}
    assert {"results.json", "results.csv", "cells.csv", "report.md", "bench.json"} <= names
    for png in ("accuracy_vs_latency.png", "learning_curves.png", "per_class_sequence_vs_image.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert len(results["cells"]) == 3 * 2
    assert seconds < 120


def test_results_have_the_fields_the_issue_lists(bench):
    out, _, _ = bench
    results = json.loads((out / "results.json").read_text())
    env = results["environment"]
    for key in ("device", "cpu", "torch", "commit", "torch_threads"):
        assert key in env
    assert results["command"] == "strokes bench --test"
    assert results["data"]["fingerprint"] and results["data"]["samples"] == 60 and results["data"]["synthetic"] is True
    for cell in results["cells"]:
        assert cell["representation"] in ("sequence", "image", "both")
        assert cell["params"] > 0 and cell["epochs_run"] == pytest.approx(1.0)
        assert cell["train_seconds"] > 0 and cell["train_samples_per_s"] > 0
        assert 0 <= cell["train_data_fraction"] <= 1
        assert set(cell["test"]) >= {"top1", "top5", "macro_recall"}
        assert 0 <= cell["test"]["top1"] <= cell["test"]["top5"] <= 1
        assert cell["inference"]["samples_per_s"] > 0
        lat = cell["latency"]
        assert lat["calls"] == 6 and lat["warmup_calls"] == 2 and 0 < lat["p50_ms"] <= lat["p95_ms"]
        assert cell["memory"]["train_peak_rss_mb"] > 0
        assert len(cell["per_class_recall"]) == len(cell["vocab"])
        assert cell["precision"] in ("fp32", "bf16") and isinstance(cell["workers"], int)
    summary = {r["model"]: r for r in results["summary"]}
    assert summary["gru"]["representation"] == "sequence" and summary["lenet5"]["representation"] == "image"
    for r in summary.values():
        assert r["cells"] == 2 and r["top1_std"] is not None
    assert results["verdict"] and results["per_class"]["sequence_model"] == "gru"


def test_cells_record_their_learning_curves(data, tmp_path):
    """Every cell's history is its learning curve: val top-1 and loss per epoch, cumulative training seconds."""
    results = run_bench(data, _config(models=("lenet5",), seeds=1, epochs=3), tmp_path, progress=False)
    hist = results["cells"][0]["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    for h in hist:
        assert 0 <= h["val_top1"] <= h["val_top5"] <= 1 and np.isfinite(h["val_loss"]) and h["val_loss"] > 0
    cum = [h["cum_train_seconds"] for h in hist]
    assert cum == pytest.approx(np.cumsum([h["train_seconds"] for h in hist]).tolist())
    assert all(b > a for a, b in zip(cum, cum[1:]))
    # the same curve is in results.json, and the report has the convergence table and the curves chart
    saved = json.loads((tmp_path / "results.json").read_text())["cells"][0]["history"]
    assert saved == hist
    report = (tmp_path / "report.md").read_text()
    assert "## Convergence" in report and "learning_curves.png" in report and "## Equal compute" in report


def test_every_model_sees_the_same_splits(bench):
    _, results, _ = bench
    sizes = {}
    for cell in results["cells"]:
        sizes.setdefault(cell["split_id"], set()).add(tuple(cell["split_sizes"].values()))
    assert set(sizes) == {"s0", "s1"}
    assert all(len(v) == 1 for v in sizes.values())


def test_csv_and_report(bench):
    out, results, _ = bench
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["model"] for r in rows] == ["gru", "lenet5", "fusion"]
    cells = list(csv.DictReader((out / "cells.csv").open()))
    assert len(cells) == 6 and {"latency_p50_ms", "test_top1", "train_peak_rss_mb"} <= set(cells[0])
    report = (out / "report.md").read_text()
    assert "SYNTHETIC" in report and "## Verdict" in report and "| gru | sequence |" in report
    assert "strokes bench --test" in report and "accuracy_vs_latency.png" in report


def test_resume_reuses_finished_cells(bench, data):
    out, first, _ = bench
    done = out / "cells" / "lenet5__s1.json"
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    done.unlink()  # as if the run had been interrupted during this cell
    again = run_bench(data, _config(), out, progress=False)
    assert again["cells_reused"] == 5
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert set(after) == set(before)
    assert all(after[n] == before[n] for n in before if n != "lenet5__s1.json")
    # the rerun cell is deterministic on the CPU: same accuracy as the first time
    old = next(c for c in first["cells"] if c["cell"] == "lenet5__s1")
    new = next(c for c in again["cells"] if c["cell"] == "lenet5__s1")
    assert new["test"]["top1"] == old["test"]["top1"]


def test_resume_refuses_other_settings(bench, data):
    out, _, _ = bench
    with pytest.raises(ValueError, match="other settings.*epochs"):
        run_bench(data, _config(epochs=2), out, progress=False)


def test_interrupted_cell_resumes_its_training(data, tmp_path):
    cfg = _config(models=("lenet5",), seeds=1, epochs=2)
    sid, seed, sp = make_splits(data, cfg)[0]
    cell_dir = tmp_path / "cells" / f"lenet5__{sid}"
    # a training interrupted after epoch 1 leaves last.pt behind
    half = TrainConfig(model="lenet5", epochs=2, batch_size=16, device="cpu", patience=0, val=0.2, test=0.2, seed=seed)
    trainer = Trainer(half, cell_dir, progress=False)
    trainer._setup(data, None, sp)
    trainer.out_dir.mkdir(parents=True, exist_ok=True)
    trainer.history.append({"epoch": 1, **trainer._train_epoch()})
    trainer.epoch = 1
    trainer.best = {"epoch": 1, "val_top1": 0.0, "val_top5": 0.0, "val_loss": 9.0}
    trainer._save("best.pt", {}, with_state=False)
    trainer._save("last.pt", {}, with_state=True)
    results = run_bench(data, cfg, tmp_path, progress=False)
    cell = results["cells"][0]
    assert [h["epoch"] for h in cell["history"]] == [1, 2]
    assert not (cell_dir / "last.pt").exists()  # removed once the cell is finished


def test_time_budget_is_shared_and_stops_training(data, tmp_path):
    cfg = _config(models=("lenet5",), seeds=1, epochs=None, time_budget=0.3)
    cell = run_bench(data, cfg, tmp_path, progress=False)["cells"][0]
    assert cell["stopped"] == "time_budget"
    assert 0.3 <= cell["train_seconds"] < 5


def test_trainer_time_budget_ends_mid_epoch(data, tmp_path, monkeypatch):
    """A time budget that runs out inside an epoch stops that epoch after the step that spent it."""
    cfg = TrainConfig(model="lenet5", epochs=50, batch_size=2, device="cpu", patience=0, val=0.2, test=0.2, time_budget=0.5, workers=0)
    trainer = Trainer(cfg, tmp_path, progress=False)
    # the clock is the step counter: every step "takes" 0.1 s, so the budget ends at step 5 of the first epoch
    steps = {"n": 0}
    real_next = next

    def counting_batches(order):
        for batch in Trainer._epoch_batches(trainer, order):
            steps["n"] += 1
            yield batch

    monkeypatch.setattr(trainer, "_epoch_batches", counting_batches)
    ticks = iter(range(10**6))
    monkeypatch.setattr("strokes.training.train.time.perf_counter", lambda: 0.1 * real_next(ticks))
    metrics = trainer.fit(data)
    per_epoch = trainer.steps_per_epoch
    assert per_epoch > 8  # so that stopping after a few steps is mid-epoch
    assert metrics["stopped"] == "time_budget"
    first = trainer.history[0]
    assert len(trainer.history) == 1 and 0 < first["steps"] < per_epoch
    assert steps["n"] == first["steps"]  # no batch was prepared after the budget ran out
    assert metrics["clock"]["epochs_done"] == pytest.approx(first["steps"] / per_epoch)
    assert metrics["clock"]["train_seconds"] >= 0.5
    assert metrics["clock"]["data_seconds"] + metrics["clock"]["model_seconds"] <= metrics["clock"]["train_seconds"] + 1e-6


def test_latency_excludes_warmup():
    calls = []

    def slow_then_fast(ink):
        calls.append(ink)
        if len(calls) <= 3:
            time.sleep(0.05)  # first calls: caches, allocator, lazy imports

    stats = measure_latency(slow_then_fast, list(range(13)), warmup=3)
    assert len(calls) == 13 and stats["calls"] == 10 and stats["warmup_calls"] == 3
    assert stats["max_ms"] < 20


def test_latency_needs_samples_beyond_warmup():
    with pytest.raises(ValueError, match="more than 3"):
        measure_latency(lambda ink: None, [1, 2, 3], warmup=3)
    with pytest.raises(ValueError):
        latency_stats([])


def test_bad_model_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown model\(s\) nope.*valid models: .*lenet5.*lstm"):
        check_models(["lstm", "nope"])
    with pytest.raises(ValueError, match="more than once"):
        BenchConfig(models=("lstm", "lstm"), epochs=1)
    with pytest.raises(ValueError, match="epochs and/or time_budget"):
        BenchConfig(models=("lstm",))


def test_cli_bad_models_exits_2_with_the_valid_names(capsys):
    assert main(["bench", "--data", "synthetic:writers=2,samples=1", "--models", "lstm,resnet9000"]) == 2
    err = capsys.readouterr().err
    assert "resnet9000" in err and "valid models:" in err and "vgg_gap" in err


def test_cli_runs_and_prints_the_table(tmp_path, capsys):
    code = main(
        [
            "bench", "--data", "synthetic:writers=6,samples=1", "--models", "lenet5,tcn", "--epochs", "1",
            "--seeds", "1", "--device", "cpu", "--latency-samples", "3", "--out", str(tmp_path),
            "--option", "tcn.channels=8", "--option", "tcn.blocks=2", "--split", "random",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "| lenet5 | image |" in text and "| tcn | sequence |" in text and "report.md" in text
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["model_options"] == {"tcn": {"channels": 8, "blocks": 2}}
    assert results["config"]["split"] == "random"


@pytest.mark.parametrize("spec, expected", [("writer", ("writer", None)), ("random", ("random", None)), ("kfold:4", ("kfold", 4))])
def test_parse_split(spec, expected):
    assert parse_split(spec) == expected


@pytest.mark.parametrize("spec", ["kfold:1", "kfold", "folds:3", "", "writer,random"])
def test_parse_split_rejects(spec):
    with pytest.raises(ValueError, match="split|kfold"):
        parse_split(spec)


def test_kfold_splits_cover_everything_once_and_keep_writers_apart(data):
    cfg = _config(split="kfold:3", seeds=2)
    splits = make_splits(data, cfg)
    assert len(splits) == 6 and [s[0] for s in splits[:3]] == ["s0-f0", "s1-f0", "s0-f1"]
    tests = [sp.test for sid, seed, sp in splits if seed == 0]
    assert np.array_equal(np.sort(np.concatenate(tests)), np.arange(len(data)))
    for _, _, sp in splits:
        assert not set(sp.train) & set(sp.test) and not set(sp.val) & set(sp.test) and not set(sp.train) & set(sp.val)
        writers = [set(data.writer_ids[idx]) for idx in sp]
        assert not writers[0] & writers[2] and not writers[1] & writers[2]


def test_peak_memory_sees_a_short_allocation():
    with PeakMemory() as mem:
        block = np.ones(40 * 2**20 // 8)  # 40 MiB, touched
        time.sleep(0.05)
        del block
    if mem.exact:
        assert mem.peak - mem.start >= 30 * 2**20


def _curve(final: float, rising: bool = False, epochs: int = 8, seconds: float = 10.0) -> list[dict]:
    """A learning curve ending at ``final``: flat over its last epochs, or still rising 1 point per epoch."""
    if rising:
        vals = [final - 0.01 * (epochs - 1 - e) for e in range(epochs)]
    else:  # saturating: the last 3 epochs gain < 0.1 point
        vals = [final - 0.2 * 0.25**e + 0.2 * 0.25 ** (epochs - 1) for e in range(epochs)]
    return [
        {"epoch": e + 1, "val_top1": v, "val_loss": 1.0, "train_seconds": seconds, "cum_train_seconds": seconds * (e + 1)}
        for e, v in enumerate(vals)
    ]


def _fake(models_top1: dict, kinds: dict, rising=(), seconds=None) -> dict:
    cells = []
    for m, accs in models_top1.items():
        for i, a in enumerate(accs):
            cells.append(
                {
                    "model": m, "representation": kinds[m], "params": 1, "split_id": f"s{i}", "seed": i,
                    "test": {"top1": a, "top5": 1.0, "macro_recall": a}, "epochs_run": 1, "train_seconds": 1.0,
                    "train_samples_per_s": 10.0, "train_data_fraction": 0.1, "inference": {"samples_per_s": 100.0},
                    "latency": {"p50_ms": 1.0 if kinds[m] == "image" else 2.0, "p95_ms": 3.0},
                    "memory": {"train_peak_rss_mb": 1.0},
                    "history": _curve(a, rising=m in rising, seconds=(seconds or {}).get(m, 10.0)),
                }
            )
    return {"config": {"models": list(models_top1)}, "cells": cells}


def test_verdict_calls_a_gap_within_the_seed_spread_noise():
    kinds = {"lstm": "sequence", "cnn": "image"}
    results = _fake({"lstm": [0.90, 0.80, 0.85], "cnn": [0.86, 0.84, 0.88]}, kinds)
    text = " ".join(verdict(results, summarize(results)))
    assert "within noise" in text and "ahead" not in text.split("Speed")[0]


def test_verdict_names_a_clear_winner():
    kinds = {"lstm": "sequence", "cnn": "image"}
    results = _fake({"lstm": [0.80, 0.81, 0.79], "cnn": [0.90, 0.91, 0.92]}, kinds)
    text = " ".join(verdict(results, summarize(results)))
    assert "The image path is ahead" in text and "`cnn` wins 3 of 3" in text


def test_verdict_with_one_seed_says_the_spread_is_unknown():
    kinds = {"lstm": "sequence", "cnn": "image"}
    results = _fake({"lstm": [0.80], "cnn": [0.90]}, kinds)
    assert "spread is unknown" in " ".join(verdict(results, summarize(results)))


def test_converged_reads_the_last_epochs():
    """A curve has converged when its last 3 epochs gain less than 0.3 points over the best before them."""
    flat = _curve(0.9)
    assert converged(flat)["converged"] and converged(flat)["gain"] < 0.003
    up = _curve(0.9, rising=True)
    c = converged(up)
    assert not c["converged"] and c["gain"] == pytest.approx(0.03) and "still gained" in c["reason"]
    short = converged(flat[:3])
    assert not short["converged"] and short["gain"] is None and "too short" in short["reason"]
    # a drop at the end is converged (no gain), a gain of exactly the tolerance is not
    assert converged([{"val_top1": v} for v in (0.5, 0.9, 0.89, 0.88, 0.88)])["converged"]
    assert not converged([{"val_top1": v} for v in (0.5, 0.9, 0.9, 0.9, 0.904)])["converged"]


def test_verdict_names_no_representation_winner_from_unconverged_cells():
    """With a model still improving, the verdict says it compares training speed and names no winner."""
    kinds = {"lstm": "sequence", "cnn": "image"}
    results = _fake({"lstm": [0.80, 0.81, 0.79], "cnn": [0.90, 0.91, 0.92]}, kinds, rising=("lstm",))
    text = " ".join(verdict(results, summarize(results)))
    assert "not settled" in text and "training speed" in text and "`lstm`" in text.split("not converged")[1]
    assert "ahead" not in text and "within noise" not in text and "Most accurate converged model:** `cnn`" in text
    # the same scores with both converged name the winner
    results = _fake({"lstm": [0.80, 0.81, 0.79], "cnn": [0.90, 0.91, 0.92]}, kinds)
    assert "The image path is ahead" in " ".join(verdict(results, summarize(results)))


def test_fusion_verdict_also_waits_for_convergence():
    """Fusion is not declared ahead or behind while it (or a single model) is still improving."""
    kinds = {"lstm": "sequence", "cnn": "image", "fusion": "both"}
    results = _fake({"lstm": [0.8, 0.8], "cnn": [0.9, 0.9], "fusion": [0.85, 0.86]}, kinds, rising=("fusion",))
    text = " ".join(verdict(results, summarize(results)))
    assert "Fusion at convergence: not settled" in text and "behind" not in text


def test_equal_compute_spans_the_large_models_when_a_small_one_finishes_first():
    """When a small model finishes before a large one's first epoch, the times run from that first epoch to the median run."""
    kinds = {"big": "sequence", "small": "image", "mid": "both"}
    results = _fake({"big": [0.9, 0.9], "small": [0.8, 0.8], "mid": [0.85, 0.85]}, kinds,
                    seconds={"big": 100.0, "small": 5.0, "mid": 50.0})  # fmt: skip
    eq = equal_compute(results, summarize(results))
    totals = {"big": 800.0, "small": 40.0, "mid": 400.0}  # 8 epochs each
    assert eq["times"][0] == pytest.approx(100.0) and eq["times"][-1] == pytest.approx(400.0)  # big's 1st epoch .. the median run
    rows = {r["model"]: r for r in eq["rows"]}
    assert all(v is not None for r in rows.values() for v in r["top1"])  # every model is read at every time
    assert rows["small"]["finished"] == [True, True, True] and rows["big"]["finished"] == [False, False, False]
    assert rows["mid"]["finished"] == [False, False, False]  # it ends at the last time, not before it
    assert [r["top1"][-1] for r in (rows["small"], rows["big"])] == pytest.approx([0.8, results["cells"][0]["history"][3]["val_top1"]])
    assert totals["small"] < eq["times"][0]
    text = " ".join(verdict(results, summarize(results)))
    assert "At equal compute** (400 s of training each" in text and "`small` 80.00% (its whole run, finished earlier)" in text


def test_equal_compute_reads_the_curves_at_the_same_times():
    """Equal compute reads each model's val top-1 at fractions of the shortest run's training time."""
    kinds = {"slow": "sequence", "fast": "image"}
    results = _fake({"slow": [0.9, 0.9], "fast": [0.8, 0.8]}, kinds, seconds={"slow": 20.0, "fast": 10.0})
    eq = equal_compute(results, summarize(results))
    assert eq["times"] == pytest.approx([80 / 3, 160 / 3, 80.0])  # the shorter run: 8 epochs x 10 s
    slow = next(r for r in eq["rows"] if r["model"] == "slow")
    fast = next(r for r in eq["rows"] if r["model"] == "fast")
    # at 80 s the slow model has finished 4 of its 8 epochs, the fast one all 8
    assert slow["top1"][-1] == pytest.approx(results["cells"][0]["history"][3]["val_top1"])
    assert fast["top1"][-1] == pytest.approx(0.8)
    assert slow["top1"][0] is not None
    text = " ".join(verdict(results, summarize(results)))
    assert "At equal compute** (80 s of training each" in text


def test_default_run_is_real_data_with_the_stated_sizes(monkeypatch, capsys):
    """`strokes bench` with no --data runs the shipped CROHME subset with the quick models, sizes, epochs and seeds."""
    import strokes.bench as B

    seen = {}

    def fake_run_bench(ds, config, out_dir=None, **kw):
        seen["ds"], seen["config"] = ds, config
        raise SystemExit(0)

    monkeypatch.setattr(B, "run_bench", fake_run_bench)
    with pytest.raises(SystemExit):
        main(["bench"])
    cfg, ds = seen["config"], seen["ds"]
    assert ds.info["builtin"] == "crohme-mini" and not ds.synthetic and len(ds) == 5788
    assert cfg.models == B.QUICK_MODELS and cfg.epochs == B.QUICK_EPOCHS and cfg.time_budget is None
    assert cfg.seeds == 2 and cfg.batch_size == B.QUICK_BATCH_SIZE
    assert cfg.model_options == B.QUICK_OPTIONS
    kinds = {__import__("models").model_entry(m).input_kind for m in cfg.models}
    assert kinds == {"sequence", "image", "both"}
    assert "real symbols" in capsys.readouterr().out


def test_default_run_end_to_end_on_the_shipped_data(tmp_path, capsys):
    """A shortened default run (one model, one epoch) trains on the shipped data and writes its report."""
    code = main(["bench", "--models", "lenet5", "--epochs", "1", "--seeds", "1", "--latency-samples", "3", "--out", str(tmp_path)])
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["data"]["samples"] == 5788 and results["data"]["synthetic"] is False
    report = (tmp_path / "report.md").read_text()
    assert "SYNTHETIC" not in report and "crohme-mini" in report


def test_probes_rescore_each_cell_and_fill_in_finished_cells(data, tmp_path):
    """Every cell is re-scored under the probes; a cell finished without them gets them on the next run."""
    cfg = _config(models=("lenet5", "gru"), seeds=1, probes=())
    first = run_bench(data, cfg, tmp_path, progress=False)
    assert all(c["probes"] == {} for c in first["cells"]) and first["probes"] is None
    again = run_bench(data, _config(models=("lenet5", "gru"), seeds=1, probes=("reversed", "flip-y")), tmp_path, progress=False)
    assert again["cells_reused"] == 2
    for cell in again["cells"]:
        assert set(cell["probes"]) == {"reversed", "flip-y"}
        assert 0 <= cell["probes"]["reversed"]["top1"] <= cell["probes"]["reversed"]["top5"] <= 1
    # a stroke-order-free image model sees a reversed stroke as the same picture
    lenet = next(c for c in again["cells"] if c["model"] == "lenet5")
    assert lenet["probes"]["reversed"]["top1"] == pytest.approx(lenet["test"]["top1"], abs=1e-9)
    rows = {r["probe"]: r for r in again["probes"]["rows"]}
    assert rows["flip-y"]["informational"] and not rows["reversed"]["informational"]
    assert rows["reversed"]["models"]["lenet5"]["drop"] == pytest.approx(0.0, abs=1e-9)
    report = (tmp_path / "report.md").read_text()
    assert "## Robustness probes" in report and "| reversed |" in report and (tmp_path / "probes.png").exists()
    assert any("Robustness" in v for v in again["verdict"])


def _with_collections(ds, names=("alpha", "beta", "gamma")):
    """``ds`` with its sources renamed into collections, writer by writer (as CROHME's folders are)."""
    import copy

    out = copy.copy(ds)
    out.source_names = [f"{names[i % len(names)]}/{s.split('/')[-1]}" for i, s in enumerate(ds.source_names)]
    return out


def test_collection_split_leaves_one_collection_out(data):
    """--split collection tests on each collection in turn, trained (and validated) on the others only."""
    from strokes.splits import collections

    ds = _with_collections(data)
    coll, names = collections(ds)
    assert names == ["alpha", "beta", "gamma"] and (coll >= 0).all()
    splits = make_splits(ds, _config(split="collection", seeds=1))
    assert [sid for sid, _, _ in splits] == ["s0-alpha", "s0-beta", "s0-gamma"]
    for (sid, _, sp), c in zip(splits, range(3)):
        assert set(coll[sp.test]) == {c} and c not in set(coll[sp.train]) | set(coll[sp.val])
        assert len(sp.test) == (coll == c).sum() and len(sp.val) > 0
    with pytest.raises(ValueError, match="at least two collections"):
        make_splits(_with_collections(data, ("only",)), _config(split="collection", seeds=1))


def test_collection_split_end_to_end_reports_per_collection(data, tmp_path):
    """A collection run reports one column per held-out collection."""
    results = run_bench(_with_collections(data), _config(models=("lenet5",), seeds=1, split="collection", probes=()), tmp_path, progress=False)
    assert {c["split_id"] for c in results["cells"]} == {"s0-alpha", "s0-beta", "s0-gamma"}
    report = (tmp_path / "report.md").read_text()
    assert "leave one collection out" in report and "| model | alpha | beta | gamma | mean | min | max |" in report


def test_train_fractions_are_nested_writer_subsets(data):
    """Training fractions are seeded, nested, writer-whole subsets; validation and test stay the same."""
    from strokes.splits import groups

    cfg = _config(seeds=1, train_fractions=(0.25, 0.5))
    splits = make_splits(data, cfg)
    assert [sid for sid, _, _ in splits] == ["s0-frac0.25", "s0-frac0.5", "s0"]
    subsets = [set(sp.train) for _, _, sp in splits]
    assert subsets[0] < subsets[1] < subsets[2]
    g = groups(data)
    full = splits[-1][2]
    for _, _, sp in splits:
        assert np.array_equal(sp.val, full.val) and np.array_equal(sp.test, full.test)
        inside = set(g[sp.train])
        assert set(np.flatnonzero(np.isin(g, list(inside)))) & set(full.train) == set(sp.train)  # whole writers
    assert len(splits[0][2].train) >= 0.25 * len(full.train)
    again = make_splits(data, cfg)
    assert all(np.array_equal(a[2].train, b[2].train) for a, b in zip(splits, again))
    with pytest.raises(ValueError, match="train_fractions"):
        _config(train_fractions=(0.0,))


def test_data_efficiency_report(data, tmp_path):
    """A run with training fractions reports top-1 against training samples; the summary uses full data only."""
    results = run_bench(data, _config(models=("lenet5",), seeds=1, train_fractions=(0.5,), probes=()), tmp_path, progress=False)
    assert sorted(c["train_fraction"] for c in results["cells"]) == [0.5, 1.0]
    eff = results["data_efficiency"]
    (row,) = eff["rows"]
    assert [p["fraction"] for p in row["points"]] == [0.5, 1.0]
    assert row["points"][0]["train_samples"] < row["points"][1]["train_samples"]
    (summary,) = results["summary"]
    full = next(c for c in results["cells"] if c["train_fraction"] == 1.0)
    assert summary["cells"] == 1 and summary["top1_mean"] == full["test"]["top1"]
    assert (tmp_path / "data_efficiency.png").exists() and "## Data efficiency" in (tmp_path / "report.md").read_text()


def test_report_only_covers_finished_cells_and_names_the_rest(data, tmp_path):
    """report_only trains nothing: it reports the finished cells and lists the pending ones."""
    cfg = _config(models=("lenet5",), seeds=2, probes=())
    run_bench(data, cfg, tmp_path, progress=False)
    (tmp_path / "cells" / "lenet5__s1.json").unlink()
    before = sorted(p.name for p in (tmp_path / "cells").iterdir())
    results = run_bench(data, cfg, tmp_path, progress=False, report_only=True)
    assert results["pending_cells"] == ["lenet5__s1"] and [c["cell"] for c in results["cells"]] == ["lenet5__s0"]
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == before  # nothing trained or written
    assert "Not finished yet" in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="no finished cells"):
        run_bench(data, cfg, tmp_path / "empty", progress=False, report_only=True)


def test_cli_report_only(tmp_path, capsys):
    """strokes bench --report-only reports what an --out holds and trains nothing."""
    args = ["bench", "--data", "synthetic:writers=6,samples=1", "--models", "lenet5", "--epochs", "1", "--seeds", "2",
            "--device", "cpu", "--latency-samples", "3", "--probes", "none", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    (tmp_path / "cells" / "lenet5__s1.json").unlink()
    assert main([*args, "--report-only"]) == 0
    assert not (tmp_path / "cells" / "lenet5__s1.json").exists()
    assert "Not finished yet" in (tmp_path / "report.md").read_text()


def test_fraction_epochs_train_small_subsets_longer(data, tmp_path):
    """fraction_epochs sets the epochs of the cells on a training fraction; full-data cells keep epochs."""
    cfg = _config(models=("lenet5",), seeds=1, epochs=1, train_fractions=(0.5,), fraction_epochs={0.5: 3}, probes=())
    assert cfg.fraction_epochs == {"0.5": 3} and cfg.epochs_for(0.5) == 3 and cfg.epochs_for(1.0) == 1
    results = run_bench(data, cfg, tmp_path, progress=False)
    by = {c["train_fraction"]: c for c in results["cells"]}
    assert by[0.5]["epochs_run"] == 3 and len(by[0.5]["history"]) == 3
    assert by[1.0]["epochs_run"] == 1 and len(by[1.0]["history"]) == 1
    assert [p["epochs"] for p in results["data_efficiency"]["rows"][0]["points"]] == [3, 1]
    report = (tmp_path / "report.md").read_text()
    assert "Epochs: 0.5: 3; 1: 1." in report and "1 epochs (3 at training fraction 0.5)" in report
    assert "\\* not converged" in report  # three epochs are too few to tell
    with pytest.raises(ValueError, match="other settings.*fraction_epochs"):  # other epochs per fraction: a new run
        run_bench(data, _config(models=("lenet5",), seeds=1, epochs=1, train_fractions=(0.5,), fraction_epochs={0.5: 2}, probes=()), tmp_path, progress=False)


def test_report_reads_convergence_from_the_cells_not_a_saved_summary(data, tmp_path):
    """A results.json saved before data-efficiency points carried convergence is still reported with it."""
    from strokes.bench_report import render_report

    cfg = _config(models=("lenet5",), seeds=1, epochs=2, train_fractions=(0.5,), probes=())
    results = run_bench(data, cfg, tmp_path, progress=False)
    for row in results["data_efficiency"]["rows"]:  # as an older run saved it
        for p in row["points"]:
            p.pop("converged"), p.pop("epochs")
    text = render_report(results)
    assert "Epochs: 0.5: 2; 1: 2." in text and "\\* not converged" in text and "Every cell converged" not in text


def test_fraction_epochs_are_validated_and_absent_from_older_settings():
    """fraction_epochs must name a training fraction below 1 with a positive int; empty, it leaves the settings as before."""
    assert "fraction_epochs" not in _config().cell_settings()  # runs recorded before the field existed still resume
    with pytest.raises(ValueError, match="not one of the run's train_fractions"):
        _config(train_fractions=(0.5,), fraction_epochs={0.25: 3})
    with pytest.raises(ValueError, match="full-data cells use epochs"):
        _config(train_fractions=(0.5,), fraction_epochs={1.0: 3})
    with pytest.raises(ValueError, match="positive int"):
        _config(train_fractions=(0.5,), fraction_epochs={0.5: 0})
    with pytest.raises(ValueError, match="training fractions"):
        _config(train_fractions=(0.5,), fraction_epochs={"half": 2})
    with pytest.raises(TypeError, match="dict"):
        _config(train_fractions=(0.5,), fraction_epochs=[(0.5, 2)])
    with pytest.raises(ValueError, match="twice"):
        _config(train_fractions=(0.5,), fraction_epochs={0.5: 2, "0.5": 3})
    with pytest.raises(ValueError, match="needs epochs"):
        _config(epochs=None, time_budget=5.0, train_fractions=(0.5,), fraction_epochs={0.5: 2})


def test_only_trains_the_matching_cells(data, tmp_path):
    """only= trains just the cells matching its patterns; the rest are pending until a later call runs them."""
    cfg = _config(models=("lenet5",), seeds=2, probes=())
    results = run_bench(data, cfg, tmp_path, progress=False, only=["*__s1"])
    assert [c["cell"] for c in results["cells"]] == ["lenet5__s1"] and results["pending_cells"] == ["lenet5__s0"]
    assert not (tmp_path / "cells" / "lenet5__s0.json").exists()
    first = (tmp_path / "cells" / "lenet5__s1.json").read_text()
    results = run_bench(data, cfg, tmp_path, progress=False)
    assert sorted(c["cell"] for c in results["cells"]) == ["lenet5__s0", "lenet5__s1"] and results["cells_reused"] == 1
    assert (tmp_path / "cells" / "lenet5__s1.json").read_text() == first  # reused, not trained again
    with pytest.raises(ValueError, match=r"no cell of this run matches 'gru__\*'; its cells are: lenet5__s0, lenet5__s1"):
        run_bench(data, cfg, tmp_path, progress=False, only=["gru__*"])
    with pytest.raises(TypeError, match="list of cell-name patterns"):
        run_bench(data, cfg, tmp_path, progress=False, only="lenet5__s0")
    with pytest.raises(TypeError, match=r"cell-name patterns \(str\)"):
        run_bench(data, cfg, tmp_path, progress=False, only=[0])
    with pytest.raises(ValueError, match="no cell of this run matches 'LENET5__s0'"):  # case matters, on every platform
        run_bench(data, cfg, tmp_path, progress=False, only=["LENET5__s0"])


def test_cli_cells_and_fraction_epochs(tmp_path, capsys):
    """strokes bench --cells trains only the named cells; --fraction-epochs reaches the fraction cells."""
    args = ["bench", "--data", "synthetic:writers=8,samples=1", "--models", "lenet5", "--epochs", "1", "--seeds", "1",
            "--train-fraction", "0.5", "--fraction-epochs", "0.5=2", "--device", "cpu", "--latency-samples", "3",
            "--probes", "none", "--out", str(tmp_path)]  # fmt: skip
    assert main([*args, "--cells", "lenet5__s0-frac0.5"]) == 0
    cells = json.loads((tmp_path / "results.json").read_text())
    assert [c["cell"] for c in cells["cells"]] == ["lenet5__s0-frac0.5"] and cells["cells"][0]["epochs_run"] == 2
    assert cells["pending_cells"] == ["lenet5__s0"]
    capsys.readouterr()
    assert main([*args[:-2], "--fraction-epochs", "0.5:2", "--out", str(tmp_path / "x")]) == 2
    assert "--fraction-epochs takes FRACTION=EPOCHS pairs" in capsys.readouterr().err
    assert main([*args[:-2], "--fraction-epochs", "0.5=2,0.50=3", "--out", str(tmp_path / "x")]) == 2
    assert "names a fraction twice" in capsys.readouterr().err


def test_converged_folds_takes_each_fold_from_the_first_run_that_settles_it(tmp_path):
    """benchmarks/converged_folds.py: per fold, the first run where every model converged; unsettled folds say why."""
    from scripts import load_benchmark

    cf = load_benchmark("converged_folds")
    flat, rising = [0.9, 0.95, 0.95, 0.95, 0.95], [0.5, 0.6, 0.7, 0.8, 0.9]

    def cell(model, fold, top1, curve, epochs):
        return {"model": model, "seed": 0, "split_id": f"s0-{fold}", "train_fraction": 1.0, "epochs_run": float(epochs),
                "test": {"top1": top1}, "history": [{"val_top1": v} for v in curve]}  # fmt: skip

    short = [cell("a", "X", 0.80, flat, 5), cell("b", "X", 0.70, flat, 5), cell("a", "Y", 0.60, rising, 5), cell("b", "Y", 0.65, flat, 5),
             cell("a", "Z", 0.5, rising, 5), cell("b", "Z", 0.5, flat, 5)]  # fmt: skip
    long = [cell("a", "Y", 0.90, flat, 8), cell("b", "Y", 0.85, flat, 8), cell("a", "X", 0.1, flat, 8)]
    rows = cf.settle({"short": short, "long": long}, ["a", "b"])
    by = {r["fold"]: r for r in rows}
    assert by["X"]["run"] == "short" and by["X"]["top1"] == {"a": 0.80, "b": 0.70}  # the first run settles it: the later one is not used
    assert by["Y"]["run"] == "long" and by["Y"]["epochs"] == 8.0 and by["Y"]["top1"]["a"] == 0.90
    assert by["Z"]["run"] is None and "still gained" in by["Z"]["why"] and "long: no cell for a, b" in by["Z"]["why"]
    table = cf.markdown(rows, ["a", "b"])
    assert "| X | `short` | 5 | **80.00** | 70.00 | `a` |" in table and "| mean of 2 settled fold(s) | | | 85.00 | 77.50 | `a` |" in table
    assert "| Z | not settled:" in table
    (tmp_path / "cells").mkdir()
    for i, c in enumerate(short):
        (tmp_path / "cells" / f"{i}.json").write_text(json.dumps(c))
    assert len(cf.read_cells(tmp_path)) == len(short)
    with pytest.raises(ValueError, match="no finished cells"):
        cf.read_cells(tmp_path / "nothing")
