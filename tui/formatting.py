"""Numbers and tokens as the stepper shows them: never NaN as a number, whitespace always visible."""

from __future__ import annotations

import math

from rich.cells import cell_len, set_cell_size

from tokstep.engine.model.tokens import TokenTexts

BAR_EIGHTHS = " ▏▎▍▌▋▊▉█"


def number(value: float | None, digits: int = 4) -> str:
    """A float with fixed digits; `—` for missing, `NaN/inf` for non-finite (never printed as a number)."""
    if value is None:
        return "—"
    value = float(value)
    if not math.isfinite(value):
        return "NaN/inf"
    return unsigned_zero(f"{value:.{digits}f}")


def unsigned_zero(text: str) -> str:
    """`-0.0000` (a CE of -log 1 = -0, or a value rounding to zero) is written `0.0000`."""
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def probability(value: float) -> str:
    """q in [0, 1] with 4 decimals, or scientific when it would round to 0."""
    if not math.isfinite(value):
        return "NaN/inf"
    if 0 < value < 5e-5:
        return f"{value:.1e}"
    return f"{value:.4f}"


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of `width` cells filled to `fraction` with 1/8-cell resolution."""
    if not math.isfinite(fraction) or width <= 0:
        return " " * max(width, 0)
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    full, rest = divmod(eighths, 8)
    text = "█" * full + (BAR_EIGHTHS[rest] if rest else "")
    return text.ljust(width)


def token_label(texts: TokenTexts, token_id: int, mode: str = "text") -> str:
    """How a token is written on screen: `text` (decoded, whitespace visible), `piece` (raw) or `id`."""
    if mode == "id":
        return str(token_id)
    if mode == "piece":
        return texts.piece(token_id)
    return texts.visible(token_id)


def clip(text: str, width: int) -> str:
    """Cut to `width` terminal cells with an ellipsis (wide characters count as two)."""
    if width <= 0:
        return ""
    if cell_len(text) <= width:
        return text
    return set_cell_size(text, width - 1) + "…"
