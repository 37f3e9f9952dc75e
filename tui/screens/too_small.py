"""What the app shows below its minimum size, instead of collapsed panels: how much room it needs."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Middle
from textual.screen import Screen
from textual.widgets import Static

MIN_WIDTH, MIN_HEIGHT = 80, 24  # the stepper's panels need this much (README: "fits 80x24")


def too_small(width: int, height: int) -> bool:
    return width < MIN_WIDTH or height < MIN_HEIGHT


def message(width: int, height: int) -> str:
    return f"terminal too small (need {MIN_WIDTH}×{MIN_HEIGHT}, have {width}×{height})"


class TooSmallScreen(Screen[None]):
    """Covers everything while the terminal is below MIN_WIDTH × MIN_HEIGHT; the app removes it once the
    terminal is large enough again (nothing underneath is lost)."""

    DEFAULT_CSS = """
    TooSmallScreen { align: center middle; }
    TooSmallScreen Static { width: auto; text-style: bold; }
    TooSmallScreen #too-small-hint { text-style: none; color: $text-muted; }
    """
    BINDINGS = [Binding("q", "app.quit", "quit")]

    def compose(self) -> ComposeResult:
        with Middle():
            with Center():
                yield Static(message(*self.app.size), id="too-small")
            with Center():
                yield Static("enlarge the window, or press q to quit", id="too-small-hint")

    def on_resize(self, event: events.Resize) -> None:
        self.query_one("#too-small", Static).update(message(*event.size))
