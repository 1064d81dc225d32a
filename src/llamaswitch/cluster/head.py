"""The cluster head's gateway: each model placed on one host, its traffic sent there.

:class:`ClusterGateway` keeps the promises of :class:`~llamaswitch.gateway.surface.Gateway`,
so the HTTP adapter and :class:`~llamaswitch.AsyncLlamaSwitch` use it as they use one
machine's gateway. Under it, one :class:`~llamaswitch.gateway.gateway.ModelGateway` per
host does what it does on one machine (loads on demand, one load at a time, eviction of
idle models least recently used first, drains, TTLs), against that host's budget, GPUs,
binary and servers (:mod:`llamaswitch.cluster.host`). The head adds the choice of host:

1. a host that serves the model already (or is loading it) serves it, the one with the
   fewest requests in flight first;
2. else the host chosen for it a moment ago, if a load there is under way;
3. else every host that has the file (the same name and size: a file of the same name
   but another size is another model) is asked for its plan, and the best wins: a load
   that evicts nothing, then one that evicts, then one that must wait; ties go to the
   host with the most free memory. A model no host can fit is refused by the best host
   with its figures.

Traffic goes straight to the host's llama-server over HTTP (the lease's URL and key):
Ray carries control only. The head watches each agent (its events, its servers, and the
heartbeat that keeps the agent's servers alive) and the cluster's nodes every second. A
node that leaves marks its host ``lost`` and its servers ``lost``; the next request for
their models is placed on another host that has them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import difflib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import attrs

from llamaswitch._binaries import BinaryInfo
from llamaswitch._capabilities import BinaryKind
from llamaswitch._errors import (
    BinaryNotFoundError,
    HostLostError,
    HostNotFoundError,
    LlamaSwitchError,
    ModelNotFoundError,
    PresetsError,
    ServiceClosedError,
)
from llamaswitch._events import Event, EventBus
from llamaswitch._gpu import GpuProbe
from llamaswitch._settings import Settings
from llamaswitch._tasks import BackgroundTasks
from llamaswitch._wire import to_wire
from llamaswitch.bench.config import BenchConfig
from llamaswitch.bench.task import BenchTask
from llamaswitch.cluster.connection import NAMESPACE, Connection, Node, agent_name, import_ray
from llamaswitch.cluster.host import HostCatalog, HostServers, call_agent
from llamaswitch.cluster.messages import HostReport
from llamaswitch.gateway.admission import Lease, held
from llamaswitch.gateway.gateway import HostResources, ModelGateway, ModelView
from llamaswitch.gateway.names import GatewayModel
from llamaswitch.gateway.policy import Plan
from llamaswitch.gateway.presets import Presets
from llamaswitch.gateway.requests import RequestLog, RequestRecord
from llamaswitch.servers.config import ServerConfig
from llamaswitch.servers.status import ServerStatus

__all__ = ["ClusterGateway", "ClusterHost"]

logger = logging.getLogger(__name__)

#: How often the head looks at the cluster's nodes (new ones, dead ones).
_NODES_EVERY_S = 1.0
#: How long one watch call waits for a host's events (it is also the heartbeat).
_WATCH_S = 1.0
#: How long a node whose agent could not start waits before the head tries again.
_ATTACH_RETRY_S = 30.0
#: A plan's rank by action: what the head prefers when it chooses a host.
_RANK = {"ready": 0, "load": 1, "wait": 3, "refuse": 4}


@attrs.define(eq=False)
class ClusterHost:
    """The head's record of one host."""

    name: str
    node: Node
    actor: Any
    report: HostReport
    servers: HostServers
    catalog: HostCatalog
    gateway: ModelGateway
    lost_reason: str | None = None

    @property
    def lost(self) -> bool:
        """Whether the host left the cluster."""
        return self.lost_reason is not None

    def describe(self) -> dict[str, Any]:
        """What ``GET /api/v1/hosts`` shows of it."""
        report = self.report
        return {
            "name": self.name, "node_id": self.node.node_id, "address": report.address,
            "state": "lost" if self.lost else "up", "lost_reason": self.lost_reason,
            "resources": dict(self.node.resources), "budget": to_wire(report.budget),
            "devices": to_wire(list(report.devices)),
            "ram_total_mib": round(report.ram_total_mib, 1), "hardware": dict(report.hardware),
            "models": [{"name": m.relative_path, "size": m.size}
                       for m in self.catalog.models],
            "servers": to_wire(self.servers.snapshot()), "version": report.version,
        }  # fmt: skip


