"""The teacher-forced `Trace`: one forward pass, then per-position statistics of the next-token loss.

Position t reads tokens 0..t and predicts token t+1, so a sample of N tokens has T = N-1 positions.
The cross-entropy at t is -log q(target) (the one-hot target p picks out q(target)); the sample's
loss is the mean over supervised positions, exactly as Hugging Face's `ForCausalLMLoss` computes it:
logits upcast to float32, labels shifted left by one, `cross_entropy(ignore_index=-100)` averaged.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.sample import IGNORE_INDEX, Sample
from tokstep.engine.model.loading import LoadedModel
from tokstep.engine.model.reduce import PositionStats, Scratch, reduce_logits
from tokstep.engine.model.results import Trace, parity_tolerance  # noqa: F401 - re-exported
from tokstep.engine.policies import clamp_top_k

FLASH_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")

# Logits per reduction chunk: [rows, vocab] never exceeds this. On the CPU 16 MiB keeps the reductions'
# passes cache-friendly; GPUs like bigger launches.
CHUNK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 24}
DEFAULT_CHUNK_ELEMENTS = 1 << 22
# Logits per output-head matmul (hidden path): every matmul re-reads the whole [vocab, d] head weight,
# so fewer, taller ones are faster (at 83 rows the chunked head cost ~35% more than HF's single matmul).
HEAD_CHUNK_ELEMENTS = {"cpu": 1 << 25, "cuda": 1 << 26}
HIDDEN_PATH = "hidden states + chunked head"  # no [T, vocab] tensor exists at all
LOGITS_PATH = "full logits + chunked reductions"  # fallback: the model's logits, reduced chunk by chunk
INCREMENTAL_PATH = "incremental (KV cache)"
# Models whose chunked head already reproduced their own logits once: later traces skip the model's
# output head entirely (the forward stops once the final hidden states exist).
_VERIFIED_HEADS: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


# One model call at a time: the trace and the HF reference register forward hooks on the model's base, and a
# hook fires in every thread's forward (the TUI traces a new sample while the last one's reference computes).
MODEL_LOCK = threading.RLock()


def serialized(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run `function` holding MODEL_LOCK (every engine call that runs the model goes through it)."""

    @functools.wraps(function)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with MODEL_LOCK:
            return function(*args, **kwargs)

    return locked


# Models that passed the causality probe (perturbing the last token leaves earlier logits unchanged).
_CAUSAL: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
PROBE_LENGTH = 6


