"""The fast lint path (one render per chat, batch encoding, a process pool) finds exactly what the
per-row path finds, sample for sample, on hundreds of rows with findings of every kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny import (
    CHATML_NO_END,
    LINT_CHATML,
    LINT_LLAMA3,
    VICUNA,
    byte_bpe,
    gpt2_style,
    llama3_style,
    sentencepiece_handmade,
)

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.data import DataRow, row_to_spec
from tokstep.engine.lints.batch import BatchTokenizer, lint_rows
from tokstep.engine.lints.pool import lint_stream
from tokstep.engine.lints.rows import lint_row
from tokstep.tui.cli.main import main

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "the",
    "mat",
    "and",
    "hello",
    "world",
    "the",
    "answer",
    "is",
    "yes",
    "def",
    "main",
    "return",
]


def make_records(count: int, seed: int = 0) -> list[object]:
    """Rows built to trip many lints: markup in messages and text, whitespace runs, spaces at the
    prompt/answer boundary, pre-shifted and masked labels, empty answers, broken rows."""
    rng = np.random.default_rng(seed)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS, size=int(rng.integers(low, high))))

    records: list[object] = []
    for i in range(count):
        kind = i % 10
        if kind == 0:
            records.append(
                {
                    "messages": [
                        {"role": "user", "content": words(1, 8)},
                        {"role": "assistant", "content": words(1, 12)},
                    ]
                }
            )
        elif kind == 1:  # two turns and a system prompt
            records.append(
                {
                    "messages": [
                        {"role": "system", "content": words(1, 4)},
                        {"role": "user", "content": words(1, 6)},
                        {"role": "assistant", "content": words(1, 9)},
                        {"role": "user", "content": words(1, 6)},
                        {"role": "assistant", "content": " " + words(1, 9)},
                    ]
                }
            )
        elif kind == 2:  # the template's markup inside a message: double-template
            records.append(
                {
                    "messages": [
                        {"role": "user", "content": "<|im_start|>user\n" + words(1, 5)},
                        {"role": "assistant", "content": words(1, 5) + "<|eot_id|>"},
                    ]
                }
            )
        elif kind == 3:
            records.append({"text": words(2, 20) + " " * int(rng.integers(0, 20)) + words(1, 4)})
        elif kind == 4:  # chat written as text
            records.append(
                {
                    "text": "<|im_start|>user\n"
                    + words(1, 5)
                    + "<|im_end|>\n<|im_start|>assistant\n"
                    + words(1, 5)
                }
            )
        elif kind == 5:  # the space at the end of the prompt, or a word split at the boundary
            records.append(
                {
                    "prompt": words(1, 6) + rng.choice([" ", "", " an"]),
                    "completion": rng.choice(["", " "]) + words(1, 6),
                }
            )
        elif kind == 6:
            ids = rng.integers(5, 300, size=int(rng.integers(4, 20))).tolist()
            records.append({"input_ids": ids, "labels": ids[1:] + [-100]})  # pre-shifted
        elif kind == 7:
            ids = rng.integers(5, 300, size=int(rng.integers(4, 20))).tolist()
            records.append({"input_ids": ids + [2, 2], "labels": [-100] * 2 + ids[2:] + [-100, -100]})
        elif kind == 8:
            records.append(
                {"prompt": words(1, 4), "completion": ""}
                if i % 20 == 8
                else {"messages": [{"role": "user", "content": words(1, 3)}]}
            )
        else:
            records.append(
                {
                    "messages": [
                        {"role": "assistant", "content": words(1, 6)},
                        {"role": "user", "content": words(1, 3)},
                        {"role": "assistant", "content": words(1, 6)},
                    ]
                }
            )
    return records


def as_rows(records: list[object]) -> list[DataRow]:
    rows = []
    for i, record in enumerate(records):
        try:
            rows.append(DataRow(i, i + 1, row_to_spec(record, name=f"row {i}")))
        except TokstepError as error:
            rows.append(DataRow(i, i + 1, None, str(error)))
    return rows


TOKENIZERS = {
    "chatml (generation marks)": lambda: byte_bpe(template=LINT_CHATML, adds_bos=True),
    "chatml without end token": lambda: byte_bpe(template=CHATML_NO_END),
    "llama3 (double BOS)": llama3_style,
    "llama3 template, no marks": lambda: byte_bpe(
        template=LINT_LLAMA3, bos="<|begin_of_text|>", eos="<|eot_id|>"
    ),
    "vicuna": lambda: byte_bpe(template=VICUNA),
    "gpt2, pad == eos, no template": gpt2_style,
}


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_batched_lints_equal_the_per_row_path(name):
    tokenizer = TOKENIZERS[name]()
    rows = as_rows(make_records(120, seed=len(name)))
    fast = []
    fast_tokenizer = BatchTokenizer(tokenizer)
    for start in range(0, len(rows), 32):
        fast += lint_rows(fast_tokenizer, rows[start : start + 32])
    slow = [lint_row(tokenizer, row) for row in rows]
    codes = set()
    for a, b in zip(fast, slow, strict=True):
        assert a.findings == b.findings, a.row.index
        assert (a.num_tokens, a.num_supervised) == (b.num_tokens, b.num_supervised)
        assert (a.sample is None) == (b.sample is None)
        if a.sample is not None:
            np.testing.assert_array_equal(a.sample.input_ids, b.sample.input_ids)
            np.testing.assert_array_equal(a.sample.labels, b.sample.labels)
            assert a.sample.mask_reasons == b.sample.mask_reasons and a.sample.notes == b.sample.notes
        codes |= {f.code for f in b.findings}
    assert len(codes) >= 5, codes  # the rows really have findings of many kinds


def assert_same(fast: list, slow: list) -> set[str]:
    """Batched and per-row results agree row for row; the codes found."""
    codes: set[str] = set()
    for a, b in zip(fast, slow, strict=True):
        assert a.findings == b.findings, a.row.index
        assert (a.num_tokens, a.num_supervised, a.disagree) == (b.num_tokens, b.num_supervised, b.disagree)
        codes |= {f.code for f in b.findings}
    return codes


def saved_chatml(folder):
    byte_bpe(template=LINT_CHATML, adds_bos=True).save_pretrained(folder)
    return folder


def saved_llama_class(folder):
    """transformers' LlamaTokenizer over a tokenizer.json it rebuilds: the two encode some texts apart."""
    sentencepiece_handmade(byte_fallback=False).save_pretrained(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["tokenizer_class"] = "LlamaTokenizer"
    config["chat_template"] = LINT_CHATML
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("name", "same"), [("saved chatml", True), ("LlamaTokenizer over tokenizer.json", False)]
)
def test_batched_library_lint_equals_the_per_row_path(tmp_path, name, same):
    """With a tokenizer.json beside the tokenizer the `library` lint encodes every text a second time; the
    batched path reuses the backend's encodings when tokenizer.json serializes alike, else encodes again."""
    from transformers import AutoTokenizer

    import tokstep.engine.lints.tokenizer_differs as lints

    make = saved_chatml if same else saved_llama_class
    tokenizer = AutoTokenizer.from_pretrained(make(tmp_path / "tok"))
    records = make_records(80, seed=3)
    for i in range(20):  # texts the rebuilt tokenizer encodes differently, and content given as parts
        records.append({"text": f"the cat 漢 sat {i}"})
        records.append({"prompt": "the 漢 cat", "completion": f" sat {i}"})
        records.append(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": f"the cat {i}"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "sat " * (i % 4 + 1)}]},
                ]
            }
        )
    rows = as_rows(records)
    fast_tokenizer = BatchTokenizer(tokenizer)
    fast = []
    for start in range(0, len(rows), 32):
        fast += lint_rows(fast_tokenizer, rows[start : start + 32])
    assert lints._RAW[fast_tokenizer].same is same  # the shortcut is taken exactly when it is sound
    slow = [lint_row(tokenizer, row) for row in rows]
    codes = assert_same(fast, slow)
    assert ("tokenizer-differs" in codes) is not same
    for a, b in zip(fast, slow, strict=True):
        assert a.trained == b.trained


