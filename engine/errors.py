"""The one exception type tokstep shows to users as a single line."""


class TokstepError(Exception):
    """A problem with the user's model, sample or flags: printed as one line, never a traceback."""
