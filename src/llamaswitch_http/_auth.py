"""Who may call the service: the API key, and no cross-site writes from browsers.

When ``LLAMASWITCH_API_KEY`` is set, every route except ``/api/v1/health`` needs
``Authorization: Bearer <key>``; the key is compared in constant time. Independently of
the key, a ``POST`` that a browser sends from another site (an ``Origin`` header naming a
different host) is refused: a service on ``127.0.0.1`` is reachable from every web page
the user opens, and a form posted to ``/api/v1/model/stop`` needs no preflight.
"""

from __future__ import annotations

import hmac
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from llamaswitch_http._errors import ApiError, Handler

__all__ = ["OPEN_PATHS", "guard_middleware"]

#: Routes that answer without the key: load balancers and `doctor`-style probes need them.
OPEN_PATHS: Final = frozenset({"/api/v1/health"})


def _unauthorized(detail: str) -> ApiError:
    return ApiError(
        401,
        "Unauthorized",
        detail,
        code="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="llamaswitch"'},
    )


def _cross_site(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return False  # not a browser, or a same-origin GET
    # "null" (sandboxed frames, file://) has no netloc and never matches.
    return urlsplit(origin).netloc.lower() != request.host.lower()


def guard_middleware(api_key: str | None) -> Middleware:
    """The middleware enforcing the API key (if any) and refusing cross-site POSTs."""
    expected: bytes | None = api_key.encode() if api_key else None

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST" and _cross_site(request):
            raise ApiError(
                403,
                "Forbidden",
                f"cross-site request from {request.headers.get('Origin')!r} refused",
                code="cross_site_request",
            )
        if expected is not None and request.path not in OPEN_PATHS:
            header = request.headers.get("Authorization")
            if header is None:
                raise _unauthorized("this service needs an API key: send "
                                    "'Authorization: Bearer <key>'")  # fmt: skip
            scheme, _, token = header.partition(" ")
            # Header values arrive decoded with surrogateescape; encode the same way so
            # any byte sequence compares (and fails) in constant time instead of raising.
            given = token.strip().encode("utf-8", "surrogateescape")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
                raise _unauthorized("the API key is wrong (expected 'Authorization: Bearer <key>')")
        return await handler(request)

    return guard
