"""Augmentation: seeded, batched, on the points' device, layout-preserving."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rendering import rasterize_torch
from rendering.augment import Affine, Augment, Elastic, Jitter, augment_from_config, default_augment
from strategies import points3

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
STEPS = [Affine(), Jitter(), Elastic(), default_augment()]


def _batch(device="cpu", n=6, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 15, n)
    pts = rng.uniform(0.05, 0.95, (lengths.sum(), 3)).astype(np.float32)
    pts[:, 2] = rng.random(len(pts)) < 0.2
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    pts[offsets[1:] - 1, 2] = 1
    return torch.from_numpy(pts).to(device), torch.from_numpy(offsets).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("aug", STEPS, ids=repr)
def test_same_seed_same_batch_and_input_untouched(aug, device):
    pts, offs = _batch(device)
    before = pts.clone()
    a = aug(pts, offs, generator=torch.Generator(device).manual_seed(3))
    b = aug(pts, offs, generator=torch.Generator(device).manual_seed(3))
    c = aug(pts, offs, generator=torch.Generator(device).manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(pts, before)
    assert a.device == pts.device and a.shape == pts.shape and a.dtype == pts.dtype
    assert torch.equal(a[:, 2], pts[:, 2])  # pen_up passes through


@pytest.mark.parametrize("aug", STEPS, ids=repr)
def test_global_rng_is_not_used(aug):
    pts, offs = _batch()
    torch.manual_seed(0)
    state = torch.get_rng_state()
    aug(pts, offs, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)


def test_zero_strength_is_identity():
    pts, offs = _batch()
    aug = Augment((Affine(rotate=0, shear=0, scale=(1, 1), translate=0), Jitter(0), Elastic(alpha=0)))
    out = aug(pts, offs, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, pts, atol=1e-6)


def test_affine_is_one_transform_per_sample():
    """All points of one sample move by the same affine map; samples get different maps."""
    pts, offs = _batch(n=3)
    out = Affine(rotate=30, shear=0.3, scale=(0.7, 1.3), translate=0.1)(
        pts, offs, generator=torch.Generator().manual_seed(1)
    )
    maps = []
    for i in range(3):
        s, e = int(offs[i]), int(offs[i + 1])
        if e - s < 3:
            continue
        src = torch.cat([pts[s:e, :2].double(), torch.ones(e - s, 1, dtype=torch.float64)], 1)
        sol = torch.linalg.lstsq(src, out[s:e, :2].double()).solution  # (3, 2)
        assert torch.allclose(src @ sol, out[s:e, :2].double(), atol=1e-5)
        maps.append(sol)
    assert len(maps) >= 2 and not torch.allclose(maps[0], maps[1])


def test_elastic_is_smooth():
    """Nearby points move together: displacement differences shrink with distance."""
    t = torch.linspace(0.1, 0.9, 200)
    pts = torch.stack([t, 0.5 + 0 * t, torch.zeros_like(t)], 1)
    pts[-1, 2] = 1
    out = Elastic(alpha=0.05)(pts, generator=torch.Generator().manual_seed(0))
    disp = out[:, :2] - pts[:, :2]
    step = (disp[1:] - disp[:-1]).norm(dim=1).max()
    assert disp.norm(dim=1).max() > 0.005
    assert step < 0.01 * (t[1] - t[0]) * 200


def test_jitter_statistics():
    pts = torch.full((20000, 3), 0.5)
    out = Jitter(sigma=0.01)(pts, generator=torch.Generator().manual_seed(0))
    noise = out[:, :2] - 0.5
    assert abs(float(noise.mean())) < 5e-4
    assert abs(float(noise.std()) - 0.01) < 5e-4


def test_padded_and_ragged_and_numpy_layouts():
    pts, offs = _batch(n=1)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    ragged = default_augment()(pts, offs, generator=g())
    padded = default_augment()(pts.unsqueeze(0), generator=g())
    assert torch.allclose(ragged, padded[0], atol=1e-6)
    as_np = default_augment()(pts.numpy(), offs.numpy(), generator=g())
    assert isinstance(as_np, np.ndarray) and np.allclose(as_np, ragged.numpy(), atol=1e-6)


def test_augmented_points_render_on_device():
    pts, offs = _batch()
    out = default_augment()(pts, offs, generator=torch.Generator().manual_seed(0))
    img = rasterize_torch(out, offs)
    assert img.shape == (6, 1, 32, 32) and float(img.max()) <= 1


def test_config_round_trip_and_repr():
    aug = Augment((Affine(rotate=5, scale=(0.8, 1.2)), Elastic(alpha=0.01, waves=2), Jitter(0.002)))
    assert augment_from_config(aug.to_config()) == aug
    assert "Affine(rotate=5" in repr(aug)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Affine(scale=(1.2, 0.8)),
        lambda: Affine(rotate=-1),
        lambda: Jitter(sigma=-0.1),
        lambda: Elastic(waves=0),
        lambda: augment_from_config([{"name": "warp"}]),
    ],
)
def test_bad_options_raise_value_error(bad):
    with pytest.raises(ValueError):
        bad()


def test_generator_is_required():
    pts, offs = _batch()
    with pytest.raises(TypeError, match="generator"):
        Jitter()(pts, offs, generator=None)
    with pytest.raises(TypeError):
        Augment(("jitter",))


# ------------------------------------------------- stroke order and direction (issue 16)
def _ragged(inks):
    """points-3 arrays -> (P, 3) tensor and offsets."""
    import torch

    pts = np.concatenate(inks).astype(np.float32)
    offs = np.r_[0, np.cumsum([len(i) for i in inks])]
    return torch.from_numpy(pts), torch.from_numpy(offs)


def _split_strokes(points3):
    ends = np.flatnonzero(points3[:, 2] > 0.5)
    return [s[:, :2] for s in np.split(points3, ends[:-1] + 1)]


@settings(deadline=None, max_examples=60)
@given(st.lists(points3(max_strokes=4, max_points=8), min_size=1, max_size=5), st.integers(0, 2**31 - 1))
def test_stroke_order_shuffles_whole_strokes_within_samples(inks, seed):
    """StrokeOrder keeps every sample's strokes, whole, each ending with pen up, only in another order."""
    import torch

    from rendering.augment import StrokeOrder

    pts, offs = _ragged(inks)
    out = StrokeOrder(1.0)(pts, offs, generator=torch.Generator().manual_seed(seed)).numpy()
    for i, ink in enumerate(inks):
        got = out[offs[i] : offs[i + 1]]
        assert got[-1, 2] == 1
        assert sorted(s.tobytes() for s in _split_strokes(got)) == sorted(s.astype(np.float32).tobytes() for s in _split_strokes(ink))


