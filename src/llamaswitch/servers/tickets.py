"""Which request on a port counts: the ticket book (pure bookkeeping, no I/O, no asyncio).

Every request that acts on a port (a switch, a start, a stop) takes a :class:`Ticket`
when it is made, before anything is awaited, so that "the last request" is the last
call, not whichever finished resolving first. A ticket's number is the port's
*generation*; a later ticket supersedes the earlier ones, and a "stop every server"
supersedes every ticket taken before it. A request counts as in flight from its ticket
until it ends: it *acted* (it stopped or started something) or it *withdrew* (it failed
before acting, so it must not overtake the request before it).

>>> book = TicketBook()
>>> first, second = book.take(8091), book.take(8091)
>>> book.superseded(first), book.superseded(second)
(True, False)
>>> book.end(second, acted=False)         # the second failed before it acted ...
>>> book.superseded(first)                # ... so the first counts again
False
>>> book.end(first, acted=True); book.idle
True
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

__all__ = ["Ticket", "TicketBook"]


@attrs.define(eq=False)
class Ticket:
    """A request's place in line on its port; see :meth:`TicketBook.take`."""

    #: None: a ``start`` whose port is still to be picked.
    port: int | None
    #: The port's generation this request set (0 until it has a port).
    number: int = 0
    #: How many "stop every server" requests came before this one.
    stops: int = 0
    ended: bool = False


class TicketBook:
    """The tickets of every port; ``on_idle``/``on_busy`` tell when the last request in
    flight ends and when the first one starts (the supervisor's close waits for idle)."""

    def __init__(
        self,
        *,
        on_idle: Callable[[], None] | None = None,
        on_busy: Callable[[], None] | None = None,
    ) -> None:
        self._on_idle = on_idle
        self._on_busy = on_busy
        # Per port: the last number handed out, the number that counts as the last
        # request (lower after one withdrew), the numbers in flight, and the highest
        # number of a request that acted.
        self._issued: dict[int, int] = {}
        self._generations: dict[int, int] = {}
        self._inflight: dict[int, set[int]] = {}
        self._settled: dict[int, int] = {}
        self._stop_alls = 0

    @property
    def idle(self) -> bool:
        """Whether no request is in flight."""
        return not self._inflight

    def in_flight(self, port: int) -> bool:
        """Whether a request on ``port`` is in flight."""
        return port in self._inflight

    @property
    def busy_ports(self) -> frozenset[int]:
        """The ports with a request in flight."""
        return frozenset(self._inflight)

    def generation(self, port: int) -> int:
        """The number of the request that counts on ``port`` now (0: none yet)."""
        return self._generations.get(port, 0)

    def take(self, port: int | None) -> Ticket:
        """A ticket for a request on ``port``, in flight from now on.

        ``port=None`` is a ``start`` whose port is picked later (:meth:`place`); it is
        still superseded by a later "stop every server".
        """
        ticket = Ticket(port, stops=self._stop_alls)
        if port is not None:
            self.place(ticket, port)
        return ticket

    def place(self, ticket: Ticket, port: int) -> None:
        """Give a portless ticket its port (the request is then in flight there)."""
        number = self._issued.get(port, 0) + 1
        self._issued[port] = self._generations[port] = number
        if not self._inflight and self._on_busy is not None:
            self._on_busy()
        self._inflight.setdefault(port, set()).add(number)
        ticket.port, ticket.number = port, number

    def stop_all(self) -> None:
        """Record a "stop every server": every ticket taken before it is superseded."""
        self._stop_alls += 1

    def stopped_since(self, ticket: Ticket) -> bool:
        """Whether a "stop every server" came after ``ticket`` was taken."""
        return ticket.stops != self._stop_alls

    def superseded(self, ticket: Ticket) -> bool:
        """Whether a later request (or a stop of everything) overtook ``ticket``."""
        return self.stopped_since(ticket) or self.generation(ticket.port or 0) != ticket.number

    def end(self, ticket: Ticket, *, acted: bool) -> None:
        """The request is done: it ``acted``, or it withdrew (failed before acting).

        A withdrawn request no longer overtakes the requests before it: if it was the
        last one on its port, the one before it becomes the last again. Ending twice is
        harmless.
        """
        if ticket.ended:
            return
        ticket.ended = True
        port = ticket.port
        if port is None:
            return
        pending = self._inflight.get(port, set())
        pending.discard(ticket.number)
        if acted:
            self._settled[port] = max(self._settled.get(port, 0), ticket.number)
        elif self._generations.get(port) == ticket.number:
            self._generations[port] = max(pending | {self._settled.get(port, 0)})
        if not pending:
            self._inflight.pop(port, None)
        if not self._inflight and self._on_idle is not None:
            self._on_idle()
