"""Pilot tests for the stepper: every key binding, the mouse, and what each panel shows at position t.

The app gets a finished synthetic TraceResult through `PrecomputedBackend` (the memray MockApp pattern):
the same worker and messages as a real load, no model.
"""

from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
import pytest
from rich.console import Console
from synthetic import synthetic_result
from tui_wait import screen_of

from tokstep.engine.inputs.spec import SampleSpec
from tokstep.engine.lints.catalogue import Finding
from tokstep.tui.screens.app import PrecomputedBackend, TokstepApp
from tokstep.tui.screens.dialogs import HelpScreen, LintsScreen, PromptScreen, ThresholdScreen
from tokstep.tui.screens.navigation import SurpriseRule, mask_boundaries
from tokstep.tui.screens.stepper import SPEEDS, StepperScreen
from tokstep.tui.widgets.context_strip import ContextStrip

SIZE = (100, 30)


@pytest.fixture(scope="module")
def result():
    return synthetic_result(400, seed=1)


def make_app(result, findings=None) -> TokstepApp:
    return TokstepApp(sample_spec=SampleSpec(text="synthetic"), backend=PrecomputedBackend(result, findings))


async def stepper_of(app, pilot) -> StepperScreen:
    return await screen_of(app, pilot, StepperScreen, tries=100)


def text_of(widget) -> str:
    """What a panel currently shows, as plain text (help screen Statics rendered through Rich)."""
    if hasattr(widget, "plain_text"):
        return widget.plain_text()
    console = Console(
        width=max(widget.content_size.width, 20), file=io.StringIO(), record=True, color_system=None
    )
    console.print(widget.content)
    return console.export_text()


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (["right", "l", "space"], 3),
        (["right"] * 5 + ["left", "h"], 3),
        (["pagedown", "pagedown", "pageup"], 10),
        (["end", "home"], 0),
        (["G", "g"], 0),
        (["left"], 0),  # cannot go before 0
    ],
)
async def test_movement_keys(result, keys, expected):
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        await pilot.press(*keys)
        assert stepper.cursor == expected


@pytest.mark.parametrize("key", ["end", "G"])
async def test_last_key_goes_to_the_last_position_and_stays(result, key):
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        await pilot.press(key, "right")
        assert stepper.cursor == len(result.trace) - 1


async def test_colon_goes_to_a_typed_position_and_rejects_a_bad_one(result):
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        await pilot.press("colon")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"9999", "enter")
        assert isinstance(app.screen, PromptScreen)  # still open, with the reason shown
        assert "outside" in str(app.screen.query_one("#prompt-error").render())
        await pilot.press(*["backspace"] * 4, *"123", "enter")
        assert app.screen is stepper and stepper.cursor == 123


async def test_n_and_N_visit_surprises_in_order(result):
    flags = SurpriseRule().flags(result.trace)
    surprises = np.flatnonzero(flags).tolist()
    assert len(surprises) >= 2
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        await pilot.press("n")
        assert stepper.cursor == surprises[0]
        await pilot.press("n")
        assert stepper.cursor == surprises[1]
        await pilot.press("N")
        assert stepper.cursor == surprises[0]


async def test_t_sets_the_surprise_thresholds_that_n_uses(result):
    expected = np.flatnonzero(SurpriseRule(rank_above=1, prob_below=0.0).flags(result.trace)).tolist()
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        await pilot.press("t")
        assert isinstance(app.screen, ThresholdScreen)
        app.screen.query_one("#rank-input").value = "1"
        app.screen.query_one("#prob-input").value = "0"
        app.screen.query_one("#prob-input").focus()
        await pilot.press("enter")
        assert stepper.rule == SurpriseRule(1, 0.0)
        await pilot.press("n", "n")
        assert stepper.cursor == expected[1]


async def test_m_and_M_go_to_mask_boundaries(result):
    boundaries = np.flatnonzero(mask_boundaries(result.trace)).tolist()
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        await pilot.press("m")
        assert stepper.cursor == boundaries[0]
        assert not result.trace.supervised[stepper.cursor - 1] and result.trace.supervised[stepper.cursor]
        await pilot.press("end", "M")
        assert stepper.cursor == boundaries[-1]


async def test_slash_searches_text_and_puts_the_match_as_target(result):
    ids = result.sample.input_ids
    query = "".join(result.texts.text(int(i)) for i in ids[250:252])
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        stepper.cursor = 200
        await pilot.press("slash")
        assert isinstance(app.screen, PromptScreen)
        app.screen.query_one("#prompt-input").value = query
        await pilot.press("enter")
        target = stepper.cursor + 1  # the match is the token being predicted
        found = "".join(result.texts.text(int(i)) for i in ids[target:]).casefold()
        assert 200 < stepper.cursor <= 249 and found.startswith(query.casefold())


