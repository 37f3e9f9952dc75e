"""What A and B say at position t, side by side (KL, CE, ranks, q, top-1), and the KL curve."""

from __future__ import annotations

import math

import numpy as np

from tokstep.engine.compare.results import CompareResult
from tokstep.tui.formatting import clip, number, probability, token_label
from tokstep.tui.widgets.lines import CursorPanel, FittedLine, Lines, LinesView
from tokstep.tui.widgets.loss_curve import LossCurve


def kl_number(value: float) -> str:
    return f"{value:.2e}" if math.isfinite(value) else "NaN/inf"


class ComparePanel(CursorPanel[CompareResult]):
    """Per position: KL(A‖B), CE of both and ΔCE, target rank and q under both, both top-1 tokens."""

    DEFAULT_CSS = "ComparePanel { height: 8; }"

    def __init__(self, result: CompareResult, *, id: str | None = None) -> None:
        super().__init__(result, id=id)
        self.delta = result.delta_ce
        self.agree = result.top1_agree

    def show(self, cursor: int) -> None:
        self.cursor = t = cursor
        r, a, b = self.result, self.result.a.trace, self.result.b.trace
        both = bool(r.both_finite[t])
        line = Lines().add("KL(A‖B) ", "bold")
        if both:
            line.add(f"{kl_number(float(r.kl[t]))} nats", "bold yellow" if r.by_kl_marks[t] else "")
        else:
            line.add("NaN/inf logits: not averaged", "bold red")
        line.newline().add(f"{'':6}{'A':>8} {'B':>8} {'B − A':>8}", "bold")
        ce_a = float(a.ce[t]) if a.finite[t] else math.nan
        ce_b = float(b.ce[t]) if b.finite[t] else math.nan
        delta = f"{self.delta[t]:+.4f}" if both else "—"
        line.newline().add("CE    ", "bold").add(f"{number(ce_a):>8} {number(ce_b):>8} {delta:>8}")
        rank_delta = f"{int(b.rank[t]) - int(a.rank[t]):+d}"
        line.newline().add("rank  ", "bold").add(f"{int(a.rank[t]):>8} {int(b.rank[t]):>8} {rank_delta:>8}")
        q_a, q_b = probability(float(a.prob[t])), probability(float(b.prob[t]))
        line.newline().add("q     ", "bold").add(f"{q_a:>8} {q_b:>8}")
        top_a = clip(token_label(r.a.texts, int(a.topk_ids[t, 0])), 8)
        top_b = clip(token_label(r.b.texts, int(b.topk_ids[t, 0])), 8)
        line.newline().add("top-1 ", "bold").add(f"{top_a:>8} {top_b:>8} ")
        line.add("  ✓ same" if self.agree[t] else "  ✗ differ", "green" if self.agree[t] else "bold red")
        self.set_lines(line)


class CompareBar(LinesView):
    """The second header line: model B, and the sample's KL summary (llama-perplexity's statistics)."""

    DEFAULT_CSS = "CompareBar { height: 1; }"

    def __init__(self, result: CompareResult, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.result = result

    def on_resize(self) -> None:
        self.show(0)

    def show(self, cursor: int) -> None:
        """The fullest line that fits: p99.9, then the median, p99, top-1 and Δloss give way (whole, with a
        `…`); B's name and mean KL stay."""
        r, s = self.result, self.result.summary_cached
        line = FittedLine().add(" vs ", "bold reverse").add(f" {r.label_b} ", "bold").add("│ ", "dim")
        if s.mean_kl is None:
            line.add("KL undefined", "bold red")
        else:
            line.add(f"mean KL {s.mean_kl:.3e} ", "bold")
            line.add(f"· top-1 {100 * (s.top1_agreement or 0):.1f}% ", "", 2)
            line.add(f"· Δloss {s.delta_loss:+.5f} ", "", 1)
            line.add(f"· median {s.median_kl:.2e} ", "", 4)
            line.add(f"· p99 {s.p99_kl:.2e} ", "", 3)
            line.add(f"· p99.9 {s.p999_kl:.2e}", "dim", 5)
        if s.nonfinite:
            line.add(f"  ⚠ {s.nonfinite} NaN/inf", "bold red")
        self.set_lines(line.fit(self.size.width or 1000))


class KLCurve(LossCurve):
    """KL(A‖B) per position, drawn like the loss curve (NaN/inf positions left empty)."""

    def __init__(self, result: CompareResult, *, id: str | None = None) -> None:
        super().__init__(result.a, id=id)
        self.compare = result

    def values(self) -> np.ndarray:
        return np.where(np.isfinite(self.compare.kl), self.compare.kl, np.nan)
