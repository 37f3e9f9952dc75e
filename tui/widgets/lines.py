"""A widget drawn from prepared lines of (text, style) pieces through Textual's Line API.

Every panel of the stepper is one of these: a step only replaces the lines, so there is no markup to parse,
no Rich renderable to lay out and no Rich-to-Textual style conversion per frame. That keeps a step well
under a frame even at T = 8192.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Generic, Protocol, TypeVar, runtime_checkable

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

Piece = tuple[str, Style | None]
Line = list[Piece]


@lru_cache(maxsize=256)
def style(spec: str) -> Style:
    """A Rich style from a spec like `bold yellow`, parsed once."""
    return Style.parse(spec) if spec else Style()


class Lines:
    """Builds lines piece by piece: `add("CE ", "bold")`, `newline()`."""

    def __init__(self) -> None:
        self.lines: list[Line] = [[]]

    def add(self, text: str, spec: str | Style | None = None) -> Lines:
        piece_style = style(spec) if isinstance(spec, str) else spec
        first, *rest = text.split("\n")
        if first:
            self.lines[-1].append((first, piece_style))
        for part in rest:
            self.lines.append([(part, piece_style)] if part else [])
        return self

    def newline(self) -> Lines:
        self.lines.append([])
        return self


class FittedLine:
    """One line built from pieces with a priority: 0 always kept, higher numbers give way first (a whole
    priority at a time) until the line fits; a dim `…` then says something was left out. Numbers stay whole:
    put a number and its label in one piece (or one priority)."""

    def __init__(self) -> None:
        self.pieces: list[tuple[str, str, int]] = []

    def add(self, text: str, spec: str = "", priority: int = 0) -> FittedLine:
        self.pieces.append((text, spec, priority))
        return self

    def fit(self, width: int) -> Lines:
        keep, dropped = self.pieces, False
        while sum(cell_len(text) for text, _, _ in keep) + (2 if dropped else 0) > width:
            worst = max(priority for _, _, priority in keep)
            if worst == 0:
                break
            keep, dropped = [piece for piece in keep if piece[2] != worst], True
        line = Lines()
        for text, spec, _ in keep:
            line.add(text, spec)
        return line.add(" …", "dim") if dropped else line


class LinesView(Widget):
    """Shows `set_lines(...)`; pieces past the right edge are cut, missing lines are blank."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._lines: list[Line] = []

    def set_lines(self, lines: list[Line] | Lines) -> None:
        """Show these lines, repainting only the ones that differ from what is on screen."""
        new = lines.lines if isinstance(lines, Lines) else lines
        old, self._lines = self._lines, new
        if len(old) != len(new) or not self.size:
            self.refresh()
            return
        width = self.size.width
        changed = [
            Region(0, y, width, 1)
            for y, (before, after) in enumerate(zip(old, new, strict=True))
            if before != after
        ]
        if changed:
            self.refresh(*changed)

    def plain_text(self) -> str:
        """What is shown, without styles (tests and text captures read this)."""
        return "\n".join("".join(text for text, _ in line) for line in self._lines)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y >= len(self._lines):
            return Strip.blank(width, base)
        segments = [Segment(text, base + piece if piece else base) for text, piece in self._lines[y]]
        return Strip(segments).crop_extend(0, width, base)


@runtime_checkable
class ResultPanel(Protocol):
    """What the stepper asks of every widget in its `panels`: redraw yourself for position t."""

    def show(self, cursor: int) -> None: ...


R = TypeVar("R")


class CursorPanel(LinesView, Generic[R]):
    """A LinesView drawn from one finished result (a TraceResult, a CompareResult) at one position."""

    def __init__(self, result: R, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.result = result
        self.cursor = 0
