"""What the gateway needs of its collaborators, and what its users need of it: protocols.

:class:`~llamaswitch.gateway.gateway.ModelGateway` is written against the supervisor and
the catalog of one machine, but it uses only a few of their methods: :class:`Servers`
and :class:`Catalog` say which, so that a gateway can be given stand-ins that keep these
promises without a change to it.

:class:`Gateway` is the other side: what :class:`~llamaswitch.AsyncLlamaSwitch` and the
HTTP adapter call on a gateway; ``ModelGateway`` has it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from llamaswitch._binaries import BinaryInfo
    from llamaswitch._catalog import ModelInfo
    from llamaswitch._errors import PresetsError
    from llamaswitch.gateway.gateway import Lease, ModelView
    from llamaswitch.gateway.policy import Plan
    from llamaswitch.gateway.presets import Presets
    from llamaswitch.gateway.requests import RequestLog, RequestRecord
    from llamaswitch.servers.config import ServerConfig
    from llamaswitch.servers.status import ServerStatus

__all__ = ["Catalog", "Gateway", "Servers"]


class Servers(Protocol):
    """The model servers of one machine, as the gateway uses them (a
    :class:`~llamaswitch.servers.supervisor.ServerSupervisor` is one)."""

    def snapshot(self) -> list[ServerStatus]:
        """Every server as last seen, without waiting (the gateway's placement reads it)."""
        ...

    def is_ready(self, port: int, model_path: Path) -> bool:
        """Whether ``model_path`` is served ready on ``port`` now (the hot path: no await)."""
        ...

    async def status_one(
        self, model: str | None = None, *, port: int | None = None
    ) -> ServerStatus:
        """The server on ``port`` (or of ``model``), freshly sampled."""
        ...

    async def status_all(self) -> list[ServerStatus]:
        """Every server, freshly sampled."""
        ...

    async def start(
        self,
        info: ModelInfo,
        config: ServerConfig | None = None,
        *,
        on_ready: Callable[[ServerStatus], None] | None = None,
    ) -> ServerStatus:
        """Serve ``info`` alongside the others; returns once it is ready. ``on_ready`` is
        called with the status once it is ready: as soon as that is known, and at the
        latest just before this returns; never for a start that fails."""
        ...

    async def stop(
        self, model: str | None = None, *, port: int | None = None
    ) -> list[ServerStatus]:
        """Stop the server on ``port`` (or ``model``'s servers)."""
        ...

    async def forget_failed(self, model_path: Path) -> None:
        """Drop the failed and crashed records of ``model_path`` before a retry."""
        ...

    async def rehearse(
        self, info: ModelInfo, config: ServerConfig | None, binary: BinaryInfo
    ) -> None:
        """Run what a start of ``info`` with ``binary`` does before it acts (checks,
        argv), acting on nothing and starting no process, so that the first real start
        does not run that code for the first time on a request's path. Raises what that
        start would."""
        ...

    def started_for_a_gateway(self, port: int) -> bool:
        """Whether the server on ``port`` was started for a gateway rather than by an
        admin: a gateway that finds it serving takes it over as its own."""
        ...

    def server_key(self, model: str | None = None, *, port: int | None = None) -> str | None:
        """The key the server on ``port`` requires, if it has one."""
        ...

    def in_flight(self, port: int, count: int) -> None:
        """Hear that ``count`` gateway requests now run on ``port``'s server (told at each
        change): the machine may schedule a busy server differently (see
        ``ServerConfig.cpu_scheduling``). The hot path: no await."""
        ...


class Catalog(Protocol):
    """The models of one machine, as the gateway's name book reads them (blocking calls,
    made in the catalog's worker thread)."""

    def list_models(self) -> list[ModelInfo]:
        """Every model of the folder."""
        ...

    def resolve(self, reference: str) -> ModelInfo:
        """A preset's ``file`` to its catalog entry (``ModelNotFoundError`` if absent)."""
        ...


class Gateway(Protocol):
    """A gateway as :class:`~llamaswitch.AsyncLlamaSwitch` and the HTTP adapter use it."""

    #: Recent requests (the adapter records each one here).
    requests: RequestLog
    #: Why the presets file was refused at the last (re)load; None when it was not.
    presets_error: PresetsError | None

    @property
    def presets(self) -> Presets:
        """The presets in effect."""
        ...

    async def open(self) -> None:
        """Start: learn the memory, read the presets, start the background work."""
        ...

    async def close(self) -> None:
        """Stop the background work; requests still waiting fail."""
        ...

    async def prepare(self) -> None:
        """Do now what the first load of each model would do the first time (off the
        requests' path); optional, for a service that has just started."""
        ...

    async def acquire(self, name: str, *, record: RequestRecord | None = None) -> Lease:
        """Take a slot of ``name``'s server, loading it first if needed."""
        ...

    def release(self, lease: Lease) -> None:
        """End a request's hold."""
        ...

    async def lost(self, lease: Lease, timeout_s: float = 2.0) -> bool:
        """A lease's server refused the connection: True once it is known gone."""
        ...

    def lease(
        self, name: str, *, record: RequestRecord | None = None
    ) -> contextlib.AbstractAsyncContextManager[Lease]:
        """``async with gateway.lease(name) as lease:``."""
        ...

    async def ensure(self, name: str) -> ServerStatus:
        """Serve ``name`` if it is not served, and return its server's status."""
        ...

    async def list_models(self) -> list[ModelView]:
        """Every model clients can name, with its state and memory."""
        ...

    async def plan(self, name: str) -> Plan:
        """What loading ``name`` would take now, without doing it."""
        ...

    async def memory_summary(self) -> dict[str, Any]:
        """Memory per device (used, estimated, budget, total) and the model count."""
        ...

    async def reload_presets(self) -> Presets:
        """Read the presets file again (``PresetsError`` keeps the old ones)."""
        ...

    def serving_ids(self) -> list[str]:
        """The ids of the models being served now."""
        ...

    def in_flight(self) -> Mapping[str, int]:
        """Requests in flight per model id."""
        ...

    def draining(
        self, ports: Iterable[int], *, force: bool = False
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold back new requests for the models on ``ports`` while an admin stop runs."""
        ...
