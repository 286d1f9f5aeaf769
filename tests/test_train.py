"""Trainer, checkpoints, evaluation and recognize(), end to end on small synthetic data."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import strokes
from strokes.training.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from strokes.formats import ink_to_points3
from strokes.training.evaluate import evaluate, format_report, write_report
from strokes.recognizer import get_recognizer, recognize, recognize_batch
from strokes.synthetic import generate
from strokes.training.train import TrainConfig, Trainer

SMALL_CNN = {"channels": [8, 16], "convs_per_block": 1, "dropout": 0.0}


@pytest.fixture(scope="module")
def data():
    return generate(n_writers=6, samples_per_writer=2, seed=1)


def _config(**kw) -> TrainConfig:
    base = dict(
        model="extexify_cnn",
        model_options=SMALL_CNN,
        epochs=2,
        batch_size=64,
        lr=5e-3,
        device="cpu",
        patience=0,
        val=0.2,
        test=0.2,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    metrics = Trainer(_config(epochs=4, batch_size=16, lr=1e-2), out, progress=False).fit(data)
    return out, metrics


def _weights(path) -> dict:
    return read_checkpoint(path)["state_dict"]


def test_fit_writes_checkpoints_history_and_metrics(trained):
    out, metrics = trained
    assert {p.name for p in out.iterdir()} >= {"best.pt", "last.pt", "history.json"}
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert {"train_loss", "val_loss", "val_top1", "val_top5", "lr"} <= set(history[0])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert set(metrics) >= {"val", "test", "best_epoch", "split"}
    assert metrics["split"]["mode"] == "writer"
    best = max(history, key=lambda h: (h["val_top1"], h["val_top5"]))
    assert metrics["best_epoch"] == best["epoch"]
    assert metrics["val"]["top1"] == pytest.approx(best["val_top1"], abs=1e-6)
    assert 0 <= metrics["test"]["top1"] <= metrics["test"]["top5"] <= 1
    assert metrics["val"]["top5"] > 3 * 5 / 37  # it learned something (chance is 5/37)


def test_checkpoint_describes_itself(trained, data):
    out, _ = trained
    ckpt = read_checkpoint(out / "best.pt")
    assert ckpt["model"]["name"] == "extexify_cnn" and ckpt["model"]["input_kind"] == "image"
    assert ckpt["model"]["config"]["channels"] == [8, 16]
    assert ckpt["vocab"] == list(data.vocab)
    assert ckpt["pipeline"] and ckpt["render"]["size"] == 32
    assert set(ckpt["versions"]) == {"strokes", "torch", "numpy", "python"}
    assert "trainer_state" not in ckpt  # best.pt is slim; last.pt keeps it
    assert "trainer_state" in read_checkpoint(out / "last.pt")
    loaded = load_checkpoint(out / "best.pt")
    assert loaded.input_kind == "image" and len(loaded.vocab) == len(data.vocab)
    assert "extexify_cnn" in repr(loaded)


def test_training_is_deterministic_on_cpu(data, tmp_path):
    Trainer(_config(epochs=1), tmp_path / "a", progress=False).fit(data)
    Trainer(_config(epochs=1), tmp_path / "b", progress=False).fit(data)
    wa, wb = _weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    Trainer(_config(epochs=1, seed=1), tmp_path / "c", progress=False).fit(data)
    wc = _weights(tmp_path / "c" / "last.pt")
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_ctrl_c_leaves_a_checkpoint_and_resume_matches_uninterrupted(data, tmp_path, monkeypatch):
    Trainer(_config(), tmp_path / "full", progress=False).fit(data)

    calls = {"n": 0}
    original = Trainer._train_epoch

    def interrupt_second_epoch(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupt_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        Trainer(_config(), tmp_path / "cut", progress=False).fit(data)
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    last = tmp_path / "cut" / "last.pt"
    assert read_checkpoint(last)["trainer_state"]["epoch"] == 1
    load_checkpoint(last)  # usable as it is

    Trainer(_config(), tmp_path / "cut", progress=False).fit(data, resume=last)
    wa, wb = _weights(tmp_path / "full" / "last.pt"), _weights(last)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_refuses_a_slim_checkpoint(trained, data, tmp_path):
    out, _ = trained
    with pytest.raises(ValueError, match="no trainer state"):
        Trainer(_config(), tmp_path, progress=False).fit(data, resume=out / "best.pt")


def test_early_stopping(data, tmp_path):
    metrics = Trainer(_config(epochs=6, patience=1, lr=1e-7), tmp_path, progress=False).fit(data)
    assert metrics["stopped"] == "early_stopping" and metrics["epochs_run"] < 6


@pytest.mark.parametrize("name", ["tcn", "fusion"])
def test_sequence_and_fusion_models_train(data, tmp_path, name):
    opts = {
        "tcn": {"channels": 16, "blocks": 2},
        "fusion": {"sequence_encoder": "tcn", "seq_hidden": 16, "seq_layers": 2, "image_width": 8, "image_stages": 2,
                   "head_hidden": 32},
    }[name]
    metrics = Trainer(_config(model=name, model_options=opts, epochs=1), tmp_path, progress=False).fit(data)
    assert np.isfinite(metrics["val"]["loss"])
    assert read_checkpoint(tmp_path / "best.pt")["model"]["input_kind"] in ("sequence", "both")


def test_bad_config_values():
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError):
        TrainConfig(split="by_writer")
    with pytest.raises(ValueError, match="valid models"):
        Trainer(TrainConfig(model="nope", device="cpu"), "/nonexistent", progress=False).fit(generate(2, 1))


# -- checkpoints are data, never code ------------------------------------------------------


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_never_runs(trained, tmp_path):
    out, _ = trained
    marker = tmp_path / "pwned"
    ckpt = read_checkpoint(out / "best.pt")
    ckpt["metrics"] = {"evil": _Payload(marker)}
    bad = tmp_path / "evil.pt"
    torch.save(ckpt, bad)
    with pytest.raises(ValueError, match="refusing to load"):
        load_checkpoint(bad)
    with pytest.raises(ValueError, match="refusing to load"):
        recognize([[(0, 0), (1, 1)]], model=bad)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(3)}, p)
    with pytest.raises(ValueError, match="not a strokes checkpoint"):
        load_checkpoint(p)
    p.write_bytes(b"garbage")
    with pytest.raises(ValueError):
        load_checkpoint(p)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_newer_checkpoint_version_is_refused(trained, tmp_path):
    out, _ = trained
    ckpt = read_checkpoint(out / "best.pt")
    ckpt["version"] = 99
    save_checkpoint(ckpt, tmp_path / "new.pt")
    with pytest.raises(ValueError, match="upgrade"):
        load_checkpoint(tmp_path / "new.pt")


# -- recognize -------------------------------------------------------------------------------


def test_recognize_accepts_every_ink_shape(trained, data):
    out, _ = trained
    model = out / "best.pt"
    ink = [np.asarray(s)[:, :2] for s in data[0].strokes]
    as_lists = [[(float(x), float(y)) for x, y in s] for s in ink]
    as_dicts = [[{"x": float(x), "y": float(y), "t": i} for i, (x, y) in enumerate(s)] for s in ink]
    points3 = ink_to_points3(ink)
    results = [recognize(v, k=3, model=model) for v in (ink, as_lists, as_dicts, points3)]
    labels = [[lab for lab, _ in r] for r in results]
    assert all(lab == labels[0] for lab in labels)
    probs = [p for _, p in results[0]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert all(lab in data.vocab for lab in labels[0])


def test_recognize_batch_equals_one_by_one(trained, data):
    out, _ = trained
    inks = [data[i].strokes for i in range(7)]
    batch = recognize_batch(inks, k=4, model=out / "best.pt")
    single = [recognize(ink, k=4, model=out / "best.pt") for ink in inks]
    for b, s in zip(batch, single):
        assert [lab for lab, _ in b] == [lab for lab, _ in s]
        assert np.allclose([p for _, p in b], [p for _, p in s], atol=1e-5)


def test_recognize_bad_ink_and_k(trained):
    model = trained[0] / "best.pt"
    with pytest.raises(ValueError):
        recognize([], model=model)
    with pytest.raises(ValueError):
        recognize([[(0, float("nan"))]], model=model)
    with pytest.raises(ValueError, match="k must be"):
        recognize([[(0, 0), (1, 1)]], k=0, model=model)
    with pytest.raises(ValueError, match="ink 1"):
        recognize_batch([[[(0, 0)]], []], model=model)
    assert len(recognize([[(0, 0), (1, 1)]], k=1000, model=model)) == len(load_checkpoint(model).vocab)


def test_recognizer_is_cached_and_thread_safe(trained, data):
    model = trained[0] / "best.pt"
    rec = get_recognizer(model)
    assert get_recognizer(model) is rec
    inks = [data[i].strokes for i in range(20)]
    want = rec.batch(inks, k=3)
    results, errors = {}, []

    def work(j):
        try:
            results[j] = [recognize(ink, k=3, model=model) for ink in inks]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(j,)) for j in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got in results.values():
        assert [[lab for lab, _ in r] for r in got] == [[lab for lab, _ in r] for r in want]


def test_recognize_takes_a_loaded_model(trained, data):
    loaded = load_checkpoint(trained[0] / "best.pt")
    assert recognize(data[0].strokes, model=loaded)[0][0] in data.vocab


# -- evaluation --------------------------------------------------------------------------------


def test_evaluate_report_and_files(trained, data, tmp_path):
    out, _ = trained
    loaded = load_checkpoint(out / "best.pt")
    report = evaluate(loaded, data)
    assert report["samples"] == len(data) and report["unknown_label_samples"] == 0
    assert 0 <= report["top1"] <= report["top5"] <= 1
    assert sum(c["support"] for c in report["per_class"]) == len(data)
    cm = np.asarray(report["confusion"])
    assert cm.sum() == len(data) and np.trace(cm) / len(data) == pytest.approx(report["top1"], abs=1e-6)
    assert all(c["true"] != c["predicted"] for c in report["most_confused"])
    paths = write_report(report, tmp_path, history=loaded.checkpoint["history"])
    assert paths["confusion"].read_bytes()[:4] == b"\x89PNG" and paths["curves"].exists()
    assert json.loads(paths["metrics"].read_text())["top1"] == report["top1"]
    assert "top-1" in format_report(report)


def test_evaluate_counts_unknown_labels_as_errors(trained):
    loaded = load_checkpoint(trained[0] / "best.pt")
    other = generate(n_writers=1, samples_per_writer=1, seed=5)
    other.vocab = [v + "_new" if i == 0 else v for i, v in enumerate(other.vocab)]
    report = evaluate(loaded, other)
    n_unknown = int((other.labels == 0).sum())
    assert report["unknown_label_samples"] == n_unknown > 0
    assert report["unknown_labels"] == [other.vocab[0]]


# -- command line and ONNX ----------------------------------------------------------------------


def _cli(*args):
    from strokes.cli import main

    return main([str(a) for a in args])


def test_cli_train_eval_recognize(tmp_path, capsys):
    out = tmp_path / "run"
    code = _cli(
        "train", "synthetic:writers=5,samples=1,seed=2", "--model", "softmax", "--epochs", "2",
        "--batch-size", "32", "--out", out, "--seed", "3", "--device", "cpu",
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "best checkpoint" in text and "top-1" in text
    assert {"best.pt", "last.pt", "metrics.json", "confusion.png", "curves.png"} <= {p.name for p in out.iterdir()}

    assert _cli("eval", out / "best.pt", "synthetic:writers=5,samples=1,seed=2", "--out", tmp_path / "ev") == 0
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert report["subset"] == "test"  # same data as training: its held-out test split
    assert _cli("eval", out / "best.pt", "synthetic:writers=2,samples=1,seed=9", "--subset", "all") == 0

    drawing = tmp_path / "d.json"
    drawing.write_text(json.dumps({"strokes": [[[0, 0], [10, 10]], [[10, 0], [0, 10]]]}))
    capsys.readouterr()
    assert _cli("recognize", drawing, "--model", out / "best.pt", "-k", "3", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result[str(drawing)]) == 3

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert _cli("recognize", bad, "--model", out / "best.pt") == 2


def test_cli_train_config_file_then_flags(tmp_path):
    from strokes.cli import build_parser, train_config_from_args

    cfg = tmp_path / "best_config.json"
    cfg.write_text(json.dumps({"train": {"model": "lenet5", "lr": 0.004, "epochs": 7, "model_options": {"activation": "tanh"},
                                         "augment": []}, "study": {"name": "x"}}))
    args = build_parser().parse_args(["train", "synthetic", "--config", str(cfg), "--epochs", "3", "--option", "pool=avg"])
    config = train_config_from_args(args)
    assert (config.model, config.lr, config.epochs, config.augment) == ("lenet5", 0.004, 3, [])  # the flag wins
    assert config.model_options == {"activation": "tanh", "pool": "avg"}  # merged, the flag's keys win
    assert config.batch_size == 128  # neither file nor flag: the default
    cfg.write_text(json.dumps({"model": "lenet5", "max_train_samples": 500, "time_budget": 60.0}))
    cleared = build_parser().parse_args(["train", "synthetic", "--config", str(cfg), "--max-train-samples", "none",
                                         "--time-budget", "None"])
    config = train_config_from_args(cleared)
    assert (config.max_train_samples, config.time_budget) == (None, None)  # "none" clears the file's values
    plain = build_parser().parse_args(["train", "synthetic"])
    assert train_config_from_args(plain) == TrainConfig()  # no file, no flags: exactly the defaults


def test_cli_train_config_file_errors(tmp_path, capsys):
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"model": "lenet5", "learning_rate": 0.1}))
    assert _cli("train", "synthetic", "--config", typo) == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and "valid fields" in err and "lr" in err
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert _cli("train", "synthetic", "--config", broken) == 2
    assert "broken.json is not valid JSON" in capsys.readouterr().err
    assert _cli("train", "synthetic", "--config", tmp_path / "missing.json") == 2
    assert "no such config file" in capsys.readouterr().err


def test_fit_calls_on_epoch_and_its_exception_stops_training(data, tmp_path):
    rows = []

    class Stop(Exception):
        pass

    def on_epoch(row):
        rows.append(row)
        if row["epoch"] == 2:
            raise Stop

    trainer = Trainer(TrainConfig(model="softmax", epochs=5, batch_size=32, device="cpu", augment=[]), tmp_path, progress=False)
    with pytest.raises(Stop):
        trainer.fit(data, on_epoch=on_epoch)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(0 <= r["val_top1"] <= 1 for r in rows)
    assert (tmp_path / "last.pt").exists()


def test_cli_unknown_model_lists_valid_names(capsys):
    assert _cli("train", "synthetic", "--model", "resnet9000", "--epochs", "1") == 2
    assert "valid models" in capsys.readouterr().err


@pytest.mark.parametrize("name,opts", [("extexify_cnn", SMALL_CNN), ("tcn", {"channels": 16, "blocks": 2})])
def test_export_onnx_matches_torch(data, tmp_path, name, opts):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from strokes.onnx_export import check_onnx, example_inputs, export_onnx

    Trainer(_config(model=name, model_options=opts, epochs=1), tmp_path, progress=False).fit(data)
    result = export_onnx(tmp_path / "best.pt", tmp_path / "m.onnx")
    assert result["max_abs_diff"] < 1e-4
    loaded = load_checkpoint(tmp_path / "best.pt")
    # a different batch size and length than the export used
    assert check_onnx(tmp_path / "m.onnx", loaded, example_inputs(loaded, batch=7, length=31, seed=3)) < 1e-4


def test_inference_copy_folds_batchnorm_without_changing_outputs(data):
    import models
    from rendering import RenderConfig
    from strokes.training.checkpoint import make_checkpoint
    from strokes.normalize import default_pipeline
    from strokes.recognizer import Recognizer

    torch.manual_seed(0)
    net = models.create_model("vgg_gap", len(data.vocab), width=4, stages=2)
    for m in net.modules():  # non-trivial running statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    ckpt = make_checkpoint(net, vocab=data.vocab, pipeline=default_pipeline(), render=RenderConfig())
    loaded = load_checkpoint(ckpt)
    rec = Recognizer(loaded)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in rec.model.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.model.modules())  # the original is untouched
    inputs = rec._inputs([data[i].strokes for i in range(9)])
    with torch.inference_mode():
        assert torch.allclose(rec.model(**inputs), loaded.model(**inputs), atol=1e-4)


def test_checkpoint_split_refuses_other_data(trained, data):
    from strokes.training.train import checkpoint_split

    ckpt = read_checkpoint(trained[0] / "best.pt")
    sp = checkpoint_split(ckpt, data)
    assert len(sp.test) == ckpt["metrics"]["split"]["test"]
    with pytest.raises(ValueError, match="not the data"):
        checkpoint_split(ckpt, generate(n_writers=2, samples_per_writer=1, seed=7))


def test_cli_train_killed_leaves_a_resumable_checkpoint(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "strokes", "train", "synthetic:writers=5,samples=1,seed=2", "--model", "softmax",
           "--epochs", "500", "--patience", "0", "--batch-size", "64", "--out", str(out), "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while not (out / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert (out / "last.pt").exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint in time"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    state = read_checkpoint(out / "last.pt")["trainer_state"]
    assert state["epoch"] >= 1


# --------------------------------------------------------------- speed options (issue 14)
def _autocast_dtypes(trainer_model):
    """Record the dtype of every conv/linear output during a forward pass (a hook per layer)."""
    seen = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
        for m in trainer_model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    return seen, hooks


@pytest.mark.parametrize("precision, expected", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_precision_is_honoured_and_recorded(data, tmp_path, precision, expected):
    """precision=fp32 computes convs in fp32, bf16 in bf16; the checkpoint records what was used."""
    trainer = Trainer(_config(epochs=1, precision=precision), tmp_path, progress=False)
    trainer._setup(data, None)
    seen, hooks = _autocast_dtypes(trainer.model)
    trainer.out_dir.mkdir(parents=True, exist_ok=True)
    trainer._train_epoch()
    for h in hooks:
        h.remove()
    assert seen and set(seen) == {expected}
    assert trainer.precision == precision
    metrics = Trainer(_config(epochs=1, precision=precision), tmp_path / "run", progress=False).fit(data)
    ckpt = read_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["train"]["precision"] == precision and ckpt["train"]["precision_used"] == precision
    assert np.isfinite(metrics["val"]["loss"])
    for w in ckpt["state_dict"].values():  # weights stay fp32, stored NCHW-contiguous
        assert w.dtype in (torch.float32, torch.int64) and w.is_contiguous()


def test_precision_auto_follows_the_hardware(monkeypatch):
    """auto is bf16 exactly where the device does bf16 natively; bad names are refused."""
    from strokes.training import train as T

    monkeypatch.setattr(T, "native_bf16", lambda device: True)
    assert T.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(T, "native_bf16", lambda device: False)
    assert T.resolve_precision("auto", "cpu") == "fp32"
    assert T.resolve_precision("bf16", "cpu") == "bf16"  # asked for outright: emulated, with a warning
    assert T.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        T.resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        _config(precision="half")


def test_old_amp_field_still_reads(tmp_path):
    """A config saved before `precision` existed loads: amp=False means fp32, amp=True the default."""
    assert TrainConfig.from_dict({"amp": False}).precision == "fp32"
    assert TrainConfig.from_dict({"amp": True}).precision == "auto"
    assert TrainConfig.from_dict({"amp": False, "precision": "bf16"}).precision == "bf16"


def test_channels_last_for_image_models_only(data, tmp_path):
    """Image models get NHWC conv weights and inputs; sequence models are left alone."""
    trainer = Trainer(_config(epochs=1), tmp_path / "img", progress=False)
    trainer._setup(data, None)
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert trainer.channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)
    order = torch.arange(len(trainer.train_data))
    inputs, _ = trainer._epoch_batches(order).__next__()
    assert inputs["image"].is_contiguous(memory_format=torch.channels_last)
    off = Trainer(_config(epochs=1, channels_last=False), tmp_path / "off", progress=False)
    off._setup(data, None)
    assert not off.channels_last
    seq = Trainer(_config(model="gru", model_options={"hidden": 8, "layers": 1}, epochs=1), tmp_path / "seq", progress=False)
    seq._setup(data, None)
    assert not seq.channels_last


def test_workers_give_the_same_run(data, tmp_path):
    """Batches prepared in a DataLoader worker equal those prepared in the loop: same weights, same history."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a worker leaves the model threads - 1 threads: compare at one thread
    try:
        runs = {}
        for w in (0, 1):
            cfg = _config(model="fusion", model_options={"seq_hidden": 8, "seq_layers": 1, "image_width": 4}, epochs=2, batch_size=8, workers=w)
            trainer = Trainer(cfg, tmp_path / f"w{w}", progress=False)
            trainer.fit(data)
            assert trainer.workers == w
            runs[w] = (_weights(tmp_path / f"w{w}" / "last.pt"), [h["val_top1"] for h in trainer.history])
    finally:
        torch.set_num_threads(threads)
    (w0, h0), (w1, h1) = runs[0], runs[1]
    assert h0 == h1 and all(torch.equal(w0[k], w1[k]) for k in w0)


