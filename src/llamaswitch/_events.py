"""In-process events: server state changes and benchmark progress, for any subscriber.

The supervisor and the benchmark runner publish; the REST adapter streams them as
server-sent events; scripts can ``async for event in ls.events(): ...``. A slow subscriber
never blocks a publisher: each subscriber has a bounded queue and, when it is full, the
oldest event is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import attrs

__all__ = ["Event", "EventBus", "Subscription"]

EventTopic = Literal["server", "benchmark"]

_ids = itertools.count(1)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@attrs.frozen
class Event:
    """Something that happened.

    ``topic`` is ``server`` or ``benchmark``; ``type`` says what (``state`` for a state
    change, ``progress`` and ``result`` for benchmarks); ``data`` is JSON-friendly.
    """

    topic: EventTopic
    type: str
    data: Mapping[str, Any]
    id: int = attrs.field(factory=lambda: next(_ids))
    time: str = attrs.field(factory=_now)

    def to_dict(self) -> dict[str, Any]:
        """The wire shape."""
        return {"id": self.id, "topic": self.topic, "type": self.type, "time": self.time,
                "data": dict(self.data)}  # fmt: skip


class EventBus:
    """Fan-out of events to subscribers on one event loop."""

    def __init__(self, *, queue_size: int = 1000) -> None:
        self._queues: set[asyncio.Queue[Event]] = set()
        self._queue_size = queue_size
        self.dropped = 0

    def publish(self, event: Event) -> None:
        """Deliver to every subscriber (call from the loop's thread)."""
        for queue in list(self._queues):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(event)

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
        queue: asyncio.Queue[Event] = asyncio.Queue(self._queue_size)
        self._queues.add(queue)
        return Subscription(queue, self._queues)


class Subscription:
    """A registered subscriber: an async iterator of events and a context manager."""

    def __init__(self, queue: asyncio.Queue[Event], registry: set[asyncio.Queue[Event]]) -> None:
        self._queue = queue
        self._registry = registry

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if self._queue not in self._registry:
            raise StopAsyncIteration
        return await self._queue.get()

    async def get(self, timeout_s: float | None = None) -> Event:
        """The next event, waiting at most ``timeout_s`` (``TimeoutError`` after)."""
        return await asyncio.wait_for(self._queue.get(), timeout_s)

    def close(self) -> None:
        """Stop receiving events."""
        self._registry.discard(self._queue)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
