"""Comparisons that hold on every CPU and thread count: orders and ranks may differ only between values closer
than the tolerance (two matmuls of different shapes round differently in the last bits)."""

from __future__ import annotations

import numpy as np


def assert_same_order(ids_a, values_a, ids_b, atol: float = 1e-4) -> None:
    """Two top-k lists (ids by value desc) agree wherever a value is more than `atol` from its neighbours."""
    values = np.asarray(values_a, dtype=np.float64)
    gaps = np.abs(values[:, None] - values[None, :])
    np.fill_diagonal(gaps, np.inf)
    clear = gaps.min(axis=1) > atol if len(values) > 1 else np.ones(len(values), bool)
    assert np.array_equal(np.asarray(ids_a)[clear], np.asarray(ids_b)[clear]), (ids_a, ids_b)


def assert_same_rank(rank_a: int, rank_b: int, target: float, topk_values, atol: float = 1e-4) -> None:
    """Ranks agree up to the number of shown values within `atol` of the target's (a near-tie may flip);
    below the top-k, up to 1 (no neighbour is visible there)."""
    values = np.asarray(topk_values, dtype=np.float64)
    near = int((np.abs(values - target) <= atol).sum()) - (1 if rank_a <= len(values) else 0)
    allowed = max(near, 0) if rank_a <= len(values) else max(near, 1)
    assert abs(int(rank_a) - int(rank_b)) <= allowed, (rank_a, rank_b, target)


def assert_same_ranking(a, b, atol: float = 1e-4) -> None:
    """Two Traces of the same sample: top-k ids and ranks agree except across near-ties."""
    assert a.topk_ids.shape == b.topk_ids.shape
    for t in range(len(a)):
        assert_same_order(a.topk_ids[t], a.topk_logprobs[t], b.topk_ids[t], atol)
        assert_same_rank(a.rank[t], b.rank[t], float(a.logprob[t]), a.topk_logprobs[t], atol)
