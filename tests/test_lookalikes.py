"""Look-alike groups: symbols told apart only by context, scored as a group beside strict top-1."""

import numpy as np
import pytest

from strokes.glyphs import LOOKALIKES, lookalike_groups, top1_up_to_lookalikes

VOCAB = ["(", "0", "1", "C", "X", "\\times", "c", "o", "x", "|"]


def test_groups_join_each_lookalike_set_and_nothing_else():
    g = lookalike_groups(VOCAB)
    same = lambda a, b: g[VOCAB.index(a)] == g[VOCAB.index(b)]  # noqa: E731
    assert same("|", "1") and same("o", "0") and same("C", "c") and same("X", "x") and same("\\times", "x") and same("X", "\\times")
    assert not same("1", "0") and not same("x", "c") and not same("(", "1")
    assert g[VOCAB.index("(")] == VOCAB.index("(")  # a class outside every group keeps its own index
    assert len(set(g)) == len(VOCAB) - sum(len(m) - 1 for m in LOOKALIKES)


def test_top1_up_to_lookalikes_counts_a_lookalike_as_right_and_others_as_wrong():
    idx = {v: i for i, v in enumerate(VOCAB)}
    target = [idx[v] for v in ("|", "o", "x", "C", "(")]
    predicted = [idx[v] for v in ("1", "0", "\\times", "x", "(")]  # right, right, right, wrong (C -> x), right
    assert top1_up_to_lookalikes(predicted, target, VOCAB) == pytest.approx(4 / 5)
    strict = float((np.array(predicted) == np.array(target)).mean())
    assert strict == pytest.approx(1 / 5)


def test_without_lookalikes_in_the_vocabulary_it_is_plain_top1():
    vocab = ["a", "b", "c"]
    assert lookalike_groups(vocab) == [0, 1, 2]
    assert top1_up_to_lookalikes([0, 1, 1], [0, 1, 2], vocab) == pytest.approx(2 / 3)


def test_bad_input_is_refused():
    with pytest.raises(TypeError):
        lookalike_groups("abc")
    with pytest.raises(ValueError, match="one length"):
        top1_up_to_lookalikes([0, 1], [0], VOCAB)
    with pytest.raises(ValueError, match="lie in"):
        top1_up_to_lookalikes([0, 99], [0, 1], VOCAB)
    with pytest.raises(ValueError, match="no predictions"):
        top1_up_to_lookalikes([], [], VOCAB)
