"""The types a finished trace is made of. numpy only: a screen can hold them without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokstep.engine.inputs.sample import Sample
from tokstep.engine.model.tokens import TokenTexts


@dataclass(frozen=True)
class ModelInfo:
    """What the UI says about the loaded model."""

    name: str
    architecture: str
    dtype: str
    device: str
    vocab_size: int  # rows of the output head (may exceed the tokenizer)
    tokenizer_size: int
    max_positions: int | None
    num_parameters: int


@dataclass(frozen=True, eq=False)
class Trace:
    """Everything the stepper shows, as O(T*k) arrays. Strings are decoded on demand elsewhere."""

    sample: Sample
    target_ids: np.ndarray  # (T,) int64: labels[t+1] where supervised, else input_ids[t+1]
    supervised: np.ndarray  # (T,) bool: labels[t+1] != -100
    logprob: np.ndarray  # (T,) float32: log q(target)
    rank: np.ndarray  # (T,) int64: 1 + number of tokens with a strictly larger logit
    ties: np.ndarray  # (T,) int64: other tokens whose logit equals the target's exactly
    entropy: np.ndarray  # (T,) float32, nats
    topk_ids: np.ndarray  # (T, k) int64, by logit desc then id asc
    topk_logprobs: np.ndarray  # (T, k) float32
    finite: np.ndarray  # (T,) bool: no NaN / +inf among the logits at t
    running_sum: np.ndarray  # (T,) float64: sum of CE over supervised positions <= t
    running_count: np.ndarray  # (T,) int64
    path: str  # which computation produced it (HIDDEN_PATH, LOGITS_PATH, INCREMENTAL_PATH)
    model_vocab_size: int

    def __post_init__(self) -> None:
        for value in vars(self).values():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)

    def __len__(self) -> int:
        return len(self.target_ids)

    @property
    def top_k(self) -> int:
        return self.topk_ids.shape[1]

    @property
    def ce(self) -> np.ndarray:
        """(T,) cross-entropy -log q(target) at every position, counted or not."""
        return -self.logprob.astype(np.float64)

    @property
    def prob(self) -> np.ndarray:
        return np.exp(self.logprob.astype(np.float64))

    def running_mean(self, t: int) -> float | None:
        """Mean CE over supervised positions <= t; None while nothing is counted (never NaN)."""
        count = int(self.running_count[t])
        return float(self.running_sum[t] / count) if count else None

    @property
    def loss(self) -> float | None:
        """The sample's loss (= HF's `model(input_ids, labels=labels).loss`), None if nothing is supervised."""
        return self.running_mean(len(self) - 1) if len(self) else None

    @property
    def num_supervised(self) -> int:
        return int(self.running_count[-1]) if len(self) else 0

    @property
    def nonfinite_positions(self) -> np.ndarray:
        return np.flatnonzero(~self.finite)

    def label_differs(self, t: int) -> bool:
        """Position t is counted but its label is not the next input token (`labels[t+1] != input_ids[t+1]`:
        pre-shifted or off-by-one labels): the loss scores a token other than the one the text continues with."""
        return bool(self.supervised[t]) and int(self.sample.labels[t + 1]) != int(
            self.sample.input_ids[t + 1]
        )


@dataclass(frozen=True, eq=False)
class TraceResult:
    """A finished trace plus what the screens need around it."""

    info: ModelInfo
    sample: Sample
    trace: Trace
    texts: TokenTexts
    reference: float | None  # HF's loss for the sample; None if not computed or undefined
    reference_computed: bool
    incremental_drift: float | None  # max |Δ log q(target)| single pass vs KV-cache, when asked
    reference_note: str = ""  # how the reference was computed, or why it was not (and how to force it)
    reference_pending: bool = False  # the TUI computes it in a worker after the stepper is shown

    @property
    def nonfinite_error(self) -> str | None:
        bad = self.trace.nonfinite_positions
        if not bad.size:
            return None
        if self.info.dtype in ("float32", "float64"):
            hint = f"the model is already {self.info.dtype}: its weights or config may hold NaN/inf"
        else:
            hint = f"dtype {self.info.dtype} may overflow: try --dtype float32"
        return (
            f"the model produced NaN/inf logits at {bad.size} of {len(self.trace)} positions "
            f"(first at t={int(bad[0])}); {hint}"
        )


def parity_tolerance(dtype: str) -> float:
    """Relative |ours - HF| we promise: float32 reductions of the same logits agree to float32 rounding;
    in 16-bit dtypes the chunked head's matmuls may round differently from HF's single one."""
    return 1e-6 if dtype in ("float32", "float64") else 1e-3


@dataclass(frozen=True)
class Parity:
    """The one verdict on ours vs HF's loss that every screen and file shows."""

    ok: bool | None  # None: nothing was compared (reference off, skipped or still computing)
    diff: float | None  # |ours - HF|
    badge: str  # short text: "✓ match |Δ|=2.2e-07", "✗ MISMATCH |Δ|=1.3e-02", "computing …", ...


def parity(result: TraceResult) -> Parity:
    """Compare our mean CE with HF's reference within `parity_tolerance(dtype)` (relative)."""
    ours, theirs = result.trace.loss, result.reference
    if result.reference_pending:
        return Parity(None, None, "computing HF's reference …")
    if not result.reference_computed:  # short enough for the loss panel; the note says the rest
        note = result.reference_note
        if "skipped" in note:
            return Parity(None, None, "skipped: --reference full forces it")
        if "failed" in note:
            return Parity(None, None, "failed (see the note)")
        return Parity(None, None, "off (--reference to compute it)")
    if ours is None and theirs is None:
        return Parity(True, None, "✓ both undefined (nothing supervised)")
    if ours is None or theirs is None:
        return Parity(False, None, "✗ MISMATCH (one side undefined)")
    diff = abs(ours - theirs)
    ok = diff <= parity_tolerance(result.info.dtype) * max(abs(theirs), 1e-12)
    return Parity(
        ok, diff, f"✓ match |Δ|={diff:.0e}" if ok else f"✗ MISMATCH |Δ|={diff:.0e}"
    )  # fits the panel
