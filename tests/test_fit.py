"""A launch turns llama.cpp's memory fit off only where the fit has nothing to change.

The rule is checked against the captured ``--help`` of both generations; the real
binaries then show that the argv a start builds carries ``--fit off`` exactly there,
that the server has the allocator's tunables in its environment, and that it serves.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from llamaswitch import AsyncLlamaSwitch, ServerConfig, Settings
from llamaswitch._binaries import BinaryInfo
from llamaswitch.servers.fit import KEEP, TUNABLES, fit_is_idle, fit_skip, glibc_tunable

from .conftest import LlamaBuild
from .helpers import captured_caps, free_port, free_range

CPU = ("CPU",)
CUDA = ("CPU", "CUDA")
SKIP_ARGS = ("--fit", "off")


def fit_args(config: ServerConfig, info: BinaryInfo, env: dict[str, str]) -> list[str]:
    """The arguments a launch adds on a glibc system; the environment comes with them."""
    skip = fit_skip(config, info, env, tunable=True)
    assert bool(skip.args) == (TUNABLES in skip.env)
    return list(skip.args)


def binary(generation: str, backends: tuple[str, ...]) -> BinaryInfo:
    caps = captured_caps(generation)
    return BinaryInfo(kind="llama-server", path=Path("llama-server"), build_number=1,
                      commit=None, compiler=None, release=None, backends=backends,
                      capabilities=caps)  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "backends", "idle"),
    [
        ({"ctx_size": 2048}, CPU, True),  # no device to place layers on
        ({"ctx_size": 2048}, ("BLAS", "CPU"), True),
        ({"ctx_size": 2048}, CUDA, False),  # fit picks the GPU layers
        ({"ctx_size": 2048}, (), False),  # backends unknown: a GPU may be there
        ({"ctx_size": 2048, "n_gpu_layers": "auto"}, CUDA, False),  # auto is the default
        ({"ctx_size": 2048, "n_gpu_layers": "all"}, CUDA, True),  # set by the user
        ({"ctx_size": 2048, "n_gpu_layers": 0}, CUDA, True),
        ({"ctx_size": 2048, "n_gpu_layers": 12}, (), True),
        ({}, CPU, False),  # fit sizes the context from the model's
        ({"ctx_size": 0}, CPU, False),  # 0: the model's context, which fit may shrink
        ({"n_gpu_layers": "all"}, CUDA, False),
        # RPC servers are devices too, on any build.
        ({"ctx_size": 2048, "extra_args": ["--rpc", "10.0.0.2:50052"]}, CPU, False),
        ({"ctx_size": 2048, "env": {"LLAMA_ARG_RPC": "10.0.0.2:50052"}}, CPU, False),
        ({"ctx_size": 2048, "n_gpu_layers": 0, "extra_args": ["--rpc", "h:1"]}, CPU, True),
    ],
)
def test_the_fit_is_idle_only_with_the_context_set_and_nothing_to_place(
    fields: dict[str, Any], backends: tuple[str, ...], idle: bool
) -> None:
    config = ServerConfig(**fields)
    assert fit_is_idle(config, binary("current", backends)) is idle
    assert fit_args(config, binary("current", backends), {}) == (["--fit", "off"] if idle else [])


def test_a_legacy_build_without_fit_gets_no_fit_flag() -> None:
    legacy = binary("legacy", CPU)
    config = ServerConfig(ctx_size=2048, n_gpu_layers=0)
    assert fit_is_idle(config, legacy)
    assert fit_args(config, legacy, {}) == []


@pytest.mark.parametrize(
    "extra_args",
    [["-fit", "on"], ["--fit=on"], ["-fitt", "512"], ["--fit-target", "512"], ["-fitc", "1024"]],
)
def test_a_fit_the_user_tunes_in_extra_args_is_left_to_them(extra_args: list[str]) -> None:
    config = ServerConfig(ctx_size=2048, extra_args=extra_args)
    assert fit_args(config, binary("current", CPU), {}) == []


@pytest.mark.parametrize("key", ["LLAMA_ARG_FIT", "LLAMA_ARG_FIT_TARGET", "llama_arg_fit_ctx"])
def test_a_fit_the_environment_tunes_is_left_to_it(key: str) -> None:
    config = ServerConfig(ctx_size=2048)
    assert fit_args(config, binary("current", CPU), {key: "on"}) == []
    assert fit_args(config, binary("current", CPU), {"LLAMA_ARG_THREADS": "2"}) == ["--fit", "off"]


def test_the_users_glibc_tunables_keep_the_fit() -> None:
    """The tunables replace what the fit leaves behind; the user's own are theirs, and
    without ours the fit stays on."""
    config = ServerConfig(ctx_size=2048)
    env = {TUNABLES: "glibc.malloc.arena_max=2"}
    assert fit_skip(config, binary("current", CPU), env, tunable=True) == KEEP


def test_a_system_without_glibc_keeps_the_fit() -> None:
    config = ServerConfig(ctx_size=2048)
    assert fit_skip(config, binary("current", CPU), {}, tunable=False) == KEEP
    skip = fit_skip(config, binary("current", CPU), {}, tunable=True)
    assert skip.args == SKIP_ARGS
    assert skip.env[TUNABLES] == (
        "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=67108864"
    )


def environment(pid: int | None) -> dict[str, str]:
    """A running process's environment, as Linux shows it."""
    assert pid is not None
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(entry.partition("=")[::2] for entry in raw.split("\0") if entry)


@pytest.mark.real_binary
def test_a_start_passes_fit_off_only_where_it_is_idle_and_the_server_serves(
    tmp_path: Path, models_dir: Path, llama_build: LlamaBuild
) -> None:
    low, high = free_range()
    settings = Settings(models_dir=models_dir, llama_server_path=llama_build.server.path,
                        state_dir=tmp_path / "state", model_ports=(low, high),
                        server_port=low - 1, stop_timeout_s=5.0, ready_timeout_s=60.0)  # fmt: skip
    server = llama_build.server
    # Where the backends are unknown (a static build), fit might place layers: keep it.
    skips = server.dialect == "current" and server.cpu_only and glibc_tunable()
    expected = list(SKIP_ARGS) if skips else []
    set_ctx = ServerConfig(port=free_port(), threads=1, ctx_size=256, parallel=1)
    unset_ctx = ServerConfig(port=free_port(), threads=1, parallel=1)

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            with_ctx = await ls.start("tiny.gguf", set_ctx)
            without_ctx = await ls.start("other.gguf", unset_ctx)
            if expected:
                assert with_ctx.argv[-2:] == tuple(expected)
            else:
                assert "--fit" not in with_ctx.argv
            assert "--fit" not in without_ctx.argv
            if sys.platform == "linux":
                assert (TUNABLES in environment(with_ctx.process_id)) is bool(expected)
                assert TUNABLES not in environment(without_ctx.process_id)
            for status in (with_ctx, without_ctx):
                body = json.dumps({"prompt": "the llama", "n_predict": 2}).encode()
                request = urllib.request.Request(f"http://127.0.0.1:{status.port}/completion",
                                                 data=body)  # fmt: skip
                answer = await asyncio.to_thread(urllib.request.urlopen, request, timeout=30)
                with answer:
                    assert json.loads(answer.read())["tokens_predicted"] == 2

    asyncio.run(scenario())
