"""The small interface the CLI and the TUI call: model spec + sample spec in, a finished `TraceResult` out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.model.loading import LoadedModel, ModelSpec, load_model
from tokstep.engine.model.reference import compute_reference, result_of
from tokstep.engine.model.results import TraceResult
from tokstep.engine.model.trace import check_causal, max_drift, trace_incremental, trace_sample
from tokstep.engine.policies import DEFAULT_REFERENCE, DEFAULT_TOP_K, REFERENCES, Reference, check_top_k

Progress = Callable[[str], None]


def load(spec: ModelSpec) -> LoadedModel:
    """Every model tokstep loads comes through here (report, both models of --compare, --data, --batches, scan,
    the debugger), so the causality probe refuses a model that attends both ways before any number is shown."""
    loaded = load_model(
        spec.name_or_path,
        revision=spec.revision,
        dtype=spec.dtype,
        device=spec.device,
        device_map=spec.device_map,
        trust_remote_code=spec.trust_remote_code,
    )
    check_causal(loaded)
    return loaded


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

    `reference` is `chunked`, `full`, `off` (see engine.model.reference) or `later`: the result comes back with
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
    """The same result with HF's reference loss (engine.model.reference) filled in, or the reason it is not."""

    if mode not in REFERENCES:
        raise TokstepError(f"--reference must be one of {', '.join(REFERENCES)}, not {mode!r}")
    loss, computed, note = compute_reference(loaded, result.sample, mode)
    return replace(
        result, reference=loss, reference_computed=computed, reference_note=note, reference_pending=False
    )
