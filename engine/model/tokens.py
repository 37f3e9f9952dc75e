"""Token ids to strings, on demand and cached: raw pieces, decoded text, and a visible form for terminals."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from tokstep.engine.model.inspector import special_ids, token_bytes

VISIBLE = {" ": "␣", "\n": "↵", "\t": "→", "\r": "␍"}


def make_visible(text: str) -> str:
    """Show whitespace: space ␣, newline ↵, tab →, carriage return ␍; other control chars as \\xNN."""
    out = []
    for ch in text:
        if ch in VISIBLE:
            out.append(VISIBLE[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


class TokenTexts:
    """Cached per-id strings for one tokenizer. Ids beyond the tokenizer (padded vocab rows) are named."""

    def __init__(self, tokenizer: Any, model_vocab_size: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.size = len(tokenizer)
        self.model_vocab_size = model_vocab_size or self.size
        self.special_ids = special_ids(tokenizer)
        self.piece = lru_cache(maxsize=65536)(self._piece)
        self.text = lru_cache(maxsize=65536)(self._text)

    def in_tokenizer(self, token_id: int) -> bool:
        return 0 <= token_id < self.size

    def is_special(self, token_id: int) -> bool:
        return token_id in self.special_ids

    def _piece(self, token_id: int) -> str:
        """The raw vocabulary entry, e.g. `Ġthe`, `▁the`, `<0xEB>`."""
        if not self.in_tokenizer(token_id):
            return f"<id {token_id}: beyond tokenizer>"
        piece = self.tokenizer.convert_ids_to_tokens(int(token_id))
        return piece if isinstance(piece, str) else str(piece)

    def _text(self, token_id: int) -> str:
        """The text this token adds, from its real bytes: a leading space kept (`▁`, `Ġ`), and a partial
        UTF-8 character as backslash escapes (`\\xe2`) instead of U+FFFD."""
        if not self.in_tokenizer(token_id):
            return self._piece(token_id)
        return token_bytes(self.tokenizer, int(token_id)).decode("utf-8", errors="backslashreplace")

    def visible(self, token_id: int) -> str:
        """Decoded text with whitespace made visible; special tokens as their name."""
        if self.is_special(token_id) or not self.in_tokenizer(token_id):
            return self.piece(token_id)
        text = self.text(token_id)
        return make_visible(text) if text else "∅"


TRAINED_GAP = " ⋯ "  # between separate supervised spans (e.g. two assistant turns)


def trained_text(tokenizer: Any, labels: Any) -> str:
    """What a sample trains the model to say: its supervised labels (labels[1:] != -100) decoded, span by
    span, spans joined by ` ⋯ `. Special tokens are kept; ids outside the tokenizer read `<id N>`."""
    size = len(tokenizer)
    values = [int(v) for v in labels]
    spans: list[list[int]] = []
    previous = False
    for i, label in enumerate(values):
        counted = i > 0 and label != -100  # labels[0] is never a target
        if counted and not previous:
            spans.append([])
        if counted:
            spans[-1].append(label)
        previous = counted
    parts = []
    for span in spans:
        text, run = [], []
        for label in span:
            if 0 <= label < size:
                run.append(label)
                continue
            if run:
                text.append(tokenizer.decode(run, skip_special_tokens=False))
                run = []
            text.append(f"<id {label}>")
        if run:
            text.append(tokenizer.decode(run, skip_special_tokens=False))
        parts.append("".join(text))
    return TRAINED_GAP.join(parts)
