"""The one seam between the screens and the engine: every engine call a screen makes goes through a `Backend`.

Screens never import an engine function and never reach into the app for state. Each screen is given a
`Backend` (the app passes its own down), calls it only from `@work(thread=True, exit_on_error=False)`
workers, and turns what it returns into the production messages of `tui.screens.messages`; a `TokstepError` (or
any other exception) becomes a message too, shown as a notification or in the screen, never a crash.

`EngineBackend` is the real thing (torch + transformers, imported lazily inside each method, so importing
this module imports neither). `PrecomputedBackend` serves a finished `TraceResult` without a model, for
tests, benchmarks and notebooks. A test drives any screen with its own subclass: the screens' workers post
the same messages whatever the backend returns.

What a backend hands back is opaque to the screens where marked "handle" (a loaded model, a tokenizer):
screens only pass handles back into the backend. Everything else is the engine's frozen, numpy-only data
(`TraceResult`, `Sample`, `DataRow`, `RowLint`, `Finding`, `TokenInfo`).

Extending it (compare, batches, scan ...): add a method here (abstract for what every screen needs; for an
optional feature, a default that raises `_unsupported`, so test fakes need not implement it) with a docstring saying what it
returns and which exceptions mean "tell the user", implement it in `EngineBackend` (lazy engine import),
give `PrecomputedBackend` an answer if the stepper needs one without a model, and call it from a worker
that posts a message from `tui.screens.messages`. Methods may block; they are never called on the UI thread.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tokstep.engine.errors import TokstepError
from tokstep.engine.model.inspector import inspect_token

if TYPE_CHECKING:
    from tokstep.engine.compare.results import CompareResult, LensResult, TokenizerCompareResult
    from tokstep.engine.compare.spec import CompareSpec
    from tokstep.engine.inputs.data import Columns, DataFile, DataRow
    from tokstep.engine.inputs.sample import Sample
    from tokstep.engine.inputs.spec import SampleSpec
    from tokstep.engine.lints.catalogue import Finding
    from tokstep.engine.lints.rows import RowLint
    from tokstep.engine.model.inspector import TokenInfo
    from tokstep.engine.model.loading import ModelSpec
    from tokstep.engine.model.results import TraceResult
    from tokstep.engine.scan.view import ScanView
    from tokstep.tui.cli.run_config import RunConfig

Progress = Callable[[str], None]


def _default_columns() -> Columns:
    # lazy: loads numpy
    from tokstep.engine.inputs.data import Columns

    return Columns()


@dataclass(frozen=True)
class DataOptions:
    """How to read a data file's rows: which column holds what, and the sample options for every row."""

    columns: Columns = field(default_factory=_default_columns)
    bos: str = "auto"
    eos: str = "auto"
    truncate: int | None = None
    split: str | None = None  # a DatasetDict's split (`--split`)

    @classmethod
    def from_config(cls, config: RunConfig) -> DataOptions:
        """The CLI's column and sample flags (`--text-column`, `--bos`, `--truncate` ...)."""
        # lazy: loads rich
        from tokstep.tui.cli.lint_cmd import columns_from_args

        return cls(
            columns=columns_from_args(config),
            bos=config.bos,
            eos=config.eos,
            truncate=config.truncate,
            split=config.split,
        )


def worker_error(error: BaseException) -> str:
    """The one line a screen shows for a failed backend call: a TokstepError's own words, anything else as an
    internal error (a bug) with its type."""
    return (
        str(error) if isinstance(error, TokstepError) else f"internal error: {type(error).__name__}: {error}"
    )


def _unsupported(what: str) -> Exception:

    return TokstepError(f"this backend does not support {what}")


