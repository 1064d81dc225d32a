"""``create_app()``: the aiohttp application of the llamaswitch REST service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from llamaswitch._api import AsyncLlamaSwitch
from llamaswitch._errors import LlamaSwitchError
from llamaswitch._events import Event
from llamaswitch._settings import Settings, is_loopback
from llamaswitch._wire import dumps
from llamaswitch_http import _gateway as gw
from llamaswitch_http import _handlers as h
from llamaswitch_http import _tuning as tu
from llamaswitch_http._auth import guard_middleware
from llamaswitch_http._bodies import (
    BODY_TIMEOUT_S,
    GATEWAY_MAX_BODY_BYTES,
    body_limits_middleware,
)
from llamaswitch_http._errors import error_middleware
from llamaswitch_http._metrics import Metrics
from llamaswitch_http._openapi import build_openapi
from llamaswitch_http._sse import EventStreams
from llamaswitch_http._state import (
    CORE,
    EVENT_STREAMS,
    METRICS,
    OPENAPI,
    SETTINGS,
    STATUS_CACHE,
    UPSTREAM,
)
from llamaswitch_http._status_cache import DEFAULT_TTL_S, StatusCache
from llamaswitch_http._ui import add_ui_routes
from llamaswitch_http._upstreams import Upstreams

__all__ = ["MAX_BODY_BYTES", "ROUTES", "create_app"]

#: Every event of the core, a line each (``serve --log-level info`` shows them).
events_log = logging.getLogger("llamaswitch.events")
#: How long the events' log lines wait, in batches, behind what the events announce.
_EVENT_LOG_DELAY_S: Final = 0.05

#: Largest request body accepted (413 above). Imported llama-bench output is the biggest
#: thing a client sends; a 1,000-test sweep in JSON is well under this.
MAX_BODY_BYTES: Final = 4 * 1024 * 1024

#: (method, path, handler): the whole HTTP surface, in the order of the issue's table
#: (plus ``model/start``, the core's "alongside" start, which ``llamaswitch --url`` uses).
ROUTES: Final = (
    ("GET", "/api/v1/models", h.models),
    ("POST", "/api/v1/model/switch", h.model_switch),
    ("POST", "/api/v1/model/start", h.model_start),
    ("POST", "/api/v1/model/stop", h.model_stop),
    ("GET", "/api/v1/model/status", h.model_status),
    ("GET", "/api/v1/model/logs", h.model_logs),
    ("GET", "/api/v1/model/key", h.model_key),
    ("POST", "/api/v1/benchmark", h.benchmark_submit),
    ("GET", "/api/v1/benchmark/status", h.benchmark_status),
    ("POST", "/api/v1/benchmark/cancel", h.benchmark_cancel),
    ("DELETE", "/api/v1/benchmark", h.benchmark_delete),
    ("GET", "/api/v1/benchmarks", h.benchmarks_list),
    ("GET", "/api/v1/benchmarks/compare", h.benchmarks_compare),
    ("POST", "/api/v1/benchmarks/import", h.benchmarks_import),
    ("POST", "/api/v1/benchmarks/prune", h.benchmarks_prune),
    ("GET", "/api/v1/gateway/requests", h.gateway_requests),
    ("GET", "/api/v1/gateway/plan", h.gateway_plan),
    ("GET", "/api/v1/hosts", h.hosts),
    ("GET", "/api/v1/presets", h.presets),
    ("POST", "/api/v1/presets/reload", h.presets_reload),
    # Tuning (docs/tuning.md).
    ("POST", "/api/v1/tune", tu.tune_start),
    ("GET", "/api/v1/tune/status", tu.tune_status),
    ("POST", "/api/v1/tune/cancel", tu.tune_cancel),
    ("POST", "/api/v1/tune/resume", tu.tune_resume),
    ("POST", "/api/v1/tune/preset", tu.tune_preset),
    ("GET", "/api/v1/tune/space", tu.tune_space),
    ("GET", "/api/v1/tunes", tu.tunes_list),
    ("GET", "/api/v1/events", h.events),
    ("GET", "/api/v1/health", h.health),
    ("GET", "/api/v1/openapi.json", h.openapi),
    ("GET", "/metrics", h.metrics),
    # The gateway (docs/gateway.md); /upstream/{model}/{path} and any other /v1/ path
    # that names a model are added last, by add_catch_all_routes.
    ("GET", "/v1/models", gw.list_models),
    ("GET", "/v1/models/{model}", gw.get_model),
    *(("POST", path, gw.forward) for path in gw.FORWARDED_ROUTES),
)


async def _follow_events(app: web.Application) -> None:
    """Feed the core's events to what accumulates or caches them, until cancelled.

    The log lines follow a little later, a batch at a time: an event (a server ready)
    often comes just before the request that waited for it goes on, and formatting and
    writing its line (0.1-0.3 ms) would come first.
    """
    metrics, cache = app[METRICS], app[STATUS_CACHE]
    loop = asyncio.get_running_loop()
    unlogged: list[Event] = []

    def write_log() -> None:
        for event in unlogged:
            events_log.info("%s.%s %s", event.topic, event.type, dumps(event.data).decode())
        unlogged.clear()

    try:
        with app[CORE].subscribe() as subscription:
            async for event in subscription:
                if event.topic in ("server", "gateway"):
                    cache.invalidate()
                metrics.observe(event)
                # One line per event, not per progress tick.
                if event.type != "progress" and events_log.isEnabledFor(logging.INFO):
                    if not unlogged:
                        loop.call_later(_EVENT_LOG_DELAY_S, write_log)
                    unlogged.append(event)
    finally:
        write_log()


async def _core_lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Open the core before the first request; close it (servers stopped, benchmarks
    interrupted) after the last one."""
    core = app[CORE]
    await core.open()
    follower = asyncio.create_task(_follow_events(app), name="llamaswitch-events")
    # Identifying llama-server (--version, --help: tens of ms), then preparing the
    # gateway's loads, now keeps both off the first request that loads a model. Awaited,
    # not cancelled, at the end: a cancel would leave its thread, and the process it
    # runs, behind.
    identify = asyncio.create_task(_identify_server(core), name="llamaswitch-identify")
    try:
        upstreams = app[UPSTREAM] = Upstreams()
        hooks = (core.supervisor.when_listening(upstreams.preconnect),
                 core.supervisor.when_stopping(upstreams.drop))  # fmt: skip
        try:
            yield
        finally:
            for unhook in hooks:
                unhook()
            await upstreams.close()
    finally:
        await asyncio.gather(identify, return_exceptions=True)
        try:
            await core.close()
        finally:
            # Cancelled after the close: the servers it stops are logged (and counted)
            # as they go, like any other.
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


