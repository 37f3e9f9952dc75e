"""Waiting in Textual pilot tests: poll a condition (or the screen's type) with a bound, then let it draw."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


async def wait_for(pilot: Any, condition: Callable[[], bool], what: str, *, tries: int, step: float) -> None:
    """Poll `condition` up to `tries` times, `step` seconds apart; fail the test if it never holds."""
    for _ in range(tries):
        if condition():
            await pilot.pause()  # let the new screen mount and draw
            return
        await pilot.pause(step)
    raise AssertionError(f"timed out waiting for {what}")


async def screen_of(app: Any, pilot: Any, kind: type, *, tries: int) -> Any:
    """The app's screen once it is a `kind` (polled every 0.02 s, at most `tries` times)."""
    await wait_for(
        pilot,
        lambda: isinstance(app.screen, kind),
        f"a {kind.__name__} (showing {type(app.screen).__name__})",
        tries=tries,
        step=0.02,
    )
    return app.screen
