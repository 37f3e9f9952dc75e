"""The bundled demo's trace with its numbers PINNED, for SVG snapshots that must not depend on the CPU.

The last bits of a float32 sum differ between CPUs and thread counts (an AVX-512 Xeon and an AMD EPYC gave
3.227928 vs 3.227929 for the same mean), so the snapshots never show freshly computed numbers: they show
the numbers stored in `tests/data/demo_trace.json`, while `test_pinned_demo_trace_matches_a_fresh_trace`
checks those against a fresh trace within a tolerance. After retraining the bundled model:

    python tests/pinned_demo.py && pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from tokstep.engine import defaults
from tokstep.engine.inputs.spec import build_sample
from tokstep.engine.model.reduce import PositionStats
from tokstep.engine.model.results import TraceResult
from tokstep.engine.model.session import ModelSpec, load, run_trace
from tokstep.engine.model.trace import assemble_trace, shifted_targets
from tokstep.tui.cli.main import demo_spec

PINNED = Path(__file__).parent / "data" / "demo_trace.json"
FIELDS = ("logprob", "rank", "ties", "entropy", "topk_ids", "topk_logprobs", "finite")
DTYPES = {"logprob": np.float32, "entropy": np.float32, "topk_logprobs": np.float32, "finite": bool}


def demo():
    """(loaded bundled model on CPU float32, the demo question + answer spec)."""
    loaded = load(ModelSpec(device="cpu", dtype="float32"))
    return loaded, demo_spec("qa", defaults, {"bos": "auto", "eos": "auto", "truncate": None})


def fresh_result() -> TraceResult:
    loaded, spec = demo()
    return run_trace(loaded, spec, top_k=10, reference="full")


def pin(result: TraceResult, path: Path = PINNED) -> None:
    """Store a result's numbers (float32 values exactly) for the snapshots."""
    trace = result.trace
    data = {name: getattr(trace, name).tolist() for name in FIELDS}
    data.update(path=trace.path, reference=result.reference, reference_note=result.reference_note)
    lines = ",\n".join(f"{json.dumps(key)}: {json.dumps(value)}" for key, value in data.items())
    path.write_text("{\n" + lines + "\n}\n")  # one field per line: a retrained model gives a readable diff


def pinned_result() -> TraceResult:
    """The demo's TraceResult with every number read from the pinned file (model only for info and texts)."""
    loaded, spec = demo()
    data = json.loads(PINNED.read_text())
    sample = build_sample(spec, loaded.tokenizer)
    stats = PositionStats(**{name: np.array(data[name], dtype=DTYPES.get(name, np.int64)) for name in FIELDS})
    targets, supervised = shifted_targets(sample)
    trace = assemble_trace(sample, targets, supervised, stats, data["path"], loaded.info.vocab_size)
    result = run_trace(loaded, spec, top_k=10, reference="off")  # info, texts; its numbers are replaced
    return replace(
        result,
        sample=sample,
        trace=trace,
        reference=data["reference"],
        reference_computed=True,
        reference_note=data["reference_note"],
    )


if __name__ == "__main__":
    pin(fresh_result())
    print(f"wrote {PINNED}")
