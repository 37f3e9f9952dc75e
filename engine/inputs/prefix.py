"""--truncate on a huge text: tokenize a growing prefix of it, never all of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

Encoded = TypeVar("Encoded")

TRUNCATE_MARGIN = 64  # tokens past the kept ones before a prefix's cut: its kept tokens are the whole text's


def prefix_chars(keep: int) -> int:
    """The first prefix of a text tried for --truncate `keep` (checks of the kept text read this much)."""
    return max(4096, 16 * keep)


def encode_prefix(
    encode: Callable[[str], Encoded], count: Callable[[Encoded], int], text: str, keep: int
) -> tuple[Encoded, int] | None:
    """`encode` of the first prefix of `text` (growing 4x at a time) that gives `keep` + TRUNCATE_MARGIN tokens,
    and its length in characters: the cut then lies far past the kept tokens, which are the whole text's.
    None: the text is short, encode it whole."""
    chars = prefix_chars(keep)
    while chars < len(text):
        encoded = encode(text[:chars])
        if count(encoded) >= keep + TRUNCATE_MARGIN:
            return encoded, chars
        chars *= 4
    return None
