"""Tune: the start form generated from the request's schema (the model's default space as
editable lists), the tunes live, a tune's scatter with its Pareto front and best trial,
the trials table, Save as preset, Cancel and Resume; real llama-bench on tiny models."""

from __future__ import annotations

import re
from typing import Any

from tests.ui.conftest import Ui

#: A tune of 2 x 2 points, measured at sizes small enough for a second's work.
OBJECTIVE = {"n_prompt": 16, "n_gen": 8}
QUICK = {
    "model_path": "tiny.gguf",
    "space": {"threads": [1, 2], "batch_size": [32, 64]},
    "objective": OBJECTIVE,
    "budget": 4,
    "seed": 1,
    "repetitions": 2,
    "max_repetitions": 2,
    "save_preset": False,
}
#: A tune whose every trial takes seconds: time to watch it run and to cancel it.
SLOW = {
    **QUICK,
    "objective": {"n_prompt": 256, "n_gen": 256},
    "repetitions": 1000,
    "max_repetitions": 1000,
}


def _set_values(page: Any, field: str, values: list[str]) -> None:
    """Give a setting of the space form these values (none: leave it out)."""
    box = page.locator(f"#tune-space [data-field='{field}']")
    # Remove buttons are hidden once one value is left: a lone value is cleared instead.
    remove = box.get_by_role("button", name=re.compile(f"^Remove {field} value"))
    while remove.count():
        remove.first.click()
    control = box.locator("input, select").first
    if control.evaluate("el => el.tagName") == "SELECT":
        control.select_option("")
    else:
        control.fill(values[0] if values else "")
    for value in values[1:]:
        box.get_by_role("button", name=f"Add a {field} value").click()
        box.locator("input").last.fill(value)


def _chart(ui: Ui) -> dict[str, Any]:
    data: dict[str, Any] = ui.page.evaluate(
        """() => { const c = Chart.getChart(document.getElementById('tune-canvas'));
                   return Object.fromEntries(c.data.datasets.map(d => [d.label,
                     d.data.map(p => ({x: p.x, y: p.y, trial: p.trial}))])); }"""
    )
    return data


def _open_tune(ui: Ui, tune_id: str) -> Any:
    page = ui.open("tune", f"tune={tune_id}")
    page.locator(f"#tune-body [data-tune='{tune_id}'][data-state]").wait_for()
    return page


def test_a_tune_started_through_the_form_finishes_with_one_point_per_completed_trial(
    ui: Ui,
) -> None:
    page = ui.open("tune")
    page.locator("#tune-model").select_option("tiny.gguf")
    page.locator("#tune-space[data-model='tiny.gguf']").wait_for()
    defaults = ui.service.data("GET", "/api/v1/tune/space?model_path=tiny.gguf")
    shown = page.locator("#tune-space [data-field='threads'] input").evaluate_all(
        "inputs => inputs.map(i => Number(i.value))"
    )
    assert shown == defaults["threads"]
    for field in defaults:
        _set_values(page, field, [])
    _set_values(page, "threads", ["1", "2"])
    _set_values(page, "batch_size", ["32", "64"])
    page.locator("#tune-objective-n_prompt").fill("16")
    page.locator("#tune-objective-n_gen").fill("8")
    page.locator("#tune-option-budget").fill("4")
    page.locator("#tune-option-seed").fill("1")
    page.locator("#tune-option-preset").fill("tiny-form-tuned")
    page.get_by_role("button", name="Start tune").click()
    result = page.locator("#tune-result[data-tune]")
    result.wait_for()
    tune = ui.service.finished_tune(str(result.get_attribute("data-tune")))
    assert tune["state"] == "completed", tune
    assert tune["space"] == {"threads": [1, 2], "batch_size": [32, 64]}
    assert tune["objective"]["n_prompt"] == 16
    assert tune["options"]["budget"] == 4
    completed = [t for t in tune["trials"] if t["state"] == "completed"]
    assert len(completed) == 4

    page.locator(f"#tune-body [data-tune='{tune['id']}'][data-state='completed']").wait_for()
    page.locator(f"#tune-result.ok:has-text('Tune {tune['id']} completed')").wait_for()
    page.locator("#tune-chart[data-points='4']").wait_for()
    chart = _chart(ui)
    assert sorted(p["trial"] for p in chart["Completed trials"]) == [t["number"] for t in completed]
    by_number = {t["number"]: t for t in completed}
    for point in chart["Completed trials"]:
        assert point["x"] == by_number[point["trial"]]["pp_ts"]
        assert point["y"] == by_number[point["trial"]]["tg_ts"]
    front = chart["Pareto front"]
    assert sorted(p["trial"] for p in front) == sorted(tune["pareto"])
    assert [p["x"] for p in front] == sorted(p["x"] for p in front)  # drawn left to right
    assert [p["trial"] for p in chart["Best trial"]] == [tune["best"]["number"]]
    assert page.locator("#trials-table tbody tr").count() == len(tune["trials"])
    best = page.locator(f"#trials-table tr[data-trial='{tune['best']['number']}']")
    assert best.get_attribute("data-best") == "true"
    assert "±" in best.locator("td").nth(2).inner_text()
    # The tune wrote its preset when it completed, and the view says so.
    page.locator("#tune-preset[data-preset='tiny-form-tuned']").wait_for()
    ui.shot("tune-view")


