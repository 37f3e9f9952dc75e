"""The findings added across rows and outputs: `duplicate-rows`, `pad-trained` on trainer batches, `foreign-ids`
(on the real-tokenizer corpus), and the one findings schema of every JSON output (validated with `jsonschema`),
printed findings that agree with it, the convention stated once, no trailing spaces when piped, a role column."""

from __future__ import annotations

import json
import re

import jsonschema
import numpy as np
import pyarrow.parquet as pq
import pytest
import real_tokenizers as rt
from tiny import byte_bpe, gpt2_style

from tokstep.engine.inputs.data import DataRow
from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.lints.catalogue import LINTS
from tokstep.engine.lints.duplicates import DuplicateRows
from tokstep.engine.lints.finding_records import SCHEMA_VERSION, schema_text
from tokstep.engine.lints.rows import lint_row
from tokstep.engine.lints.sample_lints import lint_spec
from tokstep.engine.lints.trainer_batches import batch_padding_lints
from tokstep.engine.model.session import ModelSpec, load
from tokstep.tui.cli.main import main

SCHEMA = json.loads(schema_text())
POSITION = {**SCHEMA["$defs"]["position"], "$defs": SCHEMA["$defs"]}
CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris, of course."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome."},
]
TEXT = "The quick brown fox jumps over the lazy dog. In the beginning God created the heaven and the earth."


@pytest.fixture(scope="module")
def bundled():
    return load(ModelSpec(device="cpu", dtype="float32"))


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def valid(payload: dict) -> dict:
    jsonschema.validate(payload, SCHEMA)
    assert payload["schema_version"] == SCHEMA_VERSION
    return payload


def write_jsonl(path, rows) -> str:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return str(path)


def ids_row(tokenizer, messages) -> dict:
    """A chat as the ids + labels a trainer would hand over, masked by tokstep's own convention."""
    sample = build_sample(SampleSpec(chat=tuple(messages)), tokenizer)
    return {"input_ids": sample.input_ids.tolist(), "labels": sample.labels.tolist()}


def printed_agrees(out: str, findings: list[dict]) -> None:
    """Every JSON finding's code, message and fix are printed, each message whole on one line."""
    lines = out.splitlines()
    for f in findings:
        assert any(f["message"] in line for line in lines), f["message"]
        assert f["code"] in out and f["fix"] in out


def no_trailing_spaces(out: str) -> None:
    assert out.strip() and not [line for line in out.splitlines() if line != line.rstrip()]


# ---------------------------------------------------------------- duplicate-rows


def test_duplicate_rows_names_the_first_row_and_differing_labels_are_no_duplicate():
    tokenizer = byte_bpe(adds_bos=True)
    spec = SampleSpec(ids={"input_ids": [0, 40, 41, 42, 43], "labels": [-100, 40, 41, 42, 43]})
    other = SampleSpec(ids={"input_ids": [0, 40, 41, 42, 43], "labels": [-100, -100, 41, 42, 43]})
    tracker = DuplicateRows()
    results = [
        tracker.check(lint_row(tokenizer, DataRow(i, i + 1, s)))
        for i, s in enumerate([spec, other, spec, spec])
    ]
    codes = [[f.code for f in r.findings if f.code == "duplicate-rows"] for r in results]
    assert codes == [[], [], ["duplicate-rows"], ["duplicate-rows"]]
    copy = next(f for f in results[3].findings if f.code == "duplicate-rows")
    assert "line 1" in copy.message and "copy 2" in copy.message and copy.severity == "warning"
    assert tracker.groups() == [["line 1", "line 3", "line 4"]]


def test_lint_reports_duplicates_with_their_row_numbers(tmp_path, capsys):
    folder = tmp_path / "tok"
    byte_bpe(adds_bos=True).save_pretrained(folder)
    row = {"prompt": "The capital of France is", "completion": " Paris."}
    path = write_jsonl(tmp_path / "d.jsonl", [row, {"text": "I love dogs."}, row])
    code, out = run(capsys, "lint", path, "--model", str(folder), "--json")
    payload = valid(json.loads(out))
    assert code == 0 and payload["duplicates"] == [["line 1", "line 3"]]
    assert [(f["line"], f["code"]) for f in payload["findings"] if f["code"] == "duplicate-rows"] == [
        (3, "duplicate-rows")
    ]


# ---------------------------------------------------------------- pad-trained on trainer batches


