"""``GET /api/v1/openapi.json``: an OpenAPI 3.1 document of every route, body and response.

Generated, not written by hand: the config schemas come from the field vocabulary
(:func:`llamaswitch._vocabulary.json_schema`), request bodies and responses from their
types (:func:`llamaswitch._schema.type_schema`), and the error statuses from the error
kinds (:data:`llamaswitch._errors.ERROR_KINDS`). The routes and what each may answer are
listed here. The tests keep it honest: openapi-spec-validator checks the document,
schemathesis checks that real responses match it and that requests it forbids are
refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from llamaswitch._catalog import ModelInfo
from llamaswitch._errors import ERROR_KINDS
from llamaswitch._schema import request_schema, type_schema
from llamaswitch._version import __version__
from llamaswitch._vocabulary import MODEL_PORT, Whole
from llamaswitch._wire import dumps
from llamaswitch.bench.comparison import Comparison
from llamaswitch.bench.task import TASK_STATES, BenchTask
from llamaswitch.gateway.requests import RequestRecord
from llamaswitch.servers.status import ServerStatus
from llamaswitch.tuning.tune import Tune
from llamaswitch_http._bodies import BenchmarkBody, ImportBody, PruneBody, StopBody, SwitchBody
from llamaswitch_http._gateway import FORWARDED_ROUTES
from llamaswitch_http._sse import EVENT_TOPICS
from llamaswitch_http._tuning import tune_request_schema

__all__ = ["FORWARDED_MARK", "build_openapi", "openapi_document"]

Schema = dict[str, Any]

_STR: Final[Schema] = {"type": "string"}
_INT: Final[Schema] = {"type": "integer"}
_BOOL: Final[Schema] = {"type": "boolean"}
_STR_LIST: Final[Schema] = {"type": "array", "items": _STR}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _null(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(properties: Mapping[str, Schema]) -> Schema:
    return {"type": "object", "properties": dict(properties), "required": list(properties),
            "additionalProperties": False}  # fmt: skip


_BINARY: Final = _obj({"found": _BOOL, "version": _null(_STR), "error": _null(_STR)})
_HEALTH: Final = _obj(
    {
        "status": {"enum": ["ok", "degraded"]},
        "version": _STR,
        "binaries": _obj({"llama-server": _BINARY, "llama-bench": _BINARY}),
    }
)


def _error_envelope() -> Schema:
    carried = sorted({name for kind in ERROR_KINDS.values() for name in kind.fields} | {"fields"})
    return _obj({
        "success": {"const": False},
        "message": {"type": "string", "minLength": 1, "description": "The error kind's title."},
        "data": {
            "type": "object",
            "properties": {"code": {**_STR, "enum": sorted(ERROR_KINDS),
                                    "description": "The error kind."}},
            "required": ["code"],
            "additionalProperties": True,
            "description": "The kind's details, by kind: " + ", ".join(carried) + ".",
        },
        "error": {"type": "string", "minLength": 1, "description": "The full explanation."},
    })  # fmt: skip


def _openai_error() -> Schema:
    """The gateway's errors: OpenAI's shape (Anthropic's on /v1/messages)."""
    openai = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "code"],
                "properties": {
                    "message": _STR,
                    "type": _STR,
                    "param": {"type": "null"},
                    "code": {**_STR, "enum": sorted(ERROR_KINDS)},
                    "details": {"type": "object", "description": "The kind's details."},
                },
            }
        },
    }
    anthropic = {
        "type": "object",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": _STR, "message": _STR},
            },
        },
    }
    return {"anyOf": [openai, anthropic]}  # fmt: skip


def _success(data: Schema) -> Schema:
    return _obj({"success": {"const": True}, "message": _STR, "data": data, "error": {"const": ""}})


def _errors_by_status() -> dict[int, str]:
    """What each error status means, from the error kinds that answer with it."""
    by_status: dict[int, list[str]] = {}
    for code, kind in sorted(ERROR_KINDS.items()):
        by_status.setdefault(kind.http_status, []).append(f"{kind.title} ({code})")
    return {status: "; ".join(titles) + "." for status, titles in sorted(by_status.items())}


