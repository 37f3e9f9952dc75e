"""Score many samples at once: a batched forward with right padding, then the engine's chunked output
head over the real (non-padding) positions only, reduced to log q(target). No [B, T, vocab] tensor exists.

Rows never attend to each other: each is its own batch row, padding sits after its last token (so causal
attention never reaches it) and is masked out by the attention mask. Each row's log q(target) is what
`trace_sample` computes for that row alone (tested to 1e-6 relative on the loss in float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tokstep.engine.inputs.sample import Sample
from tokstep.engine.model.loading import LoadedModel
from tokstep.engine.model.reduce import Scratch, target_logprobs
from tokstep.engine.model.trace import (  # the engine's one chunked head, shared with trace_sample
    _VERIFIED_HEADS,
    HEAD_CHUNK_ELEMENTS,
    _chunk_rows,
    _head_logits,
    _head_matches_model,
    _input_device,
    batch_hidden_states_and_last_logits,
    shifted_targets,
    trace_sample,
)


@dataclass(frozen=True, eq=False)
class RowScores:
    """Per-position log q(target) of one sample (T = N-1 positions)."""

    logprob: np.ndarray  # (T,) float32
    finite: np.ndarray  # (T,) bool: no NaN / +inf among the logits at t
    supervised: np.ndarray  # (T,) bool: labels[t+1] != -100
    targets: np.ndarray  # (T,) int64

    @property
    def loss(self) -> float | None:
        """Mean CE over supervised positions, as HF's loss (None when nothing is supervised)."""
        if not self.supervised.any():
            return None
        return float(-self.logprob[self.supervised].astype(np.float64).mean())


def _pad_id(loaded: LoadedModel) -> int:
    tokenizer = loaded.tokenizer
    for token in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(token, int) and 0 <= token < loaded.info.vocab_size:
            return token
    return 0


def batch_inputs(loaded: LoadedModel, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask (B, L), right-padded; a row's own attention mask is kept."""
    length = max(len(s) for s in samples)
    ids = np.full((len(samples), length), _pad_id(loaded), dtype=np.int64)  # (B, L)
    mask = np.zeros((len(samples), length), dtype=np.int64)  # (B, L)
    for b, sample in enumerate(samples):
        ids[b, : len(sample)] = sample.input_ids
        mask[b, : len(sample)] = 1 if sample.attention_mask is None else sample.attention_mask
    device = _input_device(loaded.model)
    return {
        "input_ids": torch.from_numpy(ids).to(device),
        "attention_mask": torch.from_numpy(mask).to(device),
    }


@torch.inference_mode()
def score_batch(loaded: LoadedModel, samples: Sequence[Sample]) -> list[RowScores]:
    """One forward pass for `samples` (each already checked with `check_sample_fits`)."""
    model, vocab = loaded.model, loaded.info.vocab_size
    shifted = [shifted_targets(s) for s in samples]
    verified = _VERIFIED_HEADS.get(model, False)
    inputs = batch_inputs(loaded, samples)
    kept = batch_hidden_states_and_last_logits(model, inputs, stop_at_hidden=verified)
    if kept is not None and not verified:
        longest = int(np.argmax([len(s) for s in samples]))  # its position L-2 is a real token
        hidden_last = kept[0][longest, -2:-1]  # (1, d)
        if _head_matches_model(_head_logits(model, hidden_last)[0], kept[1][longest]):
            _VERIFIED_HEADS[model] = True
        else:
            kept = None
    if kept is None:  # the model's own logits, one row at a time (what trace_sample falls back to)
        return [_score_alone(loaded, s, t) for s, t in zip(samples, shifted, strict=True)]
    hidden = kept[0]  # (B, L, d)
    positions = [len(s) - 1 for s in samples]
    valid = torch.zeros(hidden.shape[:2], dtype=torch.bool, device=hidden.device)  # (B, L)
    for b, n in enumerate(positions):
        valid[b, :n] = True
    flat = hidden[valid]  # (P, d): the real positions of every row, row after row
    del hidden, kept
    targets = torch.from_numpy(np.concatenate([t for t, _ in shifted])).to(flat.device)  # (P,)
    head_device = model.get_output_embeddings().weight.device
    rows = _chunk_rows(vocab, head_device, HEAD_CHUNK_ELEMENTS)
    scratch = Scratch.for_current_thread()
    logprobs, finites = [], []
    for start in range(0, len(flat), rows):
        logits = _head_logits(model, flat[start : start + rows], scratch)  # (c, V)
        logprob, finite = target_logprobs(logits, targets[start : start + rows].to(logits.device), scratch)
        logprobs.append(logprob)
        finites.append(finite)
    logprob_all = torch.cat(logprobs).float().cpu().numpy()  # (P,)
    finite_all = torch.cat(finites).cpu().numpy()  # (P,)
    out, offset = [], 0
    for n, (targets_np, supervised) in zip(positions, shifted, strict=True):
        out.append(
            RowScores(
                logprob_all[offset : offset + n], finite_all[offset : offset + n], supervised, targets_np
            )
        )
        offset += n
    return out


def _score_alone(loaded: LoadedModel, sample: Sample, shifted: tuple[np.ndarray, np.ndarray]) -> RowScores:
    trace = trace_sample(loaded, sample, top_k=1)
    return RowScores(trace.logprob, trace.finite, shifted[1], shifted[0])


def length_buckets(lengths: Sequence[int], batch_tokens: int, max_rows: int = 256) -> list[list[int]]:
    """Group indices into batches of similar length: sorted by length, each batch's rows x longest row
    stays within `batch_tokens` (a row longer than that gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[i]  # sorted ascending: the newest row is the longest
        if current and ((len(current) + 1) * longest > batch_tokens or len(current) >= max_rows):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
