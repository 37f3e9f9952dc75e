"""The dataset browser (`tokstep --data FILE`): the rows of a data file with tokens, supervised tokens,
lints, loss and the text each row trains the model to say; Enter opens a row in the stepper.

Every engine call goes through the injected `Backend`, from workers that report by message (`tui.screens.messages`):
opening and indexing the file (a JSONL file is indexed by line offsets, so a 1 GB file opens at once),
loading the tokenizer alone, tokenizing + linting the page, then the loss of each row once the app tells
the screen its model has loaded (`model_loaded`), behind a progress bar. Results are cached per row, so
paging back or returning from the stepper is free. Rows are numbered from 1 everywhere (file lines for
JSONL / JSON, rows for Parquet), as `tokstep lint` prints and writes them.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, ProgressBar, Static
from textual.worker import Worker, WorkerState, get_current_worker

from tokstep.engine.model.tokens import make_visible
from tokstep.tui.formatting import number
from tokstep.tui.screens.backend import Backend, DataOptions, EngineBackend, worker_error
from tokstep.tui.screens.dialogs import HelpScreen
from tokstep.tui.screens.messages import (
    BrowserStatus,
    IndexProgress,
    OpenSample,
    PageRead,
    RowLinted,
    RowLoss,
    TokenizerReady,
)
from tokstep.tui.severity import lint_tally, severity_counts, severity_style
from tokstep.tui.widgets.tables import highlighted_index

if TYPE_CHECKING:
    from tokstep.engine.inputs.data import DataFile, DataRow
    from tokstep.engine.lints.rows import RowLint
    from tokstep.engine.model.loading import ModelSpec

PAGE_ROWS = 500  # rows listed at once
PREVIEW_CHARS = 60
COLUMNS = [("line", "line"), ("form", "form"), ("tokens", "tokens"), ("sup", "supervised")]
COLUMNS += [("lints", "lints"), ("≠chat", "disagree"), ("loss", "loss"), ("trained text", "preview")]
SORTS = ("row", "loss", "lints", "disagree")
SORT_NAMES = {
    "row": "file order",
    "loss": "loss (highest first)",
    "lints": "lints (errors first)",
    "disagree": "labels ≠ chat structure (most first)",
}
DETAIL_FINDINGS = 2  # findings (each with its fix) in the detail pane; the stepper's L lists them all


def lint_badge(result: RowLint | None) -> Text:
    """`2E 1W 1I` style (every severity counted, as the stepper's header counts them); `·` when clean, `…`
    while unknown."""
    if result is None:
        return Text("…", style="dim")
    return lint_tally(severity_counts(result.findings)) or Text("·", style="dim")


def disagree_cell(result: RowLint | None) -> Text:
    """Tokens whose label disagrees with the chat structure recovered from the ids: red when any, `—` when the
    row has no recovered structure (not ids, or no chat template turns found), `…` while unknown."""
    if result is None:
        return Text("…", style="dim")
    return disagree_text(result.disagree)


def disagree_text(count: int | None) -> Text:
    """A count of labels that disagree with the recovered chat structure: red when any, `—` when none recovered."""
    if count is None:
        return Text("—", style="dim", justify="right")
    style = severity_style("error") if count else "green"
    return Text(f"{count:,}", style=style, justify="right")


def loss_cell(value: float | None, error: str | None, computed: bool) -> Text:
    if not computed:
        return Text("…", style="dim")
    if error is not None:
        return Text("error", style="red")
    if value is None or not math.isfinite(value):
        return Text("undefined" if value is None else "NaN/inf", style="dim")
    return Text(number(value))


def preview_cell(row: DataRow, result: RowLint | None) -> Text:
    """What the row trains the model to say (its supervised labels, decoded), on one line."""
    if row.spec is None:
        return Text(str(row.error), style="red")
    if result is None:
        return Text("…", style="dim")
    if result.trained is None:
        return Text(result.findings[0].message if result.findings else "—", style="red")
    if not result.trained:
        return Text("(nothing trained)", style="dim")
    text = " ".join(make_visible(part) for part in result.trained[: PREVIEW_CHARS * 2].split(" "))
    return Text(text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…")


class DataBrowserScreen(Screen[None]):
    """List the rows of a data file; sort by loss or lints; Enter steps through the highlighted row."""

    BINDINGS = [
        Binding("enter", "open_row", "open in stepper", id="open-row", priority=True),
        Binding(
            "s", "cycle_sort", "sort", id="sort", tooltip="sort: file order → loss → lints → labels ≠ chat"
        ),
        Binding("home,g", "first_row", "first row", show=False, id="first-row", priority=True),
        Binding("end,G", "last_row", "last row", show=False, id="last-row", priority=True),
        Binding("n", "page(1)", "next page", id="next-page"),
        Binding("p", "page(-1)", "previous page", id="previous-page"),
        Binding("question_mark", "help", "help", id="help"),
        Binding("q", "quit", "quit", id="quit"),
    ]
    DEFAULT_CSS = """
    DataBrowserScreen #browser-title { height: 1; padding: 0 1; text-style: bold; }
    DataBrowserScreen #browser-status { height: 1; padding: 0 1; color: $text-muted; }
    DataBrowserScreen #browser-detail { height: auto; max-height: 6; padding: 0 1; border-top: solid $secondary; }
    DataBrowserScreen DataTable { height: 1fr; }
    DataBrowserScreen ProgressBar { height: 1; padding: 0 1; }
    """

    def __init__(
        self,
        data_path: str,
        *,
        backend: Backend | None = None,
        model_spec: ModelSpec | None = None,
        options: DataOptions | None = None,
        model: Any = None,
    ) -> None:
        super().__init__()
        self.data_path = data_path
        self.backend = backend or EngineBackend()
        self.model_spec = model_spec  # for loading the tokenizer alone while the app loads the model
        self.options = options or DataOptions()
        self.model: Any = model  # the backend's model handle, once the app has it
        self.tokenizer: Any = None if model is None else self.backend.tokenizer_of(model)
        self.data: DataFile | None = None
        self.page = 0
        self.sort_by = "row"
        self.rows: dict[int, DataRow] = {}  # this page's rows, by index
        self.lints: dict[int, RowLint] = {}  # cache over all pages
        self.duplicates = self.backend.duplicate_rows()  # rows repeating one linted before, on any page
        self.losses: dict[int, tuple[float | None, str | None]] = {}  # cache over all pages
        self.total_rows = 0
        self.index_complete = False
        self.model_problem: str | None = None  # why losses cannot be computed
        self._cursor_to: str | None = None  # "first" / "last": where the cursor goes once a page is read

    def compose(self) -> ComposeResult:
        yield Static(f"{self.data_path}", id="browser-title")
        yield Static("opening …", id="browser-status")
        table: DataTable[Any] = DataTable(cursor_type="row", zebra_stripes=True, id="rows")
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield ProgressBar(total=None, show_eta=False, id="loss-progress")
        yield Static("", id="browser-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.open_file()
        if self.tokenizer is None and self.model_spec is not None:
            self.load_tokenizer(self.model_spec)

    # -- what the app tells the screen -----------------------------------------------------------------

    def model_loaded(self, model: Any) -> None:
        """The app's model is loaded: compute the losses of the page (and lint it, if not done yet)."""
        self.model = model
        if self.tokenizer is None:
            self.tokenizer = self.backend.tokenizer_of(model)
        self.model_problem = None
        self._update_status()
        if self.rows:
            self.compute_stats(list(self.rows.values()), self.tokenizer, model)

    def model_failed(self, reason: str) -> None:
        """The model could not be loaded: the rows stay listed (and linted, if the tokenizer loaded)."""
        self.model_problem = f"no model: {reason}"
        self._update_status()

    # -- workers: backend calls only, results by message -----------------------------------------------

    # What a failed worker of each group means for the user; its error lands in on_worker_state_changed.
    WORKER_FAILURES = {
        "browser-open": "cannot open",
        "browser-index": "indexing stopped",
        "browser-page": "cannot read rows",
    }

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a worker's failure lands: one line in the status (a file that cannot be opened: fatal)."""
        group = event.worker.group
        if event.state is not WorkerState.ERROR or group not in self.WORKER_FAILURES:
            return
        error = worker_error(event.worker.error)  # type: ignore[arg-type]  # set when the state is ERROR
        self.post_message(
            BrowserStatus(f"{self.WORKER_FAILURES[group]}: {error}", fatal=group == "browser-open")
        )
        if group == "browser-index" and self.data is not None:
            self.post_message(IndexProgress(len(self.data), self.data.complete))

    @work(thread=True, exit_on_error=False, group="browser-open")
    def open_file(self) -> None:
        data = self.backend.open_data(self.data_path, self.options)
        first = list(data.rows(0, PAGE_ROWS))
        self.data = data
        self.post_message(PageRead(0, first))
        self.post_message(IndexProgress(len(data), data.complete))
        self.index_rest()

    @work(thread=True, exit_on_error=False, group="browser-tokenizer")
    def load_tokenizer(self, spec: ModelSpec) -> None:
        try:
            tokenizer = self.backend.load_tokenizer(spec)
        except Exception:  # noqa: BLE001 - the app's model load reports the problem
            return
        self.post_message(TokenizerReady(tokenizer))

    @work(thread=True, exit_on_error=False, group="browser-index")
    def index_rest(self) -> None:
        """Index the rest of the file (counting rows) without ever holding it in memory."""
        data, worker = self.data, get_current_worker()
        if data is None:
            return
        last_post = 0.0
        while not data.complete and not worker.is_cancelled:
            data.index_more()
            if time.monotonic() - last_post > 0.25:
                self.post_message(IndexProgress(len(data), data.complete))
                last_post = time.monotonic()
        self.post_message(IndexProgress(len(data), data.complete))

    @work(thread=True, exit_on_error=False, group="browser-page", exclusive=True)
    def read_page(self, page: int) -> None:
        if self.data is None:
            return
        rows = list(self.data.rows(page * PAGE_ROWS, (page + 1) * PAGE_ROWS))
        self.post_message(PageRead(page, rows))

    @work(thread=True, exit_on_error=False, group="browser-stats", exclusive=True)
    def compute_stats(self, rows: list[DataRow], tokenizer: Any, model: Any) -> None:
        """Tokenize + lint each row (tokenizer only), then, with a model, trace each row for its loss."""
        worker = get_current_worker()
        linted: dict[int, RowLint] = {}
        for row in rows:
            if worker.is_cancelled:
                return
            result = self.lints.get(row.index)
            if result is None:
                try:
                    result = self.duplicates.check(self.backend.lint_row(tokenizer, row))  # bad row: a finding
                except Exception as error:  # noqa: BLE001 - a broken linter must not stop the listing
                    self.post_message(BrowserStatus(f"cannot lint {row.where}: {worker_error(error)}"))
                    continue
                self.post_message(RowLinted(result))
            linted[row.index] = result
        if model is None:
            return
        for row in rows:
            if worker.is_cancelled:
                return
            if row.index in self.losses or row.index not in linted:
                continue
            sample = linted[row.index].sample
            if sample is None:
                self.post_message(RowLoss(row.index, None, row.error or "no sample"))
                continue
            try:
                loss = self.backend.row_loss(model, sample)
            except Exception as error:  # noqa: BLE001 - one row must not stop the others
                self.post_message(RowLoss(row.index, None, worker_error(error)))
                continue
            self.post_message(RowLoss(row.index, loss))

    # -- messages from the workers ---------------------------------------------------------------------

    def on_page_read(self, message: PageRead) -> None:
        if self.data is not None and not self.data.has_lines:
            self.query_one(DataTable).columns["line"].label = Text("row")  # Parquet, Arrow: no lines
        self.page = message.page
        self.rows = {row.index: row for row in message.rows}
        self._fill_table()
        if self._cursor_to is not None and self.rows:
            table = self.query_one(DataTable)
            table.move_cursor(row=0 if self._cursor_to == "first" else table.row_count - 1)
            self._cursor_to = None
        pending = [row for row in message.rows if row.index not in self.losses]
        bar = self.query_one(ProgressBar)
        bar.update(total=len(message.rows), progress=len(message.rows) - len(pending))
        self._update_status()
        if self.tokenizer is not None:
            self.compute_stats(message.rows, self.tokenizer, self.model)

    def on_tokenizer_ready(self, message: TokenizerReady) -> None:
        if self.tokenizer is not None:
            return  # the model's came first
        self.tokenizer = message.tokenizer
        if self.rows:
            self.compute_stats(list(self.rows.values()), self.tokenizer, self.model)

    def on_row_linted(self, message: RowLinted) -> None:
        result = message.result
        self.lints[result.row.index] = result
        if result.row.index not in self.rows:
            return
        key = str(result.row.index)
        table = self.query_one(DataTable)
        table.update_cell(key, "tokens", _count(result.num_tokens), update_width=True)
        table.update_cell(key, "supervised", _count(result.num_supervised), update_width=True)
        table.update_cell(key, "lints", lint_badge(result), update_width=True)
        table.update_cell(key, "disagree", disagree_cell(result), update_width=True)
        table.update_cell(key, "preview", preview_cell(result.row, result), update_width=True)
        if self._highlighted() == result.row.index:
            self._show_detail(result.row.index)

    def on_row_loss(self, message: RowLoss) -> None:
        self.losses[message.index] = (message.loss, message.error)
        if message.index not in self.rows:
            return
        self.query_one(DataTable).update_cell(
            str(message.index), "loss", loss_cell(message.loss, message.error, True), update_width=True
        )
        self.query_one(ProgressBar).advance(1)
        self._update_status()

    def on_index_progress(self, message: IndexProgress) -> None:
        self.total_rows, self.index_complete = message.rows, message.complete
        self._update_status()

    def on_browser_status(self, message: BrowserStatus) -> None:
        if message.fatal:
            self.query_one("#browser-status", Static).update(Text(message.text, style="bold red"))
            self.notify(message.text, severity="error", timeout=10)
            return
        self.model_problem = message.text
        self._update_status()

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        if message.row_key.value is not None:
            self._show_detail(int(message.row_key.value))

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        if message.row_key.value is not None:
            self._open(int(message.row_key.value))

    # -- actions ---------------------------------------------------------------------------------------

    def action_open_row(self) -> None:
        index = self._highlighted()
        if index is not None:
            self._open(index)

    def action_sort(self, by: str) -> None:
        self.sort_by = by
        self._fill_table()
        self._update_status()

    def action_cycle_sort(self) -> None:
        self.action_sort(SORTS[(SORTS.index(self.sort_by) + 1) % len(SORTS)])
        self.notify(f"sorted by {SORT_NAMES[self.sort_by]}", timeout=2)

    def action_page(self, step: int) -> None:
        page = self.page + step
        if page < 0 or (
            self.data is not None and page * PAGE_ROWS >= max(len(self.data), 1) and self.index_complete
        ):
            self.notify("no more rows that way", timeout=2)
            return
        self.read_page(page)

    def action_first_row(self) -> None:
        """The first row of the listing (on the first page)."""
        self._go_to_page_end(0, "first")

    def action_last_row(self) -> None:
        """The last row of the listing (on the last page, once the file is indexed to its end)."""
        if self.data is None:
            return
        last_page = max(len(self.data) - 1, 0) // PAGE_ROWS
        if not self.index_complete:
            self.notify("still counting the rows: the last page may move", timeout=2)
        self._go_to_page_end(last_page, "last")

    def _go_to_page_end(self, page: int, end: str) -> None:
        table = self.query_one(DataTable)
        if page == self.page:
            if table.row_count:
                table.move_cursor(row=0 if end == "first" else table.row_count - 1)
            return
        self._cursor_to = end
        self.read_page(page)

    def action_help(self) -> None:

        extra = [("Esc", "(in the stepper) back to this list")]
        self.app.push_screen(HelpScreen([b for b in self.BINDINGS if isinstance(b, Binding)], extra))

    async def action_quit(self) -> None:
        self.app.exit()

    # -- helpers ---------------------------------------------------------------------------------------

    def order(self) -> list[int]:
        """Row indices of this page in the current sort (unknown values last)."""
        indices = sorted(self.rows)
        if self.sort_by == "loss":

            def by_loss(i: int) -> tuple[int, float]:
                loss = self.losses.get(i, (None, None))[0]
                return (1, 0.0) if loss is None or not math.isfinite(loss) else (0, -loss)

            return sorted(indices, key=by_loss)
        if self.sort_by == "lints":

            def by_lints(i: int) -> tuple[int, int, int]:
                result = self.lints.get(i)
                if result is None:
                    return (1, 0, 0)
                return (0, -result.count("error"), -result.count("warning"))

            return sorted(indices, key=by_lints)
        if self.sort_by == "disagree":

            def by_disagree(i: int) -> tuple[int, int]:
                result = self.lints.get(i)
                if result is None or result.disagree is None:
                    return (1, 0)
                return (0, -result.disagree)

            return sorted(indices, key=by_disagree)
        return indices

    def _fill_table(self) -> None:
        table = self.query_one(DataTable)
        keep = self._highlighted()
        table.clear()
        for index in self.order():
            row = self.rows[index]
            result = self.lints.get(index)
            loss, error = self.losses.get(index, (None, None))
            table.add_row(
                Text(row.where.removeprefix("line ").removeprefix("row "), style="red" if row.error else ""),
                Text(row.form, style="red" if row.error else "dim"),
                _count(None if result is None else result.num_tokens, result is None),
                _count(None if result is None else result.num_supervised, result is None),
                lint_badge(result)
                if row.error is None or result
                else Text("1E", style=severity_style("error")),
                disagree_cell(result),
                loss_cell(loss, error, index in self.losses),
                preview_cell(row, result),
                key=str(index),
            )
        if keep is not None and keep in self.rows:
            table.move_cursor(row=table.get_row_index(str(keep)))

    def _highlighted(self) -> int | None:
        return highlighted_index(self.query_one(DataTable))

    def _show_detail(self, index: int) -> None:
        row, result = self.rows.get(index), self.lints.get(index)
        detail = Text()
        if row is not None and row.error:
            detail.append(f"{row.where}: {row.error}", style="red")
        elif result is not None:
            if not result.findings:
                detail.append("no findings", style="dim")
            for f in result.findings[:DETAIL_FINDINGS]:
                detail.append(f"{f.severity} ", style=severity_style(f.severity))
                detail.append(f"{f.code}: ", style="bold")
                detail.append(f.message + "\n")
                if f.fix:
                    detail.append(f"  fix: {f.fix}\n", style="dim")
            conventions = sorted({f.convention for f in result.findings[:DETAIL_FINDINGS] if f.convention})
            for convention in conventions:  # the label lints' convention, once
                detail.append(f"convention: {convention}\n", style="dim")
            if len(result.findings) > DETAIL_FINDINGS:
                more = len(result.findings) - DETAIL_FINDINGS
                detail.append(f"… {more} more: Enter, then L in the stepper", style="dim")
        loss_error = self.losses.get(index, (None, None))[1]
        if loss_error and row is not None and not row.error:
            detail.append(f"\nloss: {loss_error}", style="red")
        self.query_one("#browser-detail", Static).update(detail)

    def _update_status(self) -> None:
        first = self.page * PAGE_ROWS + 1
        last = self.page * PAGE_ROWS + len(self.rows)
        total = f"{self.total_rows:,}" if self.index_complete else f"≥ {self.total_rows:,} (counting …)"
        computed = sum(1 for i in self.rows if i in self.losses)
        waiting = not computed and self.model is None
        note = self.model_problem or ("waiting for the model" if waiting else "")
        model = f"  ·  {note}" if note else ""
        text = (
            f"rows {first:,}–{last:,} of {total}  ·  sorted by {SORT_NAMES[self.sort_by]}  ·  "
            f"loss computed for {computed}/{len(self.rows)}{model}"
        )
        self.query_one("#browser-status", Static).update(text)

    def _open(self, index: int) -> None:
        row = self.rows.get(index)
        if row is None:
            return
        if row.spec is None:
            self.notify(f"{row.where}: {row.error}", title="cannot open this row", severity="error")
            return
        self.post_message(OpenSample(row.spec, row.spec.name))


def _count(value: int | None, pending: bool = False) -> Text:
    if pending:
        return Text("…", style="dim")
    return Text("—" if value is None else f"{value:,}", justify="right")
