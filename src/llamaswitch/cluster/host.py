"""The head's mirror of one host: its servers and its catalog, as a gateway uses them.

The head runs one :class:`~llamaswitch.gateway.gateway.ModelGateway` per host, each given
the host's budget, GPUs and binary, and the two stand-ins here
(:mod:`llamaswitch.gateway.surface` says what they promise):

- :class:`HostServers` keeps the host's servers as its agent last reported them (each
  answer of the agent carries a snapshot, and the head's watch brings the others), so
  that the gateway's hot path (``is_ready``, ``snapshot``) never waits for Ray; acting
  (start, stop, sampling) is a call to the agent.
- :class:`HostCatalog` is the host's models folder as the agent listed it.

A call that finds the agent gone (its node died or was removed) raises
:class:`~llamaswitch.HostLostError`; the head then marks the host lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from llamaswitch._binaries import BinaryInfo
from llamaswitch._catalog import ModelInfo
from llamaswitch._errors import HostLostError, ModelNotFoundError, ServerNotFoundError
from llamaswitch.cluster.connection import import_ray
from llamaswitch.cluster.messages import Snapshot, TransportedError
from llamaswitch.servers.config import ServerConfig
from llamaswitch.servers.status import ServerState, ServerStatus

__all__ = ["HostCatalog", "HostServers", "call_agent"]

logger = logging.getLogger(__name__)


async def call_agent(host: str, method: Any, *args: Any) -> Any:
    """``await method.remote(*args)`` on a host's agent: its errors as raised there, a
    dead agent as :class:`~llamaswitch.HostLostError`."""
    ray = import_ray()
    try:
        return await method.remote(*args)
    except TransportedError as exc:
        raise exc.rebuild() from None
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, TransportedError):
            raise cause.rebuild() from None
        raise
    except ray.exceptions.RayActorError as exc:
        raise HostLostError(host, f"its agent is gone ({type(exc).__name__})") from exc


class HostServers:
    """A host's model servers, as the head's gateway for that host sees them."""

    def __init__(self, host: str, actor: Any, snapshot: Snapshot,
                 on_lost: Callable[[str, str], None]) -> None:  # fmt: skip
        self.host = host
        self._actor = actor
        self._on_lost = on_lost
        self._version = -1
        self._servers: dict[int, ServerStatus] = {}
        self._keys: dict[int, str | None] = {}
        self._for_gateway: set[int] = set()
        self.lost = False
        self.take(snapshot)

    def take(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` unless a later one was kept already."""
        if self.lost or snapshot.version < self._version:
            return
        self._version = snapshot.version
        self._servers = {e.status.port: self._named(e.status) for e in snapshot.servers}
        self._keys = {e.status.port: e.api_key for e in snapshot.servers}
        self._for_gateway = {e.status.port for e in snapshot.servers if e.for_gateway}

    def _named(self, status: ServerStatus) -> ServerStatus:
        return attrs.evolve(status, host_name=self.host)

    def mark_lost(self) -> None:
        """The host left the cluster: every server it had is ``lost`` from now on."""
        self.lost = True
        self._servers = {
            port: attrs.evolve(s, state=ServerState.LOST, running=False)
            for port, s in self._servers.items()
        }

    async def call(self, name: str, *args: Any) -> Any:
        """Call the agent's method ``name``; a gone agent marks the host lost (through
        the head) and raises :class:`~llamaswitch.HostLostError`."""
        if self.lost:
            raise HostLostError(self.host, "it left the cluster")
        try:
            return await call_agent(self.host, getattr(self._actor, name), *args)
        except HostLostError as exc:
            self._on_lost(self.host, str(exc))
            raise

    # -- the Servers protocol (llamaswitch.gateway.surface) -------------------------------

    def snapshot(self) -> list[ServerStatus]:
        """The servers as last reported (no call)."""
        return [self._servers[p] for p in sorted(self._servers)]

    def is_ready(self, port: int, model_path: Path) -> bool:
        """Whether ``model_path`` is served ready on ``port``, as last reported."""
        status = self._servers.get(port)
        return (status is not None and status.state is ServerState.READY
                and Path(status.model_path) == model_path)  # fmt: skip

    async def status_one(
        self, model: str | None = None, *, port: int | None = None
    ) -> ServerStatus:
        """One server, freshly sampled on its host."""
        if self.lost:
            found = self._servers.get(port) if port is not None else None
            if found is None:
                raise ServerNotFoundError(f"no server on port {port} of host {self.host}")
            return found
        status: ServerStatus = await self.call("status_one", model, port)
        self._servers[status.port] = self._named(status)
        return self._servers[status.port]

    async def status_all(self) -> list[ServerStatus]:
        """Every server of the host, freshly sampled (as last known once it is lost)."""
        if self.lost:
            return self.snapshot()
        _, snapshot = await self.call("status_all")
        self.take(snapshot)
        return self.snapshot()

    async def start(
        self,
        info: ModelInfo,
        config: ServerConfig | None = None,
        *,
        on_ready: Callable[[ServerStatus], None] | None = None,
    ) -> ServerStatus:
        """Serve ``info`` on the host; returns once it is ready. ``on_ready`` hears of it
        just before: the host's answer is the first news of it here."""
        status, snapshot = await self.call("start", info.relative_path, config, True, True)
        self.take(snapshot)
        named = self._named(status)
        if on_ready is not None:
            on_ready(named)
        return named

    async def stop(
        self, model: str | None = None, *, port: int | None = None
    ) -> list[ServerStatus]:
        """Stop servers of the host (nothing to stop on a lost one)."""
        if self.lost:
            return []
        stopped, snapshot = await self.call("stop", model, port)
        self.take(snapshot)
        return [self._named(s) for s in stopped]

    async def forget_failed(self, model_path: Path) -> None:
        """Drop the host's failed records of ``model_path`` before a retry."""
        self.take(await self.call("forget_failed", str(model_path)))

    async def rehearse(
        self, info: ModelInfo, config: ServerConfig | None, binary: BinaryInfo
    ) -> None:
        """Nothing: a start runs on the host, whose agent warms its own path."""

    def in_flight(self, port: int, count: int) -> None:
        """Nothing: the host's scheduling is its agent's (its own gateway's counts)."""

    def started_for_a_gateway(self, port: int) -> bool:
        """Whether the host's server on ``port`` was started for a gateway (this head's
        or the one before it), not by an admin."""
        return port in self._for_gateway

    def server_key(self, model: str | None = None, *, port: int | None = None) -> str | None:
        """The key the server on ``port`` (or of ``model``) requires: every cluster server
        has one. :class:`~llamaswitch.ServerNotFoundError` if the host has no such server."""
        if port is None and model is not None:
            port = next((s.port for s in self.snapshot()
                         if model in (s.model_name, Path(s.model_path).stem)), None)  # fmt: skip
        if port is None or port not in self._servers:
            raise ServerNotFoundError(
                f"host {self.host} has no server of {model or 'that model'} on "
                f"{'port ' + str(port) if port is not None else 'any port'}"
            )
        return self._keys.get(port)


class HostCatalog:
    """A host's models folder, as its agent listed it last."""

    def __init__(self, host: str, models: Sequence[ModelInfo]) -> None:
        self.host = host
        self.models = tuple(models)

    def list_models(self) -> list[ModelInfo]:
        """Every model of the folder."""
        return list(self.models)

    def resolve(self, reference: str) -> ModelInfo:
        """A preset's ``file`` to the host's entry (``ModelNotFoundError`` if absent)."""
        text = reference.replace("\\", "/").removeprefix("./")
        for info in self.models:
            if text in (info.name, info.relative_path, str(info.path)):
                return info
        raise ModelNotFoundError(reference, [m.relative_path for m in self.models])
