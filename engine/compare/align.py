"""Two tokenizations of the same text, aligned by byte offsets, and each model's loss spread over bytes.

Token ids cannot be compared across tokenizers; bytes can. Every token of a sample that came from text
gets its byte span in that text (from the fast tokenizer's offset mapping); special tokens (BOS, EOS) have
none. A model's loss per byte spreads each supervised target's CE evenly over the target's bytes, so two
models with different tokenizers compare in bits per byte on the same bytes.
"""

from __future__ import annotations

import math

import numpy as np

from tokstep.engine.compare.results import TokenAlignment
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.sample import Sample
from tokstep.engine.inputs.spec import SampleSpec
from tokstep.engine.model.results import Trace


def sample_text_parts(spec: SampleSpec) -> list[str]:
    """The texts a sample was tokenized from, in order (their concatenation is the compared text)."""
    if spec.text is not None and spec.prompt is None and spec.answer is None:
        return [spec.text]
    if spec.prompt is not None and spec.answer is not None:
        return [spec.prompt, spec.answer]
    raise TokstepError(
        "comparing two tokenizers needs a text or prompt + answer sample (a chat or --ids sample has no "
        "common text to align)"
    )


def _find(haystack: np.ndarray, needle: list[int], start: int) -> tuple[int, int] | None:
    """Where `needle` first occurs in haystack[start:] (or a prefix of it, cut by the end): (at, length)."""
    n, m = len(haystack), len(needle)
    if m == 0:
        return start, 0
    for at in range(start, n):
        length = min(m, n - at)
        if haystack[at : at + length].tolist() == needle[:length]:
            return at, length
    return None


def byte_spans(tokenizer: object, spec: SampleSpec, sample: Sample) -> tuple[str, np.ndarray]:
    """The compared text, and (N, 2) int64 byte spans [start, end) of the sample's tokens in it
    ((-1, -1) for tokens with no text: BOS, EOS, template markup)."""
    parts = sample_text_parts(spec)
    text = "".join(parts)
    char_to_byte = np.concatenate([[0], np.cumsum([len(c.encode("utf-8")) for c in text])]).astype(np.int64)
    spans = np.full((len(sample), 2), -1, dtype=np.int64)
    cursor, base = 0, 0
    for part in parts:
        try:
            encoded = tokenizer(part, add_special_tokens=False, return_offsets_mapping=True)  # type: ignore[operator]
        except NotImplementedError:
            raise TokstepError("comparing tokenizers needs a fast tokenizer (offset mappings)") from None
        ids = list(encoded["input_ids"])
        found = _find(sample.input_ids, ids, cursor)
        if found is None:
            raise TokstepError("cannot place the text's tokens in the sample: the byte alignment failed")
        at, length = found
        for j, (start, end) in enumerate(encoded["offset_mapping"][:length]):
            if end > start:
                spans[at + j] = (char_to_byte[base + start], char_to_byte[base + end])
        cursor, base = at + length, base + len(part)
    return text, spans


def byte_losses(trace: Trace, spans: np.ndarray, n_bytes: int) -> np.ndarray:
    """(n_bytes,) float64 loss per byte in nats: each supervised target's CE spread evenly over its bytes;
    NaN for bytes no supervised target covers (and where the model's logits were not finite)."""
    loss = np.zeros(n_bytes, dtype=np.float64)
    scored = np.zeros(n_bytes, dtype=bool)
    ce = trace.ce
    for t in np.flatnonzero(trace.supervised):
        start, end = spans[t + 1]  # position t predicts token t+1
        if end > start:
            value = ce[t] if trace.finite[t] else math.nan
            loss[start:end] += value / (end - start)
            scored[start:end] = True
    loss[~scored] = math.nan
    return loss


def align(
    text: str,
    spans_a: np.ndarray,
    spans_b: np.ndarray,
    *,
    name_a: str,
    name_b: str,
    trace_a: Trace | None = None,
    trace_b: Trace | None = None,
) -> TokenAlignment:
    """Both tokenizations of `text` side by side (and, given traces, both models' loss per byte)."""
    n_bytes = len(text.encode("utf-8"))
    a, b = spans_a[spans_a[:, 1] > spans_a[:, 0]], spans_b[spans_b[:, 1] > spans_b[:, 0]]
    return TokenAlignment(
        text=text,
        n_bytes=n_bytes,
        starts_a=a[:, 0].copy(),
        ends_a=a[:, 1].copy(),
        starts_b=b[:, 0].copy(),
        ends_b=b[:, 1].copy(),
        name_a=name_a,
        name_b=name_b,
        byte_loss_a=None if trace_a is None else byte_losses(trace_a, spans_a, n_bytes),
        byte_loss_b=None if trace_b is None else byte_losses(trace_b, spans_b, n_bytes),
    )
