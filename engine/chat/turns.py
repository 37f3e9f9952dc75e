"""A chat row's tokens attributed to roles and parts of their turns: the vocabulary that engine.chat.structure
(recovered from a tokenizer's markup) and engine.chat.masks (derived from messages) both produce.

numpy only: no torch, so screens may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from tokstep.engine.inputs.sample import MaskReason
from tokstep.engine.policies import DEFAULT_EOT, DEFAULT_INSERTED, Policy, convention

ROLES = ("system", "user", "assistant", "tool")
ROLE_REASON = {"system": MaskReason.SYSTEM, "user": MaskReason.USER, "tool": MaskReason.TOOL}


class Part(IntEnum):
    """Which part of its turn a token is."""

    TEMPLATE = 0  # markup outside any turn's header/content/end (BOS, a newline after the end-of-turn)
    HEADER = 1  # the role header that opens a turn
    CONTENT = 2  # the message's own words
    END = 3  # the end-of-turn token(s) right after the content
    INSERTED = 4  # markup the template inserts inside an assistant turn (an empty think block)


NO_ROLE = -1


@dataclass(frozen=True)
class Turn:
    """One recovered turn; token index ranges are [start, end)."""

    role: str
    start: int  # first token of its header (== content_start for a turn with no header of its own)
    content_start: int
    content_end: int
    end: int  # after the end-of-turn tokens (== content_end when the turn is not closed)
    closed: bool  # the template's end-of-turn marker is there

    @property
    def content(self) -> range:
        return range(self.content_start, self.content_end)

    @property
    def end_of_turn(self) -> range:
        return range(self.content_end, self.end)


@dataclass(frozen=True, eq=False)
class TurnLayout:
    """Every token of a row attributed to a role and a part of its turn."""

    turns: tuple[Turn, ...]
    roles: np.ndarray  # (N,) int8: index into ROLES, NO_ROLE for markup outside turns
    parts: np.ndarray  # (N,) int8: Part
    eot: Policy = DEFAULT_EOT  # the convention's flags (engine.chat.masks): end-of-turn trained or masked
    inserted: Policy = DEFAULT_INSERTED  # template-inserted tokens inside an assistant turn trained or masked

    @property
    def convention(self) -> str:
        """The convention the expected mask follows, in one line (chat_masks' wording)."""
        return convention(self.eot, self.inserted)

    def __post_init__(self) -> None:
        self.roles.setflags(write=False)
        self.parts.setflags(write=False)

    def role(self, index: int) -> str | None:
        code = int(self.roles[index])
        return None if code == NO_ROLE else ROLES[code]

    def expected(self) -> np.ndarray:
        """(N,) bool: supervised under the convention with this layout's flags (`self.convention`)."""
        trained = self.parts == Part.CONTENT
        if self.eot == "train":
            trained |= self.parts == Part.END
        if self.inserted == "train":
            trained |= self.parts == Part.INSERTED
        return trained & (self.roles == ROLES.index("assistant"))

    def reasons(self) -> tuple[MaskReason, ...]:
        """The mask reason each token has in a chat built from messages (engine.chat.masks), flags applied."""
        table = [MaskReason.TEMPLATE] * (len(ROLES) + 1)  # by role code + 1 (NO_ROLE -> 0)
        for role, reason in ROLE_REASON.items():
            table[ROLES.index(role) + 1] = reason
        codes = np.where(self.parts == Part.CONTENT, self.roles.astype(np.int64) + 1, 0)  # (N,)
        codes[:1] = 0
        out = [table[c] for c in codes.tolist()]
        assistant = self.roles == ROLES.index("assistant")
        inserted = MaskReason.INSERTED_TRAINED if self.inserted == "train" else MaskReason.INSERTED
        for i in np.flatnonzero(assistant & (self.parts == Part.INSERTED)).tolist():
            out[i] = inserted
        for i in np.flatnonzero(assistant & (self.parts == Part.END)).tolist():
            out[i] = MaskReason.END_OF_TURN  # SUPERVISED below when the convention trains it
        for i in np.flatnonzero(self.expected() & (self.parts != Part.INSERTED)).tolist():
            out[i] = MaskReason.SUPERVISED
        if out:
            out[0] = MaskReason.FIRST
        return tuple(out)

    def worded_roles(self) -> list[str | None]:
        """Per token, the role whose words it is (content; the assistant's end-of-turn and the template's
        insertions in its turn too), else None: what the TUI's context strip colours."""
        inside = (self.parts == Part.END) | (self.parts == Part.INSERTED)
        worded = (self.parts == Part.CONTENT) | (inside & (self.roles == ROLES.index("assistant")))
        return [
            ROLES[r] if w and r != NO_ROLE else None
            for r, w in zip(self.roles.tolist(), worded.tolist(), strict=True)
        ]

    def disagreements(self, labels: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
        """Token indices (>= 1) whose given label disagrees with the expected mask (inserted markup: either)."""
        supervised = labels != -100  # (N,)
        differ = supervised != self.expected()
        differ[:1] = False
        differ &= self.parts != Part.INSERTED
        if ignore is not None:
            differ &= ~ignore
        return np.flatnonzero(differ)


__all__ = ["NO_ROLE", "ROLES", "ROLE_REASON", "Part", "Turn", "TurnLayout"]
