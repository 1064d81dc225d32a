"""Helpers for the gateway tests: a folder of tiny models, an in-process service on a real
socket, the official clients pointed at it, and a record of the core's events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import openai
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner

from llamaswitch._api import AsyncLlamaSwitch
from llamaswitch._events import Event
from llamaswitch._settings import Settings
from llamaswitch.testing import write_tiny_model
from llamaswitch_http import create_app
from llamaswitch_http._state import CORE
from tests.conftest import LlamaBuild
from tests.rest.conftest import make_settings

#: Enough context for a chat template (about 50 tokens) and a reply on every slot.
CONTEXT = 2048
MESSAGES: list[Any] = [{"role": "user", "content": "Say something."}]


def write_models(folder: Path, *names: str) -> Path:
    """Tiny models ``<name>.gguf`` (alpha, beta... by default) in ``folder``."""
    for seed, name in enumerate(names or ("alpha", "beta"), start=1):
        write_tiny_model(folder / f"{name}.gguf", name=name, seed=seed, context_length=CONTEXT)
    return folder


def gateway_settings(
    build: LlamaBuild, root: Path, *, presets: str | None = None, **overrides: Any
) -> Settings:
    """Settings on a build, a models folder with alpha and beta (unless there is one), and
    a presets file: ``[defaults] ctx_size`` plus ``presets``."""
    models = root / "models"
    if not models.exists():
        write_models(models)
    text = f"[defaults]\nctx_size = {CONTEXT}\n" + (presets or "")
    (models / "llamaswitch.toml").write_text(text)
    return make_settings(build, models, root / "state", **overrides)


@attrs.define
class Gateway:
    """A running service: its test client, its core, the URLs the clients use, and the
    core's events since it opened."""

    client: TestClient[Any, Any]
    core: AsyncLlamaSwitch
    events: list[Event]

    @property
    def url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    def openai(self, **options: Any) -> openai.AsyncOpenAI:
        """The official client on the gateway (no retries: a test sees every answer)."""
        options.setdefault("api_key", "unused")
        options.setdefault("max_retries", 0)
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", **options)

    async def complete(self, model: str) -> None:
        """One short completion of ``model`` through the official client (it loads the
        model if it is not served)."""
        client = self.openai()
        try:
            await client.completions.create(model=model, prompt="x", max_tokens=2)
        finally:
            await client.close()

    async def model_entry(self, model: str) -> dict[str, Any]:
        """``model``'s entry in ``GET /v1/models``."""
        listed = await (await self.client.get("/v1/models")).json()
        return next(e for e in listed["data"] if e["id"] == model)

    def of(self, topic: str, type_: str | None = None) -> list[Event]:
        return [e for e in self.events if e.topic == topic and (type_ is None or e.type == type_)]


class ServedAsInProduction(TestServer):
    """aiohttp's test server, but run as ``serve`` runs it: handlers are not cancelled
    when their client disconnects (the test server's default), so the gateway's own
    disconnect detection is what the tests see."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        kwargs["handler_cancellation"] = False
        return await super()._make_runner(**kwargs)


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *, cancel_handlers: bool = False, **app_options: Any
) -> AsyncIterator[Gateway]:
    """The service in-process on a real socket; the events recorded as they come.
    ``cancel_handlers``: as aiohttp's test server runs apps (a handler is cancelled when
    its client disconnects), rather than as ``serve`` does."""
    app = create_app(settings=settings, **app_options)
    server = TestServer(app) if cancel_handlers else ServedAsInProduction(app)
    async with TestClient(server) as client:
        core = app[CORE]
        events: list[Event] = []

        async def record() -> None:
            with core.subscribe() as subscription:
                async for event in subscription:
                    events.append(event)  # noqa: PERF401 - live, one by one

        recorder = asyncio.create_task(record())
        await asyncio.sleep(0)  # subscribed before the first request
        try:
            yield Gateway(client, core, events)
        finally:
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder


async def until(predicate: Any, timeout_s: float = 10.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` is true (polled every 20 ms)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
