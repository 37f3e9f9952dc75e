"""Six families' templates (from tests/templates.py), a tokenizer for each, and trainer-built rows with the
label bugs people ship (for the structure-recovery lints).

The templates are tests/templates.py's, so each family's template exists once: ChatML (Qwen2.5: default
system prompt), Llama-3 (BOS written by the template, `<|eot_id|>`, date lines), Llama-2 (`[INST]` as text,
system inside the first user turn, SentencePiece), Gemma (Gemma-3: system folded into the first user turn;
`model` role), Phi-3 (EOS at the end of a full render), Mistral (`[INST]`/`[/INST]` control tokens, no
separator between turns). Here they run on a byte-level BPE trained with every family's specials (Llama-2:
a hand-made SentencePiece), another tokenizer than tests/templates.py's.

The reference labels are built here by hand from each family's known end-of-turn text and character offsets,
independently of `engine.chat.structure` (which learns the markup by probing the template).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from templates import GEMMA3, LLAMA2, LLAMA3, MISTRAL, PHI3, QWEN25
from tiny import byte_bpe_with_specials, sentencepiece_handmade

# Each family's template exists once, in tests/templates.py (the chat-mask tests use the same strings):
# ChatML is Qwen2.5's (default system prompt), Gemma is Gemma-3's (system folded into the first user turn).
CHATML = QWEN25
GEMMA = GEMMA3

SPECIALS = [
    "<s>",
    "</s>",
    "<pad>",
    "<unk>",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<bos>",
    "<eos>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "[INST]",
    "[/INST]",
    "<think>",
    "</think>",
]

CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "You are a helpful assistant. Answer briefly and politely.",
    "And what about Germany? Berlin is the capital of Germany.",
    "system\nuser\nassistant\nmodel\ntool\nipython\nHello there, how can I help you today?",
    "the weather is sunny and the answer is yes, thank you very much",
] * 4


@dataclass(frozen=True)
class Family:
    """A template family: its template, tokenizer specials, and what ends an assistant / user turn (text)."""

    name: str
    template: str
    bos: str | None
    eos: str
    pad: str | None
    assistant_end: str  # the end-of-turn text right after an assistant's content (supervised by convention)
    user_end: str  # what the template writes right after a user's content
    assistant_header: str  # what the template writes right before an assistant's content
    system: bool  # the family takes a system message
    sentencepiece: bool = False


FAMILIES = {
    f.name: f
    for f in [
        Family(
            "chatml",
            CHATML,
            None,
            "<|im_end|>",
            "<|endoftext|>",
            "<|im_end|>",
            "<|im_end|>",
            "<|im_start|>assistant\n",
            True,
        ),
        Family(
            "llama3",
            LLAMA3,
            "<|begin_of_text|>",
            "<|eot_id|>",
            "<|eot_id|>",
            "<|eot_id|>",
            "<|eot_id|>",
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            True,
        ),
        Family(
            "llama2", LLAMA2, "<s>", "</s>", None, " </s>", " [/INST]", " [/INST] ", True, sentencepiece=True
        ),
        Family(
            "gemma",
            GEMMA,
            "<bos>",
            "<eos>",
            "<pad>",
            "<end_of_turn>",
            "<end_of_turn>",
            "<start_of_turn>model\n",
            True,
        ),
        Family(
            "phi3",
            PHI3,
            "<s>",
            "<|endoftext|>",
            "<|endoftext|>",
            "<|end|>",
            "<|end|>",
            "<|assistant|>\n",
            True,
        ),
        Family("mistral", MISTRAL, "<s>", "</s>", None, "</s>", "[/INST]", "[/INST]", False),
    ]
}


def tokenizer_for(name: str) -> Any:
    """A fresh tokenizer for the family (byte-level BPE with every family's specials; Llama-2: SentencePiece)."""
    family = FAMILIES[name]
    if family.sentencepiece:
        tok = sentencepiece_handmade()
        tok.chat_template = family.template
        return tok
    return byte_bpe_with_specials(
        tuple(SPECIALS), tuple(CORPUS), family.template, bos=family.bos, eos=family.eos, pad=family.pad
    )


CHAT = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And Germany?"},
    {"role": "assistant", "content": "Berlin is the capital of Germany."},
]


