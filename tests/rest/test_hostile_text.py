"""The standing check against hostile text: every string field of every route.

The string fields come from the service's own OpenAPI document, so a field added later is
covered without touching this file; each operation needs a valid base request here (a
test fails for an operation without one). Into each field, one at a time, goes hostile
text: lone surrogates, NUL, right-to-left marks, 10,000 characters, path separators. The
property: the service never answers 5xx, and a refusal (4xx) changes nothing: the same
servers with the same processes, the same benchmark tasks.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamaswitch_http._gateway import FORWARDED_ROUTES
from llamaswitch_http._openapi import openapi_document
from tests.conftest import require_build
from tests.rest.conftest import ServeProcess, free_port, make_settings, serve

pytestmark = pytest.mark.real_binary

_PIECES = [
    "\ud800", "\udfff", "x\udcff", "\x00", "\u202e", "\u202etxt.gguf", "\u200b", "\ufeff",
    "../../etc/passwd", "/etc/passwd", "..\\..\\boot.ini", "C:\\Windows", "tiny.gguf\x00.x",
    "%00", "\n", "\r\n", "'", '"', "\\", "{}", "*", "a" * 10_000,
]  # fmt: skip
HOSTILE = st.lists(
    st.one_of(
        st.sampled_from(_PIECES),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
        st.text(max_size=8),
    ),
    min_size=1,
    max_size=4,
).map("".join)

#: A valid request per operation: (query, body). The hostile text replaces one field.
SWITCH_PORT = free_port()
BASE: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any] | None]] = {
    ("GET", "/api/v1/models"): ({}, None),
    ("POST", "/api/v1/model/switch"): (
        {"wait": "true"}, {"model_path": "tiny.gguf", "config": {"port": SWITCH_PORT}}),
    ("POST", "/api/v1/model/start"): ({"wait": "true"}, {"model_path": "tiny.gguf"}),
    ("POST", "/api/v1/model/stop"): ({}, {"model_name": "tiny.gguf"}),
    ("GET", "/api/v1/model/status"): ({"model_name": "tiny.gguf"}, None),
    ("GET", "/api/v1/model/logs"): ({"model_name": "tiny.gguf"}, None),
    ("GET", "/api/v1/model/key"): ({"model_name": "tiny.gguf"}, None),
    ("POST", "/api/v1/benchmark"): (
        {}, {"model_path": "tiny.gguf", "config": {"n_prompt": 8, "n_gen": 2, "repetitions": 1}}),
    ("DELETE", "/api/v1/benchmark"): ({"task_id": "nope"}, None),
    ("GET", "/api/v1/benchmark/status"): ({"task_id": "nope"}, None),
    ("POST", "/api/v1/benchmark/cancel"): ({"task_id": "nope"}, None),
    ("GET", "/api/v1/benchmarks"): ({}, None),
    ("GET", "/api/v1/benchmarks/compare"): ({"task_ids": "a,b"}, None),
    ("POST", "/api/v1/benchmarks/import"): ({}, {"text": "[]", "format": "json"}),
    ("POST", "/api/v1/benchmarks/prune"): ({}, {"model": "nope.gguf"}),
    ("GET", "/api/v1/events"): ({}, None),
    ("GET", "/api/v1/health"): ({}, None),
    ("GET", "/api/v1/openapi.json"): ({}, None),
    ("GET", "/metrics"): ({}, None),
    ("GET", "/api/v1/gateway/requests"): ({}, None),
    ("GET", "/api/v1/gateway/plan"): ({"model": "tiny"}, None),
    ("GET", "/api/v1/presets"): ({}, None),
    ("GET", "/api/v1/hosts"): ({}, None),
    ("POST", "/api/v1/presets/reload"): ({}, None),
    # One quick trial; a tune a case starts is cancelled after it (see the test).
    ("POST", "/api/v1/tune"): ({}, {
        "model_path": "tiny.gguf", "space": {"threads": [1, 2]}, "budget": 1,
        "repetitions": 1, "max_repetitions": 1, "save_preset": False,
        "objective": {"metric": "tg", "n_prompt": 8, "n_gen": 2}}),
    ("GET", "/api/v1/tune/status"): ({"tune_id": "nope"}, None),
    ("POST", "/api/v1/tune/cancel"): ({"tune_id": "nope"}, None),
    ("POST", "/api/v1/tune/resume"): ({"tune_id": "nope"}, None),
    ("POST", "/api/v1/tune/preset"): ({"tune_id": "nope"}, None),
    ("GET", "/api/v1/tune/space"): ({"model_path": "tiny.gguf"}, None),
    ("GET", "/api/v1/tunes"): ({}, None),
    ("GET", "/v1/models"): ({}, None),
    ("GET", "/v1/models/{model}"): ({}, None),
    # A model that is not there: nothing loads, whatever else the body holds.
    **{("POST", path): ({}, {"model": "nope"}) for path in FORWARDED_ROUTES},
}  # fmt: skip

# A placeholder in a field path for "a key of this object".
KEY = object()


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = ref.rsplit("/", 1)[-1]
    return _resolve(document["components"]["schemas"][name], document)


def _string_paths(schema: dict[str, Any], document: dict[str, Any], prefix: tuple[Any, ...]
                  ) -> Iterator[tuple[Any, ...]]:  # fmt: skip
    """Every path in a body schema where a string may go."""
    schema = _resolve(schema, document)
    alternatives = [_resolve(s, document) for s in schema.get("anyOf", [schema])]
    takes_string = any(
        a.get("type") == "string" or any(isinstance(v, str) for v in a.get("enum", ()))
        for a in alternatives
    )
    if takes_string and prefix:
        yield prefix
    for alternative in alternatives:
        for name, sub in alternative.get("properties", {}).items():
            yield from _string_paths(sub, document, (*prefix, name))
        extra = alternative.get("additionalProperties")
        if isinstance(extra, dict):
            yield (*prefix, KEY)
            yield from _string_paths(extra, document, (*prefix, "LLAMA_ARG_THREADS_HTTP"))
        items = alternative.get("items")
        if isinstance(items, dict) and alternative.get("type") == "array":
            yield from _string_paths(items, document, (*prefix, 0))


def _fields(document: dict[str, Any]) -> list[tuple[str, str, str, tuple[Any, ...]]]:
    """(method, path, "query" | "body", field path) for every string field."""
    found: set[tuple[str, str, str, tuple[Any, ...]]] = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                schema = _resolve(parameter["schema"], document)
                if schema.get("type") in ("string", "boolean", "integer") or "enum" in schema:
                    found.add((method.upper(), path, "query", (parameter["name"],)))
            body = operation.get("requestBody")
            if body is not None:
                schema = body["content"]["application/json"]["schema"]
                for field in _string_paths(schema, document, ()):
                    found.add((method.upper(), path, "body", field))
    return sorted(found, key=repr)


def _with(body: Any, path: tuple[Any, ...], text: str) -> Any:
    """A copy of ``body`` with ``text`` at ``path`` (lists and objects made as needed)."""
    if not path:
        return text
    head, *rest = path
    if head is KEY:
        result = dict(body or {})
        result[text] = "1"
        return result
    if isinstance(head, int):
        return [_with(None, tuple(rest), text)]
    result = dict(body or {})
    result[head] = _with(result.get(head), tuple(rest), text)
    return result


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    build = require_build("current")
    root = tmp_path_factory.mktemp("hostile")
    from llamaswitch.testing import write_tiny_model

    write_tiny_model(root / "models" / "tiny.gguf", name="tiny")
    s = make_settings(build, root / "models", root / "state")
    env = {
        "LLAMA_SERVER_PATH": str(s.llama_server_path), "LLAMA_BENCH_PATH": str(s.llama_bench_path),
        "MODELS_DIR": str(s.models_dir), "LLAMASWITCH_STATE_DIR": str(s.state_dir),
        "SERVER_PORT": str(s.server_port),
        "LLAMASWITCH_MODEL_PORTS": f"{s.model_ports[0]}-{s.model_ports[1]}",
        "LLAMASWITCH_READY_TIMEOUT_S": "60",
    }  # fmt: skip
    with serve(["serve"], env, root, s.server_port) as served:
        yield served


def _send(service: ServeProcess, method: str, path: str, query: dict[str, Any],
          body: Any) -> tuple[int, bytes]:  # fmt: skip
    pairs = "&".join(
        f"{urllib.parse.quote(str(k), errors='surrogatepass')}="
        f"{urllib.parse.quote(str(v), errors='surrogatepass')}"
        for k, v in query.items()
    )
    target = f"{path}?{pairs}" if pairs else path
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()  # ASCII: surrogates travel as \\udXXX escapes
        headers["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection("127.0.0.1", int(service.url.rsplit(":", 1)[1]),
                                            timeout=120)  # fmt: skip
    try:
        if path == "/api/v1/events":
            connection.request(method, target, body=data, headers=headers)
            return connection.getresponse().status, b""  # a stream: the status is enough
        connection.request(method, target, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _snapshot(service: ServeProcess) -> tuple[Any, ...]:
    _, status = service.request("GET", "/api/v1/model/status")
    _, tasks = service.request("GET", "/api/v1/benchmarks?limit=1000")
    _, tunes = service.request("GET", "/api/v1/tunes?limit=1000")
    servers = sorted((s["port"], s["process_id"], s["state"]) for s in status["data"])
    return (tuple(servers), frozenset(t["id"] for t in tasks["data"]),
            frozenset(t["id"] for t in tunes["data"]))  # fmt: skip


FIELDS = _fields(openapi_document(secured=False))


def test_every_operation_has_a_base_request() -> None:
    document = openapi_document(secured=False)
    operations = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert operations - set(BASE) == set()
    assert len(FIELDS) > 40  # every route's fields, the configs' included


def _field_id(field: tuple[str, str, str, tuple[Any, ...]]) -> str:
    method, path, where, names = field
    shown = ".".join("<key>" if n is KEY else str(n) for n in names)
    return f"{method} {path} {where}:{shown}"


@pytest.mark.parametrize("field", FIELDS, ids=[_field_id(f) for f in FIELDS])
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=HOSTILE)
def test_hostile_text_in_a_string_field_never_breaks_or_changes_the_service(
    service: ServeProcess, field: tuple[str, str, str, tuple[Any, ...]], text: str
) -> None:
    method, path, where, names = field
    query, body = BASE[(method, path)]
    if where == "query":
        query = {**query, names[0]: text}
    else:
        body = _with(body, names, text)
    before = _snapshot(service)
    status, answer = _send(service, method, path, query, body)
    assert status < 500, (status, text[:80], answer[-1500:])
    if 400 <= status < 500:
        assert _snapshot(service) == before, text[:80]
    elif method == "POST" and path in ("/api/v1/model/switch", "/api/v1/model/start"):
        service.request("POST", "/api/v1/model/stop", {})
    elif method == "POST" and path == "/api/v1/tune":
        tune_id = json.loads(answer)["data"]["id"]
        service.request("POST", f"/api/v1/tune/cancel?tune_id={tune_id}")
