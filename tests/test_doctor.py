"""llamaswitch doctor: what a newcomer sees when something is missing and when all is well."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from llamaswitch._cli import main
from llamaswitch._doctor import run_doctor
from llamaswitch._gpu import GpuProbe
from llamaswitch._settings import Settings

from .conftest import LlamaBuild


class _NoDriver:
    """An NVML stand-in that fails like a machine without the NVIDIA driver."""

    def nvmlInit(self) -> None:
        raise OSError("NVML Shared Library Not Found")


class _OneGpu:
    """An NVML stand-in with one 24 GiB GPU: a GPU this machine does not have."""

    def nvmlInit(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> str:
        return "555.42"

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"NVIDIA GeForce RTX 4090"

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return "GPU-1234"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(total=24 * 1024**3, used=1024**3)


def test_missing_binaries_are_required_and_name_the_fix(tmp_path: Path) -> None:
    settings = Settings(
        llama_server_path=tmp_path / "nope" / "llama-server",
        toolchain_dir=tmp_path / "empty-toolchain",
        models_dir=tmp_path,
        state_dir=tmp_path / "state",
    )
    report = run_doctor(settings, probe=GpuProbe(_NoDriver()))
    assert not report.ok
    checks = {c.name: c for c in report.checks}
    server = checks["llama-server"]
    assert server.status == "missing"
    assert "LLAMA_SERVER_PATH" in server.detail
    assert server.fix is not None
    assert "LLAMA_SERVER_PATH" in server.fix
    bench = checks["llama-bench"]
    assert bench.status == "missing"
    assert bench.fix == "llamaswitch toolchain build --generation current"


def test_no_nvidia_gpu_is_reported_not_fatal(tmp_path: Path) -> None:
    report = run_doctor(
        Settings(models_dir=tmp_path, state_dir=tmp_path), probe=GpuProbe(_NoDriver())
    )
    gpu = {c.name: c for c in report.checks}["NVIDIA GPU"]
    assert gpu.ok
    assert "no NVIDIA GPU" in gpu.detail


def test_a_gpu_is_listed_with_its_memory(tmp_path: Path) -> None:
    report = run_doctor(
        Settings(models_dir=tmp_path, state_dir=tmp_path), probe=GpuProbe(_OneGpu())
    )
    gpu = {c.name: c for c in report.checks}["NVIDIA GPU"]
    assert "RTX 4090" in gpu.detail
    assert "1024/24576 MiB" in gpu.detail
    assert gpu.data["driver"] == "555.42"


def test_missing_models_folder_is_required(tmp_path: Path) -> None:
    report = run_doctor(Settings(models_dir=tmp_path / "absent", state_dir=tmp_path),
                        probe=GpuProbe(_NoDriver()))  # fmt: skip
    models = {c.name: c for c in report.checks}["models folder"]
    assert models.status == "missing"
    assert models.fix is not None
    assert "mkdir" in models.fix


@pytest.mark.real_binary
def test_all_well_with_real_binaries(
    llama_build: LlamaBuild, models_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(
        llama_server_path=llama_build.server.path,
        llama_bench_path=llama_build.bench.path,
        models_dir=models_dir,
        state_dir=tmp_path / "state",
    )
    report = run_doctor(settings, probe=GpuProbe(_NoDriver()))
    assert report.ok, report.to_dict()
    checks = {c.name: c for c in report.checks}
    assert checks["models folder"].data["gguf_files"] == 2
    server = checks["llama-server"].data
    assert server["version"] == llama_build.server.version
    assert server["dialect"] == llama_build.generation
    assert server["source"] == "LLAMA_SERVER_PATH"


@pytest.mark.real_binary
def test_cli_json_and_exit_codes(
    llama_build: LlamaBuild, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLAMA_SERVER_PATH", str(llama_build.server.path))
    monkeypatch.setenv("LLAMA_BENCH_PATH", str(llama_build.bench.path))
    monkeypatch.setenv("LLAMASWITCH_STATE_DIR", str(tmp_path / "state"))
    assert main(["--models-dir", str(models_dir), "doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    monkeypatch.setenv("LLAMA_BENCH_PATH", str(tmp_path / "missing-bench"))
    assert main(["--models-dir", str(models_dir), "doctor"]) == 3
    out = capsys.readouterr().out
    assert "missing" in out
    assert "LLAMA_BENCH_PATH" in out
