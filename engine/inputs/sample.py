"""The `Sample`: token ids, labels (-100 = not trained on) and, for every token, why it is masked."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tokstep.engine.chat.structure import TurnLayout

IGNORE_INDEX = -100  # the label value Hugging Face's loss skips


class MaskReason(str, Enum):
    """Why `labels[i]` is -100, or why it is trained (`SUPERVISED`, `INSERTED_TRAINED`).

    The chat convention behind these reasons is written down in `tokstep.engine.chat.masks`.
    """

    SUPERVISED = "supervised"  # message content (or the end-of-turn right after an assistant turn)
    INSERTED_TRAINED = "template-inserted, trained"  # not in the message, inside an assistant turn, trained
    FIRST = "first token"  # nothing before it predicts it
    PROMPT = "prompt"
    SYSTEM = "system turn"  # a system message, or a system prompt the template injects by default
    USER = "user turn"
    TOOL = "tool turn"  # a tool / ipython message (a tool's result)
    TEMPLATE = "template markup"
    INSERTED = "template-inserted"  # inside an assistant turn, not in the message (--inserted mask)
    END_OF_TURN = "end-of-turn token"  # the end-of-turn token(s) after an assistant turn (--eot mask)
    PAD = "padding"
    DOCUMENT = "document start"  # a packed document's first token: the previous document does not predict it
    GIVEN = "masked in your labels"  # -100 came verbatim from the user's labels (--ids, data rows); was "given by user"

    @property
    def counted(self) -> bool:
        """Whether the label at this position is trained on (not -100)."""
        return self in _COUNTED


_COUNTED = frozenset({MaskReason.SUPERVISED, MaskReason.INSERTED_TRAINED})
COUNTED = _COUNTED  # the reasons whose label is trained on (`MaskReason.counted`), for vectorised checks


@dataclass(frozen=True, eq=False)
class Sample:
    """One training example exactly as the loss sees it.

    `labels` are aligned with `input_ids` (Hugging Face convention): the model shifts them, so
    `labels[i]` is the target of the prediction made at position i-1 and `labels[0]` is never used.
    """

    input_ids: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) int64, IGNORE_INDEX where not supervised
    mask_reasons: tuple[MaskReason, ...]  # (N,)
    kind: str  # "text" | "prompt+answer" | "chat" | "ids"
    name: str = "sample"
    attention_mask: np.ndarray | None = None  # (N,) only when the user gave one with zeros in it
    truncated_from: int | None = None  # original length when the user asked to truncate
    truncated_prefix: bool = False  # only a prefix of the input was tokenized: truncated_from is a lower bound
    notes: tuple[str, ...] = field(default=())  # facts about how it was built, shown to the user
    layout: TurnLayout | None = None  # the chat's turns: recovered from ids rows, or located for chats

    @property
    def truncated_from_text(self) -> str:
        """The length before --truncate as words: `1234`, or `more than 114` when only a prefix was tokenized."""
        return f"more than {self.truncated_from}" if self.truncated_prefix else str(self.truncated_from)

    def __post_init__(self) -> None:
        for array in (self.input_ids, self.labels, self.attention_mask):
            if array is not None:
                array.setflags(write=False)
        n = len(self.input_ids)
        if len(self.labels) != n or len(self.mask_reasons) != n:
            raise ValueError("input_ids, labels and mask_reasons must have the same length")

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_positions(self) -> int:
        """Positions that predict something: every token but the last."""
        return max(len(self.input_ids) - 1, 0)

    @property
    def num_supervised(self) -> int:
        """Targets the loss counts (labels[1:] != -100)."""
        return int((self.labels[1:] != IGNORE_INDEX).sum())
