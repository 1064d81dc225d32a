"""The server supervisor: llama-server processes keyed by port, run without races.

:class:`ServerSupervisor` is what :class:`~llamaswitch.AsyncLlamaSwitch` uses to switch,
start, stop and report model servers. Its rules:

- **Servers are keyed by port.** ``switch`` replaces whatever llamaswitch runs on a port;
  ``start`` adds a server on a free port of the model port range.
- **One operation per port at a time**: an ``asyncio.Lock`` per port covers "stop the old
  server, reap it, check the port, spawn the new one", so a start never races the stop
  before it. Each request (switch, start, stop) takes a :class:`Ticket` (a per-port
  generation number) when it is made and counts as in flight until it has acted; a
  request overtaken by a later one on the same port (a stop included) fails with
  :class:`~llamaswitch._errors.SupersededError` instead of starting anything, and a
  server still starting when a later request replaces it fails its waiters the same way.
  Concurrent switches therefore end with exactly one server, the last request's. A
  request that fails before it acts (an unknown model, an option the binary cannot
  honour) gives the port back to the request before it.
- **Readiness** is ``GET /health`` == 200, polled from the first milliseconds: at once
  whenever the server prints something (its log lines are hints, ``/health`` is the
  truth), else on a timer backing off from 5 ms to 250 ms. A build with router mode is
  started as a router's child instead (servers/child_protocol.py): its ready line, which
  comes when ``/health`` turns 200, ends the wait, and ``/health`` is asked only every
  250 ms as a fallback, so that no polls take CPU time from the load. An exit before
  ready is a
  :class:`~llamaswitch._errors.ServerStartError` with the exit code and the last 40 log
  lines; no answer within ``ready_timeout_s`` kills it
  (:class:`~llamaswitch._errors.ReadinessTimeoutError`).
- **States** (:class:`ServerState`) change only along the allowed transitions, and each
  change is published as a ``server``/``state`` event::

      starting -> ready | failed | stopping        ready -> stopping | crashed | unresponsive
      unresponsive -> ready | stopping | crashed   stopping -> stopped
      crashed | failed -> starting | stopped

- **Crash watch**: an exit after ready turns the server ``crashed`` as soon as the
  process is reaped (milliseconds), with exit code, time and log tail; with
  ``restart="on-failure"`` a non-zero exit is followed by restarts with exponential
  backoff, at most ``restart_max`` in a row (both per server, in its ``ServerConfig``).
- **Liveness**: a ready server's ``/health`` is asked every ``liveness_interval_s``; after
  ``liveness_failures`` failures in a row it is ``unresponsive`` (back to ``ready`` when it
  answers again). Under ``on-failure`` an unresponsive server is killed, which the crash
  watch turns into a restart: a hang is a failure too.
- **Validated before acting**: a switch checks the model, every field, the address (its
  syntax, that it resolves to an address of this machine, and that a non-loopback one has
  an API key), the RPC hosts, the binary's capabilities and the environment before it
  stops anything; a refusal leaves the running server and its record as they were.
- **Keys beyond loopback**: a server listening on a non-loopback address (every server,
  with ``LLAMASWITCH_SERVER_KEYS=always``) is started with a fresh random ``--api-key``
  (through ``LLAMA_API_KEY``, so no other user reads it in the process list);
  :meth:`ServerSupervisor.server_key` tells it to whoever asks the API.
- **Never an orphan**: children die with this process (the guardian, or Linux's
  parent-death signal, see llamaswitch._process; and a stdin that closes when this
  process dies, which a router's child exits at) and are recorded in
  ``state_dir/children.json``; :meth:`open` stops the
  survivors of a manager that died, :meth:`close` stops every server and supersedes the
  requests still in flight, so that nothing is spawned after it. A stop whose caller is
  cancelled still runs to the end (the process is reaped; the next operation on the port
  waits for it).

Blocking calls (psutil, NVML, the registry file) run in worker threads; resource figures
(RSS, CPU, VRAM) are sampled at most every ``sample_ttl_s`` and shared by all callers, so
``status`` stays cheap however often it is asked.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import secrets
import shlex
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeAlias

import attrs
import psutil

from llamaswitch._binaries import BinaryInfo
from llamaswitch._capabilities import BinaryKind
from llamaswitch._catalog import ModelInfo, outside_paths
from llamaswitch._errors import (
    ConfigValidationError,
    ModelPathError,
    ModelUnusableError,
    PortInUseError,
    ReadinessTimeoutError,
    ReservedPortError,
    ServerNotFoundError,
    ServerStartError,
    ServiceClosedError,
    SupersededError,
)
from llamaswitch._events import EventBus
from llamaswitch._gpu import GpuProbe
from llamaswitch._process import ChildProcess, ChildRegistry, OutputLog, children_guarded
from llamaswitch._settings import Settings
from llamaswitch._tasks import BackgroundTasks
from llamaswitch._text import encodable
from llamaswitch.servers.checks import (
    API_KEY_ENV,
    InheritedEnv,
    address_problem,
    binary_problems,
    is_address,
    rpc_problems,
)
from llamaswitch.servers.child_protocol import EXIT_COMMAND, ReadyLine, child_env, ready_line_for
from llamaswitch.servers.config import ServerConfig, env_flag
from llamaswitch.servers.fit import fit_skip
from llamaswitch.servers.hooks import UrlHooks
from llamaswitch.servers.probes import (
    HEALTH_TIMEOUT_S,
    bind_failed,
    bind_free,
    connect_host,
    health,
    parse_check,
    port_free,
    port_holder,
    url_of,
)
from llamaswitch.servers.sampler import Sample
from llamaswitch.servers.sampler import sample as sample_processes
from llamaswitch.servers.status import ALIVE, SERVING, TRANSITIONS, ServerState, ServerStatus
from llamaswitch.servers.tickets import Ticket, TicketBook

__all__ = ["ServerState", "ServerStatus", "ServerSupervisor", "Ticket"]

logger = logging.getLogger(__name__)

_DEFAULT_HOST = "127.0.0.1"
_LOG_TAIL_LINES = 40
_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.25
_POLL_GROWTH = 1.5
CpuPolicy: TypeAlias = Literal["batch", "normal", "dynamic"]
# Changes to children.json wait this long where children are guarded (see _record).
_RECORD_AFTER_S = 0.25
# A server's first psutil and NVML sample waits this long after ready (_sample_soon).
_FIRST_SAMPLE_AFTER_S = 0.5
# Output-triggered polls closer together than this are merged: a loading server prints
# dozens of lines in a burst.
_POLL_MIN_GAP_S = 0.001
# A cut server (ServerSupervisor.cutting) gets this long after SIGTERM, then SIGKILL.
_CUT_GRACE_S = 0.05
# A llama-server that ignored SIGTERM this long gets a second one (see ChildProcess.stop).
_SIGTERM_AGAIN_S = 1.0
# At most this many servers are sampled on the loop, not in a thread (see _sample).
_INLINE_SAMPLES = 4
# Log lines after which /health is likely 200 (legacy: "model loaded" after the state is
# set; current: "model loaded", then "listening on"). Only hints: a poll confirms. Not
# every line: legacy logs each /health request, and polling on those would feed itself.
_READY_HINTS = (b"model loaded", b"listening", b"all slots are idle")
# A server that stayed ready this long before crashing starts a fresh series of restarts.
_RESTART_RESET_AFTER_S = 60.0
_RESTART_BACKOFF_MAX_S = 30.0
# How long close() waits for requests in flight to give up (they do as soon as they
# reach the port's lock, or at once if they have not reached the supervisor yet).
_CLOSE_DRAIN_S = 5.0
_MIB = 1024 * 1024
# A name lookup slower than this is a broken resolver: refuse before acting.
_RESOLVE_TIMEOUT_S = 5.0
_API_KEY_BYTES = 24
# How many ports a start that picks its own port tries when llama-server cannot bind one.
_BIND_ATTEMPTS = 3
# States worth a warning in the log (the rest are routine, at debug level).
_TROUBLE = frozenset({ServerState.FAILED, ServerState.CRASHED, ServerState.UNRESPONSIVE})


class _Wakeup:
    """A resettable wake-up for the readiness poll (output, exit, stop, or a timer)."""

    def __init__(self) -> None:
        self._waiter: asyncio.Future[bool] | None = None
        self._pending = False

    def set(self) -> None:
        self._pending = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(True)

    async def wait(self, timeout_s: float) -> bool:
        """Wait until :meth:`set` or the timeout; True when woken by :meth:`set`."""
        if self._pending:
            self._pending = False
            return True
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        handle = loop.call_later(timeout_s, _resolve, self._waiter, False)
        try:
            return await self._waiter
        finally:
            handle.cancel()
            self._waiter = None
            self._pending = False


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


def _cpu_policy(config: ServerConfig, binary: BinaryInfo) -> CpuPolicy:
    """How the server is scheduled (``ServerConfig.cpu_scheduling``): ``batch`` (spawned
    under SCHED_BATCH), ``normal``, or ``dynamic``: under SCHED_BATCH only while more than
    one gateway request runs on it (:meth:`ServerSupervisor.in_flight`).

    ``auto`` is ``dynamic`` for a server that computes on the CPU. On two cores, 16
    streams through the gateway rose from 0.69-0.81 of a direct llama-server's chunks per
    second to above it under SCHED_BATCH (bench/bench_gateway.py): llama-server's thread
    for each connection, and the relay, woke for each token and preempted its compute
    threads, which then held the others at their barrier. A lone request is better off
    under the ordinary policy: a thread woken to take it must not wait for the compute
    threads' polling to end (its first chunk came 1.8 ms later under SCHED_BATCH, its
    start 1.5 ms later). A server that computes on a GPU keeps the ordinary policy: its
    CPU thread waits for the GPU, and must run the moment it wakes.
    """
    if config.cpu_scheduling != "auto":
        return config.cpu_scheduling
    on_cpu = config.n_gpu_layers == 0 or binary.cpu_only
    return "dynamic" if on_cpu else "normal"


@attrs.frozen
class _Plan:
    """What a checked launch will run."""

    argv: list[str]
    env: dict[str, str]
    api_key: str | None
    #: How it is scheduled (see _cpu_policy).
    cpu_policy: CpuPolicy = "normal"


@attrs.define(eq=False)
class _Server:
    """The supervisor's mutable record of one port's server (across restarts)."""

    port: int
    host: str
    model: ModelInfo
    config: ServerConfig
    binary: BinaryInfo
    argv: list[str]
    env: dict[str, str]
    output: OutputLog
    state: ServerState | None = None
    process: ChildProcess | None = None
    ps_process: psutil.Process | None = None
    ready_after_s: float | None = None
    ready_since: float | None = None
    exit_code: int | None = None
    exited_at: float | None = None
    error: str | None = None
    restarts: int = 0
    restart_streak: int = 0
    attempt: asyncio.Future[None] | None = None
    wake: _Wakeup = attrs.field(factory=_Wakeup)
    #: The current process's ready line (see servers/child_protocol.py); None for a
    #: binary without the child protocol.
    ready_line: ReadyLine | None = None
    #: Called when the ready line is read: the start completes in that callback, with
    #: no task switch between the line and the requests that wait for it.
    on_ready: Callable[[], None] | None = None
    #: Called once when the output says the HTTP server listens (see ReadyLine).
    on_listening: Callable[[], None] | None = None
    #: The caller's ``on_ready`` of :meth:`ServerSupervisor.start`: called once, with the
    #: status, the moment this launch is ready (cleared by any other end of it).
    ready_hook: Callable[[ServerStatus], None] | None = None
    sample: Sample | None = None
    sampled_at: float = 0.0
    restart_task: asyncio.Task[None] | None = None
    #: The key llama-server requires (servers beyond loopback only), known to nobody else.
    api_key: str | None = None
    #: How it is scheduled (see _cpu_policy), and whether it is under SCHED_BATCH now.
    cpu_policy: CpuPolicy = "normal"
    batched: bool = False
    #: The gateway requests running on it, as last heard (:meth:`ServerSupervisor.in_flight`).
    in_flight: int = 0
    liveness_task: asyncio.Task[None] | None = None
    #: The stop of ``process`` (SIGTERM, grace, SIGKILL, reap), kept so that a stop whose
    #: caller was cancelled is finished, not forgotten, by the next one.
    stopping: asyncio.Future[int] | None = None

    @property
    def alive(self) -> bool:
        return self.state in ALIVE

    @property
    def wants_batch(self) -> bool:
        """Whether its policy puts it under SCHED_BATCH now (``dynamic``: while more
        than one request runs on it)."""
        return self.cpu_policy == "batch" or (self.cpu_policy == "dynamic"
                                               and self.in_flight > 1)  # fmt: skip

    def same_as(self, model: ModelInfo, config: ServerConfig, binary: BinaryInfo) -> bool:
        return (self.model.path == model.path and self.config == config
                and self.binary.path == binary.path)  # fmt: skip

    def hint(self, chunk: bytes) -> None:
        """Act on what the output says: the ready line makes the server ready here and
        now (:attr:`on_ready`); for a binary without one, a readiness hint wakes the poll."""
        if self.ready_line is not None:
            # The ready line is the news; log lines (hints) only cost the load polls.
            if self.ready_line.feed(chunk):
                if self.on_ready is not None:
                    self.on_ready()
                self.wake.set()
            elif self.ready_line.listening and self.on_listening is not None:
                told, self.on_listening = self.on_listening, None
                told()
        elif any(word in chunk for word in _READY_HINTS):
            self.wake.set()

    def matches(self, reference: str) -> bool:
        """Whether a model reference (as users write it) names this server's model."""
        text = reference.replace("\\", "/").removeprefix("./")
        names = {self.model.name, self.model.relative_path, str(self.model.path),
                 Path(self.model.name).stem}  # fmt: skip
        if self.model.display_name:
            names.add(self.model.display_name)
        if self.config.alias:
            names.add(self.config.alias)
        return text in names or reference in names


