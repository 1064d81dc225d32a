"""The rules a server config obeys before anything runs (the hardening findings F2-F8, F11).

Pure checks: no process is started. What the supervisor does with them (the running
server is left alone on a refusal) is tested in tests/test_launch_refusals.py.
"""

from __future__ import annotations

import pytest

from llamaswitch._capabilities import Capabilities
from llamaswitch._errors import ConfigValidationError
from llamaswitch.servers.checks import (
    InheritedEnv,
    address_problem,
    binary_problems,
    inherited_env,
    rpc_problems,
)
from llamaswitch.servers.config import ServerConfig, env_problem, flag_problem, host_problem

from .helpers import captured_caps

CAPS = {dialect: captured_caps(dialect) for dialect in ("current", "legacy")}


def refusal(**fields: object) -> str:
    """The message of the ConfigValidationError ``ServerConfig(**fields)`` raises."""
    with pytest.raises(ConfigValidationError) as caught:
        ServerConfig(**fields)  # type: ignore[arg-type]
    return str(caught.value)


# -- text (F2) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"alias": "x\ud800"},
        {"host": "h\udfff"},
        {"extra_args": ["--props", "--chat-template", "x\ud800"]},
        {"env": {"CUDA_VISIBLE_DEVICES": "0\ud800"}},
        {"env": {"CUDA_\ud800": "0"}},
    ],
    ids=["alias", "host", "extra_args", "env value", "env key"],
)
def test_a_lone_surrogate_in_any_text_field_is_refused(fields: dict[str, object]) -> None:
    (field,) = fields
    message = refusal(**fields)
    assert message.startswith(f"{field}:")
    assert "surrogate" in message or "not a valid environment variable name" in message


# -- host (F3, F8) -----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["a..b", ".", "x" * 64 + ".lan", "-a.b", "a b", "bücher.de"])
def test_a_host_name_getaddrinfo_could_not_take_is_refused_by_syntax(host: str) -> None:
    assert host_problem(host) is not None
    assert refusal(host=host).startswith("host:")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "0.0.0.0", "localhost", "gpu-box.lan."])
def test_addresses_and_well_formed_names_pass_the_syntax_check(host: str) -> None:
    assert host_problem(host) is None


def test_a_name_that_does_not_resolve_is_named_as_such() -> None:
    reason, loopback = address_problem("no-such-host.invalid")
    assert reason is not None
    assert "does not resolve" in reason
    assert not loopback


def test_an_address_of_another_machine_is_refused() -> None:
    # 192.0.2.0/24 is TEST-NET-1: documentation only, never this machine's.
    reason, loopback = address_problem("192.0.2.7")
    assert reason == "resolves to 192.0.2.7, which is not an address of this machine"
    assert not loopback


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("localhost", True),
                                                ("0.0.0.0", False)])  # fmt: skip
def test_an_address_of_this_machine_is_accepted_and_its_reach_told(
    host: str, loopback: bool
) -> None:
    assert address_problem(host) == (None, loopback)


# -- ports (F11) -------------------------------------------------------------------------


@pytest.mark.parametrize("port", [22, 80, 1023])
def test_system_ports_are_refused(port: int) -> None:
    assert refusal(port=port) == f"port: must be a TCP port from 1024 to 65535, got {port}"


# -- extra_args (F4, F7, F11) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "field"),
    [("--threads", "threads"), ("-t", "threads"), ("-c", "ctx_size"),
     ("--n-gpu-layers", "n_gpu_layers"), ("-fa", "flash_attn"), ("-np", "parallel"),
     ("--alias", "alias"), ("--no-mmap", "no_mmap"), ("--load-mode", "mlock")],
)  # fmt: skip
def test_a_flag_a_typed_field_sets_is_refused_with_the_field_to_use(flag: str, field: str) -> None:
    message = refusal(extra_args=[flag, "-5"])
    assert message == (
        f"extra_args: {flag} is not allowed: use the field {field}, whose value is checked"
    )


def test_api_prefix_is_refused_because_health_would_move() -> None:
    assert "/health" in refusal(extra_args=["--api-prefix", "/x"])


def test_an_api_key_of_the_callers_choice_is_refused() -> None:
    assert "a key of its own" in refusal(extra_args=["--api-key", "secret"])


def test_rpc_is_left_to_the_settings_not_refused_by_the_config_itself() -> None:
    config = ServerConfig(extra_args=["--rpc", "10.0.0.2:50052"])
    assert flag_problem("--rpc") is None
    assert rpc_problems(config, ()) == [
        ("extra_args", "--rpc sends the model's weights to the hosts it names; list the "
         "hosts you allow in LLAMASWITCH_RPC_HOSTS"),
    ]  # fmt: skip


def test_rpc_toward_a_listed_host_is_allowed_and_toward_another_refused() -> None:
    config = ServerConfig(
        extra_args=["--rpc", "10.0.0.2:50052,10.0.0.3:50052"],
        env={"LLAMA_ARG_RPC": "10.0.0.2:50053"},
    )
    problems = rpc_problems(config, ("10.0.0.2",))
    assert problems == [
        ("extra_args", "RPC server '10.0.0.3:50052' is not in LLAMASWITCH_RPC_HOSTS (10.0.0.2)")
    ]
    assert rpc_problems(config, ("10.0.0.2", "10.0.0.3:50052")) == []


