"""The model zoo: one contract for every registered model, padding invariance for
the models that read sequences, and the registry's checks."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import models
import rendering
from models.registry import INPUT_KINDS

NUM_CLASSES = 7
LENGTHS = [11, 4, 1]
T = max(LENGTHS)
EXPECTED = {
    "sequence": ["gru", "lstm", "tcn"],
    "image": ["emnist_cnn", "extexify_cnn", "lenet5", "mlp", "softmax", "vgg_gap"],
    "both": ["fusion", "late_fusion"],
}
RENDER_CHANNELS = {1: ("ink",), 3: ("ink", "order", "stroke")}


def random_ink(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) normalized points-3: x, y in the unit square, pen_up on each stroke's last point."""
    ink = np.zeros((n, 3), np.float32)
    ink[:, :2] = rng.random((n, 2))
    ink[n // 2, 2] = 1.0  # two strokes when n > 1
    ink[-1, 2] = 1.0
    return ink


def make_batch(lengths=LENGTHS, in_channels: int = 1, size: int = 32, seed: int = 0):
    """points (B, T, 3) with junk in the padding, lengths (B,), image (B, C, size, size)."""
    rng = np.random.default_rng(seed)
    inks = [random_ink(rng, n) for n in lengths]
    points = torch.from_numpy(rng.normal(0, 50, (len(lengths), max(lengths), 3)).astype(np.float32))  # junk padding
    for i, ink in enumerate(inks):
        points[i, : len(ink)] = torch.from_numpy(ink)
    offsets = np.cumsum([0, *lengths])
    image = rendering.rasterize_batch(np.concatenate(inks), offsets, size=size, channels=RENDER_CHANNELS[in_channels])
    return points, torch.tensor(lengths, dtype=torch.int64), torch.from_numpy(image)


def build(name: str, num_classes: int = NUM_CLASSES, **overrides):
    torch.manual_seed(0)
    return models.create_model(name, num_classes, **overrides)


def run(model, points, lengths, image):
    return model(points=points, lengths=lengths, image=image)


# --------------------------------------------------------------------------- the contract


@pytest.mark.parametrize("name", models.list_models())
def test_contract_forward_backward(name):
    model = build(name)
    assert model.name == name
    assert model.input_kind in INPUT_KINDS
    assert isinstance(model.config, models.model_entry(name).config_cls)
    assert model.num_classes == NUM_CLASSES
    assert isinstance(model.feature_dim, int) and model.feature_dim > 0
    assert callable(model.encoder) and callable(model.head)

    points, lengths, image = make_batch()
    model.train()
    logits = run(model, points, lengths, image)
    assert logits.shape == (3, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 3, 6])).backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
            assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", models.list_models())
def test_eval_is_deterministic(name):
    model = build(name).eval()
    points, lengths, image = make_batch()
    with torch.no_grad():
        a = run(model, points, lengths, image)
        b = run(model, points, lengths, image)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# --------------------------------------------------------------------------- padding


PADDED_CASES = [(name, {}) for name in EXPECTED["sequence"] + EXPECTED["both"]] + [
    ("fusion", {"sequence_encoder": "tcn"}),
    ("fusion", {"sequence_encoder": "lstm"}),
    ("tcn", {"features": "deltas"}),
    ("gru", {"features": "points"}),
]


