"""The app with the real engine behind it: load in a worker, failures shown in the app and as one line,
samples opened from a data browser, lints and the token inspector wired to the engine's modules."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import tiny
from synthetic import synthetic_result
from textual.screen import Screen
from textual.widgets import Static
from tui_wait import wait_for as poll

from tokstep.engine.inputs.spec import SampleSpec
from tokstep.engine.model.loading import ModelSpec
from tokstep.tui.cli.run_config import RunConfig
from tokstep.tui.screens.app import EngineBackend, PrecomputedBackend, TokstepApp, run_app
from tokstep.tui.screens.backend import DataOptions
from tokstep.tui.screens.stepper import StepperScreen

ROOT = Path(__file__).resolve().parent.parent
PROMPT, ANSWER = "Question: what is the capital of France?\nAnswer:", " Paris is the capital of France."


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny Llama with a SentencePiece-style tokenizer, saved like a user's checkpoint folder."""
    tokenizer = tiny.sentencepiece_bpe(chat_template=tiny.CHATML)
    return tiny.save_model_folder(tmp_path_factory.mktemp("tiny-llama"), tokenizer)


def spec_of(folder: str) -> ModelSpec:
    return ModelSpec(name_or_path=folder, device="cpu", dtype="float32")


async def wait_for(pilot, condition, what: str, seconds: float = 60.0) -> None:
    await poll(pilot, condition, what, tries=int(seconds / 0.05), step=0.05)


def plain(widget) -> str:
    return widget.plain_text() if hasattr(widget, "plain_text") else str(widget.render())


async def test_model_loads_in_a_worker_and_the_last_position_matches_hf(model_dir):
    app = TokstepApp(spec_of(model_dir), SampleSpec(prompt=PROMPT, answer=ANSWER, name="qa"))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, StepperScreen), "the stepper")
        stepper = app.screen
        await wait_for(pilot, lambda: stepper.result.reference_computed, "HF's reference")
        assert stepper.result.sample.name == "qa"
        await pilot.press("end")
        loss = plain(stepper.query_one("#loss"))
        assert "✓ match" in loss and f"{stepper.result.reference:.6f}" in loss


class SlowReferenceBackend(EngineBackend):
    """The real engine, but HF's reference waits until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def reference(self, loaded, result, mode):
        self.gate.wait(30)
        return super().reference(loaded, result, mode)


async def test_stepper_shows_before_the_reference_and_the_badge_updates_when_it_arrives(model_dir):
    backend = SlowReferenceBackend()
    app = TokstepApp(spec_of(model_dir), SampleSpec(prompt=PROMPT, answer=ANSWER, name="qa"), backend=backend)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, StepperScreen), "the stepper")
        stepper = app.screen
        await pilot.press("end")
        assert stepper.result.reference_pending
        assert "computing HF's reference" in plain(stepper.query_one("#loss"))
        backend.gate.set()
        await wait_for(pilot, lambda: stepper.result.reference_computed, "HF's reference")
        loss = plain(stepper.query_one("#loss"))
        assert "✓ match" in loss and f"{stepper.result.reference:.6f}" in loss
        assert stepper.result.reference == pytest.approx(stepper.result.trace.loss, rel=1e-6)


class GatedBackend(EngineBackend):
    """The real engine, but loading waits until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def load(self, spec):
        self.gate.wait(30)
        return super().load(spec)


async def test_loading_state_is_visible_and_the_ui_responsive_while_the_model_loads(model_dir):
    backend = GatedBackend()
    app = TokstepApp(spec_of(model_dir), SampleSpec(text="Hello world! Hello there."), backend=backend)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        assert app.query_one("#spinner").display and "loading" in plain(app.query_one("#loading-log"))
        assert not isinstance(app.screen, StepperScreen)
        backend.gate.set()
        await wait_for(pilot, lambda: isinstance(app.screen, StepperScreen), "the stepper")
        assert "model loaded" in plain(app.query_one("#loading-log"))
        assert not app.query_one("#spinner").display  # covered: it must not animate under the stepper


async def test_load_failure_is_shown_in_the_app_with_the_reason():
    app = TokstepApp(spec_of("/nonexistent/model/folder"), SampleSpec(text="hi there"))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.load_error is not None, "the load error")
        await pilot.pause()
        shown = plain(app.query_one("#loading-error"))
        assert "could not start" in shown and "no such folder: /nonexistent/model/folder" in shown
        assert not app.query_one("#spinner").display
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    assert app.load_error == "no such folder: /nonexistent/model/folder"


