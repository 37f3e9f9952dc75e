"""The messages workers post with what a `Backend` returned (or why it failed). Screens react to nothing else.
Each is a dataclass (Textual's Message does its own set-up in `__post_init__`).

Tests drive a screen by giving it a fake backend: its workers post these same messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from tokstep.engine.compare.results import CompareResult, LensResult, TokenizerCompareResult
    from tokstep.engine.inputs.data import DataRow
    from tokstep.engine.inputs.spec import SampleSpec
    from tokstep.engine.lints.catalogue import Finding
    from tokstep.engine.lints.rows import RowLint
    from tokstep.engine.model.results import TraceResult

# -- the app: one model, samples traced on request ----------------------------------------------------


@dataclass
class LoadProgress(Message):
    """A step of loading or tracing, for the loading screen's log."""

    text: str


@dataclass
class ModelLoaded(Message):
    """The model is loaded; `model` is the backend's handle for it."""

    model: Any


@dataclass
class LoadFailed(Message):
    """Loading the model or tracing a sample failed; `reason` is one line for the user."""

    reason: str
    from_browser: bool


@dataclass
class TraceReady(Message):
    result: TraceResult
    findings: list[Finding]
    from_browser: bool


@dataclass
class ReferenceReady(Message):
    """HF's reference loss for a result already on screen (computed after the stepper was shown)."""

    result: TraceResult


@dataclass
class BatchesReady(Message):
    """A file of trainer batches is traced; `report` is the engine's `BatchReport`."""

    report: Any


@dataclass
class OpenSample(Message):
    """A screen asks the app to trace a sample and step through it (the browser posts it on Enter)."""

    spec: SampleSpec
    name: str


# -- comparing: model B, the comparison, the logit lens ------------------------------------------------


@dataclass
class CompareLoaded(Message):
    """Model B (or the second tokenizer) is loaded; `model` is the backend's handle. Posted before ModelLoaded."""

    model: Any


@dataclass
class CompareReady(Message):
    result: CompareResult | TokenizerCompareResult
    findings: list[Finding]


@dataclass
class LensReady(Message):
    lens: LensResult


@dataclass
class LensFailed(Message):
    """The logit lens could not be computed; `reason` is one line for the user."""

    reason: str


# -- the data browser ---------------------------------------------------------------------------------


@dataclass
class PageRead(Message):
    """A page of rows has been read from the file."""

    page: int
    rows: list[DataRow]


@dataclass
class TokenizerReady(Message):
    """The tokenizer alone is loaded (rows can be counted and linted before the model is there)."""

    tokenizer: Any


@dataclass
class RowLinted(Message):
    result: RowLint


@dataclass
class RowLoss(Message):
    """The loss of one row (None: nothing supervised; `error` when it could not be traced)."""

    index: int
    loss: float | None
    error: str | None = None


@dataclass
class IndexProgress(Message):
    rows: int
    complete: bool


@dataclass
class BrowserStatus(Message):
    """A line for the status bar; `fatal` when the file itself cannot be opened."""

    text: str
    fatal: bool = False
