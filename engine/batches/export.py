"""A traced batches file as plain JSON-able data (for `tokstep report --batches FILE --json PATH`)."""

from __future__ import annotations

from typing import Any

from tokstep.engine.batches.results import BatchReport, RowResult
from tokstep.engine.lints.finding_records import envelope, finding_record
from tokstep.engine.model.export import _num, trace_to_dict


def row_to_dict(row: RowResult) -> dict[str, Any]:
    data = trace_to_dict(row.result)
    for t, position in enumerate(data["positions"]):
        position["document"] = row.document_at(t)
        compared = row.compared is not None and bool(row.compared[t])
        position["delta_alone"] = _num(float(row.delta[t])) if compared and row.delta is not None else None
    return {
        "line": row.row.line,
        "batch": row.row.batch,
        "row": row.row.row,
        "tokens": len(row.row),
        "padding": row.row.padding,
        "settings": {k: v for k, v in row.settings.__dict__.items() if v is not None},
        "documents_from": row.row.documents_from or None,
        "documents": [
            {
                "index": d.index,
                "start": d.start,
                "end": d.end,
                "supervised": d.loss_count,
                "loss": _num(d.loss),
                "alone_loss": _num(d.alone_loss),
                "max_delta": _num(d.max_delta),
            }
            for d in row.documents
        ],
        "loss": _num(row.result.trace.loss),
        "supervised": row.loss_count,
        "hf_loss": _num(row.result.reference),
        "max_delta": _num(row.max_delta),
        "disagree": row.disagree,  # labels ≠ the recovered chat turns (None: no turns recovered)
        "findings": [  # this row's, as in the top-level `findings`
            finding_record(f, line=row.row.line, batch=row.row.batch, batch_row=row.row.row) for f in row.findings
        ],
        "notes": list(row.notes),
        "trace": data,
    }


def report_to_dict(report: BatchReport) -> dict[str, Any]:
    loss = report.loss
    records = [
        finding_record(f, line=r.row.line, batch=r.row.batch, batch_row=r.row.row)
        for r in report.rows
        for f in r.findings
    ]
    return {
        **envelope(records),
        "file": report.path,
        "batch_loss": {
            "per_batch": [
                {
                    "batch": b,
                    "sum_ce": _num(s),
                    "supervised": n,
                    "rows": r,
                    "mean": _num(s / n if n else None),
                }
                for b, s, n, r in loss.per_batch
            ],
            "token_weighted": _num(loss.token_weighted),
            "mean_of_row_means": _num(loss.mean_of_row_means),
            "mean_of_batch_means": _num(loss.mean_of_batch_means),
            "trainer_used": loss.trainer_used,
        },
        "rows": [row_to_dict(r) for r in report.rows],
        "errors": [{"line": e.line, "message": e.message} for e in report.errors],
    }
