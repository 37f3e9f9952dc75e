"""Reduce a chunk of logits to the per-position numbers a Trace keeps (all in float32)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class PositionStats:
    logprob: np.ndarray  # (c,) float32
    rank: np.ndarray  # (c,) int64
    ties: np.ndarray  # (c,) int64
    entropy: np.ndarray  # (c,) float32
    topk_ids: np.ndarray  # (c, k) int64
    topk_logprobs: np.ndarray  # (c, k) float32
    finite: np.ndarray  # (c,) bool

    @staticmethod
    def concat(parts: list[PositionStats]) -> PositionStats:
        return PositionStats(
            **{
                name: np.concatenate([getattr(p, name) for p in parts])
                for name in PositionStats.__dataclass_fields__
            }
        )


def deterministic_topk(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of (c, V) float32 logits ordered by value desc, then id asc: ties never depend on the kernel."""
    values, ids = logits.topk(k, dim=-1)  # (c, k), order among equal values unspecified
    kth = values[:, -1:]  # (c, 1)
    above = values > kth  # (c, k): entries strictly above the k-th value are certain members
    n_above = above.sum(-1, keepdim=True)  # (c, 1)
    # The remaining k - n_above slots go to the smallest ids whose logit equals the k-th value.
    vocab = logits.shape[-1]
    descending_id = torch.arange(vocab, 0, -1, device=logits.device, dtype=torch.int32)  # V..1
    equal_score = torch.where(logits == kth, descending_id, 0)  # (c, V)
    equal_ids = equal_score.topk(k, dim=-1).indices  # (c, k) smallest equal ids first
    # Sort the certain members by (value desc, id asc): stable sort by id, then by value.
    certain_values = torch.where(above, values, torch.full_like(values, -torch.inf))
    by_id = ids.argsort(dim=-1, stable=True)
    ids, certain_values = ids.gather(-1, by_id), certain_values.gather(-1, by_id)
    by_value = certain_values.argsort(dim=-1, descending=True, stable=True)
    ids = ids.gather(-1, by_value)
    slot = torch.arange(k, device=logits.device)[None]  # (1, k)
    from_equal = equal_ids.gather(-1, (slot - n_above).clamp(min=0))
    top_ids = torch.where(slot < n_above, ids, from_equal)  # (c, k)
    return logits.gather(-1, top_ids), top_ids


def reduce_logits(logits: torch.Tensor, targets: torch.Tensor, k: int) -> PositionStats:
    """logits (c, V) in any dtype, targets (c,) -> float32 statistics, moved to the CPU.

    rank = 1 + #(logit > logit[target]) (ties counted separately in `ties`); entropy in nats.
    """
    logits = logits.float()  # (c, V): upcast exactly as HF's loss does
    finite = ~(torch.isnan(logits).any(-1) | torch.isposinf(logits).any(-1))  # (c,)
    lse = torch.logsumexp(logits, dim=-1)  # (c,)
    target_logit = logits.gather(-1, targets[:, None])  # (c, 1)
    logprob = target_logit[:, 0] - lse  # (c,) = log q(target)
    rank = 1 + (logits > target_logit).sum(-1)  # (c,)
    ties = (logits == target_logit).sum(-1) - 1  # (c,)
    probs = torch.softmax(logits, dim=-1)  # (c, V)
    entropy = torch.special.entr(probs).sum(-1)  # (c,) -sum q log q, 0 log 0 = 0
    del probs
    top_logits, top_ids = deterministic_topk(logits, k)
    top_logprobs = top_logits - lse[:, None]  # (c, k)
    return PositionStats(
        logprob=logprob.cpu().numpy(),
        rank=rank.cpu().numpy().astype(np.int64),
        ties=ties.cpu().numpy().astype(np.int64),
        entropy=entropy.cpu().numpy(),
        topk_ids=top_ids.cpu().numpy().astype(np.int64),
        topk_logprobs=top_logprobs.cpu().numpy(),
        finite=finite.cpu().numpy(),
    )
