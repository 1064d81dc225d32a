"""The response envelope and the one middleware that turns every exception into it.

Every response, success or error, is the seed's envelope::

    {"success": bool, "message": str, "data": ..., "error": str}

``error`` is ``""`` on success. On failure ``message`` is a short summary ("Model not
found"), ``error`` the full explanation (the exception's text) and ``data`` an object with
a machine-readable ``code`` plus whatever helps the client act: ``errors`` (422, every bad
field as ``reason @ $.path``), ``suggestions`` (unknown model), ``log_tail`` (a server that
failed to start), ``trace_id`` (500).

Status codes follow the library's exception tree (see :data:`_STATUS`); anything else that
escapes a handler is a bug: it is logged with a trace id and answered 500 with that id, so
a user's report can be matched to the log line.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any, Final

import attrs
from aiohttp import web
from aiohttp.typedefs import Handler

from llamaswitch._errors import (
    BenchError,
    BenchParseError,
    BinaryIdentityError,
    BinaryNotFoundError,
    ConfigValidationError,
    LlamaSwitchError,
    ModelNotFoundError,
    ModelPathError,
    ModelUnusableError,
    PortInUseError,
    ReadinessTimeoutError,
    ReservedPortError,
    ServerNotFoundError,
    ServerStartError,
    ServiceClosedError,
    SupersededError,
    TaskNotFoundError,
    TaskStateError,
    TaskTimeoutError,
    UnsupportedOptionError,
)
from llamaswitch._text import scrub

__all__ = [
    "ApiError",
    "Handler",
    "dumps",
    "envelope",
    "error_middleware",
    "json_body",
    "json_response",
    "ok",
    "validation_error",
]

logger = logging.getLogger("llamaswitch_http")


_JSON = "application/json"


def _default(value: object) -> object:
    """What ``json.dumps`` cannot encode on its own, in the shapes the core uses."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if attrs.has(type(value)):
        return attrs.asdict(value, recurse=False)  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _finite(value: object) -> object:
    """NaN and infinities as null: strict JSON parsers (and schemathesis) reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(value: object) -> bytes:
    """Compact UTF-8 JSON; paths, datetimes and enums as strings, NaN as null."""
    try:
        text = json.dumps(value, default=_default, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":"))  # fmt: skip
    except ValueError:
        # Rare (a llama-bench stddev of NaN): walk the value only when it is needed.
        text = json.dumps(_finite(value), default=_default, ensure_ascii=False,
                          separators=(",", ":"))  # fmt: skip
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate got past the boundaries (a row stored by an older version):
        # answer with U+FFFD in its place rather than fail the whole response.
        return scrub(text).encode()


def envelope(
    *, success: bool, message: str, data: object = None, error: str = ""
) -> dict[str, Any]:
    """The seed's response envelope."""
    return {"success": success, "message": message, "data": data, "error": error}


def json_body(body: bytes, *, status: int = 200) -> web.Response:
    """A response from an already rendered JSON body."""
    return web.Response(body=body, status=status, content_type=_JSON)


