"""Which tokens of a rendered chat are trained, and why the others are not (tokstep's mask convention).

THE CONVENTION (default: `eot="train"`, `inserted="train"`)
-----------------------------------------------------------
The conversation is rendered ONCE (`apply_chat_template(messages, tokenize=False)`), the text is tokenized with
`add_special_tokens=False` and the tokenizer's character offsets, and every character of the rendered text is
attributed to a message or to the template:

1. **Message content.** Each message's content is located in the rendered text, in order (the template copies
   it, possibly stripped; content split by the template, e.g. `<think>…</think>answer`, is located piece by
   piece; content a template drops from history, e.g. Qwen3's / DeepSeek-R1's earlier reasoning, is simply
   absent). An assistant message's `reasoning_content` and its tool calls' names and arguments count as its
   content. A token overlapping an assistant message's content is **SUPERVISED**; one overlapping a system /
   user / tool message is masked as **SYSTEM** / **USER** / **TOOL**.
2. **End of turn.** The template's end-of-turn token is the first special (added) token it writes right after
   an assistant message (probed once per template with a user/assistant pair: `<|im_end|>`, `<|eot_id|>`,
   `</s>`, `<end_of_turn>`, `<|end|>`, …; a template that writes none has none). After an assistant turn's
   last content character, that token, with any whitespace-only text before it, is the turn's end-of-turn: **SUPERVISED** by default (the convention of `{% generation %}`
   training templates and TRL's `assistant_only_loss`). What follows (the `\\n` after `<|im_end|>`, Phi-3's
   trailing `<|endoftext|>`, the next header) is **TEMPLATE**. `eot="mask"` (CLI `--eot mask`) is the
   alternative: the end-of-turn is masked with reason **END_OF_TURN**.
3. **Template-inserted tokens.** Inside an assistant turn (from the end of the header the template writes for
   `add_generation_prompt=True` to the end-of-turn), characters that belong to no message field are
   template-inserted: an empty `<think>\\n\\n</think>\\n\\n` block, the `<think>` tags around reasoning,
   tool-call wrappers (`<tool_call>`, `{"name": …`). By default they are trained, with reason
   **INSERTED_TRAINED** (again as `{% generation %}` training templates do); `inserted="mask"` (CLI
   `--inserted mask`) masks them with reason **INSERTED**. The `template-inserted` lint reports them whenever
   they are more than the wrapping of the message's own reasoning or tool calls (e.g. an empty think block).
   Text the generation header itself writes (Qwen3 asked not to think puts `<think>\n\n</think>\n\n` in the
   prompt) is the prompt's: **TEMPLATE**. Whitespace between the header and the content (`[/INST] Paris`) is
   template too; the token that carries it with the content's first word (`▁Paris`) is SUPERVISED.
4. **Everything else** is **TEMPLATE**: role headers, separators, BOS. A system prompt the template injects
   when the chat has none (Qwen2.5's "You are Qwen, …") is **SYSTEM**, not template markup. Position 0 is
   always **FIRST** (nothing predicts it). When a token covers characters of several kinds, the first of
   content, end-of-turn, inserted, system, user, tool, template decides.
5. **`{% generation %}` templates.** When the template has generation markers, the trained tokens are exactly
   `apply_chat_template(..., return_assistant_tokens_mask=True)`'s mask (with the default flags); the reasons
   of the masked tokens still come from steps 1-4. The flags then mask the end-of-turn / inserted tokens found
   by steps 2-3 inside that mask.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np

from tokstep.engine.chat.turns import NO_ROLE, ROLES, Part, TurnLayout
from tokstep.engine.chat.turns import Turn as TokenTurn
from tokstep.engine.defaults import ASSETS
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.prefix import encode_prefix
from tokstep.engine.inputs.sample import MaskReason
from tokstep.engine.policies import CONVENTION, Policy, convention  # noqa: F401 - re-exported

_PROBE_USER = "TOKSTEP-PROBE-USER"
_PROBE_ASSISTANT = "TOKSTEP-PROBE-ASSISTANT"
_PROBE_SYSTEM = "TOKSTEP-PROBE-SYSTEM"
_THINK_TAGS = ("<think>", "</think>")
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")

# Per-character attribution codes (a small int per rendered character).
_NONE, _SYS, _USER, _TOOL, _ASSIST, _EOT, _INSERTED, _WRAPPER = range(8)
_ROLE_CODE = {"system": _SYS, "developer": _SYS, "user": _USER, "tool": _TOOL, "ipython": _TOOL}


@dataclass(frozen=True)
class Turn:
    """One message as found in the rendered text (character offsets into `ChatLayout.rendered`)."""

    index: int  # position in the messages list
    role: str
    pieces: tuple[tuple[int, int], ...]  # located content spans
    dropped: tuple[str, ...]  # content pieces the template did not render (e.g. earlier reasoning)
    inserted: tuple[tuple[int, int], ...] = ()  # assistant only: template text inside the turn
    wrapper: tuple[
        tuple[int, int], ...
    ] = ()  # the part of `inserted` wrapping its own reasoning / tool calls
    eot: tuple[int, int] | None = None  # assistant only: the end-of-turn span


@dataclass(frozen=True)
class ChatLayout:
    """A chat rendered once, tokenized, and every token attributed (see the module docstring)."""

    rendered: str
    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    reasons: tuple[MaskReason, ...]  # with the flags applied; position 0 is FIRST
    turns: tuple[Turn, ...]
    default_system: tuple[int, int] | None  # a system prompt the template injected, as a char span
    method: str  # "generation mask" or "located content"
    notes: tuple[str, ...]
    generation_mask_empty: bool = False  # the template has {% generation %} but its mask trains nothing
    turn_layout: TurnLayout | None = (
        None  # the same attribution as roles / parts (engine.chat.structure's vocabulary)
    )
    prefix_chars: int | None = None  # derived with `keep`: only this much of `rendered` was tokenized

    @property
    def supervised(self) -> list[bool]:
        return [r.counted for r in self.reasons]

    @functools.cached_property
    def bounds(self) -> np.ndarray:
        """(N, 2) int64: `offsets` as an array (made once; `derive` hands over the one it used)."""
        return offset_array(self.offsets)

    def inserted_tokens(self, *, tool_wrappers: bool = False) -> list[int]:
        """Token positions inserted by the template in assistant turns (optionally tool-call wrappers too)."""
        spans = [s for t in self.turns for s in t.inserted if tool_wrappers or s not in t.wrapper]
        if not spans or not self.offsets:
            return []
        bounds = self.bounds  # (N, 2)
        reach = np.maximum(bounds[:, 1], bounds[:, 0] + 1)[:, None]  # (N, 1) a zero-width token reaches one
        lo, hi = np.asarray(spans, dtype=np.int64).reshape(-1, 2).T  # (S,), (S,)
        return np.flatnonzero(((lo < reach) & (bounds[:, :1] < hi)).any(axis=1)).tolist()


def content_texts(content: Any, where: str) -> list[str]:
    """The text of a message's content: a string, or OpenAI-style parts [{"type": "text", "text": ...}]."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise TokstepError(f'{where}: content part {j} must be an object with a "type"')
            if part["type"] != "text":
                raise TokstepError(
                    f"{where}: content part {j} is {part['type']!r}: only text parts are supported"
                )
            if not isinstance(part.get("text"), str):
                raise TokstepError(f'{where}: content part {j} needs a string "text"')
            texts.append(part["text"])
        return texts
    raise TokstepError(
        f"{where}: content must be a string or a list of text parts, not {_json_type(content)}"
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", dict: "an object"}.get(type(value), "that")


def check_messages(messages: Any) -> None:
    """Validate a chat before any template sees it; every problem is one line."""
    if not isinstance(messages, list) or not messages:
        raise TokstepError('a chat must be a non-empty JSON list of {"role": ..., "content": ...} messages')
    for i, message in enumerate(messages):
        where = f"chat message {i}"
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise TokstepError(f'{where} must be an object with a string "role" and a "content"')
        if "content" not in message and not message.get("tool_calls"):
            raise TokstepError(f'{where} has no "content"')
        content = message.get("content")
        if content is None and message.get("tool_calls"):
            pass  # an assistant turn that only calls tools
        else:
            content_texts(content, where)
        calls = message.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise TokstepError(f'{where}: "tool_calls" must be a list')
        for call in calls or []:
            if not isinstance(call, dict):
                raise TokstepError(f"{where}: every tool call must be an object")


def render(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def try_render(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool = False) -> str | None:
    """The render, or None when the template refuses these messages (a probe with a role it does not take)."""
    try:
        return render(tokenizer, messages, generation_prompt)
    except Exception:  # noqa: BLE001 - a probe the template refuses tells us nothing
        return None


def _header_of(tokenizer: Any, messages: list[dict[str, Any]]) -> str | None:
    plain, with_prompt = try_render(tokenizer, messages), try_render(tokenizer, messages, True)
    if plain is None or with_prompt is None:
        return None
    # Phi-3 ends a full render with EOS but not a prompted one: the header starts where they part.
    return with_prompt[len(os.path.commonprefix([plain, with_prompt])) :]


def _generation_header(tokenizer: Any, messages: list[dict[str, Any]], probed: str | None) -> str:
    """What `add_generation_prompt=True` appends (the assistant header), from a one-user-turn probe (or, when
    the template refuses the probe, from the chat's own first user turn)."""
    if probed is not None:
        return probed
    first_user = next((m for m in messages if m.get("role") == "user"), None)
    return (_header_of(tokenizer, [first_user]) if first_user else None) or ""


@dataclass(frozen=True)
class _TemplateFacts:
    """What the probes tell about one template (computed once per tokenizer and template)."""

    added: list[str]
    header: str | None  # None when the template refused the probe
    eot_text: str | None  # "" when assistant turns end with no special token; None when the probe failed


_FACTS: WeakKeyDictionary[Any, dict[str, _TemplateFacts]] = WeakKeyDictionary()


def _template_facts(tokenizer: Any) -> _TemplateFacts:
    template = str(tokenizer.chat_template)
    try:
        cached = _FACTS.setdefault(tokenizer, {})
    except TypeError:
        cached = {}
    if template not in cached:
        added = _special_texts(tokenizer)
        header = _header_of(tokenizer, [{"role": "user", "content": _PROBE_USER}])
        cached[template] = _TemplateFacts(added, header, _end_of_turn_text(tokenizer, added))
    return cached[template]


def _end_of_turn_text(tokenizer: Any, added: list[str]) -> str | None:
    """The special token a template writes right after an assistant message, from a user/assistant probe:
    "" when it writes none (its turns have no end-of-turn), None when the template refused the probe."""
    probe = [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": _PROBE_ASSISTANT}]
    text = try_render(tokenizer, probe)
    if text is None or _PROBE_ASSISTANT not in text:
        return None
    after = text[text.index(_PROBE_ASSISTANT) + len(_PROBE_ASSISTANT) :]
    hits = [(after.find(tok), -len(tok), tok) for tok in added if tok and tok in after]
    if not hits:
        return ""
    position, _, token = min(hits)
    return token if not after[:position].strip() else ""


def _header_candidates(header: str, added: list[str]) -> list[str]:
    """The generation header, and shorter forms of it cut after one of its special tokens (R1's `<think>\\n`)."""
    if not header.strip():
        return []
    cuts = {len(header), len(header.rstrip())}
    for token in added:
        at = header.find(token) if token else -1
        if at >= 0:
            cuts |= {at, at + len(token)}  # just before and just after each special token
    out = [header[:c] for c in sorted(cuts, reverse=True)]  # longest first
    return [c for c in out if c.strip()]


def _pieces_of(message: dict[str, Any]) -> list[tuple[str, bool]]:
    """The texts of a message a template may copy, each with whether it belongs to a tool call.

    In order: reasoning (`reasoning_content`), content, then each tool call's name and arguments.
    """
    pieces: list[tuple[str, bool]] = []
    reasoning = next((message[k] for k in _REASONING_KEYS if message.get(k)), None)
    if isinstance(reasoning, str) and reasoning.strip():
        pieces.append((reasoning, False))
    content = message.get("content")
    if content is not None:
        pieces.extend((t, False) for t in content_texts(content, "chat message") if t.strip())
    for call in message.get("tool_calls") or []:
        function = call.get("function", call)
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            pieces.append((function["name"], True))
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if arguments is not None:
            pieces.append((arguments if isinstance(arguments, str) else _JsonArgs(arguments), True))
    return pieces


def _has_reasoning(message: dict[str, Any]) -> bool:
    return any(isinstance(message.get(k), str) and message[k].strip() for k in _REASONING_KEYS)


class _JsonArgs(str):
    """Tool-call arguments given as an object: located as the JSON a template writes for them."""

    def __new__(cls, value: Any) -> _JsonArgs:
        self = super().__new__(cls, json.dumps(value, ensure_ascii=False))
        self.variants = [
            json.dumps(value, ensure_ascii=False),
            json.dumps(value, ensure_ascii=False, separators=(",", ":")),
            json.dumps(value, ensure_ascii=False, indent=4),
            json.dumps(value, ensure_ascii=False, indent=2),
            json.dumps(value),
        ]
        return self


def _find_piece(text: str, piece: str, start: int) -> tuple[list[tuple[int, int]], bool]:
    """Where `piece` sits in `text` at or after `start`: as is, stripped, or split around think tags.

    Returns the spans found and whether part of the piece is missing (a template dropped it)."""
    candidates = getattr(piece, "variants", None) or [piece, piece.strip(), piece.strip("\n")]
    for candidate in candidates:
        if candidate:
            at = text.find(candidate, start)
            if at >= 0:
                return [(at, at + len(candidate))], False
    segments = [piece]
    for tag in _THINK_TAGS:
        segments = [part for segment in segments for part in segment.split(tag)]
    segments = [s.strip() for s in segments if s.strip()]
    if len(segments) < 2:
        return [], True
    found, cursor = [], start
    for segment in segments:
        at = text.find(segment, cursor)
        if at >= 0:
            found.append((at, at + len(segment)))
            cursor = at + len(segment)
    return found, len(found) < len(segments)


def _default_system(tokenizer: Any, messages: list[dict[str, Any]], rendered: str) -> tuple[int, int] | None:
    """The span of a system prompt the template injects when the chat has none (Qwen2.5), if any."""
    if any(m.get("role") in ("system", "developer") for m in messages):
        return None
    probe = try_render(tokenizer, [{"role": "system", "content": _PROBE_SYSTEM}, *messages])
    if probe is None or probe.count(_PROBE_SYSTEM) != 1:
        return None
    cut = probe.index(_PROBE_SYSTEM)
    before, after = probe[:cut], probe[cut + len(_PROBE_SYSTEM) :]
    if not rendered.startswith(before) or not rendered.endswith(after):
        return None
    end = len(rendered) - len(after)
    return (len(before), end) if end > len(before) and rendered[len(before) : end].strip() else None


def _special_texts(tokenizer: Any) -> list[str]:
    added = [t.content if hasattr(t, "content") else str(t) for t in tokenizer.added_tokens_decoder.values()]
    return [t for t in dict.fromkeys([*added, *tokenizer.all_special_tokens]) if t]


def locate(
    tokenizer: Any, messages: list[dict[str, Any]], rendered: str, end: int | None = None
) -> tuple[list[Turn], tuple[int, int] | None]:
    """Attribute the rendered text to the messages (steps 1-4 of the convention), as character spans; with
    `end`, only as far as that character (messages rendered past it are not looked for)."""
    facts = _template_facts(tokenizer)
    added, eot_text = facts.added, facts.eot_text
    headers = _header_candidates(_generation_header(tokenizer, messages, facts.header), added)
    default_system = _default_system(tokenizer, messages, rendered)
    cursor = default_system[1] if default_system else 0
    turns: list[Turn] = []
    for index, message in enumerate(messages):
        if end is not None and cursor >= end:
            break  # the rest lies past the tokenized prefix
        role = message["role"]
        body_start = cursor
        if role == "assistant" and not headers:
            body_start = _prefix_end(tokenizer, messages[:index], rendered, cursor)
        elif role == "assistant":
            content_start = _next_content_start(rendered, [message], cursor)  # its header comes before it
            for candidate in headers:
                at = rendered.find(candidate, cursor)
                if at >= 0 and at + len(candidate) <= content_start:
                    body_start = at + len(candidate)
                    break
        spans: list[tuple[int, int]] = []
        dropped: list[str] = []
        search, message_end = body_start, body_start  # message_end: end of its non-tool-call text
        reasoning_found = False
        for number, (piece, is_tool) in enumerate(_pieces_of(message)):
            found, missing = _find_piece(rendered, piece, search)
            if missing:
                dropped.append(str(piece))
            if not found:
                continue
            spans.extend(found)
            search = max(search, found[-1][1])
            if not is_tool:
                message_end = max(message_end, found[-1][1])
            if number == 0 and not is_tool and (_has_reasoning(message) or len(found) > 1):
                reasoning_found = True
        spans.sort()
        if role != "assistant":
            turns.append(Turn(index, role, tuple(spans), tuple(dropped)))
            cursor = max([cursor, *(e for _, e in spans)])
            continue
        content_end = max((e for _, e in spans), default=body_start)
        eot = _find_eot(rendered, content_end, eot_text, added)
        limit = _next_content_start(rendered, messages[index + 1 :], content_end)
        if eot is not None and eot[1] > limit:
            eot = None  # the turn has no end-of-turn: the one found belongs to a later message
        body_end = eot[0] if eot else content_end
        inserted = _gaps(body_start, body_end, spans)
        if inserted and inserted[0][0] == body_start and not rendered[slice(*inserted[0])].strip():
            inserted = inserted[1:]  # whitespace before the content (`[/INST] Paris`): template, not inserted
        wrapper = tuple(
            g
            for g in inserted
            if (message.get("tool_calls") and g[0] >= message_end)
            or (reasoning_found and g[1] <= message_end)
        )
        turns.append(Turn(index, role, tuple(spans), tuple(dropped), tuple(inserted), wrapper, eot))
        cursor = eot[1] if eot else content_end
    return turns, default_system


def _next_content_start(rendered: str, later: list[dict[str, Any]], start: int) -> int:
    """Where the next message's text starts in the rendered chat (the end of the text when there is none)."""
    for message in later:
        for piece, _ in _pieces_of(message):
            found, _missing = _find_piece(rendered, piece, start)
            if found:
                return found[0][0]
    return len(rendered)


def _prefix_end(tokenizer: Any, before: list[dict[str, Any]], rendered: str, cursor: int) -> int:
    """Where an assistant turn starts for a template with no generation header (Llama-2, Mistral): the end
    of the conversation before it, rendered on its own, when that render is a prefix of the full one; else
    after the markup that render writes after its last message (`[/INST]`), when the full one has it there."""
    prefix = try_render(tokenizer, before) if before else ""
    if prefix is None:
        return cursor
    if len(prefix) >= cursor and rendered.startswith(prefix):
        return len(prefix)
    # The conversation so far renders otherwise on its own (Mistral-Nemo writes the system prompt into the
    # last user turn): what its render writes after its last message's text closes that message (`[/INST]`)
    closing = _closing_markup(prefix, before)
    if closing and rendered.startswith(closing, cursor):
        return cursor + len(closing)
    return cursor


def _closing_markup(prefix: str, before: list[dict[str, Any]]) -> str:
    """The text `prefix` (a render of `before`) ends with after the last piece of its last message ("" when
    that piece is not found in it)."""
    pieces = _pieces_of(before[-1])
    if not pieces:
        return ""
    last = pieces[-1][0]
    candidates = getattr(last, "variants", None) or [last, last.strip()]
    ends = [prefix.rfind(c) + len(c) for c in candidates if c and c in prefix]
    return prefix[max(ends) :] if ends else ""


def _find_eot(rendered: str, start: int, eot_text: str | None, added: list[str]) -> tuple[int, int] | None:
    """The end-of-turn span after an assistant turn's content: whitespace, then its end-of-turn token."""
    if eot_text == "":
        return None  # the template ends assistant turns with no special token
    if eot_text is not None:
        at = rendered.find(eot_text, start)
        if at >= 0:
            return (start if not rendered[start:at].strip() else at, at + len(eot_text))
        return None
    rest = rendered[start:]
    stripped = rest.lstrip()
    for token in sorted(added, key=len, reverse=True):
        if stripped.startswith(token):
            end = start + (len(rest) - len(stripped)) + len(token)
            return (start, end)
    return None


def _gaps(start: int, end: int, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Parts of [start, end) not covered by `spans`."""
    out, cursor = [], start
    for s, e in sorted(spans):
        if s > cursor:
            out.append((cursor, min(s, end)))
        cursor = max(cursor, e)
    if cursor < end:
        out.append((cursor, end))
    return [(s, e) for s, e in out if e > s]


def _char_codes(n: int, turns: list[Turn], default_system: tuple[int, int] | None) -> bytearray:
    codes = bytearray(n)  # _NONE everywhere: template markup
    if default_system:
        codes[default_system[0] : default_system[1]] = bytes([_SYS]) * (default_system[1] - default_system[0])
    for turn in turns:
        code = _ASSIST if turn.role == "assistant" else _ROLE_CODE.get(turn.role, _USER)
        for s, e in turn.pieces:
            codes[s:e] = bytes([code]) * (e - s)
        for s, e in turn.inserted:
            codes[s:e] = bytes([_WRAPPER if (s, e) in turn.wrapper else _INSERTED]) * (e - s)
        if turn.eot:
            s, e = turn.eot
            codes[s:e] = bytes([_EOT]) * (e - s)
    return codes


# Which code wins when a token covers characters of several kinds (a trained kind first).
_PRIORITY = (_ASSIST, _EOT, _INSERTED, _WRAPPER, _SYS, _USER, _TOOL, _NONE)


def _token_code(codes: bytearray, start: int, end: int) -> int:
    if end <= start:  # a zero-width token (e.g. a `▁` a normalizer added): the character after it decides
        return codes[start] if start < len(codes) else _NONE
    present = set(codes[start:end])
    return next(code for code in _PRIORITY if code in present)


_RANK = np.full(256, len(_PRIORITY) - 1, dtype=np.int64)  # a character code's place in _PRIORITY
_RANK[list(_PRIORITY)] = np.arange(len(_PRIORITY))


OFFSET_ARRAY = "tokstep_offset_array"  # an encoding's offsets as an (N, 2) array (lint_batch's cache adds it)


def offset_array(offsets: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """(N, 2) int64 array of (start, end) offsets (twice as fast as np.asarray on a list of tuples)."""
    if isinstance(offsets, np.ndarray):
        return offsets.astype(np.int64, copy=False).reshape(-1, 2)
    flat = itertools.chain.from_iterable(offsets)
    return np.fromiter(flat, dtype=np.int64, count=2 * len(offsets)).reshape(-1, 2)


def _token_codes(codes: bytearray, offsets: list[tuple[int, int]] | np.ndarray) -> list[int]:
    """`_token_code` for every token at once (numpy): the highest-priority code among each token's
    characters; a zero-width token takes the code of the character at its start (none past the end)."""
    return _token_code_array(codes, offsets).tolist()


def _token_code_array(codes: bytearray, offsets: list[tuple[int, int]] | np.ndarray) -> np.ndarray:
    """`_token_codes` as an (N,) int64 array."""
    if len(offsets) == 0:
        return np.zeros(0, dtype=np.int64)
    ranks = np.append(_RANK[np.frombuffer(bytes(codes), dtype=np.uint8)], _RANK[_NONE])  # (n+1,)
    bounds = np.minimum(np.asarray(offsets, dtype=np.int64).reshape(-1), len(codes))  # s0, e0, s1, e1, ...
    best = np.minimum.reduceat(ranks, bounds)[0::2]  # min over [s, e) when s < e, else ranks[s]
    return _PRIORITY_ARRAY[best]


_PRIORITY_ARRAY = np.asarray(_PRIORITY, dtype=np.int64)


def _reason(code: int, eot: Policy, inserted: Policy) -> MaskReason:
    if code == _ASSIST:
        return MaskReason.SUPERVISED
    if code == _EOT:
        return MaskReason.SUPERVISED if eot == "train" else MaskReason.END_OF_TURN
    if code in (_INSERTED, _WRAPPER):
        return MaskReason.INSERTED_TRAINED if inserted == "train" else MaskReason.INSERTED
    return {_SYS: MaskReason.SYSTEM, _USER: MaskReason.USER, _TOOL: MaskReason.TOOL}.get(
        code, MaskReason.TEMPLATE
    )


@functools.cache
def _trl_index() -> dict[str, dict[str, str]]:
    return json.loads((ASSETS / "trl_templates" / "index.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class TrainingTemplate:
    """TRL's training variant of a model template it recognises (what `assistant_only_loss` trains)."""

    family: str  # TRL's name for it: llama3, qwen2_5, qwen3, phi3, gemma3
    text: str


def trl_training_template(template: Any) -> TrainingTemplate | None:
    """TRL's training template for this chat template (compared exactly, as TRL does), or None."""
    if not isinstance(template, str):
        return None
    entry = _trl_index().get(hashlib.sha256(template.encode("utf-8")).hexdigest())
    if entry is None:
        return None
    text = (ASSETS / "trl_templates" / entry["training"]).read_text(encoding="utf-8")
    return TrainingTemplate(entry["family"], text)


def _generation_mask(
    tokenizer: Any, messages: list[dict[str, Any]], ids: list[int], template: str | None = None
) -> np.ndarray | None:
    """The `{% generation %}` mask of the tokenizer's template (or of `template`), or None (no markers, or it
    renders other ids)."""
    # `chat_template` only when there is one: the batched lint serves exactly these flags from its cache
    chosen = {} if template is None else {"chat_template": template}
    try:
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **chosen
        )
    except Exception:  # noqa: BLE001 - fall back to locating the content
        return None
    ids_out = out["input_ids"]
    if ids_out and isinstance(ids_out[0], list):
        ids_out = ids_out[0]
    mask = out.get("assistant_masks")
    if mask is None or list(ids_out) != ids:
        return None
    if mask and isinstance(mask[0], list):
        mask = mask[0]
    return np.asarray(mask, dtype=bool).reshape(-1)  # (N,)


def _encode_rendered(tokenizer: Any, rendered: str, keep: int | None) -> tuple[Any, int]:
    """The rendered chat encoded with offsets (all of it, or with `keep` only a long enough prefix of it), and
    how many of its characters were encoded."""

    def encode(text: str) -> Any:
        return tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)

    cut = encode_prefix(encode, lambda e: len(e["input_ids"]), rendered, keep) if keep else None
    return cut if cut is not None else (encode(rendered), len(rendered))


def _prefix_generation_mask(
    tokenizer: Any, messages: list[dict[str, Any]], rendered: str, bounds: np.ndarray, template: str | None
) -> np.ndarray | None:
    """`_generation_mask` over the tokens of a prefix of `rendered` ((N, 2) offsets `bounds`): transformers'
    `{% generation %}` character spans, and a token trained when it overlaps one (as apply_chat_template
    marks them). None when the template renders other text, or transformers cannot give the spans."""
    try:
        # lazy: loads transformers
        from transformers.utils.chat_template_utils import render_jinja_template

        texts, spans = render_jinja_template(
            conversations=[messages],
            chat_template=tokenizer.get_chat_template(template),
            return_assistant_tokens_mask=True,
            **tokenizer.special_tokens_map,
        )
    except Exception:  # noqa: BLE001 - fall back to locating the content
        return None
    if texts[0] != rendered:
        return None
    lo, hi = np.asarray(spans[0], dtype=np.int64).reshape(-1, 2).T  # (S,), (S,)
    return ((bounds[:, :1] < hi) & (bounds[:, 1:] > lo)).any(axis=1)  # (N,)


def _flatten(message: dict[str, Any]) -> dict[str, Any]:
    if isinstance(message.get("content"), list):
        return {**message, "content": "".join(content_texts(message["content"], "chat message"))}
    return message


def _render_checked(tokenizer: Any, messages: list[dict[str, Any]], raising: bool = False) -> str | None:
    """Render; a template's own refusal is one line. None when list content is not understood (retry flat)."""
    has_parts = any(isinstance(m.get("content"), list) for m in messages)
    try:
        rendered = render(tokenizer, messages)
    except Exception as error:  # noqa: BLE001 - a template's own refusal (e.g. "System role not supported")
        if has_parts and not raising:
            return None
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TokstepError(f"the chat template refused this chat: {message}") from None
    if has_parts and ("'type': 'text'" in rendered or '"type": "text"' in rendered):
        return None
    return rendered


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and "generation" in template and "endgeneration" in template


_RECENT: WeakKeyDictionary[Any, dict[tuple[str, str, str, str, int | None], ChatLayout]] = WeakKeyDictionary()
_RECENT_SIZE = 8  # building a sample and linting it derive the same chat twice: the second is free


def derive(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    *,
    eot: Policy = "train",
    inserted: Policy = "train",
    keep: int | None = None,
) -> ChatLayout:
    """Render `messages` once, tokenize with offsets, and give every token its reason (module docstring).

    `keep` (--truncate): only a prefix of a long rendering is tokenized, one that gives at least `keep` tokens
    and a margin; its first `keep` tokens and reasons are the whole chat's (the tokens past them are not)."""
    try:
        key = (
            str(tokenizer.chat_template),
            _messages_key(messages),
            eot,
            inserted,
            keep,
        )
        recent = _RECENT.setdefault(tokenizer, {})
    except (TypeError, ValueError):
        return _derive(tokenizer, messages, eot=eot, inserted=inserted, keep=keep)
    if key not in recent:
        layout = _derive(tokenizer, messages, eot=eot, inserted=inserted, keep=keep)
        if len(recent) >= _RECENT_SIZE:
            recent.pop(next(iter(recent)))
        recent[key] = layout
    return recent[key]


def _messages_key(messages: list[dict[str, Any]]) -> Any:
    """A hashable key equal only for equal messages: their items when every value is a string (cheap), else
    their JSON."""
    if all(type(m) is dict and all(type(v) is str for v in m.values()) for m in messages):
        return tuple(tuple(m.items()) for m in messages)
    return json.dumps(messages, sort_keys=True, default=repr)


def _derive(
    tokenizer: Any, messages: list[dict[str, Any]], *, eot: Policy, inserted: Policy, keep: int | None
) -> ChatLayout:
    if not getattr(tokenizer, "chat_template", None):
        raise TokstepError(
            "the tokenizer has no chat template: pass the conversation as --text or --ids instead"
        )
    check_messages(messages)
    if not any(m.get("role") == "assistant" for m in messages):
        raise TokstepError("the chat has no assistant message: nothing would be supervised")
    notes: list[str] = []
    rendered = _render_checked(tokenizer, messages)
    if rendered is None:  # the template takes only string content: join the text parts, as a string
        messages = [_flatten(m) for m in messages]
        rendered = _render_checked(tokenizer, messages, raising=True)
        notes.append("content parts joined into one string each (this template takes string content only)")
    assert rendered is not None
    if not getattr(tokenizer, "is_fast", False):
        raise TokstepError(
            "chat masks need a fast tokenizer (character offsets); this one is a slow tokenizer"
        )
    encoded, chars = _encode_rendered(tokenizer, rendered, keep)
    if OFFSET_ARRAY in encoded:  # a batch's cached encoding: ints and (int, int) tuples already
        ids, bounds, offsets = encoded["input_ids"], encoded[OFFSET_ARRAY], encoded["offset_mapping"]
    else:
        ids = list(map(int, encoded["input_ids"]))
        bounds = offset_array(encoded["offset_mapping"])  # (N, 2)
        offsets = list(map(tuple, bounds.tolist()))
    turns, default_system = locate(tokenizer, messages, rendered, chars)
    codes = _char_codes(len(rendered), turns, default_system)[:chars]
    token_codes = _token_code_array(codes, bounds)  # (N,)
    reason_of = _reasons(eot, inserted)  # code -> reason
    reasons_at = reason_of[token_codes]  # (N,) object
    method = "located content"
    generation_empty = False
    training = (
        None
        if has_generation_markers(tokenizer.chat_template)
        else trl_training_template(tokenizer.chat_template)
    )
    if has_generation_markers(tokenizer.chat_template) or training is not None:
        template = training.text if training else None
        mask = (
            _generation_mask(tokenizer, messages, ids, template)
            if chars == len(rendered)
            else _prefix_generation_mask(tokenizer, messages, rendered, bounds, template)
        )
        if training is not None and mask is None:
            notes.append(
                f"TRL's {training.family} training template renders this chat with other ids (e.g. a think block in "
                "every reply): this mask follows the model's own template; rows TRL built are checked against theirs"
            )
        if mask is not None and len(mask) != len(token_codes):
            raise ValueError("the generation mask and the tokens differ in length")
        if mask is not None and mask.any():
            method = "generation mask"
            counted = np.asarray([r.counted for r in reason_of], dtype=bool)[token_codes]  # (N,)
            markup = _TEMPLATE_PART[token_codes]  # (N,)
            reasons_at[mask & ~counted & ~markup] = MaskReason.SUPERVISED  # the template trains it: so do we
            untrained = ~mask & counted  # (N,) trained by the convention, not by the template
            reasons_at[untrained] = _UNTRAINED_REASON[token_codes[untrained]]
            notes.append(
                f"assistant tokens as TRL trains them (its {training.family} training template's {{% generation %}} mask)"
                if training
                else "assistant tokens from the template's {% generation %} mask"
            )
        elif mask is not None:
            generation_empty = True
            notes.append(
                "the template's {% generation %} mask is all zeros: assistant tokens located in the rendered text"
            )
    if method == "located content" and not generation_empty:
        notes.append("assistant tokens located in the rendered chat (content + end-of-turn)")
    for turn in turns:
        if turn.dropped and not turn.pieces:  # Mistral-Nemo: a system prompt goes into a last user turn only
            notes.append(
                f"message {turn.index} ({turn.role}): the template did not render it (nothing trains on it)"
            )
        elif turn.dropped:
            notes.append(
                f"message {turn.index} ({turn.role}): the template did not render part of it "
                f"({len(turn.dropped)} piece(s), e.g. earlier reasoning it drops from history)"
            )
    if default_system:
        notes.append("the template injected a default system prompt (masked as a system turn)")
    reasons = reasons_at.tolist()
    if reasons:
        reasons[0] = MaskReason.FIRST
    role_of, part_of = _role_part_tables()
    found = tuple(
        TokenTurn(role, lo, lo, hi, end, closed) for role, lo, hi, end, closed in _token_turns(turns, bounds)
    )

    layout = ChatLayout(
        rendered=rendered,
        ids=tuple(ids),
        offsets=tuple(offsets),
        reasons=tuple(reasons),
        turns=tuple(turns),
        default_system=default_system,
        method=method,
        notes=tuple(notes),
        generation_mask_empty=generation_empty,
        turn_layout=TurnLayout(found, role_of[token_codes], part_of[token_codes], eot, inserted),
        prefix_chars=chars if chars < len(rendered) else None,
    )
    layout.__dict__["bounds"] = bounds  # the cached property, filled with the array made above
    return layout


# Per-character code -> (role, part of its turn) in engine.chat.structure's vocabulary (role None: template markup).
CODE_ROLE_PART = {
    _ASSIST: ("assistant", "content"),
    _EOT: ("assistant", "end"),
    _INSERTED: ("assistant", "inserted"),
    _WRAPPER: ("assistant", "inserted"),
    _SYS: ("system", "content"),
    _USER: ("user", "content"),
    _TOOL: ("tool", "content"),
    _NONE: (None, "template"),
}


# What a token that the template does not train, but the convention would, is masked as (by its code).
_TEMPLATE_PART = np.zeros(len(_PRIORITY), dtype=bool)  # codes the template writes inside an assistant turn
_TEMPLATE_PART[[_EOT, _INSERTED, _WRAPPER]] = True


def _reason_table(reason: Callable[[int], MaskReason]) -> np.ndarray:
    """(codes,) object array: the MaskReason of every character code (element by element: numpy would
    turn a str enum given whole into a plain str)."""
    table = np.empty(len(_PRIORITY), dtype=object)
    for code in range(len(_PRIORITY)):
        table[code] = reason(code)
    return table


@functools.cache
def _reasons(eot: Policy, inserted: Policy) -> np.ndarray:
    """`_reason` of every character code under these flags (a lookup array; copy before writing)."""
    return _reason_table(lambda code: _reason(code, eot, inserted))


_UNTRAINED_REASON = _reason_table(
    lambda code: {_EOT: MaskReason.END_OF_TURN, _INSERTED: MaskReason.INSERTED}.get(
        code, MaskReason.INSERTED if code == _WRAPPER else MaskReason.TEMPLATE
    )
)


@functools.cache
def _role_part_tables() -> tuple[np.ndarray, np.ndarray]:
    """Character code -> engine.chat.structure's role index and Part, as lookup arrays (int8)."""
    roles = np.full(len(_PRIORITY), NO_ROLE, dtype=np.int8)
    parts = np.zeros(len(_PRIORITY), dtype=np.int8)
    for code, (role, part) in CODE_ROLE_PART.items():
        roles[code] = NO_ROLE if role is None else ROLES.index(role)
        parts[code] = Part[part.upper()]
    return roles, parts


def _token_turns(
    turns: list[Turn], offsets: list[tuple[int, int]] | np.ndarray
) -> list[tuple[str, int, int, int, bool]]:
    """Each located message as token ranges: (role, content start, content end, end, closed)."""
    bounds = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)  # (N, 2)
    starts = bounds[:, 0].tolist()
    reach = np.maximum.accumulate(np.maximum(bounds[:, 1], bounds[:, 0] + 1)).tolist() if len(bounds) else []

    def tokens(spans: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
        """The first and one-past-last token overlapping any of the character spans."""
        found = [(bisect.bisect_right(reach, a), bisect.bisect_left(starts, b)) for a, b in spans]
        found = [(lo, hi) for lo, hi in found if hi > lo]
        return (min(lo for lo, _ in found), max(hi for _, hi in found)) if found else None

    out = []
    for turn in turns:
        content = tokens([*turn.pieces, *turn.inserted])
        if content is None:
            continue  # dropped from history: no token of its own
        ends = tokens([turn.eot]) if turn.eot else None
        end = max(content[1], ends[1]) if ends else content[1]
        role = (
            "assistant" if turn.role == "assistant" else CODE_ROLE_PART[_ROLE_CODE.get(turn.role, _USER)][0]
        )
        out.append((role, content[0], content[1], end, ends is not None))
    return out
