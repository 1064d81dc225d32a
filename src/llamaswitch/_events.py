"""In-process events: server state changes and benchmark progress, for any subscriber.

The supervisor and the benchmark runner publish; the REST adapter streams them as
server-sent events; scripts can ``async for event in ls.events(): ...``. A slow subscriber
never blocks a publisher: each subscriber has a bounded queue and, when it is full, the
oldest event is dropped and counted. :meth:`EventBus.close` (called when the
:class:`~llamaswitch.AsyncLlamaSwitch` closes) ends every subscription: a subscriber
waiting for the next event wakes up, gets the events published before the close, and
then its iteration ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, Literal

import attrs

from llamaswitch._time import now

__all__ = ["Event", "EventBus", "Subscription"]

#: ``gateway``: models loaded on demand, evicted, requests queued (docs/gateway.md);
#: ``tune``: a tune's status and each finished trial (docs/tuning.md);
#: ``host``: a cluster host joined, was lost or left (docs/cluster.md).
EventTopic = Literal["server", "benchmark", "gateway", "tune", "host"]

_ids = itertools.count(1)


class _End:
    """Put in a subscriber's queue to end it: wakes a subscriber blocked on the queue."""


_END = _End()


@attrs.frozen
class Event:
    """Something that happened.

    ``topic`` is ``server``, ``benchmark``, ``gateway``, ``tune`` or ``host``; ``type``
    says what (``state`` for a state change, ``progress`` and ``result`` for benchmarks);
    ``data`` is JSON-friendly.
    """

    topic: EventTopic
    type: str
    data: Mapping[str, Any]
    id: int = attrs.field(factory=lambda: next(_ids))
    #: When it happened (UTC).
    time: datetime = attrs.field(factory=now)


class EventBus:
    """Fan-out of events to subscribers on one event loop."""

    def __init__(self, *, queue_size: int = 1000) -> None:
        self._queues: set[asyncio.Queue[Event | _End]] = set()
        self._queue_size = queue_size
        self.dropped = 0

    def publish(self, event: Event) -> None:
        """Deliver to every subscriber (call from the loop's thread)."""
        for queue in list(self._queues):
            if _put(queue, event):
                self.dropped += 1

    def close(self) -> None:
        """End every current subscription (call from the loop's thread).

        Each subscriber still receives what was published before, then its iteration
        stops (``get`` raises ``EOFError``); one blocked waiting for an event wakes up at
        once. The bus keeps working: later subscribers (of an
        :class:`~llamaswitch.AsyncLlamaSwitch` opened again) receive later events.
        """
        queues = list(self._queues)
        self._queues.clear()
        for queue in queues:
            _put(queue, _END)

    def emit(self, topic: EventTopic, type: str, **data: Any) -> Event:
        """Build and publish an event."""
        event = Event(topic=topic, type=type, data=data)
        self.publish(event)
        return event

    @property
    def subscribers(self) -> int:
        """How many subscribers listen now."""
        return len(self._queues)

    def subscribe(self) -> Subscription:
        """Start receiving events now; iterate the subscription, close it when done.

        >>> async def follow(bus: EventBus) -> None:
        ...     with bus.subscribe() as events:
        ...         async for event in events:
        ...             print(event.type)
        """
        queue: asyncio.Queue[Event | _End] = asyncio.Queue(self._queue_size)
        self._queues.add(queue)
        return Subscription(queue, self._queues)


def _put(queue: asyncio.Queue[Event | _End], item: Event | _End) -> bool:
    """Queue ``item``, dropping the oldest one if the queue is full; True if one was."""
    dropped = False
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
            dropped = True
    queue.put_nowait(item)
    return dropped


class Subscription:
    """A registered subscriber: an async iterator of events and a context manager.

    Iteration ends when the subscription or its bus is closed.
    """

    def __init__(
        self, queue: asyncio.Queue[Event | _End], registry: set[asyncio.Queue[Event | _End]]
    ) -> None:
        self._queue = queue
        self._registry = registry
        self._closed = False

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except EOFError:
            raise StopAsyncIteration from None

    async def get(self, timeout_s: float | None = None) -> Event:
        """The next event, waiting at most ``timeout_s`` (``TimeoutError`` after).

        Raises ``EOFError`` once the subscription is closed, or its bus was closed and
        every event published before that was received.
        """
        if self._closed:
            raise EOFError("the subscription is closed")
        item = await asyncio.wait_for(self._queue.get(), timeout_s)
        if not isinstance(item, _End):
            return item
        _put(self._queue, item)  # every later call ends too
        raise EOFError("the event bus was closed")

    def close(self) -> None:
        """Stop receiving events (a ``get`` waiting now ends with ``EOFError``)."""
        self._closed = True
        if self._queue in self._registry:
            self._registry.discard(self._queue)
            _put(self._queue, _END)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
