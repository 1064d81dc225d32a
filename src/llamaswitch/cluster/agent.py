"""The agent: one Ray actor per host, owning that host's :class:`~llamaswitch.AsyncLlamaSwitch`.

The head creates it on each node, pinned there by node affinity, named after the node and
detached from the head's life (:func:`llamaswitch.cluster.connection.agent_name`): a
head that restarts finds the agents and the servers they run. Its rules:

- **Its own host's settings.** It reads them as any llamaswitch does, from the
  environment of the node's ``ray start`` (and ``CONFIG_PATH``'s ``.env``): models
  folder, state folder, binaries, ports, budgets, ``LLAMASWITCH_HOST_NAME``.
- **Its servers listen on the node's address, never open**: every one gets a random key
  of its own (``LLAMASWITCH_SERVER_KEYS=always``), which the agent tells the head only.
- **One event loop.** Ray runs an async actor's methods on one event-loop thread that
  lives as long as the actor: the servers are spawned from it, so their parent-death
  signal fires only when the agent's process ends (a thread that forks and exits would
  kill them, see the supervisor).
- **No orphans.** The head looks every second (:meth:`HostAgent.watch`). An agent that
  hears nothing from it for the grace period the head gave stops its servers, interrupts
  its benchmarks and ends its process; a node that dies takes its servers with it.

Errors leave as :class:`~llamaswitch.cluster.messages.TransportedError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

import attrs
import psutil

from llamaswitch._api import AsyncLlamaSwitch
from llamaswitch._capabilities import BinaryKind
from llamaswitch._catalog import ModelInfo
from llamaswitch._errors import LlamaSwitchError, ServiceClosedError
from llamaswitch._events import Event, EventBus
from llamaswitch._settings import Settings
from llamaswitch._version import __version__
from llamaswitch.bench.config import BenchConfig
from llamaswitch.bench.host import describe_host
from llamaswitch.bench.task import BenchTask
from llamaswitch.cluster.connection import import_ray
from llamaswitch.cluster.messages import (
    Changes,
    HostReport,
    ServerEntry,
    Snapshot,
    TransportedError,
)
from llamaswitch.gateway.gateway import ModelGateway
from llamaswitch.servers.config import ServerConfig
from llamaswitch.servers.status import ServerStatus

__all__ = ["HostAgent", "agent_class"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Events kept for the head (it looks every second; more only pile up while it is away).
_EVENTS_KEPT: Final = 1000
_MIB: Final = 1024 * 1024


def _transported(
    method: Callable[P, Awaitable[T]],
) -> Callable[P, Awaitable[T]]:
    """Raise a :class:`~llamaswitch.LlamaSwitchError` as its transportable form."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except LlamaSwitchError as exc:
            raise TransportedError.of(exc) from None

    return wrapper


class _CountingBus(EventBus):
    """The agent's event bus: every event is also handed to the agent as it is published
    (synchronously, so that a snapshot taken after a change counts it)."""

    def __init__(self, seen: Callable[[Event], None]) -> None:
        super().__init__()
        self._seen = seen

    def publish(self, event: Event) -> None:
        self._seen(event)
        super().publish(event)


