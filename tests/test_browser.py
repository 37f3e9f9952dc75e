"""The dataset browser: rows in every form, malformed rows listed with their line, stats and loss per row,
sorting, paging, and Enter handing the row to the app."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from textual.app import App
from textual.widgets import DataTable
from tiny import byte_bpe, tiny_model
from tui_wait import screen_of

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.spec import build_sample
from tokstep.engine.model.loading import wrap_model
from tokstep.tui.screens import browser
from tokstep.tui.screens.backend import DataOptions, EngineBackend
from tokstep.tui.screens.browser import DataBrowserScreen
from tokstep.tui.screens.messages import OpenSample

ROWS = [
    {"text": "the cat sat on the mat and the dog sat on the log"},
    {"prompt": "The capital of France is", "completion": " Paris."},
    "{this line is broken",
    {
        "messages": [
            {"role": "user", "content": "Hello there"},
            {"role": "assistant", "content": "Hi! How can I help?"},
        ]
    },
    {"input_ids": [0, 40, 41, 42, 43], "labels": [-100, -100, -100, -100, -100]},
    {"answer": "an answer without a prompt"},
]


@pytest.fixture(scope="module")
def loaded():
    tokenizer = byte_bpe(adds_bos=True)
    return wrap_model(tiny_model("llama", len(tokenizer)), tokenizer, "tiny-llama")


class TinyBackend(EngineBackend):
    """The real engine with the tiny model; loading waits for `gate` (set by default) and counts calls."""

    def __init__(self, loaded) -> None:
        self.loaded = loaded
        self.gate = threading.Event()
        self.gate.set()

    def load(self, spec):
        self.gate.wait(30)
        if self.loaded is None:
            raise TokstepError("cannot load model 'x': no config.json")
        return self.loaded

    def load_tokenizer(self, spec):
        return self.tokenizer if hasattr(self, "tokenizer") else super().load_tokenizer(spec)


class BrowserApp(App[None]):
    """Hosts the browser alone (as TokstepApp does, minus the stepper) and records the rows it opens."""

    def __init__(self, path: str, loaded, options: DataOptions | None = None) -> None:
        super().__init__()
        self.path, self.loaded_model, self.options = path, loaded, options
        self.opened: list[tuple[object, str]] = []

    def on_mount(self) -> None:
        backend = TinyBackend(self.loaded_model)
        self.push_screen(
            DataBrowserScreen(self.path, backend=backend, options=self.options, model=self.loaded_model)
        )

    def on_open_sample(self, message: OpenSample) -> None:
        self.opened.append((message.spec, message.name))


def write_jsonl(path, rows) -> str:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return str(path)


async def wait_for_losses(pilot, screen, count: int) -> None:
    for _ in range(400):
        if len(screen.losses) >= count:
            await pilot.pause()
            return
        await pilot.pause(0.02)
    raise AssertionError(f"only {len(screen.losses)} of {count} losses computed")


def reference_loss(loaded, spec) -> float:
    """HF's own loss for the row: model(input_ids, labels=labels).loss."""
    sample = build_sample(spec, loaded.tokenizer)
    with torch.no_grad():
        out = loaded.model(
            input_ids=torch.tensor(sample.input_ids)[None], labels=torch.tensor(sample.labels)[None]
        )
    return float(out.loss)


def cell(table: DataTable, index: int, column: str) -> str:
    return str(table.get_cell(str(index), column))


async def test_every_row_form_listed_and_the_broken_line_shown_as_an_error(tmp_path, loaded):
    app = BrowserApp(write_jsonl(tmp_path / "rows.jsonl", ROWS), loaded)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        await wait_for_losses(pilot, screen, len(ROWS))
        table = screen.query_one(DataTable)
        assert table.row_count == len(ROWS)
        assert [cell(table, i, "form") for i in range(6)] == [
            "text",
            "prompt+answer",
            "error",
            "chat",
            "ids",
            "error",
        ]
        assert cell(table, 2, "line") == "3" and "not valid JSON" in cell(table, 2, "preview")
        assert "no sample in this row" in cell(table, 5, "preview")
        first = build_sample(screen.rows[0].spec, loaded.tokenizer)
        assert cell(table, 0, "tokens") == str(len(first)) and cell(table, 0, "supervised") == str(
            first.num_supervised
        )
        assert cell(table, 4, "lints") == "1E"  # nothing-trained
        assert cell(table, 4, "loss") == "undefined"  # no supervised token: never shown as a number


