"""``strokes tune``: search spaces, the Optuna study (resume, stale trials, pruning) and the CLI, on tiny synthetic data."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import shutil
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

import models  # noqa: E402
import strokes  # noqa: E402
from strokes.training import tune as T  # noqa: E402
from strokes.training.checkpoint import read_checkpoint  # noqa: E402
from strokes.training.train import TrainConfig, load_train_config  # noqa: E402

DATA = "synthetic:writers=8,samples=2"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# a tiny TCN (16 channels fixed, so blocks and dropout are searched), 2 epochs of 128 samples per trial
TINY = ["--model", "tcn", "--option", "channels=16", "--epochs", "2", "--batch-size", "64", "--device", "cpu", "--max-train-samples", "128"]


def _cli(*args) -> int:
    from strokes.cli import main

    return main([str(a) for a in args])


def _study(out: Path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    return optuna.load_study(study_name=T.STUDY_NAME, storage=storage), storage


def _states(out: Path) -> list[str]:
    study, storage = _study(out)
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    storage.engine.dispose()
    return states


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_MAGIC)


@pytest.fixture(scope="module")
def ds():
    return strokes.load(DATA, progress=False)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """Two trials of the tiny TCN through the command line (shared, read-only: tests copy it to change it)."""
    out = tmp_path_factory.mktemp("tune") / "out"
    assert _cli("tune", DATA, *TINY, "--trials", "2", "--out", out) == 0
    return out


def _copy(tuned: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(tuned, out)
    return out


# ------------------------------------------------------------------------------------------ spaces


def test_space_table_is_documented_and_covers_every_model():
    doc_lines = {line.strip() for line in T.__doc__.splitlines()}
    for line in T.format_spaces().splitlines():
        assert line.strip() in doc_lines, f"module docstring lacks the table row {line!r}"
    assert set(T.SEARCH_SPACES) == set(models.list_models())


@pytest.mark.parametrize("name", sorted(T.SEARCH_SPACES))
def test_every_space_builds_working_models_at_its_corners(name):
    import torch

    space = T.SEARCH_SPACES[name]
    for corner in ("low", "high"):
        values = {p.name: (int(getattr(p, corner)) if p.integer else getattr(p, corner)) for p in space.params}
        options = space.options(values)
        net = models.create_model(name, 5, **options)
        points = torch.rand(2, 12, 3)
        out = net(points=points, lengths=torch.tensor([12, 7]), image=torch.rand(2, 1, 32, 32))
        assert out.shape == (2, 5), (name, corner, options)


@pytest.mark.parametrize("name", sorted(T.SEARCH_SPACES))
def test_baseline_is_the_model_default(name):
    space = T.SEARCH_SPACES[name]
    defaults = {p.name: p.default for p in space.params}
    assert all(p.contains(p.default) for p in space.params)
    stock = dataclasses.asdict(models.default_config(name))
    for field, value in space.options(defaults).items():
        assert list(stock[field]) == value if isinstance(value, list) else stock[field] == value, field
    base = TrainConfig(model=name, lr=3e-3, weight_decay=0.01)
    params = T.baseline_params(name, base)
    assert (params["lr"], params["weight_decay"], params["augment"]) == (3e-3, 0.01, 1.0)
    cfg = T.config_from_params(name, params, base)
    assert cfg.augment == T.augment_config(1.0)
    models.create_model(name, 5, **cfg.model_options)


def test_augment_strength_scales_the_default_augmentation():
    from rendering.augment import augment_from_config, default_augment

    assert T.augment_config(0) == []
    assert T.augment_config(1.0) == default_augment().to_config()
    double = {s["name"]: s for s in T.augment_config(2.0)}
    assert double["affine"]["rotate"] == 20.0 and double["affine"]["scale"] == [0.8, 1.2]
    assert double["elastic"]["alpha"] == pytest.approx(0.04) and double["jitter"]["sigma"] == pytest.approx(0.008)
    assert double["elastic"]["waves"] == 4  # counts and frequencies are not magnitudes
    augment_from_config(T.augment_config(2.0))
    with pytest.raises(ValueError, match=">= 0"):
        T.augment_config(-0.5)


def test_suggest_config_fixed_options_and_bad_names():
    base = TrainConfig(model="tcn", epochs=3, model_options={"channels": 16})
    names = [p.name for p in T.search_space("tcn", base)]
    assert names == ["lr", "weight_decay", "augment", "blocks", "dropout"]  # channels is fixed, so not searched
    trial = optuna.trial.FixedTrial({"lr": 1e-3, "weight_decay": 0.02, "augment": 0.5, "blocks": 3, "dropout": 0.25})
    cfg = T.suggest_config(trial, "tcn", base)
    assert (cfg.model, cfg.epochs, cfg.lr, cfg.weight_decay) == ("tcn", 3, 1e-3, 0.02)
    assert cfg.model_options == {"channels": 16, "blocks": 3, "dropout": 0.25}
    assert cfg.augment == T.augment_config(0.5)
    # extexify_cnn: width and blocks become its channels tuple
    cfg = T.config_from_params("extexify_cnn", {"width": 8, "blocks": 2, "dropout": 0.0})
    assert cfg.model_options == {"channels": [8, 16], "dropout": 0.0}
    assert [p.name for p in T.search_space("softmax", TrainConfig(augment=[]))] == ["lr", "weight_decay"]
    with pytest.raises(ValueError, match="valid models"):
        T.search_space("resnet9000")
    with pytest.raises(ValueError, match="unknown parameter"):
        T.config_from_params("softmax", {"dropout": 0.1})
    with pytest.raises(TypeError):
        T.suggest_config(trial, "tcn", base={"epochs": 3})


def test_make_pruner():
    median = T.make_pruner("median")
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert isinstance(T.make_pruner("halving"), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(T.make_pruner("none"), optuna.pruners.NopPruner)
    custom = optuna.pruners.PercentilePruner(25.0)
    assert T.make_pruner(custom) is custom
    with pytest.raises(ValueError, match="median, halving, none"):
        T.make_pruner("hyperband!")


class _PruneFrom(optuna.pruners.BasePruner):
    """Prunes every trial numbered ``first`` or later, at its first report."""

    def __init__(self, first: int):
        self.first = first

    def prune(self, study, trial) -> bool:
        return trial.number >= self.first


def test_epoch_reporter_reports_and_prunes():
    study = optuna.create_study(direction="maximize", pruner=_PruneFrom(1))
    keep = study.ask()
    T.epoch_reporter(keep)({"epoch": 1, "val_top1": 0.5})  # trial 0: reported, not pruned
    study.tell(keep, 0.5)
    doomed = study.ask()
    with pytest.raises(optuna.TrialPruned, match="epoch 2"):
        T.epoch_reporter(doomed)({"epoch": 2, "val_top1": 0.25})
    frozen = study.trials[1]
    assert frozen.intermediate_values == {2: 0.25}
    assert frozen.user_attrs["pruned_at_epoch"] == 2


# ------------------------------------------------------------------------------------------ the library


def _base(**kw) -> TrainConfig:
    return TrainConfig(**{"model": "softmax", "epochs": 3, "batch_size": 64, "device": "cpu", "max_train_samples": 128, **kw})


def test_tune_prunes_trials(ds, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="strokes.training.tune")
    result = T.tune(ds, "softmax", 3, tmp_path, base=_base(epochs=2), pruner=_PruneFrom(1), progress=False)
    assert result["states"] == {"COMPLETE": 1, "PRUNED": 2} and result["n_trials"] == 3 and result["ran"] == 3
    assert result["best"]["number"] == 0  # the baseline
    for n in (1, 2):  # pruned after their first epoch of 2
        assert len(json.loads((tmp_path / "trials" / f"{n:04d}" / "history.json").read_text())) == 1
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["COMPLETE", "PRUNED", "PRUNED"]
    assert [r["pruned_at_epoch"] for r in rows] == ["", "1", "1"] and rows[0]["epochs_run"] == "2"
    assert not list(tmp_path.glob("trials/*/*.pt"))  # trial checkpoints are deleted; OUT/best.pt is kept
    assert (tmp_path / "best.pt").exists() and (tmp_path / "best_config.json").exists()
    # one completed trial: no importances, a note instead of a crash
    assert _is_png(tmp_path / "optimization_history.png") and not (tmp_path / "param_importances.png").exists()
    assert "parameter importances need at least 2 completed trials" in caplog.text


def test_no_completed_trial_means_no_best_config(ds, tmp_path, caplog):
    result = T.tune(ds, "softmax", 1, tmp_path, base=_base(epochs=1), pruner=_PruneFrom(0), progress=False)
    assert result["best"] is None and result["states"] == {"PRUNED": 1}
    assert not (tmp_path / "best_config.json").exists() and (tmp_path / "trials.csv").exists()
    assert "no trial has completed yet" in caplog.text


def test_a_new_study_removes_an_old_studys_outputs(ds, tmp_path, caplog):
    """After study.db is deleted, the old best_config.json never passes for the new study's."""
    T.tune(ds, "softmax", 1, tmp_path, base=_base(epochs=1), pruner="none", progress=False)
    assert json.loads((tmp_path / "best_config.json").read_text())["train"]["model"] == "softmax"
    (tmp_path / "study.db").unlink()
    result = T.tune(ds, "mlp", 1, tmp_path, base=_base(model="mlp", epochs=1), pruner=_PruneFrom(0), progress=False)
    assert result["best"] is None
    assert not (tmp_path / "best_config.json").exists() and not (tmp_path / "best.pt").exists()
    assert "removed the outputs of an earlier study" in caplog.text


