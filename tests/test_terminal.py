"""The terminal is always given back (Pilot): Ctrl-C and INT/TERM/HUP end the app with 128 + the signal, a
load is cancelled, below 80x24 a 'terminal too small' screen replaces collapsed panels, TERM=dumb points to
`tokstep report`, and at 80x24 the top-k q column and the inspector line fit. (tmux end to end: test_tui_e2e.)"""

from __future__ import annotations

import os
import signal
import threading
import time
import types

import pytest
from synthetic import synthetic_result
from textual.widgets import Static

from tokstep.engine.inputs.spec import SampleSpec
from tokstep.tui import exit_codes
from tokstep.tui.cli.run_config import RunConfig
from tokstep.tui.formatting import probability
from tokstep.tui.screens.app import PrecomputedBackend, TokstepApp, run_app
from tokstep.tui.screens.lifecycle import Lifecycle
from tokstep.tui.screens.stepper import StepperScreen
from tokstep.tui.screens.too_small import MIN_HEIGHT, MIN_WIDTH, TooSmallScreen
from tokstep.tui.widgets.inspector_line import describe


@pytest.fixture(scope="module")
def result():
    return synthetic_result(300, seed=3)


class BlockedLoad(PrecomputedBackend):
    """A model load that never finishes by itself (a 70B checkpoint on a slow disk)."""

    def __init__(self, result) -> None:
        super().__init__(result)
        self.started = threading.Event()
        self.release = threading.Event()

    def load(self, spec):
        self.started.set()
        self.release.wait(60)
        return super().load(spec)


def app_for(result, backend=None) -> TokstepApp:
    return TokstepApp(sample_spec=SampleSpec(text="synthetic"), backend=backend or PrecomputedBackend(result))


async def until(pilot, condition, what: str, seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            await pilot.pause()
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def text(widget) -> str:
    return widget.plain_text() if hasattr(widget, "plain_text") else str(widget.render())


async def test_below_the_minimum_size_the_app_says_so_and_comes_back_when_enlarged(result):
    app = app_for(result)
    async with app.run_test(size=(70, 20)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, TooSmallScreen), "the too-small screen")
        assert "terminal too small (need 80×24, have 70×20)" in text(
            app.screen.query_one("#too-small", Static)
        )
        # the trace arrived meanwhile: the stepper waits underneath, the message stays on top
        await until(pilot, lambda: any(isinstance(s, StepperScreen) for s in app.screen_stack), "the stepper")
        assert isinstance(app.screen, TooSmallScreen)
        await pilot.resize_terminal(MIN_WIDTH, MIN_HEIGHT)
        await until(pilot, lambda: isinstance(app.screen, StepperScreen), "the stepper on top")
        stepper = app.screen
        await pilot.press("right", "right")
        await pilot.resize_terminal(MIN_WIDTH - 1, MIN_HEIGHT)
        await until(pilot, lambda: isinstance(app.screen, TooSmallScreen), "too small again")
        assert "have 79×24" in text(app.screen.query_one("#too-small", Static))
        await pilot.press("right")  # keys do not reach the hidden stepper
        await pilot.resize_terminal(120, 40)
        await until(pilot, lambda: app.screen is stepper, "the same stepper back")
        assert stepper.cursor == 2
        assert sum(isinstance(s, TooSmallScreen) for s in app.screen_stack) == 0


async def test_q_quits_from_the_too_small_screen(result):
    app = app_for(result)
    async with app.run_test(size=(60, 15)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, TooSmallScreen), "the too-small screen")
        await pilot.press("q")
        await until(pilot, lambda: app._exit, "the exit")
    assert app.return_code == 0


async def test_ctrl_c_cancels_the_model_load_with_status_130(result):
    backend = BlockedLoad(result)
    app = app_for(result, backend)
    started = time.monotonic()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, backend.started.is_set, "the load to start")
        await pilot.press("ctrl+c")
        await until(pilot, lambda: app._exit, "the exit")
    assert app.return_code == exit_codes.INTERRUPTED == 130
    assert app.loaded is None and time.monotonic() - started < 15  # did not wait for the load
    backend.release.set()


