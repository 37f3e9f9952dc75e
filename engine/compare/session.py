"""The compare calls the CLI and the TUI make: load B (or a second tokenizer), then compare on one sample."""

from __future__ import annotations

from typing import Any

from tokstep.engine.compare.align import align, byte_spans
from tokstep.engine.compare.results import CompareResult, TokenizerCompareResult
from tokstep.engine.compare.spec import CompareSpec
from tokstep.engine.compare.traces import compare_traces, same_vocabulary
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.model.loading import LoadedModel, load_tokenizer
from tokstep.engine.model.reference import traced_result
from tokstep.engine.model.results import ModelInfo
from tokstep.engine.model.session import Progress, load, run_trace
from tokstep.engine.policies import DEFAULT_TOP_K, check_top_k


def label(which: str, info: ModelInfo) -> str:
    """`A tokstep-mini · float32 · cpu`: which model, by the last part of its name."""
    name = info.name.rstrip("/").rsplit("/", 1)[-1] if info.name.startswith((".", "/", "~")) else info.name
    return f"{which} {name} · {info.dtype} · {info.device}"


def load_b(spec: CompareSpec) -> LoadedModel | Any:
    """Model B (a LoadedModel), or with `--compare-tokenizer` only, the second tokenizer."""
    if spec.model is None:
        try:
            return load_tokenizer(spec.tokenizer or "")
        except TokstepError as error:
            raise TokstepError(f"--compare-tokenizer: {error}") from None
    try:
        return load(spec.model)
    except (TokstepError, RuntimeError) as error:  # torch.OutOfMemoryError is a RuntimeError
        text = str(error)
        if "out of memory" in text.lower():
            raise TokstepError(
                f"cannot hold both models: loading B on {spec.model.device} ran out of memory "
                "(try --compare-device cpu or another GPU)"
            ) from None
        if isinstance(error, TokstepError):  # B's loading flags are the --compare-* ones
            text = text.replace("--device ", "--compare-device ", 1).replace(
                "--dtype ", "--compare-dtype ", 1
            )
            raise TokstepError(f"model B: {text}") from None
        raise


def run_compare(
    a: LoadedModel,
    b: LoadedModel | Any,
    sample_spec: SampleSpec,
    *,
    top_k: int = DEFAULT_TOP_K,
    with_reference: bool = True,
    progress: Progress = lambda _message: None,
) -> CompareResult | TokenizerCompareResult:
    """Same vocabulary: both models lock-step on the same tokens (KL per position). Different vocabularies
    (or B is only a tokenizer): each tokenizes the same text, aligned by bytes (bits per byte)."""
    check_top_k(top_k)
    if not isinstance(b, LoadedModel):  # a tokenizer only
        return _compare_tokenizers(a, None, b, sample_spec, top_k, with_reference, progress)
    if not same_vocabulary(a, b):
        return _compare_tokenizers(a, b, b.tokenizer, sample_spec, top_k, with_reference, progress)
    progress("building the sample")
    sample = build_sample(sample_spec, a.tokenizer)
    progress(f"tracing {len(sample)} tokens through A and B, lock-step")
    try:
        trace_a, trace_b, kl = compare_traces(a, b, sample, top_k=top_k)
    except RuntimeError as error:  # torch.OutOfMemoryError is a RuntimeError
        if "out of memory" in str(error).lower():
            raise TokstepError(
                "cannot hold both models' activations: out of memory (try --compare-device cpu, or --truncate)"
            ) from None
        raise
    if with_reference:
        progress("computing Hugging Face's reference losses")
    return CompareResult(
        a=traced_result(a, sample, trace_a, with_reference=with_reference),
        b=traced_result(b, sample, trace_b, with_reference=with_reference),
        kl=kl,
        label_a=label("A", a.info),
        label_b=label("B", b.info),
    )


def _compare_tokenizers(
    a: LoadedModel,
    b: LoadedModel | None,
    tokenizer_b: Any,
    sample_spec: SampleSpec,
    top_k: int,
    with_reference: bool,
    progress: Progress,
) -> TokenizerCompareResult:
    if sample_spec.ids is not None or sample_spec.chat is not None:
        why = "the vocabularies differ" if b is not None else "--compare-tokenizer aligns text"
        raise TokstepError(
            f"{why}, so the two tokenizations must be aligned by bytes, which needs a text or prompt + answer "
            "sample (not --ids or --chat)"
        )
    result_a = run_trace(a, sample_spec, top_k=top_k, with_reference=with_reference, progress=progress)
    sample_b = build_sample(sample_spec, tokenizer_b)
    result_b = None
    if b is not None:
        progress(f"tracing B's {len(sample_b)} tokens")
        result_b = run_trace(b, sample_spec, top_k=top_k, with_reference=with_reference)
        sample_b = result_b.sample
    text, spans_a = byte_spans(a.tokenizer, sample_spec, result_a.sample)
    _, spans_b = byte_spans(tokenizer_b, sample_spec, sample_b)
    name_b = (
        label("B", b.info) if b is not None else f"B tokenizer {getattr(tokenizer_b, 'name_or_path', '')}"
    )
    alignment = align(
        text,
        spans_a,
        spans_b,
        name_a=label("A", a.info),
        name_b=name_b,
        trace_a=result_a.trace,
        trace_b=None if result_b is None else result_b.trace,
    )
    return TokenizerCompareResult(a=result_a, b=result_b, alignment=alignment)