def test_tune_is_reproducible(ds, tmp_path):
    runs = [
        T.tune(ds, "softmax", 2, tmp_path / k, base=_base(epochs=1), time_budget=60, pruner="none", seed=5, progress=False)
        for k in "ab"
    ]
    assert runs[0]["best"]["config"]["time_budget"] == 60  # --time-budget: training seconds per trial
    rows = [list(csv.DictReader((tmp_path / k / "trials.csv").open())) for k in "ab"]
    assert rows[0] == [dict(r, seconds=rows[0][i]["seconds"]) for i, r in enumerate(rows[1])]
    assert runs[0]["best"]["params"] == runs[1]["best"]["params"]
    assert rows[0][0]["baseline"] == "1" and rows[0][1]["lr"] != rows[0][0]["lr"]  # trial 1 was sampled


def test_timeout_stops_starting_trials(ds, tmp_path):
    result = T.tune(ds, "softmax", 50, tmp_path, base=_base(epochs=1), timeout=0.01, progress=False)
    assert result["ran"] == 1 and result["n_trials"] == 1  # the first trial ran past the timeout: no second one


def test_interrupted_trial_is_retried_with_its_parameters(ds, tmp_path, monkeypatch, caplog):
    real = T.epoch_reporter

    def interrupt_trial_1(trial):
        report = real(trial)

        def on_epoch(row):
            if trial.number == 1:
                raise KeyboardInterrupt
            report(row)

        return on_epoch

    monkeypatch.setattr(T, "epoch_reporter", interrupt_trial_1)
    with pytest.raises(KeyboardInterrupt):
        T.tune(ds, "softmax", 3, tmp_path, base=_base(epochs=1), progress=False)
    assert _states(tmp_path) == ["COMPLETE", "FAIL"]
    assert (tmp_path / "best_config.json").exists()  # the results so far are written on the way out
    monkeypatch.setattr(T, "epoch_reporter", real)
    result = T.tune(ds, "softmax", 3, tmp_path, base=_base(epochs=1), progress=False)
    assert result["ran"] == 2 and result["n_trials"] == 3
    study, storage = _study(tmp_path)
    t1, t2 = study.trials[1], study.trials[2]
    assert t1.user_attrs["failed_reason"] == "interrupted"
    assert t2.user_attrs["retry_of"] == 1 and t2.params == t1.params and t2.state.name == "COMPLETE"
    storage.engine.dispose()
    assert "trial 1 (interrupted) did not finish" in caplog.text


