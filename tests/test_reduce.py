"""reduce_logits / deterministic_topk against a naive reference: full log_softmax + a stable sort."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokstep.engine.model.reduce import Scratch, deterministic_topk, reduce_logits

NAN, INF = float("nan"), float("inf")


def naive_topk(row: torch.Tensor, k: int) -> list[int]:
    """Value desc (NaN above everything, as torch.sort), then id asc: a stable descending sort."""
    return torch.sort(row, descending=True, stable=True).indices[:k].tolist()


def naive_stats(logits: torch.Tensor, targets: torch.Tensor, k: int) -> dict[str, np.ndarray]:
    x = logits.float()
    logp = torch.log_softmax(x.double(), -1)  # float64 reference
    t = x.gather(-1, targets[:, None])
    return {
        "logprob": logp.gather(-1, targets[:, None])[:, 0].numpy(),
        "rank": (1 + (x > t).sum(-1)).numpy(),
        "ties": ((x == t).sum(-1) - 1).numpy(),
        "entropy": torch.special.entr(logp.exp()).sum(-1).numpy(),
        "topk_ids": np.array([naive_topk(row, k) for row in x]),
        "finite": (~(torch.isnan(x).any(-1) | torch.isposinf(x).any(-1))).numpy(),
    }


def check_against_naive(logits: torch.Tensor, targets: torch.Tensor, k: int) -> None:
    ours = reduce_logits(logits, targets, k)
    ref = naive_stats(logits, targets, k)
    finite = ref["finite"]
    np.testing.assert_array_equal(ours.finite, finite)
    np.testing.assert_array_equal(ours.rank, ref["rank"])
    np.testing.assert_array_equal(ours.ties, ref["ties"])
    np.testing.assert_array_equal(ours.topk_ids, ref["topk_ids"])
    np.testing.assert_allclose(ours.logprob[finite], ref["logprob"][finite], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(ours.entropy[finite], ref["entropy"][finite], rtol=1e-5, atol=1e-5)
    top_ref = torch.log_softmax(logits.float().double(), -1).gather(-1, torch.from_numpy(ref["topk_ids"]))
    # A float32 log-softmax carries the row's log-sum-exp rounding: about eps32 * |lse| * (a few), which at
    # V = 50k and logits ~ N(0, 16) is ~1e-5 — so the bound scales with |lse| instead of pinning last bits.
    lse = torch.logsumexp(logits.double(), -1, keepdim=True).abs().numpy()
    bound = 1e-5 + 16 * np.finfo(np.float32).eps * lse
    error = np.abs(ours.topk_logprobs - top_ref.numpy())
    assert (error[finite] <= np.broadcast_to(bound, error.shape)[finite]).all(), error.max()
    assert ours.logprob.dtype == np.float32 and ours.entropy.dtype == np.float32
    assert ours.rank.dtype == np.int64 and ours.topk_ids.dtype == np.int64


@pytest.mark.parametrize("vocab", [7, 1000, 50257])
def test_random_logits_match_naive_reference(vocab):
    gen = torch.Generator().manual_seed(vocab)
    logits = torch.randn(9, vocab, generator=gen) * 4
    targets = torch.randint(0, vocab, (9,), generator=gen)
    check_against_naive(logits, targets, k=min(10, vocab))


def test_exact_ties_everywhere():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randint(-3, 4, (16, 300), generator=gen).float()  # only 7 distinct values per row
    logits[0] = 0.0  # a whole row tied
    logits[1, :] = -5.0
    logits[1, 250:] = 2.0  # the top-k set is all ties at the maximum, decided by id
    targets = torch.randint(0, 300, (16,), generator=gen)
    targets[0] = 123
    stats = reduce_logits(logits, targets, 10)
    assert stats.rank[0] == 1 and stats.ties[0] == 299
    assert stats.topk_ids[0].tolist() == list(range(10))
    assert stats.topk_ids[1].tolist() == list(range(250, 260))
    check_against_naive(logits, targets, k=10)


def test_ties_at_the_kth_value_take_the_smallest_ids():
    row = torch.full((1, 50), -1.0)
    row[0, [40, 3, 17]] = 5.0  # above the boundary, tied among themselves
    row[0, [45, 30, 8, 22, 11]] = 2.0  # the boundary value: only 2 of these 5 fit in k=5
    values, ids = deterministic_topk(row, 5)
    assert ids[0].tolist() == [3, 17, 40, 8, 11]
    assert values[0].tolist() == [5.0, 5.0, 5.0, 2.0, 2.0]


def test_nan_and_inf_rows_are_flagged_and_finite_rows_unaffected():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 100, generator=gen)
    logits[1, 7] = NAN
    logits[2, 9] = INF
    logits[3, [4, 50]] = -INF  # finite row (masked tokens): q = 0 there, counted as 0 log 0 = 0
    logits[4, [1, 2, 3]] = NAN
    logits[4, 60] = INF
    targets = torch.tensor([0, 1, 2, 3, 4, 5])
    stats = reduce_logits(logits, targets, 5)
    assert stats.finite.tolist() == [True, False, False, True, False, True]
    # NaN sorts first (ids ascending), then +inf, then values: as torch.sort does
    assert stats.topk_ids[4].tolist() == [1, 2, 3, 60, naive_topk(logits[4], 5)[4]]
    assert stats.topk_ids[1, 0] == 7 and stats.topk_ids[2, 0] == 9
    assert np.isfinite(stats.entropy[3]) and np.isfinite(stats.logprob[3])
    check_against_naive(logits, targets, k=5)


def test_minus_inf_target_has_minus_inf_logprob_and_last_rank():
    logits = torch.tensor([[0.0, 1.0, -INF, 2.0]])
    stats = reduce_logits(logits, torch.tensor([2]), 2)
    assert stats.finite[0] and stats.logprob[0] == -np.inf
    assert stats.rank[0] == 4 and stats.ties[0] == 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_logits_are_upcast_before_reducing(dtype):
    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(5, 400, generator=gen) * 3).to(dtype)  # bf16: many exact ties
    targets = torch.randint(0, 400, (5,), generator=gen)
    check_against_naive(logits, targets, k=10)


def test_scratch_reuse_across_chunks_of_different_sizes_gives_the_same_answer():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(20, 500, generator=gen)
    targets = torch.randint(0, 500, (20,), generator=gen)
    whole = reduce_logits(logits, targets, 7)
    scratch = Scratch()
    parts = [reduce_logits(logits[a:b], targets[a:b], 7, scratch) for a, b in [(0, 13), (13, 14), (14, 20)]]
    for name in ("rank", "ties", "topk_ids", "finite"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts]), getattr(whole, name))
    for name in ("logprob", "entropy", "topk_logprobs"):
        np.testing.assert_allclose(np.concatenate([getattr(p, name) for p in parts]), getattr(whole, name))


def test_k_equal_to_vocab_orders_everything():
    logits = torch.tensor([[1.0, 3.0, 3.0, -2.0, 1.0]])
    _, ids = deterministic_topk(logits, 5)
    assert ids[0].tolist() == [1, 2, 0, 4, 3]


def test_underflowing_probabilities_keep_finite_logprobs_and_zero_entropy_terms():
    logits = torch.full((2, 3000), -300.0)
    logits[0, 5] = 0.0  # every other q underflows to exactly 0 in float32
    logits[1, :] = torch.linspace(-150.0, 0.0, 3000)
    targets = torch.tensor([17, 0])
    stats = reduce_logits(logits, targets, 4)
    assert stats.logprob[0] == pytest.approx(-300.0, abs=1e-3)
    assert np.isfinite(stats.entropy).all() and stats.entropy[0] == pytest.approx(0.0, abs=1e-6)
    check_against_naive(logits, targets, k=4)


@pytest.mark.parametrize("seed", range(3))
def test_long_rows_with_ties_and_nan_across_blocks_match_naive(seed):
    """Vocabularies long enough for the two-stage top-k, with ties/NaN in and across blocks and the tail."""
    gen = torch.Generator().manual_seed(seed)
    vocab = 64 * 100 + 37  # a ragged tail after the last full block
    logits = torch.randint(-50, 8, (12, vocab), generator=gen).float()  # many exact ties near the top
    logits[0, -3:] = 20.0  # the maximum sits in the ragged tail
    logits[1, [5, 64 * 7 + 1, vocab - 1]] = NAN  # NaN in two blocks and the tail
    logits[2, :] = 1.0
    logits[2, [100, 3000, 6400]] = 2.0
    logits[3] = torch.randn(vocab, generator=gen).to(torch.bfloat16).float()  # bf16-like value grid
    targets = torch.randint(0, vocab, (12,), generator=gen)
    check_against_naive(logits, targets, k=10)
    check_against_naive(logits, targets, k=1)
