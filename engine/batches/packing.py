"""Trace trainer batches as the trainer's forward saw them, and check packed rows for cross-document attention.

Each row is traced with the same `attn_implementation`, `position_ids`, `attention_mask` and `use_cache` the
trainer used (recorded by `save_batches`, stated by flags, or the model's config). Each document of a packed
row is traced again alone; per position |Δ log q(target)| between the two shows whether the documents
attended to each other. Both traces use the engine's chunked head: no [T, vocab] float32 tensor.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tokstep.engine.batches.files import BadLine, BatchFile, BatchRow, Settings, row_sample
from tokstep.engine.batches.results import (
    PER_BATCH_MEAN,
    TOKEN_WEIGHTED,
    BatchReport,
    DocumentCheck,
    RowResult,
    noise_floor,
    reduce_batch_loss,
)
from tokstep.engine.batches.structure import ignored, padding_of, with_row_layout
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.sample import Sample
from tokstep.engine.lints.catalogue import Finding, finding
from tokstep.engine.lints.sample_lints import with_foreign_ids
from tokstep.engine.lints.trainer_batches import batch_padding_lints, batch_row_lints
from tokstep.engine.model.loading import LoadedModel
from tokstep.engine.model.reference import traced_result
from tokstep.engine.model.trace import FLASH_KWARGS, Forward, trace_sample
from tokstep.engine.policies import DEFAULT_EOT, DEFAULT_INSERTED

Progress = Callable[[str], None]
FLASH_PREFIX = "flash_attention"


def effective_settings(loaded: LoadedModel, recorded: Settings, flags: Settings) -> Settings:
    """The user's flags, then what the file recorded, then the model's own config."""
    config = loaded.model.config
    model_defaults = Settings(
        attn_implementation=getattr(config, "_attn_implementation", None),
        use_cache=bool(getattr(config, "use_cache", False)),
    )
    merged = model_defaults.overridden(**recorded.__dict__)
    return merged.overridden(**flags.__dict__)


def use_attention(loaded: LoadedModel, implementation: str | None) -> str | None:
    """Switch the model to `implementation`; a note when it cannot (flash-attention on a CPU, say)."""
    model = loaded.model
    current = getattr(model.config, "_attn_implementation", None)
    if implementation is None or implementation == current:
        return None
    try:
        model.set_attn_implementation(implementation)
    except Exception as error:  # noqa: BLE001 - not installed / not on this device: say so, trace with what we have
        reason = str(error).splitlines()[0][:160]
        return f"cannot run attn_implementation={implementation} here ({reason}); traced with {current}"
    return None


def row_forward(row: BatchRow, settings: Settings) -> Forward:
    """What the trainer passed to the forward besides input_ids (flash-attention kwargs only where they act)."""
    flash: tuple = ()
    if (settings.attn_implementation or "").startswith(FLASH_PREFIX) and row.cu_seq_lens is not None:
        flash = (("cu_seq_lens_q", row.cu_seq_lens), ("cu_seq_lens_k", row.cu_seq_lens))
        flash += tuple((k, v) for k, v in row.extra if k in FLASH_KWARGS)
    return Forward(
        position_ids=row.position_ids,
        attention_mask=row.attention_mask,
        use_cache=bool(settings.use_cache),
        flash_kwargs=flash,
    )


def _document_sample(sample: Sample, start: int, end: int, name: str) -> Sample:
    return Sample(
        sample.input_ids[start:end].copy(),
        sample.labels[start:end].copy(),
        sample.mask_reasons[start:end],
        kind="document",
        name=name,
    )


def check_documents(
    loaded: LoadedModel, row: BatchRow, sample: Sample, packed_logprob: np.ndarray, top_k: int
) -> tuple[tuple[DocumentCheck, ...], np.ndarray, np.ndarray]:
    """Trace each document alone (no mask, positions from 0, no cache) and compare with the packed trace.

    Position t of the row reads token t; inside document [s, e) positions s..e-2 predict the document's own
    next token, so they are compared with positions 0..e-s-2 of the document alone. Position e-1 predicts the
    next document's first token: nothing alone corresponds to it.
    """
    positions = len(sample) - 1
    delta = np.zeros(positions, dtype=np.float64)  # (T,)
    compared = np.zeros(positions, dtype=bool)  # (T,)
    supervised = sample.labels[1:] != -100  # (T,)
    ce = -packed_logprob.astype(np.float64)  # (T,)
    checks = []
    for d, (start, end) in enumerate(row.documents):
        span = slice(start, min(end, positions))
        counted = supervised[span]
        loss_sum, loss_count = float(ce[span][counted].sum()), int(counted.sum())
        max_delta = alone_loss = None
        if row.packed and end - start >= 2:
            alone = trace_sample(
                loaded, _document_sample(sample, start, end, f"{row.name} document {d}"), top_k=top_k
            )
            ours = packed_logprob[start : end - 1].astype(np.float64)  # (e-s-1,)
            theirs = alone.logprob.astype(np.float64)
            both = np.isfinite(ours) & np.isfinite(theirs)
            diff = np.where(both, np.abs(ours - theirs), 0.0)
            delta[start : end - 1] = diff
            compared[start : end - 1] = both
            max_delta = float(diff.max()) if both.any() else None
            alone_loss = alone.loss
        checks.append(DocumentCheck(d, start, end, loss_sum, loss_count, max_delta, alone_loss))
    return tuple(checks), delta, compared


def contamination_cause(row: BatchRow, settings: Settings) -> str:
    """Why the documents of a packed row saw each other, as far as the forward's arguments tell."""
    if row.position_ids is None:
        return (
            "the forward got no position_ids, so nothing told the model where documents start: pass position_ids "
            "restarting at 0 for every document (DataCollatorWithFlattening / TRL padding_free), with no 2D "
            "attention_mask and use_cache=False, or a 4D block-diagonal mask"
        )
    if row.attention_mask is not None:
        return (
            "a 2D attention_mask was passed with the packed position_ids: transformers then builds one causal mask "
            "over the whole row and ignores the restarts; drop attention_mask from packed batches, or pass a 4D "
            "block-diagonal mask, or use a flash-attention varlen path (cu_seq_lens)"
        )
    if settings.use_cache:
        return (
            "the forward built a KV cache (use_cache=True; the config default when nothing turns it off), which turns off transformers' "
            "packed-sequence detection: set model.config.use_cache=False (or pass use_cache=False), or use a "
            "flash-attention varlen path or a 4D block-diagonal mask"
        )
    return (
        f"attn_implementation={settings.attn_implementation} did not isolate the documents: use a flash-attention "
        "varlen path (cu_seq_lens), or position_ids with no 2D mask and use_cache=False, or a 4D block-diagonal mask"
    )


