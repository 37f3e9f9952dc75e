#!/usr/bin/env python3
"""Obtain the tokstep-mini training corpus reproducibly: the King James Bible.

Source: Debian's ``bible-kjv`` package (program ``bible``) and its data
package ``bible-kjv-text`` (public domain text). Nothing is downloaded from
any model/data hub; if ``bible`` is missing the script installs the package
with ``apt-get`` (needs root and access to the Debian archive).

``bible "Gen1:1-Rev22:21"`` prints the whole text as chapter headings
("Genesis 1"), a blank line, then numbered verses ("  1 In the beginning ...")
wrapped at ~80 columns.  We parse that into one JSON record per verse:

    {"book": "Genesis", "chapter": 1, "verse": 1, "text": "In the beginning ..."}

Usage:
    python scripts/get_corpus.py [OUT.jsonl]      # default /tmp/kjv.jsonl

The output is deterministic (31,102 verses in 1,189 chapters of 66 books).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

RANGE = "Gen1:1-Rev22:21"
HEADING = re.compile(r"^(\S.*?) (\d+)$")
VERSE = re.compile(r"^ {2}(\d+) (.*)$")

EXPECTED_VERSES = 31102
EXPECTED_CHAPTERS = 1189


def ensure_bible() -> str:
    exe = shutil.which("bible")
    if exe:
        return exe
    print("`bible` not found; installing Debian package bible-kjv ...", file=sys.stderr)
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "bible-kjv"], check=True, env=env)
    exe = shutil.which("bible") or "/usr/bin/bible"
    return exe


def raw_text() -> str:
    exe = ensure_bible()
    out = subprocess.run([exe, RANGE], check=True, capture_output=True)
    return out.stdout.decode("ascii")


def parse(raw: str) -> list[dict]:
    """Parse `bible` output into verse records, unwrapping continuation lines."""
    records: list[dict] = []
    book: str | None = None
    chapter = 0
    lines = raw.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        m = VERSE.match(line)
        if m:
            if book is None:
                raise ValueError(f"verse before any heading at line {i + 1}")
            records.append(
                {"book": book, "chapter": chapter, "verse": int(m.group(1)), "text": m.group(2).strip()}
            )
            continue
        m = HEADING.match(line)
        # A heading stands alone between blank lines; a wrapped verse line never does.
        prev_blank = i == 0 or not lines[i - 1].strip()
        next_blank = i + 1 >= len(lines) or not lines[i + 1].strip()
        if m and prev_blank and next_blank:
            book, chapter = m.group(1), int(m.group(2))
            continue
        if not records:
            raise ValueError(f"unexpected line {i + 1}: {line!r}")
        # continuation of the previous verse
        records[-1]["text"] += " " + line.strip()
    for r in records:
        r["text"] = re.sub(r"\s+", " ", r["text"]).strip()
    return records


def check(records: list[dict]) -> None:
    chapters = {(r["book"], r["chapter"]) for r in records}
    if len(records) != EXPECTED_VERSES or len(chapters) != EXPECTED_CHAPTERS:
        raise SystemExit(
            f"unexpected corpus shape: {len(records)} verses, {len(chapters)} chapters "
            f"(expected {EXPECTED_VERSES}/{EXPECTED_CHAPTERS})"
        )
    prev, last = None, 0
    for r in records:
        key = (r["book"], r["chapter"])
        expected = last + 1 if key == prev else 1
        if r["verse"] != expected:
            raise SystemExit(f"verse numbering broken at {r}")
        prev, last = key, r["verse"]


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path("/tmp/kjv.jsonl")
    records = parse(raw_text())
    check(records)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    books = len(dict.fromkeys(r["book"] for r in records))
    print(f"wrote {len(records)} verses, {books} books -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
