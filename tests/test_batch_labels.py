"""Trainer batch rows (padded and packed) checked against the chat turns recovered from their ids.

Each packed document is recovered alone and placed back at its row positions; the rows are ChatML chats
(tests/templates.py through tests/label_templates.py) whose reference masks and bug positions are built from
character offsets, not from engine.chat.structure.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny
from label_templates import bug_rows, chats, correct, render_row, tokenizer_for

from tokstep.engine.batches.files import parse_row, read_batches, row_sample
from tokstep.engine.batches.structure import ignored, row_layout, with_row_layout
from tokstep.engine.chat.structure import ROLES
from tokstep.engine.inputs.sample import MaskReason
from tokstep.engine.inputs.spec import SampleSpec
from tokstep.engine.lints.sample_lints import lint_spec
from tokstep.engine.lints.trainer_batches import batch_row_lints
from tokstep.tui.cli.main import main


@pytest.fixture(scope="module")
def chatml():
    return tokenizer_for("chatml")


@pytest.fixture(scope="module")
def bugs(chatml):
    return bug_rows(chatml, "chatml")


def packed(*documents: tuple[list[int], list[int]], line: int = 1):
    """One packed row of (ids, labels) documents, position_ids restarting at 0 (the first label of each
    document -100, as DataCollatorWithFlattening / TRL padding_free write it)."""
    ids = [i for d, _ in documents for i in d]
    labels = [-100 if j == 0 else label for _, ls in documents for j, label in enumerate(ls)]
    positions = [p for d, _ in documents for p in range(len(d))]
    return parse_row(json.dumps({"input_ids": ids, "labels": labels, "position_ids": positions}), line)


def check(tokenizer, row, **policy):
    sample = with_row_layout(row_sample(row, tokenizer.pad_token_id), row, tokenizer, **policy)
    return sample, batch_row_lints(tokenizer, sample, ignored(row), row.documents)


def test_packed_row_finds_the_user_turn_trained_in_the_second_document_at_row_positions(chatml, bugs):
    clean_ids, clean_labels, _ = bugs["clean"]
    bad_ids, bad_labels, user_words = bugs["user-header"]
    row = packed((clean_ids, clean_labels), (bad_ids, bad_labels))
    n1 = len(clean_ids)
    assert row.documents == ((0, n1), (n1, n1 + len(bad_ids)))
    sample, findings = check(chatml, row)
    found = {f.code: set(f.positions) for f in findings}
    assert found["trains-on-user"] == {n1 + i for i in user_words} and user_words
    assert "assistant-not-trained" in found  # the replies of document 2 are masked instead
    assert all(n1 <= p < len(row) for f in findings for p in f.positions)  # in document 2, row positions
    # the same findings as document 2 linted alone as an ids row (`--ids`), moved to its row positions
    alone = lint_spec(chatml, SampleSpec(ids={"input_ids": bad_ids, "labels": bad_labels}))[1]
    assert found == {f.code: {n1 + p for p in f.positions} for f in alone if f.code in found}
    assert set(found) <= {f.code for f in alone}
    layout = sample.layout
    assert all(layout.role(n1 + i) == "user" for i in user_words)
    assert sum(t.role == "assistant" for t in layout.turns) == 4  # two replies in each document
    differ = layout.disagreements(sample.labels, ignored(row))
    assert len(differ) and differ.min() >= n1  # document 1 agrees with its structure


def test_packed_row_of_clean_documents_has_no_finding_and_expects_the_reference_mask(chatml):
    documents = []
    for chat in chats("chatml")[:3]:
        r = render_row(chatml, "chatml", chat=chat)
        documents.append((r.ids, r.labels(correct(r))))
    row = packed(*documents)
    sample, findings = check(chatml, row)
    assert findings == []
    want, offset = set(), 0
    for r in (render_row(chatml, "chatml", chat=chat) for chat in chats("chatml")[:3]):
        want |= {offset + i for i in correct(r)}
        offset += len(r.ids)
    assert set(np.flatnonzero(sample.layout.expected()).tolist()) == want
    assert len(sample.layout.disagreements(sample.labels, ignored(row))) == 0


def test_padded_batch_with_correct_labels_has_no_finding_and_padding_is_padding(chatml, tmp_path):
    long = render_row(chatml, "chatml", chat=chats("chatml")[-1])  # 4 exchanges and a system message
    ids, labels = long.ids, long.labels(correct(long))
    short = render_row(chatml, "chatml")  # 2 exchanges
    pad = chatml.pad_token_id
    width = len(ids)
    extra = width - len(short.ids)
    lines = [
        {"input_ids": ids, "labels": labels, "attention_mask": [1] * width},
        {  # right padding
            "input_ids": short.ids + [pad] * extra,
            "labels": short.labels(correct(short)) + [-100] * extra,
            "attention_mask": [1] * len(short.ids) + [0] * extra,
        },
        {  # left padding
            "input_ids": [pad] * extra + short.ids,
            "labels": [-100] * extra + short.labels(correct(short)),
            "attention_mask": [0] * extra + [1] * len(short.ids),
        },
    ]
    path = tmp_path / "b.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    rows = read_batches(path).rows
    assert extra > 0 and len(rows) == 3
    for row in rows:
        sample, findings = check(chatml, row)
        assert findings == [], row.name
        assert sample.layout is not None
        assert len(sample.layout.disagreements(sample.labels, ignored(row))) == 0
        padding = np.flatnonzero(row.attention_mask == 0)
        assert all(sample.mask_reasons[i] is MaskReason.PAD for i in padding if i > 0)  # 0: predicted by none
        assert all(sample.layout.role(i) is None for i in padding)


def test_eot_mask_is_the_convention_batch_rows_are_compared_with(chatml, bugs):
    clean_ids, clean_labels, _ = bugs["clean"]
    _, masked_end_labels, ends = bugs["eot-masked"]
    n1 = len(clean_ids)
    trained_end = packed((clean_ids, clean_labels), (clean_ids, clean_labels))
    masked_end = packed((clean_ids, clean_labels), (clean_ids, masked_end_labels))
    by_default = check(chatml, masked_end)[1]
    assert [f.code for f in by_default] == ["eos-masked"]
    assert set(by_default[0].positions) == {n1 + i for i in ends}
    under_mask = check(chatml, masked_end, eot="mask")[1]  # document 2 now right; document 1 trains its ends
    assert [(f.code, set(f.positions)) for f in under_mask] == [("trains-on-markup", set(ends))]
    fully_masked = packed((clean_ids, [x if i not in ends else -100 for i, x in enumerate(clean_labels)]))
    assert check(chatml, fully_masked, eot="mask")[1] == []
    findings = check(chatml, trained_end, eot="mask")[1]
    assert [(f.code, set(f.positions)) for f in findings] == [  # one finding per document
        ("trains-on-markup", set(ends)),
        ("trains-on-markup", {n1 + i for i in ends}),
    ]
    assert findings[1].message.startswith("document 1 of 0..1: ") and "--eot mask" in findings[1].message


def test_rows_without_recovered_turns_get_no_layout_and_no_label_finding(chatml):
    text = chatml("just some words with no chat markup at all", add_special_tokens=False)["input_ids"]
    row = parse_row(json.dumps({"input_ids": text}), 1)
    assert row_layout(chatml, row) is None
    sample, findings = check(chatml, row)
    assert sample.layout is None and findings == []


# ---------------------------------------------------------------- through the CLI, with a model


def by_code(findings: list[dict]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for f in findings:
        out.setdefault(f["code"], set()).update(f["positions"])
    return out


@pytest.fixture(scope="module")
def chatml_model(chatml, tmp_path_factory):
    folder = tmp_path_factory.mktemp("chatml-model")
    return tiny.save_model_folder(folder, chatml, max_positions=256)


def test_report_batches_takes_eot_mask_and_reports_label_findings_at_row_positions(
    chatml_model, bugs, tmp_path, capsys
):
    clean_ids, clean_labels, _ = bugs["clean"]
    bad_ids, bad_labels, user_words = bugs["user-header"]
    _, _, ends = bugs["eot-masked"]
    n1 = len(clean_ids)
    row = {
        "input_ids": clean_ids + bad_ids,
        "labels": clean_labels + [-100] + bad_labels[1:],
        "position_ids": list(range(n1)) + list(range(len(bad_ids))),
    }
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(row) + "\n")
    out = tmp_path / "r.json"
    common = [
        "--model",
        chatml_model,
        "--dtype",
        "float32",
        "--device",
        "cpu",
        "report",
        "--batches",
        str(path),
    ]
    common += ["--reference", "off", "--use-cache", "off", "--json", str(out), "--force"]
    assert (
        main(common) == 1
    )  # trains-on-user is an error-level finding: report's findings status, JSON written
    payload = json.loads(out.read_text())
    data = payload["rows"][0]
    assert {f["batch_row"] for f in payload["findings"]} == {data["row"]}
    found = by_code(payload["findings"])
    assert found["trains-on-user"] == {n1 + i for i in user_words}
    assert all(p >= n1 for positions in found.values() for p in positions)  # document 1 is clean
    assert data["disagree"] > 0
    assert main([*common, "--eot", "mask"]) == 1
    masked = by_code(json.loads(out.read_text())["findings"])
    # against --eot mask, document 1's trained <|im_end|>s are now findings too
    assert masked["trains-on-markup"] - found.get("trains-on-markup", set()) == set(ends)
    assert "--eot mask" in capsys.readouterr().out
    capsys.readouterr()


def test_roles_of_a_packed_row_are_those_of_each_document_alone(chatml, bugs):
    ids, labels, _ = bugs["clean"]
    row = packed((ids, labels), (ids, labels))
    layout = row_layout(chatml, row)
    from tokstep.engine.chat.structure import recover_layout

    alone = recover_layout(chatml, ids)
    n = len(ids)
    assert np.array_equal(layout.roles[:n], alone.roles) and np.array_equal(layout.roles[n:], alone.roles)
    assert np.array_equal(layout.parts[n:], alone.parts)
    assert ROLES.index("assistant") in layout.roles[n:].tolist()


def test_scan_lists_the_label_lints_of_rows_given_as_ids(chatml_model, bugs, tmp_path, capsys):
    import pyarrow.parquet as pq

    lines = [
        {"input_ids": ids, "labels": labels}
        for ids, labels, _ in (bugs["clean"], bugs["user-header"], bugs["eot-masked"])
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "scan"
    assert main(["scan", str(data), "--model", chatml_model, "--device", "cpu", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    rows = sorted(
        (r for shard in manifest["shards"] for r in pq.read_table(out / shard).to_pylist()),
        key=lambda r: r["row"],
    )
    assert [r["error"] for r in rows] == [None, None, None]
    assert rows[0]["lints"] == []
    assert "trains-on-user" in rows[1]["lints"] and rows[1]["lint_errors"] >= 1
    assert "eos-masked" in rows[2]["lints"]
    # --eot mask: the masked end-of-turn is now right, and the clean row's trained one is the finding
    command = [
        "scan",
        str(data),
        "--model",
        chatml_model,
        "--device",
        "cpu",
        "--out",
        str(out),
        "--eot",
        "mask",
    ]
    assert main([*command, "--force"]) == 0
    rows = sorted(
        (r for shard in manifest["shards"] for r in pq.read_table(out / shard).to_pylist()),
        key=lambda r: r["row"],
    )
    assert rows[0]["lints"] == ["trains-on-markup"] and "eos-masked" not in rows[2]["lints"]
    capsys.readouterr()


def test_a_fully_supervised_document_is_a_transcript_error_for_that_document_only(chatml, bugs):
    ids, labels, _ = bugs["clean"]
    _, _, user_words = bugs["user-header"]
    row = packed((ids, labels), (ids, list(ids)))  # document 2: every token trained (pretraining style)
    findings = check(chatml, row)[1]
    assert [(f.code, f.severity) for f in findings] == [("trains-on-user", "error")]
    assert {len(ids) + i for i in user_words} <= set(findings[0].positions)
    assert min(findings[0].positions) > len(ids) and "nothing is masked" in findings[0].message
