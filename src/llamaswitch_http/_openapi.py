"""``GET /api/v1/openapi.json``: an OpenAPI 3.1 document of every route, body and response.

Hand-written rather than generated: the wire shapes are ``to_dict()`` methods, not attrs
fields, and the request schemas must say what the validators accept (``0``/``1`` for
switches, ``""`` for "not set", a value or a list for a sweep). The tests keep it honest:
openapi-spec-validator checks the document, schemathesis checks that real responses match
it and that requests it forbids are refused, and the documented properties are compared
with the keys real objects produce.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from llamaswitch._version import __version__
from llamaswitch.bench.config import BENCH_CACHE_TYPES, BENCH_OUTPUT_FORMATS
from llamaswitch.bench.runner import FINAL_STATES, TASK_STATES
from llamaswitch.servers.config import CACHE_TYPES, SPLIT_MODES
from llamaswitch.servers.supervisor import ServerState
from llamaswitch_http._errors import dumps
from llamaswitch_http._state import OPENAPI

__all__ = ["build_openapi", "openapi", "openapi_document"]

Schema = dict[str, Any]

_INT32_MAX: Final = 2**31 - 1
_SERVER_STATES: Final = tuple(state.value for state in ServerState)
_BENCH_SPLIT_MODES: Final = ("none", "layer", "row", "tensor")
_LOAD_MODES: Final = ("auto", "none", "mmap", "mlock", "mmap+mlock", "dio")
_NUMA: Final = ("distribute", "isolate", "numactl")


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _null(schema: Schema) -> Schema:
    """``schema`` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(
    properties: Mapping[str, Schema],
    *,
    required: Sequence[str] | None = None,
    extra: bool = False,
    description: str | None = None,
) -> Schema:
    schema: Schema = {
        "type": "object",
        "properties": dict(properties),
        "required": list(properties) if required is None else list(required),
        "additionalProperties": extra,
    }
    if description:
        schema["description"] = description
    return schema


_STR: Final[Schema] = {"type": "string"}
_INT: Final[Schema] = {"type": "integer"}
_NUM: Final[Schema] = {"type": "number"}
_BOOL: Final[Schema] = {"type": "boolean"}
_STR_LIST: Final[Schema] = {"type": "array", "items": _STR}
_ANY_OBJ: Final[Schema] = {"type": "object"}


def _int(low: int, high: int, description: str = "") -> Schema:
    schema: Schema = {"type": "integer", "minimum": low, "maximum": high}
    if description:
        schema["description"] = description
    return schema


# -- request bodies -------------------------------------------------------------------------

_SWITCH01: Final[Schema] = {"anyOf": [_BOOL, {"enum": [0, 1]}]}


def _server_config() -> Schema:
    props: dict[str, Schema] = {
        "host": {"type": "string", "minLength": 1,
                 "description": "Address llama-server listens on (default 127.0.0.1)."},
        "port": _int(1, 65535, "Port of the model server (default: the default model port). "
                     "Never the API's own port."),
        "threads": _int(1, 4096),
        "threads_batch": _int(1, 4096),
        "ctx_size": _int(0, _INT32_MAX, "Context size in tokens; 0 takes the model's."),
        "batch_size": _int(1, _INT32_MAX),
        "ubatch_size": _int(1, _INT32_MAX),
        "n_gpu_layers": {"anyOf": [_int(-1, 9999), {"enum": ["auto", "all"]}],
                         "description": "Layers on the GPU; -1 or 'all' for every layer, "
                         "'auto' (current builds). Default: GPU_LAYERS."},
        "flash_attn": {"anyOf": [_BOOL, {"enum": ["on", "off", "auto", 0, 1]}]},
        "split_mode": {"enum": list(SPLIT_MODES)},
        "tensor_split": {"anyOf": [
            {"type": "string", "description": 'Proportion per GPU, e.g. "0.5,0.5".'},
            {"type": "array", "items": {"type": "number", "minimum": 0},
             "minItems": 1, "maxItems": 128},
        ]},
        "main_gpu": _int(0, 1023),
        "mlock": _SWITCH01,
        "cache_type_k": {"enum": list(CACHE_TYPES)},
        "cache_type_v": {"enum": list(CACHE_TYPES)},
        "parallel": _int(1, 4096, "Server slots (concurrent requests)."),
        "alias": {"type": "string", "minLength": 1},
        "no_mmap": _SWITCH01,
        "extra_args": {**_STR_LIST, "description": "Further llama-server arguments, passed "
                       "as an argument list (never through a shell); flags the supervisor "
                       "controls (model, host, port...) are refused."},
        "env": {"type": "object", "additionalProperties": _STR,
                "description": "Extra environment variables of the server process."},
        "restart": {"enum": ["no", "on-failure"]},
        "restart_max": _int(0, 1000, "Restarts in a row before giving up (on-failure)."),
        "restart_backoff_s": {"type": "number", "minimum": 0, "maximum": 3600,
                              "description": "First wait before a restart; doubles each time."},
    }  # fmt: skip
    return _obj(
        {name: _null(schema) for name, schema in props.items()},
        required=[],
        description="llama-server settings (the seed's switch examples' keys and more). "
        "null or absent: not passed, llama.cpp's default applies.",
    )


