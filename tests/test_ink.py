"""as_ink: every shape users have is accepted; malformed ink says what is wrong."""

import numpy as np
import pytest

from strokes import InkError, as_ink, normalize


def test_accepts_lists_of_tuples_dicts_and_arrays():
    a = as_ink([[(0, 0), (1, 1)], [(2, 2)]])
    b = as_ink([[{"x": 0, "y": 0}, {"x": 1, "y": 1}], [{"x": 2, "y": 2}]])
    c = as_ink([np.array([[0, 0], [1, 1]]), np.array([[2, 2]])])
    d = as_ink(np.array([[0, 0, 0], [1, 1, 1], [2, 2, 1]], dtype=float))  # points-3
    for ink in (b, c, d):
        assert len(ink) == 2
        for s, r in zip(ink, a):
            np.testing.assert_array_equal(s, r)


def test_keeps_t_and_drops_it_when_mixed():
    ink = as_ink([[{"x": 0, "y": 0, "t": 5}, {"x": 1, "y": 1, "t": 9}]])
    assert ink[0].shape == (2, 3) and ink[0][1, 2] == 9
    mixed = as_ink([[(0, 0, 1), (1, 1, 2)], [(2, 2)]])
    assert all(s.shape[1] == 2 for s in mixed)


@pytest.mark.parametrize(
    "ink,message",
    [
        ([], "empty"),
        ([[]], "stroke 0: is empty"),
        ([[(0, 0)], []], "stroke 1: is empty"),
        ([[(0, float("nan"))]], "NaN"),
        ([[(0, float("inf"))]], "NaN or infinite"),
        ([[("a", 1)]], "numbers"),
        ([[("1", "2")]], "numbers, got strings"),
        ([[(True, False)]], "numbers, got booleans"),
        ([[(1.5, True), (2, 3)]], "booleans"),
        ([[{"x": True, "y": 1}]], "booleans"),
        ([[(None, 1)]], "not numbers"),
        ([[(0, 0, 0, 0)]], r"2 \(x, y\) or 3"),
        ([(0, 0), (1, 1)], "single point"),
        ([0, 1], "wrong nesting"),
        ([[[[0, 0]]]], "wrong nesting"),
        ([[{"x": 1}]], "'x' and 'y'"),
        ([[{"x": 1, "y": 2, "t": 3}, {"x": 1, "y": 2}]], "no 't'"),
        (np.zeros((0, 3)), "empty"),
        (np.zeros((4, 2)), "points-3"),
    ],
)
def test_malformed_ink_raises_value_error_naming_the_problem(ink, message):
    with pytest.raises(ValueError, match=message):
        as_ink(ink)


def test_point_cap():
    with pytest.raises(ValueError, match="cap"):
        as_ink([np.zeros((10, 2))], max_points=5)
    with pytest.raises(ValueError, match="cap"):
        normalize([np.zeros((10, 2))], max_points=5)


def test_not_a_sequence_is_type_error():
    with pytest.raises(TypeError):
        as_ink("strokes")
    with pytest.raises(TypeError):
        as_ink(42)


@pytest.mark.parametrize("ink", [[[(1e308, 0), (-1e308, 1)]], [[(0, 0), (3e15, 1)]], [[{"x": 0, "y": -2e16}]]])
def test_coordinates_too_large_to_normalize_are_refused(ink):
    """x or y beyond ±1e15 is refused by name: its extent would overflow (1e308 - -1e308 is inf)."""
    with pytest.raises(InkError, match="beyond"):
        as_ink(ink)


def test_large_timestamps_and_ordinary_coordinates_pass():
    """Milliseconds since the epoch as t, and tablet-sized coordinates, are fine."""
    out = as_ink([[(0, 0, 1.7e12), (5e5, 5e5, 1.7e12 + 20)]])
    assert out[0].shape == (2, 3)