class HostAgent:
    """One host's llamaswitch, driven by the cluster head (see the module docstring).

    Created by the head as a Ray actor (:func:`agent_class`); every method is a call the
    head makes.
    """

    def __init__(self) -> None:
        self._ls: AsyncLlamaSwitch | None = None
        self._opening: asyncio.Lock | None = None
        self._name = ""
        self._address = ""
        self._node_id = ""
        self._head: str | None = None
        self._grace_s = 30.0
        self._seen = time.monotonic()
        self._events: deque[Event] = deque(maxlen=_EVENTS_KEPT)
        self._version = 0
        self._wake: asyncio.Event | None = None
        self._watchdog: asyncio.Task[None] | None = None
        # The processes started for the head's gateway (see ServerEntry.for_gateway).
        self._gateway_pids: set[int] = set()

    # -- lifecycle ------------------------------------------------------------------------

    async def _open(self) -> AsyncLlamaSwitch:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._ls is not None:
                return self._ls
            ray = import_ray()
            settings = Settings.from_env()
            # The agent serves no REST API: the rule that a server beyond loopback needs
            # LLAMASWITCH_API_KEY protects the route that tells its key, and an agent tells
            # it to the head only. Every server has a key, on loopback too.
            settings = attrs.evolve(settings, server_keys="always", insecure=True,
                                    sources={**settings.sources, "server_keys": "agent",
                                             "insecure": "agent"})  # fmt: skip
            self._address = ray.util.get_node_ip_address()
            self._node_id = ray.get_runtime_context().get_node_id()
            self._name = settings.host_name or socket.gethostname()
            self._wake = asyncio.Event()
            ls = AsyncLlamaSwitch(settings)
            ls.events = _CountingBus(self._published)
            await ls.open()
            self._ls = ls
            self._watchdog = asyncio.ensure_future(self._watch_head())
            logger.info("agent of host %s open (models in %s)", self._name, settings.models_dir)
            return ls

    def _published(self, event: Event) -> None:
        self._events.append(event)
        if event.topic == "server":
            self._version += 1
        if self._wake is not None:
            self._wake.set()

    async def _close(self) -> None:
        ls, self._ls = self._ls, None
        if ls is not None:
            await ls.close()

    async def _watch_head(self) -> None:
        """Stop everything, and end this process, once the head is silent for too long."""
        while True:
            await asyncio.sleep(min(1.0, self._grace_s / 4))
            silent = time.monotonic() - self._seen
            if silent <= self._grace_s:
                continue
            logger.warning("host %s heard nothing from its head for %.1f s: stopping its "
                           "model servers", self._name, silent)  # fmt: skip
            try:
                await self._close()
            finally:
                # A detached actor outlives its head: ending the process is what frees
                # the node (and the actor's name, for the next head).
                os._exit(0)

    def _ready(self) -> AsyncLlamaSwitch:
        if self._ls is None:
            raise ServiceClosedError(f"the agent of host {self._name or '?'} is closed")
        return self._ls

    def _snapshot(self) -> Snapshot:
        supervisor = self._ready().supervisor
        entries = tuple(ServerEntry(status, supervisor.server_key(port=status.port),
                                    for_gateway=status.process_id in self._gateway_pids)
                        for status in supervisor.snapshot())  # fmt: skip
        return Snapshot(version=self._version, servers=entries)

    def _on_host(self, config: ServerConfig | None) -> ServerConfig:
        """A config whose server listens on this node's address unless it names one."""
        config = config if config is not None else ServerConfig()
        return config if config.host is not None else attrs.evolve(config, host=self._address)

    # -- the head's calls -----------------------------------------------------------------

    @_transported
    async def attach(self, head_id: str, grace_s: float) -> HostReport:
        """Serve ``head_id`` from now on (the latest head to attach wins) and describe
        this host."""
        ls = await self._open()
        self._head, self._grace_s, self._seen = head_id, grace_s, time.monotonic()
        binaries: dict[str, Any] = {}
        errors: dict[str, str] = {}
        kinds: tuple[BinaryKind, ...] = ("llama-server", "llama-bench")
        for kind in kinds:
            try:
                binaries[kind] = await ls.binary(kind)
            except LlamaSwitchError as exc:
                errors[kind] = str(exc)
        devices = await asyncio.to_thread(ls.gpu.devices)
        hardware = await asyncio.to_thread(describe_host)
        return HostReport(
            name=self._name, node_id=self._node_id, address=self._address,
            models=tuple(await ls.list_models()), budget=_local_gateway(ls).budget,
            devices=tuple(devices), ram_total_mib=psutil.virtual_memory().total / _MIB,
            hardware=hardware, binaries=binaries, binary_errors=errors,
            snapshot=self._snapshot(), cursor=self._events[-1].id if self._events else 0,
            version=__version__, default_model_port=ls.settings.model_port,
        )  # fmt: skip

    @_transported
    async def watch(self, head_id: str, cursor: int, timeout_s: float) -> Changes:
        """The events after ``cursor`` and the servers now, as soon as there are events
        (or after ``timeout_s``). The head's call is also its heartbeat."""
        self._ready()
        self._head, self._seen = head_id, time.monotonic()
        assert self._wake is not None  # noqa: S101 - set by _open
        if not self._after(cursor):
            self._wake.clear()
            if not self._after(cursor):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout_s)
        events = tuple(e for e in self._events if e.id > cursor)
        return Changes(cursor=events[-1].id if events else cursor, events=events,
                       snapshot=self._snapshot())  # fmt: skip

    def _after(self, cursor: int) -> bool:
        return bool(self._events) and self._events[-1].id > cursor

    @_transported
    async def catalog(self) -> tuple[ModelInfo, ...]:
        """The models folder now (a fresh scan)."""
        return tuple(await self._ready().list_models())

    @_transported
    async def start(
        self, model: str, config: ServerConfig | None, wait: bool = True,
        for_gateway: bool = False,
    ) -> tuple[ServerStatus, Snapshot]:  # fmt: skip
        """Serve ``model`` alongside the others; the status and the servers after.
        ``for_gateway``: the head's gateway asks (not an admin)."""
        status = await self._ready().start(model, self._on_host(config), wait=wait)
        if for_gateway and status.process_id is not None:
            self._gateway_pids.add(status.process_id)
        return status, self._snapshot()

    @_transported
    async def switch(
        self, model: str, config: ServerConfig | None, wait: bool = True, force: bool = False
    ) -> tuple[ServerStatus, Snapshot]:
        """Serve ``model`` on the config's port, replacing what runs there."""
        status = await self._ready().switch(model, self._on_host(config), wait=wait, force=force)
        return status, self._snapshot()

    @_transported
    async def stop(
        self, model: str | None, port: int | None
    ) -> tuple[list[ServerStatus], Snapshot]:
        """Stop one server, a model's servers, or every server."""
        stopped = await self._ready().stop(model, port=port)
        return stopped, self._snapshot()

    @_transported
    async def ports_of(self, model: str | None, port: int | None) -> list[int]:
        """The ports a stop with these arguments acts on."""
        return self._ready().supervisor.ports_of(model, port=port)

    @_transported
    async def status_one(self, model: str | None, port: int | None) -> ServerStatus:
        """One server, freshly sampled."""
        return await self._ready().supervisor.status_one(model, port=port)

    @_transported
    async def status_all(self) -> tuple[list[ServerStatus], Snapshot]:
        """Every server, freshly sampled."""
        statuses = await self._ready().supervisor.status_all()
        return statuses, self._snapshot()

    @_transported
    async def logs(self, model: str | None, port: int | None, lines: int) -> list[str]:
        """A server's last output lines."""
        return await self._ready().logs(model, port=port, lines=lines)

    @_transported
    async def forget_failed(self, model_path: str) -> Snapshot:
        """Drop failed records of a model before the head's gateway tries it again."""
        await self._ready().supervisor.forget_failed(Path(model_path))
        return self._snapshot()

    @_transported
    async def bench_submit(
        self, model: str, config: BenchConfig | None, timeout_s: float | None
    ) -> BenchTask:
        """Queue a llama-bench run here; the task as it starts."""
        ls = self._ready()
        task_id = await ls.submit_benchmark(model, config, timeout_s=timeout_s)
        return await ls.benchmark_status(task_id)

    @_transported
    async def bench_get(self, task_id: str) -> BenchTask:
        """A task of this host."""
        return await self._ready().benchmark_status(task_id)

    @_transported
    async def bench_wait(self, task_id: str, timeout_s: float) -> BenchTask:
        """Wait for a task (``TaskTimeoutError`` after ``timeout_s``)."""
        return await self._ready().wait_benchmark(task_id, timeout_s=timeout_s)

    @_transported
    async def bench_cancel(self, task_id: str) -> BenchTask:
        """Cancel a queued or running task."""
        return await self._ready().cancel_benchmark(task_id)

    async def shutdown(self) -> None:
        """Stop every server and benchmark of this host (the head leaves; it then ends
        this actor)."""
        self._head = None
        if self._watchdog is not None:
            self._watchdog.cancel()
        await self._close()


def _local_gateway(ls: AsyncLlamaSwitch) -> ModelGateway:
    gateway = ls.gateway
    assert isinstance(gateway, ModelGateway)  # noqa: S101 - a host is a single machine
    return gateway


_REMOTE: Any = None


def agent_class() -> Any:
    """:class:`HostAgent` as a Ray actor class (made once; needs the ``ray`` extra)."""
    global _REMOTE  # noqa: PLW0603 - one actor class per process, made on first use
    if _REMOTE is None:
        _REMOTE = import_ray().remote(HostAgent)
    return _REMOTE
