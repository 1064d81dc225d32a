"""The ticket book: which request on a port counts. Pure bookkeeping, so no llama.cpp.

The unit tests name one rule each; the Hypothesis state machine drives random sequences
of takes, placements, ends and stops against a model written from the rules (not from
the implementation): the request that counts on a port is the latest one that did not
withdraw, a "stop every server" supersedes every ticket taken before it, and the book
is busy exactly while a placed ticket has not ended.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from llamaswitch.servers.tickets import Ticket, TicketBook

A, B = 8091, 8092


@attrs.define
class Calls:
    """What the callbacks were told, in order."""

    seen: list[str] = attrs.field(factory=list)

    def idle(self) -> None:
        self.seen.append("idle")

    def busy(self) -> None:
        self.seen.append("busy")


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def book(calls: Calls) -> TicketBook:
    return TicketBook(on_idle=calls.idle, on_busy=calls.busy)


# -- supersede ----------------------------------------------------------------------------


def test_a_later_ticket_on_the_same_port_supersedes_the_earlier(book: TicketBook) -> None:
    first, second = book.take(A), book.take(A)
    assert (first.number, second.number) == (1, 2)
    assert book.superseded(first)
    assert not book.superseded(second)
    assert book.generation(A) == 2


def test_a_ticket_on_another_port_supersedes_nothing(book: TicketBook) -> None:
    first = book.take(A)
    other = book.take(B)
    assert not book.superseded(first)
    assert not book.superseded(other)
    assert (book.generation(A), book.generation(B)) == (1, 1)


def test_a_port_never_asked_for_has_generation_zero(book: TicketBook) -> None:
    assert book.generation(A) == 0


# -- withdraw -----------------------------------------------------------------------------


def test_withdrawing_the_latest_makes_the_one_before_count_again(book: TicketBook) -> None:
    first, second = book.take(A), book.take(A)
    book.end(second, acted=False)
    assert not book.superseded(first)
    assert book.generation(A) == 1


def test_withdrawing_a_middle_ticket_leaves_the_latest_counting(book: TicketBook) -> None:
    first, middle, last = book.take(A), book.take(A), book.take(A)
    book.end(middle, acted=False)
    assert book.superseded(first)
    assert not book.superseded(last)
    book.end(last, acted=False)
    assert not book.superseded(first)  # the middle one withdrew: the first counts


def test_after_a_withdrawal_the_latest_that_acted_counts(book: TicketBook) -> None:
    first = book.take(A)
    book.end(first, acted=True)
    later = book.take(A)
    book.end(later, acted=False)
    assert book.generation(A) == first.number


def test_a_ticket_that_acted_stays_superseded_when_an_older_one_withdraws(
    book: TicketBook,
) -> None:
    first, second = book.take(A), book.take(A)
    book.end(second, acted=True)
    book.end(first, acted=False)
    assert book.generation(A) == second.number


def test_the_last_withdrawal_on_a_fresh_port_leaves_no_request_counting(book: TicketBook) -> None:
    only = book.take(A)
    book.end(only, acted=False)
    assert book.generation(A) == 0
    assert book.take(A).number == 2  # numbers are never handed out twice


def test_ending_twice_is_harmless(book: TicketBook, calls: Calls) -> None:
    first, second = book.take(A), book.take(A)
    book.end(second, acted=False)
    book.end(second, acted=True)  # ignored: it already withdrew
    assert book.generation(A) == first.number
    book.end(first, acted=True)
    book.end(first, acted=True)
    assert calls.seen == ["busy", "idle"]


# -- place: a start whose port is picked later -----------------------------------------------


def test_a_portless_ticket_gets_its_port_and_number_when_placed(book: TicketBook) -> None:
    earlier = book.take(A)
    ticket = book.take(None)
    assert (ticket.port, ticket.number) == (None, 0)
    book.place(ticket, A)
    assert (ticket.port, ticket.number) == (A, 2)
    assert book.superseded(earlier)
    assert not book.superseded(ticket)


def test_a_portless_ticket_is_in_flight_only_once_placed(book: TicketBook) -> None:
    ticket = book.take(None)
    assert book.idle
    assert book.busy_ports == frozenset()
    book.place(ticket, B)
    assert not book.idle
    assert book.busy_ports == {B}


def test_ending_an_unplaced_ticket_touches_no_port(book: TicketBook, calls: Calls) -> None:
    ticket = book.take(None)
    book.end(ticket, acted=False)
    assert ticket.ended
    assert book.idle
    assert calls.seen == []


# -- stop every server -------------------------------------------------------------------------


def test_stop_all_supersedes_every_ticket_taken_before_it(book: TicketBook) -> None:
    on_a, on_b, portless = book.take(A), book.take(B), book.take(None)
    book.stop_all()
    for ticket in (on_a, on_b, portless):
        assert book.stopped_since(ticket)
        assert book.superseded(ticket)


def test_a_ticket_taken_after_stop_all_counts(book: TicketBook) -> None:
    book.take(A)
    book.stop_all()
    after = book.take(A)
    assert not book.stopped_since(after)
    assert not book.superseded(after)


def test_a_portless_ticket_taken_before_stop_all_stays_superseded_once_placed(
    book: TicketBook,
) -> None:
    ticket = book.take(None)
    book.stop_all()
    book.place(ticket, A)
    assert book.generation(A) == ticket.number
    assert book.superseded(ticket)  # the stop came after it: it must not start


# -- busy ports and the idle/busy callbacks --------------------------------------------------


def test_busy_ports_are_the_ports_with_a_request_in_flight(book: TicketBook) -> None:
    first, second, other = book.take(A), book.take(A), book.take(B)
    assert book.busy_ports == {A, B}
    assert book.in_flight(A)
    book.end(first, acted=True)
    assert book.in_flight(A)  # the second is still under way
    book.end(second, acted=True)
    assert not book.in_flight(A)
    assert book.busy_ports == {B}
    book.end(other, acted=False)
    assert book.busy_ports == frozenset()


def test_busy_and_idle_are_told_once_per_change(book: TicketBook, calls: Calls) -> None:
    first = book.take(A)
    second = book.take(B)
    assert calls.seen == ["busy"]
    book.end(first, acted=True)
    assert calls.seen == ["busy"]
    book.end(second, acted=False)
    assert calls.seen == ["busy", "idle"]
    book.end(book.take(A), acted=True)
    assert calls.seen == ["busy", "idle", "busy", "idle"]


def test_a_book_without_callbacks_works() -> None:
    book = TicketBook()
    ticket = book.take(A)
    book.end(ticket, acted=True)
    assert book.idle


# -- the state machine -----------------------------------------------------------------------

PORTS = (A, B, 8093)


@attrs.define(eq=False)
class Record:
    """The model's view of one ticket."""

    ticket: Ticket
    port: int | None
    number: int = 0
    stops: int = 0
    state: str = "open"  # open, acted, withdrawn


