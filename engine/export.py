"""A trace as plain JSON-able data (for `tokstep report --json`)."""

from __future__ import annotations

from typing import Any

from tokstep.engine.results import TraceResult, parity


def _num(value: float | None) -> float | None:
    """JSON has no NaN: undefined numbers become null."""
    return None if value is None or value != value else float(value)


def trace_to_dict(result: TraceResult) -> dict[str, Any]:
    trace, sample, texts, info = result.trace, result.sample, result.texts, result.info
    positions = []
    for t in range(len(trace)):
        target = int(trace.target_ids[t])
        positions.append(
            {
                "t": t,
                "context_token_id": int(sample.input_ids[t]),
                "context_token": texts.text(int(sample.input_ids[t])),
                "target_id": target,
                "target_piece": texts.piece(target),
                "target_text": texts.text(target),
                "supervised": bool(trace.supervised[t]),
                "mask_reason": sample.mask_reasons[t + 1].value,
                "logprob": _num(float(trace.logprob[t])),
                "prob": _num(float(trace.prob[t])),
                "ce": _num(float(trace.ce[t])),
                "rank": int(trace.rank[t]),
                "ties": int(trace.ties[t]),
                "entropy": _num(float(trace.entropy[t])),
                "finite": bool(trace.finite[t]),
                "running_sum": float(trace.running_sum[t]),
                "running_count": int(trace.running_count[t]),
                "running_mean": _num(trace.running_mean(t)),
                "top_k": [
                    {"id": int(i), "piece": texts.piece(int(i)), "logprob": _num(float(lp))}
                    for i, lp in zip(trace.topk_ids[t], trace.topk_logprobs[t], strict=True)
                ],
            }
        )
    return {
        "model": {
            "name": info.name,
            "architecture": info.architecture,
            "dtype": info.dtype,
            "device": info.device,
            "vocab_size": info.vocab_size,
            "tokenizer_size": info.tokenizer_size,
        },
        "sample": {
            "name": sample.name,
            "kind": sample.kind,
            "input_ids": sample.input_ids.tolist(),
            "labels": sample.labels.tolist(),
            "mask_reasons": [r.value for r in sample.mask_reasons],
            "truncated_from": sample.truncated_from,
            "notes": list(sample.notes),
        },
        "path": trace.path,
        "loss": _num(trace.loss),
        "supervised_count": trace.num_supervised,
        "hf_reference_loss": _num(result.reference),
        "hf_reference_computed": result.reference_computed,
        "hf_reference_note": result.reference_note,
        "hf_match": parity(result).ok,  # the one verdict (engine.results.parity); None when not compared
        "incremental_max_drift": _num(result.incremental_drift),
        "positions": positions,
    }
