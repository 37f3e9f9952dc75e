"""Where the cursor goes next: surprises, mask boundaries, text search. Pure numpy over a finished Trace.

Position t reads tokens 0..t and predicts token t+1, so "jump to token i" means "go to the position that
predicts token i": t = i - 1 (token 0 is predicted by nothing, so it maps to t = 0).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from tokstep.engine.model.results import Trace
from tokstep.engine.model.tokens import TokenTexts


def position_predicting(token_index: int, num_positions: int) -> int:
    """The position whose target is token `token_index`, clamped to 0..T-1."""
    return min(max(token_index - 1, 0), max(num_positions - 1, 0))


@dataclass(frozen=True)
class SurpriseRule:
    """A supervised target is a surprise when its rank is above `rank_above` or its q is below `prob_below`.

    Positions whose logits were not finite always count: they are the first thing to look at.
    """

    rank_above: int = 10
    prob_below: float = 0.01

    def describe(self) -> str:
        return f"rank > {self.rank_above} or q < {self.prob_below:g}"

    def flags(self, trace: Trace) -> np.ndarray:
        """(T,) bool: which positions are surprises under this rule."""
        with np.errstate(invalid="ignore"):
            unlikely = (trace.rank > self.rank_above) | (trace.prob < self.prob_below)
        return (trace.supervised & trace.finite & unlikely) | ~trace.finite


def parse_surprise_rule(rank_text: str, prob_text: str) -> SurpriseRule:
    """Read the two threshold fields the user typed; ValueError with a readable reason on bad input."""
    try:
        rank = int(rank_text.strip())
    except ValueError:
        raise ValueError(f"rank threshold must be a whole number, not {rank_text.strip()!r}") from None
    try:
        prob = float(prob_text.strip())
    except ValueError:
        raise ValueError(f"probability threshold must be a number, not {prob_text.strip()!r}") from None
    if rank < 0:
        raise ValueError("rank threshold must be 0 or more")
    if not 0.0 <= prob <= 1.0:
        raise ValueError("probability threshold must be between 0 and 1")
    return SurpriseRule(rank_above=rank, prob_below=prob)


class Marks:
    """Sorted positions of interest (surprises, mask boundaries) with O(log T) next / previous."""

    def __init__(self, flags: np.ndarray) -> None:
        self.positions: list[int] = np.flatnonzero(flags).tolist()

    def __len__(self) -> int:
        return len(self.positions)

    def next_after(self, t: int) -> int | None:
        i = bisect.bisect_right(self.positions, t)
        return self.positions[i] if i < len(self.positions) else None

    def previous_before(self, t: int) -> int | None:
        i = bisect.bisect_left(self.positions, t)
        return self.positions[i - 1] if i > 0 else None


def mask_boundaries(trace: Trace) -> np.ndarray:
    """(T,) bool: positions where "counted or not" changes from the position before (prompt -> answer...)."""
    supervised = trace.supervised
    flags = np.zeros(len(supervised), dtype=bool)
    flags[1:] = supervised[1:] != supervised[:-1]
    return flags


def parse_position(text: str, num_positions: int) -> int:
    """A typed position: `42`, `-1` (from the end) or `50%`. ValueError with a readable reason."""
    text = text.strip()
    if not text:
        raise ValueError("type a position")
    try:
        if text.endswith("%"):
            fraction = float(text[:-1]) / 100.0
            t = round(fraction * (num_positions - 1))
        else:
            t = int(text)
            if t < 0:
                t += num_positions
    except ValueError:
        raise ValueError(f"not a position: {text!r} (try 42, -1 or 50%)") from None
    if not 0 <= t < num_positions:
        raise ValueError(f"position {text} is outside 0..{num_positions - 1}")
    return t


class TokenSearch:
    """Find text in the sample as decoded token by token; a match may span several tokens.

    `#1234` finds the next occurrence of token id 1234 instead. Case-insensitive. Built lazily on the
    first search (it decodes every token once).
    """

    def __init__(self, texts: TokenTexts, input_ids: np.ndarray) -> None:
        self.texts = texts
        self.input_ids = input_ids
        self._haystack: str | None = None
        self._starts: list[int] = []

    def _build(self) -> str:
        if self._haystack is None:
            parts, starts, offset = [], [], 0
            for token_id in self.input_ids.tolist():
                text = self.texts.text(int(token_id))
                starts.append(offset)
                parts.append(text)
                offset += len(text)
            self._haystack, self._starts = "".join(parts).casefold(), starts
        return self._haystack

    def _token_at(self, char_offset: int) -> int:
        return bisect.bisect_right(self._starts, char_offset) - 1

    def find(self, query: str, after_token: int) -> int | None:
        """Index of the first token after `after_token` where `query` starts (wrapping round), or None."""
        if not query.strip():
            return None
        if query.strip().startswith("#") and query.strip()[1:].isdigit():
            hits = np.flatnonzero(self.input_ids == int(query.strip()[1:])).tolist()
            later = [i for i in hits if i > after_token]
            return (later or hits or [None])[0]
        haystack, needle = self._build(), query.casefold()
        start = self._starts[after_token + 1] if after_token + 1 < len(self._starts) else len(haystack)
        at = haystack.find(needle, start)
        if at < 0:
            at = haystack.find(needle)
        if at < 0:
            return None
        return self._token_at(at)
