"""The scan browser's query engine on a big scan, in wall seconds, in a fresh process (as a user opens it):

- a synthetic scan in `tokstep scan`'s schema and layout (tests/synthetic_scan.py: 2 shards of interleaved
  1,024-row chunks, row groups of the merge's size) of 10M rows;
- open (import + read the manifest and schema + the first screenful), sort by loss, the filter
  `loss>3 lint:eos-masked` (count + first screenful), a sort under that filter, and the process's peak RSS;
  each step timed to what the browser shows first (a screenful: `FIRST_ROWS`, a 60-line terminal's table
  and the browser's margin) and to its whole 500-row window;
- the same steps on 1M rows with the in-memory view the browser used before (tests/memory_scan_view.py),
  side by side (at 10M rows it would need about 10 GB).

    python -m bench.scan_browser              # 10M rows (generating them takes about a minute)
    python -m bench.scan_browser --rows 1000000

Writes its section into bench/RESULTS.md (between the `bench.scan_browser` markers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tokstep.tui.screens.scan_browser import FIRST_MARGIN, WINDOW

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"open": 2.0, "sort by loss": 1.0, "filter loss>3 lint:eos-masked": 1.0, "sort under the filter": 1.0}
GOAL_RSS_MB = 500
TERMINAL_LINES = 60  # a 53-row table
FILTER = "loss>3 lint:eos-masked"

PROBE = """
import json, sys, time
started = time.perf_counter() - (time.time() - float(sys.argv[3]))  # since the parent started this process
sys.path.insert(0, {tests!r})
which, folder = sys.argv[1], sys.argv[2]
if which == "duckdb":
    from tokstep.engine.scan.view import ScanView as View
else:
    from memory_scan_view import MemoryScanView as View
FIRST, WINDOW = {first}, {window}
times = {{}}

def show(begun, name):
    # what the scan browser's worker does: the window's rows, a screenful of records, then the rest
    if which == "duckdb":
        rows = view.page_keys(0, WINDOW)
        view.records_of(rows[:FIRST])
        times[name] = time.perf_counter() - begun
        view.records_of(rows[FIRST:])
    else:  # the in-memory view reads a page in one step
        view.page(0, WINDOW)
        times[name] = time.perf_counter() - begun
    times[name + " (window)"] = time.perf_counter() - begun

view = View(folder)
show(started, "open")
def timed(name, step):
    begun = time.perf_counter()
    step()
    show(begun, name)
timed("sort by loss", lambda: view.sort("loss"))
timed("filter {filter}", lambda: view.set_filter({filter!r}))
timed("sort under the filter", lambda: view.sort("max_ce"))
# VmHWM, not ru_maxrss: after fork + exec, ru_maxrss still counts the parent's peak (this bench's parent
# may have just generated 10M rows)
status = open("/proc/self/status").read().split("VmHWM:")[1]
times["rss_mb"] = int(status.split()[0]) / 1024
times["shown"] = len(view)
print(json.dumps(times))
"""


def first_rows() -> int:
    """What the browser reads first in a TERMINAL_LINES-line terminal: the table's rows and its margin."""
    return TERMINAL_LINES - 7 + FIRST_MARGIN  # title, status, detail (4 lines) and footer: 7


def measure(which: str, folder: Path, repeats: int) -> dict[str, float]:
    """The median of each step over `repeats` fresh processes."""
    code = PROBE.format(tests=str(ROOT / "tests"), filter=FILTER, first=first_rows(), window=WINDOW)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", code, which, str(folder), repr(time.time())],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def table(rows: int, new: dict[str, float], old: dict[str, float] | None, old_rows: int) -> list[str]:
    lines = [
        f"| step | DuckDB view, {rows:,} rows: first screen | whole window | goal (first screen) "
        f"| in-memory view (before), {old_rows:,} rows |",
        "|---|---|---|---|---|",
    ]
    for step, goal in GOALS.items():
        ok = "met" if new[step] <= goal else "**not met**"
        before = f"{old[step]:.2f} s" if old else "—"
        window = new[step + " (window)"]
        lines.append(f"| {step} | {new[step]:.2f} s | {window:.2f} s | ≤ {goal:.0f} s: {ok} | {before} |")
    ok = "met" if new["rss_mb"] <= GOAL_RSS_MB else "**not met**"
    before = f"{old['rss_mb']:.0f} MB" if old else "—"
    lines.append(
        f"| peak RSS of the process | {new['rss_mb']:.0f} MB | | ≤ {GOAL_RSS_MB} MB: {ok} | {before} |"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--old-rows", type=int, default=1_000_000, help="rows for the in-memory comparison")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per view (medians)")
    parser.add_argument("--keep", metavar="DIR", help="generate into (or reuse) DIR instead of a temporary")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    from synthetic_scan import write_synthetic_scan

    from bench.machine import load_average
    from bench.sections import write_section

    with tempfile.TemporaryDirectory(prefix="tokstep-bench-browser-") as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        big, small = base / f"scan-{args.rows}", base / f"scan-{args.old_rows}"
        for folder, rows in ((big, args.rows), (small, args.old_rows)):
            if not (folder / "manifest.json").exists():
                write_synthetic_scan(folder, rows)
        load_before = load_average()
        new = measure("duckdb", big, args.repeats)
        new_small = measure("duckdb", small, args.repeats)
        old = measure("memory", small, args.repeats)
        load_after = load_average()
        size = sum(p.stat().st_size for p in big.glob("*.parquet")) / 2**20
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = [
        "## Scan browser on a big scan (`python -m bench.scan_browser`)",
        "",
        f"Written on {when}. A synthetic {args.rows:,}-row scan ({size:.0f} MB of Parquet, 2 shards, "
        f"tokstep scan's layout) opened in a fresh process; wall seconds, the median of {args.repeats} processes. "
        f"`open` counts from the process's launch (Python's start and imports included); each later step is a "
        f"sort/filter plus what the browser reads: its first screen ({first_rows()} records in a "
        f"{TERMINAL_LINES}-line terminal: the goal's figure), "
        f"then its whole {WINDOW}-row window. {new['shown']:,.0f} rows match `{FILTER}`. "
        f"Load average {load_before} before, {load_after} after (2 cores shared with other work).",
        "",
        *table(args.rows, new, old, args.old_rows),
        "",
        f"The DuckDB view on the {args.old_rows:,}-row scan, for the same-size comparison: "
        + ", ".join(
            f"{k} {v:.2f} s (window {new_small[k + ' (window)']:.2f} s)"
            for k, v in new_small.items()
            if k in GOALS
        )
        + f", peak RSS {new_small['rss_mb']:.0f} MB.",
    ]
    write_section(Path(args.out), "bench.scan_browser", "\n".join(body))
    print("\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
