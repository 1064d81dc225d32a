"""The dashboard on the real gateway, with two GPUs this machine does not have.

The service is the real app around a real core and real llama-server processes, served
in-process (on a thread of its own) so that its core can be given a fake NVML: two
8 GiB GPUs on which every llama-server this test process started holds 512 and 256 MiB.
That is the only fake, and only because no GPU is here. In-process also lets a test hold
a gateway lease (``core.gateway.acquire``), the library's own way of counting a request
in flight, to make a real HTTP request queue behind it on demand.

Placement: at most one model at a time, 6000 MiB of VRAM per GPU. Presets: ``fast``
loads ``tiny.gguf`` with one slot (so one request in flight fills it) and the alias
``quick``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import psutil
import pytest
from playwright.sync_api import expect

from llamaswitch._api import AsyncLlamaSwitch
from llamaswitch._gpu import GpuProbe
from llamaswitch_http import create_app
from tests.conftest import require_build
from tests.rest.conftest import make_settings
from tests.ui.conftest import (
    PRESETS,
    READY_TIMEOUT_MS,
    InProcess,
    Service,
    Ui,
    _open_ui,
    serve_in_thread,
    write_models,
)

FAST = """
[models.fast]
file = "tiny.gguf"
aliases = ["quick"]
parallel = 1
ttl_s = 600
"""
GATEWAY_PRESETS = PRESETS + FAST
VRAM_BUDGET_MIB = 6000
GPU_TOTAL_MIB = 8192
VRAM_MIB = {0: 512, 1: 256}


class TwoGpus:
    """NVML with two 8 GiB GPUs; every llama-server child of this process holds 512 MiB
    on the first and 256 MiB on the second."""

    def nvmlInit(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> str:
        return "555.42"

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"Fake RTX"

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return f"GPU-fake-{handle}"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(total=GPU_TOTAL_MIB * 1024**2, used=1024**3)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        servers = []
        for proc in psutil.Process().children(recursive=True):
            try:
                if "llama-server" in proc.name():
                    servers.append(proc.pid)
            except psutil.Error:
                continue
        used = VRAM_MIB[handle] * 1024**2
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid in servers]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        return []


@attrs.define
class Gateway:
    """The in-process service: how to call it, its core, and its loop."""

    service: Service
    served: InProcess
    core: AsyncLlamaSwitch

    def hold(self, model: str) -> Any:
        """Take a slot of ``model`` (loading it), as a request in flight would."""
        return self.served.call(self.core.gateway.acquire(model))

    def release(self, lease: Any) -> None:
        self.served.loop.call_soon_threadsafe(self.core.gateway.release, lease)

    def write_presets(self, text: str) -> None:
        (self.service.models_dir / "llamaswitch.toml").write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    build = require_build("current")
    tmp = tmp_path_factory.mktemp("ui-gateway")
    models = write_models(tmp / "models", GATEWAY_PRESETS)
    settings = make_settings(build, models, tmp / "state", max_models=1,
                             vram_budget_mib=VRAM_BUDGET_MIB)  # fmt: skip
    core = AsyncLlamaSwitch(settings, gpu=GpuProbe(nvml=TwoGpus()))
    with serve_in_thread(create_app(core)) as served:
        service = Service(None, served.url, Path(models), None)
        try:
            yield Gateway(service, served, core)
        finally:
            service.clean_up()


@pytest.fixture
def gui(browser: Any, gateway: Gateway) -> Iterator[Ui]:
    """A fresh page on the in-process service."""
    yield from _open_ui(browser, gateway.service)


def _plan(service: Service, model: str | None = None) -> dict[str, Any]:
    path = "/api/v1/gateway/plan" + (f"?model={model}" if model else "")
    data: dict[str, Any] = service.data("GET", path)
    return data


def test_overview_shows_vram_per_gpu_and_a_memory_bar_per_gpu_and_for_ram(
    gui: Ui, gateway: Gateway
) -> None:
    page = gui.open("overview")
    page.evaluate("window.__sameDocument = true")
    gateway.service.complete("fast")
    (server,) = gateway.service.data("GET", "/api/v1/model/status")
    row = f"#servers-table tr[data-port='{server['port']}']"
    page.locator(f"{row} .state[data-state='ready']").wait_for()
    # VRAM is sampled now and then: the row and the bars follow without a reload.
    gui.wait_text(f"{row} td:nth-child(7)", "GPU 0: 512 MiB, GPU 1: 256 MiB", exact=True)
    cells = page.locator(f"{row} td").all_inner_texts()
    assert cells[0] == "tiny.gguf"
    assert cells[2:4] == [str(server["port"]), str(server["process_id"])]
    assert re.fullmatch(r"\d+(\.\d)? s|\d+ min \d\d s", cells[4]), cells[4]  # uptime
    assert re.fullmatch(r"\d+(\.\d)? MiB", cells[5]), cells[5]  # RSS
    assert cells[7] == str(server["restarts"]) == "0"
    gui.wait_text("#memory .membar[data-device='gpu0'] [data-figure='used']", "used 512 MiB")
    gui.wait_text("#memory .membar[data-device='gpu1'] [data-figure='used']", "used 256 MiB")
    # Placement counts the measured figure once there is one: the same as used here.
    gui.wait_text("#memory .membar[data-device='gpu0'] [data-figure='estimated']",
                  "estimated 512 MiB")  # fmt: skip
    devices = {d["id"]: d for d in _plan(gateway.service)["devices"]}
    assert list(devices) == ["ram", "gpu0", "gpu1"]
    for device in ("gpu0", "gpu1"):
        bar = page.locator(f"#memory .membar[data-device='{device}']")
        assert bar.locator("strong").inner_text() == f"GPU {device[-1]} (Fake RTX)"
        assert bar.locator("[data-figure='budget']").inner_text() == (
            f"budget {gui.mib(VRAM_BUDGET_MIB)}"
        )
        assert bar.locator("[data-figure='total']").inner_text() == f"of {gui.mib(GPU_TOTAL_MIB)}"
    ram = page.locator("#memory .membar[data-device='ram']")
    assert ram.locator("strong").inner_text() == "RAM"
    assert ram.locator("[data-figure='budget']").inner_text() == (
        f"budget {gui.mib(devices['ram']['budget_mib'])}"
    )
    # The server's RSS is sampled now and then too: the bar follows without a reload.
    used = ram.locator("[data-figure='used']")
    expect(used).not_to_have_text("used 0.0 MiB", timeout=READY_TIMEOUT_MS)
    assert page.locator("#memory-note").inner_text() == "1 model loaded of at most 1."
    assert page.evaluate("window.__sameDocument") is True
    gui.shot("overview-gateway-two-gpus")


def test_the_gateways_queue_and_requests_in_flight_show_live(gui: Ui, gateway: Gateway) -> None:
    page = gui.open("overview")
    page.evaluate("window.__sameDocument = true")
    lease = gateway.hold("fast")  # the only slot of fast: a request in flight
    answers: list[dict[str, Any]] = []
    try:
        gui.wait_text("#gateway-counts", "0 queued, 1 in flight.", exact=True)
        waiting = threading.Thread(target=lambda: answers.append(gateway.service.complete("quick")))
        waiting.start()
        gui.wait_text("#gateway-counts", "1 queued, 1 in flight.", exact=True)
        assert page.locator("#gateway-models tr[data-model='fast'] td").all_inner_texts() == [
            "fast", "1", "1",
        ]  # fmt: skip
        queued = page.locator("#gateway-requests tbody tr[data-state='queued'] td")
        assert queued.nth(0).inner_text() == "fast"  # the id, whichever name was sent
        assert queued.nth(1).inner_text() == "/v1/chat/completions"
        page.locator("#events li[data-event='gateway.request_queued']").wait_for()
        gui.shot("overview-gateway-queue")
    finally:
        gateway.release(lease)
    waiting.join(60)
    assert answers, "the queued request got no answer"
    assert answers[0]["choices"]
    gui.wait_text("#gateway-counts", "0 queued, 0 in flight.", exact=True)
    assert page.locator("#gateway-requests").count() == 0
    (record, *_) = gateway.service.data("GET", "/api/v1/gateway/requests?limit=1")
    assert record["state"] == "done"
    assert record["queue_wait_s"] > 0
    assert page.evaluate("window.__sameDocument") is True


def test_models_show_the_gateways_memory_figures_state_and_names(gui: Ui, gateway: Gateway) -> None:
    page = gui.open("models")
    page.evaluate("window.__sameDocument = true")
    row = "#models-table tr[data-model='tiny.gguf']"
    entries = {e["id"]: e for e in gateway.service.data_json("/v1/models")["data"]}
    assert set(entries) == {"fast", "other"}
    assert page.locator(f"{row} .names").inner_text() == "gateway: fast, quick, tiny"
    estimated_mib = entries["fast"]["estimated_mib"]
    assert page.locator(f"{row} td").nth(6).inner_text() == gui.mib(estimated_mib)
    estimated = entries["fast"]["estimated"]
    assert page.locator(f"{row} td").nth(6).get_attribute("title") == (
        f"RAM {gui.mib(estimated['ram_mib'])} · GPU 0 {gui.mib(estimated['vram_mib']['0'])} · "
        f"GPU 1 {gui.mib(estimated['vram_mib']['1'])}"
    )
    gateway.service.complete("quick")
    page.locator(f"{row} .state[data-state='ready']").wait_for()

    def measured() -> Any:
        entry = next(e for e in gateway.service.data_json("/v1/models")["data"]
                     if e["id"] == "fast")  # fmt: skip
        return entry["measured_mib"]

    value = gateway.service.wait(measured, "a measurement of fast", timeout_s=30)
    # The page follows the measurement (its poll), without a reload.
    gui.wait_text(f"{row} td:nth-child(8)", gui.mib(value), exact=True, timeout_ms=20_000)
    assert "GPU 0 512 MiB · GPU 1 256 MiB" in str(
        page.locator(f"{row} td").nth(7).get_attribute("title")
    )
    assert page.evaluate("window.__sameDocument") is True


def test_the_dry_run_says_what_loading_a_model_would_unload(gui: Ui, gateway: Gateway) -> None:
    gateway.service.complete("fast")  # one model at most: loading other would unload fast
    page = gui.open("models", "model=other.gguf")
    page.locator("#plan-verdict").wait_for()
    plan = _plan(gateway.service, "other.gguf")["plan"]
    assert plan["action"] == "load"
    assert plan["evict"] == ["fast"]
    assert page.locator("#plan-verdict").get_attribute("data-action") == "load"
    assert plan["reason"] in page.locator("#plan-verdict").inner_text()
    assert page.locator("#plan dl.kv dd").nth(1).inner_text() == "fast"
    models = page.locator("#plan-figures tr[data-resource='models'] td").all_inner_texts()
    assert models == ["models (count)", "1", "1", "1"]
    gpu0 = page.locator("#plan-figures tr[data-resource='gpu0'] td").all_inner_texts()
    assert gpu0[2] == gui.mib(VRAM_BUDGET_MIB)
    # A model that is loaded needs nothing: choosing it changes the answer at once.
    page.locator("#serve-model").select_option("tiny.gguf")
    page.locator("#plan-verdict[data-action='ready']").wait_for()
    gui.shot("models-gateway-plan")
    assert gui.axe() == []


def test_presets_in_effect_and_a_bad_reload_that_keeps_them(gui: Ui, gateway: Gateway) -> None:
    gui.expect_http_error(422, "/api/v1/presets/reload")
    page = gui.open("models")
    fast = page.locator("#presets-table tr[data-preset='fast'] td").all_inner_texts()
    assert fast == ["fast", "tiny.gguf", "quick", "no", "no", "600 s",
                    "ctx_size = 1024, parallel = 1"]  # fmt: skip
    assert "llamaswitch.toml" in page.locator("#presets-body p").first.inner_text()
    try:
        gateway.write_presets(GATEWAY_PRESETS + 'ctx_size = "big"\n')
        page.get_by_role("button", name="Reload presets file").click()
        page.locator("#presets-reload-error").wait_for()
        assert "1 problem, listed above." in page.locator("#presets-reload-error").inner_text()
        # The service keeps the last good presets, and says why the file was refused.
        problem = page.locator("#presets-error li").first
        problem.wait_for()
        assert problem.inner_text().startswith("[models.fast] ctx_size: ")
        assert page.locator("#presets-table tr[data-preset='fast']").count() == 1
        _, envelope = gateway.service.call("GET", "/api/v1/presets")
        assert envelope["data"]["error"]["code"] == "presets_invalid"
        gui.shot("models-presets-reload-refused")
        assert gui.axe() == []
        # Reloaded by someone else (a script, SIGHUP): the page follows the event.
        gateway.write_presets(GATEWAY_PRESETS + '\n[models.long]\nfile = "other.gguf"\n'
                              "ctx_size = 2048\n")  # fmt: skip
        gateway.service.data("POST", "/api/v1/presets/reload")
        page.locator("#presets-table tr[data-preset='long']").wait_for()
        assert page.locator("#presets-error").count() == 0
        page.locator("#models-table tr[data-model='other.gguf'] .names:has-text('long')").wait_for()
    finally:
        gateway.write_presets(GATEWAY_PRESETS)
        gateway.service.data("POST", "/api/v1/presets/reload")


def test_unload_with_force_cuts_the_requests_in_flight(gui: Ui, gateway: Gateway) -> None:
    page = gui.open("models")
    lease = gateway.hold("fast")  # without force, the unload would wait for it
    try:
        row = "#models-table tr[data-model='tiny.gguf']"
        page.locator(f"{row} .state[data-state='ready']").wait_for()
        page.locator("#unload-force").check()
        page.get_by_role("button", name="Unload tiny.gguf").click()
        page.locator("#models-notice.ok").wait_for(timeout=10_000)
        assert gateway.service.data("GET", "/api/v1/model/status") == []
        page.locator(f"{row}[data-state='']").wait_for(state="attached")
    finally:
        gateway.release(lease)
