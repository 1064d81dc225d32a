"""With an API key: the page asks for it once, keeps it for the session only, sends it
as a bearer token (the event stream included), and every page works."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llamaswitch_http._ui import PAGES
from tests.ui.conftest import Service, Ui, _open_ui, _start_service

KEY = "dashboard-test-key"


@pytest.fixture(scope="module")
def keyed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real ``llamaswitch serve`` with ``LLAMASWITCH_API_KEY`` set."""
    yield from _start_service(tmp_path_factory.mktemp("ui-keyed"), key=KEY)


@pytest.fixture
def keyed_ui(browser: Any, keyed_service: Service) -> Iterator[Ui]:
    """A fresh page on the keyed service."""
    yield from _open_ui(browser, keyed_service)


def _enter_key(ui: Ui, key: str) -> None:
    dialog = ui.page.locator("#key-dialog[open]")
    dialog.wait_for()
    ui.page.locator("#key-input").fill(key)
    ui.page.get_by_role("button", name="Use this key").click()


def test_the_page_asks_for_the_key_before_calling_the_api(keyed_ui: Ui) -> None:
    requests: list[str] = []
    keyed_ui.page.on("request", lambda r: requests.append(r.url))
    keyed_ui.page.goto(f"{keyed_ui.service.url}/ui/#/overview")
    keyed_ui.page.locator("#key-dialog[open]").wait_for()
    keyed_ui.shot("api-key-dialog")
    assert not [url for url in requests if "/api/" in url]
    _enter_key(keyed_ui, KEY)
    keyed_ui.wait_ready("overview")


def test_the_key_is_asked_once_and_kept_for_the_session_only(keyed_ui: Ui) -> None:
    page = keyed_ui.page
    page.goto(f"{keyed_ui.service.url}/ui/#/overview")
    _enter_key(keyed_ui, KEY)
    keyed_ui.wait_ready("overview")
    for name in PAGES:
        keyed_ui.go(name)
        assert page.locator("#key-dialog[open]").count() == 0
    page.reload()
    keyed_ui.wait_ready("activity")
    assert page.locator("#key-dialog[open]").count() == 0
    assert page.evaluate("sessionStorage.getItem('llamaswitch.apiKey')") == KEY
    assert page.evaluate("JSON.stringify(localStorage)").find(KEY) < 0
    assert KEY not in page.evaluate("document.cookie")


def test_every_page_works_with_the_key_and_the_event_stream_is_live(keyed_ui: Ui) -> None:
    page = keyed_ui.page
    page.goto(f"{keyed_ui.service.url}/ui/#/overview")
    _enter_key(keyed_ui, KEY)
    keyed_ui.wait_ready("overview")
    page.locator("#live-status[data-state='live']").wait_for()
    status = keyed_ui.service.data(
        "POST",
        "/api/v1/model/start?wait=true",
        {"model_path": "tiny.gguf", "config": {"ctx_size": 256}},
    )
    # Only the event stream (read with fetch and the key) can bring this without a reload.
    page.locator(f"#events li:has-text('port {status['port']}: starting → ready')").wait_for()
    for name in PAGES:
        keyed_ui.go(name)
        assert page.locator("main .notice.error[role='alert']:not(:empty)").count() == 0, name
    keyed_ui.go("models")
    page.locator("#models-table tr[data-model='tiny.gguf'] .state[data-state='ready']").wait_for()


def test_a_wrong_key_is_refused_and_asked_again(keyed_ui: Ui) -> None:
    page = keyed_ui.page
    for path in ("/api/v1/openapi.json", "/api/v1/events"):
        keyed_ui.expect_http_error(401, path)
    page.goto(f"{keyed_ui.service.url}/ui/#/models")
    _enter_key(keyed_ui, "not-the-key")
    page.locator("#key-error:has-text('refused')").wait_for()
    assert page.evaluate("sessionStorage.getItem('llamaswitch.apiKey')") is None
    _enter_key(keyed_ui, KEY)
    keyed_ui.wait_ready("models")


def test_forget_key_asks_again(keyed_ui: Ui) -> None:
    page = keyed_ui.page
    page.goto(f"{keyed_ui.service.url}/ui/#/overview")
    _enter_key(keyed_ui, KEY)
    keyed_ui.wait_ready("overview")
    page.get_by_role("button", name="Forget API key").click()
    page.locator("#key-dialog[open]").wait_for()
    assert page.evaluate("sessionStorage.getItem('llamaswitch.apiKey')") is None


def test_without_a_key_the_page_never_asks(ui: Ui) -> None:
    page = ui.open("overview")
    assert page.locator("#key-dialog[open]").count() == 0
    assert page.locator("#forget-key").is_hidden()
