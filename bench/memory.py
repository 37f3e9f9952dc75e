"""Peak memory of a Trace vs HF's `model(input_ids, labels=input_ids)`, each in a fresh process.

    python -m bench.memory {trace,trace-logits,hf} TOKENS DEVICE OUT_DIR   (prints one JSON line)

CPU: the rise of peak RSS (VmHWM, reset through /proc/self/clear_refs just before the call) over the RSS
just before it. CUDA: torch.cuda.max_memory_allocated() minus memory_allocated() before the call.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MODES = ("trace", "trace-logits", "hf")
ROOT = Path(__file__).resolve().parent.parent


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Make VmHWM restart from the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def worker(mode: str, tokens: int, device: str, out_dir: Path) -> dict[str, object]:
    import numpy as np
    import torch

    from bench.models import input_ids, llama_128k, random_sample
    from tokstep.engine.model.trace import trace_sample

    loaded = llama_128k(device)
    sample = random_sample(tokens + 1, loaded.info.vocab_size)
    small = random_sample(17, loaded.info.vocab_size, seed=1)
    ids = input_ids(loaded, sample)

    def run() -> dict[str, object]:
        with torch.inference_mode():
            if mode == "hf":
                return {"loss": float(loaded.model(ids, labels=ids).loss)}
            trace = trace_sample(loaded, sample, force_logits_path=mode == "trace-logits")
        np.save(out_dir / f"{mode}.npy", trace.logprob)
        return {"loss": trace.loss, "path": trace.path}

    # Warm-up on a short sample: kernels and lazy initialisation are not what we measure.
    with torch.inference_mode():
        if mode == "hf":
            loaded.model(input_ids(loaded, small), labels=input_ids(loaded, small))
        else:
            trace_sample(loaded, small, force_logits_path=mode == "trace-logits")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        result = run()
        torch.cuda.synchronize()
        increase, method = torch.cuda.max_memory_allocated() - before, "torch.cuda.max_memory_allocated"
    else:
        import resource

        before_kib = _status_kib("VmRSS")
        if _reset_peak_rss():
            result = run()
            increase, method = (_status_kib("VmHWM") - before_kib) * 1024, "peak RSS (VmHWM reset)"
        else:
            result = run()
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            increase, method = (peak_kib - before_kib) * 1024, "peak RSS (ru_maxrss)"
    return {"mode": mode, "tokens": tokens, "increase_bytes": int(increase), "method": method, **result}


@dataclass(frozen=True)
class MemoryResult:
    tokens: int
    runs: dict[str, dict]  # mode -> worker output
    path_drift: float | None  # max |Δ log q(target)| between the two Trace paths

    def ratio(self, mode: str) -> float:
        return self.runs[mode]["increase_bytes"] / self.runs["hf"]["increase_bytes"]

    def loss_rel_diff(self, mode: str) -> float:
        hf = self.runs["hf"]["loss"]
        return abs(self.runs[mode]["loss"] - hf) / abs(hf)


def measure(tokens: int, device: str, out_dir: Path, timeout: float = 900) -> MemoryResult:
    """Run each mode in its own fresh interpreter so peaks never mix."""
    import numpy as np

    runs = {}
    for mode in MODES:
        done = subprocess.run(
            [sys.executable, "-m", "bench.memory", mode, str(tokens), device, str(out_dir)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"memory worker '{mode}' failed: {done.stderr.strip().splitlines()[-1:]}")
        runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    a, b = np.load(out_dir / "trace.npy"), np.load(out_dir / "trace-logits.npy")
    drift = float(np.max(np.abs(a.astype(np.float64) - b))) if len(a) else None
    return MemoryResult(tokens, runs, drift)


if __name__ == "__main__":
    mode_arg, tokens_arg, device_arg, out_arg = sys.argv[1:5]
    if mode_arg not in MODES:
        sys.exit(f"mode must be one of {MODES}")
    print(json.dumps(worker(mode_arg, int(tokens_arg), device_arg, Path(out_arg))))
