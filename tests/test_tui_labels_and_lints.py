"""What the stepper says about labels: a label that is not the next input token (both panels show both ids),
lint findings with their fix, mask reasons named for their source, and the mask readable without colour."""

from __future__ import annotations

from dataclasses import replace

from synthetic import synthetic_result
from tui_wait import screen_of

from tokstep.engine.inputs.sample import MaskReason, Sample
from tokstep.engine.inputs.spec import SampleSpec
from tokstep.engine.lints.catalogue import LINTS, Finding
from tokstep.tui.screens.app import PrecomputedBackend, TokstepApp
from tokstep.tui.screens.dialogs import LintsScreen
from tokstep.tui.screens.stepper import StepperScreen
from tokstep.tui.widgets.context_strip import ContextStrip

SIZE = (100, 30)


def with_label(result, token: int, label: int):
    """The same trace, but labels[token] is `label` instead of the input id there (an off-by-one row)."""
    sample = result.sample
    labels = sample.labels.copy()
    labels[token] = label
    new_sample = Sample(sample.input_ids.copy(), labels, sample.mask_reasons, sample.kind, sample.name)
    target_ids = result.trace.target_ids.copy()
    target_ids[token - 1] = label
    trace = replace(result.trace, sample=new_sample, target_ids=target_ids)
    return replace(result, sample=new_sample, trace=trace)


async def stepper_of(app, pilot) -> StepperScreen:
    return await screen_of(app, pilot, StepperScreen, tries=100)


def app_for(result, findings=()) -> TokstepApp:
    return TokstepApp(sample_spec=SampleSpec(text="synthetic"), backend=PrecomputedBackend(result, findings))


async def test_a_label_that_is_not_the_next_input_shows_both_ids_in_both_panels():
    base = synthetic_result(60, seed=1)
    t = 20  # supervised: labels[21] is a target
    following = int(base.sample.input_ids[t + 1])
    label = following + 1
    result = with_label(base, t + 1, label)
    assert result.trace.label_differs(t) and not result.trace.label_differs(t + 1)
    async with app_for(result).run_test(size=SIZE) as pilot:
        stepper = await stepper_of(pilot.app, pilot)
        stepper.cursor = t
        await pilot.pause()
        inspector = stepper.query_one("#inspector").plain_text()
        onehot = stepper.query_one("#onehot").plain_text()
        for shown in (inspector, onehot):
            assert f"id {following}" in shown and f"id {label}" in shown, shown
        assert "label ≠ next input" in inspector and "label ≠ next input" in onehot
        stepper.cursor = t + 1  # an ordinary position: no notice
        await pilot.pause()
        assert "≠" not in stepper.query_one("#inspector").plain_text()
        assert "≠" not in stepper.query_one("#onehot").plain_text()


async def test_the_lint_dialog_shows_each_finding_with_its_fix():
    result = synthetic_result(60, seed=1)
    findings = [
        Finding("eos-masked", "error", (40,), "the EOS after the answer is masked"),
        Finding("no-eos", "warning", (), "the answer does not end in EOS"),
    ]
    async with app_for(result, findings).run_test(size=(120, 30)) as pilot:
        await stepper_of(pilot.app, pilot)
        await pilot.press("L")
        assert isinstance(pilot.app.screen, LintsScreen)
        options = pilot.app.screen.query_one("#lint-list")
        shown = "\n".join(str(options.get_option_at_index(i).prompt) for i in range(options.option_count))
        for f in findings:
            assert f.message in shown and f"fix: {LINTS[f.code].fix}" in shown
        assert "@ token 40" in shown


def test_every_lint_documents_a_fix():
    assert all(doc.fix.strip() for doc in LINTS.values())
    assert Finding("double-bos", "error", (), "x").fix == LINTS["double-bos"].fix


def test_masks_from_the_users_labels_are_not_named_like_a_role():
    assert MaskReason.GIVEN.value == "masked in your labels"
    roles = {MaskReason.SYSTEM, MaskReason.USER, MaskReason.TOOL}  # a tool message is a role's turn too
    for reason in MaskReason:
        assert reason.value.endswith(" turn") == (reason in roles)  # "<role> turn" only for roles
        assert "user" not in reason.value or reason is MaskReason.USER


async def test_without_colour_supervised_tokens_are_underlined_and_masked_ones_are_not():
    result = synthetic_result(60, seed=1)
    app = app_for(result)
    async with app.run_test(size=SIZE) as pilot:
        await stepper_of(app, pilot)
        stepper = StepperScreen(result, no_color=True)
        await app.push_screen(stepper)
        stepper.cursor = 0
        await pilot.pause()
        strip = stepper.query_one(ContextStrip)
        styles = {
            index: style
            for line, hits in zip(strip._lines, strip._hits, strict=True)
            for (_text, style), (_x0, _x1, index) in zip(line[::2], hits, strict=True)
        }
        counted = [r.counted for r in result.sample.mask_reasons]
        checked = [i for i in styles if i > 1]  # not the cursor (0) or its target (1)
        assert any(counted[i] for i in checked) and any(not counted[i] for i in checked)
        for i in checked:
            assert bool(styles[i].underline) == counted[i], i
        assert "underlined = counted" in str(stepper.query_one("#context-box").border_subtitle)


