"""`too-long`: the model's positions (from its config, else the tokenizer's limit)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from weakref import WeakKeyDictionary

from tokstep.engine.inputs.sample import Sample
from tokstep.engine.lints.catalogue import Finding, finding

_MAX_POSITIONS: WeakKeyDictionary[Any, int] = WeakKeyDictionary()
_SANE_MAX_LENGTH = 10_000_000  # tokenizers without a limit say model_max_length = 1e30


def set_max_positions(tokenizer: Any, positions: int | None) -> None:
    """Tell the lints how many positions the model accepts (from its config), for `too-long`."""
    if positions:
        with contextlib.suppress(TypeError):
            _MAX_POSITIONS[tokenizer] = positions


def max_positions_for(tokenizer: Any) -> int | None:
    """The model's positions when known, else the tokenizer's own model_max_length when it is a real limit."""
    for candidate in (tokenizer, getattr(tokenizer, "wrapped", None)):  # a BatchTokenizer: the one inside
        with contextlib.suppress(TypeError, KeyError):
            return _MAX_POSITIONS[candidate]
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < _SANE_MAX_LENGTH else None


def length_lints(tokenizer: Any, sample: Sample) -> Iterator[Finding]:
    """`too-long`: more tokens than the model's positions."""
    limit = max_positions_for(tokenizer)
    if limit is not None and len(sample) > limit:
        yield finding(
            "too-long",
            (limit,),
            f"{len(sample)} tokens, more than the model's {limit} positions: `tokstep report` refuses it "
            f"(--truncate {limit} keeps the first {limit}); a trainer would cut or drop it",
        )
