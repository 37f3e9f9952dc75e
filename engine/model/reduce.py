"""Reduce a chunk of logits to the per-position numbers a Trace keeps (all in float32).

Speed matters here (a Trace should cost about one forward pass), so each [c, V] chunk is read as few
times as the statistics allow, and work buffers are reused from chunk to chunk through a `Scratch`
(on the CPU, a fresh 100 MB tensor costs more in page faults than the arithmetic done on it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

EXACT_FLOAT_COUNT = 1 << 24  # float32 sums of 0/1 flags are exact below this many columns
TOPK_BLOCK = 64  # columns per block in the two-stage top-k


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


class Scratch:
    """Named work buffers that grow once and are then reused for every chunk of a trace."""

    _per_thread = threading.local()

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    @classmethod
    def for_current_thread(cls) -> Scratch:
        """This thread's buffers, kept from one trace to the next (traces in other threads get their own).

        Re-faulting ~60 MB of fresh pages cost a T=128 GPT-2 trace ~10% of its forward pass; the price is
        that the largest chunk buffers (up to ~160 MB on the CPU) stay allocated between traces.
        """
        scratch = getattr(cls._per_thread, "scratch", None)
        if scratch is None:
            scratch = cls._per_thread.scratch = cls()
        return scratch

    def take(self, name: str, rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A (rows, cols) tensor with undefined contents, backed by the buffer called `name`."""
        size = rows * cols
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype or buffer.device != device:
            buffer = torch.empty(size, dtype=dtype, device=device)
            self._buffers[name] = buffer
        return buffer[:size].view(rows, cols)


def _same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Equality under the sort order used here, where NaN equals NaN (and sorts above +inf)."""
    return (a == b) | (torch.isnan(a) & torch.isnan(b))


def _order_by_value_then_id(values: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort (c, k) candidates by value desc (NaN first, as torch.sort does), then id asc."""
    by_id = ids.argsort(dim=-1, stable=True)
    values, ids = values.gather(-1, by_id), ids.gather(-1, by_id)
    by_value = values.argsort(dim=-1, descending=True, stable=True)
    return values.gather(-1, by_value), ids.gather(-1, by_value)


