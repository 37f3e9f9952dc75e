"""Pilot tests for the compare screens on tiny real models: both panels, n / N by KL, the logit lens on
y / Y (computed in a worker, equal to the engine's), non-finite positions, two tokenizers."""

from __future__ import annotations

import numpy as np
import pytest
import tiny
from tui_wait import screen_of as wait_screen

from tokstep.engine.compare.lens import logit_lens
from tokstep.engine.compare.spec import CompareSpec
from tokstep.engine.inputs.spec import SampleSpec
from tokstep.engine.model.loading import ModelSpec, wrap_model
from tokstep.tui.screens.app import TokstepApp
from tokstep.tui.screens.backend import EngineBackend
from tokstep.tui.screens.compare import AlignmentScreen, CompareScreen
from tokstep.tui.screens.lens import LensScreen
from tokstep.tui.screens.stepper import StepperScreen
from tokstep.tui.widgets.compare_panel import CompareBar, ComparePanel

TEXT = SampleSpec(text="A lazy cat loves brown dogs and quick foxes in France. Hello there, general Kenobi!")
SIZE = (120, 40)


class PreloadedBackend(EngineBackend):
    """The real engine calls, on models built in the test instead of loaded from disk."""

    def __init__(self, a, b=None) -> None:
        self.a, self.b = a, b

    def load(self, spec):
        return self.a

    def load_compare(self, spec):
        return self.b


@pytest.fixture(scope="module")
def models(sp_tokenizer, bpe_tokenizer):
    return {
        "a": wrap_model(tiny.tiny_model("llama", len(sp_tokenizer), seed=0), sp_tokenizer, "A"),
        "b": wrap_model(tiny.tiny_model("llama", len(sp_tokenizer), seed=1), sp_tokenizer, "B"),
        "gpt2": wrap_model(tiny.tiny_model("gpt2", len(bpe_tokenizer), seed=1), bpe_tokenizer, "gpt2"),
    }


def make_app(a, b) -> TokstepApp:
    return TokstepApp(
        ModelSpec(),
        TEXT,
        backend=PreloadedBackend(a, b),
        compare=CompareSpec(model=ModelSpec(dtype="float32")),
    )


async def screen_of(app, pilot, kind):
    return await wait_screen(app, pilot, kind, tries=300)


async def test_compare_screen_steps_both_models_and_jumps_by_kl(models):
    app = make_app(models["a"], models["b"])
    async with app.run_test(size=SIZE) as pilot:
        screen = await screen_of(app, pilot, CompareScreen)
        compare = screen.compare
        marks = np.flatnonzero(compare.by_kl())
        assert marks.size
        await pilot.press("n")
        assert screen.cursor == (marks[marks > 0][0] if marks[0] == 0 else marks[0])
        t = screen.cursor
        await pilot.press("n", "N")
        assert screen.cursor == t
        panel = screen.query_one(ComparePanel).plain_text()
        assert f"{compare.kl[t]:.2e}" in panel
        assert f"{compare.a.trace.ce[t]:.4f}" in panel and f"{compare.b.trace.ce[t]:.4f}" in panel
        bar = screen.query_one(CompareBar).plain_text()
        assert f"mean KL {compare.summary().mean_kl:.3e}" in bar
        tables = [w.plain_text() for w in screen.query("TopKTable")]
        assert len(tables) == 2 and tables[0] != tables[1]  # different weights, different top-k


async def test_y_and_shift_y_open_each_models_lens(models):
    app = make_app(models["a"], models["b"])
    async with app.run_test(size=SIZE) as pilot:
        screen = await screen_of(app, pilot, CompareScreen)
        await pilot.press("right", "right", "right", "y")
        lens_screen = await screen_of(app, pilot, LensScreen)
        for _ in range(200):
            if lens_screen.lens is not None:
                break
            await pilot.pause(0.02)
        expected = logit_lens(models["a"], screen.result.sample, 3)
        np.testing.assert_array_equal(lens_screen.lens.target_rank, expected.target_rank)
        np.testing.assert_array_equal(lens_screen.lens.topk_ids, expected.topk_ids)
        await pilot.press("escape")
        await pilot.press("Y")
        lens_b = await screen_of(app, pilot, LensScreen)
        for _ in range(200):
            if lens_b.lens is not None:
                break
            await pilot.pause(0.02)
        expected_b = logit_lens(models["b"], screen.result.sample, 3)
        np.testing.assert_array_equal(lens_b.lens.topk_ids, expected_b.topk_ids)


