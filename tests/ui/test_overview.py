"""Overview: every running server, live from the event stream, with no reload."""

from __future__ import annotations

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


def test_memory_shows_the_ram_of_running_servers_and_says_budgets_are_not_available(
    ui: Ui,
) -> None:
    page = ui.open("overview")
    ui.service.data(
        "POST",
        "/api/v1/model/start?wait=true",
        {"model_path": "tiny.gguf", "config": {"ctx_size": 256}},
    )
    ram = page.locator("#memory .membar[data-device='RAM (model servers)']")
    ram.wait_for()
    page.wait_for_function(
        "() => !document.querySelector(\"#memory .membar\").textContent.includes('used 0.0 MiB')",
        timeout=10_000,
    )
    assert "MiB" in ram.inner_text()
    assert (
        page.locator("#memory [data-unavailable]").inner_text().count("/api/v1/gateway/plan") == 1
    )
    assert "/api/v1/gateway/requests" in page.locator("#gateway [data-unavailable]").inner_text()
