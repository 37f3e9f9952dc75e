"""Hugging Face's own loss for a sample, the number the trace is checked against, computed frugally.

Three modes (`--reference`):

- `chunked` (default): ONE forward of the model with `logits_to_keep=1` while a hook keeps the final hidden
  states; then HF's own output head (`model.get_output_embeddings()`, plus the model config's final logit
  softcapping, as HF's forward applies it) runs over chunks of positions, and HF's own loss function
  (`model.loss_function`, i.e. `ForCausalLMLoss`) reduces each chunk with `num_items_in_batch` = the number
  of supervised targets, exactly as HF does under gradient accumulation. The chunks' losses add up to
  `model(input_ids, labels=labels).loss`; no `[T, vocab]` tensor exists. Before trusting its head, it checks
  that the head reproduces the logits the model itself returned at the last position.
- `full`: literally `model(input_ids, labels=labels).loss` (builds HF's full `[T, vocab]` logits).
- `off`: not computed.

When `chunked` cannot run (no separable head, or the head check fails), `full` is used only if HF's logits fit
in `FULL_BUDGET_BYTES`; otherwise the reference is skipped and the note says why and how to force it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from tokstep.engine.inputs.sample import IGNORE_INDEX, Sample
from tokstep.engine.model.loading import LoadedModel
from tokstep.engine.model.results import Trace, TraceResult
from tokstep.engine.model.tokens import TokenTexts
from tokstep.engine.model.trace import (
    Forward,
    _head_logits,
    _head_matches_model,
    _model_inputs,
    _use_cache,
    hidden_states_of,
    reference_loss,
    serialized,
)
from tokstep.engine.policies import DEFAULT_REFERENCE, Reference

FULL_BUDGET_BYTES = 512 << 20  # HF's float32 [T, vocab] logits allowed when `chunked` cannot run
# Logits per chunk ([rows, vocab] float32; cross_entropy adds about two copies). Every chunk re-reads the whole
# [vocab, d] head weight, so chunks are tall: 64 MiB on the CPU (110 rows of a 151k vocabulary), 256 MiB on GPUs.
CHUNK_ELEMENTS = {"cpu": 1 << 24, "cuda": 1 << 26}
DEFAULT_CHUNK_ELEMENTS = 1 << 24
FULL_NOTE = "HF model(input_ids, labels=labels).loss"
CHUNKED_NOTE = "HF loss_function over HF's head, in chunks"


def compute_reference(
    loaded: LoadedModel,
    sample: Sample,
    mode: Reference = DEFAULT_REFERENCE,
    *,
    forward: Forward | None = None,
    chunk_elements: int | None = None,
) -> tuple[float | None, bool, str]:
    """HF's loss for `sample` (called as `forward` says, for a trainer's packed or padded row): (loss or None
    when undefined, computed?, note: how, or why not)."""
    if mode == "off":
        return None, False, "HF reference off (--reference chunked or full to compute it)"
    if mode == "full":
        return reference_loss(loaded, sample, forward), True, FULL_NOTE
    loss = chunked_reference_loss(loaded, sample, forward=forward, chunk_elements=chunk_elements)
    if loss is not _UNAVAILABLE:
        return loss, True, CHUNKED_NOTE  # type: ignore[return-value]
    need = len(sample) * loaded.info.vocab_size * 4
    if need <= FULL_BUDGET_BYTES:
        return reference_loss(loaded, sample, forward), True, FULL_NOTE
    return (
        None,
        False,
        f"HF reference skipped: this model's head cannot be applied in chunks and HF's full logits would take "
        f"{need / 2**30:.1f} GiB (budget {FULL_BUDGET_BYTES >> 20} MiB); --reference full forces it",
    )


def traced_result(
    loaded: LoadedModel, sample: Sample, trace: Trace, *, with_reference: bool, forward: Forward | None = None
) -> TraceResult:
    """A trace as a result, HF's loss beside it computed at once in chunks (no [T, vocab]) or not at all."""
    reference, computed, note = compute_reference(
        loaded, sample, DEFAULT_REFERENCE if with_reference else "off", forward=forward
    )
    return replace(
        result_of(loaded, sample, trace),
        reference=reference,
        reference_computed=computed,
        reference_note=note,
    )


def result_of(
    loaded: LoadedModel,
    sample: Sample,
    trace: Trace,
    *,
    incremental_drift: float | None = None,
    reference_pending: bool = False,
) -> TraceResult:
    """The one place a trace becomes a TraceResult; HF's reference is not filled in (`traced_result`,
    engine.model.session.add_reference do that)."""
    return TraceResult(
        info=loaded.info,
        sample=sample,
        trace=trace,
        texts=TokenTexts(loaded.tokenizer, loaded.info.vocab_size),
        reference=None,
        reference_computed=False,
        incremental_drift=incremental_drift,
        reference_pending=reference_pending,
    )


_UNAVAILABLE: Any = object()


@serialized
@torch.inference_mode()
def chunked_reference_loss(
    loaded: LoadedModel, sample: Sample, *, forward: Forward | None = None, chunk_elements: int | None = None
) -> float | None | Any:
    """HF's loss from HF's head and HF's loss function over chunks; `_UNAVAILABLE` if the model does not allow it."""
    model = loaded.model
    base = getattr(model, "base_model", None)
    head = model.get_output_embeddings()
    loss_function = getattr(model, "loss_function", None)
    if base is None or base is model or head is None or loss_function is None:
        return _UNAVAILABLE
    device = head.weight.device
    inputs = _model_inputs(loaded, sample, forward)  # input_ids (1, N), masks / positions as the trainer had
    with hidden_states_of(base) as kept:
        try:
            out = model(
                **inputs, use_cache=_use_cache(forward), logits_to_keep=1
            )  # HF's logits at the last position only
        except TypeError:
            return _UNAVAILABLE
    if len(kept) != 1 or out.logits.shape[1] != 1:
        return _UNAVAILABLE
    hidden = kept[0][0]  # (N, d)
    model_last = out.logits[0, -1]  # (V,)
    kept.clear()
    del out

    ours_last = _head_logits(model, hidden[-1:])[0]  # (V,): HF's head and post-head transform, as its forward
    if not _head_matches_model(ours_last, model_last):
        return _UNAVAILABLE
    labels = torch.tensor(sample.labels, device=device)  # (N,)
    shift_labels = torch.cat(
        [labels[1:], labels.new_full((1,), IGNORE_INDEX)]
    )  # (N,): as ForCausalLMLoss pads
    n_items = int((shift_labels != IGNORE_INDEX).sum())
    if n_items == 0:
        return None  # HF returns NaN: the mean of nothing
    vocab = int(model_last.shape[-1])
    if chunk_elements is None:
        chunk_elements = CHUNK_ELEMENTS.get(device.type, DEFAULT_CHUNK_ELEMENTS)
    rows = max(1, chunk_elements // max(vocab, 1))
    total = 0.0
    for start in range(0, len(sample) - 1, rows):  # the last position predicts nothing (label -100)
        logits = _head_logits(model, hidden[start : start + rows])[None]  # (1, c, V)
        part = loss_function(
            logits=logits,
            labels=None,
            vocab_size=vocab,
            num_items_in_batch=n_items,
            shift_labels=shift_labels[start : start + rows][None],
        )
        total += float(part)
        del logits, part
    return total if math.isfinite(total) else None


__all__ = ["chunked_reference_loss", "compute_reference", "result_of", "traced_result"]