async def test_nonfinite_positions_are_marked_in_the_panel(models, sp_tokenizer):
    broken = tiny.tiny_model("llama", len(sp_tokenizer), seed=1)

    def overflow(_module, _args, output):
        output[0, 4] = float("inf")
        return output

    broken.model.norm.register_forward_hook(overflow)
    app = make_app(models["a"], wrap_model(broken, sp_tokenizer, "broken"))
    async with app.run_test(size=SIZE) as pilot:
        screen = await screen_of(app, pilot, CompareScreen)
        screen.cursor = 4
        await pilot.pause()
        assert "NaN/inf logits: not averaged" in screen.query_one(ComparePanel).plain_text()
        assert "1 NaN/inf" in screen.query_one(CompareBar).plain_text()
        await pilot.press("home", "n")
        assert screen.compare.by_kl()[screen.cursor]


async def test_different_tokenizers_show_the_alignment_over_a_stepper(models):
    app = make_app(models["a"], models["gpt2"])
    async with app.run_test(size=SIZE) as pilot:
        await screen_of(app, pilot, AlignmentScreen)
        await pilot.press("escape")
        await screen_of(app, pilot, StepperScreen)


async def test_plain_stepper_opens_the_lens_too(models):
    app = TokstepApp(ModelSpec(), TEXT, backend=PreloadedBackend(models["a"]))
    async with app.run_test(size=SIZE) as pilot:
        await screen_of(app, pilot, StepperScreen)
        await pilot.press("y")
        lens_screen = await screen_of(app, pilot, LensScreen)
        for _ in range(200):
            if lens_screen.lens is not None:
                break
            await pilot.pause(0.02)
        assert lens_screen.lens is not None and lens_screen.lens.position == 0


def test_the_reference_and_the_lens_on_one_model_in_two_threads_never_meet(models):
    """HF's reference (after the stepper's first frame) and the logit lens the user opens meanwhile run in two
    worker threads on one model: each forward must see only its own hooks, so both always succeed."""
    import threading

    backend = PreloadedBackend(models["a"])
    result = backend.trace(models["a"], TEXT, 5, lambda _text: None)
    expected = backend.lens(models["a"], result.sample, 3)
    failures: list[BaseException] = []

    def references() -> None:
        try:
            for _ in range(30):
                assert backend.reference(models["a"], result, "chunked").reference_pending is False
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    worker = threading.Thread(target=references)
    worker.start()
    try:
        while worker.is_alive():
            lens = backend.lens(models["a"], result.sample, 3)
            assert np.allclose(lens.target_logprob, expected.target_logprob)
    finally:
        worker.join()
    assert not failures, failures


async def test_at_80x24_both_top_k_tables_keep_q_and_the_panel_is_not_cut(models):
    """Three panels side by side at 80 columns: every line fits its widget, q stays a number in both tables."""
    from rich.cells import cell_len

    from tokstep.tui.formatting import probability
    from tokstep.tui.widgets.topk_table import TopKTable

    app = make_app(models["a"], models["b"])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await screen_of(app, pilot, CompareScreen)
        await pilot.press("right", "right")
        await pilot.pause()
        t = screen.cursor
        for table, side in zip(screen.query(TopKTable), (screen.compare.a, screen.compare.b), strict=True):
            lines = table.plain_text().splitlines()
            assert max(cell_len(line) for line in lines) <= table.size.width, lines
            top = float(np.exp(side.trace.topk_logprobs[t, 0]))
            assert probability(top) in lines[1] and lines[0].split()[-1] == "q", lines[:2]
        panel = screen.query_one(ComparePanel)
        text = panel.plain_text().splitlines()
        assert max(cell_len(line) for line in text) <= panel.size.width, text
        assert "B − A" in text[1] and ("✓ same" in text[-1] or "✗ differ" in text[-1])


