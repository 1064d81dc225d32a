"""The route handlers: parse the request, make one call into the core, answer the envelope.

No logic lives here that the library lacks; errors are raised as they come and answered
by :func:`~llamaswitch_http._errors.error_middleware` with the status their kind states.
Library objects go into the envelope as they are: the wire format
(:mod:`llamaswitch._wire`) writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from llamaswitch._capabilities import BinaryKind
from llamaswitch._errors import ConfigValidationError, LlamaSwitchError, ModelNotFoundError
from llamaswitch._version import __version__
from llamaswitch._vocabulary import MODEL_PORT
from llamaswitch._wire import dumps
from llamaswitch.bench.config import BENCH_OUTPUT_FORMATS, BenchConfig
from llamaswitch.bench.task import TASK_STATES
from llamaswitch.servers.config import ServerConfig
from llamaswitch_http._bodies import (
    BenchmarkBody,
    ImportBody,
    PruneBody,
    Query,
    StopBody,
    SwitchBody,
    parse_config,
    parse_moment,
    read_body,
)
from llamaswitch_http._errors import envelope, json_body, ok
from llamaswitch_http._sse import EVENT_TOPICS, SSE_HEADERS, render
from llamaswitch_http._state import CORE, EVENT_STREAMS, METRICS, OPENAPI, STATUS_CACHE

__all__ = [
    "benchmark_cancel",
    "benchmark_delete",
    "benchmark_status",
    "benchmark_submit",
    "benchmarks_compare",
    "benchmarks_import",
    "benchmarks_list",
    "benchmarks_prune",
    "events",
    "health",
    "metrics",
    "model_key",
    "model_logs",
    "model_start",
    "model_status",
    "model_stop",
    "model_switch",
    "models",
    "openapi",
]

_MAX_LOG_LINES: Final = 10_000
_MAX_HISTORY: Final = 1000
_MAX_COMPARE: Final = 50
_BINARIES: Final[tuple[BinaryKind, ...]] = ("llama-server", "llama-bench")


def _port(query: Query) -> int | None:
    return query.integer("port", minimum=MODEL_PORT.low or 0, maximum=MODEL_PORT.high or 0)


# -- models and servers ----------------------------------------------------------------------


async def models(request: web.Request) -> web.Response:
    """``GET /api/v1/models``: the catalog."""
    Query(request).check()
    found = await request.app[CORE].list_models()
    return ok(found, f"Found {len(found)} GGUF models")


async def model_switch(request: web.Request) -> web.Response:
    """``POST /api/v1/model/switch[?wait=true][&force=true]``: serve a model on the
    config's port.

    Without ``wait`` it answers 202 as soon as the process runs (state ``starting``);
    with ``wait=true`` once the server is ready (200), or with the failure. Gateway
    requests in flight on the server it replaces finish first unless ``force``.
    """
    return await _launch(request, alongside=False)


async def model_start(request: web.Request) -> web.Response:
    """``POST /api/v1/model/start[?wait=true]``: serve a model alongside the others.

    On the config's port if it names one (409 if llamaswitch already serves something
    there), else on a free port of the model port range. Answers like ``switch``.
    """
    return await _launch(request, alongside=True)


async def _launch(request: web.Request, *, alongside: bool) -> web.Response:
    query = Query(request)
    wait = query.flag("wait")
    force = False if alongside else query.flag("force")
    query.check()
    body = await read_body(request, SwitchBody)
    config = parse_config(ServerConfig.from_dict, body.config)
    core = request.app[CORE]
    if alongside:
        status = await core.start(body.model_path, config, wait=wait, host=body.host)
    else:
        status = await core.switch(body.model_path, config, wait=wait, force=force,
                                   host=body.host)  # fmt: skip
    if wait:
        return ok(status, "Model started" if alongside else "Model switched")
    message = "Model start initiated" if alongside else "Model switch initiated"
    return ok(status, message, status=202)


async def model_stop(request: web.Request) -> web.Response:
    """``POST /api/v1/model/stop[?force=true]``: one server by ``model_name`` or
    ``port``, or all. Gateway requests in flight finish first unless ``force``."""
    query = Query(request)
    force = query.flag("force")
    query.check()
    body = await read_body(request, StopBody, optional=True)
    if body.port is not None and (reason := MODEL_PORT.problem(body.port)):
        raise ConfigValidationError([("$.port", reason)])
    stopped = await request.app[CORE].stop(body.model_name, port=body.port, force=force,
                                           host=body.host)  # fmt: skip
    return ok(stopped, "Model stopped")


def _server_ref(query: Query, *, required: bool = False) -> tuple[str | None, int | None]:
    # Both may be given: the library then checks that they name the same server.
    model_name = query.text("model_name")
    port = _port(query)
    if required and not (query.given("model_name") or query.given("port")):
        query.errors.append(("$.query", "name a server by model_name or by port"))
    return model_name, port


async def model_status(request: web.Request) -> web.Response:
    """``GET /api/v1/model/status[?model_name=|port=][&host=]``: one server, or a list
    of all (of every cluster host, with ``host_name``; ``host``: of that one)."""
    query = Query(request)
    model_name, port = _server_ref(query)
    host = query.text("host")
    query.check()
    core = request.app[CORE]
    if host is not None:
        if model_name is None and port is None:
            return ok(await core.status(host=host), "Model status retrieved")
        if model_name is not None:
            found = await core.status(model_name, port=port, host=host)
        else:
            assert port is not None  # noqa: S101 - narrowed above
            found = await core.status(port=port, host=host)
        return ok(found, "Model status retrieved")
    if model_name is None and port is None:
        cache = request.app[STATUS_CACHE]
        body = cache.get()
        if body is None:
            statuses = await core.status()
            body = dumps(envelope(success=True, message="Model status retrieved",
                                  data=statuses))  # fmt: skip
            cache.put(body)
        return json_body(body)
    if model_name is not None:
        return ok(await core.status(model_name, port=port), "Model status retrieved")
    assert port is not None  # noqa: S101 - narrowed above
    return ok(await core.status(port=port), "Model status retrieved")


async def model_logs(request: web.Request) -> web.Response:
    """``GET /api/v1/model/logs?model_name=|port=&lines=``: a server's last output lines."""
    query = Query(request)
    model_name, port = _server_ref(query, required=True)
    lines = query.integer("lines", 100, minimum=1, maximum=_MAX_LOG_LINES)
    host = query.text("host")
    query.check()
    assert lines is not None  # noqa: S101 - has a default
    found = await request.app[CORE].logs(model_name, port=port, lines=lines, host=host)
    return ok(found, f"{len(found)} log lines")


