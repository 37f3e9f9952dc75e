"""The one severity palette: how error / warning / info look wherever findings are shown (Rich styles)."""

from __future__ import annotations

from rich.text import Text

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}  # worst first


def severity_style(severity: str) -> str:
    """The style of a severity name (an unknown one reads as info)."""
    return SEVERITY_STYLE.get(severity, SEVERITY_STYLE["info"])


def severity_text(severity: str, width: int = 0) -> Text:
    """The severity word in its colour, padded to `width`."""
    return Text(f"{severity:<{width}}", style=severity_style(severity))
