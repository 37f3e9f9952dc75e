"""The top line: model, dtype, device, sample, position t / T, and what is playing."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.session import TraceResult


class StatusBar(Static):
    """`tokstep │ model · dtype · device │ sample │ t 12 / 57 │ 40 counted ▶ 5/s │ ⚠ 2 lints`."""

    DEFAULT_CSS = "StatusBar { dock: top; height: 1; }"

    def __init__(self, result: TraceResult, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.result = result
        self.cursor = 0
        self.playing: float | None = None  # steps per second while playing
        self.lints = 0
        self.note = ""

    def show(self, cursor: int) -> None:
        self.cursor = cursor
        self.update(self._line(), layout=False)

    def _line(self) -> Text:
        info, sample, trace = self.result.info, self.result.sample, self.result.trace
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(" tokstep ", "bold reverse")
        line.append(f" {info.name} · {info.dtype} · {info.device} ")
        line.append("│ ", "dim")
        line.append(f"{sample.name} ", "bold")
        line.append("│ ", "dim")
        line.append(f"t {self.cursor} / {len(trace)}", "bold")  # t / T: positions run 0..T-1
        line.append(f"  {trace.num_supervised} counted", "dim")
        if self.playing is not None:
            line.append(f"  ▶ {self.playing:g}/s", "bold green")
        if self.lints:
            line.append(f"  ⚠ {self.lints} lint{'s' if self.lints != 1 else ''} (L)", "bold yellow")
        if self.note:
            line.append(f"  {self.note}", "italic")
        return line
