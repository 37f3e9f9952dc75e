"""The compare screens: A and B stepped together (`CompareScreen`), and two tokenizations of one text
(`AlignmentScreen`). Like the stepper, every key only moves a cursor over finished results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from tokstep.engine.compare.results import CompareResult, TokenizerCompareResult
from tokstep.tui.cli.compare_report import boundary_rows
from tokstep.tui.screens.backend import Backend
from tokstep.tui.screens.lens import LensScreen
from tokstep.tui.screens.navigation import Marks
from tokstep.tui.screens.stepper import StepperScreen
from tokstep.tui.widgets.compare_panel import CompareBar, ComparePanel, KLCurve
from tokstep.tui.widgets.context_strip import ContextStrip
from tokstep.tui.widgets.inspector_line import InspectorLine
from tokstep.tui.widgets.loss_curve import LossCurve
from tokstep.tui.widgets.status_bar import StatusBar
from tokstep.tui.widgets.topk_table import TopKTable

COMPARE_CSS = """
CompareScreen #panels { height: 1fr; }
CompareScreen #topk-a, CompareScreen #topk-b { width: 1fr; border: round $secondary; border-title-style: bold; padding: 0 0 0 1; }
CompareScreen #compare-right { width: 1fr; min-width: 38; }  /* the A vs B panel (34 columns) uncut */
CompareScreen #compare { border: round $secondary; border-title-style: bold; padding: 0 1; text-wrap: nowrap; }
CompareScreen #curve, CompareScreen #kl-curve { border: round $panel; border-title-style: bold; padding: 0 1; min-height: 4; }
CompareBar { text-wrap: nowrap; text-overflow: ellipsis; }
"""


class CompareScreen(StepperScreen):
    """The stepper over A, with B beside it: both top-k tables, the per-position comparison, the loss and
    KL curves. `n` / `N` jump to the next / previous position by KL; `y` / `Y` open the logit lens of A / B."""

    DEFAULT_CSS = COMPARE_CSS
    BINDINGS = [
        # help descriptions short enough for the help's two columns at 80 (README: top 10% by KL, or NaN/inf)
        Binding("n", "kl_jump(1)", "next by KL", id="next-kl", tooltip="next by KL (top 10%)"),
        Binding("N", "kl_jump(-1)", "previous by KL", show=False, id="previous-kl"),
        Binding("y", "lens('a')", "lens", id="lens", tooltip="logit lens of A at t"),
        Binding("Y", "lens('b')", "lens of B", show=False, id="lens-b", tooltip="logit lens of B at t"),
    ]

    def __init__(
        self,
        compare: CompareResult,
        *,
        findings: Sequence[Any] = (),
        backend: Backend | None = None,
        model: Any = None,
        model_b: Any = None,
        no_color: bool = False,
    ) -> None:
        super().__init__(compare.a, findings=findings, backend=backend, model=model, no_color=no_color)
        self.compare = compare
        self.model_b = model_b  # the backend's handle of B (for B's logit lens)
        self.kl_marks = Marks(compare.by_kl_marks)

    def compose(self) -> ComposeResult:
        result, compare = self.result, self.compare
        yield StatusBar(result, id="status")
        yield CompareBar(compare, id="compare-bar")
        with Vertical(id="context-box"):
            flagged = frozenset(int(i) for f in self.findings for i in getattr(f, "positions", ()) or ())
            yield ContextStrip(result, flagged=flagged, no_color=self.no_color, id="context")
        yield InspectorLine(result, self.backend.inspect_token, id="inspector")
        with Horizontal(id="panels"):
            yield TopKTable(result, id="topk-a")
            yield TopKTable(compare.b, id="topk-b")
            with Vertical(id="compare-right"):
                yield ComparePanel(compare, id="compare")
                yield LossCurve(result, id="curve")
                yield KLCurve(compare, id="kl-curve")
        yield Footer()

    PANELS = "StatusBar, CompareBar, ContextStrip, InspectorLine, TopKTable, ComparePanel, LossCurve"

    def title_panels(self, top_k: int) -> None:
        for which, side in (("a", self.compare.a), ("b", self.compare.b)):
            title = f"{which.upper()} · {side.info.dtype} · {side.info.device} · top-{top_k}"
            self.query_one(f"#topk-{which}").border_title = title
        self.query_one("#compare").border_title = "A vs B at t"
        self.query_one("#curve").border_title = "CE of A"
        self.query_one("#kl-curve").border_title = "KL(A‖B)"

    def rows_outside_panels(self) -> int:
        return 4  # status, compare bar, inspector, footer

    def action_toggle_mode(self, mode: str) -> None:
        super().action_toggle_mode(mode)
        for table in self.query(TopKTable):
            table.set_mode(self.mode)

    def action_kl_jump(self, direction: int) -> None:
        marks = self.kl_marks
        found = marks.next_after(self.cursor) if direction > 0 else marks.previous_before(self.cursor)
        if found is None:
            where = "after" if direction > 0 else "before"
            self.notify(f"no high-KL position {where} t = {self.cursor}", timeout=3)
        else:
            self.cursor = found

    def action_lens(self, which: str = "a") -> None:

        side, model = (self.compare.a, self.model) if which == "a" else (self.compare.b, self.model_b)
        if model is None:
            self.notify("the logit lens needs the model (none is loaded here)", severity="warning", timeout=3)
            return
        label = self.compare.label_a if which == "a" else self.compare.label_b
        self.app.push_screen(LensScreen(self.backend, model, side, self.cursor, label))


class BoundaryRows(Static):
    """The stacked text and its two rows of token starts, cut to the width the dialog has (a wrapped line would
    slide the `|` rows off the characters they mark): laid out again on every resize."""

    DEFAULT_CSS = "BoundaryRows { text-wrap: nowrap; }"

    def __init__(self, alignment: Any) -> None:
        super().__init__()
        self.alignment = alignment

    def on_resize(self) -> None:

        width = max(self.content_size.width, 13)  # boundary_rows keeps at least 10 characters a line
        self.update(Text("\n").join(boundary_rows(self.alignment, width)))


class AlignmentScreen(ModalScreen[None]):
    """Two tokenizations of the same text, stacked, with `^` where a token starts in only one; bits per byte."""

    BINDINGS = [Binding("escape,q", "close", "close")]

    def __init__(self, result: TokenizerCompareResult) -> None:
        super().__init__()
        self.result = result

    def compose(self) -> ComposeResult:
        al = self.result.alignment
        bpb_a, bpb_b, n = al.bits_per_byte()
        with VerticalScroll(classes="dialog wide", id="alignment-body"):
            yield Static(Text("two tokenizers on the same text", style="bold"), classes="dialog-title")
            yield Static(
                Text(
                    f"{al.name_a}: {al.starts_a.size} tokens   {al.name_b}: {al.starts_b.size} tokens\n"
                    f"{al.n_bytes} bytes; boundaries: {al.shared} shared, {al.only_a.size} only in A, "
                    f"{al.only_b.size} only in B (^)"
                )
            )
            yield BoundaryRows(al)
            if bpb_a is not None and bpb_b is not None:
                yield Static(
                    Text(
                        f"bits per byte over the {n} bytes both score: A {bpb_a:.4f}  B {bpb_b:.4f}  Δ {bpb_b - bpb_a:+.4f}"
                    )
                )
            yield Static(Text("Escape: step through A", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