async def model_key(request: web.Request) -> web.Response:
    """``GET /api/v1/model/key?model_name=|port=``: the API key of a server that listens
    beyond loopback (``null`` for a loopback one), for clients that call it directly."""
    query = Query(request)
    model_name, port = _server_ref(query, required=True)
    host = query.text("host")
    query.check()
    key = await request.app[CORE].server_key(model_name, port=port, host=host)
    return ok({"api_key": key}, "Model server key retrieved")


# -- benchmarks --------------------------------------------------------------------------


async def benchmark_submit(request: web.Request) -> web.Response:
    """``POST /api/v1/benchmark``: queue a llama-bench run; 202 with the task id."""
    Query(request).check()
    body = await read_body(request, BenchmarkBody)
    if body.timeout_s is not None and not body.timeout_s > 0:
        raise ConfigValidationError([("$.timeout_s", "must be a number of seconds greater than 0")])
    config = parse_config(BenchConfig.from_dict, body.config)
    core = request.app[CORE]
    if body.host == "*":
        hosts = core.benchmark_hosts(body.model_path)
        if not hosts:
            raise ModelNotFoundError(body.model_path)
        tasks = []
        for host in hosts:
            task_id = await core.submit_benchmark(body.model_path, config,
                                                  timeout_s=body.timeout_s, host=host)  # fmt: skip
            tasks.append(await core.benchmark_status(task_id))
        return ok(tasks, f"{len(tasks)} benchmark tasks created", status=202)
    task_id = await core.submit_benchmark(body.model_path, config, timeout_s=body.timeout_s,
                                          host=body.host)  # fmt: skip
    # The task (it carries task_id) rather than the bare id: the client sees at once
    # whether it runs or waits, and where in the queue.
    task = await core.benchmark_status(task_id)
    return ok(task, "Benchmark task created", status=202)


