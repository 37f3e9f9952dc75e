"""The logit lens at the cursor (`y`): each layer's prediction for position t, computed in a worker."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tokstep.engine.compare_results import LensResult
from tokstep.engine.errors import TokstepError
from tokstep.engine.tokens import TokenTexts
from tokstep.tui.formatting import bar, clip, probability, token_label


def lens_table(lens: LensResult, texts: TokenTexts) -> Table:
    """One row per layer: the target's rank and q (with a bar), then the layer's top-k tokens and their q."""
    table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
    table.add_column("layer", no_wrap=True)
    table.add_column("rank", justify="right", no_wrap=True)
    table.add_column("q(target)", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True, width=8)
    table.add_column(f"top-{lens.topk_ids.shape[1]} (q)", no_wrap=True, overflow="ellipsis", ratio=1)
    for i, name in enumerate(lens.layers):
        if not lens.finite[i]:
            table.add_row(name, "—", Text("NaN/inf", style="bold red"), "", "")
            continue
        q = float(lens.target_prob[i])
        top = Text()
        for token_id, logprob in zip(lens.topk_ids[i].tolist(), lens.topk_logprobs[i].tolist(), strict=True):
            style = "bold black on yellow" if token_id == lens.target_id else ""
            top.append(clip(token_label(texts, token_id), 12), style=style)
            top.append(f" {probability(math.exp(logprob))}  ", style="dim")
        table.add_row(name, str(int(lens.target_rank[i])), probability(q), bar(q, 8), top)
    return table


class LensScreen(ModalScreen[None]):
    """Shows 'computing…' at once, then the lens table (or the reason it cannot be computed)."""

    BINDINGS = [Binding("escape,y,Y,q", "close", "close")]

    def __init__(self, title: str, texts: TokenTexts) -> None:
        super().__init__()
        self.title_text = title
        self.texts = texts
        self.lens: LensResult | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide", id="lens-body"):
            yield Static(Text(self.title_text, style="bold"), classes="dialog-title")
            yield Static(Text("computing the logit lens …", style="dim"), id="lens-table")
            yield Static(Text("Escape closes", style="dim"), id="lens-hint")

    def show_lens(self, lens: LensResult) -> None:
        self.lens = lens
        target = token_label(self.texts, lens.target_id)
        self.query_one("#lens-table", Static).update(lens_table(lens, self.texts))
        self.query_one("#lens-hint", Static).update(
            Text(
                f"target {target!s} (id {lens.target_id}); each layer's hidden state at t through "
                f"{lens.final_norm} and the output head. Escape closes",
                style="dim",
            )
        )

    def fail(self, reason: str) -> None:
        self.query_one("#lens-table", Static).update(Text(reason, style="bold red"))

    def action_close(self) -> None:
        self.dismiss(None)


def open_lens(screen: Any, loaded: Any, texts: TokenTexts, sample: Any, t: int, label: str) -> None:
    """Push a LensScreen for position t of `sample` and compute the lens in a worker of `screen`."""
    if loaded is None:
        screen.notify("the logit lens needs the loaded model", severity="warning", timeout=3)
        return
    lens_screen = LensScreen(f"logit lens at t = {t} · {label}", texts)
    screen.app.push_screen(lens_screen)
    _compute(screen, lens_screen, loaded, sample, t)


def _compute(screen: Any, lens_screen: LensScreen, loaded: Any, sample: Any, t: int) -> None:
    app = screen.app

    def run() -> None:
        try:
            lens = app.backend.lens(loaded, sample, t)
        except TokstepError as error:
            app.call_from_thread(lens_screen.fail, str(error))
            return
        except Exception as error:  # noqa: BLE001 - one line, never a traceback
            app.call_from_thread(lens_screen.fail, f"internal error: {type(error).__name__}: {error}")
            return
        app.call_from_thread(lens_screen.show_lens, lens)

    screen.run_worker(run, thread=True, group="lens", exclusive=True, exit_on_error=False)