def test_workers_auto_and_validation(data, tmp_path):
    """auto uses a worker only for small rendering models on the CPU with enough steps; bad values are refused."""
    small = Trainer(_config(model="lenet5", model_options={}, epochs=1, batch_size=4), tmp_path / "a", progress=False)
    small._setup(data, None)
    assert small.steps_per_epoch >= 16 and small.workers == 1
    few = Trainer(_config(model="lenet5", model_options={}, epochs=1, batch_size=64), tmp_path / "b", progress=False)
    few._setup(data, None)
    assert few.steps_per_epoch < 16 and few.workers == 0
    seq = Trainer(_config(model="gru", model_options={"hidden": 8, "layers": 1}, batch_size=4), tmp_path / "c", progress=False)
    seq._setup(data, None)
    assert seq.workers == 0
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="workers must be"):
            _config(workers=bad)


def test_batch_groups_round_trip(data):
    """Grouping batches for transfer and ungrouping gives back the very batches, in order."""
    from rendering import RenderConfig
    from strokes.training.batching import BatchGroups, EpochBatches, InkTensors, ungroup
    from strokes.training.train import default_pipeline_for

    ink = InkTensors.from_dataset(data, default_pipeline_for("sequence"))
    order = torch.randperm(len(ink), generator=torch.Generator().manual_seed(0))
    for kind in ("image", "sequence", "both"):
        batches = EpochBatches(ink, order, 7, kind, RenderConfig(), channels_last=kind == "image")
        direct = [batches[i] for i in range(len(batches))]
        for group, start in ((1, 0), (3, 0), (4, 2)):
            got = [b for j in range(len(BatchGroups(batches, group, start))) for b in ungroup(BatchGroups(batches, group, start)[j])]
            want = direct[start:]
            assert len(got) == len(want)
            for (gi, gl), (wi, wl) in zip(got, want):
                assert torch.equal(gl, wl) and set(gi) == set(wi)
                assert all(torch.equal(gi[k], wi[k]) for k in wi)
                if kind == "image":
                    assert gi["image"].is_contiguous(memory_format=torch.channels_last)


