"""The one way tokstep writes a user-named file (--json, --html, --svg, ...): checked early, written atomically.

A target is refused before any slow work starts when it exists (a file, a directory, or a symlink, dangling or
not) unless `force`; an empty path is an error, not a no-op; `-` means standard output. The text goes to a
temporary file in the target's folder, which is then renamed over the target, so a crash or a full disk never
leaves a torn or half-overwritten file.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from tokstep.engine.atomic import write_text_atomic
from tokstep.engine.errors import TokstepError

STDOUT = "-"


def _error(message: str) -> Exception:

    return TokstepError(message)


def _special_kind(target: Path) -> str | None:
    """What a path is when it exists and is not a regular file (nor a folder or a link, refused elsewhere)."""
    try:
        mode = target.stat().st_mode  # through a link: a link to /dev/null is a device too
    except OSError:
        return None
    for test, kind in (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return None


def check_target(path: str | None, force: bool, flag: str = "--json") -> None:
    """Refuse a target we must not (or cannot) write, before the model loads."""
    if path is None or path == STDOUT:
        return
    if not path.strip():
        raise _error(f"{flag} needs a file name (or - for standard output)")
    target = Path(path).expanduser()
    if target.is_dir():
        raise _error(f"{flag} {path} is a directory: name a file")
    kind = _special_kind(target)
    if kind is not None:  # --force replaces regular files only: never /dev/null, a FIFO or a socket
        raise _error(
            f"{flag} {path} is {kind}, not a regular file: name a new file (or - for standard output)"
        )
    if target.is_symlink() or target.exists():
        if not force:
            raise _error(f"{path} already exists: pass --force to overwrite it")
        if target.is_symlink():
            raise _error(f"{path} is a symbolic link: name the file itself")
    folder = target.parent
    if not folder.is_dir():
        raise _error(f"{flag} {path}: no such folder {folder}")
    if not os.access(folder, os.W_OK):
        raise _error(f"{flag} {path}: folder {folder} is not writable")


def write_text(text: str, path: str, force: bool, flag: str = "--json") -> None:
    """Write `text` to `path` atomically (temp file in the same folder + rename), or to stdout for `-`."""
    if path == STDOUT:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    check_target(path, force, flag)
    target = Path(path).expanduser()
    try:
        write_text_atomic(target, text if text.endswith("\n") else text + "\n")
    except OSError as error:
        raise _error(f"cannot write {path}: {error.strerror or error}") from None


def write_json(payload: Any, path: str, force: bool, flag: str = "--json") -> None:
    write_text(json.dumps(payload, ensure_ascii=False, indent=1), path, force, flag)
