"""Every page, in both themes: rendered from real data, no serious or critical axe-core
violation, a screenshot kept; keyboard navigation; the theme toggle."""

from __future__ import annotations

from typing import Any

import pytest

from llamaswitch_http._ui import PAGES
from tests.ui.conftest import Service, Ui

QUICK = {"n_prompt": 16, "n_gen": 8, "repetitions": 2, "threads": 1}


@pytest.fixture(scope="module")
def benchmark_history(service: Service) -> list[dict[str, Any]]:
    """Two completed benchmark tasks in the history (tasks are data, not processes)."""
    return [service.benchmark(model, QUICK) for model in ("tiny.gguf", "other.gguf")]


@pytest.fixture(scope="module")
def finished_tune(service: Service) -> dict[str, Any]:
    """A completed tune of 2 x 2 points, so the Tune page shows its scatter and trials."""
    return service.tune({
        "model_path": "tiny.gguf", "space": {"threads": [1, 2], "batch_size": [32, 64]},
        "objective": {"n_prompt": 16, "n_gen": 8}, "budget": 4, "seed": 1,
        "repetitions": 2, "max_repetitions": 2, "save_preset": False,
    })  # fmt: skip


@pytest.fixture
def running_server(service: Service) -> dict[str, Any]:
    """A ready model server, so the pages have something live to show (the ui fixture
    stops it afterwards)."""
    status: dict[str, Any] = service.data(
        "POST",
        "/api/v1/model/start?wait=true",
        {"model_path": "tiny.gguf", "config": {"ctx_size": 256}},
    )
    return status


def _show(
    ui: Ui, name: str, server: dict[str, Any], tasks: list[dict[str, Any]], tune: dict[str, Any]
) -> None:
    query = {"logs": f"port={server['port']}", "tune": f"tune={tune['id']}"}.get(name, "")
    if name == "activity":
        ui.service.complete("tiny")  # a request through the gateway, to the running server
    page = ui.open(name, query)
    if name == "overview":
        page.locator("#servers-table .state[data-state='ready']").wait_for()
    elif name == "logs":
        page.wait_for_function("() => document.querySelector('#log-output').textContent.length > 0")
    elif name == "benchmarks":
        for task in tasks:
            page.get_by_role("checkbox", name=f"Select task {task['id']} ({task['model']})").check()
        page.get_by_role("button", name="Compare selected (2)").click()
        page.locator("#chart-body .chart-box[data-series='2']").wait_for()
        page.locator("#trend-model").select_option("tiny.gguf")
        page.get_by_role("button", name="Show trend").click()
        page.locator("#trend-body .chart-box[data-series]").wait_for()
    elif name == "tune":
        page.locator("#tune-space[data-model]").wait_for()
        page.locator("#tune-chart[data-points='4']").wait_for()
    elif name == "models":
        page.locator("#models-table .state[data-state='ready']").wait_for()
        page.locator("#plan-verdict").wait_for()
    elif name == "activity":
        page.locator("#requests-table tbody tr").first.wait_for()


@pytest.mark.parametrize("name", PAGES)
def test_light_pages_have_no_serious_accessibility_violations(
    ui: Ui,
    name: str,
    running_server: dict[str, Any],
    benchmark_history: list[dict[str, Any]],
    finished_tune: dict[str, Any],
) -> None:
    _show(ui, name, running_server, benchmark_history, finished_tune)
    ui.shot(f"{name}-light")
    assert ui.axe() == []


@pytest.mark.parametrize("name", PAGES)
def test_dark_pages_have_no_serious_accessibility_violations(
    dark_ui: Ui,
    name: str,
    running_server: dict[str, Any],
    benchmark_history: list[dict[str, Any]],
    finished_tune: dict[str, Any],
) -> None:
    _show(dark_ui, name, running_server, benchmark_history, finished_tune)
    assert (
        dark_ui.page.evaluate("getComputedStyle(document.body).backgroundColor")
        == "rgb(16, 19, 23)"
    )
    dark_ui.shot(f"{name}-dark")
    assert dark_ui.axe() == []


def test_the_keyboard_reaches_every_page_from_the_menu(ui: Ui) -> None:
    page = ui.open("overview")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    key = "Tab"  # forward from the top, then back up from each page's heading
    for name in PAGES[1:]:
        for _ in range(15):
            page.keyboard.press(key)
            if page.evaluate("document.activeElement.dataset.page") == name:
                break
        else:
            pytest.fail(f"{key} never reached the {name} link")
        page.keyboard.press("Enter")
        ui.wait_ready(name)
        # Focus moves to the new page's heading, so the next Tab starts there.
        assert page.evaluate("document.activeElement.tagName") == "H1"
        assert page.evaluate("document.activeElement.textContent") == name.capitalize()
        key = "Shift+Tab"


def test_the_skip_link_moves_focus_to_the_content(ui: Ui) -> None:
    page = ui.open("models")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.locator("main[data-ready='models']").count() == 1


def test_the_theme_toggle_switches_and_is_remembered(ui: Ui) -> None:
    page = ui.open("overview")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    page.get_by_role("button", name="Switch to the dark theme").click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(16, 19, 23)"
    page.reload()
    ui.wait_ready("overview")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert page.get_by_role("button", name="Switch to the light theme").is_visible()
