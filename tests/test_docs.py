"""Every fenced block of README.md and docs/*.md is checked, so the documentation cannot go stale.

- `bash` blocks: every `tokstep ...` command (also after `.venv/bin/`, `-m tokstep`, `&&`) is parsed by the real
  parser and flag rules (`tui/cli/main.py`, `tui/cli/flag_rules.py`; no model is loaded); `python -m X` names a module
  that exists.
- `python` blocks compile.
- A block right after `<!-- output-of: tokstep ARGS ; option ; ... -->` is that command's output, regenerated
  in-process on the bundled model (in a folder holding `docs/examples/*`); a first line `$ tokstep ARGS` must name
  the same command. Options: `excerpt` (the block's lines are consecutive lines of the output), `tolerance R`
  (relative tolerance of every number; default 1e-3, for 16-bit dtypes whose last digits follow the CPU).
- A block right after `<!-- screen-of: tokstep ARGS ; size WxH ; keys K K*3 ... -->` is the debugger's screen,
  rendered by the app (Textual's Pilot) after those keys; `pinned` serves the bundled demo's pinned numbers
  (`tests/pinned_demo.py`) instead of a fresh trace; `excerpt` as above, each line a part of a screen line.
- A block right after `<!-- not-output: why -->` shows no program output (a folder layout).
- `<!-- unchecked: why -->` marks output this file cannot regenerate yet (it needs files not in docs/examples);
  `test_unchecked_blocks_are_listed` names them, so the gap is visible.
- Every other block is an error, and no block line may end in a space.

Numbers are compared with a tolerance (digits and the width they take may differ), never to the last bit.
`docs/stepper.svg`, the README's screenshot, is regenerated from the pinned demo and compared.
After a deliberate change, `TOKSTEP_DOCS_UPDATE=1 pytest tests/test_docs.py` rewrites, in place, every whole
(not `excerpt`) output or screen block that differs, and the SVG; look at `git diff` before committing.
Excerpts are never rewritten: fix them by hand from the failure's `--- real:` text.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = ROOT / "docs" / "examples"
SCREENSHOT = ROOT / "docs" / "stepper.svg"
FENCE = re.compile(r"^(\s*)(```+)\s*(\w*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*([\w-]+):\s*(.*?)\s*-->\s*$")
NUMBER = re.compile(
    r"[-+]?(?:\d+\.\d+|\d+)(?:e[-+]?\d+)?"
)  # an integer (a count, a rank, an id) must be equal
BARS = re.compile(r"[ ▁▂▃▄▅▆▇█▏▎▍▌▋▊▉]*[▁▂▃▄▅▆▇█▏▎▍▌▋▊▉][ ▁▂▃▄▅▆▇█▏▎▍▌▋▊▉]*")


UPDATE = bool(os.environ.get("TOKSTEP_DOCS_UPDATE"))


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str | None  # e.g. "output-of"
    argument: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, each with the HTML-comment marker on the line before it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, lang = opening.groups()
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[i + 1 : end]
        ]
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marked = MARKER.match(before)
        found.append(
            Block(
                page,
                i + 1,
                lang,
                "\n".join(body),
                marked.group(1) if marked else None,
                marked.group(2) if marked else "",
            )
        )
        i = end + 1
    return found


def rewrite_block(block: Block, lines: list[str]) -> None:
    """Write `lines` into the page in place of the block's body (found again by its marker and text)."""
    page = block.page.read_text(encoding="utf-8").split("\n")
    now = next(
        b
        for b in blocks_of(block.page)
        if (b.marker, b.argument, b.text) == (block.marker, block.argument, block.text)
    )
    indent = page[now.line - 1][: len(page[now.line - 1]) - len(page[now.line - 1].lstrip())]
    count = len(block.text.split("\n")) if block.text else 0
    page[now.line : now.line + count] = [indent + line if line else line for line in lines]
    block.page.write_text("\n".join(page), encoding="utf-8")


BLOCKS = [block for page in PAGES for block in blocks_of(page)]
OUTPUT_MARKERS = ("output-of", "screen-of")


def _ids(blocks: list[Block]) -> list[str]:
    return [block.where for block in blocks]


# -- every block is of a known kind, with no trailing spaces -------------------------------------------------


