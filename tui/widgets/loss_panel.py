"""The loss at position t: its CE, the running sum / count / mean, entropy, and HF's number at the end."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widgets import Static

from engine.session import TraceResult
from tui.formatting import number


def parity(result: TraceResult) -> tuple[str, bool | None]:
    """How our mean compares with HF's `model(input_ids, labels=labels).loss`: (badge text, ok or None)."""
    from engine.trace import parity_tolerance

    ours, theirs = result.trace.loss, result.reference
    if not result.reference_computed:
        return "HF reference not computed", None
    if ours is None and theirs is None:
        return "✓ both undefined (nothing supervised)", True
    if ours is None or theirs is None:
        return "✗ MISMATCH (one side undefined)", False
    diff = abs(ours - theirs)
    ok = diff <= parity_tolerance(result.info.dtype) * max(abs(theirs), 1e-12)
    return (f"✓ match |Δ| {diff:.1e}" if ok else f"✗ MISMATCH |Δ| {diff:.1e}"), ok


class LossPanel(Static):
    """Numbers for the cursor's position; masked positions say why they are not counted."""

    DEFAULT_CSS = "LossPanel { height: 5; }"

    def __init__(self, result: TraceResult, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.result = result
        self.cursor = 0

    def show(self, cursor: int) -> None:
        self.cursor = cursor
        self.update(self._body(), layout=False)

    def _body(self) -> Text:
        result, t = self.result, self.cursor
        trace, sample = result.trace, result.sample
        counted = bool(trace.supervised[t])
        ce = float(trace.ce[t]) if trace.finite[t] else math.nan
        count = int(trace.running_count[t])

        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("CE      ", "bold")
        text.append(number(ce), "bold" if counted else "dim")
        text.append(f"   entropy {number(float(trace.entropy[t]), 3)} nats\n")
        if counted:
            text.append("counted ✓ supervised\n", "green")
        else:
            reason = sample.mask_reasons[t + 1].value  # the target token's reason: labels[t+1] = -100
            text.append(f"not counted: {reason} (label −100)\n", "dim")
        text.append("Σ CE    ", "bold")
        text.append(f"{number(float(trace.running_sum[t]))} over n = {count} supervised\n")
        text.append("mean    ", "bold")
        mean = trace.running_mean(t)
        text.append(number(mean), "bold")
        text.append(" = Σ / n" if mean is not None else " (nothing counted yet)")
        text.append("\n")
        if t == len(trace) - 1:
            badge, ok = parity(result)
            text.append("HF loss ", "bold")
            text.append(number(result.reference, 6) if result.reference_computed else "—")
            text.append("  ")
            style = "dim" if ok is None else "bold green" if ok else "bold white on red"
            text.append(badge, style)
        else:
            text.append("HF loss: at the last position (End)", "dim")
        return text
