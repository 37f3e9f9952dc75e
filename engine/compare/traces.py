"""Two models on the same sample, lock-step over positions: per position KL(P_A || P_B), ΔCE, top-1 agreement.

Both models run once; then, chunk by chunk over the same positions, A's head and B's head are applied and
each chunk is reduced for both (the Trace statistics) and for the KL between them, so no [T, vocab] tensor
of either model ever exists (on the hidden path; see `trace.position_logits`).
"""

from __future__ import annotations

import numpy as np
import torch

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.sample import Sample
from tokstep.engine.model.loading import LoadedModel
from tokstep.engine.model.reduce import PositionStats, Scratch, kl_divergence, reduce_keeping_softmax
from tokstep.engine.model.results import Trace
from tokstep.engine.model.trace import assemble_trace, check_sample_fits, position_logits, shifted_targets
from tokstep.engine.policies import clamp_top_k


def same_vocabulary(a: LoadedModel, b: LoadedModel) -> bool:
    """Do A and B score the same token ids (same tokenizer vocabulary, same head size)?"""
    if a.info.vocab_size != b.info.vocab_size:
        return False
    if a.tokenizer is b.tokenizer:
        return True
    return bool(a.tokenizer.get_vocab() == b.tokenizer.get_vocab())


@torch.inference_mode()
def compare_traces(
    a: LoadedModel,
    b: LoadedModel,
    sample: Sample,
    *,
    top_k: int = 10,
    force_logits_path: bool = False,
) -> tuple[Trace, Trace, np.ndarray]:
    """Trace A and B on the same tokens and KL(P_A || P_B) (nats, float64, NaN where either is non-finite)
    at every position. A's and B's heads run chunk by chunk over the same positions."""
    if a.info.vocab_size != b.info.vocab_size:
        raise TokstepError(
            f"A's output head has {a.info.vocab_size} rows and B's {b.info.vocab_size}: "
            "KL needs the same vocabulary"
        )
    check_sample_fits(a, sample)
    try:
        check_sample_fits(b, sample)
    except TokstepError as error:
        raise TokstepError(f"model B: {error}") from None
    vocab = a.info.vocab_size
    top_k = clamp_top_k(top_k, vocab)
    targets, supervised = shifted_targets(sample)
    scratch = Scratch.for_current_thread()
    source_a = position_logits(a, sample, force_logits_path=force_logits_path, scratch=scratch, buffer="head")
    source_b = position_logits(
        b, sample, force_logits_path=force_logits_path, scratch=scratch, buffer="head_b"
    )
    head_rows = min(source_a.head_rows(), source_b.head_rows())
    rows = min(source_a.reduce_rows(), source_b.reduce_rows())
    stats_a: list[PositionStats] = []
    stats_b: list[PositionStats] = []
    kl: list[np.ndarray] = []
    pieces_a = source_a.chunks(targets, scratch, head_rows, rows)
    pieces_b = source_b.chunks(targets, scratch, head_rows, rows)
    for (logits_a, targets_a), (logits_b, targets_b) in zip(pieces_a, pieces_b, strict=True):
        stats, kept_a = reduce_keeping_softmax(logits_a, targets_a, top_k, scratch, "a:")  # (c, V) kept
        stats_a.append(stats)
        stats, kept_b = reduce_keeping_softmax(logits_b, targets_b, top_k, scratch, "b:")
        stats_b.append(stats)
        kl.append(kl_divergence(kept_a, kept_b, scratch))  # (c,)
    trace_a = assemble_trace(sample, targets, supervised, PositionStats.concat(stats_a), source_a.path, vocab)
    trace_b = assemble_trace(sample, targets, supervised, PositionStats.concat(stats_b), source_b.path, vocab)
    return trace_a, trace_b, np.concatenate(kl)
