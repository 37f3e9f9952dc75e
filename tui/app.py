"""The Textual app behind `tokstep` (no sub-command): load the model in a worker, then step through a trace.

The worker only calls the engine and posts messages; the app turns messages into screens. A data browser
(`tui.browser.DataBrowserScreen`) may sit underneath, calling `open_sample` for each row the user opens.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.message import Message
from textual.widgets import Footer, LoadingIndicator, Static
from textual.worker import get_current_worker

from tokstep.engine.errors import TokstepError

if TYPE_CHECKING:
    from tokstep.engine.inputs import SampleSpec
    from tokstep.engine.loading import ModelSpec
    from tokstep.engine.results import TraceResult

Progress = Callable[[str], None]
T = TypeVar("T")


class Backend:
    """The engine calls the app makes, in a worker thread. Tests and benchmarks substitute their own."""

    def load(self, spec: ModelSpec) -> Any:
        from tokstep.engine.session import load

        return load(spec)

    def trace(self, loaded: Any, sample: SampleSpec, top_k: int, progress: Progress) -> TraceResult:
        from tokstep.engine.session import run_trace

        return run_trace(loaded, sample, top_k=top_k, progress=progress)

    def lint(self, result: TraceResult, sample: SampleSpec | None = None) -> list[Any]:
        """`engine.lints.lint_sample` findings for the sample, [] while that module does not exist."""
        try:
            from tokstep.engine.lints import lint_sample
        except ImportError:
            return []
        return list(lint_sample(result.texts.tokenizer, result.sample, sample))


class PrecomputedBackend(Backend):
    """Serves a finished TraceResult without any model: for tests, benchmarks and notebooks."""

    def __init__(self, result: TraceResult, findings: Sequence[Any] | None = None) -> None:
        self.result = result
        self.findings = findings

    def load(self, spec: ModelSpec) -> Any:
        return self.result.info

    def trace(self, loaded: Any, sample: SampleSpec, top_k: int, progress: Progress) -> TraceResult:
        return self.result

    def lint(self, result: TraceResult, sample: SampleSpec | None = None) -> list[Any]:
        return list(self.findings) if self.findings is not None else super().lint(result, sample)


class Abandoned(Exception):
    """The worker was cancelled (the app is closing, or a newer request replaced it)."""


def abandonable(call: Callable[[], T]) -> T:
    """Run a blocking engine call from a thread worker so that cancelling the worker never waits for it.

    Textual's thread workers run in an executor that is joined when the app exits: quitting during a
    large model load would hang until the load finished. The call runs in a daemon thread instead; the
    worker polls it and raises `Abandoned` as soon as it is cancelled, leaving the thread to die with the
    process. Errors from the call are re-raised here.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the worker below
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=run, name="tokstep-engine", daemon=True).start()
    worker = get_current_worker()
    while not done.wait(0.05):
        if worker.is_cancelled:
            raise Abandoned
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class LoadProgress(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class TraceReady(Message):
    def __init__(self, result: TraceResult, findings: list[Any], from_browser: bool) -> None:
        super().__init__()
        self.result = result
        self.findings = findings
        self.from_browser = from_browser


class LoadFailed(Message):
    def __init__(self, reason: str, from_browser: bool) -> None:
        super().__init__()
        self.reason = reason
        self.from_browser = from_browser


class LoadingView(Vertical):
    """What the user sees while the model loads: a spinner, each step with its time, or the failure."""

    def compose(self) -> ComposeResult:
        with Center():
            yield Static(Text("tokstep", style="bold"), id="loading-title")
        yield LoadingIndicator(id="spinner")
        yield Static("", id="loading-log")
        yield Static("", id="loading-error")

    def add_step(self, text: str, elapsed: float) -> None:
        log = self.query_one("#loading-log", Static)
        log.update(Text.assemble(str(log.content) if str(log.content) else "", f"[{elapsed:5.1f}s] {text}\n"))

    def cover(self) -> None:
        """Another screen now hides this one: stop the spinner, whose animation would repaint that screen."""
        self.query_one("#spinner").display = False

    def fail(self, reason: str) -> None:
        self.query_one("#spinner").display = False
        self.query_one("#loading-error", Static).update(
            Text.assemble(
                ("✗ tokstep could not start\n", "bold red"), (reason, "bold"), "\n\npress q to quit"
            )
        )


class TokstepApp(App[int]):
    """Loads once, traces samples on request, and shows each trace in a StepperScreen."""

    CSS_PATH = "tokstep.tcss"
    TITLE = "tokstep"
    ENABLE_COMMAND_PALETTE = False  # every action has a key; the footer needs the room
    BINDINGS = [Binding("q", "quit", "quit", id="quit")]

    def __init__(
        self,
        model_spec: ModelSpec | None = None,
        sample_spec: SampleSpec | None = None,
        *,
        top_k: int = 10,
        data: str | None = None,
        args: argparse.Namespace | None = None,
        backend: Backend | None = None,
    ) -> None:
        super().__init__()
        self.model_spec = model_spec
        self.sample_spec = sample_spec
        self.top_k = top_k
        self.data = data
        self.args = args
        self.backend = backend or Backend()
        self.load_error: str | None = None
        self.loaded: Any = None
        self.model_ready = threading.Event()  # set once loading finished, well or not
        self.started = time.monotonic()

    def compose(self) -> ComposeResult:
        yield LoadingView(id="loading")
        yield Footer()

    def on_mount(self) -> None:
        name = self.model_spec.display_name if self.model_spec is not None else "model"
        self.query_one(LoadingView).add_step(f"loading {name}", 0.0)
        self.load_model()
        if self.data:
            from tokstep.engine.scan_files import is_scan

            if is_scan(self.data):  # a folder written by `tokstep scan`: sort/filter over every row
                from tokstep.tui.scan_browser import ScanBrowserScreen

                self.push_screen(ScanBrowserScreen(self.data, getattr(self.args, "scan_view", None)))
            else:
                from tokstep.tui.browser import (
                    DataBrowserScreen,  # a colleague's screen; imported only when asked for
                )

                self.push_screen(DataBrowserScreen(self.data, self.args))
            self.query_one(LoadingView).cover()
        elif self.sample_spec is not None:
            self.trace_sample(self.sample_spec, from_browser=False)

    # -- workers: engine calls only, results by message ------------------------------------------------

    @work(thread=True, exit_on_error=False, group="load")
    def load_model(self) -> None:
        try:
            self.loaded = abandonable(lambda: self.backend.load(self.model_spec))  # type: ignore[arg-type]
            self.post_message(LoadProgress("model loaded"))
        except Abandoned:
            return
        except TokstepError as error:
            self.load_error = str(error)
        except Exception as error:  # noqa: BLE001 - shown as one line, like the CLI does
            self.load_error = f"internal error: {type(error).__name__}: {error}"
        finally:
            self.model_ready.set()
        if self.load_error:
            self.post_message(LoadFailed(self.load_error, from_browser=bool(self.data)))

    @work(thread=True, exit_on_error=False, group="trace", exclusive=True)
    def trace_sample(self, sample: SampleSpec, from_browser: bool) -> None:
        try:
            abandonable(lambda: self.model_ready.wait())
            if self.load_error:
                return  # load_model has reported it
            progress = lambda text: self.post_message(LoadProgress(text))  # noqa: E731
            result = abandonable(lambda: self.backend.trace(self.loaded, sample, self.top_k, progress))
            findings = self._lint(result, sample)
        except Abandoned:
            return
        except TokstepError as error:
            self.post_message(LoadFailed(str(error), from_browser))
            return
        except Exception as error:  # noqa: BLE001
            self.post_message(LoadFailed(f"internal error: {type(error).__name__}: {error}", from_browser))
            return
        if not get_current_worker().is_cancelled:  # a newer open_sample replaced this one: drop it
            self.post_message(TraceReady(result, findings, from_browser))

    def _lint(self, result: TraceResult, sample: SampleSpec) -> list[Any]:
        try:
            return self.backend.lint(result, sample)
        except Exception as error:  # noqa: BLE001 - lints are advice; a broken linter must not block stepping
            self.post_message(LoadProgress(f"lints unavailable: {type(error).__name__}: {error}"))
            return []

    def open_sample(self, sample_spec: SampleSpec, name: str) -> None:
        """Trace one sample with the already-loaded model and push a stepper for it (the browser calls this)."""
        self.notify(f"tracing {name} …", timeout=2)
        self.trace_sample(replace(sample_spec, name=name), from_browser=True)

    # -- messages from the workers ---------------------------------------------------------------------

    def on_load_progress(self, message: LoadProgress) -> None:
        if not self.query(LoadingView):
            return
        self.query_one(LoadingView).add_step(message.text, time.monotonic() - self.started)

    def on_trace_ready(self, message: TraceReady) -> None:
        from tokstep.tui.stepper import StepperScreen

        result = message.result
        self.query_one(LoadingView).cover()
        if result.nonfinite_error:
            self.notify(result.nonfinite_error, severity="error", timeout=10)
        self.push_screen(
            StepperScreen(
                result, findings=message.findings, can_go_back=message.from_browser, no_color=self.no_color
            )
        )

    def on_load_failed(self, message: LoadFailed) -> None:
        if message.from_browser and self.loaded is not None:
            self.notify(message.reason, title="cannot open this sample", severity="error", timeout=10)
            return
        self.load_error = message.reason
        if message.from_browser:
            self.notify(message.reason, title="cannot load the model", severity="error", timeout=30)
        self.query_one(LoadingView).fail(message.reason)


def _headless_check(app: TokstepApp) -> int:
    """Not a terminal: run the same load (and trace) so failures still print as one line, then explain."""
    try:
        loaded = app.backend.load(app.model_spec)  # type: ignore[arg-type]
        if app.sample_spec is not None and not app.data:
            app.backend.trace(loaded, app.sample_spec, app.top_k, lambda _text: None)
    except TokstepError as error:
        print(f"tokstep: error: {error}", file=sys.stderr)
        return 2
    print(
        "tokstep: error: the interactive debugger needs a terminal; use `tokstep report` to print the table",
        file=sys.stderr,
    )
    return 2


def run_app(args: argparse.Namespace, model_spec: ModelSpec, sample_spec: SampleSpec) -> int:
    """Entry point for `tokstep` with no sub-command. Returns the exit code; a load failure is one line."""
    app = TokstepApp(
        model_spec,
        sample_spec,
        top_k=getattr(args, "top_k", 10),
        data=getattr(args, "data", None),
        args=args,
    )
    if not (sys.stdin.isatty() and sys.stderr.isatty()):  # Textual draws on stderr; stdout may be piped
        return _headless_check(app)
    app.run()
    if app.load_error:
        print(f"tokstep: error: {app.load_error}", file=sys.stderr)
        return 2
    return 0


__all__ = ["Backend", "PrecomputedBackend", "TokstepApp", "run_app"]
