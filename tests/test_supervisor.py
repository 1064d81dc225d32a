"""The server supervisor against real llama-server builds of both generations.

Each test gets its own state folder and ports picked free at run time. A small fake
llama-server (a Python script answering ``--help`` with a captured help text) stands in
only where a real one cannot be made to misbehave on demand: hanging before ready,
ignoring SIGTERM. The autouse fixture in conftest fails any test that leaves a llama.cpp
process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import psutil
import pytest
from rich.console import Console

from llamaswitch import AsyncLlamaSwitch, LlamaSwitch, ServerConfig, Settings
from llamaswitch._cli._servers import status_table
from llamaswitch._errors import (
    ConfigValidationError,
    ModelNotFoundError,
    ModelPathError,
    ModelUnusableError,
    PortInUseError,
    ReadinessTimeoutError,
    ReservedPortError,
    ServerNotFoundError,
    ServerStartError,
    SupersededError,
    UnsupportedOptionError,
)
from llamaswitch._events import Event, EventBus, Subscription
from llamaswitch._gpu import GpuProbe
from llamaswitch._process import ChildProcess, ChildRegistry, OutputLog, guardian_pid
from llamaswitch._wire import to_wire
from llamaswitch.servers.supervisor import ServerState, ServerStatus
from llamaswitch.testing import write_tiny_model

from .conftest import LlamaBuild, require_build
from .helpers import HELP, free_port, free_range, guardian_listed, own_children, thread_policies

pytestmark = pytest.mark.real_binary

T = TypeVar("T")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SMALL = {"threads": 1, "ctx_size": 256, "parallel": 1}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_settings(tmp_path: Path, models_dir: Path, server: Path, **extra: Any) -> Settings:
    low, high = free_range()
    values: dict[str, Any] = {
        "models_dir": models_dir, "llama_server_path": server, "state_dir": tmp_path / "state",
        "model_ports": (low, high), "server_port": low - 1, "stop_timeout_s": 5.0,
        "ready_timeout_s": 60.0,
    }  # fmt: skip
    values.update(extra)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path, llama_build: LlamaBuild) -> Settings:
    return make_settings(tmp_path, models_dir, llama_build.server.path)


def config(port: int, **extra: Any) -> ServerConfig:
    return ServerConfig(port=port, **{**SMALL, **extra})


def llama_servers_on(port: int) -> list[psutil.Process]:
    """Live llama-server processes whose argv names ``port`` (any parent)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        info = proc.info
        cmd = info["cmdline"] or []
        named = (info["name"] or "").startswith("llama-server")
        on_port = "--port" in cmd and cmd[cmd.index("--port") + 1] == str(port)
        if named and on_port and info["status"] != "zombie":
            found.append(proc)
    return found


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.01) -> float:
    """Seconds until ``predicate()`` held; fails the test after ``timeout_s``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(step_s)
    return time.monotonic() - start


async def async_wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout_s: float, step_s: float = 0.005
) -> float:
    start = time.monotonic()
    while not await predicate():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"condition not met within {timeout_s} s")
        await asyncio.sleep(step_s)
    return time.monotonic() - start


def completion(url: str) -> dict[str, Any]:
    body = json.dumps({"prompt": "the llama", "n_predict": 4}).encode()
    request = urllib.request.Request(f"{url}/completion", data=body,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def close_by_server(port: int) -> None:
    """A request the server answers and closes first: its side ends in TIME_WAIT."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while sock.recv(4096):
            pass  # until the server's FIN


async def drain(events: Subscription) -> list[Event]:
    """The events received so far."""
    found = []
    while True:
        try:
            found.append(await events.get(timeout_s=0.02))
        except TimeoutError:
            return found


async def logged(ls: AsyncLlamaSwitch, port: int, text: str, timeout_s: float = 30) -> None:
    """Wait until the server on ``port`` has printed ``text``."""

    async def seen() -> bool:
        try:
            return any(text in line for line in await ls.logs(port=port, lines=100))
        except ServerNotFoundError:
            return False

    await async_wait_until(seen, timeout_s)


class BinaryGate:
    """Holds the first ``hold`` launches at their binary lookup, until opened.

    A launch held there has taken its ticket and is in flight, but has neither the
    port's lock nor a process: the moment the races of close, stop and later requests
    are about.
    """

    def __init__(self, ls: AsyncLlamaSwitch, hold: int = 1) -> None:
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()
        self._hold = hold
        self._real = ls.supervisor._binary
        ls.supervisor._binary = self._binary  # type: ignore[method-assign]

    async def _binary(self, kind: Any) -> Any:
        if self._hold > 0:
            self._hold -= 1
            if self._hold == 0:
                self.entered.set()
            await self.opened.wait()
        return await self._real(kind)


# -- 1. switch, answer, switch again, stop -------------------------------------------------


def test_switch_serves_then_replaces_then_stops(settings: Settings) -> None:
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            first = await ls.switch("tiny.gguf", config(port))
            assert first.state is ServerState.READY
            assert first.running
            assert first.model_name == "tiny.gguf"
            assert first.port == port
            assert first.url == f"http://127.0.0.1:{port}"
            assert first.start_time is not None
            assert first.start_time.tzinfo is not None
            assert ISO_UTC.match(to_wire(first)["start_time"])
            assert first.ready_after_s is not None
            assert first.ready_after_s < 30
            sampled = await ls.status("tiny.gguf")  # resource figures come with status()
            assert sampled.rss_mib is not None
            assert sampled.rss_mib > 0
            assert sampled.cpu_percent is not None
            assert sampled.vram_usage is None  # no NVIDIA GPU here
            answer = await asyncio.to_thread(completion, first.url)
            assert isinstance(answer["content"], str)

            second = await ls.switch("other.gguf", config(port))
            assert first.process_id is not None
            assert gone(first.process_id)
            assert second.state is ServerState.READY
            assert second.model_name == "other.gguf"
            assert second.process_id != first.process_id
            assert [p.pid for p in llama_servers_on(port)] == [second.process_id]

            stopped = await ls.stop()
            assert [s.state for s in stopped] == [ServerState.STOPPED]
            assert stopped[0].exit_code is not None
            assert await ls.status() == []
            assert llama_servers_on(port) == []

    run(scenario())


def test_switch_to_the_same_model_and_config_returns_at_once(settings: Settings) -> None:
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            first = await ls.switch("tiny.gguf", config(port))
            with ls.subscribe() as events:
                again = await ls.switch("tiny.gguf", config(port))
                assert await drain(events) == []  # nothing stopped, nothing started
            assert again.process_id == first.process_id
            assert again.state is ServerState.READY
            changed = await ls.switch("tiny.gguf", config(port, ctx_size=128))
            assert changed.process_id != first.process_id

    run(scenario())


def test_status_and_logs_by_name_and_port(settings: Settings) -> None:
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            await ls.switch("tiny.gguf", config(port))
            by_name = await ls.status("tiny.gguf")
            assert by_name.port == port
            assert (await ls.status("tiny")).port == port
            assert (await ls.status(port=port)).model_name == "tiny.gguf"
            wire = to_wire(by_name)
            assert list(wire)[:7] == ["running", "model_name", "model_path", "port",
                                      "start_time", "process_id", "vram_usage"]  # fmt: skip
            assert wire["state"] == "ready"
            assert wire["config"]["ctx_size"] == 256
            assert wire["argv"][0] == str(settings.llama_server_path)
            json.dumps(wire)
            lines = await ls.logs("tiny.gguf", lines=500)
            assert any("llamaswitch" in line and "starting" in line for line in lines)
            assert len(lines) > 5
            assert len(await ls.logs(port=port, lines=3)) == 3
            log_file = settings.logs_dir / f"server-{port}.log"
            assert "--ctx-size 256" in log_file.read_text(encoding="utf-8")
            with pytest.raises(ServerNotFoundError, match=r"tiny\.gguf on port"):
                await ls.status("other.gguf")
            with pytest.raises(ServerNotFoundError):
                await ls.stop(port=port + 1)
            assert ls.supervisor.running_servers()[0]["port"] == port
            # Transitions are guarded: a ready server cannot go back to starting.
            server = ls.supervisor._servers[port]
            with pytest.raises(RuntimeError, match="ready -> starting is not allowed"):
                ls.supervisor._set_state(server, ServerState.STARTING)

    run(scenario())


def test_state_changes_are_published_as_events(settings: Settings) -> None:
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            with ls.subscribe() as events:
                status = await ls.switch("tiny.gguf", config(port))
                await ls.stop()
                seen = [e for e in await drain(events) if e.topic == "server"]
        assert [e.data["state"] for e in seen] == ["starting", "ready", "stopping", "stopped"]
        assert all(e.data["port"] == port and e.type == "state" for e in seen)
        assert seen[0].data["pid"] == status.process_id

    run(scenario())


def test_start_picks_a_free_port_from_the_range(settings: Settings) -> None:
    low, _ = settings.model_ports

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            # Someone else holds the first port of the range: it is skipped.
            with socket.socket() as holder:
                holder.bind(("127.0.0.1", low))
                holder.listen()
                first = await ls.start("tiny.gguf", ServerConfig(**SMALL))
                second = await ls.start("other.gguf", ServerConfig(**SMALL))
            assert first.port == low + 1
            assert second.port == low + 2
            assert {s.port for s in await ls.status()} == {low + 1, low + 2}
            with pytest.raises(PortInUseError, match="llamaswitch's own server"):
                await ls.start("other.gguf", ServerConfig(port=low + 1, **SMALL))

    run(scenario())


