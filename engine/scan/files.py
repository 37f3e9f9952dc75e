"""The files of a scan folder, and atomic writes (temporary name, fsync, rename). No torch here: the
browser reads scans through this module too.

    DIR/scan.json                       the scan's parameters (written first; a rerun must match them)
    DIR/chunks/chunk-000042.parquet     one per finished chunk of rows, while the scan runs
    DIR/shard-00000-of-00002.parquet    one per worker (rank), when every chunk is in
    DIR/manifest.json                   written last, by rank 0: the scan is complete
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokstep.engine.atomic import write_text_atomic

SCAN_FORMAT = "tokstep-scan/3"  # 2: the findings and row_hash columns; 3: lint_bits
PARAMETERS = "scan.json"
MANIFEST = "manifest.json"
CHUNKS = "chunks"


def chunk_path(out: Path, chunk: int) -> Path:
    return out / CHUNKS / f"chunk-{chunk:06d}.parquet"


def shard_name(rank: int, world: int) -> str:
    return f"shard-{rank:05d}-of-{world:05d}.parquet"


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def is_scan(path: str | Path) -> bool:
    """A folder `tokstep scan` wrote (complete or not)."""
    folder = Path(path).expanduser()
    return folder.is_dir() and ((folder / MANIFEST).is_file() or (folder / PARAMETERS).is_file())
