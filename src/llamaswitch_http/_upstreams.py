"""The gateway's client to the model servers: a keep-alive pool per server.

:class:`Upstreams` holds one :class:`aiohttp.ClientSession` per model server URL, so that
what happens to one server's connections can be done through aiohttp's public API:

- as a server's load begins, a connection to it is opened (:meth:`Upstreams.preconnect`,
  the supervisor's ``when_listening``);
- just before a server is stopped, its connections are closed (:meth:`Upstreams.drop`,
  the supervisor's ``when_stopping``): llama-server's shutdown waits for each thread
  that holds a kept-alive connection to notice, which cost 4-6 ms of each A/B swap in
  bench/bench_gateway.py. A request still in flight then (only a forced stop leaves
  one) ends as a server that dies ends it, and its session is closed after it.

No timeout of its own (generations take as long as they take; a client that leaves ends
its request), nothing decompressed or re-encoded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Final

import aiohttp
import attrs

from llamaswitch._tasks import BackgroundTasks

__all__ = ["Upstreams", "warm_up"]

#: How long the opening of a connection before ready may take (see preconnect).
_PRECONNECT_TIMEOUT_S: Final = 2.0


class Upstreams:
    """The sessions to the model servers, by base URL (``http://127.0.0.1:8081``);
    ``trace_configs``: aiohttp's hooks on their requests and connections (tests watch
    the pools so)."""

    def __init__(self, *, trace_configs: Sequence[aiohttp.TraceConfig] = ()) -> None:
        self._trace_configs = list(trace_configs)
        self._pools: dict[str, _Pool] = {}
        self._openings = BackgroundTasks()
        # Not cancelled at close, as openings are: a close cancelled before it began
        # would leave its session open.
        self._closings = BackgroundTasks()

    def session(self, url: str) -> aiohttp.ClientSession:
        """The session to the server at ``url`` (made on first use: some 10 µs)."""
        return self._pool(url).session

    @contextlib.contextmanager
    def use(self, url: str) -> Iterator[aiohttp.ClientSession]:
        """``with upstreams.use(url) as session:`` for one request and its answer: the
        session is not closed while a request uses it (see :meth:`drop`)."""
        pool = self._pool(url)
        pool.in_flight += 1
        try:
            yield pool.session
        finally:
            pool.in_flight -= 1
            if not pool.in_flight and self._pools.get(url) is not pool:
                self._close(pool)  # dropped while this request ran: its last one

    def _pool(self, url: str) -> _Pool:
        pool = self._pools.get(url)
        if pool is None:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60,
                                             enable_cleanup_closed=True)  # fmt: skip
            session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None),
                # No cookie jar: a relay must not keep one client's cookies and send them
                # with the next client's requests (and the jar's work is off each request).
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                trace_configs=self._trace_configs,
            )  # fmt: skip
            pool = self._pools[url] = _Pool(session)
        return pool

    def preconnect(self, url: str) -> None:
        """Open a connection to the server at ``url`` in the background, as its load
        begins, before it is ready: the requests that wait for the load then send at
        once, without a connection of their own to set up (0.3-0.5 ms of the cold figure
        of bench/bench_gateway.py).

        Opened at the load's start, not at its end: the child then loads its weights on
        one thread, and this request's work on both sides takes the other core, where at
        the end it would compete with the child's warm-up run on every core (0.6 ms of
        the median in 120 interleaved cold loads). The connection is opened by an
        ``OPTIONS /health``: llama-server answers a CORS preflight 200 while it loads,
        and keeps the connection (any other request gets a 503 that closes it). A server
        ready more than 5 s later has closed it (llama-server keeps an idle connection
        5 s): the request then takes a fresh one, as with any connection found closed."""
        self._openings.start(self._preconnect(url))

    async def _preconnect(self, url: str) -> None:
        with self.use(url) as session:
            await _answered(session, "OPTIONS", f"{url}/health", timeout_s=_PRECONNECT_TIMEOUT_S)

    def drop(self, url: str) -> None:
        """The server at ``url`` is about to stop: close its session, whose idle
        connections close on the loop's next turn, as the stop's signal goes out and
        milliseconds before the server's shutdown would wait for them. A session that
        requests still use (only a forced stop leaves any) is closed after the last one:
        the server's end cuts them, and aiohttp would leave a request whose connection it
        closed itself waiting. A later request to that URL, a new server on the same
        port, gets a new session."""
        pool = self._pools.pop(url, None)
        if pool is not None and not pool.in_flight:
            self._close(pool)

    def _close(self, pool: _Pool) -> None:
        self._closings.start(pool.session.close())

    async def close(self) -> None:
        """Cancel the openings under way and close every session."""
        await self._openings.cancel_all()
        await self._closings.wait_all()
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.session.close()


@attrs.define
class _Pool:
    """One server's session and the requests that use it now; dropped (its server
    stopped) once it is no longer the session of its URL."""

    session: aiohttp.ClientSession
    in_flight: int = 0


async def warm_up(upstreams: Upstreams, url: str) -> None:
    """One request of the upstream client to this service itself, made once it listens.

    A client's first request costs 0.5-1 ms more than the next (aiohttp's and the
    interpreter's first-use work, bench/bench_gateway.py's cold figure): paid here, not
    by the first request that loads a model. Any answer will do: the path has no route,
    so it is a quick 404 (or 401 with an API key), which waits for nothing.
    """
    await _answered(upstreams.session(url), "GET", f"{url}/api/v1/warm-up", timeout_s=2.0)
    upstreams.drop(url)


async def _answered(
    session: aiohttp.ClientSession, method: str, url: str, *, timeout_s: float
) -> None:
    """One request whose answer, whatever it is, is read and dropped (a failure too)."""
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with session.request(method, url, timeout=timeout) as answer:
            await answer.read()
