"""The browser driven through its one seam: a fake `Backend` (no engine, no model) whose answers the
browser's workers turn into the production messages. Keys, the trained-text column, failures shown in the
screen while the app keeps running."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from rich.console import Console
from textual.widgets import DataTable

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.data import DataRow
from tokstep.engine.inputs.sample import MaskReason, Sample
from tokstep.engine.inputs.spec import SampleSpec
from tokstep.engine.lints.catalogue import Finding
from tokstep.engine.lints.rows import RowLint
from tokstep.engine.model.loading import ModelSpec
from tokstep.tui.screens import browser
from tokstep.tui.screens.app import TokstepApp
from tokstep.tui.screens.backend import Backend
from tokstep.tui.screens.browser import DataBrowserScreen
from tokstep.tui.screens.dialogs import HelpScreen
from tokstep.tui.screens.stepper import StepperScreen

SIZE = (140, 40)


class FakeData:
    """A data file of `n` text rows, all indexed."""

    format = "jsonl"
    has_lines = True  # rows numbered by line, as JSONL
    complete = True

    def __init__(self, n: int) -> None:
        self._rows = [
            DataRow(i, i + 1, SampleSpec(text=f"row {i}", name=f"fake.jsonl:{i + 1}")) for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self._rows)

    def index_more(self) -> bool:
        return True

    def rows(self, start: int = 0, stop: int | None = None):
        return iter(self._rows[start:stop])

    def close(self) -> None:
        pass


def tiny_sample() -> Sample:
    ids = np.array([1, 2, 3, 4])
    labels = np.array([-100, -100, 3, 4])
    reasons = (MaskReason.FIRST, MaskReason.PROMPT, MaskReason.SUPERVISED, MaskReason.SUPERVISED)
    return Sample(ids, labels, reasons, kind="prompt+answer")


class FakeBackend(Backend):
    """Canned answers: row i trains "answer i", has loss i / 10 (row 3's loss fails), row 2 has a finding."""

    def __init__(self, rows: int = 6, open_error: str | None = None) -> None:
        self.n, self.open_error = rows, open_error
        self.model_gate = threading.Event()
        self.model_gate.set()
        self.traced: list[str] = []

    def load(self, spec):
        self.model_gate.wait(10)
        return "model"

    def trace(self, loaded, sample, top_k, progress):
        self.traced.append(sample.name)
        raise TokstepError(f"{sample.name} is too long for this model")

    def lint(self, result, sample=None):
        return []

    def inspect_token(self, tokenizer, input_ids, index):
        raise AssertionError("not used here")

    def load_tokenizer(self, spec):
        return "tokenizer"

    def tokenizer_of(self, loaded):
        return "tokenizer"

    def open_data(self, path, options):
        if self.open_error:
            raise TokstepError(self.open_error)
        return FakeData(self.n)

    def lint_row(self, tokenizer, row):
        findings = (
            (Finding("no-eos", "warning", (3,), "the answer does not end in EOS"),) if row.index == 2 else ()
        )
        return RowLint(row, tiny_sample(), findings, 4, 2, trained=f"answer {row.index}\n")

    def row_loss(self, loaded, sample):
        index = self.calls = getattr(self, "calls", -1) + 1
        if index == 3:
            raise TokstepError("row 3 could not be traced")
        return index / 10


async def browser_ready(app, pilot, losses: int) -> DataBrowserScreen:
    for _ in range(300):
        screen = app.screen
        if isinstance(screen, DataBrowserScreen) and len(screen.losses) >= losses:
            await pilot.pause()
            return screen
        await pilot.pause(0.02)
    raise AssertionError(f"browser not ready: {type(app.screen).__name__}")


def highlighted_line(screen: DataBrowserScreen) -> str:
    table = screen.query_one(DataTable)
    return str(table.get_row_at(table.cursor_row)[0])


async def test_the_trained_text_column_and_the_losses_come_from_the_backend():
    app = TokstepApp(None, None, data="fake.jsonl", backend=FakeBackend())
    async with app.run_test(size=SIZE) as pilot:
        screen = await browser_ready(app, pilot, 6)
        table = screen.query_one(DataTable)
        assert str(table.columns["preview"].label) == "trained text"
        assert [str(table.get_cell(str(i), "preview")) for i in range(6)] == [
            f"answer {i}↵" for i in range(6)
        ]
        assert str(table.get_cell("1", "loss")) == "0.1000" and str(table.get_cell("3", "loss")) == "error"
        assert str(table.get_cell("2", "lints")) == "1W"
        await pilot.press("down", "down")  # row 3 (line 3): its finding and how to fix it
        detail = str(screen.query_one("#browser-detail").render())
        assert "no-eos" in detail and "fix: Append tokenizer.eos_token" in detail


@pytest.mark.parametrize(("last", "first"), [("end", "home"), ("G", "g")])
async def test_end_and_G_go_to_the_last_row_across_pages(monkeypatch, last, first):
    monkeypatch.setattr(browser, "PAGE_ROWS", 4)
    app = TokstepApp(None, None, data="fake.jsonl", backend=FakeBackend(rows=10))
    async with app.run_test(size=SIZE) as pilot:
        screen = await browser_ready(app, pilot, 4)
        await pilot.press(last)
        for _ in range(100):
            await pilot.pause(0.02)
            if screen.page == 2:
                break
        await pilot.pause()
        assert screen.page == 2 and highlighted_line(screen) == "10"  # the last row, numbered from 1
        await pilot.press(first)
        for _ in range(100):
            await pilot.pause(0.02)
            if screen.page == 0:
                break
        await pilot.pause()
        assert screen.page == 0 and highlighted_line(screen) == "1"


async def test_end_on_a_single_page_goes_to_its_last_row():
    app = TokstepApp(None, None, data="fake.jsonl", backend=FakeBackend(rows=6))
    async with app.run_test(size=SIZE) as pilot:
        screen = await browser_ready(app, pilot, 6)
        await pilot.press("end")
        assert highlighted_line(screen) == "6"
        await pilot.press("g")
        assert highlighted_line(screen) == "1"


async def test_s_cycles_the_sort_and_the_status_names_it():
    app = TokstepApp(None, None, data="fake.jsonl", backend=FakeBackend())
    async with app.run_test(size=SIZE) as pilot:
        screen = await browser_ready(app, pilot, 6)
        await pilot.press("s")
        assert screen.sort_by == "loss" and screen.order()[0] == 5
        assert "sorted by loss" in str(screen.query_one("#browser-status").render())
        await pilot.press("s")
        assert screen.sort_by == "lints" and screen.order()[0] == 2
        await pilot.press("s")  # labels ≠ chat structure: no fake row has one, so file order within
        assert screen.sort_by == "disagree" and "labels ≠ chat" in str(
            screen.query_one("#browser-status").render()
        )
        await pilot.press("s")
        assert screen.sort_by == "row" and screen.order() == list(range(6))


async def test_a_row_that_cannot_be_traced_is_a_notification_and_the_browser_stays():
    backend = FakeBackend()
    app = TokstepApp(None, None, data="fake.jsonl", backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = await browser_ready(app, pilot, 6)
        await pilot.press("down", "enter")
        for _ in range(100):
            await pilot.pause(0.02)
            if any("too long" in str(n.message) for n in app._notifications):
                break
        assert backend.traced == ["fake.jsonl:2"]
        assert any("fake.jsonl:2 is too long" in str(n.message) for n in app._notifications)
        assert app.screen is screen and app.is_running and not isinstance(app.screen, StepperScreen)


async def test_a_file_that_cannot_be_opened_is_shown_and_the_app_keeps_running():
    app = TokstepApp(None, None, data="fake.jsonl", backend=FakeBackend(open_error="data file not found: x"))
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(100):
            await pilot.pause(0.02)
            if "cannot open" in str(app.screen.query_one("#browser-status").render()):
                break
        assert "cannot open: data file not found: x" in str(app.screen.query_one("#browser-status").render())
        assert any("data file not found" in str(n.message) for n in app._notifications)
        assert app.is_running


async def test_rows_are_linted_while_the_model_loads_and_losses_follow_it():
    backend = FakeBackend()
    backend.model_gate.clear()
    app = TokstepApp(ModelSpec(), None, data="fake.jsonl", backend=backend)  # the spec names the tokenizer
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        for _ in range(100):
            await pilot.pause(0.02)
            if len(screen.lints) == 6:
                break
        assert len(screen.lints) == 6 and screen.losses == {} and screen.tokenizer == "tokenizer"
        backend.model_gate.set()
        screen = await browser_ready(app, pilot, 6)
        assert screen.model == "model"


def rendered(widget) -> str:
    console = Console(width=120, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


async def test_the_help_screen_footer_and_bindings_agree():
    app = TokstepApp(None, None, data="fake.jsonl", backend=FakeBackend())
    async with app.run_test(size=SIZE) as pilot:
        await browser_ready(app, pilot, 6)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = "\n".join(rendered(w) for w in app.screen.query("Static"))
        for binding in DataBrowserScreen.BINDINGS:
            assert (binding.tooltip or binding.description) in help_text
        await pilot.press("escape")
        assert isinstance(app.screen, DataBrowserScreen)


def test_data_options_come_from_the_run_configuration():
    from tokstep.tui.cli.run_config import RunConfig
    from tokstep.tui.screens.backend import DataOptions

    config = RunConfig(text_column="body", answer_column="reply", bos="none", truncate=5)
    options = DataOptions.from_config(config)
    assert options.columns.text == "body" and options.columns.answer == ("reply",)
    assert (options.bos, options.eos, options.truncate) == ("none", "auto", 5)


class ScanBackend(FakeBackend):
    """A scan folder that cannot be read (the scan browser reaches the engine through `open_scan`)."""

    def open_scan(self, folder):
        raise TokstepError(f"{folder} is not a finished scan")


@pytest.mark.parametrize("backend", [ScanBackend(), FakeBackend()])
async def test_a_scan_that_cannot_be_opened_is_one_line_in_the_scan_browser(backend):
    from tokstep.tui.screens.scan_browser import ScanBrowserScreen

    # GIVEN a scan browser whose backend cannot open the folder (or does not open scans at all)
    app = TokstepApp(None, None, backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(ScanBrowserScreen("runs/scan", backend=backend))

        def status() -> str:
            return str(app.screen.query_one("#scan-status").render())

        for _ in range(100):
            await pilot.pause(0.02)
            if "opening" not in status():
                break
        # THEN the status says why in one line, and the app keeps running
        expected = (
            "not a finished scan" if isinstance(backend, ScanBackend) else "does not support opening a scan"
        )
        assert expected in status() and "\n" not in status().strip()
        assert app.is_running
