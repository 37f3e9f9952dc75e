"""One line about the target token (t+1): id, raw piece, text, UTF-8 bytes, and a split character it completes.

Uses `engine.inspector.inspect_token` when that module is present; the line hides itself otherwise.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from engine.session import TraceResult
from engine.tokens import make_visible


def load_inspector() -> Any | None:
    """`engine.inspector.inspect_token`, or None while that module does not exist."""
    try:
        from engine.inspector import inspect_token
    except ImportError:
        return None
    return inspect_token


class InspectorLine(Static):
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
        try:
            info = self.inspect(self.result.texts.tokenizer, self._ids, index)
        except Exception as error:  # noqa: BLE001 - the inspector must never take the stepper down
            self.update(Text(f"inspector: {type(error).__name__}: {error}", style="dim"), layout=False)
            return
        self.update(describe(info), layout=False)


def describe(info: Any) -> Text:
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(f"target #{info.index} ", "bold")
    line.append(f" id {info.token_id}  piece {info.piece!r}  text '{make_visible(info.text)}'  ")
    line.append(f"bytes {info.utf8_hex or '—'}", "dim")
    if info.special:
        line.append("  special", "bold magenta")
    if info.partial:
        start, end = info.span
        line.append(
            f"  partial UTF-8: tokens {start}–{end - 1} make '{make_visible(info.completes)}'", "bold yellow"
        )
    return line
