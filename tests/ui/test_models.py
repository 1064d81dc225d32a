"""Models: the catalog, load/unload from a row, the generated config form, API errors at
their fields."""

from __future__ import annotations

from tests.ui.conftest import Ui, api_json


def test_the_catalog_shows_the_models_read_from_their_files(ui: Ui) -> None:
    page = ui.open("models")
    catalog = {m["name"]: m for m in ui.service.data("GET", "/api/v1/models")}
    rows = page.locator("#models-table tbody tr")
    assert rows.count() == len(catalog) == 2
    tiny = page.locator("#models-table tr[data-model='tiny.gguf'] td")
    assert tiny.nth(1).inner_text() == catalog["tiny.gguf"]["architecture"] == "llama"
    assert tiny.nth(3).inner_text() == catalog["tiny.gguf"]["quantization"]
    assert tiny.nth(4).inner_text() == str(catalog["tiny.gguf"]["context_length"])


def test_clicking_load_starts_a_server_and_the_api_confirms_it(ui: Ui) -> None:
    page = ui.open("models")
    page.locator("#server-ctx_size").fill("256")
    page.get_by_role("button", name="Load tiny.gguf").click()

    def ready() -> object:
        servers = ui.service.data("GET", "/api/v1/model/status")
        return [s for s in servers if s["model_name"] == "tiny.gguf" and s["state"] == "ready"]

    (server,) = ui.service.wait(ready, "tiny.gguf to be ready")
    assert server["config"]["ctx_size"] == 256
    page.locator("#models-table tr[data-model='tiny.gguf'] .state[data-state='ready']").wait_for()
    assert f"port {server['port']}" in page.locator("#serve-result").inner_text()


def test_clicking_unload_stops_the_models_server(ui: Ui) -> None:
    page = ui.open("models")
    ui.service.data("POST", "/api/v1/model/start?wait=true", {"model_path": "other.gguf"})
    unload = page.get_by_role("button", name="Unload other.gguf")
    unload.wait_for()
    unload.click()
    ui.service.wait(lambda: ui.service.data("GET", "/api/v1/model/status") == [], "the unload")
    unload.wait_for(state="hidden")


def test_switch_replaces_what_runs_on_the_port(ui: Ui) -> None:
    first = ui.service.data("POST", "/api/v1/model/start?wait=true", {"model_path": "tiny.gguf"})
    page = ui.open("models")
    page.locator("#serve-model").select_option("other.gguf")
    page.locator("#server-port").fill(str(first["port"]))
    page.get_by_role("button", name="Switch (replace on its port)").click()

    def switched() -> object:
        servers = ui.service.data("GET", "/api/v1/model/status")
        return [(s["model_name"], s["port"], s["state"]) for s in servers] == [
            ("other.gguf", first["port"], "ready")
        ]

    ui.service.wait(switched, "the switch")
    page.locator("#models-table tr[data-model='other.gguf'] .state[data-state='ready']").wait_for()
    page.locator("#models-table tr[data-model='tiny.gguf'][data-state='']").wait_for(
        state="attached"
    )


def test_the_config_form_has_one_field_per_server_config_property(ui: Ui) -> None:
    page = ui.open("models")
    schema = api_json(f"{ui.service.url}/api/v1/openapi.json")["components"]["schemas"][
        "ServerConfig"
    ]
    fields = page.locator("#serve-form .schema-form [data-field]").evaluate_all(
        "els => els.map(e => e.dataset.field)"
    )
    assert sorted(fields) == sorted(schema["properties"])
    assert len(fields) == len(set(fields))
    kinds = dict(
        page.locator("#serve-form .schema-form [data-field]").evaluate_all(
            "els => els.map(e => [e.dataset.field, e.dataset.kind])"
        )
    )
    assert kinds["threads"] == "scalar"
    assert kinds["extra_args"] == "list"
    assert kinds["env"] == "map"
    assert page.locator("#server-split_mode option").all_text_contents()[1:] == [
        "none",
        "layer",
        "row",
        "tensor",
    ]


