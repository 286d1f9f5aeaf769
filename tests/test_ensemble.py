"""Late fusion (issue 15): fitted weights, the late_fusion model, build_ensemble's checks, and the
ensemble checkpoint through save/load, recognize, evaluate and ONNX, on tiny synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import models
from strokes.normalize import default_pipeline
from strokes.recognizer import recognize, recognize_batch
from strokes.synthetic import generate
from strokes.training.batching import dataset_tensors, make_inputs
from strokes.training.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from strokes.training.ensemble import build_ensemble, combine_logits, fit_weights, mixture_nll, save_ensemble
from strokes.training.evaluate import evaluate
from strokes.training.train import TrainConfig, Trainer, checkpoint_split, evaluate_logits

PIPELINE = default_pipeline(n_points=24).to_config()  # shared by both members, so they can be combined
MEMBERS = {
    "gru": {"proj": 16, "hidden": 32, "layers": 1, "dropout": 0.0},
    "lenet5": {},
}


@pytest.fixture(scope="module")
def data():
    return generate(n_writers=6, samples_per_writer=2, seed=1)


@pytest.fixture(scope="module")
def members(data, tmp_path_factory):
    """Paths of a tiny GRU and a LeNet-5 trained on the same split with the same pipeline."""
    out = tmp_path_factory.mktemp("members")
    paths = []
    for name, opts in MEMBERS.items():
        cfg = TrainConfig(
            model=name, model_options=opts, epochs=8, batch_size=16, lr=3e-2, device="cpu", patience=0,
            val=0.2, test=0.2, pipeline=PIPELINE, augment=[], label_smoothing=0.0,
        )
        Trainer(cfg, out / name, progress=False).fit(data)
        paths.append(out / name / "best.pt")
    return paths


@pytest.fixture(scope="module")
def ensemble(members, data, tmp_path_factory):
    """(checkpoint dict, saved path) of the ensemble of the two members."""
    ckpt = build_ensemble(members, data)
    path = save_checkpoint(ckpt, tmp_path_factory.mktemp("ensemble") / "ensemble.pt")
    return ckpt, path


def _val(data, members):
    return checkpoint_split(read_checkpoint(members[0]), data).val


def _inputs(data, idx, source):
    """Points, lengths and image of ``data[idx]``, normalized and rendered as the checkpoint ``source`` says."""
    loaded = load_checkpoint(source)
    return make_inputs(dataset_tensors(data.subset(idx), loaded.pipeline), "both", loaded.render)


def _member_val_logits(data, members):
    idx = _val(data, members)
    out = []
    for path in members:
        loaded = load_checkpoint(path)
        tensors = dataset_tensors(data.subset(idx), loaded.pipeline)
        out.append(evaluate_logits(loaded.model, tensors, loaded.input_kind, loaded.render))
    return out, tensors.labels


# --------------------------------------------------------------------------- fit_weights


def test_fit_weights_are_valid_deterministic_and_optimal(members, data):
    """The fitted weights lie on the simplex, repeat exactly, do not depend on the seed, and beat a fine grid."""
    logits, labels = _member_val_logits(data, members)
    w = fit_weights(logits, labels)
    assert len(w) == 2 and all(v >= 0 for v in w) and sum(w) == pytest.approx(1.0, abs=1e-12)
    assert fit_weights(logits, labels) == w
    assert fit_weights(logits, labels, seed=7) == pytest.approx(w, abs=1e-5)
    grid = min(mixture_nll(logits, labels, [a, 1 - a]) for a in np.linspace(0, 1, 401))
    assert mixture_nll(logits, labels, w) <= grid + 1e-9


def test_fit_weights_trusts_the_informative_member():
    """A member that knows the answer gets nearly all the weight over one that guesses."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (400,), generator=gen)
    good = torch.randn(400, 10, generator=gen) + 4.0 * torch.nn.functional.one_hot(labels, 10)
    noise = 3.0 * torch.randn(400, 10, generator=gen)
    w_good, w_noise = fit_weights([good, noise], labels)
    assert w_good > 0.9 > w_noise
    assert fit_weights([noise, good], labels) == pytest.approx([w_noise, w_good], abs=1e-6)
    assert fit_weights([good], labels) == [1.0]


