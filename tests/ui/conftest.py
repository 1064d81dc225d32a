"""Fixtures of the dashboard's browser tests.

- ``service``: a real ``llamaswitch serve`` (one per module) on the current llama.cpp
  build, with two tiny real models and a presets file whose ``[defaults]`` give the
  gateway's servers room for a chat. After each test every model server is stopped and
  every tune and benchmark still active is cancelled, so tests stay independent (the
  suite's leak check then finds nothing).
- ``serve_in_thread(app)``: an app (built around a core a test made, with a fake GPU, say)
  served on a thread and a loop of its own, since Playwright's sync API keeps a loop
  running on the test's thread; ``InProcess.call_soon(coro)`` runs a coroutine on the
  app's loop (to hold a gateway lease, say).
- ``browser``: Debian's Chromium (``/usr/bin/chromium``) driven by Playwright, started as
  the field notes say; Playwright gives each launch a fresh profile folder of its own
  (it refuses ``--user-data-dir`` in ``launch``). Closed at the end of each module, and
  a Chromium process left behind fails the run.
- ``ui``: a fresh browser context and page per test (so sessionStorage starts empty),
  which records console errors and page errors; any left at the end fails the test.
  ``ui.axe()`` runs axe-core from ``ui/node_modules``; ``ui.shot(name)`` writes a
  screenshot to ``test-artifacts/screenshots/``.

Chromium, Playwright or axe-core missing: the test is skipped with the command that
installs it, except under ``CI=true``, where it fails (as missing llama.cpp builds do).
The browser tests use the current llama.cpp generation only: the pages show what the
REST API returns, and the REST tests cover both generations.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import attrs
import psutil
import pytest
from aiohttp import web

from llamaswitch.testing import HEADLESS_CHROMIUM_ARGS, write_tiny_model
from tests.conftest import IN_CI, require_build
from tests.helpers import free_port, free_range
from tests.rest.conftest import ServeProcess, serve

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("LLAMASWITCH_CHROMIUM", "/usr/bin/chromium"))
AXE = ROOT / "ui" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
READY_TIMEOUT_MS = 15_000
#: Models with room for a chat template and a reply on each of the gateway's slots.
CONTEXT = 2048
PRESETS = "[defaults]\nctx_size = 1024\n"


def need(condition: bool, reason: str) -> None:
    """Skip without ``condition``; under CI=true fail instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


# -- the service ------------------------------------------------------------------------


