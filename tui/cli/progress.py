"""Progress for long runs over a data set (`tokstep lint`, `tokstep scan`): rows/s, tokens/s and ETA.

On a terminal a rich.progress bar; otherwise (CI logs, files, torchrun's pipes) one plain line on stderr
every `every` seconds and a last one at the end, so a long run is never silent until it ends (a run shorter
than that prints none).
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

LINE_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal


def _si(value: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class RowProgress:
    """Report rows and tokens done out of `total` rows (None: unknown). Use as a context manager."""

    def __init__(
        self,
        what: str,
        total: int | None,
        *,
        stream: IO[str] | None = None,
        tty: bool | None = None,
        every: float | None = None,
        enabled: bool = True,
    ) -> None:
        self.what, self.total, self.enabled = what, total, enabled
        self.every = LINE_EVERY if every is None else every
        self.lines = 0  # progress lines printed (a run shorter than `every` prints none)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.rows = self.tokens = 0
        self.started = self._last_line = time.monotonic()
        self._bar: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> RowProgress:
        self.started = self._last_line = time.monotonic()
        if self.enabled and self.tty:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rates]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total, rates="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.enabled and self.lines:  # a run that reported progress also reports its end
            self._line(final=True)

    def rates(self) -> tuple[float, float]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return self.rows / elapsed, self.tokens / elapsed

    def update(self, rows: int, tokens: int) -> None:
        """Absolute counts so far."""
        self.rows, self.tokens = rows, tokens
        if not self.enabled:
            return
        if self._bar is not None:
            row_rate, token_rate = self.rates()
            self._bar.update(
                self._task, completed=rows, rates=f"{_si(row_rate)} rows/s · {_si(token_rate)} tokens/s"
            )
        elif time.monotonic() - self._last_line >= self.every:
            self._line()

    def _line(self, final: bool = False) -> None:
        self._last_line = time.monotonic()
        self.lines += 1
        row_rate, token_rate = self.rates()
        done = f"{self.rows:,}" + (
            f" / {self.total:,} rows ({self.rows / max(self.total, 1):.0%})" if self.total else " rows"
        )
        eta = ""
        if self.total and row_rate > 0 and not final:
            eta = f" · ETA {_clock((self.total - self.rows) / row_rate)}"
        elapsed = f" · {_clock(time.monotonic() - self.started)} elapsed"
        print(
            f"{self.what}: {done} · {_si(row_rate)} rows/s · {_si(token_rate)} tokens/s{eta}{elapsed}",
            file=self.stream,
            flush=True,
        )
