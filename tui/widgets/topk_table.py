"""The model's top-k next tokens at position t, the target's row marked (an extra row when it ranks below k)."""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from engine.session import TraceResult
from tui.formatting import bar, clip, number, probability, token_label

TARGET_STYLE = "bold black on yellow"
SPECIAL_STYLE = "magenta"


class TopKTable(Static):
    """Rank, token (readable and raw piece), id, q as a bar and a number, log q."""

    DEFAULT_CSS = "TopKTable { height: 1fr; }"

    def __init__(self, result: TraceResult, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.result = result
        self.cursor = 0
        self.mode = "text"

    def show(self, cursor: int) -> None:
        self.cursor = cursor
        self.update(self._table(), layout=False)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.show(self.cursor)

    def on_resize(self) -> None:
        self.show(self.cursor)

    def _token(self, token_id: int, width: int) -> Text:
        texts = self.result.texts
        style = SPECIAL_STYLE if texts.is_special(token_id) or not texts.in_tokenizer(token_id) else ""
        label = token_label(texts, token_id, "piece" if self.mode == "piece" else "text")
        return Text(clip(label, width), style=style)

    def _table(self) -> Table:
        trace, t = self.result.trace, self.cursor
        width = max(self.content_size.width, 30)
        rows_available = max(self.content_size.height - 1, 2)  # minus the header line
        fixed = 2 + 4 + 6 + 7 + 7  # marker, rank, id, q, log q (each with a space after it)
        bar_width = min(max(width - fixed - 16, 0), 10)  # the bar only takes room the token does not need
        show_piece = width - fixed - bar_width >= 40 and self.mode != "piece"
        token_width = max((width - fixed - bar_width - 2) // (2 if show_piece else 1), 4)

        table = Table(
            box=None, expand=True, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 1, 0, 0)
        )
        table.add_column(" ", width=1, no_wrap=True)
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("raw piece" if self.mode == "piece" else "token", no_wrap=True, ratio=1, min_width=4)
        if show_piece:
            table.add_column("piece", no_wrap=True, ratio=1, min_width=4)
        table.add_column("id", justify="right", no_wrap=True)
        table.add_column("q", justify="right", no_wrap=True)
        if bar_width:
            table.add_column("", width=bar_width, no_wrap=True)
        table.add_column("log q", justify="right", no_wrap=True)

        target = int(trace.target_ids[t])
        ids, logprobs = trace.topk_ids[t].tolist(), trace.topk_logprobs[t].tolist()
        target_inside = target in ids
        shown = min(len(ids), rows_available - (0 if target_inside else 2))
        for rank, (token_id, logprob) in enumerate(zip(ids[:shown], logprobs[:shown], strict=True), start=1):
            self._add_row(
                table, str(rank), token_id, logprob, token_width, show_piece, bar_width, token_id == target
            )
        if not target_inside:
            table.add_row("", "⋮", *[""] * (len(table.columns) - 2))
            rank = f"{int(trace.rank[t])}{'=' if trace.ties[t] else ''}"
            self._add_row(
                table, rank, target, float(trace.logprob[t]), token_width, show_piece, bar_width, True
            )
        return table

    def _add_row(
        self,
        table: Table,
        rank: str,
        token_id: int,
        logprob: float,
        token_width: int,
        show_piece: bool,
        bar_width: int,
        is_target: bool,
    ) -> None:
        q = math.exp(logprob) if math.isfinite(logprob) else math.nan
        cells: list[Text | str] = ["▶" if is_target else "", rank, self._token(token_id, token_width)]
        if show_piece:
            cells.append(clip(self.result.texts.piece(token_id), token_width))
        cells += (
            [str(token_id), probability(q)]
            + ([bar(q, bar_width)] if bar_width else [])
            + [number(logprob, 3)]
        )
        table.add_row(*cells, style=TARGET_STYLE if is_target else None)
