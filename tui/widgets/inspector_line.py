"""One line about the target token (t+1): id, raw piece, text, UTF-8 bytes, and a split character it completes.

The token facts come from the screen's backend (`Backend.inspect_token`), passed in as `inspect`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rich.cells import cell_len

from tokstep.engine.model.results import TraceResult
from tokstep.engine.model.tokens import make_visible
from tokstep.tui.widgets.lines import Lines, LinesView

NEIGHBOURS = 8  # ids passed to the inspector on each side of the token


class InspectorLine(LinesView):
    """`target #13  id 1234  piece 'Ġthe'  text '␣the'  bytes 20 74 68 65`, plus special / partial marks."""

    DEFAULT_CSS = "InspectorLine { height: 1; }"

    def __init__(self, result: TraceResult, inspect: Any, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.result = result
        self.inspect = inspect
        self._ids = result.sample.input_ids.tolist()
        self.cursor = 0

    def show(self, cursor: int) -> None:
        self.cursor = cursor
        index = min(cursor + 1, len(self._ids) - 1)  # the target of position t
        # A split character spans at most 4 bytes, so a few neighbours each side are all it needs:
        # pass a window, not all T ids (that would cost O(T) per step).
        lo = max(index - NEIGHBOURS, 0)
        try:
            info = self.inspect(
                self.result.texts.tokenizer, self._ids[lo : index + NEIGHBOURS + 1], index - lo
            )
            info = replace(info, index=info.index + lo, span=(info.span[0] + lo, info.span[1] + lo))
        except Exception as error:  # noqa: BLE001 - the inspector must never take the stepper down
            self.set_lines(Lines().add(f"inspector: {type(error).__name__}: {error}", "dim"))
            return
        self.info = info
        self._draw()

    def _width(self) -> int:
        return max(self.size.width - 2, 20) if self.size.width else 78  # minus the padding

    def _draw(self) -> None:
        if self.result.trace.label_differs(self.cursor):
            label = int(self.result.trace.target_ids[self.cursor])
            self.set_lines(describe_mismatch(self.info, label, self.result))
        else:
            self.set_lines(describe(self.info, self._width()))

    def on_resize(self) -> None:
        if getattr(self, "info", None) is not None:
            self._draw()


def describe_mismatch(info: Any, label: int, result: TraceResult) -> Lines:
    """The next input token and the label both, and that the loss scores the label."""
    line = Lines()
    line.add("label ≠ next input ", "bold black on yellow")
    line.add(f" #{info.index} input id {info.token_id} '{make_visible(info.text)}'  ")
    line.add(f"label id {label} '{result.texts.visible(label)}'", "bold")
    line.add("  the loss scores the label (labels shifted?)", "dim")
    return line


def token_text(info: Any) -> str:
    """The text this token adds, from its real bytes (never U+FFFD, never an empty string for `▁`): a leading
    space shows as ␣, a byte that is only part of a character as `\\xNN`."""
    if info.special or not info.utf8_hex:
        return info.text
    data = bytes.fromhex(info.utf8_hex)
    return make_visible(data.decode("utf-8", errors="backslashreplace")) if data else "∅"


def describe(info: Any, width: int = 1000) -> Lines:
    """The inspector line, at its fullest that fits `width`: the bytes dropped first, then the labels shortened.
    A token holding part of a character says so first, in the report's words (`split character t=5..7 = '기'`)."""
    for compact, with_bytes in ((False, True), (False, False), (True, False)):
        line = _describe(info, compact, with_bytes)
        if sum(cell_len(text) for text, _style in line.lines[0]) <= width:
            return line
    return line


def _describe(info: Any, compact: bool, with_bytes: bool) -> Lines:
    line = Lines()
    line.add(f"target #{info.index} " if not compact else f"#{info.index} ", "bold")
    if info.partial:
        start, end = info.span
        line.add(f" id {info.token_id} {info.piece!r}  ")
        line.add(f"split character t={start}..{end - 1} = '{make_visible(info.completes)}'", "bold yellow")
        if with_bytes:
            line.add(f"  bytes {info.utf8_hex}", "dim")
        return line
    text = token_text(info)
    if not compact:
        line.add(f" id {info.token_id}  piece {info.piece!r}  text '{text}'  ")
    elif info.piece == text:
        line.add(f" id {info.token_id} '{text}'  ")
    else:
        line.add(f" id {info.token_id} {info.piece!r}→'{text}'  ")
    if with_bytes:
        line.add(f"bytes {info.utf8_hex or '—'}" if not compact else info.utf8_hex or "—", "dim")
    if info.special:
        line.add("  special", "bold magenta")
    return line
