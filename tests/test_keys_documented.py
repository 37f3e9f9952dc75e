"""Keys that agree: every binding of the stepper and the browser is in the key tables of docs/debugger.md (the `?` help
screens list the bindings themselves), and no key means two different things on the two screens."""

from __future__ import annotations

import re
from pathlib import Path

from textual.binding import Binding

from tokstep.tui.screens.browser import DataBrowserScreen
from tokstep.tui.screens.stepper import StepperScreen

DOCS = Path(__file__).resolve().parent.parent / "docs"
KEY_DOCS = "\n".join((DOCS / page).read_text(encoding="utf-8") for page in ("debugger.md", "lints.md"))
NAMES = {  # Textual key names as the README writes them
    "right": "→",
    "left": "←",
    "home": "Home",
    "end": "End",
    "pagedown": "PgDn",
    "pageup": "PgUp",
    "colon": ":",
    "slash": "/",
    "question_mark": "?",
    "plus": "+",
    "equals_sign": "=",
    "minus": "-",
    "escape": "Esc",
    "enter": "Enter",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
}


def table_after(heading: str) -> str:
    """The first Markdown table after `heading`."""
    rest = KEY_DOCS[KEY_DOCS.index(heading) :]
    lines = rest.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| key"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return "\n".join(table)


def documented_keys(table: str) -> set[str]:
    return {
        key for cell in re.findall(r"^\| ([^|]*) \|", table, re.M) for key in re.findall(r"`([^`]+)`", cell)
    }


def bound_keys(bindings: list[Binding]) -> set[str]:
    return {NAMES.get(key, key) for binding in bindings for key in binding.key.split(",")}


def test_every_stepper_key_is_in_the_readme():
    missing = bound_keys(StepperScreen.BINDINGS) - documented_keys(table_after("## Keys"))
    assert not missing, f"stepper keys missing from the README: {sorted(missing)}"


def test_every_browser_key_is_in_the_readme_and_nothing_more():
    documented = documented_keys(table_after("Browser keys"))
    bound = bound_keys(DataBrowserScreen.BINDINGS)
    assert bound - documented == set(), f"browser keys missing from the README: {sorted(bound - documented)}"
    navigation = {"↑", "↓", "PgUp", "PgDn", "Esc"}  # the table's own movement keys and the stepper's Esc
    assert documented - bound - navigation == set(), (
        f"README lists unbound browser keys: {documented - bound}"
    )


def test_L_means_one_thing():
    stepper = {key: b.action for b in StepperScreen.BINDINGS for key in b.key.split(",")}
    browser = {key: b.action for b in DataBrowserScreen.BINDINGS for key in b.key.split(",")}
    assert stepper["L"] == "lints" and "L" not in browser
    for key in ("home", "g", "end", "G"):  # first / last mean the same on both screens
        assert stepper[key].startswith(("first", "last")) and browser[key].startswith(stepper[key])
