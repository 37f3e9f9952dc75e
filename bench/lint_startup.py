"""Start-up in wall seconds, this checkout against another one, side by side: `tokstep lint` on a small file, and
the debugger (`tokstep`, bundled model) to its loading screen and to its stepper in a real terminal (tmux).

    python -m bench.lint_startup --before /tmp/main-checkout [--repeats 7]
    python -m bench.lint_startup --before /tmp/main-checkout --identical   # lint --json, byte for byte

Every run is a fresh process; runs alternate (before, after, before, ...) so load on the machine falls on both.
The TUI runs in a private tmux server (120x40) whose screen is read every `POLL_S`: "loading screen" is the first
read showing the loading view's first line, "stepper" the first showing the stepper's one-hot panel; both include
starting the tmux session and the read's own delay (up to `POLL_S` plus one `tmux capture-pane`). Prints the
medians and ranges and the load average at start and end, the CPU seconds (user + system) of each lint and of the
debugger until its stepper was seen (less disturbed by other processes than wall time), and whether `lint`
imported torch (a one-off probe of each tree).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.sections import write_section

ROOT = Path(__file__).resolve().parent.parent
SMALL_FILE = "docs/examples/train.jsonl"
TORCH_PROBE = (
    "import sys; from tokstep.tui.cli.main import console_main; sys.argv = ['tokstep', 'lint', {file!r}];"
    "import atexit; atexit.register(lambda: print('torch' in sys.modules, file=sys.stderr)); console_main()"
)
LOADING_TEXT = "loading tokstep-mini"  # the loading view's first step, in its first frame
STEPPER_TEXT = "one-hot target"  # the stepper's p-vs-q panel title
POLL_S = 0.02
TUI_TIMEOUT_S = 120.0
GOAL_LINT_S = 1.5  # issue 22: `tokstep lint` on a small file
GOAL_STEPPER_S = 2.5  # issue 22: the debugger's stepper on the bundled model
SIZE = ("120", "40")


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def lint_once(tree: Path) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one `tokstep lint SMALL_FILE`."""
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(
        [sys.executable, "-m", "tokstep", "lint", SMALL_FILE], cwd=tree, env=_env(tree), capture_output=True
    )
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"lint failed in {tree}: {done.stderr.decode()[-500:]}")
    return elapsed, _children_cpu() - cpu


def imports_torch(tree: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", TORCH_PROBE.format(file=SMALL_FILE)],
        cwd=tree,
        env=_env(tree),
        capture_output=True,
        text=True,
    )
    return done.stderr.strip().splitlines()[-1]


IDENTICAL_FILES = ("docs/examples/train.jsonl", "docs/examples/labels.jsonl")
TOKENIZER_CACHE = Path(os.environ.get("TOKSTEP_TOKENIZER_CACHE", Path.home() / ".cache/tokstep/tokenizers"))


def lint_json(tree: Path, file: str, model: str | None) -> tuple[int, bytes]:
    """`tokstep lint FILE --json -` in `tree`; `model` None: the tree's bundled model."""
    flags = ["--model", model] if model else []
    done = subprocess.run(
        [sys.executable, "-m", "tokstep", "lint", file, *flags, "--json", "-"],
        cwd=tree,
        env=_env(tree),
        capture_output=True,
    )
    return done.returncode, done.stdout


def identical(trees: dict[str, Path]) -> None:
    """`tokstep lint FILE --model M --json -` (status and bytes) in both trees, for the bundled model and every
    cached real tokenizer (tests/real_tokenizers.py fetches them)."""
    models: list[str | None] = [None]
    models += sorted(str(p) for p in TOKENIZER_CACHE.glob("*") if (p / "tokenizer.json").is_file())
    same = 0
    for model in models:
        for file in IDENTICAL_FILES:
            outputs = {name: lint_json(tree, file, model) for name, tree in trees.items()}
            if len(set(outputs.values())) == 1 and outputs["after"][0] in (0, 1):
                same += 1
            else:
                print(
                    f"DIFFERENT: {Path(model).name if model else 'bundled'} {file}: status {[o[0] for o in outputs.values()]}"
                )
    print(f"lint --json identical (bytes and status) for {same} of {len(models) * len(IDENTICAL_FILES)}")


