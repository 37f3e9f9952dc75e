"""Token lints: `unknown-token`, `pad-trained`, `whitespace-run`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np

from tokstep.engine.inputs.sample import IGNORE_INDEX, Sample
from tokstep.engine.lints.catalogue import WHITESPACE_RUN, Finding, finding
from tokstep.engine.lints.facts import TokenizerFacts, fmt_positions, recovered_layout
from tokstep.engine.model.inspector import token_bytes


def token_lints(tokenizer: Any, sample: Sample, facts: TokenizerFacts) -> Iterator[Finding]:
    """Unknown tokens, supervised padding, and runs of whitespace-only tokens."""
    ids, labels = sample.input_ids, sample.labels
    if facts.unk_id is not None and facts.unk_id not in (facts.eos_id, facts.bos_id, facts.pad_id):
        # (GPT-2 names one token unk, bos, eos and pad: its EOS is not an unknown character)
        unknown = np.flatnonzero(ids == facts.unk_id).tolist()
        if unknown:
            trained = sum(1 for i in unknown if labels[i] != IGNORE_INDEX)
            yield finding(
                "unknown-token",
                unknown,
                f"{facts.name(facts.unk_id)} at {len(unknown)} position(s) ({trained} supervised): some "
                "characters cannot be represented by this tokenizer",
            )
    if facts.pad_id is not None:
        pads = np.flatnonzero((ids == facts.pad_id) & (labels != IGNORE_INDEX)).tolist()
        pads = [p for p in pads if p > 0]
        layout = recovered_layout(sample)
        if layout is not None:  # end-of-turn tokens the structure expects supervised are not padding
            pads = [p for p in pads if layout.roles[p] < 0]  # inside a turn: the turn lints say it
        if (
            facts.pad_id == facts.eos_id
        ):  # an EOS right after a trained reply ends it (DeepSeek's, every turn)
            pads = [p for p in pads if labels[p - 1] == IGNORE_INDEX or ids[p - 1] == facts.pad_id]
        if pads:
            yield finding(
                "pad-trained",
                pads,
                f"{len(pads)} padding token(s) {facts.name(facts.pad_id)} are supervised: "
                "the model learns to emit padding",
            )
    if sample.attention_mask is not None:
        hidden = [
            int(i) for i in np.flatnonzero((sample.attention_mask == 0) & (labels != IGNORE_INDEX)) if i > 0
        ]
        if hidden:
            yield finding(
                "pad-trained",
                hidden,
                f"{len(hidden)} supervised position(s) have attention_mask 0 (t = {fmt_positions(hidden)}): "
                "the loss trains on tokens the model is told to ignore",
            )
    for run in _whitespace_runs(tokenizer, ids, facts):
        yield finding(
            "whitespace-run",
            run,
            f"{len(run)} whitespace-only tokens in a row (t = {run[0]}..{run[-1]}): padding written as "
            "text or broken formatting",
        )


_BLANK: WeakKeyDictionary[Any, np.ndarray] = WeakKeyDictionary()


def _blank_ids(tokenizer: Any, ids: np.ndarray, facts: TokenizerFacts) -> np.ndarray:
    """(N,) bool: the token is a non-special token of the tokenizer whose bytes are all whitespace.

    Decided once per token id and kept in a per-tokenizer table (-1 unknown, 0 no, 1 yes)."""
    table = _BLANK.get(tokenizer)
    if table is None:
        table = np.full(facts.size, -1, dtype=np.int8)
        with contextlib.suppress(TypeError):
            _BLANK[tokenizer] = table
    inside = (ids >= 0) & (ids < facts.size)  # (N,)
    known = np.where(inside, ids, 0)
    for token in np.unique(known[inside & (table[known] < 0)]).tolist():
        data = b"" if token in facts.specials else token_bytes(tokenizer, token)
        table[token] = 1 if (data and not data.strip()) else 0
    return inside & (table[known] == 1)


def _whitespace_runs(tokenizer: Any, ids: np.ndarray, facts: TokenizerFacts) -> list[list[int]]:
    """Maximal runs of at least WHITESPACE_RUN whitespace-only tokens, as lists of positions."""
    blank = _blank_ids(tokenizer, ids, facts).astype(np.int8)
    edges = np.diff(np.concatenate([[0], blank, [0]]))  # (N+1,) +1 where a run starts, -1 after it ends
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [
        list(range(s, e))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
        if e - s >= WHITESPACE_RUN
    ]
