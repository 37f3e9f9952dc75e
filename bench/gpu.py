"""The GPU check, ready to run wherever a GPU is lent (about 5 minutes on one recent GPU, 8B shapes):

1. an 8B-shaped Llama (random weights, bf16; hidden 4096, 32 layers, 32/8 heads, vocab 128256) on T = 32768
   random tokens: tokstep's trace vs the bare `model(input_ids)` forward, in wall seconds;
2. the trace's peak GPU memory vs the weights (goal: at most weights + 10%);
3. bf16 loss parity: the trace's loss vs HF's `model(input_ids, labels=labels).loss`;
4. the bundled small model traced on the device and on the CPU (float32): loss and per-position drift;
5. a one-GPU scan: an NCCL process group of one (all_reduce checked), then `torchrun --nproc_per_node=1 -m
   tokstep scan` of a small chat file on the device, its losses against the same scan on the CPU.

    python -m bench.gpu                                   # the full check (needs CUDA)
    python -m bench.gpu --device cpu --backend gloo --hidden 64 --layers 2 --heads 4 --kv-heads 2 \\
        --intermediate 128 --vocab 1024 --tokens 256 --scan-rows 6   # tiny shapes: what the CPU test runs

Writes its table into bench/RESULTS.md (between the `bench.gpu` markers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_MEMORY_OVER_WEIGHTS = 1.10
GOAL_PARITY_BF16 = 1e-2  # relative difference of the bf16 losses (both reduce in float32)
GOAL_DEVICE_DRIFT = 1e-3  # float32, device vs CPU: largest per-position |d log q(target)|


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backend", default="nccl", help="the process group's backend (gloo on the CPU)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--intermediate", type=int, default=14336)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--tokens", type=int, default=32768)
    parser.add_argument("--repeats", type=int, default=2, help="timed forward/trace pairs")
    parser.add_argument("--scan-rows", type=int, default=64, help="chat rows for the scan check")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    return parser.parse_args(argv)


def big_model(args: argparse.Namespace) -> Any:
    """The Llama of the given shapes, random weights, built directly on the device in the dtype."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from bench.models import VocabOnly
    from tokstep.engine.model.loading import wrap_model

    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=max(args.tokens, 2048),
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(args.device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return wrap_model(
        model.eval(), VocabOnly(args.vocab), f"llama {args.layers}x{args.hidden} (random, {args.dtype})"
    )


def peak_bytes(device: str) -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated()) if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def trace_vs_forward(args: argparse.Namespace) -> dict[str, Any]:
    """Steps 1-3 on the big model."""
    import torch

    from bench.models import input_ids, random_sample
    from bench.speed import timed
    from tokstep.engine.model.trace import reference_loss, trace_sample

    loaded = big_model(args)
    weights = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    sample = random_sample(args.tokens, args.vocab)
    ids = input_ids(loaded, sample)
    forward, trace, trace_peak = [], [], None
    holder: dict[str, Any] = {}
    with torch.inference_mode():
        loaded.model(ids[:, :128], use_cache=False)  # warm-up (kernels, allocator)
        for _ in range(args.repeats):
            forward.append(timed(loaded, lambda: loaded.model(ids, use_cache=False)).wall)
            reset_peak(args.device)
            trace.append(timed(loaded, lambda: holder.update(t=trace_sample(loaded, sample))).wall)
            trace_peak = peak_bytes(args.device)
        reference = reference_loss(loaded, sample)
    return {
        "weights": weights,
        "forward_s": min(forward),
        "trace_s": min(trace),
        "trace_peak": trace_peak,
        "trace_loss": holder["t"].loss,
        "hf_loss": reference,
    }


def device_vs_cpu(device: str) -> dict[str, Any]:
    """Step 4: the bundled model in float32 on the device and on the CPU, one chat sample."""
    import torch

    from tokstep.engine.defaults import DEFAULT_MODEL
    from tokstep.engine.inputs.spec import SampleSpec, build_sample
    from tokstep.engine.model.loading import ModelSpec
    from tokstep.engine.model.session import load
    from tokstep.engine.model.trace import max_drift, trace_sample

    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 for this comparison
    torch.backends.cudnn.allow_tf32 = False
    traces = {}
    spec = SampleSpec(text="The lord said unto Moses: speak unto the children of Israel. " * 8)
    for where in (device, "cpu"):
        loaded = load(ModelSpec(name_or_path=str(DEFAULT_MODEL), device=where, dtype="float32"))
        with torch.inference_mode():
            traces[where] = trace_sample(loaded, build_sample(spec, loaded.tokenizer))
    a, b = traces[device], traces["cpu"]
    return {"device_loss": a.loss, "cpu_loss": b.loss, "drift": max_drift(a, b), "tokens": len(a)}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_group_of_one(device: str, backend: str) -> float:
    """An NCCL (gloo on the CPU) group of one process: all_reduce of a tensor on the device; returns its sum."""
    import torch
    import torch.distributed as dist

    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", world_size=1, rank=0)
    try:
        tensor = torch.arange(4, dtype=torch.float32, device=device)
        dist.all_reduce(tensor)
        return float(tensor.sum())
    finally:
        dist.destroy_process_group()