class ServerSupervisor:
    """Runs llama-server processes for the async API (see the module docstring).

    ``binary`` returns the identified llama-server; ``gpu`` answers VRAM questions;
    ``events`` receives ``server``/``state`` events. The restart policy's backoff starts at
    ``restart_backoff_s`` and doubles per attempt (at most 30 s); at most ``restart_max``
    restarts follow one another before the server is left ``failed``/``crashed``. Both are
    defaults: a server's ``ServerConfig.restart_backoff_s`` and ``restart_max`` win.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        binary: Callable[[BinaryKind], Awaitable[BinaryInfo]],
        gpu: GpuProbe,
        events: EventBus,
        restart_backoff_s: float = 0.5,
        restart_max: int = 5,
        sample_ttl_s: float = 0.5,
        log_lines: int = 1000,
    ) -> None:
        self.settings = settings
        self._binary = binary
        self._gpu = gpu
        self._events = events
        self.restart_backoff_s = restart_backoff_s
        self.restart_max = restart_max
        self.sample_ttl_s = sample_ttl_s
        self._log_lines = log_lines
        self._servers: dict[int, _Server] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._good_loopback: set[str] = set()
        # The environment a server inherits, read again only once it has changed.
        self._inherited_env = InheritedEnv()
        self._listening = UrlHooks("listening")
        self._stopping = UrlHooks("stopping")
        self._idle = asyncio.Event()
        self._idle.set()
        self._tickets = TicketBook(on_idle=self._idle.set, on_busy=self._idle.clear)
        self._reserved: set[int] = set()
        self._next_port: int = settings.model_ports[0]
        self._tasks = BackgroundTasks()
        self._registry = ChildRegistry(settings.state_dir / "children.json")
        # One worker, so registry writes happen in the order they were asked for (an
        # "add" is never overtaken by the "remove" of the same child).
        self._registry_worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="llamaswitch-registry"
        )
        self._registry_ops: set[asyncio.Future[Any]] = set()
        # Changes not written yet (see _record): pid -> (port, argv), and pids reaped.
        self._registry_adds: dict[int, tuple[int | None, tuple[str, ...]]] = {}
        self._registry_removes: set[int] = set()
        self._registry_flush: asyncio.TimerHandle | None = None
        # Ports whose servers a stop cuts (see cutting), counted: stops may overlap.
        self._cutting: Counter[int] = Counter()
        self._sampling: asyncio.Future[None] | None = None
        self._closed = False
        #: The last failure to write ``children.json`` (None while every write worked).
        self.registry_error: str | None = None
        #: Survivors of a previous manager stopped by :meth:`open` (pid, port, argv).
        self.survivors_stopped: list[dict[str, Any]] = []

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Prepare the state folder and stop survivors of a manager that died."""
        logs = self.settings.logs_dir
        await asyncio.to_thread(logs.mkdir, parents=True, exist_ok=True)
        # On the registry's own worker, which this starts: the first start's record
        # would otherwise pay for the thread, on the path of the request that waits.
        stopped = await asyncio.get_running_loop().run_in_executor(
            self._registry_worker, self._registry.stop_survivors, self.settings.stop_timeout_s
        )
        self.survivors_stopped = [
            {"pid": r.pid, "port": r.port, "argv": list(r.argv)} for r in stopped
        ]
        for record in stopped:
            logger.warning("stopped pid %d (port %s), left running by a manager that is gone",
                           record.pid, record.port)  # fmt: skip

    async def close(self) -> None:
        """Stop every server (SIGTERM, grace, SIGKILL) and finish background work.

        Requests still in flight are superseded: a launch that holds its port's lock is
        let finish spawning and its server is stopped with the others; the rest fail
        (:class:`~llamaswitch._errors.SupersededError`) when they reach the lock, before
        anything is spawned. ``close`` waits (up to a few seconds) for them to give up.
        """
        if self._closed:
            return
        self._closed = True
        try:
            await self.stop(None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_DRAIN_S):
                    await self._idle.wait()
        finally:
            await self._tasks.cancel_all()
            self._flush_registry()
            if self._registry_ops:
                await asyncio.gather(*self._registry_ops, return_exceptions=True)
            self._registry_worker.shutdown(wait=True)
            for server in self._servers.values():
                server.output.close()

    # -- requests -------------------------------------------------------------------------

    def port_for(self, config: ServerConfig | None) -> int:
        """The port ``switch`` uses for ``config``."""
        if config is not None and config.port is not None:
            return config.port
        return self.settings.model_port

    def ticket(self, port: int | None) -> Ticket:
        """Register a request on ``port`` now; earlier requests there become superseded.

        The API takes the ticket when a call is made, before any await (see
        :class:`~llamaswitch.servers.tickets.TicketBook`). One that fails before it acts,
        without a supervisor method to end it, must be :meth:`withdraw`-n. ``port=None``
        is a ``start`` whose port is picked later.
        """
        return self._tickets.take(port)

    def withdraw(self, ticket: Ticket) -> None:
        """End a request that failed before it acted (nothing stopped, nothing started)."""
        self._tickets.end(ticket, acted=False)

    async def _place(self, ticket: Ticket, host: str) -> None:
        """Check a start's own port, or pick one for it (in flight from then on)."""
        port = ticket.port
        if port is None:
            port = await self._pick_port(host)
            # In flight from now on, which keeps the port from being picked again.
            self._tickets.place(ticket, port)
            self._reserved.discard(port)
            return
        self._check_reserved(port)
        running = self._servers.get(port)
        if running is not None and running.alive:
            raise PortInUseError(
                port, host, f"llamaswitch's own server for {running.model.name}; "
                "use switch to replace it"
            )  # fmt: skip

    async def switch(
        self,
        info: ModelInfo,
        config: ServerConfig | None = None,
        *,
        wait: bool = True,
        ticket: Ticket | None = None,
    ) -> ServerStatus:
        """Serve ``info`` on the config's port (default: the default model port),
        replacing what llamaswitch runs there; returns at once if that is the same model
        with the same config, ready. See :meth:`AsyncLlamaSwitch.switch`.

        ``ticket``, from :meth:`ticket` for :meth:`port_for` of ``config``, is ended here
        whatever happens."""
        if ticket is None:
            ticket = self.ticket(self.port_for(config))
        return await self._launch(info, config, ticket, wait=wait, replace=True)

    async def start(
        self,
        info: ModelInfo,
        config: ServerConfig | None = None,
        *,
        wait: bool = True,
        ticket: Ticket | None = None,
        on_ready: Callable[[ServerStatus], None] | None = None,
    ) -> ServerStatus:
        """Serve ``info`` alongside the others: on the config's port, else on a free port
        of the model port range (never the default model port ``switch`` uses).

        ``ticket``, from :meth:`ticket` for the config's port (None if unset), is ended
        here whatever happens. ``on_ready`` is called with the status the moment the
        server is ready (in the callback that reads its ready line, or in the readiness
        poll), before this call returns: a caller with requests waiting wakes them
        there, two task switches sooner than when this returns. It is not called for a
        start that fails, nor for a later restart."""
        if ticket is None:
            ticket = self.ticket(config.port if config is not None else None)
        picked = ticket.port is None
        host = (config.host if config is not None else None) or _DEFAULT_HOST
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            try:
                await self._place(ticket, host)
            except BaseException:
                self.withdraw(ticket)
                raise
            try:
                return await self._launch(info, config, ticket, wait=wait, replace=False,
                                          port_checked=picked, on_ready=on_ready)  # fmt: skip
            except ServerStartError as exc:
                # A port it picked itself that llama-server could not bind after all (a
                # client socket of this machine holding it, say): another port will do.
                if not (picked and wait and attempt < _BIND_ATTEMPTS
                        and bind_failed(exc.log_tail)):  # fmt: skip
                    raise
                failed_port = ticket.port
                assert failed_port is not None  # noqa: S101 - placed above
                logger.info("port %d could not be bound; starting %s on another port",
                            failed_port, info.name)  # fmt: skip
                await self._clear_failed(failed_port)
                ticket = self.ticket(None)
        raise AssertionError("unreachable")  # pragma: no cover

    async def stop(
        self, model: str | None = None, *, port: int | None = None
    ) -> list[ServerStatus]:
        """Stop the server on ``port``, the servers of ``model``, or every server.

        Failed and crashed records are cleared too, and switches and starts still in
        flight on those ports (all of them, for "every server") are superseded: they
        fail with :class:`~llamaswitch._errors.SupersededError` and start nothing.
        Returns the final statuses (``stopped``) of the servers that were stopped;
        ``ServerNotFoundError`` when nothing matches a name or port.
        """
        if port is not None:
            if port not in self._servers and not self._tickets.in_flight(port):
                raise ServerNotFoundError(self._not_found(f"port {port}"))
            ports = [port]
        elif model is not None:
            ports = sorted(p for p, s in self._servers.items() if s.matches(model))
            if not ports:
                raise ServerNotFoundError(self._not_found(f"model {model!r}"))
        else:
            self._tickets.stop_all()
            ports = sorted(set(self._servers) | self._tickets.busy_ports)
        tickets = [self.ticket(p) for p in ports]
        results = await asyncio.gather(*(self._stop_port(t) for t in tickets))
        return [status for status in results if status is not None]

    async def status_all(self) -> list[ServerStatus]:
        """Every server llamaswitch runs (and failed/crashed ones not yet cleared)."""
        servers = [self._servers[p] for p in sorted(self._servers)]
        await self._refresh_samples(servers)
        return [self._status(s) for s in servers]

    async def status_one(
        self, model: str | None = None, *, port: int | None = None
    ) -> ServerStatus:
        """The server on ``port``, or the first (lowest port) serving ``model``."""
        server = self._find(model, port)
        await self._refresh_samples([server])
        return self._status(server)

    async def logs(
        self, model: str | None = None, *, port: int | None = None, lines: int = 100
    ) -> list[str]:
        """The last ``lines`` lines the server printed (its log file holds more)."""
        return self._find(model, port).output.tail(lines)

    def ports_of(self, model: str | None = None, *, port: int | None = None) -> list[int]:
        """The ports a :meth:`stop` with these arguments acts on (none given: all)."""
        if port is not None:
            return [port]
        return sorted(p for p, s in self._servers.items() if model is None or s.matches(model))

    def snapshot(self) -> list[ServerStatus]:
        """Every server as last sampled, without sampling again (no await)."""
        return [self._status(self._servers[p]) for p in sorted(self._servers)]

    def started_for_a_gateway(self, port: int) -> bool:
        """Always False: a gateway's servers here die with the service that started them,
        so the ones a gateway finds were started by an admin."""
        return False

    def is_ready(self, port: int, model_path: Path) -> bool:
        """Whether ``model_path`` is served ready on ``port`` now (the gateway's hot path)."""
        server = self._servers.get(port)
        return (server is not None and server.state is ServerState.READY
                and server.model.path == model_path)  # fmt: skip

    def running_servers(self) -> list[dict[str, Any]]:
        """The servers running now, JSON-friendly and short (benchmark records use it)."""
        # A snapshot first: callers may run on another thread than the loop's.
        servers = list(self._servers.values())
        return [
            {"port": s.port, "model_name": s.model.name, "model_path": str(s.model.path),
             "state": str(s.state), "process_id": s.process.pid if s.process else None,
             "binary_version": s.binary.version}
            for s in sorted(servers, key=lambda s: s.port) if s.alive
        ]  # fmt: skip

    def server_key(self, model: str | None = None, *, port: int | None = None) -> str | None:
        """The API key llama-server requires, for a server beyond loopback (else None).

        Each such server gets a fresh random key; nobody learns it but whoever asks here
        (the gateway does, to forward requests).
        """
        return self._find(model, port).api_key

    def log_path(self, port: int) -> Path:
        """The rotating log file of the server on ``port``."""
        return self.settings.logs_dir / f"server-{port}.log"

    # -- launching ------------------------------------------------------------------------

    def _effective(self, config: ServerConfig | None) -> ServerConfig:
        return (config or ServerConfig()).with_defaults(gpu_layers=self.settings.gpu_layers)

    def _check_reserved(self, port: int) -> None:
        if port == self.settings.server_port:
            raise ReservedPortError(
                f"port {port} is SERVER_PORT, the REST API's own; choose another port"
            )

    async def _pick_port(self, host: str) -> int:
        """The next free port of the model range, added to ``_reserved``.

        Reserved before it is tested, so that concurrent starts never pick the same one.
        Skipped: ports llamaswitch serves or has requests in flight for, the REST API's
        port and the default model port (``switch`` without a port goes there). An
        address that cannot be listened on at all raises ``ServerStartError``. The search
        starts after the port picked last, so a port just freed is the last to be used
        again: connections to it may linger in TIME_WAIT for a minute, and a server that
        starts, stops and starts again (the gateway's swaps) would meet them.
        """
        low, high = self.settings.model_ports
        taken = {self.settings.server_port, self.settings.model_port}
        start = self._next_port if low <= self._next_port <= high else low
        order: list[int] = [*range(start, high + 1), *range(low, start)]
        for port in order:
            if (port in taken or port in self._servers or self._tickets.in_flight(port)
                    or port in self._reserved):  # fmt: skip
                continue
            self._reserved.add(port)
            try:
                free = await self._port_free(host, port)
            except BaseException:
                self._reserved.discard(port)
                raise
            if free:
                self._next_port = port + 1
                return port
            self._reserved.discard(port)
        raise PortInUseError(low, host, f"other processes: no free port in {low}-{high} "
                             "(LLAMASWITCH_MODEL_PORTS)")  # fmt: skip

    async def _port_free(self, host: str, port: int) -> bool:
        try:
            # Binding an address literal never blocks: test it here, saving a thread
            # trip on every switch. Names (DNS) and the connect test go to a thread.
            if is_address(host) and bind_free(host, port):
                return True
            return await asyncio.to_thread(port_free, host, port)
        except OSError as exc:
            raise ServerStartError(f"cannot listen on {host}:{port}: {exc}", exit_code=None,
                                   log_tail=()) from exc  # fmt: skip

    def _lock(self, port: int) -> asyncio.Lock:
        lock = self._locks.get(port)
        if lock is None:
            lock = self._locks[port] = asyncio.Lock()
        return lock

    def _outside(self, info: ModelInfo) -> list[str]:
        """``info``'s files outside the models folder, unless that is allowed (blocks)."""
        if self.settings.allow_outside_models_dir:
            return []
        return outside_paths(info, self.settings.models_dir)

    async def _launch(
        self,
        info: ModelInfo,
        config: ServerConfig | None,
        ticket: Ticket,
        *,
        wait: bool,
        replace: bool,
        port_checked: bool = False,
        on_ready: Callable[[ServerStatus], None] | None = None,
    ) -> ServerStatus:
        """Serve ``info`` on the ticket's port; the ticket is ended here, on every path.
        ``port_checked``: the port was found free just now (picked by :meth:`_pick_port`);
        ``on_ready``: see :meth:`start`."""
        port = ticket.port
        assert port is not None  # noqa: S101 - placed by switch/start
        acted = False
        try:
            if self._tickets.stopped_since(ticket):
                raise SupersededError(f"every server was stopped after this request for "
                                      f"port {port} was made")  # fmt: skip
            if self._closed:
                raise ServiceClosedError("the supervisor is closed")
            config = self._effective(config)
            self._check_reserved(port)
            host = config.host or _DEFAULT_HOST
            # The catalog lists a symlink out of the models folder (with an error) but
            # never resolves it; refuse one that came another way. Other broken models
            # are launched: llama.cpp's complaint is the useful error.
            if info.error is not None and (escaped := await asyncio.to_thread(self._outside, info)):
                raise ModelPathError(
                    f"model {info.relative_path} resolves to {escaped[0]}, outside the "
                    f"models folder {self.settings.models_dir}"
                )
            if info.error is not None:
                raise ModelUnusableError(info.relative_path, info.error)
            binary = await self._binary("llama-server")
            # Everything is checked before anything is stopped: a bad option, address or
            # variable must not cost the user the server that runs now.
            plan = await self._plan(info, config, binary, host, port)
            async with self._lock(port):
                acted = True
                server = await self._launch_locked(
                    info, config, ticket, binary, plan, replace=replace,
                    port_checked=port_checked, on_ready=on_ready,
                )  # fmt: skip
        finally:
            self._tickets.end(ticket, acted=acted)
        if wait:
            await self._wait_ready(server)
        return self._status(server)

    async def _plan(
        self, info: ModelInfo, config: ServerConfig, binary: BinaryInfo, host: str, port: int,
        *, parse: bool = True,
    ) -> _Plan:  # fmt: skip
        """The argv and environment of a launch, after every check that needs the
        machine, the settings or the binary (none of them acts); ``parse``: llama.cpp's
        own parse of extra arguments and variables too (a process of its own)."""
        problems: list[tuple[str, str]] = []
        reason, loopback = await self._address(host)
        if reason is not None:
            problems.append(("host", f"{host!r} {reason}"))
        elif not loopback and not (self.settings.api_key or self.settings.insecure):
            problems.append(("host", f"{host!r} is reachable from other machines, and so "
                             "would be the model server: set LLAMASWITCH_API_KEY (or run "
                             "serve --insecure) to listen beyond loopback"))  # fmt: skip
        problems += rpc_problems(config, self.settings.rpc_hosts)
        refused, unsupported = binary_problems(config, binary.capabilities)
        problems += refused
        if problems:
            raise ConfigValidationError(problems)
        if unsupported is not None:
            raise unsupported
        env = {**self._inherited_env(), **config.env}
        skip = fit_skip(config, binary, env)
        argv = [
            str(binary.path),
            *config.to_argv(binary, info.path, host, port, projector=info.projector_path),
            *skip.args,
        ]
        env.update(skip.env)
        if parse and (config.extra_args or any(env_flag(key) for key in config.env)):
            # Values only llama.cpp can judge (an extra flag's value, a LLAMA_ARG_*
            # variable's): let it parse them now, before anything is stopped.
            parse_refusal = await parse_check(argv, env)
            if parse_refusal is not None:
                raise ConfigValidationError([parse_refusal])
        # After the parse check: that run never reaches ready, whose line is all it is for.
        env = {**child_env(binary.capabilities, self.settings.server_port), **env}
        api_key = None
        if not loopback or self.settings.server_keys == "always":
            # Through the environment: an argv is readable by every user of the machine.
            api_key = secrets.token_urlsafe(_API_KEY_BYTES)
            env[API_KEY_ENV] = api_key
        # The checks above refuse what cannot be encoded; this is the last line before a
        # child's argv, a log file and the registry. The inherited environment came
        # decoded from the OS (it encodes back as it was), and reaches no file.
        bad = [a for a in (*argv, *config.env, *config.env.values()) if not encodable(a)]
        if bad:
            raise ConfigValidationError([("config", f"{bad[0]!r} is not valid Unicode text")])
        return _Plan(argv=argv, env=env, api_key=api_key,
                     cpu_policy=_cpu_policy(config, binary))  # fmt: skip

    async def _address(self, host: str) -> tuple[str | None, bool]:
        """:func:`address_problem`, on the loop for an address literal (no DNS). A
        loopback literal found good stays so: it is not asked again at each start."""
        if host in self._good_loopback:
            return None, True
        if is_address(host):
            found = address_problem(host)
            if found == (None, True):
                self._good_loopback.add(host)
            return found
        try:
            async with asyncio.timeout(_RESOLVE_TIMEOUT_S):
                return await asyncio.to_thread(address_problem, host)
        except TimeoutError:
            return f"did not resolve within {_RESOLVE_TIMEOUT_S:g} s", False

    async def _launch_locked(
        self,
        info: ModelInfo,
        config: ServerConfig,
        ticket: Ticket,
        binary: BinaryInfo,
        plan: _Plan,
        *,
        replace: bool,
        port_checked: bool = False,
        on_ready: Callable[[ServerStatus], None] | None = None,
    ) -> _Server:
        """Replace (or keep) the port's server and spawn; the port's lock is held."""
        port = ticket.port
        assert port is not None  # noqa: S101 - placed by switch/start
        host = config.host or _DEFAULT_HOST
        overtaken = f"a later request for port {port} overtook this one"
        # Checked again now that the lock is held: close() or a later request may have
        # come while this one waited for the binary or the lock.
        if self._closed:
            raise SupersededError(f"the supervisor was closed before port {port} was served")
        if self._tickets.superseded(ticket):
            raise SupersededError(overtaken)
        current = self._servers.get(port)
        if current is not None:
            fresh = current.state in (ServerState.STARTING, ServerState.READY)
            if replace and fresh and current.same_as(info, config, binary):
                return current
            if not replace and current.alive:
                raise PortInUseError(port, host, f"llamaswitch's own server for "
                                     f"{current.model.name}")  # fmt: skip
            await self._stop_server(current, why="replaced by a later request")
            if self._closed or self._tickets.superseded(ticket):
                raise SupersededError(overtaken)
        # A port picked a moment ago was found free then (and one taken since by another
        # process fails the bind: start() moves to another port); any other is tested.
        if not (port_checked and current is None) and not await self._port_free(host, port):
            holder = await asyncio.to_thread(port_holder, port)
            raise PortInUseError(port, host, holder)
        server = _Server(
            port=port, host=host, model=info, config=config, binary=binary, argv=plan.argv,
            env=plan.env, api_key=plan.api_key, cpu_policy=plan.cpu_policy,
            output=OutputLog(self.log_path(port), max_lines=self._log_lines),
            ready_hook=on_ready,
        )  # fmt: skip
        self._servers[port] = server
        await self._spawn(server)
        return server

    async def _spawn(self, server: _Server) -> None:
        """Start the server's process (state ``starting``); readiness runs as a task."""
        began = datetime.now(UTC)

        def starting() -> str:  # the log's note, written once the child runs
            return (f"=== llamaswitch {began.isoformat(timespec='seconds')}: starting "
                    f"{shlex.join(server.argv)} (CPU scheduling {server.cpu_policy})")  # fmt: skip

        # A restart under dynamic scheduling starts as the requests in flight want it:
        # nothing else would switch it until their count changes.
        batch = server.wants_batch
        try:
            server.ready_line = ready_line_for(server.binary.capabilities, server.env)
            proc = await ChildProcess.spawn(
                server.argv, output=server.output, env=server.env, on_output=server.hint,
                batch=batch,
                # A router's child prints its ready line on stdout, its log on stderr.
                logs_apart=server.ready_line is not None,
            )  # fmt: skip
        except (OSError, ValueError) as exc:  # ValueError: what Popen refuses (a NUL...)
            server.output.note(starting())
            server.output.note(f"=== spawn failed: {exc}")
            if server.state is None:
                self._forget(server)
            else:
                server.error = f"cannot start {server.argv[0]}: {exc}"
                self._set_state(server, ServerState.STARTING)
                self._set_state(server, ServerState.FAILED)
            raise ServerStartError(f"cannot start {server.argv[0]}: {exc}", exit_code=None,
                                   log_tail=()) from exc  # fmt: skip
        except BaseException:
            # Cancelled: asyncio killed and reaped the child if it was forked.
            if server.state is None:
                self._forget(server)
            raise
        # Noted once spawned: a log file's first write creates it (0.1-0.3 ms), which is
        # then done while the child loads, not before. The child prints nothing for
        # milliseconds, so the note still comes first.
        server.output.note(starting())
        server.process = proc
        server.batched = batch
        server.ps_process = None
        server.sample = None
        server.ready_after_s = server.ready_since = None
        server.exit_code = server.exited_at = None
        server.error = None
        server.wake = _Wakeup()
        server.attempt = asyncio.get_running_loop().create_future()
        # Nobody may await a background start (wait=False); its failure is recorded in
        # the status and an event, so the future's exception counts as seen.
        server.attempt.add_done_callback(_consume)
        server.on_ready = functools.partial(self._became_ready, server, proc)
        server.on_listening = functools.partial(self._heard_listening, server, proc)
        self._set_state(server, ServerState.STARTING)
        self._record(proc.pid, port=server.port, argv=server.argv)
        self._tasks.start(self._readiness(server, proc))
        self._tasks.start(self._watch_exit(server, proc))

    async def _clear_failed(
        self, port: int, why: str = "could not bind; moved to another port"
    ) -> None:
        """Drop the ``failed`` record a start left on ``port`` (it moved elsewhere)."""
        async with self._lock(port):
            server = self._servers.get(port)
            if server is not None and server.state in (ServerState.FAILED, ServerState.CRASHED):
                await self._stop_server(server, why=why)

    @contextlib.contextmanager
    def cutting(self, ports: Iterable[int]) -> Iterator[None]:
        """Within: a stop of the servers on ``ports`` (by a stop, or a switch replacing
        them) cuts what they are doing: SIGTERM, then SIGKILL after
        :data:`_CUT_GRACE_S`. Otherwise a llama-server with streams in flight finishes
        them first, and a current build stops only at the second SIGTERM, a second
        later. For ``force=true``, which cuts the gateway's requests at once."""
        chosen = list(ports)
        self._cutting.update(chosen)
        try:
            yield
        finally:
            self._cutting.subtract(chosen)
            self._cutting += Counter()  # drops the ports no longer cut

    def in_flight(self, port: int, count: int) -> None:
        """Hear that ``count`` gateway requests run on ``port``'s server now: one whose
        CPU scheduling is dynamic (see :func:`_cpu_policy`) moves to SCHED_BATCH when a
        second one starts, and back when one is left (a system call per thread)."""
        server = self._servers.get(port)
        if server is None:
            return
        server.in_flight = count
        if server.cpu_policy != "dynamic" or server.process is None:
            return
        busy = server.wants_batch
        if busy != server.batched:
            server.batched = busy
            server.process.set_batch(busy)

    async def rehearse(
        self, info: ModelInfo, config: ServerConfig | None, binary: BinaryInfo
    ) -> None:
        """Run a start's checks and build its argv and environment, acting on nothing.

        A fresh process runs that code about five times slower the first time (0.3 ms,
        bench/bench_gateway.py's cold figure): the gateway rehearses once, off any
        request's path (``ModelGateway.prepare``). No process is started: llama.cpp's own
        check of extra arguments is left to the start. Raises what a start of ``info``
        would before it acts.
        """
        config = self._effective(config)
        if info.error is not None:
            raise ModelUnusableError(info.relative_path, info.error)
        low, _ = self.settings.model_ports
        await self._plan(info, config, binary, config.host or _DEFAULT_HOST, low, parse=False)

    async def forget_failed(self, model_path: Path) -> None:
        """Drop the failed and crashed records of ``model_path`` (a retry follows)."""
        ports = [p for p, s in self._servers.items() if s.model.path == model_path
                 and s.state in (ServerState.FAILED, ServerState.CRASHED)]  # fmt: skip
        for port in ports:
            await self._clear_failed(port, why="retried")

    def _forget(self, server: _Server) -> None:
        """Drop a record that never had a process, closing its log file."""
        if self._servers.get(server.port) is server:
            del self._servers[server.port]
        server.output.close()

    async def _wait_ready(self, server: _Server) -> None:
        attempt = server.attempt
        assert attempt is not None  # noqa: S101 - set by _spawn
        await asyncio.shield(attempt)

    async def _readiness(self, server: _Server, proc: ChildProcess) -> None:
        attempt = server.attempt
        assert attempt is not None  # noqa: S101 - set by _spawn
        try:
            await self._poll_ready(server, proc, attempt)
        finally:
            server.ready_hook = None  # told at ready, or never: this launch has ended
            # Cancelled (close): whoever waits for this start must not wait forever.
            if not attempt.done():
                attempt.set_exception(SupersededError(
                    f"the supervisor was closed before the server for {server.model.name} "
                    f"on port {server.port} became ready"))  # fmt: skip

    async def _poll_ready(
        self, server: _Server, proc: ChildProcess, attempt: asyncio.Future[None]
    ) -> None:
        host = connect_host(server.host)
        deadline = proc.started_monotonic + self.settings.ready_timeout_s
        line = server.ready_line
        # A child that tells when it is ready is asked only as a fallback, on the slow
        # timer: a poll takes a core's time from the load (two cores: milliseconds).
        delay = _POLL_FIRST_S if line is None else _POLL_MAX_S
        poll = line is None
        last_poll = 0.0
        while True:
            if attempt.done():
                return  # ready: the ready line said so (_became_ready)
            if server.process is not proc or server.state is not ServerState.STARTING:
                attempt.set_exception(SupersededError(
                    f"the server for {server.model.name} on port {server.port} was stopped "
                    "by a later request before it became ready"))  # fmt: skip
                return
            if proc.returncode is not None:
                await self._start_failed(server, proc, attempt)
                return
            if line is not None and line.seen:
                code: int | None = 200
            elif poll:
                gap = _POLL_MIN_GAP_S - (time.monotonic() - last_poll)
                if gap > 0:
                    await asyncio.sleep(gap)
                    continue
                last_poll = time.monotonic()
                code = await health(host, server.port)
            else:
                code = None
            poll = True
            if code == 200 and server.process is proc and server.state is ServerState.STARTING:
                self._became_ready(server, proc)
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await self._start_timed_out(server, proc, attempt)
                return
            woken = await server.wake.wait(min(delay, remaining))
            # After a readiness hint, poll fast again; slower and slower while quiet.
            if line is None:
                delay = _POLL_FIRST_S if woken else min(delay * _POLL_GROWTH, _POLL_MAX_S)

    def when_listening(self, hook: Callable[[str], None]) -> Callable[[], None]:
        """Call ``hook(url)`` on the loop when a starting server's HTTP server listens,
        as its load begins (binaries with the child protocol only: their first loading
        line). A client opens its connection then, and the requests waiting for ready
        find it open (the HTTP adapter does; bench/bench_gateway.py's cold figure).
        Returns the function that removes the hook."""
        return self._listening.add(hook)

    def when_stopping(self, hook: Callable[[str], None]) -> Callable[[], None]:
        """Call ``hook(url)`` on the loop just before a running server is told to stop
        (any stop: an eviction, an admin stop or switch, the service's end). A client
        drops its idle connections to the server then: llama-server's shutdown waits
        for each of its threads that holds a kept-alive connection to notice, which cost
        4-6 ms of the median A/B swap in bench/bench_gateway.py. Returns the function that
        removes the hook."""
        return self._stopping.add(hook)

    def _heard_listening(self, server: _Server, proc: ChildProcess) -> None:
        if server.process is not proc or server.state is not ServerState.STARTING:
            return
        self._listening(url_of(server.host, server.port))

    def _became_ready(self, server: _Server, proc: ChildProcess) -> None:
        """The start of ``proc`` is done: its state is READY and its waiters are woken.

        Called by the readiness poll on a 200 from ``/health``, or by the output's
        callback on the ready line (:meth:`_Server.hint`): then the waiting requests are
        the next thing the loop runs (bench/bench_gateway.py's cold figure)."""
        attempt = server.attempt
        if (attempt is None or attempt.done() or server.process is not proc
                or server.state is not ServerState.STARTING):  # fmt: skip
            return
        server.on_ready = None
        server.ready_after_s = round(time.monotonic() - proc.started_monotonic, 4)
        server.ready_since = time.monotonic()
        # Whoever waits is woken before the state's event is published: the loop runs
        # callbacks in the order they were scheduled, and a subscriber's task (the event
        # log's) would otherwise run before the requests that wait for this server.
        self._set_state(server, ServerState.READY, announce=False)
        hook, server.ready_hook = server.ready_hook, None
        if hook is not None:
            try:
                hook(self._status(server))
            except Exception:  # the caller's fault must not stop the start
                logger.exception("the ready hook of the server on port %d failed", server.port)
        attempt.set_result(None)
        self._emit(server, previous=ServerState.STARTING)
        # Sampled in the background, and a little later: the requests that waited for
        # ready run first, with the machine's cores to themselves (status() samples for
        # itself in the meantime).
        self._tasks.start(self._sample_soon(server, proc))
        server.liveness_task = self._tasks.start(self._watch_liveness(server, proc))

    async def _sample_soon(self, server: _Server, proc: ChildProcess) -> None:
        await asyncio.sleep(_FIRST_SAMPLE_AFTER_S)
        if server.process is proc and server.state is ServerState.READY:
            await self._refresh_samples([server])

    async def _start_failed(
        self, server: _Server, proc: ChildProcess, attempt: asyncio.Future[None]
    ) -> None:
        code = await proc.wait()
        if server.process is not proc or server.state is not ServerState.STARTING:
            attempt.set_exception(SupersededError(
                f"the server for {server.model.name} on port {server.port} was stopped by a "
                "later request before it became ready"))  # fmt: skip
            return
        tail = server.output.tail(_LOG_TAIL_LINES)
        server.exit_code = code
        server.exited_at = time.time()
        server.error = (f"llama-server exited with code {code} before it became ready "
                        f"(model {server.model.name}, port {server.port})")  # fmt: skip
        if bind_failed(tail):
            server.error += (
                f"; it could not bind port {server.port}, which no process listens on: "
                "connections closed in the last minute (TIME_WAIT) by a server with other "
                "socket options hold it; it is free again within 60 s, or use another port"
            )
        self._set_state(server, ServerState.FAILED)
        attempt.set_exception(ServerStartError(server.error, exit_code=code, log_tail=tail))

    async def _start_timed_out(
        self, server: _Server, proc: ChildProcess, attempt: asyncio.Future[None]
    ) -> None:
        await proc.kill()
        code = await proc.wait()
        server.exit_code = code
        server.exited_at = time.time()
        server.error = (f"llama-server did not answer /health within "
                        f"{self.settings.ready_timeout_s:g} s (LLAMASWITCH_READY_TIMEOUT_S) "
                        "and was killed")  # fmt: skip
        if server.process is proc and server.state is ServerState.STARTING:
            self._set_state(server, ServerState.FAILED)
        attempt.set_exception(ReadinessTimeoutError(server.error))

    async def _watch_liveness(self, server: _Server, proc: ChildProcess) -> None:
        """Ask a ready server's ``/health`` at an interval; a run of failures makes it
        ``unresponsive`` (and, under ``on-failure``, killed: the crash watch restarts it)."""
        interval = self.settings.liveness_interval_s
        limit = self.settings.liveness_failures
        host = connect_host(server.host)
        failures = 0
        while True:
            await asyncio.sleep(interval)
            if server.process is not proc or server.state not in SERVING:
                return
            code = await health(host, server.port, timeout_s=min(HEALTH_TIMEOUT_S, interval))
            if server.process is not proc or server.state not in SERVING:
                return
            if code == 200:
                failures = 0
                if server.state is ServerState.UNRESPONSIVE:
                    server.error = None
                    self._set_state(server, ServerState.READY)
                continue
            failures += 1
            if failures < limit or server.state is ServerState.UNRESPONSIVE:
                continue
            server.error = (f"llama-server did not answer /health {failures} times in a row, "
                            f"{interval:g} s apart (model {server.model.name}, port "
                            f"{server.port}; last answer: {code or 'none'})")  # fmt: skip
            self._set_state(server, ServerState.UNRESPONSIVE)
            if server.config.restart == "on-failure":
                server.output.note("=== llamaswitch: unresponsive, killed to be restarted")
                await proc.kill()
                return

    async def _watch_exit(self, server: _Server, proc: ChildProcess) -> None:
        """Reap the process when it exits; an exit after ready is a crash."""
        code = await proc.wait()
        self._record(proc.pid, reaped=True)
        server.wake.set()  # the readiness poll notices at once
        if server.process is not proc or server.state not in SERVING:
            return
        server.exit_code = code
        server.exited_at = time.time()
        if server.state is ServerState.UNRESPONSIVE:
            server.error = f"{server.error}; it exited with code {code}"
        else:
            server.error = (f"llama-server exited on its own with code {code} after it was "
                            f"ready (model {server.model.name}, port {server.port})")  # fmt: skip
        if server.ready_since is not None and (
            time.monotonic() - server.ready_since >= _RESTART_RESET_AFTER_S
        ):
            server.restart_streak = 0
        self._set_state(server, ServerState.CRASHED)
        if server.config.restart == "on-failure" and code != 0:
            self._schedule_restart(server)

    # -- restarts -------------------------------------------------------------------------

    def _schedule_restart(self, server: _Server) -> None:
        config = server.config
        limit = self.restart_max if config.restart_max is None else config.restart_max
        backoff_s = (self.restart_backoff_s if config.restart_backoff_s is None
                     else config.restart_backoff_s)  # fmt: skip
        if server.restart_streak >= limit:
            server.error = f"{server.error}; gave up after {server.restart_streak} restarts"
            self._emit(server, previous=server.state)
            return
        delay = min(backoff_s * 2**server.restart_streak, _RESTART_BACKOFF_MAX_S)
        server.restart_streak += 1
        generation = self._tickets.generation(server.port)
        server.restart_task = self._tasks.start(self._restart(server, delay, generation))

    async def _restart(self, server: _Server, delay_s: float, generation: int) -> None:
        await asyncio.sleep(delay_s)
        async with self._lock(server.port):
            if (self._closed or self._tickets.generation(server.port) != generation
                    or self._servers.get(server.port) is not server
                    or server.state not in (ServerState.CRASHED, ServerState.FAILED)):  # fmt: skip
                return
            if not await self._port_free(server.host, server.port):
                holder = await asyncio.to_thread(port_holder, server.port)
                refused = PortInUseError(server.port, server.host, holder)
                server.error = f"{server.error}; not restarted: {refused}"
                self._emit(server, previous=server.state)
                return
            server.restarts += 1
            try:
                await self._spawn(server)
            except ServerStartError:
                return
        try:
            await self._wait_ready(server)
        except SupersededError:
            return
        except (ServerStartError, ReadinessTimeoutError):
            if self._servers.get(server.port) is server and server.state is ServerState.FAILED:
                self._schedule_restart(server)

    # -- stopping -------------------------------------------------------------------------

    async def _stop_port(self, ticket: Ticket) -> ServerStatus | None:
        port = ticket.port
        assert port is not None  # noqa: S101 - stop tickets always have a port
        try:
            async with self._lock(port):
                # A stop always proceeds; its ticket supersedes what came before it.
                server = self._servers.get(port)
                if server is None:
                    return None
                await self._stop_server(server, why="stopped")
                return self._status(server)
        finally:
            self._tickets.end(ticket, acted=True)

    async def _stop_server(self, server: _Server, *, why: str) -> None:
        """Stop and reap ``server``'s process and drop it from the table (lock held).

        The process stop is shielded: a caller cancelled meanwhile leaves the record
        ``stopping`` while the stop runs on, and the next stop of the port (every launch
        there starts with one) waits for it, or starts it again if it was lost.
        """
        if server.restart_task is not None:
            server.restart_task.cancel()
            server.restart_task = None
        if server.liveness_task is not None:
            server.liveness_task.cancel()
            server.liveness_task = None
        proc = server.process
        if server.alive and proc is not None:
            self._set_state(server, ServerState.STOPPING)
            server.wake.set()  # a readiness poll in progress fails its waiters now
            server.stopping = None
        if server.state is ServerState.STOPPING and proc is not None:
            if server.stopping is None or server.stopping.cancelled():
                self._stopping(url_of(server.host, server.port))
                if server.ready_line is not None:
                    # A router's child waits for its stdin after SIGTERM: told to exit
                    # there too, it is gone in milliseconds, not after a second SIGTERM.
                    proc.tell(EXIT_COMMAND)
                if self._cutting[server.port]:
                    stop = proc.stop(_CUT_GRACE_S)
                else:
                    stop = proc.stop(self.settings.stop_timeout_s, repeat_after_s=_SIGTERM_AGAIN_S)
                server.stopping = asyncio.ensure_future(stop)
                server.stopping.add_done_callback(_consume)
            code = await asyncio.shield(server.stopping)
            if server.state is ServerState.STOPPING:  # not already done by another stop
                server.exit_code = code
                server.exited_at = time.time()
                self._set_state(server, ServerState.STOPPED)
        elif server.state in (ServerState.CRASHED, ServerState.FAILED):
            if proc is not None:
                await proc.wait()
            self._set_state(server, ServerState.STOPPED)
        if self._servers.get(server.port) is server:
            del self._servers[server.port]
        server.output.note(f"=== llamaswitch: {why}")
        server.output.close()

    # -- status ---------------------------------------------------------------------------

    def _find(self, model: str | None, port: int | None) -> _Server:
        if port is not None:
            server = self._servers.get(port)
            if server is None or (model is not None and not server.matches(model)):
                raise ServerNotFoundError(self._not_found(f"port {port}"))
            return server
        if model is None:
            raise ServerNotFoundError("name a model or a port")
        for p in sorted(self._servers):
            if self._servers[p].matches(model):
                return self._servers[p]
        raise ServerNotFoundError(self._not_found(f"model {model!r}"))

    def _not_found(self, what: str) -> str:
        running = ", ".join(f"{s.model.name} on port {p}" for p, s in sorted(self._servers.items()))
        return f"no llamaswitch server for {what}" + (f" (running: {running})" if running else "")

    async def _refresh_samples(self, servers: Iterable[_Server]) -> None:
        """Sample RSS, CPU and VRAM of ``servers`` unless a recent sample exists.

        One worker-thread trip samples every live server at once, and concurrent callers
        share it: thousands of status calls a second cost a couple of samples.
        """
        now = time.monotonic()
        stale = [s for s in servers if s.alive and now - s.sampled_at >= self.sample_ttl_s]
        if not stale:
            return
        if self._sampling is None or self._sampling.done():
            targets = [s for s in self._servers.values() if s.alive and s.process is not None]
            self._sampling = asyncio.ensure_future(self._sample(targets))
        await asyncio.shield(self._sampling)

    async def _sample(self, servers: Sequence[_Server]) -> None:
        jobs = [(s.process.pid if s.process else 0, s.ps_process) for s in servers]
        if self._gpu.known_absent and len(jobs) <= _INLINE_SAMPLES:
            # Without NVML a sample is psutil's read of a few /proc files (60 us a
            # server), and the worker-thread trip it would take costs 0.4-1 ms on a
            # busy machine: on the loop, then. A gateway's unload waits for one
            # (bench/bench_gateway.py's A/B swap).
            results = sample_processes(self._gpu, jobs)
        else:
            results = await asyncio.to_thread(sample_processes, self._gpu, jobs)
        now = time.monotonic()
        for server, (ps_process, sample) in zip(servers, results, strict=True):
            server.ps_process = ps_process
            server.sample = sample
            server.sampled_at = now

    def _status(self, server: _Server) -> ServerStatus:
        proc = server.process
        sample = server.sample if server.alive else None
        failed = server.state in (ServerState.FAILED, ServerState.CRASHED)
        return ServerStatus(
            running=server.alive,
            model_name=server.model.name,
            model_path=str(server.model.path),
            port=server.port,
            start_time=_utc(proc.started_at) if proc else None,
            process_id=proc.pid if proc and server.alive else None,
            vram_usage=sample.vram_mib if sample else None,
            state=server.state or ServerState.STARTING,
            host=server.host,
            url=url_of(server.host, server.port),
            ready_after_s=server.ready_after_s,
            rss_mib=sample.rss_mib if sample else None,
            cpu_percent=sample.cpu_percent if sample else None,
            exit_code=server.exit_code,
            exited_at=_utc(server.exited_at),
            error=server.error,
            config=server.config,
            argv=tuple(server.argv),
            binary_version=server.binary.version,
            vram_per_gpu_mib=sample.vram_per_gpu_mib if sample else None,
            load_progress=_load_progress(server),
            restarts=server.restarts,
            log_tail=tuple(server.output.tail(_LOG_TAIL_LINES)) if failed else (),
        )

    # -- plumbing -------------------------------------------------------------------------

    def _set_state(self, server: _Server, state: ServerState, *, announce: bool = True) -> None:
        """Move ``server`` to ``state`` (a transition :data:`TRANSITIONS` allows), log it,
        and publish its event (``announce``; else the caller does, with :meth:`_emit`)."""
        previous = server.state
        if state not in TRANSITIONS[previous]:
            raise RuntimeError(
                f"server on port {server.port}: {previous} -> {state} is not allowed"
            )
        server.state = state
        trouble = state in _TROUBLE
        why = f" ({server.error})" if server.error and trouble else ""
        logger.log(logging.WARNING if trouble else logging.DEBUG, "%s on port %d: %s -> %s%s",
                   server.model.name, server.port, previous, state, why)  # fmt: skip
        if announce:
            self._emit(server, previous=previous)

    def _emit(self, server: _Server, *, previous: ServerState | None) -> None:
        proc = server.process
        self._events.emit(
            "server", "state",
            port=server.port, model_name=server.model.name, model_path=str(server.model.path),
            state=str(server.state), previous=None if previous is None else str(previous),
            pid=proc.pid if proc else None, exit_code=server.exit_code, error=server.error,
            restarts=server.restarts, ready_after_s=server.ready_after_s,
        )  # fmt: skip

    def _record(
        self, pid: int, *, port: int | None = None, argv: Sequence[str] = (), reaped: bool = False
    ) -> None:
        """Note a child spawned (or ``reaped``) in ``children.json``.

        Where children die with this process anyway (the guardian, or the parent-death
        signal), the registry is a second line, and changes are written together
        :data:`_RECORD_AFTER_S` later. Written at once, a record took 0.5-1.2 ms of CPU
        in the first 20 ms of a load, which on two cores is time taken from the load
        (bench/bench_gateway.py's cold figure), and from the next load in a swap. A
        child reaped before its record was written is never written at all.
        """
        if not reaped:
            self._registry_adds[pid] = (port, tuple(argv))
        elif self._registry_adds.pop(pid, None) is None:
            self._registry_removes.add(pid)
        if not children_guarded():
            self._flush_registry()
        elif self._registry_flush is None:
            loop = asyncio.get_running_loop()
            self._registry_flush = loop.call_later(_RECORD_AFTER_S, self._flush_registry)

    def _flush_registry(self) -> None:
        """Write the changes :meth:`_record` holds (in order, on the registry's worker)."""
        if self._registry_flush is not None:
            self._registry_flush.cancel()
            self._registry_flush = None
        added = [(pid, port, argv) for pid, (port, argv) in self._registry_adds.items()]
        removed = set(self._registry_removes)
        self._registry_adds.clear()
        self._registry_removes.clear()
        if added or removed:
            self._registry_call(self._registry.apply, added, removed)

    def _registry_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._registry_worker, lambda: fn(*args, **kwargs))
        self._registry_ops.add(future)
        future.add_done_callback(self._registry_done)

    def _registry_done(self, future: asyncio.Future[Any]) -> None:
        self._registry_ops.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            # The record is a safety net; a state folder that cannot be written must not
            # stop servers from running, but the user must hear of it: a manager killed
            # now would leave children the next start cannot find.
            self.registry_error = f"{type(exc).__name__}: {exc}"
            logger.warning("cannot update the child registry %s: %s",
                           self._registry.path, self.registry_error)  # fmt: skip


def _load_progress(server: _Server) -> float | None:
    """A starting server's share of its load done, as its ready line read it."""
    if server.ready_line is None or server.state is not ServerState.STARTING:
        return None
    return server.ready_line.progress


def _utc(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