def _words(choices: Sequence[str], *, blank: bool) -> Schema:
    """A string that is one of ``choices`` once stripped (blank = not set, if allowed)."""
    import re

    alternatives = "|".join(re.escape(c) for c in choices)
    body = f"({alternatives})?" if blank else f"({alternatives})"
    return {"type": "string", "pattern": f"^\\s*{body}\\s*$"}


_BLANK: Final[Schema] = {"type": "string", "pattern": "^\\s*$", "description": "not set"}


def _sweep(item: Schema, *, blank_item: Schema | None = None) -> Schema:
    """One value, a non-empty list of values (a sweep), ``""`` or null (not set)."""
    return {"anyOf": [item, {"type": "array", "items": item, "minItems": 1},
                      blank_item or _BLANK, {"type": "null"}]}  # fmt: skip


def _single(item: Schema) -> Schema:
    return {"anyOf": [item, _BLANK, {"type": "null"}]}


def _bench_config() -> Schema:
    count = _int(0, _INT32_MAX)
    positive = _int(1, _INT32_MAX)
    switch = {"anyOf": [_BOOL, {"enum": [0, 1]}]}
    words = "([oO][nN]|[oO][fF][fF]|[aA][uU][tT][oO]|0|1)"
    flash = {"anyOf": [_BOOL, {"enum": [0, 1]},
                       {"type": "string", "pattern": f"^\\s*{words}\\s*$"}]}  # fmt: skip
    pair_text = {"type": "string", "pattern": "^\\s*[0-9]+\\s*,\\s*[0-9]+\\s*$"}
    pair_list = {"type": "array", "prefixItems": [count, count], "minItems": 2, "maxItems": 2}
    props: dict[str, Schema] = {
        "n_prompt": _sweep(count),
        "n_gen": _sweep(count),
        "n_depth": _sweep(count),
        "pg": {
            "anyOf": [
                pair_text,
                pair_list,
                {"type": "array", "minItems": 1, "items": {"anyOf": [pair_text, pair_list]}},
                _BLANK,
                {"type": "null"},
            ]
        },
        "batch_size": _sweep(positive),
        "ubatch_size": _sweep(positive),
        "cache_type_k": _sweep(_words(BENCH_CACHE_TYPES, blank=False)),
        "cache_type_v": _sweep(_words(BENCH_CACHE_TYPES, blank=False)),
        "threads": _sweep(positive),
        # "0xff" or the seed's "hex,hex" form (a sweep of masks).
        "cpu_mask": _sweep(
            {
                "type": "string",
                "pattern": (
                    "^\\s*(0[xX])?[0-9a-fA-F]{1,128}(\\s*,\\s*(0[xX])?[0-9a-fA-F]{1,128})*\\s*$"
                ),
            }
        ),
        "cpu_strict": _sweep(switch),
        "poll": _sweep(_int(0, 100)),
        "n_gpu_layers": _sweep(_int(-1, _INT32_MAX)),
        "n_cpu_moe": _sweep(count),
        "split_mode": _sweep(_words(_BENCH_SPLIT_MODES, blank=False)),
        "main_gpu": _sweep(count),
        "devices": _sweep({"type": "string", "pattern": "^[^,]*$"}),
        "no_kv_offload": _sweep(switch),
        "flash_attn": _sweep(flash),
        "mmap": _sweep(switch),
        "load_mode": _sweep(_words(_LOAD_MODES, blank=False)),
        "numa": _single(_words(_NUMA, blank=False)),
        "embeddings": _sweep(switch),
        "tensor_split": _sweep({"type": "string"}),
        "override_tensor": _sweep({"type": "string", "pattern": "^[^,]*$"}),
        "no_op_offload": _sweep(switch),
        "repetitions": _single(positive),
        "priority": _single(_int(0, 3)),
        "delay": _single(count),
        "no_warmup": _single(switch),
        "output": _single(_words(BENCH_OUTPUT_FORMATS, blank=False)),
        "output_err": _single(_words((*BENCH_OUTPUT_FORMATS, "none"), blank=False)),
        "verbose": _single(switch),
        "progress": _single(switch),
    }
    return _obj(
        props,
        required=[],
        description="llama-bench settings: the seed's 27 benchmark keys plus newer builds' "
        'options. A list is a sweep (llama-bench runs the cartesian product); "" or null '
        "means not set (llama-bench's default).",
    )