def test_trained_padding_in_a_batch_row_is_an_error_when_pad_is_eos():
    labels = np.array([-100, 5, 6, 7, 9, 9])  # (N,) the last two are padding, left trained
    padding = np.array([False, False, False, False, True, True])
    (same,) = batch_padding_lints(gpt2_style(), labels, padding)  # pad == eos == </s>
    assert (same.code, same.severity, same.positions) == ("pad-trained", "error", (4, 5))
    assert "pad == eos" in same.message
    distinct = byte_bpe(adds_bos=True)
    assert distinct.pad_token_id != distinct.eos_token_id
    (found,) = batch_padding_lints(distinct, labels, padding)
    assert found.severity == "warning" and found.positions == (4, 5)
    assert batch_padding_lints(distinct, np.where(padding, -100, labels), padding) == []


def test_report_batches_flags_trained_padding_printed_and_in_json(tmp_path, capsys, bundled):
    tokenizer = bundled.tokenizer
    ids = tokenizer("In the beginning God created the heaven")["input_ids"]
    pad = [tokenizer.pad_token_id] * 3
    row = {
        "batch": 0,
        "input_ids": ids + pad,
        "labels": ids + pad,  # padding left trained (a collator that copied input_ids)
        "attention_mask": [1] * len(ids) + [0] * 3,
    }
    path = write_jsonl(tmp_path / "b.jsonl", [row])
    target = tmp_path / "b.json"
    code, out = run(capsys, "report", "--batches", path, "--no-reference", "--json", str(target))
    payload = valid(json.loads(target.read_text()))
    found = [f for f in payload["findings"] if f["code"] == "pad-trained"]
    assert code == 0 and len(found) == 1  # pad != eos for the bundled model: a warning
    assert found[0]["positions"] == list(range(len(ids), len(ids) + 3)) and found[0]["severity"] == "warning"
    assert found[0]["batch"] == 0 and found[0]["batch_row"] == 0 and found[0]["line"] == 1
    assert "pad-trained" in out and " ".join(found[0]["message"].split()) in " ".join(out.split())
    no_trailing_spaces(out)


# ---------------------------------------------------------------- foreign-ids (real tokenizers)


def test_llama2_ids_in_a_llama3_tokenizer_are_foreign_ids_naming_llama2():
    ids = rt.real_tokenizer("llama2")(TEXT)["input_ids"]
    _, findings = lint_spec(rt.real_tokenizer("llama3"), SampleSpec(ids={"input_ids": ids, "labels": ids}))
    assert [(f.code, f.severity) for f in findings] == [("foreign-ids", "error")]  # and nothing it explains
    assert "Llama-2" in findings[0].message and "<s> = 1" in findings[0].message


def test_llama3_chat_ids_in_a_qwen_tokenizer_are_foreign_ids_naming_llama3():
    row = ids_row(rt.real_tokenizer("llama3"), CHAT)
    _, findings = lint_spec(rt.real_tokenizer("qwen2_5"), SampleSpec(ids=row))
    assert [f.code for f in findings] == ["foreign-ids"] and "Llama-3" in findings[0].message


@pytest.mark.parametrize(
    ("maker", "reader", "family"),
    [
        ("deepseek_v3", "gemma2", "DeepSeek-V3"),
        ("deepseek_v3", "gemma3", "DeepSeek-V3"),
        ("deepseek_v3", "mistral_nemo", "DeepSeek-V3"),
        ("mistral_nemo", "deepseek_v3", "Mistral"),
        ("mistral_nemo", "gemma2", "Mistral"),
        ("mistral_nemo", "gemma3", "Mistral"),
    ],
)
def test_chat_ids_whose_markers_are_the_readers_specials_are_still_foreign(maker, reader, family):
    """Another family's BOS / EOS ids can be this tokenizer's own specials (DeepSeek-V3's 0 and 1 are Gemma's pad
    and EOS): when the row starts with that family's BOS and its markers explain them, the row is foreign."""
    row = ids_row(rt.real_tokenizer(maker), CHAT)
    _, findings = lint_spec(rt.real_tokenizer(reader), SampleSpec(ids=row))
    assert [f.code for f in findings if f.severity == "error"] == ["foreign-ids"]
    assert f"they look like {family} ids" in findings[0].message


@pytest.mark.parametrize("name", sorted(rt.REAL_TOKENIZERS))
def test_correct_rows_of_every_family_are_not_foreign(name):
    tokenizer = rt.real_tokenizer(name)
    code = "def f(x):\n    return x**2  # square\n\n\tprint(f(3))"
    rows = [
        tokenizer(TEXT)["input_ids"],
        tokenizer(TEXT, add_special_tokens=False)["input_ids"],  # no special token at all
        tokenizer("Question: what is the capital of France?\nAnswer:")["input_ids"]
        + tokenizer(" Paris is.", add_special_tokens=False)["input_ids"],  # prompt and answer apart
        # Gemma-3's `<bos>`, `<end_of_turn>` (its EOS) and `\n` are Gemma-2's `<bos>`, `<start_of_turn>`, `<end_of_turn>`
        tokenizer(code)["input_ids"] + [tokenizer.eos_token_id],
    ]
    specs = [SampleSpec(ids={"input_ids": ids, "labels": ids}) for ids in rows]
    if tokenizer.chat_template:
        specs.append(SampleSpec(ids=ids_row(tokenizer, CHAT)))
    for spec in specs:
        _, findings = lint_spec(tokenizer, spec)
        assert "foreign-ids" not in [f.code for f in findings], findings