@pytest.mark.parametrize("block", BLOCKS, ids=_ids(BLOCKS))
def test_block_is_checked_and_has_no_trailing_spaces(block):
    assert block.lang in ("bash", "python") or block.marker in (*OUTPUT_MARKERS, "not-output", "unchecked"), (
        f"{block.where}: a ```{block.lang} block with no <!-- output-of: ... -->, <!-- screen-of: ... --> or "
        "<!-- not-output: why --> marker before it (see tests/test_docs.py)"
    )
    for number, line in enumerate(block.text.splitlines(), block.line + 1):
        assert line == line.rstrip(), f"{block.where}: line {number} ends in a space"


def test_pages_are_found_and_hold_blocks_of_each_kind():
    kinds = {block.marker or block.lang for block in BLOCKS}
    assert {"bash", "python", "output-of", "screen-of"} <= kinds, kinds


UNCHECKED_AT_MOST = 4  # the README's trainer-batch outputs (3) and the two-tokenizer report: see UNCHECKED


def test_unchecked_blocks_are_listed():
    unchecked = [f"{block.where} ({block.argument})" for block in BLOCKS if block.marker == "unchecked"]
    assert len(unchecked) <= UNCHECKED_AT_MOST, "\n".join(unchecked)


# -- commands: parsed by the real parser and flag rules ------------------------------------------------------


def tokstep_commands(text: str) -> list[str]:
    """The `tokstep ...` argument lists in a shell block (comments and `$ ` prompts dropped)."""
    commands = []
    for raw in text.splitlines():
        line = raw.removeprefix("$ ").strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        for part in _split_on(words, {"&&", "||", ";", "|"}):
            for at, word in enumerate(part):
                if word in ("tokstep", ".venv/bin/tokstep"):
                    commands.append(shlex.join(part[at:]))
                    break
    return commands