_SWITCH_BODY: Final = _obj(
    {"model_path": {"type": "string", "minLength": 1,
                    "description": "File name, path relative to the models folder, or "
                    "catalog name."},
     "config": _null(_ref("ServerConfig"))},
    required=["model_path"],
)  # fmt: skip
_STOP_BODY: Final = _obj(
    {"model_name": _null({"type": "string", "minLength": 1}),
     "port": _null(_int(1, 65535))},
    required=[],
    description="One of model_name and port, or neither (or no body): stop every server.",
)  # fmt: skip
_BENCH_BODY: Final = _obj(
    {"model_path": {"type": "string", "minLength": 1},
     "config": _null(_ref("BenchConfig")),
     "timeout_s": _null({"type": "number", "exclusiveMinimum": 0,
                         "description": "Time limit of the task (default "
                         "LLAMASWITCH_BENCH_TIMEOUT_S)."})},
    required=["model_path"],
)  # fmt: skip
_IMPORT_BODY: Final = _obj(
    {"text": {"type": "string", "description": "llama-bench output, verbatim."},
     "format": {"enum": list(BENCH_OUTPUT_FORMATS), "default": "json"},
     "model": _null({"type": "string",
                     "description": "The model's name (needed for md output)."})},
    required=["text"],
)  # fmt: skip

_PRUNE_BODY: Final = _obj(
    {"before": _null({"type": "string", "minLength": 1,
                      "description": "ISO 8601: tasks created before this time."}),
     "model": _null({"type": "string", "minLength": 1, "description": "Model name or path."}),
     "state": _null({"enum": sorted(FINAL_STATES)})},
    required=[],
    description="At least one filter; every filter given must match. Queued and running "
    "tasks are never pruned.",
)  # fmt: skip

# -- response data ----------------------------------------------------------------------


_MODEL_INFO: Final = _obj(
    {
        "name": _STR,
        "path": _STR,
        "size": {"type": "integer", "minimum": 0, "description": "Bytes (all shards)."},
        "relative_path": _STR,
        "architecture": _null(_STR),
        "display_name": _null(_STR),
        "parameter_count": _null(_INT),
        "quantization": _null(_STR),
        "context_length": _null(_INT),
        "block_count": _null(_INT),
        "embedding_length": _null(_INT),
        "shard_count": _INT,
        "shard_paths": _STR_LIST,
        "projector_path": _null(_STR),
        "error": _null({**_STR, "description": "Why the file cannot be used."}),
    }
)

_SERVER_STATUS: Final = _obj(
    {
        "running": _BOOL,
        "model_name": _STR,
        "model_path": _STR,
        "port": _INT,
        "start_time": _null({**_STR, "format": "date-time"}),
        "process_id": _null(_INT),
        "vram_usage": _null({**_INT, "description": "MiB; null without an NVIDIA GPU."}),
        "state": {"enum": list(_SERVER_STATES)},
        "host": _STR,
        "url": _STR,
        "ready_after_s": _null(_NUM),
        "rss_mib": _null(_NUM),
        "cpu_percent": _null(_NUM),
        "exit_code": _null(_INT),
        "exited_at": _null({**_STR, "format": "date-time"}),
        "error": _null(_STR),
        "config": _ANY_OBJ,
        "argv": _STR_LIST,
        "binary_version": _STR,
        "vram_per_gpu_mib": _null({"type": "object", "additionalProperties": _INT}),
        "restarts": _INT,
        "log_tail": _STR_LIST,
    },
    description="A model server; the first seven fields are the seed's.",
)