def _tmux(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-S", str(socket), *args], capture_output=True, text=True)


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def tui_once(tree: Path) -> tuple[float, float, float]:
    """Seconds from starting `tokstep` in tmux until the loading screen, and until the stepper, are on screen,
    and the CPU seconds the process had used when the stepper was seen."""
    folder = Path(tempfile.mkdtemp(prefix="tokstep-bench-tmux-"))
    socket = folder / "socket"
    env = _env(tree)
    command = " ".join(
        [
            "exec env",
            f"PYTHONPATH={env['PYTHONPATH']}",
            " HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TERM=xterm-256color COLORTERM=truecolor",
            f"{sys.executable} -m tokstep",
        ]
    )
    start = time.perf_counter()
    _tmux(socket, "new-session", "-d", "-s", "bench", "-x", SIZE[0], "-y", SIZE[1], "-c", str(tree), command)
    pid = int(_tmux(socket, "display-message", "-p", "-t", "bench", "#{pane_pid}").stdout.strip() or 0)
    loading = stepper = cpu = None
    try:
        while time.perf_counter() - start < TUI_TIMEOUT_S:
            screen = _tmux(socket, "capture-pane", "-p", "-t", "bench").stdout
            now = time.perf_counter() - start
            if loading is None and (LOADING_TEXT in screen or STEPPER_TEXT in screen):
                loading = now
            if STEPPER_TEXT in screen:
                stepper, cpu = now, _process_cpu(pid)
                break
            time.sleep(POLL_S)
    finally:
        _tmux(socket, "kill-server")
        if pid:
            _wait_gone(pid)
        shutil.rmtree(folder, ignore_errors=True)
    if loading is None or stepper is None or cpu is None:
        raise SystemExit(f"the stepper did not appear within {TUI_TIMEOUT_S:.0f} s in {tree}")
    return loading, stepper, cpu


def _row(label: str, runs: dict[str, list[float]]) -> str:
    cells = [f"{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})" for r in runs.values()]
    return f"| {label} | " + " | ".join(cells) + f" | {len(next(iter(runs.values())))} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the baseline commit")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-tui", action="store_true", help="lint only (no tmux)")
    parser.add_argument("--identical", action="store_true", help="only compare lint --json between the trees")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "RESULTS.md", help="its section goes here"
    )
    args = parser.parse_args()
    if args.identical:
        identical({"before": args.before.resolve(), "after": ROOT})
        return
    if not args.no_tui and shutil.which("tmux") is None:
        raise SystemExit("tmux is not installed (apt-get install -y tmux), or pass --no-tui")
    trees = {"before": args.before.resolve(), "after": ROOT}
    load_start = os.getloadavg()
    lint: dict[str, list[float]] = {name: [] for name in trees}
    lint_cpu: dict[str, list[float]] = {name: [] for name in trees}
    stepper_cpu: dict[str, list[float]] = {name: [] for name in trees}
    loading: dict[str, list[float]] = {name: [] for name in trees}
    stepper: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.repeats):
        for name, tree in trees.items():
            wall, cpu = lint_once(tree)
            lint[name].append(wall)
            lint_cpu[name].append(cpu)
        if args.no_tui:
            continue
        for name, tree in trees.items():
            first, shown, cpu = tui_once(tree)
            loading[name].append(first)
            stepper[name].append(shown)
            stepper_cpu[name].append(cpu)
    load_end = os.getloadavg()
    table = [
        "| wall seconds, median (min-max) | before | after | runs each |",
        "|---|---|---|---|",
        _row(f"`tokstep lint {SMALL_FILE}`", lint),
    ]
    if not args.no_tui:
        table.append(_row("`tokstep` (tmux 120x40): loading screen", loading))
        table.append(_row("`tokstep` (tmux 120x40): stepper", stepper))
    table.append(_row("CPU seconds (user + system): `tokstep lint`", lint_cpu))
    if not args.no_tui:
        table.append(_row("CPU seconds: `tokstep` until the stepper was seen", stepper_cpu))
    verdicts = [f"`lint` ≤ {GOAL_LINT_S} s: {_verdict(lint['after'], GOAL_LINT_S)}"]
    if not args.no_tui:
        verdicts.append(f"stepper ≤ {GOAL_STEPPER_S} s: {_verdict(stepper['after'], GOAL_STEPPER_S)}")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = [
        "## Start-up: `tokstep lint` on a small file, the debugger's loading screen and stepper "
        "(`python -m bench.lint_startup`)",
        "",
        f"`python -m bench.lint_startup --before {args.before} --repeats {args.repeats}` on {when}. Load average "
        f"(1/5/15 min) {_load(load_start)} at start, {_load(load_end)} at end, on {os.cpu_count()} cores. A fresh "
        'process each run, before and after alternating; `OMP_NUM_THREADS=1`. "loading screen": the loading '
        "view's first line is on the screen; \"stepper\": the stepper's one-hot panel is (tmux read every "
        f"{POLL_S * 1000:.0f} ms, tmux's start included). `lint` imports torch: before "
        f"{imports_torch(trees['before'])}, after {imports_torch(trees['after'])}.",
        "",
        *table,
        "",
        "Goals, judged on the median wall seconds of `after`: " + "; ".join(verdicts) + ".",
    ]
    text = "\n".join(body)
    print(text)
    write_section(args.out, "bench.lint_startup", text)


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def _verdict(runs: list[float], goal: float) -> str:
    return "met" if statistics.median(runs) <= goal else "**not met**"


if __name__ == "__main__":
    main()
