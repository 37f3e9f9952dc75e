"""An ids row's labels against the chat turns recovered from its ids: `trains-on-*`, `eos-masked`,
`no-eos`, `mask-off-by-one`, `assistant-not-trained`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokstep.engine.chat.structure import NO_ROLE, ROLES, Part
from tokstep.engine.inputs.sample import IGNORE_INDEX, Sample
from tokstep.engine.lints.catalogue import MAX_POSITIONS, Finding, finding
from tokstep.engine.lints.facts import TokenizerFacts, fmt_positions, is_blank, recovered_layout, token_name
from tokstep.engine.lints.other_template import displaced_mask, other_template
from tokstep.engine.lints.special_tokens import eos_masked_hint, truncated_answer
from tokstep.engine.lints.stray_labels import stray_findings


def structure_lints(
    tokenizer: Any, sample: Sample, facts: TokenizerFacts, within: tuple[int, int] | None = None
) -> Iterator[Finding]:
    """Compare an ids row's labels with the chat turns recovered from its ids (engine.chat.structure).
    `within`: the [start, end) of one packed document of a batch row (its labels and turns only, the rest -100
    and markup): the comparison is that document's, in row positions."""

    layout = recovered_layout(sample)
    if layout is None or sample.num_supervised == 0:
        return
    start, end = within or (0, len(sample))
    supervised = sample.labels != IGNORE_INDEX  # (N,) a fresh array
    supervised[: start + 1] = False
    other = list(other_template(tokenizer, sample, facts, supervised))
    if other:
        yield from other
        return  # the labels belong to other positions: comparing them token by token would only add noise
    versus = f"(convention: {layout.convention})"
    if supervised[start + 1 : end].all():  # nothing masked: full-sequence training on a transcript
        yield from _nothing_masked(layout, start, end, versus)
        return
    expected = layout.expected()
    replies = [t for t in layout.turns if t.role == "assistant" and t.content_end > t.content_start]
    moved = _displaced_finding(layout, supervised, expected, replies)
    if moved is not None:
        yield moved
        return
    check = _ReplyCheck(_reported_elsewhere(sample, layout, facts))
    for turn in replies:
        _check_reply(tokenizer, sample.input_ids, facts, turn, supervised, layout.eot == "train", check)
    yield from _reply_findings(check, replies, versus)
    yield from _end_of_turn_findings(tokenizer, sample, facts, check, versus)
    stray = supervised & ~expected & ~check.explained  # (N,) supervised where the structure says masked
    yield from stray_findings(
        tokenizer, layout, sample.input_ids, np.flatnonzero(stray).tolist(), versus, facts
    )


@dataclass
class _ReplyCheck:
    """What the labels of the assistant replies show, filled turn by turn (positions in row order)."""

    explained: np.ndarray  # (N,) bool: positions a reply finding covers, padding, or inserted markup
    untrained: list[Any] = field(default_factory=list)  # replies with no supervised content
    holes: list[int] = field(default_factory=list)  # masked tokens inside replies
    off: list[int] = field(default_factory=list)  # positions a span shifted by 1-2 tokens got wrong
    off_notes: list[str] = field(default_factory=list)
    masked_ends: list[int] = field(default_factory=list)  # end-of-turn tokens masked under --eot train
    trained_ends: list[int] = field(default_factory=list)  # --eot mask: end-of-turn tokens supervised anyway
    unclosed: list[int] = field(default_factory=list)  # last supervised token of a reply with no end-of-turn


def _nothing_masked(layout: Any, start: int, end: int, versus: str) -> Iterator[Finding]:
    """`trains-on-user` when every token is supervised: the other roles' words are trained too."""
    words = np.flatnonzero((layout.parts == Part.CONTENT) & (layout.roles != ROLES.index("assistant")))
    words = words[(words > start) & (words < end)].tolist()
    if words:
        yield Finding(
            "trains-on-user",
            "error",
            tuple(words[:MAX_POSITIONS]),
            "nothing is masked: every token is trained, the user's and system's words and the template's "
            f"markup too ({len(words)} tokens not from the assistant); fine for pretraining on transcripts, "
            f"not for SFT: supervise only the assistant turns {versus}",
        )


