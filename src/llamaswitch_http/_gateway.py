"""The gateway's HTTP routes: parse the model name, lease its server, forward.

OpenAI's routes (``/v1/chat/completions``...), Anthropic's (``/v1/messages``),
llama-server's own (``/completion``, ``/tokenize``...) and any other ``/v1/`` path that
names a model are forwarded to the server of the model the JSON body (or ``?model=`` on a
GET) names; ``/upstream/{model}/{path}`` forwards anything, as it is. The library decides
everything else (:class:`~llamaswitch.gateway.gateway.ModelGateway`): which server, when
to load, what to unload. Here:

- bodies are passed through as they came, and answers as they come: a stream chunk by
  chunk (``text/event-stream``, no buffering, no re-encoding), anything else whole;
- a client that disconnects aborts its upstream request at once (the connection to
  llama-server is closed, which stops its generation and frees the slot);
- a model server that dies mid-stream ends the client's stream with an error event;
- each upstream has a keep-alive pool (:mod:`llamaswitch_http._upstreams`);
- errors take OpenAI's shape ``{"error": {"message", "type", "code"}}`` (Anthropic's on
  ``/v1/messages``), never the envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Iterator
from typing import Any, Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from llamaswitch._errors import (
    LlamaSwitchError,
    MalformedBodyError,
    MethodNotAllowedError,
    ModelNotFoundError,
    RequestError,
)
from llamaswitch._wire import dumps, to_wire
from llamaswitch.gateway.gateway import Lease
from llamaswitch.gateway.requests import RequestRecord
from llamaswitch.gateway.surface import Gateway
from llamaswitch_http._errors import error_shape, openai_error_response, openai_errors
from llamaswitch_http._state import CORE, METRICS, UPSTREAM

__all__ = [
    "FORWARDED_ROUTES",
    "add_catch_all_routes",
    "forward",
    "get_model",
    "list_models",
    "upstream",
]

logger = logging.getLogger(__name__)

#: POST routes forwarded by the body's ``model`` (those llama-server has, in both
#: generations or the current one; a route the upstream lacks answers its own 404).
FORWARDED_ROUTES: Final = (
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
    "/v1/rerank", "/v1/messages", "/v1/messages/count_tokens",
    "/completion", "/infill", "/tokenize", "/detokenize", "/apply-template", "/embedding",
    "/rerank",
)  # fmt: skip

_LLAMA_ROUTES: Final = frozenset(r for r in FORWARDED_ROUTES if not r.startswith("/v1/"))

# Hop-by-hop headers (RFC 9110 7.6.1) and what this proxy sets itself.
_HOP: Final = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length", "authorization",
    "x-api-key", "cookie",
})  # fmt: skip
_HOP_BACK: Final = frozenset({
    "connection", "keep-alive", "transfer-encoding", "content-length", "server", "date",
    "access-control-allow-origin",
})  # fmt: skip

# Token counts in upstream answers: OpenAI's usage, llama-server's own fields.
_TOKENS: Final = re.compile(rb'"(?:completion_tokens|tokens_predicted|predicted_n)"\s*:\s*(\d+)')
_SPEED: Final = re.compile(rb'"predicted_per_second"\s*:\s*([0-9.eE+-]+)')

#: Tries of a request whose pooled connection turns out dead (one per stale connection).
_STALE_TRIES: Final = 3
#: How often a non-streaming request looks whether its client is still there.
_DISCONNECT_POLL_S: Final = 0.1


def _problem(request: web.Request, status: int, message: str, code: str) -> web.Response:
    return web.Response(body=dumps(error_shape(request.path, status, message, code)),
                        status=status, content_type="application/json")  # fmt: skip


def _is_event_stream(content_type: str) -> bool:
    # The header as it is: aiohttp's parsed content_type goes through the email package
    # (0.2 ms on each new value).
    return content_type[:17].lower() == "text/event-stream"


def _headers_out(request: web.Request, lease: Lease) -> CIMultiDict[str]:
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP)
    if lease.api_key is not None:
        headers["Authorization"] = f"Bearer {lease.api_key}"
    return headers


def _headers_back(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BACK)


# -- handlers ----------------------------------------------------------------------------


def _model_of(body: bytes) -> str | None:
    """The JSON body's ``model`` (None when the body names none)."""
    if not body:
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedBodyError(f"the request body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedBodyError("the request body must be a JSON object")
    model = data.get("model")
    if model is None:
        return None
    if not isinstance(model, str) or not model:
        raise RequestError(f"model must be a non-empty string, got {model!r}")
    return model


def _default_model(gateway: Gateway, path: str) -> str:
    """The model a request that names none goes to: the one model being served, for
    llama-server's own routes (which single-model clients call without a model)."""
    if path in _LLAMA_ROUTES:
        serving = gateway.serving_ids()
        if len(serving) == 1:
            return serving[0]
    raise RequestError("name the model: the body's \"model\" field (or ?model= on a GET); "
                       "GET /v1/models lists them")  # fmt: skip


@openai_errors
async def forward(request: web.Request) -> web.StreamResponse:
    """A gateway route: the body's (or the query's) ``model`` picks the server."""
    core = request.app[CORE]
    gateway = core.gateway
    try:
        body = await request.read()
        model = request.query.get("model") if request.method in ("GET", "HEAD") else None
        if model is None:
            model = _model_of(body) if request.method not in ("GET", "HEAD") else None
        if model is None:
            model = _default_model(gateway, request.path)
    except LlamaSwitchError as exc:
        return openai_error_response(request, exc)
    return await _proxied(request, gateway, model, request.path_qs, body)


@openai_errors
async def upstream(request: web.Request) -> web.StreamResponse:
    """``/upstream/{model}/{path}``: anything, as it is, to that model's server."""
    core = request.app[CORE]
    model = request.match_info["model"]
    path = "/" + request.match_info["path"]
    if request.query_string:
        path = f"{path}?{request.query_string}"
    body = await request.read()
    return await _proxied(request, core.gateway, model, path, body)


async def _proxied(
    request: web.Request, gateway: Gateway, model: str, path: str, body: bytes
) -> web.StreamResponse:
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else None
    record = gateway.requests.begin(model, request.path, template=template)
    metrics = request.app[METRICS]
    for attempt in (1, 2):
        try:
            lease = await gateway.acquire(model, record=record)
        except LlamaSwitchError as exc:
            record.finish(exc.http_status, error=exc.code)
            metrics.gateway_request(record)
            return openai_error_response(request, exc)
        if attempt == 1:
            record.queue_wait_s = lease.queue_wait_s
            record.load_wait_s = lease.load_wait_s
        else:
            record.load_wait_s = (record.load_wait_s or 0.0) + lease.load_wait_s
        record.state = "running"
        try:
            with _cancelled_if_the_client_leaves(request):
                return await _answer(request, gateway, lease, path=path, body=body,
                                     record=record)  # fmt: skip
        except _Unreachable as exc:
            gateway.release(lease)
            # Its server died just before (a crash not reaped yet): load it again, once.
            if attempt == 2 or not await gateway.lost(lease):
                record.finish(502, error="upstream unreachable")
                metrics.gateway_request(record)
                return _problem(request, 502, f"the model server for {lease.model} did not "
                                f"take the connection: {exc}", "upstream_unreachable")  # fmt: skip
    raise AssertionError("unreachable")  # pragma: no cover


async def _answer(
    request: web.Request,
    gateway: Gateway,
    lease: Lease,
    *,
    path: str,
    body: bytes,
    record: RequestRecord,
) -> web.StreamResponse:
    """Send the request on ``lease`` and answer; the lease is released here, except when
    the server did not take the connection (:class:`_Unreachable`)."""
    metrics = request.app[METRICS]
    try:
        response, status = await _send(request, lease, path, body, record)
    except _Unreachable:
        raise  # the caller releases the lease, and may try again
    except asyncio.CancelledError:
        record.error = record.error or "client disconnected"
        _finish(gateway, lease, record, metrics, 499)  # the client left
        raise
    except BaseException:
        _finish(gateway, lease, record, metrics, 502)
        raise
    _finish(gateway, lease, record, metrics, status)
    return response


def _finish(
    gateway: Gateway, lease: Lease, record: RequestRecord, metrics: Any, status: int
) -> None:
    gateway.release(lease)
    if record.finished_at is None:
        record.finish(status, error=None if status < 400 else record.error)
    metrics.gateway_request(record)


async def _send(
    request: web.Request, lease: Lease, path: str, body: bytes, record: RequestRecord
) -> tuple[web.StreamResponse, int]:
    # The pool is not closed while this request and its answer use it (Upstreams.drop).
    with request.app[UPSTREAM].use(lease.url) as session:
        return await _relay(request, session, lease, path=path, body=body, record=record)


async def _relay(
    request: web.Request,
    session: aiohttp.ClientSession,
    lease: Lease,
    *,
    path: str,
    body: bytes,
    record: RequestRecord,
) -> tuple[web.StreamResponse, int]:
    async def exchange() -> tuple[aiohttp.ClientResponse, bytes | None]:
        # One task for the round trip: a stream's body is read chunk by chunk below.
        headers = _headers_out(request, lease)
        for attempt in range(1, _STALE_TRIES + 1):
            try:
                answer = await session.request(request.method, lease.url + path,
                                               data=body or None, headers=headers)  # fmt: skip
                break
            except aiohttp.ClientConnectorError:
                raise  # nothing listens: the caller sees whether the server died
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                # A pooled connection that the server closed as it was reused (the
                # legacy build closes keep-alive connections on its own; a server that
                # died leaves them reset): the request was not answered, so another
                # try on a fresh connection is safe.
                if attempt == _STALE_TRIES:
                    raise
        if _is_event_stream(answer.headers.get("Content-Type", "")):
            return answer, None
        try:
            return answer, await answer.read()
        except BaseException:
            answer.release()
            raise

    try:
        upstream, data = await exchange()
    except aiohttp.ClientConnectorError as exc:
        raise _Unreachable(str(exc)) from exc
    except aiohttp.ClientError as exc:
        record.error = "upstream failed"
        return _problem(request, 502, f"the model server for {lease.model} failed to "
                        f"answer: {exc}", "upstream_failed"), 502  # fmt: skip
    try:
        record.status = upstream.status
        if data is None:
            return await _stream(request, upstream, lease, record), upstream.status
        record.ttft_s = record.elapsed_s()
        _count_tokens(record, data)
        response = web.Response(body=data, status=upstream.status, headers=_headers_back(upstream))
        return response, upstream.status
    finally:
        upstream.release()


async def _stream(
    request: web.Request, upstream: aiohttp.ClientResponse, lease: Lease, record: RequestRecord
) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, headers=_headers_back(upstream))
    # Each chunk goes out as it arrives: no compression, no buffering by proxies.
    response.headers["X-Accel-Buffering"] = "no"
    await response.prepare(request)
    last = b""
    try:
        async for chunk in upstream.content.iter_any():
            if record.ttft_s is None:
                record.ttft_s = record.elapsed_s()
            last = chunk if (b'"usage"' in chunk or b'"timings"' in chunk) else last
            await response.write(chunk)
    except asyncio.CancelledError:
        upstream.close()  # the client left: closing the upstream connection stops it
        raise
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        # The client left: closing the upstream connection stops the generation.
        upstream.close()
        record.finish(499, error="client disconnected")
        return response
    except aiohttp.ClientError as exc:
        upstream.close()
        record.finish(502, error="upstream died mid-stream")
        event = error_shape(request.path, 502, f"the model server for {lease.model} ended "
                            f"the stream: {exc}", "upstream_died")  # fmt: skip
        with contextlib.suppress(ConnectionResetError, aiohttp.ClientConnectionResetError):
            await response.write(b"event: error\ndata: " + dumps(event) + b"\n\n")
            await response.write_eof()
        return response
    if last:
        _count_tokens(record, last)
    with contextlib.suppress(ConnectionResetError, aiohttp.ClientConnectionResetError):
        await response.write_eof()
    return response


