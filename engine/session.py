"""The small interface the CLI and the TUI call: model spec + sample spec in, a finished `TraceResult` out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.defaults import DEFAULT_MODEL
from engine.errors import TokstepError
from engine.inputs import SampleSpec, build_sample
from engine.loading import LoadedModel, ModelInfo, load_model
from engine.sample import Sample
from engine.tokens import TokenTexts
from engine.trace import Trace, max_drift, reference_loss, trace_incremental, trace_sample

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelSpec:
    """How to load the model (the CLI's --model/--revision/--dtype/--device/... flags)."""

    name_or_path: str = str(DEFAULT_MODEL)
    revision: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    device_map: str | None = None
    trust_remote_code: bool = False

    @property
    def is_default(self) -> bool:
        return self.name_or_path == str(DEFAULT_MODEL)

    @property
    def display_name(self) -> str:
        return "tokstep-mini (bundled)" if self.is_default else self.name_or_path


@dataclass(frozen=True, eq=False)
class TraceResult:
    """A finished trace plus what the screens need around it."""

    info: ModelInfo
    sample: Sample
    trace: Trace
    texts: TokenTexts
    reference: float | None  # HF's model(input_ids, labels=labels).loss; None if not computed or undefined
    reference_computed: bool
    incremental_drift: float | None  # max |Δ log q(target)| single pass vs KV-cache, when asked

    @property
    def nonfinite_error(self) -> str | None:
        bad = self.trace.nonfinite_positions
        if not bad.size:
            return None
        return (
            f"the model produced NaN/inf logits at {bad.size} of {len(self.trace)} positions (first at t={int(bad[0])}); "
            f"dtype {self.info.dtype} may overflow: try --dtype float32"
        )


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
    incremental: bool = False,
    progress: Progress = lambda _message: None,
) -> TraceResult:
    """Tokenize, trace (one forward pass), and compute HF's reference loss beside it."""
    if top_k < 1:
        raise TokstepError("--top-k must be at least 1")
    progress("building the sample")
    sample = build_sample(sample_spec, loaded.tokenizer)
    progress(f"tracing {len(sample)} tokens")
    trace = trace_sample(loaded, sample, top_k=top_k)
    drift = None
    if incremental:
        progress("tracing again, one token at a time through the KV cache")
        drift = max_drift(trace, trace_incremental(loaded, sample, top_k=top_k))
    reference = None
    if with_reference:
        progress("computing Hugging Face's reference loss")
        reference = reference_loss(loaded, sample)
    return TraceResult(
        info=loaded.info,
        sample=sample,
        trace=trace,
        texts=TokenTexts(loaded.tokenizer, loaded.info.vocab_size),
        reference=reference,
        reference_computed=with_reference,
        incremental_drift=drift,
    )