def _displaced_finding(
    layout: Any, supervised: np.ndarray, expected: np.ndarray, replies: list[Any]
) -> Finding | None:
    """`labels-other-template` when every supervised span has a reply's length but sits 3+ tokens away."""
    displaced = displaced_mask(layout, supervised, replies)
    if not displaced:
        return None
    moved = (
        np.flatnonzero(supervised ^ expected)[1:]
        if not expected[0]
        else np.flatnonzero(supervised ^ expected)
    )
    return finding(
        "labels-other-template",
        moved.tolist(),
        f"each supervised span has the length of an assistant reply but sits {', '.join(f'{d:+d}' for d in displaced)} "
        "tokens away from it: the mask was computed on another rendering (a template with other header "
        "lengths); build ids and labels from one rendering",
    )


def _reported_elsewhere(sample: Sample, layout: Any, facts: TokenizerFacts) -> np.ndarray:
    """(N,) bool: padding and template-inserted tokens, which other lints (or none) report when supervised."""
    ids = sample.input_ids
    padding = (
        np.zeros(len(sample), dtype=bool) if sample.attention_mask is None else sample.attention_mask == 0
    )
    if facts.pad_id is not None:
        padding |= (ids == facts.pad_id) & (layout.roles == NO_ROLE)  # pad-trained reports those
    return padding | (layout.parts == Part.INSERTED)


def _check_reply(
    tokenizer: Any,
    ids: np.ndarray,
    facts: TokenizerFacts,
    turn: Any,
    supervised: np.ndarray,
    train_eot: bool,
    check: _ReplyCheck,
) -> None:
    """Compare one assistant reply's labels with its span, adding what is wrong to `check`."""
    lo, hi = turn.content_start, turn.end if train_eot else turn.content_end
    shift = _shift(supervised, lo, hi)
    if shift:
        moved = sorted(set(range(lo + shift, hi + shift)) ^ set(range(lo, hi)))
        check.off += moved
        check.explained[moved] = True
        check.off_notes.append(
            f"t = {lo}..{hi - 1} is supervised as t = {lo + shift}..{hi + shift - 1} ({shift:+d})"
        )
        return
    content = supervised[turn.content_start : turn.content_end]
    if not content.any():
        check.untrained.append(turn)
        check.explained[lo:hi] = True
        return
    first = turn.content_start + int(np.argmax(content))
    last = turn.content_end - 1 - int(np.argmax(content[::-1]))
    head = list(range(turn.content_start, first))
    tail = list(range(last + 1, turn.content_end))
    ends = (  # what ends the turn, masked (not Gemma's `\\n` after it: template, trained or not)
        [j for j in turn.end_of_turn if not supervised[j] and _ends_turn(tokenizer, ids, turn, j, facts)]
        if train_eot
        else []
    )
    trained_ends = [] if train_eot else [j for j in turn.end_of_turn if supervised[j]]
    check.trained_ends += trained_ends
    if 0 < len(head) <= 2:
        check.off += head
        check.off_notes.append(f"the reply at t = {turn.content_start} starts {len(head)} token(s) late")
    elif head:
        check.holes += head
    if 0 < len(tail) <= 2:
        check.off += tail + ends
        check.off_notes.append(
            f"the reply ending at t = {turn.end - 1} stops {len(tail) + len(ends)} token(s) early"
        )
        ends = []
    elif tail:
        check.holes += tail
    check.holes += [j for j in range(first, last + 1) if not supervised[j]]
    check.masked_ends += ends
    check.explained[lo:hi] = True
    check.explained[trained_ends] = True
    if not turn.closed and supervised[turn.content_end - 1]:
        check.unclosed.append(turn.content_end - 1)


def _reply_findings(check: _ReplyCheck, replies: list[Any], versus: str) -> Iterator[Finding]:
    """Replies not trained, holes in them, and spans off by a token or two."""
    if check.untrained:
        yield _untrained_finding(check.untrained, replies, versus)
    if check.holes:
        yield finding(
            "assistant-not-trained",
            check.holes,
            f"{len(check.holes)} token(s) inside assistant replies are masked "
            f"(t = {fmt_positions(check.holes)}): "
            f"supervise each reply whole {versus}",
        )
    if check.off:
        yield finding(
            "mask-off-by-one",
            check.off,
            "the supervised span is off against the assistant reply: "
            f"{'; '.join(check.off_notes[:3])} {versus}",
        )