class TicketBookMachine(RuleBasedStateMachine):
    """Random request histories against the rules, stated on their own."""

    tickets = Bundle("tickets")

    def __init__(self) -> None:
        super().__init__()
        self.calls = Calls()
        self.book = TicketBook(on_idle=self.calls.idle, on_busy=self.calls.busy)
        self.records: list[Record] = []
        self.issued: dict[int, int] = {}
        self.stops = 0
        self.busy = False
        self.expected_calls: list[str] = []

    def _in_flight(self) -> list[Record]:
        return [r for r in self.records if r.port is not None and r.state == "open"]

    def _assign(self, record: Record, port: int) -> None:
        was_busy = bool(self._in_flight())
        self.issued[port] = self.issued.get(port, 0) + 1
        record.port, record.number = port, self.issued[port]
        if not was_busy:
            self.expected_calls.append("busy")

    @rule(target=tickets, port=st.sampled_from((*PORTS, None)))
    def take(self, port: int | None) -> Record:
        record = Record(self.book.take(port), None, stops=self.stops)
        if port is not None:
            self._assign(record, port)
        self.records.append(record)
        return record

    @rule(record=tickets, port=st.sampled_from(PORTS))
    def place_portless(self, record: Record, port: int) -> None:
        if record.port is not None or record.state != "open":
            return
        self.book.place(record.ticket, port)
        self._assign(record, port)

    @rule(record=tickets, acted=st.booleans())
    def end(self, record: Record, acted: bool) -> None:
        self.book.end(record.ticket, acted=acted)
        if record.state != "open":
            return
        was_busy = bool(self._in_flight())
        record.state = "acted" if acted else "withdrawn"
        if record.port is not None and was_busy and not self._in_flight():
            self.expected_calls.append("idle")

    @rule()
    def stop_all(self) -> None:
        self.book.stop_all()
        self.stops += 1

    def _generation(self, port: int) -> int:
        counting = [r.number for r in self.records if r.port == port and r.state != "withdrawn"]
        return max(counting, default=0)

    @invariant()
    def generations_follow_the_latest_request_that_did_not_withdraw(self) -> None:
        for port in PORTS:
            assert self.book.generation(port) == self._generation(port)

    @invariant()
    def supersession_follows_the_rules(self) -> None:
        for record in self.records:
            stopped = record.stops != self.stops
            assert self.book.stopped_since(record.ticket) == stopped
            overtaken = record.port is not None and self._generation(record.port) != record.number
            expected = stopped or overtaken
            assert self.book.superseded(record.ticket) == expected, record

    @invariant()
    def busy_while_a_placed_ticket_is_open(self) -> None:
        open_ports = {r.port for r in self._in_flight()}
        assert self.book.busy_ports == open_ports
        assert self.book.idle == (not open_ports)
        for port in PORTS:
            assert self.book.in_flight(port) == (port in open_ports)

    @invariant()
    def callbacks_tell_each_change_once(self) -> None:
        assert self.calls.seen == self.expected_calls


test_ticket_book_follows_its_rules = TicketBookMachine.TestCase
