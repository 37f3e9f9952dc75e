"""How the Rich commands (report, report --data/--batches/--compare) reach the engine: load the model, then
run one traced computation, each under a spinner on stderr. The screens' seam is tui/screens/backend.py."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from rich.console import Console

if TYPE_CHECKING:
    from tokstep.engine.model.loading import LoadedModel, ModelSpec

T = TypeVar("T")
Progress = Callable[[str], None]


def load_shown(model: ModelSpec, err: Console) -> LoadedModel:
    """Load the model under a spinner; how it was loaded (its notes) as `tokstep: note:` lines."""
    # lazy: loads torch
    from tokstep.engine.model.session import load

    with err.status(f"loading {model.display_name}"):
        loaded = load(model)
    for note in loaded.notes:
        print(f"tokstep: note: {note}", file=sys.stderr)
    return loaded


def shown(err: Console, label: str, work: Callable[[Progress], T]) -> T:
    """`work(progress)` under a spinner that shows `label`, then each progress message."""
    with err.status(label) as status:
        return work(lambda message: status.update(message))


def load_and_run(model: ModelSpec, work: Callable[[LoadedModel, Progress], T], label: str = "tracing") -> T:
    """Load the model, then `work(loaded, progress)` (a trace with HF's reference, a batch report ...)."""
    err = Console(stderr=True)
    loaded = load_shown(model, err)
    return shown(err, label, lambda progress: work(loaded, progress))


__all__ = ["load_and_run", "load_shown", "shown"]
