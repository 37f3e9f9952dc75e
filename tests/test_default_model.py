"""The bundled default model (engine/assets/tokstep-mini) loads offline and is not junk.

Built by scripts/train_default_model.py; see the model card in that folder.
"""

from __future__ import annotations

import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).parents[1]
MODEL_DIR = ROOT / "engine/assets/tokstep-mini"
DEMO_DIR = ROOT / "engine/assets/demo"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(MODEL_DIR)
    m.eval()
    return m


def test_files_and_size():
    for name in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "heldout.txt",
    ):
        assert (MODEL_DIR / name).is_file(), name
    assert (MODEL_DIR / "model.safetensors").stat().st_size < 16 * 2**20
    assert (MODEL_DIR / "heldout.txt").stat().st_size <= 30_000


def test_is_llama(model, tokenizer):
    from transformers import LlamaForCausalLM

    assert isinstance(model, LlamaForCausalLM)
    assert model.config.vocab_size == len(tokenizer)
    assert next(model.parameters()).dtype == torch.float32
    for cfg in (model.config, model.generation_config):
        assert cfg.bos_token_id == tokenizer.bos_token_id
        assert cfg.eos_token_id == tokenizer.eos_token_id
        assert cfg.pad_token_id == tokenizer.pad_token_id


def test_tokenizer_specials(tokenizer):
    ids = tokenizer("In the beginning")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-1] != tokenizer.eos_token_id
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}) == 3
    for t in ("<|im_start|>", "<|im_end|>"):
        assert tokenizer.convert_tokens_to_ids(t) not in (None, tokenizer.unk_token_id)
    # byte-level BPE: GPT-2 style pieces, lossless round trip
    assert "ĠGod" in tokenizer.get_vocab()
    text = "And God said, Let there be light: and there was light.\n"
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def test_chat_template_assistant_mask(tokenizer):
    chat = json.loads((DEMO_DIR / "chat.json").read_text())
    assert tokenizer.chat_template
    text = tokenizer.apply_chat_template(chat, tokenize=False)
    assert "<s>" not in text and text.startswith("<|im_start|>user\n")
    out = tokenizer.apply_chat_template(
        chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    mask = out["assistant_masks"]
    assert len(mask) == len(out["input_ids"]) and sum(mask) > 0
    masked = [i for i, m in zip(out["input_ids"], mask, strict=True) if m]
    assert tokenizer.decode(masked) == chat[-1]["content"] + "<|im_end|>"
    gen = tokenizer.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
    assert gen.endswith("<|im_start|>assistant\n")


def heldout_loss(model, tokenizer) -> float:
    """Token-weighted mean of HF's own loss over heldout.txt, chapter by chapter, in max-position windows."""
    window = model.config.max_position_embeddings
    docs = [d for d in (MODEL_DIR / "heldout.txt").read_text().split("\n\n") if d.strip()]
    total, count = 0.0, 0
    with torch.no_grad():
        for doc in docs:
            ids = tokenizer(doc)["input_ids"]
            for s in range(0, len(ids), window):
                chunk = ids[s : s + window]
                if len(chunk) < 2:
                    continue
                x = torch.tensor([chunk])
                total += model(input_ids=x, labels=x).loss.item() * (len(chunk) - 1)
                count += len(chunk) - 1
    return total / count


def test_heldout_loss(model, tokenizer):
    loss = heldout_loss(model, tokenizer)
    assert loss <= 0.6 * math.log(model.config.vocab_size), loss


def test_demo_samples(tokenizer):
    qa = json.loads((DEMO_DIR / "qa.json").read_text())
    assert set(qa) == {"prompt", "answer"} and qa["prompt"] and qa["answer"]
    # the prompt tokens are a prefix of prompt+answer, so answer-only loss is well defined
    p = tokenizer(qa["prompt"])["input_ids"]
    full = tokenizer(qa["prompt"] + qa["answer"])["input_ids"]
    assert full[: len(p)] == p and len(full) > len(p)
    assert (DEMO_DIR / "text.txt").read_text().strip()
    chat = json.loads((DEMO_DIR / "chat.json").read_text())
    assert [m["role"] for m in chat] == ["user", "assistant"]
