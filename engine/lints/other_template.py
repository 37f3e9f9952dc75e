"""Labels built from another rendering of the chat than the ids (`labels-other-template`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tokstep.engine.chat.structure import _occurrences
from tokstep.engine.inputs.sample import Sample
from tokstep.engine.lints.catalogue import Finding, finding
from tokstep.engine.lints.facts import TokenizerFacts, true_runs


def other_template(
    tokenizer: Any, sample: Sample, facts: TokenizerFacts, supervised: np.ndarray
) -> Iterator[Finding]:
    """Labels built from another rendering: their text sits elsewhere in the ids, or they hold foreign markup."""

    ids, labels = sample.input_ids, sample.labels
    given = np.flatnonzero(supervised)
    differ = given[labels[given] != ids[given]]
    if len(differ) < max(2, len(given) // 2):
        return
    present = set(ids.tolist())
    foreign = sorted({int(t) for t in labels[given] if int(t) in facts.specials and int(t) not in present})
    shifts = []
    for start, end in true_runs(supervised):
        chunk = tuple(int(t) for t in labels[start + 1 : min(end, start + 5)])
        if len(chunk) < 2:
            continue
        hits = _occurrences(ids, chunk)
        if hits:
            nearest = min(hits, key=lambda p: abs(p - (start + 1)))
            if nearest - (start + 1) not in (0, 1):
                shifts.append(nearest - (start + 1))
    if not foreign and not shifts:
        return
    why = []
    if shifts:
        why.append(f"the supervised text sits {shifts[0]:+d} tokens away in input_ids")
    if foreign:
        names = ", ".join(facts.name(t) for t in foreign[:3])
        why.append(f"the labels hold {names}, which these ids never contain")
    yield finding(
        "labels-other-template",
        differ.tolist(),
        f"the labels follow another rendering of the chat than the ids ({'; '.join(why)}): they were built "
        "with a different template; build ids and labels from one rendering",
    )


def displaced_mask(layout: Any, supervised: np.ndarray, replies: list[Any]) -> list[int] | None:
    """Per reply, how far its supervised span was moved, when every span has a reply's length but sits 3+
    tokens away and covers no recovered turn exactly (a mask computed on another template's rendering)."""
    runs = true_runs(supervised)
    if not replies or len(runs) != len(replies):
        return None
    starts = {t.content_start for t in replies}
    turn_spans = {(t.content_start, t.end if t.end > t.content_end else t.content_end) for t in layout.turns}
    turn_spans |= {(t.content_start, t.content_end) for t in layout.turns}
    shifts = []
    for turn, (start, end) in zip(replies, runs, strict=True):
        if start in starts or (start, end) in turn_spans:
            return None  # aligned with a reply, or exactly another role's turn (trains-on-... says it)
        if abs((end - start) - (turn.end - turn.content_start)) > 1 or abs(start - turn.content_start) < 3:
            return None
        shifts.append(start - turn.content_start)
    return shifts
