"""Recover a chat's turns from token ids alone, for rows a trainer already tokenized.

The template's markup is learned, once per tokenizer, by rendering probe conversations through the
tokenizer's own chat template (no table of known templates): where each probe message's content lands in
the rendered text tells which tokens the template writes before a turn (its role header), right after it
(the end-of-turn) and in between. `recover_layout(tokenizer, ids)` then finds those token sequences in a
row and attributes every token to a role (system, user, assistant, tool) and a part of its turn (header,
content, end-of-turn, other template markup).

The expected mask follows the one convention written at the top of `engine.chat.masks` (`CONVENTION`,
`convention(eot, inserted)`), with the same flags: an assistant turn's content is supervised, and its
end-of-turn token(s) too unless `eot="mask"` (`--eot mask`); role headers, what follows the end-of-turn
(ChatML's newline) and every other role are not. Tokens the template inserts inside an assistant turn (an
empty think block) are expected trained or masked as `inserted` says, but a row that does the other is not
flagged (trainers differ there, and ids alone cannot tell a think wrapper from the reply's words).

`TurnLayout` is the per-token vocabulary (role, part of its turn) that chats built from messages share:
`engine.chat.masks.derive` produces one too (`ChatLayout.turn_layout`), so both colour and lint alike.

numpy only: no torch, so screens may import the result types.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np

from tokstep.engine.chat.masks import render, try_render
from tokstep.engine.chat.turns import NO_ROLE, ROLES, Part, Turn, TurnLayout
from tokstep.engine.model.inspector import special_ids, token_bytes
from tokstep.engine.policies import CONVENTION, Policy, convention

__all__ = [
    "CONVENTION",
    "NO_ROLE",
    "ROLES",
    "Part",
    "TurnLayout",
    "convention",
    "layout_of",
    "recover_layout",
]

# ---------------------------------------------------------------- learning the markup from probes


@dataclass(frozen=True)
class Markup:
    """The token sequences a template writes around turns, learned from probe renders."""

    headers: tuple[tuple[str, tuple[int, ...]], ...]  # (role, ids) longest first
    footers: dict[str, tuple[tuple[int, ...], ...]]  # role -> what follows its content, longest first
    ends: dict[str, int]  # role -> how many leading footer tokens are its end-of-turn
    separators: tuple[tuple[str, tuple[int, ...], str], ...]  # (role, ids, next role): a headerless next turn
    inserted: tuple[tuple[int, ...], ...]  # markup inserted at the start of an assistant turn
    blank: Any = field(default=None, compare=False)  # id -> whitespace only (after a header: header's)
    # roles whose content the tokenizer starts with a space of no character of its own (SentencePiece's `▁`
    # after a special token): a lone `▁` right before such content is the content's, as engine.chat.masks says
    leading: frozenset[str] = frozenset()
    # a system prompt with no header of its own: "leads" (DeepSeek: the text between BOS and the first header),
    # or "folded" into the first user turn (Gemma-3), then `system_separator` (`\n\n`), then the user's words
    system_place: str | None = None
    system_separator: tuple[int, ...] = ()

    @property
    def usable(self) -> bool:
        return bool(self.headers) or bool(self.separators)


_PROBES: tuple[tuple[tuple[str, str], ...], ...] = (
    (
        ("user", "tokstep user probe one"),
        ("assistant", "tokstep assistant probe one"),
        ("user", "tokstep user probe two"),
        ("assistant", "tokstep assistant probe two"),
    ),
    (
        ("system", "tokstep system probe"),
        ("user", "tokstep user probe one"),
        ("assistant", "tokstep assistant probe one"),
        ("user", "tokstep user probe two"),
        ("assistant", "tokstep assistant probe two"),
    ),
    (
        ("user", "tokstep user probe one"),
        ("assistant", "tokstep assistant probe one"),
        ("tool", "tokstep tool probe"),
        ("assistant", "tokstep assistant probe two"),
    ),
)

Segment = tuple[str | None, tuple[int, ...], str | None]  # (role before, markup ids, role after)


_PROBE_CALL_ID = "tokstep01"  # 9 characters: Mistral-Nemo's template refuses a tool result with any other id


def _chat(messages: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"role": role, "content": content, **({"tool_call_id": _PROBE_CALL_ID} if role == "tool" else {})}
        for role, content in messages
    ]


def _segments(
    tokenizer: Any,
    rendered: str,
    messages: Sequence[tuple[str, str]],
    blank: Any,
    leading: set[str],
) -> list[Segment]:
    """The markup between consecutive message contents (and before the first / after the last), as ids.
    Adds to `leading` the roles whose content's first token carries a space the text does not have."""
    found = sorted((rendered.find(content), len(content), role) for role, content in messages)
    if not found or found[0][0] < 0:  # the template dropped a message (a role it ignores): no clean evidence
        return []
    encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), list(encoded["offset_mapping"])
    starts = {start: role for start, _, role in found}
    for token, (s, _e) in zip(ids, offsets, strict=True):
        if s in starts and not rendered[s].isspace() and token_bytes(tokenizer, token)[:1] == b" ":
            leading.add(starts[s])
    bounds = [(0, found[0][0], None, found[0][2])]
    for (start, size, role), (next_start, _, next_role) in zip(found, found[1:], strict=False):
        bounds.append((start + size, next_start, role, next_role))
    last_start, last_size, last_role = found[-1]
    bounds.append((last_start + last_size, len(rendered), last_role, None))
    segments = []
    for lo, hi, before, after in bounds:
        inside = tuple(i for i, (s, e) in zip(ids, offsets, strict=True) if lo <= s and e <= hi and e > s)
        segments.append((before, inside if after is None else _strip_blanks(inside, blank), after))
    return segments


