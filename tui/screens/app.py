"""The Textual app behind `tokstep` (no sub-command): load the model in a worker, then step through a trace.

Workers only call the `Backend` (`tui.screens.backend`) and post messages (`tui.screens.messages`); the app turns messages
into screens. A data browser (`tui.screens.browser.DataBrowserScreen`) may sit underneath: it gets the same backend,
is told when the model has loaded, and posts `OpenSample` for each row the user opens.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.geometry import Size
from textual.widgets import Footer, LoadingIndicator, Static
from textual.worker import get_current_worker

from tokstep.engine.errors import TokstepError
from tokstep.engine.scan.files import is_scan
from tokstep.tui import exit_codes
from tokstep.tui.cli.batch_report import batch_flags
from tokstep.tui.screens.backend import Backend, DataOptions, EngineBackend, PrecomputedBackend, worker_error
from tokstep.tui.screens.browser import DataBrowserScreen
from tokstep.tui.screens.lifecycle import Lifecycle, signal_line
from tokstep.tui.screens.messages import (
    BatchesReady,
    CompareLoaded,
    CompareReady,
    LoadFailed,
    LoadProgress,
    ModelLoaded,
    OpenSample,
    ReferenceReady,
    TraceReady,
)
from tokstep.tui.screens.too_small import TooSmallScreen, too_small

if TYPE_CHECKING:
    from tokstep.engine.compare.spec import CompareSpec
    from tokstep.engine.inputs.spec import SampleSpec
    from tokstep.engine.lints.catalogue import Finding
    from tokstep.engine.model.loading import ModelSpec
    from tokstep.engine.model.results import TraceResult
    from tokstep.engine.scan.view import ScanView
    from tokstep.tui.cli.run_config import RunConfig

T = TypeVar("T")


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
    signalled: int | None = None  # the signal (TERM, HUP, INT) that ended the app, if one did

    def __init__(
        self,
        model_spec: ModelSpec | None = None,
        sample_spec: SampleSpec | None = None,
        *,
        top_k: int = 10,
        data: str | None = None,
        data_options: DataOptions | None = None,
        backend: Backend | None = None,
        batches: str | None = None,
        batch_settings: Any = None,
        compare: CompareSpec | None = None,
        reference: str = "chunked",
        scan_view: Any = None,
    ) -> None:
        super().__init__()
        self.scan_view = scan_view  # an engine.scan.view.ScanView already read by the CLI (`--data DIR`)
        self.batches = batches  # a file of trainer batches (tokstep --batches)
        self.batch_settings = batch_settings  # engine.batches.files.Settings from --use-cache/--attn-implementation
        self.compare = compare  # a second model (or tokenizer) compared with the first on the one sample
        self.loaded_b: Any = None  # the backend's handle for it, once CompareLoaded has arrived
        self.model_spec = model_spec
        self.sample_spec = sample_spec
        self.top_k = top_k
        self.reference_mode = reference  # --reference: how HF's loss is computed, after the stepper shows
        self.data = data
        self.data_options = data_options or DataOptions()
        self.backend = backend or EngineBackend()
        self.load_error: str | None = None
        self.nonfinite_error: str | None = None  # NaN/inf logits in the sample or batches opened on: exit 3
        self.loaded: Any = None  # the backend's model handle, once ModelLoaded has arrived
        self._waiting: tuple[SampleSpec, bool] | None = None  # a sample asked for before the model was there
        self.started = time.monotonic()

    def compose(self) -> ComposeResult:
        yield LoadingView(id="loading")
        yield Footer()

    def on_mount(self) -> None:
        if self.signalled is not None:  # a signal came before the app was running
            self.exit(return_code=exit_codes.signalled(self.signalled))
            return
        self.call_after_refresh(self._check_size)
        name = self.model_spec.display_name if self.model_spec is not None else "model"
        self.query_one(LoadingView).add_step(f"loading {name}", 0.0)
        self.load_model()
        if self.data:
            if is_scan(self.data):  # a folder written by `tokstep scan`: sort/filter over every row
                # lazy: loads numpy
                from tokstep.tui.screens.scan_browser import ScanBrowserScreen

                self.push_screen(ScanBrowserScreen(self.data, self.scan_view, backend=self.backend))
            else:
                self.push_screen(
                    DataBrowserScreen(
                        self.data, backend=self.backend, model_spec=self.model_spec, options=self.data_options
                    )
                )
            self.query_one(LoadingView).cover()
        elif self.batches:
            pass  # traced once the model is loaded (on_model_loaded)
        elif self.sample_spec is not None:
            self.request_trace(self.sample_spec, from_browser=False)

    # -- the terminal: too small, Ctrl-C, signals ------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size)  # (self.size is updated after this handler)

    def _check_size(self, size: Size | None = None) -> None:
        """Below the minimum size, cover everything with `TooSmallScreen`; remove it once there is room."""

        small, shown = too_small(*(size or self.size)), isinstance(self.screen, TooSmallScreen)
        if small and not shown:
            super().push_screen(TooSmallScreen())
        elif shown and not small:
            self.pop_screen()

    def push_screen(self, screen: Any, *args: Any, **kwargs: Any) -> Any:
        """Keep `TooSmallScreen` on top: a screen pushed while it shows goes underneath it."""

        if isinstance(self.screen, TooSmallScreen) and not isinstance(screen, TooSmallScreen):
            self.pop_screen()
            pushed = super().push_screen(screen, *args, **kwargs)
            super().push_screen(TooSmallScreen())
            return pushed
        return super().push_screen(screen, *args, **kwargs)

    def action_help_quit(self) -> None:
        """Ctrl-C (Textual reads it as a key, not a signal): cancel a model load, or leave, with status 130."""
        self.interrupt(signal.SIGINT)

    def interrupt(self, signum: int) -> None:
        """End the app because of a signal (or Ctrl-C): workers are abandoned, the terminal restored."""
        self.signalled = signum
        self.exit(return_code=exit_codes.signalled(signum))

    # -- workers: backend calls only, results by message -----------------------------------------------

    def _guarded(self, call: Callable[[], Any], from_browser: bool) -> tuple[bool, Any]:
        """Run one backend call in a worker: (True, its value), or (False, None) when the app abandoned it
        or it failed (then LoadFailed is posted: one line, like the CLI's)."""
        try:
            return True, abandonable(call)
        except Abandoned:
            pass
        except Exception as error:  # noqa: BLE001 - shown as one line, like the CLI does
            self.post_message(LoadFailed(worker_error(error), from_browser))
        return False, None

    @work(thread=True, exit_on_error=False, group="load")
    def load_model(self) -> None:
        ok, model = self._guarded(lambda: self.backend.load(self.model_spec), bool(self.data))  # type: ignore[arg-type]
        if not ok:
            return
        if self.compare is not None:
            self.post_message(LoadProgress(f"loading B: {self.compare.description}"))
            ok, model_b = self._guarded(lambda: self.backend.load_compare(self.compare), bool(self.data))  # type: ignore[arg-type]
            if not ok:
                return
            self.post_message(CompareLoaded(model_b))
        self.post_message(ModelLoaded(model))

    @work(thread=True, exit_on_error=False, group="trace", exclusive=True)
    def trace_sample(self, model: Any, sample: SampleSpec, from_browser: bool) -> None:
        progress = lambda text: self.post_message(LoadProgress(text))  # noqa: E731
        if self.compare is not None and not from_browser:
            model_b = self.loaded_b
            ok, compared = self._guarded(
                lambda: self.backend.compare(model, model_b, sample, self.top_k, progress), from_browser
            )
            if not ok:
                return
            findings = self._lint(compared.a, sample)
            if not get_current_worker().is_cancelled:
                self.post_message(CompareReady(compared, findings))
            return
        ok, result = self._guarded(
            lambda: self.backend.trace(model, sample, self.top_k, progress), from_browser
        )
        if not ok:
            return
        findings = self._lint(result, sample)
        if not get_current_worker().is_cancelled:  # a newer request replaced this one: drop it
            self.post_message(TraceReady(result, findings, from_browser))  # HF's reference: on_trace_ready

    @work(thread=True, exit_on_error=False, group="reference")
    def compute_reference(self, model: Any, result: TraceResult) -> None:
        """HF's loss for a result already shown; the loss panel's badge updates when it arrives."""
        try:
            done = abandonable(lambda: self.backend.reference(model, result, self.reference_mode))
        except Abandoned:
            return
        except Exception as error:  # noqa: BLE001 - the reference is a check; stepping goes on without it
            done = replace(
                result,
                reference_pending=False,
                reference_note=f"HF reference failed: {type(error).__name__}: {error}",
            )
        self.post_message(ReferenceReady(done))

    @work(thread=True, exit_on_error=False, group="trace", exclusive=True)
    def trace_batches_file(self, loaded: Any) -> None:
        progress = lambda text: self.post_message(LoadProgress(text))  # noqa: E731
        ok, report = self._guarded(
            lambda: self.backend.trace_batches(
                loaded, self.batches, self.batch_settings, self.top_k, progress
            ),  # type: ignore[arg-type]
            False,
        )
        if ok:
            self.post_message(BatchesReady(report))

    def on_batches_ready(self, message: BatchesReady) -> None:
        # lazy: loads numpy
        from tokstep.tui.screens.batches import BatchesScreen

        self.query_one(LoadingView).cover()
        nonfinite = [r for r in message.report.rows if r.result.nonfinite_error]
        if nonfinite:  # exit 3, as `tokstep report --batches`, with its first line
            first = nonfinite[0]
            self.nonfinite_error = f"{self.batches} line {first.row.line}: {first.result.nonfinite_error}"
        self.push_screen(BatchesScreen(message.report, backend=self.backend, no_color=self.no_color))

    def _lint(self, result: TraceResult, sample: SampleSpec) -> list[Finding]:
        try:
            return self.backend.lint(result, sample)
        except Exception as error:  # noqa: BLE001 - lints are advice; a broken linter must not block stepping
            self.post_message(LoadProgress(f"lints unavailable: {type(error).__name__}: {error}"))
            return []

    def request_trace(self, sample: SampleSpec, from_browser: bool) -> None:
        """Trace `sample` now, or as soon as the model is loaded; a newer request replaces an older one."""
        if self.loaded is not None:
            self.trace_sample(self.loaded, sample, from_browser)
        elif self.load_error is None:
            self.workers.cancel_group(self, "trace")
            self._waiting = (sample, from_browser)

    def open_sample(self, sample_spec: SampleSpec, name: str) -> None:
        """Trace one sample with the loaded model and push a stepper for it."""
        self.notify(f"tracing {name} …", timeout=2)
        self.request_trace(replace(sample_spec, name=name), from_browser=True)

    # -- messages from the workers and screens ---------------------------------------------------------

    def on_open_sample(self, message: OpenSample) -> None:
        self.open_sample(message.spec, message.name)

    def on_load_progress(self, message: LoadProgress) -> None:
        if not self.query(LoadingView):
            return
        self.query_one(LoadingView).add_step(message.text, time.monotonic() - self.started)

    def on_model_loaded(self, message: ModelLoaded) -> None:

        self.loaded = message.model
        self.on_load_progress(LoadProgress("model loaded"))
        for note in getattr(message.model, "notes", ()):  # e.g. weights read from pytorch_model.bin
            self.on_load_progress(LoadProgress(f"note: {note}"))
            self.notify(note, title="note", timeout=10)
        for screen in self.screen_stack:
            if isinstance(screen, DataBrowserScreen):
                screen.model_loaded(message.model)
        if self.batches:
            self.trace_batches_file(message.model)
        if self._waiting is not None:
            sample, from_browser = self._waiting
            self._waiting = None
            self.trace_sample(message.model, sample, from_browser)

    def on_compare_loaded(self, message: CompareLoaded) -> None:
        self.loaded_b = message.model
        self.on_load_progress(LoadProgress("B loaded"))

    def on_compare_ready(self, message: CompareReady) -> None:
        # lazy: loads numpy
        from tokstep.engine.compare.results import CompareResult
        from tokstep.tui.screens.compare import AlignmentScreen, CompareScreen
        from tokstep.tui.screens.stepper import StepperScreen

        self.query_one(LoadingView).cover()
        result = message.result
        if isinstance(result, CompareResult):
            for side in (result.a, result.b):
                if side.nonfinite_error:
                    self.notify(side.nonfinite_error, severity="warning", timeout=10)
            screen = CompareScreen(
                result,
                findings=message.findings,
                backend=self.backend,
                model=self.loaded,
                model_b=self.loaded_b,
                no_color=self.no_color,
            )
            self.push_screen(screen)
            return
        self.push_screen(
            StepperScreen(
                result.a,
                findings=message.findings,
                backend=self.backend,
                model=self.loaded,
                no_color=self.no_color,
            )
        )
        self.push_screen(AlignmentScreen(result))

    def on_trace_ready(self, message: TraceReady) -> None:
        # lazy: loads numpy
        from tokstep.tui.screens.stepper import StepperScreen

        result = message.result
        self.query_one(LoadingView).cover()
        if result.nonfinite_error:
            self.notify(result.nonfinite_error, severity="error", timeout=10)
            if not message.from_browser:  # the sample the app opened on: exit 3, as `tokstep report`
                self.nonfinite_error = result.nonfinite_error
        self.push_screen(
            StepperScreen(
                result,
                findings=message.findings,
                backend=self.backend,
                model=self.loaded,
                can_go_back=message.from_browser,
                no_color=self.no_color,
            )
        )
        if result.reference_pending:  # after the stepper's first frame: it must not wait for HF's forward
            self.call_after_refresh(self.compute_reference, self.loaded, result)

    def on_reference_ready(self, message: ReferenceReady) -> None:
        # lazy: loads numpy
        from tokstep.tui.screens.stepper import StepperScreen

        result = message.result
        if not result.reference_computed and (
            "skipped" in result.reference_note or "failed" in result.reference_note
        ):
            self.notify(result.reference_note, title="HF reference", severity="warning", timeout=15)
        for screen in self.screen_stack:
            if isinstance(screen, StepperScreen) and screen.result.sample is message.result.sample:
                screen.update_result(message.result)

    def on_load_failed(self, message: LoadFailed) -> None:
        if message.from_browser and self.loaded is not None:
            self.notify(message.reason, title="cannot open this sample", severity="error", timeout=10)
            return
        self.load_error = message.reason
        self._waiting = None
        if message.from_browser:
            self.notify(message.reason, title="cannot load the model", severity="error", timeout=30)
            for screen in self.screen_stack:
                if isinstance(screen, DataBrowserScreen):
                    screen.model_failed(message.reason)
        self.query_one(LoadingView).fail(message.reason)


def _headless_check(app: TokstepApp) -> int:
    """Not a terminal: run the same load (and trace) so failures still print as one line, then explain."""
    try:
        loaded = app.backend.load(app.model_spec)  # type: ignore[arg-type]
        if app.batches:
            app.backend.trace_batches(loaded, app.batches, app.batch_settings, app.top_k, lambda _text: None)
        elif app.compare is not None:
            loaded_b = app.backend.load_compare(app.compare)
            if app.sample_spec is not None:
                app.backend.compare(loaded, loaded_b, app.sample_spec, app.top_k, lambda _text: None)
        elif app.sample_spec is not None and not app.data:
            result = app.backend.trace(loaded, app.sample_spec, app.top_k, lambda _text: None)
            if result.reference_pending:
                app.backend.reference(loaded, result, app.reference_mode)
    except TokstepError as error:
        print(f"tokstep: error: {error}", file=sys.stderr)
        return 2
    print(
        "tokstep: error: the interactive debugger needs a terminal; use `tokstep report` to print the table",
        file=sys.stderr,
    )
    return 2


def closing_status(app: TokstepApp) -> int:
    """Print the one line a finished run leaves on the terminal, and return its exit status: a signal first,
    then a model that did not load (2), then NaN/inf logits in the sample or batches shown (3, as `report`)."""
    line, status = None, 0
    if app.signalled is not None:
        line, status = signal_line(app.signalled), exit_codes.signalled(app.signalled)
    elif app.load_error:
        line, status = f"tokstep: error: {app.load_error}", exit_codes.BAD_INPUT
    elif app.nonfinite_error:
        line, status = f"tokstep: error: {app.nonfinite_error}", exit_codes.NONFINITE
    if line is not None:
        with contextlib.suppress(OSError, ValueError):  # hung up: the terminal may be gone, and with it stderr
            print(line, file=sys.stderr)
    return status


def run_app(
    args: RunConfig,
    model_spec: ModelSpec,
    sample_spec: SampleSpec | None,
    compare: CompareSpec | None = None,
    scan_view: ScanView | None = None,
) -> int:
    """Entry point for `tokstep` with no sub-command. Returns the exit code; a load failure is one line."""
    app = TokstepApp(
        model_spec,
        sample_spec,
        top_k=args.top_k,
        data=args.data,
        data_options=DataOptions.from_config(args) if args.data else None,
        batches=args.batches,
        batch_settings=batch_flags(args) if args.batches else None,
        compare=compare,
        reference=args.reference,
        scan_view=scan_view,
    )
    if os.environ.get("TERM", "") in ("dumb", "unknown"):
        print(
            f"tokstep: error: this terminal (TERM={os.environ['TERM']}) cannot show the debugger; "
            "use `tokstep report` to print the table",
            file=sys.stderr,
        )
        return exit_codes.BAD_INPUT
    if not (sys.stdin.isatty() and sys.stderr.isatty()):  # Textual draws on stderr; stdout may be piped
        return _headless_check(app)
    lifecycle = Lifecycle(app, lambda: closing_status(app)).install()
    try:
        app.run()
    except Exception:  # noqa: BLE001 - e.g. the terminal vanished (SIGHUP) while being restored
        if app.signalled is None:
            raise
    finally:
        lifecycle.uninstall()
    return lifecycle.finish()


__all__ = ["Backend", "EngineBackend", "PrecomputedBackend", "TokstepApp", "run_app"]
