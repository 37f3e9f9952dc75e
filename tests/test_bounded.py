"""Bounded input and row-level errors, one level below the CLI: --truncate tokenizes a prefix yet keeps exactly
the tokens the whole text gives; JSON that parses but is unusable is refused with a reason; a scan turns such
rows into error rows; one oversized row costs neither seconds nor hundreds of MB."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import tiny

import tokstep.engine.inputs.json_text as json_text
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.spec import SampleSpec, build_sample, truncate
from tokstep.tui.cli.main import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizers():
    return {"byte-level": tiny.byte_bpe(adds_bos=True), "sentencepiece": tiny.sentencepiece_bpe()}


@pytest.mark.parametrize("kind", ["byte-level", "sentencepiece"])
@pytest.mark.parametrize("keep", [2, 50, 700])
@pytest.mark.parametrize(
    "text",
    [
        "I love dogs and cats. " * 20_000,
        "x" * 300_000,  # one word: no space to cut at
        "naïve café — 東京 " * 10_000,
    ],
    ids=["words", "one-word", "unicode"],
)
def test_truncate_keeps_the_tokens_of_the_whole_text(tokenizers, kind, keep, text):
    tokenizer = tokenizers[kind]
    whole = tokenizer(text)["input_ids"]  # the independent reference: the tokenizer on all of it
    sample = build_sample(SampleSpec(text=text, truncate=keep), tokenizer)
    assert sample.input_ids.tolist() == whole[:keep]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"a": "\\ud800"}', "lone surrogate (\\ud800 at character 0)"),
        ('["ok", {"k\\udfff": 1}]', "lone surrogate (\\udfff"),
        ('{"a": [1, ' + "7" * 4301 + "]}", "more than 4300 digits"),
    ],
)
def test_unusable_json_is_refused_with_its_reason(raw, reason):
    with pytest.raises(json_text.UnusableJson, match=re.escape(reason)):
        json_text.loads(raw)


def test_a_surrogate_pair_and_a_4300_digit_integer_are_fine():
    assert json_text.loads('{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    assert json_text.loads("[" + "7" * 4300 + "]") == [int("7" * 4300)]


def test_a_scan_turns_unusable_rows_into_error_rows(tmp_path, capsys):
    model = tiny.save_model_folder(tmp_path / "m", tiny.byte_bpe(adds_bos=True), "llama")
    data = tmp_path / "rows.jsonl"
    data.write_text(
        '{"text": "I love dogs."}\n{"text": "\\ud800"}\n{"input_ids": [1, ' + "9" * 5000 + "]}\n"
        '{"text": "I love cats."}\n'
    )
    with open(data, "ab") as handle:
        handle.write(b'{"text": "caf\xe9"}\n')
    out = tmp_path / "scan"
    assert main(["scan", str(data), "--model", model, "--out", str(out)]) == 0
    rows = pq.read_table(out / "shard-00000-of-00001.parquet").to_pylist()
    errors = [r["error"] for r in rows]
    assert errors[0] is None and errors[3] is None and rows[0]["loss"] > 0
    assert "lone surrogate" in errors[1] and "4300 digits" in errors[2] and "UTF-8" in errors[4]
    assert "Traceback" not in capsys.readouterr().err


def _peak_rss_mb(argv: list[str]) -> tuple[float, float, int]:
    """Run `tokstep argv` in a fresh process: (seconds, its peak RSS in MB, exit status)."""
    code = (
        "import resource, sys, time\n"
        "from tokstep.tui.cli.main import main\n"
        "started = time.monotonic(); status = main(sys.argv[1:]); took = time.monotonic() - started\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(f'{took} {peak}', file=sys.stderr); sys.exit(status)\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'tests'}", HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True)
    took, peak = map(float, done.stderr.strip().splitlines()[-1].split())
    return took, peak, done.returncode


def test_one_oversized_row_costs_under_a_second_and_300_mb(tmp_path):
    model = tiny.save_model_folder(tmp_path / "m", tiny.byte_bpe(adds_bos=True), "llama", max_positions=128)
    small = tmp_path / "small.jsonl"
    small.write_text('{"text": "I love dogs."}\n' * 2)
    huge = tmp_path / "huge.jsonl"
    huge.write_text(
        '{"text": "I love dogs."}\n'
        + json.dumps({"text": "I love cats. " * 800_000})  # 10 MB: far past 128 positions
        + "\n"
        + json.dumps({"text": "y" * (17 << 20)})  # 17 MB: past the row limit, never read
        + "\n"
    )
    _, base_mb, status = _peak_rss_mb(["lint", str(small), "--model", model, "--jobs", "1"])
    assert status in (0, 1)
    _, mb, status = _peak_rss_mb(["lint", str(huge), "--model", model, "--jobs", "1"])
    assert status == 1  # the two rows are findings; the run goes on
    assert mb - base_mb < 300, f"{mb:.0f} MB against {base_mb:.0f} MB for two small rows"
    # time in this process, imports done: the whole lint of the file, both oversized rows included
    assert main(["lint", str(small), "--model", model, "--jobs", "1"]) in (0, 1)
    started = time.monotonic()
    assert main(["lint", str(huge), "--model", model, "--jobs", "1"]) == 1
    assert time.monotonic() - started < 2.5  # about 0.9 s measured under cProfile on a loaded machine


def _long_chat() -> list[dict[str, str]]:
    words = "The quick brown fox jumps over the lazy dog near Paris, naïve café 東京. "
    return [
        {"role": "user", "content": "Tell me a story."},
        {"role": "assistant", "content": "Once upon a time, " + words * 80},
        {"role": "user", "content": "More. " + words * 40},
        {"role": "assistant", "content": "Then " + words * 80},
    ]


@pytest.mark.parametrize("family", ["llama3", "qwen3", "mistral", "gemma3", "generation-mask"])
def test_truncate_keeps_the_tokens_and_mask_of_the_whole_chat(family):
    """--truncate N on a chat tokenizes a prefix of its rendering; the kept ids are apply_chat_template's first N
    and the kept mask the whole chat's first N (a {% generation %} template's mask included)."""
    import copy

    from templates import FAMILIES

    from tokstep.engine.chat.masks import derive

    if family == "generation-mask":
        tokenizer = copy.deepcopy(tiny.byte_level_bpe())
        tokenizer.chat_template = tiny.LLAMA3
    else:
        tokenizer = FAMILIES[family].tokenizer()
    chat = _long_chat()
    reference = list(tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"])
    whole = build_sample(SampleSpec(chat=tuple(chat)), tokenizer)
    assert whole.input_ids.tolist() == reference and len(reference) > 5000
    for keep in (100, 120, 200, 700):
        assert derive(tokenizer, chat, keep=keep).prefix_chars is not None  # a prefix, not the whole chat
        kept = build_sample(SampleSpec(chat=tuple(chat), truncate=keep), tokenizer)
        assert kept.input_ids.tolist() == reference[:keep]
        assert kept.mask_reasons == whole.mask_reasons[:keep]
        assert kept.labels.tolist() == whole.labels[:keep].tolist()
    assert derive(tokenizer, chat, keep=100).method == derive(tokenizer, chat).method


def test_truncate_before_the_first_reply_is_refused_as_for_the_whole_chat():
    from templates import FAMILIES

    tokenizer = FAMILIES["qwen2.5"].tokenizer()  # a default system prompt: the reply starts at token 79
    chat = _long_chat()
    with pytest.raises(TokstepError, match="cuts off every supervised token .*keep at least 80 tokens"):
        truncate(build_sample(SampleSpec(chat=tuple(chat)), tokenizer), 40)  # the whole chat, then cut
    with pytest.raises(TokstepError, match="cuts off every supervised token .*keep at least 80 tokens"):
        build_sample(SampleSpec(chat=tuple(chat), truncate=40), tokenizer)


def test_a_10mb_chat_with_truncate_costs_under_a_second_and_150_mb(tmp_path):
    model = tiny.save_model_folder(
        tmp_path / "m", tiny.sentencepiece_bpe(chat_template=tiny.LLAMA3), max_positions=128
    )
    small = tmp_path / "small.json"
    small.write_text(
        json.dumps([{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}])
    )
    huge = tmp_path / "huge.json"
    huge.write_text(
        json.dumps(
            [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "I love dogs. " * 800_000}]
        )
    )
    report = ["report", "--model", model, "--truncate", "50", "--limit", "0", "--chat"]
    _, base_mb, status = _peak_rss_mb([*report, str(small)])
    assert status == 0
    _, mb, status = _peak_rss_mb([*report, str(huge)])
    assert status == 0
    assert mb - base_mb < 150, f"{mb:.0f} MB against {base_mb:.0f} MB for a two-line chat"
    assert main([*report, str(small)]) == 0  # time in this process, imports done
    started = time.monotonic()
    assert main([*report, str(huge)]) == 0
    assert time.monotonic() - started < 3  # about 0.5 s measured on a loaded machine