def test_in_channels_follow_the_render_channels(data, tmp_path):
    """Rendering several planes sets the image model's in_channels; a contradicting option is refused up front."""
    render = {"channels": ["ink", "order", "direction"]}
    trainer = Trainer(_config(epochs=1, render=render), tmp_path / "planes", progress=False)
    trainer._setup(data, None)
    assert trainer.model.config.in_channels == 4
    order = torch.arange(len(trainer.train_data))
    inputs, _ = trainer._epoch_batches(order).__next__()
    assert inputs["image"].shape[1] == 4
    assert trainer.model(**inputs).shape[1] == len(trainer.vocab)
    bad = Trainer(_config(epochs=1, render=render, model_options={**SMALL_CNN, "in_channels": 1}), tmp_path / "bad", progress=False)
    with pytest.raises(ValueError, match="in_channels=1 does not match the 4 plane"):
        bad._setup(data, None)
    seq = Trainer(_config(model="gru", model_options={"hidden": 8, "layers": 1}, epochs=1, render=render), tmp_path / "seq", progress=False)
    seq._setup(data, None)  # a sequence model has no in_channels to set


def test_mix_images_mixup_and_cutmix():
    """mix_images blends (mixup) or pastes a box (cutmix) with lam the share of the first image; seeded and pure."""
    from strokes.training.train import mix_images

    g = torch.Generator().manual_seed(0)
    image, labels = torch.rand(8, 2, 16, 16), torch.arange(8)
    keep = image.clone()
    same = mix_images(image, labels, g, mixup=0, cutmix=0)
    assert same[0] is image and same[1] is labels and same[2] == 1.0
    mixed, labels_b, lam = mix_images(image, labels, torch.Generator().manual_seed(1), mixup=0.4)
    assert 0 <= lam <= 1 and sorted(labels_b.tolist()) == list(range(8))
    assert torch.allclose(mixed, lam * image + (1 - lam) * image[labels_b])  # labels are the row indices
    assert torch.equal(image, keep)
    again = mix_images(image, labels, torch.Generator().manual_seed(1), mixup=0.4)
    assert torch.equal(again[0], mixed) and again[2] == lam
    for seed in range(20):
        cut, labels_b, lam = mix_images(image, labels, torch.Generator().manual_seed(seed), cutmix=1.0)
        from_a = (cut == image).all(dim=1)  # (B, H, W): the pixel kept the first image
        from_b = (cut == image[labels_b]).all(dim=1)
        assert (from_a | from_b).all()
        moved = labels_b != labels
        if moved.any():
            assert from_a[moved].float().mean().item() == pytest.approx(lam)
    with pytest.raises(ValueError, match="mixup must be"):
        TrainConfig(mixup=-1)


def test_mixup_trains_image_models_only(data, tmp_path):
    """A run with mixup and cutmix trains and records them; a sequence model refuses them up front."""
    cfg = _config(epochs=1, mixup=0.2, cutmix=1.0)
    metrics = Trainer(cfg, tmp_path / "mix", progress=False).fit(data)
    assert np.isfinite(metrics["val"]["loss"])
    assert read_checkpoint(tmp_path / "mix" / "best.pt")["train"]["mixup"] == 0.2
    seq = Trainer(_config(model="gru", model_options={"hidden": 8, "layers": 1}, epochs=1, mixup=0.2), tmp_path / "seq", progress=False)
    with pytest.raises(ValueError, match="mixup/cutmix blend images"):
        seq._setup(data, None)