def _topk_resolving_ties(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of (r, V) rows whose k-th value is tied with values outside the top-k: the tied slots go
    to the smallest ids. Costs three more passes over the rows, so only ambiguous rows come here."""
    values, ids = logits.topk(k, dim=-1)  # (r, k), membership among equal values unspecified
    kth = values[:, -1:]  # (r, 1)
    kth_is_nan = torch.isnan(kth)
    above = ~_same(values, kth) & (torch.isnan(values) | (values > kth))  # (r, k): certain members
    n_above = above.sum(-1, keepdim=True)  # (r, 1)
    vocab = logits.shape[-1]
    descending_id = torch.arange(vocab, 0, -1, device=logits.device, dtype=torch.int32)  # V..1
    equal = torch.where(kth_is_nan, torch.isnan(logits), logits == kth)  # (r, V)
    equal_ids = torch.where(equal, descending_id, 0).topk(k, dim=-1).indices  # (r, k) smallest ids first
    certain_values = torch.where(above, values, torch.full_like(values, -torch.inf))
    _, ordered_ids = _order_by_value_then_id(certain_values, ids)
    slot = torch.arange(k, device=logits.device)[None]  # (1, k)
    from_equal = equal_ids.gather(-1, (slot - n_above).clamp(min=0))
    top_ids = torch.where(slot < n_above, ordered_ids, from_equal)  # (r, k)
    return logits.gather(-1, top_ids), top_ids


def _top_values(logits: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The n largest values of each (c, V) row, desc, with ids (order among equal values unspecified).

    On the CPU, torch.topk over a long row costs several times a plain pass, so rows are cut into
    blocks of TOPK_BLOCK: one `amax` pass finds each block's max, and only the n blocks with the largest
    maxima (plus the ragged tail) can hold the top n values: if a top-n value sat in another block,
    the n chosen blocks would each hold a value at least as large, n values in all, a contradiction.
    """
    rows, vocab = logits.shape
    blocks = vocab // TOPK_BLOCK
    if logits.device.type != "cpu" or logits.stride(-1) != 1 or blocks < 4 * n:
        return logits.topk(n, dim=-1)
    block_max = logits[:, : blocks * TOPK_BLOCK].view(rows, blocks, TOPK_BLOCK).amax(-1)  # (c, B)
    chosen = block_max.topk(n, dim=-1).indices  # (c, n): NaN blocks first, as topk ranks NaN highest
    offsets = torch.arange(TOPK_BLOCK, device=logits.device)
    candidates = (chosen[:, :, None] * TOPK_BLOCK + offsets).view(rows, n * TOPK_BLOCK)
    tail = torch.arange(blocks * TOPK_BLOCK, vocab, device=logits.device).expand(rows, -1)
    candidates = torch.cat([candidates, tail], dim=1)  # (c, n * TOPK_BLOCK + tail)
    values, where = logits.gather(-1, candidates).topk(n, dim=-1)  # (c, n)
    return values, candidates.gather(-1, where)


def deterministic_topk(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of (c, V) float32 logits ordered by value desc, then id asc: ties never depend on the kernel.

    NaN sorts above every number (as in torch.sort). One topk pass over the rows in the common case:
    asking for k+1 shows whether the k-th value is tied with a value left out; only such rows pay for
    an exact tie-break.
    """
    vocab = logits.shape[-1]
    k = min(k, vocab)
    values, ids = _top_values(logits, min(k + 1, vocab))  # (c, k or k+1), by value desc
    if k < vocab:
        ambiguous = _same(values[:, k], values[:, k - 1])  # (c,): the k-th value also appears outside
        values, ids = values[:, :k], ids[:, :k]
    else:
        ambiguous = torch.zeros(len(values), dtype=torch.bool, device=values.device)
    values, ids = _order_by_value_then_id(values, ids)  # the set is certain; fix the order among ties
    rows = ambiguous.nonzero()[:, 0]
    if rows.numel():
        values[rows], ids[rows] = _topk_resolving_ties(logits[rows], k)
    return values, ids


@dataclass(frozen=True, eq=False)
class Softmaxed:
    """What a reduction leaves on the device for a later pass over the same chunk (the KL of two models)."""

    x: torch.Tensor  # (c, V) float32 logits
    q: torch.Tensor  # (c, V) float32 softmax(x)
    lse: torch.Tensor  # (c, 1) float32 log sum exp(x)
    top1: torch.Tensor  # (c, 1) int64 argmax (the lowest id among ties)
    finite: torch.Tensor  # (c,) bool


def reduce_logits(
    logits: torch.Tensor, targets: torch.Tensor, k: int, scratch: Scratch | None = None
) -> PositionStats:
    """logits (c, V) in any dtype, targets (c,) -> float32 statistics, moved to the CPU.

    rank = 1 + #(logit > logit[target]) (ties counted separately in `ties`); entropy in nats.
    q = softmax(logits); log q(v) = logit(v) - lse with lse = max - log q(argmax) (q(argmax) is exactly
    1/sum exp(logit - max) up to one rounding), so log q stays finite where q itself underflows;
    entropy = -sum q log q. Passes over the chunk: block max + small top-k, two compare-and-count,
    softmax, log, multiply-and-sum. Pass `scratch` to reuse the work buffers across chunks.
    """
    return reduce_keeping_softmax(logits, targets, k, scratch)[0]


def reduce_keeping_softmax(
    logits: torch.Tensor, targets: torch.Tensor, k: int, scratch: Scratch | None = None, tag: str = ""
) -> tuple[PositionStats, Softmaxed]:
    """`reduce_logits`, also returning the float32 logits, softmax and lse it computed (in buffers named
    with `tag`, so two models' chunks can be alive at once; they stay valid until the next call with it)."""
    scratch = scratch if scratch is not None else Scratch()
    rows, vocab = logits.shape
    device = logits.device
    if logits.dtype == torch.float32:
        x = logits  # (c, V)
    else:  # upcast exactly as HF's loss does, into a reused buffer
        x = scratch.take(tag + "upcast", rows, vocab, torch.float32, device).copy_(logits)
    top_logits, top_ids = deterministic_topk(x, k)  # (c, k); NaN sorts first, so [:, 0] is the row max
    row_max = top_logits[:, :1]  # (c, 1)
    finite = ~(torch.isnan(row_max) | torch.isposinf(row_max))[:, 0]  # (c,) no NaN, no +inf in the row
    target_logit = x.gather(-1, targets[:, None])  # (c, 1)

    work = scratch.take("work", rows, vocab, torch.float32, device)  # (c, V)
    if vocab < EXACT_FLOAT_COUNT:  # 0/1 flags summed in float32: exact, and faster than bool sums
        rank = 1 + torch.gt(x, target_logit, out=work).sum(-1)  # (c,)
        ties = torch.eq(x, target_logit, out=work).sum(-1) - 1  # (c,)
    else:
        rank = 1 + (x > target_logit).sum(-1)
        ties = (x == target_logit).sum(-1) - 1

    q = torch.softmax(x, -1, out=scratch.take(tag + "q", rows, vocab, torch.float32, device))  # (c, V)
    lse = row_max - torch.log(q.gather(-1, top_ids[:, :1]))  # (c, 1) log sum exp(logits)
    # (c,) -sum q log q; torch.sum's cascade keeps float32 accurate where a plain dot loses ~1e-4
    entropy = -torch.mul(q, torch.log(q, out=work), out=work).sum(-1)
    redo = torch.isnan(entropy) & finite  # q underflowed to 0 somewhere: 0 * log 0 must count as 0
    if redo.any():
        entropy[redo] = -torch.special.xlogy(q[redo], q[redo]).sum(-1)

    logprob = (target_logit - lse)[:, 0]  # (c,) log q(target)
    top_logprobs = top_logits - lse  # (c, k)
    stats = PositionStats(
        logprob=logprob.cpu().numpy(),
        rank=rank.cpu().numpy().astype(np.int64),
        ties=ties.cpu().numpy().astype(np.int64),
        entropy=entropy.cpu().numpy(),
        topk_ids=top_ids.cpu().numpy().astype(np.int64),
        topk_logprobs=top_logprobs.cpu().numpy(),
        finite=finite.cpu().numpy(),
    )
    return stats, Softmaxed(x=x, q=q, lse=lse, top1=top_ids[:, :1], finite=finite)


def kl_divergence(a: Softmaxed, b: Softmaxed, scratch: Scratch | None = None) -> np.ndarray:
    """(c,) float64 KL(P_a || P_b) = sum_v q_a(v) (log q_a(v) - log q_b(v)) in nats, per row.

    With d = x_b - x_a - c (c: d at a's argmax; the KL ignores any constant shift), and E over q_a:
    KL = log E[exp d] - E[d] = log1p(E[d] + E[expm1(d) - d]) - E[d]. Unlike sum q_a (log q_a - log q_b),
    whose two float32 lse's leave an error of ~1e-6 nats (as large as the KL between float32 and bfloat16
    runs of one model), this keeps the second-order part separate: ~1e-4 relative. Six passes over the
    chunk. NaN where either row is not finite; rows where exp(d) overflows or logits are -inf are redone
    in float64 (a term with q_a = 0 counts as 0).
    """
    scratch = scratch if scratch is not None else Scratch()
    device = a.x.device
    xb = b.x.to(device)
    rows, vocab = a.x.shape
    d = scratch.take("work", rows, vocab, torch.float32, device)
    e = scratch.take("work2", rows, vocab, torch.float32, device)
    torch.sub(xb, a.x, out=d)  # (c, V)
    d.sub_(d.gather(-1, a.top1))  # centred at a's most likely token
    mean_d = torch.mul(a.q, d, out=e).sum(-1)  # (c,) E[d] (a multiply and a cascade sum beat einsum)
    torch.expm1(d, out=e).sub_(d)  # (c, V) expm1(d) - d, the second-order part, without cancellation
    rest = torch.mul(a.q, e, out=e).sum(-1)  # (c,) E[expm1(d) - d] >= 0
    kl = torch.log1p(mean_d + rest) - mean_d
    both = a.finite & b.finite.to(device)
    redo = ~torch.isfinite(kl) & both
    if redo.any():  # exp(d) overflowed, or -inf logits made d NaN: float64, q_a = 0 terms count as 0
        at = redo.nonzero()[:, 0]
        log_a, log_b = a.x[at].double().log_softmax(-1), xb[at].double().log_softmax(-1)
        terms = torch.where(log_a > -torch.inf, log_a.exp() * (log_a - log_b), 0.0)
        kl[at] = terms.sum(-1).float()
    kl = torch.where(both, kl.clamp_min(0.0), torch.nan)  # KL >= 0: a negative value is rounding
    return kl.cpu().numpy().astype(np.float64)


def target_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, scratch: Scratch | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Only log q(target) and finiteness of (c, V) logits, in float32: two passes (logsumexp, gather).

    What a scan of a whole data set needs per position; `reduce_logits` adds rank, entropy and top-k.
    Returns (c,) float32 log q(target) and (c,) bool finite (no NaN and no +inf in the row), on the device.
    """
    scratch = scratch if scratch is not None else Scratch()
    rows, vocab = logits.shape
    if logits.dtype == torch.float32:
        x = logits
    else:  # upcast exactly as HF's loss does, into a reused buffer
        x = scratch.take("upcast", rows, vocab, torch.float32, logits.device).copy_(logits)
    lse = torch.logsumexp(x, -1)  # (c,) NaN if a NaN is present, +inf if a +inf is
    logprob = x.gather(-1, targets[:, None])[:, 0] - lse  # (c,)
    finite = ~(torch.isnan(lse) | torch.isposinf(lse))
    return logprob, finite