def _end_of_turn_findings(
    tokenizer: Any, sample: Sample, facts: TokenizerFacts, check: _ReplyCheck, versus: str
) -> Iterator[Finding]:
    """End-of-turn tokens masked (`--eot train`) or trained (`--eot mask`), and replies that never end."""
    ids = sample.input_ids
    if check.masked_ends:
        masked = check.masked_ends
        token = next((int(ids[j]) for j in masked if int(ids[j]) in facts.specials), int(ids[masked[0]]))
        yield finding(
            "eos-masked",
            masked,
            f"the end-of-turn {token_name(tokenizer, facts, token)} after an assistant reply is masked "
            "(-100) at "
            f"t = {fmt_positions(masked)}: the model never learns to stop; {eos_masked_hint(facts, token)} "
            f"{versus}",
        )
    if check.trained_ends:
        token = int(ids[check.trained_ends[0]])
        yield Finding(
            "trains-on-markup",
            "warning",
            tuple(check.trained_ends[:MAX_POSITIONS]),
            f"the end-of-turn {facts.name(token)} after an assistant reply is supervised at "
            f"t = {fmt_positions(check.trained_ends)}, but --eot mask says it is masked: drop --eot mask if "
            f"your trainer means to train it {versus}",
        )
    if check.unclosed:
        ends_named = " / ".join(facts.name(i) for i in sorted(facts.end_ids)) or "end-of-turn"
        yield finding(
            "no-eos",
            check.unclosed,
            f"the assistant reply ends at t = {check.unclosed[-1]} with no {ends_named} after it: the model "
            f"never learns to stop; end every reply with the template's end-of-turn {versus}",
        )
        yield from truncated_answer(tokenizer, sample, check.unclosed[-1], ends_named)


def _ends_turn(tokenizer: Any, ids: np.ndarray, turn: Any, j: int, facts: TokenizerFacts) -> bool:
    """Whether token j of a turn's recovered end teaches the model to stop: not whitespace after it (Gemma's
    `\\n`), and an end-of-turn / EOS id whenever the turn's end holds one (not the next header that a template
    always appending one, like Llama-3's base template, writes right after it)."""
    if is_blank(
        tokenizer, int(ids[j]), facts
    ):  # whitespace after the end-of-turn is template (Gemma's `\\n`);
        return not any(
            int(ids[k]) in facts.end_ids for k in turn.end_of_turn if k < j
        )  # before it (` </s>`): end
    holds_end = any(int(ids[k]) in facts.end_ids for k in turn.end_of_turn)
    return not holds_end or int(ids[j]) in facts.end_ids


def _shift(supervised: np.ndarray, lo: int, hi: int) -> int:
    """d in ±1, ±2 when exactly [lo+d, hi+d) is supervised around the expected span [lo, hi); else 0."""
    n = len(supervised)
    for d in (1, -1, 2, -2):
        a, b = lo + d, hi + d
        if a < 1 or b > n:
            continue
        window = supervised[max(lo - 2, 0) : min(hi + 2, n)]
        inside = supervised[a:b]
        if inside.all() and int(window.sum()) == b - a:
            return d
    return 0


def _untrained_finding(untrained: list[Any], replies: list[Any], versus: str) -> Finding:
    """`assistant-not-trained` for replies with no supervised token (info when only the last is trained)."""
    positions = [j for turn in untrained for j in range(turn.content_start, turn.end)]
    where = ", ".join(f"t = {t.content_start}..{t.end - 1}" for t in untrained[:3])
    if len(untrained) == len(replies):
        return finding(
            "assistant-not-trained",
            positions,
            f"no assistant reply is supervised ({where}): the labels train other tokens {versus}",
        )
    if untrained == replies[:-1]:
        return Finding(
            "assistant-not-trained",
            "info",
            tuple(positions[:MAX_POSITIONS]),
            f"only the last assistant reply is supervised; {len(untrained)} earlier one(s) are masked ({where}): "
            "fine if you meant it",
        )
    return Finding(
        "assistant-not-trained",
        "warning",
        tuple(positions[:MAX_POSITIONS]),
        f"{len(untrained)} of {len(replies)} assistant replies are masked ({where}): supervise every reply "
        f"{versus}",
    )
