"""The async Python API: one object that lists models, runs servers and benchmarks.

:class:`AsyncLlamaSwitch` composes the :class:`~llamaswitch._catalog.ModelCatalog`, the
:class:`~llamaswitch.servers.supervisor.ServerSupervisor` and the
:class:`~llamaswitch.bench.runner.BenchRunner`; it holds no logic of its own beyond
resolving model references and binaries. :class:`~llamaswitch._sync.LlamaSwitch` is its
blocking twin.

>>> async def main() -> None:
...     async with AsyncLlamaSwitch(Settings(models_dir="models")) as ls:
...         status = await ls.switch("tiny.gguf", ServerConfig(port=8091, ctx_size=256))
...         print(status.url)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from llamaswitch._binaries import BinaryInfo, locate
from llamaswitch._capabilities import BinaryKind
from llamaswitch._catalog import ModelCatalog, ModelInfo
from llamaswitch._errors import (
    HostNotFoundError,
    LlamaSwitchError,
    ServiceClosedError,
    TaskTimeoutError,
)
from llamaswitch._events import EventBus, Subscription
from llamaswitch._gpu import GpuProbe, default_probe
from llamaswitch._process import prepare_spawn
from llamaswitch._settings import Settings

if TYPE_CHECKING:
    from llamaswitch.bench.config import BenchConfig
    from llamaswitch.bench.runner import BenchRunner, BenchTask, Comparison
    from llamaswitch.cluster.head import ClusterGateway
    from llamaswitch.gateway.gateway import Lease, ModelGateway, ModelView
    from llamaswitch.gateway.policy import Plan
    from llamaswitch.gateway.presets import Presets
    from llamaswitch.gateway.surface import Gateway
    from llamaswitch.servers.config import ServerConfig
    from llamaswitch.servers.supervisor import ServerStatus, ServerSupervisor
    from llamaswitch.tuning.objective import Objective
    from llamaswitch.tuning.runner import TuneRunner
    from llamaswitch.tuning.tune import Tune

__all__ = ["AsyncLlamaSwitch"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_NOT_OPEN = "AsyncLlamaSwitch is not open: use `async with` or await open()"


class AsyncLlamaSwitch:
    """Async entry point. Use it as ``async with AsyncLlamaSwitch(settings) as ls:``.

    Leaving the context stops every model server it started and interrupts running
    benchmarks (they are recorded as ``interrupted``): a library that leaves processes
    behind is the top complaint about other managers. Servers live on the event loop
    that opened this object.
    """

    def __init__(self, settings: Settings | None = None, *, gpu: GpuProbe | None = None) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self.events = EventBus()
        self.catalog = self._new_catalog()
        # Catalog scans get a thread of their own: a long cold scan must never take the
        # default pool's workers from the routes that do not need the catalog.
        self._catalog_worker: concurrent.futures.ThreadPoolExecutor | None = None
        self.gpu = gpu if gpu is not None else default_probe()
        self._binaries: dict[BinaryKind, BinaryInfo] = {}
        self._binary_lock = asyncio.Lock()
        self._supervisor: ServerSupervisor | None = None
        self._bench: BenchRunner | None = None
        self._gateway: Gateway | None = None
        self._cluster: ClusterGateway | None = None  # the gateway, when serving a cluster
        # Benchmarks running on cluster hosts, by task id: the host, and the task that
        # keeps it in this history once it ends (the entry goes then).
        self._on_hosts: dict[str, tuple[str, asyncio.Future[None]]] = {}
        self._tuning: TuneRunner | None = None  # made on first use (tuning)
        self._opened = False

    def _new_catalog(self) -> ModelCatalog:
        return ModelCatalog(
            self.settings.models_dir, allow_outside=self.settings.allow_outside_models_dir
        )

    async def _in_catalog(self, fn: Callable[..., T], *args: Any) -> T:
        if self._catalog_worker is None:
            self._catalog_worker = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="llamaswitch-catalog"
            )
        return await asyncio.get_running_loop().run_in_executor(self._catalog_worker, fn, *args)

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Start the supervisor and the benchmark runner (stops leftovers of a crashed run)."""
        if self._opened:
            return
        if self.catalog.closed:  # opened again after a close
            self.catalog = self._new_catalog()
        from llamaswitch.bench.runner import BenchRunner
        from llamaswitch.gateway.gateway import ModelGateway
        from llamaswitch.servers.supervisor import ServerSupervisor

        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        # Probes for setpriv once, in a worker thread: the first spawn runs on the loop.
        await asyncio.to_thread(prepare_spawn)
        self._supervisor = ServerSupervisor(
            self.settings, binary=self._binary, gpu=self.gpu, events=self.events
        )
        await self._supervisor.open()
        self._bench = BenchRunner(
            self.settings,
            binary=self._binary,
            events=self.events,
            running_servers=self._supervisor.running_servers,
        )
        await self._bench.open()
        gateway: ModelGateway | ClusterGateway
        if self.settings.cluster is not None:
            # The head of a cluster: the gateway places models on its hosts (Ray is
            # imported from here only: a single machine never needs it).
            from llamaswitch.cluster.head import ClusterGateway

            gateway = self._cluster = ClusterGateway(self.settings, events=self.events)
        else:
            gateway = ModelGateway(
                self.settings, supervisor=self._supervisor, catalog=self.catalog,
                in_catalog=self._in_catalog, binary=self._binary, gpu=self.gpu,
                events=self.events,
            )  # fmt: skip
        self._gateway = gateway
        try:
            await gateway.open()
        except BaseException:
            self._opened = True  # so that close() stops what open() started
            await self.close()
            raise
        self._opened = True
        logger.debug("opened on %s (models in %s)", self.settings.state_dir,
                     self.settings.models_dir)  # fmt: skip

    async def close(self) -> None:
        """Interrupt benchmarks and stop every model server this object started.

        Switches and starts still in flight fail with
        :class:`~llamaswitch.SupersededError` and start nothing. Event subscriptions end
        last, after the final ``stopped`` events: an ``async for`` over
        :meth:`subscribe` finishes instead of waiting forever.
        """
        if not self._opened:
            return
        self._opened = False
        # First: a scan in progress stops before its next file instead of holding the
        # shutdown (a SIGTERM to serve must not wait for a folder of thousands of files).
        self.catalog.close()
        worker, self._catalog_worker = self._catalog_worker, None
        if worker is not None:
            worker.shutdown(wait=False)
        for _, recorder in list(self._on_hosts.values()):
            recorder.cancel()
        try:
            if self._tuning is not None:  # first: its trials are benchmark tasks
                tuning, self._tuning = self._tuning, None
                await tuning.close()
            if self._gateway is not None:
                await self._gateway.close()
            if self._bench is not None:
                await self._bench.close()
        finally:
            try:
                if self._supervisor is not None:
                    await self._supervisor.close()
            finally:
                self.events.close()

    async def __aenter__(self) -> AsyncLlamaSwitch:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def supervisor(self) -> ServerSupervisor:
        """The server supervisor (after :meth:`open`)."""
        if self._supervisor is None:
            raise ServiceClosedError(_NOT_OPEN)
        return self._supervisor

    @property
    def gateway(self) -> Gateway:
        """The gateway: models loaded on demand by name (after :meth:`open`)."""
        if self._gateway is None:
            raise ServiceClosedError(_NOT_OPEN)
        return self._gateway

    @property
    def bench(self) -> BenchRunner:
        """The benchmark runner (after :meth:`open`)."""
        if self._bench is None:
            raise ServiceClosedError(_NOT_OPEN)
        return self._bench

    async def _binary(self, kind: BinaryKind) -> BinaryInfo:
        """The identified llama-server or llama-bench (found and asked once)."""
        async with self._binary_lock:
            if kind not in self._binaries:
                self._binaries[kind] = await asyncio.to_thread(locate, kind, self.settings)
            return self._binaries[kind]

    async def binary(self, kind: BinaryKind) -> BinaryInfo:
        """The llama.cpp binary of ``kind`` in use (``BinaryNotFoundError`` if none)."""
        return await self._binary(kind)

    # -- models ---------------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """Every GGUF model in the models folder, with what its header says."""
        return await self._in_catalog(self.catalog.list_models)

    async def resolve_model(self, model: str) -> ModelInfo:
        """A model reference (file name, relative path, catalog name) to its catalog entry."""
        return await self._in_catalog(self.catalog.resolve, model)

    async def switch(
        self,
        model: str,
        config: ServerConfig | None = None,
        *,
        wait: bool = True,
        force: bool = False,
        host: str | None = None,
    ) -> ServerStatus:
        """Serve ``model`` on the config's port (default: the default model port).

        Whatever llamaswitch runs on that port is stopped first. With ``wait`` (default)
        it returns once the server answers ``/health`` 200; without, once the process
        started (state ``starting``). Returns at once if the same model with the same
        config is already ready there. Of concurrent switches on one port the last call
        wins; calls it overtook raise :class:`~llamaswitch.SupersededError` (or return,
        if their server became ready first) and never leave a process behind.

        Gateway requests in flight on the server it replaces finish first (up to
        ``LLAMASWITCH_DRAIN_TIMEOUT_S``); ``force`` cuts them at once.

        ``host``: on that host of the cluster this object heads (docs/cluster.md).
        """
        cluster = self._on_host(host)
        if cluster is not None and host is not None:
            return await cluster.host_switch(host, model, config, wait=wait, force=force)
        supervisor = self.supervisor
        # The ticket is taken before the first await: of concurrent switches on one port
        # the last call wins, not whichever model reference resolved last (resolving runs
        # in a worker thread); and a stop made meanwhile sees this switch in flight.
        ticket = supervisor.ticket(supervisor.port_for(config))
        try:
            info = await self.resolve_model(model)
        except BaseException:
            # Refused before it did anything: it must not supersede the switch before it.
            supervisor.withdraw(ticket)
            raise
        ports = [ticket.port] if ticket.port else []
        async with self.gateway.draining(ports, force=force):
            with supervisor.cutting(ports if force else ()):
                return await supervisor.switch(info, config, wait=wait, ticket=ticket)

    async def start(
        self,
        model: str,
        config: ServerConfig | None = None,
        *,
        wait: bool = True,
        host: str | None = None,
    ) -> ServerStatus:
        """Serve ``model`` alongside the others, on a free port of the model port range
        unless the config names one (the default model port is never picked: it is
        ``switch``'s). ``host``: on that cluster host."""
        cluster = self._on_host(host)
        if cluster is not None and host is not None:
            return await cluster.host_start(host, model, config, wait=wait)
        supervisor = self.supervisor
        # As in switch: in line (and visible to a stop) from the call on.
        ticket = supervisor.ticket(config.port if config is not None else None)
        try:
            info = await self.resolve_model(model)
        except BaseException:
            supervisor.withdraw(ticket)
            raise
        return await supervisor.start(info, config, wait=wait, ticket=ticket)

    async def stop(
        self,
        model: str | None = None,
        *,
        port: int | None = None,
        force: bool = False,
        host: str | None = None,
    ) -> list[ServerStatus]:
        """Stop one server by model name or port, or every server when neither is given.

        Switches and starts still in flight on those ports (on any port, for every
        server) fail with :class:`~llamaswitch.SupersededError` and start nothing.
        Gateway requests in flight on them finish first (up to
        ``LLAMASWITCH_DRAIN_TIMEOUT_S``); ``force`` cuts them at once. ``host``: on that
        cluster host.
        """
        cluster = self._on_host(host)
        if cluster is not None and host is not None:
            return await cluster.host_stop(host, model, port, force=force)
        ports = self.supervisor.ports_of(model, port=port)
        async with self.gateway.draining(ports, force=force):
            with self.supervisor.cutting(ports if force else ()):
                return await self.supervisor.stop(model, port=port)

    @overload
    async def status(self, *, host: str | None = None) -> list[ServerStatus]: ...
    @overload
    async def status(
        self, model: str, *, port: int | None = None, host: str | None = None
    ) -> ServerStatus: ...
    @overload
    async def status(
        self, model: None = None, *, port: int, host: str | None = None
    ) -> ServerStatus: ...

    async def status(
        self, model: str | None = None, *, port: int | None = None, host: str | None = None
    ) -> list[ServerStatus] | ServerStatus:
        """Status of every server, or of one by model name or port; ``host``: of that
        cluster host only. A cluster head lists every host's servers (``host_name`` set),
        then its own machine's."""
        cluster = self._on_host(host)
        if cluster is not None and host is not None:
            if model is None and port is None:
                return await cluster.host_servers(host)
            return await cluster.host_status(host, model, port)
        if model is None and port is None:
            local = await self.supervisor.status_all()
            if self._cluster is not None:
                # Every host's servers (host_name set), then this machine's own.
                return [*await self._cluster.status_all(), *local]
            return local
        return await self.supervisor.status_one(model, port=port)

    async def hosts(self) -> list[dict[str, Any]]:
        """The hosts of the cluster this object heads (``LLAMASWITCH_CLUSTER``): each
        one's resources, budget, models and servers; on a single machine, an empty list."""
        return self._cluster.hosts() if self._cluster is not None else []

    async def logs(
        self,
        model: str | None = None,
        *,
        port: int | None = None,
        lines: int = 100,
        host: str | None = None,
    ) -> list[str]:
        """The last ``lines`` lines a server printed (``host``: of that cluster host)."""
        cluster = self._on_host(host)
        if cluster is not None and host is not None:
            return await cluster.host_logs(host, model, port, lines)
        return await self.supervisor.logs(model, port=port, lines=lines)

    def _on_host(self, host: str | None) -> ClusterGateway | None:
        """The cluster to act through for ``host``; None to act on this machine (no host
        given, or this machine's own name). :class:`~llamaswitch.HostNotFoundError`
        for a name nobody has."""
        if host is None:
            return None
        if self._cluster is not None:
            self._cluster.host(host)  # raises for a name no host has
            return self._cluster
        own = self.settings.host_name or socket.gethostname()
        if host != own:
            raise HostNotFoundError(host, [own])
        return None

    async def server_key(
        self, model: str | None = None, *, port: int | None = None, host: str | None = None
    ) -> str | None:
        """The API key of a server listening beyond loopback (None for a loopback one).

        Such servers get a fresh random key each; llamaswitch tells it to nobody else.
        ``host``: a server of that cluster host (each of those has a key).
        """
        cluster = self._on_host(host)
        if cluster is not None and host is not None:
            return cluster.host_key(host, model, port)
        return self.supervisor.server_key(model, port=port)

    def subscribe(self) -> Subscription:
        """Receive server state changes and benchmark progress from now on."""
        return self.events.subscribe()

    # -- the gateway ----------------------------------------------------------------------

    async def ensure(self, model: str) -> ServerStatus:
        """Serve ``model`` (a gateway name: catalog name, stem, preset id or alias) if it
        is not served yet, within the memory budgets, and return its server's status.

        A load under way is joined, never doubled; idle models are unloaded to make room
        (see docs/gateway.md). Use :meth:`lease` to keep it from being unloaded while
        you use it.
        """
        return await self.gateway.ensure(model)

    def lease(self, model: str) -> contextlib.AbstractAsyncContextManager[Lease]:
        """``async with ls.lease(model) as lease:``: :meth:`ensure`, and count a use
        until the block ends (eviction and admin stops wait for it). ``lease.url`` is the
        server's address; at most the server's slot count of leases run at once."""
        return self.gateway.lease(model)

    async def gateway_models(self) -> list[ModelView]:
        """Every model the gateway can serve, with its state and memory figures."""
        return await self.gateway.list_models()

    async def gateway_plan(self, model: str) -> Plan:
        """What loading ``model`` would unload now, and why, without doing it."""
        return await self.gateway.plan(model)

    async def presets(self) -> Presets:
        """The presets in effect (``llamaswitch.toml``)."""
        return self.gateway.presets

    async def reload_presets(self) -> Presets:
        """Read the presets file again; a bad one raises :class:`~llamaswitch.PresetsError`
        and the presets in effect stay."""
        return await self.gateway.reload_presets()

    # -- benchmarks -----------------------------------------------------------------------

    async def submit_benchmark(
        self,
        model: str,
        config: BenchConfig | None = None,
        *,
        timeout_s: float | None = None,
        host: str | None = None,
    ) -> str:
        """Queue a llama-bench run of ``model``; returns the task id at once.

        ``host``: on that cluster host; the task, once it ends, is kept in this history
        with the host's hardware (see :meth:`benchmark_hosts` for the hosts that have a
        model)."""
        cluster = self._on_host(host)
        if cluster is not None and host is not None:
            task = await cluster.host_benchmark(host, model, config, timeout_s)
            recorder = asyncio.ensure_future(self._record_when_done(cluster, host, task.id))
            self._on_hosts[task.id] = (host, recorder)
            return task.id
        info = await self.resolve_model(model)
        return await self.bench.submit(info, config, timeout_s=timeout_s)

    def benchmark_hosts(self, model: str) -> list[str]:
        """The cluster hosts whose folder has ``model`` (none on a single machine)."""
        return self._cluster.hosts_with(model) if self._cluster is not None else []

    async def _record_when_done(self, cluster: ClusterGateway, host: str, task_id: str) -> None:
        try:
            while True:
                with contextlib.suppress(TaskTimeoutError):
                    task = await cluster.host_benchmark_wait(host, task_id, 60.0)
                    break
            await self.bench.record_finished(task, host_name=host)
        except LlamaSwitchError as exc:
            logger.warning("benchmark %s on host %s not kept: %s", task_id, host, exc)
        finally:
            self._on_hosts.pop(task_id, None)

    async def benchmark_status(self, task_id: str) -> BenchTask:
        """The task: state, progress, queue position, results, output, error."""
        running = self._on_hosts.get(task_id)
        if running is not None and self._cluster is not None:
            return await self._cluster.host_benchmark_get(running[0], task_id)
        return await self.bench.get(task_id)

    async def wait_benchmark(self, task_id: str, timeout_s: float | None = None) -> BenchTask:
        """Wait until the task ends (``TaskTimeoutError`` after ``timeout_s``)."""
        running = self._on_hosts.get(task_id)
        if running is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(running[1])
            except TimeoutError:
                raise TaskTimeoutError(
                    f"task {task_id} did not end within {timeout_s:g} s"
                ) from None
        return await self.bench.wait(task_id, timeout_s=timeout_s)

    async def cancel_benchmark(self, task_id: str) -> BenchTask:
        """Cancel a queued or running task; it keeps the results of finished tests."""
        running = self._on_hosts.get(task_id)
        if running is not None and self._cluster is not None:
            return await self._cluster.host_benchmark_cancel(running[0], task_id)
        return await self.bench.cancel(task_id)

    async def delete_benchmark(self, task_id: str) -> BenchTask:
        """Delete a finished task and its results; returns the task as it was.

        A queued or running task raises :class:`~llamaswitch.TaskStateError`.
        """
        return await self.bench.delete(task_id)

    async def prune_benchmarks(
        self,
        *,
        before: datetime | None = None,
        model: str | None = None,
        state: str | None = None,
    ) -> list[str]:
        """Delete finished tasks created before ``before``, of ``model``, in ``state``
        (at least one filter; all given must match); returns the deleted ids."""
        return await self.bench.prune(before=before, model=model, state=state)

    async def list_benchmarks(
        self,
        *,
        model: str | None = None,
        state: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[BenchTask]:
        """Benchmark history, newest first."""
        return await self.bench.list(model=model, state=state, since=since, until=until,
                                     limit=limit)  # fmt: skip

    async def compare_benchmarks(self, task_ids: Sequence[str]) -> Comparison:
        """Several tasks' results side by side."""
        return await self.bench.compare(task_ids)

    async def import_benchmark(
        self, text: str, fmt: str = "json", *, model: str | None = None
    ) -> BenchTask:
        """Record results of a llama-bench run made elsewhere as a completed task."""
        return await self.bench.import_results(text, fmt, model=model)

    # -- tuning (llamaswitch.tuning; docs/tuning.md) ----------------------------------------

    def _tuner(self) -> TuneRunner:
        if not self._opened:
            raise ServiceClosedError(_NOT_OPEN)
        if self._tuning is None:
            from llamaswitch.tuning.runner import TuneRunner

            self._tuning = TuneRunner(self)
        return self._tuning

    async def tune(
        self,
        model: str,
        *,
        space: BenchConfig | Mapping[str, Any] | None = None,
        objective: Objective | str | Mapping[str, Any] | None = None,
        server: ServerConfig | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Tune:
        """Search the llama-bench settings that serve ``model`` fastest; returns at once.

        ``space``: BenchConfig fields, a list for each one to search (default: derived
        from the model, the binaries and the machine); ``objective``: ``"tg"``, ``"pp"``,
        ``"mix"`` or an :class:`~llamaswitch.tuning.Objective`; ``server``: the preset's
        other settings (its context size...). ``options`` are
        :class:`~llamaswitch.tuning.TuneOptions` fields (``budget``, ``repetitions``,
        ``preset``...); an unknown one is refused by name. When it completes, the best
        settings are written as the preset ``<model stem>-tuned`` and served by the
        gateway. Needs the ``tune`` extra (:class:`~llamaswitch.DependencyMissingError`).

        >>> tune = await ls.tune("tiny.gguf", space={"threads": [1, 2]}, budget=6)  # doctest: +SKIP
        >>> (await ls.wait_tune(tune.id)).best.params  # doctest: +SKIP
        {'threads': 2}
        """
        return await self._tuner().start(model, space=space, objective=objective,
                                          server=server, options=options)  # fmt: skip

    async def tune_status(self, tune_id: str) -> Tune:
        """A tune: state, progress, trials, the best one, the Pareto front, its preset."""
        return await self._tuner().get(tune_id)

    async def wait_tune(self, tune_id: str, timeout_s: float | None = None) -> Tune:
        """Wait until the tune stops (``TuneTimeoutError`` after ``timeout_s``)."""
        return await self._tuner().wait(tune_id, timeout_s)

    async def cancel_tune(self, tune_id: str) -> Tune:
        """Stop a running tune (and its running trial); it keeps its measured trials."""
        return await self._tuner().cancel(tune_id)

    async def resume_tune(self, tune_id: str, *, budget: int | None = None) -> Tune:
        """Go on with a tune that stopped (after a restart too), or give a completed one a
        larger ``budget``; measured trials are kept."""
        return await self._tuner().resume(tune_id, budget=budget)

    async def list_tunes(self, *, model: str | None = None, limit: int = 50) -> list[Tune]:
        """Tunes, newest first, without their trials (:meth:`tune_status` has them)."""
        return await self._tuner().list_tunes(model=model, limit=limit)

    async def save_tune_preset(
        self, tune_id: str, *, trial: int | None = None, preset: str | None = None
    ) -> Tune:
        """Write a completed trial of a tune (default: the best) as a preset now; the
        gateway serves it at once. ``preset``: its id (default: the tune's).
        :class:`~llamaswitch.PresetsError` when the presets file cannot be written."""
        return await self._tuner().save_preset(tune_id, trial=trial, preset=preset)

    async def tune_space(
        self, model: str, *, objective: Objective | str | Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The space a tune of ``model`` searches by default (BenchConfig's JSON form)."""
        return await self._tuner().default_space(model, objective)
