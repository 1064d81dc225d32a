"""Who may call the service: the API key, and no cross-site writes from browsers.

When ``LLAMASWITCH_API_KEY`` is set, every route except ``/api/v1/health`` (and the
dashboard's static files, which hold no data) needs ``Authorization: Bearer <key>`` (what
OpenAI clients send) or ``x-api-key: <key>`` (what Anthropic clients send); the key is
compared in constant time. The gateway's routes (``/v1``, ``/upstream``) are no
exception. Independently of the key, a ``POST`` that a browser sends from another site
(an ``Origin`` header naming a different host) is refused: a service on ``127.0.0.1`` is
reachable from every web page the user opens, and a form posted to
``/api/v1/model/stop`` needs no preflight.

A service bound to a loopback address also refuses requests whose ``Host`` header names
anything but this machine: that is how DNS rebinding reaches a loopback service (a page on
``evil.example`` re-resolves its own name to 127.0.0.1 and then calls it same-origin).
"""

from __future__ import annotations

import functools
import hmac
import logging
from typing import Final, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from llamaswitch._errors import CrossSiteRequestError, ForeignHostError, UnauthorizedError
from llamaswitch._settings import is_loopback
from llamaswitch_http._errors import Handler

__all__ = ["OPEN_PATHS", "guard_middleware", "open_without_key"]

logger = logging.getLogger(__name__)

#: Routes that answer without the key: load balancers and `doctor`-style probes need them.
OPEN_PATHS: Final = frozenset({"/api/v1/health"})
#: Methods a cross-site page may send that change nothing.
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
#: Marks a handler that answers without the key (the dashboard's static files). The mark
#: is on the handler the router chose, not on a path prefix, so no spelling of a path
#: (``/ui/../api/v1/models``) can borrow it.
_OPEN_MARK: Final = "_llamaswitch_open_without_key"
_H = TypeVar("_H")


def open_without_key(handler: _H) -> _H:
    """Let ``handler`` answer without the API key: only for content that holds no data."""
    setattr(handler, _OPEN_MARK, True)
    return handler


def _cross_site(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return False  # not a browser, or a same-origin GET
    # "null" (sandboxed frames, file://) has no netloc and never matches.
    return urlsplit(origin).netloc.lower() != request.host.lower()


def _foreign_host(request: web.Request) -> bool:
    """Whether the Host header names something other than this machine's loopback."""
    host = request.headers.get("Host")
    if not host:
        return False  # HTTP/1.0 clients send none; no browser does that
    return _foreign(host)


@functools.lru_cache(maxsize=256)
def _foreign(host: str) -> bool:
    # Cached: every request asks, with the same few Host values (bounded: a client that
    # sends many different ones only evicts).
    name = urlsplit(f"//{host}").hostname or ""
    return not (is_loopback(name) or name.endswith(".localhost"))


def guard_middleware(api_key: str | None, *, loopback_only: bool = False) -> Middleware:
    """The middleware enforcing the API key (if any), refusing cross-site POSTs and, for a
    service bound to loopback (``loopback_only``), requests for another host name."""
    expected: bytes | None = api_key.encode() if api_key else None

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if loopback_only and _foreign_host(request):
            raise ForeignHostError(
                f"requests for host {request.headers.get('Host')!r} are refused: this service "
                "listens on loopback only (a DNS-rebinding guard)"
            )
        if request.method not in _SAFE_METHODS and _cross_site(request):
            raise CrossSiteRequestError(
                f"cross-site request from {request.headers.get('Origin')!r} refused"
            )
        open_route = request.path in OPEN_PATHS or getattr(
            request.match_info.handler, _OPEN_MARK, False
        )
        if expected is not None and not open_route:
            header = request.headers.get("Authorization")
            anthropic = request.headers.get("x-api-key")
            if header is None and anthropic is None:
                raise UnauthorizedError("this service needs an API key: send "
                                        "'Authorization: Bearer <key>'")  # fmt: skip
            if header is not None:
                scheme, _, token = header.partition(" ")
            else:  # what Anthropic's clients send
                scheme, token = "bearer", anthropic or ""
            # Header values arrive decoded with surrogateescape; encode the same way so
            # any byte sequence compares (and fails) in constant time instead of raising.
            given = token.strip().encode("utf-8", "surrogateescape")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
                # Logged without the key: a client with a wrong one shows up in the log.
                logger.info("refused %s %s from %s: wrong API key", request.method,
                            request.path, request.remote)  # fmt: skip
                raise UnauthorizedError(
                    "the API key is wrong (expected 'Authorization: Bearer <key>')"
                )
        return await handler(request)

    return guard