async def test_p_plays_and_pauses_and_plus_minus_change_speed(result):
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        start_speed = stepper.speed
        await pilot.press("plus", "plus")
        assert stepper.speed == SPEEDS[SPEEDS.index(start_speed) + 2]
        await pilot.press("minus")
        assert stepper.speed == SPEEDS[SPEEDS.index(start_speed) + 1]
        await pilot.press("p")
        assert stepper.player is not None
        await pilot.pause(0.5)
        moved = stepper.cursor
        assert moved >= 2  # 10 positions per second for half a second
        assert "▶" in text_of(stepper.query_one("#status"))
        footer_keys = {binding.action for (_node, binding, enabled, _tip) in app.active_bindings.values()}
        assert "pause" in footer_keys and "play" not in footer_keys  # the footer says what p will do
        await pilot.press("p")
        assert stepper.player is None
        stopped_at = stepper.cursor
        await pilot.pause(0.3)
        assert stepper.cursor == stopped_at


async def test_play_stops_at_the_last_position(result):
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        stepper.cursor = len(result.trace) - 3
        await pilot.press(*["plus"] * 5, "p")
        await pilot.pause(0.4)
        assert stepper.cursor == len(result.trace) - 1 and stepper.player is None


async def test_r_and_i_toggle_raw_pieces_and_ids(result):
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        strip, topk = stepper.query_one(ContextStrip), stepper.query_one("#topk")
        first = int(result.sample.input_ids[1])
        await pilot.press("r")
        assert strip.mode == "piece" and "raw piece" in text_of(topk)
        assert result.texts.piece(first) in strip.plain_text()
        await pilot.press("i")
        assert strip.mode == "id" and f" {first} " in f" {strip.plain_text()} "
        await pilot.press("i")
        assert strip.mode == "text" and result.texts.visible(first) in strip.plain_text()


async def test_c_toggles_the_loss_heatmap(result):
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        strip = stepper.query_one(ContextStrip)
        before_text, before_styles = strip.plain_text(), {str(s) for line in strip._lines for _, s in line}
        await pilot.press("c")
        after_styles = {str(s) for line in strip._lines for _, s in line}
        assert strip.heatmap and strip.plain_text() == before_text
        assert before_styles != after_styles
        await pilot.press("c")
        assert not strip.heatmap


async def test_w_colours_tokens_by_mask_reason_with_a_legend(result):
    from tokstep.tui.widgets.context_strip import REASON_SHORT, REASON_STYLES

    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        strip, box = stepper.query_one(ContextStrip), stepper.query_one("#context-box")
        await pilot.press("c", "w")  # one colouring at a time: w replaces the heatmap
        assert strip.reason_colours and not strip.heatmap
        drawn = {index for hits in strip._hits for _, _, index in hits} - {strip.cursor, strip.cursor + 1}
        for index in drawn:  # every drawn token (but the cursor and its target) has its reason's colour
            reason = result.sample.mask_reasons[index]
            assert strip._style(index).bgcolor == REASON_STYLES[reason].bgcolor
        reasons = {REASON_SHORT[result.sample.mask_reasons[i]] for i in drawn}
        assert all(name in str(box.border_subtitle) for name in reasons)
        await pilot.press("w")
        assert not strip.reason_colours


async def test_L_lists_lints_and_enter_jumps_to_the_first_position(result):
    findings = [Finding("double-bos", "error", (120, 121), "BOS twice")]
    app = make_app(result, findings)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        assert "⚠ 1E lint (L)" in text_of(stepper.query_one("#status"))
        await pilot.press("L")
        assert isinstance(app.screen, LintsScreen)
        await pilot.press("enter")
        assert app.screen is stepper and stepper.cursor == 119  # the position that predicts token 120


async def test_tokens_a_lint_points_at_are_underlined_in_the_context(result):
    findings = [Finding("split-char", "warning", (3, 5), "a character split over tokens")]
    app = make_app(result, findings)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        stepper.cursor = 20  # so tokens 3 and 5 are drawn in their own styles, not the cursor's
        strip = stepper.query_one(ContextStrip)
        styles = {  # without colour gaps, each drawn piece is one token
            index: style
            for line, hits in zip(strip._lines, strip._hits, strict=True)
            for (_text, style), (_x0, _x1, index) in zip(line, hits, strict=True)
        }
        assert styles[3].underline and styles[5].underline and not styles[4].underline


async def test_L_does_nothing_without_findings(result):
    app = make_app(result, findings=[])
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        await pilot.press("L")
        assert app.screen is stepper


