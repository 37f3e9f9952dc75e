"""The end of a debugger run (tui/screens/lifecycle.py): a hung-up terminal ends the app as SIGHUP would, a watchdog
ends a process whose app cannot finish (with 128 + the signal, or the app's own status), a second signal ends
it at once, and the terminal is given back where one remains. A NaN model exits 3 in the debugger, as in
`tokstep report`. (Real processes in tmux, killed at random points: test_tui_kill_points.)"""

from __future__ import annotations

import os
import pty
import signal
import termios
import threading
import time
import types

import pytest
import tiny
from textual.widgets import Static

from tokstep.engine.inputs.spec import SampleSpec
from tokstep.engine.model.loading import ModelSpec
from tokstep.tui import exit_codes
from tokstep.tui.cli.main import main
from tokstep.tui.screens.app import TokstepApp, closing_status
from tokstep.tui.screens.lifecycle import RESTORE_SEQUENCE, Lifecycle, hung_up, signal_line
from tokstep.tui.screens.stepper import StepperScreen


class StuckApp(types.SimpleNamespace):
    """An app whose event loop is gone (as when Textual's exit hangs): it never acts on `interrupt`."""

    def __init__(self) -> None:
        super().__init__(signalled=None, _loop=None, _exit=False, interrupted=[])

    def interrupt(self, signum: int) -> None:
        self.interrupted.append(signum)


