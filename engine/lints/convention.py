"""Label lints' mask convention, stated once per run rather than in every finding."""

from __future__ import annotations

from dataclasses import replace

from tokstep.engine.chat.masks import convention
from tokstep.engine.lints.catalogue import Finding


def lift_convention(findings: list[Finding]) -> list[Finding]:
    """Each label lint's trailing `(convention: ...)` moved into `Finding.convention`: a report states the
    convention once per run, not inside every finding."""
    suffixes = [f" (convention: {convention(e, i)})" for e in ("train", "mask") for i in ("train", "mask")]
    lifted = []
    for f in findings:
        hit = next((s for s in suffixes if s in f.message), None)
        if hit is None:
            lifted.append(f)
        else:
            message = f.message.replace(hit, "").rstrip()
            lifted.append(replace(f, message=message, convention=hit[len(" (convention: ") : -1]))
    return lifted
