"""Trainer batches: capture, reading (bad lines), padding, packing, the batch loss and the contamination check.

Numbers are checked against Hugging Face's own batched loss and against each document traced alone.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tokstep.capture import save_batches
from tokstep.engine.batches.files import Settings, read_batches, row_sample
from tokstep.engine.batches.packing import trace_batches, trace_row
from tokstep.engine.inputs.sample import MaskReason
from tokstep.tui.cli.main import main

DOC_A = "In the beginning God created the heaven and the earth."
DOC_B = "And God said, Let there be light: and there was light."
DOC_C = "And the evening and the morning were the first day."


@pytest.fixture(scope="module")
def mini():
    from tokstep.engine.model.loading import ModelSpec
    from tokstep.engine.model.session import load

    loaded = load(ModelSpec(dtype="float32", device="cpu"))
    yield loaded
    loaded.model.set_attn_implementation("sdpa")


@pytest.fixture(scope="module")
def docs(mini):
    tok = mini.tokenizer
    return [tok(text)["input_ids"] + [tok.eos_token_id] for text in (DOC_A, DOC_B, DOC_C)]


def packed_row(docs, *, position_ids=True, seq_idx=False, mask=False, settings=None) -> dict:
    ids = [i for d in docs for i in d]
    labels = [(-100 if j == 0 else i) for d in docs for j, i in enumerate(d)]
    row: dict = {"batch": 0, "input_ids": ids, "labels": labels}
    if position_ids:
        row["position_ids"] = [p for d in docs for p in range(len(d))]
    if seq_idx:
        row["seq_idx"] = [k for k, d in enumerate(docs) for _ in d]
    if mask:
        row["attention_mask"] = [1] * len(ids)
    if settings is not None:
        row["settings"] = settings
    return row


def write_rows(path, rows) -> str:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8"
    )
    return str(path)


# ---------------------------------------------------------------- capture


def test_save_batches_writes_one_line_per_row_with_every_per_token_key(tmp_path, mini):
    batch = {
        "input_ids": torch.tensor([[5, 6, 7, 8], [9, 10, 2, 2]]),
        "labels": torch.tensor([[5, 6, 7, 8], [9, 10, -100, -100]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool),
        "position_ids": torch.tensor([[0, 1, 0, 1], [0, 1, 2, 3]]),
    }
    flat = {
        "input_ids": torch.tensor([[5, 6, 7, 8, 9]]),
        "labels": torch.tensor([[-100, 6, 7, -100, 9]]),
        "position_ids": torch.tensor([[0, 1, 2, 0, 1]]),
        "seq_idx": torch.tensor([[0, 0, 0, 1, 1]]),
        "cu_seq_lens_q": torch.tensor([0, 3, 5], dtype=torch.int32),
        "cu_seq_lens_k": torch.tensor([0, 3, 5], dtype=torch.int32),
        "max_length_q": 3,
    }
    target = tmp_path / "b.jsonl"
    assert save_batches([batch, flat, batch], target, limit=2, model=mini.model) == 3
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(r["batch"], r["row"]) for r in lines] == [(0, 0), (0, 1), (1, 0)]
    assert lines[1]["attention_mask"] == [1, 1, 0, 0] and lines[1]["labels"] == [9, 10, -100, -100]
    assert lines[2]["cu_seq_lens_q"] == [0, 3, 5] and lines[2]["seq_idx"] == [0, 0, 0, 1, 1]
    assert lines[2]["max_length_q"] == 3
    assert lines[0]["settings"] == {"attn_implementation": "sdpa", "use_cache": True}
    rows = read_batches(target).rows
    assert rows[2].documents == ((0, 3), (3, 5)) and rows[2].documents_from == "cu_seq_lens_q"
    assert rows[0].documents == ((0, 2), (2, 4)) and rows[1].padding == 2


def test_save_batches_never_overwrites_unless_asked(tmp_path):
    target = tmp_path / "b.jsonl"
    target.write_text("mine\n")
    batch = {"input_ids": torch.tensor([[1, 2, 3]])}
    with pytest.raises(FileExistsError):
        save_batches([batch], target)
    assert target.read_text() == "mine\n"
    assert save_batches([batch], target, overwrite=True) == 1
    assert json.loads(target.read_text())["input_ids"] == [1, 2, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["b.jsonl"]  # no temporary file left behind


def test_capture_module_is_import_light():
    import subprocess
    import sys

    code = "import sys, tokstep.capture; print(sorted(m for m in ('torch', 'textual', 'rich') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- bad input: one line each, other rows open

GOOD = {"input_ids": [1, 2, 3, 4], "labels": [1, 2, 3, 4]}
BAD_LINES = [
    ({"input_ids": [1, 2, 3, 4], "labels": [1, 2, 3]}, "labels has 3 entries but input_ids has 4"),
    (
        {"input_ids": [1, 2, 3, 4], "position_ids": [0, 1, 2]},
        "position_ids has 3 entries but input_ids has 4",
    ),
    (
        {"input_ids": [1, 2, 3, 4], "attention_mask": [1, 1]},
        "attention_mask has 2 entries but input_ids has 4",
    ),
    ({"input_ids": [1, 2, 3, 4], "position_ids": [0, 1, 3, 4]}, "position_ids jump from 1 to 3 at token 2"),
    ({"input_ids": [1, 2, 3, 4], "position_ids": [0, 1, 1, 2]}, "position_ids jump from 1 to 1 at token 2"),
    (
        {"input_ids": [1, 2, 3, 4], "position_ids": [0, 1, 0, 1], "cu_seq_lens_q": [0, 3, 4]},
        "position_ids restart at tokens 2 but cu_seq_lens_q starts documents at 3",
    ),
    (
        {"input_ids": [1, 2, 3, 4], "cu_seq_lens_q": [0, 2, 3]},
        "cu_seq_lens_q ends at 3 but the row has 4 tokens",
    ),
    (
        {"input_ids": [1, 2, 3, 4], "cu_seq_lens_k": [0, 3, 7]},
        "cu_seq_lens_k ends at 7 but the row has 4 tokens",
    ),
    ('{"input_ids": [1, 2, 3', "not valid JSON"),
    ("[1, 2, 3]", "must be a JSON object"),
]


@pytest.mark.parametrize(
    ("bad", "message"), BAD_LINES, ids=[m.split(" ")[0] + str(i) for i, (_, m) in enumerate(BAD_LINES)]
)
def test_bad_line_is_one_error_naming_the_line_and_other_rows_open(tmp_path, bad, message):
    path = write_rows(tmp_path / "b.jsonl", [GOOD, bad, {**GOOD, "batch": 1}])
    loaded = read_batches(path)
    assert [r.line for r in loaded.rows] == [1, 3]
    assert len(loaded.errors) == 1
    error = loaded.errors[0].message
    assert error.startswith("line 2: ") and message in error and "\n" not in error


def test_report_prints_bad_lines_as_one_line_errors_and_the_other_rows(tmp_path, capsys, docs):
    path = write_rows(
        tmp_path / "b.jsonl", [packed_row(docs[:2]), "not json", {"input_ids": [1, 2], "labels": [1]}]
    )
    status = main(["report", "--batches", path, "--no-reference", "--use-cache", "off"])
    out, err = capsys.readouterr()
    assert status == 1
    errors = err.strip().splitlines()
    assert len(errors) == 2 and all("Traceback" not in e for e in errors)
    assert errors[0].startswith(f"tokstep: error: {path} line 2: not valid JSON")
    assert errors[1].startswith(f"tokstep: error: {path} line 3: labels has 1 entries")
    assert "batch 0 row 0: 2 documents (from position_ids)" in out and "lints: none" in out


def test_report_on_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["report", "--batches", str(tmp_path / "none.jsonl")]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"tokstep: error: batches file not found: {tmp_path / 'none.jsonl'}"
    )


# ---------------------------------------------------------------- padding and the batch loss


def test_padded_batch_loss_equals_hf_batched_loss_and_padding_is_a_mask_reason(tmp_path, mini, docs):
    a, b = docs[0], docs[1][:9]
    width = len(a)
    pad = mini.tokenizer.pad_token_id
    batch = {
        "input_ids": torch.tensor([a, b + [pad] * (width - len(b))]),
        "labels": torch.tensor([a, b + [-100] * (width - len(b))]),
        "attention_mask": torch.tensor([[1] * width, [1] * len(b) + [0] * (width - len(b))]),
    }
    path = tmp_path / "b.jsonl"
    save_batches([batch], path, model=mini.model)
    report = trace_batches(mini, read_batches(path), flags=Settings(use_cache=False), with_reference=True)
    with torch.no_grad():
        hf_batch = float(mini.model(**batch, use_cache=False).loss)  # HF: Σ CE over the batch / its tokens
        hf_rows = [
            float(mini.model(**{k: v[i : i + 1] for k, v in batch.items()}, use_cache=False).loss)
            for i in range(2)
        ]
    loss = report.loss
    assert math.isclose(loss.token_weighted, hf_batch, rel_tol=1e-6)
    assert math.isclose(loss.mean_of_row_means, sum(hf_rows) / 2, rel_tol=1e-6)
    assert abs(loss.token_weighted - loss.mean_of_row_means) > 1e-3  # the two reductions really differ here
    padded = report.rows[1].result.sample
    assert padded.mask_reasons[len(b) :] == (MaskReason.PAD,) * (width - len(b))
    assert all(r.row.packed is False for r in report.rows)


def test_token_weighted_over_two_batches_is_accumulation_with_num_items(tmp_path, mini, docs):
    rows = [{"batch": 0, "input_ids": docs[0]}, {"batch": 1, "input_ids": docs[1][:6]}]
    report = trace_batches(mini, read_batches(write_rows(tmp_path / "b.jsonl", rows)), with_reference=False)
    n = [len(docs[0]) - 1, 5]
    with torch.no_grad():
        steps = [
            float(mini.model(torch.tensor([ids]), labels=torch.tensor([ids]), num_items_in_batch=sum(n)).loss)
            for ids in (docs[0], docs[1][:6])
        ]
    assert math.isclose(report.loss.token_weighted, sum(steps), rel_tol=1e-6)  # what the Trainer accumulates
    means = [report.loss.batch_mean(0), report.loss.batch_mean(1)]
    assert math.isclose(report.loss.mean_of_batch_means, sum(means) / 2, rel_tol=1e-12)


# ---------------------------------------------------------------- packing: the contamination check

CASES = [
    # (what the forward got, isolated?)
    (dict(position_ids=True), dict(use_cache=False), True),
    (dict(position_ids=True, mask=True), dict(use_cache=False), False),
    (dict(position_ids=True), dict(use_cache=True), False),
    (dict(position_ids=False, seq_idx=True), dict(use_cache=False), False),
]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize(
    ("row_kw", "forward", "isolated"), CASES, ids=["isolated", "ones-mask", "cache-on", "no-positions"]
)
def test_contamination_is_near_zero_when_isolated_and_large_when_not(
    tmp_path, mini, docs, attn, row_kw, forward, isolated
):
    path = write_rows(tmp_path / "b.jsonl", [packed_row(docs, **row_kw)])
    (row,) = read_batches(path).rows
    result = trace_row(mini, row, Settings(attn_implementation=attn, **forward), with_reference=False)
    assert mini.model.config._attn_implementation == attn and result.settings.attn_implementation == attn
    first, *later = result.documents
    assert first.max_delta < 1e-4  # a row's first document never sees another one
    if isolated:
        assert result.max_delta < 1e-4 and result.findings == ()
        for d in result.documents:  # the per-document loss is the document's loss alone
            assert math.isclose(d.loss, d.alone_loss, rel_tol=1e-5)
    else:
        assert min(d.max_delta for d in later) > 0.5
        (lint,) = result.findings
        assert lint.code == "cross-document-attention" and lint.severity == "error"
        cause = {True: "2D attention_mask", False: None}[row_kw.get("mask", False)]
        if cause:
            assert cause in lint.message
        elif forward["use_cache"]:
            assert "use_cache=True" in lint.message
        else:
            assert "no position_ids" in lint.message
        start = result.documents[1].start
        assert (
            min(lint.positions) == start + 1
        )  # the first moved prediction is the 2nd document's first target


def test_hand_written_file_defaults_to_the_model_config_and_says_so(tmp_path, mini, docs, capsys):
    path = write_rows(tmp_path / "b.jsonl", [packed_row(docs[:2])])
    mini.model.set_attn_implementation("sdpa")
    assert mini.model.config.use_cache is True  # the bundled model's config: the cache is on
    (row,) = read_batches(path).rows
    result = trace_row(mini, row, Settings(), with_reference=False)
    assert (
        result.settings.use_cache is True and result.findings
    )  # a plain model(ids, position_ids) contaminates
    assert main(["report", "--batches", path, "--no-reference", "--use-cache", "off"]) == 0
    out = capsys.readouterr().out
    assert "use_cache=False" in out and "lints: none" in out


def test_row_sample_marks_document_starts(docs):
    from tokstep.engine.batches.files import parse_row

    row = parse_row(json.dumps(packed_row(docs[:2])), 1)
    sample = row_sample(row)
    assert sample.mask_reasons[len(docs[0])] is MaskReason.DOCUMENT
    assert sample.num_supervised == len(docs[0]) - 1 + len(docs[1]) - 1


def test_report_json_has_documents_and_deltas(tmp_path, capsys, docs):
    path = write_rows(tmp_path / "b.jsonl", [packed_row(docs[:2], settings={"use_cache": True})])
    target = tmp_path / "out.json"
    code = main(["report", "--batches", path, "--json", str(target), "--no-reference"])
    assert code == 1  # the cache on contaminates: a cross-document-attention error, written all the same
    data = json.loads(target.read_text())
    (row,) = data["rows"]
    assert [d["start"] for d in row["documents"]] == [0, len(docs[0])]
    assert data["findings"][0]["code"] == "cross-document-attention" and row["max_delta"] > 0.5
    assert data["findings"][0]["line"] == row["line"] and data["findings"][0]["batch_row"] == row["row"]
    positions = row["trace"]["positions"]
    assert (
        positions[len(docs[0]) - 1]["delta_alone"] is None
    )  # predicts the next document: nothing to compare
    assert positions[len(docs[0])]["document"] == 1
    assert not np.isnan(data["batch_loss"]["token_weighted"])


def test_batches_with_a_sample_flag_is_one_line(tmp_path, capsys):
    path = write_rows(tmp_path / "b.jsonl", [GOOD])
    assert main(["report", "--batches", path, "--text", "hello"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "tokstep: error: --batches opens a file of trainer batches: drop --text"
    )


def test_ids_outside_the_vocabulary_fail_that_row_only(tmp_path, mini, docs):
    path = write_rows(tmp_path / "b.jsonl", [{"input_ids": [1, 99999]}, {"input_ids": docs[0]}])
    report = trace_batches(mini, read_batches(path), with_reference=False)
    assert [r.row.line for r in report.rows] == [2]
    assert report.errors[0].message.startswith(
        "line 1: input_ids[1] = 99999 is outside the model's vocabulary"
    )


def test_save_batches_is_in_the_lazy_public_api():
    import tokstep

    assert tokstep.save_batches is save_batches


def test_report_batches_exits_1_on_an_error_level_finding_after_printing_everything(tmp_path, capsys, docs):
    """cross-document-attention is an error: `report --batches` exits 1 as `tokstep lint` would (it exited 0)."""
    path = write_rows(tmp_path / "b.jsonl", [packed_row(docs[:2], settings={"use_cache": True})])
    assert main(["report", "--batches", path, "--no-reference"]) == 1
    out = capsys.readouterr().out
    assert "cross-document-attention" in out and "batch loss" in out.lower()
