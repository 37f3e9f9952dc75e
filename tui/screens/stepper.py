"""The stepper screen: one frozen `TraceResult`, one reactive cursor, every panel redrawn from both.

Stepping never recomputes the model: each key moves the cursor and the widgets read the Trace at t.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer

from tokstep.engine.model.results import TraceResult
from tokstep.tui.screens.backend import Backend, EngineBackend
from tokstep.tui.screens.dialogs import HelpScreen, LintsScreen, PromptScreen, ThresholdScreen
from tokstep.tui.screens.lens import LensScreen
from tokstep.tui.screens.navigation import (
    Marks,
    SurpriseRule,
    TokenSearch,
    mask_boundaries,
    parse_position,
    parse_surprise_rule,
    position_predicting,
)
from tokstep.tui.severity import severity_counts
from tokstep.tui.widgets.context_strip import (
    HEAT_COLOURS,
    REASON_COLOURS,
    REASON_GLYPHS,
    REASON_SHORT,
    ROLE_COLOURS,
    ROLE_GLYPHS,
    ContextStrip,
    token_roles,
)
from tokstep.tui.widgets.document_line import DocumentLine
from tokstep.tui.widgets.inspector_line import InspectorLine
from tokstep.tui.widgets.lines import ResultPanel
from tokstep.tui.widgets.loss_curve import LossCurve
from tokstep.tui.widgets.loss_panel import LossPanel
from tokstep.tui.widgets.onehot_panel import OneHotPanel
from tokstep.tui.widgets.status_bar import StatusBar
from tokstep.tui.widgets.topk_table import TopKTable

if TYPE_CHECKING:
    from tokstep.engine.lints.catalogue import Finding

SPEEDS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)  # auto-step rates, positions per second
CONTEXT_LEGEND = "␣ space  ↵ newline  dim = masked (−100)  click a token"
NO_COLOR_LEGEND = "␣ space  ↵ newline  underlined = counted, plain = masked (−100)"
CONTEXT_TITLE = (
    "context · position t reads tokens 0..[reverse b] t [/] and predicts [b black on yellow] t+1 [/]"
)


def context_legend(result: TraceResult) -> str:
    """The strip's key: for chats and ids rows with recovered chat turns, the role colours with the mask on top."""
    if result.sample.layout is None:
        return CONTEXT_LEGEND
    roles = {r for r in token_roles(result) if r}
    swatches = " ".join(f"[on {ROLE_COLOURS[r][1]}] {r} [/]" for r in ROLE_COLOURS if r in roles)
    return f"{swatches}  bright = trained, dim = masked (−100)  click a token"


def no_color_legend(result: TraceResult) -> str:
    """The strip's key without colour: the role glyph after each token (chats), underline = counted."""
    roles = {r for r in token_roles(result) if r}
    if not roles:
        return NO_COLOR_LEGEND
    glyphs = "  ".join(f"{ROLE_GLYPHS[r]} {r}" for r in ROLE_GLYPHS if r in roles)
    return f"after each token: {glyphs}  underlined = counted, plain = masked (−100)"


def heat_legend(scale: float) -> str:
    """The heatmap's key: each token coloured by the CE of predicting it, from green (0) to red (>= scale)."""
    swatches = "".join(f"[black on {colour}] [/]" for colour in HEAT_COLOURS)
    return f"token colour = CE of predicting it: 0 {swatches} ≥ {scale:.2f}  (95th percentile)"


def reason_legend(result: TraceResult, no_color: bool = False) -> str:
    """The key of the mask-reason colours, for the reasons this sample has (counted first), by short name so
    that all thirteen fit at 120 columns and a usual chat's at 80 (README lists the full names)."""
    present = sorted(set(result.sample.mask_reasons), key=lambda r: list(REASON_COLOURS).index(r.value))
    if no_color:  # without colour, the glyph after each token names its reason
        return "after each token: " + "  ".join(f"{REASON_GLYPHS[r]} {REASON_SHORT[r]}" for r in present)
    return " ".join(f"[on {REASON_COLOURS[r.value]}] {REASON_SHORT[r]} [/]" for r in present)


