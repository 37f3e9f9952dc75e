"""What the lints need to know about a tokenizer (cached per tokenizer), and helpers every lint module uses."""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np

from tokstep.engine.chat.structure import TurnLayout
from tokstep.engine.inputs.sample import IGNORE_INDEX, Sample
from tokstep.engine.model.inspector import special_ids, token_bytes
from tokstep.engine.model.tokens import make_visible


@dataclass(frozen=True)
class TokenizerFacts:
    """What the lints need to know about a tokenizer, computed once."""

    size: int
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    unk_id: int | None
    specials: frozenset[int]
    special_texts: tuple[str, ...]  # every special token's text, longest first
    adds_bos: bool  # tokenizer(text) prepends BOS by default
    has_template: bool
    template_writes_bos: bool
    end_ids: frozenset[int]  # EOS plus the template's end-of-turn token
    names: dict[int, str] = field(default_factory=dict, compare=False)  # special id -> its text
    describe: Any = field(
        default=None, compare=False
    )  # any other id -> its visible text (`↵`), never a bare id

    def name(self, token_id: int | None) -> str:
        if token_id is None:
            return "none"
        known = self.names.get(token_id)
        if known is None:
            known = self.describe(token_id) if self.describe is not None else str(token_id)
        return f"`{known}`"


_FACTS: WeakKeyDictionary[Any, TokenizerFacts] = WeakKeyDictionary()
PROBE = [
    {"role": "user", "content": "tokstep probe question"},
    {"role": "assistant", "content": "tokstep probe"},
]


def tokenizer_facts(tokenizer: Any) -> TokenizerFacts:
    """The facts of this tokenizer, computed once and cached per tokenizer."""
    try:
        return _FACTS[tokenizer]
    except (KeyError, TypeError):
        pass
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    with_special = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    without = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    adds_bos = bos is not None and bool(with_special) and with_special[0] == bos and without[:1] != [bos]
    specials = special_ids(tokenizer)
    special_texts = tuple(sorted({str(t) for t in tokenizer.all_special_tokens if t}, key=len, reverse=True))
    has_template = bool(getattr(tokenizer, "chat_template", None))
    writes_bos, end_ids = False, {eos} if eos is not None else set()
    if has_template:
        try:
            rendered = tokenizer.apply_chat_template(PROBE, tokenize=False)
            bos_text = tokenizer.bos_token
            writes_bos = bool(bos_text) and rendered.startswith(bos_text)
            after = rendered[rendered.rindex("tokstep probe") + len("tokstep probe") :]
            tail = list(tokenizer(after, add_special_tokens=False)["input_ids"])
            marks = specials | set(tokenizer.added_tokens_decoder)  # Phi-3's `<|end|>` is added, not special
            end_ids |= {next(i for i in tail if i in marks)} if any(i in marks for i in tail) else set()
        except Exception:  # noqa: BLE001 - a template that rejects the probe: EOS alone ends turns
            pass
    facts = TokenizerFacts(
        size=len(tokenizer),
        bos_id=bos,
        eos_id=eos,
        pad_id=tokenizer.pad_token_id,
        unk_id=tokenizer.unk_token_id,
        specials=specials,
        special_texts=special_texts,
        adds_bos=adds_bos,
        has_template=has_template,
        template_writes_bos=writes_bos,
        end_ids=frozenset(end_ids),
        names={
            i: str(tokenizer.convert_ids_to_tokens(i)) for i in specials | end_ids if 0 <= i < len(tokenizer)
        },
        describe=_describer(tokenizer),
    )
    with contextlib.suppress(TypeError):
        _FACTS[tokenizer] = facts
    return facts


def _describer(tokenizer: Any) -> Any:
    """id -> the token's visible text, holding the tokenizer weakly (the facts are cached per tokenizer)."""
    try:
        held = weakref.ref(tokenizer)
    except TypeError:
        return lambda token_id: visible_piece(tokenizer, token_id)
    return lambda token_id: visible_piece(held(), token_id) if held() is not None else str(token_id)


def visible_piece(tokenizer: Any, token_id: int) -> str:
    """A token's text as shown to a user (specials by name, whitespace made visible)."""
    if not 0 <= token_id < len(tokenizer):
        return f"<id {token_id}>"
    if token_id in special_ids(tokenizer):
        return str(tokenizer.convert_ids_to_tokens(int(token_id)))
    text = token_bytes(tokenizer, token_id).decode("utf-8", errors="backslashreplace")
    return make_visible(text)


def token_name(tokenizer: Any, facts: TokenizerFacts, token_id: int) -> str:
    """A token as text for a message: a special one by name, any other as its visible text (`↵`), never an id."""
    return facts.name(token_id) if token_id in facts.names else repr(visible_piece(tokenizer, token_id))


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal [start, end) runs of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def supervised_runs(sample: Sample) -> list[tuple[int, int]]:
    """Maximal [start, end) runs of supervised tokens (index >= 1: labels[0] is never used)."""
    counted = sample.labels != IGNORE_INDEX  # (N,) a fresh array
    counted[:1] = False
    return true_runs(counted)


def is_blank(tokenizer: Any, token_id: int, facts: TokenizerFacts) -> bool:
    """A whitespace-only token (not a special one)."""
    if token_id in facts.specials or not 0 <= token_id < facts.size:
        return False
    data = token_bytes(tokenizer, token_id)
    return bool(data) and not data.strip()


def is_sft(sample: Sample) -> bool:
    """Samples where an answer is carved out (prompt masked): EOS at the end of the answer matters."""
    if sample.kind in ("prompt+answer", "chat"):
        return True
    return sample.kind == "ids" and bool((sample.labels[1:] == IGNORE_INDEX).any())


def fmt_positions(positions: list[int] | tuple[int, ...]) -> str:
    """The first five positions, and how many in all when there are more."""
    shown = ", ".join(str(p) for p in positions[:5])
    return shown + (f", … ({len(positions)} in all)" if len(positions) > 5 else "")


def recovered_layout(sample: Sample) -> TurnLayout | None:
    """The chat turns recovered from an ids row's ids (chats built from messages carry a layout too, located
    from the messages: their labels are tokstep's own, the chat lints check those)."""
    return sample.layout if sample.kind in ("ids", "batch row") else None
