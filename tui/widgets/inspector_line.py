"""One line about the target token (t+1): id, raw piece, text, UTF-8 bytes, and a split character it completes.

The token facts come from the screen's backend (`Backend.inspect_token`), passed in as `inspect`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tokstep.engine.results import TraceResult
from tokstep.engine.tokens import make_visible
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
        if self.result.trace.label_differs(cursor):
            self.set_lines(describe_mismatch(info, int(self.result.trace.target_ids[cursor]), self.result))
        else:
            self.set_lines(describe(info))


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


def describe(info: Any) -> Lines:
    """The inspector line. A token holding part of a character says so first, in the report's words
    (`split character t=5..7 = '기'`), so it stays visible in 80 columns."""
    line = Lines()
    line.add(f"target #{info.index} ", "bold")
    if info.partial:
        start, end = info.span
        line.add(f" id {info.token_id} {info.piece!r}  ")
        line.add(f"split character t={start}..{end - 1} = '{make_visible(info.completes)}'", "bold yellow")
        line.add(f"  bytes {info.utf8_hex}", "dim")
        return line
    line.add(f" id {info.token_id}  piece {info.piece!r}  text '{token_text(info)}'  ")
    line.add(f"bytes {info.utf8_hex or '—'}", "dim")
    if info.special:
        line.add("  special", "bold magenta")
    return line
