"""Child processes that never outlive their manager and never fill a pipe.

:class:`ChildProcess` spawns one program (llama-server) so that:

- it runs in its **own process group** (its own session on POSIX,
  ``CREATE_NEW_PROCESS_GROUP`` on Windows), so stopping it reaches anything it started and
  a Ctrl-C in the manager's terminal does not hit it twice;
- it **dies with the manager**, even one killed by SIGKILL: on POSIX the guardian
  (:mod:`llamaswitch._guardian`, one helper process per manager) lists it and kills it
  when the manager's pipe to it closes. Where no guardian can run, Linux's parent-death
  signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) does it; that signal fires when the
  *thread* that forked the child exits (see FIELD_NOTES), so children are spawned from a
  thread that lives as long as the manager: the event-loop thread, which is where
  :meth:`ChildProcess.spawn` runs. ``LLAMASWITCH_CHILD_GUARD`` (``auto``, ``guardian``,
  ``setpriv``, ``prctl``, ``none``) picks one of these ways, for tests and
  troubleshooting;
- its **stdin is a pipe this process holds** open and never writes: the kernel closes it
  when the manager dies, however it dies, on every OS, and a child that watches it (a
  llama-server started as a router's child, see servers/child_protocol.py) exits then;
- its output is **drained continuously** by the event loop into an :class:`OutputLog`: a
  bounded ring of recent lines plus a rotating log file. stdout and stderr share one pipe,
  except for a child that prints its commands on stdout and its log on stderr (a
  llama-server started as a router's child, ``logs_apart``): its log pipe is read at most
  every :data:`LOG_READ_PAUSE_S`, so that its log lines do not wake this process one by
  one while the child loads or computes;
- it is **stopped** with SIGTERM to the group, a grace period, then SIGKILL, and always
  reaped (on Windows: the process tree is terminated through psutil).

:class:`ChildRegistry` records every child (pid, create time, port, argv, and the manager
that owns it) in ``state_dir/children.json``. On the next start a manager stops the
children of managers that are gone (a crash, a SIGKILL, a power cut on platforms without
a guardian), after checking by create time that a recorded pid still is the
same process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast

import attrs
import psutil

from llamaswitch._errors import SettingsError
from llamaswitch._guardian import Guardian
from llamaswitch._text import scrub
from llamaswitch._wire import from_wire, to_wire

__all__ = [
    "ChildProcess",
    "ChildRecord",
    "ChildRegistry",
    "OutputLog",
    "children_guarded",
    "guardian_pid",
    "signal_group",
    "spawn_exec",
    "stop_group",
]

logger = logging.getLogger(__name__)

_IS_WINDOWS = sys.platform == "win32"
_IS_LINUX = sys.platform.startswith("linux")
_PR_SET_PDEATHSIG = 1
# A line longer than this without a newline is cut, so one runaway line cannot hold
# unbounded memory.
_MAX_LINE_BYTES = 64 * 1024
# How long to wait, after the process exited, for the rest of its output: a grandchild
# that kept the pipe open must not hold a stop forever.
_DRAIN_TIMEOUT_S = 1.0
# psutil derives create_time from boot time and clock ticks; allow for rounding.
_CREATE_TIME_TOLERANCE_S = 0.05
# Output reaches the log file at most this long after it was printed.
_FLUSH_DELAY_S = 0.1
#: After each read of a ``logs_apart`` child's log pipe, how long it is left unread. On
#: two cores, each log line read as it came took the loop 20-40 us and the child its core
#: back: a load printed some twenty lines, a completion eight, and the cold figure of
#: bench/bench_gateway.py was 2 ms slower (the child's own clock put its load 1.2 ms
#: later under the gateway than under llama.cpp's router). The pipe holds 64 KiB, a
#: second of even a verbose log.
LOG_READ_PAUSE_S = 0.05
# At most so many listings of a child's threads when its policy changes (see set_batch).
_SET_BATCH_PASSES = 5
# The child's stdout and its stderr, as _ChildProtocol numbers them.
_STDOUT, _STDERR = 1, 2


# -- output --------------------------------------------------------------------------------


class OutputLog:
    """A child's output: the last ``max_lines`` lines in memory and a rotating log file.

    Bytes are written to the file as they arrive (so the file holds everything, partial
    lines included); lines are decoded as UTF-8 (invalid bytes replaced) for the ring.
    When the file grows past ``max_bytes`` it is renamed ``NAME.1`` (older ones shift to
    ``NAME.2``...; ``backups`` are kept) and a new one is started.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        max_lines: int = 1000,
        max_bytes: int = 5 * 1024 * 1024,
        backups: int = 2,
    ) -> None:
        self.path = path
        self._lines: deque[str] = deque(maxlen=max_lines)
        # The unfinished last line of each stream (two for a child whose log is apart).
        self._partials: dict[int, bytearray] = {}
        self._max_bytes = max_bytes
        self._backups = backups
        self._file: IO[bytes] | None = None
        self._size = 0
        self._closed = False
        self.file_error: str | None = None
        #: Called before the ring is read: reads what a paused log pipe holds (see
        #: LOG_READ_PAUSE_S), so that a reader sees all the child printed.
        self.catch_up: Callable[[], None] | None = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (later output reaches the ring only)."""
        return self._closed

    def _open(self) -> IO[bytes] | None:
        # Never reopened after close(): output that arrives late (a grandchild still
        # holding the pipe) would otherwise leak a file handle nobody closes.
        if (self._file is None and not self._closed and self.path is not None
                and self.file_error is None):  # fmt: skip
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("ab")
                self._size = self._file.tell()
            except OSError as exc:
                # A log file that cannot be written must not stop the server; the ring
                # buffer still has the output.
                self.file_error = f"{type(exc).__name__}: {exc}"
        return self._file

    def _rotate(self) -> None:
        assert self.path is not None  # noqa: S101 - only called with a file open
        if self._file is not None:
            self._file.close()
            self._file = None
        try:
            for index in range(self._backups, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                newer = (
                    self.path.with_name(f"{self.path.name}.{index - 1}") if index > 1 else self.path
                )
                if newer.exists():
                    os.replace(newer, older)
        except OSError as exc:
            self.file_error = f"{type(exc).__name__}: {exc}"
        self._size = 0

    def _write(self, data: bytes) -> None:
        file = self._open()
        if file is None:
            return
        try:
            # Buffered: the child's process flushes it shortly after (see _ChildProtocol);
            # a write syscall per line would cost the loop while a server loads.
            file.write(data)
        except OSError as exc:
            self.file_error = f"{type(exc).__name__}: {exc}"
            return
        self._size += len(data)
        if self._size >= self._max_bytes and self._backups > 0:
            self._rotate()

    def feed(self, data: bytes, stream: int = _STDOUT) -> None:
        """Take a chunk of output; ``stream`` tells two streams' unfinished lines apart
        (the file, like a terminal, has the bytes in the order they came)."""
        self._write(data)
        partial = self._partials.get(stream)
        if partial is None:  # a stream's first chunk
            partial = self._partials[stream] = bytearray()
        partial += data
        if b"\n" not in data and len(partial) < _MAX_LINE_BYTES:
            return
        *complete, rest = bytes(partial).split(b"\n")
        for raw in complete:
            self._lines.append(raw.rstrip(b"\r").decode("utf-8", errors="replace"))
        if len(rest) >= _MAX_LINE_BYTES:
            self._lines.append(rest.decode("utf-8", errors="replace"))
            rest = b""
        self._partials[stream] = bytearray(rest)

    def note(self, text: str) -> None:
        """Add a line of llamaswitch's own (``=== started ...``) to the file and the ring."""
        self.flush_partial()
        # Text is checked before it gets here; a note must still never fail a spawn.
        self._write(f"{text}\n".encode("utf-8", "backslashreplace"))
        self._lines.append(scrub(text))
        self.flush()

    def flush(self) -> None:
        """Write buffered output to the log file."""
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                self.file_error = f"{type(exc).__name__}: {exc}"

    def flush_partial(self) -> None:
        """Move an unfinished last line into the ring (at exit)."""
        for partial in self._partials.values():
            if partial:
                self._lines.append(bytes(partial).decode("utf-8", errors="replace"))
                partial.clear()

    def tail(self, lines: int) -> list[str]:
        """The last ``lines`` lines (all kept when ``lines`` exceeds them)."""
        if self.catch_up is not None:
            self.catch_up()
        if lines <= 0:
            return []
        kept = len(self._lines)
        start = max(0, kept - lines)
        return [self._lines[i] for i in range(start, kept)]

    def close(self) -> None:
        """Close the file for good (the ring stays readable and keeps taking output)."""
        self._closed = True
        self.flush_partial()
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