async def test_NO_COLOR_reaches_the_context_strip(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = app_for(synthetic_result(60, seed=1))
    async with app.run_test(size=SIZE) as pilot:
        stepper = await stepper_of(app, pilot)
        assert app.no_color and stepper.query_one(ContextStrip).no_color
        stepper.cursor = 30
        await pilot.pause()
        strip = stepper.query_one(ContextStrip)
        underlined = {
            i
            for line, hits in zip(strip._lines, strip._hits, strict=True)
            for (_t, style), (_a, _b, i) in zip(line[::2], hits, strict=True)
            if style.underline
        }
        counted = {i for i, r in enumerate(app.screen.result.sample.mask_reasons) if r.counted}
        assert underlined - {31} and underlined - {31} <= counted  # 31: the target, always marked


async def test_the_loss_panel_names_a_mask_from_the_users_labels_for_its_source():
    base = synthetic_result(60, seed=1)
    sample = base.sample
    reasons = tuple(r if r.counted or i == 0 else MaskReason.GIVEN for i, r in enumerate(sample.mask_reasons))
    given = Sample(sample.input_ids.copy(), sample.labels.copy(), reasons, "ids", sample.name)
    result = replace(base, sample=given, trace=replace(base.trace, sample=given))
    async with app_for(result).run_test(size=SIZE) as pilot:
        stepper = await stepper_of(pilot.app, pilot)
        stepper.cursor = 2  # masked
        await pilot.pause()
        shown = stepper.query_one("#loss").plain_text()
        assert "not counted: masked in your labels" in shown and "user" not in shown


async def test_the_header_counts_lints_as_the_data_browser_does_info_included():
    """One counting rule: the stepper's header and the browser's lints column show the same tally for the
    same findings (the browser used to leave info findings out: `3E` against `⚠ 4 lints`)."""
    from tokstep.engine.inputs.data import DataRow
    from tokstep.engine.lints.rows import RowLint
    from tokstep.tui.screens.browser import lint_badge
    from tokstep.tui.widgets.status_bar import StatusBar

    result = synthetic_result(40, seed=2)
    findings = [Finding("x", "error", (1,), "e")] * 3 + [Finding("y", "info", (2,), "i")]
    row = RowLint(DataRow(0, 1, None, None), None, tuple(findings))
    assert lint_badge(row).plain == "3E 1I"
    async with app_for(result, findings).run_test(size=SIZE) as pilot:
        stepper = await stepper_of(pilot.app, pilot)
        header = stepper.query_one(StatusBar).plain_text()
        assert "⚠ 3E 1I lints (L)" in header, header


async def test_the_mask_reason_legend_fits_the_context_box_at_80_columns():
    """`w`'s legend names every reason the sample has, uncut, at 80 columns (it was cut at 120: `first to…`)."""
    from rich.text import Text

    base = synthetic_result(60, seed=3)
    cycle = [
        MaskReason.SUPERVISED,
        MaskReason.SYSTEM,
        MaskReason.USER,
        MaskReason.TEMPLATE,
        MaskReason.INSERTED,
        MaskReason.END_OF_TURN,
        MaskReason.GIVEN,
    ]
    reasons = (MaskReason.FIRST, *(cycle[i % len(cycle)] for i in range(len(base.sample) - 1)))
    sample = replace(base.sample, mask_reasons=reasons)
    result = replace(base, sample=sample, trace=replace(base.trace, sample=sample))
    async with app_for(result).run_test(size=(80, 24)) as pilot:
        stepper = await stepper_of(pilot.app, pilot)
        await pilot.press("w")
        box = stepper.query_one("#context-box")
        legend = Text.from_markup(str(box.border_subtitle))
        assert legend.cell_len <= box.size.width - 4, legend.plain  # corners and a space each side
        assert len(legend.plain.split()) >= 8, legend.plain


async def test_without_colour_w_marks_each_token_with_its_reasons_glyph_and_the_legend_names_them():
    """NO_COLOR turns the reason backgrounds into near-identical greys: the cell after each token holds its
    reason's glyph, and the legend maps each glyph to its reason."""
    from tokstep.tui.widgets.context_strip import REASON_GLYPHS, REASON_SHORT

    result = synthetic_result(60, seed=1)
    app = app_for(result)
    async with app.run_test(size=SIZE) as pilot:
        await stepper_of(app, pilot)
        stepper = StepperScreen(result, no_color=True)
        await app.push_screen(stepper)
        await pilot.pause()
        await pilot.press("w")
        strip = stepper.query_one(ContextStrip)
        marks = {
            index: mark
            for line, hits in zip(strip._lines, strip._hits, strict=True)
            for (mark, _style), (_x0, _x1, index) in zip(line[1::2], hits, strict=True)
        }
        assert len(marks) > 10
        reasons = result.sample.mask_reasons
        assert all(mark == REASON_GLYPHS[reasons[i]] for i, mark in marks.items()), marks
        assert len(set(REASON_GLYPHS.values())) == len(REASON_GLYPHS)  # one glyph per reason
        legend = str(stepper.query_one("#context-box").border_subtitle)
        for reason in {reasons[i] for i in marks}:
            assert f"{REASON_GLYPHS[reason]} {REASON_SHORT[reason]}" in legend, legend
