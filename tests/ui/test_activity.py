"""Activity: the gateway's recent requests, live, and the playground, which streams a
chat from the gateway, both on real requests to real llama-server processes."""

from __future__ import annotations

from typing import Any

from tests.ui.conftest import Ui


def _seconds(value: float | None) -> str:
    """A duration as the page writes it."""
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def test_requests_through_the_gateway_are_listed_with_their_figures(ui: Ui) -> None:
    ui.service.complete("tiny", max_tokens=4)
    page = ui.open("activity")
    (record, *_) = ui.service.data("GET", "/api/v1/gateway/requests?limit=100")
    row = page.locator(f"#requests-table tr[data-request='{record['id']}'] td")
    cells = row.all_inner_texts()
    assert cells[1:11] == [
        "tiny", "/v1/chat/completions", "done", "200", _seconds(record["queue_wait_s"]),
        _seconds(record["load_wait_s"]), _seconds(record["ttft_s"]), str(record["tokens"]),
        page.evaluate("v => v.toLocaleString(undefined, {maximumFractionDigits: 1})",
                      record["tokens_per_s"]),
        _seconds(record["duration_s"]),
    ]  # fmt: skip
    # At most the 4 asked for: a tiny model of random weights may end early.
    assert 0 < record["tokens"] <= 4
    assert record["load_wait_s"] > 0  # the first request loaded the model
    # A request made while the page is open appears without a reload.
    ui.service.complete("tiny.gguf", max_tokens=2)
    (newest, *_) = ui.service.data("GET", "/api/v1/gateway/requests?limit=1")
    page.locator(f"#requests-table tbody tr:first-child[data-request='{newest['id']}']").wait_for()
    assert page.locator("#requests-status").inner_text().startswith("2 requests")


def test_the_playground_streams_a_reply_and_the_request_is_listed(ui: Ui) -> None:
    page = ui.open("activity")
    models = page.locator("#chat-model option").all_inner_texts()
    assert models == [e["id"] for e in ui.service.data_json("/v1/models")["data"]]
    page.locator("#chat-model").select_option("other")
    page.locator("#chat-max-tokens").fill("12")
    page.locator("#chat-prompt").fill("Say hello")
    page.get_by_role("button", name="Send").click()
    page.locator("#chat-status:has-text('Done')").wait_for(timeout=30_000)
    assert page.locator("#chat-output").inner_text() != ""
    assert page.locator("#chat-error").inner_text() == ""
    (record, *_) = ui.service.data("GET", "/api/v1/gateway/requests?limit=1")
    assert (record["model"], record["route"], record["status"]) == (
        "other", "/v1/chat/completions", 200,
    )  # fmt: skip
    assert 0 < record["tokens"] <= 12  # read from the stream's last chunk
    page.locator(f"#requests-table tr[data-request='{record['id']}'][data-state='done']").wait_for()
    servers: list[dict[str, Any]] = ui.service.data("GET", "/api/v1/model/status")
    assert [s["model_name"] for s in servers] == ["other.gguf"]
    ui.shot("activity-playground")
    assert ui.axe() == []


def test_an_unknown_model_in_the_playground_shows_the_gateways_error(ui: Ui) -> None:
    ui.expect_http_error(404, "/v1/chat/completions")
    page = ui.open("activity")
    # As if the model went from the folder after the page listed it.
    page.evaluate("""() => {
        const select = document.getElementById('chat-model');
        select.append(new Option('gone', 'gone'));
        select.value = 'gone';
    }""")  # fmt: skip
    page.locator("#chat-prompt").fill("Hi")
    page.get_by_role("button", name="Send").click()
    page.locator("#chat-error:has-text('gone')").wait_for()
    assert page.get_by_role("button", name="Send").is_enabled()
