"""Shared fixtures: real llama.cpp builds of both generations, tiny models, leak checks.

Real-binary tests take the ``llama_build`` fixture, parametrised over the ``current`` and
``legacy`` generations built by ``llamaswitch toolchain build``. When a build is missing
the test is skipped with the command that builds it, except under ``CI=true``, where a
missing binary fails the run: real-binary tests must never silently vanish.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import psutil
import pytest
from hypothesis import HealthCheck, settings

from llamaswitch._binaries import BinaryInfo, identify
from llamaswitch._settings import Settings
from llamaswitch.testing import write_tiny_model

GENERATIONS = ("current", "legacy")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

settings.register_profile(
    "default", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("ci", max_examples=200, deadline=None)
settings.load_profile("ci" if IN_CI else "default")


def toolchain_dir() -> Path:
    """Where the test run looks for llama.cpp builds."""
    override = os.environ.get("LLAMASWITCH_TOOLCHAIN_DIR")
    return Path(override) if override else Settings().toolchain_dir


@attrs.frozen
class LlamaBuild:
    """One generation's llama-server and llama-bench, identified."""

    generation: str
    server: BinaryInfo
    bench: BinaryInfo


_builds: dict[str, LlamaBuild | str] = {}


def load_build(generation: str) -> LlamaBuild | str:
    """The build of a generation, or the reason it is missing (cached per session)."""
    if generation not in _builds:
        from llamaswitch._toolchain import find_cached_build

        build = find_cached_build(toolchain_dir(), generation)
        if build is None:
            _builds[generation] = (
                f"no {generation} llama.cpp build in {toolchain_dir()}: run "
                f"`llamaswitch toolchain build --generation {generation}`"
            )
        else:
            _builds[generation] = LlamaBuild(
                generation,
                identify(build.llama_server, "llama-server", source=f"toolchain ({generation})"),
                identify(build.llama_bench, "llama-bench", source=f"toolchain ({generation})"),
            )
    return _builds[generation]


def require_build(generation: str) -> LlamaBuild:
    """The build, or skip (fail under CI) with the command that makes it."""
    build = load_build(generation)
    if isinstance(build, str):
        if IN_CI:
            pytest.fail(f"CI=true and {build}", pytrace=False)
        pytest.skip(build)
    return build


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which real binaries this run uses, first thing in the output."""
    lines = [f"llama.cpp toolchain dir: {toolchain_dir()}"]
    for generation in GENERATIONS:
        try:
            build = load_build(generation)
        except Exception as exc:
            lines.append(f"llama.cpp {generation}: cannot identify ({exc})")
            continue
        if isinstance(build, str):
            lines.append(f"llama.cpp {generation}: MISSING - {build}")
        else:
            lines.extend(
                f"llama.cpp {generation}: {info.kind} {info.version} dialect={info.dialect} "
                f"{info.path}"
                for info in (build.server, build.bench)
            )
    return lines


@pytest.fixture(params=GENERATIONS)
def llama_build(request: pytest.FixtureRequest) -> LlamaBuild:
    """Both generations of real llama.cpp binaries, one test run each."""
    return require_build(request.param)


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny real GGUF model for read-only use across the session."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny.gguf", name="tiny", seed=1)


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """A models folder with two tiny models, ``tiny.gguf`` and ``other.gguf``."""
    folder = tmp_path / "models"
    write_tiny_model(folder / "tiny.gguf", name="tiny", seed=1)
    write_tiny_model(folder / "other.gguf", name="other", seed=2, block_count=1)
    return folder


_LLAMA_NAMES = {"llama-server", "llama-bench", "llama-server.exe", "llama-bench.exe"}


def _llama_processes(since: float) -> list[psutil.Process]:
    """llama.cpp processes that this test run started (descendants or orphans)."""
    me = psutil.Process()
    found: dict[int, psutil.Process] = {}
    try:
        for proc in me.children(recursive=True):
            found[proc.pid] = proc
    except psutil.Error:
        pass
    for proc in psutil.process_iter(["name", "ppid", "create_time"]):
        info = proc.info
        # Orphans are re-parented to init; one created during this test is ours. (Only
        # orphans: other test runs on the same machine own their children.)
        orphan = info["ppid"] == 1
        if info["name"] in _LLAMA_NAMES and orphan and info["create_time"] >= since - 0.5:
            found.setdefault(proc.pid, proc)
    result = []
    for proc in found.values():
        try:
            if proc.name() in _LLAMA_NAMES and proc.status() != psutil.STATUS_ZOMBIE:
                result.append(proc)
        except psutil.Error:
            continue
    return result


@pytest.fixture(autouse=True)
def no_leaked_llama_processes() -> Iterator[None]:
    """Every test must reap the llama.cpp processes it starts; a leak fails the test."""
    started = time.time()
    before = {p.pid for p in _llama_processes(0.0)}
    yield
    deadline = time.monotonic() + 2.0
    leaked = [p for p in _llama_processes(started) if p.pid not in before]
    while leaked and time.monotonic() < deadline:
        time.sleep(0.05)
        leaked = [p for p in _llama_processes(started) if p.pid not in before]
    if leaked:
        described = [f"{p.pid} {' '.join(p.cmdline()[:3])}" for p in leaked if p.is_running()]
        for proc in leaked:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if described:
            pytest.fail(f"test leaked llama.cpp processes: {described}", pytrace=False)