def test_a_rich_config_is_accepted_by_the_real_binary(settings: Settings) -> None:
    port = free_port()
    rich = ServerConfig(port=port, threads=1, threads_batch=1, ctx_size=256, batch_size=64,
                        ubatch_size=32, n_gpu_layers=0, flash_attn=False, cache_type_k="f16",
                        cache_type_v="f16", parallel=1, alias="tiny-alias", no_mmap=True,
                        extra_args=["--props"], env={"LLAMA_ARG_THREADS_HTTP": "2"})  # fmt: skip

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            status = await ls.switch("tiny.gguf", rich)
            assert status.state is ServerState.READY
            assert (await ls.status("tiny-alias")).port == port

    run(scenario())


def test_wait_false_returns_starting_and_becomes_ready(settings: Settings) -> None:
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            status = await ls.switch("tiny.gguf", config(port), wait=False)
            assert status.state is ServerState.STARTING
            assert status.process_id is not None

            async def ready() -> bool:
                return (await ls.status(port=port)).state is ServerState.READY

            await async_wait_until(ready, 30)

    run(scenario())


# -- 2. concurrent switches ------------------------------------------------------------------


@pytest.mark.parametrize("spacing_s", [0.0, 0.03])
def test_concurrent_switches_end_with_one_server_running_the_last_model(
    settings: Settings, spacing_s: float
) -> None:
    """20 switches at once, or 30 ms apart (so that servers are replaced mid-start)."""
    port = free_port()
    models = ["tiny.gguf", "other.gguf"]

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:

            async def switch(i: int) -> ServerStatus:
                await asyncio.sleep(i * spacing_s)
                return await ls.switch(models[i % 2], config(port))

            results = await asyncio.gather(*(switch(i) for i in range(20)),
                                           return_exceptions=True)  # fmt: skip
            for result in results:
                assert isinstance(result, ServerStatus | SupersededError), result
            assert isinstance(results[-1], ServerStatus)
            assert results[-1].model_name == models[19 % 2]
            final = await ls.status(port=port)
            assert final.state is ServerState.READY
            assert final.model_name == "other.gguf"
            assert [p.pid for p in llama_servers_on(port)] == [final.process_id]
            assert len(await ls.status()) == 1

    run(scenario())


# -- requests in flight: stops, close, requests refused early ---------------------------------


@pytest.mark.parametrize("by_port", [False, True], ids=["stop-all", "stop-port"])
def test_a_stop_supersedes_a_switch_still_in_flight(settings: Settings, by_port: bool) -> None:
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            gate = BinaryGate(ls, hold=1 if by_port else 2)
            switching = asyncio.ensure_future(ls.switch("tiny.gguf", config(port)))
            starting = None if by_port else asyncio.ensure_future(
                ls.start("other.gguf", ServerConfig(**SMALL)))  # fmt: skip
            await gate.entered.wait()
            # Nothing runs yet, so nothing is reported stopped; but the port is known.
            assert await (ls.stop(port=port) if by_port else ls.stop()) == []
            gate.opened.set()
            with pytest.raises(SupersededError):
                await switching
            if starting is not None:
                with pytest.raises(SupersededError):
                    await starting
            assert await ls.status() == []
            assert llama_servers_on(port) == []

    run(scenario())


def test_closing_during_a_start_spawns_nothing_and_supersedes_it(settings: Settings) -> None:
    port = free_port()

    async def scenario() -> None:
        ls = AsyncLlamaSwitch(settings)
        await ls.open()
        try:
            gate = BinaryGate(ls)
            switching = asyncio.ensure_future(ls.switch("tiny.gguf", config(port)))
            await gate.entered.wait()
            closing = asyncio.ensure_future(ls.close())
            await async_wait_until(lambda: asyncio.sleep(0, ls.supervisor._closed), 10)
            gate.opened.set()
            with pytest.raises(SupersededError, match="closed"):
                await switching
            await asyncio.wait_for(closing, 30)
        finally:
            await ls.close()
        assert llama_servers_on(port) == []
        assert ChildRegistry(settings.state_dir / "children.json").records() == []

    run(scenario())


def test_a_later_switch_to_an_unknown_model_does_not_supersede_an_earlier_one(
    settings: Settings,
) -> None:
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            gate = BinaryGate(ls)
            first = asyncio.ensure_future(ls.switch("tiny.gguf", config(port)))
            await gate.entered.wait()
            with pytest.raises(ModelNotFoundError):
                await ls.switch("nothing.gguf", config(port))
            with pytest.raises(ModelPathError):
                await ls.switch("../outside.gguf", config(port))
            gate.opened.set()
            status = await first
            assert (status.state, status.model_name) == (ServerState.READY, "tiny.gguf")
            assert [p.pid for p in llama_servers_on(port)] == [status.process_id]

    run(scenario())


