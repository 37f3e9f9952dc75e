"""CE over all positions as a block-character sparkline, the cursor's column marked below it."""

from __future__ import annotations

import numpy as np

from tokstep.engine.model.results import TraceResult
from tokstep.tui.widgets.lines import CursorPanel, Line, style

BLOCKS = " ▁▂▃▄▅▆▇█"
CURSOR, COUNTED, MASKED, LABEL = style("bold yellow"), style("cyan"), style("dim"), style("bold")


class LossCurve(CursorPanel[TraceResult]):
    """One column per bin of positions (mean CE of the bin); masked bins dim; `▲` under the cursor's bin."""

    DEFAULT_CSS = "LossCurve { height: 1fr; min-height: 2; }"

    def __init__(self, result: TraceResult, *, id: str | None = None) -> None:
        super().__init__(result, id=id)
        self._cache: tuple[int, int, list[str], list[bool], np.ndarray] | None = None

    def on_resize(self) -> None:
        self.show(self.cursor)

    def values(self) -> np.ndarray:
        """(T,) what is drawn: CE per position, NaN where the logits were not finite."""
        trace = self.result.trace
        return np.where(trace.finite, trace.ce, np.nan)

    def _columns(self, width: int, rows: int) -> tuple[list[str], list[bool], np.ndarray]:
        """Per bin: its column of blocks (top to bottom), whether anything in it is counted; and the bin edges."""
        if self._cache and self._cache[:2] == (width, rows):
            return self._cache[2], self._cache[3], self._cache[4]
        trace = self.result.trace
        ce = self.values()  # (T,)
        edges = np.linspace(0, len(trace), min(width, len(trace)) + 1).astype(int)  # (bins+1,)
        values, counted = [], []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            chunk = ce[lo:hi]
            values.append(float(np.nanmean(chunk)) if np.isfinite(chunk).any() else 0.0)
            counted.append(bool(trace.supervised[lo:hi].any()))
        top = max(float(np.nanpercentile(ce, 98)) if np.isfinite(ce).any() else 1.0, 1e-6)
        columns = []
        for value in values:
            eighths = round(min(value / top, 1.0) * rows * 8)
            columns.append(
                "".join(BLOCKS[min(max(eighths - row * 8, 0), 8)] for row in range(rows - 1, -1, -1))
            )
        self._cache = (width, rows, columns, counted, edges)
        return columns, counted, edges

    def show(self, cursor: int) -> None:
        self.cursor = cursor
        width, height = self.size.width, self.size.height
        if width < 1 or height < 2 or len(self.result.trace) == 0:
            self.set_lines([])
            return
        rows = height - 1  # the last line carries the cursor marker
        columns, counted, edges = self._columns(width, rows)
        here = int(np.searchsorted(edges, cursor, side="right")) - 1
        repeat = max(width // len(columns), 1)  # short samples: each position several cells wide
        lines: list[Line] = []
        for row in range(rows):
            line: Line = []
            run, run_style = "", None
            for i, column in enumerate(columns):
                piece_style = CURSOR if i == here else COUNTED if counted[i] else MASKED
                if piece_style is not run_style and run:
                    line.append((run, run_style))
                    run = ""
                run, run_style = run + column[row] * repeat, piece_style
            line.append((run, run_style))
            lines.append(line)
        marker, label = here * repeat + repeat // 2, f"t={cursor}"
        if marker + 2 + len(label) <= width:
            lines.append([(" " * marker + "▲ ", CURSOR), (label, LABEL)])
        else:
            lines.append([(" " * max(marker - len(label) - 1, 0) + label + " ", LABEL), ("▲", CURSOR)])
        self.set_lines(lines)
