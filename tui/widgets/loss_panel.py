"""The loss at position t: its CE, the running sum / count / mean, entropy, and HF's number at the end."""

from __future__ import annotations

import math

from tokstep.engine.model.results import TraceResult, parity
from tokstep.tui.formatting import number
from tokstep.tui.palette import verdict_style
from tokstep.tui.widgets.lines import CursorPanel, Lines


class LossPanel(CursorPanel[TraceResult]):
    """Numbers for the cursor's position; masked positions say why they are not counted."""

    DEFAULT_CSS = "LossPanel { height: 5; }"

    def show(self, cursor: int) -> None:
        self.cursor = t = cursor
        result = self.result
        trace, sample = result.trace, result.sample
        counted = bool(trace.supervised[t])
        ce = float(trace.ce[t]) if trace.finite[t] else math.nan

        lines = Lines()
        lines.add("CE      ", "bold").add(number(ce), "bold" if counted else "dim")
        lines.add(f"   entropy {number(float(trace.entropy[t]), 3)} nats\n")
        if counted:
            lines.add("counted ✓ supervised\n", "green")
        else:
            reason = sample.mask_reasons[t + 1].value  # the target token's reason: labels[t+1] = -100
            why = f"not counted: {reason} (label −100)"  # the reason first: it must survive a narrow panel
            short = 0 < self.size.width < len(why)
            lines.add((f"not counted: {reason}" if short else why) + "\n", "dim")
        lines.add("Σ CE    ", "bold")
        lines.add(f"{number(float(trace.running_sum[t]))}  n = {int(trace.running_count[t])} counted\n")
        mean = trace.running_mean(t)
        lines.add("mean    ", "bold").add(number(mean), "bold")
        lines.add(" = Σ / n\n" if mean is not None else " (nothing counted yet)\n")
        if t == len(trace) - 1:
            verdict = parity(result)
            lines.add("HF      ", "bold").add(
                number(result.reference, 6) if result.reference_computed else "—"
            )
            lines.add(" ").add(verdict.badge, verdict_style(verdict.ok, loud=True))
        else:
            lines.add("HF loss: compared at the end (End)", "dim")
        self.set_lines(lines)
