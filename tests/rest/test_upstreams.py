"""The gateway's pools to the model servers: a session per server, closed as it stops,
but never under a request that still uses it."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestServer

from llamaswitch_http._upstreams import Upstreams
from tests.rest.conftest import run


async def _slow(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(5):
        await response.write(b"tick\n")
        await asyncio.sleep(0.02)
    return response


def test_a_dropped_pool_is_closed_at_once_when_idle_and_after_its_last_request_otherwise() -> None:
    # A forced stop drops the pool of a server whose stream is in flight: that stream
    # reads on to the end the server gives it (aiohttp would leave a request whose
    # connection it closed itself waiting for ever), and the pool closes after it.
    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/slow", _slow)
        async with TestServer(app) as server:
            url = str(server.make_url("")).rstrip("/")
            upstreams = Upstreams()
            try:
                idle = upstreams.session(url)
                upstreams.drop(url)
                await asyncio.sleep(0)
                assert idle.closed

                with upstreams.use(url) as busy:
                    assert busy is not idle  # a new server on the URL: a new pool
                    async with busy.get(f"{url}/slow") as answer:
                        upstreams.drop(url)
                        await asyncio.sleep(0.01)
                        assert not busy.closed  # still read from
                        assert await answer.read() == b"tick\n" * 5
                await asyncio.sleep(0)
                assert busy.closed  # the last request ended
                assert upstreams.session(url) is not busy
            finally:
                await upstreams.close()

    run(scenario())


def test_the_close_ends_a_pool_dropped_just_before_it() -> None:
    # A pool dropped as the service ends (a stop in the same turn of the loop) has its
    # session's close still to run: the service's close waits for it, not cancels it.
    async def scenario() -> None:
        upstreams = Upstreams()
        dropped = upstreams.session("http://127.0.0.1:9")
        kept = upstreams.session("http://127.0.0.1:10")
        upstreams.drop("http://127.0.0.1:9")
        await upstreams.close()
        assert dropped.closed
        assert kept.closed

    run(scenario())


async def _cookies(request: web.Request) -> web.Response:
    response = web.Response(text=request.headers.get("Cookie", "none"))
    response.set_cookie("session", "first-client")
    return response


def test_a_cookie_the_server_sets_is_not_kept_for_the_next_request() -> None:
    # The pools are shared by every client of the gateway: a cookie one answer set,
    # kept and sent with the next request, would hand one client's session to another.
    # (The Set-Cookie itself still reaches the client: the relay passes headers back.)
    # By name: aiohttp's default jar keeps no cookie of an IP address anyway.
    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/cookies", _cookies)
        async with TestServer(app, host="127.0.0.1") as server:
            url = f"http://localhost:{server.port}"
            upstreams = Upstreams()
            try:
                seen = []
                for _ in range(2):
                    with upstreams.use(url) as session:
                        async with session.get(f"{url}/cookies") as answer:
                            assert "session=first-client" in answer.headers["Set-Cookie"]
                            seen.append(await answer.text())
                assert seen == ["none", "none"]
            finally:
                await upstreams.close()

    run(scenario())