async def test_a_sample_the_model_cannot_take_is_shown_as_a_failure(model_dir):
    app = TokstepApp(spec_of(model_dir), SampleSpec(ids={"input_ids": [1, 99999]}))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.load_error is not None, "the trace error")
        assert "outside the model's vocabulary" in app.load_error
        assert "outside the model's vocabulary" in plain(app.query_one("#loading-error"))


def test_run_app_without_a_terminal_prints_the_load_failure_as_one_line(capsys):
    # GIVEN pytest's captured (non-terminal) stdin/stdout
    code = run_app(RunConfig(), spec_of("/nonexistent/m"), SampleSpec(text="hi there"))
    err = capsys.readouterr().err
    assert code == 2
    assert err == "tokstep: error: no such folder: /nonexistent/m\n"


def test_run_app_without_a_terminal_says_it_needs_one_when_the_load_works(capsys, model_dir):
    code = run_app(RunConfig(), spec_of(model_dir), SampleSpec(text="Hello world!"))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "needs a terminal" in err and "tokstep report" in err


class FakeBrowser(Screen[None]):
    """Stands in for the data browser: a screen underneath that opens samples through the app."""

    def compose(self):
        yield Static("fake browser", id="fake-browser")


async def test_open_sample_pushes_a_stepper_and_escape_returns_to_the_browser(model_dir):
    app = TokstepApp(spec_of(model_dir), sample_spec=None)
    async with app.run_test(size=(100, 30)) as pilot:
        browser = FakeBrowser()
        await app.push_screen(browser)
        app.open_sample(SampleSpec(text="I love dogs and I love cats."), "row 7")
        await wait_for(pilot, lambda: isinstance(app.screen, StepperScreen), "the stepper")
        assert app.screen.result.sample.name == "row 7" and app.screen.can_go_back
        await pilot.press("escape")
        assert app.screen is browser
        app.open_sample(SampleSpec(text="The quick brown fox."), "row 8")
        await wait_for(pilot, lambda: isinstance(app.screen, StepperScreen), "the second stepper")
        assert app.screen.result.sample.name == "row 8"


async def test_a_row_that_fails_to_trace_leaves_the_browser_open(model_dir):
    app = TokstepApp(spec_of(model_dir), sample_spec=None)
    async with app.run_test(size=(100, 30)) as pilot:
        browser = FakeBrowser()
        await app.push_screen(browser)
        app.open_sample(SampleSpec(ids={"input_ids": [5]}), "row 1")
        await wait_for(pilot, lambda: app.loaded is not None and not app.workers, "the trace worker", 30)
        await pilot.pause()
        assert app.screen is browser and app.load_error is None


async def test_data_flag_puts_the_browser_screen_underneath(model_dir, monkeypatch):
    made: list[tuple[str, object]] = []

    class RecordingBrowser(FakeBrowser):
        def __init__(self, data_path, *, backend, model_spec, options):
            super().__init__()
            made.append((data_path, options))

        def model_loaded(self, model) -> None:
            made.append(("model", model))

    monkeypatch.setattr("tokstep.tui.screens.app.DataBrowserScreen", RecordingBrowser)
    options = DataOptions(bos="none")
    app = TokstepApp(spec_of(model_dir), SampleSpec(text="unused"), data="rows.jsonl", data_options=options)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.loaded is not None, "the model")
        await pilot.pause(0.2)
        assert isinstance(app.screen, RecordingBrowser)
        assert made == [("rows.jsonl", options), ("model", app.loaded)]  # told, not polled; nothing traced


async def test_lints_and_inspector_come_from_the_engine(model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    bos = tokenizer.bos_token_id
    text_ids = tokenizer("Hello world! Hello there.", add_special_tokens=False)["input_ids"]
    app = TokstepApp(spec_of(model_dir), SampleSpec(ids={"input_ids": [bos, bos, *text_ids]}))
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, StepperScreen), "the stepper")
        stepper = app.screen
        codes = {finding.code for finding in stepper.findings}
        assert "double-bos" in codes
        from tokstep.tui.severity import lint_tally, severity_counts

        tally = lint_tally(severity_counts(stepper.findings)).plain  # the browser's rule: `1E`, `1E 1W`...
        assert f"⚠ {tally} lint" in plain(stepper.query_one("#status"))
        await pilot.press("right")
        inspector = plain(stepper.query_one("#inspector"))
        target = text_ids[0]  # position 1 predicts token 2, the first text token
        assert "target #2" in inspector and repr(tokenizer.convert_ids_to_tokens(target)) in inspector