@dataclass(frozen=True)
class Row:
    """A tokenized chat with the character spans the reference labels are made from."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    rendered: str
    assistant: list[tuple[int, int, int]]  # (content start, content end, end-of-turn end) chars
    user: list[tuple[int, int, int]]  # (content start, content end, user footer end) chars
    headers: list[tuple[int, int]]  # the assistant headers' char spans (markup right before the content)

    def tokens_in(self, lo: int, hi: int) -> list[int]:
        """Token indices overlapping chars [lo, hi)."""
        return [i for i, (s, e) in enumerate(self.offsets) if s < hi and e > lo and e > s]

    def labels(self, supervised: set[int]) -> list[int]:
        return [t if i in supervised else -100 for i, t in enumerate(self.ids)]


USERS = [
    "What is the capital of France?",
    "And Germany?",
    "Thank you very much",
    "Hello there, how are you today?",
]
REPLIES = ["The capital of France is Paris.", "Berlin is the capital of Germany.", "You are welcome!", "yes"]


def chats(name: str) -> list[list[dict[str, str]]]:
    """1 to 4 exchanges, with and without a system message where the family takes one."""
    out = []
    for turns in (1, 2, 3, 4):
        for system in (False, True) if FAMILIES[name].system else (False,):
            chat = (
                [{"role": "system", "content": "You are a helpful assistant. Answer briefly."}]
                if system
                else []
            )
            for k in range(turns):
                chat += [{"role": "user", "content": USERS[k]}, {"role": "assistant", "content": REPLIES[k]}]
            out.append(chat)
    return out


def chat_for(name: str) -> list[dict[str, str]]:
    return CHAT if FAMILIES[name].system else CHAT[1:]


def render_row(
    tokenizer: Any, name: str, template_of: str | None = None, chat: list[dict[str, str]] | None = None
) -> Row:
    """Render the family's test chat (or `chat`) with the template of `template_of` (default: its own),
    tokenized as a trainer does (the rendered text, add_special_tokens=False)."""
    family = FAMILIES[template_of or name]
    chat = chat or chat_for(name)
    rendered = tokenizer.apply_chat_template(chat, tokenize=False, chat_template=family.template)
    encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    assistant, user, headers, cursor = [], [], [], 0
    for message in chat:
        content = message["content"]
        start = rendered.find(content, cursor)
        assert start >= 0, (name, content)
        end = start + len(content)
        cursor = end
        if message["role"] == "assistant":
            assert rendered.startswith(family.assistant_end, end), (name, rendered[end:])
            assistant.append((start, end, end + len(family.assistant_end)))
            assert rendered.endswith(family.assistant_header, 0, start), (name, rendered[:start])
            headers.append((start - len(family.assistant_header), start))
        elif message["role"] == "user":
            assert rendered.startswith(family.user_end, end), (name, rendered[end:])
            user.append((start, end, end + len(family.user_end)))
    return Row(
        list(encoded["input_ids"]), list(encoded["offset_mapping"]), rendered, assistant, user, headers
    )


def header_tokens(row: Row) -> set[int]:
    """Tokens wholly inside an assistant header (a token shared with the content is content)."""
    return {
        i
        for lo, hi in row.headers
        for i in row.tokens_in(lo, hi)
        if row.offsets[i][0] >= lo and row.offsets[i][1] <= hi
    }


def correct(row: Row) -> set[int]:
    """Reference supervision: each assistant content and its end-of-turn text."""
    return {i for start, _end, eot in row.assistant for i in row.tokens_in(start, eot)}


OTHER = {
    "chatml": "phi3",
    "mistral": "phi3",
}  # whose template builds the labels in the "other template" bug (default chatml;
# not llama3, whose date lines make its render so long that the labels would fall past the ids)


def bug_rows(tokenizer: Any, name: str) -> dict[str, tuple[list[int], list[int], set[int]]]:
    """Each bug as (input_ids, labels, the positions a lint must name), built from char offsets by hand."""
    row = render_row(tokenizer, name)
    good = correct(row)
    user = {i for start, end, _ in row.user for i in row.tokens_in(start, end)}
    user_turns = {i for start, _, footer in row.user for i in row.tokens_in(start, footer)}
    firsts = {row.tokens_in(start, end)[0] for start, end, _ in row.assistant}
    ends = {i for _, end, eot in row.assistant for i in row.tokens_in(end, eot)}
    n = len(row.ids)
    after = {max(row.tokens_in(start, eot)) + 1 for start, _, eot in row.assistant} - {n}
    shifted = {i + 1 for i in good if i + 1 < n}
    headers = header_tokens(row)
    other_name = OTHER.get(name, "chatml")
    other = render_row(tokenizer, name, "chatml" if FAMILIES[name].sentencepiece else other_name)
    other_labels = other.labels(correct(other))
    other_labels = (other_labels + [-100] * n)[:n]
    differ = {
        i for i, (t, label) in enumerate(zip(row.ids, other_labels, strict=True)) if label not in (-100, t)
    }
    return {
        "clean": (row.ids, row.labels(good), set()),
        "user-header": (row.ids, row.labels(user_turns), user),
        "off-by-one": (row.ids, row.labels(shifted), firsts | after),
        "eot-masked": (row.ids, row.labels(good - ends), ends),
        "header": (row.ids, row.labels(good | headers), headers),
        "other-template": (row.ids, other_labels, differ),
    }


BUG_LINT = {
    "user-header": "trains-on-user",
    "off-by-one": "mask-off-by-one",
    "eot-masked": "eos-masked",
    "header": "trains-on-markup",
    "other-template": "labels-other-template",
}


def mask_from_other_template(tokenizer: Any, name: str) -> tuple[list[int], list[int], set[int]]:
    """ids rendered with the family's template; the mask positions computed on another template's rendering
    (labels copy these ids there). Returns (ids, labels, tokens whose supervision is wrong)."""
    row = render_row(tokenizer, name)
    other_name = OTHER.get(name, "chatml")
    other = render_row(tokenizer, name, "chatml" if FAMILIES[name].sentencepiece else other_name)
    mask = correct(other)
    labels = [t if i in mask else -100 for i, t in enumerate(row.ids)]
    wrong = {i for i in range(1, len(row.ids)) if (i in mask) != (i in correct(row))}
    return row.ids, labels, wrong
