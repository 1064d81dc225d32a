"""NVIDIA GPUs through NVML: what is there, and how much memory each process holds.

NVML is initialised once per process, on first use, and absent cleanly: on a machine
without the driver (or without an NVIDIA GPU) every function here answers "nothing" rather
than raising. All calls block; the async core runs them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = ["GpuDevice", "GpuProbe", "ProcessVram"]

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024


@attrs.frozen
class GpuDevice:
    """One NVIDIA GPU."""

    index: int
    name: str
    uuid: str
    memory_total_mib: int
    memory_used_mib: int


@attrs.frozen
class ProcessVram:
    """GPU memory held by one process: the total and the per-GPU breakdown (by index)."""

    total_mib: int
    per_gpu_mib: Mapping[int, int]


class GpuProbe:
    """Lazily initialised NVML access, shared by everything in one process.

    ``nvml`` can be injected (a fake module with the same functions) to test code paths
    that need a GPU this machine does not have.
    """

    def __init__(self, nvml: Any | None = None) -> None:
        self._nvml = nvml
        self._lock = threading.Lock()
        self._ready: bool | None = None
        self.error: str | None = None
        self.driver_version: str | None = None

    def _init(self) -> bool:
        with self._lock:
            if self._ready is not None:
                return self._ready
            try:
                if self._nvml is None:
                    import pynvml  # provided by the nvidia-ml-py distribution

                    self._nvml = pynvml
                self._nvml.nvmlInit()
                driver = self._nvml.nvmlSystemGetDriverVersion()
                self.driver_version = driver.decode() if isinstance(driver, bytes) else str(driver)
                self._ready = True
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                self._ready = False
                logger.debug("no NVML, so no VRAM figures: %s", self.error)
            return self._ready

    @property
    def available(self) -> bool:
        """Whether NVML answers (an NVIDIA driver is loaded)."""
        return self._init()

    @property
    def known_absent(self) -> bool:
        """Whether NVML was tried and does not answer; False before the first try (this
        one does not try: the first ``nvmlInit`` can take tens of milliseconds)."""
        return self._ready is False

    def devices(self) -> list[GpuDevice]:
        """The NVIDIA GPUs, empty without a driver."""
        if not self._init():
            return []
        nvml: Any = self._nvml
        result = []
        try:
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                name = nvml.nvmlDeviceGetName(handle)
                uuid = nvml.nvmlDeviceGetUUID(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                result.append(
                    GpuDevice(
                        index=index,
                        name=name.decode() if isinstance(name, bytes) else str(name),
                        uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                        memory_total_mib=int(memory.total) // _MIB,
                        memory_used_mib=int(memory.used) // _MIB,
                    )
                )
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        return result

    def vram_by_pid(self, pids: Iterable[int] | None = None) -> dict[int, ProcessVram]:
        """GPU memory per process, compute and graphics processes summed across GPUs.

        ``pids`` limits the answer (``None``: every process NVML reports). Processes NVML
        reports without a memory figure (some drivers in some containers) count as 0.
        """
        if not self._init():
            return {}
        wanted = None if pids is None else set(pids)
        per_pid: dict[int, dict[int, int]] = {}
        nvml: Any = self._nvml
        try:
            count = nvml.nvmlDeviceGetCount()
            for index in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                seen: set[int] = set()
                for getter in ("nvmlDeviceGetComputeRunningProcesses",
                               "nvmlDeviceGetGraphicsRunningProcesses"):  # fmt: skip
                    fn = getattr(nvml, getter, None)
                    if fn is None:
                        continue
                    for proc in fn(handle):
                        pid = int(proc.pid)
                        # A process using the GPU for both shows up twice on one device.
                        if (wanted is not None and pid not in wanted) or pid in seen:
                            continue
                        seen.add(pid)
                        used = proc.usedGpuMemory
                        mib = int(used) // _MIB if isinstance(used, int) and used >= 0 else 0
                        gpus = per_pid.setdefault(pid, {})
                        gpus[index] = gpus.get(index, 0) + mib
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        return {
            pid: ProcessVram(total_mib=sum(gpus.values()), per_gpu_mib=dict(gpus))
            for pid, gpus in per_pid.items()
        }


_default_probe: GpuProbe | None = None
_default_lock = threading.Lock()


def default_probe() -> GpuProbe:
    """The process-wide probe (NVML is initialised once per process)."""
    global _default_probe  # noqa: PLW0603 - one NVML session per process by design
    with _default_lock:
        if _default_probe is None:
            _default_probe = GpuProbe()
        return _default_probe
