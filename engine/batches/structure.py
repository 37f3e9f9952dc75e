"""The chat turns of a trainer's batch row, recovered from its ids one document at a time.

A padded row is one document (its padding excluded); a packed row holds several (`BatchRow.documents`,
split in engine.batches.files). Each document is recovered alone with `engine.chat.structure.recover_layout`, as an ids
row would be, and its turns are placed back at their row positions: the row's `TurnLayout` then colours the
context strip, counts the labels that disagree with the structure, and feeds the label lints, all in row
positions. Padding has no role (template markup outside any turn): it is never expected trained.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from tokstep.engine.batches.files import BatchRow
from tokstep.engine.chat.masks import Policy
from tokstep.engine.chat.structure import NO_ROLE, Part, TurnLayout, recover_layout
from tokstep.engine.inputs.sample import Sample
from tokstep.engine.inputs.spec import apply_layout


def row_layout(
    tokenizer: Any, row: BatchRow, *, eot: Policy = "train", inserted: Policy = "train"
) -> TurnLayout | None:
    """The row's turns, each document recovered separately; None when no document has a recognisable turn."""
    n = len(row)
    roles = np.full(n, NO_ROLE, dtype=np.int8)  # (N,)
    parts = np.full(n, int(Part.TEMPLATE), dtype=np.int8)  # (N,)
    turns = []
    found = False
    for start, end in row.documents:
        layout = recover_layout(tokenizer, row.input_ids[start:end], eot=eot, inserted=inserted)
        if layout is None:
            continue
        found = True
        roles[start:end] = layout.roles
        parts[start:end] = layout.parts
        turns += [
            replace(
                t,
                start=t.start + start,
                content_start=t.content_start + start,
                content_end=t.content_end + start,
                end=t.end + start,
            )
            for t in layout.turns
        ]
    if not found:
        return None
    return TurnLayout(tuple(turns), roles, parts, eot, inserted)


def with_row_layout(
    sample: Sample, row: BatchRow, tokenizer: Any, *, eot: Policy = "train", inserted: Policy = "train"
) -> Sample:
    """The row's sample (engine.batches.files.row_sample) with its recovered turns and their mask reasons."""

    layout = row_layout(tokenizer, row, eot=eot, inserted=inserted)
    return sample if layout is None else apply_layout(sample, layout)


def padding_of(row: BatchRow) -> np.ndarray:
    """(N,) bool: the row's padding: attention_mask 0, or outside every document."""
    pad = np.zeros(len(row), dtype=bool) if row.attention_mask is None else row.attention_mask == 0
    covered = np.zeros(len(row), dtype=bool)
    for start, end in row.documents:
        covered[start:end] = True
    return pad | ~covered


def ignored(row: BatchRow) -> np.ndarray:
    """(N,) bool: tokens the structure comparison skips: padding, and each packed document's first token (it
    is read by the row, but its label is the previous document's last prediction, not this document's)."""
    skip = padding_of(row)  # outside every document too: padding the mask did not mark
    for start, _ in row.documents:
        skip[start] = True
    return skip