class ClusterGateway:
    """The gateway of a cluster head (see the module docstring)."""

    def __init__(self, settings: Settings, *, events: EventBus) -> None:
        assert settings.cluster is not None  # noqa: S101 - the caller checked
        self.settings = settings
        self.requests = RequestLog()
        self.presets_error: PresetsError | None = None
        self._events = events
        self._connection = Connection(settings.cluster)
        self._head_id = uuid.uuid4().hex
        self._hosts: dict[str, ClusterHost] = {}
        self._chosen: dict[str, str] = {}
        self._choosing: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._tasks = BackgroundTasks()
        # Nodes whose agent could not start: tried again after _ATTACH_RETRY_S, not at
        # every look at the nodes.
        self._retry_at: dict[str, float] = {}
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect to the cluster as a driver and attach to the agent of every node."""
        await asyncio.to_thread(self._connection.open)
        for node in await asyncio.to_thread(self._connection.nodes):
            await self._attach(node)
        self._tasks.start(self._watch_nodes())

    async def close(self) -> None:
        """Stop watching; stop every host's servers and end its agent."""
        self._closed = True
        await self._tasks.cancel_all()
        ray = import_ray()
        for host in self._hosts.values():
            await host.gateway.close()
            if host.lost:
                continue
            with contextlib.suppress(Exception):
                await host.servers.call("shutdown")
            with contextlib.suppress(Exception):
                ray.kill(host.actor)
        await asyncio.to_thread(self._connection.close)

    async def _attach(self, node: Node) -> None:
        ray = import_ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from llamaswitch.cluster.agent import agent_class

        # Named and detached, on its node only: a head that restarts finds it (and the
        # servers it runs) again; num_cpus=0 so it never takes a task's CPU.
        actor = agent_class().options(
            name=agent_name(node.node_id), namespace=NAMESPACE, lifetime="detached",
            get_if_exists=True, num_cpus=0, max_concurrency=1000,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
        ).remote()  # fmt: skip
        try:
            report: HostReport = await call_agent(
                node.node_id, actor.attach, self._head_id, self.settings.cluster_grace_s
            )
        except LlamaSwitchError as exc:
            logger.error("node %s joined, but its agent could not start: %s",  # noqa: TRY400
                         node.node_id, exc)  # fmt: skip
            self._events.emit("host", "failed", node_id=node.node_id, reason=str(exc))
            with contextlib.suppress(Exception):
                ray.kill(actor)
            self._retry_at[node.node_id] = time.monotonic() + _ATTACH_RETRY_S
            return
        name = report.name
        if name in self._hosts and self._hosts[name].node.node_id != node.node_id:
            name = f"{name}-{node.node_id[:8]}"  # two nodes that call themselves the same
        servers = HostServers(name, actor, report.snapshot, self._host_lost)
        catalog = HostCatalog(name, report.models)
        host_settings = attrs.evolve(
            self.settings, state_dir=self.settings.state_dir / "hosts" / _safe(name)
        )

        async def in_catalog(fn: Any, *args: Any) -> Any:
            # A rescan of the gateway's is a fresh listing by the host's agent.
            if not servers.lost:
                catalog.models = tuple(await servers.call("catalog"))
            return fn(*args)

        async def binary(kind: BinaryKind) -> BinaryInfo:
            found = report.binaries.get(kind)
            if found is None:
                raise BinaryNotFoundError(
                    f"host {name} has no {kind}: {report.binary_errors.get(kind, 'not found')}"
                )
            return found

        gateway = ModelGateway(
            host_settings, supervisor=servers, catalog=catalog, in_catalog=in_catalog,
            binary=binary, gpu=GpuProbe(), events=self._events, read_presets=Presets,
            resources=HostResources(devices=tuple(report.devices), budget=report.budget,
                                    ram_total_mib=report.ram_total_mib),
        )  # fmt: skip
        await gateway.open()
        host = ClusterHost(name=name, node=node, actor=actor, report=report, servers=servers,
                           catalog=catalog, gateway=gateway)  # fmt: skip
        self._hosts[name] = host
        self._tasks.start(self._watch(host, report.cursor))
        logger.info("host %s joined (node %s, %d models)", name, node.node_id,
                    len(report.models))  # fmt: skip
        self._events.emit("host", "joined", host=name, node_id=node.node_id,
                          address=report.address, models=len(report.models))  # fmt: skip

    async def _watch(self, host: ClusterHost, cursor: int) -> None:
        """The host's events and servers as they change; each call is a heartbeat."""
        while not self._closed and not host.lost:
            try:
                changes = await host.servers.call("watch", self._head_id, cursor, _WATCH_S)
            except HostLostError:
                return  # marked lost by the call
            except Exception as exc:
                logger.warning("watching host %s failed: %s", host.name, exc)
                await asyncio.sleep(_WATCH_S)
                continue
            cursor = changes.cursor
            host.servers.take(changes.snapshot)
            for event in changes.events:
                # Published afresh (ids are this process's), naming the host, at the time
                # it happened there.
                self._events.publish(Event(topic=event.topic, type=event.type,
                                           data={**event.data, "host_name": host.name},
                                           time=event.time))  # fmt: skip

    async def _watch_nodes(self) -> None:
        """New nodes get an agent; nodes that are gone take their hosts with them."""
        while not self._closed:
            await asyncio.sleep(_NODES_EVERY_S)
            try:
                nodes = await asyncio.to_thread(self._connection.nodes)
            except Exception as exc:
                logger.warning("cannot list the cluster's nodes: %s", exc)
                continue
            alive = {n.node_id for n in nodes}
            for host in list(self._hosts.values()):
                if not host.lost and host.node.node_id not in alive:
                    self._host_lost(host.name, "its node left the cluster")
            known = {h.node.node_id for h in self._hosts.values()}
            now = time.monotonic()
            for node in nodes:
                if node.node_id not in known and self._retry_at.get(node.node_id, 0) <= now:
                    await self._attach(node)

    def _host_lost(self, name: str, reason: str) -> None:
        host = self._hosts.get(name)
        if host is None or host.lost:
            return
        host.lost_reason = reason
        host.servers.mark_lost()
        self._chosen = {m: h for m, h in self._chosen.items() if h != name}
        logger.warning("host %s is lost (%s): its servers are marked lost", name, reason)
        self._events.emit("host", "lost", host=name, reason=reason)

    # -- choosing a host ------------------------------------------------------------------

    def _live(self) -> list[ClusterHost]:
        return [h for h in self._hosts.values() if not h.lost]

    async def _candidates(
        self, name: str, exclude: Iterable[str]
    ) -> list[tuple[ClusterHost, GatewayModel]]:
        skip = set(exclude)
        found = []
        for host in self._live():
            if host.name in skip:
                continue
            with contextlib.suppress(ModelNotFoundError, HostLostError):
                found.append((host, await host.gateway.find(name)))
        if not found:
            gone = [h for h in self._hosts.values() if h.lost and _has(h, name)]
            if gone:
                raise HostLostError(gone[0].name, f"it left the cluster, and no other host "
                                                  f"has model {name!r}")  # fmt: skip
            names = sorted({m.relative_path for h in self._live() for m in h.catalog.models})
            raise ModelNotFoundError(name, difflib.get_close_matches(name, names, n=3))
        return found

    async def _choose(self, name: str, exclude: Iterable[str] = ()) -> tuple[ClusterHost, str]:
        """The host that is to serve ``name``, and the model's id there."""
        # The hot path: names the hosts know already, no rescan of a folder that lacks
        # the model (a call to its agent) while another host serves it.
        skip = set(exclude)
        holding = [(h, m) for h in self._live() if h.name not in skip
                   and (m := h.gateway.known(name)) is not None
                   and h.gateway.holds(m.id)]  # fmt: skip
        if holding:
            host, model = min(holding, key=lambda c: c[0].gateway.in_flight().get(c[1].id, 0))
            return host, model.id
        async with self._choosing[name]:
            candidates = await self._candidates(name, exclude)
            chosen = self._chosen.get(name)
            for host, model in candidates:
                if host.name == chosen and host.gateway.holds(model.id):
                    return host, model.id
            # One file, by name and size: the size most hosts have (ties: the first).
            sizes = collections.Counter(m.info.size for _, m in candidates)
            size = sizes.most_common(1)[0][0]
            same = [(h, m) for h, m in candidates if m.info.size == size]
            ranked = []
            for host, model in same:
                plan = await host.gateway.plan(name)
                ranked.append((_rank(plan), -_free_mib(plan), host.name, host, model))
            ranked.sort(key=lambda r: r[:3])
            _, _, _, host, model = ranked[0]
            self._chosen[name] = host.name
            return host, model.id

    # -- the Gateway protocol -------------------------------------------------------------

    @property
    def presets(self) -> Presets:
        """Presets are per machine; a cluster head has none yet (docs/cluster.md)."""
        return Presets()

    async def reload_presets(self) -> Presets:
        """Nothing to read (see :attr:`presets`)."""
        return Presets()

    async def prepare(self) -> None:
        """Nothing: a load runs on its host, past the Ray round trips that dwarf what
        preparing would save."""

    async def acquire(self, name: str, *, record: RequestRecord | None = None) -> Lease:
        """Take a slot of ``name``'s server on the host chosen for it (see the module
        docstring), loading it there first if needed."""
        if self._closed:
            raise ServiceClosedError("the cluster gateway is closed")
        tried: list[str] = []
        while True:
            host, _ = await self._choose(name, tried)
            try:
                lease = await host.gateway.acquire(name, record=record)
            except HostLostError:
                tried.append(host.name)  # placed again, on another host that has it
                continue
            return attrs.evolve(lease, host=host.name)

    def release(self, lease: Lease) -> None:
        """End a request's hold."""
        host = self._hosts.get(lease.host or "")
        if host is not None:
            host.gateway.release(lease)

    async def lost(self, lease: Lease, timeout_s: float = 2.0) -> bool:
        """A lease's server refused the connection: True once it is known gone."""
        host = self._hosts.get(lease.host or "")
        if host is None or host.lost:
            return True
        with contextlib.suppress(HostLostError):
            await host.servers.status_all()
        return host.lost or await host.gateway.lost(lease, timeout_s)

    def lease(
        self, name: str, *, record: RequestRecord | None = None
    ) -> contextlib.AbstractAsyncContextManager[Lease]:
        """``async with gateway.lease(name) as lease:``."""
        return held(self, name, record=record)

    async def ensure(self, name: str) -> ServerStatus:
        """Serve ``name`` on the host chosen for it; its server's status."""
        async with self.lease(name) as taken:
            host = self._hosts[taken.host or ""]
            return await host.servers.status_one(port=taken.port)

    async def list_models(self) -> list[ModelView]:
        """Every model some host has, once: as the host that serves it shows it (or the
        first that has it), with every host that has it."""
        by_id: dict[str, list[tuple[str, ModelView]]] = {}
        for host in self._live():
            with contextlib.suppress(HostLostError):
                for view in await host.gateway.list_models():
                    by_id.setdefault(view.id, []).append((host.name, view))
        views = []
        for entries in by_id.values():
            host_name, view = next(((h, v) for h, v in entries if v.port is not None),
                                   entries[0])  # fmt: skip
            views.append(attrs.evolve(view, host=host_name, hosts=tuple(h for h, _ in entries)))
        return views

    async def plan(self, name: str) -> Plan:
        """What serving ``name`` would take now, on the host the head would choose."""
        host, _ = await self._choose(name)
        return await host.gateway.plan(name)

    async def memory_summary(self) -> dict[str, Any]:
        """Each host's devices (named ``HOST:ram``, ``HOST:gpu0``...), models and queues."""
        devices: list[dict[str, Any]] = []
        loaded, in_flight, queued = 0, dict(self.in_flight()), {}
        for host in self._live():
            with contextlib.suppress(HostLostError):
                summary = await host.gateway.memory_summary()
                devices.extend({**d, "id": f"{host.name}:{d['id']}",
                                "name": f"{host.name} {d['name']}", "host": host.name}
                               for d in summary["devices"])  # fmt: skip
                loaded += summary["models"]["loaded"]
                queued.update(summary["queued"])
        return {"devices": devices, "models": {"loaded": loaded, "max_models": None},
                "in_flight": in_flight, "queued": queued}  # fmt: skip

    def serving_ids(self) -> list[str]:
        """The ids of the models served now, on any host."""
        return sorted({i for h in self._live() for i in h.gateway.serving_ids()})

    def in_flight(self) -> Mapping[str, int]:
        """Requests in flight per model id, over every host."""
        total: collections.Counter[str] = collections.Counter()
        for host in self._live():
            total.update(host.gateway.in_flight())
        return dict(total)

    @contextlib.asynccontextmanager
    async def draining(self, ports: Iterable[int], *, force: bool = False) -> AsyncIterator[None]:
        """The admin routes act on the head's own machine, whose servers the hosts'
        gateways do not use: nothing to hold back."""
        yield

    # -- hosts ----------------------------------------------------------------------------

    def hosts(self) -> list[dict[str, Any]]:
        """Every host the head has known, lost ones included (``GET /api/v1/hosts``)."""
        return [self._hosts[name].describe() for name in sorted(self._hosts)]

    def host(self, name: str) -> ClusterHost:
        """The host called ``name`` (:class:`~llamaswitch.HostNotFoundError` if none)."""
        found = self._hosts.get(name)
        if found is None:
            raise HostNotFoundError(name, sorted(self._hosts))
        return found

    def live_host(self, name: str) -> ClusterHost:
        """The host called ``name``, if it is still in the cluster
        (:class:`~llamaswitch.HostLostError` if it left)."""
        host = self.host(name)
        if host.lost:
            raise HostLostError(name, host.lost_reason or "it left the cluster")
        return host

    async def host_start(
        self, name: str, model: str, config: ServerConfig | None, *, wait: bool = True
    ) -> ServerStatus:
        """Start ``model`` alongside the others on host ``name`` (the admin route)."""
        host = self.live_host(name)
        status: ServerStatus
        status, snapshot = await host.servers.call("start", model, config, wait)
        host.servers.take(snapshot)
        return attrs.evolve(status, host_name=name)

    async def host_switch(
        self, name: str, model: str, config: ServerConfig | None, *, wait: bool = True,
        force: bool = False,
    ) -> ServerStatus:  # fmt: skip
        """Serve ``model`` on host ``name``'s model port, replacing what runs there; the
        head's requests on that port drain first (``force``: cut at once)."""
        host = self.live_host(name)
        port = config.port if config is not None and config.port is not None else None
        async with host.gateway.draining([port or host.report.default_model_port], force=force):
            status: ServerStatus
            status, snapshot = await host.servers.call("switch", model, config, wait, force)
        host.servers.take(snapshot)
        return attrs.evolve(status, host_name=name)

    async def host_stop(
        self, name: str, model: str | None, port: int | None, *, force: bool = False
    ) -> list[ServerStatus]:
        """Stop servers of host ``name`` (one, a model's, or all); the head's requests on
        them drain first (``force``: cut at once)."""
        host = self.live_host(name)
        ports = await host.servers.call("ports_of", model, port)
        async with host.gateway.draining(ports, force=force):
            stopped, snapshot = await host.servers.call("stop", model, port)
        host.servers.take(snapshot)
        return [attrs.evolve(s, host_name=name) for s in stopped]

    async def host_status(self, name: str, model: str | None, port: int | None) -> ServerStatus:
        """One server of host ``name``, freshly sampled (as last known if it is lost)."""
        return await self.host(name).servers.status_one(model, port=port)

    async def host_servers(self, name: str) -> list[ServerStatus]:
        """Every server of host ``name``."""
        host = self.host(name)
        with contextlib.suppress(HostLostError):
            return await host.servers.status_all()
        return host.servers.snapshot()

    def host_key(self, name: str, model: str | None, port: int | None) -> str | None:
        """The key of a server of host ``name`` (only the head is told it)."""
        return self.host(name).servers.server_key(model, port=port)

    async def host_logs(
        self, name: str, model: str | None, port: int | None, lines: int
    ) -> list[str]:
        """A server's last output lines, on host ``name``."""
        logs: list[str] = await self.live_host(name).servers.call("logs", model, port, lines)
        return logs

    def hosts_with(self, model: str) -> list[str]:
        """The live hosts whose folder has ``model`` (by name), as last listed."""
        return [host.name for host in self._live() if _has(host, model)]

    async def host_benchmark(
        self, name: str, model: str, config: BenchConfig | None, timeout_s: float | None
    ) -> BenchTask:
        """Queue a llama-bench run of ``model`` on host ``name``; the task as it starts."""
        task: BenchTask = await self.live_host(name).servers.call("bench_submit", model, config,
                                          timeout_s)  # fmt: skip
        return task

    async def host_benchmark_get(self, name: str, task_id: str) -> BenchTask:
        """A task of host ``name``."""
        task: BenchTask = await self.live_host(name).servers.call("bench_get", task_id)
        return task

    async def host_benchmark_wait(self, name: str, task_id: str, timeout_s: float) -> BenchTask:
        """Wait for a task of host ``name`` (``TaskTimeoutError`` after ``timeout_s``)."""
        task: BenchTask = await self.live_host(name).servers.call("bench_wait", task_id,
                                          timeout_s)  # fmt: skip
        return task

    async def host_benchmark_cancel(self, name: str, task_id: str) -> BenchTask:
        """Cancel a task of host ``name``."""
        task: BenchTask = await self.live_host(name).servers.call("bench_cancel", task_id)
        return task

    async def status_all(self) -> list[ServerStatus]:
        """Every host's servers, freshly sampled (a lost host's as last known, ``lost``)."""
        statuses: list[ServerStatus] = []
        for name in sorted(self._hosts):
            host = self._hosts[name]
            try:
                statuses += await host.servers.status_all()
            except HostLostError:
                statuses += host.servers.snapshot()
        return statuses


def _has(host: ClusterHost, model: str) -> bool:
    """Whether the host's folder, as last listed, has ``model`` (file name, path, stem)."""
    text = model.replace("\\", "/").removeprefix("./")
    return any(text in (m.name, m.relative_path, m.name.rsplit(".", 1)[0])
               for m in host.catalog.models)  # fmt: skip


def _rank(plan: Plan) -> int:
    if plan.action == "load" and not plan.evict:
        return 1
    if plan.action == "load":
        return 2
    return _RANK[plan.action]


def _free_mib(plan: Plan) -> float:
    """Budget left after the model, over RAM and every GPU (no budget: no limit)."""
    free = 0.0
    for resource, figure in plan.figures.items():
        if resource == "models":
            continue
        budget, used = figure.get("budget_mib"), figure.get("used_mib") or 0.0
        if budget is not None:
            free += budget - used - (figure.get("need_mib") or 0.0)
    return free


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)