def _task_id(query: Query) -> str:
    task_id = query.text("task_id", required=True)
    query.check()
    assert task_id is not None  # noqa: S101 - check() raised otherwise
    return task_id


async def benchmark_status(request: web.Request) -> web.Response:
    """``GET /api/v1/benchmark/status?task_id=``: state, progress, results, output, error."""
    task = await request.app[CORE].benchmark_status(_task_id(Query(request)))
    return ok(task, "Benchmark status retrieved")


async def benchmark_cancel(request: web.Request) -> web.Response:
    """``POST /api/v1/benchmark/cancel?task_id=``: stop a queued or running task."""
    core = request.app[CORE]
    task_id = _task_id(Query(request))
    before = await core.benchmark_status(task_id)
    task = await core.cancel_benchmark(task_id)
    if before.finished or task.state != "cancelled":
        # Idempotent, but never vague: the message says the state it was already in.
        return ok(task, f"Benchmark task already {task.state}: nothing to cancel")
    return ok(task, "Benchmark task cancelled")


async def benchmark_delete(request: web.Request) -> web.Response:
    """``DELETE /api/v1/benchmark?task_id=``: remove a finished task and its results."""
    task = await request.app[CORE].delete_benchmark(_task_id(Query(request)))
    return ok(task, "Benchmark task deleted")


async def benchmarks_prune(request: web.Request) -> web.Response:
    """``POST /api/v1/benchmarks/prune``: delete finished tasks by age, model or state."""
    Query(request).check()
    body = await read_body(request, PruneBody)
    before = None
    if body.before is not None:
        before = parse_moment(body.before)
        if before is None:
            raise ConfigValidationError(
                [("$.before", "invalid value for type, expected an ISO 8601 date-time")]
            )
    deleted = await request.app[CORE].prune_benchmarks(
        before=before, model=body.model, state=body.state
    )
    message = f"{len(deleted)} benchmark tasks deleted"
    return ok({"deleted": deleted, "count": len(deleted)}, message)


async def benchmarks_list(request: web.Request) -> web.Response:
    """``GET /api/v1/benchmarks``: history, newest first, filtered."""
    query = Query(request)
    model = query.text("model")
    state = query.choice("state", TASK_STATES)
    since = query.moment("since")
    until = query.moment("until")
    limit = query.integer("limit", 50, minimum=1, maximum=_MAX_HISTORY)
    query.check()
    assert limit is not None  # noqa: S101 - has a default
    tasks = await request.app[CORE].list_benchmarks(
        model=model, state=state, since=since, until=until, limit=limit
    )
    return ok(tasks, f"Found {len(tasks)} benchmark tasks")


async def benchmarks_compare(request: web.Request) -> web.Response:
    """``GET /api/v1/benchmarks/compare?task_ids=a,b``: results side by side."""
    query = Query(request)
    raw = query.text("task_ids", required=True) or ""
    ids = [part.strip() for part in raw.split(",")]
    if raw and (not all(ids) or len(ids) > _MAX_COMPARE):
        query.errors.append(
            ("$.query.task_ids", f"must be 1 to {_MAX_COMPARE} task ids separated by commas")
        )
    query.check()
    comparison = await request.app[CORE].compare_benchmarks(ids)
    return ok(comparison, "Benchmarks compared")


async def benchmarks_import(request: web.Request) -> web.Response:
    """``POST /api/v1/benchmarks/import``: record llama-bench output made elsewhere."""
    Query(request).check()
    body = await read_body(request, ImportBody)
    if body.format not in BENCH_OUTPUT_FORMATS:
        raise ConfigValidationError(
            [("$.format", f"must be one of {', '.join(BENCH_OUTPUT_FORMATS)}")]
        )
    task = await request.app[CORE].import_benchmark(body.text, body.format, model=body.model)
    return ok(task, "Benchmark results imported", status=201)


# -- the service itself ------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    """``GET /api/v1/health`` (no key needed): up, and whether the binaries were found."""
    core = request.app[CORE]
    binaries: dict[str, dict[str, Any]] = {}
    for kind in _BINARIES:
        try:
            info = await core.binary(kind)
        except LlamaSwitchError as exc:
            binaries[kind] = {"found": False, "version": None, "error": str(exc)}
        else:
            binaries[kind] = {"found": True, "version": info.version, "error": None}
    healthy = all(b["found"] for b in binaries.values())
    data = {"status": "ok" if healthy else "degraded", "version": __version__,
            "binaries": binaries}  # fmt: skip
    return ok(data, "Service healthy" if healthy else "Service up; llama.cpp binaries missing")


