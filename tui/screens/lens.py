"""The logit lens at the cursor (`y`): each layer's prediction for position t, computed in a worker."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from tokstep.engine.compare.results import LensResult
from tokstep.engine.model.results import TraceResult
from tokstep.engine.model.tokens import TokenTexts
from tokstep.tui.formatting import bar, clip, probability, token_label
from tokstep.tui.screens.backend import Backend, worker_error
from tokstep.tui.screens.messages import LensFailed, LensReady


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
    """The lens of one model at position t: 'computing…' at once, then the table (or why it cannot be)."""

    BINDINGS = [Binding("escape,y,Y,q", "close", "close")]

    def __init__(self, backend: Backend, model: Any, result: TraceResult, t: int, label: str) -> None:
        super().__init__()
        self.backend = backend
        self.model = model  # the backend's handle
        self.result = result
        self.position = t
        self.title_text = f"logit lens at t = {t} · {label}"
        self.lens: LensResult | None = None
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide", id="lens-body"):
            yield Static(Text(self.title_text, style="bold"), classes="dialog-title")
            yield Static(Text("computing the logit lens …", style="dim"), id="lens-table")
            yield Static(Text("Escape closes", style="dim"), id="lens-hint")

    def on_mount(self) -> None:
        self.compute()

    @work(thread=True, exit_on_error=False, group="lens", exclusive=True)
    def compute(self) -> LensResult:
        return self.backend.lens(self.model, self.result.sample, self.position)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place the lens worker's outcome lands, as the message the screen reacts to."""
        if event.worker.group != "lens":
            return
        if event.state is WorkerState.SUCCESS:
            self.post_message(LensReady(event.worker.result))
        elif event.state is WorkerState.ERROR:
            self.post_message(LensFailed(worker_error(event.worker.error)))

    def on_lens_ready(self, message: LensReady) -> None:
        lens = self.lens = message.lens
        texts = self.result.texts
        self.query_one("#lens-table", Static).update(lens_table(lens, texts))
        self.query_one("#lens-hint", Static).update(
            Text(
                f"target {token_label(texts, lens.target_id)} (id {lens.target_id}); each layer's hidden state "
                f"at t through {lens.final_norm} and the output head. Escape closes",
                style="dim",
            )
        )

    def on_lens_failed(self, message: LensFailed) -> None:
        self.error = message.reason
        self.query_one("#lens-table", Static).update(Text(message.reason, style="bold red"))

    def action_close(self) -> None:
        self.dismiss(None)