def json_response(
    body: Mapping[str, Any], *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response (UTF-8, compact)."""
    return web.Response(body=dumps(body), status=status, content_type=_JSON, headers=headers)


def ok(data: object, message: str, *, status: int = 200) -> web.Response:
    """A success envelope."""
    return json_response(envelope(success=True, message=message, data=data), status=status)


class ApiError(Exception):
    """An error the adapter itself detects (bad JSON, a bad query parameter, no key).

    ``message`` is the envelope's short summary, ``detail`` its ``error`` text, ``data``
    extra fields for ``data`` (``code`` is always set).
    """

    def __init__(
        self,
        status: int,
        message: str,
        detail: str,
        *,
        code: str,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.message = message
        self.detail = detail
        self.data: dict[str, Any] = {"code": code, **(data or {})}
        self.headers = dict(headers or {})


def validation_error(errors: Sequence[str]) -> ApiError:
    """A 422 listing every problem as ``reason @ $.path``."""
    return ApiError(
        422,
        "Validation failed",
        "; ".join(errors),
        code="validation_error",
        data={"errors": list(errors)},
    )


def config_errors(exc: ConfigValidationError) -> list[str]:
    """A ConfigValidationError's ``(path, reason)`` pairs as ``reason @ $.path``.

    Handlers re-root config errors at ``$.config`` (see ``parse_config``); other paths the
    library reports (``model`` of an import, ``timeout_s``) name top-level body fields.
    """
    result = []
    for path, reason in exc.errors:
        rooted = path if path.startswith("$") else f"$.{path}" if path else "$"
        result.append(f"{reason} @ {rooted}")
    return result


# (exception class, HTTP status, short message, code): the first match wins, so
# subclasses come before their bases.
_STATUS: Final[tuple[tuple[type[LlamaSwitchError], int, str, str], ...]] = (
    (ModelNotFoundError, 404, "Model not found", "model_not_found"),
    (ServerNotFoundError, 404, "Server not found", "server_not_found"),
    (TaskNotFoundError, 404, "Benchmark task not found", "task_not_found"),
    (TaskStateError, 409, "Benchmark task state forbids it", "task_state"),
    (PortInUseError, 409, "Port in use", "port_in_use"),
    (ReservedPortError, 409, "Port reserved", "port_reserved"),
    (SupersededError, 409, "Switch superseded", "superseded"),
    (ConfigValidationError, 422, "Validation failed", "validation_error"),
    (UnsupportedOptionError, 422, "Option not supported by the llama.cpp binary",
     "unsupported_option"),
    (ModelPathError, 422, "Model path refused", "model_path_refused"),
    (ModelUnusableError, 422, "Model unusable", "model_unusable"),
    (BenchParseError, 422, "Benchmark output could not be parsed", "bench_parse_error"),
    # The model server is our upstream: its failure to come up is a gateway error,
    # not a bug of this service.
    (ServerStartError, 502, "Model server failed to start", "server_start_failed"),
    (BinaryNotFoundError, 503, "llama.cpp binary not found", "binary_not_found"),
    (BinaryIdentityError, 503, "llama.cpp binary unusable", "binary_unusable"),
    (ReadinessTimeoutError, 504, "Model server not ready in time", "readiness_timeout"),
    (TaskTimeoutError, 504, "Benchmark task timed out", "task_timeout"),
    (ServiceClosedError, 503, "Service closing", "service_closed"),
    # Last: the base class (a database that cannot be written, say).
    (BenchError, 503, "Benchmarks unavailable", "bench_unavailable"),
)  # fmt: skip

_HTTP_MESSAGES: Final[Mapping[int, str]] = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    413: "Request body too large",
    415: "Unsupported media type",
}


def _library_error(exc: LlamaSwitchError) -> web.Response | None:
    for cls, status, message, code in _STATUS:
        if isinstance(exc, cls):
            data: dict[str, Any] = {"code": code}
            if isinstance(exc, ConfigValidationError):
                data["errors"] = config_errors(exc)
                return json_response(
                    envelope(success=False, message=message, data=data,
                             error="; ".join(data["errors"])),
                    status=status,
                )  # fmt: skip
            if isinstance(exc, ModelNotFoundError):
                data["suggestions"] = exc.suggestions
            elif isinstance(exc, PortInUseError):
                data.update(port=exc.port, host=exc.host, holder=exc.holder)
            elif isinstance(exc, ServerStartError):
                data.update(exit_code=exc.exit_code, log_tail=exc.log_tail)
            elif isinstance(exc, UnsupportedOptionError):
                data.update(field=exc.field, binary=exc.binary, version=exc.version)
            elif isinstance(exc, BenchParseError):
                data["line"] = exc.line
            elif isinstance(exc, TaskStateError):
                data.update(task_id=exc.task_id, state=exc.state)
            if status == 422:
                data["errors"] = [str(exc)]
            return json_response(
                envelope(success=False, message=message, data=data, error=str(exc)),
                status=status,
            )
    return None


def _http_error(exc: web.HTTPException, request: web.Request) -> web.StreamResponse:
    if exc.status < 400:
        raise exc  # redirects and the like are not errors
    message = _HTTP_MESSAGES.get(exc.status, exc.reason)
    if exc.status == 404:
        detail = f"no route {request.method} {request.path}"
    elif exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        detail = f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
    else:
        detail = exc.text or exc.reason
    # Keep Allow (405) and the like; the body and its type are ours.
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() not in {"content-type", "content-length"}
    }
    code = message.lower().replace(" ", "_")
    return json_response(
        envelope(success=False, message=message, data={"code": code}, error=detail),
        status=exc.status,
        headers=headers,
    )


def _bug(exc: Exception, request: web.Request) -> web.Response:
    trace_id = uuid.uuid4().hex[:16]
    logger.error(
        "unhandled error, trace id %s, %s %s", trace_id, request.method, request.path,
        exc_info=exc,
    )  # fmt: skip
    return json_response(
        envelope(
            success=False,
            message="Internal server error",
            data={"code": "internal_error", "trace_id": trace_id},
            error=f"internal error; quote trace id {trace_id} when reporting it",
        ),
        status=500,
        headers={"X-Trace-Id": trace_id},
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every exception a handler raises to the envelope with the right status."""
    try:
        return await handler(request)
    except ApiError as exc:
        return json_response(
            envelope(success=False, message=exc.message, data=exc.data, error=exc.detail),
            status=exc.status,
            headers=exc.headers,
        )
    except web.HTTPException as exc:
        return _http_error(exc, request)
    except LlamaSwitchError as exc:
        mapped = _library_error(exc)
        return mapped if mapped is not None else _bug(exc, request)
    except Exception as exc:  # the one place where bugs become a 500 with a trace id
        return _bug(exc, request)
