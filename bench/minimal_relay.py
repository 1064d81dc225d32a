"""A bare relay for bench/bench_gateway.py: the load's steps and the relay, nothing else.

On its first request it starts llama-server as a router's child (``posix_spawn``, the
router's variable), waits for the ready line on its stdout, opens its upstream connection
when the weights are in (the ``OPTIONS`` the gateway sends), and relays the stream. It
has no placement, no names, no records, no events, no metrics and no checks: what is left
is the cost of Python, aiohttp (its server and its client) and uvloop on that path. The
gateway's cold and warm figures beside it show what the gateway's own work adds; the
router's show what llama.cpp's C++ does in its place.

    python bench/minimal_relay.py LLAMA_SERVER MODEL PORT CHILD_PORT
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import aiohttp
import uvloop
from aiohttp import web

from llamaswitch.servers.fit import MALLOC_TUNABLES, TUNABLES

SERVER, MODEL, PORT, CHILD_PORT = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
UPSTREAM = f"http://127.0.0.1:{CHILD_PORT}"
SESSION = web.AppKey("session", aiohttp.ClientSession)
STATE: dict[str, Any] = {}


class _Output(asyncio.Protocol):
    """The child's stdout: the weights line opens the connection, the ready line goes."""

    def __init__(self, ready: asyncio.Future[None], open_connection: Any) -> None:
        self.ready = ready
        self.open_connection = open_connection
        self.seen = bytearray()
        self.opened = False

    def data_received(self, data: bytes) -> None:
        self.seen += data
        if self.ready.done():
            return
        if b'"state":"ready"' in self.seen:
            self.ready.set_result(None)
        elif not self.opened and b'"value":1.0' in self.seen:
            self.opened = True
            STATE["opening"] = asyncio.get_running_loop().create_task(self.open_connection())


async def _open_connection(session: aiohttp.ClientSession) -> None:
    async with session.options(f"{UPSTREAM}/health") as answer:
        await answer.read()


async def _start(session: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    STATE["ready"] = ready
    stdout_read, stdout_write = os.pipe()
    stdin_read, stdin_write = os.pipe()
    # --fit off, and glibc's allocator tuned as the fit leaves it: the gateway does so
    # where the fit could change nothing (llamaswitch/servers/fit.py), as here.
    argv = [SERVER, "--model", MODEL, "--host", "127.0.0.1", "--port", str(CHILD_PORT),
            "--ctx-size", "2048", "--fit", "off"]  # fmt: skip
    env = {**os.environ, "LLAMA_SERVER_ROUTER_PORT": str(PORT), TUNABLES: MALLOC_TUNABLES}
    actions = [(os.POSIX_SPAWN_DUP2, stdin_read, 0), (os.POSIX_SPAWN_DUP2, stdout_write, 1),
               (os.POSIX_SPAWN_DUP2, stdout_write, 2)]  # fmt: skip
    # Blocking, on the loop: as the gateway does (a fraction of a millisecond).
    STATE["pid"] = os.posix_spawn(SERVER, argv, env, file_actions=actions, setsid=True,  # noqa: ASYNC221
                                  setsigdef=(signal.SIGPIPE,))  # fmt: skip
    os.close(stdout_write)
    os.close(stdin_read)
    STATE["stdin"] = stdin_write
    pipe = os.fdopen(stdout_read, "rb", 0)  # the transport closes it
    await loop.connect_read_pipe(lambda: _Output(ready, lambda: _open_connection(session)), pipe)


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    session = request.app[SESSION]
    if "ready" not in STATE:
        await _start(session)
    await STATE["ready"]
    headers = {"Content-Type": "application/json"}
    async with session.post(f"{UPSTREAM}/v1/completions", data=body, headers=headers) as up:
        kind = {"Content-Type": up.headers["Content-Type"]}
        if not kind["Content-Type"].startswith("text/event-stream"):
            # Whole, as the gateway answers: the warm figure's floor.
            return web.Response(body=await up.read(), status=up.status, headers=kind)
        response = web.StreamResponse(status=up.status, headers=kind)
        await response.prepare(request)
        async for chunk in up.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def lifecycle(app: web.Application) -> Any:
    app[SESSION] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), auto_decompress=False
    )
    yield
    await app[SESSION].close()
    if "pid" in STATE:
        os.killpg(STATE["pid"], signal.SIGKILL)
        os.waitpid(STATE["pid"], 0)  # noqa: ASYNC222 - SIGKILLed: at once


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/api/v1/health", health)
    app.cleanup_ctx.append(lifecycle)
    loop = uvloop.new_event_loop()  # as the service runs (LLAMASWITCH_EVENT_LOOP=auto)
    asyncio.set_event_loop(loop)
    web.run_app(app, host="127.0.0.1", port=PORT, print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
