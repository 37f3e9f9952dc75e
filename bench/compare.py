"""Time `compare_traces` (A and B lock-step, KL per position) against two separate traces of A and B."""

from __future__ import annotations

from dataclasses import dataclass

from bench.speed import Timing, cpu_ratio, median_ratio, min_ratio, timed
from tokstep.engine.compare.traces import compare_traces
from tokstep.engine.inputs.sample import Sample
from tokstep.engine.model.loading import LoadedModel
from tokstep.engine.model.trace import trace_sample


@dataclass(frozen=True)
class CompareTimes:
    tokens: int
    two_traces: list[Timing]
    compare: list[Timing]
    path: str

    @property
    def min_ratio(self) -> float:
        """Fastest compare over the fastest pair of traces (load only ever adds time)."""
        return min_ratio(self.compare, self.two_traces)

    @property
    def median_ratio(self) -> float:
        return median_ratio(self.compare, self.two_traces)

    @property
    def cpu_ratio(self) -> float:
        return cpu_ratio(self.compare, self.two_traces)


def compare_vs_two_traces(a: LoadedModel, b: LoadedModel, sample: Sample, repeats: int) -> CompareTimes:
    """Each repeat: trace A then trace B, and compare(A, B), back to back, the order alternating."""
    paths: set[str] = set()

    def two() -> None:
        paths.add(trace_sample(a, sample).path)
        trace_sample(b, sample)

    def both() -> None:
        trace_a, _, _ = compare_traces(a, b, sample)
        paths.add(trace_a.path)

    timed(a, two), timed(a, both)  # warm-up: head checks, allocator, buffers
    traces, compares = [], []
    for r in range(repeats):
        if r % 2 == 0:
            traces.append(timed(a, two))
            compares.append(timed(a, both))
        else:
            compares.append(timed(a, both))
            traces.append(timed(a, two))
    return CompareTimes(len(sample) - 1, traces, compares, " / ".join(sorted(paths)))
