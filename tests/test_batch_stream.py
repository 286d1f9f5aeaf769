"""BatchStream: whole batches for DataLoader workers, from a memory-mapped store."""

from __future__ import annotations

import pytest
import torch

from rendering import RenderConfig
from rendering.augment import default_augment
from strokes.training.batching import BatchStream
from strokes.io.store import load_store, save_store
from strokes.synthetic import generate
from strokes.training.train import default_pipeline_for


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("bs") / "x.strokes"
    save_store(generate(n_writers=3, samples_per_writer=2, seed=4), path)
    return load_store(path)


def _stream(ds, kind="image", seed=0):
    return BatchStream(ds, default_pipeline_for(kind), kind, RenderConfig(), batch_size=32, augment=default_augment(), seed=seed)


def _epoch(stream, workers):
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, shuffle=False)
    return list(loader)


def test_every_sample_once_per_epoch(store):
    s = _stream(store)
    s.set_epoch(3)
    labels = torch.cat([y for _, y in _epoch(s, 0)])
    assert len(labels) == len(store) and len(s) == -(-len(store) // 32)
    assert sorted(labels.tolist()) == sorted(store.labels.tolist())


@pytest.mark.parametrize("kind", ["image", "sequence", "both"])
def test_workers_give_the_same_batches_as_the_main_process(store, kind):
    s = _stream(store, kind)
    s.set_epoch(1)
    one, two = _epoch(s, 0), _epoch(s, 2)
    assert len(one) == len(two)
    for (a, ya), (b, yb) in zip(one, two):
        assert torch.equal(ya, yb) and a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k])
    if kind != "sequence":
        assert one[0][0]["image"].shape[1:] == (1, 32, 32)


def test_epochs_and_seeds_reshuffle_and_reaugment(store):
    s = _stream(store)
    s.set_epoch(0)
    first = s[0]
    s.set_epoch(1)
    assert not torch.equal(first[1], s[0][1]) or not torch.equal(first[0]["image"], s[0][0]["image"])
    s.set_epoch(0)
    again = s[0]
    assert torch.equal(first[0]["image"], again[0]["image"])


def test_bad_arguments(store):
    with pytest.raises(ValueError, match="batch_size"):
        BatchStream(store, default_pipeline_for("image"), "image", RenderConfig(), batch_size=0)
    with pytest.raises(ValueError, match="input kind"):
        BatchStream(store, default_pipeline_for("image"), "pixels", RenderConfig())
    with pytest.raises(IndexError):
        _stream(store)[10_000]
