"""The dashboard's pure logic, run in the browser on the modules the page loads: the event
stream parser, error placement, and how the form generator reads each schema shape."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.conftest import Ui, api_json


def _module(ui: Ui, name: str, expression: str, arg: Any = None) -> Any:
    """Evaluate ``expression`` (a function of the module ``m`` and ``arg``) in the page."""
    ui.open("activity")
    src = ui.page.evaluate("document.querySelector('script[type=module]').src")
    url = src.replace("/js/app.js", f"/js/{name}.js")
    return ui.page.evaluate(
        f"async ([url, arg]) => {{ const m = await import(url); return ({expression})(m, arg); }}",
        [url, arg],
    )


def test_the_event_parser_joins_messages_split_across_chunks(ui: Ui) -> None:
    chunks = [
        "retry: 3000\n: connected\n\nid: 1\nevent: server.st",
        'ate\ndata: {"id":1,"topic":"server"}\n',
        "\r\n: heartbeat\n\nevent: shutdown\ndata: {}\n\n",
    ]
    messages = _module(
        ui,
        "events",
        "(m, chunks) => { const p = new m.SseParser(); return chunks.flatMap(c => p.push(c)); }",
        chunks,
    )
    assert messages == [
        {"event": "message", "data": "", "id": None, "retry": 3000},
        {"event": "server.state", "data": '{"id":1,"topic":"server"}', "id": "1", "retry": None},
        {"event": "shutdown", "data": "{}", "id": None, "retry": None},
    ]


def test_validation_errors_are_sorted_by_the_field_they_name(ui: Ui) -> None:
    placed = _module(
        ui,
        "api",
        """(m, errors) => {
             const e = new m.ApiError(422, {message: "Validation failed", error: "x",
                                            data: {code: "validation_error", errors}});
             const {fields, general} = m.errorsByField(e);
             return {fields: Object.fromEntries(fields), general};
           }""",
        [
            "must be a whole number from 1 to 4096, got 0 @ $.config.threads",
            "must be ≥ 0 @ $.config.n_prompt[1]",
            "model 'x' not found @ $.model_path",
            "extra fields found (bogus) @ $.config",
            "unknown query parameter @ $.query.nope",
        ],
    )
    assert placed == {
        "fields": {
            "threads": ["must be a whole number from 1 to 4096, got 0"],
            "n_prompt": ["must be ≥ 0"],
            "model_path": ["model 'x' not found"],
            "config": ["extra fields found (bogus)"],
            "query": ["unknown query parameter"],
        },
        "general": [],
    }


def test_an_unsupported_option_is_placed_at_its_field(ui: Ui) -> None:
    placed = _module(
        ui,
        "api",
        """m => {
             const e = new m.ApiError(422, {message: "Unsupported option",
               error: "llama-server 0.1 has no --load-mode",
               data: {code: "unsupported_option", field: "no_mmap", errors: []}});
             const {fields, general} = m.errorsByField(e);
             return {fields: Object.fromEntries(fields), general};
           }""",
    )
    assert placed == {"fields": {"no_mmap": ["llama-server 0.1 has no --load-mode"]}, "general": []}


@pytest.mark.parametrize(
    ("field", "kind", "sweep"),
    [
        ("n_prompt", "list", True),  # an integer, or a list of them
        ("pg", "list", True),  # "512,128" text, or a list of such
        ("cache_type_k", "list", True),  # choices spelled as a pattern
        ("numa", "scalar", None),  # choices, no sweep
        ("repetitions", "scalar", None),
        ("flash_attn", "list", True),
    ],
)
def test_bench_config_properties_are_read_as_the_shape_they_accept(
    ui: Ui, field: str, kind: str, sweep: bool | None
) -> None:
    schema = api_json(f"{ui.service.url}/api/v1/openapi.json")["components"]["schemas"]
    info = _module(
        ui, "schema_form", "(m, s) => m.analyse(s)", schema["BenchConfig"]["properties"][field]
    )
    assert info["kind"] == kind
    assert info.get("sweep") == sweep
    assert info["optional"] is True


def test_choices_written_as_a_pattern_become_a_select(ui: Ui) -> None:
    schema = api_json(f"{ui.service.url}/api/v1/openapi.json")["components"]["schemas"]
    model = _module(
        ui,
        "schema_form",
        "(m, s) => m.analyse(s).model",
        schema["BenchConfig"]["properties"]["numa"],
    )
    assert model["choices"] == ["distribute", "isolate", "numactl"]
    assert model["freeText"] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8", 8), (" 8 ", 8), ("all", "all"), ("auto", "auto"), ("", None), ("1.5", 1.5)],
)
def test_typed_values_follow_the_schema(ui: Ui, text: str, expected: object) -> None:
    schema = api_json(f"{ui.service.url}/api/v1/openapi.json")["components"]["schemas"]
    n_gpu_layers = schema["ServerConfig"]["properties"]["n_gpu_layers"]
    value = _module(
        ui,
        "schema_form",
        "(m, [s, t]) => m.parseScalar(m.analyse(s).model, t) ?? null",
        [n_gpu_layers, text],
    )
    assert value == expected
