"""Write the example files the documentation's commands use (train.jsonl, labels.jsonl, row.json).

Run from the repository root: `python docs/examples/make_examples.py`. Rows are built with the bundled
tokstep-mini tokenizer and its ChatML template; `labels.jsonl` and `row.json` hold labels with the mistakes
`tokstep lint` is there to catch (the user turn trained, a reply left masked, a reply cut before its end).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokstep.engine.defaults import DEFAULT_MODEL
from tokstep.engine.model.loading import load_tokenizer

HERE = Path(__file__).parent
CHATS = [
    [("user", "What is the capital of France?"), ("assistant", "The capital of France is Paris.")],
    [("user", "Who said: Let there be light?"), ("assistant", "God said it, in Genesis 1:3.")],
    [
        ("user", "What is the capital of France?"),
        ("assistant", "The capital of France is Paris."),
        ("user", "And of Italy?"),
        ("assistant", "Rome is the capital of Italy."),
    ],
    [
        ("user", "Recite Genesis 1:1."),
        ("assistant", "In the beginning God created the heaven and the earth."),
    ],
    [("user", "And then?"), ("assistant", "And the earth was without form, and void.")],
]


def ids_and_assistant_mask(tokenizer, chat):  # type: ignore[no-untyped-def]
    messages = [{"role": role, "content": content} for role, content in chat]
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    return list(out["input_ids"]), list(out["assistant_masks"])


def user_trained(tokenizer, ids):  # type: ignore[no-untyped-def]
    """The `<|im_start|>user\\n` pattern bug: every user turn's words trained, the replies masked."""
    start, end = (
        tokenizer.convert_tokens_to_ids("<|im_start|>"),
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )
    labels, inside = [], False
    for at, token in enumerate(ids):
        if token == start:
            inside = ids[at + 1 : at + 2] == tokenizer.encode("user", add_special_tokens=False)[:1]
            opened = at
        labels.append(token if inside and at >= opened + 3 and token != end else -100)
        if token == end:
            inside = False
    return labels


def main() -> None:
    tokenizer = load_tokenizer(str(DEFAULT_MODEL))
    rows = []
    for number, chat in enumerate(CHATS):
        ids, mask = ids_and_assistant_mask(tokenizer, chat)
        labels = [t if m else -100 for t, m in zip(ids, mask, strict=True)]
        if number in (0, 2):
            labels = user_trained(tokenizer, ids)
        if number == 4:  # the reply cut mid-word: its last tokens and the end-of-turn gone
            ids, labels = ids[:-6], labels[:-6]
        rows.append({"input_ids": ids, "labels": labels})
    (HERE / "labels.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (HERE / "row.json").write_text(json.dumps(rows[2]) + "\n")
    answer = tokenizer.encode(" And God saw", add_special_tokens=False)
    train = [
        {
            "prompt": "Question: Recite Genesis 1:3.\nAnswer:",
            "completion": " And God said, Let there be light.",
        },
        {"text": "In the beginning God created the heaven and the earth."},
        {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there."}]},
        {"input_ids": answer, "labels": [-100, *answer[1:]]},
        {"prompt": "Recite Genesis 1:2.", "completion": "And the earth was without form"},
    ]
    (HERE / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in train))


if __name__ == "__main__":
    main()
