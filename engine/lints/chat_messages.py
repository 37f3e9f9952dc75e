"""Lints of a chat built from messages: `double-template`, `template-inserted`, `generation-mask-empty`,
and tokens spanning the template and the reply."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tokstep.engine.chat.masks import ChatLayout, derive, render
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.sample import IGNORE_INDEX, Sample
from tokstep.engine.inputs.spec import SampleSpec
from tokstep.engine.lints.catalogue import Finding, finding
from tokstep.engine.lints.facts import TokenizerFacts, visible_piece


def _render_prompt(tokenizer: Any, messages: list[dict[str, Any]]) -> str | None:
    """The messages rendered with the generation prompt (None when the template refuses them)."""
    try:
        return render(tokenizer, messages, generation_prompt=True) if messages else ""
    except Exception:  # noqa: BLE001 - a template that refuses a prefix says nothing here
        return None


def _chat_boundary_lints(
    tokenizer: Any, sample: Sample, spec: SampleSpec, layout: ChatLayout
) -> Iterator[Finding]:
    """A token that starts in the template and ends in the assistant's reply (where the mask is cut)."""
    rendered, offsets, bounds = layout.rendered, layout.offsets, layout.bounds  # bounds: (N, 2)
    for turn in layout.turns:
        if turn.role != "assistant" or not turn.pieces:
            continue
        start = turn.pieces[0][0]
        across = np.flatnonzero((bounds[:, 0] < start) & (start < bounds[:, 1]))  # tokens spanning `start`
        if not len(across):
            continue
        index = int(across[0])
        token_start, token_end = offsets[index]
        template_side, reply_side = rendered[token_start:start], rendered[start:token_end]
        piece = visible_piece(tokenizer, int(sample.input_ids[index]))
        trained = "trained" if sample.labels[index] != IGNORE_INDEX else "not trained"
        if not template_side.strip():
            prompt = _render_prompt(tokenizer, list(spec.chat or ())[: turn.index])
            if prompt is not None and not prompt.endswith(template_side):
                continue  # the space is written only after the prompt (Llama-2's `[/INST] Paris`): the model
                # generates `▁Paris` after `[/INST]` at inference too, so training on it is right
            yield finding(
                "answer-leading-space",
                (index,),
                f"the template ends with {template_side!r} before the reply, and the reply's first token "
                f"{piece!r} takes it along: that token starts in the template and is {trained}; "
                "end the generation prompt without the space",
            )
        else:
            yield finding(
                "token-spans-boundary",
                (index,),
                f"{piece!r} covers the template's {template_side!r} and the reply's {reply_side!r} ({trained})",
            )


def _template_lints(sample: Sample, spec: SampleSpec, layout: ChatLayout) -> Iterator[Finding]:
    """Template-inserted tokens inside assistant turns, and {% generation %} masks that train nothing."""
    if layout.generation_mask_empty:
        yield finding(
            "generation-mask-empty",
            (),
            "the template has {% generation %} markers but return_assistant_tokens_mask is all zeros: "
            "a trainer using it (TRL assistant_only_loss) trains nothing on this chat",
        )
    positions = layout.inserted_tokens()
    if not positions:
        return
    text = "".join(
        layout.rendered[s:e] for t in layout.turns for s, e in t.inserted if (s, e) not in t.wrapper
    )
    trained = spec.inserted == "train"
    yield finding(
        "template-inserted",
        positions,
        f"{len(positions)} token(s) inside assistant turns are written by the template, not the message "
        f"({text[:40]!r}): {'trained (--inserted mask to mask them)' if trained else 'masked (--inserted mask)'}",
    )


def chat_lints(tokenizer: Any, sample: Sample, spec: SampleSpec, facts: TokenizerFacts) -> Iterator[Finding]:
    """The lints of a chat built from messages: the boundary and inserted tokens, markup inside a message."""
    try:
        layout = derive(tokenizer, list(spec.chat or ()), eot=spec.eot, inserted=spec.inserted)
    except TokstepError:
        layout = None
    if layout is not None and list(layout.ids) == sample.input_ids.tolist():
        yield from _chat_boundary_lints(tokenizer, sample, spec, layout)
        yield from _template_lints(sample, spec, layout)
    for number, message in enumerate(spec.chat or ()):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            continue
        markup = next((s for s in facts.special_texts if s in content), None)
        if markup is None:
            continue
        marked = _positions_of_text(tokenizer, sample, spec, content, facts)
        yield finding(
            "double-template",
            marked,
            f"message {number} ({message.get('role')}) already contains {markup}: the chat template adds "
            "its own markup, so it is applied twice",
        )


def _positions_of_text(
    tokenizer: Any, sample: Sample, spec: SampleSpec, content: str, facts: TokenizerFacts
) -> list[int]:
    """Special tokens inside `content` once rendered (empty when the rendering cannot be matched)."""
    try:
        rendered = tokenizer.apply_chat_template(list(spec.chat or ()), tokenize=False)
        encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    except Exception:  # noqa: BLE001
        return []
    if list(encoded["input_ids"]) != sample.input_ids.tolist():
        return []
    start = rendered.find(content)
    end = start + len(content)
    return [
        i
        for i, ((s, _e), token) in enumerate(
            zip(encoded["offset_mapping"], encoded["input_ids"], strict=True)
        )
        if start <= s < end and token in facts.specials
    ]
