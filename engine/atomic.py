"""The one way tokstep replaces a file: write a temporary beside it, fsync, rename over it.

Readers, reruns and a crash (even SIGKILL or a full disk) only ever see the old file or the whole new one.
The temporary is created with the usual mode (0666 less the umask, like any new file), not mkstemp's 0600.
Its name starts with `.NAME.tmp` so a rerun can sweep what a killed run left behind.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """`write(temporary)` then rename it over `path`; the temporary never outlives a failure."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}-{secrets.token_hex(4)}")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # umask applies, as for open()
    try:
        write(temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
