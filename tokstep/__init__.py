"""tokstep: step through the training loss of a causal LM, one position at a time.

The public API is small: build a `SampleSpec`, load a model with `ModelSpec`, and `run_trace` gives a
`TraceResult` whose per-position numbers match Hugging Face's loss. `tokstep.engine` holds the torch side,
`tokstep.tui` the terminal side; `python -m tokstep` runs the CLI.
"""

from __future__ import annotations

import importlib
from pathlib import Path

# Installed, engine/ and tui/ sit inside this package (setuptools' package-dir maps them there). In a source
# checkout they sit beside it, at the top of the repository: let `tokstep.engine` find them there too.
_HERE = Path(__file__).resolve().parent
if not (_HERE / "engine").is_dir() and (_HERE.parent / "engine" / "__init__.py").is_file():
    __path__.append(str(_HERE.parent))  # type: ignore[name-defined]  # noqa: F821

__version__ = "0.2.0"

_LAZY = {
    "IGNORE_INDEX": "tokstep.engine.inputs.sample",
    "MaskReason": "tokstep.engine.inputs.sample",
    "Sample": "tokstep.engine.inputs.sample",
    "TokstepError": "tokstep.engine.errors",
    "SampleSpec": "tokstep.engine.inputs.spec",
    "ModelSpec": "tokstep.engine.model.session",
    "TraceResult": "tokstep.engine.model.session",
    "run_trace": "tokstep.engine.model.session",
    "save_batches": "tokstep.capture",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    """Import lazily, so `import tokstep` stays cheap (torch loads only when a trace is asked for)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tokstep' has no attribute {name!r}")

    return getattr(importlib.import_module(module), name)
