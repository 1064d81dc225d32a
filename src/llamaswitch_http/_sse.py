"""``GET /api/v1/events``: server state changes and benchmark progress as server-sent events.

Each event of the core's bus becomes one SSE message::

    id: 42
    event: server.state
    data: {"id":42,"topic":"server","type":"state","time":"...","data":{...}}

``event`` is ``<topic>.<type>`` (``server.state``, ``benchmark.progress``,
``benchmark.result``...), so browsers can ``addEventListener`` per kind. A comment line
is sent every ``heartbeat_s`` seconds so proxies keep the connection open and a dead
client is noticed. When the service shuts down every stream gets a final
``event: shutdown`` and is closed, rather than cut when the shutdown timeout expires.

Events are not replayed: the bus keeps no history, so ``Last-Event-ID`` is ignored; a
client that reconnects should read ``/api/v1/model/status`` for the current state.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from aiohttp import web

from llamaswitch._events import Event
from llamaswitch_http._bodies import Query
from llamaswitch_http._errors import dumps
from llamaswitch_http._state import CORE, EVENT_STREAMS

__all__ = ["EventStreams", "events"]

_TOPICS: Final = ("server", "benchmark")
_HEADERS: Final = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    # nginx buffers responses unless told not to; events must arrive when they happen.
    "X-Accel-Buffering": "no",
}


class EventStreams:
    """The open event streams of one app: their heartbeat, and closing them all."""

    def __init__(self, *, heartbeat_s: float = 15.0) -> None:
        self.heartbeat_s = heartbeat_s
        self._closing = asyncio.Event()
        self.open = 0

    @property
    def closing(self) -> bool:
        """Whether the service is shutting down."""
        return self._closing.is_set()

    async def wait_closing(self) -> None:
        """Return once :meth:`close_all` was called."""
        await self._closing.wait()

    def close_all(self) -> None:
        """End every stream (each gets ``event: shutdown`` first)."""
        self._closing.set()


def render(event: Event) -> bytes:
    """One event in SSE framing (the JSON is one line: newlines in strings are escaped)."""
    head = f"id: {event.id}\nevent: {event.topic}.{event.type}\ndata: ".encode()
    return head + dumps(event.to_dict()) + b"\n\n"


async def events(request: web.Request) -> web.StreamResponse:
    """Stream events until the client leaves or the service shuts down.

    ``?topic=server`` or ``?topic=benchmark`` keeps only that topic.
    """
    query = Query(request)
    topic = query.choice("topic", _TOPICS)
    query.check()
    streams = request.app[EVENT_STREAMS]
    response = web.StreamResponse(headers=_HEADERS)
    # Subscribe before the headers go out: a client that sees the response open and then
    # triggers a switch must get the switch's events.
    with request.app[CORE].subscribe() as subscription:
        await response.prepare(request)
        streams.open += 1
        closing = asyncio.ensure_future(streams.wait_closing())
        next_event = asyncio.ensure_future(subscription.get())
        try:
            await response.write(b"retry: 3000\n: connected\n\n")
            while True:
                done, _ = await asyncio.wait(
                    (next_event, closing),
                    timeout=streams.heartbeat_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if closing in done:
                    await response.write(b"event: shutdown\ndata: {}\n\n")
                    break
                if next_event in done:
                    try:
                        event = next_event.result()
                    except EOFError:  # the core closed its event bus: the service is ending
                        await response.write(b"event: shutdown\ndata: {}\n\n")
                        break
                    next_event = asyncio.ensure_future(subscription.get())
                    if topic is None or event.topic == topic:
                        await response.write(render(event))
                else:
                    await response.write(b": heartbeat\n\n")
        except ConnectionResetError:
            return response  # the client left; nothing to finish
        finally:
            streams.open -= 1
            for task in (next_event, closing):
                task.cancel()
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response