@pytest.mark.parametrize(
    "logits,labels,error",
    [
        ("ab", torch.zeros(3, dtype=torch.long), TypeError),
        ([], torch.zeros(3, dtype=torch.long), TypeError),
        ([torch.zeros(3, 4), torch.zeros(3, 5)], torch.zeros(3, dtype=torch.long), ValueError),
        ([torch.zeros(3, 4), torch.full((3, 4), float("nan"))], torch.zeros(3, dtype=torch.long), ValueError),
        ([torch.zeros(3, 4), torch.zeros(3, 4)], torch.tensor([0, 1, 4]), ValueError),
        ([torch.zeros(3, 4), torch.zeros(3, 4)], torch.zeros(3), ValueError),
        ([torch.zeros(3, 4), torch.zeros(3, 4)], [0, 1, 2], TypeError),
    ],
)
def test_fit_weights_rejects_bad_inputs(logits, labels, error):
    """Wrong types, mismatched shapes, NaN logits and out-of-range or float labels are refused."""
    with pytest.raises(error):
        fit_weights(logits, labels)


# --------------------------------------------------------------------------- the model


def test_output_is_the_weighted_sum_of_member_log_probs(ensemble, members, data):
    """late_fusion returns sum_i w_i log_softmax(member_i), for the fitted weights and for others."""
    ckpt, _ = ensemble
    inputs = _inputs(data, np.arange(0, len(data), 7), members[1])
    parts = [load_checkpoint(p) for p in members]
    with torch.no_grad():
        member_logits = [
            m.model(**({"image": inputs["image"]} if m.input_kind == "image" else
                       {"points": inputs["points"], "lengths": inputs["lengths"]}))
            for m in parts
        ]
        for weights in (ckpt["metrics"]["weights"], [0.25, 0.75], [2.0, 0.5]):
            net = models.create_model("late_fusion", len(ckpt["vocab"]), **{**ckpt["model"]["config"], "weights": weights})
            net.load_state_dict(ckpt["state_dict"])
            net.eval()
            by_hand = sum(w * torch.log_softmax(lg, 1) for w, lg in zip(weights, member_logits))  # (B, C)
            torch.testing.assert_close(net(**inputs), by_hand, rtol=0, atol=1e-5)
            torch.testing.assert_close(combine_logits(member_logits, weights).float(), by_hand, rtol=0, atol=1e-5)


def test_members_are_stored_under_submodules_and_weights_come_from_the_config(ensemble, members):
    """The state dict holds each member's weights under members.<i>., and no mixing weights."""
    ckpt, _ = ensemble
    for i, path in enumerate(members):
        own = read_checkpoint(path)["state_dict"]
        stored = {k[len(f"members.{i}."):]: v for k, v in ckpt["state_dict"].items() if k.startswith(f"members.{i}.")}
        assert stored.keys() == own.keys()
        assert all(torch.equal(stored[k], own[k]) for k in own)
    assert all(k.startswith("members.") for k in ckpt["state_dict"])
    assert ckpt["model"]["config"]["weights"] == ckpt["metrics"]["weights"]
    assert [m["name"] for m in ckpt["model"]["config"]["members"]] == list(MEMBERS)


@pytest.mark.parametrize(
    "overrides,error",
    [
        ({"members": []}, ValueError),
        ({"members": "gru"}, TypeError),
        ({"members": [{"model": "gru"}]}, ValueError),
        ({"members": [{"name": "nope"}]}, ValueError),
        ({"members": [{"name": "gru", "num_classes": 5}]}, ValueError),
        ({"members": [{"name": "lenet5", "config": {"in_channels": 3}}]}, ValueError),
        ({"weights": [1.0]}, ValueError),
        ({"weights": [1.0, -0.5]}, ValueError),
        ({"weights": [0.0, 0.0]}, ValueError),
        ({"weights": [1.0, float("nan")]}, ValueError),
    ],
)
def test_bad_late_fusion_configs_raise(overrides, error):
    """Empty or malformed members, unknown models, class or channel conflicts and bad weights are refused."""
    with pytest.raises(error):
        models.create_model("late_fusion", 7, **overrides)


