"""How a run of the debugger ends: INT/TERM/HUP or a vanished terminal end the app, and a watchdog ends the
process if the app cannot finish by itself.

Textual's own exit can hang once the terminal is gone: its output thread dies on EIO and the event loop then
blocks on the full output queue; `asyncio.run` joins the executor threads of workers still inside torch, a
tokenizer load or an import; the input thread spins at 100% of a core on EOF and never tells the app. A signal
handler that only asks the event loop to exit is then never heard. So every ending (a signal, the terminal
hung up, or the app asked to exit) arms a watchdog thread: if the process is still there `GRACE_S` later, it
gives back what it can of the terminal, prints the closing line and calls `os._exit` with the status. Under a
heavily loaded machine the watchdog thread may wait up to a second for the GIL, hence the short grace; if it
never gets it, faulthandler's watchdog (a C thread) ends the process `BACKSTOP_S` later with status 1.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import select
import signal
import sys
import termios
import threading
import time
from collections.abc import Callable
from typing import Any

from tokstep.tui import exit_codes

GRACE_S = 0.6  # from an ending to os._exit when the app has not finished by itself
HANGUP_GRACE_S = 0.1  # the same after a hang-up: the terminal is going away, Textual's exit has nothing to add
BACKSTOP_S = 3.0  # after GRACE_S: faulthandler's C thread ends the process (status 1) if even the watchdog
# thread cannot run (a C call that holds the GIL); it needs no GIL
POLL_S = 0.05  # how often the watcher looks at the terminal and the app
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
SIGNAL_WORDS = {"SIGINT": "interrupted", "SIGTERM": "terminated", "SIGHUP": "hung up"}
GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL
# mouse tracking, bracketed paste, focus events and the kitty keyboard protocol off; line wrap on; the
# alternate screen left; the cursor shown (what Textual's driver turns on, undone as its own exit does)
RESTORE_SEQUENCE = (
    "\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1015l\x1b[?1006l\x1b[?1016l"
    "\x1b[?2004l\x1b[?1004l\x1b[<u\x1b[?7h\x1b[?1049l\x1b[?25h"
)


def signal_line(signum: int) -> str:
    """The one stderr line a run ended by `signum` leaves, e.g. `tokstep: terminated (SIGTERM)`."""
    name = signal.Signals(signum).name
    return f"tokstep: {SIGNAL_WORDS.get(name, name)} ({name})"


def terminal_fds() -> tuple[int, ...]:
    """The descriptors of the terminal the app reads (stdin) and draws on (stderr)."""
    fds = []
    for fd in (0, 2):
        with contextlib.suppress(OSError, ValueError):
            if os.isatty(fd):
                fds.append(fd)
    return tuple(fds)


def hung_up(fds: tuple[int, ...]) -> bool:
    """True when one of `fds` reports a hang-up or an error (its terminal closed, as on an SSH drop)."""
    if not fds:
        return False
    poller = select.poll()
    for fd in fds:
        poller.register(fd, 0)  # no events asked for: poll still reports POLLHUP / POLLERR / POLLNVAL
    try:
        return any(mask & GONE for _fd, mask in poller.poll(0))
    except OSError:
        return True


class Lifecycle:
    """Routes INT/TERM/HUP and a hung-up terminal to `app.interrupt`, and guards the end of the run.

    `finish()` prints the run's closing line and returns its status; it runs once, on the normal path (after
    `app.run()`) or from the watchdog, whichever comes first. `hard_exit` is `os._exit` outside tests.
    """

    def __init__(
        self,
        app: Any,
        finish: Callable[[], int],
        *,
        fds: tuple[int, ...] | None = None,
        grace_s: float = GRACE_S,
        hard_exit: Callable[[int], Any] = os._exit,
    ) -> None:
        self.app = app
        self._finish = finish
        self.fds = terminal_fds() if fds is None else fds
        self.grace_s = grace_s
        self.hard_exit = hard_exit
        self.deadline: float | None = None  # when the watchdog ends the process
        self._status: int | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._previous: dict[int, Any] = {}
        self._blocked = False  # INT/TERM/HUP blocked in the main thread, taken by the watcher
        self._watcher: threading.Thread | None = None
        self._attrs: list[Any] | None = None
        self._devnull: Any = None  # where faulthandler's backstop writes, once armed
        with contextlib.suppress(termios.error, OSError):
            if self.fds:
                self._attrs = termios.tcgetattr(self.fds[0])  # the terminal's modes before Textual's

    # -- install / uninstall ---------------------------------------------------------------------------

    def install(self) -> Lifecycle:
        """Take INT/TERM/HUP: blocked in this (main) thread and every thread it starts from now on, they are
        received by the watcher thread (`sigtimedwait`), so a main thread busy in a C call or waiting on a
        lock never delays them; the Python handler stays as the fallback for threads started earlier."""
        self._previous = {signum: signal.signal(signum, self.on_signal) for signum in SIGNALS}
        self._blocked = threading.current_thread() is threading.main_thread()
        if self._blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        self._watcher = threading.Thread(target=self._watch, name="tokstep-lifecycle", daemon=True)
        self._watcher.start()
        return self

    def uninstall(self) -> None:
        """The run is over: the watcher stops and the previous handlers are back."""
        self._stopped.set()
        if self._devnull is not None:
            faulthandler.cancel_dump_traceback_later()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        if self._blocked:  # one that came meanwhile is delivered now, to the handler just put back
            self._blocked = False
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)

    # -- endings -----------------------------------------------------------------------------------------

    def on_signal(self, signum: int, _frame: Any = None) -> None:
        """INT/TERM/HUP: the app exits with 128 + signum; a second signal ends the process at once."""
        again = self.app.signalled is not None and self.deadline is not None
        self.end(signum)
        if again:
            self.deadline = time.monotonic()  # the watcher acts on its next look

    def end(self, signum: int) -> None:
        """End the app because of `signum` and arm the watchdog."""
        if self.app.signalled is None:
            self.app.signalled = signum
        self._arm(min(self.grace_s, HANGUP_GRACE_S) if signum == signal.SIGHUP else self.grace_s)
        loop = getattr(self.app, "_loop", None)
        if loop is not None and loop.is_running():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the watchdog ends it
                loop.call_soon_threadsafe(self.app.interrupt, self.app.signalled)
        # not running yet: on_mount sees `signalled`; already finished: the normal path or the watchdog does

    def _arm(self, grace_s: float) -> None:
        if self.deadline is not None:
            return
        self.deadline = time.monotonic() + grace_s
        if self.hard_exit is os._exit:  # a real run (tests pass their own hard_exit)
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                self._devnull = open(os.devnull, "w")  # noqa: SIM115 - kept open until the process ends
                faulthandler.dump_traceback_later(grace_s + BACKSTOP_S, file=self._devnull, exit=True)

    def finish(self) -> int:
        """The run's status, its closing line printed once (by whichever of the main thread and the
        watchdog comes first)."""
        with self._lock:
            if self._status is None:
                try:
                    self._status = self._finish()
                except Exception:  # noqa: BLE001 - a bug while printing the line: the status still counts
                    signum = self.app.signalled
                    self._status = exit_codes.INTERNAL if signum is None else exit_codes.signalled(signum)
            return self._status

    # -- the watcher and the watchdog ----------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stopped.is_set():
            caught = signal.sigtimedwait(SIGNALS, POLL_S) if self._blocked else self._stopped.wait(POLL_S)
            if self._stopped.is_set():
                return
            if isinstance(caught, signal.struct_siginfo):
                self.on_signal(caught.si_signo)
            if self.deadline is None:
                if hung_up(self.fds):
                    self.end(signal.SIGHUP)
                elif getattr(self.app, "_exit", False):  # `q`, Ctrl-C, an error: the app is on its way out
                    self._arm(self.grace_s)
            elif time.monotonic() >= self.deadline and not self._stopped.is_set():
                self._force_exit()
                return

    def _force_exit(self) -> None:
        """The app did not finish in time: give back the terminal if it is there, then end the process."""
        self.restore_terminal()
        status = self.finish()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        self.hard_exit(status)

    def restore_terminal(self) -> None:
        """Leave the alternate screen, stop mouse tracking, show the cursor, and put the modes back.

        The sequence goes through a descriptor of its own opened non-blocking: a terminal nobody reads (or
        Textual's output thread stuck on it) never makes the watchdog wait."""
        if not self.fds or hung_up(self.fds):
            return
        with contextlib.suppress(OSError):
            fd = os.open(os.ttyname(self.fds[-1]), os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
            try:
                os.write(fd, RESTORE_SEQUENCE.encode())
            finally:
                os.close(fd)
        if self._attrs is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self.fds[0], termios.TCSANOW, self._attrs)
