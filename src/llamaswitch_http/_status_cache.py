"""The rendered answer of ``GET /api/v1/model/status`` (all servers), reused briefly.

Dashboards and scripts poll this route in tight loops. Building four statuses and
encoding them as JSON costs several times what aiohttp itself spends on a request, so
the encoded body is kept and served again until either

- a ``server`` event arrives (every state change, start, readiness, exit, restart is
  one): the next request rebuilds it, so a client never sees a state older than the
  last change it could have been told about; or
- ``ttl_s`` passes (default 0.1 s): what changes without an event is the sampled
  figures (RSS, CPU, VRAM), which the core itself refreshes only every 0.5 s.

The event follower runs on the loop that publishes, so an invalidation is processed
before any request that arrives after the change.
"""

from __future__ import annotations

import time
from typing import Final

__all__ = ["StatusCache"]

DEFAULT_TTL_S: Final = 0.1


class StatusCache:
    """One cached response body, dropped on server events and after ``ttl_s``."""

    def __init__(self, *, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._body: bytes | None = None
        self._expires = 0.0

    def get(self) -> bytes | None:
        """The cached body, if still valid."""
        if self._body is not None and time.monotonic() < self._expires:
            return self._body
        return None

    def put(self, body: bytes) -> None:
        """Keep ``body`` for ``ttl_s`` (0 disables caching)."""
        if self.ttl_s > 0:
            self._body = body
            self._expires = time.monotonic() + self.ttl_s

    def invalidate(self) -> None:
        """Forget the body (a server changed state)."""
        self._body = None