class Exits:
    """Stands for os._exit: records the status and the time it was called."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.done = threading.Event()
        self.at = 0.0

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.at = time.monotonic()
        self.done.set()


def lifecycle_for(app, fds=(), grace_s=0.3, finish=None) -> tuple[Lifecycle, Exits, list[int]]:
    exits, finished = Exits(), []

    def finish_once() -> int:
        finished.append(1)
        return finish() if finish else exit_codes.signalled(app.signalled)

    return Lifecycle(app, finish_once, fds=fds, grace_s=grace_s, hard_exit=exits), exits, finished


def test_a_hung_up_terminal_ends_a_stuck_app_with_129_within_two_seconds():
    master, slave = pty.openpty()
    app = StuckApp()
    lifecycle, exits, finished = lifecycle_for(app, fds=(slave,))
    lifecycle.install()
    try:
        time.sleep(0.3)
        assert not hung_up((slave,)) and exits.codes == []  # a live terminal is left alone
        gone = time.monotonic()
        os.close(master)  # the terminal emulator (tmux, sshd) went away
        assert exits.done.wait(5)
    finally:
        lifecycle.uninstall()
        os.close(slave)
    assert exits.codes == [129] and app.signalled == signal.SIGHUP and finished == [1]
    assert exits.at - gone < 2.0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_the_app_cannot_act_on_still_ends_the_process_with_128_plus_n(signum):
    app = StuckApp()
    lifecycle, exits, finished = lifecycle_for(app)
    lifecycle.install()
    try:
        started = time.monotonic()
        os.kill(os.getpid(), signum)  # taken by the watcher, or by the handler if another thread got it
        while not exits.done.is_set() and time.monotonic() - started < 5:
            time.sleep(0.01)  # (bytecode runs here: a fallback handler in this main thread is never held up)
        assert exits.done.is_set()
    finally:
        lifecycle.uninstall()
    assert exits.codes == [128 + signum] and finished == [1]
    grace = 0.1 if signum == signal.SIGHUP else 0.3  # a hang-up: the terminal is going away, no grace to speak of
    assert grace - 0.05 <= exits.at - started < 2.0  # the app had its grace first


def test_a_second_signal_ends_the_process_at_once():
    app = StuckApp()
    lifecycle, exits, _finished = lifecycle_for(app, grace_s=30)
    lifecycle.install()
    try:
        lifecycle.on_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert exits.codes == []  # still inside the grace
        lifecycle.on_signal(signal.SIGINT)
        assert exits.done.wait(2)
    finally:
        lifecycle.uninstall()
    assert exits.codes == [143]  # the first signal names the ending


def test_an_app_on_its_way_out_that_hangs_is_ended_with_its_own_status():
    """`q` while a worker sits inside torch: asyncio.run joins the worker; the watchdog does not wait."""
    app = StuckApp()
    lifecycle, exits, finished = lifecycle_for(app, finish=lambda: exit_codes.BAD_INPUT)
    lifecycle.install()
    try:
        time.sleep(0.3)
        assert exits.codes == []  # running normally: no watchdog
        app._exit = True
        assert exits.done.wait(5)
    finally:
        lifecycle.uninstall()
    assert exits.codes == [exit_codes.BAD_INPUT] and finished == [1]


def test_a_run_that_finishes_by_itself_is_left_alone_and_finishes_once():
    app = StuckApp()
    lifecycle, exits, finished = lifecycle_for(app, grace_s=0.5)
    lifecycle.install()
    lifecycle.on_signal(signal.SIGTERM)
    lifecycle.uninstall()  # app.run() returned in time
    assert lifecycle.finish() == 143 and lifecycle.finish() == 143
    time.sleep(0.8)
    assert exits.codes == [] and finished == [1]


def test_the_watchdog_gives_the_terminal_back():
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    lifecycle, _exits, _finished = lifecycle_for(StuckApp(), fds=(slave,))
    raw = list(before)
    raw[3] &= ~(termios.ECHO | termios.ICANON)  # what an app in application mode turns off
    termios.tcsetattr(slave, termios.TCSANOW, raw)
    try:
        lifecycle.restore_terminal()
        written = os.read(master, 4096).decode()
        assert written.endswith(RESTORE_SEQUENCE) or RESTORE_SEQUENCE in written
        assert "\x1b[?1049l" in written and "\x1b[?25h" in written and "\x1b[?1000l" in written
        assert termios.tcgetattr(slave)[3] == before[3]  # echo and canonical mode back
    finally:
        os.close(master)
        os.close(slave)


def test_the_closing_line_and_status_of_a_finished_run(capsys):
    app = TokstepApp(sample_spec=SampleSpec(text="x"))
    assert closing_status(app) == 0 and capsys.readouterr().err == ""
    app.nonfinite_error = "NaN/inf logits (first at t=3)"
    assert closing_status(app) == exit_codes.NONFINITE == 3
    assert capsys.readouterr().err == "tokstep: error: NaN/inf logits (first at t=3)\n"
    app.signalled = signal.SIGHUP  # a signal wins: the user ended the run
    assert closing_status(app) == 129
    assert capsys.readouterr().err == signal_line(signal.SIGHUP) + "\n" == "tokstep: hung up (SIGHUP)\n"


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory):
    """A tiny llama whose output head is NaN: every logit is NaN (as an overflowing fp16 model gives)."""
    import torch
    from safetensors.torch import load_file, save_file

    folder = tiny.save_model_folder(tmp_path_factory.mktemp("nan-model"), tiny.sentencepiece_bpe())
    weights = os.path.join(folder, "model.safetensors")
    tensors = load_file(weights)
    head = next(name for name in tensors if name.endswith("lm_head.weight") or "embed_tokens" in name)
    tensors[head] = torch.full_like(tensors[head], float("nan"))
    save_file(tensors, weights, metadata={"format": "pt"})
    return folder


async def test_a_nan_model_exits_3_in_the_debugger_as_in_report(nan_model, capsys):
    argv = ["--model", nan_model, "--device", "cpu", "--text", "I love dogs and cats."]
    assert main(["report", *argv]) == exit_codes.NONFINITE == 3
    report_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert report_line.startswith("tokstep: error: ") and "NaN/inf" in report_line

    app = TokstepApp(ModelSpec(nan_model, device="cpu"), SampleSpec(text="I love dogs and cats."))
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(600):
            if isinstance(app.screen, StepperScreen):
                break
            await pilot.pause(0.05)
        assert isinstance(app.screen, StepperScreen), app.query_one("#loading-error", Static).render()
        await pilot.press("q")
    assert closing_status(app) == 3
    assert capsys.readouterr().err.strip() == report_line  # the same line as report's