async def _identify_server(core: AsyncLlamaSwitch) -> None:
    # A binary that cannot be used is reported by the request that needs it.
    with contextlib.suppress(LlamaSwitchError):
        await core.binary("llama-server")
        await core.gateway.prepare()


async def _end_long_requests(app: web.Application) -> None:
    # on_shutdown runs before in-flight handlers are awaited: without this, each open
    # event stream, and a request waiting for a long catalog scan, would hold the
    # shutdown for its whole timeout.
    app[EVENT_STREAMS].close_all()
    app[CORE].catalog.close()


def create_app(
    ls: AsyncLlamaSwitch | None = None,
    *,
    settings: Settings | None = None,
    client_max_size: int = MAX_BODY_BYTES,
    sse_heartbeat_s: float = 15.0,
    status_cache_ttl_s: float = DEFAULT_TTL_S,
    body_timeout_s: float = BODY_TIMEOUT_S,
) -> web.Application:
    """The REST service as an aiohttp application.

    ``ls`` is the core the handlers call (default: one built from ``settings``, else from
    the environment). The application owns its lifecycle either way: it opens the core
    on startup and closes it on cleanup, which stops every model server it started and
    marks running benchmarks ``interrupted``. ``settings`` (default: the core's) provide
    the API key and the service's own address. ``status_cache_ttl_s`` bounds how long the
    rendered list of all servers' statuses is reused between server events (0: never);
    ``body_timeout_s`` how long a client may take to send a request body (408 after).

    >>> from aiohttp import web
    >>> app = create_app(settings=Settings(models_dir="models"))
    >>> # web.run_app(app, host="127.0.0.1", port=8080)  - or use run_server()
    """
    core = ls if ls is not None else AsyncLlamaSwitch(settings)
    settings = settings if settings is not None else core.settings
    app = web.Application(
        middlewares=[
            error_middleware,
            guard_middleware(settings.api_key, loopback_only=is_loopback(settings.server_host)),
            body_limits_middleware(
                max_bytes=client_max_size,
                timeout_s=body_timeout_s,
                gateway_max_bytes=GATEWAY_MAX_BODY_BYTES,
            ),
        ],
        client_max_size=client_max_size,
    )
    app[CORE] = core
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[EVENT_STREAMS] = EventStreams(heartbeat_s=sse_heartbeat_s)
    app[STATUS_CACHE] = StatusCache(ttl_s=status_cache_ttl_s)
    app[OPENAPI] = build_openapi(secured=settings.api_key is not None)
    app.cleanup_ctx.append(_core_lifecycle)
    app.on_shutdown.append(_end_long_requests)
    for method, path, handler in ROUTES:
        if method == "GET":
            # HEAD on the event stream would hold the connection with nothing to send.
            app.router.add_get(path, handler, allow_head=handler is not h.events)
        else:
            app.router.add_route(method, path, handler)
    add_ui_routes(app, auth_required=settings.api_key is not None)
    gw.add_catch_all_routes(app)
    return app