# -- env (F6) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["LD_DEBUG", "LD_DEBUG_OUTPUT", "GCONV_PATH", "LD_PRELOAD", "PATH", "PYTHONPATH",
     "CUDA_CACHE_PATH", "OMP_TOOL_LIBRARIES", "GGML_BACKEND_PATH", "LLAMA_API_KEY",
     "LLAMA_ARG_THREADS", "LLAMA_ARG_LOG_FILE"],
)  # fmt: skip
def test_the_env_allow_list_refuses_what_could_load_code_or_write_files(name: str) -> None:
    message = refusal(env={name: "x"})
    assert message.startswith(f"env: {name} is not allowed:")


def test_the_ld_preload_refusal_says_why_rather_than_calling_it_a_flag() -> None:
    message = refusal(env={"LD_PRELOAD": "/tmp/x.so"})
    assert "flag" not in message
    assert "CUDA_*" in message


@pytest.mark.parametrize(
    "name",
    ["CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GGML_CUDA_NO_PINNED", "OMP_NUM_THREADS",
     "LLAMA_ARG_THREADS_HTTP", "LLAMA_ARG_ENDPOINT_SLOTS", "ROCR_VISIBLE_DEVICES"],
)  # fmt: skip
def test_the_env_allow_list_accepts_runtime_tuning(name: str) -> None:
    assert env_problem(name) is None
    assert ServerConfig(env={name: "1"}).env == {name: "1"}


# -- what only the binary knows ----------------------------------------------------------


@pytest.mark.parametrize("dialect", ["current", "legacy"])
def test_a_flag_the_binary_lacks_is_unsupported_naming_the_binary(dialect: str) -> None:
    config = ServerConfig(extra_args=["--no-such-flag"])
    problems, unsupported = binary_problems(config, CAPS[dialect])
    assert problems == []
    assert unsupported is not None
    assert unsupported.field == "extra_args"
    assert unsupported.version == f"{dialect} build"


def test_a_value_that_starts_with_a_dash_is_not_taken_for_a_flag() -> None:
    config = ServerConfig(extra_args=["--reverse-prompt", "-END-", "--props"])
    assert binary_problems(config, CAPS["current"]) == ([], None)


def test_an_env_variable_the_binary_reads_as_a_typed_fields_flag_is_refused() -> None:
    # A name that breaks llama.cpp's naming convention (as LLAMA_ARG_N_PARALLEL does for
    # --parallel): only the binary's --help tells which flag it is.
    caps = Capabilities.from_help("llama-server", """
-t,    --threads N                      number of threads
                                        (env: LLAMA_ARG_WORKERS)
""", version="b1")  # fmt: skip
    config = ServerConfig(env={"LLAMA_ARG_WORKERS": "2"})
    problems, unsupported = binary_problems(config, caps)
    assert unsupported is None
    assert problems == [("env", "LLAMA_ARG_WORKERS is not allowed: llama.cpp reads it as "
                         "--threads: use the field threads, whose value is checked")]  # fmt: skip


def test_the_binarys_own_env_map_names_the_flags_the_convention_misses() -> None:
    assert CAPS["current"].env_flags["LLAMA_ARG_N_PARALLEL"].primary == "--parallel"
    assert CAPS["legacy"].env_flags["LLAMA_API_KEY"].primary == "--api-key"


def test_an_env_variable_the_binary_does_not_read_is_unsupported() -> None:
    config = ServerConfig(env={"LLAMA_ARG_NO_SUCH_THING": "1"})
    _, unsupported = binary_problems(config, CAPS["legacy"])
    assert unsupported is not None
    assert unsupported.field == "env"


def test_the_inherited_environment_loses_what_would_take_the_server_out_of_control() -> None:
    environ = {"PATH": "/usr/bin", "LLAMA_ARG_PORT": "1", "LLAMA_API_KEY": "k",
               "LLAMA_ARG_THREADS_HTTP": "4", "CUDA_VISIBLE_DEVICES": "0"}  # fmt: skip
    assert inherited_env(environ) == {
        "PATH": "/usr/bin", "LLAMA_ARG_THREADS_HTTP": "4", "CUDA_VISIBLE_DEVICES": "0",
    }  # fmt: skip


def test_the_inherited_environment_is_read_again_only_once_it_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLAMASWITCH_TEST_VAR", "one")
    monkeypatch.setenv("LLAMA_API_KEY", "k")
    inherited = InheritedEnv()
    first = inherited()
    assert first["LLAMASWITCH_TEST_VAR"] == "one"
    assert "LLAMA_API_KEY" not in first
    assert inherited() is first  # unchanged: not read again
    monkeypatch.setenv("LLAMASWITCH_TEST_VAR", "two")
    assert inherited()["LLAMASWITCH_TEST_VAR"] == "two"
    monkeypatch.delenv("LLAMASWITCH_TEST_VAR")
    assert "LLAMASWITCH_TEST_VAR" not in inherited()
    monkeypatch.setenv("LLAMA_ARG_PORT", "1")  # filtered as ever, however it came
    assert "LLAMA_ARG_PORT" not in inherited()
