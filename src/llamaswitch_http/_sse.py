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
import typing
from typing import Final

from llamaswitch._events import Event, EventTopic
from llamaswitch._wire import dumps

__all__ = ["EVENT_TOPICS", "SSE_HEADERS", "EventStreams", "render"]

#: The topics a stream can be narrowed to (``?topic=``).
EVENT_TOPICS: Final = typing.get_args(EventTopic)
#: The headers of an event stream.
SSE_HEADERS: Final = {
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
    return head + dumps(event) + b"\n\n"