async def test_help_lists_the_stepper_keys_with_compares_own_in_place(models):
    """`?` on the compare screen: every stepper key (→, :, /, p, L ...) and the compare screen's n / N / y / Y,
    whose descriptions replace the stepper's (n jumps by KL here, not by surprise)."""
    from test_tui_stepper import text_of

    from tokstep.tui.screens.dialogs import HelpScreen

    app = make_app(models["a"], models["b"])
    async with app.run_test(size=(120, 40)) as pilot:
        await screen_of(app, pilot, CompareScreen)
        await pilot.press("question_mark")
        help_screen = await screen_of(app, pilot, HelpScreen)
        text = "\n".join(text_of(w) for w in help_screen.query("Static"))
        text = " ".join(text.split())
        for description in ("next position", "go to a position", "search the text", "play / pause", "quit"):
            assert description in text, description
        assert "by KL" in text and "logit lens of A" in text and "logit lens of B" in text
        assert "next surprise" not in text  # n is rebound, not listed twice


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_alignment_rows_fit_the_dialog_so_the_marks_stay_under_their_characters(models, size):
    from rich.cells import cell_len

    from tokstep.tui.screens.compare import BoundaryRows

    app = make_app(models["a"], models["gpt2"])
    async with app.run_test(size=size) as pilot:
        screen = await screen_of(app, pilot, AlignmentScreen)
        await pilot.pause()
        rows = screen.query_one(BoundaryRows)
        lines = str(rows.render()).splitlines()
        assert len(lines) >= 3 and max(cell_len(line) for line in lines) <= rows.content_size.width, lines
        text = "".join(line[3:] for line in lines[0::4])  # every 4th line is the text (then A, B, ^)
        assert text.replace("␣", " ") == screen.result.alignment.text  # nothing lost or wrapped


async def test_at_80x24_the_help_and_footer_show_n_and_y_uncut(models):
    """At 80 columns the help's two columns cut `n`'s and `y`'s long descriptions (`next position by KL (to…`)."""
    from rich.console import Console
    from textual.widgets import Static

    from tokstep.tui.screens.dialogs import HelpScreen

    app = make_app(models["a"], models["b"])
    async with app.run_test(size=(80, 24)) as pilot:
        await screen_of(app, pilot, CompareScreen)
        footer = " ".join(
            b.binding.description for b in app.screen.active_bindings.values() if b.binding.show
        )
        assert "next by KL" in footer
        await pilot.press("question_mark")
        help_screen = await screen_of(app, pilot, HelpScreen)
        table = list(help_screen.query(Static))[1]
        console = Console(width=table.content_region.width, record=True, color_system=None)
        console.print(table.content)  # the help's table as drawn at this width
        shown = console.export_text()
        assert "…" not in shown, shown
        assert "KL" in shown and "logit lens of A" in shown


@pytest.mark.parametrize("width", [80, 100, 120])
async def test_the_second_header_line_drops_statistics_whole_never_cuts_a_number(models, width):
    """The `vs` line at 80-120 columns: it fits, mean KL and Δloss stay, statistics that give way go whole
    and a `…` says so (it was cut mid-number with no `…`)."""
    from rich.cells import cell_len

    from tokstep.tui.widgets.compare_panel import CompareBar

    app = make_app(models["a"], models["b"])
    async with app.run_test(size=(width, 30)) as pilot:
        screen = await screen_of(app, pilot, CompareScreen)
        await pilot.pause()
        bar = screen.query_one(CompareBar)
        text, s = bar.plain_text(), screen.compare.summary_cached
        assert cell_len(text) <= bar.size.width, text
        assert f"mean KL {s.mean_kl:.3e}" in text and f"Δloss {s.delta_loss:+.5f}" in text, text
        for name, value in (("median", s.median_kl), ("p99", s.p99_kl), ("p99.9", s.p999_kl)):
            shown = f"{name} {value:.2e}"
            assert shown in text or f"{name} " not in text, text  # whole or not at all
        assert ("p99.9" in text) or text.endswith("…"), text
