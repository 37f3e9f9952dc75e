"""The teacher-forced `Trace`: one forward pass, then per-position statistics of the next-token loss.

Position t reads tokens 0..t and predicts token t+1, so a sample of N tokens has T = N-1 positions.
The cross-entropy at t is -log q(target) (the one-hot target p picks out q(target)); the sample's
loss is the mean over supervised positions, exactly as Hugging Face's `ForCausalLMLoss` computes it:
logits upcast to float32, labels shifted left by one, `cross_entropy(ignore_index=-100)` averaged.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tokstep.engine.errors import TokstepError
from tokstep.engine.head import (  # noqa: F401 - CHUNK_ELEMENTS and friends re-exported
    CHUNK_ELEMENTS,
    DEFAULT_CHUNK_ELEMENTS,
    HEAD_CHUNK_ELEMENTS,
    VERIFIED_HEADS,
    chunk_rows,
    head_logits,
    head_matches_model,
    hidden_states_and_last_logits,
    input_device,
)
from tokstep.engine.loading import LoadedModel
from tokstep.engine.reduce import PositionStats, Scratch, reduce_logits
from tokstep.engine.results import Trace, parity_tolerance  # noqa: F401 - re-exported
from tokstep.engine.sample import IGNORE_INDEX, Sample

FLASH_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")

HIDDEN_PATH = "hidden states + chunked head"  # no [T, vocab] tensor exists at all
LOGITS_PATH = "full logits + chunked reductions"  # fallback: the model's logits, reduced chunk by chunk
INCREMENTAL_PATH = "incremental (KV cache)"


def shifted_targets(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """The next-token shift: position t is scored against labels[t+1] (input_ids[t+1] if masked)."""
    next_labels = sample.labels[1:]  # (T,)
    supervised = next_labels != IGNORE_INDEX  # (T,)
    targets = np.where(supervised, next_labels, sample.input_ids[1:]).astype(np.int64)  # (T,)
    return targets, supervised


def check_sample_fits(loaded: LoadedModel, sample: Sample) -> None:
    """Errors that must stop us before the forward pass, each one line."""
    n, info = len(sample), loaded.info
    if n == 0:
        raise TokstepError("the sample is empty: nothing to predict")
    if n == 1:
        raise TokstepError("the sample has a single token: nothing to predict (need at least 2)")
    if info.max_positions is not None and n > info.max_positions:
        raise TokstepError(
            f"the sample has {n} tokens but the model accepts at most {info.max_positions} positions "
            f"(pass --truncate to keep the first {info.max_positions})"
        )
    bad = np.flatnonzero((sample.input_ids < 0) | (sample.input_ids >= info.vocab_size))
    if bad.size:
        i = int(bad[0])
        raise TokstepError(
            f"input_ids[{i}] = {int(sample.input_ids[i])} is outside the model's vocabulary (0..{info.vocab_size - 1})"
        )
    labels = sample.labels
    bad = np.flatnonzero((labels != IGNORE_INDEX) & ((labels < 0) | (labels >= info.vocab_size)))
    if bad.size:
        i = int(bad[0])
        raise TokstepError(
            f"labels[{i}] = {int(labels[i])} is neither -100 nor inside the model's vocabulary (0..{info.vocab_size - 1})"
        )


@dataclass(frozen=True, eq=False)
class Forward:
    """How a trainer called the forward on this row, beyond `input_ids` (a packed or padded batch row).

    Without one, a trace calls `model(input_ids, attention_mask only if it has zeros, use_cache=False)`.
    With one, exactly these are passed: an all-ones `attention_mask` too (it changes what transformers does
    with packed `position_ids`), and `use_cache` as given (a KV cache also turns packed-sequence detection off).
    """

    position_ids: np.ndarray | None = None  # (N,)
    attention_mask: np.ndarray | None = None  # (N,), passed even when all ones
    use_cache: bool = False
    flash_kwargs: tuple[tuple[str, Any], ...] = ()  # cu_seq_lens_q/k, max_length_q/k (flash-attention varlen)


def _model_inputs(loaded: LoadedModel, sample: Sample, forward: Forward | None = None) -> dict[str, Any]:
    device = input_device(loaded.model)
    inputs: dict[str, Any] = {"input_ids": torch.tensor(sample.input_ids, device=device)[None]}  # (1, N)
    mask = sample.attention_mask if forward is None else forward.attention_mask
    if mask is not None:
        inputs["attention_mask"] = torch.tensor(mask, device=device)[None]  # (1, N)
    if forward is not None:
        if forward.position_ids is not None:
            inputs["position_ids"] = torch.tensor(forward.position_ids, device=device)[None]  # (1, N)
        for key, value in forward.flash_kwargs:
            inputs[key] = (
                torch.tensor(value, dtype=torch.int32, device=device) if key.startswith("cu_") else value
            )
    return inputs


def _use_cache(forward: Forward | None) -> bool:
    return forward.use_cache if forward is not None else False


@torch.inference_mode()
def trace_sample(
    loaded: LoadedModel,
    sample: Sample,
    *,
    top_k: int = 10,
    force_logits_path: bool = False,
    forward: Forward | None = None,
) -> Trace:
    """Teacher-forced trace of `sample`: ONE forward pass (use_cache=False unless `forward` says otherwise),
    reductions in float32."""
    check_sample_fits(loaded, sample)
    model, vocab = loaded.model, loaded.info.vocab_size
    top_k = max(1, min(top_k, vocab))
    targets_np, supervised = shifted_targets(sample)
    inputs = _model_inputs(loaded, sample, forward)
    use_cache = _use_cache(forward)
    n_positions = len(sample) - 1

    stats: list[PositionStats] = []
    scratch = Scratch.for_current_thread()  # work buffers shared by every chunk, kept between traces
    verified = VERIFIED_HEADS.get(model, False)
    kept = (
        None
        if force_logits_path
        else hidden_states_and_last_logits(model, inputs, stop_at_hidden=verified, use_cache=use_cache)
    )
    if kept is not None:
        hidden = kept[0][0, :n_positions]  # (T, d): the last token predicts nothing
        targets = torch.from_numpy(targets_np)
        head_device = model.get_output_embeddings().weight.device
        head_rows = chunk_rows(vocab, head_device, HEAD_CHUNK_ELEMENTS)
        rows = chunk_rows(vocab, head_device)
        for start in range(0, n_positions, head_rows):
            logits = head_logits(model, hidden[start : start + head_rows], scratch)  # (c, V) model's dtype
            chunk_targets = targets[start : start + head_rows].to(logits.device)
            for sub in range(0, len(logits), rows):
                stats.append(
                    reduce_logits(logits[sub : sub + rows], chunk_targets[sub : sub + rows], top_k, scratch)
                )
        if not verified:  # position T-1: our head's logits vs the model's own
            if head_matches_model(logits[-1], kept[1][0]):
                VERIFIED_HEADS[model] = True
            else:  # an unknown post-head transform: fall back
                del hidden, logits
                stats, kept = [], None
    if kept is not None:
        path = HIDDEN_PATH
    else:
        logits_all = model(**inputs, use_cache=use_cache).logits[0]  # (N, V): logits[t] predicts token t+1
        targets = torch.as_tensor(targets_np, device=logits_all.device)
        rows = chunk_rows(vocab, logits_all.device)
        for start in range(0, n_positions, rows):
            chunk = logits_all[start : min(start + rows, n_positions)]
            stats.append(reduce_logits(chunk, targets[start : start + rows], top_k, scratch))
        path = LOGITS_PATH
    return _assemble(sample, targets_np, supervised, PositionStats.concat(stats), path, vocab)


@torch.inference_mode()
def trace_incremental(loaded: LoadedModel, sample: Sample, *, top_k: int = 10) -> Trace:
    """The same Trace, produced one position at a time through the KV cache, as generation does."""
    check_sample_fits(loaded, sample)
    if sample.attention_mask is not None:
        raise TokstepError("--incremental does not support samples with an attention mask (padding)")
    model, vocab = loaded.model, loaded.info.vocab_size
    top_k = max(1, min(top_k, vocab))
    targets_np, supervised = shifted_targets(sample)
    device = input_device(model)
    ids = torch.tensor(sample.input_ids, device=device)[None]  # (1, N)
    stats: list[PositionStats] = []
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    past = None
    for t in range(len(sample) - 1):
        out = model(input_ids=ids[:, t : t + 1], use_cache=True, **{cache_arg: past})  # feeds one token
        past = getattr(out, cache_arg)
        logits = out.logits[0]  # (1, V): the prediction for token t+1
        target = torch.as_tensor(targets_np[t : t + 1], device=logits.device)
        stats.append(reduce_logits(logits, target, top_k))
    return _assemble(sample, targets_np, supervised, PositionStats.concat(stats), INCREMENTAL_PATH, vocab)


def _assemble(
    sample: Sample, targets: np.ndarray, supervised: np.ndarray, stats: PositionStats, path: str, vocab: int
) -> Trace:
    ce = -stats.logprob.astype(np.float64)  # (T,)
    counted = np.where(supervised, ce, 0.0)
    return Trace(
        sample=sample,
        target_ids=targets,
        supervised=supervised,
        logprob=stats.logprob,
        rank=stats.rank,
        ties=stats.ties,
        entropy=stats.entropy,
        topk_ids=stats.topk_ids,
        topk_logprobs=stats.topk_logprobs,
        finite=stats.finite,
        running_sum=np.cumsum(counted),  # float64
        running_count=np.cumsum(supervised.astype(np.int64)),
        path=path,
        model_vocab_size=vocab,
    )


@torch.inference_mode()
def reference_loss(loaded: LoadedModel, sample: Sample, forward: Forward | None = None) -> float | None:
    """Hugging Face's own number: `model(input_ids, labels=labels).loss` (None when it is NaN: all masked)."""
    inputs = _model_inputs(loaded, sample, forward)
    labels = torch.tensor(sample.labels, device=inputs["input_ids"].device)[None]
    loss = float(loaded.model(**inputs, labels=labels, use_cache=_use_cache(forward)).loss)
    return loss if math.isfinite(loss) else None


def max_drift(a: Trace, b: Trace) -> float:
    """Largest per-position |log q(target)| difference between two traces of the same sample."""
    both = a.finite & b.finite
    if not both.any():
        return math.nan
    return float(np.max(np.abs(a.logprob[both].astype(np.float64) - b.logprob[both])))
