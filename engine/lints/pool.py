"""Lint a data file on every core: batches of rows go to a pool of processes, results come back in order.

Each worker holds one `BatchTokenizer` (renders and encodings cached per batch) and sends back slim
`RowLint`s (findings and counts, no arrays), so only the rows' JSON and the findings cross processes.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from tokstep.engine.inputs.data import DataRow
from tokstep.engine.lints.batch import BatchTokenizer, batched, lint_rows
from tokstep.engine.lints.rows import RowLint

BATCH_ROWS = 256  # rows per batch: one encode_batch call, one message to and from a worker
_WORKER: BatchTokenizer | None = None


def default_jobs() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _start_worker(tokenizer: Any) -> None:
    global _WORKER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker: the pool is the parallelism
    _WORKER = BatchTokenizer(tokenizer)


def _lint_batch(rows: list[DataRow]) -> list[RowLint]:
    assert _WORKER is not None
    return lint_rows(_WORKER, rows, slim=True)


def lint_stream(
    tokenizer: Any, rows: Iterable[DataRow], jobs: int = 1, batch_rows: int = BATCH_ROWS
) -> Iterator[RowLint]:
    """Slim `RowLint`s for `rows`, in order, using `jobs` processes (1: in this process)."""
    if jobs <= 1:
        local = BatchTokenizer(tokenizer)
        for batch in batched(rows, batch_rows):
            yield from lint_rows(local, batch, slim=True)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_start_worker, initargs=(tokenizer,)
    ) as pool:
        pending: deque[Future[list[RowLint]]] = deque()
        for batch in batched(rows, batch_rows):
            pending.append(pool.submit(_lint_batch, batch))
            if len(pending) >= 2 * jobs:  # bounded: a 1 GB file is never all in flight
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
