"""The OpenAPI document: valid OpenAPI 3.1, true to the real wire shapes, and honoured by the
service under schemathesis (no 5xx, every response matching its schema, every request the
document forbids refused)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from llamaswitch.testing import write_tiny_model
from llamaswitch_http import create_app
from llamaswitch_http._app import ROUTES
from llamaswitch_http._openapi import openapi_document
from tests.conftest import LlamaBuild, require_build
from tests.rest.conftest import (
    LiveService,
    call,
    client_for,
    free_port,
    make_settings,
    run,
    wait_task,
)

DATA = Path(__file__).parent.parent / "data" / "bench" / "legacy"
API_KEY = "schemathesis-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.mark.parametrize("secured", [False, True])
def test_the_document_is_valid_openapi_3_1(secured: bool) -> None:
    document = openapi_document(secured=secured)
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_the_document_describes_every_route_and_only_those() -> None:
    document = openapi_document(secured=False)
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert documented == {(method, path) for method, path, _ in ROUTES}


def test_the_secured_document_requires_the_key_everywhere_but_health() -> None:
    document = openapi_document(secured=True)
    assert document["security"] == [{"bearerAuth": []}]
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if path == "/api/v1/health":
                assert operation["security"] == []
                assert "401" not in operation["responses"]
            else:
                assert "401" in operation["responses"]


def test_the_service_serves_the_document_it_was_built_with(
    models_dir: Path, tmp_path: Path
) -> None:
    async def scenario() -> Any:
        async with client_for(make_settings(None, models_dir, tmp_path / "state")) as client:
            response = await client.get("/api/v1/openapi.json")
            assert response.status == 200
            return await response.json()

    assert run(scenario()) == openapi_document(secured=False)


def _check(document: dict[str, Any], name: str, value: Any) -> None:
    """``value`` matches the component schema ``name`` (all keys required, none extra)."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    jsonschema.validate(value, schema, cls=jsonschema.Draft202012Validator)


def test_documented_shapes_match_what_the_core_really_sends(
    llama_build: LlamaBuild, models_dir: Path, tmp_path: Path
) -> None:
    """Every component schema lists exactly the keys real objects carry (drift guard)."""
    document = openapi_document(secured=False)

    async def scenario() -> None:
        settings = make_settings(llama_build, models_dir, tmp_path / "state")
        async with client_for(settings) as client:
            for model in (await call(client, "GET", "/api/v1/models"))["data"]:
                _check(document, "ModelInfo", model)
            ready = await call(
                client,
                "POST",
                "/api/v1/model/switch?wait=true",
                status=200,
                json={"model_path": "tiny.gguf", "config": {"threads": 2}},
            )
            _check(document, "ServerStatus", ready["data"])
            submitted = await call(
                client,
                "POST",
                "/api/v1/benchmark",
                status=202,
                json={
                    "model_path": "tiny.gguf",
                    "config": {"n_prompt": 16, "n_gen": 8, "repetitions": 2, "output": "json"},
                },
            )
            _check(document, "BenchTask", submitted["data"])
            task = await wait_task(client, submitted["data"]["task_id"])
            _check(document, "BenchTask", task)
            imported = await call(
                client,
                "POST",
                "/api/v1/benchmarks/import",
                status=201,
                json={"text": (DATA / "sweep.json").read_text()},
            )
            _check(document, "BenchTask", imported["data"])
            ids = f"{task['id']},{imported['data']['id']}"
            compared = await call(client, "GET", f"/api/v1/benchmarks/compare?task_ids={ids}")
            _check(document, "Comparison", compared["data"])
            _check(document, "Health", (await call(client, "GET", "/api/v1/health"))["data"])
            failed = await call(
                client, "POST", "/api/v1/model/switch", status=422, json={"model_path": 1}
            )
            _check(document, "ErrorEnvelope", {k: v for k, v in failed.items() if k != "_status"})
            stopped = await call(client, "POST", "/api/v1/model/stop", status=200)
            for status in stopped["data"]:
                _check(document, "ServerStatus", status)

    run(scenario())


# -- schemathesis against a running service ------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One service for all generated cases: real binaries, a tmp models and state folder,
    an API key (so that schemathesis checks authentication too)."""
    build = require_build("current")
    root = tmp_path_factory.mktemp("schemathesis")
    # Names schemathesis will not guess: generated switches and benchmarks find no model
    # (404), so no case starts a long-running process.
    write_tiny_model(root / "models" / "Zq3-fixture-model.gguf", name="Zq3 fixture", seed=3)
    port = free_port()
    settings_ = make_settings(
        build, root / "models", root / "state", api_key=API_KEY, server_port=port
    )
    with LiveService(create_app(settings=settings_), port) as running:
        yield running.url


# Loaded from the document itself at import time (schemathesis' lazy fixture loader does
# not work with pytest 9); test_the_service_serves_the_document_it_was_built_with checks
# that this is what the service serves.
schema = schemathesis.openapi.from_dict(openapi_document(secured=True))
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=15,
)


_FRAMING = frozenset({"transfer-encoding", "content-length"})


# The event stream never ends on its own: it is tested in test_api.py instead.
@schema.exclude(path="/api/v1/events").parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_response_matches_the_document(case: schemathesis.Case, service: str) -> None:
    # Every default check (no 5xx, status codes, content types, response schemas, refused
    # schema-violating requests, missing authentication refused...) except "schema-valid
    # requests are accepted": a well-formed switch to a model that is not there is a 404,
    # a well-formed import of text that is not llama-bench output a 422.
    # A case whose headers were generated negative (the Authorization header dropped or
    # mangled) is sent as generated: adding the key would turn it into a valid request
    # that schemathesis then expects to be refused.
    meta = case.meta
    headers_negative = meta is not None and meta.is_negative_at(ParameterLocation.HEADER)
    # A generated Transfer-Encoding or Content-Length changes how the request is framed,
    # not what it says: aiohttp's HTTP parser answers it (a plain-text 400) before any
    # route runs, so it tests the parser, not the document.
    if case.headers:
        for name in [n for n in case.headers if n.lower() in _FRAMING]:
            del case.headers[name]
    case.call_and_validate(
        base_url=service,
        headers=None if headers_negative else AUTH,
        timeout=30,
        excluded_checks=[positive_data_acceptance],
    )