def test_api_validation_errors_are_shown_at_the_fields_they_name(ui: Ui) -> None:
    ui.expect_http_error(422, "/api/v1/model/start")
    page = ui.open("models")
    page.locator("#server-threads").fill("0")
    page.locator("#serve-form details summary").click()
    page.locator("#server-restart_max").fill("5000")
    page.get_by_role("button", name="Start alongside").click()
    threads_error = page.locator("#server-threads-error")
    threads_error.wait_for()
    assert "4096" in threads_error.inner_text()
    assert page.locator("#server-threads").get_attribute("aria-invalid") == "true"
    assert "1000" in page.locator("#server-restart_max-error").inner_text()
    assert page.locator("#server-ctx_size-error").inner_text() == ""
    assert ui.service.data("GET", "/api/v1/model/status") == []
    ui.shot("models-validation-errors")


def test_a_conflict_is_shown_on_the_form(ui: Ui) -> None:
    ui.expect_http_error(409, "/api/v1/model/start")
    page = ui.open("models")
    page.locator("#server-port").fill(ui.service.url.rsplit(":", 1)[1])
    page.get_by_role("button", name="Start alongside").click()
    result = page.locator("#serve-result.error")
    result.wait_for()
    assert "reserved" in result.inner_text().lower()


def test_search_filters_the_catalog(ui: Ui) -> None:
    page = ui.open("models")
    page.locator("#model-search").fill("oth")
    visible = page.locator("#models-table tbody tr:visible")
    assert visible.count() == 1
    assert visible.get_attribute("data-model") == "other.gguf"
    assert page.locator("#model-count").inner_text() == "1 of 2 models"


def test_a_column_heading_sorts_the_catalog(ui: Ui) -> None:
    page = ui.open("models")
    order = "els => els.map(e => e.dataset.model)"
    assert page.locator("#models-table tbody tr").evaluate_all(order) == ["other.gguf", "tiny.gguf"]
    page.get_by_role("button", name="Name").click()
    assert page.locator("#models-table tbody tr").evaluate_all(order) == ["tiny.gguf", "other.gguf"]
    assert (
        page.locator("#models-table th[data-key='name']").get_attribute("aria-sort") == "descending"
    )
    page.get_by_role("button", name="Parameters").click()
    assert page.locator("#models-table tbody tr").evaluate_all(order) == ["other.gguf", "tiny.gguf"]


def test_the_catalog_shows_the_gateways_estimate_and_names(ui: Ui) -> None:
    page = ui.open("models")
    entries = {e["id"]: e for e in ui.service.data_json("/v1/models")["data"]}
    for model, stem in (("tiny.gguf", "tiny"), ("other.gguf", "other")):
        row = page.locator(f"#models-table tr[data-model='{model}']")
        assert row.locator(".names").inner_text() == f"gateway: {stem}"
        assert row.locator("td").nth(6).inner_text() == ui.mib(entries[stem]["estimated_mib"])
    # The defaults of the presets file, and no preset model.
    assert page.locator("#presets-body dl.kv").inner_text().replace("\t", " ").split("\n")[:2] == [
        "ctx_size", "1024",
    ]  # fmt: skip
    assert page.locator("#presets-empty").inner_text() == "No preset models."


def test_a_model_the_gateway_loads_shows_its_state_and_measure_without_a_reload(ui: Ui) -> None:
    page = ui.open("models")
    page.evaluate("window.__sameDocument = true")
    ui.service.complete("tiny")
    row = "#models-table tr[data-model='tiny.gguf']"
    page.locator(f"{row} .state[data-state='ready']").wait_for()

    def measured() -> object:
        entry = next(e for e in ui.service.data_json("/v1/models")["data"] if e["id"] == "tiny")
        return entry["measured_mib"]

    value = ui.service.wait(measured, "a measurement of tiny", timeout_s=30)
    ui.wait_text(f"{row} td:nth-child(8)", ui.mib(value), exact=True, timeout_ms=20_000)
    assert page.evaluate("window.__sameDocument") is True
