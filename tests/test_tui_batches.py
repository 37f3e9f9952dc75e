"""The TUI on trainer batches: the rows list with the batch loss, a packed row's documents in the stepper."""

from __future__ import annotations

import json

import pytest
from test_tui_stepper import text_of
from tui_wait import screen_of

from tokstep.tui.screens.app import PrecomputedBackend, TokstepApp


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from tokstep.engine.batches.files import Settings, read_batches
    from tokstep.engine.batches.packing import trace_batches
    from tokstep.engine.model.loading import ModelSpec
    from tokstep.engine.model.session import load

    loaded = load(ModelSpec(dtype="float32", device="cpu"))
    tok = loaded.tokenizer
    docs = [
        tok(t)["input_ids"] + [tok.eos_token_id]
        for t in ("And God said, Let there be light.", "And it was so.")
    ]
    row = {
        "input_ids": [i for d in docs for i in d],
        "labels": [(-100 if j == 0 else i) for d in docs for j, i in enumerate(d)],
        "position_ids": [p for d in docs for p in range(len(d))],
    }
    path = tmp_path_factory.mktemp("batches") / "b.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({"batch": 1, "input_ids": docs[0]}) + "\n")
    return trace_batches(loaded, read_batches(path), flags=Settings(use_cache=True), with_reference=False)


class BatchesBackend(PrecomputedBackend):
    def __init__(self, report):
        self.report = report
        self.findings = None

    def load(self, spec):
        return self.report.rows[0].result.info

    def trace_batches(self, loaded, path, flags, top_k, progress):
        return self.report


async def test_batches_screen_lists_rows_and_opens_a_packed_row_by_document(report):
    from tokstep.tui.screens.batches import BatchesScreen
    from tokstep.tui.screens.stepper import StepperScreen
    from tokstep.tui.widgets.document_line import DocumentLine

    app = TokstepApp(batches="b.jsonl", backend=BatchesBackend(report))
    async with app.run_test(size=(110, 36)) as pilot:
        await screen_of(app, pilot, BatchesScreen, tries=125)
        assert isinstance(app.screen, BatchesScreen)
        await pilot.press("enter")
        await pilot.pause()
        stepper = app.screen
        assert isinstance(stepper, StepperScreen)
        second = report.rows[0].documents[1].start
        await pilot.press("right_square_bracket")
        assert stepper.cursor == second
        line = stepper.query_one(DocumentLine).plain_text()
        assert line.startswith("doc 1 of 0..1 t 0") and "|Δ| alone" in line  # 0-based, as report numbers them
        await pilot.press("left_square_bracket")
        assert stepper.cursor == 0
        await pilot.press("D", "1", "enter")
        assert stepper.cursor == second
        await pilot.press("D", "1", "colon", "3", "enter")
        assert stepper.cursor == second + 3
        strip = stepper.query_one("#context")
        assert second in strip.boundaries
        assert stepper.findings and stepper.findings[0].code == "cross-document-attention"
        assert "in document 1" in stepper.findings[0].message  # the lint and the line number documents alike
        await pilot.press("question_mark")
        help_text = "\n".join(text_of(w) for w in app.screen.query("Static"))
        for name in ("next document", "previous document", "go to document"):
            assert name in help_text
        await pilot.press("escape")
        await pilot.press("escape")
        assert isinstance(app.screen, BatchesScreen)


async def test_batches_screen_has_help_and_its_footer_shows_enter(report):
    from test_tui_stepper import text_of

    from tokstep.tui.screens.batches import BatchesScreen
    from tokstep.tui.screens.dialogs import HelpScreen

    app = TokstepApp(batches="b.jsonl", backend=BatchesBackend(report))
    async with app.run_test(size=(110, 36)) as pilot:
        await screen_of(app, pilot, BatchesScreen, tries=125)
        screen = app.screen
        shown = {
            k: b.binding for k, b in screen.active_bindings.items() if b.binding.show
        }  # the footer's keys
        assert "enter" in shown and shown["enter"].description == "step through the row", sorted(shown)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = " ".join(" ".join(text_of(w) for w in app.screen.query("Static")).split())
        assert "step through the row" in text and "(in the stepper) back" in text
        await pilot.press("escape")
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, (BatchesScreen, HelpScreen))  # Enter opened the row