def _count_tokens(record: RequestRecord, data: bytes) -> None:
    found = _TOKENS.findall(data)
    if found:
        record.tokens = int(found[-1])
    speed = _SPEED.findall(data)
    if speed:
        with contextlib.suppress(ValueError):
            record.tokens_per_s = float(speed[-1])


class _Unreachable(Exception):
    """The lease's server did not take the connection (nothing was sent)."""


@contextlib.contextmanager
def _cancelled_if_the_client_leaves(request: web.Request) -> Iterator[None]:
    """Cancel the handler as soon as its client has gone.

    aiohttp does not cancel a handler whose client disconnects (``serve`` runs it so,
    for the admin routes' sake), and a long non-streaming generation writes nothing that
    would notice. A timer looks at the connection every :data:`_DISCONNECT_POLL_S`: no
    task and no wait on the hot path, and the cancellation aborts the upstream request
    (its connection is closed, which stops llama-server's generation).
    """
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None

    def look() -> None:
        nonlocal handle
        transport = request.transport
        if transport is None or transport.is_closing():
            if task is not None:
                task.cancel()
            return
        handle = loop.call_later(_DISCONNECT_POLL_S, look)

    handle = loop.call_later(_DISCONNECT_POLL_S, look)
    try:
        yield
    finally:
        handle.cancel()