class SlowFirstTrace(PrecomputedBackend):
    """Serves a synthetic result named after the sample; the first trace waits until the test lets it go."""

    def __init__(self, result) -> None:
        super().__init__(result, findings=[])
        self.release_first = threading.Event()
        self.calls = 0

    def trace(self, loaded, sample, top_k, progress):
        self.calls += 1
        if self.calls == 1:
            self.release_first.wait(10)
        return replace(self.result, sample=replace(self.result.sample, name=sample.name))


async def test_a_newer_open_sample_replaces_one_still_tracing():
    backend = SlowFirstTrace(synthetic_result(50))
    app = TokstepApp(sample_spec=None, backend=backend)
    async with app.run_test(size=(100, 30)) as pilot:
        browser = FakeBrowser()
        await app.push_screen(browser)
        app.open_sample(SampleSpec(text="a"), "row A")
        await wait_for(pilot, lambda: backend.calls == 1, "the first trace to start")
        app.open_sample(SampleSpec(text="b"), "row B")
        await wait_for(pilot, lambda: isinstance(app.screen, StepperScreen), "the second stepper")
        backend.release_first.set()
        await pilot.pause(0.3)
        steppers = [s for s in app.screen_stack if isinstance(s, StepperScreen)]
        assert [s.result.sample.name for s in steppers] == ["row B"]


QUIT_DURING_LOAD = """
import time
from tokstep.engine.inputs.spec import SampleSpec
from tokstep.tui.screens.app import EngineBackend, TokstepApp

class NeverLoads(EngineBackend):
    def load(self, spec):
        time.sleep(60)  # a multi-gigabyte checkpoint, say

async def press_q(pilot):
    await pilot.pause(0.5)
    await pilot.press("q")

TokstepApp(sample_spec=SampleSpec(text="hi"), backend=NeverLoads()).run(headless=True, auto_pilot=press_q)
print("exited")
"""


def test_quitting_while_the_model_loads_does_not_wait_for_the_load():
    # A real process: Python joins Textual's worker threads at exit, which the in-process Pilot never shows.
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", QUIT_DURING_LOAD], capture_output=True, text=True, timeout=50, cwd=ROOT
    )
    assert done.stdout.strip().endswith("exited"), done.stderr
    assert time.monotonic() - started < 30  # not the 60 s the load would take


class SkippingBackend(EngineBackend):
    """The real trace; the reference reports that it was skipped (as over the memory budget)."""

    NOTE = "HF reference skipped: full logits would take 9.9 GiB (budget 512 MiB); --reference full forces it"

    def reference(self, loaded, result, mode):
        from dataclasses import replace

        return replace(result, reference_pending=False, reference_note=self.NOTE)


async def test_skipped_reference_says_why_and_how_to_force_it(model_dir):
    app = TokstepApp(
        spec_of(model_dir), SampleSpec(prompt=PROMPT, answer=ANSWER, name="qa"), backend=SkippingBackend()
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, StepperScreen), "the stepper")
        stepper = app.screen
        await wait_for(pilot, lambda: not stepper.result.reference_pending, "the reference verdict")
        await pilot.press("end")
        loss = plain(stepper.query_one("#loss"))
        assert "skipped: --reference full forces it" in loss and "match" not in loss
        assert any(SkippingBackend.NOTE in str(n.message) for n in app._notifications)


async def test_reference_off_from_the_command_line_is_said_in_the_panel(model_dir):
    app = TokstepApp(spec_of(model_dir), SampleSpec(prompt=PROMPT, answer=ANSWER, name="qa"), reference="off")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, StepperScreen), "the stepper")
        stepper = app.screen
        await wait_for(pilot, lambda: not stepper.result.reference_pending, "the reference verdict")
        await pilot.press("end")
        assert not stepper.result.reference_computed
        assert "off (--reference to compute it)" in plain(stepper.query_one("#loss"))
