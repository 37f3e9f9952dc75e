"""Lints of a trainer's batch row: labels per packed document against its turns, supervised padding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from tokstep.engine.chat.structure import NO_ROLE, Part, TurnLayout
from tokstep.engine.inputs.sample import IGNORE_INDEX, Sample
from tokstep.engine.lints.catalogue import Finding, finding
from tokstep.engine.lints.chat_structure import structure_lints
from tokstep.engine.lints.convention import lift_convention
from tokstep.engine.lints.facts import fmt_positions, recovered_layout, tokenizer_facts
from tokstep.engine.lints.labels import label_lints


def batch_row_lints(
    tokenizer: Any, sample: Sample, skip: np.ndarray, documents: Sequence[tuple[int, int]]
) -> list[Finding]:
    """The label lints of a trainer's batch row against its recovered chat turns (`sample.layout`, from
    engine.batches.structure), one packed document at a time as if it were an ids row, in row positions.
    `skip` (N,) bool: padding and each document's first token, left out of the comparison; `documents`: the
    row's [start, end) document spans. Nothing when no turn was recovered."""

    layout = recovered_layout(sample)
    if layout is None:
        return []
    facts = tokenizer_facts(tokenizer)
    findings: list[Finding] = []
    for d, (start, end) in enumerate(documents):
        turns = tuple(t for t in layout.turns if start <= t.start < end)
        if not turns:
            continue
        inside = np.zeros(len(sample), dtype=bool)  # (N,)
        inside[start:end] = True
        labels = np.where(inside & ~skip, sample.labels, IGNORE_INDEX)  # (N,) this document's labels only
        alone = TurnLayout(  # this document's turns only: the rest of the row is markup, expected masked
            turns,
            np.where(inside, layout.roles, NO_ROLE).astype(np.int8),
            np.where(inside, layout.parts, int(Part.TEMPLATE)).astype(np.int8),
            layout.eot,
            layout.inserted,
        )
        compared = replace(sample, labels=labels, layout=alone)
        if not (labels != IGNORE_INDEX).any():
            continue  # a document that trains nothing: nothing to compare (the row's loss shows it)
        shifted = [
            f
            for f in label_lints(tokenizer, replace(compared, kind="ids"), facts)
            if f.code == "labels-pre-shifted"
        ]
        found = shifted or list(structure_lints(tokenizer, compared, facts, (start, end)))
        if len(documents) > 1:
            found = [
                replace(f, message=f"document {d} of 0..{len(documents) - 1}: {f.message}") for f in found
            ]
        findings += found
    return lift_convention(findings)


def batch_padding_lints(tokenizer: Any, labels: np.ndarray, padding: np.ndarray) -> list[Finding]:
    """`pad-trained` for a trainer's batch row: supervised labels where the row is padding (`padding` (N,)
    bool: attention_mask 0 or outside every document). An error when pad == eos: the collator that left
    them also cannot tell the answer's EOS from padding, and the model learns to emit EOS runs."""
    facts = tokenizer_facts(tokenizer)
    trained = np.flatnonzero(padding & (labels != IGNORE_INDEX))
    trained = trained[trained > 0].tolist()
    if not trained:
        return []
    same = facts.pad_id is not None and facts.pad_id == facts.eos_id
    message = (
        f"{len(trained)} padding position(s) are supervised (t = {fmt_positions(trained)}): the model learns "
        "to emit padding"
    )
    if same:
        message += (
            f"; pad == eos ({facts.name(facts.pad_id)}), so it learns to emit EOS runs, and masking every pad "
            "id would mask the answer's EOS too: use a distinct pad token, or mask labels where attention_mask is 0"
        )
    found = finding("pad-trained", trained, message)
    return [replace(found, severity="error") if same else found]
