"""Finding llama.cpp binaries and telling what they are.

Discovery order: the explicit settings (``LLAMA_SERVER_PATH``, ``LLAMA_BENCH_PATH``), then
the toolchain cache (``llamaswitch toolchain build``), then ``PATH``. Identity: build
number and commit from ``--version`` and the :class:`~llamaswitch._capabilities.Capabilities`
read from ``--help``; both are cached per (path, size, mtime) in memory and on disk, so a
binary is asked once, not on every start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs

from llamaswitch._capabilities import BinaryKind, Capabilities
from llamaswitch._errors import BinaryIdentityError, BinaryNotFoundError

if TYPE_CHECKING:
    from llamaswitch._settings import Settings

__all__ = [
    "SETTING_OF",
    "BinaryInfo",
    "exe_name",
    "explicit_path",
    "find_binary",
    "identify",
    "locate",
]

logger = logging.getLogger(__name__)

# Two --version layouts: "version: 5293 (8733e0c)" (spring 2025 builds) and
# "version: 0.6.0-dev (build 0, commit unknown)" (current builds).
_VERSION_OLD = re.compile(r"version:\s*(\d+)\s*\(([0-9a-fA-F]+|unknown)\)")
_VERSION_NEW = re.compile(
    r"version:\s*(\S+)\s*\(build\s+(\d+),\s*commit\s+([0-9a-fA-F]+|unknown)\)"
)
_BUILT_WITH = re.compile(r"built with (.+)$", re.MULTILINE)
_IDENTITY_TIMEOUT_S = 30.0


def exe_name(kind: BinaryKind) -> str:
    """The file name of a binary on this platform (``llama-server.exe`` on Windows)."""
    return f"{kind}.exe" if sys.platform == "win32" else kind


#: The backends that compute on the CPU (:attr:`BinaryInfo.backends`).
_CPU_BACKENDS = frozenset({"CPU", "BLAS"})


@attrs.frozen
class BinaryInfo:
    """A llama.cpp binary: where it is, which build it is, and what it accepts."""

    kind: BinaryKind
    path: Path
    build_number: int | None
    commit: str | None
    compiler: str | None
    #: Semantic version printed by current builds (``0.6.0-dev``); None on older ones.
    release: str | None
    backends: tuple[str, ...]
    capabilities: Capabilities
    #: How it was found: ``LLAMA_SERVER_PATH``, ``toolchain cache (current)``, ``PATH``...
    source: str = ""

    @property
    def version(self) -> str:
        """``b5293 (8733e0c)``, ``0.6.0-dev (b11434)``, or ``unknown``."""
        return _format_version(self.release, self.build_number, self.commit)

    @property
    def dialect(self) -> Literal["current", "legacy"]:
        """Which flag dialect the binary speaks."""
        return self.capabilities.dialect

    @property
    def cpu_only(self) -> bool:
        """Whether every backend it was built with computes on the CPU (``CPU``, ``BLAS``):
        it has no GPU to offload to. False where the backends are unknown."""
        return bool(self.backends) and set(self.backends) <= _CPU_BACKENDS

    @property
    def label(self) -> str:
        """``llama-server b5293 (8733e0c)``: used in messages and records."""
        return f"{self.kind} {self.version}"


#: The setting that names each binary.
SETTING_OF: dict[BinaryKind, str] = {
    "llama-server": "LLAMA_SERVER_PATH",
    "llama-bench": "LLAMA_BENCH_PATH",
}


def explicit_path(kind: BinaryKind, settings: Settings) -> Path | None:
    """The path the settings name for ``kind`` (``LLAMA_SERVER_PATH``...), if any."""
    return settings.llama_server_path if kind == "llama-server" else settings.llama_bench_path


def locate(kind: BinaryKind, settings: Settings) -> BinaryInfo:
    """Find ``kind`` the way the settings say and identify it (blocking: runs it once)."""
    path, source = find_binary(
        kind, explicit=explicit_path(kind, settings), toolchain_dir=settings.toolchain_dir
    )
    return identify(path, kind, source=source, cache_file=settings.binary_cache_file)


def find_binary(
    kind: BinaryKind, *, explicit: Path | None, toolchain_dir: Path | None
) -> tuple[Path, str]:
    """Locate a binary; returns the path and how it was found.

    An explicit path that does not exist is an error, not a reason to look elsewhere:
    silently running another build than the one configured would mislead benchmarks.
    """
    setting = SETTING_OF[kind]
    if explicit is not None:
        path = explicit.expanduser()
        if path.is_dir():
            path = path / exe_name(kind)
        if not path.is_file():
            raise BinaryNotFoundError(
                f"{setting}={explicit} does not exist; fix the setting, or unset it to use "
                f"a build from `llamaswitch toolchain build`"
            )
        if not os.access(path, os.X_OK):
            raise BinaryNotFoundError(f"{setting}={explicit} is not executable")
        return path, setting
    if toolchain_dir is not None:
        from llamaswitch._toolchain import cached_builds

        for build in cached_builds(toolchain_dir):
            path = build.llama_server if kind == "llama-server" else build.llama_bench
            if path.is_file():
                return path, f"toolchain cache ({build.generation})"
    found = shutil.which(kind)
    if found:
        return Path(found), "PATH"
    raise BinaryNotFoundError(
        f"{kind} not found: set {setting}, put it on PATH, or build one with "
        f"`llamaswitch toolchain build`"
    )


# -- identity ------------------------------------------------------------------------------

_memory_cache: dict[tuple[str, int, int], BinaryInfo] = {}
_cache_lock = threading.Lock()


def identify(
    path: Path, kind: BinaryKind, *, source: str = "", cache_file: Path | None = None
) -> BinaryInfo:
    """Run ``--version`` and ``--help`` once and describe the binary.

    Results are cached by (path, size, mtime) in memory and, when ``cache_file`` is given,
    on disk (a rebuilt binary has another mtime, so it is asked again).
    """
    try:
        stat = path.stat()
    except OSError as exc:
        raise BinaryNotFoundError(f"{kind} at {path} cannot be read: {exc}") from exc
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _cache_lock:
        cached = _memory_cache.get(key)
    if cached is None and cache_file is not None:
        cached = _load_disk_cache(cache_file, key, kind)
    if cached is None:
        logger.debug("asking %s for its --version and --help", path)
        cached, help_text = _ask(path, kind)
        if cache_file is not None:
            _store_disk_cache(cache_file, key, cached, help_text)
    with _cache_lock:
        _memory_cache[key] = cached
    return attrs.evolve(cached, path=path, source=source)


def _run(path: Path, arg: str) -> tuple[int, str]:
    try:
        proc = subprocess.run(
            [str(path), arg],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_IDENTITY_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BinaryIdentityError(f"running {path} {arg} failed: {exc}") from exc
    # llama.cpp prints version and help on stderr in some builds, stdout in others.
    return proc.returncode, proc.stdout + proc.stderr


def _parse_version(text: str) -> tuple[str | None, int | None, str | None, str | None]:
    """``(release, build number, commit, compiler)`` from ``--version`` output."""
    built = _BUILT_WITH.search(text)
    compiler = built.group(1).strip() if built else None
    new = _VERSION_NEW.search(text)
    if new:
        commit = None if new.group(3) == "unknown" else new.group(3)
        return new.group(1), int(new.group(2)), commit, compiler
    old = _VERSION_OLD.search(text)
    if old:
        commit = None if old.group(2) == "unknown" else old.group(2)
        return None, int(old.group(1)), commit, compiler
    return None, None, None, compiler


def _format_version(release: str | None, number: int | None, commit: str | None) -> str:
    parts = []
    if release:
        parts.append(release)
    # Source builds without git report build 0 or 1: not a release tag worth showing.
    tag = f"b{number}" if number is not None and number > 1 else None
    detail = ", ".join(x for x in (tag if release else None, commit) if x)
    if not release:
        head = tag or (f"build {number}" if number is not None else None)
        if head is None and commit is None:
            return "unknown"
        return f"{head} ({commit})" if head and commit else (head or f"commit {commit}")
    return f"{release} ({detail})" if detail else release


def _backends(bin_dir: Path, version_text: str) -> tuple[str, ...]:
    """Backends compiled in, told by the ggml libraries beside the binary."""
    found: list[str] = []
    names = {"cuda": "CUDA", "metal": "Metal", "vulkan": "Vulkan", "hip": "ROCm",
             "sycl": "SYCL", "opencl": "OpenCL", "blas": "BLAS", "cpu": "CPU"}  # fmt: skip
    with contextlib.suppress(OSError):
        for entry in bin_dir.iterdir():
            stem = entry.name.lower()
            for key, label in names.items():
                if stem.startswith(f"libggml-{key}") or stem.startswith(f"ggml-{key}"):
                    found.append(label)
    for key, label in names.items():
        if f"ggml_{key}" in version_text.lower() and label not in found:
            found.append(label)
    order = list(names.values())
    return tuple(sorted(set(found), key=order.index))


def _ask(path: Path, kind: BinaryKind) -> tuple[BinaryInfo, str]:
    help_code, help_text = _run(path, "--help")
    if "-m" not in help_text and "--model" not in help_text:
        raise BinaryIdentityError(
            f"{path} --help (exit code {help_code}) does not look like llama.cpp's {kind}"
        )
    _, version_text = _run(path, "--version")
    release, number, commit, compiler = _parse_version(version_text)
    if number is None and kind == "llama-bench":
        # Older llama-bench builds have no --version; a llama-server from the same build
        # folder tells the build.
        sibling = path.with_name(exe_name("llama-server"))
        if sibling.is_file():
            release, number, commit, compiler = _parse_version(_run(sibling, "--version")[1])
    version = _format_version(release, number, commit)
    caps = Capabilities.from_help(kind, help_text, version)
    info = BinaryInfo(
        kind=kind,
        path=path,
        build_number=number,
        commit=commit,
        compiler=compiler,
        release=release,
        backends=_backends(path.parent, version_text),
        capabilities=caps,
    )
    return info, help_text


def _load_disk_cache(
    cache_file: Path, key: tuple[str, int, int], kind: BinaryKind
) -> BinaryInfo | None:
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
        entry = data.get("|".join(map(str, key)))
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(entry, dict) or entry.get("kind") != kind:
        return None
    try:
        version = str(entry["version"])
        return BinaryInfo(
            kind=kind,
            path=Path(key[0]),
            build_number=entry["build_number"],
            commit=entry["commit"],
            compiler=entry["compiler"],
            release=entry.get("release"),
            backends=tuple(entry["backends"]),
            capabilities=Capabilities.from_help(kind, entry["help"], version),
        )
    except (KeyError, TypeError):
        return None


def _store_disk_cache(
    cache_file: Path, key: tuple[str, int, int], info: BinaryInfo, help_text: str
) -> None:
    # The raw help text is stored rather than the parsed flags: a newer llamaswitch
    # re-parses it with its own parser.
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(cache_file.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data["|".join(map(str, key))] = {
            "kind": info.kind,
            "version": info.version,
            "build_number": info.build_number,
            "commit": info.commit,
            "compiler": info.compiler,
            "release": info.release,
            "backends": list(info.backends),
            "help": help_text,
        }
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(cache_file)
    except OSError:
        pass  # a cache that cannot be written only costs a re-run of --help next time