class StepperScreen(Screen[None]):
    """Step through positions t = 0..T-1; position t reads tokens 0..t and predicts token t+1."""

    BINDINGS = [
        Binding("right,l,space", "step(1)", "next", key_display="→", id="next", tooltip="next position"),
        Binding("left,h", "step(-1)", "prev", key_display="←", id="previous", tooltip="previous position"),
        Binding("home,g", "first", "first", show=False, id="first", tooltip="first position"),
        Binding("end,G", "last", "last", show=False, id="last", tooltip="last position (vs HF)"),
        Binding("pagedown", "step(10)", "+10 positions", show=False, id="forward-10"),
        Binding("pageup", "step(-10)", "−10 positions", show=False, id="back-10"),
        Binding("colon", "goto", "go to", id="goto", tooltip="go to a position"),
        Binding("n", "surprise(1)", "surprise", id="next-surprise", tooltip="next surprise"),
        Binding("N", "surprise(-1)", "previous surprise", show=False, id="previous-surprise"),
        Binding("t", "thresholds", "set surprise thresholds", show=False, id="thresholds"),
        Binding("m", "mask_boundary(1)", "next mask boundary", show=False, id="next-mask-boundary"),
        Binding("M", "mask_boundary(-1)", "previous mask boundary", show=False, id="previous-mask-boundary"),
        Binding("slash", "search", "search", id="search", tooltip="search the text"),
        Binding("p", "play", "play", id="play", tooltip="play / pause"),
        Binding("p", "pause", "pause", id="pause", tooltip="play / pause"),
        Binding("plus,equals_sign", "speed(1)", "play faster", show=False, id="faster"),
        Binding("minus", "speed(-1)", "play slower", show=False, id="slower"),
        Binding("r", "toggle_mode('piece')", "raw pieces on/off", show=False, id="raw-pieces"),
        Binding("i", "toggle_mode('id')", "token ids on/off", show=False, id="token-ids"),
        Binding("c", "toggle_heatmap", "loss heatmap on/off", show=False, id="heatmap"),
        Binding("w", "toggle_reasons", "colour by mask reason", show=False, id="mask-reasons"),
        Binding("L", "lints", "lints", show=False, id="lints", tooltip="the sample's lints"),
        Binding("right_square_bracket", "document(1)", "next document", show=False, id="next-document"),
        Binding(
            "left_square_bracket", "document(-1)", "previous document", show=False, id="previous-document"
        ),
        Binding("D", "goto_document", "go to document", show=False, id="goto-document"),
        Binding("y", "lens", "logit lens", show=False, id="lens", tooltip="logit lens at t"),
        Binding("escape", "back", "back", show=False, id="back", tooltip="stop playing / back"),
        Binding("question_mark", "help", "help", id="help"),
        Binding("q", "quit", "quit", id="quit"),
    ]

    cursor: reactive[int] = reactive(0, init=False, repaint=False)  # the panels repaint themselves

    def __init__(
        self,
        result: TraceResult,
        *,
        findings: Sequence[Finding] = (),
        backend: Backend | None = None,
        model: Any = None,
        can_go_back: bool = False,
        no_color: bool = False,
        batch: tuple[Any, int] | None = None,
    ) -> None:
        super().__init__()
        self.result = result
        self.batch = batch  # (BatchReport, row index) when this is a row of trainer batches
        row = batch[0].rows[batch[1]] if batch is not None else None
        self.documents: tuple[tuple[int, int], ...] = row.row.documents if row is not None else ()
        self.findings = list(findings)
        self.can_go_back = can_go_back
        self.no_color = no_color
        self.rule = SurpriseRule()
        self.surprises = Marks(self.rule.flags(result.trace))
        self.boundaries = Marks(mask_boundaries(result.trace))
        self.search = TokenSearch(result.texts, result.sample.input_ids)
        self.last_query = ""
        self.mode = "text"
        self.heatmap = False
        self.speed_index = SPEEDS.index(5.0)
        self.player: Timer | None = None
        self.backend = backend or EngineBackend()
        self.model = model  # the backend's handle of the traced model (for the logit lens), if any
        self.panels: list[ResultPanel] = []  # every widget with a show(t), filled on mount

    # -- layout ----------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        result = self.result
        yield StatusBar(result, id="status")
        with Vertical(id="context-box"):
            flagged = frozenset(int(i) for f in self.findings for i in f.positions)
            starts = frozenset(start for start, _ in self.documents[1:])
            yield ContextStrip(
                result, flagged=flagged, no_color=self.no_color, boundaries=starts, id="context"
            )
        if self.batch is not None:
            yield DocumentLine(self.batch[0], self.batch[1], id="documents")
        yield InspectorLine(result, self.backend.inspect_token, id="inspector")
        with Horizontal(id="panels"):
            yield TopKTable(result, id="topk")
            with Vertical(id="right"):
                yield OneHotPanel(result, id="onehot")
                yield LossPanel(result, id="loss")
                yield LossCurve(result, id="curve")
        yield Footer()

    # The hooks a screen built on the stepper (CompareScreen) overrides: its panels, their titles, the rows
    # its context leaves to the lines above and below the panels.
    PANELS = (
        "StatusBar, ContextStrip, DocumentLine, InspectorLine, TopKTable, OneHotPanel, LossPanel, LossCurve"
    )
    context_title = CONTEXT_TITLE

    def title_panels(self, top_k: int) -> None:
        """The panels' border titles."""
        self.query_one("#topk").border_title = f"top-{top_k} next tokens at t"
        self.query_one("#onehot").border_title = "one-hot target p vs q"
        self.query_one("#loss").border_title = "loss"

    def rows_outside_panels(self) -> int:
        """Rows of the lines around the context and the panels: status, inspector, footer (a packed row:
        its document line)."""
        return 3 + (1 if self.batch is not None else 0)

    def on_mount(self) -> None:
        top_k = self.result.trace.top_k
        self.query_one("#panels").styles.min_height = top_k + 5  # header, k rows, the extra row, borders
        context = self.query_one("#context-box")
        context.border_title = self.context_title
        context.border_subtitle = self.legend
        self.title_panels(top_k)
        self.query_one(StatusBar).lints = severity_counts(self.findings)
        self.panels = [w for w in self.query(self.PANELS) if isinstance(w, ResultPanel)]
        self._fit_context()
        self.refresh_bindings()
        self.watch_cursor(self.cursor)

    def on_resize(self) -> None:
        self._fit_context()

    def update_result(self, result: TraceResult) -> None:
        """The same trace with HF's reference filled in (it arrives after the stepper is shown)."""
        self.result = result
        for widget in self.query(LossPanel):
            widget.result = result
            if self.panels:
                widget.show(self.cursor)

    @property
    def legend(self) -> str:
        """The context's key: without colour, dim may be invisible, so counted tokens are underlined."""
        return no_color_legend(self.result) if self.no_color else context_legend(self.result)

    def _fit_context(self) -> None:
        """Give the context what the panels leave over (they need k + 5 rows), between 3 and 18 rows."""
        fixed = self.rows_outside_panels() + self.result.trace.top_k + 5
        self.query_one("#context-box").styles.max_height = min(max(self.size.height - fixed, 3), 18)

    def watch_cursor(self, t: int) -> None:
        """The one place the screen reacts to a move: every panel redraws itself for position t."""
        for widget in self.panels:
            widget.show(t)

    def validate_cursor(self, t: int) -> int:
        return min(max(t, 0), len(self.result.trace) - 1)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "lints":
            return bool(self.findings)
        if action in ("document", "goto_document"):
            return len(self.documents) > 1
        if action == "back":
            return self.can_go_back or self.player is not None
        if action in ("play", "pause"):  # one key, labelled by what it will do
            return (self.player is None) == (action == "play")
        return True

    # -- moving ----------------------------------------------------------------------------------------

    def action_step(self, delta: int) -> None:
        self.cursor = self.cursor + delta

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = len(self.result.trace) - 1

    def jump_to_token(self, token_index: int) -> None:
        self.cursor = position_predicting(token_index, len(self.result.trace))

    def on_context_strip_token_clicked(self, message: ContextStrip.TokenClicked) -> None:
        self.jump_to_token(message.token_index)

    def action_goto(self) -> None:
        positions = len(self.result.trace)

        def go(text: str | None) -> None:
            if text is not None:
                self.cursor = parse_position(text, positions)

        self.app.push_screen(
            PromptScreen(
                f"Go to position (0..{positions - 1}, -1 = last, 50% = middle)",
                placeholder=str(self.cursor),
                validate=lambda text: parse_position(text, positions),
            ),
            go,
        )

    def action_surprise(self, direction: int) -> None:
        found = (
            self.surprises.next_after(self.cursor)
            if direction > 0
            else self.surprises.previous_before(self.cursor)
        )
        if found is None:
            where = "after" if direction > 0 else "before"
            self.notify(f"no surprise {where} t = {self.cursor} ({self.rule.describe()})", timeout=3)
        else:
            self.cursor = found

    def action_thresholds(self) -> None:
        def apply(values: tuple[str, str] | None) -> None:
            if values is None:
                return
            self.rule = parse_surprise_rule(*values)
            self.surprises = Marks(self.rule.flags(self.result.trace))
            self.notify(f"surprise = {self.rule.describe()}: {len(self.surprises)} positions", timeout=3)

        self.app.push_screen(
            ThresholdScreen(self.rule.rank_above, self.rule.prob_below, parse_surprise_rule), apply
        )

    def action_mask_boundary(self, direction: int) -> None:
        marks = self.boundaries
        found = marks.next_after(self.cursor) if direction > 0 else marks.previous_before(self.cursor)
        if found is None:
            self.notify("no further mask boundary (counted ↔ masked)", timeout=3)
        else:
            self.cursor = found

    def action_document(self, direction: int) -> None:
        """Jump to the start of the next / previous packed document (its first token is read at its start)."""
        starts = [start for start, _ in self.documents]
        found = (
            next((s for s in starts if s > self.cursor), None)
            if direction > 0
            else next((s for s in reversed(starts) if s < self.cursor), None)
        )
        if found is None:
            self.notify("no further document in this row", timeout=3)
        else:
            self.cursor = found

    def action_goto_document(self) -> None:
        count = len(self.documents)

        def parse(text: str) -> int:
            """`d` -> the start of document d; `d:t` -> position t inside it (both 0-based, as `tokstep report`
            numbers the documents and the lint names them)."""
            doc, _, offset = text.strip().partition(":")
            try:
                d, t = int(doc), int(offset or 0)
            except ValueError:
                raise ValueError(f"a document 0..{count - 1}, optionally :t (e.g. 1:5)") from None
            if not 0 <= d < count:
                raise ValueError(f"a document number, 0..{count - 1}")
            start, end = self.documents[d]
            if not 0 <= t < end - start:
                raise ValueError(f"document {d} has positions 0..{end - start - 1}")
            return start + t

        def go(text: str | None) -> None:
            if text is not None:
                self.cursor = parse(text)

        self.app.push_screen(
            PromptScreen(
                f"Go to document d (0..{count - 1}), or position t of it as d:t",
                placeholder="0",
                validate=parse,
            ),
            go,
        )

    def action_search(self) -> None:
        def find(query: str | None) -> None:
            if not query:
                return
            self.last_query = query
            token = self.search.find(query, after_token=self.cursor + 1)
            if token is None:
                self.notify(f"not found: {query!r}", severity="warning", timeout=3)
            else:
                self.jump_to_token(token)

        self.app.push_screen(
            PromptScreen(
                "Search the text (#1234 finds a token id); Enter finds the next match", value=self.last_query
            ),
            find,
        )

    # -- playing ---------------------------------------------------------------------------------------

    @property
    def speed(self) -> float:
        return SPEEDS[self.speed_index]

    def action_pause(self) -> None:
        self._stop()

    def action_play(self) -> None:
        if self.player is not None:
            self._stop()
            return
        if self.cursor >= len(self.result.trace) - 1:
            self.cursor = 0
        self.player = self.set_interval(1.0 / self.speed, self._tick)
        self._show_playing()

    def _tick(self) -> None:
        if self.cursor >= len(self.result.trace) - 1:
            self._stop()
        else:
            self.cursor += 1

    def _stop(self) -> None:
        if self.player is not None:
            self.player.stop()
            self.player = None
        self._show_playing()

    def action_speed(self, direction: int) -> None:
        self.speed_index = min(max(self.speed_index + direction, 0), len(SPEEDS) - 1)
        if self.player is not None:
            self.player.stop()
            self.player = self.set_interval(1.0 / self.speed, self._tick)
        self._show_playing()
        if self.player is None:
            self.notify(f"play speed {self.speed:g} positions/s", timeout=2)

    def _show_playing(self) -> None:
        status = self.query_one(StatusBar)
        status.playing = self.speed if self.player is not None else None
        status.show(self.cursor)
        self.refresh_bindings()

    # -- display toggles -------------------------------------------------------------------------------

    def action_toggle_mode(self, mode: str) -> None:
        self.mode = "text" if self.mode == mode else mode
        self.query_one(ContextStrip).set_mode(self.mode)
        self.query_one(TopKTable).set_mode(self.mode)
        self.notify(
            f"tokens shown as {dict(text='text', piece='raw pieces', id='ids')[self.mode]}", timeout=2
        )

    def action_toggle_heatmap(self) -> None:
        self.heatmap = not self.heatmap
        strip = self.query_one(ContextStrip)
        strip.set_heatmap(self.heatmap)
        box = self.query_one("#context-box")
        box.border_subtitle = heat_legend(strip.heat_scale) if self.heatmap else self.legend
        self.notify(f"loss heatmap {'on' if self.heatmap else 'off'}", timeout=2)

    def action_toggle_reasons(self) -> None:
        strip = self.query_one(ContextStrip)
        strip.set_reason_colours(not strip.reason_colours)
        self.heatmap = strip.heatmap
        box = self.query_one("#context-box")
        box.border_subtitle = (
            reason_legend(strip.result, self.no_color) if strip.reason_colours else self.legend
        )
        self.notify(f"mask-reason colours {'on' if strip.reason_colours else 'off'}", timeout=2)

    # -- other screens ---------------------------------------------------------------------------------

    def action_help(self) -> None:
        extra = [("click", "a token: jump to it")]
        document_keys = {"next-document", "previous-document", "goto-document"}
        # every key the screen answers: the stepper's, with a subclass's (the compare screen's n, N, y, Y) in
        # place of the ones it rebinds (Textual merges inherited BINDINGS; self.BINDINGS holds only the subclass's)
        by_key: dict[str, Binding] = {}
        for cls in reversed([c for c in type(self).__mro__ if issubclass(c, StepperScreen)]):
            for b in vars(cls).get("BINDINGS", ()):
                if isinstance(b, Binding):
                    by_key[b.key] = b
        shown = [b for b in by_key.values() if len(self.documents) > 1 or b.id not in document_keys]
        self.app.push_screen(HelpScreen(shown, extra))

    def action_lints(self) -> None:
        def jump(token_index: int | None) -> None:
            if token_index is not None:
                self.jump_to_token(token_index)

        self.app.push_screen(LintsScreen(self.findings), jump)

    def action_lens(self, which: str = "a") -> None:

        if self.model is None:
            self.notify("the logit lens needs the model (none is loaded here)", severity="warning", timeout=3)
            return
        result = self.result
        label = f"{result.info.name} · {result.info.dtype} · {result.info.device}"
        self.app.push_screen(LensScreen(self.backend, self.model, result, self.cursor, label))

    def action_back(self) -> None:
        if self.player is not None:
            self._stop()
        elif self.can_go_back:
            self.dismiss()

    async def action_quit(self) -> None:
        self.app.exit()