def test_slim_results_skip_only_the_trained_text():
    tokenizer = byte_bpe(template=LINT_CHATML, adds_bos=True)
    rows = as_rows(make_records(60, seed=5))
    slim = lint_rows(BatchTokenizer(tokenizer), rows, slim=True)
    full = [lint_row(tokenizer, row).slim() for row in rows]
    assert_same(slim, full)
    assert all(r.sample is None and r.trained is None for r in slim)
    assert any(lint_row(tokenizer, row).trained for row in rows)  # the full result does decode it


def test_the_process_pool_gives_the_same_results_in_order():
    tokenizer = byte_bpe(template=LINT_CHATML, adds_bos=True)
    rows = as_rows(make_records(90))
    one = list(lint_stream(tokenizer, rows, jobs=1, batch_rows=16))
    two = list(lint_stream(tokenizer, rows, jobs=2, batch_rows=16))
    assert [r.row.index for r in two] == list(range(90))
    assert [(r.findings, r.num_tokens) for r in one] == [(r.findings, r.num_tokens) for r in two]
    assert all(r.sample is None for r in two)  # slim: no arrays cross processes


def test_lint_command_jobs_1_and_2_agree_and_report_progress(tmp_path, capsys, monkeypatch):
    import tokstep.tui.cli.progress as progress

    monkeypatch.setattr(progress, "LINE_EVERY", 0.0)  # a progress line at every batch
    folder = tmp_path / "tok"
    byte_bpe(template=LINT_CHATML, adds_bos=True).save_pretrained(folder)
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_records(300)))
    outputs = []
    for jobs in ("1", "2"):
        main(["lint", str(path), "--model", str(folder), "--json", "--jobs", jobs])
        captured = capsys.readouterr()
        outputs.append(json.loads(captured.out))
        assert "tokstep lint: 300 / 300 rows (100%)" in captured.err  # not a terminal: a progress line
    assert outputs[0] == outputs[1] and outputs[0]["rows_with_findings"] > 100


def test_token_codes_at_once_equal_token_by_token():
    from tokstep.engine.chat.masks import _token_code, _token_codes

    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(0, 60))
        codes = bytearray(rng.integers(0, 8, size=n).astype(np.uint8).tobytes())
        offsets, start = [], 0
        while start <= n and len(offsets) < 40:
            width = int(rng.choice([0, 1, 1, 2, 3, 5]))
            offsets.append((start, min(start + width, n)))
            start += width if width else int(rng.integers(0, 2))
            if rng.random() < 0.1:  # overlapping or repeated offsets (byte-level pieces of one character)
                start = max(0, start - 1)
        assert _token_codes(codes, offsets) == [_token_code(codes, s, e) for s, e in offsets]


def test_the_render_cache_never_answers_for_messages_freed_since():
    """Renders are cached by the ids of the message dicts: a chat built, rendered and dropped (a probe, a
    flattened copy) must not hand its render to a later chat whose dicts reuse the freed memory."""
    tokenizer = BatchTokenizer(byte_bpe(template=LINT_CHATML, adds_bos=True))
    for word in ("alpha", "beta", "gamma", "delta", "epsilon"):
        chat = [{"role": "user", "content": word}, {"role": "assistant", "content": word}]
        assert word in tokenizer.apply_chat_template(chat, tokenize=False)
        del chat