async def test_loss_per_row_matches_hugging_face(tmp_path, loaded):
    app = BrowserApp(write_jsonl(tmp_path / "rows.jsonl", ROWS), loaded)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        await wait_for_losses(pilot, screen, len(ROWS))
        for index in (0, 1, 3):
            ours = screen.losses[index][0]
            assert ours == pytest.approx(reference_loss(loaded, screen.rows[index].spec), rel=1e-4)
            assert screen.query_one(DataTable).get_cell(str(index), "loss").plain == f"{ours:.4f}"


async def test_sort_by_loss_then_by_lints(tmp_path, loaded):
    app = BrowserApp(write_jsonl(tmp_path / "rows.jsonl", ROWS), loaded)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        await wait_for_losses(pilot, screen, len(ROWS))
        await pilot.press("s")  # file order -> loss
        order = screen.order()
        losses = [screen.losses[i][0] for i in order if screen.losses[i][0] is not None]
        assert losses == sorted(losses, reverse=True) and len(losses) == 3
        table = screen.query_one(DataTable)
        assert table.coordinate_to_cell_key((0, 0)).row_key.value == str(order[0])
        await pilot.press("s")  # loss -> lints
        errors = [screen.lints[i].count("error") for i in screen.order()]
        assert errors == sorted(errors, reverse=True) and errors[0] >= 1


async def test_enter_opens_the_highlighted_row_and_refuses_a_broken_one(tmp_path, loaded):
    app = BrowserApp(write_jsonl(tmp_path / "rows.jsonl", ROWS), loaded)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        await wait_for_losses(pilot, screen, len(ROWS))
        await pilot.press("down", "enter")
        assert len(app.opened) == 1
        spec, name = app.opened[0]
        assert spec.prompt == "The capital of France is" and name.endswith(":2")
        await pilot.press("down", "enter")  # line 3 is the broken one
        assert len(app.opened) == 1


async def test_pages_through_a_file_larger_than_a_page(tmp_path, loaded, monkeypatch):
    monkeypatch.setattr(browser, "PAGE_ROWS", 4)
    rows = [{"text": f"the cat sat {i}"} for i in range(10)]
    app = BrowserApp(write_jsonl(tmp_path / "many.jsonl", rows), loaded)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        await wait_for_losses(pilot, screen, 4)
        assert sorted(screen.rows) == [0, 1, 2, 3]
        await pilot.press("n")
        await wait_for_losses(pilot, screen, 8)
        assert sorted(screen.rows) == [4, 5, 6, 7]
        assert screen.total_rows == 10 and screen.index_complete
        await pilot.press("p")
        for _ in range(50):
            await pilot.pause(0.02)
            if sorted(screen.rows) == [0, 1, 2, 3]:
                break
        assert sorted(screen.rows) == [0, 1, 2, 3]
        assert len(screen.losses) == 8  # page 1 came from the cache, not recomputed


async def test_missing_file_is_reported_in_the_screen(tmp_path, loaded):
    app = BrowserApp(str(tmp_path / "nope.jsonl"), loaded)
    async with app.run_test(size=(140, 40)) as pilot:
        for _ in range(50):
            await pilot.pause(0.02)
            if "cannot open" in str(app.screen.query_one("#browser-status").render()):
                break
        assert "data file not found" in str(app.screen.query_one("#browser-status").render())


async def test_with_the_real_app_enter_steps_into_the_row_and_escape_comes_back(tmp_path, loaded):
    from tokstep.tui.screens.app import TokstepApp
    from tokstep.tui.screens.stepper import StepperScreen

    path = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    app = TokstepApp(None, None, data=path, backend=TinyBackend(loaded))
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, DataBrowserScreen)
        await wait_for_losses(pilot, screen, len(ROWS))
        await pilot.press("down", "enter")
        stepper = await screen_of(app, pilot, StepperScreen, tries=200)
        assert isinstance(stepper, StepperScreen)
        assert stepper.result.trace.loss == pytest.approx(screen.losses[1][0], rel=1e-5)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen


async def test_lints_appear_before_the_model_has_loaded(tmp_path, loaded):
    from tokstep.engine.model.loading import ModelSpec
    from tokstep.tui.screens.app import TokstepApp

    folder = tmp_path / "model"
    loaded.tokenizer.save_pretrained(folder)  # the tokenizer alone is enough for tokens and lints
    backend = TinyBackend(loaded)
    backend.gate.clear()  # the model takes its time
    path = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    app = TokstepApp(ModelSpec(name_or_path=str(folder)), None, data=path, backend=backend)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        for _ in range(200):
            await pilot.pause(0.02)
            if len(screen.lints) == len(ROWS):
                break
        assert len(screen.lints) == len(ROWS) and screen.losses == {}
        assert "waiting for the model" in str(screen.query_one("#browser-status").render())
        backend.gate.set()
        await wait_for_losses(pilot, screen, len(ROWS))
        assert screen.losses[0][0] == pytest.approx(reference_loss(loaded, screen.rows[0].spec), rel=1e-4)


