"""The gateway: clients name a model, it is loaded on demand, placed within memory, and
never cut off mid-request.

:class:`ModelGateway` is the one object that decides, for every model it serves, whether
to start, wait or unload: decisions are made inside it, never from a snapshot of state
taken elsewhere (the lesson of llama-swap's #946, where a request that arrived during a
TTL unload hung every later one). It works on the supervisor's servers:

- **Names.** :class:`~llamaswitch.gateway.names.NameBook` maps what clients send to a
  model and its config (catalog names, stems, presets).
- **Leases.** :meth:`ModelGateway.acquire` (or ``async with gateway.lease(name)``) counts
  a request in flight: a model with requests in flight is never unloaded to make room,
  and admin stops wait for them to drain. At most ``slots`` (the server's ``parallel``)
  leases run per model; the rest wait in order, up to ``LLAMASWITCH_QUEUE_MAX``.
- **Loads.** Every request that arrives while a model loads waits for that one load. A
  failed load fails every waiter with one :class:`~llamaswitch.ModelLoadError` and backs
  off (1 s, doubling to 60 s) before the next try.
- **Placement.** :class:`~llamaswitch.gateway.policy.PlacementPolicy` decides what to
  unload, from measured figures where a model has run before, estimates otherwise.
  While a load waits for busy models to drain, those admit at most :data:`SWAP_BATCH`
  more requests (the ones queued first), so A,B,A,B traffic is served in batches.
- **Idle unload.** A model idle (nothing in flight, nothing queued) for its TTL goes.

Servers the gateway did not start (``switch``/``start`` through the admin API) are used
as they are when a client names their file, count against the budgets, and are never
unloaded by the gateway: their users may be talking to them directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import psutil

from llamaswitch._binaries import BinaryInfo
from llamaswitch._capabilities import BinaryKind
from llamaswitch._errors import (
    LlamaSwitchError,
    ModelLoadError,
    ModelTooLargeError,
    PlacementTimeoutError,
    PresetsError,
    QueueFullError,
    ServerNotFoundError,
    ServiceClosedError,
)
from llamaswitch._events import EventBus
from llamaswitch._gpu import GpuDevice, GpuProbe
from llamaswitch._settings import Settings
from llamaswitch._tasks import BackgroundTasks
from llamaswitch.gateway.admission import Lease, ModelRecord, ModelState, held
from llamaswitch.gateway.measurements import MeasurementStore
from llamaswitch.gateway.memory import MemoryNeed, estimate
from llamaswitch.gateway.names import GatewayModel, NameBook
from llamaswitch.gateway.policy import Budget, PlacementPolicy, Plan, Resident
from llamaswitch.gateway.presets import Presets, load_presets
from llamaswitch.gateway.requests import RequestLog, RequestRecord
from llamaswitch.gateway.surface import Catalog, Servers
from llamaswitch.servers.config import ServerConfig
from llamaswitch.servers.status import ServerState, ServerStatus

__all__ = [
    "EVICTION_REASONS",
    "SWAP_BATCH",
    "HostResources",
    "Lease",
    "ModelGateway",
    "ModelState",
    "ModelView",
    "machine_budget",
]

logger = logging.getLogger(__name__)

#: Why a model stops being served (``model_evicted`` events, the evictions metric):
#: unloaded to make room, idle for its TTL, its server crashed, stopped by an admin, or
#: lost with its cluster host.
EVICTION_REASONS = ("room", "idle", "crashed", "stopped", "lost")
#: Requests a busy model still admits once another model waits for its room.
SWAP_BATCH = 8
#: Backoff after a failed load: the first retry waits this long, doubling up to the max.
_BACKOFF_S = 1.0
_BACKOFF_MAX_S = 60.0
#: How often the idle check runs, and how often running models' memory is sampled.
_TICK_S = 1.0
_SAMPLE_EVERY_S = 5.0
# A load's first measurement waits this long after ready (see _measure_soon).
_FIRST_MEASURE_AFTER_S = 0.5
#: Catalog rescans for unknown names happen at most this often (a client sending random
#: names must not turn into a folder scan per request).
_RESCAN_MIN_S = 1.0
#: Slots of a server whose binary's --help states "-1 = auto" (current builds pick 4).
_AUTO_SLOTS = 4
_MIB = 1024 * 1024


@attrs.frozen
class ModelView:
    """One model as ``GET /v1/models`` shows it."""

    id: str
    aliases: tuple[str, ...]
    file: str
    state: ModelState
    port: int | None
    estimated: MemoryNeed | None
    measured: MemoryNeed | None
    in_flight: int
    queued: int
    slots: int | None
    pinned: bool
    ttl_s: float | None
    preset: str | None
    last_used: datetime | None
    error: str | None
    #: False for a server started through the admin API that the gateway uses as it is.
    owned: bool
    #: In a cluster: the host that serves it (or would), and every host that has it.
    host: str | None = None
    hosts: tuple[str, ...] = ()
    #: While ``loading``: its server's ``load_progress`` (0.0-1.0), when it says.
    load_progress: float | None = None


@attrs.frozen
class HostResources:
    """Another machine's memory, for a gateway that places models there (a cluster
    host): its GPUs, its budget (from that host's own settings) and its RAM."""

    devices: tuple[GpuDevice, ...]
    budget: Budget
    ram_total_mib: float


def machine_budget(settings: Settings, devices: Sequence[GpuDevice]) -> Budget:
    """What the gateway's models may use on this machine: the budgets the settings give,
    else each GPU's total less 1024 MiB and the RAM less 10 % (at least 2048 MiB)."""
    if settings.ram_budget_mib is not None:
        ram = settings.ram_budget_mib
    else:
        total = psutil.virtual_memory().total / _MIB
        ram = max(0.0, total - max(2048.0, total * 0.10))
    vram = {d.index: (settings.vram_budget_mib if settings.vram_budget_mib is not None
                      else max(0.0, d.memory_total_mib - 1024.0)) for d in devices}  # fmt: skip
    return Budget(ram_mib=ram, vram_mib=vram, max_models=settings.max_models)


class ModelGateway:
    """Loads models on demand for the requests that name them (see the module docstring).

    Built and opened by :class:`~llamaswitch.AsyncLlamaSwitch`; use its ``ensure``,
    ``lease`` and ``gateway`` members.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        supervisor: Servers,
        catalog: Catalog,
        in_catalog: Callable[..., Awaitable[Any]],
        binary: Callable[[BinaryKind], Awaitable[BinaryInfo]],
        gpu: GpuProbe,
        events: EventBus,
        policy: PlacementPolicy | None = None,
        read_presets: Callable[[], Presets] | None = None,
        resources: HostResources | None = None,
    ) -> None:
        # ``supervisor`` and ``catalog`` are this machine's, or stand-ins that keep the
        # promises of gateway.surface; ``read_presets`` replaces reading the settings'
        # presets file; ``resources`` replaces probing this machine (another host's).
        self.settings = settings
        self.policy = policy if policy is not None else PlacementPolicy()
        self.requests = RequestLog()
        self._supervisor = supervisor
        self._catalog = catalog
        self._in_catalog = in_catalog
        self._binary = binary
        self._gpu = gpu
        self._events = events
        self._store = MeasurementStore(settings.measurements_path)
        self._presets_reader = read_presets
        self._presets = Presets()
        #: Why the presets file was refused at the last (re)load; None when it was not.
        self.presets_error: PresetsError | None = None
        self._book = NameBook(())
        self._models: dict[str, ModelRecord] = {}
        self._launch_configs: dict[str, tuple[ServerConfig, ServerConfig]] = {}
        self._placing = asyncio.Lock()
        self._rescanned_at = -_RESCAN_MIN_S
        self._rescan: asyncio.Future[None] | None = None
        self._resources = resources
        self._devices: list[GpuDevice] = []
        self.budget = Budget()
        self._tasks = BackgroundTasks()
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Read the presets (raising :class:`~llamaswitch.PresetsError` for a bad file),
        learn the machine's memory, start the idle check and the preloads."""
        if self._resources is not None:
            self._devices = list(self._resources.devices)
            self.budget = self._resources.budget
        else:
            self._devices = await asyncio.to_thread(self._gpu.devices)
            self.budget = self._budget(self._devices)
        await asyncio.to_thread(self._store.open)
        presets = await asyncio.to_thread(self._read_presets)
        self._book = await self._in_catalog(self._build_book, presets)
        self._presets = presets
        self._tasks.start(self._tick())
        for model in self._book.models:
            if model.preload:
                self._tasks.start(self._preload(model.id))

    async def close(self) -> None:
        """Stop the background work; requests still waiting fail (the service closes)."""
        self._closed = True
        await self._tasks.cancel_all()
        for m in self._models.values():
            if m.load is not None:
                m.load.cancel()
            m.wake_all()
        await asyncio.to_thread(self._store.close)

    def _budget(self, devices: Sequence[GpuDevice]) -> Budget:
        return machine_budget(self.settings, devices)

    # -- presets and names ----------------------------------------------------------------

    def _read_presets(self) -> Presets:
        if self._presets_reader is not None:
            return self._presets_reader()
        path = self.settings.presets_path
        if self.settings.presets is None and not path.exists():
            return Presets()
        return load_presets(path)

    def _build_book(self, presets: Presets) -> NameBook:
        """Runs in the catalog's thread: lists the folder and resolves the presets' files."""
        return NameBook.build(self._catalog.list_models(), presets, self._catalog.resolve)

    @property
    def presets(self) -> Presets:
        """The presets in effect."""
        return self._presets

    async def reload_presets(self) -> Presets:
        """Read the presets file again. A bad file raises :class:`~llamaswitch.PresetsError`
        and the presets in effect stay; models loaded keep running with the settings they
        were loaded with until they are unloaded."""
        try:
            presets = await asyncio.to_thread(self._read_presets)
            book = await self._in_catalog(self._build_book, presets)
        except PresetsError as exc:
            self.presets_error = exc
            logger.error("presets not reloaded, the previous ones stay: %s", exc)  # noqa: TRY400
            raise
        self.presets_error = None
        self._presets, self._book = presets, book
        logger.info("presets reloaded from %s: %d models", presets.path, len(presets.models))
        self._events.emit("gateway", "presets_reloaded", path=str(presets.path),
                          models=[p.id for p in presets.models])  # fmt: skip
        return presets

    async def _find(self, name: str) -> GatewayModel:
        model = self._book.get(name)
        if model is not None:
            return model
        # Unknown: the folder may have gained the file since the last scan.
        loop = asyncio.get_running_loop()
        if self._rescan is None and loop.time() - self._rescanned_at >= _RESCAN_MIN_S:
            self._rescanned_at = loop.time()
            self._rescan = asyncio.ensure_future(self._rebuild())
        if self._rescan is not None:
            with contextlib.suppress(PresetsError):
                await asyncio.shield(self._rescan)
        return self._book.find(name)

    def known(self, name: str) -> GatewayModel | None:
        """The model ``name`` names among those known now (no rescan); None if none."""
        return self._book.get(name)

    async def find(self, name: str) -> GatewayModel:
        """The model ``name`` names (rescanning the folder for a name not known yet);
        :class:`~llamaswitch.ModelNotFoundError` if none."""
        return await self._find(name)

    def holds(self, model_id: str) -> bool:
        """Whether the model is being served now (ready, its server there) or loaded."""
        m = self._models.get(model_id)
        model = self._book.by_id().get(model_id)
        if m is None or model is None:
            return False
        return m.load is not None or self._serving(m, model)

    async def _rebuild(self) -> None:
        try:
            self._book = await self._in_catalog(self._build_book, self._presets)
        finally:
            self._rescan = None

    async def list_models(self) -> list[ModelView]:
        """Every model clients can name, with its state and memory (a fresh scan)."""
        with contextlib.suppress(PresetsError):
            await self._rebuild()
        views = []
        # A load's server is known by its file until it is ready (see _residents).
        progress = {status.model_path: status.load_progress
                    for status in self._supervisor.snapshot()
                    if status.state is ServerState.STARTING}  # fmt: skip
        for model in self._book.models:
            m = self._state(model.id)
            self._check_serving(m, model)
            if m.estimated is None or m.config != model.config:
                await self._need(m, model)
            loading = m.state is ModelState.LOADING
            views.append(ModelView(
                id=model.id, aliases=model.aliases, file=model.info.relative_path,
                state=m.state, port=m.port if m.state is ModelState.READY else None,
                estimated=m.estimated, measured=m.measured, in_flight=m.in_flight,
                queued=m.waiting, slots=m.slots if m.state is ModelState.READY else None,
                pinned=model.pinned, ttl_s=self._ttl(model), preset=model.preset,
                last_used=m.last_used_at, error=str(m.error) if m.error else None,
                owned=m.owned,
                load_progress=progress.get(str(model.info.path)) if loading else None,
            ))  # fmt: skip
        return views

    def _state(self, model_id: str) -> ModelRecord:
        m = self._models.get(model_id)
        if m is None:
            m = self._models[model_id] = ModelRecord(id=model_id)
        return m

    def _ttl(self, model: GatewayModel) -> float | None:
        ttl = model.ttl_s if model.ttl_s is not None else self.settings.idle_ttl_s
        return ttl if ttl else None

    # -- on demand ------------------------------------------------------------------------

    async def ensure(self, name: str) -> ServerStatus:
        """Load ``name`` if it is not serving (waiting for a load under way), and return
        its server's status. Nothing holds it loaded afterwards: use :meth:`lease`."""
        model = await self._find(name)
        m = self._state(model.id)
        await self._loaded(m, model)
        assert m.port is not None  # noqa: S101 - serving
        return await self._supervisor.status_one(port=m.port)

    def lease(
        self, name: str, *, record: RequestRecord | None = None
    ) -> contextlib.AbstractAsyncContextManager[Lease]:
        """Hold ``name``'s server for one request: ``async with gateway.lease(m) as l``."""
        return held(self, name, record=record)

    async def acquire(self, name: str, *, record: RequestRecord | None = None) -> Lease:
        """Take a slot of ``name``'s server, loading it first if needed; pair with
        :meth:`release`. Raises ``ModelNotFoundError``, :class:`~llamaswitch.QueueFullError`,
        :class:`~llamaswitch.ModelLoadError`, :class:`~llamaswitch.ModelTooLargeError`,
        :class:`~llamaswitch.PlacementTimeoutError`."""
        if self._closed:
            raise ServiceClosedError("the gateway is closed")
        model = self._book.get(name)
        if model is None:
            model = await self._find(name)
        m = self._state(model.id)
        if record is not None:
            record.resolve(model.id)
        # The hot path: serving, a slot free, nobody ahead. No await.
        if self._serving(m, model) and m.admit():
            m.in_flight += 1
            self._tell_in_flight(m)
            return self._lease(m, 0.0, 0.0)
        if m.waiting >= self.settings.queue_max:
            raise QueueFullError(model.id, queued=m.waiting, limit=self.settings.queue_max,
                                 retry_after_s=1.0)  # fmt: skip
        began = time.monotonic()
        load_wait = 0.0
        queued = False
        m.waiting += 1
        try:
            while True:
                if not self._serving(m, model):
                    if record is not None:
                        record.state = "loading"
                    started = time.monotonic()
                    await self._loaded(m, model)
                    load_wait += time.monotonic() - started
                    continue
                if m.admit():
                    m.in_flight += 1
                    self._tell_in_flight(m)
                    break
                if not queued:
                    queued = True
                    if record is not None:
                        record.state = "queued"
                    self._events.emit("gateway", "request_queued", model=m.id,
                                      queued=m.waiting, in_flight=m.in_flight)  # fmt: skip
                if await m.wait_slot():
                    break
        finally:
            m.waiting -= 1
        total = time.monotonic() - began
        return self._lease(m, max(0.0, total - load_wait), load_wait)

    def release(self, lease: Lease) -> None:
        """End a request's hold (see :meth:`acquire`)."""
        m = self._models.get(lease.model)
        if m is not None:
            m.release()  # hands the slot to the next in the queue, if any
            self._tell_in_flight(m)

    def _tell_in_flight(self, m: ModelRecord) -> None:
        if m.port is not None:
            self._supervisor.in_flight(m.port, m.in_flight)

    def _lease(self, m: ModelRecord, queue_wait: float, load_wait: float) -> Lease:
        assert m.port is not None  # noqa: S101 - serving
        return Lease(model=m.id, url=m.url, port=m.port, api_key=m.api_key,
                     queue_wait_s=queue_wait, load_wait_s=load_wait)  # fmt: skip

    def _serving(self, m: ModelRecord, model: GatewayModel) -> bool:
        if m.state is not ModelState.READY or m.port is None:
            return False
        return self._supervisor.is_ready(m.port, model.info.path) or self._check_serving(m, model)

    def _check_serving(self, m: ModelRecord, model: GatewayModel) -> bool:
        """Notice a server that went away under a ready model (crash, admin stop)."""
        if m.state is not ModelState.READY or m.port is None:
            return False
        if self._supervisor.is_ready(m.port, model.info.path):
            return True
        status = next((s for s in self._supervisor.snapshot() if s.port == m.port), None)
        if status is not None and status.state is ServerState.UNRESPONSIVE:
            return False  # still there: its liveness check decides
        reasons = {ServerState.CRASHED: "crashed", ServerState.LOST: "lost"}
        reason = reasons.get(status.state, "stopped") if status is not None else "stopped"
        self._gone(m, reason)
        return False

    def _gone(self, m: ModelRecord, reason: str) -> None:
        logger.info("model %s is no longer served (%s)", m.id, reason)
        m.state = ModelState.UNLOADED
        m.port = None
        m.owned = False
        self._events.emit("gateway", "model_evicted", model=m.id, reason=reason,
                          detail=f"its server {reason}")  # fmt: skip
        m.wake_all()

    async def _loaded(self, m: ModelRecord, model: GatewayModel) -> None:
        """Return once ``m`` is serving: adopt a server of its file, join the load under
        way, or start one."""
        while not self._serving(m, model):
            if self._closed:
                raise ServiceClosedError("the gateway is closed")
            if m.load is None and m.state is ModelState.UNLOADING:
                await asyncio.wait([m.change()])
                continue
            if m.load is None:
                if self._adopt(m, model):
                    return
                if m.error is not None and time.monotonic() < m.retry_at:
                    m.error.retry_after_s = round(m.retry_at - time.monotonic(), 3)
                    raise m.error
                m.load = asyncio.ensure_future(self._load(m, model))
                m.load.add_done_callback(_consume)
            await m.wait_load()

    def _adopt(self, m: ModelRecord, model: GatewayModel) -> bool:
        """Use a ready server of the model's file started through the admin API (kept as
        it is), or for a gateway before this one (a cluster head's: owned again)."""
        for status in self._supervisor.snapshot():
            if status.state is ServerState.READY and Path(status.model_path) == model.info.path:
                owned = self._supervisor.started_for_a_gateway(status.port)
                self._serve(m, status, owned=owned, caps_slots=None)
                self._events.emit("gateway", "model_ready", model=m.id, port=status.port,
                                  adopted=True, load_s=0.0)  # fmt: skip
                return True
        return False

    def _serve(self, m: ModelRecord, status: ServerStatus, *, owned: bool,
               caps_slots: int | None) -> None:  # fmt: skip
        m.state = ModelState.READY
        m.port = status.port
        m.url = status.url
        m.owned = owned
        m.api_key = self._supervisor.server_key(port=status.port)
        parallel = status.config.parallel
        m.slots = parallel if parallel else (caps_slots or 1)
        m.last_used = time.monotonic()
        m.error = None
        m.failures = 0
        m.notify()

    async def _load(self, m: ModelRecord, model: GatewayModel) -> None:
        """Make room, start the server, and record the outcome (one task per load): the
        requests that wait for it are woken first, then it is logged and announced."""
        try:
            status, started = await self._start(m, model)
        except BaseException as exc:
            m.load_ended(exc)
            raise
        m.load_ended()  # the requests were woken at ready (_ready): none is left to wake
        # After the requests woken at ready: they ran first, and their first token is
        # what the load was for (bench/bench_gateway.py's cold figure).
        asyncio.get_running_loop().call_soon(
            self._announce_ready, m, model, status.port, time.monotonic() - started
        )

    def _ready(self, m: ModelRecord, binary: BinaryInfo, status: ServerStatus) -> None:
        """The load's server is ready (the supervisor's ``on_ready``, called as it reads
        the ready line): serve, and wake the requests that wait. They run next, before
        the start's own return reaches :meth:`_load` two task switches later."""
        self._serve(m, status, owned=True, caps_slots=_default_slots(binary))
        m.load_ended()

    def _announce_ready(
        self, m: ModelRecord, model: GatewayModel, port: int, load_s: float
    ) -> None:
        logger.info("model %s ready on port %d after %.2f s", m.id, port, load_s)
        self._events.emit("gateway", "model_ready", model=m.id, port=port,
                          adopted=False, load_s=round(load_s, 4))  # fmt: skip
        self._tasks.start(self._measure_soon(m, model, port))

    async def _start(self, m: ModelRecord, model: GatewayModel) -> tuple[ServerStatus, float]:
        """Make room and start the server (served at ready: :meth:`_ready`): its status
        and start time."""
        config = self._launch_config(model)
        try:
            async with self._placing:
                await self._make_room(m, model)
                m.state = ModelState.LOADING
                self._events.emit("gateway", "model_loading", model=m.id,
                                  file=model.info.relative_path,
                                  estimated_mib=_round(m.estimated))  # fmt: skip
                m.notify()
            binary = await self._binary("llama-server")
            await self._supervisor.forget_failed(model.info.path)
            started = time.monotonic()
            status = await self._supervisor.start(
                model.info, config, on_ready=functools.partial(self._ready, m, binary)
            )
        except asyncio.CancelledError:
            if m.state is ModelState.LOADING:
                m.state = ModelState.UNLOADED
            raise
        except (ModelTooLargeError, PlacementTimeoutError):
            if m.state is ModelState.LOADING:
                m.state = ModelState.UNLOADED
            raise
        except LlamaSwitchError as exc:
            raise self._failed(m, exc) from exc
        finally:
            self._unwant(m)
            m.load = None
            m.notify()
        return status, started

    def _failed(self, m: ModelRecord, exc: LlamaSwitchError) -> ModelLoadError:
        m.state = ModelState.FAILED
        m.failures += 1
        delay = min(_BACKOFF_S * 2 ** (m.failures - 1), _BACKOFF_MAX_S)
        m.retry_at = time.monotonic() + delay
        tail = getattr(exc, "log_tail", None) or []
        reason = str(exc).split("\n--- last log lines ---", 1)[0]
        m.error = ModelLoadError(m.id, reason, log_tail=tail, retry_after_s=delay)
        logger.warning("model %s failed to load (retry in %g s): %s", m.id, delay, reason)
        self._events.emit("gateway", "model_failed", model=m.id, reason=reason,
                          retry_after_s=delay)  # fmt: skip
        return m.error

    def _launch_config(self, model: GatewayModel) -> ServerConfig:
        # The gateway loads again on demand: a restart policy would race it. Kept per
        # model config: building a config validates every field again (0.1 ms a load).
        known = self._launch_configs.get(model.id)
        if known is not None and known[0] is model.config:
            return known[1]
        launch = attrs.evolve(model.config, restart="no", alias=_reported_name(model))
        self._launch_configs[model.id] = (model.config, launch)
        return launch

    # -- placement ------------------------------------------------------------------------

    async def _need(self, m: ModelRecord, model: GatewayModel) -> MemoryNeed:
        """What ``model`` takes: measured before with this config, else estimated."""
        if m.config != model.config or m.estimated is None:
            m.config = model.config
            binary = await self._binary("llama-server")
            gpus = [d.index for d in self._devices]
            totals = {d.index: float(d.memory_total_mib) for d in self._devices}
            m.estimated = estimate(model.info, self._supervisor_config(model), gpus=gpus,
                                   caps=binary.capabilities, device_totals=totals)  # fmt: skip
            m.measured = self._store.known(model.info, self._supervisor_config(model))
        return m.measured or m.estimated

    def _supervisor_config(self, model: GatewayModel) -> ServerConfig:
        """The config as the supervisor will fill it in (GPU_LAYERS applied)."""
        return model.config.with_defaults(gpu_layers=self.settings.gpu_layers)

    def _residents(
        self, exclude: ModelRecord | None
    ) -> tuple[list[Resident], dict[str, ModelRecord]]:
        """Everything that holds memory now: the gateway's models (by id) and the other
        servers (by ``model@port``, never unloaded by the gateway)."""
        residents: list[Resident] = []
        ours: dict[str, ModelRecord] = {}
        by_port = {m.port: m for m in self._models.values()
                   if m.port is not None and m.state is not ModelState.UNLOADED}  # fmt: skip
        book = self._book.by_id()
        # A load's server exists before the gateway learns its port (at ready): know it
        # by its file meanwhile, or it would count twice, once as someone else's.
        loading = {str(book[m.id].info.path): m for m in self._models.values()
                   if m.state is ModelState.LOADING and m.port is None
                   and m.id in book}  # fmt: skip
        for status in self._supervisor.snapshot():
            if not status.running:
                continue
            m = by_port.get(status.port)
            if m is None and status.state is ServerState.STARTING:
                m = loading.pop(status.model_path, None)
            live = _sampled(status)
            if m is not None and m is not exclude and (m.owned or m.state is ModelState.LOADING):
                model = book.get(m.id)
                need = _larger(m.measured or m.estimated, live)
                residents.append(Resident(m.id, need, busy=m.busy,
                                          pinned=bool(model and model.pinned),
                                          last_used=m.last_used))  # fmt: skip
                ours[m.id] = m
            elif m is not exclude:
                foreign = live or MemoryNeed(ram_mib=0.0)
                residents.append(Resident(f"{status.model_name}@{status.port}", foreign,
                                          pinned=True))  # fmt: skip
        for m in self._models.values():  # loads whose process does not exist yet
            if m is not exclude and m.state is ModelState.LOADING and m.id not in ours:
                residents.append(Resident(m.id, m.measured or m.estimated or MemoryNeed(0.0),
                                          busy=True))  # fmt: skip
                ours[m.id] = m
        return residents, ours

    async def plan(self, name: str) -> Plan:
        """What loading ``name`` would take now (what it would unload, and why), without
        doing it."""
        model = await self._find(name)
        m = self._state(model.id)
        need = await self._need(m, model)
        if self._serving(m, model):
            residents, _ = self._residents(None)
        else:
            residents, _ = self._residents(m)
        return self.policy.place(m.id, need, residents, self.budget)

    async def memory_summary(self) -> dict[str, Any]:
        """RAM and each GPU: what the servers use now (sampled), what placement counts
        for them (measured or estimated), the budget and the total; and the model count.
        """
        statuses = await self._supervisor.status_all()  # samples what has not been lately
        residents, _ = self._residents(None)
        live = [_sampled(s) for s in statuses if s.running]
        samples = [n for n in live if n is not None]
        devices: list[dict[str, Any]] = [{
            "id": "ram", "name": "RAM",
            "used_mib": round(sum(n.ram_mib for n in samples), 1),
            "estimated_mib": round(sum(r.need.ram_mib for r in residents), 1),
            "budget_mib": self.budget.ram_mib,
            "total_mib": round(self._resources.ram_total_mib if self._resources is not None
                               else psutil.virtual_memory().total / _MIB, 1),
        }]  # fmt: skip
        for device in self._devices:
            index = device.index
            devices.append({
                "id": f"gpu{index}", "name": f"GPU {index} ({device.name})",
                "used_mib": round(sum(n.vram_mib.get(index, 0.0) for n in samples), 1),
                "estimated_mib": round(sum(r.need.vram_mib.get(index, 0.0)
                                           for r in residents), 1),
                "budget_mib": self.budget.vram_mib.get(index),
                "total_mib": device.memory_total_mib,
            })  # fmt: skip
        return {
            "devices": devices,
            "models": {"loaded": len(residents), "max_models": self.budget.max_models},
            "in_flight": dict(self.in_flight()),
            "queued": {m.id: m.waiting for m in self._models.values() if m.waiting},
        }

    async def _make_room(self, m: ModelRecord, model: GatewayModel) -> None:
        """Unload idle models until ``m`` fits, waiting for busy ones to drain (lock held)."""
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while True:
            need = await self._need(m, model)
            residents, ours = self._residents(m)
            plan = self.policy.place(m.id, need, residents, self.budget)
            if plan.action == "refuse":
                raise ModelTooLargeError(m.id, plan.reason)
            for name in plan.evict:
                await self._unload(ours[name], reason="room", detail=f"room for {m.id}")
            if plan.action in ("load", "ready"):
                return
            busy = [ours[name] for name in plan.wait_for]
            for victim in busy:
                if m.id not in victim.wanted_by:
                    if not victim.wanted_by:
                        victim.batch_left = SWAP_BATCH
                    victim.wanted_by.add(m.id)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await _idle_within(busy, remaining):
                raise PlacementTimeoutError(m.id, plan.wait_for, self.settings.drain_timeout_s)
            await asyncio.sleep(0)  # never a loop that holds the event loop

    def _unwant(self, m: ModelRecord) -> None:
        for other in self._models.values():
            if m.id in other.wanted_by:
                other.wanted_by.discard(m.id)
                if not other.wanted_by:
                    other.hand_over()

    async def _unload(self, m: ModelRecord, *, reason: str, detail: str) -> None:
        """Stop an idle model's server (the placement lock is held). ``reason`` is one of
        :data:`EVICTION_REASONS`; ``detail`` says more."""
        port = m.port
        m.state = ModelState.UNLOADING
        m.notify()
        try:
            if port is not None:
                # The last sample before the process goes; its write waits for no one
                # (a SQLite commit took 2 ms of each swap: bench/bench_gateway.py).
                await self._measure_now(m, keep_later=True)
                with contextlib.suppress(ServerNotFoundError):
                    await self._supervisor.stop(port=port)
        finally:
            m.state = ModelState.UNLOADED
            m.port = None
            m.owned = False
            logger.info("model %s unloaded: %s", m.id, detail)
            self._events.emit("gateway", "model_evicted", model=m.id, reason=reason,
                              detail=detail)  # fmt: skip
            m.wake_all()

    # -- measurement ----------------------------------------------------------------------

    async def _measure_soon(self, m: ModelRecord, model: GatewayModel, port: int) -> None:
        """The first measurement of a load, :data:`_FIRST_MEASURE_AFTER_S` after ready.

        Not at once: the requests that waited for the load run then, and on a machine
        with few cores psutil, NVML and a SQLite write beside them delayed their first
        token by milliseconds (measured by bench/bench_gateway.py). A little later the
        figure is also truer: the first requests have made llama-server allocate its
        compute buffers."""
        await asyncio.sleep(_FIRST_MEASURE_AFTER_S)
        if m.port == port and m.state is ModelState.READY:
            with contextlib.suppress(LlamaSwitchError):
                await self._measure_now(m, model)

    async def _measure_now(
        self, m: ModelRecord, model: GatewayModel | None = None, *, keep_later: bool = False
    ) -> None:
        """Sample the server's RSS and VRAM and keep the peak (best effort); with
        ``keep_later`` the peak is stored in the background, after this returns."""
        model = model or self._book.by_id().get(m.id)
        if m.port is None or model is None or not m.owned:
            return
        try:
            status = await self._supervisor.status_one(port=m.port)
        except ServerNotFoundError:
            return
        live = _sampled(status)
        if live is None or not _raises(m.measured, live):
            # Nothing new to keep: no write. An unload samples every time, and an A/B
            # swap's write, in a thread, took the GIL from the next load's start.
            return
        keep = functools.partial(self._store.record, model.info, self._supervisor_config(model),
                                 ram_mib=live.ram_mib, vram_mib=live.vram_mib,
                                 binary_version=status.binary_version)  # fmt: skip
        if keep_later:
            self._tasks.start(self._keep(m, keep))
        else:
            await self._keep(m, keep)

    async def _keep(self, m: ModelRecord, keep: Callable[[], MemoryNeed]) -> None:
        m.measured = await asyncio.to_thread(keep)

    # -- background -----------------------------------------------------------------------

    async def _tick(self) -> None:
        """Unload models idle for their TTL; sample running ones now and then."""
        last_sample = time.monotonic()
        while True:
            await asyncio.sleep(_TICK_S)
            book = self._book.by_id()
            sample = time.monotonic() - last_sample >= _SAMPLE_EVERY_S
            if sample:
                last_sample = time.monotonic()
            for m in list(self._models.values()):
                model = book.get(m.id)
                if model is None or m.state is not ModelState.READY or not m.owned:
                    continue
                if sample:
                    with contextlib.suppress(LlamaSwitchError):
                        await self._measure_now(m, model)
                ttl = self._ttl(model)
                if ttl is None or m.in_flight or m.waiting or self._placing.locked():
                    continue
                if time.monotonic() - m.last_used >= ttl:
                    async with self._placing:  # decided again under the lock
                        if (m.state is ModelState.READY and not m.in_flight and not m.waiting
                                and time.monotonic() - m.last_used >= ttl):  # fmt: skip
                            await self._unload(m, reason="idle",
                                               detail=f"idle for {ttl:g} s")  # fmt: skip

    async def prepare(self) -> None:
        """Work out every model's memory need, plan its placement and rehearse a start
        (no process), now: a fresh service's first cold load paid 0.5 ms for doing them
        the first time (bench/bench_gateway.py's cold figure). ``serve`` calls it once
        it has identified llama-server; a request that comes meanwhile goes first."""
        for model in self._book.models:
            with contextlib.suppress(LlamaSwitchError):  # its request reports it
                await self.plan(model.id)
            await asyncio.sleep(0)  # a request that comes meanwhile goes first
        usable = [m for m in self._book.models if m.info.error is None]
        if usable:
            with contextlib.suppress(LlamaSwitchError):  # its request reports it
                binary = await self._binary("llama-server")
                await self._supervisor.rehearse(usable[0].info, self._launch_config(usable[0]),
                                                binary)  # fmt: skip

    async def _preload(self, model_id: str) -> None:
        try:
            await self.ensure(model_id)
        except LlamaSwitchError as exc:
            logger.error("preloading %s failed: %s", model_id, exc)  # noqa: TRY400

    # -- admin switches -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def draining(self, ports: Iterable[int], *, force: bool = False) -> AsyncIterator[None]:
        """Hold back new requests for the models on ``ports`` and wait (up to the drain
        timeout, not at all with ``force``) for the ones in flight; an admin stop or
        switch runs inside. Requests held back go on afterwards (loading again if their
        model's server was stopped)."""
        wanted = set(ports)
        held = [m for m in self._models.values() if m.port in wanted]
        for m in held:
            m.draining += 1
        try:
            if not force and held:
                await _idle_within(held, self.settings.drain_timeout_s)
            yield
        finally:
            book = self._book.by_id()
            for m in held:
                m.draining -= 1
                model = book.get(m.id)
                if model is not None:
                    self._check_serving(m, model)
                m.hand_over()
                m.notify()

    async def lost(self, lease: Lease, timeout_s: float = 2.0) -> bool:
        """A lease's server refused the connection: True once the supervisor has seen
        its process gone (the next :meth:`acquire` loads the model again), False if it
        still runs after ``timeout_s``. Its process may have died a moment before the
        request (a crash the exit watcher has not reaped yet)."""
        m = self._models.get(lease.model)
        model = self._book.by_id().get(lease.model)
        if m is None or model is None:
            return True
        deadline = time.monotonic() + timeout_s
        while self._supervisor.is_ready(lease.port, model.info.path):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        if m.port == lease.port:
            self._check_serving(m, model)
        return True

    def serving_ids(self) -> list[str]:
        """The ids of the models being served now."""
        book = self._book.by_id()
        return [m.id for m in self._models.values()
                if m.id in book and self._serving(m, book[m.id])]  # fmt: skip

    def in_flight(self) -> Mapping[str, int]:
        """Requests in flight per model id."""
        return {m.id: m.in_flight for m in self._models.values() if m.in_flight}


def _default_slots(binary: BinaryInfo) -> int:
    default = binary.capabilities.default_number("-np", "--parallel")
    if default is None or default == 0:
        return 1
    return _AUTO_SLOTS if default < 0 else default


async def _idle_within(models: Sequence[ModelRecord], timeout_s: float) -> bool:
    """Wait until none of ``models`` is busy (requests in flight, loading, unloading);
    False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while any(m.busy for m in models):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        changes = [m.change() for m in models if m.busy]
        await asyncio.wait(changes, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
    return True


def _sampled(status: ServerStatus) -> MemoryNeed | None:
    if status.rss_mib is None:
        return None
    vram = {int(k): float(v) for k, v in (status.vram_per_gpu_mib or {}).items()}
    return MemoryNeed(ram_mib=float(status.rss_mib), vram_mib=vram, source="measured")


def _larger(known: MemoryNeed | None, live: MemoryNeed | None) -> MemoryNeed:
    if known is None:
        return live or MemoryNeed(ram_mib=0.0)
    if live is None:
        return known
    gpus = set(known.vram_mib) | set(live.vram_mib)
    return MemoryNeed(
        ram_mib=max(known.ram_mib, live.ram_mib),
        vram_mib={g: max(known.vram_mib.get(g, 0.0), live.vram_mib.get(g, 0.0)) for g in gpus},
        source=known.source,
    )


def _reported_name(model: GatewayModel) -> str | None:
    """The name the model's server gives in its answers (``--alias``): the preset's own
    ``alias``, else the model's id. Without it a current llama-server names the model
    by its file's path, which its clients would see (and a remote one should not); a
    legacy one says the name the request sent. An id with a comma is left to
    llama-server's default: current builds read ``--alias`` as a comma-separated list."""
    if model.config.alias is not None:
        return model.config.alias
    return None if "," in model.id else model.id


def _raises(known: MemoryNeed | None, live: MemoryNeed) -> bool:
    """Whether ``live`` raises the peak ``known`` (or is the first figure)."""
    return known is None or _larger(known, live) != known


def _round(need: MemoryNeed | None) -> float | None:
    return None if need is None else round(need.total_mib, 1)


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