def _split_on(words: list[str], separators: set[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for word in words:
        if word in separators:
            parts.append([])
        else:
            parts[-1].append(word)
    return parts


def python_modules(text: str) -> list[str]:
    """The modules run with `python -m X` in a shell block."""
    return re.findall(r"python3? -m ([\w.]+)", text)


SHELL = [block for block in BLOCKS if block.lang == "bash"]
COMMANDS = [
    (block, command)
    for block in BLOCKS
    for command in tokstep_commands(
        block.text
        if block.lang == "bash"
        else "\n".join(x for x in block.text.splitlines() if x.startswith("$ "))
    )
] + [(block, block.argument.split(" ; ")[0]) for block in BLOCKS if block.marker in OUTPUT_MARKERS]


def parse_command(command: str, tmp_path: Path):
    """argparse + flag rules + the checks made before a model load; a UsageError or TokstepError fails."""
    from tokstep.tui.cli.main import build_parser, check_args, parse

    words: list[str] = []
    for word in shlex.split(command)[1:]:
        if word in ("...", "…"):  # a placeholder: a flag's value, or "more flags"
            if words and words[-1].startswith("--"):
                words.append("x")
            continue
        words.append(word)
    args, given = parse(build_parser(), words)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # `--json out.json` must not exist: check it where nothing does
    try:
        check_args(args, given)
    finally:
        os.chdir(cwd)
    return args


@pytest.mark.parametrize(("block", "command"), COMMANDS, ids=[f"{b.where} {c}" for b, c in COMMANDS])
def test_documented_command_parses(block, command, tmp_path):
    parse_command(command, tmp_path)


def test_a_wrong_flag_in_a_documented_command_would_fail(tmp_path):
    from tokstep.tui.cli.main import UsageError

    with pytest.raises(UsageError, match="--top-k is not used"):
        parse_command("tokstep lint train.jsonl --top-k 3", tmp_path)


@pytest.mark.parametrize("block", SHELL, ids=_ids(SHELL))
def test_python_modules_in_shell_blocks_exist(block):
    for module in python_modules(block.text):
        if module in ("venv", "pytest", "tokstep"):
            continue
        path = ROOT / Path(*module.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__main__.py").is_file(), (
            f"{block.where}: {module}"
        )


PYTHON = [block for block in BLOCKS if block.lang == "python"]


@pytest.mark.parametrize("block", PYTHON, ids=_ids(PYTHON))
def test_python_snippet_compiles(block):
    compile(block.text, block.where, "exec")


# -- output blocks: regenerated and compared ------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    command: str
    excerpt: bool = False
    tolerance: float = 1e-3
    size: tuple[int, int] = (100, 30)
    keys: tuple[str, ...] = ()
    pinned: bool = False


def options_of(argument: str) -> Options:
    command, *rest = [part.strip() for part in argument.split(" ; ")]
    found: dict = {"command": command}
    for option in rest:
        name, _, value = option.partition(" ")
        if name == "excerpt":
            found["excerpt"] = True
        elif name == "pinned":
            found["pinned"] = True
        elif name == "tolerance":
            found["tolerance"] = float(value)
        elif name == "size":
            width, height = value.split("x")
            found["size"] = (int(width), int(height))
        elif name == "keys":
            keys = []
            for key in value.split():
                name_, _, times = key.partition("*")
                keys += [name_] * int(times or 1)
            found["keys"] = tuple(keys)
        else:
            raise AssertionError(f"unknown option {option!r} in a marker")
    return Options(**found)


def shape(line: str) -> tuple[str, list[float]]:
    """A line without its numbers and bars (their digits and lengths may differ), and the numbers."""
    numbers = [float(n) for n in NUMBER.findall(line)]
    return " ".join(BARS.sub(" ", NUMBER.sub("#", line)).split()), numbers


def same_lines(shown: str, real: str, tolerance: float) -> bool:
    (shown_shape, shown_numbers), (real_shape, real_numbers) = shape(shown), shape(real)
    if shown_shape != real_shape or len(shown_numbers) != len(real_numbers):
        return False
    return all(
        a == b if a.is_integer() and b.is_integer() else abs(a - b) <= 1e-6 + tolerance * abs(b)
        for a, b in zip(shown_numbers, real_numbers, strict=True)
    )


def assert_shown(
    block: Block, shown: list[str], real: list[str], options: Options, within_lines: bool
) -> None:
    """The block equals the real output (or, with `excerpt`, consecutive lines of it), numbers within tolerance."""

    def match_at(start: int) -> bool:
        for offset, line in enumerate(shown):
            candidate = real[start + offset]
            if within_lines:
                if not any(
                    same_lines(line, candidate[at : at + len(line)], options.tolerance)
                    for at in range(len(candidate) - len(line) + 1)
                ):
                    return False
            elif not same_lines(line, candidate, options.tolerance):
                return False
        return True

    starts = range(len(real) - len(shown) + 1) if options.excerpt else [0]
    if (options.excerpt or len(shown) == len(real)) and any(match_at(start) for start in starts):
        return
    raise AssertionError(
        f"{block.where}: the block is not what `{options.command}` shows now.\n--- shown:\n"
        + "\n".join(shown)
        + "\n--- real:\n"
        + "\n".join(real)
    )


@pytest.fixture()
def in_examples(tmp_path, monkeypatch):
    """A folder holding docs/examples/*, as the current directory (the commands name files like train.jsonl)."""
    if EXAMPLES.is_dir():
        for item in EXAMPLES.iterdir():
            (shutil.copytree if item.is_dir() else shutil.copy)(item, tmp_path / item.name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "10000")
    return tmp_path


def run_in_process(command: str, capsys) -> str:
    from tokstep.tui.cli.main import main

    main(shlex.split(command)[1:])
    out = capsys.readouterr().out
    return out.replace(str(ROOT), "…")


OUTPUTS = [block for block in BLOCKS if block.marker == "output-of"]


@pytest.mark.parametrize("block", OUTPUTS, ids=_ids(OUTPUTS))
def test_output_block_is_what_the_command_prints(block, in_examples, capsys):
    options = options_of(block.argument)
    shown = block.text.splitlines()
    if shown and shown[0].startswith("$ "):
        prompt = shown.pop(0)[2:].split("  #")[0].strip()
        assert shlex.split(prompt) == shlex.split(options.command), (
            f"{block.where}: `$ {prompt}` is not the marker's"
        )
    real = run_in_process(options.command, capsys)
    for number, line in enumerate(real.splitlines(), 1):
        assert line == line.rstrip(), (
            f"`{options.command}` prints a trailing space on line {number}: {line!r}"
        )
    if UPDATE and not options.excerpt:
        try:
            assert_shown(block, shown, real.splitlines(), options, within_lines=False)
        except AssertionError:
            rewrite_block(
                block,
                block.text.splitlines()[: len(block.text.splitlines()) - len(shown)] + real.splitlines(),
            )
        return
    assert_shown(block, shown, real.splitlines(), options, within_lines=False)


# -- screens: rendered by the app --------------------------------------------------------------------------


def screen_text(app) -> list[str]:
    """The current screen as plain text lines, as the terminal shows it."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False, safe_box=False
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return [line.rstrip() for line in console.export_text(styles=False).splitlines()]


def app_for(options: Options, monkeypatch):
    """The app `tokstep ARGS` would run (the CLI's own path up to app.run), or the pinned demo."""
    if options.pinned:
        from pinned_demo import demo, pinned_result

        from tokstep.tui.screens.app import EngineBackend, PrecomputedBackend, TokstepApp

        _, spec = demo()
        result = pinned_result()
        return TokstepApp(
            sample_spec=spec, backend=PrecomputedBackend(result, EngineBackend().lint(result, spec))
        )
    from tokstep.tui.cli.main import main
    from tokstep.tui.screens import app as app_module

    made = []
    monkeypatch.setattr(app_module, "_headless_check", lambda app: made.append(app) or 0)
    assert main(shlex.split(options.command)[1:]) == 0
    return made[0]


def shown_first() -> tuple[type, ...]:
    """The screens the app shows once loaded: the stepper (compare too), a data or scan browser, batches."""
    from tokstep.tui.screens.batches import BatchesScreen
    from tokstep.tui.screens.browser import DataBrowserScreen
    from tokstep.tui.screens.scan_browser import ScanBrowserScreen
    from tokstep.tui.screens.stepper import StepperScreen

    return (StepperScreen, DataBrowserScreen, ScanBrowserScreen, BatchesScreen)


async def render(app, options: Options, expected: list[str], block: Block, timeout: float = 120) -> list[str]:
    """Press the keys once the app has left its loading screen; poll until the screen matches (or time out)."""
    async with app.run_test(size=options.size) as pilot:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not isinstance(app.screen, shown_first()):
            assert loop.time() < deadline, "the app never left its loading screen"
            await pilot.pause(0.1)
        for key in options.keys:
            await pilot.press(key)
        await pilot.pause()
        settled = loop.time() + 10  # TOKSTEP_DOCS_UPDATE: what the screen shows by then is written
        while True:
            lines = screen_text(app)
            try:
                assert_shown(block, expected, lines, options, within_lines=options.excerpt)
                return lines
            except AssertionError:
                if UPDATE and not options.excerpt and loop.time() > settled:
                    rewrite_block(block, lines)
                    return lines
                if loop.time() > deadline:
                    raise
            await pilot.pause(0.2)


SCREENS = [block for block in BLOCKS if block.marker == "screen-of"]


@pytest.mark.parametrize("block", SCREENS, ids=_ids(SCREENS))
async def test_screen_block_is_what_the_app_shows(block, in_examples, monkeypatch):
    options = options_of(block.argument)
    await render(app_for(options, monkeypatch), options, block.text.splitlines(), block)


async def test_readme_screenshot_svg_is_the_app_rendering_it(monkeypatch):
    """docs/stepper.svg is the pinned demo at 100x30 after 12 steps, as the app exports it."""
    options = Options("tokstep", size=(100, 30), keys=("right",) * 12, pinned=True)
    app = app_for(options, monkeypatch)
    async with app.run_test(size=options.size) as pilot:
        while not isinstance(app.screen, shown_first()):
            await pilot.pause(0.05)
        for key in options.keys:
            await pilot.press(key)
        await pilot.pause()
        svg = app.export_screenshot(title="tokstep")
    if os.environ.get("TOKSTEP_DOCS_UPDATE"):
        SCREENSHOT.write_text(svg, encoding="utf-8")
    assert SCREENSHOT.read_text(encoding="utf-8") == svg, "rerun with TOKSTEP_DOCS_UPDATE=1 and look at it"
    assert "stepper.svg" in (ROOT / "README.md").read_text(encoding="utf-8")
