"""The context: the sample's tokens as a wrapped strip, only the visible window laid out and drawn.

Token boundaries alternate two shades; masked (-100) tokens are dim; special tokens are marked; the
current token t is reversed and its target t+1 highlighted. With the heatmap on, each token i is coloured
by the loss of predicting it (the CE at position i-1).
"""

from __future__ import annotations

import math

import numpy as np
from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.message import Message
from textual.widget import Widget

from engine.session import TraceResult
from tui.formatting import clip, token_label

SHADES = (Style(bgcolor="grey19"), Style(bgcolor="grey30"))
MASKED = Style(dim=True, italic=True)
SPECIAL = Style(color="magenta", bold=True)
CURRENT = Style(reverse=True, bold=True)
TARGET = Style(color="black", bgcolor="yellow", bold=True, underline=True)
HEAT = tuple(
    Style(color="black", bgcolor=c)
    for c in ("#4caf50", "#9ccc65", "#d4e157", "#ffca28", "#ff8f00", "#f4511e", "#d50000")
)

Line = list[tuple[int, str]]  # (token index, what is drawn for it)


class ContextStrip(Widget):
    """Tokens 0..N-1 around the cursor; click a token to go to the position that predicts it."""

    DEFAULT_CSS = "ContextStrip { height: 1fr; min-height: 1; }"

    class TokenClicked(Message):
        def __init__(self, token_index: int) -> None:
            super().__init__()
            self.token_index = token_index

    def __init__(self, result: TraceResult, *, no_color: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.result = result
        self.cursor = 0
        self.mode = "text"  # text | piece | id
        self.heatmap = False
        self.no_color = no_color  # then a space marks each boundary (spaces in tokens are shown as ␣)
        self._start = 0  # first token of the visible window; kept while the cursor stays in view
        self._hits: list[list[tuple[int, int, int]]] = []  # per line: (x0, x1, token index)
        ids = result.sample.input_ids
        self._ids: list[int] = ids.tolist()
        self._masked = np.asarray([not r.counted for r in result.sample.mask_reasons])
        self._special = np.asarray(
            [result.texts.is_special(i) or not result.texts.in_tokenizer(i) for i in self._ids]
        )
        ce = result.trace.ce
        finite_ce = ce[np.isfinite(ce)]
        self._heat_scale = float(np.percentile(finite_ce, 95)) if finite_ce.size else 1.0

    # -- what the screen calls -------------------------------------------------------------------------

    def show(self, cursor: int) -> None:
        self.cursor = cursor
        self.refresh()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self._start = 0
        self.refresh()

    def set_heatmap(self, on: bool) -> None:
        self.heatmap = on
        self.refresh()

    # -- layout ----------------------------------------------------------------------------------------

    def _label(self, index: int) -> str:
        return token_label(self.result.texts, self._ids[index], self.mode)

    @property
    def _gap(self) -> str:
        """What separates tokens besides the shading: a space when shades may not show, or for ids."""
        return " " if self.no_color or self.mode == "id" else ""

    def _cells(self, index: int) -> int:
        return cell_len(self._label(index)) + len(self._gap)

    def _breaks_after(self, index: int) -> bool:
        """A newline inside the token ends the line, so text reads as it was written."""
        return self.mode == "text" and self._label(index).endswith("↵")

    def _layout(self, start: int, width: int, height: int) -> list[Line]:
        """Wrap tokens start.. into at most `height` lines of `width` cells."""
        lines: list[Line] = [[]]
        used = 0
        gap = len(self._gap)
        for index in range(start, len(self._ids)):
            label = clip(self._label(index), width - gap)
            size = cell_len(label) + gap
            if used + size > width and lines[-1]:
                if len(lines) == height:
                    break
                lines.append([])
                used = 0
            lines[-1].append((index, label))
            used += size
            if self._breaks_after(index):
                if len(lines) == height:
                    break
                lines.append([])
                used = 0
        return lines

    def _start_for(self, focus: int, width: int, height: int) -> int:
        """A start that puts token `focus` about a third of the way down (estimated backwards, then checked)."""
        lines_before, used, start = max(height // 3, 0), 0, focus
        while start > 0 and lines_before >= 0:
            size = self._cells(start - 1)
            if used + size > width or self._breaks_after(start - 1):
                lines_before -= 1
                used = 0
                if lines_before < 0:
                    break
            used += size
            start -= 1
        return start

    def _visible(self, lines: list[Line], index: int, height: int) -> bool:
        """Token `index` is on screen and not on the last line (unless everything fits)."""
        last_full = len(lines) == height and lines[-1] and lines[-1][-1][0] < len(self._ids) - 1
        for row, line in enumerate(lines):
            if any(i == index for i, _ in line):
                return not (last_full and row == height - 1 and height > 2)
        return False

    def _window(self, width: int, height: int) -> list[Line]:
        target = min(self.cursor + 1, len(self._ids) - 1)
        if self.cursor >= self._start:
            lines = self._layout(self._start, width, height)
            if self._visible(lines, target, height):
                return lines
        self._start = self._start_for(self.cursor, width, height)
        lines = self._layout(self._start, width, height)
        while not self._visible(lines, target, height) and self._start < self.cursor:
            self._start += 1
            lines = self._layout(self._start, width, height)
        return lines

    # -- drawing ---------------------------------------------------------------------------------------

    def _style(self, index: int) -> Style:
        if index == self.cursor:
            return CURRENT
        if index == self.cursor + 1:
            return TARGET
        style = SHADES[index % 2]
        if self.heatmap and index > 0:
            style = self._heat(float(self.result.trace.ce[index - 1]))
        if self._special[index]:
            style += SPECIAL
        if self._masked[index]:
            style += MASKED
        return style

    def _heat(self, ce: float) -> Style:
        if not math.isfinite(ce):
            return HEAT[-1] + Style(bold=True)
        level = min(int(ce / max(self._heat_scale, 1e-6) * (len(HEAT) - 1)), len(HEAT) - 1)
        return HEAT[max(level, 0)]

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        if width < 2 or height < 1:
            return Text("")
        text = Text(no_wrap=True, overflow="crop", end="")
        self._hits = []
        gap = self._gap
        for row, line in enumerate(self._window(width, height)):
            if row:
                text.append("\n")
            hits, x = [], 0
            for index, label in line:
                text.append(label, self._style(index))
                text.append(gap)
                size = cell_len(label) + len(gap)
                hits.append((x, x + size, index))
                x += size
            self._hits.append(hits)
        return text

    def token_at(self, x: int, y: int) -> int | None:
        """The token drawn at content cell (x, y), if any."""
        if not 0 <= y < len(self._hits):
            return None
        return next((index for x0, x1, index in self._hits[y] if x0 <= x < x1), None)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = self.token_at(offset.x, offset.y)
        if index is not None:
            self.post_message(self.TokenClicked(index))