@pytest.fixture(scope="module")
def chat_report(tmp_path_factory):
    """Two padded ChatML rows from the bundled template: row 0 trains the reply, row 1 the user's words."""
    from tokstep.engine.batches.files import Settings, read_batches
    from tokstep.engine.batches.packing import trace_batches
    from tokstep.engine.model.loading import ModelSpec
    from tokstep.engine.model.session import load

    loaded = load(ModelSpec(dtype="float32", device="cpu"))
    tok = loaded.tokenizer
    question, answer = "Who created the earth?", "God created the heaven and the earth."
    chat = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    text = tok.apply_chat_template(chat, tokenize=False)
    encoded = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]

    def words(content: str) -> set[int]:
        lo = text.index(content)
        return {i for i, (s, e) in enumerate(offsets) if s < lo + len(content) and e > lo and e > s}

    user = words(question)
    lines = [
        {
            "input_ids": ids,
            "labels": [t if i in words(answer + "<|im_end|>") else -100 for i, t in enumerate(ids)],
        },
        {"input_ids": ids, "labels": [t if i in user else -100 for i, t in enumerate(ids)]},
    ]
    path = tmp_path_factory.mktemp("chat-batches") / "b.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    report = trace_batches(loaded, read_batches(path), flags=Settings(use_cache=False), with_reference=False)
    return report, sorted(user)


async def test_batches_screen_counts_labels_against_the_chat_and_the_strip_shows_roles(chat_report):
    from rich.color import Color
    from textual.widgets import DataTable

    from tokstep.tui.screens.batches import BatchesScreen
    from tokstep.tui.screens.stepper import StepperScreen
    from tokstep.tui.widgets.context_strip import ROLE_COLOURS, ContextStrip

    report, user = chat_report
    assert report.rows[0].disagree == 0 and report.rows[0].findings == () and report.rows[1].disagree > 0
    assert report.rows[1].findings[0].code in ("trains-on-user", "assistant-not-trained")
    app = TokstepApp(batches="b.jsonl", backend=BatchesBackend(report))
    async with app.run_test(size=(130, 36)) as pilot:
        await screen_of(app, pilot, BatchesScreen, tries=125)
        table = app.screen.query_one(DataTable)
        column = [c.label.plain for c in table.columns.values()].index("≠chat")
        assert [table.get_row_at(i)[column].plain for i in range(2)] == ["0", str(report.rows[1].disagree)]
        await pilot.press("s")  # most disagreeing first
        assert table.get_row_at(0)[column].plain == str(report.rows[1].disagree)
        await pilot.press("enter")
        await pilot.pause()
        stepper = app.screen
        assert isinstance(stepper, StepperScreen) and stepper.result is report.rows[1].result
        strip = stepper.query_one(ContextStrip)
        strip.cursor = len(stepper.result.sample) - 1  # keep the cursor's own style off the tokens checked
        user_colours = {Color.parse(c) for c in ROLE_COLOURS["user"]}
        for i in user:  # trained user words: on the user colour, bright (trained)
            style = strip._style(i)
            assert style.bgcolor in user_colours and not style.dim


async def test_batches_list_at_80x24_gives_the_rows_most_of_the_height(report):
    """The loss panel is one line per reduction at 80 columns (it wrapped to most of the screen)."""
    from tokstep.tui.screens.batches import BatchesScreen

    app = TokstepApp(batches="b.jsonl", backend=BatchesBackend(report))
    async with app.run_test(size=(80, 24)) as pilot:
        await screen_of(app, pilot, BatchesScreen, tries=125)
        screen = app.screen
        loss, rows = screen.query_one("#batch-loss"), screen.query_one("#batch-rows")
        for _ in range(50):  # laid out
            if loss.size.height and rows.size.height:
                break
            await pilot.pause(0.05)
        reductions = 2 + 3  # two batches, token-weighted, per-batch mean, per-row mean
        assert loss.size.height == reductions + 1  # and the header: nothing wraps
        assert screen.query_one("#batch-trainer").size.height == 1
        assert rows.size.height >= 24 // 2, (loss.size.height, rows.size.height)
        shown = text_of(loss)
        for value in (report.loss.token_weighted, report.loss.mean_of_row_means):
            assert f"{value:.4f}" in shown  # the numbers are never cut


async def test_document_line_keeps_alone_delta_at_80_columns(report):
    """|Δ| alone is the number that matters: at 80 columns it stays whole (it was cut), other means give way."""
    from rich.cells import cell_len

    from tokstep.tui.screens.batches import BatchesScreen
    from tokstep.tui.screens.stepper import StepperScreen
    from tokstep.tui.widgets.document_line import DocumentLine

    app = TokstepApp(batches="b.jsonl", backend=BatchesBackend(report))
    async with app.run_test(size=(80, 24)) as pilot:
        await screen_of(app, pilot, BatchesScreen, tries=125)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, StepperScreen)
        await pilot.press("right_square_bracket", "right")  # inside the second document: compared there
        await pilot.pause()
        widget = app.screen.query_one(DocumentLine)
        line = widget.plain_text()
        row, t = report.rows[0], app.screen.cursor
        assert row.compared[t]
        assert f"|Δ| alone {float(row.delta[t]):.1e}" in line, line
        assert cell_len(line) <= widget.size.width, line
