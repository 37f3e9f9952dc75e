"""The token inspector: one token's id, raw piece, text, UTF-8 bytes, and the character it helps complete.

Byte-level BPE (GPT-2 `Ġthe`) and SentencePiece byte fallback (`<0xEB>`) can split one character over
several tokens; decoding such a token alone gives U+FFFD. We work with the token's real bytes instead
and buffer its neighbours' bytes until the character is whole. Also: does decode(encode(text)) give
the text back, and where not?
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from weakref import WeakKeyDictionary

BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")  # SentencePiece byte fallback
SPACE_MARK = "▁"  # SentencePiece's visible space
MAX_CHAR_BYTES = 4  # a UTF-8 character is at most 4 bytes, so 3 neighbours each side always suffice


@dataclass(frozen=True)
class TokenInfo:
    """Everything the inspector shows for the token at `index`."""

    index: int
    token_id: int
    piece: str  # convert_ids_to_tokens: `Ġthe`, `▁the`, `<0xEB>`
    text: str  # this token decoded on its own (may be U+FFFD when partial)
    utf8_hex: str  # this token's bytes, e.g. "eb 9e" ("" for ids beyond the tokenizer)
    special: bool
    partial: bool  # its bytes are only part of a character
    completes: str  # the whole character(s) its bytes belong to (never U+FFFD; `\xNN` if never completed)
    span: tuple[int, int]  # [start, end) token indices whose bytes form `completes`


@dataclass(frozen=True)
class RoundTrip:
    """Whether decode(encode(text)) == text, and where it first differs."""

    ok: bool
    text: str
    decoded: str
    first_difference: int | None  # character index in `text`, None when ok
    token_index: int | None  # the token covering that character (no special tokens added), when known
    expected: str  # a few characters of `text` from the difference on
    got: str  # the same stretch of `decoded`


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the printable character that stands for each byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


@dataclass(frozen=True)
class _Scheme:
    """How one tokenizer's pieces map to bytes, plus per-tokenizer caches (specials, bytes per id)."""

    byte_level: bool  # pieces are GPT-2 byte-level characters
    metaspace: bool  # `▁` stands for a space
    specials: frozenset[int]
    bytes_of: dict[int, bytes] = field(default_factory=dict, compare=False)


_SCHEMES: WeakKeyDictionary[Any, _Scheme] = WeakKeyDictionary()


