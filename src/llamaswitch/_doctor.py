"""``llamaswitch doctor``: what was found, what is missing, and the command that fixes it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from llamaswitch._binaries import SETTING_OF, explicit_path, locate
from llamaswitch._capabilities import BinaryKind
from llamaswitch._errors import LlamaSwitchError
from llamaswitch._gpu import GpuProbe, default_probe
from llamaswitch._settings import Settings

__all__ = ["Check", "DoctorReport", "run_doctor"]


@attrs.frozen
class Check:
    """One thing the doctor looked at."""

    name: str
    ok: bool
    #: A failed required check makes ``llamaswitch doctor`` exit non-zero.
    required: bool
    detail: str
    fix: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict)

    @property
    def status(self) -> str:
        """``ok``, ``missing`` (required and failed) or ``warning``."""
        if self.ok:
            return "ok"
        return "missing" if self.required else "warning"


@attrs.frozen
class DoctorReport:
    """Every check, in the order they ran."""

    checks: tuple[Check, ...]
    #: ``(key, value, source)`` of every setting in effect (``llamaswitch config``'s rows).
    settings: tuple[tuple[str, str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """Whether everything required was found."""
        return all(c.ok or not c.required for c in self.checks)


def _binary_check(settings: Settings, kind: BinaryKind) -> Check:
    explicit = explicit_path(kind, settings)
    setting = SETTING_OF[kind]
    try:
        info = locate(kind, settings)
    except LlamaSwitchError as exc:
        fix = (
            f"fix {setting} in your .env, or unset it"
            if explicit is not None
            else "llamaswitch toolchain build --generation current"
        )
        return Check(kind, False, True, str(exc), fix, {"setting": setting})
    backends = ", ".join(info.backends) or "unknown"
    detail = (
        f"{info.path} - version {info.version}, {info.dialect} dialect, backend {backends} "
        f"(found via {info.source})"
    )
    # The wire form of a binary (its identity), flat in the check: `doctor --json`.
    from llamaswitch._wire import to_wire

    return Check(kind, True, True, detail, None, to_wire(info))


def _models_check(settings: Settings) -> Check:
    folder = settings.models_dir
    if not folder.is_dir():
        return Check(
            "models folder", False, True, f"{folder} does not exist",
            f"mkdir -p {folder}  (or set MODELS_DIR to the folder holding your .gguf files)",
            {"path": str(folder), "gguf_files": 0},
        )  # fmt: skip
    count = 0
    for _root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        count += sum(
            1 for f in files
            if f.lower().endswith(".gguf") and not f.startswith(".")
            and not f.lower().startswith("mmproj")
        )  # fmt: skip
    if count == 0:
        return Check(
            "models folder", False, False, f"{folder} holds no .gguf files",
            f"copy .gguf models into {folder}, or try `python dev.py demo` for tiny demo models",
            {"path": str(folder), "gguf_files": 0},
        )  # fmt: skip
    detail = f"{folder} - {count} GGUF file{'s' if count != 1 else ''}"
    return Check(
        "models folder", True, True, detail, None, {"path": str(folder), "gguf_files": count}
    )


def _gpu_check(probe: GpuProbe) -> Check:
    devices = probe.devices()
    if not devices:
        why = f" ({probe.error})" if probe.error else ""
        return Check("NVIDIA GPU", True, False, f"no NVIDIA GPU{why}; CPU only, VRAM not reported",
                     None, {"gpus": []})  # fmt: skip
    listed = "; ".join(
        f"#{d.index} {d.name} {d.memory_used_mib}/{d.memory_total_mib} MiB" for d in devices
    )
    return Check(
        "NVIDIA GPU", True, False, f"{listed} (driver {probe.driver_version})", None,
        {"gpus": [attrs.asdict(d) for d in devices], "driver": probe.driver_version},
    )  # fmt: skip


def _state_check(settings: Settings) -> Check:
    folder = settings.state_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        fix = "set LLAMASWITCH_STATE_DIR to a writable folder"
        detail = f"{folder} is not writable: {exc}"
        return Check("state folder", False, True, detail, fix, {"path": str(folder)})
    return Check("state folder", True, True, f"{folder} (logs, benchmark database)", None,
                 {"path": str(folder)})  # fmt: skip


def _registry_check(settings: Settings) -> Check:
    from llamaswitch._process import ChildRegistry

    path = settings.state_dir / "children.json"
    problem = ChildRegistry(path).verify()
    if problem is not None:
        return Check("child registry", False, False,
                     f"{path} cannot be written ({problem}): children of a manager that "
                     "dies could not be found and stopped on the next start",
                     "make the state folder writable, or set LLAMASWITCH_STATE_DIR",
                     {"path": str(path)})  # fmt: skip
    return Check("child registry", True, False, f"{path} (children of every manager)", None,
                 {"path": str(path)})  # fmt: skip


def run_doctor(settings: Settings, *, probe: GpuProbe | None = None) -> DoctorReport:
    """Look at binaries, models, GPU and state folder, and report."""
    checks: list[Check] = [
        Check("python", True, False, f"{sys.version.split()[0]} ({sys.executable})"),
    ]
    steps: list[Callable[[], Check]] = [
        lambda: _binary_check(settings, "llama-server"),
        lambda: _binary_check(settings, "llama-bench"),
        lambda: _models_check(settings),
        lambda: _gpu_check(probe or default_probe()),
        lambda: _state_check(settings),
        lambda: _registry_check(settings),
    ]
    checks.extend(step() for step in steps)
    return DoctorReport(tuple(checks), settings=tuple(settings.describe()))


def describe_path(path: Path | None) -> str:
    """A path for display, or ``(not set)``."""
    return "(not set)" if path is None else str(path)
