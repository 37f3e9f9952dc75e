"""Run tokstep's benchmarks side by side and write a Markdown table (default: bench/RESULTS.md).

    python -m bench.run            # full: T up to 8192, more repeats (about 15-25 min on 2 CPU cores)
    python -m bench.run --quick    # a few minutes on 2 CPU cores
    python -m bench.run --device cuda

Ratios are what to read: each is measured in one run, forward and Trace back to back, so machine load
hits both. Absolute seconds depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TUI_SCRIPT = ROOT / "bench" / "tui_step_latency.py"
GOAL_TRACE_RATIO = 1.10
GOAL_MEMORY_RATIO = 0.5
GOAL_NAIVE_SPEEDUP = 100.0
GOAL_COMPARE_RATIO = 1.05
MEMORY_TOKENS = 2048


@dataclass(frozen=True)
class Plan:
    tokens: tuple[int, ...]
    repeats: dict[int, int]
    naive_tokens: int  # section 3 runs the model on every prefix of this many tokens
    tui_presses: int
    startup_repeats: int


QUICK = Plan((128, 512, 2048), {128: 3, 512: 3, 2048: 2}, 128, 60, 2)
FULL = Plan((128, 512, 2048, 8192), {128: 7, 512: 5, 2048: 3, 8192: 2}, 256, 400, 5)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def section_speed(plan: Plan, device: str, lines: list[str], naive_lines: list[str]) -> None:
    """Sections 1 and 3 (they share the GPT-2 model); section 3's lines go to `naive_lines`."""
    from bench import models, speed
    from tokstep.engine.model.trace import trace_sample

    loaded = models.gpt2_small(max(plan.tokens) + 1, device)
    trace_sample(loaded, models.random_sample(129, loaded.info.vocab_size))  # first-call costs, once
    lines += [
        "## 1. Trace vs bare forward (GPT-2 small, GPT2Config() defaults, random init)",
        "",
        "Forward = `model(input_ids, use_cache=False)` (full [T, 50257] logits); Trace = `trace_sample` "
        "(per-position log q, rank, ties, entropy, top-10). Each repeat runs both back to back (order "
        "alternating). The goal is judged on the fastest trace over the fastest forward (other processes "
        "only ever add time, so minima are the least noisy estimate); beside it the median over repeats of "
        "trace/forward, and the ratio of least process CPU seconds (disturbed least by other processes "
        "when torch runs one thread, `--threads 1`; with more, waiting threads spin and count). Forward "
        "and Trace seconds are medians.",
        "",
        "| T | repeats | forward (s) | Trace (s) | Trace / forward: ratio of minima | median of pairs | CPU time, ratio of minima | goal | path |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tokens in plan.tokens:
        log(f"trace vs forward at T={tokens}")
        sample = models.random_sample(tokens + 1, loaded.info.vocab_size)
        try:
            times = speed.trace_vs_forward(loaded, sample, plan.repeats[tokens], warm_up=tokens <= 512)
        except (RuntimeError, MemoryError) as error:  # e.g. CUDA out of memory at T=8192
            lines.append(f"| {tokens} | - | - | - | not run: {str(error).splitlines()[0][:80]} | | | | |")
            continue
        lines.append(
            f"| {tokens} | {len(times.trace)} | {times.forward_median:.3f} | {times.trace_median:.3f} | "
            f"**{times.min_ratio:.3f}x** | {times.ratio:.3f}x | {times.cpu_ratio:.3f}x | ≤ {GOAL_TRACE_RATIO:.2f}x "
            f"({verdict(times.min_ratio <= GOAL_TRACE_RATIO)}) | {times.path} |"
        )

    tokens = plan.naive_tokens
    log(f"naive prefix re-runs at T={tokens}")
    sample = models.random_sample(tokens + 1, loaded.info.vocab_size)
    trace = speed.trace_vs_forward(loaded, sample, 3)  # the same sample, just before the naive loop
    naive = speed.naive_prefix_reruns(loaded, sample)
    speedup = naive.total_seconds / trace.trace_median
    slowest = max(naive.seconds)
    naive_lines += [
        "",
        f"## 3. Against the naive approach (re-run the model on every prefix), T = {tokens}",
        "",
        "The naive loop runs `model(input_ids[:, :t+1])` and reduces the last position, for t = 0..T-1: "
        f"all {naive.positions} prefixes are run and timed (wall seconds, measured, nothing interpolated), "
        "right after the Trace of the same sample (median of 3).",
        "",
        "| T | Trace (s) | naive, all prefixes (s) | speed-up | goal |",
        "|---|---|---|---|---|",
        f"| {tokens} | {trace.trace_median:.3f} | {naive.total_seconds:.1f} | **{speedup:.0f}x** | "
        f"≥ {GOAL_NAIVE_SPEEDUP:.0f}x ({verdict(speedup >= GOAL_NAIVE_SPEEDUP)}) |",
        "",
        f"Per prefix: {naive.seconds[0] * 1000:.0f} ms for the first, {naive.seconds[-1] * 1000:.0f} ms for the "
        f"last, {slowest * 1000:.0f} ms at most.",
        "",
    ]


def section_compare(plan: Plan, device: str, lines: list[str]) -> None:
    """Compare (A and B lock-step, KL per position) vs two separate traces: two GPT-2 small, other seeds."""
    import statistics

    import torch

    from bench import compare, models

    sizes = [t for t in plan.tokens if t <= 2048][:2]
    a = models.gpt2_small(max(sizes) + 1, device)
    torch.manual_seed(1)
    b = models.gpt2_small(max(sizes) + 1, device)
    with torch.no_grad():  # other weights: a real divergence
        for p in b.model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    lines += [
        "## Compare vs two traces (two GPT-2 small, random init, B = A + noise)",
        "",
        "Two traces = `trace_sample(A)` then `trace_sample(B)`; compare = `compare_traces(A, B)` (both "
        "traces plus KL(A‖B) per position, both heads chunk by chunk over the same positions). Back to back, "
        "order alternating; the goal is judged on the fastest compare over the fastest pair of traces.",
        "",
        "| T | repeats | two traces (s) | compare (s) | compare / two traces: ratio of minima | median of pairs "
        "| CPU time, ratio of minima | goal | path |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tokens in sizes:
        repeats = plan.repeats[tokens]
        log(f"compare vs two traces at T = {tokens} ({repeats} repeats)")
        times = compare.compare_vs_two_traces(a, b, models.random_sample(tokens + 1, 50257), repeats)
        ok = times.min_ratio <= GOAL_COMPARE_RATIO
        lines.append(
            f"| {tokens} | {repeats} | {statistics.median(t.wall for t in times.two_traces):.3f} "
            f"| {statistics.median(t.wall for t in times.compare):.3f} | **{times.min_ratio:.3f}x** "
            f"| {times.median_ratio:.3f}x | {times.cpu_ratio:.3f}x | ≤ {GOAL_COMPARE_RATIO:.2f}x ({verdict(ok)}) "
            f"| {times.path} |"
        )
    lines.append("")


def section_memory(device: str, lines: list[str]) -> None:
    from bench import memory

    log(f"peak memory at T={MEMORY_TOKENS}, vocab 128256 (three fresh processes)")
    with tempfile.TemporaryDirectory() as folder:
        result = memory.measure(MEMORY_TOKENS, device, Path(folder))
    hf = result.runs["hf"]
    lines += [
        "",
        f"## 2. Peak memory at T = {MEMORY_TOKENS}, vocabulary 128256 (small Llama, random init)",
        "",
        f"Increase of {hf['method']} during the call over the memory just before it, each run in a fresh "
        "process after a short warm-up. HF = `model(input_ids, labels=input_ids)` (no grad). "
        "Parity: the Trace's mean CE against HF's loss on the same weights.",
        "",
        "| run | path | peak increase (MiB) | vs HF | goal | loss | rel. diff vs HF |",
        "|---|---|---|---|---|---|---|",
        f"| HF `model(ids, labels=ids)` | - | {hf['increase_bytes'] / 2**20:.0f} | 1.00x | | {hf['loss']:.6f} | - |",
    ]
    for mode, label in (("trace", "Trace (default)"), ("trace-logits", "Trace, fallback forced")):
        run = result.runs[mode]
        ratio = result.ratio(mode)
        goal = (
            f"≤ {GOAL_MEMORY_RATIO}x ({verdict(ratio <= GOAL_MEMORY_RATIO)})"
            if mode == "trace"
            else "(fallback)"
        )
        lines.append(
            f"| {label} | {run['path']} | {run['increase_bytes'] / 2**20:.0f} | **{ratio:.3f}x** | {goal} | "
            f"{run['loss']:.6f} | {result.loss_rel_diff(mode):.1e} |"
        )
    drift = "n/a" if result.path_drift is None else f"{result.path_drift:.1e}"
    lines += ["", f"Max per-position |Δ log q(target)| between the two Trace paths: {drift}."]


def section_tui(plan: Plan, lines: list[str]) -> None:
    lines += ["", "## 4. TUI step latency, T = 8192", ""]
    if not TUI_SCRIPT.exists():
        lines.append("Not measured: `bench/tui_step_latency.py` is not there.")
        return
    log("TUI step latency (bench/tui_step_latency.py)")
    command = [sys.executable, str(TUI_SCRIPT), "--presses", str(plan.tui_presses)]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        lines.append("Not measured: `bench/tui_step_latency.py` ran past 15 minutes.")
        return
    rows = [line for line in done.stdout.splitlines() if line.startswith("|")]
    if done.returncode != 0 or not rows:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        lines.append(f"Not measured: `bench/tui_step_latency.py` failed ({last[:120]}).")
        return
    lines += [
        f"From `{' '.join(['python', 'bench/tui_step_latency.py', *command[2:]])}` (Textual Pilot, "
        "time from key press until the app is idle, redraw included):",
        "",
        *rows,
    ]


def section_startup(plan: Plan, lines: list[str]) -> None:
    from bench import startup

    log("start-up")
    result = startup.measure(plan.startup_repeats)

    def heavy(names: list[str]) -> str:
        return "none (lazy, as promised)" if not names else "**" + ", ".join(names) + "**"

    lines += [
        "",
        "## 5. Start-up",
        "",
        "| what | figure |",
        "|---|---|",
        f"| `tokstep --help`, wall time (median of {plan.startup_repeats}) | {result.help_seconds * 1000:.0f} ms |",
        f"| heavy modules imported by `import tui.cli.main` | {heavy(result.cli_import_heavy)} |",
        f"| heavy modules imported by `tokstep --help` | {heavy(result.help_heavy)} |",
        f"| heavy modules imported by `tokstep report --help` | {heavy(result.report_help_heavy)} |",
    ]
    if result.report is None:
        lines.append(
            "| `tokstep report` on the bundled model | not measured: engine/assets/tokstep-mini is not there |"
        )
    else:
        status = "" if result.report.returncode == 0 else f" (exit code {result.report.returncode})"
        lines += [
            f"| `tokstep report` (bundled model, demo sample): first output | {result.report.first_output:.2f} s{status} |",
            f"| `tokstep report`: total wall time | {result.report.total:.2f} s |",
        ]
        frame = (
            "no frame within 120 s" if result.tui_first_frame is None else f"{result.tui_first_frame:.2f} s"
        )
        lines.append(f"| `tokstep` (TUI, 120x40 pseudo-terminal): first frame | {frame} |")
    lines.append("")
    lines.append(
        "Heavy modules checked: torch, transformers, textual (in a fresh interpreter each). First frame: "
        f"{startup.FRAME_BYTES} bytes written after the switch to the alternate screen."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer sizes and repeats (a few minutes on 2 cores)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"), help="Markdown file to write")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["speed", "memory", "tui", "startup", "compare"],
        help="run only these sections",
    )
    args = parser.parse_args(argv)

    import torch

    from bench import machine
    from tokstep.engine.errors import TokstepError
    from tokstep.engine.model.loading import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except TokstepError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    plan = QUICK if args.quick else FULL
    sections = set(args.only or ["speed", "memory", "tui", "startup", "compare"])
    started = time.perf_counter()
    load_before = machine.load_average()
    body: list[str] = []
    naive: list[str] = []
    if "speed" in sections:
        section_speed(plan, device, body, naive)
    if "memory" in sections:
        section_memory(device, body)
    body += naive
    if "compare" in sections:
        section_compare(plan, device, body)
    if "tui" in sections:
        section_tui(plan, body)
    if "startup" in sections:
        section_startup(plan, body)

    facts = machine.describe(device)
    facts["load average (1/5/15 min)"] = f"{load_before} at start, {machine.load_average()} at end"
    facts["mode"] = ("--quick" if args.quick else "full") + f", {time.perf_counter() - started:.0f} s in all"
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)])
    header = [
        "# tokstep benchmark results",
        "",
        f"Written by `{command}` on {when}.",
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in facts.items()],
        "",
    ]
    text = "\n".join(header + body) + "\n"
    previous = Path(args.out).read_text(encoding="utf-8") if Path(args.out).exists() else ""
    from bench.sections import marked_sections

    for section in marked_sections(
        previous
    ):  # keep what `bench.scan`, `bench.scan_browser`, `bench.gpu` wrote
        text += "\n" + section + "\n"
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
