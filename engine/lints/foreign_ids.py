"""`foreign-ids`: a row of ids made by another tokenizer (Llama-2 ids handed to a Llama-3 model).

Three signs, all from the tokenizer alone: decoding the ids and encoding the text again gives other ids for
most tokens (this tokenizer would never have produced them), no chat structure is recovered from them, and,
to name the likely family, another family's special / marker ids sit where that family writes them. The
families are a small table of signatures (`FAMILIES`: vocabulary size and marker ids, from the real
tokenizers); a family whose markers are this tokenizer's own is never named.
"""

from __future__ import annotations

import contextlib
import difflib
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np

AGREEMENT = 0.8  # decode -> encode keeps fewer than this share of the ids: not this tokenizer's ids
CHECKED = 256  # ids compared per row (the start is enough, and keeps a long row cheap)


@dataclass(frozen=True)
class Family:
    """A tokenizer family's signature: its vocabulary size, BOS id, and its special / marker ids by text."""

    name: str
    vocab: int
    bos: int | None
    markers: dict[str, int]


FAMILIES: tuple[Family, ...] = (
    Family("Llama-2", 32000, 1, {"<s>": 1, "</s>": 2}),
    Family(
        "Llama-3",
        128256,
        128000,
        {
            "<|begin_of_text|>": 128000,
            "<|end_of_text|>": 128001,
            "<|start_header_id|>": 128006,
            "<|end_header_id|>": 128007,
            "<|eot_id|>": 128009,
        },
    ),
    Family(
        "Qwen2.5 / Qwen3",
        151665,
        None,
        {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645},
    ),
    Family("Gemma-2", 256000, 2, {"<bos>": 2, "<eos>": 1, "<start_of_turn>": 106, "<end_of_turn>": 107}),
    Family("Gemma-3", 262145, 2, {"<bos>": 2, "<eos>": 1, "<start_of_turn>": 105, "<end_of_turn>": 106}),
    Family(
        "DeepSeek-V3",
        128815,
        0,
        {
            "<｜begin▁of▁sentence｜>": 0,
            "<｜end▁of▁sentence｜>": 1,
            "<｜User｜>": 128803,
            "<｜Assistant｜>": 128804,
        },
    ),
    Family(
        "gpt-oss",
        200019,
        199998,
        {
            "<|startoftext|>": 199998,
            "<|endoftext|>": 199999,
            "<|return|>": 200002,
            "<|start|>": 200006,
            "<|end|>": 200007,
            "<|message|>": 200008,
        },
    ),
    Family("Mistral", 131072, 1, {"<s>": 1, "</s>": 2, "[INST]": 3, "[/INST]": 4}),
    Family(
        "Phi-3",
        32011,
        1,
        {"<s>": 1, "<|endoftext|>": 32000, "<|assistant|>": 32001, "<|end|>": 32007, "<|user|>": 32010},
    ),
)

_OTHERS: WeakKeyDictionary[Any, tuple[Family, ...]] = WeakKeyDictionary()


def other_families(tokenizer: Any) -> tuple[Family, ...]:
    """The families whose marker ids are not this tokenizer's own tokens of the same text."""
    try:
        return _OTHERS[tokenizer]
    except (KeyError, TypeError):
        pass
    size = len(tokenizer)

    def own(family: Family) -> bool:
        inside = [(text, i) for text, i in family.markers.items() if i < size]
        return bool(inside) and all(tokenizer.convert_ids_to_tokens(i) == text for text, i in inside)

    others = tuple(f for f in FAMILIES if not own(f))
    with contextlib.suppress(TypeError):
        _OTHERS[tokenizer] = others
    return others


def evidence(tokenizer: Any, family: Family, ids: np.ndarray) -> int:
    """How well the family's markers fit the ids: its BOS first counts 2, its EOS last 1, each other marker
    present 1; 0 when some id is beyond the family's vocabulary."""
    if not len(ids) or int(ids.max()) >= family.vocab:
        return 0
    present = set(np.unique(ids).tolist())
    eos = {i for text, i in family.markers.items() if text in EOS_TEXTS}
    score = 2 * (family.bos is not None and int(ids[0]) == family.bos)
    score += int(ids[-1]) in eos
    score += sum(1 for i in set(family.markers.values()) - eos - {family.bos} if i in present)
    return score


EOS_TEXTS = frozenset(
    {"</s>", "<eos>", "<|end_of_text|>", "<|endoftext|>", "<｜end▁of▁sentence｜>", "<|return|>"}
)


def likely_family(tokenizer: Any, ids: np.ndarray) -> tuple[Family, int] | None:
    """The other family whose markers fit the ids best, with its evidence; the smallest vocabulary that holds
    every id breaks a tie. None when no family's markers are there."""
    best: tuple[int, int, Family] | None = None
    for family in other_families(tokenizer):
        score = evidence(tokenizer, family, ids)
        if score and (best is None or (score, -family.vocab) > (best[0], -best[1])):
            best = (score, family.vocab, family)
    return None if best is None else (best[2], best[0])


def roundtrip_agreement(tokenizer: Any, ids: np.ndarray) -> float:
    """The share of ids that decode -> encode gives back (difflib's matching ratio, first CHECKED ids)."""
    head = [int(i) for i in ids[:CHECKED] if 0 <= int(i) < len(tokenizer)]
    if not head:
        return 0.0
    text = tokenizer.decode(head, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    again = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return difflib.SequenceMatcher(None, head, again, autojunk=False).ratio()


def foreign_message(tokenizer: Any, ids: np.ndarray, has_structure: bool, own: frozenset[int]) -> str | None:
    """The `foreign-ids` message when the ids are not this tokenizer's (see the module's doc); None otherwise.
    `own`: this tokenizer's special ids (a row holding one was made by it, or by its template)."""
    if has_structure or len(ids) < 4:
        return None
    fit = likely_family(tokenizer, ids)
    family, score = fit if fit is not None else (None, 0)
    held = set(np.unique(ids).tolist()) & own
    # A special id of this tokenizer says it made the row, unless the row starts with another family's BOS that
    # is not this tokenizer's, that family's markers fit it well and explain every such id (DeepSeek-V3's BOS 0
    # and EOS 1 are Gemma's pad and EOS: a Gemma row never starts with its pad)
    if held and not (
        family is not None
        and score >= 4
        and int(ids[0]) == family.bos != getattr(tokenizer, "bos_token_id", None)
        and held <= set(family.markers.values())
    ):
        return None
    agreement = roundtrip_agreement(tokenizer, ids)
    markers_alone = family is not None and int(ids[0]) == family.bos and score >= 4  # BOS and two markers
    if not (agreement < AGREEMENT or (agreement < 1.0 and score >= 2) or markers_alone):
        return None
    named = (
        f"they look like {family.name} ids ({_markers_seen(family, ids)})"
        if family is not None
        else "no known family's markers fit"
    )
    return (
        f"these ids were made by another tokenizer: no special token or chat turn of this tokenizer is in "
        f"them, decoded and encoded again {agreement:.0%} of them come back; {named}"
    )


def _markers_seen(family: Family, ids: np.ndarray) -> str:
    present = set(np.unique(ids).tolist())
    seen = [f"{text} = {i}" for text, i in family.markers.items() if i in present]
    return ", ".join(seen[:4])
