"""Settings: precedence, the seed's .env file, and messages for bad values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llamaswitch._errors import SettingsError
from llamaswitch._settings import SETTING_KEYS, Settings

SEED_ENV = """\
# 必需配置
# llama.cpp 二进制文件路径
LLAMA_SERVER_PATH=E:/Downloads/llama-b5293-bin-win-cuda-cu12.4-x64/llama-server.exe
LLAMA_BENCH_PATH=E:/Downloads/llama-b5293-bin-win-cuda-cu12.4-x64/llama-bench.exe

MODELS_DIR=/path/to/models

# 可选配置
SERVER_PORT=8080
GPU_LAYERS=20  # GPU加速层数
"""


def write_env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_seed_env_file_loads(tmp_path: Path) -> None:
    env_file = write_env(tmp_path, SEED_ENV)
    s = Settings.from_env(environ={}, env_file=env_file)
    assert s.llama_server_path == Path(
        "E:/Downloads/llama-b5293-bin-win-cuda-cu12.4-x64/llama-server.exe"
    )
    assert s.llama_bench_path is not None
    assert s.llama_bench_path.name == "llama-bench.exe"
    assert s.models_dir == Path("/path/to/models")
    assert s.server_port == 8080
    assert s.gpu_layers == 20  # the comment after the value is not part of it
    assert s.sources["gpu_layers"] == str(env_file)


def test_config_path_names_the_env_file(tmp_path: Path) -> None:
    env_file = write_env(tmp_path, "SERVER_PORT=9001\n")
    s = Settings.from_env(environ={"CONFIG_PATH": str(env_file)})
    assert s.server_port == 9001


def test_a_missing_file_named_by_config_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CONFIG_PATH") as info:
        Settings.from_env(environ={"CONFIG_PATH": str(tmp_path / "nope.env")})
    assert "existing .env file" in str(info.value)


def test_a_missing_default_env_file_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env(environ={}).server_port == 8080


def test_precedence_argument_over_environment_over_file_over_default(tmp_path: Path) -> None:
    env_file = write_env(tmp_path, "SERVER_PORT=7001\nGPU_LAYERS=5\nMODELS_DIR=/from/file\n")
    environ = {"SERVER_PORT": "7002", "GPU_LAYERS": "6"}
    s = Settings.from_env(environ=environ, env_file=env_file, server_port=7003)
    assert s.server_port == 7003
    assert s.sources["server_port"] == "argument"
    assert s.gpu_layers == 6
    assert s.sources["gpu_layers"] == "environment"
    assert s.models_dir == Path("/from/file")
    assert s.sources["models_dir"] == str(env_file)
    assert s.stop_timeout_s == 10.0
    assert "stop_timeout_s" not in s.sources


def test_direct_construction_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVER_PORT", "7777")
    assert Settings().server_port == 8080


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("SERVER_PORT", "80a", "a TCP port from 1 to 65535"),
        ("SERVER_PORT", "70000", "a TCP port from 1 to 65535"),
        ("GPU_LAYERS", "-5", "a whole number of layers >= 0"),
        ("LLAMASWITCH_READY_TIMEOUT_S", "soon", "a number of seconds"),
        ("LLAMASWITCH_STOP_TIMEOUT_S", "0", "greater than 0"),
        ("LLAMASWITCH_MODEL_PORTS", "8090", "a range LOW-HIGH"),
        ("LLAMASWITCH_MODEL_PORTS", "9000-8000", "1024 <= LOW <= HIGH"),
        ("LLAMASWITCH_ALLOW_OUTSIDE_MODELS_DIR", "maybe", "true/false"),
        ("LLAMASWITCH_BENCH_CONCURRENCY", "0", "a whole number >= 1"),
        ("LLAMASWITCH_HOST", "local host", "without spaces"),
    ],
)
def test_bad_values_name_key_value_source_and_what_is_allowed(
    tmp_path: Path, key: str, value: str, allowed: str
) -> None:
    env_file = write_env(tmp_path, f"{key}={value}\n")
    with pytest.raises(SettingsError) as info:
        Settings.from_env(environ={}, env_file=env_file)
    message = str(info.value)
    assert key in message
    assert repr(value) in message
    assert str(env_file) in message
    assert allowed in message
    assert info.value.key == key


def test_a_bad_value_from_the_environment_names_the_environment() -> None:
    with pytest.raises(SettingsError, match=r"from environment"):
        Settings.from_env(environ={"SERVER_PORT": "x"}, env_file=os.devnull)


def test_model_port_range_may_not_contain_the_api_port() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            environ={"SERVER_PORT": "8100", "LLAMASWITCH_MODEL_PORTS": "8090-8190"},
            env_file=os.devnull,
        )
    assert info.value.key == "LLAMASWITCH_MODEL_PORTS"
    assert "SERVER_PORT=8100" in str(info.value)


def test_bad_explicit_argument_names_the_argument_source() -> None:
    with pytest.raises(SettingsError, match=r"SERVER_PORT=0 \(from argument\)"):
        Settings(server_port=0)


def test_unknown_explicit_setting_is_refused() -> None:
    with pytest.raises(TypeError, match="modelsdir"):
        Settings.from_env(environ={}, modelsdir="x")


def test_default_model_port_is_the_first_of_the_range() -> None:
    assert Settings(model_ports=(9100, 9200)).model_port == 9100
    assert Settings(model_ports=(9100, 9200), default_model_port=9150).model_port == 9150


def test_describe_masks_the_api_key() -> None:
    rows = {key: value for key, value, _ in Settings(api_key="secret").describe()}
    assert rows["LLAMASWITCH_API_KEY"] == "***"


def test_every_key_is_documented() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [key for key in SETTING_KEYS if f"`{key}`" not in doc]
    assert missing == []