# --------------------------------------------------------------------------- the checkpoint


def test_ensemble_scores_at_least_as_well_as_each_member(ensemble, members, data):
    """On the val split, evaluate() gives the ensemble a log-likelihood (and metrics) no worse than any member's."""
    ckpt, path = ensemble
    val = data.subset(_val(data, members))
    report = evaluate(load_checkpoint(path), val)
    assert report["loss"] == pytest.approx(ckpt["metrics"]["val"]["loss"], abs=1e-5)
    assert report["top1"] == pytest.approx(ckpt["metrics"]["val"]["top1"], abs=1e-9)
    assert report["top5"] == pytest.approx(ckpt["metrics"]["val"]["top5"], abs=1e-9)
    for path_i, row in zip(members, ckpt["metrics"]["members"]):
        member = evaluate(load_checkpoint(path_i), val)
        assert member["top1"] == pytest.approx(row["val"]["top1"], abs=1e-9)
        assert report["loss"] <= member["loss"] + 1e-5
    assert set(ckpt["metrics"]) >= {"val", "test", "weights", "members", "split"}


def test_train_entry_records_the_members_and_the_split(ensemble, members, data):
    """train names each member's source, model and training config, and rebuilds the members' split."""
    ckpt, _ = ensemble
    rows = ckpt["train"]["members"]
    assert [r["source"] for r in rows] == [str(p) for p in members]
    assert [r["model"] for r in rows] == list(MEMBERS)
    assert [r["train"]["model_options"] for r in rows] == list(MEMBERS.values())
    assert np.array_equal(checkpoint_split(ckpt, data).val, _val(data, members))


def test_loaded_models_work_as_members_and_save_ensemble_writes_one_file(ensemble, members, data, tmp_path):
    """LoadedModels give the same ensemble as their paths and stay untouched; save_ensemble writes a loadable file."""
    ckpt, _ = ensemble
    loaded = [load_checkpoint(p) for p in members]
    loaded[0].model.train()
    again = build_ensemble(loaded, data)
    assert again["metrics"]["weights"] == pytest.approx(ckpt["metrics"]["weights"], abs=1e-9)
    assert loaded[0].model.training  # the caller's model keeps its mode
    result = save_ensemble(members, data, tmp_path / "e.pt")
    assert result["weights"] == pytest.approx(ckpt["metrics"]["weights"], abs=1e-9)
    assert load_checkpoint(result["path"]).name == "late_fusion"


def test_checkpoint_round_trips_and_recognize_agrees(ensemble, members, data):
    """The saved ensemble loads weights-only from its config alone, and recognize() matches the in-memory model."""
    ckpt, path = ensemble
    raw = read_checkpoint(path)  # torch.load(weights_only=True)
    assert raw["model"]["name"] == "late_fusion" and raw["model"]["input_kind"] == "both"
    loaded = load_checkpoint(path)
    in_memory = load_checkpoint(ckpt)
    assert loaded.input_kind == "both" and loaded.vocab == list(data.vocab)
    saved_state = loaded.model.state_dict()
    assert all(torch.equal(saved_state[k], v) for k, v in in_memory.model.state_dict().items())

    idx = np.arange(3, len(data), 11)
    inks = [data[int(i)].strokes for i in idx]
    inputs = _inputs(data, idx, path)
    with torch.no_grad():
        want = torch.softmax(in_memory.model(**inputs), 1).numpy()  # (N, C)
    k = len(data.vocab)
    got = np.zeros_like(want)
    index = {v: j for j, v in enumerate(data.vocab)}
    for row, answer in enumerate(recognize_batch(inks, k=k, model=path)):
        for label, p in answer:
            got[row, index[label]] = p
    np.testing.assert_allclose(got, want, atol=1e-4)
    top = recognize(inks[0], k=1, model=path)[0]
    assert top[0] == data.vocab[int(want[0].argmax())] and top[1] == pytest.approx(float(want[0].max()), abs=1e-4)


