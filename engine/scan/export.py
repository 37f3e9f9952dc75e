"""The rows of a scan that a filter keeps, written as JSONL (atomically): each line is the scan's record of
the row (row, line, loss, lints, error, ...) with the row itself from the data file under `data`, so the
file lists what to fix and holds the rows to fix. No torch here."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from tokstep.engine.atomic import write_atomic
from tokstep.engine.errors import TokstepError
from tokstep.engine.scan.view import ScanView


def _plain(value: Any) -> Any:
    """JSON without NaN/inf (not JSON): those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def write_rows(view: ScanView, handle: TextIO, progress: Callable[[int], None] | None = None) -> int:
    """Every row the view shows, in its order, one JSON line each; returns how many. The data file is read
    for each row's content when it is still there (else `data` is null: the numbers still say which rows)."""
    try:
        data = view.open_data()
    except (TokstepError, OSError):
        data = None
    written = 0
    # only float columns (and lists of floats) can hold NaN/inf: sanitise those, not every value of a row
    floats = [name for name, kind in view.types.items() if kind.startswith(("DOUBLE", "FLOAT"))]
    try:
        for line in view.records():
            for key in floats:
                line[key] = _plain(line[key])
            line["data"] = data.record(line["row"]) if data is not None else None
            handle.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            written += 1
            if progress is not None and written % 10_000 == 0:
                progress(written)
    finally:
        if data is not None:
            data.close()
    return written


def export_rows(view: ScanView, out: str | Path, progress: Callable[[int], None] | None = None) -> int:
    """`write_rows` into the file `out`, atomically (a reader sees the old file or the whole new one)."""
    written = 0

    def write(temporary: Path) -> None:
        nonlocal written
        with temporary.open("w", encoding="utf-8") as handle:
            written = write_rows(view, handle, progress)

    try:
        write_atomic(Path(out).expanduser(), write)
    except OSError as error:
        raise TokstepError(f"cannot write {out}: {error.strerror or error}") from None
    return written
