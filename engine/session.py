"""The small interface the CLI and the TUI call: model spec + sample spec in, a finished `TraceResult` out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs import SampleSpec, build_sample
from tokstep.engine.loading import LoadedModel, ModelSpec, load_model
from tokstep.engine.policies import DEFAULT_REFERENCE, DEFAULT_TOP_K, REFERENCES, Reference, check_top_k
from tokstep.engine.reference import compute_reference, result_of
from tokstep.engine.results import TraceResult
from tokstep.engine.trace import max_drift, trace_incremental, trace_sample

Progress = Callable[[str], None]


def load(spec: ModelSpec) -> LoadedModel:
    return load_model(
        spec.name_or_path,
        revision=spec.revision,
        dtype=spec.dtype,
        device=spec.device,
        device_map=spec.device_map,
        trust_remote_code=spec.trust_remote_code,
    )


def run_trace(
    loaded: LoadedModel,
    sample_spec: SampleSpec,
    *,
    top_k: int = DEFAULT_TOP_K,
    with_reference: bool = True,
    reference: Reference | Literal["later"] = DEFAULT_REFERENCE,
    incremental: bool = False,
    progress: Progress = lambda _message: None,
) -> TraceResult:
    """Tokenize, trace (one forward pass), and compute HF's reference loss beside it.

    `reference` is `chunked`, `full`, `off` (see engine.reference) or `later`: the result comes back with
    `reference_pending` set and `add_reference` fills it in (the TUI shows the stepper first).
    """
    check_top_k(top_k, loaded.info.vocab_size)
    if not with_reference:
        reference = "off"
    progress("building the sample")
    sample = build_sample(sample_spec, loaded.tokenizer, max_tokens=loaded.info.max_positions)
    progress(f"tracing {len(sample)} tokens")
    trace = trace_sample(loaded, sample, top_k=top_k)
    drift = None
    if incremental:
        progress("tracing again, one token at a time through the KV cache")
        drift = max_drift(trace, trace_incremental(loaded, sample, top_k=top_k))
    result = result_of(loaded, sample, trace, incremental_drift=drift, reference_pending=reference == "later")
    if reference == "later":
        return result
    if reference != "off":
        progress("computing Hugging Face's reference loss")
    return add_reference(loaded, result, reference)


def add_reference(
    loaded: LoadedModel, result: TraceResult, mode: Reference = DEFAULT_REFERENCE
) -> TraceResult:
    """The same result with HF's reference loss (engine.reference) filled in, or the reason it is not."""

    if mode not in REFERENCES:
        raise TokstepError(f"--reference must be one of {', '.join(REFERENCES)}, not {mode!r}")
    loss, computed, note = compute_reference(loaded, result.sample, mode)
    return replace(
        result, reference=loss, reference_computed=computed, reference_note=note, reference_pending=False
    )