def test_onnx_export_matches_pytorch(ensemble, tmp_path):
    """The ensemble exports to one ONNX graph over points, lengths and image that matches PyTorch."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from strokes.onnx_export import check_onnx, example_inputs, export_onnx

    _, path = ensemble
    result = export_onnx(path, tmp_path / "ensemble.onnx")
    assert result["inputs"] == ["points", "lengths", "image"]
    assert result["max_abs_diff"] < 1e-4
    loaded = load_checkpoint(path)
    assert check_onnx(tmp_path / "ensemble.onnx", loaded, example_inputs(loaded, batch=7, length=31, seed=3)) < 1e-4


# --------------------------------------------------------------------------- refusals and explicit splits


def test_mismatched_vocabularies_are_refused(members, data):
    """Members whose labels differ, or come in another order, are refused with a message saying so."""
    first, second = read_checkpoint(members[0]), read_checkpoint(members[1])
    reordered = {**second, "vocab": second["vocab"][1:] + second["vocab"][:1]}
    with pytest.raises(ValueError, match=r"different vocabularies: the same labels in a different order"):
        build_ensemble([first, reordered], data)
    renamed = {**second, "vocab": ["x_" + second["vocab"][0]] + second["vocab"][1:]}
    with pytest.raises(ValueError, match=r"different vocabularies: different labels"):
        build_ensemble([first, renamed], data)


def test_mismatched_pipelines_and_renders_are_refused(members, data):
    """Members reading the same input but normalized (or rendered) differently are refused, naming the fix."""
    first, second = read_checkpoint(members[0]), read_checkpoint(members[1])
    other = {**first, "pipeline": default_pipeline().to_config()}
    with pytest.raises(ValueError, match=r"member 0 \(gru\) and member 1 \(gru\) both read point sequences but normalize ink differently.*TrainConfig.pipeline"):
        build_ensemble([first, other], data)
    other = {**second, "pipeline": default_pipeline().to_config()}
    with pytest.raises(ValueError, match=r"member 1 \(lenet5\) and member 2 \(lenet5\) both read images but normalize ink differently"):
        build_ensemble([first, second, other], data)
    bigger = {**second, "render": {**second["render"], "thickness": 2.0}}
    with pytest.raises(ValueError, match=r"read different renders.*TrainConfig.render"):
        build_ensemble([first, second, bigger], data)
    with pytest.raises(ValueError, match="at least 2"):
        build_ensemble([first], data)


@pytest.fixture(scope="module")
def own_pipelines(members, data, tmp_path_factory):
    """(ensemble path, image member path) for the GRU on 24 resampled points and a LeNet-5 trained on the ink as drawn."""
    out = tmp_path_factory.mktemp("own-pipelines")
    cfg = TrainConfig(
        model="lenet5", epochs=8, batch_size=16, lr=3e-2, device="cpu", patience=0, val=0.2, test=0.2,
        pipeline=default_pipeline().to_config(), augment=[], label_smoothing=0.0,
    )  # fmt: skip
    Trainer(cfg, out / "lenet5", progress=False).fit(data)
    path = save_checkpoint(build_ensemble([members[0], out / "lenet5" / "best.pt"], data), out / "ensemble.pt")
    return path, out / "lenet5" / "best.pt"


def test_members_with_their_own_pipelines_combine_each_as_trained(own_pipelines, members, data):
    """A sequence and an image member normalized differently fuse: each member sees its own pipeline's ink,
    in evaluate(), recognize() and the saved checkpoint's image_pipeline."""
    path, image_member = own_pipelines
    raw = read_checkpoint(path)
    assert raw["pipeline"] == PIPELINE and raw["image_pipeline"] == default_pipeline().to_config()
    loaded = load_checkpoint(path)
    assert loaded.render_pipeline is loaded.image_pipeline and repr(loaded.image_pipeline) == repr(default_pipeline())
    assert loaded.title == "late_fusion (gru + lenet5)" and load_checkpoint(image_member).title == "lenet5"

    test = checkpoint_split(raw, data).test
    sub = data.subset(test)
    member_logits = []
    for source in (members[0], image_member):
        m = load_checkpoint(source)
        member_logits.append(evaluate_logits(m.model, dataset_tensors(sub, m.pipeline), m.input_kind, m.render))
    want = combine_logits(member_logits, raw["metrics"]["weights"])  # (N, C), each member on its own pipeline
    report = evaluate(loaded, sub)
    labels = torch.as_tensor(np.asarray(sub.labels))
    assert report["top1"] == pytest.approx(float((want.argmax(1) == labels).double().mean()), abs=1e-9)
    assert raw["metrics"]["test"]["top1"] == pytest.approx(report["top1"], abs=1e-9)

    inks = [sub[i].strokes for i in range(len(sub))]
    got = np.array([[p for _, p in sorted(r, key=lambda lp: data.vocab.index(lp[0]))] for r in recognize_batch(inks, k=len(data.vocab), model=path)])
    np.testing.assert_allclose(got, torch.softmax(want, 1).numpy(), atol=1e-4)
    # the image really comes from the image pipeline: rendering the resampled points instead changes the answer
    shared = load_checkpoint({**raw, "image_pipeline": raw["pipeline"]})
    with torch.no_grad():
        moved = shared.model(**make_inputs(dataset_tensors(sub, shared.pipeline), "both", shared.render))
    assert not torch.allclose(moved.double(), want, atol=1e-3)


