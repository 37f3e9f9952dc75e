"""The dataset browser (`tokstep --data FILE`): the rows of a data file with tokens, supervised tokens,
lints and loss per row; Enter opens a row in the stepper.

The file is read a page at a time (`engine.data` indexes a JSONL file by line offsets, so a 1 GB file
opens at once). Workers do the slow parts and report by message: indexing the rest of the file,
tokenizing + linting the page (tokenizer only), then the loss of each row with the app's loaded model,
behind a progress bar. Results are cached per row, so paging back or returning from the stepper is free.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, ProgressBar, Static
from textual.worker import get_current_worker

from tokstep.engine.errors import TokstepError
from tokstep.tui.formatting import number

if TYPE_CHECKING:
    from tokstep.engine.data import DataFile, DataRow
    from tokstep.engine.lints import RowLint

PAGE_ROWS = 500  # rows listed at once
PREVIEW_CHARS = 60
COLUMNS = [("line", "line"), ("form", "form"), ("tokens", "tokens"), ("sup", "supervised")]
COLUMNS += [("lints", "lints"), ("loss", "loss"), ("preview", "preview")]
SORTS = ("row", "loss", "lints")


class PageRead(Message):
    """A page of rows has been read from the file."""

    def __init__(self, page: int, rows: list[DataRow]) -> None:
        super().__init__()
        self.page, self.rows = page, rows


class RowLinted(Message):
    def __init__(self, result: RowLint) -> None:
        super().__init__()
        self.result = result


class RowLoss(Message):
    """The loss of one row (None: nothing supervised; `error` when it could not be traced)."""

    def __init__(self, index: int, loss: float | None, error: str | None = None) -> None:
        super().__init__()
        self.index, self.loss, self.error = index, loss, error


class IndexProgress(Message):
    def __init__(self, rows: int, complete: bool) -> None:
        super().__init__()
        self.rows, self.complete = rows, complete


class BrowserStatus(Message):
    """A line for the status bar; `fatal` when the file itself cannot be opened."""

    def __init__(self, text: str, fatal: bool = False) -> None:
        super().__init__()
        self.text, self.fatal = text, fatal


def _form(row: DataRow) -> str:
    spec = row.spec
    if spec is None:
        return "error"
    if spec.ids is not None:
        return "ids"
    if spec.chat is not None:
        return "chat"
    if spec.prompt is not None:
        return "prompt+answer"
    return "text"


def _preview(row: DataRow) -> str:
    spec = row.spec
    if spec is None:
        return str(row.error)
    if spec.ids is not None:
        return f"{len(spec.ids.get('input_ids') or [])} ids"
    if spec.chat is not None:
        first = next((m for m in spec.chat if isinstance(m, dict) and m.get("role") != "system"), {})
        text = f"{first.get('role', '?')}: {first.get('content', '')}"
    elif spec.prompt is not None:
        text = f"{spec.prompt} ⟶ {spec.answer}"
    else:
        text = spec.text or ""
    text = " ".join(str(text).split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def lint_badge(result: RowLint | None) -> Text:
    """`2E 1W` style: errors red, warnings yellow; `·` when clean, `…` while unknown."""
    if result is None:
        return Text("…", style="dim")
    errors, warnings = result.count("error"), result.count("warning")
    if not errors and not warnings:
        return Text("·", style="dim")
    badge = Text()
    if errors:
        badge.append(f"{errors}E", style="bold red")
    if warnings:
        badge.append((" " if errors else "") + f"{warnings}W", style="yellow")
    return badge


def loss_cell(value: float | None, error: str | None, computed: bool) -> Text:
    if not computed:
        return Text("…", style="dim")
    if error is not None:
        return Text("error", style="red")
    if value is None or not math.isfinite(value):
        return Text("undefined" if value is None else "NaN/inf", style="dim")
    return Text(number(value))


class DataBrowserScreen(Screen[None]):
    """List the rows of a data file; sort by loss or lints; Enter steps through the highlighted row."""

    BINDINGS = [
        Binding("enter", "open_row", "open in stepper", id="open-row", priority=True),
        Binding("s", "cycle_sort", "sort: row/loss/lints", id="sort"),
        Binding("L", "sort('loss')", "sort by loss", show=False, id="sort-loss"),
        Binding("I", "sort('lints')", "sort by lints", show=False, id="sort-lints"),
        Binding("O", "sort('row')", "file order", show=False, id="sort-row"),
        Binding("n", "page(1)", "next page", id="next-page"),
        Binding("p", "page(-1)", "previous page", id="previous-page"),
    ]
    DEFAULT_CSS = """
    DataBrowserScreen #browser-title { height: 1; padding: 0 1; text-style: bold; }
    DataBrowserScreen #browser-status { height: 1; padding: 0 1; color: $text-muted; }
    DataBrowserScreen #browser-detail { height: auto; max-height: 6; padding: 0 1; border-top: solid $secondary; }
    DataBrowserScreen DataTable { height: 1fr; }
    DataBrowserScreen ProgressBar { height: 1; padding: 0 1; }
    """

    def __init__(self, data_path: str, args: argparse.Namespace | None = None) -> None:
        super().__init__()
        self.data_path = data_path
        self.args = args or argparse.Namespace()
        self.data: DataFile | None = None
        self.page = 0
        self.sort_by = "row"
        self.rows: dict[int, DataRow] = {}  # this page's rows, by index
        self.lints: dict[int, RowLint] = {}  # cache over all pages
        self.losses: dict[int, tuple[float | None, str | None]] = {}  # cache over all pages
        self.total_rows = 0
        self.index_complete = False
        self.model_problem: str | None = None  # why losses cannot be computed
        self._tokenizer: Any = None  # loaded alone while the app still loads the model

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

    # -- workers: engine calls only, results by message ------------------------------------------------

    @work(thread=True, exit_on_error=False, group="browser-open")
    def open_file(self) -> None:
        from tokstep.tui.lint_cmd import open_data_from_args

        defaults = {"bos": "auto", "eos": "auto", "truncate": None}
        for name, value in defaults.items():
            if not hasattr(self.args, name):
                setattr(self.args, name, value)
        try:
            self.data = open_data_from_args(self.args, self.data_path)
            first_page = list(self.data.rows(0, PAGE_ROWS))
        except TokstepError as error:
            self.post_message(BrowserStatus(f"cannot open: {error}", fatal=True))
            return
        except Exception as error:  # noqa: BLE001 - said on screen, never a silent hang on "opening"
            self.post_message(BrowserStatus(f"cannot open: {type(error).__name__}: {error}", fatal=True))
            return
        self.post_message(PageRead(0, first_page))
        self.post_message(IndexProgress(len(self.data), self.data.complete))
        self.index_rest()

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
        if self.data is not None:
            self.post_message(PageRead(page, list(self.data.rows(page * PAGE_ROWS, (page + 1) * PAGE_ROWS))))

    @work(thread=True, exit_on_error=False, group="browser-stats", exclusive=True)
    def compute_stats(self, rows: list[DataRow]) -> None:
        """Tokenize + lint each row (tokenizer only), then trace each for its loss (one forward pass each)."""
        from tokstep.engine.lints import lint_row
        from tokstep.engine.trace import trace_sample

        worker = get_current_worker()
        tokenizer = self._tokenizer_now()
        if tokenizer is None:
            loaded = self._wait_for_model(worker)
            tokenizer = getattr(loaded, "tokenizer", None)
            if tokenizer is None:
                if loaded is not None:  # else _wait_for_model has said why
                    self.post_message(BrowserStatus("no tokenizer: cannot count tokens or lint"))
                return
        results: dict[int, RowLint] = {}
        for row in rows:
            if worker.is_cancelled:
                return
            result = self.lints.get(row.index) or lint_row(tokenizer, row)
            results[row.index] = result
            self.post_message(RowLinted(result))
        loaded = self._wait_for_model(worker)
        if loaded is None:
            return
        if getattr(loaded, "model", None) is None:
            self.post_message(BrowserStatus("no model to compute losses with"))
            return
        for row in rows:
            if worker.is_cancelled:
                return
            if row.index in self.losses:
                continue
            sample = results[row.index].sample
            if sample is None:
                self.post_message(RowLoss(row.index, None, row.error or "no sample"))
                continue
            try:
                loss = trace_sample(loaded, sample, top_k=1).loss
            except TokstepError as error:
                self.post_message(RowLoss(row.index, None, str(error)))
                continue
            except Exception as error:  # noqa: BLE001 - one row must not stop the others
                self.post_message(RowLoss(row.index, None, f"{type(error).__name__}: {error}"))
                continue
            self.post_message(RowLoss(row.index, loss))

    def _tokenizer_now(self) -> Any:
        """The loaded model's tokenizer, or (while a large model still loads) the tokenizer alone."""
        loaded = getattr(self.app, "loaded", None)
        if getattr(loaded, "tokenizer", None) is not None:
            return loaded.tokenizer
        if self._tokenizer is None:
            spec = getattr(self.app, "model_spec", None)
            if spec is None:
                return None
            from tokstep.engine.loading import load_tokenizer

            try:
                self._tokenizer = load_tokenizer(
                    spec.name_or_path, revision=spec.revision, trust_remote_code=spec.trust_remote_code
                )
            except Exception:  # noqa: BLE001 - the model load will report the problem
                return None
        return self._tokenizer

    def _wait_for_model(self, worker: Any) -> Any:
        """The app's LoadedModel once it is there (the app loads it in its own worker), else None."""
        ready = getattr(self.app, "model_ready", None)
        while not worker.is_cancelled:
            if getattr(self.app, "loaded", None) is not None:
                return self.app.loaded
            error = getattr(self.app, "load_error", None)
            if error:
                self.post_message(BrowserStatus(f"no model: {error}"))
                return None
            if isinstance(ready, threading.Event):
                ready.wait(0.2)
            else:
                time.sleep(0.2)
        return None

    # -- messages from the workers ---------------------------------------------------------------------

    def on_page_read(self, message: PageRead) -> None:
        if self.data is not None and self.data.format == "parquet":
            self.query_one(DataTable).columns["line"].label = Text("row")  # Parquet has no lines
        self.page = message.page
        self.rows = {row.index: row for row in message.rows}
        self._fill_table()
        pending = [row for row in message.rows if row.index not in self.losses]
        bar = self.query_one(ProgressBar)
        bar.update(total=len(message.rows), progress=len(message.rows) - len(pending))
        self._update_status()
        self.compute_stats(message.rows)

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

    def action_page(self, step: int) -> None:
        page = self.page + step
        if page < 0 or (
            self.data is not None and page * PAGE_ROWS >= max(len(self.data), 1) and self.index_complete
        ):
            self.notify("no more rows that way", timeout=2)
            return
        self.read_page(page)

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
                Text(_form(row), style="red" if row.error else "dim"),
                _count(None if result is None else result.num_tokens, result is None),
                _count(None if result is None else result.num_supervised, result is None),
                lint_badge(result) if row.error is None or result else Text("1E", style="bold red"),
                loss_cell(loss, error, index in self.losses),
                Text(_preview(row), style="red" if row.error else ""),
                key=str(index),
            )
        if keep is not None and keep in self.rows:
            table.move_cursor(row=table.get_row_index(str(keep)))

    def _highlighted(self) -> int | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - no cursor yet
            return None
        return None if key.value is None else int(key.value)

    def _show_detail(self, index: int) -> None:
        row, result = self.rows.get(index), self.lints.get(index)
        detail = Text()
        if row is not None and row.error:
            detail.append(f"{row.where}: {row.error}", style="red")
        elif result is not None:
            if not result.findings:
                detail.append("no findings", style="dim")
            for f in result.findings[:4]:
                style = {"error": "bold red", "warning": "yellow"}.get(f.severity, "cyan")
                detail.append(f"{f.severity} ", style=style)
                detail.append(f"{f.code}: ", style="bold")
                detail.append(f.message + "\n")
            if len(result.findings) > 4:
                detail.append(f"… {len(result.findings) - 4} more", style="dim")
        loss_error = self.losses.get(index, (None, None))[1]
        if loss_error and row is not None and not row.error:
            detail.append(f"\nloss: {loss_error}", style="red")
        self.query_one("#browser-detail", Static).update(detail)

    def _update_status(self) -> None:
        first = self.page * PAGE_ROWS + 1
        last = self.page * PAGE_ROWS + len(self.rows)
        total = f"{self.total_rows:,}" if self.index_complete else f"≥ {self.total_rows:,} (counting …)"
        computed = sum(1 for i in self.rows if i in self.losses)
        waiting = not computed and getattr(self.app, "loaded", None) is None
        note = self.model_problem or ("waiting for the model" if waiting else "")
        model = f"  ·  {note}" if note else ""
        text = (
            f"rows {first:,}–{last:,} of {total}  ·  sorted by {self.sort_by}  ·  "
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
        opener = getattr(self.app, "open_sample", None)
        if opener is None:
            self.notify("this app cannot open samples", severity="error")
            return
        opener(row.spec, row.spec.name)


def _count(value: int | None, pending: bool = False) -> Text:
    if pending:
        return Text("…", style="dim")
    return Text("—" if value is None else f"{value:,}", justify="right")
