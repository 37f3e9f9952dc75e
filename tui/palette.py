"""The one palette: severities, verdicts, the CE heatmap and mask-reason colours, for every screen, report
and the HTML/SVG export (Rich style specs and colours; widgets turn them into Styles)."""

from __future__ import annotations

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}

GOOD = "green"  # a check that passed: parity, top-1 agreement, no lints
BAD = "bold red"  # a check that failed, NaN/inf
CAUTION = "yellow"  # a note worth reading (a skipped reference)
UNDECIDED = "dim"  # a check that could not be made (no supervised token)


def verdict_style(ok: bool | None, loud: bool = False) -> str:
    """ours vs HF (engine.model.results.parity) and every other pass/fail: `loud` for the stepper's loss panel."""
    if ok is None:
        return UNDECIDED
    if loud:
        return "bold green" if ok else "bold white on red"
    return GOOD if ok else BAD


def check_style(ok: bool) -> str:
    """A ✓ / ✗ beside a number."""
    return GOOD if ok else BAD


# CE heatmap, low -> high CE of predicting the token (the `c` key, `report --html/--svg --colour-by ce`).
HEAT_COLOURS = ("#4caf50", "#9ccc65", "#d4e157", "#ffca28", "#ff8f00", "#f4511e", "#d50000")

# Background per mask reason (the `w` key, `--colour-by reason`), by MaskReason's value (engine/inputs/sample.py: this
# module stays free of numpy): counted tokens green, each kind of masking its own colour.
REASON_COLOURS = {
    "supervised": "#1f4d1f",
    "template-inserted, trained": "#3f5f1f",
    "prompt": "#1f3f6b",
    "system turn": "#6b4f1f",
    "user turn": "#1f5f5f",
    "tool turn": "#2f4f4f",
    "template markup": "#4f2f6b",
    "template-inserted": "#6b2f5f",
    "end-of-turn token": "#5f5f1f",
    "padding": "grey11",
    "document start": "#5f5f1f",
    "masked in your labels": "#6b1f1f",
    "first token": "grey30",
}

__all__ = [
    "BAD",
    "CAUTION",
    "GOOD",
    "HEAT_COLOURS",
    "REASON_COLOURS",
    "SEVERITY_STYLE",
    "UNDECIDED",
    "check_style",
    "verdict_style",
]
