"""The response envelope, and the one middleware that turns every exception into it.

Every response, success or error, is the seed's envelope::

    {"success": bool, "message": str, "data": ..., "error": str}

``error`` is ``""`` on success. On failure ``message`` is the error kind's title ("Model
not found"), ``error`` the full explanation (the exception's text) and ``data`` an object
with the machine-readable ``code`` plus the kind's structured details: ``errors`` (422,
every bad field as ``reason @ $.path``), ``suggestions`` (unknown model), ``log_tail`` (a
server that failed to start), ``trace_id`` (500)...

The status, code and title of each kind are the library's own
(:mod:`llamaswitch._errors`): nothing is mapped here. Anything that escapes a handler
without being a library error is a bug: it is logged with a trace id and answered 500
with that id, so a user's report can be matched to the log line.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from typing import Any, Final, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from llamaswitch._errors import (
    ConfigValidationError,
    InternalServiceError,
    LlamaSwitchError,
    MethodNotAllowedError,
    RequestError,
    RequestTooLargeError,
    RouteNotFoundError,
    UnauthorizedError,
)
from llamaswitch._wire import dumps

__all__ = [
    "Handler",
    "envelope",
    "error_middleware",
    "error_response",
    "error_shape",
    "json_body",
    "json_response",
    "ok",
    "openai_error_response",
    "openai_errors",
    "speaks_openai",
]

logger = logging.getLogger(__name__)

_JSON: Final = "application/json"
#: Headers an error kind adds to its answer.
_HEADERS: Final[Mapping[type[LlamaSwitchError], Mapping[str, str]]] = {
    UnauthorizedError: {"WWW-Authenticate": 'Bearer realm="llamaswitch"'},
}


def envelope(
    *, success: bool, message: str, data: object = None, error: str = ""
) -> dict[str, Any]:
    """The seed's response envelope."""
    return {"success": success, "message": message, "data": data, "error": error}


def json_body(body: bytes, *, status: int = 200) -> web.Response:
    """A response from an already rendered JSON body."""
    return web.Response(body=body, status=status, content_type=_JSON)


def json_response(
    body: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response (UTF-8, compact); typed values are written in the wire format."""
    return web.Response(body=dumps(body), status=status, content_type=_JSON, headers=headers)


def ok(data: object, message: str, *, status: int = 200) -> web.Response:
    """A success envelope around ``data`` (any wire value: library objects included)."""
    return json_response(envelope(success=True, message=message, data=data), status=status)


def error_response(
    exc: LlamaSwitchError, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The envelope of a library error, with the status, code and title its kind states."""
    data = {"code": exc.code, **exc.details()}
    if exc.http_status == 422 and "errors" not in data:
        # The seed's clients read every 422's problems from data.errors, a list.
        data["errors"] = [str(exc)]
    extra = {**_HEADERS.get(type(exc), {}), **(headers or {})}
    # A validation error reads as the seed's list, "reason @ $.path; ...".
    text = "; ".join(data["errors"]) if isinstance(exc, ConfigValidationError) else str(exc)
    return json_response(
        envelope(success=False, message=exc.title, data=data, error=text or exc.title),
        status=exc.http_status,
        headers=extra,
    )


# -- OpenAI's shape, on the gateway's routes ----------------------------------------------

#: Marks a handler whose errors take OpenAI's shape (the gateway's routes): set on the
#: handler the router chose, as the key guard's open routes are.
_OPENAI_MARK: Final = "_llamaswitch_openai_errors"
_H = TypeVar("_H")


def openai_errors(handler: _H) -> _H:
    """Answer ``handler``'s errors (and the middlewares' before it) in OpenAI's shape."""
    setattr(handler, _OPENAI_MARK, True)
    return handler


def speaks_openai(request: web.Request) -> bool:
    """Whether the route ``request`` reached answers errors in OpenAI's shape."""
    return getattr(request.match_info.handler, _OPENAI_MARK, False) is True


def _openai_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_shape(path: str, status: int, message: str, code: str) -> dict[str, Any]:
    """OpenAI's error object, ``{"error": {"message", "type", "param", "code"}}``;
    Anthropic's (``{"type": "error", "error": {"type", "message"}}``) on
    ``/v1/messages``, whose clients read that one."""
    if path.startswith("/v1/messages"):
        kind = {429: "rate_limit_error", 503: "overloaded_error"}.get(status)
        return {"type": "error", "error": {
            "type": kind or ("api_error" if status >= 500 else _openai_type(status)),
            "message": message}}  # fmt: skip
    return {"error": {"message": message, "type": _openai_type(status), "param": None,
                      "code": code}}  # fmt: skip


def openai_error_response(
    request: web.Request, exc: LlamaSwitchError, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A library error in OpenAI's shape, with its kind's status; its details (the log
    tail of a failed load, the figures of a refusal) under ``error.details``."""
    extra = {**_HEADERS.get(type(exc), {}), **(headers or {})}
    retry = getattr(exc, "retry_after_s", None)
    if isinstance(retry, int | float) and retry > 0:
        extra["Retry-After"] = str(max(1, math.ceil(retry)))
    body = error_shape(request.path, exc.http_status, str(exc), exc.code)
    details = {k: v for k, v in exc.details().items() if v not in (None, [], "")}
    if details:
        body["error"]["details"] = details
    return json_response(body, status=exc.http_status, headers=extra)


def _http_error(exc: web.HTTPException, request: web.Request) -> web.StreamResponse:
    """aiohttp's own errors (no route, wrong method, a body over the limit) as library
    errors, so they too come in the envelope."""
    if exc.status < 400:
        raise exc  # redirects and the like are not errors
    error: LlamaSwitchError
    if exc.status == 404:
        error = RouteNotFoundError(f"no route {request.method} {request.path}")
    elif exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        error = MethodNotAllowedError(
            f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
        )
    elif exc.status == 413:
        error = RequestTooLargeError(exc.text or exc.reason)
    else:
        error = RequestError(exc.text or exc.reason)
    # Keep Allow (405) and the like; the body and its type are ours.
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() not in {"content-type", "content-length"}
    }
    if speaks_openai(request):
        response = openai_error_response(request, error, headers=headers)
    else:
        response = error_response(error, headers=headers)
    response.set_status(exc.status)
    return response


def _bug(exc: BaseException, request: web.Request) -> web.Response:
    trace_id = uuid.uuid4().hex[:16]
    logger.error(
        "unhandled error, trace id %s, %s %s", trace_id, request.method, request.path,
        exc_info=exc,
    )  # fmt: skip
    error = InternalServiceError(
        f"internal error; quote trace id {trace_id} when reporting it", trace_id=trace_id
    )
    if speaks_openai(request):
        return openai_error_response(request, error, headers={"X-Trace-Id": trace_id})
    return error_response(error, headers={"X-Trace-Id": trace_id})


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every exception a handler raises with the envelope of its kind."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return _http_error(exc, request)
    except LlamaSwitchError as exc:
        if type(exc) is LlamaSwitchError:  # a bare one is a fault nobody foresaw
            return _bug(exc, request)
        if speaks_openai(request):
            return openai_error_response(request, exc)
        return error_response(exc)
    except Exception as exc:  # the one place where bugs become a 500 with a trace id
        return _bug(exc, request)
