"""The model's top-k next tokens at position t, the target's row marked (an extra row when it ranks below k)."""

from __future__ import annotations

import math

from rich.cells import cell_len

from tokstep.engine.model.results import TraceResult
from tokstep.tui.formatting import bar, clip, number, probability, token_label
from tokstep.tui.widgets.lines import CursorPanel, Line, style

TARGET = style("bold black on yellow")
SPECIAL = style("magenta")
HEADER = style("bold")


def _fit(text: str, width: int) -> str:
    """Clip or pad to exactly `width` cells."""
    text = clip(text, width)
    return text + " " * (width - cell_len(text))


class TopKTable(CursorPanel[TraceResult]):
    """Rank, token (readable and raw piece), id, q as a number and a bar, log q."""

    DEFAULT_CSS = "TopKTable { height: 1fr; }"

    def __init__(self, result: TraceResult, *, id: str | None = None) -> None:
        super().__init__(result, id=id)
        self.mode = "text"
        self.id_width = max(len(str(result.trace.model_vocab_size)), 2)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.show(self.cursor)

    def on_resize(self) -> None:
        self.show(self.cursor)

    def show(self, cursor: int) -> None:
        self.cursor = t = cursor
        trace = self.result.trace
        width = self.size.width or 30  # before the first layout: any width, a resize shows it again
        rows_available = max(self.size.height - 1, 2)  # minus the header line
        target = int(trace.target_ids[t])
        ids, logprobs = trace.topk_ids[t].tolist(), trace.topk_logprobs[t].tolist()
        target_inside = target in ids
        rank_text = f"{int(trace.rank[t])}{'=' if trace.ties[t] else ''}"
        # Too narrow for every column (compare's two tables side by side at 80 columns): q stays a number,
        # log q goes first, then the id, then the rank column shrinks to the widest rank shown.
        self._rank_width, self._show_id, self._show_logq = 5, True, True
        fixed = 2 + 6 + self.id_width + 1 + 8 + 8  # marker, rank, id, q, log q with their gaps
        if width - fixed < 4:
            self._show_logq, fixed = False, fixed - 8
        if width - fixed < 4:
            self._show_id, fixed = False, fixed - self.id_width - 1
            self._rank_width = max(len(str(len(ids))), 1 if target_inside else len(rank_text))
            fixed -= 5 - self._rank_width
        show_piece = width - fixed >= 34 and self.mode != "piece"
        bar_width = min(max(width - fixed - (26 if show_piece else 12), 0), 8)  # room the tokens do not need
        free = width - fixed - (bar_width + 1 if bar_width else 0)
        self._token_width = max((free - 1) // 2 if show_piece else free, 4)
        self._piece_width = (free - 1 - self._token_width) if show_piece else 0
        self._bar_width = bar_width

        header = (
            "  "
            + f"{'#':>{self._rank_width}} "
            + _fit("raw piece" if self.mode == "piece" else "token", self._token_width)
        )
        if show_piece:
            header += " " + _fit("piece", self._piece_width)
        header += (f" {'id':>{self.id_width}}" if self._show_id else "") + f" {'q':>7}"
        if self._show_logq:
            header += " " + (" " * (bar_width + 1) if bar_width else "") + f"{'log q':>7}"
        lines: list[Line] = [[(header, HEADER)]]
        shown = min(len(ids), rows_available - (0 if target_inside else 2))
        for rank, (token_id, logprob) in enumerate(zip(ids[:shown], logprobs[:shown], strict=True), start=1):
            lines.append(self._row(str(rank), token_id, logprob, token_id == target))
        if not target_inside:
            lines.append([(f"  {'⋮':>{self._rank_width}}", None)])
            lines.append(self._row(rank_text, target, float(trace.logprob[t]), True))
        self.set_lines(lines)

    def _row(self, rank: str, token_id: int, logprob: float, is_target: bool) -> Line:
        texts = self.result.texts
        q = math.exp(logprob) if math.isfinite(logprob) else math.nan
        label = token_label(texts, token_id, "piece" if self.mode == "piece" else "text")
        special = texts.is_special(token_id) or not texts.in_tokenizer(token_id)
        row_style = TARGET if is_target else None
        pieces: Line = [(("▶ " if is_target else "  ") + f"{rank:>{self._rank_width}} ", row_style)]
        pieces.append((_fit(label, self._token_width), TARGET if is_target else SPECIAL if special else None))
        if self._piece_width:
            pieces.append((" " + _fit(texts.piece(token_id), self._piece_width), row_style))
        q_text = f"{probability(q):>7}"  # always the number: the bar is extra, where there is room
        tail = (f" {token_id:>{self.id_width}}" if self._show_id else "") + f" {q_text}"
        if self._show_logq:
            tail += (
                " " + (bar(q, self._bar_width) + " " if self._bar_width else "") + f"{number(logprob, 3):>7}"
            )
        pieces.append((tail, row_style))
        return pieces