async def test_question_mark_lists_every_binding(result):
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        await stepper_of(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = "\n".join(text_of(w) for w in app.screen.query("Static"))
        packed_only = {
            "next-document",
            "previous-document",
            "goto-document",
        }  # rows of --batches: test_tui_batches
        for binding in StepperScreen.BINDINGS:
            if binding.id not in packed_only:
                assert (binding.tooltip or binding.description) in help_text
        assert "a token: jump to it" in help_text
        await pilot.press("escape")
        assert isinstance(app.screen, StepperScreen)


async def test_q_quits(result):
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        await stepper_of(app, pilot)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


async def test_clicking_a_token_goes_to_the_position_that_predicts_it(result):
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        strip = stepper.query_one(ContextStrip)
        x0, _x1, token = strip._hits[1][2]  # third token on the second line
        region = strip.content_region
        await pilot.click(offset=(region.x + x0, region.y + 1))
        assert token > 1 and stepper.cursor == token - 1


async def test_topk_marks_the_target_and_adds_a_row_when_it_ranks_below_k(result):
    trace = result.trace
    inside = next(t for t in range(len(trace)) if 1 < trace.rank[t] <= trace.top_k)
    outside = next(t for t in range(len(trace)) if trace.rank[t] > trace.top_k)
    app = make_app(result)
    async with app.run_test(size=(120, 40)) as pilot:
        stepper = await stepper_of(app, pilot)
        topk = stepper.query_one("#topk")
        stepper.cursor = inside
        await pilot.pause()
        rows = [line for line in text_of(topk).splitlines() if line.strip()]
        marked = [line for line in rows if line.lstrip().startswith("▶")]
        assert len(marked) == 1 and f" {int(trace.target_ids[inside])} " in marked[0]
        assert "⋮" not in text_of(topk)
        stepper.cursor = outside
        await pilot.pause()
        rows = [line for line in text_of(topk).splitlines() if line.strip()]
        assert "⋮" in rows[-2] and rows[-1].lstrip().startswith("▶")
        assert (
            f" {int(trace.rank[outside])} " in rows[-1] and f" {int(trace.target_ids[outside])} " in rows[-1]
        )


async def test_onehot_panel_states_ce_as_minus_log_q_of_the_target(result):
    app = make_app(result)
    async with app.run_test(size=(140, 40)) as pilot:
        stepper = await stepper_of(app, pilot)
        stepper.cursor = 77
        await pilot.pause()
        shown = text_of(stepper.query_one("#onehot"))
        ce = -float(result.trace.logprob[77])
        assert f"CE = −log q(target) = −log {math.exp(-ce):.4f} = {ce:.4f}" in shown
        assert f"1 at id {int(result.trace.target_ids[77])}" in shown


async def test_loss_panel_shows_running_sum_count_mean_and_mask_reason(result):
    trace = result.trace
    masked = next(t for t in range(len(trace)) if not trace.supervised[t])
    counted = len(trace) // 2
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        loss = stepper.query_one("#loss")
        stepper.cursor = masked
        await pilot.pause()
        assert "not counted: prompt (label −100)" in text_of(loss)
        stepper.cursor = counted
        await pilot.pause()
        shown = text_of(loss)
        ce = trace.ce[: counted + 1][trace.supervised[: counted + 1]]  # naive recomputation
        assert f"{ce.sum():.4f}  n = {ce.size} counted" in shown
        assert f"mean    {ce.mean():.4f}" in shown
        assert "counted ✓" in shown


@pytest.mark.parametrize(("shift", "badge"), [(0.0, "✓ match"), (0.5, "✗ MISMATCH")])
async def test_last_position_compares_with_hf_reference(result, shift, badge):
    with_reference = replace(result, reference=result.trace.loss + shift, reference_computed=True)
    app = make_app(with_reference)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        assert "✓" not in text_of(stepper.query_one("#loss"))
        await pilot.press("end")
        shown = text_of(stepper.query_one("#loss"))
        assert badge in shown and f"{result.trace.loss + shift:.6f}" in shown


async def test_small_terminal_keeps_every_panel_and_resize_adapts(result):
    app = make_app(result)
    async with app.run_test(size=(80, 24)) as pilot:
        stepper = await stepper_of(app, pilot)
        for name in ("#context", "#topk", "#onehot", "#loss", "#curve", "#status"):
            widget = stepper.query_one(name)
            assert widget.region.height > 0 and widget.region.right <= 80, name
        assert "CE = −log q(target) =" in text_of(stepper.query_one("#onehot"))
        # a long sample must not push the panels off screen: the top-k keeps its k rows + header + extra row
        assert stepper.query_one("#topk").region.height >= result.trace.top_k + 5
        assert stepper.query_one("#topk").region.bottom <= 23  # above the footer
        await pilot.resize_terminal(140, 45)
        await pilot.pause()
        assert stepper.query_one("#context").region.width > 120


async def test_escape_closes_play_first_and_never_leaves_a_lone_stepper(result):
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        await pilot.press("p", "escape")
        assert stepper.player is None and app.screen is stepper
        await pilot.press("escape")
        assert app.screen is stepper  # nothing underneath to go back to


async def test_no_color_separates_tokens_with_spaces(result):
    app = make_app(result)
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        strip = StepperScreen(result, no_color=True)
        await app.push_screen(strip)
        await pilot.pause()
        line = strip.query_one(ContextStrip).plain_text().splitlines()[0]
        first = [result.texts.visible(int(i)) for i in result.sample.input_ids[:3]]
        assert line.startswith(" ".join(first) + " ")
        assert stepper is not strip


def with_nonfinite(result, positions):
    """The same trace, but the logits at `positions` were NaN/inf (as an overflowing fp16 model gives)."""
    trace = result.trace
    logprob, finite = trace.logprob.copy(), trace.finite.copy()
    logprob[positions], finite[positions] = np.nan, False
    ce = -logprob.astype(np.float64)
    running_sum = np.cumsum(
        np.where(trace.supervised, ce, 0.0)
    )  # NaN from there on, as the engine's would be
    new_trace = replace(trace, logprob=logprob, finite=finite, running_sum=running_sum)
    return replace(result, trace=new_trace)


async def test_nonfinite_positions_never_show_nan_as_a_number(result):
    bad = [len(result.trace) // 2]
    app = make_app(with_nonfinite(result, bad))
    async with app.run_test(size=(120, 40)) as pilot:
        stepper = await stepper_of(app, pilot)
        await pilot.press("n")  # non-finite logits always count as a surprise
        surprises = np.flatnonzero(SurpriseRule().flags(stepper.result.trace)).tolist()
        assert stepper.cursor == surprises[0]
        stepper.cursor = bad[0]
        await pilot.pause()
        shown = {name: text_of(stepper.query_one(name)) for name in ("#topk", "#onehot", "#loss", "#status")}
        assert "NaN/inf" in shown["#onehot"] and "NaN/inf" in shown["#loss"]
        assert not any("nan" in text.replace("NaN/inf", "") for text in shown.values())
        await pilot.press("c", "end")  # heatmap and the last position cope too
        assert "nan" not in text_of(stepper.query_one("#loss")).replace("NaN/inf", "")


async def test_a_two_token_sample_has_one_position(result):
    app = make_app(synthetic_result(2, prompt_fraction=0.0))
    async with app.run_test(size=(80, 24)) as pilot:
        stepper = await stepper_of(app, pilot)
        await pilot.press("right", "pagedown", "end", "n", "m", "p")
        await pilot.pause(0.2)
        assert stepper.cursor == 0 and stepper.player is None
        assert "t 0 / 1" in text_of(stepper.query_one("#status"))


async def test_the_cursor_and_its_target_are_always_in_the_drawn_window():
    long_result = synthetic_result(3000, seed=5)
    app = make_app(long_result)
    rng = np.random.default_rng(0)
    jumps = rng.integers(0, len(long_result.trace), 40).tolist()
    async with app.run_test(size=(80, 24)) as pilot:
        stepper = await stepper_of(app, pilot)
        strip = stepper.query_one(ContextStrip)
        for t in [*range(0, 60), *jumps, len(long_result.trace) - 1, 0]:
            stepper.cursor = t
            drawn = {index for line in strip._hits for _x0, _x1, index in line}
            assert {t, t + 1} <= drawn, f"t={t}: drawn {min(drawn)}..{max(drawn)}"
            assert len(strip._hits) <= strip.size.height  # only the visible window is laid out


async def test_at_80x24_the_context_scrolls_so_the_cursor_stays_in_the_visible_box():
    """GIVEN a sample longer than the context box the panels leave at 80x24, WHEN the cursor goes to the end,
    THEN the strip lays out only the lines the box shows, and the cursor's token is among them."""
    app = make_app(synthetic_result(400, seed=3))
    async with app.run_test(size=(80, 24)) as pilot:
        stepper = await stepper_of(app, pilot)
        await pilot.press("end")
        await pilot.pause()
        strip = stepper.query_one(ContextStrip)
        visible = strip.parent.size.height
        assert 0 < visible < strip.size.height  # the box clips the strip: the case that hid the cursor
        drawn = strip._hits  # per drawn line: (x0, x1, token index)
        assert len(drawn) <= visible
        assert any(index == strip.cursor for line in drawn for _, _, index in line)
