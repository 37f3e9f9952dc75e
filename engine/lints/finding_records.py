"""Findings as plain JSON-able records: one shape for every machine-readable output (`report --json`,
`report --data --json`, `report --batches --json`, `report --jsonl`, `lint --json`, the scan's `findings`
column), described by the JSON Schema `assets/findings.schema.json` and versioned by `SCHEMA_VERSION`."""

from __future__ import annotations

from importlib import resources
from typing import Any

from tokstep.engine.lints.catalogue import Finding

SCHEMA_VERSION = 1
SCHEMA_ID = "tokstep-findings"


def finding_record(f: Finding, **where: Any) -> dict[str, Any]:
    """The finding's code, severity, positions, message, fix and convention (what the printed line says), plus
    where it is (`row`, `line`, `batch`, `batch_row`: the numbers the printed report shows)."""
    record: dict[str, Any] = {k: v for k, v in where.items() if v is not None}
    record.update(
        code=f.code,
        severity=f.severity,
        positions=list(f.positions),
        message=f.message,
        fix=f.fix,
        convention=f.convention,
    )
    return record


def envelope(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The top-level keys every JSON output carries: the schema's name and version, the findings, and the
    conventions they were compared against (stated once, as the printed report does)."""
    conventions = sorted({r["convention"] for r in records if r["convention"]})
    return {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "conventions": conventions,
        "findings": records,
    }


def schema_text() -> str:
    """The JSON Schema of the findings (shipped in the package)."""
    return (
        resources.files("tokstep.engine").joinpath("assets/findings.schema.json").read_text(encoding="utf-8")
    )
