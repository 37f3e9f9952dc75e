"""The run's policies, each one type and one default: the chat mask convention, HF's reference, top-k.

The CLI's flags, the TUI and the engine's keyword defaults all read them from here.
"""

from __future__ import annotations

from typing import Literal, get_args

from tokstep.engine.errors import TokstepError

Policy = Literal["train", "mask"]  # an end-of-turn or template-inserted token inside an assistant turn
POLICIES: tuple[Policy, ...] = get_args(Policy)
DEFAULT_EOT: Policy = "train"
DEFAULT_INSERTED: Policy = "train"


def convention(eot: Policy = DEFAULT_EOT, inserted: Policy = DEFAULT_INSERTED) -> str:
    """The mask convention (engine.chat.masks' docstring) in one line, with the flags' choices: what every
    label lint says it compared against (for chats built from messages and for ids rows alike)."""
    end = (
        "assistant content + end-of-turn trained"
        if eot == "train"
        else "assistant content trained, end-of-turn masked (--eot mask)"
    )
    inside = (
        "template-inserted tokens trained"
        if inserted == "train"
        else "template-inserted tokens masked (--inserted mask)"
    )
    return f"{end}; what follows end-of-turn is template; {inside}; the rest masked"


CONVENTION = convention()  # the default, in one line


Reference = Literal["chunked", "full", "off"]  # how HF's loss beside ours is computed (engine.model.reference)
REFERENCES: tuple[Reference, ...] = get_args(Reference)
DEFAULT_REFERENCE: Reference = "chunked"

DEFAULT_TOP_K = 10  # alternatives kept per position


def check_top_k(top_k: int, vocab_size: int | None = None) -> None:
    """--top-k is at least 1 and, once the vocabulary is known, less than its size. Raises TokstepError."""
    if top_k < 1:
        raise TokstepError(f"--top-k must be at least 1 (got {top_k})")
    if vocab_size is not None and top_k >= vocab_size:
        raise TokstepError(f"--top-k {top_k} must be less than the vocabulary size ({vocab_size})")


def clamp_top_k(top_k: int, vocab_size: int) -> int:
    """top-k as a kernel may use it: between 1 and the vocabulary size."""
    return max(1, min(top_k, vocab_size))


__all__ = [
    "CONVENTION",
    "convention",
    "DEFAULT_EOT",
    "DEFAULT_INSERTED",
    "DEFAULT_REFERENCE",
    "DEFAULT_TOP_K",
    "POLICIES",
    "REFERENCES",
    "Policy",
    "Reference",
    "check_top_k",
    "clamp_top_k",
]
