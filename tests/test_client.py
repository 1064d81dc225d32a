"""The remote client: the library's API over REST, typed, with the library's errors.

Signature parity is checked with ``inspect`` for every name in ``SHARED_METHODS``; the
real-service tests drive a real ``llamaswitch serve`` (a subprocess, real llama.cpp
binaries, tiny models) through ``RemoteLlamaSwitch`` and ``AsyncRemoteLlamaSwitch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llamaswitch import (
    AsyncLlamaSwitch,
    BenchConfig,
    BenchTask,
    Comparison,
    LlamaSwitch,
    ModelInfo,
    ServerConfig,
    ServerState,
    ServerStatus,
)
from llamaswitch._errors import (
    BadResponseError,
    ModelNotFoundError,
    PortInUseError,
    RequestError,
    ServerNotFoundError,
    ServiceUnreachableError,
    TaskNotFoundError,
    UnauthorizedError,
)
from llamaswitch.client import SHARED_METHODS, AsyncRemoteLlamaSwitch, RemoteLlamaSwitch
from tests.conftest import LlamaBuild
from tests.helpers import free_port
from tests.rest.conftest import ServeProcess, serve

PAIRS = [(RemoteLlamaSwitch, LlamaSwitch), (AsyncRemoteLlamaSwitch, AsyncLlamaSwitch)]


# -- the same API ------------------------------------------------------------------------------


def _shape(fn: Callable[..., Any]) -> list[tuple[str, Any, Any, Any]]:
    """What a caller sees of a signature: names, kinds, defaults, annotations."""
    signature = inspect.signature(fn)
    shape = [(p.name, p.kind, p.default, p.annotation) for p in signature.parameters.values()]
    return [*shape, ("return", None, None, signature.return_annotation)]


@pytest.mark.parametrize(("remote", "local"), PAIRS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", SHARED_METHODS)
def test_every_shared_method_has_the_librarys_signature(
    remote: type, local: type, name: str
) -> None:
    mine, theirs = getattr(remote, name), getattr(local, name)
    assert _shape(mine) == _shape(theirs)
    assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(theirs)
    overloads = [_shape(f) for f in typing.get_overloads(mine)]
    assert overloads == [_shape(f) for f in typing.get_overloads(theirs)]


@pytest.mark.parametrize(("remote", "local"), PAIRS, ids=lambda c: c.__name__)
def test_every_shared_method_exists_and_is_documented(remote: type, local: type) -> None:
    assert len(set(SHARED_METHODS)) == len(SHARED_METHODS)
    for name in SHARED_METHODS:
        assert callable(getattr(local, name)), name
        assert getattr(remote, name).__doc__, name


def test_the_async_client_awaits_what_the_async_library_awaits() -> None:
    for name in SHARED_METHODS:
        assert inspect.iscoroutinefunction(getattr(AsyncRemoteLlamaSwitch, name)), name
        assert not inspect.iscoroutinefunction(getattr(RemoteLlamaSwitch, name)), name


# -- the connection ------------------------------------------------------------------------------


def test_a_url_nobody_serves_is_unreachable() -> None:
    with (
        RemoteLlamaSwitch(f"http://127.0.0.1:{free_port()}") as ls,
        pytest.raises(ServiceUnreachableError, match="cannot reach llamaswitch"),
    ):
        ls.list_models()


def test_a_service_that_never_answers_times_out_as_unreachable() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # connections queue in the kernel; nobody ever answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with RemoteLlamaSwitch(url, timeout_s=0.3) as ls, pytest.raises(ServiceUnreachableError):
            ls.list_models()
        assert time.monotonic() - started < 5


def test_an_answer_that_is_not_llamaswitchs_is_a_bad_response() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>hi</html>"))
    with (
        RemoteLlamaSwitch("http://llamaswitch.test", transport=transport) as ls,
        pytest.raises(BadResponseError, match="not a llamaswitch response"),
    ):
        ls.list_models()


def test_the_key_is_sent_as_a_bearer_token_on_the_api_prefix() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True, "message": "ok", "data": [],
                                         "error": ""})  # fmt: skip

    transport = httpx.MockTransport(answer)
    with RemoteLlamaSwitch("http://box:9000/", api_key="s3cret", transport=transport) as ls:
        assert ls.list_models() == []
        assert ls.list_benchmarks(model="tiny.gguf", limit=5) == []
    assert [str(r.url) for r in seen] == [
        "http://box:9000/api/v1/models",
        "http://box:9000/api/v1/benchmarks?model=tiny.gguf&limit=5",
    ]
    assert all(r.headers["Authorization"] == "Bearer s3cret" for r in seen)


def test_wait_and_force_are_sent_as_the_routes_query_flags() -> None:
    seen: list[httpx.Request] = []
    status = {"running": True, "model_name": "tiny.gguf", "model_path": "/m/tiny.gguf",
              "port": 8091, "start_time": None, "process_id": 1, "vram_usage": None,
              "state": "ready", "host": "127.0.0.1", "url": "http://127.0.0.1:8091",
              "ready_after_s": 0.1, "rss_mib": None, "cpu_percent": None, "exit_code": None,
              "exited_at": None, "error": None, "config": {}, "argv": [],
              "binary_version": "b1", "vram_per_gpu_mib": None, "restarts": 0}  # fmt: skip

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        data = [status] if request.url.path.endswith("/stop") else status
        return httpx.Response(200, json={"success": True, "message": "ok", "data": data,
                                         "error": ""})  # fmt: skip

    with RemoteLlamaSwitch("http://box:9000", transport=httpx.MockTransport(answer)) as ls:
        assert ls.switch("tiny.gguf", force=True).port == 8091
        ls.switch("tiny.gguf", wait=False)
        ls.start("tiny.gguf")
        assert [s.port for s in ls.stop(port=8091, force=True)] == [8091]
        ls.stop()
    assert [(r.url.path, str(r.url.query, "ascii")) for r in seen] == [
        ("/api/v1/model/switch", "wait=true&force=true"),
        ("/api/v1/model/switch", ""),
        ("/api/v1/model/start", "wait=true"),
        ("/api/v1/model/stop", "force=true"),
        ("/api/v1/model/stop", ""),
    ]


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(RequestError, match="not an http"):
        RemoteLlamaSwitch("ftp://example.org")


# -- against a real service ----------------------------------------------------------------------


@pytest.fixture
def service(llama_build: LlamaBuild, models_dir: Path, tmp_path: Path) -> Iterator[ServeProcess]:
    """A real ``llamaswitch serve`` with one generation's binaries and an API key."""
    port = free_port()
    env = {
        "LLAMA_SERVER_PATH": str(llama_build.server.path),
        "LLAMA_BENCH_PATH": str(llama_build.bench.path),
        "MODELS_DIR": str(models_dir),
        "LLAMASWITCH_STATE_DIR": str(tmp_path / "state"),
        "SERVER_PORT": str(port),
        "LLAMASWITCH_API_KEY": "s3cret",
        "LLAMASWITCH_STOP_TIMEOUT_S": "5",
    }
    with serve(["serve"], env, tmp_path, port) as served:
        yield served
        assert served.stop() == 0, served.text()


