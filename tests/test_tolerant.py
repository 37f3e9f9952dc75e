"""The tolerant comparisons themselves: they must catch a real difference."""

from __future__ import annotations

import pytest
from tolerant import assert_same_order, assert_same_rank


def test_same_order_catches_a_real_difference_and_allows_a_near_tie():
    assert_same_order([1, 2, 3], [-0.1, -0.5, -0.50001], [1, 3, 2])  # 2 and 3 are a near-tie
    with pytest.raises(AssertionError):
        assert_same_order([1, 2, 3], [-0.1, -0.5, -0.9], [2, 1, 3])
    with pytest.raises(AssertionError):
        assert_same_rank(3, 5, -0.9, [-0.1, -0.5, -0.9])
