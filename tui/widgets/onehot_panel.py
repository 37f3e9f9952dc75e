"""The one-hot target p beside the model's q: in Σ −p·log q only the target's term survives."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widgets import Static

from engine.session import TraceResult
from tui.formatting import clip, number, probability, token_label

TARGET_STYLE = "bold black on yellow"


class OneHotPanel(Static):
    """p = [0, …, 1, …, 0] at the target id, q at the same id, and CE = −log q(target)."""

    DEFAULT_CSS = "OneHotPanel { height: 4; }"

    def __init__(self, result: TraceResult, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.result = result
        self.cursor = 0

    def show(self, cursor: int) -> None:
        self.cursor = cursor
        self.update(self._body(), layout=False)

    def on_resize(self) -> None:
        self.show(self.cursor)

    def _body(self) -> Text:
        trace, texts, t = self.result.trace, self.result.texts, self.cursor
        target = int(trace.target_ids[t])
        vocab = trace.model_vocab_size
        width = max(self.content_size.width, 20)
        label = clip(token_label(texts, target), max(width - 30, 6))
        logprob = float(trace.logprob[t])
        finite = bool(trace.finite[t]) and math.isfinite(logprob)
        q = math.exp(logprob) if finite else math.nan

        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("p = [0 … 0 ")
        text.append("1", TARGET_STYLE)
        text.append(" 0 … 0]  ")
        text.append(f"1 at id {target} ")
        text.append(label, "bold")
        text.append(f"\nq = [· … · {probability(q)} · … ·]  of {vocab} ids\n")
        text.append("Σ −p·log q: only the target's term\n", "dim")
        text.append("CE = −log q(target) = ", "bold")
        if finite:
            if width >= 46:
                text.append(f"−log {probability(q)} = ")
            text.append(number(-logprob), "bold")
        else:
            text.append("NaN/inf (non-finite logits at this position)", "bold red")
        return text
