"""For a row of a trainer batch: which packed document position t reads, and the running mean of the row,
of that document and of the batch so far, side by side (with |Δ log q| against the document traced alone)."""

from __future__ import annotations

from tokstep.engine.batches.results import BatchReport, RowResult, noise_floor
from tokstep.tui.formatting import number
from tokstep.tui.widgets.lines import FittedLine, LinesView


def _mean(total: float, count: int) -> str:
    return number(total / count, 3) if count else "—"


class DocumentLine(LinesView):
    """`doc 2 of 0..4 t 3 │ |Δ| alone 2.0e-06 │ mean row 4.123 (40) · doc 3.981 (7) · batch 4.302 (112)`."""

    DEFAULT_CSS = "DocumentLine { height: 1; padding: 0 1; }"

    def __init__(self, report: BatchReport, index: int, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.report = report
        self.index = index
        self.row: RowResult = report.rows[index]
        self.shown: int | None = None  # the position shown (a resize refits it)

    def on_resize(self) -> None:
        if self.shown is not None:
            self.show(self.shown)

    def show(self, t: int) -> None:
        """The fullest line that fits: the counts, the document range, the batch and document means give way
        (whole, with a `…`) before the row's mean; the document and |Δ| alone always stay."""
        self.shown = t
        row, trace = self.row, self.row.result.trace
        line = FittedLine()
        d = row.document_at(t)
        documents = len(row.documents)
        if d is None:
            line.add("padding ", "bold")
        else:
            start = row.documents[d].start
            # documents are 0-based, as `tokstep report` and the cross-document-attention lint number them
            line.add(f"doc {d} ", "bold").add(f"of 0..{documents - 1} ", "dim", 4).add(
                f"t {t - start} ", "dim"
            )
        if row.compared is not None and row.delta is not None:  # first: the number that matters
            line.add("│ ", "dim")
            if row.compared[t]:
                delta = float(row.delta[t])
                moved = delta > noise_floor(row.result.info.dtype)
                line.add(f"|Δ| alone {delta:.1e} ", "bold red" if moved else "green")
            else:
                line.add("|Δ| — (next doc) ", "dim")
        line.add("│ mean ", "dim")
        line.add("row ").add(_mean(float(trace.running_sum[t]), int(trace.running_count[t])), "bold")
        line.add(f" ({int(trace.running_count[t])})", "dim", 5)
        if d is not None and documents > 1:
            start = row.documents[d].start
            before_sum = float(trace.running_sum[start - 1]) if start else 0.0
            before_n = int(trace.running_count[start - 1]) if start else 0
            total, count = float(trace.running_sum[t]) - before_sum, int(trace.running_count[t]) - before_n
            line.add(f" · doc {_mean(total, count)}", "", 2).add(f" ({count})", "dim", 5)
        total, count = self.report.batch_running(self.index, t)
        line.add(f" · batch {_mean(total, count)}", "", 3).add(f" ({count})", "dim", 5)
        self.set_lines(line.fit(self.size.width or 1000))
