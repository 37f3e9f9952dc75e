"""What tracing a file of trainer batches produces: per row a trace, per document its loss and the contamination
check, and the batch loss reduced the ways trainers reduce it. numpy only: screens hold these."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokstep.engine.batches.files import BadLine, BatchRow, Settings
from tokstep.engine.model.results import TraceResult

TOKEN_WEIGHTED = "num_items_in_batch"
PER_BATCH_MEAN = "per-batch mean"


def noise_floor(dtype: str) -> float:
    """|Δ log q| a packed trace may differ from the same document alone by rounding alone (measured: 8e-6 in
    float32, eager and sdpa); beyond it the documents saw each other."""
    return 1e-3 if dtype in ("float32", "float64") else 0.1


@dataclass(frozen=True)
class DocumentCheck:
    """One packed document: its loss in the row, and how far its log-probs move against it traced alone."""

    index: int
    start: int  # token span [start, end) in the row
    end: int
    loss_sum: float  # Σ CE over the supervised positions that read this document's tokens
    loss_count: int
    max_delta: float | None  # max |Δ log q(target)| packed vs alone; None when nothing was compared
    alone_loss: float | None  # the document's loss traced alone (None: nothing supervised, or not traced)

    @property
    def loss(self) -> float | None:
        return self.loss_sum / self.loss_count if self.loss_count else None


@dataclass(frozen=True, eq=False)
class RowResult:
    """A row traced as the trainer's forward saw it."""

    row: BatchRow
    result: TraceResult
    settings: Settings  # effective: recorded in the file, then the user's flags, then the model's config
    documents: tuple[DocumentCheck, ...]
    delta: np.ndarray | None  # (T,) float64 |Δ log q(target)| packed vs alone; 0 where not compared
    compared: np.ndarray | None  # (T,) bool: positions inside a document, compared with it alone
    findings: tuple  # engine.lints.catalogue.Finding: labels against the recovered chat turns, cross-document-attention
    notes: tuple[str, ...] = ()
    disagree: int | None = None  # labels that disagree with the recovered chat turns (None: no turns found)

    @property
    def loss_sum(self) -> float:
        trace = self.result.trace
        return float(trace.running_sum[-1]) if len(trace) else 0.0

    @property
    def loss_count(self) -> int:
        return self.result.trace.num_supervised

    @property
    def max_delta(self) -> float | None:
        values = [d.max_delta for d in self.documents if d.max_delta is not None]
        return max(values) if values else None

    def document_at(self, t: int) -> int | None:
        """The document position t reads (its token t), None for padding."""
        return self.row.document_of(t)


@dataclass(frozen=True)
class BatchLoss:
    """One loss, reduced the different ways trainers and hand-written loops reduce it."""

    per_batch: tuple[tuple[int, float, int, int], ...]  # (batch, Σ CE, supervised tokens, rows)
    token_weighted: float | None  # Σ CE / Σ n over every batch in the file (one accumulation step)
    mean_of_row_means: float | None  # a loop averaging each row's own loss
    mean_of_batch_means: float | None  # a loop averaging each step's model(**batch).loss
    trainer_used: str | None  # TOKEN_WEIGHTED | PER_BATCH_MEAN when recorded, else None
    accumulation_steps: int | None = None  # batches per optimizer step, when recorded

    def batch_mean(self, batch: int) -> float | None:
        for b, total, count, _rows in self.per_batch:
            if b == batch:
                return total / count if count else None
        return None


@dataclass(frozen=True, eq=False)
class BatchReport:
    path: str
    rows: tuple[RowResult, ...]
    errors: tuple[BadLine, ...]  # lines that could not be read or traced
    loss: BatchLoss

    def batch_running(self, row_index: int, t: int) -> tuple[float, int]:
        """(Σ CE, n) of the batch so far: earlier rows of the same batch, then this row up to position t."""
        current = self.rows[row_index]
        total, count = 0.0, 0
        for other in self.rows[:row_index]:
            if other.row.batch == current.row.batch:
                total += other.loss_sum
                count += other.loss_count
        trace = current.result.trace
        return total + float(trace.running_sum[t]), count + int(trace.running_count[t])


def reduce_batch_loss(
    rows: tuple[RowResult, ...], trainer_used: str | None, accumulation_steps: int | None = None
) -> BatchLoss:
    """Token-weighted (HF Trainer's num_items_in_batch), mean of per-row means, mean of per-batch means."""
    batches: dict[int, list[RowResult]] = {}
    for r in rows:
        batches.setdefault(r.row.batch, []).append(r)
    per_batch = tuple(
        (b, sum(r.loss_sum for r in rs), sum(r.loss_count for r in rs), len(rs))
        for b, rs in sorted(batches.items())
    )
    total = sum(s for _, s, _, _ in per_batch)
    count = sum(n for _, _, n, _ in per_batch)
    row_means = [r.loss_sum / r.loss_count for r in rows if r.loss_count]
    batch_means = [s / n for _, s, n, _ in per_batch if n]
    return BatchLoss(
        per_batch=per_batch,
        token_weighted=total / count if count else None,
        mean_of_row_means=float(np.mean(row_means)) if row_means else None,
        mean_of_batch_means=float(np.mean(batch_means)) if batch_means else None,
        trainer_used=trainer_used,
        accumulation_steps=accumulation_steps,
    )