def test_a_tune_started_elsewhere_shows_up_and_finishes_without_a_reload(ui: Ui) -> None:
    page = ui.open("tune")
    page.evaluate("window.llamaswitchNoReload = true")
    tune = ui.service.data("POST", "/api/v1/tune", QUICK)
    row = page.locator(f"#tunes-table tr[data-tune='{tune['id']}']")
    row.wait_for()
    ui.service.finished_tune(tune["id"])
    page.locator(f"#tunes-table tr[data-tune='{tune['id']}'][data-state='completed']").wait_for()
    assert "4/4 trials" in row.inner_text()
    assert page.evaluate("window.llamaswitchNoReload") is True
    # View, from the keyboard: the focus moves to the tune's heading.
    page.get_by_role("button", name=f"View tune {tune['id']}").focus()
    page.keyboard.press("Enter")
    page.locator("#tune-chart[data-points='4']").wait_for()
    assert page.evaluate("document.activeElement.id") == "tune-title"


def test_the_view_follows_a_running_tune_to_its_end(ui: Ui) -> None:
    tune = ui.service.data("POST", "/api/v1/tune", {**SLOW, "budget": 2})
    page = _open_tune(ui, tune["id"])
    page.locator("#tune-state .state[data-state='running']").wait_for()
    # The running trial's own progress comes from its benchmark's events.
    ui.wait_text("#tune-current", "/1000)")
    ui.service.call("POST", f"/api/v1/tune/cancel?tune_id={tune['id']}")
    page.locator("#tune-state .state[data-state='cancelled']").wait_for()
    assert page.locator("#tune-current").inner_text() == ""


def test_cancel_stops_a_running_tune_and_resume_goes_on(ui: Ui) -> None:
    tune = ui.service.data("POST", "/api/v1/tune", SLOW)
    page = _open_tune(ui, tune["id"])
    page.locator("#tune-state .state[data-state='running']").wait_for()
    page.get_by_role("button", name="Cancel tune", exact=True).click()
    done = ui.service.finished_tune(tune["id"])
    assert done["state"] == "cancelled"
    page.locator("#tune-state .state[data-state='cancelled']").wait_for()
    page.locator(f"#tunes-table tr[data-tune='{tune['id']}'][data-state='cancelled']").wait_for()
    assert not page.get_by_role("button", name="Cancel tune", exact=True).is_visible()

    page.get_by_label("Budget (trials in all)").fill("2")
    page.get_by_role("button", name="Resume tune").click()
    page.locator("#tune-state .state[data-state='running']").wait_for()
    resumed = ui.service.data("GET", f"/api/v1/tune/status?tune_id={tune['id']}")
    assert resumed["state"] == "running"
    assert resumed["options"]["budget"] == 2


def test_save_as_preset_on_a_trial_writes_a_preset_the_presets_route_shows(ui: Ui) -> None:
    tune = ui.service.tune(QUICK)
    trial = next(t for t in tune["trials"] if t["number"] != tune["best"]["number"])
    page = _open_tune(ui, tune["id"])
    page.get_by_label("Preset id").fill("tiny-trial")
    page.get_by_role("button", name=f"Save as preset: trial {trial['number']}").click()
    page.locator("#tune-preset[data-preset='tiny-trial']").wait_for()
    ui.wait_text("#tune-preset", f"trial {trial['number']}'s settings")
    presets = {p["id"]: p for p in ui.service.data("GET", "/api/v1/presets")["models"]}
    assert presets["tiny-trial"]["file"] == "tiny.gguf"
    config = presets["tiny-trial"]["config"]
    assert config["threads"] == trial["params"]["threads"]
    assert config["batch_size"] == trial["params"]["batch_size"]
    row = page.locator(f"#trials-table tr[data-trial='{trial['number']}']")
    ui.wait_text(f"#trials-table tr[data-trial='{trial['number']}'] th", "preset tiny-trial")
    assert row.get_attribute("data-state") == "completed"


def test_save_best_as_preset_writes_the_best_trial(ui: Ui) -> None:
    tune = ui.service.tune(QUICK)
    page = _open_tune(ui, tune["id"])
    page.get_by_label("Preset id").fill("tiny-best")
    page.get_by_role("button", name="Save best as preset").click()
    page.locator("#tune-preset[data-preset='tiny-best']").wait_for()
    saved = ui.service.data("GET", f"/api/v1/tune/status?tune_id={tune['id']}")["preset"]
    assert saved["trial"] == tune["best"]["number"]
    presets = {p["id"]: p for p in ui.service.data("GET", "/api/v1/presets")["models"]}
    assert presets["tiny-best"]["config"]["threads"] == tune["best"]["params"]["threads"]


def test_a_bad_preset_id_is_shown_at_its_field(ui: Ui) -> None:
    tune = ui.service.tune(QUICK)
    ui.expect_http_error(422, f"/api/v1/tune/preset?tune_id={tune['id']}&preset=bad+id")
    page = _open_tune(ui, tune["id"])
    page.get_by_label("Preset id").fill("bad id")
    page.get_by_role("button", name="Save best as preset").click()
    ui.wait_text("#tune-save-preset-error", "must be a preset id")
    assert page.get_by_label("Preset id").get_attribute("aria-invalid") == "true"


def test_the_form_shows_the_apis_errors_at_their_fields(ui: Ui) -> None:
    ui.expect_http_error(422, "/api/v1/tune")
    page = ui.open("tune")
    page.locator("#tune-model").select_option("tiny.gguf")
    page.locator("#tune-space[data-model='tiny.gguf']").wait_for()
    page.locator("#tune-space [data-field='threads'] input").first.fill("0")
    page.locator("#tune-objective-n_prompt").fill("0")
    page.locator("#tune-option-budget").fill("0")
    page.get_by_role("button", name="Start tune").click()
    ui.wait_text("#tune-space-threads-error", "whole number")
    assert "whole number" in page.locator("#tune-objective-n_prompt-error").inner_text()
    assert "whole number" in page.locator("#tune-option-budget-error").inner_text()
    assert page.locator("#tune-option-seed-error").inner_text() == ""
    assert page.locator("#tune-result").inner_text().startswith("Validation failed")
