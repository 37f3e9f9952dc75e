"""Severities wherever findings are shown: their colour (tui/palette.py), order, letters and counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.text import Text

from tokstep.tui.palette import SEVERITY_STYLE  # noqa: E402 - re-exported: the palette is in tui/palette.py

SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}  # worst first


def severity_style(severity: str) -> str:
    """The style of a severity name (an unknown one reads as info)."""
    return SEVERITY_STYLE.get(severity, SEVERITY_STYLE["info"])


def severity_text(severity: str, width: int = 0) -> Text:
    """The severity word in its colour, padded to `width`."""
    return Text(f"{severity:<{width}}", style=severity_style(severity))


SEVERITY_LETTER = {"error": "E", "warning": "W", "info": "I"}


def severity_counts(findings: Iterable[Any]) -> dict[str, int]:
    """How many findings of each severity, worst first, only those present (the one counting rule: every
    finding counts, info included, wherever a number of lints is shown)."""
    counts = {name: 0 for name in SEVERITY_RANK}
    for finding in findings:
        severity = finding.severity if finding.severity in counts else "info"
        counts[severity] += 1
    return {name: count for name, count in counts.items() if count}


def tally_pieces(counts: Mapping[str, int]) -> list[tuple[str, str]]:
    """(`3E`, style), (` 1I`, style): each severity's count with its letter and colour, worst first."""
    pieces: list[tuple[str, str]] = []
    for name, count in counts.items():
        if count:
            letter = SEVERITY_LETTER.get(name, "I")
            pieces.append(((" " if pieces else "") + f"{count}{letter}", severity_style(name)))
    return pieces


def lint_tally(counts: Mapping[str, int]) -> Text:
    """`3E 1W 1I`: each severity's count in its colour, worst first; empty when there are none."""
    return Text.assemble(*tally_pieces(counts))
