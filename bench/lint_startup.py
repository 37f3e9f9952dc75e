"""`tokstep lint` on a small file, wall seconds, this checkout against another one, side by side.

    python -m bench.lint_startup --before /tmp/restructure-checkout [--repeats 7]

Runs alternate (before, after, before, ...) so load on the machine falls on both; prints the medians and the
load average, and whether torch was imported (in a one-off probe of each tree).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMALL_FILE = "docs/examples/train.jsonl"
TORCH_PROBE = (
    "import sys; from tokstep.tui.cli.main import console_main; sys.argv = ['tokstep', 'lint', {file!r}];"
    "import atexit; atexit.register(lambda: print('torch' in sys.modules, file=sys.stderr)); console_main()"
)


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}


def lint_once(tree: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tokstep", "lint", SMALL_FILE], cwd=tree, env=_env(tree), capture_output=True
    )
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"lint failed in {tree}: {done.stderr.decode()[-500:]}")
    return elapsed


def imports_torch(tree: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", TORCH_PROBE.format(file=SMALL_FILE)],
        cwd=tree,
        env=_env(tree),
        capture_output=True,
        text=True,
    )
    return done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the baseline branch")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": ROOT}
    load_start = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.repeats):
        for name, tree in trees.items():
            times[name].append(lint_once(tree))
    load_end = os.getloadavg()
    print(f"load average (1/5/15 min): {load_start} at start, {load_end} at end")
    print("| tree | median wall (s) | min | max | runs | imports torch |")
    print("|---|---|---|---|---|---|")
    for name, tree in trees.items():
        runs = times[name]
        print(
            f"| {name} | {statistics.median(runs):.2f} | {min(runs):.2f} | {max(runs):.2f} | {len(runs)} "
            f"| {imports_torch(tree)} |"
        )


if __name__ == "__main__":
    main()
