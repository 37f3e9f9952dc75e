"""BOS and EOS lints: `double-bos`, `missing-bos`, `eos-masked`, `no-eos`, `truncated?`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tokstep.engine.inputs.sample import IGNORE_INDEX, MaskReason, Sample
from tokstep.engine.lints.catalogue import Finding, finding
from tokstep.engine.lints.facts import (
    TokenizerFacts,
    fmt_positions,
    is_blank,
    is_sft,
    supervised_runs,
    visible_piece,
)
from tokstep.engine.model.inspector import special_ids, token_bytes
from tokstep.engine.model.tokens import make_visible


def bos_lints(tokenizer: Any, sample: Sample, facts: TokenizerFacts) -> Iterator[Finding]:
    """BOS twice at the start, or missing where this tokenizer adds one."""
    ids, bos = sample.input_ids, facts.bos_id
    if bos is None or not len(ids):
        return
    if len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
        cause = (
            "the chat template writes it and the tokenizer adds it again"
            if facts.template_writes_bos
            else "it was added twice"
        )
        yield finding(
            "double-bos",
            (0, 1),
            f"BOS {facts.name(bos)} twice at the start ({cause}): tokenize with add_special_tokens=False",
        )
    elif ids[0] != bos and facts.adds_bos:
        if (sample.kind == "chat" or sample.layout is not None) and not facts.template_writes_bos:
            yield Finding(
                "missing-bos",
                "info",
                (0,),
                f"the chat template does not write BOS {facts.name(bos)} though tokenizer(text) adds one: "
                "check which one your training used",
            )
        else:
            yield finding(
                "missing-bos",
                (0,),
                f"no BOS {facts.name(bos)} at the start, though this tokenizer adds one by default",
            )


def eos_lints(tokenizer: Any, sample: Sample, facts: TokenizerFacts) -> Iterator[Finding]:
    """The end-of-answer EOS masked, or missing (without recovered chat turns)."""
    ids, labels = sample.input_ids, sample.labels
    ends = facts.end_ids
    if not ends:
        return
    end_names = " / ".join(facts.name(i) for i in sorted(ends))
    candidates = (
        np.flatnonzero(  # (K,) end ids masked right after a supervised token
            (ids[2:, None] == np.fromiter(ends, dtype=np.int64, count=len(ends))).any(axis=1)
            & (labels[2:] == IGNORE_INDEX)
            & (labels[1:-1] != IGNORE_INDEX)
        )
        + 2
    )
    masked_ends = [
        j
        for j in candidates.tolist()
        if sample.mask_reasons[j] is not MaskReason.END_OF_TURN  # masked on purpose: --eot mask
        and int(ids[j - 1]) not in ends  # an EOS after a trained end-of-turn (Phi-3's `<|endoftext|>`)
    ]
    if masked_ends:
        token = int(ids[masked_ends[0]])
        yield finding(
            "eos-masked",
            masked_ends,
            f"the {facts.name(token)} that ends the answer is masked (-100) at t = {fmt_positions(masked_ends)}: "
            f"the model never learns to stop; {eos_masked_hint(facts, token)}",
        )
    if not is_sft(sample):
        return
    missing = []
    for start, end in supervised_runs(sample):
        last = end - 1
        while last > start and ids[last] not in ends and is_blank(tokenizer, int(ids[last]), facts):
            last -= 1  # `<|im_end|>` then `\n`, both supervised: the turn still ends properly
        if ids[last] in ends:
            continue
        last = end - 1
        if ids[last] in ends or (end < len(ids) and ids[end] in ends and labels[end] == IGNORE_INDEX):
            continue  # ends properly, or its masked EOS is reported above
        missing.append(last)
    if missing:
        cut = (
            " (the sample was truncated there)"
            if sample.truncated_from and missing[-1] == len(ids) - 1
            else ""
        )
        yield finding(
            "no-eos",
            missing,
            f"the answer ends with {visible_piece(tokenizer, int(ids[missing[0]]))!r} and no {end_names}{cut}: "
            "the model never learns to stop",
        )
        yield from truncated_answer(tokenizer, sample, missing[-1], end_names)


def eos_masked_hint(facts: TokenizerFacts, token_id: int) -> str:
    """The fix for a masked EOS / end-of-turn, for this tokenizer (pad == eos or not)."""
    name = facts.name(token_id)
    if facts.pad_id is not None and facts.pad_id == token_id:
        return (
            f"pad == eos ({name}) here, so a collator that masks every pad id masked it too: use a distinct pad "
            "token, or mask padding by attention_mask"
        )
    pad = (
        "this tokenizer has no pad token"
        if facts.pad_id is None
        else f"the pad token is {facts.name(facts.pad_id)}, not {name}"
    )
    return (
        f"{pad}, so padding did not mask it: the answer's mask stops before it; extend the mask over {name}"
    )


def _mid_word(tokenizer: Any, token_id: int) -> str | None:
    """The token's text when it ends inside a word (a letter or digit, no space or punctuation after it)."""
    if not 0 <= token_id < len(tokenizer) or token_id in special_ids(tokenizer):
        return None
    text = token_bytes(tokenizer, token_id).decode("utf-8", errors="replace")
    return text if text[-1:].isalnum() else None


def truncated_answer(tokenizer: Any, sample: Sample, last: int, end_names: str) -> Iterator[Finding]:
    """`truncated?` when a supervised answer ends the row mid-word (only padding may follow)."""
    after = sample.input_ids[last + 1 :]
    pad = tokenizer.pad_token_id
    tail_is_padding = all(int(t) == pad for t in after) or (
        sample.attention_mask is not None and not sample.attention_mask[last + 1 :].any()
    )
    if not tail_is_padding:
        return
    text = _mid_word(tokenizer, int(sample.input_ids[last]))
    if text is None:
        return
    yield finding(
        "truncated?",
        (last,),
        f"the answer stops mid-word at t = {last} ({make_visible(text)!r}) with no {end_names} after it: truncated? "
        "(cut at max_length); raise the limit or drop rows longer than it",
    )
