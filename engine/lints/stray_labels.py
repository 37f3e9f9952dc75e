"""Supervised tokens the recovered chat structure says are masked: `trains-on-user/system/tool/markup`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tokstep.engine.chat.masks import trl_training_template
from tokstep.engine.chat.structure import Part, markup_for
from tokstep.engine.lints.catalogue import MAX_POSITIONS, Finding, finding
from tokstep.engine.lints.facts import TokenizerFacts, fmt_positions, is_blank, visible_piece


def _beside_reply(
    tokenizer: Any, layout: Any, ids: np.ndarray, stray: list[int], facts: TokenizerFacts
) -> set[int]:
    """Stray tokens trainers commonly train with a reply (what TRL's training templates train): whitespace or an
    EOS / end-of-turn token right after an assistant turn's end (Qwen's and Gemma's `\\n`, Phi-3's final
    `<|endoftext|>`), and the whitespace that ends an assistant header right before the reply (Qwen2.5's `\\n`)."""

    def harmless(j: int) -> bool:
        token = int(ids[j])
        return token in facts.end_ids or token == facts.eos_id or is_blank(tokenizer, token, facts)

    def reply_end(j: int) -> bool:
        return j >= 0 and layout.role(j) == "assistant" and int(layout.parts[j]) == Part.END

    def reply_start(j: int) -> bool:
        return j < len(ids) and layout.role(j) == "assistant" and int(layout.parts[j]) == Part.CONTENT

    trained = set(stray)
    found: set[int] = set()
    for j in stray:  # in order: a run after the end-of-turn chains (`<|end|>`, `\\n`, `<|endoftext|>`)
        header_tail = reply_start(j + 1) and (j - 1) not in trained  # not the end of a header trained whole
        if harmless(j) and (reply_end(j - 1) or (j - 1) in found or header_tail):
            found.add(j)
    return found


def _folded_system(tokenizer: Any, layout: Any, ids: np.ndarray, stray: list[int]) -> set[int]:
    """Stray tokens that are a system prompt the template folds into the first user turn (Gemma-3): a trained
    run from that turn's first word to the separator the template writes after a system prompt (`\n\n`),
    the separator itself untrained. Ids alone cannot tell where such a prompt ends; its training can."""
    markup = markup_for(tokenizer)
    if (
        markup is None
        or markup.system_place != "folded"
        or not layout.turns
        or layout.turns[0].role != "user"
    ):
        return set()
    first, trained, separator = layout.turns[0], set(stray), markup.system_separator
    j = first.content_start
    while j < first.content_end and j in trained:
        j += 1
    if j == first.content_start or j + len(separator) > first.content_end:
        return set()
    return (
        set(range(first.content_start, j))
        if tuple(ids[j : j + len(separator)].tolist()) == separator
        else set()
    )


def stray_findings(
    tokenizer: Any, layout: Any, ids: np.ndarray, stray: list[int], versus: str, facts: TokenizerFacts
) -> Iterator[Finding]:
    """Supervised tokens the structure says are not trained: other roles' words, headers, markup."""

    by_role: dict[str, list[int]] = {}
    markup: list[int] = []
    beside = _beside_reply(tokenizer, layout, ids, stray, facts)
    folded = _folded_system(tokenizer, layout, ids, stray)
    for j in stray:
        role, kind = ("system" if j in folded else layout.role(j)), int(layout.parts[j])
        if kind == Part.CONTENT and role in ("user", "system", "tool"):
            by_role.setdefault(role, []).append(j)
        elif j not in beside:
            markup.append(j)
    hints = {
        "user": "the model learns to write the user's words (a pattern that matched the user header, not the "
        "assistant's?)",
        "system": "the model learns to write the system prompt",
        "tool": "the model learns to write the tool's results",
    }
    for role in ("user", "system", "tool"):
        if role in by_role:
            found = by_role[role]
            yield finding(
                f"trains-on-{role}",
                found,
                f"{len(found)} supervised token(s) in the {role} turn(s) at t = {fmt_positions(found)}: "
                f"{hints[role]} {versus}",
            )
    if beside and trl_training_template(getattr(tokenizer, "chat_template", None)) is None:
        near = sorted(beside)  # (what TRL trains for a template it recognises is no finding at all)
        pieces = ", ".join(repr(visible_piece(tokenizer, int(ids[j]))) for j in near[:3]) + (
            ", …" if len(near) > 3 else ""
        )
        yield Finding(
            "trains-on-markup",
            "info",
            tuple(near[:MAX_POSITIONS]),
            f"supervised beside a reply at t = {fmt_positions(near)} ({pieces}): a newline / EOS right after the "
            "end-of-turn or right before the reply, as TRL's training templates train for some families; harmless",
        )
    if markup:
        pieces = ", ".join(repr(visible_piece(tokenizer, int(ids[j]))) for j in markup[:3]) + (
            ", …" if len(markup) > 3 else ""
        )
        yield finding(
            "trains-on-markup",
            markup,
            f"{len(markup)} supervised template token(s) at t = {fmt_positions(markup)} ({pieces}): role "
            f"headers / markup are the template's, not the reply {versus}",
        )