@pytest.mark.real_binary
def test_the_client_drives_a_real_service(service: ServeProcess) -> None:
    model_port = free_port()
    with RemoteLlamaSwitch(service.url, api_key="s3cret") as ls:
        models = ls.list_models()
        assert all(isinstance(m, ModelInfo) for m in models)
        assert sorted(m.name for m in models) == ["other.gguf", "tiny.gguf"]

        started = ls.switch("tiny.gguf", ServerConfig(port=model_port, ctx_size=256))
        assert isinstance(started, ServerStatus)
        assert (started.state, started.port, started.running) == (ServerState.READY,
                                                                  model_port, True)  # fmt: skip
        assert isinstance(started.config, ServerConfig)
        assert started.config.ctx_size == 256

        status = ls.status(port=model_port)
        assert isinstance(status, ServerStatus)
        assert status.state is ServerState.READY
        assert status.process_id == started.process_id
        assert status.start_time is not None
        assert status.start_time.tzinfo is not None
        assert [s.port for s in ls.status()] == [model_port]
        assert ls.status("tiny.gguf").port == model_port
        assert ls.logs(port=model_port, lines=3)
        assert ls.server_key(port=model_port) is None  # loopback: no key of its own

        with pytest.raises(PortInUseError) as caught:  # another llamaswitch server holds it
            ls.start("other.gguf", ServerConfig(port=model_port))
        assert caught.value.port == model_port

        stopped = ls.stop(port=model_port)
        assert [(s.port, s.state) for s in stopped] == [(model_port, ServerState.STOPPED)]
        assert ls.status() == []

        task_id = ls.submit_benchmark("tiny.gguf", BenchConfig(n_prompt=16, n_gen=4,
                                                              repetitions=1))  # fmt: skip
        task = ls.wait_benchmark(task_id, timeout_s=120)
        assert isinstance(task, BenchTask)
        assert (task.id, task.state) == (task_id, "completed")
        assert [r.test for r in task.results] == ["pp16", "tg4"]
        assert task.results[0].avg_ts is not None
        assert task.config == BenchConfig(n_prompt=16, n_gen=4, repetitions=1)
        assert ls.benchmark_status(task_id) == task
        assert [t.id for t in ls.list_benchmarks(model="tiny.gguf")] == [task_id]
        comparison = ls.compare_benchmarks([task_id])
        assert isinstance(comparison, Comparison)
        assert [row.test for row in comparison.rows] == ["pp16", "tg4"]
        assert ls.delete_benchmark(task_id).id == task_id
        assert ls.list_benchmarks() == []


