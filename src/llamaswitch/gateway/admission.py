"""One model's record in the gateway: its state, its server, and admission.

A model has ``slots`` (its server's ``parallel``): at most that many requests go upstream
at once, and the rest wait in order. While another model's load waits for this one to
drain, it admits at most a swap batch more (``batch_left``), then holds newcomers back
until the swap is done; an admin stop or switch (``draining``) holds them back too.
Everything here runs on the event loop, between awaits: no lock is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import attrs

from llamaswitch._errors import ModelLoadError
from llamaswitch._time import now
from llamaswitch.gateway.memory import MemoryNeed
from llamaswitch.servers.config import ServerConfig

if TYPE_CHECKING:
    from llamaswitch.gateway.requests import RequestRecord

__all__ = ["Holder", "Lease", "ModelRecord", "ModelState", "held"]


class ModelState(enum.StrEnum):
    """A gateway model's state (``GET /v1/models``)."""

    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"
    #: The last load failed; the next request tries again after the backoff.
    FAILED = "failed"


@attrs.frozen
class Lease:
    """A request's hold on a model's server: where to send it, and what it waited."""

    model: str
    url: str
    port: int
    #: The key the server requires (servers beyond loopback), else None.
    api_key: str | None
    queue_wait_s: float
    load_wait_s: float
    #: In a cluster: the host whose server it is (its gateway gets the lease back).
    host: str | None = None


class Holder(Protocol):
    """What :func:`held` needs of a gateway."""

    async def acquire(self, name: str, *, record: RequestRecord | None = None) -> Lease:
        """Take a slot of ``name``'s server."""
        ...

    def release(self, lease: Lease) -> None:
        """End a request's hold."""
        ...


@contextlib.asynccontextmanager
async def held(
    gateway: Holder, name: str, *, record: RequestRecord | None = None
) -> AsyncIterator[Lease]:
    """A lease of ``name``'s server for one request: acquired, then released whatever
    happens (every gateway's ``lease``)."""
    lease = await gateway.acquire(name, record=record)
    try:
        yield lease
    finally:
        gateway.release(lease)


@attrs.define(eq=False)
class ModelRecord:
    """The gateway's mutable record of one model id: its state and server, and the
    requests it admits (:meth:`admit`), queues (:meth:`wait_slot`) and releases."""

    id: str
    state: ModelState = ModelState.UNLOADED
    port: int | None = None
    url: str = ""
    api_key: str | None = None
    owned: bool = False
    slots: int = 1
    in_flight: int = 0
    waiting: int = 0
    slot_waiters: deque[asyncio.Future[bool]] = attrs.field(factory=deque)
    _change: asyncio.Future[None] | None = None
    #: The load under way (a task), and the requests that wait for it to end.
    load: asyncio.Future[None] | None = None
    load_waiters: list[asyncio.Future[None]] = attrs.field(factory=list)
    failures: int = 0
    retry_at: float = 0.0
    error: ModelLoadError | None = None
    last_used: float = 0.0
    last_used_at: datetime | None = None
    #: Models whose load waits for this one to drain, and what it may still admit.
    wanted_by: set[str] = attrs.field(factory=set)
    batch_left: int = 0
    #: Admin stops and switches waiting for this model to drain.
    draining: int = 0
    measured: MemoryNeed | None = None
    estimated: MemoryNeed | None = None
    #: The config the estimate and the measurement are for.
    config: ServerConfig | None = None

    def change(self) -> asyncio.Future[None]:
        """A future done at the next :meth:`notify`. Take it before checking what it is
        awaited for: a change in between is then not missed. Await it with
        :func:`asyncio.wait`, never directly (a cancelled waiter must not cancel it for
        the others)."""
        if self._change is None:
            self._change = asyncio.get_running_loop().create_future()
        return self._change

    def notify(self) -> None:
        """Wake everything that waits for a change of this model (a broadcast)."""
        change, self._change = self._change, None
        if change is not None and not change.done():
            change.set_result(None)

    async def wait_load(self) -> None:
        """Wait for the load under way to end (:meth:`load_ended`): raises what it failed
        with. Each waiter has a future of its own, so that a request that leaves cancels
        only its own wait, and the end of the load wakes each of them directly."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.load_waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter.cancelled():  # the request left (or the load was cancelled)
                with contextlib.suppress(ValueError):
                    self.load_waiters.remove(waiter)

    def load_ended(self, error: BaseException | None = None) -> None:
        """Wake the requests waiting for the load: done, or failed with ``error`` (a
        cancelled load cancels their waits)."""
        waiters, self.load_waiters = self.load_waiters, []
        for waiter in waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            elif isinstance(error, asyncio.CancelledError):
                waiter.cancel()
            else:
                waiter.set_exception(error)

    @property
    def busy(self) -> bool:
        """Requests in flight, or loading or unloading: it cannot be unloaded now."""
        return self.in_flight > 0 or self.state in (ModelState.LOADING, ModelState.UNLOADING)

    # -- admission: at most ``slots`` requests at once, the rest queued in order --------

    def admit(self) -> bool:
        """Whether a request may start now (counting it against a swap batch)."""
        if self.in_flight >= self.slots or self.slot_waiters or self.draining:
            return False
        if self.wanted_by:
            if self.batch_left <= 0:
                return False
            self.batch_left -= 1
        return True

    async def wait_slot(self) -> bool:
        """Queue for a slot; True when one was handed over, False to look again."""
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.slot_waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release()  # handed over just as the client left
            else:
                with contextlib.suppress(ValueError):
                    self.slot_waiters.remove(waiter)
            raise

    def release(self) -> None:
        """End one request: its slot goes to the request queued first."""
        self.in_flight -= 1
        self.last_used = time.monotonic()
        self.last_used_at = now()
        self.hand_over()
        if self.in_flight == 0:
            self.notify()

    def hand_over(self) -> None:
        """Give free slots to the requests queued first."""
        while self.slot_waiters and self.in_flight < self.slots:
            if self.draining or (self.wanted_by and self.batch_left <= 0):
                return  # closed to newcomers: they wait for the swap
            waiter = self.slot_waiters.popleft()
            if waiter.done():
                continue
            if self.wanted_by:
                self.batch_left -= 1
            self.in_flight += 1
            waiter.set_result(True)

    def wake_all(self) -> None:
        """Send every queued request back to look again (the model went or changed)."""
        while self.slot_waiters:
            waiter = self.slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)
        self.notify()
