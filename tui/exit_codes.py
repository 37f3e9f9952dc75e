"""tokstep's exit statuses: a finding is not a failure, and neither is a crash."""

from __future__ import annotations

OK = 0  # done; for `tokstep lint`: no finding at or above --fail-on
FINDINGS = 1  # `tokstep lint` only: a finding at or above --fail-on (the data has problems, tokstep worked)
BAD_INPUT = 2  # tokstep could not do it: bad flags, files, model or sample (one line on stderr says why)
NONFINITE = 3  # the model produced NaN/inf logits
INTERNAL = 4  # a bug in tokstep (one line; TOKSTEP_DEBUG=1 shows the traceback)
INTERRUPTED = 130  # Ctrl-C (SIGINT); SIGTERM gives 143 and SIGHUP 129 (128 + the signal number)


def signalled(signum: int) -> int:
    """The status of a run ended by a signal, as a shell reports it."""
    return 128 + int(signum)


EXIT_STATUS_HELP = """exit status:
  0    done (lint: no finding at or above --fail-on / --strict)
  1    lint only: findings at or above --fail-on / --strict (the data has problems; tokstep worked)
  2    bad input: flags, files, model or sample (one line on stderr says why)
  3    the model produced NaN/inf logits
  4    internal error (a bug; TOKSTEP_DEBUG=1 shows the traceback)
  130  interrupted (Ctrl-C); 143 terminated (SIGTERM); 129 hung up (SIGHUP)"""
