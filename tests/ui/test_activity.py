"""Activity: the gateway's requests and the playground, which need the gateway's routes."""

from __future__ import annotations

from tests.ui.conftest import Ui, api_json


def test_without_the_gateway_both_sections_say_they_are_not_available(ui: Ui) -> None:
    paths = api_json(f"{ui.service.url}/api/v1/openapi.json")["paths"]
    assert "/api/v1/gateway/requests" not in paths
    assert "/v1/chat/completions" not in paths
    page = ui.open("activity")
    assert (
        "GET /api/v1/gateway/requests" in page.locator("#requests [data-unavailable]").inner_text()
    )
    assert (
        "POST /v1/chat/completions" in page.locator("#playground [data-unavailable]").inner_text()
    )
    assert page.locator("#chat-form").count() == 0