# -- the child -----------------------------------------------------------------------------


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, resolved before any fork (a child must not load libraries)."""
    if not _IS_LINUX:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()


def child_spawn(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """The argv to execute and the Popen options that tie a child to this process.

    POSIX: a new session (so a stop signals the whole group). Then, so that the child
    dies with this process: the guardian when it can run (the caller lists the child
    with :func:`_watch_child` once it is spawned); else, on Linux, the parent-death
    signal. Windows: a new process group (stopped through psutil), and the registry.

    The parent-death signal is set by util-linux's ``setpriv --pdeathsig`` when it is
    there: a ``preexec_fn`` forces a full ``fork()`` of this process, which
    bench/bench_switch.py measured at about 4-8 ms per start against about 1 ms for the
    ``vfork`` that subprocess uses otherwise. ``setpriv`` cannot check that the parent
    is still alive after setting the signal, as the ``preexec_fn`` does; a child orphaned
    in that window of a millisecond is stopped by the child registry on the next start.
    Call it on the thread that will fork the child: the signal follows that thread.
    """
    kwargs: dict[str, Any] = {}
    if _IS_WINDOWS:
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined,unused-ignore]
        return list(argv), kwargs
    kwargs["start_new_session"] = True
    guard = _guard_method()
    if guard == "setpriv":
        setpriv = _setpriv()
        assert setpriv is not None  # noqa: S101 - chosen because it is there
        return [setpriv, "--pdeathsig", "KILL", "--", *argv], kwargs
    if guard == "prctl":
        preexec = _pdeathsig_preexec(os.getpid())
        if preexec is not None:
            kwargs["preexec_fn"] = preexec
    return list(argv), kwargs


def _watch_child(pid: int) -> None:
    """List a child spawned with :func:`child_spawn` with the guardian, if it guards."""
    if _guard_method() == "guardian" and not _GUARDIAN.watch(pid):
        logger.warning("the guardian of child processes cannot run: child %d relies on "
                       "the child registry", pid)  # fmt: skip


def _release_child(pid: int) -> None:
    """Unlist a child that has been reaped (a no-op for one never listed)."""
    _GUARDIAN.release(pid)


def children_guarded() -> bool:
    """Whether children die with this process (a guardian, or the parent-death signal):
    where they do not, the child registry is all there is, and is written at once."""
    return _guard_method() != "none"


def guardian_pid() -> int | None:
    """The pid of this process's guardian while one runs (tests tell it from children)."""
    return _GUARDIAN.pid