@serialized
@torch.inference_mode()
def check_causal(loaded: LoadedModel) -> None:
    """Refuse a model that is not causal, whatever its class: change the last token of a short probe and the
    logits at every earlier position must stay put (a bidirectional encoder's move at once). Once per model."""
    model = loaded.model
    if _CAUSAL.get(model):
        return
    vocab = max(2, min(loaded.info.vocab_size, loaded.info.tokenizer_size or loaded.info.vocab_size))
    base = [(7 + 13 * i) % vocab for i in range(PROBE_LENGTH)]
    other = [*base[:-1], (base[-1] + 1 + vocab // 2) % vocab]
    device = _input_device(model)
    ids = torch.tensor([base, other], dtype=torch.long, device=device)  # (2, L)
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits.float()
    earlier = logits[:, :-1]  # (2, L-1, V): positions that never read the changed token
    moved = (earlier[0] - earlier[1]).abs().max().item()
    scale = 1.0 + earlier.abs().max().item()
    # Earlier positions of the two rows read identical tokens: a causal model gives them the same logits
    # (bit for bit in practice); a bidirectional one moves them (a random 1-layer BERT by ~1e-3 of its scale).
    full_precision = next(model.parameters()).dtype == torch.float32
    tolerance = 1e-5 if full_precision else 2e-2
    if not (math.isfinite(moved) and math.isfinite(scale)):
        return  # NaN/inf logits: the trace itself reports them (and names the first position)
    if moved > tolerance * scale:
        raise TokstepError(
            f"'{loaded.info.name}' ({loaded.info.architecture}) is not a causal language model: changing the last "
            f"token moved the logits of earlier positions by {moved:.3g} (it attends both ways)"
        )
    _CAUSAL[model] = True


class _HiddenStatesCaptured(Exception):
    """Raised by the hook to stop a verified model's forward before its output head."""


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
    device = _input_device(loaded.model)
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


def _input_device(model: Any) -> torch.device:
    return model.get_input_embeddings().weight.device


def _post_head(model: Any, logits: torch.Tensor) -> torch.Tensor:
    """Transforms some models apply after the output head (Gemma-2's final logit softcapping)."""
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _hidden_states_and_last_logits(
    model: Any, inputs: dict[str, torch.Tensor], *, stop_at_hidden: bool = False, use_cache: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Run the model once, keeping the final hidden states and the model's own logits at the last
    position that predicts something (N-2): the trace checks its chunked head against them for free.

    Returns None when the model cannot do this (no `logits_to_keep`, no separable base model).
    With `stop_at_hidden` the forward stops at the hidden states and no logits come back.
    """
    kept = batch_hidden_states_and_last_logits(
        model, inputs, stop_at_hidden=stop_at_hidden, use_cache=use_cache
    )
    if kept is None:
        return None
    return kept[0][0], None if kept[1] is None else kept[1][0]  # (N, d), (V,)


@contextmanager
def hidden_states_of(base: Any, *, stop: bool = False) -> Iterator[list[torch.Tensor]]:
    """While open, every forward of the model appends its base's final hidden states (B, N, d) to the list
    this yields; with `stop`, the forward ends right there (raises _HiddenStatesCaptured), before the head."""
    captured: list[torch.Tensor] = []

    def keep(_module: Any, _args: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else getattr(output, "last_hidden_state", None)
        if isinstance(hidden, torch.Tensor):
            captured.append(hidden)
            if stop:
                raise _HiddenStatesCaptured

    handle = base.register_forward_hook(keep)
    try:
        yield captured
    finally:
        handle.remove()


def batch_hidden_states_and_last_logits(
    model: Any, inputs: dict[str, torch.Tensor], *, stop_at_hidden: bool = False, use_cache: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """`_hidden_states_and_last_logits` for a batch (B, N): hidden states (B, N, d) and the model's logits
    at position N-2 of every row (B, V) (the batched scan, `engine/scan/batched.py`, uses it directly)."""
    base = getattr(model, "base_model", None)
    if base is None or base is model or model.get_output_embeddings() is None:
        return None
    with hidden_states_of(base, stop=stop_at_hidden) as captured:
        try:
            out = model(**inputs, use_cache=use_cache, logits_to_keep=2)  # rows N-2, N-1 (N >= 2)
        except _HiddenStatesCaptured:
            return captured[0], None  # (B, N, d)
        except TypeError:
            return None
    if len(captured) != 1 or out.logits.shape[1] != 2:
        return None
    return captured[0], out.logits[:, -2]  # (B, N, d), (B, V)


def _head_logits(
    model: Any, hidden: torch.Tensor, scratch: Scratch | None = None, buffer: str = "head"
) -> torch.Tensor:
    """Apply the output head (and any post-head transform) to hidden states (rows, d) -> (rows, V).

    With `scratch`, a plain nn.Linear head writes into a reused buffer (no fresh [rows, V] per chunk).
    """
    head = model.get_output_embeddings()
    hidden = hidden.to(head.weight.device)
    if scratch is None or type(head) is not torch.nn.Linear:
        return _post_head(model, head(hidden))
    weight = head.weight  # (V, d)
    out = scratch.take(buffer, hidden.shape[0], weight.shape[0], weight.dtype, weight.device)
    logits = torch.matmul(hidden.to(weight.dtype), weight.t(), out=out)  # (rows, V)
    if head.bias is not None:
        logits.add_(head.bias)
    return _post_head(model, logits)


def _head_matches_model(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    """Check that our head's logits (V,) reproduce the model's own at the same position (catches unknown
    post-head transforms)."""
    ours = ours.float()
    theirs = theirs.float().to(ours.device)
    finite = torch.isfinite(theirs)
    if not torch.equal(finite, torch.isfinite(ours)):
        return False
    if not finite.any():  # NaN/inf everywhere in both: nothing to compare, the trace will report it
        return True
    ours, theirs = ours[finite], theirs[finite]
    scale = theirs.abs().max().clamp(min=1.0)
    return bool(torch.allclose(ours, theirs, rtol=1e-3, atol=1e-3 * float(scale)))


def _chunk_rows(vocab: int, device: torch.device, elements: dict[str, int] = CHUNK_ELEMENTS) -> int:
    return max(1, elements.get(device.type, DEFAULT_CHUNK_ELEMENTS) // max(vocab, 1))


@dataclass(eq=False)
class PositionLogits:
    """One model's logits for positions 0..T-1 of a sample, produced chunk by chunk (never all at once on
    the hidden path): the final hidden states and the chunked head, or the model's own full logits."""

    loaded: LoadedModel
    path: str
    hidden: torch.Tensor | None  # (T, d) on the hidden path
    logits: torch.Tensor | None  # (T, V) on the fallback path (a view of the model's own logits)
    buffer: str = "head"  # the scratch buffer the head matmul writes into

    @property
    def device(self) -> torch.device:
        if self.hidden is None:
            return self.logits.device  # type: ignore[union-attr]
        return self.loaded.model.get_output_embeddings().weight.device

    def head_rows(self) -> int:
        """Positions per head matmul (hidden path) or per slice (fallback)."""
        elements = HEAD_CHUNK_ELEMENTS if self.hidden is not None else CHUNK_ELEMENTS
        return _chunk_rows(self.loaded.info.vocab_size, self.device, elements)

    def reduce_rows(self) -> int:
        return _chunk_rows(self.loaded.info.vocab_size, self.device)

    def chunks(
        self, targets: np.ndarray, scratch: Scratch, head_rows: int, rows: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(logits (c, V) in the model's dtype, targets (c,)) for consecutive positions: `head_rows` per
        head matmul, cut into pieces of at most `rows`. A piece is valid until the next one is asked for."""
        model, n = self.loaded.model, len(targets)
        device = self.device
        all_targets = torch.from_numpy(targets).to(device)
        for start in range(0, n, head_rows):
            stop = min(start + head_rows, n)
            if self.hidden is not None:
                block = _head_logits(model, self.hidden[start:stop], scratch, self.buffer)  # (c, V)
            else:
                block = self.logits[start:stop]  # type: ignore[index]
            for sub in range(0, stop - start, rows):
                yield (
                    block[sub : sub + rows],
                    all_targets[start + sub : start + min(sub + rows, stop - start)],
                )


@serialized
def position_logits(
    loaded: LoadedModel,
    sample: Sample,
    *,
    force_logits_path: bool = False,
    scratch: Scratch | None = None,
    buffer: str = "head",
    forward: Forward | None = None,
) -> PositionLogits:
    """Run the model once (use_cache=False unless `forward` says otherwise); keep what its logits come from.

    The hidden path needs the engine's head to reproduce the model's own logits: checked once per model on
    the last position (this catches post-head transforms it does not know); later forwards stop as soon as
    the final hidden states exist. Otherwise the model's full logits are kept (the fallback).
    """
    model = loaded.model
    n_positions = len(sample) - 1
    inputs = _model_inputs(loaded, sample, forward)
    use_cache = _use_cache(forward)
    verified = _VERIFIED_HEADS.get(model, False)
    kept = (
        None
        if force_logits_path
        else _hidden_states_and_last_logits(model, inputs, stop_at_hidden=verified, use_cache=use_cache)
    )
    if kept is not None and not verified:  # position T-1: our head's logits vs the model's own
        ours = _head_logits(model, kept[0][n_positions - 1 : n_positions], scratch, buffer)[0]  # (V,)
        if _head_matches_model(ours, kept[1]):
            _VERIFIED_HEADS[model] = True
        else:  # an unknown post-head transform: fall back
            kept = None
    if kept is not None:
        return PositionLogits(loaded, HIDDEN_PATH, hidden=kept[0][:n_positions], logits=None, buffer=buffer)
    logits_all = model(**inputs, use_cache=use_cache).logits[0]  # (N, V): logits[t] predicts token t+1
    return PositionLogits(loaded, LOGITS_PATH, hidden=None, logits=logits_all[:n_positions], buffer=buffer)


@serialized
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
    check_causal(loaded)
    vocab = loaded.info.vocab_size
    top_k = clamp_top_k(top_k, vocab)
    targets, supervised = shifted_targets(sample)
    scratch = Scratch.for_current_thread()  # work buffers shared by every chunk, kept between traces
    source = position_logits(
        loaded, sample, force_logits_path=force_logits_path, scratch=scratch, forward=forward
    )
    stats = [
        reduce_logits(logits, chunk_targets, top_k, scratch)
        for logits, chunk_targets in source.chunks(targets, scratch, source.head_rows(), source.reduce_rows())
    ]
    return assemble_trace(sample, targets, supervised, PositionStats.concat(stats), source.path, vocab)


@serialized
@torch.inference_mode()
def trace_incremental(loaded: LoadedModel, sample: Sample, *, top_k: int = 10) -> Trace:
    """The same Trace, produced one position at a time through the KV cache, as generation does."""
    check_sample_fits(loaded, sample)
    if sample.attention_mask is not None:
        raise TokstepError("--incremental does not support samples with an attention mask (padding)")
    model, vocab = loaded.model, loaded.info.vocab_size
    top_k = clamp_top_k(top_k, vocab)
    targets_np, supervised = shifted_targets(sample)
    device = _input_device(model)
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
    return assemble_trace(
        sample, targets_np, supervised, PositionStats.concat(stats), INCREMENTAL_PATH, vocab
    )


def assemble_trace(
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


@serialized
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
