"""Logs: a server's output, live, with search and pause."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.ui.conftest import Ui


def _start(ui: Ui) -> dict[str, Any]:
    status: dict[str, Any] = ui.service.data(
        "POST",
        "/api/v1/model/start?wait=true",
        {"model_path": "tiny.gguf", "config": {"ctx_size": 256}},
    )
    return status


def _complete(status: dict[str, Any]) -> None:
    """One real completion, which makes llama-server log more lines."""
    body = json.dumps({"prompt": "the llama", "n_predict": 2}).encode()
    request = urllib.request.Request(
        f"{status['url']}/completion", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def _log_lines(ui: Ui, port: int) -> list[str]:
    lines: list[str] = ui.service.data("GET", f"/api/v1/model/logs?port={port}&lines=500")
    return lines


def test_the_logs_page_shows_a_servers_output(ui: Ui) -> None:
    status = _start(ui)
    page = ui.open("logs", f"port={status['port']}")
    lines = _log_lines(ui, status["port"])
    assert lines
    output = page.locator("#log-output")
    page.wait_for_function(
        "line => document.querySelector('#log-output').textContent.includes(line)", arg=lines[-1]
    )
    assert page.locator("#log-server").input_value() == str(status["port"])
    assert lines[0] in output.text_content()


def test_new_output_appears_while_following(ui: Ui) -> None:
    status = _start(ui)
    page = ui.open("logs", f"port={status['port']}")
    before = len(_log_lines(ui, status["port"]))
    _complete(status)
    ui.service.wait(lambda: len(_log_lines(ui, status["port"])) > before, "more log lines")
    newest = _log_lines(ui, status["port"])[-1]
    page.wait_for_function(
        "line => document.querySelector('#log-output').textContent.includes(line)", arg=newest
    )


def test_search_keeps_only_matching_lines_and_marks_the_match(ui: Ui) -> None:
    status = _start(ui)
    page = ui.open("logs", f"port={status['port']}")
    page.locator("#log-output").filter(has_text="llama").wait_for()
    page.locator("#log-search").fill("LLAMA")
    marks = page.locator("#log-output mark")
    assert marks.count() > 0
    assert all(text.lower() == "llama" for text in marks.all_text_contents())
    text = page.locator("#log-output").text_content() or ""
    assert all("llama" in line.lower() for line in text.splitlines() if line)
    assert " of " in page.locator("#log-status").inner_text()


def test_pause_freezes_the_view_and_resume_catches_up(ui: Ui) -> None:
    status = _start(ui)
    page = ui.open("logs", f"port={status['port']}")
    page.wait_for_function("() => document.querySelector('#log-output').textContent.length > 0")
    page.get_by_role("button", name="Pause").click()
    assert page.locator("#log-pause").get_attribute("aria-pressed") == "true"
    frozen = page.locator("#log-output").text_content()
    before = len(_log_lines(ui, status["port"]))
    _complete(status)
    ui.service.wait(lambda: len(_log_lines(ui, status["port"])) > before, "more log lines")
    page.wait_for_timeout(1500)  # more than one follow interval
    assert page.locator("#log-output").text_content() == frozen
    page.get_by_role("button", name="Resume").click()
    newest = _log_lines(ui, status["port"])[-1]
    page.wait_for_function(
        "line => document.querySelector('#log-output').textContent.includes(line)", arg=newest
    )


def test_without_servers_the_page_says_where_to_start_one(ui: Ui) -> None:
    page = ui.open("logs")
    assert "Models page" in page.locator("#log-empty").inner_text()
