"""HASYv2: the loader (on a fixture of real PNGs and CSVs in its layout), ImageDataset,
image training, cross-domain evaluation and the official-folds benchmark."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import strokes
from strokes.images import FOLD_TEST, FOLD_TRAIN, ImageDataset
from strokes.io.hasy import load_hasy
from hasy_fixture import draw_hasy_style, write_hasy  # tests/hasy_fixture.py

SMALL = "synthetic:writers=6,samples=2,seed=4"


@pytest.fixture(scope="module")
def strokes_ds():
    return strokes.load(SMALL)


@pytest.fixture(scope="module")
def hasy_dir(tmp_path_factory, strokes_ds):
    return write_hasy(tmp_path_factory.mktemp("hasy") / "HASYv2", strokes_ds, folds=10, seed=1)


@pytest.fixture(scope="module")
def hasy(hasy_dir):
    return strokes.load(hasy_dir)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


# -------------------------------------------------------------------- loader
def test_load_reads_every_image_label_writer_and_fold(hasy, hasy_dir, strokes_ds):
    assert isinstance(hasy, ImageDataset) and strokes.infer_format(hasy_dir) == "hasy"
    assert strokes.infer_format(hasy_dir / "hasy-data-labels.csv") == "hasy"
    assert len(hasy) == len(strokes_ds) and hasy.vocab == strokes_ds.vocab
    assert hasy.images.shape == (len(strokes_ds), 32, 32) and hasy.images.dtype == np.float32
    assert hasy.label_names() == strokes_ds.label_names()  # row order kept
    assert len(hasy.writer_names) == len(strokes_ds.writer_names)
    assert hasy.info["records_in"] == hasy.info["loaded"] + hasy.info["skipped"] == len(strokes_ds)
    assert hasy.info["symbol_ids"][hasy.vocab[0]] == 31
    assert hasy.source_names[0] == "hasy-data/v2-00000.png"
    # the 10 official folds: every image is tested exactly once, and trained on in the other 9
    assert hasy.num_folds == 10
    assert ((hasy.fold_roles == FOLD_TEST).sum(1) == 1).all()
    assert ((hasy.fold_roles == FOLD_TRAIN).sum(1) == 9).all()
    train, test = hasy.fold(3)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(hasy)
    assert len(test) == len(_rows(hasy_dir / "classification-task/fold-3/test.csv")) - 1


def test_polarity_ink_is_bright_whatever_the_files_store(hasy, hasy_dir, tmp_path):
    """HASYv2 stores black ink on white; in memory ink is 1.0 on a 0.0 background, as the rasterizer draws."""
    assert hasy.info["ink_in_files"] == "dark"
    png = np.asarray(Image.open(hasy_dir / "hasy-data/v2-00000.png").convert("L"), np.float32) / 255
    assert png.mean() > 0.7  # the file: mostly white
    np.testing.assert_allclose(hasy.images[0], 1 - png)
    assert hasy.images.mean() < 0.3 and hasy.images.max() == 1.0
    # the same data saved bright-on-dark loads to the same arrays, auto-detected or stated
    inv = tmp_path / "inverted"
    shutil.copytree(hasy_dir, inv)
    for p in (inv / "hasy-data").iterdir():
        Image.eval(Image.open(p).convert("L"), lambda v: 255 - v).save(p)
    auto = load_hasy(inv, folds=False)
    assert auto.info["ink_in_files"] == "bright"
    np.testing.assert_array_equal(auto.images, hasy.images)
    np.testing.assert_array_equal(load_hasy(inv, ink="bright", folds=False).images, hasy.images)
    wrong = load_hasy(inv, ink="dark", folds=False)  # told the wrong thing: inverted, as asked
    np.testing.assert_allclose(wrong.images, 1 - hasy.images)


def test_bad_rows_are_skipped_and_reported(hasy_dir, tmp_path):
    root = tmp_path / "bad"
    shutil.copytree(hasy_dir, root)
    (root / "hasy-data/v2-00001.png").unlink()  # missing
    (root / "hasy-data/v2-00002.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")  # corrupt
    Image.new("L", (28, 28), 255).save(root / "hasy-data/v2-00003.png")  # wrong size
    rows = _rows(root / "hasy-data-labels.csv")
    rows[5][2] = ""  # empty latex
    rows[6][1] = "x7"  # symbol_id not an integer
    with open(root / "hasy-data-labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    ds = load_hasy(root)
    reasons = {s.source.split(" (")[0]: s.reason for s in ds.skipped}
    assert len(ds.skipped) == 5
    assert reasons["hasy-data-labels.csv line 3"] == "the image file is missing"
    assert reasons["hasy-data-labels.csv line 4"].startswith("unreadable image")
    assert "28x28, expected 32x32" in reasons["hasy-data-labels.csv line 5"]
    assert reasons["hasy-data-labels.csv line 6"] == "a column is empty or missing"
    assert "not an integer" in reasons["hasy-data-labels.csv line 7"]
    assert ds.info["records_in"] == len(rows) - 1 == ds.info["loaded"] + ds.info["skipped"]
    assert ds.info["fold_entries_unmatched"] == 5 * 10  # each skipped image is listed once per fold
    assert "v2-00001.png" not in ds.source_names


def test_limit_and_missing_or_wrong_inputs(hasy_dir, tmp_path):
    assert len(load_hasy(hasy_dir, limit=7)) == 7
    assert len(load_hasy(hasy_dir, limit=0)) == 0
    with pytest.raises(FileNotFoundError, match="unpacked HASYv2 directory"):
        load_hasy(tmp_path / "nowhere")
    bad = tmp_path / "cols"
    bad.mkdir()
    (bad / "hasy-data-labels.csv").write_text("file,label\na.png,x\n")
    with pytest.raises(ValueError, match="lacks the column"):
        load_hasy(bad)
    with pytest.raises(ValueError, match="ink must be"):
        load_hasy(hasy_dir, ink="white")
    overlap = tmp_path / "overlap"
    shutil.copytree(hasy_dir, overlap)
    fold = overlap / "classification-task/fold-1"
    (fold / "train.csv").write_text((fold / "train.csv").read_text() + "".join((fold / "test.csv").read_text().splitlines(True)[1:2]))
    with pytest.raises(ValueError, match="both the train and the test list"):
        load_hasy(overlap)
    with pytest.raises(ValueError, match="images, not strokes"):
        strokes.save(load_hasy(hasy_dir, limit=3), tmp_path / "x.npz")


# -------------------------------------------------------------- ImageDataset
def test_image_dataset_interface(hasy):
    sub = hasy[[4, 1]]
    assert isinstance(sub, ImageDataset) and len(sub) == 2 and sub.vocab == hasy.vocab
    np.testing.assert_array_equal(sub.images[0], hasy.images[4])
    np.testing.assert_array_equal(sub.fold_roles[1], hasy.fold_roles[1])
    s = hasy[-1]
    assert s.index == len(hasy) - 1 and s.label == hasy.vocab[hasy.labels[-1]] and s.image.shape == (32, 32)
    assert hasy.class_to_idx[hasy.classes[2]] == 2
    assert "ImageDataset" in repr(hasy) and "official folds: 10" in repr(hasy)
    assert hasy.fingerprint() == hasy.subset(np.arange(len(hasy))).fingerprint() != sub.fingerprint()
    with pytest.raises(IndexError):
        hasy[len(hasy)]
    with pytest.raises(ValueError, match="fold must be"):
        hasy.fold(11)
    with pytest.raises(ValueError, match="no official folds"):
        ImageDataset(np.zeros((1, 8, 8)), [0], ["a"]).fold(1)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        ImageDataset(np.full((1, 8, 8), 2.0), [0], ["a"])
    with pytest.raises(ValueError, match="labels must index"):
        ImageDataset(np.zeros((1, 8, 8)), [3], ["a"])


def test_render_image_dataset_matches_the_rasterizer(strokes_ds):
    """render_image_dataset draws each sample exactly as rasterize does, and keeps labels and writers."""
    from rendering import rasterize, render_image_dataset

    images = render_image_dataset(strokes_ds[:5])
    assert list(images.labels) == list(strokes_ds.labels[:5]) and images.vocab == strokes_ds.vocab
    assert list(images.writer_ids) == list(strokes_ds.writer_ids[:5])
    expected = rasterize([strokes.normalize(strokes_ds[i].strokes) for i in range(5)])[:, 0]
    np.testing.assert_allclose(images.images, expected, atol=1e-5)
    with pytest.raises(ValueError, match="one plane"):
        render_image_dataset(strokes_ds[:2], render={"channels": ["ink", "order"]})
    with pytest.raises(ValueError, match="images must be"):
        ImageDataset.from_rendered(strokes_ds[:2], np.zeros((3, 8, 8), np.float32))


def test_hasy_style_drawing_resembles_our_render(strokes_ds):
    """The fixture's PIL drawing and the toolkit's rasterizer agree on where the ink is (same orientation)."""
    from rendering import render_image_dataset

    ours = render_image_dataset(strokes_ds[:40]).images > 0.3
    theirs = np.stack([1 - np.asarray(draw_hasy_style(strokes_ds[i].strokes), np.float32) / 255 for i in range(40)]) > 0.5
    overlap = (ours & theirs).sum((1, 2)) / np.maximum((ours | theirs).sum((1, 2)), 1)
    flipped = (ours & theirs[:, ::-1]).sum((1, 2)) / np.maximum((ours | theirs[:, ::-1]).sum((1, 2)), 1)
    assert overlap.mean() > 0.3 and overlap.mean() > 2 * flipped.mean()


# ------------------------------------------------------------------ warping
def test_warp_identity_and_determinism():
    from rendering.augment import Affine, Augment, default_augment
    from rendering.warp import warp_images

    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 1, 32, 32)
    same = warp_images(images, Augment((Affine(rotate=0, shear=0, scale=(1, 1), translate=0),)), generator=g)
    torch.testing.assert_close(same, images, atol=1e-5, rtol=0)
    a = warp_images(images, default_augment(), generator=torch.Generator().manual_seed(5))
    b = warp_images(images, default_augment(), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, images) and a.shape == images.shape
    assert torch.equal(warp_images(images, Augment(()), generator=g), images)
    with pytest.raises(ValueError, match="B, C, S, S"):
        warp_images(torch.rand(32, 32), default_augment(), generator=g)


# ------------------------------------------------------- training and domains
@pytest.fixture(scope="module")
def stroke_model(tmp_path_factory, strokes_ds):
    """An image model trained on rendered strokes (writer-disjoint split)."""
    from strokes.training.train import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("stroke_model")
    cfg = TrainConfig(model="lenet5", epochs=12, batch_size=32, lr=3e-3, device="cpu", seed=0, patience=0)
    metrics = Trainer(cfg, out, progress=False).fit(strokes_ds)
    return out / "best.pt", metrics


def test_model_trained_on_strokes_reads_hasy_images(stroke_model, hasy, strokes_ds):
    """A stroke-trained image model scores HASY-style images of held-out writers; wrong polarity ruins it."""
    from strokes.training.checkpoint import load_checkpoint
    from strokes.training.evaluate import evaluate
    from strokes.training.train import checkpoint_split

    path, metrics = stroke_model
    loaded = load_checkpoint(path)
    test = checkpoint_split(loaded.checkpoint, strokes_ds).test  # writers the model never saw
    on_strokes = evaluate(loaded, strokes_ds.subset(test))
    on_images = evaluate(loaded, hasy.subset(test))  # the same symbols, drawn by PIL, loaded from PNG
    chance = 1 / len(hasy.vocab)
    assert on_strokes["top1"] > 0.7  # measured 0.93
    assert on_images["top1"] > max(10 * chance, on_strokes["top1"] - 0.15)  # measured 0.92
    inverted = hasy.subset(test)
    inverted.images = 1 - inverted.images  # what forgetting the polarity would do
    assert evaluate(loaded, inverted)["top1"] < 0.25  # measured 0.03, chance
    # the Recognizer takes images directly, in either convention
    from strokes.recognizer import Recognizer

    rec = Recognizer(loaded)
    i = int(test[0])
    bright = rec.classify_images(hasy.images[i], k=3)[0]
    png = (255 * (1 - hasy.images[i])).round().astype(np.uint8)
    assert rec.classify_images(png, k=3, ink="dark")[0][0][0] == bright[0][0]
    with pytest.raises(ValueError, match="must be"):
        rec.classify_images(np.zeros((28, 28)))


def test_train_on_hasy_then_recognize_strokes(hasy, strokes_ds, tmp_path):
    """The reverse: an image model trained on HASY images, evaluated on (rendered) strokes."""
    from strokes.training.checkpoint import load_checkpoint
    from strokes.training.evaluate import evaluate
    from strokes.training.train import TrainConfig, Trainer

    cfg = TrainConfig(model="lenet5", epochs=12, batch_size=32, lr=3e-3, device="cpu", seed=0, patience=0)
    metrics = Trainer(cfg, tmp_path, progress=False).fit(hasy)
    assert metrics["test"]["top1"] > 0.6 and metrics["split"]["data_kind"] == "images"  # measured 0.91
    loaded = load_checkpoint(tmp_path / "best.pt")
    report = evaluate(loaded, strokes_ds)
    assert report["top1"] > 0.6  # measured 0.91: PIL drawings and our renders are close enough
    # strokes.recognize() works with it: strokes are rendered with the checkpoint's render config
    top = strokes.recognize(strokes_ds[0].strokes, k=5, model=loaded)
    assert len(top) == 5


def test_shared_classes_restricts_the_choice(stroke_model, hasy):
    """With shared_classes the model only ever predicts classes the data has."""
    from strokes.training.checkpoint import load_checkpoint
    from strokes.training.evaluate import evaluate

    loaded = load_checkpoint(stroke_model[0])
    few = hasy.subset(np.flatnonzero(hasy.labels < 5))
    # turned a quarter: hard enough that the unrestricted model often picks one of the other 32 classes
    few = ImageDataset(np.rot90(few.images, 1, axes=(1, 2)).copy(), few.labels, hasy.vocab[:5], name="five classes")
    plain, restricted = evaluate(loaded, few), evaluate(loaded, few, shared_classes=True)
    outside = [loaded.vocab.index(c) for c in loaded.vocab if c not in few.vocab]

    def predicted_outside(report):
        return int(np.asarray(report["confusion"])[:, outside].sum())

    assert predicted_outside(plain) > 0  # the restriction has something to do
    assert predicted_outside(restricted) == 0
    assert restricted["shared_classes"] == 5 and restricted["restricted_to_shared_classes"]
    assert restricted["top1"] >= plain["top1"]
    assert restricted["top1_known"] == restricted["top1"]  # every class of `few` is known to the model


def test_sequence_models_refuse_image_data(hasy, tmp_path):
    from strokes.training.train import TrainConfig, Trainer

    with pytest.raises(ValueError, match="holds only images, no strokes; use an image model: .*lenet5"):
        Trainer(TrainConfig(model="tcn", epochs=1, device="cpu"), tmp_path, progress=False).fit(hasy)
    with pytest.raises(ValueError, match="1-plane 32x32"):
        Trainer(
            TrainConfig(model="lenet5", epochs=1, device="cpu", render={"size": 32, "channels": ["ink", "order"]},
                        model_options={"in_channels": 2}),
            tmp_path, progress=False,
        ).fit(hasy)


# -------------------------------------------------------------------- bench
def test_bench_runs_official_folds_and_skips_sequence_models(hasy, tmp_path):
    from strokes.bench import BenchConfig, parse_split, run_bench

    assert parse_split("hasy-folds") == ("hasy-folds", None)
    assert parse_split("hasy-folds:1,3-4") == ("hasy-folds", (1, 3, 4))
    for bad in ("hasy-folds:0", "hasy-folds:2,2", "hasy-folds:a"):
        with pytest.raises(ValueError):
            parse_split(bad)
    cfg = BenchConfig(models=("tcn", "lenet5", "fusion", "softmax"), epochs=2, seeds=1, split="hasy-folds:1-3",
                      batch_size=32, latency_samples=5, latency_warmup=2, device="cpu")
    results = run_bench(hasy, cfg, tmp_path / "b", progress=False)
    assert set(results["skipped_models"]) == {"tcn", "fusion"}
    assert "holds only images" in results["skipped_models"]["tcn"]
    cells = results["cells"]
    assert sorted((c["model"], c["split_id"]) for c in cells) == sorted(
        (m, f"s0-fold{f}") for m in ("lenet5", "softmax") for f in (1, 2, 3)
    )
    for c in cells:
        f = int(c["split_id"].rsplit("fold", 1)[1])
        assert c["split_sizes"]["test"] == int((hasy.fold_roles[:, f - 1] == FOLD_TEST).sum())
        assert c["latency"]["p50_ms"] > 0
    row = next(r for r in results["summary"] if r["model"] == "lenet5")
    tops = [c["test"]["top1"] for c in cells if c["model"] == "lenet5"]
    assert (row["top1_min"], row["top1_max"]) == (min(tops), max(tops))
    report = (tmp_path / "b" / "report.md").read_text()
    assert "## Per fold" in report and "official classification folds" in report and "Not run:" in report
    assert "| fold1 | fold2 | fold3 | mean | min | max |" in report


def test_bench_refuses_what_cannot_run(hasy, strokes_ds, tmp_path):
    from strokes.bench import BenchConfig, run_bench

    with pytest.raises(ValueError, match="none of the models can read"):
        run_bench(hasy, BenchConfig(models=("tcn",), epochs=1, seeds=1, device="cpu"), tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="needs data with official folds"):
        run_bench(strokes_ds, BenchConfig(models=("softmax",), epochs=1, seeds=1, split="hasy-folds", device="cpu"),
                  tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="has folds 1 to 10"):
        run_bench(hasy, BenchConfig(models=("softmax",), epochs=1, seeds=1, split="hasy-folds:11", device="cpu"),
                  tmp_path / "c", progress=False)


def test_cli_stats_eval_and_tune_on_hasy(stroke_model, hasy_dir, tmp_path, capsys):
    from strokes.cli import main

    assert main(["stats", str(hasy_dir), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "format hasy" in out and "official folds: 10" in out and "ink coverage" in out
    assert main(["eval", str(stroke_model[0]), str(hasy_dir), "--shared-classes", "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert report["restricted_to_shared_classes"] and report["subset"] == "all" and report["top1"] > 0.5
    assert main(["train", str(hasy_dir), "--model", "gru", "--epochs", "1"]) == 2
    assert "holds only images" in capsys.readouterr().err
    pytest.importorskip("optuna")
    code = main(["tune", str(hasy_dir), "--model", "softmax", "--trials", "2", "--epochs", "1", "--batch-size", "64",
                 "--pruner", "none", "--device", "cpu", "--out", str(tmp_path / "tune")])
    assert code == 0
    best = json.loads((tmp_path / "tune" / "best_config.json").read_text())
    assert best["train"]["model"] == "softmax"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but holds none (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_more_bad_input_duplicates_bombs_transparency_folds(hasy_dir, tmp_path):
    root = tmp_path / "more"
    shutil.copytree(hasy_dir, root)
    (root / "hasy-data/v2-00004.png").write_bytes(_png_header_only(20000, 20000))  # PIL's bomb guard
    (root / "hasy-data/v2-00005.png").write_bytes(_png_header_only(3000, 3000))  # no pixel data at all
    rows = _rows(root / "hasy-data-labels.csv")
    rows.append(list(rows[1]))  # the first image listed a second time
    with open(root / "hasy-data-labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    fold = root / "classification-task/fold-2/test.csv"
    fold.write_text(fold.read_text() + ",31,x,0\n")  # a fold row without a path
    ds = load_hasy(root)
    reasons = {s.source.split(" (")[0]: s.reason for s in ds.skipped}
    assert "exceeds limit" in reasons["hasy-data-labels.csv line 6"] and "bomb" in reasons["hasy-data-labels.csv line 6"]
    assert "3000x3000, expected 32x32" in reasons["hasy-data-labels.csv line 7"]  # refused from the header, never decoded
    assert reasons[f"hasy-data-labels.csv line {len(rows)}"] == "the same image as line 2 (listed twice)"
    assert ds.info["records_in"] == len(rows) - 1 == ds.info["loaded"] + ds.info["skipped"]
    assert ds.info["fold_rows_without_path"] == 1 and ds.num_folds == 10

    # transparent PNGs: bright ink on a transparent page, and dark ink on one, both load as bright ink
    for name, ink_value in (("bright-ink", 255), ("dark-ink", 0)):
        t = tmp_path / name
        shutil.copytree(hasy_dir, t)
        for p in sorted((t / "hasy-data").iterdir())[:50]:
            grey = np.asarray(Image.open(p).convert("L"))
            alpha = np.where(grey < 128, 255, 0).astype(np.uint8)  # opaque where the ink is
            Image.fromarray(np.dstack([np.full_like(grey, ink_value), alpha]), "LA").save(p)
        got = load_hasy(t, folds=False, limit=50)
        np.testing.assert_allclose(got.images, load_hasy(hasy_dir, folds=False, limit=50).images, atol=1 / 255)

    # fold-0 is not a HASYv2 fold name: refused, not silently dropped
    zero = tmp_path / "zero"
    shutil.copytree(hasy_dir, zero)
    (zero / "classification-task/fold-1").rename(zero / "classification-task/fold-0")
    with pytest.raises(ValueError, match="fold-1 ... fold-K without gaps"):
        load_hasy(zero)

    # nothing loadable: an empty dataset that says so, and stats copes
    empty = tmp_path / "empty"
    (empty / "hasy-data").mkdir(parents=True)
    (empty / "hasy-data-labels.csv").write_text("path,symbol_id,latex,user_id\nhasy-data/none.png,31,A,1\n")
    e = load_hasy(empty)
    assert len(e) == 0 and e.info["skipped"] == 1 and e.info["ink_in_files"] == "unknown"
    from strokes.cli import main

    assert main(["stats", str(empty)]) == 0
