"""Damaged checkpoints give a clear error naming the file and the problem, through every entry point.

Each corruption (a truncated file, missing sections, weights that do not fit the model, a vocabulary
of the wrong size, a newer format version, a missing file, ...) is tried through ``load_checkpoint``,
``strokes recognize --model``, ``strokes eval`` and ``strokes serve --model`` (a real process, which
must exit at start, before announcing or binding anything).
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from strokes import cli
from strokes.training.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SMALL_CNN = {"channels": [8, 16], "convs_per_block": 1, "dropout": 0.0}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A good checkpoint (untrained, small), a drawing and a dataset to run the CLI on."""
    import models
    from rendering import RenderConfig

    from strokes.normalize import default_pipeline
    from strokes.synthetic import generate

    d = tmp_path_factory.mktemp("corrupt").resolve()
    ds = generate(n_writers=2, samples_per_writer=1, seed=0)
    ds.save(d / "data.npz")
    (d / "ink.json").write_text(json.dumps([[[0, 0], [1, 1], [2, 3]], [[3, 0], [0, 3]]]))
    torch.manual_seed(0)
    net = models.create_model("extexify_cnn", len(ds.vocab), **SMALL_CNN)
    ckpt = make_checkpoint(net, vocab=ds.vocab, pipeline=default_pipeline(), render=RenderConfig())
    save_checkpoint(ckpt, d / "good.pt")
    return {"dir": d, "ckpt": ckpt, "good": d / "good.pt", "ink": d / "ink.json", "data": d / "data.npz"}


def _edited(edit):
    def write(files, path):
        ckpt = copy.deepcopy(files["ckpt"])
        edit(ckpt)
        save_checkpoint(ckpt, path)

    return write


def _truncated(files, path):
    data = files["good"].read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _wrong_shape(ckpt):
    first = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][first] = torch.zeros(3, 2)


# name -> (how to make the bad file, patterns its error message must all contain)
CORRUPTIONS = {
    "truncated": (_truncated, [r"is truncated", r"zip directory\) is missing", r"copy or save it again"]),
    "truncated_to_3_bytes": (lambda f, p: p.write_bytes(f["good"].read_bytes()[:3]), [r"is truncated: only 3 byte"]),
    "empty": (lambda f, p: p.write_bytes(b""), [r"is empty \(0 bytes\)"]),
    "not_a_zip": (lambda f, p: p.write_text("hello\n"), [r"is not a strokes checkpoint: it is not a zip archive"]),
    "no_state_dict": (_edited(lambda c: c.pop("state_dict")), [r"lacks 'state_dict'", r"not a complete checkpoint"]),
    "no_vocab": (_edited(lambda c: c.pop("vocab")), [r"lacks 'vocab'", r"not a complete checkpoint"]),
    "no_model": (_edited(lambda c: c.pop("model")), [r"lacks 'model'", r"not a complete checkpoint"]),
    "no_model_name": (_edited(lambda c: c["model"].pop("name")), [r"is damaged: its 'model' section lacks 'name'"]),
    "model_not_a_dict": (_edited(lambda c: c.update(model="cnn")), [r"its 'model' section should be a dict, not str"]),
    "state_dict_not_a_dict": (
        _edited(lambda c: c.update(state_dict=[1, 2])),
        [r"its 'state_dict' section should be a dict of tensors, not list"],
    ),
    "wrong_weight_shape": (
        _edited(_wrong_shape),
        [r"weights in .* do not fit its model extexify_cnn", r"is \(3, 2\) in the file but \(8, 1, 3, 3\) in the model"],
    ),
    "config_does_not_fit_weights": (
        _edited(lambda c: c["model"]["config"].update(channels=[4, 8])),
        [r"do not fit its model extexify_cnn", r"is \(8, 1, 3, 3\) in the file but \(4, 1, 3, 3\) in the model"],
    ),
    "unknown_model_option": (
        _edited(lambda c: c["model"]["config"].update(bogus=1)),
        [r"describes a model this strokes cannot build", r"bogus"],
    ),
    "vocab_too_long": (
        _edited(lambda c: c["vocab"].append("extra")),
        [r"is damaged: its vocabulary has \d+ labels but its model extexify_cnn has \d+ outputs"],
    ),
    "vocab_too_short": (
        _edited(lambda c: c["vocab"].pop()),
        [r"its vocabulary has \d+ labels but its model extexify_cnn has \d+ outputs"],
    ),
    "newer_version": (
        _edited(lambda c: c.update(version=99)),
        [r"has checkpoint version 99, newer than this strokes reads \(up to 1\)", r"upgrade strokes"],
    ),
    "invalid_version": (_edited(lambda c: c.update(version="1")), [r"invalid checkpoint version '1'"]),
    "missing_file": (None, [r"does not exist"]),
}


