"""A comparison as plain JSON-able data (`tokstep report --compare ... --json`): A's trace, each position
gaining B's numbers and the KL, and a `compare` block with the summary (`mean_kl`, ...)."""

from __future__ import annotations

from typing import Any

from tokstep.engine.compare.results import CompareResult, TokenizerCompareResult
from tokstep.engine.model.export import _num, trace_to_dict
from tokstep.engine.model.results import ModelInfo


def _model(info: ModelInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "architecture": info.architecture,
        "dtype": info.dtype,
        "device": info.device,
        "vocab_size": info.vocab_size,
    }


def compare_to_dict(result: CompareResult) -> dict[str, Any]:
    data = trace_to_dict(result.a)
    b, texts = result.b.trace, result.b.texts
    delta, agree = result.delta_ce, result.top1_agree
    for t, position in enumerate(data["positions"]):
        position.update(
            {
                "kl": _num(float(result.kl[t])),
                "ce_b": _num(float(b.ce[t])),
                "delta_ce": _num(float(delta[t])),
                "logprob_b": _num(float(b.logprob[t])),
                "rank_b": int(b.rank[t]),
                "top1_agree": bool(agree[t]),
                "finite_b": bool(b.finite[t]),
                "top_k_b": [
                    {"id": int(i), "piece": texts.piece(int(i)), "logprob": _num(float(lp))}
                    for i, lp in zip(b.topk_ids[t], b.topk_logprobs[t], strict=True)
                ],
            }
        )
    summary = {key: _num(v) if isinstance(v, float) else v for key, v in result.summary().as_dict().items()}
    data["compare"] = {
        "model_b": _model(result.b.info),
        "path_b": b.path,
        "loss_b": _num(b.loss),
        "hf_reference_loss_b": _num(result.b.reference),
        "kl_definition": "KL(P_A || P_B) in nats, per position",
        **summary,
    }
    return data


def tokenizer_compare_to_dict(result: TokenizerCompareResult) -> dict[str, Any]:
    data = trace_to_dict(result.a)
    al = result.alignment
    bpb_a, bpb_b, n = al.bits_per_byte()
    data["compare"] = {
        "mode": "tokenizers",
        "model_b": None if result.b is None else _model(result.b.info),
        "text_bytes": al.n_bytes,
        "tokens_a": int(al.starts_a.size),
        "tokens_b": int(al.starts_b.size),
        "token_starts_a": al.starts_a.tolist(),
        "token_starts_b": al.starts_b.tolist(),
        "boundaries_only_a": al.only_a.tolist(),
        "boundaries_only_b": al.only_b.tolist(),
        "boundaries_shared": al.shared,
        "bits_per_byte_a": _num(bpb_a),
        "bits_per_byte_b": _num(bpb_b),
        "bytes_scored_by_both": n,
    }
    return data