def _types_in(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            found.add(node["type"])
        for value in node.values():
            found |= _types_in(value)
    elif isinstance(node, list):
        for value in node:
            found |= _types_in(value)
    return found


def _scheme(tokenizer: Any) -> _Scheme:
    """How this tokenizer's pieces map to bytes, read from its decoder (cached per tokenizer)."""
    try:
        return _SCHEMES[tokenizer]
    except (KeyError, TypeError):
        pass
    types: set[str] = set()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is not None:
        try:
            types = _types_in(json.loads(decoder.__getstate__()))
        except Exception:  # noqa: BLE001 - unknown decoder: fall back to piece heuristics
            types = {type(decoder).__name__}
    specials = frozenset(int(i) for i in (getattr(tokenizer, "all_special_ids", None) or []))
    scheme = _Scheme(
        byte_level="ByteLevel" in types,
        metaspace="Metaspace" in types or "Replace" in types,
        specials=specials,
    )
    with contextlib.suppress(TypeError):
        _SCHEMES[tokenizer] = scheme
    return scheme


def special_ids(tokenizer: Any) -> frozenset[int]:
    """The tokenizer's special token ids (read once per tokenizer)."""
    return _scheme(tokenizer).specials


def token_bytes(tokenizer: Any, token_id: int) -> bytes:
    """The bytes one token contributes to the text (special tokens: their name's UTF-8). Cached per id."""
    scheme = _scheme(tokenizer)
    token_id = int(token_id)
    cached = scheme.bytes_of.get(token_id)
    if cached is None:
        cached = scheme.bytes_of[token_id] = _token_bytes(tokenizer, token_id, scheme)
    return cached


def _token_bytes(tokenizer: Any, token_id: int, scheme: _Scheme) -> bytes:
    if not 0 <= token_id < len(tokenizer):
        return b""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    piece = piece if isinstance(piece, str) else str(piece)
    if token_id in scheme.specials:
        return piece.encode("utf-8")
    match = BYTE_PIECE.match(piece)
    if match:
        return bytes([int(match.group(1), 16)])
    if scheme.byte_level:
        table = _unicode_to_byte()
        if all(ch in table for ch in piece):
            return bytes(table[ch] for ch in piece)
    if scheme.metaspace or SPACE_MARK in piece:
        return piece.replace(SPACE_MARK, " ").encode("utf-8")
    text = tokenizer.decode([int(token_id)], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return text.encode("utf-8")


def _char_length(lead: int) -> int:
    """Bytes in the UTF-8 character that starts with `lead` (1 for a stray continuation byte)."""
    if lead >= 0xF0:
        return 4
    if lead >= 0xE0:
        return 3
    if lead >= 0xC0:
        return 2
    return 1


def _is_continuation(byte: int) -> bool:
    return 0x80 <= byte < 0xC0


def _is_partial(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def inspect_token(tokenizer: Any, input_ids: Sequence[int], index: int) -> TokenInfo:
    """Inspect `input_ids[index]`, using its neighbours to complete a split character."""
    ids = [int(i) for i in input_ids]
    if not 0 <= index < len(ids):
        raise IndexError(f"token index {index} outside 0..{len(ids) - 1}")
    token_id = ids[index]
    in_vocab = 0 <= token_id < len(tokenizer)
    special = token_id in special_ids(tokenizer)
    if not in_vocab:
        name = f"<id {token_id}: beyond tokenizer>"
        return TokenInfo(index, token_id, name, name, "", False, False, name, (index, index + 1))
    piece = tokenizer.convert_ids_to_tokens(token_id)
    piece = piece if isinstance(piece, str) else str(piece)
    text = tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    own = token_bytes(tokenizer, token_id)
    hex_bytes = own.hex(" ")
    if special or not _is_partial(own):
        return TokenInfo(index, token_id, piece, text, hex_bytes, special, False, text, (index, index + 1))
    completes, span = _complete_character(tokenizer, ids, index)
    return TokenInfo(index, token_id, piece, text, hex_bytes, special, True, completes, span)


def _complete_character(tokenizer: Any, ids: list[int], index: int) -> tuple[str, tuple[int, int]]:
    """Buffer the bytes of the neighbours (never across special tokens) until the characters are whole."""
    specials = special_ids(tokenizer)
    first = index
    while first > 0 and index - first < MAX_CHAR_BYTES - 1 and ids[first - 1] not in specials:
        first -= 1
    last = index
    while last < len(ids) - 1 and last - index < MAX_CHAR_BYTES - 1 and ids[last + 1] not in specials:
        last += 1
    pieces = [token_bytes(tokenizer, ids[i]) for i in range(first, last + 1)]
    starts = [0]
    for chunk in pieces:
        starts.append(starts[-1] + len(chunk))
    buffer = b"".join(pieces)
    begin, end = starts[index - first], starts[index - first + 1]  # this token's bytes: buffer[begin:end]
    while begin > 0 and _is_continuation(buffer[begin]):  # back to the lead byte of its first character
        begin -= 1
    lead = end - 1
    while lead > begin and _is_continuation(buffer[lead]):  # the lead byte of its last character
        lead -= 1
    end = max(end, min(lead + _char_length(buffer[lead]), len(buffer)))
    span_start = next(i for i in range(len(pieces)) if starts[i + 1] > begin) + first
    span_end = next(i for i in range(len(pieces)) if starts[i + 1] >= end) + first + 1
    return buffer[begin:end].decode("utf-8", errors="backslashreplace"), (span_start, span_end)


def roundtrip(tokenizer: Any, text: str, context: int = 12) -> RoundTrip:
    """Encode `text` (no special tokens added), decode it back, and compare."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    decoded = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if decoded == text:
        return RoundTrip(True, text, decoded, None, None, "", "")
    at = next((i for i, (a, b) in enumerate(zip(text, decoded, strict=False)) if a != b), None)
    if at is None:
        at = min(len(text), len(decoded))
    token_index = None
    for i, (start, end) in enumerate(encoded.get("offset_mapping") or []):
        if start <= at < max(end, start + 1):
            token_index = i
            break
    return RoundTrip(
        False, text, decoded, at, token_index, text[at : at + context], decoded[at : at + context]
    )


def split_characters(tokenizer: Any, input_ids: Sequence[int], limit: int = 20) -> list[TokenInfo]:
    """The characters split over several tokens (one TokenInfo per split, for its first token), in order."""
    ids = [int(i) for i in input_ids]
    found: list[TokenInfo] = []
    index = 0
    while index < len(ids) and len(found) < limit:
        info = inspect_token(tokenizer, ids, index)
        if info.partial:
            found.append(info)
            index = max(info.span[1], index + 1)
        else:
            index += 1
    return found
