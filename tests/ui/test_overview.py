"""Overview: every running server, live from the event stream, with no reload."""

from __future__ import annotations

import json

from playwright.sync_api import Route, expect

from tests.ui.conftest import Ui


def test_a_server_started_through_the_api_appears_without_a_reload(ui: Ui) -> None:
    page = ui.open("overview")
    page.evaluate("window.__sameDocument = true")
    status = ui.service.data(
        "POST",
        "/api/v1/model/start?wait=true",
        {"model_path": "tiny.gguf", "config": {"ctx_size": 256}},
    )
    row = page.locator(f"#servers-table tr[data-port='{status['port']}']")
    row.locator(".state[data-state='ready']").wait_for(timeout=10_000)
    assert row.locator("td").nth(0).inner_text().startswith("tiny.gguf")
    assert row.locator("td").nth(3).inner_text() == str(status["process_id"])
    assert page.evaluate("window.__sameDocument") is True


def test_a_state_change_shows_in_the_latest_events(ui: Ui) -> None:
    page = ui.open("overview")
    status = ui.service.data(
        "POST",
        "/api/v1/model/start?wait=true",
        {"model_path": "other.gguf", "config": {"ctx_size": 256}},
    )
    events = page.locator("#events li[data-event='server.state']")
    events.filter(has_text=f"port {status['port']}: starting → ready").wait_for(timeout=10_000)


def test_the_stop_button_stops_the_server(ui: Ui) -> None:
    page = ui.open("overview")
    status = ui.service.data(
        "POST",
        "/api/v1/model/start?wait=true",
        {"model_path": "tiny.gguf", "config": {"ctx_size": 256}},
    )
    page.get_by_role("button", name=f"Stop tiny.gguf on port {status['port']}").click()
    ui.service.wait(lambda: ui.service.data("GET", "/api/v1/model/status") == [], "the stop")
    page.locator(f"#servers-table tr[data-port='{status['port']}']").wait_for(
        state="detached", timeout=10_000
    )


def test_memory_shows_ram_used_estimated_and_budget_from_the_gateway(ui: Ui) -> None:
    page = ui.open("overview")
    ui.service.data(
        "POST",
        "/api/v1/model/start?wait=true",
        {"model_path": "tiny.gguf", "config": {"ctx_size": 256}},
    )
    used = "#memory .membar[data-device='ram'] [data-figure='used']"
    page.wait_for_function(
        f"() => !document.querySelector(\"{used}\").textContent.includes('used 0.0 MiB')",
        timeout=10_000,
    )
    (ram,) = ui.service.data("GET", "/api/v1/gateway/plan")["devices"]  # no GPU here
    bar = page.locator("#memory .membar[data-device='ram']")
    budget, total = ui.mib(ram["budget_mib"]), ui.mib(ram["total_mib"])
    assert bar.locator("[data-figure='budget']").inner_text() == f"budget {budget}"
    assert bar.locator("[data-figure='total']").inner_text() == f"of {total}"
    assert bar.locator("[data-figure='estimated']").inner_text().startswith("estimated ")
    assert page.locator("#memory .membar").count() == 1
    assert "No NVIDIA GPU found" in page.locator("#memory-note").inner_text()


def test_a_model_the_gateway_loads_appears_without_a_reload(ui: Ui) -> None:
    page = ui.open("overview")
    page.evaluate("window.__sameDocument = true")
    ui.service.complete("other")  # a client names the model; the gateway loads it
    (server,) = ui.service.data("GET", "/api/v1/model/status")
    assert server["model_name"] == "other.gguf"
    row = page.locator(f"#servers-table tr[data-port='{server['port']}']")
    row.locator(".state[data-state='ready']").wait_for(timeout=10_000)
    assert row.locator("td").nth(3).inner_text() == str(server["process_id"])
    ready = f"gateway: other ready on port {server['port']}"
    page.locator("#events li[data-event='gateway.model_ready']", has_text=ready).wait_for()
    page.locator(
        "#events li[data-event='gateway.model_loading']", has_text="loading other"
    ).wait_for()
    assert page.locator("#memory-note").inner_text().startswith("1 model loaded")
    assert page.evaluate("window.__sameDocument") is True


def test_a_starting_servers_load_progress_shows_beside_its_state_on_both_pages(ui: Ui) -> None:
    # A tiny model loads in milliseconds: the route shows the real server's status as a
    # long load would, starting at 45 %, then as it is (ready, no share).
    status = ui.service.data(
        "POST",
        "/api/v1/model/start?wait=true",
        {"model_path": "tiny.gguf", "config": {"ctx_size": 256}},
    )
    loading = {"on": True}

    def as_loading(route: Route) -> None:
        response = route.fetch()
        body = json.loads(response.text())
        if loading["on"]:
            for server in body["data"]:
                server.update(state="starting", load_progress=0.45)
        route.fulfill(response=response, body=json.dumps(body))

    for name in ("overview", "models"):
        loading["on"] = True
        page = ui.open(name)
        page.route("**/api/v1/model/status*", as_loading)
        page.reload()
        where = (f"#servers-table tr[data-port='{status['port']}']" if name == "overview"
                 else "#models-table tr[data-model='tiny.gguf']")  # fmt: skip
        row = page.locator(where)
        row.locator(".state[data-state='starting']").wait_for(timeout=10_000)
        expect(row.locator(".load-progress")).to_have_text("45 %")
        loading["on"] = False  # the next poll (0.5 s while one starts) shows it ready
        row.locator(".state[data-state='ready']").wait_for(timeout=10_000)
        expect(row.locator(".load-progress")).to_have_count(0)
        if name == "models":  # the state cell: its state and port, nothing else
            expect(row.locator("td").nth(8)).to_have_text(f"ready :{status['port']}")