# ---------------------------------------------------------------- one schema, printed and JSON agree


def test_report_json_and_jsonl_carry_the_printed_findings(tmp_path, capsys, bundled):
    ids = [int(i) for i in bundled.tokenizer("And God said")["input_ids"][1:]]  # no BOS: a finding
    (tmp_path / "ids.json").write_text(json.dumps({"input_ids": ids, "labels": ids}))
    common = ["report", "--ids", str(tmp_path / "ids.json"), "--no-reference"]
    code, out = run(capsys, *common, "--json", str(tmp_path / "r.json"), "--jsonl", str(tmp_path / "r.jsonl"))
    payload = valid(json.loads((tmp_path / "r.json").read_text()))
    assert payload["findings"] and {f["code"] for f in payload["findings"]} >= {"missing-bos"}
    printed_agrees(out, payload["findings"])
    no_trailing_spaces(out)
    header, *positions = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert valid(header)["findings"] == payload["findings"] and header["positions_count"] == len(positions)
    for position in positions:
        jsonschema.validate(position, POSITION)
    assert positions == payload["positions"]  # the stream holds the same positions


def test_report_data_json_has_each_rows_findings_and_the_convention_once(tmp_path, capsys, bundled):
    clean = ids_row(bundled.tokenizer, CHAT[1:3])
    trains_user = {"input_ids": clean["input_ids"], "labels": clean["input_ids"]}  # everything trained
    rows = [clean, trains_user, {"text": "In the beginning"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    code, out = run(capsys, "report", "--data", path, "--json", str(tmp_path / "d.json"))
    payload = valid(json.loads((tmp_path / "d.json").read_text()))
    errors = any(f["severity"] == "error" for f in payload["findings"])
    assert code == (1 if errors else 0) and [r["row"] for r in payload["rows"]] == [1, 2, 3]
    user = [f for f in payload["findings"] if f["code"] == "trains-on-user"]
    assert [f["row"] for f in user] == [2] and user[0]["convention"]
    printed_agrees(out, payload["findings"])
    assert out.count("convention:") == 1 and "(convention:" not in out  # stated once, not per finding
    assert payload["conventions"] == [user[0]["convention"]]
    no_trailing_spaces(out)


def test_lint_json_validates_and_agrees_with_the_printed_findings(tmp_path, capsys, bundled):
    clean = ids_row(bundled.tokenizer, CHAT[1:3])
    rows = [clean, {"input_ids": clean["input_ids"], "labels": clean["input_ids"]}, clean]
    path = write_jsonl(tmp_path / "l.jsonl", rows)
    target = tmp_path / "l.json"
    code, out = run(capsys, "lint", path, "--json", str(target))
    payload = valid(json.loads(target.read_text()))
    assert code == (1 if payload["counts"]["error"] else 0)
    assert {(f["line"], f["code"]) for f in payload["findings"]} >= {
        (2, "trains-on-user"),
        (3, "duplicate-rows"),
    }
    printed_agrees(out, payload["findings"])
    assert "(convention:" not in out
    heads = [int(m.group(1)) for m in re.finditer(r"^line (\d+)", out, re.M)]
    assert heads == sorted(heads)  # findings in row order
    no_trailing_spaces(out)


def test_scan_parquet_findings_equal_lint_json_and_row_hash_finds_duplicates(tmp_path, capsys, bundled):
    clean = ids_row(bundled.tokenizer, CHAT[1:3])
    path = write_jsonl(tmp_path / "s.jsonl", [clean, {"text": "In the beginning"}, clean])
    assert main(["scan", path, "--out", str(tmp_path / "scan")]) == 0
    (shard,) = (tmp_path / "scan").glob("shard-*.parquet")
    table = pq.read_table(shard).to_pylist()
    main(["lint", path, "--json", str(tmp_path / "l.json")])
    capsys.readouterr()
    linted = json.loads((tmp_path / "l.json").read_text())["findings"]
    stored = [{**f, "line": r["line"], "row": r["row"] + 1} for r in table for f in r["findings"]]
    key = lambda f: (f["line"], f["code"])  # noqa: E731
    assert sorted(stored, key=key) == sorted(linted, key=key)
    for f in stored:
        jsonschema.validate(f, {**SCHEMA["$defs"]["finding"], "$defs": SCHEMA["$defs"]})
    hashes = [r["row_hash"] for r in table]
    assert hashes[0] == hashes[2] != hashes[1]


def test_report_table_has_a_role_column_readable_without_colour(capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    code, out = run(capsys, "report", "--demo", "chat", "--no-reference")
    header = next(line for line in out.splitlines() if line.lstrip().startswith("t "))
    assert code == 0 and "role" in header.split()
    roles = {line.split()[3] for line in out.splitlines() if re.match(r"\s*\d+\s", line)}
    assert {"user", "assistant"} <= roles
    assert "\x1b[" not in out


def test_every_new_lint_is_documented():
    assert {"duplicate-rows", "foreign-ids"} <= set(LINTS)


async def test_without_colour_the_context_strip_marks_each_tokens_role(bundled):
    """NO_COLOR: the role backgrounds are gone, so the cell after each token holds its role's glyph."""
    from tui_wait import screen_of

    from tokstep.engine.model.session import run_trace
    from tokstep.tui.screens.app import PrecomputedBackend, TokstepApp
    from tokstep.tui.screens.stepper import StepperScreen
    from tokstep.tui.widgets.context_strip import ROLE_GLYPHS, ContextStrip, token_roles

    result = run_trace(bundled, SampleSpec(chat=tuple(CHAT[1:])), top_k=3, reference="off")
    app = TokstepApp(sample_spec=SampleSpec(text="chat"), backend=PrecomputedBackend(result, ()))
    async with app.run_test(size=(100, 30)) as pilot:
        await screen_of(app, pilot, StepperScreen, tries=100)
        stepper = StepperScreen(result, no_color=True)
        await app.push_screen(stepper)
        await pilot.pause()
        strip = stepper.query_one(ContextStrip)
        marks = {
            index: mark
            for line, hits in zip(strip._lines, strip._hits, strict=True)
            for (mark, _style), (_x0, _x1, index) in zip(line[1::2], hits, strict=True)
        }
        roles = token_roles(result)
        assert {roles[i] for i in marks} >= {"user", "assistant", None}
        assert all(mark == ROLE_GLYPHS.get(roles[i] or "", " ") for i, mark in marks.items()), marks
        legend = str(stepper.query_one("#context-box").border_subtitle)
        assert "ᵃ assistant" in legend and "ᵘ user" in legend


async def test_the_browser_marks_a_duplicate_row(tmp_path, bundled):
    from tui_wait import screen_of

    from tokstep.tui.screens.app import TokstepApp
    from tokstep.tui.screens.browser import DataBrowserScreen

    clean = ids_row(bundled.tokenizer, CHAT[1:3])
    path = write_jsonl(tmp_path / "b.jsonl", [clean, {"text": "In the beginning"}, clean])
    app = TokstepApp(ModelSpec(device="cpu", dtype="float32"), data=path)
    async with app.run_test(size=(120, 30)) as pilot:
        browser = await screen_of(app, pilot, DataBrowserScreen, tries=300)
        for _ in range(300):
            if len(browser.lints) == 3:
                break
            await pilot.pause(0.05)
        codes = {i: [f.code for f in r.findings] for i, r in browser.lints.items()}
        assert "duplicate-rows" in codes[2] and "duplicate-rows" not in codes[0] + codes[1], codes
        assert "line 1" in next(f.message for f in browser.lints[2].findings if f.code == "duplicate-rows")


def test_a_trainer_batch_row_of_foreign_ids_is_flagged_too():
    from dataclasses import replace

    from tokstep.engine.lints.sample_lints import with_foreign_ids

    llama3 = rt.real_tokenizer("llama3")
    ids = rt.real_tokenizer("llama2")(TEXT)["input_ids"]
    sample = build_sample(SampleSpec(ids={"input_ids": ids, "labels": ids}), llama3)
    (found,) = with_foreign_ids(llama3, replace(sample, kind="batch row"), [])
    assert found.code == "foreign-ids" and "Llama-2" in found.message
    own = build_sample(
        SampleSpec(ids={"input_ids": llama3(TEXT)["input_ids"]} | {"labels": llama3(TEXT)["input_ids"]}),
        llama3,
    )
    assert with_foreign_ids(llama3, replace(own, kind="batch row"), []) == []


def test_a_token_is_named_by_its_text_never_by_a_bare_id(bundled):
    from tokstep.engine.lints.facts import tokenizer_facts

    facts = tokenizer_facts(bundled.tokenizer)
    newline = bundled.tokenizer("\n", add_special_tokens=False)["input_ids"][-1]
    assert newline not in facts.specials and facts.name(newline) == "`↵`"
    assert facts.name(facts.eos_id) == f"`{bundled.tokenizer.eos_token}`"
