"""What comparing produces: two models per position, two tokenizations of one text, a logit lens.

numpy only, like `results.py`: screens hold these without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from tokstep.engine.model.results import TraceResult


@dataclass(frozen=True)
class CompareSummary:
    """The statistics llama-perplexity --kl-divergence prints, over one sample's scored positions."""

    scope: str  # "counted" (supervised positions) or "all" (nothing is supervised)
    positions: int  # positions averaged (finite in both models)
    nonfinite: int  # positions left out because A's or B's logits are NaN/inf there
    mean_kl: float | None  # nats; None when no position could be averaged
    median_kl: float | None
    p99_kl: float | None
    p999_kl: float | None
    max_kl: float | None
    top1_agreement: float | None  # fraction of positions whose top-1 tokens agree
    loss_a: float | None  # mean CE of A over the averaged positions
    loss_b: float | None
    delta_loss: float | None  # loss_b - loss_a

    def as_dict(self) -> dict[str, float | int | str | None]:
        return dict(vars(self))


def _stat(values: np.ndarray, fn) -> float | None:  # type: ignore[no-untyped-def]
    return float(fn(values)) if values.size else None


@dataclass(frozen=True, eq=False)
class CompareResult:
    """Model A and model B on the same sample (same tokens), lock-step: per position KL(P_A || P_B)."""

    a: TraceResult
    b: TraceResult
    kl: np.ndarray  # (T,) float64 nats, NaN where either model's logits are not finite
    label_a: str  # e.g. "A float32 cpu"
    label_b: str

    def __post_init__(self) -> None:
        self.kl.setflags(write=False)

    @cached_property
    def summary_cached(self) -> CompareSummary:
        return self.summary()

    @cached_property
    def by_kl_marks(self) -> np.ndarray:
        return self.by_kl()

    def __len__(self) -> int:
        return len(self.kl)

    @property
    def both_finite(self) -> np.ndarray:
        """(T,) bool: both models' logits finite at t (the positions that are averaged)."""
        return self.a.trace.finite & self.b.trace.finite

    @property
    def delta_ce(self) -> np.ndarray:
        """(T,) float64 CE_B - CE_A (NaN where either is not finite)."""
        return np.where(self.both_finite, self.b.trace.ce - self.a.trace.ce, np.nan)

    @property
    def top1_agree(self) -> np.ndarray:
        """(T,) bool: the two models' most likely next tokens are the same."""
        return self.a.trace.topk_ids[:, 0] == self.b.trace.topk_ids[:, 0]

    def scored(self) -> tuple[str, np.ndarray]:
        """Which positions the summary covers: the counted ones (or all when nothing is counted)."""
        supervised = self.a.trace.supervised
        return ("counted", supervised) if supervised.any() else ("all", np.ones_like(supervised))

    def summary(self) -> CompareSummary:
        scope, scored = self.scored()
        use = scored & self.both_finite
        kl = self.kl[use]
        ce_a, ce_b = self.a.trace.ce[use], self.b.trace.ce[use]
        loss_a, loss_b = _stat(ce_a, np.mean), _stat(ce_b, np.mean)
        return CompareSummary(
            scope=scope,
            positions=int(use.sum()),
            nonfinite=int((scored & ~self.both_finite).sum()),
            mean_kl=_stat(kl, np.mean),
            median_kl=_stat(kl, np.median),
            p99_kl=_stat(kl, lambda v: np.percentile(v, 99)),
            p999_kl=_stat(kl, lambda v: np.percentile(v, 99.9)),
            max_kl=_stat(kl, np.max),
            top1_agreement=_stat(self.top1_agree[use], np.mean),
            loss_a=loss_a,
            loss_b=loss_b,
            delta_loss=None if loss_a is None or loss_b is None else loss_b - loss_a,
        )

    def by_kl(self) -> np.ndarray:
        """(T,) bool: positions worth jumping to, i.e. KL above the scored positions' 90th percentile
        (at least 1e-6 nats), plus every position whose logits are not finite in either model."""
        kl = np.where(np.isfinite(self.kl), self.kl, 0.0)
        summary_kl = kl[self.scored()[1] & self.both_finite]
        cut = max(float(np.percentile(summary_kl, 90)) if summary_kl.size else 0.0, 1e-6)
        return (kl > cut) | ~self.both_finite


@dataclass(frozen=True, eq=False)
class TokenAlignment:
    """Two tokenizations of the same text, by byte offsets; with losses, bits per byte for each model."""

    text: str
    n_bytes: int
    starts_a: np.ndarray  # (n_a,) int64 byte offset where each of A's text tokens starts
    ends_a: np.ndarray  # (n_a,)
    starts_b: np.ndarray  # (n_b,)
    ends_b: np.ndarray  # (n_b,)
    name_a: str
    name_b: str
    # per byte loss (nats), NaN where the byte is not scored (not in a supervised target); None without models
    byte_loss_a: np.ndarray | None = None  # (n_bytes,) float64
    byte_loss_b: np.ndarray | None = None

    @property
    def boundaries_a(self) -> np.ndarray:
        return np.unique(self.starts_a)

    @property
    def boundaries_b(self) -> np.ndarray:
        return np.unique(self.starts_b)

    @property
    def only_a(self) -> np.ndarray:
        """Byte offsets where A starts a token and B does not."""
        return np.setdiff1d(self.boundaries_a, self.boundaries_b)

    @property
    def only_b(self) -> np.ndarray:
        return np.setdiff1d(self.boundaries_b, self.boundaries_a)

    @property
    def shared(self) -> int:
        return int(np.intersect1d(self.boundaries_a, self.boundaries_b).size)

    def bits_per_byte(self) -> tuple[float | None, float | None, int]:
        """(bpb A, bpb B, bytes) over the bytes both models score: a token's CE spread evenly over its bytes."""
        if self.byte_loss_a is None or self.byte_loss_b is None:
            return None, None, 0
        both = np.isfinite(self.byte_loss_a) & np.isfinite(self.byte_loss_b)
        n = int(both.sum())
        if not n:
            return None, None, 0
        ln2 = math.log(2)
        return (
            float(self.byte_loss_a[both].sum() / ln2 / n),
            float(self.byte_loss_b[both].sum() / ln2 / n),
            n,
        )


@dataclass(frozen=True, eq=False)
class TokenizerCompareResult:
    """A and B with different tokenizers on the same text (or one model and a second tokenizer only)."""

    a: TraceResult
    b: TraceResult | None  # None: `--compare-tokenizer`, tokenization only
    alignment: TokenAlignment


@dataclass(frozen=True, eq=False)
class LensResult:
    """The logit lens at one position t: each layer's hidden state through the final norm and the head."""

    position: int
    target_id: int
    layers: tuple[str, ...]  # "embeddings", "layer 1", ..., "layer L"
    target_logprob: np.ndarray  # (L+1,) float32
    target_rank: np.ndarray  # (L+1,) int64
    topk_ids: np.ndarray  # (L+1, k) int64
    topk_logprobs: np.ndarray  # (L+1, k) float32
    finite: np.ndarray  # (L+1,) bool
    final_norm: str  # the module used, e.g. "model.norm (LlamaRMSNorm)"

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def target_prob(self) -> np.ndarray:
        return np.exp(self.target_logprob.astype(np.float64))
