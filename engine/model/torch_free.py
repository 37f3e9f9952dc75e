"""Import transformers without torch, for a process that will only ever tokenize (`tokstep lint`).

transformers 5.x imports torch from its package init whenever torch is installed (0.9 s of a 3 s `lint`), and
has no switch to stop it. It asks `importlib.util.find_spec("torch")` once and caches the answer, so a
`sys.modules["torch"] = None` entry while transformers is first imported makes it a tokenizer-only install
for the rest of the process: models cannot be loaded afterwards. That is why the caller must promise that
the whole process is one tokenizer-only command (`claim_process_for_one_command`, from the CLI's entry point)
and the load must ask for it (`torch_free_import`); tests running commands in-process never get it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_ONE_COMMAND_PROCESS = False
_NO_ADVICE = "TRANSFORMERS_NO_ADVISORY_WARNINGS"  # transformers' "PyTorch was not found" line on stderr


def claim_process_for_one_command() -> None:
    """The CLI's entry point: this process runs one command and ends, so a tokenizer-only command may keep torch out."""
    global _ONE_COMMAND_PROCESS
    _ONE_COMMAND_PROCESS = True


def torch_free_possible() -> bool:
    """True when transformers can still be imported without torch in this process."""
    return _ONE_COMMAND_PROCESS and "transformers" not in sys.modules and "torch" not in sys.modules


@contextmanager
def torch_free_import() -> Iterator[None]:
    """Within it, transformers' first import skips torch (when `torch_free_possible`); otherwise it does nothing."""
    if not torch_free_possible():
        yield
        return
    advice = os.environ.get(_NO_ADVICE)
    sys.modules["torch"] = None  # type: ignore[assignment]  # find_spec("torch") -> None: "not installed"
    os.environ[_NO_ADVICE] = "1"
    try:
        # lazy: loads transformers
        import transformers.tokenization_utils_base  # noqa: F401  # the package init decides about torch here
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
        if advice is None:
            os.environ.pop(_NO_ADVICE, None)
        else:
            os.environ[_NO_ADVICE] = advice
    yield