class Backend(ABC):
    """Every engine call a screen makes. All may block (they run in worker threads) and raise TokstepError
    with a one-line reason for the user; any other exception is a bug, shown as "internal error"."""

    # -- one model, one sample (the app and the stepper) -----------------------------------------------

    @abstractmethod
    def load(self, spec: ModelSpec) -> Any:
        """Load the model and its tokenizer: a model handle for `trace`, `tokenizer_of`, `row_loss`."""

    @abstractmethod
    def trace(self, loaded: Any, sample: SampleSpec, top_k: int, progress: Progress) -> TraceResult:
        """Build the sample with the model's tokenizer and run it once, teacher-forced. HF's reference may
        come with it, or later (`reference_pending` set: then the app calls `reference` after showing it)."""

    @abstractmethod
    def lint(self, result: TraceResult, sample: SampleSpec | None = None) -> list[Finding]:
        """The lint findings of a traced sample (tokenizer only)."""

    @abstractmethod
    def inspect_token(self, tokenizer: Any, input_ids: Sequence[int], index: int) -> TokenInfo:
        """What the inspector line shows about `input_ids[index]` (its neighbours complete a split character)."""

    # -- optional features: a backend without them says so in one line ----------------------------------

    def reference(self, loaded: Any, result: TraceResult, mode: str) -> TraceResult:
        """`result` with HF's reference loss filled in, or the reason it is not (`mode`: chunked, full or
        off; engine.model.reference). Called only for a result whose `reference_pending` is set."""
        raise _unsupported("HF's reference loss")

    def trace_batches(self, loaded: Any, path: str, settings: Any, top_k: int, progress: Progress) -> Any:
        """Every row of a file of trainer batches, traced as the trainer's forward saw it (a `BatchReport`);
        `settings` (engine.batches.files.Settings or None) states what a hand-written file does not record."""
        raise _unsupported("opening trainer batches")

    def lens(self, loaded: Any, sample: Sample, t: int, top_k: int = 5) -> LensResult:
        """The logit lens of a loaded model at position t: each layer through the final norm and head.
        TokstepError when the model's structure is not understood."""
        raise _unsupported("the logit lens")

    def load_compare(self, spec: CompareSpec) -> Any:
        """Model B (a model handle), or for a tokenizer-only comparison the second tokenizer (a handle)."""
        raise _unsupported("comparing models")

    def compare(
        self, loaded: Any, loaded_b: Any, sample: SampleSpec, top_k: int, progress: Progress
    ) -> CompareResult | TokenizerCompareResult:
        """A and B on the same sample: per position KL when the vocabularies agree, else the byte alignment."""
        raise _unsupported("comparing models")

    # -- data files (the browser) ----------------------------------------------------------------------

    @abstractmethod
    def load_tokenizer(self, spec: ModelSpec) -> Any:
        """The model's tokenizer alone (no weights), so rows can be counted and linted while the model loads."""

    @abstractmethod
    def tokenizer_of(self, loaded: Any) -> Any:
        """The tokenizer handle of a loaded model (does not block)."""

    @abstractmethod
    def open_data(self, path: str, options: DataOptions) -> DataFile:
        """Open a data file, `save_to_disk` folder or cached data set; its rows are read on demand (`DataFile.rows`)."""

    @abstractmethod
    def lint_row(self, tokenizer: Any, row: DataRow) -> RowLint:
        """Tokenize and lint one data row; an unreadable row is a finding, never an exception."""

    @abstractmethod
    def row_loss(self, loaded: Any, sample: Sample) -> float | None:
        """The loss of one built sample (one forward pass); None when nothing is supervised."""

    def duplicate_rows(self) -> Any:
        """A tracker for one data file: its `check(RowLint)` adds `duplicate-rows` to a row whose ids and
        labels repeat an earlier row's (engine.lints.duplicates; no torch)."""
        # lazy: loads numpy
        from tokstep.engine.lints.duplicates import DuplicateRows

        return DuplicateRows()

    # -- a folder written by `tokstep scan` (the scan browser) ------------------------------------------

    def open_scan(self, folder: str) -> ScanView:
        """The rows of a scan folder, to sort and filter (engine.scan.view.ScanView)."""
        raise _unsupported("opening a scan")


# One forward at a time through the engine: a model's hooks are the model's, so two forwards of one model in two
# worker threads (HF's reference after the first frame, the logit lens the user asked for) would each see the
# other's hooks (the reference's hidden-state hook ends any forward it sees).
_FORWARDS = threading.RLock()


