"""JSON Lines compressed with gzip (.jsonl.gz) or Zstandard (.jsonl.zst), read as it is decompressed.

The decompressed lines go to an anonymous temporary file a step at a time (never all in memory), and the
`JsonlFile` index runs over that file: line numbers, bad rows and background indexing behave as for plain
JSONL. Zstandard needs the `zstandard` package (`pip install 'tokstep[datasets]'`).
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path
from typing import IO, Any

import tokstep.engine.inputs.data as data
from tokstep.engine.errors import TokstepError

try:
    import zstandard  # optional: the `datasets` extra
except ImportError:
    zstandard = None

SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}


def compression_of(path: Path) -> str | None:
    """gzip / zstd when `path` is compressed JSON Lines (name.jsonl.gz, name.ndjson.zst, ...), else None."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if len(suffixes) == 2 and suffixes[0] in (".jsonl", ".ndjson"):
        return SUFFIXES.get(suffixes[1])
    return None


def _open_stream(path: Path, compression: str) -> IO[bytes]:
    if compression == "gzip":
        return gzip.open(path, "rb")
    if zstandard is None:
        raise TokstepError(
            f"reading {path.name} needs the `zstandard` package: pip install 'tokstep[datasets]'"
        )
    return zstandard.ZstdDecompressor().stream_reader(path.open("rb"))


class CompressedJsonlFile(data.JsonlFile):
    """A `JsonlFile` over the lines decompressed so far; `complete` once the stream is read to its end."""

    def __init__(self, path: Path, compression: str, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.format = f"jsonl.{'gz' if compression == 'gzip' else 'zst'}"
        self._handle.close()
        self._handle = tempfile.TemporaryFile()  # noqa: SIM115 - the decompressed lines, closed by close()
        self._size = 0
        self._stream = _open_stream(path, compression)
        self._tail = b""  # decompressed bytes after the last newline, until the next one arrives
        self._ended = False

    @property
    def complete(self) -> bool:
        return self._ended and super().complete

    @property
    def progress(self) -> float:
        return 1.0 if self.complete else 0.0

    def _decompress_more(self) -> None:
        try:
            chunk = self._stream.read(data.SCAN_BYTES)
        except Exception as error:  # noqa: BLE001 - a corrupt archive is one line
            raise TokstepError(f"cannot decompress {self.path}: {error}") from None
        if not chunk:
            self._ended = True
            chunk, self._tail = self._tail, b""
        else:
            chunk = self._tail + chunk
            cut = chunk.rfind(b"\n") + 1
            chunk, self._tail = chunk[:cut], chunk[cut:]
        if chunk:
            with self._lock:
                self._handle.seek(0, 2)
                self._handle.write(chunk)
                self._handle.flush()
            self._size += len(chunk)

    def index_more(self) -> bool:
        if not self._ended:
            self._decompress_more()
        super().index_more()
        return self.complete

    def close(self) -> None:
        self._stream.close()
        super().close()
