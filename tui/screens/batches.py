"""`tokstep --batches FILE`: the rows of the trainer's batches, the batch loss reduced the trainer's ways, and
Enter to step through a row (packed documents drawn in its context strip, `[` `]` `D` to move between them).

The `≠chat` column counts the tokens whose label disagrees with the chat turns recovered from the row's ids
(each packed document recovered alone; `—` when no turn is found), as in the data browser; `s` sorts by it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tokstep.engine.batches.results import BatchReport
from tokstep.tui.cli.batch_report import loss_table, trainer_line
from tokstep.tui.formatting import number
from tokstep.tui.screens.backend import Backend
from tokstep.tui.screens.browser import disagree_text
from tokstep.tui.screens.dialogs import HelpScreen
from tokstep.tui.screens.stepper import StepperScreen
from tokstep.tui.severity import severity_style
from tokstep.tui.widgets.tables import highlighted_index


def _count(disagree: int | None) -> int:
    return -1 if disagree is None else disagree  # no recovered turns: after rows that agree


class BatchesScreen(Screen[None]):
    """One line per row: tokens, documents, padding, counted targets, loss and the packed-vs-alone check."""

    BINDINGS = [
        # priority, as in the data browser: the table's own Enter would hide it from the footer
        Binding("enter", "open", "step through the row", id="open-row", priority=True),
        Binding(
            "s", "cycle_sort", "sort", id="sort", tooltip="sort: file order → labels ≠ chat (most first)"
        ),
        Binding("question_mark", "help", "help", id="help"),
        Binding("q", "quit", "quit", id="quit"),
    ]
    DEFAULT_CSS = """
    BatchesScreen #batch-loss { height: auto; padding: 0 1; border: round $secondary; }
    BatchesScreen #batch-trainer { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    BatchesScreen #batch-errors { height: auto; padding: 0 1; color: $error; }
    BatchesScreen DataTable { height: 1fr; min-height: 5; }
    """

    def __init__(
        self, report: BatchReport, *, backend: Backend | None = None, no_color: bool = False
    ) -> None:
        super().__init__()
        self.report = report
        self.backend = backend
        self.no_color = no_color

    def compose(self) -> ComposeResult:
        report = self.report
        yield Static(Text.assemble(("tokstep --batches ", "bold"), report.path), id="batch-title")
        # compact: one line per reduction (wrapped, it took most of an 80x24 screen from the rows list)
        yield Static(loss_table(report.loss, max_batches=3, compact=True), id="batch-loss")
        yield Static(Text(trainer_line(report.loss), style="dim"), id="batch-trainer")
        if report.errors:
            yield Static("\n".join(e.message for e in report.errors), id="batch-errors")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="batch-rows")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#batch-loss").border_title = "batch loss"
        table = self.query_one(DataTable)
        for name in ("batch", "row", "line", "tokens", "docs", "pad", "counted", "loss", "max |Δ| alone"):
            table.add_column(name, key=name)
        table.add_column("≠chat", key="disagree")
        table.add_column("lint")
        for i, r in enumerate(self.report.rows):
            delta = r.max_delta
            table.add_row(
                r.row.batch,
                r.row.row,
                r.row.line,
                len(r.row),
                len(r.row.documents),
                r.row.padding,
                r.loss_count,
                number(r.result.trace.loss),
                "not packed" if not r.row.packed else "—" if delta is None else f"{delta:.1e}",
                disagree_text(r.disagree),
                Text(r.findings[0].code, style=severity_style(r.findings[0].severity)) if r.findings else "",
                key=str(i),
            )
        table.focus()

    def action_open(self) -> None:

        index = highlighted_index(
            self.query_one(DataTable)
        )  # rows are keyed by their index: sorting keeps it
        if index is None or not 0 <= index < len(self.report.rows):
            return
        row = self.report.rows[index]
        self.app.push_screen(
            StepperScreen(
                row.result,
                findings=row.findings,
                backend=self.backend,
                can_go_back=True,
                no_color=self.no_color,
                batch=(self.report, index),
            )
        )

    def action_cycle_sort(self) -> None:
        """File order ↔ most disagreeing labels first (rows with no recovered turns last)."""
        table = self.query_one(DataTable)
        self.by_disagree = not getattr(self, "by_disagree", False)
        by_line = {r.row.line: r for r in self.report.rows}  # a file line holds one row
        if self.by_disagree:
            table.sort("line", key=lambda line: (-_count(by_line[line].disagree), line))
        else:
            table.sort("line")
        self.notify("sorted by labels ≠ chat" if self.by_disagree else "sorted in file order", timeout=2)

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_help(self) -> None:

        keys = [("↑ ↓ pgup pgdn", "move through the rows"), ("Esc", "(in the stepper) back to this list")]
        self.app.push_screen(HelpScreen([b for b in self.BINDINGS if isinstance(b, Binding)], keys))

    async def action_quit(self) -> None:
        self.app.exit()