def test_image_pipeline_is_refused_on_one_input_models_and_checked_on_load(own_pipelines, members):
    """make_checkpoint refuses an image_pipeline for a model reading one input; a damaged one is named on load."""
    from strokes.training.checkpoint import make_checkpoint

    loaded = load_checkpoint(members[1])
    with pytest.raises(ValueError, match="image_pipeline is for models reading points and an image"):
        make_checkpoint(loaded.model, vocab=loaded.vocab, pipeline=loaded.pipeline, render=loaded.render, image_pipeline=default_pipeline())
    raw = read_checkpoint(own_pipelines[0])
    with pytest.raises(ValueError, match=r"'image_pipeline' section should be a list of step configs"):
        load_checkpoint({**raw, "image_pipeline": "unit_square"})


def test_mismatched_splits_are_refused_and_an_explicit_split_is_used(members, data):
    """Members trained on other splits or other data are refused; an explicit split fits on its val samples."""
    first, second = read_checkpoint(members[0]), read_checkpoint(members[1])
    info = {k: v for k, v in second["train"]["split_info"].items() if k not in ("val", "test")} | {"seed": 1}
    reseeded = {**second, "train": {**second["train"], "seed": 1, "split_info": info}}
    with pytest.raises(ValueError, match="different splits"):
        build_ensemble([first, reseeded], data)
    with pytest.raises(ValueError, match="cannot rebuild the split"):
        build_ensemble([first, second], generate(n_writers=3, samples_per_writer=1, seed=5))

    val = _val(data, members)
    given = build_ensemble([first, second], data, split=val[::2])
    assert given["metrics"]["split"]["mode"] == "given" and given["metrics"]["split"]["val"] == len(val[::2])
    assert "test" not in given["metrics"]
    logits, labels = _member_val_logits(data, members)
    assert given["metrics"]["weights"] == pytest.approx(fit_weights([lg[::2] for lg in logits], labels[::2]), abs=1e-6)
    with pytest.raises(ValueError, match="cannot be rebuilt|given by the caller"):
        checkpoint_split(given, data)


