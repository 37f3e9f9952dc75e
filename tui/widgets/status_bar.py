"""The top line: model, dtype, device, sample, position t / T, and what is playing."""

from __future__ import annotations

from pathlib import Path

from rich.cells import cell_len

from tokstep.engine.model.results import TraceResult
from tokstep.tui.severity import tally_pieces
from tokstep.tui.widgets.lines import CursorPanel, Lines


def short_name(name: str) -> str:
    """A local folder by its last part (`tokstep-mini`); a hub id (`org/model`) as it is."""
    path = Path(name).expanduser()
    return path.name if path.is_absolute() or name.startswith((".", "~")) else name


class StatusBar(CursorPanel[TraceResult]):
    """`tokstep  t 12 / 57 ▶ 5/s ⚠ 1E 1W lints │ sample (40 counted) │ model · dtype · device`: most urgent first."""

    DEFAULT_CSS = "StatusBar { dock: top; height: 1; }"

    def __init__(self, result: TraceResult, *, id: str | None = None) -> None:
        super().__init__(result, id=id)
        self.playing: float | None = None  # steps per second while playing
        self.lints: dict[str, int] = {}  # findings per severity (`severity_counts`)

    def on_resize(self) -> None:
        self.show(self.cursor)

    def show(self, cursor: int) -> None:
        """The fullest line that fits: on a narrow terminal the counts and the device go first."""
        self.cursor = cursor
        width = self.size.width or 1000
        for full in (True, False):
            line = self._line(cursor, full)
            if sum(cell_len(text) for text, _style in line.lines[0]) <= width:
                break
        self.set_lines(line)

    def _line(self, cursor: int, full: bool) -> Lines:
        info, sample, trace = self.result.info, self.result.sample, self.result.trace
        line = Lines()
        line.add(" tokstep ", "bold reverse")
        line.add(f" t {cursor} / {len(trace)} ", "bold")  # t / T: positions run 0..T-1
        if self.playing is not None:
            line.add(f"▶ {self.playing:g}/s ", "bold green")
        if self.lints:
            line.add("⚠ ", "bold yellow")
            for text, piece_style in tally_pieces(self.lints):
                line.add(text, piece_style)
            line.add(f" lint{'s' if sum(self.lints.values()) != 1 else ''} (L) ", "bold yellow")
        line.add("│ ", "dim").add(f"{sample.name} ", "bold")
        if full:
            line.add(f"({trace.num_supervised} counted) ", "dim")
        line.add("│ ", "dim").add(f"{short_name(info.name)} · {info.dtype}")
        if full:
            line.add(f" · {info.device}")
        return line