async def spawn_exec(argv: Sequence[str], **options: Any) -> asyncio.subprocess.Process:
    """``asyncio.create_subprocess_exec`` of ``argv`` tied to this process as
    :func:`child_spawn` ties it; released from the guardian once it has been reaped."""
    command, kwargs = child_spawn(argv)
    process = await asyncio.create_subprocess_exec(*command, **{**kwargs, **options})
    _watch_child(process.pid)
    reaped = asyncio.ensure_future(process.wait())
    _REAPING.add(reaped)
    reaped.add_done_callback(functools.partial(_reaped, process.pid))
    return process


def _reaped(pid: int, future: asyncio.Future[int]) -> None:
    _REAPING.discard(future)
    _release_child(pid)


#: Waits for asyncio-spawned children, held here so that none is collected early.
_REAPING: set[asyncio.Future[int]] = set()
_GUARDIAN = Guardian()
_GUARD_METHODS = ("auto", "guardian", "setpriv", "prctl", "none")


def _guard_method() -> str:
    """How children die with this process: ``guardian``, ``setpriv``, ``prctl``, or
    ``none`` (Windows, or nothing usable: the child registry alone)."""
    if _IS_WINDOWS:
        return "none"
    choice = os.environ.get("LLAMASWITCH_CHILD_GUARD", "auto")
    if choice not in _GUARD_METHODS:
        raise SettingsError("LLAMASWITCH_CHILD_GUARD", choice, "environment",
                            "one of " + ", ".join(_GUARD_METHODS))  # fmt: skip
    if choice == "none":
        return "none"
    if choice in ("auto", "guardian") and _GUARDIAN.start():
        return "guardian"
    if choice in ("auto", "setpriv") and _setpriv() is not None:
        return "setpriv"
    return "prctl" if _PRCTL is not None else "none"


def prepare_spawn() -> None:
    """Do the one-time work :func:`child_spawn` needs (it blocks: call it off the loop):
    start the guardian, or else probe for setpriv (cached)."""
    _guard_method()