def _system_place(
    tokenizer: Any, headers: dict[str, tuple[int, ...]], blank: Any
) -> tuple[str | None, tuple[int, ...]]:
    """Where a template with no system header writes the system prompt: ("leads", ()) when it is the text before
    the first header (the chat without it renders the same, less that text), ("folded", separator ids) when
    it opens the first user turn and plain text (`\n\n`) parts it from the user's words; (None, ()) else."""
    system, rest = ("system", "tokstep system probe"), _PROBES[0][:2]
    with_system, without = try_render(tokenizer, _chat((system, *rest))), try_render(tokenizer, _chat(rest))
    if with_system is None or without is None or with_system.count(system[1]) != 1:
        return None, ()
    k = with_system.index(system[1])
    after = with_system[k + len(system[1]) :]
    if with_system[:k] != without[:k] or not after.endswith(without[k:]):
        return None, ()
    before = _encode(tokenizer, with_system[:k])
    between = after[: len(after) - len(without) + k]
    bos = getattr(tokenizer, "bos_token_id", None)
    if not between and all(t == bos for t in before):
        return "leads", ()
    user = headers.get("user")
    separator = _encode(tokenizer, between) if between else ()
    ends_with_header = user and user in (before[-len(user) :], _strip_blanks(before, blank)[-len(user) :])
    if ends_with_header and separator and not set(separator) & special_ids(tokenizer):
        return "folded", separator
    return None, ()