async def test_ctrl_c_in_the_stepper_leaves_with_status_130(result):
    app = app_for(result)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, StepperScreen), "the stepper")
        await pilot.press("ctrl+c")
        await until(pilot, lambda: app._exit, "the exit")
    assert app.return_code == 130


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
@pytest.mark.parametrize("when", ["loading", "stepper"])
async def test_a_real_signal_ends_the_app_through_its_event_loop(result, signum, when):
    """os.kill on this very process: the handler run_app installs routes it into the app, which exits."""
    backend = BlockedLoad(result) if when == "loading" else PrecomputedBackend(result)
    app, exits = app_for(result, backend), []
    async with app.run_test(size=(100, 30)) as pilot:
        lifecycle = Lifecycle(app, lambda: 0, fds=(), hard_exit=exits.append).install()
        try:
            if when == "loading":
                await until(pilot, backend.started.is_set, "the load to start")
            else:
                await until(pilot, lambda: isinstance(app.screen, StepperScreen), "the stepper")
            os.kill(os.getpid(), signum)
            await until(pilot, lambda: app._exit, "the exit")
        finally:
            lifecycle.uninstall()
    assert app.signalled == signum and app.return_code == 128 + signum  # through the event loop
    if when == "loading":
        backend.release.set()


def test_handlers_are_put_back_after_the_app(result):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    lifecycle = Lifecycle(app_for(result), lambda: 0, fds=()).install()
    assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
    lifecycle.uninstall()
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize("term", ["dumb", "unknown"])
def test_a_dumb_terminal_is_told_to_use_report(monkeypatch, capsys, term):
    monkeypatch.setenv("TERM", term)
    assert run_app(RunConfig(), None, SampleSpec(text="hi")) == exit_codes.BAD_INPUT  # type: ignore[arg-type]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"TERM={term}" in lines[0] and "tokstep report" in lines[0]


async def test_at_80x24_the_q_column_and_the_inspector_line_fit(result):
    app = app_for(result)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, StepperScreen), "the stepper")
        stepper = app.screen
        for t in (0, 5, 40):
            stepper.cursor = t
            await pilot.pause()
            rows = text(stepper.query_one("#topk")).splitlines()
            assert rows[0].split()[-2:] == ["q", "log"] or " q " in rows[0]
            trace = result.trace
            for k in range(3):  # each top-k row shows q as a number, as in probability()
                q = float(__import__("math").exp(trace.topk_logprobs[t, k]))
                assert probability(q) in rows[1 + k], rows[1 + k]
            topk = stepper.query_one("#topk")
            assert topk.region.right <= 80
        inspector = stepper.query_one("#inspector")
        assert inspector.region.width <= 80 and inspector.region.height == 1


def fake_info(piece: str, text_: str, partial: bool = False) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        index=1234,
        token_id=151643,
        piece=piece,
        text=text_,
        utf8_hex=" ".join(f"{b:02x}" for b in text_.encode()),
        special=False,
        partial=partial,
        span=(1233, 1236),
        completes="é",
    )


@pytest.mark.parametrize(
    "info",
    [
        fake_info("ĠHello", " Hello"),
        fake_info("Ġinternationalization", " internationalization"),
        fake_info("<|start_header_id|>", "<|start_header_id|>"),
        fake_info("Ã", "\ufffd", partial=True),
    ],
)
def test_the_inspector_line_shortens_to_fit_78_cells(info):
    full = describe(info)
    fitted = describe(info, 78)
    plain = "".join(piece for piece, _style in fitted.lines[0])
    assert len(plain) <= 78, plain
    assert str(info.token_id) in plain and str(info.index) in plain  # what identifies the token stays
    if info.partial:
        assert "1233..1235" in plain
    if len("".join(p for p, _s in full.lines[0])) <= 78:
        assert plain == "".join(p for p, _s in full.lines[0])  # nothing shortened when it fits


async def test_a_load_notice_is_shown_in_the_app(result):
    class WithNotice(PrecomputedBackend):
        def load(self, spec):
            return types.SimpleNamespace(
                notes=("m has only pytorch_model.bin (no safetensors): read with ...",)
            )

    app = app_for(result, WithNotice(result))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, StepperScreen), "the stepper")
        assert any("pytorch_model.bin" in n.message for n in app._notifications)
