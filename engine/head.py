"""The output head applied by the engine itself, chunk by chunk, to the model's final hidden states, so no
[T, vocab] (or [B, T, vocab]) tensor exists. Shared by the single-sample Trace and the batched scan.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from tokstep.engine.reduce import Scratch

# Logits per reduction chunk: [rows, vocab] never exceeds this. On the CPU 16 MiB keeps the reductions'
# passes cache-friendly; GPUs like bigger launches.
CHUNK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 24}
DEFAULT_CHUNK_ELEMENTS = 1 << 22
# Logits per output-head matmul (hidden path): every matmul re-reads the whole [vocab, d] head weight,
# so fewer, taller ones are faster (at 83 rows the chunked head cost ~35% more than HF's single matmul).
HEAD_CHUNK_ELEMENTS = {"cpu": 1 << 25, "cuda": 1 << 26}
# Models whose chunked head already reproduced their own logits once: later forwards skip the model's
# output head entirely (the forward stops once the final hidden states exist).
VERIFIED_HEADS: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


class HiddenStatesCaptured(Exception):
    """Raised by the hook to stop a verified model's forward before its output head."""


def input_device(model: Any) -> torch.device:
    return model.get_input_embeddings().weight.device


def post_head(model: Any, logits: torch.Tensor) -> torch.Tensor:
    """Transforms some models apply after the output head (Gemma-2's final logit softcapping)."""
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def hidden_states_and_last_logits(
    model: Any, inputs: dict[str, Any], *, stop_at_hidden: bool = False, use_cache: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Run the model once on a batch (B, N), keeping the final hidden states (B, N, d) and the model's own
    logits at position N-2 (B, V), the last that predicts something: the chunked head is checked against
    them for free.

    Returns None when the model cannot do this (no `logits_to_keep`, no separable base model).
    With `stop_at_hidden` the forward stops at the hidden states and no logits come back.
    """
    base = getattr(model, "base_model", None)
    if base is None or base is model or model.get_output_embeddings() is None:
        return None
    captured: list[torch.Tensor] = []

    def keep_hidden(_module: Any, _args: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else getattr(output, "last_hidden_state", None)
        if isinstance(hidden, torch.Tensor):
            captured.append(hidden)
            if stop_at_hidden:
                raise HiddenStatesCaptured

    handle = base.register_forward_hook(keep_hidden)
    try:
        out = model(**inputs, use_cache=use_cache, logits_to_keep=2)  # rows N-2, N-1 (N >= 2)
    except HiddenStatesCaptured:
        return captured[0], None  # (B, N, d)
    except TypeError:
        return None
    finally:
        handle.remove()
    if len(captured) != 1 or out.logits.shape[1] != 2:
        return None
    return captured[0], out.logits[:, -2]  # (B, N, d), (B, V)


def head_logits(model: Any, hidden: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor:
    """Apply the output head (and any post-head transform) to hidden states (rows, d) -> (rows, V).

    With `scratch`, a plain nn.Linear head writes into a reused buffer (no fresh [rows, V] per chunk).
    """
    head = model.get_output_embeddings()
    hidden = hidden.to(head.weight.device)
    if scratch is None or type(head) is not torch.nn.Linear:
        return post_head(model, head(hidden))
    weight = head.weight  # (V, d)
    out = scratch.take("head", hidden.shape[0], weight.shape[0], weight.dtype, weight.device)
    logits = torch.matmul(hidden.to(weight.dtype), weight.t(), out=out)  # (rows, V)
    if head.bias is not None:
        logits.add_(head.bias)
    return post_head(model, logits)


def head_matches_model(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
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


def chunk_rows(vocab: int, device: torch.device, elements: dict[str, int] = CHUNK_ELEMENTS) -> int:
    return max(1, elements.get(device.type, DEFAULT_CHUNK_ELEMENTS) // max(vocab, 1))