@pytest.mark.parametrize("name,overrides", PADDED_CASES, ids=lambda v: v if isinstance(v, str) else str(v or ""))
def test_padding_does_not_change_logits(name, overrides):
    model = build(name, **overrides).eval()
    points, lengths, image = make_batch()
    pad = torch.arange(T).unsqueeze(0) >= lengths.unsqueeze(1)  # (B, T)
    with torch.no_grad():
        ref = run(model, points, lengths, image)
        for fill in (0.0, 1e4, float("nan")):
            changed = points.clone()
            changed[pad] = fill
            torch.testing.assert_close(run(model, changed, lengths, image), ref, rtol=0, atol=1e-5)
        longer = torch.cat([points, torch.full((3, 6, 3), -7.0)], dim=1)  # (B, T + 6, 3)
        torch.testing.assert_close(run(model, longer, lengths, image), ref, rtol=0, atol=1e-5)
        for i, n in enumerate(LENGTHS):
            alone = run(model, points[i : i + 1, :n], lengths[i : i + 1], image[i : i + 1])
            torch.testing.assert_close(alone, ref[i : i + 1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_rnn_rejects_lengths_out_of_range(name):
    model = build(name).eval()
    points, _, image = make_batch()
    for bad in ([0, 4, 1], [12, 4, 1]):
        with pytest.raises(ValueError, match="lengths"):
            run(model, points, torch.tensor(bad), image)


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("name", models.list_models())
def test_missing_or_misshapen_input_raises(name):
    model = build(name).eval()
    points, lengths, image = make_batch()
    kind = model.input_kind
    if kind in ("sequence", "both"):
        with pytest.raises(ValueError):
            run(model, None, None, image)
        with pytest.raises(ValueError):
            run(model, points[..., :2], lengths, image)
    if kind in ("image", "both"):
        with pytest.raises(ValueError):
            run(model, points, lengths, None)
        with pytest.raises(ValueError):
            run(model, points, lengths, image.repeat(1, 2, 1, 1))  # wrong channel count


@pytest.mark.parametrize("name", EXPECTED["image"] + EXPECTED["both"])
def test_three_channels_and_other_sizes(name):
    fixed = "image_size" in {f.name for f in dataclasses.fields(models.model_entry(name).config_cls)}
    sizes = [28] if fixed else [24, 48]
    for size in sizes:
        overrides = {"in_channels": 3, **({"image_size": size} if fixed else {})}
        model = build(name, **overrides).eval()
        points, lengths, image = make_batch(in_channels=3, size=size)
        with torch.no_grad():
            logits = run(model, points, lengths, image)
        assert logits.shape == (3, NUM_CLASSES) and torch.isfinite(logits).all()
    if fixed:
        points, lengths, image = make_batch(size=36)
        with pytest.raises(ValueError, match="image_size"):
            run(build(name), points, lengths, image)


# --------------------------------------------------------------------------- registry and configs


def test_list_models_by_kind():
    for kind, names in EXPECTED.items():
        assert models.list_models(kind) == names
    assert models.list_models() == sorted(sum(EXPECTED.values(), []))
    with pytest.raises(ValueError):
        models.list_models("video")


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError) as err:
        models.create_model("nope", 3)
    for name in models.list_models():
        assert name in str(err.value)


@pytest.mark.parametrize("num_classes", [1, 0, -3, True, 2.5, "7"])
def test_bad_num_classes_raises(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        models.create_model("softmax", num_classes)


def test_unknown_override_raises():
    with pytest.raises(ValueError, match="hiddne"):
        models.create_model("lstm", 3, hiddne=64)


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("lstm", {"hidden": 0}),
        ("gru", {"features": "xy"}),
        ("gru", {"dropout": 1.0}),
        ("tcn", {"kernel": 2}),
        ("tcn", {"blocks": 0}),
        ("softmax", {"image_size": 0}),
        ("mlp", {"hidden": True}),
        ("lenet5", {"activation": "sigmoid"}),
        ("lenet5", {"image_size": 12}),
        ("extexify_cnn", {"channels": ()}),
        ("extexify_cnn", {"channels": (32, -1)}),
        ("emnist_cnn", {"image_size": 30}),
        ("vgg_gap", {"width": 1.5}),
        ("vgg_gap", {"cosine_scale": -1.0}),
        ("vgg_gap", {"cosine_scale": "16"}),
        ("fusion", {"sequence_encoder": "transformer"}),
        ("fusion", {"head_hidden": -1}),
    ],
)
def test_bad_config_values_raise(name, overrides):
    with pytest.raises(ValueError):
        models.create_model(name, 3, **overrides)


@pytest.mark.parametrize("name", models.list_models())
def test_config_fields_have_defaults_and_comments(name):
    config_cls = models.model_entry(name).config_cls
    source = inspect.getsource(config_cls)
    for f in dataclasses.fields(config_cls):
        assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING, f.name
        assert re.search(rf"^\s+{f.name}: [^\n]*= [^\n]*#\s*\S", source, re.M), f"{name}.{f.name} has no comment"
    config_cls()  # the defaults are valid


@pytest.mark.parametrize("name", models.list_models())
def test_config_round_trips_through_json(name):
    model = build(name)
    again = build(name, **json.loads(json.dumps(dataclasses.asdict(model.config))))
    assert again.config == model.config
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", models.list_models())
def test_default_sizes(name):
    def count(num_classes):
        return sum(p.numel() for p in build(name, num_classes).parameters())

    assert count(1100) < 2_500_000  # detexify-sized vocabulary
    assert count(101) < (2_000_000 if name == "fusion" else 1_500_000)  # CROHME-sized vocabulary
    if name == "vgg_gap":
        assert 400_000 <= count(101) <= 1_000_000


@pytest.mark.parametrize("name", ["tcn", "vgg_gap"])
def test_exports_with_dynamic_batch_and_length(name):
    """No data-dependent Python control flow: one torch.export graph serves every batch size and length."""
    model = build(name).eval()
    points, lengths, image = make_batch()
    batch = torch.export.Dim("batch", min=1, max=1024)
    if name == "tcn":
        steps = torch.export.Dim("steps", min=1, max=4096)
        kwargs, dynamic = {"points": points, "lengths": lengths}, {"points": {0: batch, 1: steps}, "lengths": {0: batch}}
    else:
        kwargs, dynamic = {"image": image}, {"image": {0: batch}}
    exported = torch.export.export(model, (), kwargs, dynamic_shapes=dynamic).module()
    for lengths2 in ([5, 9, 2, 7, 30], [1], [2, 1]):
        points2, lengths2, image2 = make_batch(lengths2, seed=1)
        inputs = {"points": points2, "lengths": lengths2} if name == "tcn" else {"image": image2}
        with torch.no_grad():
            torch.testing.assert_close(exported(**inputs), model(**inputs), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "gru", "fusion"])
