"""The browser over a finished scan (`tokstep --data DIR`, DIR written by `tokstep scan`).

Every row's numbers are already computed, so sorting and filtering act on ALL rows at once (through
`engine.scan.view.ScanView`), not on a page. The table shows a window of the sorted, filtered rows;
Enter reads the row back from the data file and steps into it with the model; Escape comes back.

Sorts, filters and windows are read by a worker thread (the screen never waits on a query): a screenful
(the table's height plus `FIRST_MARGIN` rows) first, then the rest of the window; a newer request makes an older one's rows be dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import Worker, WorkerState, get_current_worker

from tokstep.engine.errors import TokstepError
from tokstep.engine.scan.export import export_rows
from tokstep.engine.scan.view import SORTABLE, ScanView
from tokstep.tui.palette import BAD
from tokstep.tui.screens.backend import Backend, EngineBackend, worker_error
from tokstep.tui.screens.messages import OpenSample
from tokstep.tui.severity import lint_tally
from tokstep.tui.widgets.tables import highlighted_index

WINDOW = 500  # rows in the table at once
FIRST_MARGIN = 10  # rows read first beyond those the table shows: a page's cost grows with its rows
READING = " · reading …"  # on the status line while a worker reads
EXPORT_NAME = "rows-to-fix.jsonl"  # the file `x` offers (the shown rows, as `tokstep scan-query --out`)
COLUMNS = [
    ("row", "row"),
    ("form", "form"),
    ("tokens", "tokens"),
    ("sup", "supervised"),
    ("loss", "loss"),
    ("max CE", "max_ce"),
    ("worst token", "worst"),
    ("lints", "lints"),
    ("error", "error"),
]


def _number(value: float | None, digits: int = 4) -> Text:
    if value is None or not math.isfinite(value):
        return Text("—", style="dim", justify="right")
    return Text(f"{value:.{digits}f}", justify="right")


def _count(value: int | None) -> Text:
    return Text("—" if value is None else f"{value:,}", justify="right", style="dim" if value is None else "")


def _lints(record: dict[str, Any]) -> Text:
    counts = {"error": record.get("lint_errors") or 0, "warning": record.get("lint_warnings") or 0}
    if not any(counts.values()):
        return Text("·", style="dim")
    badge = lint_tally(counts)
    badge.append(" " + ",".join(record.get("lints") or ()), style="dim")
    return badge


class ScanBrowserScreen(Screen[None]):
    """Sort and filter every row of a scan; Enter steps through the highlighted row."""

    BINDINGS = [
        Binding("enter", "open_row", "open in stepper", id="open-row", priority=True),
        Binding("s", "cycle_sort", "sort", id="sort"),
        Binding("r", "reverse", "reverse", id="reverse"),
        Binding("L", "sort('loss')", "sort by loss", show=False, id="sort-loss"),
        Binding("M", "sort('max_ce')", "sort by max CE", show=False, id="sort-max-ce"),
        Binding("I", "sort('lints')", "sort by lints", show=False, id="sort-lints"),
        Binding("T", "sort('tokens')", "sort by length", show=False, id="sort-tokens"),
        Binding("O", "sort('row')", "file order", show=False, id="sort-row"),
        Binding("slash", "filter", "filter", id="filter"),
        Binding("x", "export", "export rows", id="export-rows"),
        Binding("n", "window(1)", "next 500", id="next-page"),
        Binding("p", "window(-1)", "previous 500", id="previous-page"),
        Binding("escape", "clear_filter", "clear filter", show=False, id="clear-filter"),
    ]
    DEFAULT_CSS = """
    ScanBrowserScreen #scan-title { height: 1; padding: 0 1; text-style: bold; }
    ScanBrowserScreen #scan-status { height: 1; padding: 0 1; color: $text-muted; }
    ScanBrowserScreen #scan-detail { height: auto; max-height: 6; padding: 0 1; border-top: solid $secondary; }
    ScanBrowserScreen #scan-filter { display: none; }
    ScanBrowserScreen #scan-filter.shown { display: block; }
    ScanBrowserScreen #scan-export { display: none; }
    ScanBrowserScreen #scan-export.shown { display: block; }
    ScanBrowserScreen DataTable { height: 1fr; }
    """

    def __init__(self, folder: str, view: ScanView | None = None, *, backend: Backend | None = None) -> None:
        super().__init__()
        self.folder = folder
        self.view = view
        self.backend = backend or EngineBackend()
        self.start = 0  # first shown row of the window
        self.records: dict[int, dict[str, Any]] = {}  # row index -> record, for the window
        self._data: Any = None  # the scanned data file, opened on the first Enter

    def compose(self) -> ComposeResult:
        yield Static(f"scan {self.folder}", id="scan-title")
        yield Static("opening …", id="scan-status")
        yield Input(
            placeholder="filter: loss>3 tokens<512 form=chat lint:no-eos lint error ok !…", id="scan-filter"
        )
        yield Input(value=EXPORT_NAME, placeholder="write the shown rows as JSONL to …", id="scan-export")
        table: DataTable[Any] = DataTable(cursor_type="row", zebra_stripes=True, id="scan-rows")
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static("", id="scan-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()  # not the (hidden) filter field
        if self.view is None:
            self.load_view()
        else:
            self._show()

    @work(thread=True, exit_on_error=False, group="scan-open")
    def load_view(self) -> ScanView:
        return self.backend.open_scan(self.folder)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a worker's outcome lands: the opened view, or an error as one line."""
        if event.worker.group == "scan-window" and event.state is WorkerState.ERROR:
            self.notify(worker_error(event.worker.error), title="scan", severity="error")
            return
        if event.worker.group != "scan-open":
            return
        if event.state is WorkerState.SUCCESS:
            self.view = event.worker.result
            self._show()
        elif event.state is WorkerState.ERROR:
            self.query_one("#scan-status", Static).update(Text(worker_error(event.worker.error), style=BAD))

    # -- actions ---------------------------------------------------------------------------------------

    def action_sort(self, by: str) -> None:
        if self.view is None:
            return
        self.view.sort(by)
        self.start = 0
        self._show()

    def action_cycle_sort(self) -> None:
        if self.view is not None:
            order = list(SORTABLE)
            self.action_sort(order[(order.index(self.view.sort_by) + 1) % len(order)])

    def action_reverse(self) -> None:
        if self.view is not None:
            self.view.sort(self.view.sort_by, not self.view.descending)
            self.start = 0
            self._show()

    def action_window(self, step: int) -> None:
        if self.view is None:
            return
        start = self.start + step * WINDOW
        if start < 0 or start >= len(self.view):
            self.notify("no more rows that way", timeout=2)
            return
        self.start = start
        self._show()

    def action_filter(self) -> None:
        field = self.query_one("#scan-filter", Input)
        field.add_class("shown")
        if self.view is not None and self.view.filter is not None:
            field.value = self.view.filter.text
        field.focus()

    def action_export(self) -> None:
        if self.view is None:
            return
        field = self.query_one("#scan-export", Input)
        field.add_class("shown")
        field.focus()

    def action_clear_filter(self) -> None:
        for field in self.query(Input):
            if field.has_class("shown"):
                field.remove_class("shown")
                self.query_one(DataTable).focus()
                return
        if self.view is not None and self.view.filter is not None:
            view = self.view
            self.start = 0
            self._show(lambda: view.set_filter(""))

    def on_input_submitted(self, message: Input.Submitted) -> None:
        if message.input.id == "scan-export":
            self._start_export(message.input)
        else:
            self._apply_filter(message.input)

    def _start_export(self, field: Input) -> None:
        path = field.value.strip()
        if self.view is None or not path:
            return
        field.remove_class("shown")
        self.query_one(DataTable).focus()
        self.notify(f"writing {len(self.view):,} rows to {path} …", timeout=3)
        self.export_rows(path)

    @work(thread=True, exit_on_error=False, group="scan-export", exclusive=True)
    def export_rows(self, path: str) -> None:
        """The shown rows (this filter, this order) as JSONL, like `tokstep scan-query --out`."""
        try:
            written = export_rows(self.view, path)
        except TokstepError as error:
            self.app.call_from_thread(self.notify, str(error), title="export", severity="error")
            return
        self.app.call_from_thread(self.notify, f"{written:,} rows → {path}", title="export", timeout=6)

    def _apply_filter(self, field: Input) -> None:
        if self.view is None:
            return
        view, text = self.view, field.value
        try:
            view.parse_filter(text)  # bad syntax is told here, at once; the query runs in the worker
        except TokstepError as error:
            self.notify(str(error), title="filter", severity="error")
            return
        field.remove_class("shown")
        self.start = 0
        self._show(lambda: view.set_filter(text))
        self.query_one(DataTable).focus()

    def action_open_row(self) -> None:
        field = self.query_one("#scan-filter", Input)
        if field.has_focus:  # Enter (a priority binding) applies the filter being typed
            self._apply_filter(field)
            return
        target = self.query_one("#scan-export", Input)
        if target.has_focus:
            self._start_export(target)
            return
        index = self._highlighted()
        if index is not None:
            self._open(index)

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        if message.row_key.value is not None:
            self._show_detail(int(message.row_key.value))

    # -- helpers ---------------------------------------------------------------------------------------

    def _show(self, change: Callable[[], object] | None = None) -> None:
        """Read the window at `self.start` again (after `change`, e.g. a new filter), off the UI thread."""
        if self.view is None:
            return
        status = self.query_one("#scan-status", Static)
        said = str(status.content).removesuffix(READING)
        status.update(Text(said + READING, style="dim"))
        first = max(self.query_one(DataTable).size.height + FIRST_MARGIN, 1)
        self.read_window(self.view, self.start, change, first)

    @work(thread=True, exit_on_error=False, group="scan-window", exclusive=True)
    def read_window(
        self, view: ScanView, start: int, change: Callable[[], object] | None, first_rows: int
    ) -> None:
        """Where the window's rows are, in order, then their records: a screenful first, then the rest."""
        worker = get_current_worker()
        if change is not None:
            change()
        keys = view.page_keys(start, WINDOW)
        for first, piece in ((True, keys[:first_rows]), (False, keys[first_rows:])):
            if worker.is_cancelled or (piece == [] and not first):
                return
            records = view.records_of(piece)
            if worker.is_cancelled:
                return
            self.app.call_from_thread(self._fill, records, start, first)

    def _fill(self, records: list[dict[str, Any]], start: int, first: bool) -> None:
        """Show records read by `read_window` (the first piece clears the table and says what it shows)."""
        view = self.view
        if view is None or start != self.start:
            return
        table = self.query_one(DataTable)
        if first:
            table.clear()
            self.records = {}
            self._describe(view)
        for record in records:
            index = int(record["row"])
            self.records[index] = record
            error = record.get("error")
            worst = ""
            if record.get("worst_token"):
                worst = f"{record['worst_token'][0]} @t={record['worst_t'][0]}"
            where = record["line"] if record.get("line") is not None else index + 1
            table.add_row(
                Text(str(where), style="red" if error else ""),
                Text(record.get("form") or "", style="red" if error else "dim"),
                _count(record.get("tokens")),
                _count(record.get("supervised")),
                _number(record.get("loss")),
                _number(record.get("max_ce"), 2),
                Text(worst),
                _lints(record),
                Text((error or "")[:60], style="red"),
                key=str(index),
            )

    def _describe(self, view: ScanView) -> None:
        shown = len(view)
        what = (
            f"rows {self.start + 1:,}–{min(self.start + WINDOW, shown):,} of {shown:,}"
            if shown
            else "no rows"
        )
        if view.filter is not None:
            what += f" (filter {view.filter.text!r}; {view.total:,} in all)"
        direction = "desc" if view.descending else "asc"
        self.query_one("#scan-status", Static).update(
            f"{what}  ·  sorted by {view.sort_by} {direction}  ·  model {view.model}"
        )
        self.query_one("#scan-title", Static).update(
            f"scan {self.folder}  ·  {view.identity.get('data', '')}"
        )

    def _highlighted(self) -> int | None:
        return highlighted_index(self.query_one(DataTable))

    def _show_detail(self, index: int) -> None:
        record = self.records.get(index)
        if record is None:
            return
        detail = Text()
        if record.get("error"):
            detail.append(record["error"] + "\n", style="red")
        worst = zip(
            record.get("worst_t") or (),
            record.get("worst_ce") or (),
            record.get("worst_token") or (),
            strict=False,
        )
        parts = [f"t={t} {token} CE {ce:.2f}" for t, ce, token in worst]
        if parts:
            detail.append("worst: ", style="bold")
            detail.append("  ".join(parts) + "\n")
        masked = {k.removeprefix("masked_"): v for k, v in record.items() if k.startswith("masked_") and v}
        if masked:
            detail.append("masked: ", style="bold")
            detail.append("  ".join(f"{k} {v}" for k, v in masked.items()) + "\n")
        if record.get("lints"):
            detail.append("lints: ", style="bold")
            detail.append(", ".join(record["lints"]))
        self.query_one("#scan-detail", Static).update(detail)

    def _open(self, index: int) -> None:
        record = self.records.get(index)
        if record is None or self.view is None:
            return
        try:
            if self._data is None:
                self._data = self.view.open_data()
            row = self._data.row(index)
        except (TokstepError, IndexError, OSError) as error:
            self.notify(str(error), title="cannot read this row", severity="error")
            return
        if row.spec is None:
            self.notify(f"{row.where}: {row.error}", title="cannot open this row", severity="error")
            return
        self.post_message(OpenSample(row.spec, row.spec.name))  # the app traces it and pushes a stepper

    def on_unmount(self) -> None:
        if self._data is not None:
            self._data.close()
