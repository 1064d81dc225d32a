"""Helpers for the REST service tests: settings on real builds, in-process clients, and
real ``llamaswitch serve`` subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from llamaswitch._settings import Settings
from llamaswitch_http import create_app
from tests.conftest import LlamaBuild
from tests.helpers import free_port, free_range

T = TypeVar("T")

ENVELOPE_KEYS = {"success", "message", "data", "error"}


def make_settings(
    build: LlamaBuild | None, models_dir: Path, state_dir: Path, **overrides: Any
) -> Settings:
    """Settings on a build's binaries, a tmp state folder, and ports nobody else uses."""
    # Not the default 8090-8190: other test runs on this machine use it.
    low, high = free_range()
    # The API's own port is the free one just below the range (free_range's promise);
    # the default model port is another one, outside the range.
    api_port = low - 1
    model_port = free_port()
    while model_port == api_port or low <= model_port <= high:
        model_port = free_port()
    values: dict[str, Any] = {
        "models_dir": models_dir,
        "state_dir": state_dir,
        "server_port": api_port,
        "default_model_port": model_port,
        "model_ports": (low, high),
        "stop_timeout_s": 5.0,
        "ready_timeout_s": 60.0,
    }
    if build is not None:
        values["llama_server_path"] = build.server.path
        values["llama_bench_path"] = build.bench.path
    values.update(overrides)
    return Settings(**values)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one scenario on a fresh event loop (the app and its servers live on it)."""
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def client_for(settings: Settings, **app_options: Any) -> AsyncIterator[TestClient[Any, Any]]:
    """An in-process service (the core opened and closed by the app) and a client."""
    app = create_app(settings=settings, **app_options)
    async with TestClient(TestServer(app)) as client:
        yield client


async def call(
    client: TestClient[Any, Any],
    method: str,
    path: str,
    *,
    status: int | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """One request; checks the envelope (and the status, if given) and returns it."""
    response = await client.request(method, path, **kwargs)
    text = await response.text()
    body: dict[str, Any] = json.loads(text)
    check_envelope(body, response.status)
    if status is not None:
        assert response.status == status, (response.status, body)
    body["_status"] = response.status
    return body


def check_envelope(body: Mapping[str, Any], status: int) -> None:
    """The seed's envelope: four keys, ``error`` empty exactly on success."""
    assert set(body) == ENVELOPE_KEYS, body
    assert isinstance(body["message"], str)
    assert body["message"]
    if status < 400:
        assert body["success"] is True, body
        assert body["error"] == "", body
    else:
        assert body["success"] is False, body
        assert isinstance(body["error"], str), body
        assert body["error"], body
        assert isinstance(body["data"], dict)
        assert isinstance(body["data"].get("code"), str)


async def wait_task(
    client: TestClient[Any, Any], task_id: str, timeout_s: float = 120.0
) -> dict[str, Any]:
    """Poll ``benchmark/status`` until the task ends; its data."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = await call(client, "GET", f"/api/v1/benchmark/status?task_id={task_id}", status=200)
        if body["data"]["state"] not in ("queued", "running"):
            return dict(body["data"])
        assert time.monotonic() < deadline, body["data"]
        await asyncio.sleep(0.1)


# -- real `llamaswitch serve` processes -------------------------------------------------


@attrs.define
class ServeProcess:
    """A running ``llamaswitch serve`` and what it printed so far."""

    process: subprocess.Popen[str]
    url: str
    output: list[str]

    def text(self) -> str:
        """Everything printed so far (stdout and stderr)."""
        return "".join(self.output)

    def request(
        self, method: str, path: str, body: object = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """One request with the standard library; (status, parsed JSON)."""
        data = None if body is None else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json"} if body is not None else {}
        all_headers.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, headers=all_headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)


def serve_env(settings_env: Mapping[str, str]) -> dict[str, str]:
    """This environment without llamaswitch's keys, plus ``settings_env``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LLAMASWITCH_")
        and k
        not in {
            "LLAMA_SERVER_PATH",
            "LLAMA_BENCH_PATH",
            "MODELS_DIR",
            "SERVER_PORT",
            "GPU_LAYERS",
            "CONFIG_PATH",
        }
    }
    env.update(settings_env)
    return env


@contextlib.contextmanager
def serve(
    args: list[str], env: Mapping[str, str], cwd: Path, port: int, *, ready_s: float = 60.0
) -> Iterator[ServeProcess]:
    """Run ``llamaswitch serve ARGS`` until its health route answers; SIGTERM at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "llamaswitch", *args],
        env=serve_env(env),
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output: list[str] = []

    def drain() -> None:
        assert process.stdout is not None
        output.extend(process.stdout)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    served = ServeProcess(process, f"http://127.0.0.1:{port}", output)
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if process.poll() is not None:
                reader.join(5)
                pytest.fail(f"serve exited with {process.returncode}:\n{served.text()}")
            with contextlib.suppress(OSError):
                status, _ = served.request("GET", "/api/v1/health")
                if status == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"serve did not answer within {ready_s} s:\n{served.text()}")
            time.sleep(0.05)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(5)


class LiveService:
    """The service on a real socket, its loop in a thread that lives as long as it does
    (model servers are tied to the thread that forked them)."""

    def __init__(self, app: web.Application, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._app = app
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="service", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self._port).start()
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def __enter__(self) -> LiveService:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