@attrs.define
class Service:
    """A running service (``llamaswitch serve``, or an app served in-process) and how to
    call it."""

    process: ServeProcess | None
    url: str
    models_dir: Path
    key: str | None

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """One API request (with the key, if any); (status, envelope)."""
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    def data_json(self, path: str) -> Any:
        """A GET answered without the envelope (``/v1/models``)."""
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        request = urllib.request.Request(self.url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def openai(self, path: str, body: object, timeout_s: float = 60.0) -> tuple[int, Any]:
        """One gateway request (``/v1/...``, answered without the envelope)."""
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(
            self.url + path, json.dumps(body).encode(), headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    def complete(self, model: str, max_tokens: int = 4) -> dict[str, Any]:
        """A real chat completion through the gateway (which loads ``model`` if needed)."""
        status, answer = self.openai("/v1/chat/completions", {
            "model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Say something."}],
        })  # fmt: skip
        assert status == 200, answer
        return dict(answer)

    def data(self, method: str, path: str, body: object = None) -> Any:
        """The ``data`` of a successful call."""
        status, envelope = self.call(method, path, body)
        assert status < 400, (status, envelope)
        return envelope["data"]

    def wait(self, predicate: Any, what: str, timeout_s: float = 60.0) -> Any:
        """Poll ``predicate()`` until it returns something truthy."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    def finished_task(self, task_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
        """A benchmark task once it has ended."""

        def ended() -> dict[str, Any] | None:
            task: dict[str, Any] = self.data("GET", f"/api/v1/benchmark/status?task_id={task_id}")
            return None if task["state"] in {"queued", "running"} else task

        done: dict[str, Any] = self.wait(ended, f"benchmark {task_id}", timeout_s)
        return done

    def benchmark(self, model: str, config: dict[str, Any]) -> dict[str, Any]:
        """Run a benchmark through the API, to completion."""
        task = self.data("POST", "/api/v1/benchmark", {"model_path": model, "config": config})
        done = self.finished_task(task["id"])
        assert done["state"] == "completed", done
        return done

    def finished_tune(self, tune_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
        """A tune once it has stopped."""

        def ended() -> dict[str, Any] | None:
            tune: dict[str, Any] = self.data("GET", f"/api/v1/tune/status?tune_id={tune_id}")
            return None if tune["state"] == "running" else tune

        done: dict[str, Any] = self.wait(ended, f"tune {tune_id}", timeout_s)
        return done

    def tune(self, body: dict[str, Any]) -> dict[str, Any]:
        """Run a tune through the API, to completion."""
        tune = self.data("POST", "/api/v1/tune", body)
        done = self.finished_tune(tune["id"])
        assert done["state"] == "completed", done
        return done

    def clean_up(self) -> None:
        """Stop every model server; cancel every tune still running, then every benchmark
        still queued or running (a tune's trial cancelled alone would start the next)."""
        for tune in self.data("GET", "/api/v1/tunes?limit=1000"):
            if tune["state"] == "running":
                self.call("POST", f"/api/v1/tune/cancel?tune_id={tune['id']}")
        for state in ("running", "queued"):
            for task in self.data("GET", f"/api/v1/benchmarks?state={state}&limit=1000"):
                self.call("POST", f"/api/v1/benchmark/cancel?task_id={task['id']}")
        self.call("POST", "/api/v1/model/stop")


def write_models(models: Path, presets: str = PRESETS) -> Path:
    """The two tiny models every browser test uses, and the presets file."""
    write_tiny_model(models / "tiny.gguf", name="tiny", seed=1, context_length=CONTEXT)
    write_tiny_model(
        models / "other.gguf", name="other", seed=2, block_count=1, context_length=CONTEXT
    )
    (models / "llamaswitch.toml").write_text(presets, encoding="utf-8")
    return models


def _start_service(tmp: Path, *, key: str | None = None) -> Iterator[Service]:
    build = require_build("current")
    models = write_models(tmp / "models")
    low, high = free_range()
    port = free_port()
    while low <= port <= high:
        port = free_port()
    env = {
        "LLAMA_SERVER_PATH": str(build.server.path),
        "LLAMA_BENCH_PATH": str(build.bench.path),
        "MODELS_DIR": str(models),
        "LLAMASWITCH_STATE_DIR": str(tmp / "state"),
        "SERVER_PORT": str(port),
        "LLAMASWITCH_MODEL_PORTS": f"{low}-{high}",
        "LLAMASWITCH_DEFAULT_MODEL_PORT": str(low),
        "LLAMASWITCH_STOP_TIMEOUT_S": "5",
    }
    if key is not None:
        env["LLAMASWITCH_API_KEY"] = key
    with serve(["serve"], env, tmp, port) as process:
        service = Service(process, process.url, models, key)
        try:
            yield service
        finally:
            with contextlib.suppress(OSError, AssertionError):
                service.clean_up()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real ``llamaswitch serve`` without an API key, for one test module."""
    yield from _start_service(tmp_path_factory.mktemp("ui-service"))


@attrs.define
class InProcess:
    """An app served on a thread of its own (see :func:`serve_in_thread`)."""

    app: web.Application
    loop: asyncio.AbstractEventLoop
    url: str

    def call_soon(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Run ``coro`` on the app's loop; its future (``.result(timeout)`` to wait)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 60.0) -> Any:
        """Run ``coro`` on the app's loop and wait for its result."""
        return self.call_soon(coro).result(timeout_s)


@contextlib.contextmanager
def serve_in_thread(app: web.Application) -> Iterator[InProcess]:
    """Serve ``app`` on 127.0.0.1 from a thread with its own event loop (its model
    servers are forked from that thread, which lives as long as the app); cleaned up
    (servers stopped) on the way out."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, handler_cancellation=False)  # as ``serve`` runs it
    port = free_port()
    ready = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        except BaseException as exc:  # handed to the test's thread, raised there
            failed.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="ui-app", daemon=True)
    thread.start()
    assert ready.wait(60), "the app did not start"
    if failed:
        raise failed[0]
    try:
        yield InProcess(app, loop, f"http://127.0.0.1:{port}")
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# -- the browser ------------------------------------------------------------------------


def _chromium_processes() -> list[psutil.Process]:
    found = []
    with contextlib.suppress(psutil.Error):
        for proc in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "chrom" in proc.name().lower() and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright, for one test module.

    Not for the session: while Playwright's sync API is open it keeps an event loop
    running on this thread, and every later ``asyncio.run`` (the REST tests) would fail.
    """
    need(CHROMIUM.exists(), f"no Chromium at {CHROMIUM}: run `apt-get install -y chromium`")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "Python Playwright is missing: run `.venv/bin/pip install -e '.[test]'`")
        raise
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(HEADLESS_CHROMIUM_ARGS)
        )
        try:
            yield chromium
        finally:
            chromium.close()
    deadline = time.monotonic() + 5
    while _chromium_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _chromium_processes()
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    assert not left, f"Chromium processes outlived the browser: {[p.pid for p in left]}"