def test_a_later_switch_the_binary_cannot_honour_does_not_supersede_an_earlier_one(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    if llama_build.server.dialect == "current":
        pytest.skip("the current build honours split_mode=tensor")
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            gate = BinaryGate(ls)
            first = asyncio.ensure_future(ls.switch("tiny.gguf", config(port)))
            await gate.entered.wait()
            with pytest.raises(UnsupportedOptionError):
                await ls.switch("other.gguf", config(port, split_mode="tensor"))
            gate.opened.set()
            status = await first
            assert (status.state, status.model_name) == (ServerState.READY, "tiny.gguf")

    run(scenario())


# -- 3. ports ------------------------------------------------------------------------------------


def test_port_held_by_another_process_is_refused_before_spawning(settings: Settings) -> None:
    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            with socket.socket() as holder:
                holder.bind(("127.0.0.1", 0))
                holder.listen()
                port = holder.getsockname()[1]
                with pytest.raises(PortInUseError) as caught:
                    await ls.switch("tiny.gguf", config(port))
            assert caught.value.port == port
            if caught.value.holder is not None:  # psutil can name it where /proc allows
                assert f"pid {os.getpid()}" in caught.value.holder
            assert own_children() == []
            assert await ls.status() == []

    run(scenario())


def test_start_never_takes_the_default_switch_port(settings: Settings) -> None:
    low, _ = settings.model_ports
    assert settings.model_port == low  # the default: the first port of the range

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            started = await ls.start("tiny.gguf", ServerConfig(**SMALL))
            switched = await ls.switch("other.gguf", ServerConfig(**SMALL))
            assert (started.port, switched.port) == (low + 1, low)
            assert {s.model_name for s in await ls.status()} == {"tiny.gguf", "other.gguf"}

    run(scenario())


def test_start_skips_a_port_a_switch_is_headed_for(settings: Settings) -> None:
    low, _ = settings.model_ports

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            gate = BinaryGate(ls)
            switching = asyncio.ensure_future(ls.switch("tiny.gguf", config(low + 1)))
            await gate.entered.wait()
            started = await ls.start("other.gguf", ServerConfig(**SMALL))
            gate.opened.set()
            assert ((await switching).port, started.port) == (low + 1, low + 2)

    run(scenario())


def test_start_on_an_address_no_interface_has_says_so(
    tmp_path: Path, models_dir: Path, fake_server: Path
) -> None:
    host = "192.0.2.1"  # TEST-NET-1: no interface here has it
    with socket.socket() as probe:
        try:
            probe.bind((host, 0))
        except OSError:
            pass
        else:
            pytest.skip(f"this machine can bind {host} (ip_nonlocal_bind?)")
    settings = make_settings(tmp_path, models_dir, fake_server)

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            with pytest.raises(ServerStartError, match=f"cannot listen on {host}"):
                await ls.start("tiny.gguf", ServerConfig(host=host, **SMALL))
            assert await ls.status() == []

    run(scenario())


def test_the_rest_api_port_is_never_handed_out(settings: Settings) -> None:
    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            with pytest.raises(ReservedPortError):
                await ls.switch("tiny.gguf", config(settings.server_port))

    run(scenario())


# -- 4. bad models -------------------------------------------------------------------------------


def test_bad_model_references_are_refused(settings: Settings, tmp_path: Path) -> None:
    outside = write_tiny_model(tmp_path / "outside.gguf", name="outside")

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            with pytest.raises(ModelNotFoundError, match=r"tiny\.gguf"):
                await ls.switch("tiny2.gguf", config(free_port()))
            with pytest.raises(ModelPathError):
                await ls.switch("../outside.gguf", config(free_port()))
            with pytest.raises(ModelPathError):
                await ls.switch(str(outside), config(free_port()))
            assert own_children() == []

    run(scenario())


def test_a_model_the_catalog_cannot_read_is_refused_before_anything_runs(
    settings: Settings, models_dir: Path
) -> None:
    (models_dir / "garbage.gguf").write_bytes(random.Random(3).randbytes(4096))
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            running = await ls.switch("tiny.gguf", config(port))
            listed = {m.name: m for m in await ls.list_models()}
            assert listed["garbage.gguf"].error
            with pytest.raises(ModelUnusableError, match="not a GGUF file") as caught:
                await ls.switch("garbage.gguf", config(port))
            assert caught.value.model == "garbage.gguf"
            # The refusal came before the switch acted: the running server is untouched.
            after = await ls.status(port=port)
            assert (after.state, after.process_id) == (ServerState.READY, running.process_id)

    run(scenario())


def test_a_rehearsed_start_refuses_what_a_start_would_and_starts_nothing(
    settings: Settings, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ServerSupervisor.rehearse: the gateway runs it once at open, so that the first
    # real start does not run its checks for the first time on a request's path.
    (models_dir / "garbage.gguf").write_bytes(random.Random(3).randbytes(4096))

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            binary = await ls.binary("llama-server")
            listed = {m.name: m for m in await ls.list_models()}
            await ls.supervisor.rehearse(listed["tiny.gguf"], ServerConfig(**SMALL), binary)
            with pytest.raises(ModelUnusableError, match="not a GGUF file"):
                await ls.supervisor.rehearse(listed["garbage.gguf"], None, binary)
            with pytest.raises(ConfigValidationError, match="not an address of this machine"):
                await ls.supervisor.rehearse(listed["tiny.gguf"],
                                             ServerConfig(host="192.0.2.1"), binary)  # fmt: skip
            with pytest.raises(UnsupportedOptionError, match="--no-such-flag"):
                await ls.supervisor.rehearse(
                    listed["tiny.gguf"], ServerConfig(extra_args=("--no-such-flag",)), binary
                )
            # llama.cpp's own parse of extra arguments (a process) is left to the start.
            parsed: list[object] = []

            async def parse_check(*args: object) -> None:
                parsed.append(args)

            monkeypatch.setattr("llamaswitch.servers.supervisor.parse_check", parse_check)
            await ls.supervisor.rehearse(
                listed["tiny.gguf"], ServerConfig(extra_args=("--threads-http", "2")), binary
            )
            assert parsed == []
            assert await ls.status() == []
            assert own_children() == []

    run(scenario())


def test_an_unloadable_model_fails_with_llama_cpps_complaint(
    settings: Settings, models_dir: Path
) -> None:
    # A sound header (the catalog lists it) that llama.cpp refuses: an unknown architecture.
    write_tiny_model(models_dir / "garbage.gguf", name="garbage", architecture="nosucharch")
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            listed = {m.name: m for m in await ls.list_models()}
            assert listed["garbage.gguf"].error is None
            with ls.subscribe() as events:
                with pytest.raises(ServerStartError) as caught:
                    await ls.switch("garbage.gguf", config(port))
                states = [e.data["state"] for e in await drain(events)]
            error = caught.value
            assert error.exit_code not in (None, 0)
            tail = "\n".join(error.log_tail)
            assert "garbage.gguf" in tail
            assert re.search(r"unknown model architecture|failed to load|error loading model",
                             tail)  # fmt: skip
            assert len(error.log_tail) <= 40
            status = await ls.status(port=port)
            assert status.state is ServerState.FAILED
            assert not status.running
            assert status.log_tail
            assert status.exit_code == error.exit_code
            assert states == ["starting", "failed"]
            assert llama_servers_on(port) == []
            # A failed server is replaced by the next switch on its port.
            assert (await ls.switch("tiny.gguf", config(port))).state is ServerState.READY

    run(scenario())


def test_a_model_behind_a_symlink_out_of_the_folder_is_never_launched(
    tmp_path: Path, models_dir: Path, fake_server: Path
) -> None:
    outside = write_tiny_model(tmp_path / "elsewhere" / "m.gguf", name="m")
    (models_dir / "link.gguf").symlink_to(outside)
    settings = make_settings(tmp_path, models_dir, fake_server)
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            listed = {m.name: m for m in await ls.list_models()}
            assert "outside the models folder" in (listed["link.gguf"].error or "")
            for reference in ("link.gguf", "link"):
                with pytest.raises(ModelPathError):
                    await ls.switch(reference, config(port))
            # A ModelInfo taken from the listing is refused by the supervisor itself.
            with pytest.raises(ModelPathError):
                await ls.supervisor.switch(listed["link.gguf"], config(port))
            with pytest.raises(ModelPathError):
                await ls.supervisor.start(listed["link.gguf"], ServerConfig(**SMALL))
            assert own_children() == []
            assert await ls.status() == []

    run(scenario())


def test_background_start_failure_is_recorded_in_status(
    settings: Settings, models_dir: Path
) -> None:
    write_tiny_model(models_dir / "garbage.gguf", name="garbage", architecture="nosucharch")
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            status = await ls.switch("garbage.gguf", config(port), wait=False)
            assert status.state is ServerState.STARTING

            async def failed() -> bool:
                return (await ls.status(port=port)).state is ServerState.FAILED

            await async_wait_until(failed, 30)
            assert (await ls.status(port=port)).error

    run(scenario())


# -- 5. crash watch ------------------------------------------------------------------------------


def test_killed_child_is_crashed_within_a_second(settings: Settings) -> None:
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            status = await ls.switch("tiny.gguf", config(port))
            assert status.process_id is not None
            with ls.subscribe() as events:
                os.kill(status.process_id, signal.SIGKILL)
                # The measure: the crash is known (and published) within 1 s of the kill.
                event = await events.get(timeout_s=1.0)
            assert event.data["state"] == "crashed"
            assert event.data["exit_code"] == -9
            after = await ls.status(port=port)
            assert after.state is ServerState.CRASHED
            assert after.exit_code == -signal.SIGKILL
            assert ISO_UTC.match(to_wire(after)["exited_at"])
            assert after.log_tail
            assert after.process_id is None
            assert not after.running
            # restart="no": no restart is scheduled, now or later.
            assert ls.supervisor._servers[port].restart_task is None
            assert [s.state for s in await ls.stop(port=port)] == [ServerState.STOPPED]

    run(scenario())


async def killed_and_restarted(ls: AsyncLlamaSwitch, first: ServerStatus) -> ServerStatus:
    """SIGKILL ``first``'s process; the status once the restart policy brought it back."""
    assert first.process_id is not None
    os.kill(first.process_id, signal.SIGKILL)

    async def back() -> bool:
        status = await ls.status(port=first.port)
        return status.state is ServerState.READY and status.restarts == 1

    await async_wait_until(back, 20)
    again = await ls.status(port=first.port)
    assert again.process_id != first.process_id
    return again


def test_on_failure_restart_brings_a_killed_server_back(settings: Settings) -> None:
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            first = await ls.switch("tiny.gguf", config(port, restart="on-failure"))
            again = await killed_and_restarted(ls, first)
            assert [p.pid for p in llama_servers_on(port)] == [again.process_id]

    run(scenario())


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
def test_a_restart_under_dynamic_scheduling_starts_as_the_requests_in_flight_want(
    settings: Settings,
) -> None:
    # Two requests in flight put a CPU server under SCHED_BATCH. Killed and restarted
    # while they still count, its new process starts under SCHED_BATCH too (nothing
    # would switch it before their count changes), and goes back when one is left.
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            first = await ls.switch("tiny.gguf", config(port, restart="on-failure"))
            assert first.process_id is not None
            ls.supervisor.in_flight(port, 2)
            assert thread_policies(first.process_id) == {os.SCHED_BATCH}
            again = await killed_and_restarted(ls, first)
            assert again.process_id is not None
            assert thread_policies(again.process_id) == {os.SCHED_BATCH}
            ls.supervisor.in_flight(port, 1)
            assert thread_policies(again.process_id) == {os.SCHED_OTHER}

    run(scenario())


def test_restart_max_of_a_server_caps_its_restarts(settings: Settings) -> None:
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            first = await ls.switch("tiny.gguf", config(port, restart="on-failure",
                                                        restart_max=0))  # fmt: skip
            assert first.process_id is not None
            with ls.subscribe() as events:
                os.kill(first.process_id, signal.SIGKILL)
                while "gave up" not in ((await events.get(timeout_s=10)).data["error"] or ""):
                    pass
            status = await ls.status(port=port)
            assert (status.state, status.restarts) == (ServerState.CRASHED, 0)
            assert "gave up after 0 restarts" in (status.error or "")

    run(scenario())


# -- 6. never an orphan ----------------------------------------------------------------------------

MANAGER_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from llamaswitch import LlamaSwitch, ServerConfig, Settings

    args = json.loads(sys.argv[1])
    settings = Settings(**args["settings"])
    ls = LlamaSwitch(settings)
    status = ls.switch("tiny.gguf", ServerConfig(**args["config"]))
    print(json.dumps({"pid": status.process_id}), flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("guard", ["guardian", "setpriv", "prctl"])
def test_child_dies_with_a_manager_killed_by_sigkill(settings: Settings, guard: str) -> None:
    # Every way a child is tied to its manager (llamaswitch._process.child_spawn): the
    # guardian process, and Linux's parent-death signal set by util-linux's setpriv or
    # by a preexec_fn.
    if guard == "setpriv" and shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    env = {**os.environ, "LLAMASWITCH_CHILD_GUARD": guard}
    port = free_port()
    arguments = {
        "settings": {"models_dir": str(settings.models_dir),
                     "llama_server_path": str(settings.llama_server_path),
                     "state_dir": str(settings.state_dir),
                     "model_ports": list(settings.model_ports),
                     "server_port": settings.server_port},
        "config": {"port": port, **SMALL},
    }  # fmt: skip
    manager = subprocess.Popen(
        [sys.executable, "-c", MANAGER_SCRIPT, json.dumps(arguments)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert manager.stdout is not None
        readable, _, _ = select.select([manager.stdout], [], [], 60)
        assert readable, "the manager printed no pid within 60 s"
        pid = json.loads(manager.stdout.readline())["pid"]
        assert not gone(pid)
        registry = ChildRegistry(settings.state_dir / "children.json")
        # Where a guard covers the child, its record follows a moment later (_record).
        assert wait_until(lambda: [r.pid for r in registry.records()] == [pid], 5.0) < 5.0
        manager.send_signal(signal.SIGKILL)
        manager.wait(5)
        assert wait_until(lambda: gone(pid), 2.0) < 2.0
    finally:
        manager.kill()
        manager.wait(5)

    # The record outlived its manager; the next manager drops it (nothing left to stop).
    async def reopen() -> list[dict[str, Any]]:
        async with AsyncLlamaSwitch(settings) as ls:
            return ls.supervisor.survivors_stopped

    assert run(reopen()) == []
    assert ChildRegistry(settings.state_dir / "children.json").records() == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="read from pidfds in /proc")
def test_a_model_server_is_listed_with_the_guardian_while_it_runs(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMASWITCH_CHILD_GUARD", "guardian")

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            status = await ls.switch("tiny.gguf", config(free_port()))
            guardian = guardian_pid()
            assert guardian is not None
            assert status.process_id is not None
            assert psutil.Process(status.process_id).cmdline()[0] == str(
                settings.llama_server_path
            )  # spawned bare: no setpriv in front
            assert wait_until(lambda: status.process_id in guardian_listed(guardian), 5) < 5
            await ls.stop(port=status.port)
            # Reaped, so released: that pid may be given to another process now.
            assert wait_until(lambda: status.process_id not in guardian_listed(guardian), 5) < 5

    run(scenario())


def test_a_guarded_childs_record_waits_and_one_reaped_first_is_never_written(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written at once, the record takes CPU from the load's first milliseconds; the
    # guardian covers the child meanwhile.
    monkeypatch.setenv("LLAMASWITCH_CHILD_GUARD", "guardian")
    monkeypatch.setattr("llamaswitch.servers.supervisor._RECORD_AFTER_S", 600.0)
    written: list[tuple[list[int], set[int]]] = []
    apply = ChildRegistry.apply

    def spy(self: ChildRegistry, added: Any, removed: Any) -> None:
        written.append(([a[0] for a in added], set(removed)))
        apply(self, added, removed)

    monkeypatch.setattr(ChildRegistry, "apply", spy)
    registry = ChildRegistry(settings.state_dir / "children.json")

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            status = await ls.switch("tiny.gguf", config(free_port()))
            assert status.state is ServerState.READY
            assert registry.records() == []
            assert written == []
            await ls.stop(port=status.port)

    run(scenario())
    assert written == []  # spawned and reaped before the write was due: nothing to write
    assert registry.records() == []


@pytest.mark.parametrize("guard", ["guardian", "none"])
def test_a_childs_record_is_written_while_it_runs_and_dropped_when_it_is_reaped(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, guard: str
) -> None:
    # "none": the registry is all that ties the child to this manager, so it is written
    # as soon as the child is spawned; with a guard, a quarter of a second later.
    monkeypatch.setenv("LLAMASWITCH_CHILD_GUARD", guard)
    registry = ChildRegistry(settings.state_dir / "children.json")

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            status = await ls.switch("tiny.gguf", config(free_port()))
            pid = status.process_id

            def recorded() -> bool:
                return [r.pid for r in registry.records()] == [pid]

            assert await asyncio.to_thread(wait_until, recorded, 5.0) < 5.0
            await ls.stop(port=status.port)
        assert registry.records() == []  # the removal was written by close at the latest

    run(scenario())


def _dead_manager() -> tuple[int, float]:
    proc = psutil.Popen([sys.executable, "-c", "pass"])
    create_time = proc.create_time()
    proc.wait(10)
    return proc.pid, create_time


def _write_records(state_dir: Path, entries: list[dict[str, Any]]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "children.json").write_text(json.dumps({"format": 1, "children": entries}))


@pytest.fixture
def survivor(settings: Settings) -> Iterator[psutil.Popen]:
    """A llama-server started outside any manager, as one left behind by a dead one."""
    port = free_port()
    assert settings.llama_server_path is not None
    proc = psutil.Popen(
        [str(settings.llama_server_path), "-m", str(settings.models_dir / "tiny.gguf"),
         "--port", str(port), "-c", "256", "-t", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
        proc.wait(10)


def test_survivor_of_a_dead_manager_is_stopped_on_the_next_start(
    settings: Settings, survivor: psutil.Popen
) -> None:
    manager_pid, manager_created = _dead_manager()
    _write_records(settings.state_dir, [{
        "pid": survivor.pid, "create_time": survivor.create_time(), "port": 1,
        "argv": survivor.cmdline(), "manager_pid": manager_pid,
        "manager_create_time": manager_created,
    }])  # fmt: skip

    async def reopen() -> list[dict[str, Any]]:
        async with AsyncLlamaSwitch(settings) as ls:
            return ls.supervisor.survivors_stopped

    stopped = run(reopen())
    assert [s["pid"] for s in stopped] == [survivor.pid]
    survivor.wait(5)  # reap it: it is this test's child
    assert ChildRegistry(settings.state_dir / "children.json").records() == []


def test_recorded_pid_reused_by_another_process_is_left_alone(settings: Settings) -> None:
    manager_pid, manager_created = _dead_manager()
    other = psutil.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_records(settings.state_dir, [{
            "pid": other.pid, "create_time": other.create_time() - 100.0, "port": 1,
            "argv": ["llama-server"], "manager_pid": manager_pid,
            "manager_create_time": manager_created,
        }])  # fmt: skip

        async def reopen() -> list[dict[str, Any]]:
            async with AsyncLlamaSwitch(settings) as ls:
                return ls.supervisor.survivors_stopped

        assert run(reopen()) == []
        assert other.is_running()
        assert other.status() != psutil.STATUS_ZOMBIE
    finally:
        other.kill()
        other.wait(10)


def test_children_of_a_live_manager_are_left_alone(
    settings: Settings, survivor: psutil.Popen
) -> None:
    manager = psutil.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_records(settings.state_dir, [{
            "pid": survivor.pid, "create_time": survivor.create_time(), "port": 1,
            "argv": survivor.cmdline(), "manager_pid": manager.pid,
            "manager_create_time": manager.create_time(),
        }])  # fmt: skip

        async def reopen() -> list[dict[str, Any]]:
            async with AsyncLlamaSwitch(settings) as ls:
                return ls.supervisor.survivors_stopped

        assert run(reopen()) == []
        assert survivor.is_running()
        assert len(ChildRegistry(settings.state_dir / "children.json").records()) == 1
    finally:
        manager.kill()
        manager.wait(10)


def test_port_blocked_by_time_wait_is_explained(tmp_path: Path, models_dir: Path) -> None:
    """A current build's closed connections (SO_REUSEADDR) block a legacy build
    (SO_REUSEPORT only) from binding the port for a minute; the error says so."""
    current, legacy = require_build("current"), require_build("legacy")
    port = free_port()

    async def scenario() -> None:
        first = make_settings(tmp_path / "a", models_dir, current.server.path)
        async with AsyncLlamaSwitch(first) as ls:
            await ls.switch("tiny.gguf", config(port))
            await asyncio.to_thread(close_by_server, port)
        second = make_settings(tmp_path / "b", models_dir, legacy.server.path)
        async with AsyncLlamaSwitch(second) as ls:
            with pytest.raises(ServerStartError, match="TIME_WAIT"):
                await ls.switch("tiny.gguf", config(port))

    run(scenario())


# -- 7. options the binary cannot honour -----------------------------------------------------------


def test_option_the_legacy_build_cannot_honour_names_its_version(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            await ls.switch("tiny.gguf", config(port))
            if llama_build.server.dialect == "current":
                pytest.skip("the current build supports split_mode=tensor")
            with pytest.raises(UnsupportedOptionError) as caught:
                await ls.switch("other.gguf", config(port, split_mode="tensor"))
            assert llama_build.server.version in str(caught.value)
            # The server that ran is untouched.
            assert (await ls.status(port=port)).model_name == "tiny.gguf"

    run(scenario())


# -- 10. the sync facade and the async API ---------------------------------------------------------


def _comparable(status: ServerStatus) -> dict[str, Any]:
    wire = to_wire(status)
    for key in ("start_time", "process_id", "ready_after_s", "rss_mib", "cpu_percent",
                "exit_code", "exited_at"):  # fmt: skip
        wire.pop(key)
    return wire


def test_sync_facade_gives_the_same_results_as_the_async_api(settings: Settings) -> None:
    port = free_port()

    def sync_run() -> dict[str, Any]:
        with LlamaSwitch(settings) as ls:
            switched = ls.switch("tiny.gguf", config(port))
            started = ls.start("other.gguf", ServerConfig(**SMALL))
            result = {
                "models": [m.name for m in ls.list_models()],
                "switched": _comparable(switched),
                "started": _comparable(started),
                "status": [_comparable(s) for s in ls.status()],
                "one": _comparable(ls.status("tiny.gguf")),
                "logs": bool(ls.logs("tiny.gguf", lines=5)),
                "stopped": [s.state for s in ls.stop("other.gguf")],
                "pids": [switched.process_id],
            }
        return result

    async def async_run() -> dict[str, Any]:
        async with AsyncLlamaSwitch(settings) as ls:
            switched = await ls.switch("tiny.gguf", config(port))
            started = await ls.start("other.gguf", ServerConfig(**SMALL))
            result = {
                "models": [m.name for m in await ls.list_models()],
                "switched": _comparable(switched),
                "started": _comparable(started),
                "status": [_comparable(s) for s in await ls.status()],
                "one": _comparable(await ls.status("tiny.gguf")),
                "logs": bool(await ls.logs("tiny.gguf", lines=5)),
                "stopped": [s.state for s in await ls.stop("other.gguf")],
                "pids": [switched.process_id],
            }
        return result

    sync_result = sync_run()
    # Leaving the `with` block stopped the server it left running.
    assert gone(sync_result.pop("pids")[0])
    async_result = run(async_run())
    assert gone(async_result.pop("pids")[0])
    assert sync_result == async_result
    assert sync_result["stopped"] == [ServerState.STOPPED]


def test_closing_stops_every_server_it_started(settings: Settings) -> None:
    with LlamaSwitch(settings) as ls:
        pids = [ls.switch("tiny.gguf", config(free_port())).process_id,
                ls.start("other.gguf", ServerConfig(**SMALL)).process_id]  # fmt: skip
        assert all(pid is not None and not gone(pid) for pid in pids)
    assert all(pid is not None and gone(pid) for pid in pids)
    assert ChildRegistry(settings.state_dir / "children.json").records() == []


def test_closing_ends_event_subscriptions_after_the_last_events(settings: Settings) -> None:
    port = free_port()

    async def scenario() -> None:
        ls = AsyncLlamaSwitch(settings)
        await ls.open()
        subscription = ls.subscribe()

        async def follow() -> list[str]:
            # Blocked waiting for the next event when the close comes.
            return [event.data["state"] async for event in subscription]

        follower = asyncio.ensure_future(follow())
        try:
            await ls.switch("tiny.gguf", config(port))
        finally:
            await ls.close()
        states = await asyncio.wait_for(follower, 10)
        assert states == ["starting", "ready", "stopping", "stopped"]
        with pytest.raises(EOFError):
            await subscription.get(timeout_s=1)

    run(scenario())


def test_a_closed_subscription_wakes_its_blocked_reader() -> None:
    async def scenario() -> None:
        bus = EventBus()
        with bus.subscribe() as subscription:
            reader = asyncio.ensure_future(anext(subscription, None))
            await asyncio.sleep(0)  # the reader now waits on the queue
            subscription.close()
            assert await asyncio.wait_for(reader, 5) is None
        with bus.subscribe() as later:  # the bus still works after its close()
            bus.close()
            with bus.subscribe() as again:
                bus.emit("server", "state", state="ready")
                assert (await again.get(timeout_s=5)).data == {"state": "ready"}
            assert await anext(later, None) is None

    run(scenario())


class FakeNvml:
    """NVML with two GPUs on which the processes in ``pids`` hold 512 and 256 MiB."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def nvmlInit(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54"

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        used = (512 if handle == 0 else 256) * 1024 * 1024
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid in self.pids]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        return []


def test_vram_per_process_comes_from_nvml(settings: Settings) -> None:
    """No GPU here: a fake NVML reports the server's memory on two GPUs."""
    nvml = FakeNvml()
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings, gpu=GpuProbe(nvml=nvml)) as ls:
            status = await ls.switch("tiny.gguf", config(port))
            status = await ls.status("tiny.gguf")
            assert status.vram_usage == 0
            assert status.vram_per_gpu_mib == {}
            assert status.process_id is not None
            nvml.pids = [status.process_id]
            await asyncio.sleep(ls.supervisor.sample_ttl_s)
            status = await ls.status("tiny.gguf")
            assert status.vram_usage == 768
            assert to_wire(status)["vram_per_gpu_mib"] == {"0": 512, "1": 256}

    run(scenario())


# -- fakes: what a real binary will not do on demand -----------------------------------------------

FAKE_SERVER = """#!{python}
import os, signal, sys, time
if "--help" in sys.argv:
    sys.stdout.write(open({help!r}).read())
    sys.exit(0)
if "--version" in sys.argv:
    print("version: 1 (8733e0c)")
    sys.exit(0)
mode = os.environ.get("GGML_FAKE_MODE", "")  # a name the env allow-list accepts
if mode == "router-child":
    # A build with router mode, started as a router's child: it says it is ready on
    # stdout (and never answers /health), ignores SIGTERM and waits for the exit
    # command on stdin, as llama-server's shutdown waits for its stdin reader.
    print("env " + os.environ.get("LLAMA_SERVER_ROUTER_PORT", "unset"), flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(0.2)
    print('cmd_child_to_router:state:{{"state":"loading","payload":{{}}}}', flush=True)
    gate = os.environ.get("GGML_FAKE_GATE")  # a file that lets the load go on
    for value in (0.0, 0.4, 1.0):
        print('cmd_child_to_router:state:{{"state":"loading","payload":{{"stages":'
              '["text_model"],"current":"text_model","value":%s}}}}' % value, flush=True)
        while gate and value == 0.4 and not os.path.exists(gate):
            time.sleep(0.05)
        time.sleep(0.1)
    print('0.00.010.099 cmd_child_to_router:state:{{"state":"ready","payload":{{}}}}', flush=True)
    for line in sys.stdin:
        if line.strip() == "cmd_router_to_child:exit":
            print("exit command received, exiting...", flush=True)
            sys.exit(0)
    print("EOF on stdin detected, forcing shutdown...", flush=True)
    sys.exit(1)
if mode == "term-twice":
    # llama-server's own rule: a second interrupt ends it at once.
    signal.signal(signal.SIGTERM, lambda *_: signal.signal(signal.SIGTERM, lambda *_: os._exit(1)))
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode.startswith("bind-fails-once:"):
    # The first start cannot bind (as when a client socket of the machine holds the port).
    marker = mode.split(":", 1)[1]
    if not os.path.exists(marker):
        open(marker, "w").close()
        print("couldn't bind HTTP server socket, hostname: 127.0.0.1", flush=True)
        sys.exit(1)
if mode in ("ignore-term", "term-twice") or mode.startswith("bind-fails-once:"):
    import socket
    port = int(sys.argv[sys.argv.index("--port") + 1])
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    while True:
        conn, _ = server.accept()
        conn.recv(1000)
        conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{{}}")
        conn.close()
print("fake llama-server: loading forever", flush=True)
time.sleep(600)
"""


def fake_mode(mode: str) -> dict[str, str]:
    """The environment that tells the fake server how to misbehave."""
    return {"GGML_FAKE_MODE": mode}


def write_fake_server(folder: Path, help_file: str = "legacy-server.txt") -> Path:
    """The fake llama-server script, answering ``--help`` with a build's recorded help."""
    path = folder / "llama-server"
    path.parent.mkdir()
    path.write_text(FAKE_SERVER.format(python=sys.executable, help=str(HELP / help_file)))
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_server(tmp_path: Path) -> Path:
    return write_fake_server(tmp_path / "fake")


def router_child(
    tmp_path: Path, models_dir: Path, help_file: str, **settings: Any
) -> tuple[Settings, int, ServerConfig]:
    """Settings on the fake with a build's help, a port, and the config that makes the
    fake act as a router's child."""
    server = write_fake_server(tmp_path / "fake", help_file)
    port = free_port()
    return (make_settings(tmp_path, models_dir, server, **settings), port,
            config(port, env=fake_mode("router-child")))  # fmt: skip


def test_a_build_with_router_mode_is_ready_on_its_ready_line_and_told_to_exit(
    tmp_path: Path, models_dir: Path
) -> None:
    # servers/child_protocol.py: the fake answers no /health at all, so only its ready
    # line can make it ready; it ignores SIGTERM, so only the exit command stops it
    # before the grace period.
    settings, port, child = router_child(tmp_path, models_dir, "current-server.txt",
                                         stop_timeout_s=10.0)  # fmt: skip

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            status = await ls.switch("tiny.gguf", child)
            assert status.state is ServerState.READY
            log = ls.supervisor.log_path(port).read_text()
            assert f"env {settings.server_port}" in log  # LLAMA_SERVER_ROUTER_PORT
            started = time.monotonic()
            stopped = await ls.stop(port=port)
            assert time.monotonic() - started < 5  # not the 10 s grace, nor a SIGKILL
            assert stopped[0].exit_code == 0
            assert "exit command received" in ls.supervisor.log_path(port).read_text()

    run(scenario())


def test_the_hooks_hear_of_a_listening_server_as_its_load_begins_once_and_until_removed(
    tmp_path: Path, models_dir: Path
) -> None:
    # ServerSupervisor.when_listening: the first loading line (its HTTP server listens by
    # then) calls each hook with the server's URL while it is still starting, at the
    # load's start; a hook that fails is logged, and neither the start nor the other
    # hooks suffer.
    settings, port, child = router_child(tmp_path, models_dir, "current-server.txt")
    heard: list[tuple[str, ServerState, float | None]] = []

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:

            def hook(url: str) -> None:
                (status,) = ls.supervisor.snapshot()
                heard.append((url, status.state, status.load_progress))

            def broken(url: str) -> None:
                raise RuntimeError("a hook's own fault")

            ls.supervisor.when_listening(broken)
            remove = ls.supervisor.when_listening(hook)
            status = await ls.switch("tiny.gguf", child)
            assert status.state is ServerState.READY
            assert status.load_progress is None  # ready: the state says it all
            assert heard == [(f"http://127.0.0.1:{port}", ServerState.STARTING, 0.0)]
            remove()
            await ls.stop(port=port)
            await ls.switch("tiny.gguf", child)
            assert len(heard) == 1  # removed: not called again

    run(scenario())


def test_the_stopping_hooks_hear_of_a_server_while_it_still_serves_at_every_stop(
    settings: Settings, models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # ServerSupervisor.when_stopping: an admin stop, a switch to another model and the
    # close each call the hook with the URL of the server they stop, while it still
    # answers /health 200: before it is told to stop. A hook that fails is logged, and
    # neither the stop nor the other hooks suffer. Both builds.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    heard: list[tuple[str, ServerState, int]] = []

    async def scenario() -> None:
        ls = AsyncLlamaSwitch(settings)
        async with ls:

            def hook(told: str) -> None:
                (status,) = ls.supervisor.snapshot()
                # Blocking on purpose: the stop must not go on until this answered.
                with urllib.request.urlopen(f"{told}/health", timeout=10) as answer:
                    heard.append((told, status.state, answer.status))

            def broken(told: str) -> None:
                raise RuntimeError("a hook's own fault")

            ls.supervisor.when_stopping(broken)
            ls.supervisor.when_stopping(hook)
            await ls.switch("tiny.gguf", config(port))
            (stopped,) = await ls.stop(port=port)
            assert stopped.state is ServerState.STOPPED
            assert heard == [(url, ServerState.STOPPING, 200)]
            await ls.switch("tiny.gguf", config(port))
            status = await ls.switch("other.gguf", config(port))
            assert status.state is ServerState.READY
            assert len(heard) == 2  # the switch stopped tiny, not yet other
        assert heard == [(url, ServerState.STOPPING, 200)] * 3  # the close stopped other
        assert not own_children()
        assert "a hook for a stopping server failed" in caplog.text

    run(scenario())


def test_on_ready_is_told_the_ready_status_once_before_start_returns_and_never_on_failure(
    settings: Settings, models_dir: Path
) -> None:
    # ServerSupervisor.start(on_ready=): the gateway wakes the requests waiting for a load
    # there. Both builds: the current one is ready on its ready line, the legacy one on
    # the readiness poll.
    write_tiny_model(models_dir / "garbage.gguf", name="garbage", architecture="nosucharch")
    heard: list[str] = []

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            models = {m.name: m for m in await ls.list_models()}
            supervisor = ls.supervisor

            def hook(status: ServerStatus) -> None:
                assert status.state is ServerState.READY
                assert supervisor.is_ready(status.port, models["tiny.gguf"].path)
                heard.append(f"ready {status.port}")

            status = await supervisor.start(models["tiny.gguf"], config(free_port()),
                                            on_ready=hook)  # fmt: skip
            heard.append("returned")
            assert heard == [f"ready {status.port}", "returned"]
            with pytest.raises(ServerStartError):
                await supervisor.start(models["garbage.gguf"], config(free_port()),
                                       on_ready=hook)  # fmt: skip
            assert heard == [f"ready {status.port}", "returned"]

    run(scenario())


def test_a_starting_servers_status_and_the_gateways_list_say_how_far_its_load_came(
    tmp_path: Path, models_dir: Path
) -> None:
    # The fake loads to 40 % and waits there for its gate: the server's status, the
    # gateway's model list and the CLI's table show it meanwhile; once ready, none does.
    gate = tmp_path / "gate"
    settings, _port, _child = router_child(tmp_path, models_dir, "current-server.txt")
    (models_dir / "llamaswitch.toml").write_text(
        f'[defaults]\nenv = {{ GGML_FAKE_MODE = "router-child", GGML_FAKE_GATE = "{gate}" }}\n'
    )

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            loading = asyncio.create_task(ls.ensure("tiny"))
            deadline = time.monotonic() + 10
            seen: list[float | None] = []
            while 0.4 not in seen:
                assert time.monotonic() < deadline, seen
                seen = [s.load_progress for s in ls.supervisor.snapshot()]
                await asyncio.sleep(0.02)
            (view,) = [v for v in await ls.gateway_models() if v.id == "tiny"]
            assert (view.state, view.load_progress) == ("loading", 0.4)
            shown = Console(width=200, record=True, color_system=None)
            shown.print(status_table(ls.supervisor.snapshot()))  # llamaswitch status
            assert "starting 40%" in shown.export_text()
            gate.touch()
            status = await asyncio.wait_for(loading, 10)
            assert status.state is ServerState.READY
            assert status.load_progress is None
            (view,) = [v for v in await ls.gateway_models() if v.id == "tiny"]
            assert (view.state, view.load_progress) == ("ready", None)

    run(scenario())


def test_a_build_without_router_mode_is_not_started_as_a_routers_child(
    tmp_path: Path, models_dir: Path
) -> None:
    # The legacy help: no --models-dir, so no LLAMA_SERVER_ROUTER_PORT and no ready line
    # to wait for; /health decides (which this fake never answers: the start times out).
    settings, port, child = router_child(tmp_path, models_dir, "legacy-server.txt",
                                         ready_timeout_s=2.0)  # fmt: skip

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            with pytest.raises(ReadinessTimeoutError):
                await ls.switch("tiny.gguf", child)
            assert "env unset" in ls.supervisor.log_path(port).read_text()

    run(scenario())


def test_readiness_timeout_kills_the_server(
    tmp_path: Path, models_dir: Path, fake_server: Path
) -> None:
    # 2 s: a Python fake on a loaded machine may take a second to print its first line.
    settings = make_settings(tmp_path, models_dir, fake_server, ready_timeout_s=2.0)
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            started = time.monotonic()
            with pytest.raises(ReadinessTimeoutError, match=r"within 2 s"):
                await ls.switch("tiny.gguf", config(port))
            assert 2.0 <= time.monotonic() - started < 12
            status = await ls.status(port=port)
            assert status.state is ServerState.FAILED
            assert status.exit_code == -signal.SIGKILL
            assert "loading forever" in "\n".join(status.log_tail)

    run(scenario())


def test_a_start_that_cannot_bind_its_picked_port_moves_to_the_next_one(
    tmp_path: Path, models_dir: Path, fake_server: Path
) -> None:
    settings = make_settings(tmp_path, models_dir, fake_server)
    low, _ = settings.model_ports
    first = low + 1  # low is the default model port, switch's
    marker = tmp_path / "failed-once"

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            status = await ls.start(
                "tiny.gguf", ServerConfig(env=fake_mode(f"bind-fails-once:{marker}"))
            )
            assert marker.exists()
            assert status.state is ServerState.READY
            assert status.port == first + 1
            # The failed record of the first port was cleared: one server, the good one.
            assert [s.port for s in await ls.status()] == [first + 1]
            await ls.stop()

    run(scenario())


def test_stop_kills_a_server_that_ignores_sigterm_after_the_grace_period(
    tmp_path: Path, models_dir: Path, fake_server: Path
) -> None:
    settings = make_settings(tmp_path, models_dir, fake_server, stop_timeout_s=0.3)
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            status = await ls.switch("tiny.gguf", config(port, env=fake_mode("ignore-term")))
            assert status.state is ServerState.READY
            started = time.monotonic()
            stopped = await ls.stop()
            assert 0.3 <= time.monotonic() - started < 3
            assert stopped[0].exit_code == -signal.SIGKILL

    run(scenario())


def test_a_server_that_misses_the_first_sigterm_gets_a_second_one(
    tmp_path: Path, models_dir: Path, fake_server: Path
) -> None:
    """Legacy and current llama-server can miss a SIGTERM sent just as they become ready
    (the main loop resets the stop flag); a second one ends them at once."""
    settings = make_settings(tmp_path, models_dir, fake_server, stop_timeout_s=10.0)
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            await ls.switch("tiny.gguf", config(port, env=fake_mode("term-twice")))
            started = time.monotonic()
            stopped = await ls.stop()
            assert 0.9 <= time.monotonic() - started < 5
            assert stopped[0].exit_code == 1

    run(scenario())


def test_a_starting_server_stopped_by_a_later_request_supersedes_its_waiter(
    tmp_path: Path, models_dir: Path, fake_server: Path
) -> None:
    settings = make_settings(tmp_path, models_dir, fake_server)
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            hanging = asyncio.ensure_future(ls.switch("tiny.gguf", config(port)))
            await logged(ls, port, "loading forever")  # spawned, not ready
            stopped = await ls.stop(port=port)
            assert stopped[0].state is ServerState.STOPPED
            with pytest.raises(SupersededError):
                await hanging

    run(scenario())


def test_closing_while_a_server_starts_fails_its_waiter_and_stops_it(
    tmp_path: Path, models_dir: Path, fake_server: Path
) -> None:
    settings = make_settings(tmp_path, models_dir, fake_server)
    port = free_port()

    async def scenario() -> None:
        ls = AsyncLlamaSwitch(settings)
        await ls.open()
        try:
            hanging = asyncio.ensure_future(ls.switch("tiny.gguf", config(port)))
            await logged(ls, port, "loading forever")
            pid = (await ls.status(port=port)).process_id
        finally:
            await ls.close()
        with pytest.raises(SupersededError):
            await asyncio.wait_for(hanging, 10)
        assert pid is not None
        assert gone(pid)

    run(scenario())


def test_a_cancelled_stop_still_stops_and_reaps_the_server(
    tmp_path: Path, models_dir: Path, fake_server: Path
) -> None:
    settings = make_settings(tmp_path, models_dir, fake_server, stop_timeout_s=1.5)
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            status = await ls.switch("tiny.gguf", config(port, env=fake_mode("ignore-term")))
            assert status.process_id is not None
            stopping = asyncio.ensure_future(ls.stop(port=port))

            async def is_stopping() -> bool:
                return (await ls.status(port=port)).state is ServerState.STOPPING

            await async_wait_until(is_stopping, 10)
            stopping.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stopping
            # The next stop finishes what the cancelled one began: SIGKILL after the
            # grace period, reaped, recorded.
            stopped = await ls.stop(port=port)
            assert [s.state for s in stopped] == [ServerState.STOPPED]
            assert stopped[0].exit_code == -signal.SIGKILL
            assert gone(status.process_id)
            assert await ls.status() == []

    run(scenario())


def test_a_failed_spawn_closes_its_log_file(
    tmp_path: Path, models_dir: Path, fake_server: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no program in front (the guardian's way), the exec error reaches the manager
    # (setpriv in front would start and exit 126, an ordinary start failure).
    monkeypatch.setenv("LLAMASWITCH_CHILD_GUARD", "guardian")
    # The record is dropped, so the garbage collector would close a leaked file sooner or
    # later: keep the logs to see whether the supervisor closed it.
    logs: list[OutputLog] = []

    class KeptOutputLog(OutputLog):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            logs.append(self)

    monkeypatch.setattr("llamaswitch.servers.supervisor.OutputLog", KeptOutputLog)
    settings = make_settings(tmp_path, models_dir, fake_server)
    port = free_port()

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            await ls.binary("llama-server")  # identified while it can still run
            await asyncio.to_thread(fake_server.chmod, 0o644)
            with pytest.raises(ServerStartError, match="cannot start"):
                await ls.switch("tiny.gguf", config(port))
            log = ls.supervisor.log_path(port)
            assert "spawn failed" in log.read_text(encoding="utf-8")
            assert [output.closed for output in logs] == [True]
            assert str(log) not in [f.path for f in psutil.Process().open_files()]
            assert await ls.status() == []

    run(scenario())


# -- process plumbing ------------------------------------------------------------------------------


def test_output_log_keeps_the_last_lines_and_rotates_its_file(tmp_path: Path) -> None:
    log = OutputLog(tmp_path / "server.log", max_lines=3, max_bytes=100, backups=2)
    for i in range(40):
        log.feed(f"line {i}\n".encode())
    log.feed(b"partial")
    assert log.tail(10) == ["line 37", "line 38", "line 39"]
    log.close()
    assert log.tail(1) == ["partial"]
    assert (tmp_path / "server.log.1").exists()
    assert (tmp_path / "server.log.2").exists()
    assert not (tmp_path / "server.log.3").exists()


def test_output_log_never_reopens_its_file_after_close(tmp_path: Path) -> None:
    path = tmp_path / "server.log"
    log = OutputLog(path)
    log.feed(b"before\n")
    log.close()
    log.feed(b"late\n")  # a grandchild still holding the pipe, say
    log.note("=== late note")
    log.flush()
    assert log.closed
    assert log.tail(2) == ["late", "=== late note"]
    assert path.read_text(encoding="utf-8") == "before\n"
    assert str(path) not in [f.path for f in psutil.Process().open_files()]


@pytest.fixture(params=["pidfd", "pidfd-popen", "asyncio-transport"])
def spawn_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every way ChildProcess starts a child: on Linux 5.3+ with a pidfd on the loop,
    spawned by posix_spawn (``pidfd``) or, where the descriptors cannot be listed, by
    Popen (``pidfd-popen``); elsewhere asyncio's subprocess transport."""
    import llamaswitch._process as process_module

    if request.param.startswith("pidfd"):
        if not process_module._pidfd_works():
            pytest.skip("no pidfd_open here")
        if request.param == "pidfd-popen":
            monkeypatch.setattr(process_module, "_inheritable_fds", lambda: None)
    else:
        monkeypatch.setattr(process_module, "_pidfd_works", lambda: False)
    return str(request.param)


#: What a child reports of what it inherited: its ignored signals (SigIgn, a hex mask)
#: and its descriptors (those of ``ls``, which lists them: 0-2 and its own listing's).
_INHERITED = "grep SigIgn /proc/self/status; ls /proc/self/fd | tr '\\n' ' '"


def test_a_child_inherits_no_descriptor_and_no_ignored_signal_on_every_spawn_path(
    spawn_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python ignores SIGPIPE (a child must not), and an inheritable descriptor (the
    # shell's, an embedding program's) must not reach llama-server: Popen's close_fds
    # closes it, and so does the posix_spawn path.
    if not sys.platform.startswith("linux"):
        pytest.skip("read from /proc")
    import llamaswitch._process as process_module

    spawned: list[object] = []
    real = process_module._Spawned.start
    monkeypatch.setattr(process_module._Spawned, "start",
                        lambda *a, **k: spawned.append(a) or real(*a, **k))  # fmt: skip
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)

    async def scenario() -> None:
        log = OutputLog(None)
        proc = await ChildProcess.spawn(["/bin/sh", "-c", _INHERITED], output=log)
        assert bool(spawned) == (spawn_path == "pidfd")  # posix_spawn there, Popen elsewhere
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
        ignored_line, fds_line = log.tail(2)
        ignored = int(ignored_line.split()[1], 16)
        assert not ignored & (1 << (signal.SIGPIPE - 1)), ignored_line
        assert sorted(int(fd) for fd in fds_line.split()) == [0, 1, 2, 3], fds_line

    try:
        run(scenario())
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_descriptors_a_child_would_inherit_are_listed() -> None:
    from llamaswitch._process import _inheritable_fds

    if not sys.platform.startswith("linux"):
        pytest.skip("read from /proc")
    before = _inheritable_fds()
    assert before is not None
    read_end, write_end = os.pipe()  # Python's own: not inheritable
    try:
        assert _inheritable_fds() == before
        os.set_inheritable(read_end, True)
        after = _inheritable_fds()
        assert after is not None
        assert set(after) - set(before) == {read_end}
    finally:
        os.close(read_end)
        os.close(write_end)


def test_exit_codes_and_output_reach_the_caller_on_both_spawn_paths(
    tmp_path: Path, spawn_path: str
) -> None:
    async def scenario() -> None:
        log = OutputLog(None)
        done = await ChildProcess.spawn(
            [sys.executable, "-c", "print('out', flush=True); raise SystemExit(3)"], output=log
        )
        async with asyncio.timeout(30):
            assert await done.wait() == 3
        assert log.tail(1) == ["out"]
        assert done.returncode == 3
        assert not done.running
        killed = await ChildProcess.spawn([sys.executable, "-c", "import time; time.sleep(60)"],
                                          output=OutputLog(None))  # fmt: skip
        assert killed.running
        await killed.kill()
        async with asyncio.timeout(30):
            assert await killed.wait() == -signal.SIGKILL
        with pytest.raises(psutil.NoSuchProcess):
            psutil.Process(killed.pid).status()  # reaped, not a zombie

    run(scenario())


def test_a_chatty_child_never_blocks_on_a_full_pipe(tmp_path: Path, spawn_path: str) -> None:
    script = "import sys\nfor i in range(200000): sys.stdout.write(f'{i} ' * 10 + '\\n')\n"

    async def scenario() -> None:
        log = OutputLog(tmp_path / "chatty.log", max_lines=5)
        proc = await ChildProcess.spawn([sys.executable, "-c", script], output=log)
        async with asyncio.timeout(60):
            assert await proc.wait() == 0
        assert log.tail(1) == ["199999 " * 9 + "199999 "]
        assert (tmp_path / "chatty.log").stat().st_size > 10_000_000 or (
            tmp_path / "chatty.log.1"
        ).exists()

    run(scenario())


# A child that says what it does on stdout and logs on stderr, as a router's child does:
# two log lines, its "ready" line, then a line every 5 ms, and "done" on stdout.
_LOGS_APART = """
import sys, time
sys.stderr.write("loading\\n"); sys.stderr.flush()
time.sleep(0.005)
sys.stderr.write("loaded\\n"); sys.stderr.flush()
time.sleep(0.02)
print("ready", flush=True)
for i in range(20):
    sys.stderr.write(f"log {i}\\n"); sys.stderr.flush()
    time.sleep(0.005)
print("done", flush=True)
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_child_whose_log_is_apart_is_read_in_batches_and_caught_up_on_demand(
    spawn_path: str, loop: str
) -> None:
    # A router's child: what on_output looks for comes on stdout at once; its log lines
    # are read a batch at a time (each one read as it came woke the loop, on the cold
    # path of bench/bench_gateway.py), and a reader of the ring catches up first.
    runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    if loop == "uvloop":
        runner = pytest.importorskip("uvloop").run

    class CountingLog(OutputLog):
        def __init__(self) -> None:
            super().__init__(None)
            self.reads: dict[int, int] = {}

        def feed(self, data: bytes, stream: int = 1) -> None:
            self.reads[stream] = self.reads.get(stream, 0) + 1
            super().feed(data, stream)

    async def scenario() -> None:
        log = CountingLog()
        said: list[bytes] = []
        at_ready: list[list[str]] = []

        def on_output(chunk: bytes) -> None:
            said.append(chunk)
            if chunk.startswith(b"ready"):
                at_ready.append(log.tail(10))

        proc = await ChildProcess.spawn([sys.executable, "-c", _LOGS_APART], output=log,
                                        on_output=on_output, logs_apart=True)  # fmt: skip
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
        logged = ["loading", "loaded", *(f"log {i}" for i in range(20))]
        assert sorted(log.tail(100)) == sorted(["ready", "done", *logged])
        if spawn_path == "asyncio-transport":
            # One pipe for both there (no pidfd: not Linux 5.3+), as without logs_apart.
            assert b"".join(said).count(b"\n") == 2 + len(logged)
            return
        assert b"".join(said) == b"ready\ndone\n"  # stdout only
        # "loaded" came while the log pipe was left unread after "loading": the ring's
        # reader got it all the same, not 50 ms later.
        [seen] = at_ready
        assert {"loading", "loaded"} <= set(seen), seen
        # 20 lines over 100 ms or more: one read each, unless read in batches.
        assert log.reads[2] <= 10, log.reads

    runner(scenario())


def test_the_log_pipe_is_read_to_its_end_when_the_child_exits(
    spawn_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stop waits for the end of the output: a paused log pipe is read on at the exit,
    # not after its pause (a switch waited out 50 ms of it; here it would be 30 s).
    import llamaswitch._process as process_module

    monkeypatch.setattr(process_module, "LOG_READ_PAUSE_S", 30.0)
    script = ("import sys, time\nsys.stderr.write('first\\n'); sys.stderr.flush()\n"
              "time.sleep(0.05)\nsys.stderr.write('last\\n')\n")  # fmt: skip

    async def scenario() -> None:
        log = OutputLog(None)
        proc = await ChildProcess.spawn([sys.executable, "-c", script], output=log,
                                        logs_apart=True)  # fmt: skip
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
        assert log.tail(2) == ["first", "last"]

    run(scenario())


def test_a_child_reads_what_it_is_told_on_its_stdin_which_stays_open(
    spawn_path: str,
) -> None:
    # The pipe is held open (a router's child exits at its end of file) and written to
    # only by tell(), on both spawn paths; a child that has gone is not told.
    script = ("import sys\nprint(sys.stdin.readline().strip(), flush=True)\n"
              "sys.stdin.read()\nprint('end of file', flush=True)\n")  # fmt: skip

    async def scenario() -> None:
        log = OutputLog(None)
        proc = await ChildProcess.spawn([sys.executable, "-c", script], output=log)
        proc.tell(b"cmd_router_to_child:exit\n")
        await async_wait_until(lambda: asyncio.sleep(0, bool(log.tail(1))), 10)
        assert log.tail(1) == ["cmd_router_to_child:exit"]
        await asyncio.sleep(0.2)
        assert proc.running  # the pipe stays open: no end of file
        assert log.tail(1) == ["cmd_router_to_child:exit"]
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == -signal.SIGTERM
        proc.tell(b"nobody\n")  # gone: nothing written, nothing raised

    run(scenario())


def test_children_get_their_own_process_group_and_parent_death_signal(
    tmp_path: Path, spawn_path: str
) -> None:
    script = ("import os, time\nprint(os.getpgid(0), os.getsid(0), "
              "open('/proc/self/status').read().split('PPid:')[1].split()[0], flush=True)\n"
              "time.sleep(60)\n")  # fmt: skip

    async def scenario() -> None:
        log = OutputLog(None)
        proc = await ChildProcess.spawn([sys.executable, "-c", script], output=log)
        try:
            await async_wait_until(lambda: asyncio.sleep(0, bool(log.tail(1))), 10)
            pgid, sid, ppid = map(int, log.tail(1)[0].split())
            assert pgid == sid == proc.pid
            assert ppid == os.getpid()
        finally:
            assert await proc.stop(5.0) == -signal.SIGTERM

    run(scenario())


# -- CPU scheduling (ServerConfig.cpu_scheduling) --------------------------------------------------


def _binary(backends: tuple[str, ...]) -> Any:
    from llamaswitch._binaries import BinaryInfo
    from llamaswitch._capabilities import Capabilities

    caps = Capabilities.from_help("llama-server", "-m, --model FNAME  model path\n", "test")
    return BinaryInfo(kind="llama-server", path=Path("llama-server"), build_number=1,
                      commit=None, compiler=None, release=None, backends=backends,
                      capabilities=caps)  # fmt: skip


@pytest.mark.parametrize(
    ("scheduling", "n_gpu_layers", "backends", "policy"),
    [
        ("auto", None, ("CPU",), "dynamic"),  # computes on the CPU
        ("auto", None, ("BLAS", "CPU"), "dynamic"),
        ("auto", None, ("CPU", "CUDA"), "normal"),  # its CPU thread waits for the GPU
        ("auto", 0, ("CPU", "CUDA"), "dynamic"),  # a GPU build keeping every layer on the CPU
        ("auto", None, (), "normal"),  # backends unknown (a static build): the ordinary policy
        ("batch", None, ("CUDA",), "batch"),
        ("normal", None, ("CPU",), "normal"),
    ],
)
def test_how_each_server_is_scheduled(
    scheduling: str, n_gpu_layers: int | None, backends: tuple[str, ...], policy: str
) -> None:
    from llamaswitch.servers.supervisor import _cpu_policy

    chosen = ServerConfig(cpu_scheduling=scheduling, n_gpu_layers=n_gpu_layers)  # type: ignore[arg-type]
    assert _cpu_policy(chosen, _binary(backends)) == policy


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
def test_a_thread_that_shows_late_in_the_listing_gets_the_policy_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A thread being started while the threads are listed is not in that list, and
    # would keep its creator's old policy for good: the threads are listed again.
    import llamaswitch._process as process_module

    script = textwrap.dedent("""
        import threading, time
        for _ in range(3):
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        print("up", flush=True)
        time.sleep(60)
    """)
    real_listdir = os.listdir
    listings: list[str] = []

    def late_listdir(path: Any) -> list[str]:
        names = real_listdir(path)
        listings.append(str(path))
        # The first listing of the child's threads misses its newest one.
        return sorted(names, key=int)[:-1] if len(listings) == 1 else names

    async def scenario() -> None:
        log = OutputLog(None)
        proc = await ChildProcess.spawn([sys.executable, "-c", script], output=log)
        try:
            await async_wait_until(lambda: asyncio.sleep(0, log.tail(1) == ["up"]), 10)
            assert len(thread_policies(proc.pid)) == 1
            monkeypatch.setattr(process_module.os, "listdir", late_listdir)
            proc.set_batch(True)
            monkeypatch.undo()
            assert listings[0] == f"/proc/{proc.pid}/task"
            assert thread_policies(proc.pid) == {os.SCHED_BATCH}
        finally:
            await proc.kill()
            await proc.wait()

    run(scenario())


def test_sched_batch_from_the_spawn_or_while_more_than_one_request_runs(
    settings: Settings,
) -> None:
    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            batch = await ls.switch("tiny.gguf", config(free_port(), cpu_scheduling="batch"))
            auto = await ls.switch("other.gguf", config(free_port()))
            assert batch.process_id is not None
            assert auto.process_id is not None
            # Every thread: the compute threads and one per connection were created by
            # the process, and took its policy.
            assert thread_policies(batch.process_id) == {os.SCHED_BATCH}
            assert thread_policies(auto.process_id) == {os.SCHED_OTHER}  # no request yet
            assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the spawning thread went back
            supervisor = ls.supervisor
            supervisor.in_flight(auto.port, 1)
            assert thread_policies(auto.process_id) == {os.SCHED_OTHER}  # a lone request
            supervisor.in_flight(auto.port, 2)
            assert thread_policies(auto.process_id) == {os.SCHED_BATCH}
            supervisor.in_flight(auto.port, 5)
            supervisor.in_flight(auto.port, 1)
            assert thread_policies(auto.process_id) == {os.SCHED_OTHER}
            supervisor.in_flight(batch.port, 0)  # a fixed policy stays
            assert thread_policies(batch.process_id) == {os.SCHED_BATCH}
            log = await ls.logs(port=batch.port, lines=5000)
            assert any("(CPU scheduling batch)" in line for line in log)

    run(scenario())