def _tool_reply_segment(tokenizer: Any, blank: Any) -> list[Segment]:
    """The markup between a tool result and the reply after it, from a chat where the tool answers a call (for
    templates that take a tool turn only after a tool call: Mistral-Nemo); [] when the template refuses it."""
    tool, reply = "tokstep tool probe", "tokstep assistant probe two"
    call = {"id": _PROBE_CALL_ID, "type": "function", "function": {"name": "tokstep_probe", "arguments": {}}}
    messages = [
        {"role": "user", "content": "tokstep user probe one"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": tool, "tool_call_id": _PROBE_CALL_ID},
        {"role": "assistant", "content": reply},
    ]
    rendered = try_render(tokenizer, messages)
    if rendered is None or rendered.count(tool) != 1 or rendered.count(reply) != 1:
        return []
    lo, hi = rendered.index(tool) + len(tool), rendered.index(reply)
    if hi < lo:
        return []
    encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    pairs = zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
    return [
        (
            "tool",
            _strip_blanks(tuple(i for i, (s, e) in pairs if lo <= s and e <= hi and e > s), blank),
            "assistant",
        )
    ]


def _common_prefix(seqs: list[tuple[int, ...]]) -> tuple[int, ...]:
    if not seqs:
        return ()
    first = seqs[0]
    n = min(len(s) for s in seqs)
    k = 0
    while k < n and all(s[k] == first[k] for s in seqs):
        k += 1
    return first[:k]


def _common_suffix(seqs: list[tuple[int, ...]]) -> tuple[int, ...]:
    reversed_prefix = _common_prefix([tuple(reversed(s)) for s in seqs])
    return tuple(reversed(reversed_prefix))


def _distinctive(seq: tuple[int, ...], specials: frozenset[int]) -> bool:
    """Safe to look for in content: holds a special token, or is long enough not to be a word."""
    return any(t in specials for t in seq) or len(seq) >= 3


def learn_markup(tokenizer: Any, specials: frozenset[int], blank: Any) -> Markup | None:
    """Render the probe chats through the template and learn its headers, end-of-turns and separators.

    `blank(id)` says whether a token is whitespace only (such tokens after a header depend on the content).
    """
    segments: list[Segment] = []
    leading: set[str] = set()
    for probe in _PROBES:
        renders = [(probe, try_render(tokenizer, _chat(probe)))]
        # prefixes ending with each role show what the template writes after that role at the end
        for cut in range(1, len(probe)):
            renders.append((probe[:cut], try_render(tokenizer, _chat(probe[:cut]))))
        for messages, rendered in renders:
            if rendered is not None:
                segments += _segments(tokenizer, rendered, messages, blank, leading)
        if probe is _PROBES[-1] and renders[0][1] is None:
            segments += _tool_reply_segment(tokenizer, blank)
    if not segments:
        return None
    bos = getattr(tokenizer, "bos_token_id", None)
    footers: dict[str, list[tuple[int, ...]]] = {}
    footer_of: dict[str, tuple[int, ...]] = {}
    for role in ROLES:
        following = [seq for before, seq, _ in segments if before == role]
        if following:
            footer_of[role] = _common_prefix(following)
            footers[role] = sorted({*following, footer_of[role]} - {()}, key=len, reverse=True)
    rests: dict[str, list[tuple[int, ...]]] = {}
    separators: set[tuple[str, tuple[int, ...], str]] = set()
    for before, seq, after in segments:
        if after is None:
            continue
        if before is None:
            rest = seq[1:] if bos is not None and seq[:1] == (bos,) else seq
        else:
            footer = footer_of.get(before, ())
            rest = seq[len(footer) :] if seq[: len(footer)] == footer else seq
            if not rest and _distinctive(seq, specials):
                separators.add((before, seq, after))
                tail = _special_tail(seq, specials)
                if tail != seq:  # what precedes it may vary by row (Mistral-Nemo's `"call_id": …}`)
                    separators.add((before, tail, after))
        if rest:
            rests.setdefault(after, []).append(rest)
    generation = _generation_ids(tokenizer, blank)
    headers: dict[str, tuple[int, ...]] = {}
    inserted: set[tuple[int, ...]] = set()
    for role, found in rests.items():
        header = _common_suffix(found)
        if role == "assistant" and generation and all(_find(r, generation) >= 0 for r in found):
            header = generation
            inserted |= {r[_find(r, generation) + len(generation) :] for r in found} - {()}
        elif not header or not _distinctive(header, specials):
            prefix = _common_prefix(found)
            if prefix and _distinctive(prefix, specials):
                header = prefix
                inserted |= {r[len(prefix) :] for r in found if role == "assistant"} - {()}
        if header and _distinctive(header, specials):
            headers[role] = header
    # two roles with the same header (Gemma's system prompt goes into the user turn): the user keeps it
    for role in ("system", "tool"):
        if role in headers and any(headers[role] == headers[o] for o in headers if o != role):
            del headers[role]
    # a separator that only repeats a footer + a header we already find is not needed
    kept = tuple(
        sorted(
            (s for s in separators if s[2] not in headers or s[1][-len(headers[s[2]]) :] != headers[s[2]]),
            key=lambda s: -len(s[1]),
        )
    )
    ends = {role: _end_length(footer_of.get(role, ()), specials) for role in ROLES}
    inserted = {_strip_leading_blanks(seq, blank) for seq in inserted} - {()}
    place, separator = (None, ()) if "system" in headers else _system_place(tokenizer, headers, blank)
    return Markup(
        system_place=place,
        system_separator=separator,
        headers=tuple(sorted(headers.items(), key=lambda kv: -len(kv[1]))),
        footers={r: tuple(s for s in f if _distinctive(s, specials)) for r, f in footers.items()},
        ends=ends,
        separators=kept,
        inserted=tuple(sorted(inserted, key=len, reverse=True)),
        blank=blank,
        leading=frozenset(leading),
    )


def _generation_ids(tokenizer: Any, blank: Any) -> tuple[int, ...]:
    """What add_generation_prompt appends after a user turn, as ids (trailing blanks dropped); () if nothing."""
    probe = _PROBES[0][:1]
    try:
        plain = _encode(tokenizer, render(tokenizer, _chat(probe)))
        prompted = _encode(tokenizer, render(tokenizer, _chat(probe), True))
    except Exception:  # noqa: BLE001
        return ()
    k = len(_common_prefix([plain, prompted]))
    return _strip_blanks(prompted[k:], blank)


def _encode(tokenizer: Any, text: str) -> tuple[int, ...]:
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def _strip_leading_blanks(seq: tuple[int, ...], blank: Any) -> tuple[int, ...]:
    while seq and blank(seq[0]):
        seq = seq[1:]
    return seq


def _strip_blanks(seq: tuple[int, ...], blank: Any) -> tuple[int, ...]:
    """Drop trailing whitespace-only tokens: whether they stand alone depends on the content that follows."""
    while seq and blank(seq[-1]):
        seq = seq[:-1]
    return seq


def _special_tail(seq: tuple[int, ...], specials: frozenset[int]) -> tuple[int, ...]:
    """The special tokens `seq` ends with when plain text alone precedes them (`, "call_id": …}[/TOOL_RESULTS]`
    -> `[/TOOL_RESULTS]`); otherwise `seq` itself."""
    k = len(seq)
    while k and seq[k - 1] in specials:
        k -= 1
    if k == len(seq) or any(t in specials for t in seq[:k]):
        return seq
    return seq[k:]


def _end_length(footer: tuple[int, ...], specials: frozenset[int]) -> int:
    """The end-of-turn is the footer up to its last special token (ChatML: `<|im_end|>`, not the `\\n`)."""
    last = max((k for k, t in enumerate(footer) if t in specials), default=None)
    return 0 if last is None else last + 1


def _find(seq: tuple[int, ...], part: tuple[int, ...]) -> int:
    n = len(part)
    return next((k for k in range(len(seq) - n + 1) if seq[k : k + n] == part), -1)


def _control_ids(tokenizer: Any) -> frozenset[int]:
    """Special tokens plus every added token (`<|im_end|>` may be added without being in all_special_ids)."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return special_ids(tokenizer) | frozenset(int(i) for i in added)


def _blank_test(tokenizer: Any) -> Any:
    """A cached `id -> bool`: the token is whitespace only (and not a special or added token)."""
    specials = _control_ids(tokenizer)

    @lru_cache(maxsize=4096)
    def blank(token_id: int) -> bool:
        if token_id in specials:
            return False
        data = token_bytes(tokenizer, token_id)
        return bool(data) and not data.strip()

    return blank


_MARKUP: WeakKeyDictionary[Any, tuple[str, Markup | None]] = WeakKeyDictionary()


def markup_for(tokenizer: Any) -> Markup | None:
    """The learned markup of this tokenizer's chat template (cached per tokenizer and template)."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not template:
        return None
    with contextlib.suppress(KeyError, TypeError):
        cached_template, cached = _MARKUP[tokenizer]
        if cached_template == template:
            return cached
    try:
        markup = learn_markup(tokenizer, _control_ids(tokenizer), _blank_test(tokenizer))
    except Exception:  # noqa: BLE001 - a template or tokenizer we cannot probe: no structure, no finding
        markup = None
    if markup is not None and not markup.usable:
        markup = None
    with contextlib.suppress(TypeError):
        _MARKUP[tokenizer] = (template, markup)
    return markup


# ---------------------------------------------------------------- recovering a row


def _occurrences(ids: np.ndarray, seq: tuple[int, ...]) -> list[int]:
    """Start indices where `seq` occurs in `ids` (may overlap)."""
    n = len(seq)
    if n == 0 or n > len(ids):
        return []
    hits = np.flatnonzero(ids[: len(ids) - n + 1] == seq[0])
    for k in range(1, n):
        if not len(hits):
            break
        hits = hits[ids[hits + k] == seq[k]]
    return hits.tolist()


class _Hits:
    """Where each markup sequence occurs in one row, found once per row (sorted start indices)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self.found: dict[tuple[int, ...], np.ndarray] = {}

    def of(self, seq: tuple[int, ...]) -> np.ndarray:
        hits = self.found.get(seq)
        if hits is None:
            hits = self.found[seq] = np.asarray(_occurrences(self.ids, seq), dtype=np.int64)
        return hits


def _first(
    hits: _Hits, seqs: Sequence[tuple[int, ...]], lo: int, hi: int, last_start: int | None = None
) -> tuple[int, int] | None:
    """The earliest (start, length) of any of `seqs` inside ids[lo:hi] starting at or before `last_start`."""
    best: tuple[int, int] | None = None
    last = hi if last_start is None else last_start
    for seq in seqs:
        starts = hits.of(seq)
        k = int(np.searchsorted(starts, lo))
        if k == len(starts):
            continue
        start = int(starts[k])
        if start > last or start + len(seq) > hi:
            continue
        if best is None or start < best[0] or (start == best[0] and len(seq) > best[1]):
            best = (start, len(seq))
    return best


def layout_of(
    per_token: Sequence[tuple[str | None, str]],
    turns: Sequence[tuple[str, int, int, int, bool]],
    *,
    eot: Policy = "train",
    inserted: Policy = "train",
) -> TurnLayout:
    """A `TurnLayout` from per-token (role or None, part name) and turns as (role, content start, content end,
    end, closed) token indices: how a chat built from messages (engine.chat.masks) says the same thing."""
    roles = np.asarray(
        [NO_ROLE if r is None else ROLES.index(r) for r, _ in per_token], dtype=np.int8
    )  # (N,)
    parts = np.asarray([Part[p.upper()] for _, p in per_token], dtype=np.int8)  # (N,)
    found = tuple(Turn(role, lo, lo, hi, end, closed) for role, lo, hi, end, closed in turns)
    return TurnLayout(found, roles, parts, eot, inserted)


def recover_layout(
    tokenizer: Any,
    input_ids: np.ndarray | Sequence[int],
    *,
    eot: Policy = "train",
    inserted: Policy = "train",
) -> TurnLayout | None:
    """Attribute every token of a tokenized chat to a role and a part of its turn; None when no turn is found.
    `eot` / `inserted` are the convention's flags the expected mask follows (engine.chat.masks).

    Fast enough to run on every row of a data file: the template is probed once per tokenizer; a row
    costs a few vectorised scans for the header ids.
    """
    markup = markup_for(tokenizer)
    if markup is None:
        return None
    ids = np.asarray(input_ids, dtype=np.int64)  # (N,)
    n = len(ids)
    starts: list[tuple[int, int, str]] = []  # (start, header length, role)
    taken = np.zeros(n, dtype=bool)
    for role, header in markup.headers:  # longest first: a longer header wins where they overlap
        for start in _occurrences(ids, header):
            if not taken[start : start + len(header)].any():
                taken[start : start + len(header)] = True
                starts.append((start, len(header), role))
    starts.sort()
    if not starts:
        return None
    roles = np.full(n, NO_ROLE, dtype=np.int8)
    parts = np.full(n, int(Part.TEMPLATE), dtype=np.int8)
    turns: list[Turn] = []
    lead = 1 if n and ids[0] == getattr(tokenizer, "bos_token_id", None) else 0
    if (
        markup.system_place == "leads" and starts[0][0] > lead
    ):  # DeepSeek: the system prompt before any header
        roles[lead : starts[0][0]] = ROLES.index("system")
        parts[lead : starts[0][0]] = Part.CONTENT
        turns.append(Turn("system", lead, lead, starts[0][0], starts[0][0], False))
    hits = _Hits(ids)
    for k, (start, size, role) in enumerate(starts):
        limit = starts[k + 1][0] if k + 1 < len(starts) else n
        roles[start : start + size] = ROLES.index(role)
        parts[start : start + size] = Part.HEADER
        _fill_turn(ids, hits, markup, role, start, start + size, limit, roles, parts, turns)
    return TurnLayout(tuple(turns), roles, parts, eot, inserted)


def _fill_turn(
    ids: np.ndarray,
    hits: _Hits,
    markup: Markup,
    role: str,
    start: int,
    body: int,
    limit: int,
    roles: np.ndarray,
    parts: np.ndarray,
    turns: list[Turn],
) -> None:
    """Mark ids[body:limit] as `role`'s turn: inserted markup, content, end-of-turn; a separator hands on."""
    code = ROLES.index(role)
    while body < limit and markup.blank is not None and markup.blank(int(ids[body])):
        if role in markup.leading and not (body + 1 < limit and markup.blank(int(ids[body + 1]))):
            break  # the last blank before the content: its own `▁`, which the text does not have
        roles[body] = code  # the blank after a header (`\n\n`, a lone space): the header's
        parts[body] = Part.HEADER
        body += 1
    if role == "assistant":
        for seq in markup.inserted:
            if tuple(ids[body : body + len(seq)].tolist()) == seq:
                roles[body : body + len(seq)] = code
                parts[body : body + len(seq)] = Part.INSERTED
                body += len(seq)
                while body < limit and markup.blank is not None and markup.blank(int(ids[body])):
                    roles[body] = code
                    parts[body] = Part.INSERTED
                    body += 1
                break
    own = [s for s in markup.separators if s[0] == role]
    handoff = _first(hits, [s[1] for s in own], body, limit)
    stop = handoff[0] if handoff else limit
    footer = _first(hits, markup.footers.get(role, ()), body, limit, stop)
    end_size = markup.ends.get(role, 0)
    if footer is not None and end_size:
        content_end, end = footer[0], min(footer[0] + end_size, stop)
    elif footer is not None:
        content_end = end = footer[0]
    else:
        content_end = end = stop
    roles[body:content_end] = code
    parts[body:content_end] = Part.CONTENT
    roles[content_end:end] = code
    parts[content_end:end] = Part.END
    if footer is not None:  # the rest of the footer up to the next turn: this turn's markup
        roles[end : min(footer[0] + footer[1], limit)] = code
    turns.append(Turn(role, start, body, content_end, end, footer is not None and end > content_end))
    if handoff is not None:
        sep_start, sep_size = handoff
        sep_role = next(s[2] for s in own if s[1] == tuple(ids[sep_start : sep_start + sep_size].tolist()))
        if footer is None:  # the separator itself closes this turn
            roles[sep_start : sep_start + sep_size] = code
        next_body = sep_start + sep_size
        _fill_turn(ids, hits, markup, sep_role, next_body, next_body, limit, roles, parts, turns)