class EngineBackend(Backend):
    """The real engine: torch + transformers, imported on first use."""

    def load(self, spec: ModelSpec) -> Any:
        # lazy: loads torch, numpy
        from tokstep.engine.model.session import load

        return load(spec)

    def trace(self, loaded: Any, sample: SampleSpec, top_k: int, progress: Progress) -> TraceResult:
        """The trace alone; HF's reference comes later (`reference`), so the stepper shows first."""
        # lazy: loads torch, numpy
        from tokstep.engine.model.session import run_trace

        with _FORWARDS:
            return run_trace(loaded, sample, top_k=top_k, reference="later", progress=progress)

    def reference(self, loaded: Any, result: TraceResult, mode: str) -> TraceResult:
        # lazy: loads torch, numpy
        from tokstep.engine.model.session import add_reference

        with _FORWARDS:
            return add_reference(loaded, result, mode)

    def trace_batches(self, loaded: Any, path: str, settings: Any, top_k: int, progress: Progress) -> Any:
        # lazy: loads torch, numpy
        from tokstep.engine.batches.files import read_batches
        from tokstep.engine.batches.packing import trace_batches

        with _FORWARDS:
            report = trace_batches(loaded, read_batches(path), flags=settings, top_k=top_k, progress=progress)
        if not report.rows:
            first = report.errors[0].message if report.errors else "no rows"
            raise TokstepError(f"no row of {path} could be opened ({first})")
        return report

    def lint(self, result: TraceResult, sample: SampleSpec | None = None) -> list[Finding]:
        # lazy: loads numpy
        from tokstep.engine.lints.sample_lints import lint_sample

        return list(lint_sample(result.texts.tokenizer, result.sample, sample))

    def inspect_token(self, tokenizer: Any, input_ids: Sequence[int], index: int) -> TokenInfo:

        return inspect_token(tokenizer, input_ids, index)

    def lens(self, loaded: Any, sample: Sample, t: int, top_k: int = 5) -> LensResult:
        # lazy: loads torch, numpy
        from tokstep.engine.compare.lens import logit_lens

        with _FORWARDS:
            return logit_lens(loaded, sample, t, top_k=top_k)

    def load_compare(self, spec: CompareSpec) -> Any:
        # lazy: loads torch, numpy
        from tokstep.engine.compare.session import load_b

        return load_b(spec)

    def compare(
        self, loaded: Any, loaded_b: Any, sample: SampleSpec, top_k: int, progress: Progress
    ) -> CompareResult | TokenizerCompareResult:
        # lazy: loads torch, numpy
        from tokstep.engine.compare.session import run_compare

        with _FORWARDS:
            return run_compare(loaded, loaded_b, sample, top_k=top_k, progress=progress)

    def load_tokenizer(self, spec: ModelSpec) -> Any:
        # lazy: loads numpy
        from tokstep.engine.model.loading import load_tokenizer

        return load_tokenizer(
            spec.name_or_path, revision=spec.revision, trust_remote_code=spec.trust_remote_code
        )

    def tokenizer_of(self, loaded: Any) -> Any:
        return loaded.tokenizer

    def open_data(self, path: str, options: DataOptions) -> DataFile:
        # lazy: loads numpy
        from tokstep.engine.inputs.data_sources import open_source

        return open_source(
            path, options.columns, options.split, bos=options.bos, eos=options.eos, truncate=options.truncate
        )

    def lint_row(self, tokenizer: Any, row: DataRow) -> RowLint:
        # lazy: loads numpy
        from tokstep.engine.lints.rows import lint_row

        return lint_row(tokenizer, row)

    def row_loss(self, loaded: Any, sample: Sample) -> float | None:
        # lazy: loads torch, numpy
        from tokstep.engine.model.trace import trace_sample

        with _FORWARDS:
            return trace_sample(loaded, sample, top_k=1).loss

    def open_scan(self, folder: str) -> ScanView:
        # lazy: loads pyarrow
        from tokstep.engine.scan.view import ScanView

        return ScanView(folder)


class PrecomputedBackend(EngineBackend):
    """Serves a finished TraceResult without any model: for tests, benchmarks and notebooks."""

    def __init__(self, result: TraceResult, findings: Sequence[Finding] | None = None) -> None:
        self.result = result
        self.findings = findings

    def load(self, spec: ModelSpec) -> Any:
        return self.result.info

    def trace(self, loaded: Any, sample: SampleSpec, top_k: int, progress: Progress) -> TraceResult:
        return self.result

    def reference(self, loaded: Any, result: TraceResult, mode: str) -> TraceResult:

        return replace(result, reference_pending=False)  # whatever the precomputed result holds

    def lint(self, result: TraceResult, sample: SampleSpec | None = None) -> list[Finding]:
        return list(self.findings) if self.findings is not None else super().lint(result, sample)

    def tokenizer_of(self, loaded: Any) -> Any:
        return self.result.texts.tokenizer


__all__ = ["Backend", "DataOptions", "EngineBackend", "PrecomputedBackend", "Progress"]