async def test_parquet_rows_are_numbered_as_rows(tmp_path, loaded):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"text": ["the cat sat", "the dog sat"]}), path)
    app = BrowserApp(str(path), loaded)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        await wait_for_losses(pilot, screen, 2)
        table = screen.query_one(DataTable)
        assert str(table.columns["line"].label) == "row"
        assert cell(table, 1, "line") == "2"


async def test_a_model_that_failed_to_load_is_named_in_the_status(tmp_path, loaded):
    from tokstep.tui.screens.app import TokstepApp

    backend = TinyBackend(None)  # load raises "cannot load model 'x': no config.json"
    backend.tokenizer = loaded.tokenizer
    app = TokstepApp(None, None, data=write_jsonl(tmp_path / "rows.jsonl", ROWS), backend=backend)
    async with app.run_test(size=(140, 40)) as pilot:
        status = app.screen.query_one("#browser-status")
        for _ in range(100):
            await pilot.pause(0.02)
            if "no model" in str(status.render()):
                break
        assert "no model: cannot load model 'x': no config.json" in str(status.render())
        assert app.screen.query_one(DataTable).row_count == len(ROWS)  # the rows are still listed
        assert app.is_running


async def test_the_trained_text_column_shows_what_each_row_teaches(tmp_path, loaded):
    app = BrowserApp(write_jsonl(tmp_path / "rows.jsonl", ROWS), loaded)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        await wait_for_losses(pilot, screen, len(ROWS))
        table = screen.query_one(DataTable)
        eos = loaded.tokenizer.eos_token
        assert cell(table, 1, "preview") == f" Paris.{eos}"  # the completion and its EOS, not the prompt
        chat = cell(table, 3, "preview")
        assert chat.startswith("Hi! How can I help?") and "Hello there" not in chat  # the assistant turn only
        assert cell(table, 4, "preview") == "(nothing trained)"
        assert "ids" not in cell(table, 4, "preview")  # no longer "5 ids"


def test_trained_text_joins_separate_spans_and_names_ids_beyond_the_tokenizer(loaded):
    from tokstep.engine.model.tokens import TRAINED_GAP, trained_text

    tok = loaded.tokenizer
    a, b = tok.encode(" cat", add_special_tokens=False), tok.encode(" dog", add_special_tokens=False)
    labels = [-100, *a, -100, *b, len(tok) + 5]
    assert trained_text(tok, labels) == f" cat{TRAINED_GAP} dog<id {len(tok) + 5}>"
    assert trained_text(tok, [a[0], -100]) == ""  # labels[0] is never a target


async def test_labels_against_the_chat_structure_column_sorts_the_wrong_turn_first(tmp_path, loaded):
    """ids rows with a ChatML template: `≠chat` counts tokens whose label disagrees with the recovered turns."""
    tokenizer = loaded.tokenizer
    chat = [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi! How can I help you today?"},
    ]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False)
    encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    user = rendered.index("Hello there"), rendered.index("Hello there") + len("Hello there")
    reply = rendered.index("Hi!"), rendered.index("<|im_end|>", rendered.index("Hi!")) + len("<|im_end|>")

    def labels_over(lo, hi):
        return [t if s < hi and e > lo else -100 for t, (s, e) in zip(ids, offsets, strict=True)]

    wrong = labels_over(*user)
    rows = [
        {"input_ids": ids, "labels": labels_over(*reply)},
        {"input_ids": ids, "labels": wrong},
        {"text": "the cat sat on the mat"},
    ]
    app = BrowserApp(write_jsonl(tmp_path / "sft.jsonl", rows), loaded)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        await wait_for_losses(pilot, screen, len(rows))
        table = screen.query_one(DataTable)
        trained_user = sum(label != -100 for label in wrong)
        reply_tokens = sum(label != -100 for label in labels_over(*reply))
        assert cell(table, 0, "disagree") == "0"
        assert cell(table, 1, "disagree") == str(trained_user + reply_tokens)  # user trained + reply masked
        assert cell(table, 2, "disagree") == "—"  # plain text: no chat structure to compare with
        await pilot.press("s", "s", "s")  # file order → loss → lints → labels ≠ chat
        assert screen.sort_by == "disagree" and screen.order()[0] == 1
