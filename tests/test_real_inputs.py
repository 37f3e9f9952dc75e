"""Bytes in = bytes tokenized (--file), only causal models (the causality probe), path-like model names."""

from __future__ import annotations

import time

import pytest
import tiny
from tiny import byte_bpe, sentencepiece_handmade

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.spec import SampleSpec, build_sample, read_text
from tokstep.engine.lints.sample_lints import lint_sample
from tokstep.tui.cli.main import main


@pytest.mark.parametrize("make", [byte_bpe, sentencepiece_handmade], ids=["byte-level", "sentencepiece"])
def test_crlf_and_cr_files_are_tokenized_as_their_bytes(make, tmp_path):
    tokenizer = make()
    ids = {}
    for name, newline in (("lf", b"\n"), ("crlf", b"\r\n"), ("cr", b"\r")):
        path = tmp_path / f"{name}.txt"
        path.write_bytes(b"the cat sat" + newline + b"on the mat" + newline)
        text = read_text(path)
        assert text.encode("utf-8") == path.read_bytes()  # every byte kept
        spec = SampleSpec(text=text)
        sample = build_sample(spec, tokenizer)
        ids[name] = sample.input_ids.tolist()
        assert tokenizer.decode(sample.input_ids, skip_special_tokens=True) == text
        assert not [f for f in lint_sample(tokenizer, sample, spec) if f.code == "no-roundtrip"]
    assert ids["lf"] != ids["crlf"] and ids["lf"] != ids["cr"] and ids["crlf"] != ids["cr"]


def test_bom_is_kept_and_said(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfthe cat")
    text = read_text(path)
    assert text == "\ufeffthe cat"
    sample = build_sample(SampleSpec(text=text), byte_bpe())
    assert any("BOM" in note for note in sample.notes)
    assert byte_bpe().decode(sample.input_ids, skip_special_tokens=True) == text


def test_invalid_utf8_names_the_byte_offset(tmp_path, capsys):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf" + b"\xe9 ok")
    with pytest.raises(TokstepError, match=r"not valid UTF-8: byte 3 \(0xe9\)"):
        read_text(path)
    assert main(["report", "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "byte 3 (0xe9)" in err and "Traceback" not in err


def test_bidirectional_model_is_refused_by_the_causality_probe():
    from transformers import BertConfig, BertLMHeadModel

    from tokstep.engine.model.loading import wrap_model
    from tokstep.engine.model.trace import trace_sample

    tokenizer = tiny.byte_level_bpe()
    config = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    config.update(intermediate_size=64, max_position_embeddings=64)
    sample = build_sample(SampleSpec(text="I love dogs and I love cats."), tokenizer)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    encoder = wrap_model(BertLMHeadModel(BertConfig(is_decoder=False, **config)), tokenizer, "bert-encoder")
    with pytest.raises(TokstepError, match="not a causal language model: changing the last token moved"):
        trace_sample(encoder, sample)
    torch.manual_seed(0)
    decoder = wrap_model(BertLMHeadModel(BertConfig(is_decoder=True, **config)), tokenizer, "bert-decoder")
    trace = trace_sample(decoder, sample)  # the same class, causal: accepted
    assert len(trace.logprob) == len(sample) - 1


@pytest.mark.parametrize("name", ["./typo", "a/b/c", "~/no-such-model-here", "tests/no-such-model"])
def test_path_like_model_names_fail_at_once(name, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    assert main(["report", "--model", name, "--text", "hi there"]) == 2
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert err == f"tokstep: error: no such folder: {name}\n"


def test_org_slash_name_offline_and_not_cached_fails_at_once(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    started = time.monotonic()
    assert main(["report", "--model", "a/b", "--text", "hi there"]) == 2
    assert time.monotonic() - started < 5
    assert "no such folder: a/b (nor a hub model in the local cache" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (42, "not a number"),
        (None, "not null"),
        ({"text": "x"}, "not an object"),
        ([{"text": "x"}], 'a "type"'),
    ],
)
def test_bad_chat_content_is_one_line_before_the_model_loads(content, words, tmp_path, capsys):
    import json

    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps([{"role": "user", "content": content}, {"role": "assistant", "content": "x"}]))
    started = time.monotonic()
    assert main(["report", "--model", str(tmp_path / "never-loaded"), "--chat", str(chat)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokstep: error: chat message 0") and words in err and err.count("\n") == 1
    assert time.monotonic() - started < 5


def test_openai_text_parts_run_through_report(tmp_path, capsys):
    import json

    chat = tmp_path / "chat.json"
    parts = [{"type": "text", "text": "What is the capital of France?"}]
    chat.write_text(
        json.dumps([{"role": "user", "content": parts}, {"role": "assistant", "content": "Paris."}])
    )
    assert main(["report", "--chat", str(chat)]) == 0  # the bundled model's ChatML template
    out = capsys.readouterr().out
    assert "content parts joined" in out and "✓ match" in out
