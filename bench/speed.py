"""Time a full Trace against the same model's bare forward pass, and against re-running every prefix."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.models import input_ids, synchronize
from tokstep.engine.inputs.sample import Sample
from tokstep.engine.model.loading import LoadedModel
from tokstep.engine.model.reduce import reduce_logits
from tokstep.engine.model.trace import trace_sample


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds
    cpu: float  # process CPU seconds (all threads)


def median_ratio(measured: list[Timing], base: list[Timing]) -> float:
    """Median over pairs (each ran back to back) of measured/base wall time."""
    return statistics.median(m.wall / b.wall for b, m in zip(base, measured, strict=True))


def min_ratio(measured: list[Timing], base: list[Timing]) -> float:
    """Fastest measured over fastest base wall time: load only ever adds time."""
    return min(m.wall for m in measured) / min(b.wall for b in base)


def cpu_ratio(measured: list[Timing], base: list[Timing]) -> float:
    """Least CPU time of measured over least of base (process CPU seconds, all threads)."""
    return min(m.cpu for m in measured) / min(b.cpu for b in base)


@dataclass(frozen=True)
class PairedTimes:
    """Forward and Trace timed in alternating order, so both see the same machine load."""

    tokens: int
    forward: list[Timing]
    trace: list[Timing]
    path: str

    @property
    def ratio(self) -> float:
        """Median over pairs of trace/forward wall time (each pair ran back to back)."""
        return median_ratio(self.trace, self.forward)

    @property
    def min_ratio(self) -> float:
        """Fastest trace over fastest forward: load only ever adds time, so minima are the least noisy."""
        return min_ratio(self.trace, self.forward)

    @property
    def cpu_ratio(self) -> float:
        """Least CPU time of a trace over least of a forward (process CPU seconds, all threads)."""
        return cpu_ratio(self.trace, self.forward)

    @property
    def forward_median(self) -> float:
        return statistics.median(f.wall for f in self.forward)

    @property
    def trace_median(self) -> float:
        return statistics.median(t.wall for t in self.trace)


def timed(loaded: LoadedModel, work: Callable[[], object]) -> Timing:
    synchronize(loaded.model)
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    synchronize(loaded.model)
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def bare_forward(loaded: LoadedModel, ids: torch.Tensor) -> Callable[[], object]:
    """`model(input_ids)`, no KV cache (the Trace does not build one either)."""

    @torch.inference_mode()
    def run() -> object:
        return loaded.model(ids, use_cache=False).logits

    return run


def trace_vs_forward(loaded: LoadedModel, sample: Sample, repeats: int, warm_up: bool = True) -> PairedTimes:
    ids = input_ids(loaded, sample)
    forward = bare_forward(loaded, ids)
    paths: set[str] = set()

    def trace() -> None:
        paths.add(trace_sample(loaded, sample).path)

    if warm_up:  # allocator, kernels, lazy init at this size
        timed(loaded, forward), timed(loaded, trace)
    forwards, traces = [], []
    for r in range(repeats):
        if r % 2 == 0:
            forwards.append(timed(loaded, forward))
            traces.append(timed(loaded, trace))
        else:
            traces.append(timed(loaded, trace))
            forwards.append(timed(loaded, forward))
    return PairedTimes(len(sample) - 1, forwards, traces, " / ".join(sorted(paths)))


@dataclass(frozen=True)
class NaiveRun:
    positions: int
    seconds: list[float]  # wall seconds of prefix 1, 2, ..., T: every one timed, none interpolated

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds))


@torch.inference_mode()
def naive_prefix_reruns(loaded: LoadedModel, sample: Sample, top_k: int = 10) -> NaiveRun:
    """What a user would write: run the model on tokens[:t+1] for every t and keep the last position's
    distribution. Every prefix 1..T is run and timed (the total is measured, not estimated)."""
    ids = input_ids(loaded, sample)  # (1, N)
    positions = len(sample) - 1
    targets = ids[0, 1:]  # (T,)

    def one_prefix(length: int) -> None:
        logits = loaded.model(ids[:, :length]).logits[0, -1:]  # (1, V): predicts token `length`
        reduce_logits(logits, targets[length - 1 : length], top_k)

    one_prefix(positions // 2)  # warm-up
    return NaiveRun(
        positions, [timed(loaded, lambda n=n: one_prefix(n)).wall for n in range(1, positions + 1)]
    )
