"""Label lints: `nothing-trained`, `id-beyond-tokenizer`, `labels-pre-shifted`, `labels-differ`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tokstep.engine.inputs.sample import IGNORE_INDEX, Sample
from tokstep.engine.lints.catalogue import Finding, finding
from tokstep.engine.lints.facts import TokenizerFacts, fmt_positions

PRE_SHIFTED_SHARE = 0.8  # share of supervised labels equal to the NEXT input id that means "already shifted"


def label_lints(tokenizer: Any, sample: Sample, facts: TokenizerFacts) -> Iterator[Finding]:
    """Labels and ids out of range, labels that train nothing, pre-shifted, or differ from the ids."""
    ids, labels = sample.input_ids, sample.labels
    if sample.num_supervised == 0:
        yield finding("nothing-trained", (), "every label is -100: this sample trains nothing")
    bad_ids = np.flatnonzero((ids < 0) | (ids >= facts.size)).tolist()
    bad_labels = np.flatnonzero((labels != IGNORE_INDEX) & ((labels < 0) | (labels >= facts.size))).tolist()
    if bad_labels:
        i = bad_labels[0]
        yield finding(
            "id-beyond-tokenizer",
            bad_labels,
            f"labels[{i}] = {int(labels[i])} is neither -100 nor a token of this tokenizer (0..{facts.size - 1})",
        )
    if bad_ids:
        i = bad_ids[0]
        yield finding(
            "id-beyond-tokenizer",
            bad_ids,
            f"input_ids[{i}] = {int(ids[i])} is not a token of this tokenizer (0..{facts.size - 1}): "
            "the data was tokenized with another tokenizer",
        )
    if sample.kind != "ids" or len(ids) < 3:
        return
    given = np.flatnonzero(labels[:-1] != IGNORE_INDEX)  # positions with a label and a next input id
    if len(given) >= 3:
        next_share = float((labels[given] == ids[given + 1]).mean())
        self_share = float((labels[given] == ids[given]).mean())
        if next_share >= PRE_SHIFTED_SHARE and self_share < 0.5:
            off = [int(i) for i in given if labels[i] != ids[i]]
            yield finding(
                "labels-pre-shifted",
                off,
                f"labels[i] == input_ids[i+1] at {next_share:.0%} of labelled positions: the labels are "
                "already shifted and the model shifts them again (it learns the token after next)",
            )
            return
    differ = [
        int(i)
        for i in np.flatnonzero(labels != IGNORE_INDEX)
        if i > 0 and labels[i] != ids[i] and 0 <= labels[i] < facts.size
    ]
    if differ:
        yield finding(
            "labels-differ",
            differ,
            f"{len(differ)} supervised label(s) differ from the input id at the same position "
            f"(t = {fmt_positions(differ)}): the model is trained on other tokens than it reads",
        )
