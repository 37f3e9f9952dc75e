"""A data-file row linted (`lint_row` -> `RowLint`), with its digest and structure disagreements."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokstep.engine.inputs.data import DataRow
from tokstep.engine.inputs.sample import Sample
from tokstep.engine.lints.catalogue import Finding, Severity, finding
from tokstep.engine.lints.facts import recovered_layout
from tokstep.engine.lints.sample_lints import lint_spec
from tokstep.engine.model.tokens import trained_text


@dataclass(frozen=True)
class RowLint:
    """A data-file row after tokenization and linting (what `tokstep lint` and the browser list)."""

    row: DataRow
    sample: Sample | None  # None for an unreadable row, or once dropped to save memory (`slim`)
    findings: tuple[Finding, ...]
    num_tokens: int | None = None
    num_supervised: int | None = None
    trained: str | None = None  # the supervised labels decoded: what the row trains the model to say
    disagree: int | None = None  # tokens whose label disagrees with the recovered chat structure (None: none)
    digest: bytes | None = None  # a hash of input_ids + labels (engine.lints.duplicates finds identical rows)

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def slim(self) -> RowLint:
        """Only what a report needs: no sample arrays, no row text (for linting huge files)."""
        if self.sample is None and self.trained is None and self.row.spec is None:
            return self  # slim already (a pool's results)
        row = DataRow(self.row.index, self.row.line, None, self.row.error)
        return RowLint(
            row,
            None,
            self.findings,
            self.num_tokens,
            self.num_supervised,
            disagree=self.disagree,
            digest=self.digest,
        )


def disagreements(sample: Sample) -> np.ndarray | None:
    """Token indices whose given label disagrees with the chat structure recovered from the ids (padding and
    template-inserted markup excepted); None when the row has no recovered structure."""
    layout = recovered_layout(sample)
    if layout is None:
        return None
    padding = None if sample.attention_mask is None else sample.attention_mask == 0
    return layout.disagreements(sample.labels, padding)


def lint_row(tokenizer: Any, row: DataRow, *, trained: bool = True) -> RowLint:
    """Lint one data row; an unreadable row becomes a `bad-row` error finding. `trained=False` skips decoding
    the trained text (`RowLint.trained` stays None), for callers that drop it (`RowLint.slim`)."""
    if row.spec is None:
        return RowLint(row, None, (finding("bad-row", (), str(row.error)),))
    try:
        sample, findings = lint_spec(tokenizer, row.spec)
    except Exception as error:  # noqa: BLE001 - e.g. a template that chokes on this row: one row, not the run
        return RowLint(row, None, (finding("unbuildable", (), f"{type(error).__name__}: {error}"),))
    if sample is None:
        return RowLint(row, None, tuple(findings))
    differ = disagreements(sample)
    text = trained_text(tokenizer, sample.labels) if trained else None
    return RowLint(
        row,
        sample,
        tuple(findings),
        len(sample),
        sample.num_supervised,
        text,
        None if differ is None else len(differ),
        sample_digest(sample),
    )


def sample_digest(sample: Sample) -> bytes:
    """16 bytes that identify a sample's input_ids + labels (equal rows, equal digests)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.ascontiguousarray(sample.input_ids, dtype=np.int64).tobytes())
    digest.update(b"|")
    digest.update(np.ascontiguousarray(sample.labels, dtype=np.int64).tobytes())
    return digest.digest()