async def openapi(request: web.Request) -> web.Response:
    """``GET /api/v1/openapi.json``: the document itself (not wrapped in the envelope)."""
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text exposition format (0.0.4)."""
    app_metrics = request.app[METRICS]
    app_metrics.refresh(await request.app[CORE].status())
    body = generate_latest(app_metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/events``: stream events until the client leaves or the service
    shuts down; ``?topic=`` keeps one topic (see :mod:`llamaswitch_http._sse`)."""
    query = Query(request)
    topic = query.choice("topic", EVENT_TOPICS)
    query.check()
    streams = request.app[EVENT_STREAMS]
    response = web.StreamResponse(headers=SSE_HEADERS)
    # Subscribe before the headers go out: a client that sees the response open and then
    # triggers a switch must get the switch's events.
    with request.app[CORE].subscribe() as subscription:
        await response.prepare(request)
        streams.open += 1
        closing = asyncio.ensure_future(streams.wait_closing())
        next_event = asyncio.ensure_future(subscription.get())
        try:
            await response.write(b"retry: 3000\n: connected\n\n")
            while True:
                done, _ = await asyncio.wait(
                    (next_event, closing),
                    timeout=streams.heartbeat_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if closing in done:
                    await response.write(b"event: shutdown\ndata: {}\n\n")
                    break
                if next_event in done:
                    try:
                        event = next_event.result()
                    except EOFError:  # the core closed its event bus: the service is ending
                        await response.write(b"event: shutdown\ndata: {}\n\n")
                        break
                    next_event = asyncio.ensure_future(subscription.get())
                    if topic is None or event.topic == topic:
                        await response.write(render(event))
                else:
                    await response.write(b": heartbeat\n\n")
        except ConnectionResetError:
            return response  # the client left; nothing to finish
        finally:
            streams.open -= 1
            for task in (next_event, closing):
                task.cancel()
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


# -- the gateway's admin routes ----------------------------------------------------------


async def gateway_requests(request: web.Request) -> web.Response:
    """``GET /api/v1/gateway/requests[?limit=]``: recent gateway requests, newest first
    (model, route, status, waits, time to first token, tokens; never prompt text)."""
    query = Query(request)
    limit = query.integer("limit", 100, minimum=1, maximum=1000)
    query.check()
    records = request.app[CORE].gateway.requests.recent(limit or 100)
    return ok(records, f"{len(records)} requests")


async def hosts(request: web.Request) -> web.Response:
    """``GET /api/v1/hosts``: the cluster's hosts (docs/cluster.md); none on one machine."""
    found = await request.app[CORE].hosts()
    return ok(found, f"{len(found)} hosts")


async def gateway_plan(request: web.Request) -> web.Response:
    """``GET /api/v1/gateway/plan[?model=]``: memory per device (used, estimated,
    budget); with ``model``, what loading it would unload, and why (a dry run)."""
    query = Query(request)
    model = query.text("model")
    query.check()
    core = request.app[CORE]
    data = await core.gateway.memory_summary()
    if model is not None:
        data["plan"] = await core.gateway_plan(model)
    return ok(data, "Plan" if model is not None else "Memory")


async def presets(request: web.Request) -> web.Response:
    """``GET /api/v1/presets``: the presets in effect, and why the last reload failed."""
    Query(request).check()
    gateway = request.app[CORE].gateway
    data = gateway.presets.to_data()
    error = gateway.presets_error
    data["error"] = None if error is None else {"code": error.code, **error.details(),
                                                "message": str(error)}  # fmt: skip
    return ok(data, f"{len(data['models'])} presets")


async def presets_reload(request: web.Request) -> web.Response:
    """``POST /api/v1/presets/reload``: read the file again (422 naming the table and
    key when it is bad; the presets in effect then stay)."""
    Query(request).check()
    reloaded = await request.app[CORE].reload_presets()
    return ok({**reloaded.to_data(), "error": None}, f"{len(reloaded.models)} presets loaded")
