"""Resource figures of model server processes: RSS, CPU and VRAM, sampled together.

:func:`sample` is blocking (psutil, NVML): the supervisor calls it in a worker thread,
at most every ``sample_ttl_s``, once for every live server, and shares the figures among
all callers, so ``status`` stays cheap however often it is asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
import psutil

from llamaswitch._gpu import GpuProbe

__all__ = ["Sample", "sample"]

_MIB = 1024 * 1024


@attrs.frozen
class Sample:
    """What one process held when it was sampled (None: unknown, or no GPU)."""

    rss_mib: float | None
    cpu_percent: float | None
    vram_mib: int | None
    vram_per_gpu_mib: Mapping[int, int] | None


def sample(
    gpu: GpuProbe, jobs: Sequence[tuple[int, psutil.Process | None]]
) -> list[tuple[psutil.Process | None, Sample]]:
    """Sample every ``(pid, known psutil.Process)``; returns the process objects to keep.

    The psutil object is kept per server: its ``cpu_percent`` measures since the previous
    call (the first call of a new object answers 0.0).
    """
    vram = gpu.vram_by_pid([pid for pid, _ in jobs]) if jobs else {}
    available = gpu.available
    results = []
    for pid, known in jobs:
        ps_process = known
        rss = cpu = None
        try:
            if ps_process is None or ps_process.pid != pid:
                ps_process = psutil.Process(pid)
            with ps_process.oneshot():
                rss = round(ps_process.memory_info().rss / _MIB, 1)
                cpu = ps_process.cpu_percent(None)
        except psutil.Error:
            ps_process = None
        used = vram.get(pid)
        results.append((ps_process, Sample(
            rss_mib=rss, cpu_percent=cpu,
            vram_mib=(used.total_mib if used else 0) if available else None,
            vram_per_gpu_mib=(dict(used.per_gpu_mib) if used else {}) if available else None,
        )))  # fmt: skip
    return results
