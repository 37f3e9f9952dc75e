"""Reading data files: every row form, line numbers for bad rows, streaming JSONL, JSON, Parquet."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tokstep.engine.inputs.data as data_module
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.data import Columns, open_data, row_to_spec

CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def test_each_row_form_becomes_its_spec():
    assert row_to_spec({"text": "a b"}).text == "a b"
    spec = row_to_spec({"prompt": "Q", "completion": " A"})
    assert (spec.prompt, spec.answer) == ("Q", " A")
    assert row_to_spec({"prompt": "Q", "answer": " A"}).answer == " A"
    assert row_to_spec({"messages": CHAT}).chat == tuple(CHAT)
    ids = row_to_spec({"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "attention_mask": [1, 1, 1]}).ids
    assert ids == {"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "attention_mask": [1, 1, 1]}


def test_sharegpt_and_trl_conversational_rows_become_chats():
    sharegpt = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    assert row_to_spec(sharegpt).chat == tuple(CHAT)
    trl = {"prompt": CHAT[:1], "completion": CHAT[1:]}
    assert row_to_spec(trl).chat == tuple(CHAT)


def test_column_names_are_configurable():
    columns = Columns(prompt="question", answer=("reply",))
    spec = row_to_spec({"question": "Q", "reply": "A"}, columns)
    assert (spec.prompt, spec.answer) == ("Q", "A")
    with pytest.raises(TokstepError, match="it has: question, reply"):
        row_to_spec({"question": "Q", "reply": "A"})


def test_options_reach_every_row(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"text": "a"}) + "\n")
    row = open_data(path, bos="none", truncate=8).row(0)
    assert (row.spec.bos, row.spec.truncate) == ("none", 8)


def test_jsonl_bad_lines_keep_their_line_numbers_and_the_rest_loads(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(
        '{"text": "one"}\n\n{broken\r\n[1, 2]\n{"nothing": 1}\n   \n{"text": "last, no newline"}',
        encoding="utf-8",
    )
    rows = list(open_data(path).rows())
    # the empty line 2 and the whitespace-only line 6 are both skipped
    assert [r.line for r in rows] == [1, 3, 4, 5, 7]
    assert rows[0].spec.text == "one" and rows[-1].spec.text == "last, no newline"
    assert "not valid JSON" in rows[1].error
    assert "not an object" in rows[2].error
    assert "no sample in this row" in rows[3].error
    assert rows[1].where == "line 3"


@pytest.mark.parametrize("scan_bytes", [3, 7, 1 << 20])
def test_whitespace_only_lines_are_skipped_like_empty_ones(tmp_path, monkeypatch, scan_bytes):
    monkeypatch.setattr(data_module, "SCAN_BYTES", scan_bytes)  # lines straddling index chunks too
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b' \t \n{"text": "a"}\n\r\n   {"text": "b"}\n\n\x0b\x0c \n{"text": "c"}\n   ')
    rows = list(open_data(path).rows())
    assert [(r.line, r.spec.text) for r in rows] == [(2, "a"), (4, "b"), (7, "c")]


def test_jsonl_lines_split_across_index_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "SCAN_BYTES", 7)  # every line straddles a chunk boundary
    path = tmp_path / "rows.jsonl"
    texts = [f"row number {i}" for i in range(20)]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    data = open_data(path)
    assert len(data) == 0 and not data.complete  # nothing read before asked
    assert [r.spec.text for r in data.rows()] == texts
    assert data.complete and len(data) == 20


def test_large_jsonl_opens_without_reading_it_all(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "SCAN_BYTES", 1 << 12)
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"text": f"sample {i} " * 5}) + "\n" for i in range(5000)))
    data = open_data(path)
    first = list(data.rows(0, 10))
    assert len(first) == 10
    assert 10 <= len(data) < 5000 and data.progress < 0.1  # only a few KiB indexed for the first page
    data.index_all()
    assert len(data) == 5000 and data.row(4999).spec.text.startswith("sample 4999")


def test_json_array_with_line_numbers_and_a_broken_element(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('[\n  {"text": "a"},\n  {"prompt": "Q", "answer": "A"},\n  {"text": oops}\n]')
    rows = list(open_data(path).rows())
    assert [r.line for r in rows] == [2, 3, 4]
    assert rows[1].spec.answer == "A"
    assert rows[2].spec is None and "not valid JSON" in rows[2].error


def test_json_file_holding_json_lines_or_one_object(tmp_path):
    lines = tmp_path / "lines.json"  # what datasets' to_json writes
    lines.write_text('{"text": "a"}\n{"text": "b"}\n')
    data = open_data(lines)
    assert data.format == "jsonl" and [r.spec.text for r in data.rows()] == ["a", "b"]
    single = tmp_path / "one.json"
    single.write_text(json.dumps({"messages": CHAT}, indent=2))
    assert [r.spec.chat for r in open_data(single).rows()] == [tuple(CHAT)]


def test_parquet_rows_across_row_groups(tmp_path):
    path = tmp_path / "rows.parquet"
    table = pa.table({"prompt": [f"Q{i}" for i in range(5)], "completion": [f" A{i}" for i in range(5)]})
    pq.write_table(table, path, row_group_size=2)
    data = open_data(path)
    assert len(data) == 5
    assert [r.spec.answer for r in data.rows()] == [f" A{i}" for i in range(5)]
    assert data.row(3).where == "row 4" and data.row(3).line is None


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "data file not found"),
        ("rows.csv", "text\na\n", "unsupported data format .csv"),
        ("bad.parquet", "not parquet", "cannot read Parquet file"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(TokstepError, match=message) as error:
        open_data(path)
    assert "\n" not in str(error.value)


def test_a_folder_is_not_a_data_file(tmp_path):
    with pytest.raises(TokstepError, match="is a folder"):
        open_data(tmp_path)
