"""The default model shipped inside the package, and its accuracy on writers it never saw."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import strokes
from strokes.training.checkpoint import load_checkpoint, read_checkpoint
from strokes.recognizer import DEFAULT_MODEL
from strokes.training.train import checkpoint_split


def test_default_model_ships_in_the_package():
    assert DEFAULT_MODEL.is_file(), f"{DEFAULT_MODEL} is missing: the package must ship a default model"
    assert DEFAULT_MODEL.stat().st_size <= 10 * 2**20
    ckpt = read_checkpoint(DEFAULT_MODEL)
    assert "trainer_state" not in ckpt  # slim: no optimizer state
    assert len(ckpt["vocab"]) == 101
    test = ckpt["metrics"]["test"]
    assert test["top1"] >= 0.90 and test["top5"] >= 0.985
    assert ckpt["metrics"]["split"]["mode"] == "writer"


def test_recognize_uses_the_default_model():
    plus = [[(0, 5), (10, 5)], [(5, 0), (5, 10)]]
    result = strokes.recognize(plus)
    assert len(result) == 5
    assert result[0][0] == "+"
    assert sum(p for _, p in result) <= 1 + 1e-6


def test_import_and_first_call_in_a_fresh_process():
    """A fresh process (import, model load, first call) ranks a drawn x exactly as this process does."""
    ink = [[(0, 0), (1, 1)], [(1, 0), (0, 1)]]
    code = f"import strokes, json; print(json.dumps(strokes.recognize({ink!r}, k=3)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    fresh = json.loads(r.stdout.strip().splitlines()[-1])
    here = strokes.recognize(ink, k=3)
    assert [label for label, _ in fresh] == [label for label, _ in here]
    assert fresh[0][0] in ("x", "X", "\\times")  # two crossing diagonals
    assert [p for _, p in fresh] == pytest.approx([p for _, p in here], abs=1e-5)


@pytest.mark.shared
@pytest.mark.slow
def test_accuracy_on_unseen_writers(shared_data):
    """Re-measure the shipped model on its writer-disjoint CROHME test split."""
    from strokes.training.evaluate import evaluate

    ds = strokes.load(shared_data / "crohme", progress=False)
    loaded = load_checkpoint(DEFAULT_MODEL)
    sp = checkpoint_split(loaded.checkpoint, ds)  # raises if it was trained on other data
    train_writers = set(np.asarray(ds.writer_ids)[sp.train]) - {-1}
    test_writers = set(np.asarray(ds.writer_ids)[sp.test]) - {-1}
    assert not train_writers & test_writers
    report = evaluate(loaded, ds.subset(sp.test))
    assert report["samples"] == len(sp.test) > 6000
    assert report["top1"] >= 0.90 and report["top5"] >= 0.985
    assert report["top1"] == pytest.approx(loaded.metrics["test"]["top1"], abs=2e-3)
