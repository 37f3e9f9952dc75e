"""Modal screens over the stepper: help (every key), a one-line prompt (go to / search), thresholds, lints."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from tokstep.tui.severity import severity_text

if TYPE_CHECKING:
    from tokstep.engine.lints.catalogue import Finding


def key_names(app: Any, key_list: str) -> str:
    """`right,l,space` as the user reads it: `→ l space`."""
    return " ".join(app.get_key_display(Binding(key, "")) for key in key_list.split(","))


class HelpScreen(ModalScreen[None]):
    """Every binding of the screen below, with its description; any of Escape ? q closes it."""

    BINDINGS = [Binding("escape,question_mark,q", "close", "close")]

    def __init__(self, bindings: Sequence[Binding], extra: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__()
        self.bindings = bindings
        self.extra = extra

    def compose(self) -> ComposeResult:
        entries: list[tuple[str, str]] = []
        for binding in self.bindings:  # one line per key; the tooltip is the longer description
            entry = (key_names(self.app, binding.key), binding.tooltip or binding.description)
            if entry not in entries:
                entries.append(entry)
        entries += list(self.extra)
        half = (len(entries) + 1) // 2  # two columns, so the whole list fits on an 80x24 screen
        key_width = max(len(keys) for keys, _ in entries[:-1] or entries)  # the mouse line may be long
        table = Table(box=None, show_header=False, padding=(0, 1, 0, 0), expand=True)
        for _ in range(2):
            table.add_column(style="bold", no_wrap=True, min_width=min(key_width, 12))
            table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        for left, right in zip(entries[:half], entries[half:] + [("", "")], strict=False):
            table.add_row(*left, *right)
        with VerticalScroll(id="help-body"):
            yield Static(Text("Keys", style="bold"))
            yield Static(table)
            yield Static(Text("Escape, ? or q closes this help", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)


class PromptScreen(ModalScreen[str | None]):
    """One labelled input; Enter returns its text (checked by `validate`), Escape returns None."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(
        self, title: str, placeholder: str = "", value: str = "", validate: Callable[[str], Any] | None = None
    ) -> None:
        super().__init__()
        self.title_text = title
        self.placeholder = placeholder
        self.value = value
        self.validate = validate

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")
            yield Label("", id="prompt-error", classes="dialog-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.validate is not None:
            try:
                self.validate(event.value)
            except ValueError as error:
                self.query_one("#prompt-error", Label).update(str(error))
                return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ThresholdScreen(ModalScreen[tuple[str, str] | None]):
    """The two surprise thresholds: a target is a surprise when rank > K or q < P."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, rank_above: int, prob_below: float, validate: Callable[[str, str], Any]) -> None:
        super().__init__()
        self.rank_above = rank_above
        self.prob_below = prob_below
        self.validate = validate

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Surprise: a counted target with rank > K or q < P", classes="dialog-title")
            yield Label("K (rank above)")
            yield Input(value=str(self.rank_above), id="rank-input")
            yield Label("P (probability below)")
            yield Input(value=f"{self.prob_below:g}", id="prob-input")
            yield Label("Enter applies · Escape cancels", classes="dialog-hint")
            yield Label("", id="prompt-error", classes="dialog-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        values = (self.query_one("#rank-input", Input).value, self.query_one("#prob-input", Input).value)
        try:
            self.validate(*values)
        except ValueError as error:
            self.query_one("#prompt-error", Label).update(str(error))
            return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)


class LintsScreen(ModalScreen[int | None]):
    """The sample's lint findings; Enter on one returns its first token index, Escape returns None."""

    BINDINGS = [Binding("escape,L,q", "cancel", "close")]

    def __init__(self, findings: Sequence[Finding]) -> None:
        super().__init__()
        self.findings = list(findings)

    def compose(self) -> ComposeResult:
        options = []
        for i, finding in enumerate(self.findings):
            where = f" @ token {finding.positions[0]}" if finding.positions else ""
            line = Text.assemble(
                severity_text(finding.severity, 8),
                (f"{finding.code}{where}  ", "bold"),
                finding.message,
            )
            if finding.fix:
                line.append("\n        fix: ", style="bold green")
                line.append(finding.fix)
            options.append(Option(line, id=str(i)))
        with Vertical(classes="dialog wide"):
            yield Label(
                f"Lints: {len(self.findings)} finding(s) · Enter jumps · Escape closes",
                classes="dialog-title",
            )
            yield OptionList(*options, id="lint-list")
            conventions = sorted({f.convention for f in self.findings if f.convention})
            if conventions:  # stated once, not inside every finding
                yield Label("\n".join(f"convention: {c}" for c in conventions), classes="dim")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        finding = self.findings[int(event.option.id or 0)]
        self.dismiss(int(finding.positions[0]) if finding.positions else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