_BENCH_RESULT: Final = _obj(
    {
        "model_filename": _null(_STR),
        "model_type": _null(_STR),
        "model_size": _null(_INT),
        "model_n_params": _null(_INT),
        "test": {**_STR, "description": "pp512, tg128, pp512+tg128, pp512 @ d4096..."},
        "n_prompt": _INT,
        "n_gen": _INT,
        "n_depth": _INT,
        "avg_ts": _null({**_NUM, "description": "Tokens per second."}),
        "stddev_ts": _null(_NUM),
        "avg_ns": _null(_INT),
        "stddev_ns": _null(_INT),
        "samples_ts": _null({"type": "array", "items": _null(_NUM)}),
        "samples_ns": _null({"type": "array", "items": _INT}),
        "build_commit": _null(_STR),
        "build_number": _null(_INT),
        "backends": _null(_STR),
        "test_time": _null(_STR),
        "params": {**_ANY_OBJ, "description": "Every column of the row."},
    }
)

_TIME: Final[Schema] = {"type": "string", "format": "date-time"}

_BENCH_TASK: Final = _obj(
    {
        "id": _STR,
        "task_id": _STR,
        "state": {"enum": list(TASK_STATES)},
        "source": {"enum": ["run", "imported"]},
        "model": _STR,
        "model_path": _null(_STR),
        "config": _ANY_OBJ,
        "argv": _STR_LIST,
        "progress": _obj({"done": _INT, "total": _null(_INT), "current": _null(_STR),
                          "step": _null(_STR)}),
        "queue_position": _null({**_INT, "description": "1: the next to start."}),
        "results": {"type": "array", "items": _ref("BenchResult")},
        "output": _null({**_STR, "description": "llama-bench's stdout in the requested "
                         "format, verbatim (when the task ended)."}),
        "output_format": _STR,
        "error": _null(_STR),
        "exit_code": _null(_INT),
        "stderr_tail": _null(_STR),
        "created_at": _TIME,
        "started_at": _null(_TIME),
        "finished_at": _null(_TIME),
        "state_history": {"type": "array", "items": {
            "type": "array", "prefixItems": [_STR, _null(_TIME)], "minItems": 2, "maxItems": 2}},
        "timeout_s": _null(_NUM),
        "binary_version": _null(_STR),
        "binary_commit": _null(_STR),
        "host": _ANY_OBJ,
        "running_servers": {"type": "array", "items": _ANY_OBJ},
    },
    description="A benchmark task.",
)  # fmt: skip

_COMPARISON: Final = _obj(
    {
        "tasks": {"type": "array", "items": _obj({
            "id": _STR, "model": _STR, "state": {"enum": list(TASK_STATES)},
            "config": _ANY_OBJ, "binary_version": _null(_STR), "created_at": _TIME})},
        "rows": {"type": "array", "items": _obj({
            "test": _STR, "label": _STR, "params": _ANY_OBJ,
            "results": {"type": "object", "description": "By task id; null where that task "
                        "has no such test.",
                        "additionalProperties": _null(_obj({"avg_ts": _null(_NUM),
                                                            "stddev_ts": _null(_NUM)}))}})},
    }
)  # fmt: skip

_BINARY: Final = _obj({"found": _BOOL, "version": _null(_STR), "error": _null(_STR)})
_HEALTH: Final = _obj(
    {
        "status": {"enum": ["ok", "degraded"]},
        "version": _STR,
        "binaries": _obj({"llama-server": _BINARY, "llama-bench": _BINARY}),
    }
)

_ERROR_ENVELOPE: Final = _obj(
    {
        "success": {"const": False},
        "message": {"type": "string", "minLength": 1, "description": "Short summary."},
        "data": _obj(
            {
                "code": {**_STR, "description": "Machine-readable error code."},
                "errors": {**_STR_LIST, "description": "422: every problem as "
                           "'reason @ $.path'."},
                "suggestions": {**_STR_LIST, "description": "404 model: closest names."},
                "trace_id": {**_STR, "description": "500: quote it when reporting."},
                "port": _INT,
                "host": _STR,
                "holder": _null(_STR),
                "exit_code": _null(_INT),
                "log_tail": _STR_LIST,
                "field": _STR,
                "binary": _STR,
                "version": _STR,
                "line": _null(_INT),
            },
            required=["code"],
        ),
        "error": {"type": "string", "minLength": 1, "description": "The full explanation."},
    }
)  # fmt: skip


def _success(data: Schema) -> Schema:
    return _obj({"success": {"const": True}, "message": _STR, "data": data, "error": {"const": ""}})


# -- operations -------------------------------------------------------------------------