@attrs.define
class Ui:
    """One page of a fresh browser context, and what the browser said on it."""

    page: Any
    service: Service
    console_errors: list[str] = attrs.Factory(list)
    #: (status, URL) of refused requests a test provokes on purpose.
    allowed_http_errors: set[tuple[int, str]] = attrs.Factory(set)

    def open(self, name: str, query: str = "") -> Any:
        """Load the dashboard on page ``name`` (a fresh document) and wait until it has
        rendered its data."""
        self.page.goto(f"{self.service.url}/ui/#/{name}{'?' + query if query else ''}")
        self.wait_ready(name)
        return self.page

    def wait_ready(self, name: str) -> None:
        """Wait for ``<main data-ready=NAME>``: the page shows its first data."""
        self.page.wait_for_selector(f"main[data-ready='{name}']", timeout=READY_TIMEOUT_MS)

    def go(self, name: str) -> None:
        """Navigate inside the page (a hash change, as a click on the menu does)."""
        self.page.evaluate("name => { location.hash = '#/' + name; }", name)
        self.wait_ready(name)

    def axe(self) -> list[dict[str, Any]]:
        """axe-core's serious and critical violations on the page as it is."""
        need(AXE.exists(), f"axe-core is missing ({AXE}): run `npm ci --prefix ui`")
        # Evaluated through the DevTools protocol, which the page's CSP does not govern:
        # an injected <script> tag would be (rightly) refused by it.
        if not self.page.evaluate("typeof window.axe !== 'undefined'"):
            self.page.evaluate(AXE.read_text(encoding="utf-8"))
        result = self.page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        )
        serious = [v for v in result if v.get("impact") in {"serious", "critical"}]
        return [
            {"id": v["id"], "impact": v["impact"], "help": v["help"],
             "targets": [n["target"] for n in v["nodes"]][:5]}
            for v in serious
        ]  # fmt: skip

    def shot(self, name: str) -> Path:
        """A full-page screenshot kept as a test artifact."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def wait_text(
        self, selector: str, text: str, *, exact: bool = False, timeout_ms: int = READY_TIMEOUT_MS
    ) -> None:
        """Wait until the first element matching ``selector`` shows ``text`` (contains
        it; ``exact``: is it, spaces trimmed). Updates come from events and polls."""
        self.page.wait_for_function(
            """([selector, text, exact]) => {
                 const el = document.querySelector(selector);
                 if (!el) return false;
                 const shown = el.textContent.trim();
                 return exact ? shown === text : shown.includes(text);
               }""",
            arg=[selector, text, exact],
            timeout=timeout_ms,
        )  # fmt: skip

    def mib(self, value: float | None) -> str:
        """``value`` (MiB) as the page writes it (its own formatter, in dom.js)."""
        src = self.page.evaluate("document.querySelector('script[type=module]').src")
        url = src.replace("/js/app.js", "/js/dom.js")
        return str(
            self.page.evaluate("async ([url, v]) => (await import(url)).mib(v)", [url, value])
        )

    def expect_http_error(self, status: int, path: str) -> None:
        """Allow the browser's own log line for a refused request the test provokes.

        Chromium logs every 4xx answer to fetch() as a console error ("Failed to load
        resource"), even when the page handles it; only the named status and URL pass.
        """
        self.allowed_http_errors.add((status, f"{self.service.url}{path}"))

    def record(self, message: Any) -> None:
        """Keep a console error, unless it is an allowed refused request."""
        if message.type != "error":
            return
        url = message.location.get("url", "")
        for status, allowed in self.allowed_http_errors:
            if message.text.startswith(f"Failed to load resource: the server responded with "
                                       f"a status of {status} ") and url == allowed:  # fmt: skip
                return
        self.console_errors.append(f"console: {message.text} ({url})")


def _open_ui(browser: Any, service: Service, *, dark: bool = False) -> Iterator[Ui]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900},
        color_scheme="dark" if dark else "light",
        accept_downloads=True,
    )
    page = context.new_page()
    ui = Ui(page, service)

    # A lambda, not ui.record: Playwright tags bound methods with an attribute, which a
    # slotted attrs class refuses.
    page.on("console", lambda message: ui.record(message))  # noqa: PLW0108
    page.on("pageerror", lambda error: ui.console_errors.append(f"page error: {error}"))
    try:
        yield ui
        # Close the page first: its event stream ends cleanly, before the service's
        # clean-up stops servers under it.
        page.close()
        assert not ui.console_errors, "the browser reported errors:\n" + "\n".join(
            ui.console_errors
        )
    finally:
        context.close()
        # Each test leaves no server and no active benchmark behind, whatever it did.
        service.clean_up()


@pytest.fixture
def ui(browser: Any, service: Service) -> Iterator[Ui]:
    """A fresh page on the module's service (light theme)."""
    yield from _open_ui(browser, service)


@pytest.fixture
def dark_ui(browser: Any, service: Service) -> Iterator[Ui]:
    """A fresh page on the module's service whose system prefers the dark theme."""
    yield from _open_ui(browser, service, dark=True)


def api_json(url: str, key: str | None = None) -> Any:
    """GET a URL, JSON answer (tests' direct look at the API)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return json.loads(exc.read())