def test_full_length_batches_skip_packing_with_the_same_result(name):
    """A batch whose sequences all fill T runs unpacked and gives what the packed path gives."""
    from models.common import RNNEncoder

    torch.manual_seed(0)
    model = models.create_model(name, 7).eval()
    kw = {"points": torch.rand(5, 12, 3), "lengths": torch.full((5,), 12)}
    if name == "fusion":
        kw["image"] = torch.rand(5, 1, 32, 32)
    with torch.no_grad():
        fast = model(**kw)
        RNNEncoder.skip_packing_when_full = False
        try:
            packed = model(**kw)
        finally:
            RNNEncoder.skip_packing_when_full = True
    torch.testing.assert_close(fast, packed, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch", [1, 5, 40])
@pytest.mark.parametrize("dilation", [1, 2, 8])
def test_tcn_same_conv1d_matches_the_convolution(batch, dilation):
    """same_conv1d equals the Conv1d it stands for, on the small-batch matmul path and on the large-batch one."""
    from models.tcn import SMALL_BATCH, same_conv1d

    torch.manual_seed(dilation)
    conv = torch.nn.Conv1d(6, 7, 3, padding=dilation, dilation=dilation)
    x = torch.randn(batch, 6, 19)
    torch.testing.assert_close(same_conv1d(conv, x), conv(x), atol=1e-5, rtol=1e-5)
    assert (batch > SMALL_BATCH) == (batch == 40)  # both paths are exercised
    with torch.no_grad():  # inference: the matmul layout of the weight is kept, until the weight changes
        torch.testing.assert_close(same_conv1d(conv, x), conv(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(same_conv1d(conv, x[:1]), conv(x[:1]), atol=1e-5, rtol=1e-5)  # batch 1: addmm
        conv.weight.mul_(-0.5)  # in place, as an optimizer step or load_state_dict
        torch.testing.assert_close(same_conv1d(conv, x), conv(x), atol=1e-5, rtol=1e-5)
    x.requires_grad_(True)
    same_conv1d(conv, x).square().sum().backward()  # trains on either path
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


def test_vgg_gap_residual_stages():
    """residual=True puts a shortcut around each stage (projected where channels change); the plain layout is unchanged."""
    from models.vgg_gap import ResidualStage

    plain, res = build("vgg_gap"), build("vgg_gap", residual=True)
    stages = [m for m in res.modules() if isinstance(m, ResidualStage)]
    assert len(stages) == res.config.stages
    assert not any(isinstance(m, ResidualStage) for m in plain.modules())
    assert isinstance(stages[0].shortcut, torch.nn.Sequential)  # 1 -> 32 channels: a 1x1 projection
    assert "encoder.trunk.0.0.weight" in plain.state_dict()  # checkpoints saved before the option still load
    image = torch.randn(4, 1, 32, 32, requires_grad=True)
    res(image=image).sum().backward()
    assert image.grad is not None and torch.isfinite(image.grad).all()
    with torch.no_grad():  # zeroing a block's body leaves exactly the shortcut: relu(shortcut(x))
        block = stages[1]
        torch.nn.init.zeros_(block.body[3].weight)
        torch.nn.init.zeros_(block.body[3].bias)
        x = torch.randn(2, block.body[0][0].in_channels, 8, 8)
        block.eval()
        assert torch.allclose(block(x), torch.relu(block.shortcut(x)))
    with pytest.raises(TypeError, match="residual must be a bool"):
        build("vgg_gap", residual="yes")


def test_vgg_gap_cosine_head():
    """cosine_scale > 0: the final layer sees unit-length embeddings and its logits are scale x cosine, no bias."""
    from models.common import CosineLinear, L2Normalize

    model = build("vgg_gap", cosine_scale=16.0).eval()
    lin = model.head[-1]
    assert isinstance(lin, CosineLinear) and isinstance(model.head[-2], L2Normalize) and lin.bias is None
    assert "scale=16" in repr(lin)
    seen = {}
    lin.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out))
    image = torch.rand(5, 1, 32, 32)
    with torch.no_grad():
        logits = model(image=image)  # (5, K)
    assert torch.allclose(seen["x"].norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.allclose(logits, seen["x"] @ lin.effective_weight().T, atol=1e-5)
    assert logits.abs().max() <= 16.0 + 1e-4  # |cosine| <= 1
    assert torch.allclose(lin.effective_weight().norm(dim=1), torch.full((lin.out_features,), 16.0), atol=1e-4)
    model.train()
    model(image=image).logsumexp(1).sum().backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()
    assert type(build("vgg_gap").head[-1]) is torch.nn.Linear  # 0, the default: the plain linear layer
    from models.common import ClassifierHead

    with pytest.raises(ValueError, match="cosine_scale"):
        ClassifierHead(8, 3, cosine_scale=-1.0)


def test_config_fields_name_what_create_model_takes():
    """config_fields lists a model's config fields; unknown names raise as create_model does."""
    assert {"in_channels", "width", "residual"} <= models.config_fields("vgg_gap")
    assert "in_channels" not in models.config_fields("tcn")
    with pytest.raises(ValueError, match="vgg_gap"):
        models.config_fields("no_such_model")