def _bad_file(files, name: str):
    make, patterns = CORRUPTIONS[name]
    path = files["dir"] / f"{name}.pt"
    if make is not None and not path.exists():
        make(files, path)
    return path, patterns


@pytest.fixture(params=sorted(CORRUPTIONS))
def bad(request, files):
    """(path of the damaged checkpoint, the patterns its error must contain)."""
    return _bad_file(files, request.param)


def _check_message(message: str, path: Path, patterns) -> None:
    assert str(path) in message, f"the message does not name {path}: {message}"
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in: {message}"


def _check_cli_error(rc: int, err: str, path: Path, patterns) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("strokes: error: "), err
    assert "Traceback" not in err
    _check_message(lines[0], path, patterns)


def test_good_checkpoint_loads_and_runs(files, capsys):
    """The fixture's undamaged checkpoint loads, recognizes and evaluates (the corruptions alone fail)."""
    assert len(load_checkpoint(files["good"]).vocab) == len(files["ckpt"]["vocab"])
    assert cli.main(["recognize", "--model", str(files["good"]), str(files["ink"]), "-k", "2"]) == 0
    assert cli.main(["eval", str(files["good"]), str(files["data"]), "--device", "cpu", "--subset", "all"]) == 0
    assert "strokes: error" not in capsys.readouterr().err


def test_load_checkpoint(bad):
    """load_checkpoint raises a ValueError (FileNotFoundError when absent) naming the file and the problem."""
    path, patterns = bad
    expected = FileNotFoundError if not path.exists() else ValueError
    with pytest.raises(expected) as info:
        load_checkpoint(path)
    _check_message(str(info.value), path, patterns)


@pytest.mark.parametrize("name", sorted(set(CORRUPTIONS) - {"missing_file"}))
def test_load_checkpoint_from_an_open_file(name, files):
    """Through an open file object the error names that file too."""
    path, patterns = _bad_file(files, name)
    with open(path, "rb") as fh, pytest.raises(ValueError) as info:
        load_checkpoint(fh)
    _check_message(str(info.value), path, patterns)


def test_cli_recognize(bad, files, capsys):
    """`strokes recognize --model BAD` prints one `strokes: error:` line naming the file and exits 2."""
    path, patterns = bad
    rc = cli.main(["recognize", "--model", str(path), str(files["ink"])])
    captured = capsys.readouterr()
    _check_cli_error(rc, captured.err, path, patterns)
    assert captured.out == ""


def test_cli_eval(bad, files, capsys):
    """`strokes eval BAD DATA` prints one `strokes: error:` line naming the file and exits 2."""
    path, patterns = bad
    rc = cli.main(["eval", str(path), str(files["data"]), "--device", "cpu"])
    captured = capsys.readouterr()
    _check_cli_error(rc, captured.err, path, patterns)
    assert captured.out == ""


def test_cli_serve_exits_at_start(bad):
    """`strokes serve --model BAD` exits 2 at once with the error on stderr, before announcing a URL."""
    path, patterns = bad
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "strokes", "serve", "--model", str(path), "--port", "0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )
    _check_cli_error(r.returncode, r.stderr, path, patterns)
    assert "http://" not in r.stdout, f"serve announced itself before checking the model: {r.stdout}"