def scan_on(device: str, data: Path, out: Path) -> tuple[float, dict[int, float]]:
    """`torchrun --nproc_per_node=1 -m tokstep scan` on `device`: wall seconds and each row's loss."""
    import pyarrow.parquet as pq

    from tokstep.engine.defaults import DEFAULT_MODEL

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "tokstep",
               "scan", str(data), "--model", str(DEFAULT_MODEL), "--dtype", "float32", "--device", device,
               "--out", str(out), "--chunk-rows", "16"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"scan on {device} failed: {done.stderr[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    losses: dict[int, float] = {}
    for shard in manifest["shards"]:
        for record in pq.read_table(out / shard, columns=["row", "loss"]).to_pylist():
            losses[record["row"]] = record["loss"]
    return wall, losses


def one_device_scan(device: str, backend: str, work: Path, rows: int) -> dict[str, Any]:
    """Step 5."""
    from bench.scan import chat_file

    group_sum = process_group_of_one(device, backend)
    data = chat_file(work / "chats.jsonl", rows)
    wall, on_device = scan_on(device, data, work / "scan-device")
    _, on_cpu = scan_on("cpu", data, work / "scan-cpu")
    worst = max(abs(on_device[r] - on_cpu[r]) / max(abs(on_cpu[r]), 1e-12) for r in on_cpu)
    return {"group_sum": group_sum, "rows": len(on_device), "scan_s": wall, "scan_rel": worst}


def _rel(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return math.nan
    return abs(a - b) / max(abs(b), 1e-12)


def table(
    args: argparse.Namespace, big: dict[str, Any], small: dict[str, Any], scan: dict[str, Any]
) -> list[str]:
    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    gib = 2**30
    ratio = big["trace_s"] / big["forward_s"]
    peak = big["trace_peak"]
    memory = (
        f"{peak / gib:.2f} GiB = {peak / big['weights']:.3f}x the weights"
        if peak is not None
        else "n/a (peak GPU memory is measured on CUDA only)"
    )
    memory_ok = verdict(peak <= GOAL_MEMORY_OVER_WEIGHTS * big["weights"]) if peak is not None else ""
    parity = _rel(big["trace_loss"], big["hf_loss"])
    return [
        "| check | measured | goal |",
        "|---|---|---|",
        f"| model | Llama {args.layers} layers x hidden {args.hidden} (heads {args.heads}/{args.kv_heads}, "
        f"intermediate {args.intermediate}), vocab {args.vocab:,}, {args.dtype}, T = {args.tokens:,}; "
        f"weights {big['weights'] / gib:.2f} GiB | |",
        f"| trace vs bare forward (fastest of {args.repeats}, wall s) | {big['trace_s']:.3f} s vs "
        f"{big['forward_s']:.3f} s = {ratio:.2f}x | |",
        f"| trace peak memory vs weights | {memory} | ≤ weights + 10% {memory_ok} |",
        f"| {args.dtype} loss: trace vs HF `model(input_ids, labels=labels).loss` | {big['trace_loss']:.6f} vs "
        f"{big['hf_loss']:.6f}: rel. diff {parity:.2e} | ≤ {GOAL_PARITY_BF16:g}: {verdict(parity <= GOAL_PARITY_BF16)} |",
        f"| bundled model, float32, {args.device} vs cpu ({small['tokens']} tokens) | loss {small['device_loss']:.6f} "
        f"vs {small['cpu_loss']:.6f}; max per-position drift {small['drift']:.2e} | ≤ {GOAL_DEVICE_DRIFT:g}: "
        f"{verdict(small['drift'] <= GOAL_DEVICE_DRIFT)} |",
        f"| {args.backend} group of one: all_reduce(0..3) | sum {scan['group_sum']:.0f} | 6: "
        f"{verdict(scan['group_sum'] == 6)} |",
        f"| `torchrun --nproc_per_node=1 -m tokstep scan` on {args.device} ({scan['rows']} chat rows) | "
        f"{scan['scan_s']:.1f} s wall; largest rel. loss diff vs the CPU scan {scan['scan_rel']:.2e} | ≤ "
        f"{GOAL_DEVICE_DRIFT:g}: {verdict(scan['scan_rel'] <= GOAL_DEVICE_DRIFT)} |",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bench.machine import load_average
    from bench.sections import write_section

    started = time.perf_counter()
    load = load_average()
    big = trace_vs_forward(args)
    small = device_vs_cpu(args.device)
    with tempfile.TemporaryDirectory(prefix="tokstep-bench-gpu-") as tmp:
        scan = one_device_scan(args.device, args.backend, Path(tmp), args.scan_rows)
    lines = table(args, big, small, scan)
    device = args.device
    if device.startswith("cuda"):
        import torch

        device = f"{device} ({torch.cuda.get_device_name()})"
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python -m bench.gpu", *(argv if argv is not None else sys.argv[1:])])
    body = [
        "## GPU check (`python -m bench.gpu`)",
        "",
        f"Written by `{command}` on {when}, device {device}, {time.perf_counter() - started:.0f} s in all; "
        f"load average {load} at the start.",
        "",
        *lines,
    ]
    write_section(Path(args.out), "bench.gpu", "\n".join(body))
    print("\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
