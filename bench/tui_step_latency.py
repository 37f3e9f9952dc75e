"""Step latency of the stepper at T = 8192, driven by Textual's Pilot on a synthetic TraceResult (no model).

    .venv/bin/python bench/tui_step_latency.py [--tokens 8193] [--presses 300] [--size 120x40]

For every key press it records, from hooks in the running app:
- work: the time spent handling the step (binding → action → every panel's show) plus rendering the frame
  that shows it (the compositor's update) — the cost of a step, the number the 16 ms target is about;
- work CPU: the same in CPU time of the app's thread (what a step costs when no other process competes);
- key → frame: wall time from the key reaching the app to that frame being written, which also includes
  Textual's frame pacing (the screen updates on a 60 fps timer, so up to ~16.7 ms of waiting) and any time
  the OS gave to other processes.
Pilot's own round trip is not timed: it sleeps >= 20 ms per press waiting for the app to go idle.
Prints a Markdown table. Target: median work <= 16 ms per step.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # tests/synthetic.py: test data

from synthetic import synthetic_result  # noqa: E402

from tokstep.engine.inputs.spec import SampleSpec  # noqa: E402
from tokstep.tui.screens.app import PrecomputedBackend, TokstepApp  # noqa: E402
from tokstep.tui.screens.stepper import StepperScreen  # noqa: E402

KEY_MIXES = {
    "→ (next)": ["right"],
    "→ ← PgDn n m (mixed)": ["right", "left", "pagedown", "n", "m", "right"],
}


class StepClock:
    """Hooks that time each step: key sent, handler work, frame render, frame written."""

    def __init__(self, app: TokstepApp, stepper: StepperScreen) -> None:
        self.sent = 0.0
        self.handler = 0.0
        self.render = 0.0
        self.cpu = 0.0  # the same work in CPU time: what it costs when no other process competes
        self.frame_at: float | None = None
        driver, compositor = app._driver, stepper._compositor
        assert driver is not None
        send, watch, render_update, display = (
            driver.send_message,
            stepper.watch_cursor,
            compositor.render_update,
            app._display,
        )

        def timed_send(message: Any) -> None:
            self.sent, self.handler, self.render, self.frame_at = time.perf_counter(), 0.0, 0.0, None
            self.cpu = 0.0
            send(message)

        def timed_watch(t: int) -> None:
            start, cpu = time.perf_counter(), time.thread_time()
            watch(t)
            self.handler += time.perf_counter() - start
            self.cpu += time.thread_time() - cpu

        def timed_render(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.thread_time()
            update = render_update(*args, **kwargs)
            self.render += time.perf_counter() - start
            self.cpu += time.thread_time() - cpu
            return update

        def timed_display(screen: Any, renderable: Any) -> None:
            display(screen, renderable)
            if renderable is not None and self.frame_at is None:
                self.frame_at = time.perf_counter()

        driver.send_message = timed_send  # type: ignore[method-assign]
        stepper.watch_cursor = timed_watch  # type: ignore[method-assign]
        compositor.render_update = timed_render  # type: ignore[method-assign]
        app._display = timed_display  # type: ignore[method-assign]


async def measure(
    tokens: int, presses: int, size: tuple[int, int]
) -> list[tuple[str, list[float], list[float], list[float]]]:
    result = synthetic_result(tokens)
    app = TokstepApp(
        sample_spec=SampleSpec(text="synthetic"), backend=PrecomputedBackend(result, findings=[])
    )
    timings = []
    async with app.run_test(size=size) as pilot:
        while not isinstance(app.screen, StepperScreen):
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        stepper = app.screen
        clock = StepClock(app, stepper)
        for name, keys in KEY_MIXES.items():
            stepper.cursor = len(result.trace) // 3  # mid-sample: the strip has tokens on both sides
            await pilot.pause()
            work, cpu, latency = [], [], []
            for i in range(presses):
                await pilot.press(keys[i % len(keys)])
                await pilot.pause()
                if clock.frame_at is None:  # nothing moved (e.g. no further surprise): no frame to time
                    continue
                work.append((clock.handler + clock.render) * 1000.0)
                cpu.append(clock.cpu * 1000.0)
                latency.append((clock.frame_at - clock.sent) * 1000.0)
            timings.append((name, work, cpu, latency))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8193, help="sample length N (T = N - 1 positions)")
    parser.add_argument("--presses", type=int, default=300)
    parser.add_argument("--size", default="120x40", help="terminal COLSxROWS")
    args = parser.parse_args()
    cols, rows = (int(v) for v in args.size.split("x"))
    timings = asyncio.run(measure(args.tokens, args.presses, (cols, rows)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f} on {os.cpu_count()} CPUs")
    print(
        "| T | terminal | keys | steps | work median / p95 ms | work CPU median / p95 ms | key→frame median / p95 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, work, cpu, latency in timings:
        cells = [
            f"{statistics.median(v):.1f} / {statistics.quantiles(v, n=20)[-1]:.1f}"
            for v in (work, cpu, latency)
        ]
        print(f"| {args.tokens - 1} | {args.size} | {name} | {len(work)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