def test_cli_ensemble_and_distillation(tmp_path, capsys):
    """strokes ensemble combines two trained members; strokes train --distill-from trains a student from it."""
    from strokes.cli import main
    from strokes.training.checkpoint import read_checkpoint

    data = "synthetic:writers=5,samples=1,seed=2"
    from strokes.normalize import default_pipeline

    pipe = json.dumps({"pipeline": default_pipeline(n_points=24).to_config()})  # one normalization for every member
    (tmp_path / "pipe.json").write_text(pipe)
    for model in ("softmax", "gru"):
        opts = ["--option", "hidden=8", "--option", "layers=1"] if model == "gru" else []
        assert main(["train", data, "--model", model, "--epochs", "2", "--batch-size", "32", "--config", str(tmp_path / "pipe.json"),
                     "--out", str(tmp_path / model), "--device", "cpu", *opts]) == 0  # fmt: skip
    out = tmp_path / "ens.pt"
    assert main(["ensemble", str(tmp_path / "softmax" / "best.pt"), str(tmp_path / "gru" / "best.pt"), "--data", data, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "late fusion of 2 members" in text and "val top-1" in text
    ckpt = read_checkpoint(out)
    assert ckpt["model"]["name"] == "late_fusion" and len(ckpt["metrics"]["weights"]) == 2
    assert main(["ensemble", str(tmp_path / "softmax" / "best.pt"), "-o", str(out)]) == 2  # no --data
    student = tmp_path / "student"
    assert main(["train", data, "--model", "softmax", "--epochs", "1", "--batch-size", "32", "--config", str(tmp_path / "pipe.json"),
                 "--distill-from", str(out), "--distill-alpha", "0.7", "--out", str(student), "--device", "cpu"]) == 0  # fmt: skip
    train = read_checkpoint(student / "best.pt")["train"]
    assert train["distill_from"] == [str(out)] and train["distill_alpha"] == 0.7 and train["distill_used"]


def test_a_late_fusion_teaches_in_its_image_members_embedding(own_pipelines, members, data, tmp_path):
    """A late fusion teaches in its image member's embedding, with the ensemble's own probabilities
    for built-in classes, and a taught symbol then ranks in its top 5."""
    from datasets import star

    from strokes import teach
    from strokes.recognizer import Recognizer, final_linear

    path, image_member = own_pipelines
    rec = Recognizer(load_checkpoint(path))
    alone = Recognizer(load_checkpoint(image_member))
    assert rec.classifier is final_linear(rec.model.members[1]) and rec.classifier is not None
    inks = [data[i].strokes for i in range(0, len(data), 5)]
    logits, feats = rec.logits_and_features(inks)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 1).numpy(), rec.probabilities(inks), atol=1e-5)
    np.testing.assert_allclose(feats, alone.logits_and_features(inks)[1], atol=1e-4)  # the member's embedding, as alone

    rng = np.random.default_rng(0)
    store = tmp_path / "taught.sqlite"
    teach("\\star", [star(rng) for _ in range(4)], user_symbols=store)
    hits = [any(label == "\\star" for label, _ in rec(star(rng), k=5, user_symbols=store)) for _ in range(10)]
    assert sum(hits) >= 8


def test_recognizer_runs_late_fusion_members_side_by_side_with_the_same_answers(tmp_path):
    """Members run side by side (small batches) give the sequential forward's probabilities bit for bit, also in a forked child."""
    import multiprocessing

    from strokes.recognizer import DEFAULT_MODEL, PARALLEL_MAX_BATCH, Recognizer

    loaded = load_checkpoint(DEFAULT_MODEL)
    seq, par = Recognizer(loaded, parallel=False, trace=False), Recognizer(loaded, parallel=True)
    assert par.parallel and not seq.parallel
    ds = generate(n_writers=2, samples_per_writer=1, seed=3)
    inks = [ds[i].strokes for i in range(PARALLEL_MAX_BATCH + 3)]
    for batch in (inks[:1], inks[:PARALLEL_MAX_BATCH], inks):  # the last one is past the parallel size
        np.testing.assert_array_equal(par.probabilities(batch), seq.probabilities(batch))
    assert par.batch(inks[:1]) == seq.batch(inks[:1])
    if "fork" in multiprocessing.get_all_start_methods():  # the child's copy of the pool has no threads: it makes its own
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()

        def child():  # forked: nothing is pickled
            # one torch thread, as DataLoader workers do: GNU OpenMP hangs in a forked child whose parent
            # already ran parallel regions (with or without the helper thread; measured)
            torch.set_num_threads(1)
            queue.put(par.probabilities(inks[:1]))

        proc = ctx.Process(target=child)
        proc.start()
        try:
            child = queue.get(timeout=60)
        finally:  # a child that hangs must not outlive the test
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        np.testing.assert_allclose(child, seq.probabilities(inks[:1]), rtol=1e-5, atol=1e-7)  # 1 thread there: other sum order


def _default_inputs(rec, t: int) -> dict:
    """Inputs of the default model's shapes with ``t`` points (made up, for the shape bookkeeping)."""
    g = torch.Generator().manual_seed(t)
    return {
        "points": torch.rand(1, t, 3, generator=g),
        "lengths": torch.tensor([t]),
        "image": torch.rand(1, 1, 32, 32, generator=g).contiguous(memory_format=torch.channels_last),
    }


