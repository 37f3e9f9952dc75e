"""Text and prompt+answer lints: `no-roundtrip`, `chat-as-text`, `token-spans-boundary`,
`answer-leading-space`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tokstep.engine.inputs.sample import MaskReason, Sample
from tokstep.engine.inputs.spec import SampleSpec
from tokstep.engine.lints.catalogue import Finding, finding
from tokstep.engine.lints.facts import TokenizerFacts, visible_piece
from tokstep.engine.model.inspector import roundtrip, token_bytes


def text_lints(tokenizer: Any, sample: Sample, spec: SampleSpec, facts: TokenizerFacts) -> Iterator[Finding]:
    """Text that does not round-trip through the tokenizer, or text that already holds chat markup."""
    has_unknown = facts.unk_id is not None and bool((sample.input_ids == facts.unk_id).any())
    if spec.text is not None:
        check = roundtrip(tokenizer, spec.text)
        if not check.ok and not has_unknown:
            yield finding(
                "no-roundtrip",
                (),
                f"decode(encode(text)) differs from the text at character {check.first_difference}: "
                f"{check.expected!r} came back as {check.got!r}",
            )
    elif spec.prompt is not None and spec.answer is not None and not has_unknown:
        # The answer is encoded on its own, so its ids alone need not decode to it (SentencePiece drops the
        # leading space of ' Paris' when decoding); what the model trains on is prompt + answer, decoded together.
        text = spec.prompt + spec.answer
        body = [int(i) for i in sample.input_ids if int(i) not in facts.specials]
        decoded = tokenizer.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if decoded != text and decoded.strip() != text.strip():
            at = next((i for i, (a, b) in enumerate(zip(text, decoded, strict=False)) if a != b), None)
            at = min(len(text), len(decoded)) if at is None else at
            yield finding(
                "no-roundtrip",
                (),
                f"decode(prompt ids + answer ids) differs from prompt + answer at character {at}: "
                f"{text[at : at + 12]!r} came back as {decoded[at : at + 12]!r}",
            )
    if spec.text is not None and facts.has_template:
        markup = [
            s
            for s in facts.special_texts
            if s in spec.text and s not in (tokenizer.bos_token, tokenizer.eos_token)
        ]
        if markup:
            marked = [int(i) for i in np.flatnonzero(np.isin(sample.input_ids, list(facts.specials)))]
            yield finding(
                "chat-as-text",
                marked,
                f"the text already contains chat markup ({markup[0]}): as plain text every turn is trained, "
                "the user's too; pass it as messages",
            )


def boundary_lints(tokenizer: Any, sample: Sample, spec: SampleSpec) -> Iterator[Finding]:
    """A token spanning the prompt and the answer, or a space the answer gains or loses at the seam."""
    prompt, answer = spec.prompt or "", spec.answer or ""
    if not prompt or not answer:
        return
    first_answer = next((i for i, r in enumerate(sample.mask_reasons) if r is MaskReason.SUPERVISED), None)
    where = (first_answer - 1, first_answer) if first_answer else ()
    joint = tokenizer(prompt + answer, add_special_tokens=False, return_offsets_mapping=True)
    boundary = len(prompt)
    for token_id, (start, end) in zip(joint["input_ids"], joint["offset_mapping"], strict=False):
        if start < boundary < end and (prompt[start:boundary].strip() and answer[: end - boundary].strip()):
            yield finding(
                "token-spans-boundary",
                where,
                f"tokenized as one string, {visible_piece(tokenizer, token_id)!r} covers the prompt's "
                f"{prompt[start:boundary]!r} and the answer's {answer[: end - boundary]!r}: the prompt ends "
                "inside a word",
            )
            break
    alone = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    alone_text = b"".join(token_bytes(tokenizer, i) for i in alone).decode("utf-8", errors="replace")
    if alone_text.startswith(" ") and not answer[:1].isspace():
        yield finding(
            "answer-leading-space",
            where,
            f"tokenized on its own the answer gains a space ({visible_piece(tokenizer, alone[0])!r}) that the "
            "text does not have: the model is trained on a space that is not there",
        )
        return
    space = prompt[len(prompt.rstrip(" \t")) :]
    if space and not answer[:1].isspace():
        spaced = list(tokenizer(space + answer, add_special_tokens=False)["input_ids"])
        space_ids = list(tokenizer(space, add_special_tokens=False)["input_ids"])
        if spaced != space_ids + alone:
            yield finding(
                "answer-leading-space",
                where,
                f"the space before the answer ends the prompt, so the answer starts with "
                f"{visible_piece(tokenizer, alone[0])!r}; in running text it is "
                f"{visible_piece(tokenizer, spaced[0])!r}: "
                "move the space into the answer",
            )


def boundary_net(tokenizer: Any, sample: Sample, spec: SampleSpec) -> Iterator[Finding]:
    """Prompt and answer tokenized apart give other ids at the seam than tokenized together (`:▁`+`P`)."""
    prompt, answer = spec.prompt or "", spec.answer or ""
    if not prompt or not answer:
        return
    apart_p = [int(i) for i in tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    apart_a = [int(i) for i in tokenizer(answer, add_special_tokens=False)["input_ids"]]
    joint = [int(i) for i in tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]]
    if joint == apart_p + apart_a:
        return
    k = next((i for i, (a, b) in enumerate(zip(apart_p + apart_a, joint, strict=False)) if a != b), 0)
    lo = max(k - 1, 0)
    pieces = [visible_piece(tokenizer, i) for i in (apart_p + apart_a)[lo : len(apart_p) + 1]]
    together = [visible_piece(tokenizer, i) for i in joint[lo : lo + len(pieces)]]
    first = next((i for i, r in enumerate(sample.mask_reasons) if r.counted), None)
    yield finding(
        "answer-leading-space",
        (first - 1, first) if first else (),
        f"tokenized apart the seam is {' + '.join(map(repr, pieces))}; tokenized together it is "
        f"{' + '.join(map(repr, together))}: the model trains on ids it never sees in running text",
    )