@functools.cache
def _setpriv() -> str | None:
    """util-linux's setpriv, if it is installed and knows ``--pdeathsig`` (2.33+)."""
    if not sys.platform.startswith("linux"):
        return None
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        probe = subprocess.run(
            [path, "--help"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if "--pdeathsig" in probe.stdout + probe.stderr else None


def _pdeathsig_preexec(parent_pid: int) -> Callable[[], None] | None:
    """The function run in the child between fork and exec on Linux."""
    prctl = _PRCTL
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal will ever
        # come, and the child would run orphaned.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


@contextlib.contextmanager
def _batch_scheduled(batch: bool) -> Iterator[None]:
    """Linux: the body forks its child under SCHED_BATCH. A child takes the policy of the
    thread that forks it, so this thread takes that policy for the spawn (two system
    calls) and then goes back. Only from the ordinary policy: a thread that runs under
    another (set by whoever started this process) passes that on, as it is."""
    switched = False
    if batch and hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            if os.sched_getscheduler(0) == os.SCHED_OTHER:
                os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
                switched = True
    try:
        yield
    finally:
        if switched:
            with contextlib.suppress(OSError):
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


class _ChildProtocol(asyncio.SubprocessProtocol):
    """Feeds output into the log as it arrives; reports exit and end of output."""

    def __init__(
        self,
        output: OutputLog,
        on_output: Callable[[bytes], None] | None,
        loop: asyncio.AbstractEventLoop,
        *,
        pipes: int = 1,
    ) -> None:
        self.output = output
        self.on_output = on_output
        self._loop = loop
        self._flush_handle: asyncio.TimerHandle | None = None
        self._open_pipes = pipes
        # The readers that leave their pipe unread for a while (see LOG_READ_PAUSE_S).
        self.pausing: list[_PipeReader] = []
        self.exited: asyncio.Future[None] = loop.create_future()
        self.drained: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data if isinstance(data, bytes) else data.encode()
        self.output.feed(chunk, fd)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(_FLUSH_DELAY_S, self._flush)
        # stdout only: a child whose log is apart says there what on_output looks for.
        if self.on_output is not None and fd == _STDOUT:
            self.on_output(chunk)

    def _flush(self) -> None:
        self._flush_handle = None
        self.output.flush()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 0:
            return  # the child's stdin, ours to hold (see ChildProcess.spawn)
        self._open_pipes -= 1
        if self._open_pipes <= 0 and not self.drained.done():
            self.drained.set_result(None)

    def process_exited(self) -> None:
        # The rest of the output, and the end of the pipes, are read at once: a stop
        # waits for them (a switch would otherwise wait out a pause).
        for reader in self.pausing:
            reader.stop_pausing()
        if not self.exited.done():
            self.exited.set_result(None)


class _PipeReader(asyncio.Protocol):
    """A child's output pipe (stdout, or its log on stderr), handed to its
    :class:`_ChildProtocol`. ``pause_s``: after each read, how long the pipe is left
    unread (see :data:`LOG_READ_PAUSE_S`)."""

    def __init__(
        self, child: _ChildProtocol, fd: int = _STDOUT, *, pause_s: float = 0.0,
        pipe: IO[bytes] | None = None,
    ) -> None:  # fmt: skip
        self._child = child
        self._fd = fd
        self._pause_s = pause_s
        self._pipe = pipe
        self._transport: asyncio.ReadTransport | None = None
        self._resume: asyncio.TimerHandle | None = None
        if pause_s > 0:
            child.pausing.append(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A read pipe's transport (uvloop's is no subclass of asyncio's classes).
        self._transport = cast(asyncio.ReadTransport, transport)

    def data_received(self, data: bytes) -> None:
        self._child.pipe_data_received(self._fd, data)
        transport = self._transport
        if self._pause_s > 0 and transport is not None and not transport.is_closing():
            transport.pause_reading()
            self._resume = asyncio.get_running_loop().call_later(self._pause_s, self._read_on)

    def _read_on(self) -> None:
        self._resume = None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def stop_pausing(self) -> None:
        """Read on at once, and from now on as the output comes."""
        self._pause_s = 0.0
        if self._resume is not None:
            self._resume.cancel()
            self._read_on()

    def read_now(self) -> None:
        """Read what the pipe holds now, paused or not (``pipe``, non-blocking, given)."""
        transport, pipe = self._transport, self._pipe
        if transport is None or transport.is_closing() or pipe is None:
            return
        while True:
            try:
                data = os.read(pipe.fileno(), 64 * 1024)
            except (BlockingIOError, InterruptedError, OSError, ValueError):
                return  # empty for now, or closed
            if not data:
                return  # the end: the transport reads it too, and reports it
            self._child.pipe_data_received(self._fd, data)

    def eof_received(self) -> bool | None:
        return None  # the pipe closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        self._child.pipe_connection_lost(self._fd, exc)


class _PidfdChild:
    """A child started by ``subprocess.Popen`` on the loop's thread, reaped when its
    pidfd becomes readable: what asyncio's subprocess transport does on Linux, less its
    cost. There, Python before 3.12 watches each child with a thread of its own, and
    bench/bench_gateway.py measured the spawn at 1-3 ms under load against 0.5 ms here,
    on the path of the request that waits for a model to load. Offers the three
    transport methods :class:`ChildProcess` uses."""

    def __init__(self, popen: subprocess.Popen[bytes] | _Spawned, pidfd: int,
                 protocol: _ChildProtocol, loop: asyncio.AbstractEventLoop) -> None:  # fmt: skip
        self._popen = popen  # kept: a collected Popen object would reap the child itself
        self._pidfd: int | None = pidfd
        self._protocol = protocol
        self._loop = loop
        self._pipes: list[asyncio.ReadTransport] = []
        loop.add_reader(pidfd, self._reap)

    @classmethod
    async def start(
        cls, command: Sequence[str], protocol: _ChildProtocol, *, env: Mapping[str, str] | None,
        cwd: Path | None, kwargs: Mapping[str, Any], batch: bool = False,
        logs_apart: bool = False,
    ) -> _PidfdChild:  # fmt: skip
        loop = asyncio.get_running_loop()
        # On the loop's thread, blocking: vfork and exec take a fraction of a millisecond,
        # and the parent-death signal follows the thread that forks (see child_spawn).
        popen: subprocess.Popen[bytes] | _Spawned
        with _batch_scheduled(batch):
            inherited = _inheritable_fds() if cwd is None else None
            if inherited is not None and kwargs == {"start_new_session": True}:
                popen = _Spawned.start(command, env, close=inherited, logs_apart=logs_apart)
            else:
                popen = subprocess.Popen(  # noqa: ASYNC220
                    list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE if logs_apart else subprocess.STDOUT,
                    env=dict(env) if env is not None else None, cwd=cwd, **kwargs,
                )  # fmt: skip
        _watch_child(popen.pid)
        assert popen.stdout is not None  # noqa: S101 - PIPE
        assert popen.stdin is not None  # noqa: S101 - PIPE
        try:
            child = cls(popen, os.pidfd_open(popen.pid), protocol, loop)
            pipe, _ = await loop.connect_read_pipe(lambda: _PipeReader(protocol), popen.stdout)
            child._pipes.append(pipe)
            if popen.stderr is not None:
                stderr = popen.stderr
                os.set_blocking(stderr.fileno(), False)  # read_now must never wait
                log = _PipeReader(protocol, _STDERR, pause_s=LOG_READ_PAUSE_S, pipe=stderr)
                pipe, _ = await loop.connect_read_pipe(lambda: log, stderr)
                child._pipes.append(pipe)
                protocol.output.catch_up = log.read_now
        except BaseException:
            # Cancelled, or no pidfd after all: the child must not outlive the call.
            signal_group(popen.pid, signal.SIGKILL)
            os.waitpid(popen.pid, 0)  # noqa: ASYNC222 - SIGKILLed: reaped at once
            _release_child(popen.pid)
            for stream in (popen.stdout, popen.stderr, popen.stdin):
                if stream is not None:
                    stream.close()
            raise
        return child

    def get_pid(self) -> int:
        return self._popen.pid

    def get_returncode(self) -> int | None:
        return self._popen.returncode

    def _reap(self) -> None:
        if self._pidfd is None:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None
        try:
            _, status = os.waitpid(self._popen.pid, 0)
            self._popen.returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped elsewhere (a SIGCHLD handler of the host app)
            self._popen.returncode = 255
        self._close_stdin()
        self._protocol.process_exited()

    def tell(self, data: bytes) -> None:
        """Write ``data`` to the child's stdin."""
        if self._popen.stdin is not None and not self._popen.stdin.closed:
            with contextlib.suppress(OSError, ValueError):  # gone: nobody to tell
                self._popen.stdin.write(data)
                self._popen.stdin.flush()

    def _close_stdin(self) -> None:
        if self._popen.stdin is not None:
            with contextlib.suppress(OSError):
                self._popen.stdin.close()

    def close(self) -> None:
        """Release the pipe; like asyncio's transport, kill a child still running."""
        if self._popen.returncode is None:
            signal_group(self._popen.pid, signal.SIGKILL)
        self._close_stdin()
        for pipe in self._pipes:
            pipe.close()


class _Spawned:
    """A child started by ``os.posix_spawn``, with what :class:`_PidfdChild` uses of a
    ``Popen``: its pid, exit code, stdin, stdout and stderr (None: it goes with stdout).

    ``subprocess.Popen`` took 0.53 ms to start llama-server here, ``posix_spawn`` 0.26
    ms (on the path of the request that waits for the load: bench/bench_gateway.py's
    cold figure). It does what Popen would for :func:`child_spawn`'s options: a session
    of its own, SIGPIPE and SIGXFSZ back to their defaults (Python ignores them), and
    only the three pipes inherited (the inheritable descriptors that Popen's
    ``close_fds`` would close are closed in the child: :func:`_inheritable_fds`)."""

    def __init__(
        self, pid: int, stdin: IO[bytes], stdout: IO[bytes], stderr: IO[bytes] | None = None
    ) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.stderr: IO[bytes] | None = stderr

    @classmethod
    def start(
        cls, command: Sequence[str], env: Mapping[str, str] | None, *,
        close: Sequence[int] = (), logs_apart: bool = False,
    ) -> _Spawned:  # fmt: skip
        """Spawn ``command`` (its first item a path) with pipes to its stdin and stdout,
        and to its stderr if ``logs_apart`` (else stderr goes with stdout); ``close``:
        descriptors the child must not keep."""
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe() if logs_apart else (None, stdout_write)
        actions: list[tuple[int, ...]] = [(os.POSIX_SPAWN_CLOSE, fd) for fd in close]
        actions += [(os.POSIX_SPAWN_DUP2, stdin_read, 0), (os.POSIX_SPAWN_DUP2, stdout_write, 1),
                    (os.POSIX_SPAWN_DUP2, stderr_write, 2)]  # fmt: skip
        try:
            pid = os.posix_spawn(
                command[0],
                list(command),
                os.environ if env is None else env,
                file_actions=actions,
                setsid=True,
                setsigdef=_DEFAULT_SIGNALS,
            )
        except BaseException:
            for fd in (stdin_write, stdout_read, stderr_read):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in {stdin_read, stdout_write, stderr_write}:
                os.close(fd)
        return cls(pid, _pipe_file(stdin_write, "wb"), _pipe_file(stdout_read, "rb"),
                   None if stderr_read is None else _pipe_file(stderr_read, "rb"))  # fmt: skip


def _pipe_file(fd: int, mode: str) -> IO[bytes]:
    """A file object over a pipe's end (unbuffered for reading: the loop reads it)."""
    return open(fd, mode, buffering=0 if mode == "rb" else -1)


#: The signals Python ignores that a child must get back as they were (as Popen does).
_DEFAULT_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)


def _inheritable_fds() -> list[int] | None:
    """The descriptors beyond 0-2 a child would inherit (Linux; None where they cannot
    be listed: then Popen spawns). Python opens its own non-inheritable, but the shell
    or an embedding program may have passed some on: ``posix_spawn`` closes them in the
    child, as Popen's ``close_fds`` does."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    found = []
    for name in names:
        fd = int(name)
        if fd > 2:  # past stdin, stdout and stderr
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:
                continue  # the listing's own descriptor, closed by now
    return found


@functools.cache
def _pidfd_works() -> bool:
    """Whether this kernel and Python offer ``pidfd_open`` (Linux 5.3+, Python 3.9+)."""
    if not _IS_LINUX or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


class ChildProcess:
    """A running (or finished) child process; build it with :meth:`spawn`."""

    def __init__(
        self,
        transport: asyncio.SubprocessTransport | _PidfdChild,
        protocol: _ChildProtocol,
        argv: Sequence[str],
        output: OutputLog,
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self.argv = list(argv)
        self.output = output
        self.pid: int = transport.get_pid()
        #: Wall-clock time of the spawn (seconds since the epoch).
        self.started_at = time.time()
        #: ``time.monotonic()`` at the spawn.
        self.started_monotonic = time.monotonic()
        self._closed = False
        # Reaped (exited is set after the wait): the guardian must forget the pid, which
        # may now be given to another process.
        protocol.exited.add_done_callback(lambda _: _release_child(self.pid))

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        output: OutputLog,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        on_output: Callable[[bytes], None] | None = None,
        batch: bool = False,
        logs_apart: bool = False,
    ) -> ChildProcess:
        """Start ``argv`` (a list, never a shell) in its own process group.

        Must run on the event-loop thread, which must live as long as the child (where
        no guardian runs, Linux's parent-death signal is tied to the forking thread).
        ``on_output`` is called on the loop with each chunk of output (the supervisor
        looks for readiness hints). ``batch``: under Linux's SCHED_BATCH policy (see
        ``ServerConfig.cpu_scheduling``; elsewhere it has no effect). ``logs_apart``: the
        child prints what ``on_output`` looks for on stdout and its log on stderr; on
        Linux the log then has a pipe of its own, read at most every
        :data:`LOG_READ_PAUSE_S` and never given to ``on_output`` (elsewhere both share
        one pipe, as without it).
        """
        loop = asyncio.get_running_loop()
        command, kwargs = child_spawn(argv)
        pidfd = _pidfd_works()  # else asyncio's transport: one pipe for both streams
        protocol = _ChildProtocol(output, on_output, loop, pipes=2 if pidfd and logs_apart else 1)
        if pidfd:
            child = await _PidfdChild.start(
                command, protocol, env=env, cwd=cwd, kwargs=kwargs, batch=batch,
                logs_apart=logs_apart,
            )  # fmt: skip
            return cls(child, protocol, argv, output)
        with _batch_scheduled(batch):
            transport, _ = await loop.subprocess_exec(
                lambda: protocol,
                *command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                **kwargs,
            )
        _watch_child(transport.get_pid())
        return cls(transport, protocol, argv, output)

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal on POSIX), None while running."""
        return self._transport.get_returncode()

    @property
    def running(self) -> bool:
        """Whether the process has not exited yet."""
        return self.returncode is None

    async def wait(self) -> int:
        """Wait for the exit and the end of its output; returns the exit code."""
        await asyncio.shield(self._protocol.exited)
        if not self._protocol.drained.done():
            await asyncio.wait({self._protocol.drained}, timeout=_DRAIN_TIMEOUT_S)
        self._close()
        code = self.returncode
        assert code is not None  # noqa: S101 - exited
        return code

    async def _exited_within(self, seconds: float) -> bool:
        if self._protocol.exited.done():
            return True
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                await asyncio.shield(self._protocol.exited)
        except TimeoutError:
            return False
        return True

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self.output.flush_partial()
            self.output.flush()
            # Closing the transport releases the pipes; it would kill a running process,
            # but this is only reached after the exit.
            self._transport.close()

    def tell(self, data: bytes) -> None:
        """Write a few bytes to the child's stdin (a command it reads there).

        Never blocks: the pipe's buffer (4 KiB at the least) takes them whole, as nothing
        else is written to it. A child that has gone is not told.
        """
        if self.returncode is not None:
            return
        if isinstance(self._transport, _PidfdChild):
            self._transport.tell(data)
            return
        pipe = self._transport.get_pipe_transport(0)
        if isinstance(pipe, asyncio.WriteTransport) and not pipe.is_closing():
            pipe.write(data)

    def set_batch(self, on: bool) -> None:
        """Move every thread of the child to Linux's SCHED_BATCH (``on``) or back to the
        ordinary policy; threads it starts later take their creator's. Elsewhere, and for
        a child that has exited, nothing."""
        if not hasattr(os, "SCHED_BATCH") or self.returncode is not None:
            return  # reaped: the pid may belong to someone else by now
        policy = os.SCHED_BATCH if on else os.SCHED_OTHER
        done: set[str] = set()
        # Listed again until no new thread shows: one being started while the list was
        # read takes its creator's old policy and would keep it (seen once in CI, with
        # the legacy build starting its compute threads as a second stream began).
        for _ in range(_SET_BATCH_PASSES):
            try:
                threads = set(os.listdir(f"/proc/{self.pid}/task")) - done
            except OSError:
                return
            if not threads:
                return
            for thread in threads:
                with contextlib.suppress(OSError, ValueError):  # one that just ended
                    os.sched_setscheduler(int(thread), policy, os.sched_param(0))
            done |= threads

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child's process group (to the child alone if that fails)."""
        if self.returncode is None:  # reaped: the pid may belong to someone else by now
            signal_group(self.pid, sig)

    async def kill(self) -> None:
        """Kill the child (and its group) at once; :meth:`wait` reaps it.

        On Windows the process tree is terminated through psutil, which waits for the
        processes to go: that runs in a worker thread, off the event loop.
        """
        if not _IS_WINDOWS:
            self.send_signal(signal.SIGKILL)
        elif self.returncode is None:
            await asyncio.to_thread(_terminate_tree, self.pid, 0.0)

    async def stop(self, grace_s: float, *, repeat_after_s: float | None = None) -> int:
        """SIGTERM to the group, up to ``grace_s`` to exit, then SIGKILL; always reaped.

        With ``repeat_after_s``, a second SIGTERM follows after that long if the process
        still runs: llama-server exits at once on a second interrupt, and needs it when
        the first one arrives in the moment between its signal handler being installed
        and its main loop starting (the loop then resets the stop flag and runs on).
        On Windows the process tree is terminated through psutil. Returns the exit code.
        """
        if self.returncode is None:
            await stop_group(
                self.pid, lambda: self.returncode is not None, self._exited_within, grace_s,
                repeat_after_s=repeat_after_s,
            )  # fmt: skip
        return await self.wait()


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group ``pid`` leads (to ``pid`` alone if that fails).

    Call it only for a child not yet reaped: a reaped pid may belong to someone else.
    """
    if _IS_WINDOWS:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)
        return
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return  # already gone
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


async def stop_group(
    pid: int,
    exited: Callable[[], bool],
    exited_within: Callable[[float], Awaitable[bool]],
    grace_s: float,
    *,
    repeat_after_s: float | None = None,
) -> None:
    """Stop a child we started: SIGTERM to its group, up to ``grace_s``, then SIGKILL.

    With ``repeat_after_s`` a second SIGTERM follows if it still runs then (llama-server
    exits at once on a second interrupt). On Windows the process tree is terminated
    through psutil, in a worker thread. ``exited`` and ``exited_within`` ask the caller's
    process object; the caller reaps it. The one stop both llama-server and llama-bench
    get.
    """
    if exited():
        return
    if _IS_WINDOWS:
        await asyncio.to_thread(_terminate_tree, pid, grace_s)
        return
    deadline = time.monotonic() + grace_s
    signal_group(pid, signal.SIGTERM)
    repeat = repeat_after_s is not None and repeat_after_s < grace_s
    if repeat and not await exited_within(repeat_after_s or 0.0):
        signal_group(pid, signal.SIGTERM)
    if not await exited_within(deadline - time.monotonic()) and not exited():
        signal_group(pid, signal.SIGKILL)


def _terminate_tree(pid: int, grace_s: float) -> None:
    """Terminate a process and its descendants (Windows has no process groups to signal)."""
    try:
        parent = psutil.Process(pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5.0)


# -- the registry of children --------------------------------------------------------------


@attrs.frozen
class ChildRecord:
    """One child as recorded in ``children.json``."""

    pid: int
    create_time: float
    port: int | None
    argv: tuple[str, ...]
    #: The manager that started it (0: a record older than this field).
    manager_pid: int = 0
    manager_create_time: float = 0.0


def _same_process(pid: int, create_time: float) -> psutil.Process | None:
    """The process ``pid`` if it still is the one created at ``create_time``."""
    if pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > _CREATE_TIME_TOLERANCE_S:
            return None  # the pid was reused by another process
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return proc


class ChildRegistry:
    """``children.json``: which processes which manager started.

    Every method blocks (file I/O, psutil): call them off the event loop. Writes are
    atomic (a temporary file renamed over the old one) and, on POSIX, serialised across
    processes with an ``flock`` on ``children.json.lock``, since several managers (a
    script and the REST server) may share one state folder.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        me = psutil.Process()
        self.manager_pid = me.pid
        self.manager_create_time = me.create_time()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if _IS_WINDOWS:
                yield
                return
            import fcntl

            with open(self.path.with_name(self.path.name + ".lock"), "a+b") as lock_file:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def _read(self) -> list[ChildRecord]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            return []  # a damaged file is replaced on the next write
        entries = data.get("children", []) if isinstance(data, dict) else []
        records = []
        for entry in entries if isinstance(entries, list) else []:
            # A damaged entry is dropped: the file is rewritten on the next change.
            with contextlib.suppress(Exception):
                records.append(from_wire(entry, ChildRecord))
        return records

    def _write(self, records: Sequence[ChildRecord]) -> None:
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(
            json.dumps({"format": 1, "children": to_wire(list(records))}, indent=1),
            encoding="utf-8",
        )
        os.replace(tmp, self.path)

    def records(self) -> list[ChildRecord]:
        """Every recorded child."""
        with self._locked():
            return self._read()

    def verify(self) -> str | None:
        """Why the record cannot be kept (a folder that cannot be written...), or None.

        It rewrites the file as it is, under the lock: the write a manager makes for
        every child it starts. ``doctor`` asks, so that a registry that would fail is
        known before a manager dies and leaves children nobody can find.
        """
        try:
            with self._locked():
                self._write(self._read())
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def apply(
        self, added: Sequence[tuple[int, int | None, Sequence[str]]], removed: Collection[int]
    ) -> None:
        """Record ``added`` children (pid, port, argv; one that already exited is left
        out) and forget the ``removed`` ones, in one write."""
        new = []
        for pid, port, argv in added:
            with contextlib.suppress(psutil.Error):
                new.append(ChildRecord(pid, psutil.Process(pid).create_time(), port,
                                       tuple(argv), self.manager_pid,
                                       self.manager_create_time))  # fmt: skip
        with self._locked():
            records = self._read()
            gone = {*removed, *(r.pid for r in new)}
            kept = [r for r in records if r.pid not in gone]
            if new or len(kept) != len(records):
                self._write([*kept, *new])

    def _is_mine(self, record: ChildRecord) -> bool:
        return (record.manager_pid == self.manager_pid
                and abs(record.manager_create_time - self.manager_create_time)
                <= _CREATE_TIME_TOLERANCE_S)  # fmt: skip

    def stop_survivors(self, grace_s: float) -> list[ChildRecord]:
        """Stop the recorded children of managers that are gone; returns those stopped.

        A record is dropped without touching anything when its pid is gone or now belongs
        to another process (create time differs). Children of a manager that is still
        running (another llamaswitch sharing this state folder) are left alone.
        """
        with self._locked():
            records = self._read()
            survivors: list[tuple[ChildRecord, psutil.Process]] = []
            kept: list[ChildRecord] = []
            for record in records:
                if self._is_mine(record):
                    kept.append(record)
                    continue
                if _same_process(record.manager_pid, record.manager_create_time) is not None:
                    kept.append(record)  # its manager still runs and looks after it
                    continue
                proc = _same_process(record.pid, record.create_time)
                if proc is not None:
                    survivors.append((record, proc))
            _stop_foreign(([proc for _, proc in survivors]), grace_s)
            if len(kept) != len(records):
                self._write(kept)
        return [record for record, _ in survivors]


def _stop_foreign(procs: Sequence[psutil.Process], grace_s: float) -> None:
    """Stop processes that are not our children (no waitpid): group SIGTERM, then SIGKILL."""
    if not procs:
        return
    if _IS_WINDOWS:
        for proc in procs:
            _terminate_tree(proc.pid, grace_s)
        return
    for proc in procs:
        _signal_foreign(proc, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        _signal_foreign(proc, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5.0)


def _signal_foreign(proc: psutil.Process, sig: int) -> None:
    try:
        # Our children lead their own group (start_new_session); signal the group so that
        # anything they started goes too, but never a group they merely belong to.
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except (OSError, psutil.Error) as exc:
        # Gone already, or not ours to signal: nothing more can be done, but say so.
        logger.debug("could not signal pid %d with %d: %s", proc.pid, sig, exc)
