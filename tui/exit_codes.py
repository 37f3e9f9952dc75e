"""tokstep's exit statuses: a finding is not a failure, and neither is a crash."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

OK = 0  # done; for `tokstep lint`: no finding at or above --fail-on
FINDINGS = 1  # lint: a finding at or above --fail-on; report: an error-level finding (the data has problems)
BAD_INPUT = 2  # tokstep could not do it: bad flags, files, model or sample (one line on stderr says why)
NONFINITE = 3  # the model produced NaN/inf logits
INTERNAL = 4  # a bug in tokstep (one line; TOKSTEP_DEBUG=1 shows the traceback)
INTERRUPTED = 130  # Ctrl-C (SIGINT); SIGTERM gives 143 and SIGHUP 129 (128 + the signal number)


def report_status(findings: Iterable[Any], nonfinite: bool = False) -> int:
    """`tokstep report`'s status once it has printed everything: NaN/inf logits first, then any error-level
    finding (a lint of the sample, of a data row or of a batch row, an unreadable row) as `tokstep lint`'s
    default `--fail-on error` would exit, else done."""
    if nonfinite:
        return NONFINITE
    return FINDINGS if any(finding.severity == "error" for finding in findings) else OK


def signalled(signum: int) -> int:
    """The status of a run ended by a signal, as a shell reports it."""
    return 128 + int(signum)


EXIT_STATUS_HELP = """exit status:
  0    done (lint: no finding at or above --fail-on / --strict; report: no error-level lint)
  1    findings: lint at or above --fail-on / --strict; report (sample, --data, --batches) an
       error-level lint or an unreadable row; everything was printed (the data has problems; tokstep worked)
  2    bad input: flags, files, model or sample (one line on stderr says why)
  3    the model produced NaN/inf logits
  4    internal error (a bug; TOKSTEP_DEBUG=1 shows the traceback)
  130  interrupted (Ctrl-C); 143 terminated (SIGTERM); 129 hung up (SIGHUP)"""