_ERRORS: Final[Mapping[int, str]] = {
    400: "Malformed JSON body.",
    401: "Missing or wrong API key.",
    403: "Cross-site request from a browser, or a Host header naming another machine "
    "while the service listens on loopback (DNS-rebinding guard).",
    404: "Unknown model, server or task.",
    408: "The request body did not arrive in time (the connection is closed).",
    409: "Port in use, port reserved for the API, switch superseded, or a benchmark task "
    "whose state forbids the request (data.state names it).",
    413: "Body too large.",
    415: "Body not sent as application/json.",
    422: "Validation failed: data.errors lists every problem as 'reason @ $.path'.",
    500: "A bug: data.trace_id matches the logged traceback.",
    502: "The model server exited before it became ready (data.log_tail says why).",
    503: "llama.cpp binary missing or unusable.",
    504: "The model server did not become ready in time.",
}


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
            "content": _json(_ref("ErrorEnvelope")),
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
_PORT = _query("port", _int(1, 65535), "A model server's port.")
_TASK_ID = _query("task_id", {"type": "string", "minLength": 1}, "The task id.", required=True)


def openapi_document(*, secured: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document; ``secured`` adds the bearer-key requirement."""
    s = secured
    paths: dict[str, Any] = {
        "/api/v1/models": {"get": _op(
            "List the GGUF models of the models folder (message: 'Found N GGUF models')",
            ok={200: ("The catalog.", {"type": "array", "items": _ref("ModelInfo")})},
            errors=(), secured=s)},
        "/api/v1/model/switch": {"post": _op(
            "Serve a model on the config's port, replacing what runs there",
            ok={202: ("Switch initiated: the server is starting.", _ref("ServerStatus")),
                200: ("With wait=true: the server is ready.", _ref("ServerStatus"))},
            params=[_query("wait", _BOOL, "Answer when the server is ready (or failed).")],
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
            body=_null(_ref("StopRequest")), body_required=False, errors=(404,), secured=s)},
        "/api/v1/model/status": {"get": _op(
            "Status of one server (model_name or port, not both) or of all (a list)",
            ok={200: ("One server with model_name or port, else a list.", {"anyOf": [
                _ref("ServerStatus"), {"type": "array", "items": _ref("ServerStatus")}]})},
            params=[_MODEL_NAME, _PORT], errors=(404, 422), secured=s)},
        "/api/v1/model/logs": {"get": _op(
            "The last lines a model server printed (name it by model_name or port)",
            ok={200: ("Log lines, oldest first.", _STR_LIST)},
            params=[_MODEL_NAME, _PORT,
                    _query("lines", _int(1, 10_000), "How many lines (default 100).")],
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
            params=[_MODEL_NAME, _PORT], errors=(404, 422), secured=s)},
        "/api/v1/benchmarks": {"get": _op(
            "Benchmark history, newest first",
            ok={200: ("Tasks.", {"type": "array", "items": _ref("BenchTask")})},
            params=[
                _query("model", {"type": "string", "minLength": 1}, "Model name or path."),
                _query("state", {"enum": list(TASK_STATES)}, "Only tasks in this state."),
                _query("since", {"type": "string", "minLength": 1},
                       "ISO 8601 date or date-time (UTC unless a zone is given)."),
                _query("until", {"type": "string", "minLength": 1}, "ISO 8601, as since."),
                _query("limit", _int(1, 1000), "At most this many (default 50)."),
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
            params=[_query("topic", {"enum": ["server", "benchmark"]}, "Only this topic.")],
            errors=(422,), secured=s, content_type="text/event-stream", raw=True)},
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
        "components": {
            "schemas": {
                "ServerConfig": _server_config(),
                "BenchConfig": _bench_config(),
                "SwitchRequest": _SWITCH_BODY,
                "StopRequest": _STOP_BODY,
                "BenchmarkRequest": _BENCH_BODY,
                "ImportRequest": _IMPORT_BODY,
                "PruneRequest": _PRUNE_BODY,
                "ModelInfo": _MODEL_INFO,
                "ServerStatus": _SERVER_STATUS,
                "BenchResult": _BENCH_RESULT,
                "BenchTask": _BENCH_TASK,
                "Comparison": _COMPARISON,
                "Health": _HEALTH,
                "ErrorEnvelope": _ERROR_ENVELOPE,
            },
        },
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


async def openapi(request: web.Request) -> web.Response:
    """``GET /api/v1/openapi.json``: the document itself (not wrapped in the envelope)."""
    return web.Response(body=request.app[OPENAPI], content_type="application/json")
