"""`python -m bench.gpu` end to end on the CPU with tiny shapes (gloo instead of NCCL): every check runs and
its table lands in RESULTS.md between its markers, the other sections kept."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--device", "cpu", "--backend", "gloo", "--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2",
        "--intermediate", "128", "--vocab", "1024", "--tokens", "192", "--repeats", "1", "--scan-rows", "4"]  # fmt: skip


def test_bench_gpu_runs_on_the_cpu_and_writes_its_table(tmp_path):
    results = tmp_path / "RESULTS.md"
    kept = "<!-- bench.scan: begin -->\nthe scan section\n<!-- bench.scan: end -->"
    results.write_text(f"# Results\n\n{kept}\n\n<!-- bench.gpu: begin -->\nold\n<!-- bench.gpu: end -->\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu", *TINY, "--out", str(results)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    text = results.read_text()
    assert kept in text and "\nold\n" not in text and text.count("<!-- bench.gpu: begin -->") == 1
    section = text[text.index("<!-- bench.gpu: begin -->") : text.index("<!-- bench.gpu: end -->")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| check")]
    assert len(rows) == 7, section
    checks = [row for row in rows if "met" in row]
    assert len(checks) == 4 and not any("not met" in row for row in rows), section
    parity = re.search(r"loss: trace vs HF .*rel\. diff ([0-9.e+-]+)", section)
    assert parity and float(parity[1]) < 1e-2
    assert re.search(r"\| gloo group of one: all_reduce\(0\.\.3\) \| sum 6 \|", section)
    scan = re.search(
        r"on cpu \((\d+) chat rows\) \| [0-9.]+ s wall; largest rel\. loss diff vs the CPU scan ([0-9.e+-]+)",
        section,
    )
    assert scan and int(scan[1]) == 4 and float(scan[2]) == 0.0  # the same computation twice on the CPU