# -- the gateway's own answers -----------------------------------------------------------


def _model_entry(view: Any) -> dict[str, Any]:
    data = to_wire(view)
    estimated = view.estimated.total_mib if view.estimated is not None else None
    measured = view.measured.total_mib if view.measured is not None else None
    return {
        "id": view.id, "object": "model", "created": 0, "owned_by": "llamaswitch",
        **{k: v for k, v in data.items() if k != "id"},
        "estimated_mib": None if estimated is None else round(estimated, 1),
        "measured_mib": None if measured is None else round(measured, 1),
    }  # fmt: skip


@openai_errors
async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: OpenAI's list; each entry with state, aliases and memory."""
    views = await request.app[CORE].gateway_models()
    body = {"object": "list", "data": [_model_entry(v) for v in views]}
    return web.Response(body=dumps(body), content_type="application/json")


@openai_errors
async def get_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{model}``: one entry (any of its names), 404 naming it."""
    name = request.match_info["model"]
    views = await request.app[CORE].gateway_models()
    for view in views:
        if name == view.id or name in view.aliases:
            return web.Response(body=dumps(_model_entry(view)), content_type="application/json")
    close = [v.id for v in views if name.lower() in v.id.lower()][:3]
    raise ModelNotFoundError(name, close)


def add_catch_all_routes(app: web.Application) -> None:
    """The routes no list can spell: ``/upstream/{model}/{path}`` (any method) and any
    other ``/v1/`` path that names a model. Added last: they match what nothing else
    did."""
    app.router.add_route("*", "/upstream/{model}/{path:.*}", upstream)
    app.router.add_route("*", "/v1/{tail:.*}", other_v1)


@openai_errors
async def other_v1(request: web.Request) -> web.StreamResponse:
    """Any other ``/v1/`` path: forwarded by the model it names. A route of ours called
    with another method is a 405, not a forward."""
    allowed = _OWN_METHODS.get(request.path)
    if allowed is None and request.path.startswith("/v1/models/"):
        allowed = "GET, HEAD"
    if allowed is None and request.method not in _FORWARDED_METHODS:
        allowed = ", ".join(sorted(_FORWARDED_METHODS))
    if allowed is not None:
        error = MethodNotAllowedError(f"{request.method} is not allowed on {request.path}; "
                                      f"allowed: {allowed}")  # fmt: skip
        return openai_error_response(request, error, headers={"Allow": allowed})
    return await forward(request)


#: The methods our own /v1 routes take (any other is a 405 there).
_OWN_METHODS: Final = {"/v1/models": "GET, HEAD",
                       **dict.fromkeys((r for r in FORWARDED_ROUTES if r.startswith("/v1/")),
                                       "POST")}  # fmt: skip
_FORWARDED_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
