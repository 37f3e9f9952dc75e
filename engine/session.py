"""The small interface the CLI and the TUI call: model spec + sample spec in, a finished `TraceResult` out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs import SampleSpec, build_sample
from tokstep.engine.loading import LoadedModel, ModelSpec, load_model
from tokstep.engine.results import TraceResult
from tokstep.engine.tokens import TokenTexts
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
    top_k: int = 10,
    with_reference: bool = True,
    reference: str = "chunked",
    incremental: bool = False,
    progress: Progress = lambda _message: None,
) -> TraceResult:
    """Tokenize, trace (one forward pass), and compute HF's reference loss beside it.

    `reference` is `chunked`, `full`, `off` (see engine.reference) or `later`: the result comes back with
    `reference_pending` set and `add_reference` fills it in (the TUI shows the stepper first).
    """
    if top_k < 1:
        raise TokstepError("--top-k must be at least 1")
    if top_k >= loaded.info.vocab_size:
        raise TokstepError(
            f"--top-k {top_k} must be less than the vocabulary size ({loaded.info.vocab_size})"
        )
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
    result = TraceResult(
        info=loaded.info,
        sample=sample,
        trace=trace,
        texts=TokenTexts(loaded.tokenizer, loaded.info.vocab_size),
        reference=None,
        reference_computed=False,
        incremental_drift=drift,
        reference_pending=reference == "later",
    )
    if reference == "later":
        return result
    if reference != "off":
        progress("computing Hugging Face's reference loss")
    return add_reference(loaded, result, reference)


def add_reference(loaded: LoadedModel, result: TraceResult, mode: str = "chunked") -> TraceResult:
    """The same result with HF's reference loss (engine.reference) filled in, or the reason it is not."""
    from tokstep.engine.reference import MODES, compute_reference

    if mode not in MODES:
        raise TokstepError(f"--reference must be one of {', '.join(MODES)}, not {mode!r}")
    loss, computed, note = compute_reference(loaded, result.sample, mode)
    return replace(
        result, reference=loss, reference_computed=computed, reference_note=note, reference_pending=False
    )
