"""CE over all positions as a block-character sparkline, the cursor's column marked below it."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.widget import Widget

from engine.session import TraceResult

BLOCKS = " ▁▂▃▄▅▆▇█"


class LossCurve(Widget):
    """One column per bin of positions (mean CE of the bin); masked bins dim; `▲` under the cursor's bin."""

    DEFAULT_CSS = "LossCurve { height: 1fr; min-height: 2; }"

    def __init__(self, result: TraceResult, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.result = result
        self.cursor = 0
        self._cache: tuple[int, int, list[str], np.ndarray] | None = None

    def show(self, cursor: int) -> None:
        self.cursor = cursor
        self.refresh()

    def _bins(self, width: int) -> np.ndarray:
        """(width+1,) bin edges over positions 0..T."""
        return np.linspace(0, len(self.result.trace), min(width, len(self.result.trace)) + 1).astype(int)

    def _columns(self, width: int, rows: int) -> tuple[list[str], np.ndarray]:
        """Per bin: its column of block characters (top to bottom) and whether anything in it is counted."""
        if self._cache and self._cache[:2] == (width, rows):
            return self._cache[2], self._cache[3]
        trace = self.result.trace
        ce = np.where(trace.finite, trace.ce, np.nan)  # (T,)
        edges = self._bins(width)
        values, counted = [], []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            chunk = ce[lo:hi]
            values.append(float(np.nanmean(chunk)) if np.isfinite(chunk).any() else 0.0)
            counted.append(bool(trace.supervised[lo:hi].any()))
        top = max(float(np.nanpercentile(ce, 98)) if np.isfinite(ce).any() else 1.0, 1e-6)
        columns = []
        for value in values:
            eighths = round(min(value / top, 1.0) * rows * 8)
            column = ""
            for row in range(rows - 1, -1, -1):  # top row first
                level = min(max(eighths - row * 8, 0), 8)
                column += BLOCKS[level]
            columns.append(column)
        self._cache = (width, rows, columns, np.asarray(counted))
        return columns, self._cache[3]

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        if width < 1 or height < 2 or len(self.result.trace) == 0:
            return Text("")
        rows = height - 1  # the last line carries the cursor marker
        columns, counted = self._columns(width, rows)
        edges = self._bins(width)
        here = int(np.searchsorted(edges, self.cursor, side="right")) - 1
        repeat = max(width // len(columns), 1)  # short samples: each position several cells wide
        text = Text(no_wrap=True, overflow="crop", end="")
        for row in range(rows):
            for i, column in enumerate(columns):
                style = "bold yellow" if i == here else "cyan" if counted[i] else "dim"
                text.append(column[row] * repeat, style)
            text.append("\n")
        marker = here * repeat + repeat // 2
        label = f"t={self.cursor}"
        if marker + 2 + len(label) <= width:
            text.append(" " * marker + "▲ ", "bold yellow")
            text.append(label, "bold")
        else:
            text.append(" " * max(marker - len(label) - 1, 0))
            text.append(label + " ", "bold")
            text.append("▲", "bold yellow")
        return text
