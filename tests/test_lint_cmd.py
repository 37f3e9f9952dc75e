"""`tokstep lint FILE`: Rich summary, --json, exit status for CI, one-line errors for bad input."""

from __future__ import annotations

import json
import re

import pytest
from tiny import byte_bpe

from tokstep.engine.lints.catalogue import LINTS
from tokstep.tui.cli.main import main

CLEAN = [
    {"prompt": "The capital of France is", "completion": " Paris."},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello there."}]},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A folder holding only a tokenizer: `lint` must not need weights."""
    folder = tmp_path_factory.mktemp("tokenizer-only")
    byte_bpe(adds_bos=True).save_pretrained(folder)
    return str(folder)


def write_jsonl(path, rows):
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return str(path)


def test_clean_file_exits_zero(tmp_path, model_dir, capsys):
    code = main(["lint", write_jsonl(tmp_path / "clean.jsonl", CLEAN), "--model", model_dir])
    out = " ".join(capsys.readouterr().out.split())  # Rich wraps at 80 columns where a long tmp path may cut
    assert code == 0
    assert "2 rows" in out and "rows with errors: 0" in out


def test_error_lint_fails_and_json_lists_each_row(tmp_path, model_dir, capsys):
    rows = [*CLEAN, {"input_ids": [0, 40, 41, 42], "labels": [-100] * 4}, "{not json", {"foo": 1}]
    code = main(["lint", write_jsonl(tmp_path / "bad.jsonl", rows), "--model", model_dir, "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 1
    assert payload["rows"] == 5 and payload["counts"]["error"] == 3
    by_line: dict[int, set[str]] = {}
    for f in payload["findings"]:
        by_line.setdefault(f["line"], set()).add(f["code"])
    assert by_line == {
        2: {"missing-bos"},
        3: {"nothing-trained"},
        4: {"bad-row"},
        5: {"bad-row"},
    }  # 2: info only
    assert all(
        r["row"] == r["line"] for r in payload["results"]
    )  # one numbering: 1-based, as the file's lines
    nothing = next(f for f in payload["findings"] if f["line"] == 3)
    assert nothing["fix"].startswith("Check the masking")  # each finding says how to fix it


def test_warning_fails_only_when_asked(tmp_path, model_dir, capsys):
    path = write_jsonl(
        tmp_path / "warn.jsonl", [{"prompt": "The capital of France is ", "completion": "Paris."}]
    )
    assert main(["lint", path, "--model", model_dir]) == 0
    out = capsys.readouterr().out
    assert "answer-leading-space" in out
    fix = " ".join(LINTS["answer-leading-space"].fix.split()[:6])
    assert "fix: " + fix in " ".join(out.split())  # the printed finding says how to fix it
    assert main(["lint", path, "--model", model_dir, "--fail-on", "warning"]) == 1


def test_max_rows_stops_early(tmp_path, model_dir, capsys):
    path = write_jsonl(tmp_path / "many.jsonl", CLEAN * 5)
    assert main(["lint", path, "--model", model_dir, "--max-rows", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 3


def test_missing_file_is_one_line(tmp_path, model_dir, capsys):
    code = main(["lint", str(tmp_path / "nope.jsonl"), "--model", model_dir])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"tokstep: error: data file not found: {tmp_path / 'nope.jsonl'}"


def test_unsupported_format_is_one_line(tmp_path, model_dir, capsys):
    path = tmp_path / "data.csv"
    path.write_text("text\nhello\n")
    assert main(["lint", str(path), "--model", model_dir]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "unsupported data format .csv" in err


def test_json_never_overwrites_without_force(tmp_path, model_dir, capsys):
    data = write_jsonl(tmp_path / "clean.jsonl", CLEAN)
    target = tmp_path / "out.json"
    target.write_text("keep me")
    assert main(["lint", data, "--model", model_dir, "--json", str(target)]) == 2
    assert target.read_text() == "keep me"
    assert main(["lint", data, "--model", model_dir, "--json", str(target), "--force"]) == 0
    assert json.loads(target.read_text())["rows"] == 2


def test_column_flags_pick_other_names(tmp_path, model_dir, capsys):
    rows = [{"question": "The capital of France is", "reply": " Paris."}]
    path = write_jsonl(tmp_path / "cols.jsonl", rows)
    assert main(["lint", path, "--model", model_dir]) == 1  # default names: no usable columns
    capsys.readouterr()
    code = main(
        [
            "lint",
            path,
            "--model",
            model_dir,
            "--prompt-column",
            "question",
            "--answer-column",
            "reply",
            "--json",
        ]
    )
    assert code == 0 and json.loads(capsys.readouterr().out)["results"] == []


def test_bundled_tokenizer_is_the_default(tmp_path, capsys):
    rows = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 99999]}]
    code = main(["lint", write_jsonl(tmp_path / "ids.jsonl", rows), "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 1
    assert "id-beyond-tokenizer" in payload["lints"]
    assert "tokstep-mini" in payload["tokenizer"]


def test_rows_with_errors_are_printed_before_info_only_rows(tmp_path, model_dir, capsys):
    info_only = CLEAN[1]  # the chat row: missing-bos at info level
    broken = {"input_ids": [0, 40, 41], "labels": [-100, -100, -100]}
    path = write_jsonl(tmp_path / "mixed.jsonl", [info_only, info_only, broken])
    assert main(["lint", path, "--model", model_dir, "--show", "1"]) == 1
    out = capsys.readouterr().out
    assert "line 3" in out and "nothing-trained" in out
    assert "line 1 " not in out and "… 2 more rows with findings" in out


def test_report_prints_mask_reasons_lints_roundtrip_and_split_characters(tmp_path, capsys):
    from tiny import save_model_folder

    save_model_folder(tmp_path, byte_bpe(adds_bos=True))
    argv = [
        "report",
        "--model",
        str(tmp_path),
        "--prompt",
        "The capital of France is ",
        "--answer",
        "Paris 사랑",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "masked (-100): 6 prompt" in out
    assert "warning answer-leading-space" in out
    assert "round-trip: decode(encode(text)) == text ✓" in out
    assert "= '사'" in out and "= '랑'" in out


def test_data_flag_with_a_missing_file_is_one_line_before_any_model_loads(tmp_path, capsys):
    code = main(["--data", str(tmp_path / "nope.jsonl"), "--model", str(tmp_path / "no-such-model")])
    assert code == 2
    assert (
        capsys.readouterr().err.strip() == f"tokstep: error: data file not found: {tmp_path / 'nope.jsonl'}"
    )


def test_piped_lint_output_never_wraps_a_message_or_a_meaning(tmp_path, model_dir, capsys):
    from tokstep.engine.lints.catalogue import LINTS

    rows = [*CLEAN, {"input_ids": [0, 40, 41, 42], "labels": [-100] * 4}, "{not json"]
    code = main(
        [
            "lint",
            write_jsonl(tmp_path / "bad.jsonl", rows),
            "--model",
            model_dir,
            "--json",
            str(tmp_path / "f.json"),
        ]
    )
    out = capsys.readouterr().out  # captured: not a terminal
    findings = json.loads((tmp_path / "f.json").read_text())["findings"]
    assert code == 1 and findings
    lines = out.splitlines()
    for finding in findings:  # each message whole on one line, however long
        assert any(finding["message"] in line for line in lines), finding["message"]
        meaning = LINTS[finding["code"]].meaning
        assert any(meaning in line for line in lines), meaning


@pytest.fixture(scope="module")
def chatml_dir(tmp_path_factory):
    """A Qwen2.5-like ChatML tokenizer folder (pad <|endoftext|> != end-of-turn <|im_end|>)."""
    from label_templates import tokenizer_for

    folder = tmp_path_factory.mktemp("chatml-tokenizer")
    tokenizer_for("chatml").save_pretrained(folder)
    return str(folder)


def chatml_rows():
    from label_templates import bug_rows, correct, render_row, tokenizer_for

    tokenizer = tokenizer_for("chatml")
    rows = bug_rows(tokenizer, "chatml")
    clean, user = rows["clean"], rows["user-header"]
    row = render_row(tokenizer, "chatml")
    cut = row.tokens_in(*row.assistant[-1][:2])[-3]  # mid-word in the last reply, no <|im_end|>
    truncated = {"input_ids": row.ids[: cut + 1], "labels": row.labels(correct(row))[: cut + 1]}
    as_row = lambda r: {"input_ids": r[0], "labels": r[1]}  # noqa: E731
    return [as_row(clean), as_row(user), as_row(clean), as_row(user), truncated]


def test_rows_that_train_on_the_user_turn_fail_and_are_counted(tmp_path, chatml_dir, capsys):
    path = write_jsonl(tmp_path / "sft.jsonl", chatml_rows())
    code = main(["lint", path, "--model", chatml_dir, "--show", "0"])
    out = capsys.readouterr().out
    assert code == 1
    rows = (re.match(r"(\S+)\s+(?:error|warning|info)\s+(\d+)\s", line) for line in out.splitlines())
    table = {m.group(1): m.group(2) for m in rows if m}
    assert table["trains-on-user"] == "2" and table["assistant-not-trained"] == "2"
    assert table["no-eos"] == "1" and table["truncated?"] == "1"
    assert "turns recovered in 5 of 5 rows; labels disagree in 2 rows" in " ".join(out.split())
    payload_code = main(["lint", path, "--model", chatml_dir, "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert payload_code == 1 and payload["structure"]["rows_disagreeing"] == 2
    assert [r["disagree"] for r in payload["results"] if r["line"] in (2, 4)] == [
        payload["results"][0]["disagree"]
    ] * 2


def test_strict_counts_a_truncated_answer_in_the_exit_status(tmp_path, chatml_dir, capsys):
    path = write_jsonl(tmp_path / "cut.jsonl", chatml_rows()[-1:])
    assert main(["lint", path, "--model", chatml_dir]) == 0
    out = capsys.readouterr().out
    assert "truncated?" in out and "rows with errors: 0" in out
    assert main(["lint", path, "--model", chatml_dir, "--strict"]) == 1


def test_a_lint_that_fires_at_two_severities_is_counted_at_each(tmp_path, chatml_dir, capsys):
    """trains-on-markup is an error for a trained header and info for a trained newline right after the
    end-of-turn: the summary must not call the error row's finding info (one line per code and severity)."""
    from label_templates import bug_rows, tokenizer_for

    tokenizer = tokenizer_for("chatml")
    header_ids, header_labels = bug_rows(tokenizer, "chatml")["header"][:2]
    ids, labels = bug_rows(tokenizer, "chatml")["clean"][:2]
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    after = [j + 1 for j in range(len(ids) - 1) if ids[j] == end and labels[j] != -100]
    newline = [ids[j] if j in after else lab for j, lab in enumerate(labels)]
    rows = [{"input_ids": header_ids, "labels": header_labels}, {"input_ids": ids, "labels": newline}]
    path = write_jsonl(tmp_path / "two.jsonl", rows)
    assert main(["lint", path, "--model", chatml_dir, "--show", "0"]) == 1
    lines = capsys.readouterr().out.splitlines()
    table = [
        m.groups() for m in (re.match(r"(\S+)\s+(error|warning|info)\s+(\d+)\s", ln) for ln in lines) if m
    ]
    severities = [(code, severity) for code, severity, _count in table if code == "trains-on-markup"]
    assert severities == [("trains-on-markup", "error"), ("trains-on-markup", "info")]  # the error first
    assert ("trains-on-markup", "error", "1") in table


def test_eot_mask_decides_the_expected_mask_of_ids_rows(tmp_path, chatml_dir, capsys):
    """A trainer that masks <|im_end|> on purpose says --eot mask: no eos-masked finding, exit 0."""
    from label_templates import bug_rows, tokenizer_for

    ids, labels, _ = bug_rows(tokenizer_for("chatml"), "chatml")["eot-masked"]
    path = write_jsonl(tmp_path / "masked-eot.jsonl", [{"input_ids": ids, "labels": labels}] * 2)
    assert main(["lint", path, "--model", chatml_dir, "--show", "0"]) == 1
    assert "eos-masked" in capsys.readouterr().out
    assert main(["lint", path, "--model", chatml_dir, "--eot", "mask", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    # the only finding: line 2 repeats line 1 (warning, not failing)
    assert payload["counts"] == {"error": 0, "warning": 1, "info": 0}
    assert [(f["line"], f["code"]) for f in payload["findings"]] == [(2, "duplicate-rows")]
    assert payload["structure"]["rows_disagreeing"] == 0
    assert "end-of-turn masked (--eot mask)" in payload["structure"]["convention"]
