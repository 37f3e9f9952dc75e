"""Whole-process peak RSS of the default `tokstep report` vs HF's `model(ids, labels=ids)`, side by side.

    python -m bench.report_memory [--tokens 6272] [--vocab 151665] [--out bench/RESULTS.md]

A small random Llama (hidden 256, 2 layers, untied head) with a Qwen-2-sized vocabulary is saved to a temporary
folder with the bundled tokenizer (ids beyond it are padded rows, as in real checkpoints); a sample of random
ids (labels = ids) is written as an `--ids` file. Each command then runs in its own fresh process and its peak
RSS (`ru_maxrss` of that child, from `os.wait4`) is the whole process: interpreter, torch, weights, everything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HF_SCRIPT = """
import sys, torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
ids = torch.tensor(__import__("json").load(open(sys.argv[2]))["input_ids"])[None]
with torch.no_grad():
    print(float(model(ids, labels=ids).loss))
"""


def build(folder: Path, tokens: int, vocab: int) -> Path:
    """Save the random model (bundled tokenizer) to `folder`; return the --ids file."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from bench.models import small_llama_config
    from tokstep.engine.defaults import DEFAULT_MODEL

    torch.manual_seed(0)
    config = small_llama_config(vocab, max(8192, tokens + 1))
    LlamaForCausalLM(config).eval().save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL)
    tokenizer.save_pretrained(folder)
    ids = np.random.default_rng(0).integers(0, len(tokenizer), tokens + 1).tolist()
    path = folder / "sample.json"
    path.write_text(json.dumps({"input_ids": ids, "labels": ids}))
    return path


def run_child(command: list[str]) -> tuple[int, float, str]:
    """Start, then reap with wait4 ourselves so the rusage is this child's alone."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:5])} failed: {stderr.strip().splitlines()[-1:]}")
    return usage.ru_maxrss * 1024, time.monotonic() - started, stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=6272)
    parser.add_argument("--vocab", type=int, default=151665)
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    parser.add_argument("--full", action="store_true", help="also run `tokstep report --reference full`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokstep-bench-") as tmp:
        folder = Path(tmp)
        ids = build(folder, args.tokens, args.vocab)
        report = [sys.executable, "-m", "tokstep", "report", "--model", str(folder), "--ids", str(ids)]
        report += ["--dtype", "float32", "--device", "cpu", "--json", str(folder / "out.json")]
        runs = {
            "HF model(ids, labels=ids)": [sys.executable, "-c", HF_SCRIPT, str(folder), str(ids)],
            "tokstep report (default: --reference chunked)": report,
            "tokstep report --reference off": [*report[:-1], str(folder / "off.json"), "--reference", "off"],
        }
        if args.full:
            runs["tokstep report --reference full"] = [
                *report[:-1],
                str(folder / "full.json"),
                "--reference",
                "full",
            ]
        rows = {}
        for name, command in runs.items():
            rows[name] = run_child(command)
            print(f"{name}: peak RSS {rows[name][0] / 2**30:.2f} GiB in {rows[name][1]:.0f} s", flush=True)
        data = json.loads((folder / "out.json").read_text())
        hf_loss = float(rows["HF model(ids, labels=ids)"][2].strip().splitlines()[-1])
    hf = rows["HF model(ids, labels=ids)"][0]
    lines = [
        "",
        f"## Whole-process peak RSS: `tokstep report` vs HF, T = {args.tokens}, vocab {args.vocab}",
        "",
        f"`python -m bench.report_memory` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}): small random "
        "Llama (hidden 256, 2 layers, untied head), float32, CPU, each command in a fresh process, peak RSS of "
        "that process (`ru_maxrss` via `os.wait4`).",
        "",
        "| command | peak RSS | × HF | wall |",
        "|---|---|---|---|",
    ]
    for name, (rss, seconds, _) in rows.items():
        lines.append(f"| {name} | {rss / 2**30:.2f} GiB | {rss / hf:.3f}x | {seconds:.0f} s |")
    lines += [
        "",
        f"Goal: default report ≤ 0.25x of HF. HF loss {hf_loss:.6f}; tokstep's mean CE {data['loss']:.6f}, its "
        f"chunked HF reference {data['hf_reference_loss']:.6f} (|rel. diff| "
        f"{abs(data['hf_reference_loss'] - hf_loss) / hf_loss:.1e}).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    from bench.sections import write_section

    write_section(Path(args.out), "bench.report_memory", text)  # `bench.run` keeps marked sections


if __name__ == "__main__":
    main()