def test_bad_arguments(ds, tmp_path):
    with pytest.raises(ValueError, match="trials must be a positive int"):
        T.tune(ds, "softmax", 0, tmp_path)
    with pytest.raises(ValueError, match="timeout"):
        T.tune(ds, "softmax", 1, tmp_path, timeout=-1)
    with pytest.raises(ValueError, match="unknown pruner"):
        T.tune(ds, "softmax", 1, tmp_path, pruner="sometimes")
    with pytest.raises(ValueError, match="unknown option"):
        T.tune(ds, "softmax", 1, tmp_path, base=_base(model_options={"width": 3}))
    assert not (tmp_path / "study.db").exists()


# ------------------------------------------------------------------------------------------ the command line


def test_cli_writes_study_best_config_and_plots(tuned):
    names = {p.name for p in tuned.iterdir()}
    assert {"study.db", "best_config.json", "best.pt", "trials.csv", "optimization_history.png", "param_importances.png", "trials"} <= names
    assert _is_png(tuned / "optimization_history.png") and _is_png(tuned / "param_importances.png")
    assert sorted(p.name for p in (tuned / "trials").iterdir()) == ["0000", "0001"]
    for d in (tuned / "trials").iterdir():
        assert {p.name for p in d.iterdir()} == {"config.json", "history.json"}  # checkpoints deleted
        assert len(json.loads((d / "history.json").read_text())) == 2
    best = json.loads((tuned / "best_config.json").read_text())
    study, storage = _study(tuned)
    assert best["study"]["best_trial"] == study.best_trial.number and best["study"]["best_value"] == study.best_value
    assert best["study"]["params"] == study.best_trial.params and best["study"]["n_trials"] == 2
    assert best["study"]["data"]["fingerprint"] == strokes.load(DATA, progress=False).fingerprint()
    assert best["study"]["split"]["mode"] == "writer" and best["study"]["command"].startswith("strokes tune ")
    assert study.user_attrs["split"] == best["study"]["split"]
    assert study.trials[0].user_attrs["baseline"] is True
    storage.engine.dispose()
    fields = load_train_config(tuned / "best_config.json")
    cfg = TrainConfig.from_dict(fields)
    assert (cfg.model, cfg.epochs, cfg.batch_size, cfg.device) == ("tcn", 2, 64, "auto")
    assert cfg.model_options["channels"] == 16 and set(cfg.model_options) == {"channels", "blocks", "dropout"}
    ckpt = read_checkpoint(tuned / "best.pt")  # the best trial's checkpoint
    assert ckpt["model"]["config"]["blocks"] == cfg.model_options["blocks"] and ckpt["train"]["lr"] == cfg.lr
    rows = list(csv.DictReader((tuned / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"] and {"lr", "blocks", "dropout"} <= set(rows[0])


def test_best_config_trains_with_strokes_train(tuned, tmp_path):
    out = tmp_path / "run"
    assert _cli("train", DATA, "--config", tuned / "best_config.json", "--epochs", "1", "--device", "cpu", "--out", out) == 0
    train = read_checkpoint(out / "best.pt")["train"]
    tuned_cfg = json.loads((tuned / "best_config.json").read_text())["train"]
    for key in ("model", "lr", "weight_decay", "augment", "batch_size", "seed", "split"):
        assert train[key] == tuned_cfg[key], key
    assert train["model_options"] == tuned_cfg["model_options"]
    assert read_checkpoint(out / "best.pt")["model"]["config"]["dropout"] == tuned_cfg["model_options"]["dropout"]
    assert train["split_info"]["val"] == json.loads((tuned / "best_config.json").read_text())["study"]["split"]["sizes"][1]


def test_cli_resume_counts_finished_trials(tuned, tmp_path, capsys):
    out = _copy(tuned, tmp_path)
    assert _cli("tune", DATA, *TINY, "--trials", "3", "--out", out) == 0
    assert "1 run now" in capsys.readouterr().out
    study, storage = _study(out)
    trials = study.trials
    storage.engine.dispose()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert trials[2].params != trials[1].params  # the resumed sampler does not repeat the first run's draws
    assert _cli("tune", DATA, *TINY, "--trials", "2", "--out", out) == 0  # target already met: nothing to run
    assert "0 run now" in capsys.readouterr().out
    assert len(_states(out)) == 3


def test_cli_stale_running_trial_is_failed_and_retried(tuned, tmp_path, caplog):
    out = _copy(tuned, tmp_path)
    study, storage = _study(out)
    base = TrainConfig(model="tcn", epochs=2, batch_size=64, model_options={"channels": 16}, max_train_samples=128)
    killed = study.ask()  # as a killed process leaves it: RUNNING forever
    T.suggest_config(killed, "tcn", base)
    params = dict(killed.params)
    storage.engine.dispose()
    leftover = out / "trials" / f"{killed.number:04d}"
    leftover.mkdir()
    (leftover / "last.pt").write_bytes(b"half-written")
    assert _cli("tune", DATA, *TINY, "--trials", "3", "--out", out) == 0
    study, storage = _study(out)
    trials = study.trials
    storage.engine.dispose()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].user_attrs["failed_reason"].startswith("stale")
    assert trials[3].user_attrs["retry_of"] == 2 and trials[3].params == params
    assert "trial 2 was left RUNNING by a process that ended" in caplog.text
    assert not (leftover / "last.pt").exists()
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert rows[2]["state"] == "FAIL" and rows[3]["retry_of"] == "2"


def test_cli_refuses_a_study_made_for_something_else(tuned, tmp_path, capsys):
    out = _copy(tuned, tmp_path)
    before = (out / "study.db").read_bytes()
    other_model = ["--model", "softmax", *TINY[4:]]
    assert _cli("tune", DATA, *other_model, "--trials", "3", "--out", out) == 2
    err = capsys.readouterr().err
    assert "different setup" in err and "model 'tcn' (stored) vs 'softmax' (now)" in err
    assert _cli("tune", "synthetic:writers=8,samples=1", *TINY, "--trials", "3", "--out", out) == 2
    err = capsys.readouterr().err
    assert "data 'synthetic(writers=8,samples=2,seed=0)'" in err and "fingerprint" in err
    assert _cli("tune", DATA, *TINY, "--epochs", "3", "--trials", "3", "--out", out) == 2
    assert "epochs 2 (stored) vs 3 (now)" in capsys.readouterr().err
    assert _cli("tune", DATA, *TINY[:2], "--option", "channels=24", *TINY[4:], "--trials", "3", "--out", out) == 2
    assert "model_options" in capsys.readouterr().err
    assert len(_states(out)) == 2 and (out / "study.db").read_bytes() == before


def test_cli_unknown_model_and_bad_flags_exit_2(tmp_path, capsys):
    assert _cli("tune", DATA, "--model", "resnet9000", "--trials", "1", "--out", tmp_path / "x") == 2
    err = capsys.readouterr().err
    assert "valid models" in err and "tcn" in err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit) as exc:
        _cli("tune", DATA, "--model", "tcn", "--pruner", "sometimes")
    assert exc.value.code == 2


def test_cli_refuses_a_second_process_on_the_same_out(tmp_path, capsys):
    fcntl = pytest.importorskip("fcntl")
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / ".tune.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert _cli("tune", DATA, *TINY, "--trials", "1", "--out", tmp_path) == 2
    assert "another strokes tune is working on" in capsys.readouterr().err
    assert not (tmp_path / "study.db").exists()


def test_cli_help_shows_the_search_spaces(capsys):
    with pytest.raises(SystemExit) as exc:
        _cli("tune", "--help")
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--trials" in out and "--pruner" in out and "--timeout" in out
    assert "extexify_cnn  width" in out and "weight_decay" in out


def test_missing_optuna_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ValueError, match=r"pip install -c constraints.txt -e '\.\[tune\]'"):
        T.require_optuna()
    assert _cli("tune", DATA, "--model", "softmax", "--trials", "1") == 2
    assert "needs the optional 'tune' extra" in capsys.readouterr().err