@pytest.mark.real_binary
def test_the_services_errors_come_back_as_the_librarys(service: ServeProcess) -> None:
    with RemoteLlamaSwitch(service.url, api_key="s3cret") as ls:
        with pytest.raises(ModelNotFoundError) as missing:
            ls.switch("tiny2.gguf")
        assert "tiny.gguf" in missing.value.suggestions
        with pytest.raises(ServerNotFoundError):
            ls.status(port=free_port())
        with pytest.raises(TaskNotFoundError):
            ls.benchmark_status("nope")
    with RemoteLlamaSwitch(service.url) as anonymous, pytest.raises(UnauthorizedError):
        anonymous.list_models()
    with RemoteLlamaSwitch(service.url, api_key="wrong") as wrong, pytest.raises(UnauthorizedError):
        wrong.status()


@pytest.mark.real_binary
def test_the_async_client_drives_a_real_service_and_sees_its_events(
    service: ServeProcess,
) -> None:
    async def scenario() -> list[tuple[str, str]]:
        async with AsyncRemoteLlamaSwitch(service.url, api_key="s3cret") as ls:
            seen: list[tuple[str, str]] = []

            async def watch() -> None:
                # Until the ready server's stop: a start whose first port could not be
                # bound (TIME_WAIT connections of an earlier server) has its failed record
                # stopped first, and goes on on another port.
                ready_ports: set[int] = set()
                async for event in ls.subscribe():
                    if event.topic != "server":
                        continue
                    state, port = str(event.data["state"]), event.data["port"]
                    seen.append((event.type, state))
                    if state == "ready":
                        ready_ports.add(port)
                    if state == "stopped" and port in ready_ports:
                        return

            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0.3)  # subscribed before anything happens
            status = await ls.start("other.gguf")
            assert status.state is ServerState.READY
            assert [s.model_name for s in await ls.status()] == ["other.gguf"]
            assert [s.state for s in await ls.stop()] == [ServerState.STOPPED]
            await asyncio.wait_for(watcher, 30)
            with contextlib.suppress(asyncio.CancelledError):
                watcher.cancel()
            return seen

    seen = asyncio.run(scenario())
    assert seen[0] == ("state", "starting")
    assert ("state", "ready") in seen
    assert seen[-1] == ("state", "stopped")
