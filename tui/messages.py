"""The messages workers post with what a `Backend` returned (or why it failed). Screens react to nothing else.

Tests drive a screen by giving it a fake backend: its workers post these same messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from tokstep.engine.compare_results import CompareResult, LensResult, TokenizerCompareResult
    from tokstep.engine.data import DataRow
    from tokstep.engine.inputs import SampleSpec
    from tokstep.engine.lints import Finding, RowLint
    from tokstep.engine.results import TraceResult

# -- the app: one model, samples traced on request ----------------------------------------------------


class LoadProgress(Message):
    """A step of loading or tracing, for the loading screen's log."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ModelLoaded(Message):
    """The model is loaded; `model` is the backend's handle for it."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model


class LoadFailed(Message):
    """Loading the model or tracing a sample failed; `reason` is one line for the user."""

    def __init__(self, reason: str, from_browser: bool) -> None:
        super().__init__()
        self.reason = reason
        self.from_browser = from_browser


class TraceReady(Message):
    def __init__(self, result: TraceResult, findings: list[Finding], from_browser: bool) -> None:
        super().__init__()
        self.result = result
        self.findings = findings
        self.from_browser = from_browser


class ReferenceReady(Message):
    """HF's reference loss for a result already on screen (computed after the stepper was shown)."""

    def __init__(self, result: TraceResult) -> None:
        super().__init__()
        self.result = result


class BatchesReady(Message):
    """A file of trainer batches is traced; `report` is the engine's `BatchReport`."""

    def __init__(self, report: Any) -> None:
        super().__init__()
        self.report = report


class OpenSample(Message):
    """A screen asks the app to trace a sample and step through it (the browser posts it on Enter)."""

    def __init__(self, spec: SampleSpec, name: str) -> None:
        super().__init__()
        self.spec, self.name = spec, name


# -- comparing: model B, the comparison, the logit lens ------------------------------------------------


class CompareLoaded(Message):
    """Model B (or the second tokenizer) is loaded; `model` is the backend's handle. Posted before ModelLoaded."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model


class CompareReady(Message):
    def __init__(self, result: CompareResult | TokenizerCompareResult, findings: list[Finding]) -> None:
        super().__init__()
        self.result = result
        self.findings = findings


class LensReady(Message):
    def __init__(self, lens: LensResult) -> None:
        super().__init__()
        self.lens = lens


class LensFailed(Message):
    """The logit lens could not be computed; `reason` is one line for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


# -- the data browser ---------------------------------------------------------------------------------


class PageRead(Message):
    """A page of rows has been read from the file."""

    def __init__(self, page: int, rows: list[DataRow]) -> None:
        super().__init__()
        self.page, self.rows = page, rows


class TokenizerReady(Message):
    """The tokenizer alone is loaded (rows can be counted and linted before the model is there)."""

    def __init__(self, tokenizer: Any) -> None:
        super().__init__()
        self.tokenizer = tokenizer


class RowLinted(Message):
    def __init__(self, result: RowLint) -> None:
        super().__init__()
        self.result = result


class RowLoss(Message):
    """The loss of one row (None: nothing supervised; `error` when it could not be traced)."""

    def __init__(self, index: int, loss: float | None, error: str | None = None) -> None:
        super().__init__()
        self.index, self.loss, self.error = index, loss, error


class IndexProgress(Message):
    def __init__(self, rows: int, complete: bool) -> None:
        super().__init__()
        self.rows, self.complete = rows, complete


class BrowserStatus(Message):
    """A line for the status bar; `fatal` when the file itself cannot be opened."""

    def __init__(self, text: str, fatal: bool = False) -> None:
        super().__init__()
        self.text, self.fatal = text, fatal
