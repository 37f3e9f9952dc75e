"""The one-hot target p beside the model's q: in Σ −p·log q only the target's term survives."""

from __future__ import annotations

import math

from tokstep.engine.model.results import TraceResult
from tokstep.tui.formatting import clip, number, probability, token_label
from tokstep.tui.widgets.lines import CursorPanel, Lines

TARGET_STYLE = "bold black on yellow"


class OneHotPanel(CursorPanel[TraceResult]):
    """p = [0, …, 1, …, 0] at the target id, q at the same id, and CE = −log q(target)."""

    DEFAULT_CSS = "OneHotPanel { height: 4; }"

    def on_resize(self) -> None:
        self.show(self.cursor)

    def show(self, cursor: int) -> None:
        self.cursor = cursor
        trace, texts, t = self.result.trace, self.result.texts, cursor
        target = int(trace.target_ids[t])
        width = max(self.size.width, 20)
        logprob = float(trace.logprob[t])
        finite = bool(trace.finite[t]) and math.isfinite(logprob)
        q = math.exp(logprob) if finite else math.nan

        lines = Lines()
        lines.add("p = [0…0 ").add("1", TARGET_STYLE).add(" 0…0]  ")
        prefix = f"1 at id {target} "
        lines.add(prefix).add(clip(token_label(texts, target), max(width - 17 - len(prefix), 4)), "bold")
        lines.add(f"\nq = [·…· {probability(q)} ·…·]  of {trace.model_vocab_size} ids\n")
        if trace.label_differs(t):  # p follows the label, not the next input token
            following = int(self.result.sample.input_ids[t + 1])
            notice = f"label ≠ next input id {following} {token_label(texts, following)}"
            lines.add(clip(notice, width) + "\n", "bold yellow")
        else:
            lines.add("Σ −p·log q: only the target's term\n", "dim")
        lines.add("CE = −log q(target) = ", "bold")
        if finite:
            if width >= 46:
                lines.add(f"−log {probability(q)} = ")
            lines.add(number(-logprob), "bold")
        else:
            lines.add("NaN/inf (non-finite logits)", "bold red")
        self.set_lines(lines)
