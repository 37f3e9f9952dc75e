"""Rows of a data file whose input_ids and labels are identical to an earlier row's (`duplicate-rows`).

A 16-byte hash per row (`lints.sample_digest`, kept in `RowLint.digest`) and one dict per file: memory is about
50 bytes a row, so a million-row file costs some 50 MB, and the rows themselves are never kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tokstep.engine.lints.catalogue import SEVERITIES, Finding, finding
from tokstep.engine.lints.rows import RowLint


def duplicate_finding(original: str, copy: int) -> Finding:
    """The `duplicate-rows` finding of the `copy`-th copy of the row at `original` (`DataRow.where`)."""
    return finding(
        "duplicate-rows", (), f"input_ids and labels identical to {original} (copy {copy} of it so far)"
    )


@dataclass
class DuplicateRows:
    """Feed rows in file order; `check` adds a `duplicate-rows` finding to a row seen before."""

    first: dict[bytes, str] = field(default_factory=dict)  # digest -> where the first such row is
    repeats: dict[bytes, list[str]] = field(default_factory=dict)  # digest -> where every later copy is

    def check(self, result: RowLint) -> RowLint:
        digest = result.digest
        if digest is None:
            return result
        where = result.row.where
        original = self.first.setdefault(digest, where)
        if original == where:
            return result
        copies = self.repeats.setdefault(digest, [])
        if where not in copies:  # a row checked again (the browser re-reads pages) is not a new copy
            copies.append(where)
        found = duplicate_finding(original, len(copies))
        ordered = sorted(
            (*result.findings, found), key=lambda f: SEVERITIES.index(f.severity)
        )  # errors first
        return replace(result, findings=tuple(ordered))

    def groups(self) -> list[list[str]]:
        """Every repeated row: [first, copies...], in the order the first rows appear."""
        return [[self.first[d], *copies] for d, copies in self.repeats.items()]
