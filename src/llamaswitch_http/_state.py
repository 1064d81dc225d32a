"""Typed application state: the keys under which ``create_app`` stores what handlers use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from llamaswitch._api import AsyncLlamaSwitch
    from llamaswitch._settings import Settings
    from llamaswitch_http._metrics import Metrics
    from llamaswitch_http._sse import EventStreams
    from llamaswitch_http._status_cache import StatusCache
    from llamaswitch_http._upstreams import Upstreams

__all__ = [
    "CORE",
    "EVENT_STREAMS",
    "METRICS",
    "OPENAPI",
    "SETTINGS",
    "STATUS_CACHE",
    "UPSTREAM",
]

#: The async core every handler calls.
CORE: web.AppKey[AsyncLlamaSwitch] = web.AppKey("core")
#: The settings the service runs with (API key, its own address).
SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
#: The Prometheus registry and metrics of this app.
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
#: Open server-sent event streams, closed on shutdown.
EVENT_STREAMS: web.AppKey[EventStreams] = web.AppKey("event_streams")
#: The OpenAPI document, serialised once per app.
OPENAPI: web.AppKey[bytes] = web.AppKey("openapi")
#: The rendered status of all servers, reused until a server event or a short TTL.
STATUS_CACHE: web.AppKey[StatusCache] = web.AppKey("status_cache")
#: The gateway's client to the model servers (a keep-alive pool per upstream).
UPSTREAM: web.AppKey[Upstreams] = web.AppKey("upstream")
