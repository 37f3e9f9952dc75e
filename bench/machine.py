"""Describe the machine a benchmark ran on (CPU, cores, memory, library versions, device, load)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def total_memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def describe(device: str) -> dict[str, str]:
    """Key facts, as strings, for the results header."""
    import torch
    import transformers

    memory = total_memory_gib()
    facts = {
        "CPU": cpu_model(),
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "memory": f"{memory:.0f} GiB" if memory else "n/a",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "OS": platform.platform(terse=True),
        "device": device,
    }
    if device.startswith("cuda"):
        facts["device"] = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return facts
