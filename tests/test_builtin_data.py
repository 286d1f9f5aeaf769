"""The real handwriting shipped in the package (``crohme-mini``), the default data of ``strokes bench``."""

from __future__ import annotations

import numpy as np
import pytest

import strokes
from strokes.io import BUILTIN, builtin_path, infer_format


@pytest.fixture(scope="module")
def mini():
    return strokes.load("crohme-mini")


def test_shipped_data_loads_with_exact_counts(mini):
    """crohme-mini loads with the counts its provenance file states, nothing skipped."""
    assert infer_format("crohme-mini") == "builtin"
    assert len(mini) == 5788 and len(mini.vocab) == 39 and len(mini.writer_names) == 82
    assert int(np.diff(mini.sample_offsets).sum()) == 8406 and len(mini.xy) == 304_076
    assert mini.t is not None and len(mini.t) == len(mini.xy)
    assert mini.skipped == [] and not mini.synthetic
    assert mini.fingerprint() == "cb4e2ee987261e61"
    counts = np.bincount(mini.labels, minlength=len(mini.vocab))
    assert counts.min() == 30 and counts.max() == 673
    assert (mini.writer_ids >= 0).all()  # every symbol has its writer: splits are writer-disjoint
    assert mini.info["builtin"] == "crohme-mini"


def test_shipped_data_is_small_and_credited():
    """The file stays a few MB, and its provenance, credit and terms sit next to it."""
    path = builtin_path("crohme-mini")
    assert path.stat().st_size < 3_000_000
    note = (path.parent / "crohme-mini.md").read_text()
    for needed in ("CROHME", "TC-11", "research use", "5,788", "82 writers", "whole", "cb4e2ee987261e61"):
        assert needed in note, needed


def test_shipped_data_is_whole_writers_of_the_real_set(mini):
    """Every symbol comes from a real CROHME InkML file, and each writer's symbols all come from one collection."""
    collections = np.array([s.split("/")[0] for s in mini.source_names])[mini.source_ids]
    assert set(collections) <= {"expressmatch", "HAMEX", "KAIST", "MathBrush", "MfrDB", "extension"}
    for w in np.unique(mini.writer_ids):
        assert len(set(collections[mini.writer_ids == w])) == 1


def test_writer_split_of_the_shipped_data_is_disjoint(mini):
    """The bench's writer split of crohme-mini keeps every writer on one side."""
    sp = strokes.split(mini, mode="writer", seed=0)
    sides = [set(mini.writer_ids[idx]) for idx in sp]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert all(len(idx) for idx in sp)


def test_unknown_builtin_name():
    """Asking for a data set that is not shipped names the ones that are."""
    with pytest.raises(ValueError, match="crohme-mini"):
        builtin_path("detexify-full")
    assert list(BUILTIN) == ["crohme-mini"]


@pytest.mark.shared
def test_make_default_data_rebuilds_the_shipped_file(shared_data, tmp_path):
    """benchmarks/make_default_data.py rebuilds exactly the shipped file from ../shared/data/crohme."""
    from scripts import load_benchmark

    data = shared_data / "crohme"
    mod = load_benchmark("make_default_data")
    out = tmp_path / "mini.npz"
    assert mod.main(["--data", str(data), "--out", str(out)]) == 0
    assert strokes.load(out).fingerprint() == strokes.load("crohme-mini").fingerprint()