def test_single_inks_run_through_a_traced_graph_with_the_eager_answers():
    """From the TRACE_AFTER-th single ink of a shape on, the traced graph answers, with the eager model's probabilities, logits and embeddings."""
    from strokes.recognizer import DEFAULT_MODEL, TRACE_AFTER, Recognizer

    loaded = load_checkpoint(DEFAULT_MODEL)
    rec, eager = Recognizer(loaded), Recognizer(loaded, trace=False)
    assert rec.trace and not eager.trace
    ds = generate(n_writers=2, samples_per_writer=2, seed=5)
    inks = [ds[i].strokes for i in range(TRACE_AFTER + 4)]
    for i, ink in enumerate(inks):
        np.testing.assert_allclose(rec.probabilities([ink]), eager.probabilities([ink]), rtol=1e-5, atol=1e-6)
        assert len(rec._graphs) == (i + 1 >= TRACE_AFTER)
    (graph,) = rec._graphs.values()
    assert graph is not None
    for got, want in zip(rec.logits_and_features(inks[:1]), eager.logits_and_features(inks[:1])):  # the teaching path
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert rec.batch(inks[:1])[0][0][0] == eager.batch(inks[:1])[0][0][0]
    np.testing.assert_allclose(rec.probabilities(inks), eager.probabilities(inks), rtol=1e-5, atol=1e-6)  # batches stay eager
    assert len(rec._graphs) == 1


def test_a_shape_stays_eager_where_tracing_fails_or_the_graph_disagrees(monkeypatch):
    """A trace that raises, or a graph whose answers differ from the model's, leaves that shape eager for good, with the right answers."""
    from strokes.recognizer import DEFAULT_MODEL, TRACE_AFTER, Recognizer

    loaded = load_checkpoint(DEFAULT_MODEL)
    eager = Recognizer(loaded, trace=False)
    ds = generate(n_writers=1, samples_per_writer=1, seed=6)
    ink = ds[0].strokes

    def broken_trace(*args, **kwargs):
        raise RuntimeError("cannot trace this")

    real_freeze = torch.jit.freeze

    def wrong_freeze(module, *args, **kwargs):
        graph = real_freeze(module, *args, **kwargs)
        return lambda **inputs: tuple(out + 1 for out in graph(**inputs))  # off by one everywhere

    for name, broken in (("trace", broken_trace), ("freeze", wrong_freeze)):
        rec = Recognizer(loaded)
        with monkeypatch.context() as m:
            m.setattr(torch.jit, name, broken)
            for _ in range(TRACE_AFTER + 1):
                np.testing.assert_array_equal(rec.probabilities([ink]), eager.probabilities([ink]))
        assert list(rec._graphs.values()) == [None], name


def test_traced_shapes_are_capped_and_recurrent_models_are_never_traced(members, monkeypatch):
    """At most TRACE_MAX_SHAPES input shapes get a graph; a model with a GRU, or a recognizer told not to, traces nothing."""
    import strokes.recognizer as recognizer
    from strokes.recognizer import DEFAULT_MODEL, TRACE_AFTER, Recognizer

    monkeypatch.setattr(recognizer, "TRACE_MAX_SHAPES", 2)
    rec = Recognizer(load_checkpoint(DEFAULT_MODEL))
    with torch.inference_mode():
        for t in (20, 30, 40):
            inputs = _default_inputs(rec, t)
            for _ in range(TRACE_AFTER):
                torch.testing.assert_close(rec._run(inputs)[0], rec._eager(inputs, False)[0], rtol=1e-5, atol=1e-5)
    assert sorted(key[0][1][1] for key in rec._graphs) == [20, 30]  # the points' T of each traced shape
    assert all(g is not None for g in rec._graphs.values())
    gru = Recognizer(load_checkpoint(members[0]))
    assert isinstance(gru.model.encoder.rnn, torch.nn.GRU) and not gru.trace
    assert Recognizer(load_checkpoint(members[1])).trace  # lenet5