@settings(deadline=None, max_examples=60)
@given(st.lists(points3(max_strokes=4, max_points=8), min_size=1, max_size=5), st.integers(0, 2**31 - 1))
def test_stroke_direction_reverses_strokes_in_place(inks, seed):
    """StrokeDirection(1) reverses every stroke and keeps it (and its pen up) where it was; twice is identity."""
    import torch

    from rendering.augment import StrokeDirection

    pts, offs = _ragged(inks)
    g = torch.Generator().manual_seed(seed)
    once = StrokeDirection(1.0)(pts, offs, generator=g)
    np.testing.assert_array_equal(once[:, 2].numpy(), pts[:, 2].numpy())
    for a, b in zip(_split_strokes(pts.numpy()), _split_strokes(once.numpy())):
        np.testing.assert_array_equal(b, a[::-1])
    np.testing.assert_array_equal(StrokeDirection(1.0)(once, offs, generator=g).numpy(), pts.numpy())


def test_stroke_steps_are_seeded_and_p0_is_identity():
    """p=0 changes nothing; the same seed gives the same shuffle; presets build and round-trip."""
    import torch

    from rendering.augment import PRESETS, StrokeDirection, StrokeOrder, augment_from_config, augment_preset

    rng = np.random.default_rng(0)
    inks = [np.c_[rng.random((6, 2)), [0, 0, 1, 0, 0, 1]] for _ in range(20)]
    pts, offs = _ragged(inks)
    for step in (StrokeOrder(0.0), StrokeDirection(0.0)):
        assert torch.equal(step(pts, offs, generator=torch.Generator().manual_seed(1)), pts)
    a = StrokeOrder(0.5)(pts, offs, generator=torch.Generator().manual_seed(3))
    b = StrokeOrder(0.5)(pts, offs, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, pts)
    for name in PRESETS:
        chain = augment_preset(name)
        assert augment_from_config(chain.to_config()) == chain
        chain(pts, offs, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        augment_preset("heavy")
    with pytest.raises(ValueError, match="p must be in"):
        StrokeOrder(1.5)
    with pytest.raises(ValueError, match="ragged"):
        StrokeOrder(0.5)(pts.reshape(4, -1, 3), generator=torch.Generator().manual_seed(0))


def test_image_warps_ignore_stroke_steps():
    """Warping images with a chain that has stroke steps warps them by its geometric steps only."""
    from rendering.augment import augment_preset
    from rendering.warp import warp_images

    images = torch.rand(3, 1, 16, 16)
    a = warp_images(images, augment_preset("strokes"), generator=torch.Generator().manual_seed(0))
    b = warp_images(images, augment_preset("strokes").geometric(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and augment_preset("strokes").geometric() == default_augment()
