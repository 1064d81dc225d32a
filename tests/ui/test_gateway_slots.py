"""The sections that wait for the gateway fill in once the service offers its routes.

The gateway does not exist yet, so this serves the real app with stand-in routes added
(and listed in its OpenAPI document), answering in the shapes docs/dashboard.md names:
a fake only because the real thing is still to come. When the gateway lands, these
sections should pass against it unchanged; drop the stand-ins then.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from llamaswitch_http import create_app
from llamaswitch_http._state import OPENAPI
from tests.helpers import free_port
from tests.rest.conftest import make_settings
from tests.ui.conftest import Service, Ui, _open_ui

MODELS = {
    "object": "list",
    "data": [
        {"id": "tiny.gguf", "object": "model", "state": "ready", "aliases": ["tiny"],
         "estimated_mib": 512.0, "measured_mib": 480.5},
    ],
}  # fmt: skip
REQUESTS = [
    {"id": "r3", "model": "tiny.gguf", "route": "/v1/chat/completions", "state": "queued",
     "status": None, "queue_wait_s": None, "load_wait_s": None, "ttft_s": None, "tokens": None,
     "tokens_per_s": None, "started_at": "2026-01-01T00:00:02.000Z", "finished_at": None},
    {"id": "r2", "model": "other.gguf", "route": "/v1/completions", "state": "running",
     "status": None, "queue_wait_s": 0.01, "load_wait_s": 0.25, "ttft_s": None, "tokens": None,
     "tokens_per_s": None, "started_at": "2026-01-01T00:00:01.000Z", "finished_at": None},
    {"id": "r1", "model": "tiny.gguf", "route": "/v1/chat/completions", "state": "done",
     "status": 200, "queue_wait_s": 0.002, "load_wait_s": 0.0, "ttft_s": 0.045, "tokens": 12,
     "tokens_per_s": 240.5, "started_at": "2026-01-01T00:00:00.000Z",
     "finished_at": "2026-01-01T00:00:00.300Z"},
]  # fmt: skip
PLAN = {
    "devices": [
        {"id": "ram", "name": "RAM", "total_mib": 24000, "used_mib": 1000,
         "estimated_mib": 1500, "budget_mib": 19200},
        {"id": "gpu0", "name": "GPU 0", "total_mib": 8192, "used_mib": 4096,
         "estimated_mib": 5000, "budget_mib": 7000},
    ]
}  # fmt: skip
PRESETS = [{"name": "fast", "model": "tiny.gguf", "config": {"ctx_size": 256}}]
REPLY = ["Hel", "lo, ", "llama"]


def _envelope(data: object) -> web.Response:
    return web.json_response({"success": True, "message": "ok", "data": data, "error": ""})


async def _models(request: web.Request) -> web.Response:
    return web.json_response(MODELS)


async def _requests(request: web.Request) -> web.Response:
    return _envelope(REQUESTS)


async def _plan(request: web.Request) -> web.Response:
    model = request.query.get("model")
    return _envelope({"model": model, "fits": True, "evict": []} if model else PLAN)


async def _presets(request: web.Request) -> web.Response:
    return _envelope(PRESETS)


async def _chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    assert body["stream"] is True
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for piece in REPLY:
        chunk = {"object": "chat.completion.chunk", "model": body["model"],
                 "choices": [{"index": 0, "delta": {"content": piece}}]}  # fmt: skip
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await asyncio.sleep(0.05)
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


ROUTES = [
    ("GET", "/v1/models", _models),
    ("GET", "/api/v1/gateway/requests", _requests),
    ("GET", "/api/v1/gateway/plan", _plan),
    ("GET", "/api/v1/presets", _presets),
    ("POST", "/v1/chat/completions", _chat),
]


@pytest.fixture(scope="module")
def gateway_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The real app plus stand-in gateway routes, served on a thread of its own."""
    from llamaswitch.testing import write_tiny_model

    tmp = tmp_path_factory.mktemp("ui-gateway")
    models = tmp / "models"
    write_tiny_model(models / "tiny.gguf", name="tiny", seed=1)
    write_tiny_model(models / "other.gguf", name="other", seed=2, block_count=1)
    settings = make_settings(None, models, tmp / "state")
    app = create_app(settings=settings)
    document = json.loads(app[OPENAPI])
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
        document["paths"].setdefault(path, {})[method.lower()] = {"responses": {"200": {}}}
    app[OPENAPI] = json.dumps(document).encode()

    # Everything on the thread's own loop: Playwright keeps a loop running on this one.
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    port = free_port()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="gateway-stand-in", daemon=True)
    thread.start()
    assert ready.wait(30), "the stand-in service did not start"
    try:
        yield Service(None, f"http://127.0.0.1:{port}", Path(models), None)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def gui(browser: Any, gateway_service: Service) -> Iterator[Ui]:
    """A fresh page on the service with gateway routes."""
    yield from _open_ui(browser, gateway_service)


def test_models_show_estimated_memory_presets_and_the_plan(gui: Ui) -> None:
    page = gui.open("models")
    tiny = page.locator("#models-table tr[data-model='tiny.gguf'] td")
    assert tiny.nth(6).inner_text() == "512 MiB"
    assert tiny.nth(7).inner_text() == "481 MiB"  # no server runs: the gateway's measure
    assert page.locator("#catalog [data-unavailable]").count() == 0
    assert page.locator("#presets-table tbody tr td").first.inner_text() == "fast"
    page.locator("#serve-model").select_option("tiny.gguf")
    page.locator("#plan dl").wait_for()
    assert "fits" in page.locator("#plan").inner_text()
    gui.shot("models-with-gateway")


def test_overview_shows_memory_budgets_and_the_gateway_queue(gui: Ui) -> None:
    page = gui.open("overview")
    page.locator("#memory .membar[data-device='GPU 0']").wait_for()
    ram = page.locator("#memory .membar[data-device='RAM']").inner_text()
    assert "estimated 1.46 GiB" in ram
    assert "budget 18.75 GiB" in ram
    assert page.locator("#memory [data-unavailable]").count() == 0
    assert page.locator("#gateway-counts").inner_text() == "1 queued, 1 in flight."
    gui.shot("overview-with-gateway")


def test_activity_lists_requests_and_the_playground_streams_a_reply(gui: Ui) -> None:
    page = gui.open("activity")
    rows = page.locator("#requests-table tbody tr")
    assert rows.count() == 3
    done = rows.nth(2).locator("td").all_inner_texts()
    assert done[1:] == ["tiny.gguf", "/v1/chat/completions", "done", "200", "2 ms", "0 ms",
                        "45 ms", "12", "240.5"]  # fmt: skip
    page.locator("#chat-model").select_option("tiny.gguf")
    page.locator("#chat-prompt").fill("Say hello")
    page.get_by_role("button", name="Send").click()
    page.locator("#chat-output:has-text('Hello, llama')").wait_for()
    gui.shot("activity-with-gateway")
    assert gui.axe() == []
