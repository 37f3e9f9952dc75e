"""Every benchmark, one after another, each writing its own part of bench/RESULTS.md (one sitting, one machine):

    python -m bench.all --before DIR          # DIR: a checkout of the baseline commit, for bench.lint_startup
    python -m bench.all --skip run scan       # leave some out

`bench.run` rewrites the numbered sections and keeps the marked ones, so it runs first. On 2 idle cores the
whole sitting takes about 20 minutes; run it when nothing else runs, since every figure is wall seconds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from bench.machine import load_average

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("run", "scan", "scan_browser", "report_memory", "lint_startup")


def commands(before: Path | None, browser_data: Path | None) -> dict[str, list[str]]:
    """Each step's command line (`lint_startup` only with a baseline checkout to compare with)."""
    python = [sys.executable, "-m"]
    steps = {
        "run": [*python, "bench.run"],
        "scan": [*python, "bench.scan"],
        "scan_browser": [*python, "bench.scan_browser"]
        + (["--keep", str(browser_data)] if browser_data else []),
        "report_memory": [*python, "bench.report_memory"],
    }
    if before is not None:
        steps["lint_startup"] = [*python, "bench.lint_startup", "--before", str(before)]
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.all", description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a checkout of the baseline commit (bench.lint_startup)")
    parser.add_argument("--skip", nargs="+", choices=STEPS, default=[], help="steps to leave out")
    parser.add_argument("--browser-data", type=Path, help="keep (or reuse) the 10M-row scan in this folder")
    args = parser.parse_args(argv)
    failed = []
    started = time.perf_counter()
    for name, command in commands(args.before, args.browser_data).items():
        if name in args.skip:
            continue
        print(
            f"[bench.all] {name}: {' '.join(command[1:])} (load {load_average()})",
            file=sys.stderr,
            flush=True,
        )
        begun = time.perf_counter()
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            failed.append(name)
        print(f"[bench.all] {name}: {time.perf_counter() - begun:.0f} s", file=sys.stderr, flush=True)
    print(
        f"[bench.all] {time.perf_counter() - started:.0f} s in all; "
        + (f"failed: {', '.join(failed)}" if failed else "every step wrote its section"),
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
