"""The marked sections of bench/RESULTS.md (`<!-- bench.NAME: begin -->` ... `end -->`): each benchmark module
replaces its own and `bench.run` keeps the others."""

from __future__ import annotations

import re
from pathlib import Path

MARKED = re.compile(r"<!-- (bench\.[a-z_]+): begin -->.*?<!-- \1: end -->", re.S)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}: begin -->", f"<!-- {name}: end -->"


def marked_sections(text: str) -> list[str]:
    """Every marked section of `text`, markers included, in order."""
    return [match.group(0) for match in MARKED.finditer(text)]


def write_section(path: Path, name: str, body: str) -> None:
    """Put `body` between `name`'s markers in `path` (replacing what was there, or appended)."""
    begin, end = markers(name)
    section = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")