_ERRORS: Final = _errors_by_status()
_PORT_SCHEMA: Final = MODEL_PORT.schema()


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _query(name: str, schema: Schema, description: str, *, required: bool = False) -> Schema:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description}  # fmt: skip


def _op(
    summary: str,
    *,
    ok: Mapping[int, tuple[str, Schema]],
    errors: Sequence[int],
    params: Sequence[Schema] = (),
    body: Schema | None = None,
    body_required: bool = True,
    secured: bool,
    open_route: bool = False,
    content_type: str = "application/json",
    raw: bool = False,
    openai: bool = False,
) -> Schema:
    responses: dict[str, Any] = {}
    for status, (description, schema) in ok.items():
        content = {content_type: {"schema": schema if raw else _success(schema)}}
        responses[str(status)] = {"description": description, "content": content}
    codes = set(errors) | {403, 500}
    if body is not None:
        codes |= {400, 408, 413, 415, 422}
    if secured and not open_route:
        codes.add(401)
    for status in sorted(codes):
        responses[str(status)] = {
            "description": _ERRORS[status],
            "content": _json(_ref("OpenAIError" if openai else "ErrorEnvelope")),
        }
    operation: Schema = {"summary": summary, "responses": responses}
    if params:
        operation["parameters"] = list(params)
    if body is not None:
        operation["requestBody"] = {"required": body_required, "content": _json(body)}
    if open_route:
        operation["security"] = []
    return operation


_MODEL_NAME = _query("model_name", {"type": "string", "minLength": 1},
                     "A model's name (file name or catalog name).")  # fmt: skip
_PORT = _query("port", _PORT_SCHEMA, "A model server's port.")
_HOST = _query("host", {"type": "string", "minLength": 1},
               "A cluster host (GET /api/v1/hosts); default: this machine.")  # fmt: skip
_FORCE = _query("force", _BOOL, "Cut gateway requests in flight at once (default: wait "
                "for them, up to LLAMASWITCH_DRAIN_TIMEOUT_S).")  # fmt: skip
_TASK_ID = _query("task_id", {"type": "string", "minLength": 1}, "The task id.", required=True)
_TUNE_ID = _query("tune_id", {"type": "string", "minLength": 1}, "The tune id.", required=True)


_MODEL_ENTRY: Final = {"type": "object", "required": ["id", "object", "state"],
                       "properties": {"id": _STR, "object": {"const": "model"},
                                      "state": _STR, "aliases": _STR_LIST}}  # fmt: skip
_MODEL_LIST: Final = {"type": "object", "required": ["object", "data"], "properties": {
    "object": {"const": "list"}, "data": {"type": "array", "items": _MODEL_ENTRY}}}  # fmt: skip
_MODEL_PATH: Final = {"name": "model", "in": "path", "required": True,
                      "schema": {"type": "string", "minLength": 1}}  # fmt: skip
#: Marks an operation whose answers are the model server's own (passed through).
FORWARDED_MARK: Final = "x-llamaswitch-forwarded"


def _forwarded(path: str, secured: bool) -> Schema:
    operation = _op(
        f"Forwarded to the server of the model the body names ({path} of llama-server; "
        "loaded on demand)",
        ok={200: ("The model server's answer, as it is (a stream for stream: true).",
                  {"type": "object"})},
        body={"type": "object", "properties": {"model": {"type": "string", "minLength": 1}},
              "additionalProperties": True},
        errors=(404, 429, 502, 503), secured=secured, raw=True, openai=True,
    )  # fmt: skip
    operation[FORWARDED_MARK] = True
    return operation


