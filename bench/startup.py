"""Start-up costs seen by a user: `tokstep --help`, `tokstep report` to first output, and lazy imports."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tokstep.engine.defaults import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent
HEAVY_MODULES = ("torch", "transformers", "textual")

IMPORT_PROBE = """
import json, sys
from tokstep.tui.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


def tokstep_command() -> list[str]:
    script = Path(sys.executable).parent / "tokstep"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tokstep"]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def heavy_imports(argv: list[str]) -> list[str]:
    """Which of torch / transformers / textual `tokstep ARGV` imports (run in a fresh interpreter)."""
    probe = IMPORT_PROBE.format(heavy=HEAVY_MODULES)
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(done.stderr.strip().splitlines()[-1])


def wall_time(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, timeout=300, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass(frozen=True)
class FirstOutput:
    first_output: float  # seconds to the first byte on stdout
    total: float
    returncode: int


def time_to_first_output(command: list[str], timeout: float = 600) -> FirstOutput:
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    process.stdout.read(1)  # blocks until the report prints its first byte (or the process exits)
    first = time.perf_counter() - start
    process.stdout.read()
    code = process.wait(timeout=timeout)
    return FirstOutput(first, time.perf_counter() - start, code)


ALT_SCREEN = b"\x1b[?1049h"  # Textual switches to the alternate screen before its first frame
FRAME_BYTES = 2000  # a full frame at 120x40 is far larger than the mode-setting sequences before it


def time_to_first_frame(
    command: list[str], size: tuple[int, int] = (120, 40), timeout: float = 120
) -> float | None:
    """Start the TUI in a pseudo-terminal; seconds until its first frame (FRAME_BYTES after the switch to
    the alternate screen) has been written. None if no frame came within `timeout`."""
    import fcntl
    import pty
    import select
    import signal
    import struct
    import termios

    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal
        os.chdir(ROOT)
        os.execvpe(command[0], command, {**_env(), "TERM": "xterm-256color", "COLUMNS": str(size[0])})
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    seen, after = b"", -1
    elapsed = None
    try:
        while time.perf_counter() - start < timeout:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child exited
                break
            seen += chunk
            if after < 0 and ALT_SCREEN in seen:
                after = seen.index(ALT_SCREEN) + len(ALT_SCREEN)
            if after >= 0 and len(seen) - after >= FRAME_BYTES:
                elapsed = time.perf_counter() - start
                break
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        os.close(fd)
    return elapsed


@dataclass(frozen=True)
class Startup:
    help_seconds: float
    help_heavy: list[str]
    report_help_heavy: list[str]
    cli_import_heavy: list[str]
    report: FirstOutput | None  # None when the bundled model is not there
    tui_first_frame: float | None  # seconds; None when not measured


def measure(repeats: int) -> Startup:
    command = tokstep_command()
    cli_only = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import json, sys, tokstep.tui.cli.main; print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = frame = None
    if (DEFAULT_MODEL / "config.json").exists():
        report = time_to_first_output([*command, "report"])
        frame = time_to_first_frame(command)
    return Startup(
        help_seconds=wall_time([*command, "--help"], repeats),
        help_heavy=heavy_imports(["--help"]),
        report_help_heavy=heavy_imports(["report", "--help"]),
        cli_import_heavy=json.loads(cli_only.stdout.strip().splitlines()[-1]),
        report=report,
        tui_first_frame=frame,
    )