def contamination_finding(
    row: BatchRow, settings: Settings, checks: tuple[DocumentCheck, ...], delta: np.ndarray, floor: float
) -> Finding | None:
    """`cross-document-attention` when some document's log-probs move beyond numerical noise when packed."""
    moved = [c for c in checks if c.max_delta is not None and c.max_delta > floor]
    if not moved:
        return None
    worst = max(moved, key=lambda c: c.max_delta or 0.0)
    positions = (
        np.flatnonzero(delta > floor) + 1
    )  # the tokens whose prediction moved (position t predicts t+1)
    return finding(
        "cross-document-attention",
        positions.tolist(),
        f"{len(moved)} of {len(checks)} documents change when packed (max |Δ log q| {worst.max_delta:.3g} nats in "
        f"document {worst.index}, noise floor {floor:g}): {contamination_cause(row, settings)}",
    )


def trace_row(
    loaded: LoadedModel, row: BatchRow, flags: Settings, *, top_k: int = 10, with_reference: bool = True
) -> RowResult:
    settings = effective_settings(loaded, row.settings, flags)
    notes = [note for note in (use_attention(loaded, settings.attn_implementation),) if note]
    if notes:
        settings = settings.overridden(
            attn_implementation=getattr(loaded.model.config, "_attn_implementation", None)
        )
    sample = row_sample(row, loaded.tokenizer.pad_token_id)
    sample = with_row_layout(
        sample,
        row,
        loaded.tokenizer,
        eot=settings.eot or DEFAULT_EOT,
        inserted=settings.inserted or DEFAULT_INSERTED,
    )  # each document's chat turns, recovered from its ids: the label lints and the strip's role colours
    skip = ignored(row)
    label_findings = batch_row_lints(loaded.tokenizer, sample, skip, row.documents)
    label_findings += batch_padding_lints(loaded.tokenizer, sample.labels, padding_of(row))
    label_findings = with_foreign_ids(loaded.tokenizer, sample, label_findings)
    disagree = None if sample.layout is None else len(sample.layout.disagreements(sample.labels, skip))
    forward = row_forward(row, settings)
    trace = trace_sample(loaded, sample, top_k=top_k, forward=forward)
    result = traced_result(loaded, sample, trace, with_reference=with_reference, forward=forward)
    checks, delta, compared = check_documents(loaded, row, sample, trace.logprob, top_k)
    lint = (
        contamination_finding(row, settings, checks, delta, noise_floor(loaded.info.dtype))
        if row.packed
        else None
    )
    return RowResult(
        row=row,
        result=result,
        settings=settings,
        documents=checks,
        delta=delta if row.packed else None,
        compared=compared if row.packed else None,
        findings=(*label_findings, *((lint,) if lint else ())),
        notes=tuple(notes),
        disagree=disagree,
    )


def trace_batches(
    loaded: LoadedModel,
    batches: BatchFile,
    *,
    flags: Settings | None = None,
    top_k: int = 10,
    with_reference: bool = True,
    progress: Progress = lambda _message: None,
) -> BatchReport:
    """Trace every readable row; a row the model cannot take (too long, ids outside the vocabulary) becomes an
    error naming its line, and the others still open."""
    rows: list[RowResult] = []
    errors = list(batches.errors)
    for i, row in enumerate(batches.rows):
        progress(
            f"tracing {row.name} ({i + 1} of {len(batches.rows)}, {len(row)} tokens, {len(row.documents)} documents)"
        )
        try:
            rows.append(
                trace_row(loaded, row, flags or Settings(), top_k=top_k, with_reference=with_reference)
            )
        except TokstepError as error:
            errors.append(BadLine(row.line, f"line {row.line}: {error}"))
    errors.sort(key=lambda e: e.line)
    recorded = {r.row.settings.loss for r in rows if r.row.settings.loss}
    used = recorded.pop() if len(recorded) == 1 else None
    if used not in (TOKEN_WEIGHTED, PER_BATCH_MEAN):
        used = None
    steps = {r.row.settings.accumulation_steps for r in rows if r.row.settings.accumulation_steps}
    loss = reduce_batch_loss(tuple(rows), used, steps.pop() if len(steps) == 1 else None)
    return BatchReport(batches.path, tuple(rows), tuple(errors), loss)
