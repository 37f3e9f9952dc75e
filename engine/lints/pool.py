"""Lint a data file on every core: batches of rows go to a pool of processes, results come back in order.

Each worker holds one `BatchTokenizer` (renders and encodings cached per batch) and sends back slim
`RowLint`s (findings and counts, no arrays). Where the pool forks and the data file can be reopened (JSON
Lines), a worker reads its batch's rows itself and only row numbers go out; otherwise the rows' specs do.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from tokstep.engine.inputs.data import DataFile, DataRow
from tokstep.engine.lints.batch import BatchTokenizer, batched, lint_rows
from tokstep.engine.lints.rows import RowLint

BATCH_ROWS = 256  # rows per batch: one encode_batch call, one message to and from a worker
_WORKER: BatchTokenizer | None = None
_SOURCE: DataFile | None = None  # the data file, reopened in this worker (it reads its own rows)


def default_jobs() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _start_worker(tokenizer: Any, source: DataFile | None) -> None:
    global _WORKER, _SOURCE
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker: the pool is the parallelism
    _WORKER = tokenizer if isinstance(tokenizer, BatchTokenizer) else BatchTokenizer(tokenizer)
    _SOURCE = source.reopened() if source is not None else None


def _lint_batch(rows: list[DataRow]) -> list[RowLint]:
    assert _WORKER is not None
    return lint_rows(_WORKER, rows, slim=True)


def _lint_range(start: int, stop: int) -> list[RowLint]:
    assert _SOURCE is not None
    return _lint_batch(list(_SOURCE.rows(start, stop)))


def _forking() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _pooled(
    tokenizer: Any, jobs: int, task: Callable[..., list[RowLint]], calls: Iterable[tuple[Any, ...]],
    source: DataFile | None = None,
) -> Iterator[RowLint]:  # fmt: skip
    """`task(*call)` for every call on a pool of `jobs` processes, the results in order."""
    context = multiprocessing.get_context("fork" if _forking() else "spawn")
    if _forking():  # the workers inherit one warm stand-in (not pickled): its facts are worked out once, here
        tokenizer = BatchTokenizer(tokenizer)
        tokenizer.warm()
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_start_worker, initargs=(tokenizer, source)
    ) as pool:
        pending: deque[Future[list[RowLint]]] = deque()
        for call in calls:
            pending.append(pool.submit(task, *call))
            if len(pending) >= 2 * jobs:  # bounded: a 1 GB file is never all in flight
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def lint_stream(
    tokenizer: Any, rows: Iterable[DataRow], jobs: int = 1, batch_rows: int = BATCH_ROWS
) -> Iterator[RowLint]:
    """Slim `RowLint`s for `rows`, in order, using `jobs` processes (1: in this process)."""
    if jobs <= 1:
        local = BatchTokenizer(tokenizer)
        for batch in batched(rows, batch_rows):
            yield from lint_rows(local, batch, slim=True)
        return
    yield from _pooled(tokenizer, jobs, _lint_batch, ((batch,) for batch in batched(rows, batch_rows)))


def lint_data(
    tokenizer: Any, data: DataFile, stop: int | None = None, jobs: int = 1, batch_rows: int = BATCH_ROWS
) -> Iterator[RowLint]:
    """`lint_stream` over rows 0..stop of `data` (None: all). With a forking pool and a file each worker can
    reopen, the workers read and parse their rows themselves: only row numbers and slim results cross."""
    source = None
    if jobs > 1 and _forking():
        data.index_all()  # before the copy: the workers read by this index
        source = data.reopened()
    if source is None:
        yield from lint_stream(tokenizer, data.rows(0, stop), jobs, batch_rows)
        return
    try:
        end = len(data) if stop is None else min(stop, len(data))
        ranges = ((start, min(start + batch_rows, end)) for start in range(0, end, batch_rows))
        yield from _pooled(tokenizer, jobs, _lint_range, ranges, source)
    finally:
        source.close()
