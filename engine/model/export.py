"""A trace as plain JSON-able data (for `tokstep report --json`)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from tokstep.engine.lints.catalogue import Finding
from tokstep.engine.lints.finding_records import envelope, finding_record
from tokstep.engine.model.results import TraceResult, parity


def _num(value: float | None) -> float | None:
    """JSON has no NaN: undefined numbers become null."""
    return None if value is None or value != value else float(value)


def position_record(result: TraceResult, t: int) -> dict[str, Any]:
    """Position t of a trace: its context and target tokens, CE, rank, top-k and running mean."""
    trace, sample, texts = result.trace, result.sample, result.texts
    target = int(trace.target_ids[t])
    return {
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


def trace_header(result: TraceResult, findings: Sequence[Finding] = ()) -> dict[str, Any]:
    """Everything about a trace but its positions: model, sample, loss, HF's reference, the findings
    (engine.lints.finding_records: the schema every JSON output shares)."""
    trace, sample, info = result.trace, result.sample, result.info
    return {
        **envelope([finding_record(f) for f in findings]),
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
            "truncated_from_exact": not sample.truncated_prefix,  # false: a prefix's count (a lower bound)
            "notes": list(sample.notes),
        },
        "path": trace.path,
        "loss": _num(trace.loss),
        "supervised_count": trace.num_supervised,
        "hf_reference_loss": _num(result.reference),
        "hf_reference_computed": result.reference_computed,
        "hf_reference_note": result.reference_note,
        "hf_match": parity(result).ok,  # the one verdict (engine.model.results.parity); None when not compared
        "incremental_max_drift": _num(result.incremental_drift),
        "positions_count": len(trace),
    }


def trace_to_dict(result: TraceResult, findings: Sequence[Finding] = ()) -> dict[str, Any]:
    """The header and every position (`report --json`)."""
    header = trace_header(result, findings)
    header["positions"] = [position_record(result, t) for t in range(len(result.trace))]
    return header


def trace_lines(result: TraceResult, findings: Sequence[Finding] = ()) -> Iterator[str]:
    """`report --jsonl`: the header as one JSON line, then one line per position (a large trace streams)."""
    yield json.dumps(trace_header(result, findings), ensure_ascii=False)
    for t in range(len(result.trace)):
        yield json.dumps(position_record(result, t), ensure_ascii=False)
