"""What a benchmark ran on: this machine's CPU, memory, GPUs and OS, recorded per task."""

from __future__ import annotations

import contextlib
import platform
from typing import Any

__all__ = ["describe_host"]


def describe_host() -> dict[str, Any]:
    """CPU model and count, memory, GPUs and OS of this machine (blocking: psutil, NVML)."""
    import psutil

    from llamaswitch._gpu import default_probe

    cpu = platform.processor() or platform.machine()
    with (
        contextlib.suppress(OSError),
        open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo,
    ):
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    try:
        gpus = [
            {"index": d.index, "name": d.name, "memory_total_mib": d.memory_total_mib}
            for d in default_probe().devices()
        ]
    except Exception:  # a GPU probe failure must not stop benchmarks
        gpus = []
    return {
        "hostname": platform.node(),
        "os": platform.platform(),
        "cpu": cpu,
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "memory_total_bytes": psutil.virtual_memory().total,
        "gpus": gpus,
    }
