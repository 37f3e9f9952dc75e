"""The context: the sample's tokens as a wrapped strip, only the visible window laid out and drawn.

Token boundaries alternate two shades; masked (-100) tokens are dim; special tokens are marked; tokens a
lint finding points at are underlined in red (without colour: counted tokens are underlined and a lint's
tokens struck through, since dim may not show); the current token t is reversed and its target t+1
highlighted. With the heatmap on, each token i is coloured by the loss of predicting it (the CE at
position i-1); with reason colours on, by why it is or is not counted (its mask reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from rich.cells import cell_len
from rich.style import Style
from textual import events
from textual.message import Message

from tokstep.engine.inputs.sample import MaskReason
from tokstep.engine.model.results import TraceResult
from tokstep.tui.formatting import clip, token_label
from tokstep.tui.palette import HEAT_COLOURS, REASON_COLOURS
from tokstep.tui.widgets.lines import LinesView

SHADES = (Style(bgcolor="grey19"), Style(bgcolor="grey30"))
MASKED = Style(dim=True, italic=True)
SPECIAL = Style(color="magenta", bold=True)
CURRENT = Style(reverse=True, bold=True)
TARGET = Style(color="black", bgcolor="yellow", bold=True, underline=True)
BOUNDARY = Style(color="bright_cyan", bold=True)  # drawn before a packed document's first token
BOUNDARY_MARK = "┃"
FLAGGED = Style(color="red", underline=True)  # a lint finding concerns this token
# Without colour, dim may not show: counted tokens are underlined, and a lint's tokens struck through instead.
COUNTED_NO_COLOR = Style(underline=True)
FLAGGED_NO_COLOR = Style(strike=True)
HEAT = tuple(Style(color="black", bgcolor=colour) for colour in HEAT_COLOURS)

REASON_STYLES = {MaskReason(reason): Style(bgcolor=colour) for reason, colour in REASON_COLOURS.items()}
# Without colour (NO_COLOR) the reason backgrounds become near-identical greys: with `w` on, the cell after each
# token (the space that separates tokens then) holds its reason's glyph instead, and the legend says which is which.
REASON_GLYPHS = {
    MaskReason.SUPERVISED: "●",
    MaskReason.INSERTED_TRAINED: "◉",
    MaskReason.PROMPT: "▹",
    MaskReason.SYSTEM: "◆",
    MaskReason.USER: "▲",
    MaskReason.TOOL: "■",
    MaskReason.TEMPLATE: "◇",
    MaskReason.INSERTED: "○",
    MaskReason.END_OF_TURN: "▼",
    MaskReason.PAD: "░",
    MaskReason.DOCUMENT: "†",
    MaskReason.GIVEN: "✗",
    MaskReason.FIRST: "∅",
}
# The legend's short name per reason (the full names are MaskReason's values; the legend must fit at 80 columns).
REASON_SHORT = {
    MaskReason.SUPERVISED: "trained",
    MaskReason.INSERTED_TRAINED: "ins+train",
    MaskReason.PROMPT: "prompt",
    MaskReason.SYSTEM: "system",
    MaskReason.USER: "user",
    MaskReason.TOOL: "tool",
    MaskReason.TEMPLATE: "markup",
    MaskReason.INSERTED: "inserted",
    MaskReason.END_OF_TURN: "eot",
    MaskReason.PAD: "pad",
    MaskReason.DOCUMENT: "new doc",
    MaskReason.GIVEN: "your -100",
    MaskReason.FIRST: "first",
}

# chats and ids rows whose chat turns were recovered (engine.chat.structure): each token's background is its role, two shades
# for token boundaries; the given mask stays on top (masked dim), so trained user words stand out at a glance.
ROLE_COLOURS = {
    "assistant": ("#173d17", "#235223"),
    "user": ("#123c46", "#1b5160"),
    "system": ("#46360f", "#5a4716"),
    "tool": ("#272c5a", "#333a70"),
}
ROLE_SHADES = {role: (Style(bgcolor=a), Style(bgcolor=b)) for role, (a, b) in ROLE_COLOURS.items()}
# without colour (NO_COLOR, a captured terminal), the cell after each token names its role instead
ROLE_GLYPHS = {"assistant": "ᵃ", "user": "ᵘ", "system": "ˢ", "tool": "ᵗ"}

MAX_LINES = 16  # the most lines the strip asks for; longer samples scroll with the cursor
Layout = list[tuple[int, str]]  # one line: (token index, what is drawn for it)


def token_roles(result: TraceResult) -> list[str | None]:
    """Per token, the role whose words it is (content; the assistant's end-of-turn too), else None: recovered
    from the ids for ids rows, located from the messages for chats (the same `TurnLayout` either way)."""
    layout = result.sample.layout
    return [None] * len(result.sample) if layout is None else layout.worded_roles()


@lru_cache(maxsize=128)
def _token_style(
    shade: int, heat: int | None, special: bool, masked: bool, flagged: bool, role: str | None = None
) -> Style:
    """A context token's style, combined once per distinct case."""
    if heat is not None:
        style = HEAT[heat]
    else:
        style = ROLE_SHADES[role][shade] if role in ROLE_SHADES else SHADES[shade]
    if special:
        style += SPECIAL
    if masked:
        style += MASKED
    if flagged:
        style += FLAGGED
    return style


class ContextStrip(LinesView):
    """Tokens 0..N-1 around the cursor; click a token to go to the position that predicts it."""

    DEFAULT_CSS = "ContextStrip { height: auto; min-height: 1; }"

    @dataclass
    class TokenClicked(Message):
        """The user clicked token `token_index`."""

        token_index: int

    def __init__(
        self,
        result: TraceResult,
        *,
        flagged: frozenset[int] = frozenset(),
        no_color: bool = False,
        boundaries: frozenset[int] = frozenset(),
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.boundaries = boundaries  # token indices that start a packed document: a bar is drawn before each
        self.flagged = flagged  # token indices some lint finding points at
        self.result = result
        self.cursor = 0
        self.mode = "text"  # text | piece | id
        self.heatmap = False
        self.reason_colours = False
        self._reasons = result.sample.mask_reasons
        self.no_color = no_color  # then a space marks each boundary (spaces in tokens are shown as ␣)
        self._start = 0  # first token of the visible window; kept while the cursor stays in view
        self._hits: list[list[tuple[int, int, int]]] = []  # per line: (x0, x1, token index)
        self._tokens: dict[int, tuple[str, int, bool]] = {}
        ids = result.sample.input_ids
        self._ids: list[int] = ids.tolist()
        self._masked = np.asarray([not r.counted for r in result.sample.mask_reasons])
        self._roles = token_roles(result)  # chat role per token (chats; ids rows with a chat template)
        self._special = np.asarray(
            [result.texts.is_special(i) or not result.texts.in_tokenizer(i) for i in self._ids]
        )
        ce = result.trace.ce
        finite_ce = ce[np.isfinite(ce)]
        self.heat_scale = float(np.percentile(finite_ce, 95)) if finite_ce.size else 1.0  # CE shown as red

    # -- what the screen calls -------------------------------------------------------------------------

    def show(self, cursor: int) -> None:
        self.cursor = cursor
        self._draw()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self._start = 0
        self._tokens.clear()
        self._draw()

    def set_heatmap(self, on: bool) -> None:
        self.heatmap, self.reason_colours = on, self.reason_colours and not on
        self._draw()

    def set_reason_colours(self, on: bool) -> None:
        """Colour every token by its mask reason (one colouring at a time: this turns the heatmap off)."""
        self.reason_colours, self.heatmap = on, self.heatmap and not on
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        """A short sample needs only a few lines: ask for those, up to MAX_LINES, and leave the rest to the panels."""
        return len(self._layout(0, max(width, 2), MAX_LINES))

    # -- layout ----------------------------------------------------------------------------------------

    def _token(self, index: int) -> tuple[str, int, bool]:
        """(label, cells it takes with its gap, whether a line break follows it), cached per display mode."""
        cached = self._tokens.get(index)
        if cached is None:
            label = token_label(self.result.texts, self._ids[index], self.mode)
            if index in self.boundaries:
                label = BOUNDARY_MARK + label
            breaks = self.mode == "text" and label.endswith("↵")  # a newline ends the line, as written
            cached = self._tokens[index] = (label, cell_len(label) + len(self._gap), breaks)
        return cached

    @property
    def _gap(self) -> str:
        """What separates tokens besides the shading: a space when shades may not show, or for ids."""
        return " " if self.no_color or self.mode == "id" else ""

    def _cells(self, index: int) -> int:
        return self._token(index)[1]

    def _breaks_after(self, index: int) -> bool:
        return self._token(index)[2]

    def _layout(self, start: int, width: int, height: int) -> list[Layout]:
        """Wrap tokens start.. into at most `height` lines of `width` cells."""
        lines: list[Layout] = [[]]
        used = 0
        gap = len(self._gap)
        for index in range(start, len(self._ids)):
            label, size, breaks = self._token(index)
            if size > width:  # a token wider than the strip: cut it
                label = clip(label, width - gap)
                size = cell_len(label) + gap
            if used + size > width and lines[-1]:
                if len(lines) == height:
                    break
                lines.append([])
                used = 0
            lines[-1].append((index, label))
            used += size
            if breaks:
                if len(lines) == height:
                    break
                lines.append([])
                used = 0
        return lines

    def _start_for(self, focus: int, width: int, height: int) -> int:
        """A start that puts token `focus` about a third of the way down (estimated backwards, then checked)."""
        lines_before, used, start = max(height // 3, 0), 0, focus
        while start > 0 and lines_before >= 0:
            size = self._cells(start - 1)
            if used + size > width or self._breaks_after(start - 1):
                lines_before -= 1
                used = 0
                if lines_before < 0:
                    break
            used += size
            start -= 1
        return start

    def _visible(self, lines: list[Layout], index: int, height: int) -> bool:
        """Token `index` is on screen and not on the last line (unless everything fits)."""
        last_full = len(lines) == height and lines[-1] and lines[-1][-1][0] < len(self._ids) - 1
        for row, line in enumerate(lines):
            if any(i == index for i, _ in line):
                return not (last_full and row == height - 1 and height > 2)
        return False

    def _window(self, width: int, height: int) -> list[Layout]:
        target = min(self.cursor + 1, len(self._ids) - 1)
        if self.cursor >= self._start:
            lines = self._layout(self._start, width, height)
            if self._visible(lines, target, height):
                return lines
        self._start = self._start_for(self.cursor, width, height)
        lines = self._layout(self._start, width, height)
        while not self._visible(lines, target, height) and self._start < self.cursor:
            self._start += 1
            lines = self._layout(self._start, width, height)
        return lines

    # -- drawing ---------------------------------------------------------------------------------------

    def _style(self, index: int) -> Style:
        if self.no_color and index not in (self.cursor, self.cursor + 1):
            style = self._colour_style(index, flagged=False)
            if not self._masked[index]:
                style += COUNTED_NO_COLOR
            return style + FLAGGED_NO_COLOR if index in self.flagged else style
        return self._colour_style(index, flagged=index in self.flagged)

    def _colour_style(self, index: int, flagged: bool) -> Style:
        if index == self.cursor:
            return CURRENT
        if index == self.cursor + 1:
            return TARGET
        if self.reason_colours:
            style = REASON_STYLES[self._reasons[index]]
            if self._special[index]:
                style += SPECIAL
            return style + FLAGGED if flagged else style
        heat = self._heat_level(index) if self.heatmap else None
        return _token_style(
            index % 2,
            heat,
            bool(self._special[index]),
            bool(self._masked[index]),
            flagged,
            None if self.no_color else self._roles[index],
        )

    def _heat_level(self, index: int) -> int | None:
        """Which HEAT colour token `index` gets: by the CE of predicting it (position index-1)."""
        if index == 0:
            return None
        ce = float(self.result.trace.ce[index - 1])
        if not math.isfinite(ce):
            return len(HEAT) - 1
        level = int(ce / max(self.heat_scale, 1e-6) * (len(HEAT) - 1))
        return min(max(level, 0), len(HEAT) - 1)

    def _draw(self) -> None:
        # The strip may be taller than the box that holds it (it asks for up to MAX_LINES; the stepper caps
        # the box to what the panels leave): lay out only the lines the box shows, so the cursor stays in view.
        width, height = self.size.width, self.size.height
        if self.parent is not None and self.parent.size.height > 0:
            height = min(height, self.parent.size.height)
        if width < 2 or height < 1:
            return
        gap = self._gap
        lines, self._hits = [], []
        for layout in self._window(width, height):
            line, hits, x = [], [], 0
            for index, label in layout:
                if index in self.boundaries and label.startswith(BOUNDARY_MARK):
                    line.append((BOUNDARY_MARK, BOUNDARY))
                    label = label[len(BOUNDARY_MARK) :]
                    x += len(BOUNDARY_MARK)
                line.append((label, self._style(index)))
                if gap:
                    line.append((self._gap_mark(index, gap), None))
                size = cell_len(label) + len(gap)
                hits.append((x, x + size, index))
                x += size
            lines.append(line)
            self._hits.append(hits)
        self.set_lines(lines)

    def _gap_mark(self, index: int, gap: str) -> str:
        """The cell after token `index` without colour: its mask reason's glyph when reasons are shown, else
        its chat role's (a chat, or ids with recovered turns; template markup keeps the plain gap)."""
        if self.no_color and self.reason_colours:
            return REASON_GLYPHS[self._reasons[index]]
        if self.no_color:
            return ROLE_GLYPHS.get(self._roles[index] or "", gap)
        return gap

    def token_at(self, x: int, y: int) -> int | None:
        """The token drawn at content cell (x, y), if any."""
        if not 0 <= y < len(self._hits):
            return None
        return next((index for x0, x1, index in self._hits[y] if x0 <= x < x1), None)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = self.token_at(offset.x, offset.y)
        if index is not None:
            self.post_message(self.TokenClicked(index))