def openapi_document(*, secured: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document; ``secured`` adds the bearer-key requirement."""
    s = secured
    components: dict[str, Schema] = {}
    for name, body in (("SwitchRequest", SwitchBody), ("StopRequest", StopBody),
                       ("BenchmarkRequest", BenchmarkBody), ("ImportRequest", ImportBody),
                       ("PruneRequest", PruneBody)):  # fmt: skip
        request_schema(body, components)
        components[name] = components.pop(body.__name__)
    for response in (ModelInfo, ServerStatus, BenchTask, Comparison):
        type_schema(response, components)
    components["Health"] = _HEALTH
    components["ErrorEnvelope"] = _error_envelope()
    components["OpenAIError"] = _openai_error()
    type_schema(RequestRecord, components)
    type_schema(Tune, components)
    components["TuneRequest"] = tune_request_schema(components)
    paths: dict[str, Any] = {
        "/api/v1/models": {"get": _op(
            "List the GGUF models of the models folder (message: 'Found N GGUF models')",
            ok={200: ("The catalog.", {"type": "array", "items": _ref("ModelInfo")})},
            errors=(), secured=s)},
        "/api/v1/model/switch": {"post": _op(
            "Serve a model on the config's port, replacing what runs there",
            ok={202: ("Switch initiated: the server is starting.", _ref("ServerStatus")),
                200: ("With wait=true: the server is ready.", _ref("ServerStatus"))},
            params=[_query("wait", _BOOL, "Answer when the server is ready (or failed)."),
                    _FORCE],
            body=_ref("SwitchRequest"), errors=(404, 409, 502, 503, 504), secured=s)},
        "/api/v1/model/start": {"post": _op(
            "Serve a model alongside the others (the config's port, else a free one)",
            ok={202: ("Start initiated: the server is starting.", _ref("ServerStatus")),
                200: ("With wait=true: the server is ready.", _ref("ServerStatus"))},
            params=[_query("wait", _BOOL, "Answer when the server is ready (or failed).")],
            body=_ref("SwitchRequest"), errors=(404, 409, 502, 503, 504), secured=s)},
        "/api/v1/model/stop": {"post": _op(
            "Stop one server (by model_name or port) or every server",
            ok={200: ("The stopped servers.", {"type": "array", "items": _ref("ServerStatus")})},
            params=[_FORCE], body=_null(_ref("StopRequest")), body_required=False,
            errors=(404,), secured=s)},
        "/api/v1/model/status": {"get": _op(
            "Status of one server (model_name or port, not both) or of all (a list)",
            ok={200: ("One server with model_name or port, else a list.", {"anyOf": [
                _ref("ServerStatus"), {"type": "array", "items": _ref("ServerStatus")}]})},
            params=[_MODEL_NAME, _PORT, _HOST], errors=(404, 422), secured=s)},
        "/api/v1/model/logs": {"get": _op(
            "The last lines a model server printed (name it by model_name or port)",
            ok={200: ("Log lines, oldest first.", _STR_LIST)},
            params=[_MODEL_NAME, _PORT, _HOST,
                    _query("lines", Whole(1, 10_000).schema(), "How many lines (default 100).")],
            errors=(404, 422), secured=s)},
        "/api/v1/benchmark/status": {"get": _op(
            "A task: state, progress, queue position, results, output, error",
            ok={200: ("The task.", _ref("BenchTask"))},
            params=[_TASK_ID], errors=(404, 422), secured=s)},
        "/api/v1/benchmark/cancel": {"post": _op(
            "Cancel a queued or running task (finished tests' results are kept)",
            ok={200: ("The task, cancelled; or unchanged if it had ended, the message then "
                      "naming its state ('Benchmark task already completed: ...').",
                      _ref("BenchTask"))},
            params=[_TASK_ID], errors=(403, 404, 422), secured=s)},
        "/api/v1/benchmark": {"post": _op(
            "Queue a llama-bench run; answers at once with the task",
            ok={202: ("The task (queued or running).", _ref("BenchTask"))},
            body=_ref("BenchmarkRequest"), errors=(404, 503), secured=s),
            "delete": _op(
            "Delete a finished task and its results (409 for a queued or running one)",
            ok={200: ("The task as it was.", _ref("BenchTask"))},
            params=[_TASK_ID], errors=(404, 409, 422), secured=s)},
        "/api/v1/benchmarks/prune": {"post": _op(
            "Delete the finished tasks matching every filter given (at least one)",
            ok={200: ("The ids deleted, oldest first.", _obj(
                {"deleted": _STR_LIST, "count": _INT}))},
            body=_ref("PruneRequest"), errors=(), secured=s)},
        "/api/v1/model/key": {"get": _op(
            "The API key of a model server listening beyond loopback (null on loopback)",
            ok={200: ("The key.", _obj({"api_key": _null(_STR)}))},
            params=[_MODEL_NAME, _PORT, _HOST], errors=(404, 422), secured=s)},
        "/api/v1/benchmarks": {"get": _op(
            "Benchmark history, newest first",
            ok={200: ("Tasks.", {"type": "array", "items": _ref("BenchTask")})},
            params=[
                _query("model", {"type": "string", "minLength": 1}, "Model name or path."),
                _query("state", {"enum": list(TASK_STATES)}, "Only tasks in this state."),
                _query("since", {"type": "string", "minLength": 1},
                       "ISO 8601 date or date-time (UTC unless a zone is given)."),
                _query("until", {"type": "string", "minLength": 1}, "ISO 8601, as since."),
                _query("limit", Whole(1, 1000).schema(), "At most this many (default 50)."),
            ],
            errors=(422,), secured=s)},
        "/api/v1/benchmarks/compare": {"get": _op(
            "Several tasks' results side by side",
            ok={200: ("One row per test, one result per task.", _ref("Comparison"))},
            params=[_query("task_ids", {"type": "string", "minLength": 1},
                           "Task ids separated by commas.", required=True)],
            errors=(404, 422), secured=s)},
        "/api/v1/benchmarks/import": {"post": _op(
            "Record llama-bench output produced elsewhere as a completed task",
            ok={201: ("The new task.", _ref("BenchTask"))},
            body=_ref("ImportRequest"), errors=(), secured=s)},
        "/api/v1/events": {"get": _op(
            "Server-sent events: server state changes, benchmark progress and results",
            ok={200: ("An event stream: 'event: <topic>.<type>', 'data: <Event JSON>'; "
                      "heartbeat comments; a final 'event: shutdown'.",
                      {"type": "string"})},
            params=[_query("topic", {"enum": list(EVENT_TOPICS)}, "Only this topic.")],
            errors=(422,), secured=s, content_type="text/event-stream", raw=True)},
        "/api/v1/gateway/requests": {"get": _op(
            "Recent gateway requests, newest first (no prompt text is kept)",
            ok={200: ("Requests.", {"type": "array", "items": _ref("RequestRecord")})},
            params=[_query("limit", Whole(1, 1000).schema(), "At most this many (100).")],
            errors=(422,), secured=s)},
        "/api/v1/gateway/plan": {"get": _op(
            "Memory per device (used, estimated, budget); with model, what loading it "
            "would unload and why, without doing it",
            ok={200: ("The devices, and with model the plan.", {"type": "object"})},
            params=[_query("model", {"type": "string", "minLength": 1},
                           "A model name (id, alias, file name or stem).")],
            errors=(404, 422), secured=s)},
        "/api/v1/hosts": {"get": _op(
            "The hosts of the cluster this service heads (LLAMASWITCH_CLUSTER): each "
            "one's resources, budget, models and servers; empty on a single machine",
            ok={200: ("Hosts.", {"type": "array", "items": {"type": "object"}})},
            errors=(), secured=s)},
        "/api/v1/presets": {"get": _op(
            "The presets in effect (llamaswitch.toml), and why the last reload failed",
            ok={200: ("The presets.", {"type": "object"})}, errors=(), secured=s)},
        "/api/v1/presets/reload": {"post": _op(
            "Read the presets file again (422 naming the table and key if it is bad; "
            "the presets in effect then stay)",
            ok={200: ("The presets now in effect.", {"type": "object"})},
            errors=(422,), secured=s)},
        "/api/v1/tune": {"post": _op(
            "Start a tune: a search of llama-bench settings whose best is saved as a preset",
            ok={202: ("The tune (running).", _ref("Tune"))},
            body=_ref("TuneRequest"), errors=(404, 503), secured=s)},
        "/api/v1/tune/status": {"get": _op(
            "A tune: state, progress, trials, the best one, the Pareto front, its preset",
            ok={200: ("The tune.", _ref("Tune"))},
            params=[_TUNE_ID], errors=(404, 422), secured=s)},
        "/api/v1/tune/cancel": {"post": _op(
            "Stop a running tune and its running trial (measured trials are kept)",
            ok={200: ("The tune, cancelled; or unchanged if it had ended, the message then "
                      "naming its state.", _ref("Tune"))},
            params=[_TUNE_ID], errors=(404, 422), secured=s)},
        "/api/v1/tune/resume": {"post": _op(
            "Go on with a stopped tune (after a restart too), or give it more trials",
            ok={202: ("The tune (running).", _ref("Tune"))},
            params=[_TUNE_ID, _query("budget", Whole(1, 10_000).schema(),
                                     "Its new total number of trials.")],
            errors=(404, 409, 422), secured=s)},
        "/api/v1/tune/preset": {"post": _op(
            "Write a completed trial (default: the best) as a preset; served at once",
            ok={200: ("The tune, with the preset written.", _ref("Tune"))},
            params=[_TUNE_ID,
                    _query("trial", Whole(0, 1_000_000).schema(), "The trial's number."),
                    _query("preset", {"type": "string", "minLength": 1}, "The preset's id.")],
            errors=(404, 409, 422), secured=s)},
        "/api/v1/tune/space": {"get": _op(
            "The space a tune of the model searches by default",
            ok={200: ("BenchConfig fields, a list of values each.", {"type": "object"})},
            params=[_query("model_path", {"type": "string", "minLength": 1},
                           "The model (file name, relative path or name).", required=True),
                    _query("n_prompt", Whole(1, 1_000_000).schema(),
                           "The objective's prompt size (batch sizes stop there).")],
            errors=(404, 422, 503), secured=s)},
        "/api/v1/tunes": {"get": _op(
            "Tunes, newest first, without their trials",
            ok={200: ("Tunes.", {"type": "array", "items": _ref("Tune")})},
            params=[_query("model", {"type": "string", "minLength": 1}, "Model name or path."),
                    _query("limit", Whole(1, 1000).schema(), "At most this many (default 50).")],
            errors=(422,), secured=s)},
        "/v1/models": {"get": _op(
            "The models clients can name (OpenAI's list; each with state, aliases and "
            "memory)", ok={200: ("OpenAI's model list.", _MODEL_LIST)},
            errors=(), secured=s, raw=True, openai=True)},
        "/v1/models/{model}": {"get": _op(
            "One model, by any of its names",
            ok={200: ("The model.", _MODEL_ENTRY)}, params=[_MODEL_PATH],
            errors=(404,), secured=s, raw=True, openai=True)},
        **{path: {"post": _forwarded(path, s)} for path in FORWARDED_ROUTES},
        "/api/v1/health": {"get": _op(
            "Whether the service is up and found its llama.cpp binaries (no key needed)",
            ok={200: ("Health.", _ref("Health"))}, errors=(), secured=s, open_route=True)},
        "/api/v1/openapi.json": {"get": _op(
            "This document", ok={200: ("OpenAPI 3.1.", {"type": "object"})},
            errors=(), secured=s, raw=True)},
        "/metrics": {"get": _op(
            "Prometheus metrics (text exposition format 0.0.4)",
            ok={200: ("Metrics.", {"type": "string"})},
            errors=(), secured=s, content_type="text/plain", raw=True)},
    }  # fmt: skip
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "llamaswitch",
            "version": __version__,
            "description": "Run, switch and benchmark llama.cpp models. Every JSON response "
            'is the envelope {success, message, data, error}; error is "" on success.',
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if secured:
        document["components"]["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "The LLAMASWITCH_API_KEY."}
        }  # fmt: skip
        document["security"] = [{"bearerAuth": []}]
    return document


def build_openapi(*, secured: bool) -> bytes:
    """The document, serialised once per app."""
    return dumps(openapi_document(secured=secured))
