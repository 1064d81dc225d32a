"""Benchmarks as managed, queryable, persistent tasks.

:class:`BenchRunner` runs one ``llama-bench`` process per task, first in first out, at
most ``Settings.bench_concurrency`` at once (one by default: concurrent benchmarks skew
each other). Task states::

    queued ──> running ──> completed | failed | cancelled | interrupted
       └──────────────────> cancelled | interrupted

How a task is run: stdout carries the format the user asked for (``output``), kept
verbatim as the task's ``output``; stderr always carries ``--progress -oe jsonl``,
whatever the request's ``output_err`` and ``progress`` say. Each stderr line is either a
progress line (the task's progress and a ``benchmark/progress`` event) or one JSON object
per finished test: that result is stored in SQLite at once (a crash loses nothing
measured) and published as a ``benchmark/result`` event. Other stderr lines (llama.cpp's
messages, ``verbose`` logs) go to a bounded tail kept with the task. The user's
``output_err`` is recorded in the request but not passed: llama-bench has only one
stderr, and structured results need it.

A task records the binary's version and commit, a description of the host (CPU, GPUs)
and the model servers running when it started, since they compete for the same
hardware. Cancel sends SIGTERM to the task's process group (SIGKILL after a grace
period); the task keeps the results of the tests that finished. A non-zero exit makes
the task ``failed`` with the exit code and the stderr tail; a per-task timeout kills it
the same way. Closing the runner interrupts running and queued tasks; opening it marks
tasks a previous process left unfinished ``interrupted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import signal
import subprocess
import sys
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from llamaswitch._errors import (
    BenchParseError,
    ConfigValidationError,
    ServiceClosedError,
    TaskNotFoundError,
    TaskStateError,
    TaskTimeoutError,
)
from llamaswitch._events import EventBus
from llamaswitch._process import signal_group, spawn_exec, stop_group
from llamaswitch._text import text_problem
from llamaswitch._time import format_time, parse_time
from llamaswitch.bench.comparison import Comparison, ComparisonCell, ComparisonRow, compare
from llamaswitch.bench.config import BenchConfig
from llamaswitch.bench.host import describe_host
from llamaswitch.bench.parser import (
    BENCH_OUTPUT_FORMATS,
    BenchResult,
    parse_bench_output,
    parse_jsonl_line,
    parse_progress_line,
)
from llamaswitch.bench.store import StoredTask, TaskStore
from llamaswitch.bench.task import FINAL_STATES, TASK_STATES, BenchProgress, BenchTask, TaskState

if TYPE_CHECKING:
    from llamaswitch._binaries import BinaryInfo
    from llamaswitch._capabilities import BinaryKind
    from llamaswitch._catalog import ModelInfo
    from llamaswitch._settings import Settings

__all__ = [
    "FINAL_STATES",
    "TASK_STATES",
    "BenchProgress",
    "BenchRunner",
    "BenchTask",
    "Comparison",
    "ComparisonCell",
    "ComparisonRow",
    "TaskState",
    "describe_host",
]

logger = logging.getLogger(__name__)


_IS_WINDOWS = sys.platform == "win32"
#: stderr lines (other than results) kept with a task.
_STDERR_TAIL_LINES: Final = 40
#: Seconds between SIGTERM and SIGKILL when stopping llama-bench.
_STOP_GRACE_S: Final = 2.0
# A JSON result line can be long (one sample per repetition): allow up to 16 MiB.
_LINE_LIMIT: Final = 16 * 1024 * 1024
# With --verbose, llama.cpp log text without a final newline can precede a result.
_RESULT_START = re.compile(r'\{"build_commit"')


# -- the runner -----------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


@attrs.define(eq=False)
class _Live:
    """A queued or running task, as the runner follows it (mutable, loop-thread only)."""

    id: str
    model: ModelInfo
    config: BenchConfig
    argv: list[str]
    binary: BinaryInfo
    timeout_s: float
    created_at: datetime
    state: TaskState = "queued"
    started_at: datetime | None = None
    history: list[tuple[str, datetime]] = attrs.Factory(list)
    names: list[str] = attrs.Factory(list)
    results: list[BenchResult] = attrs.Factory(list)
    total: int | None = None
    current: str | None = None
    step: str | None = None
    stderr_tail: deque[str] = attrs.Factory(lambda: deque(maxlen=_STDERR_TAIL_LINES))
    running_servers: list[Mapping[str, Any]] = attrs.Factory(list)
    process: asyncio.subprocess.Process | None = None
    #: Why llamaswitch stopped the process: cancel, close or timeout (the first one wins).
    stop_reason: Literal["cancel", "close", "timeout"] | None = None
    #: Set when _finish starts: a task gets one final state and one final event.
    finishing: bool = False
    done: asyncio.Event = attrs.Factory(asyncio.Event)
    #: The tune this task is a trial of, if any.
    tune_id: str | None = None


class BenchRunner:
    """Runs benchmark tasks, keeps their history, answers status, list and compare.

    ``binary`` is an async function returning the identified llama-bench;
    ``running_servers`` returns the model servers running now (recorded per task).
    Call :meth:`open` before use and :meth:`close` at the end (from the same loop).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        binary: Callable[[BinaryKind], Awaitable[BinaryInfo]],
        events: EventBus | None = None,
        running_servers: Callable[[], Sequence[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.settings = settings
        self._binary = binary
        self._events = events if events is not None else EventBus()
        self._running_servers = running_servers
        self._store = TaskStore(settings.database_path)
        self._live: dict[str, _Live] = {}
        self._queue: deque[str] = deque()
        self._running: dict[str, asyncio.Task[None]] = {}
        # Submits writing their task's row: close() waits for them before it closes the
        # database, so that a task inserted after close() began can still be finished.
        self._submitting: set[asyncio.Future[None]] = set()
        self._host: dict[str, Any] = {}
        self._open = False

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> list[str]:
        """Open the database; tasks a previous process left unfinished become
        ``interrupted``. Returns their ids."""
        if self._open:
            return []
        interrupted = await self._store.open()
        try:
            self._host = await asyncio.to_thread(describe_host)
        except Exception as exc:  # a host description is a nicety
            self._host = {"error": f"{type(exc).__name__}: {exc}"}
        self._open = True
        return interrupted

    async def close(self) -> None:
        """Interrupt queued and running tasks (their processes are stopped), close the
        database."""
        if not self._open:
            return
        self._open = False
        while self._queue:
            live = self._live[self._queue.popleft()]
            await self._finish(
                live, "interrupted", error="llamaswitch was closed before the task started"
            )
        for live in list(self._live.values()):
            if live.state == "running":
                live.stop_reason = "close"
                await self._stop_process(live)
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
        if self._submitting:
            await asyncio.gather(*self._submitting)
        await self._store.close()

    def _check_open(self) -> None:
        if not self._open:
            raise ServiceClosedError("the benchmark runner is not open")

    # -- submit and schedule --------------------------------------------------------------

    async def submit(
        self,
        info: ModelInfo,
        config: BenchConfig | None = None,
        *,
        timeout_s: float | None = None,
        tune_id: str | None = None,
    ) -> str:
        """Queue a benchmark of ``info``; returns the task id at once.

        Everything is checked before the task exists: an option the binary cannot
        honour raises :class:`~llamaswitch.UnsupportedOptionError` naming its version.
        ``tune_id`` links the task to the tune whose trial it measures.
        """
        self._check_open()
        config = config if config is not None else BenchConfig()
        if config.n_gpu_layers is None and self.settings.gpu_layers is not None:
            # GPU_LAYERS is documented as the default for benchmarks too.
            config = config.evolve(n_gpu_layers=self.settings.gpu_layers)
        timeout = self.settings.bench_timeout_s if timeout_s is None else timeout_s
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not (math.isfinite(timeout) and timeout > 0)
        ):
            raise ConfigValidationError([("timeout_s", f"must be seconds > 0, got {timeout!r}")])
        binary = await self._binary("llama-bench")
        argv = [
            str(binary.path),
            *config.to_argv(binary.capabilities, info.path, structured_stderr=True),
        ]
        self._check_open()
        created = _now()
        live = _Live(
            id=uuid.uuid4().hex[:16],
            model=info,
            config=config,
            argv=argv,
            binary=binary,
            timeout_s=float(timeout),
            created_at=created,
            history=[("queued", created)],
            names=config.expected_test_names(),
            total=config.expected_tests(),
            tune_id=tune_id,
        )
        submitting = asyncio.get_running_loop().create_future()
        self._submitting.add(submitting)
        try:
            await self._insert(live, info, binary)
            self._live[live.id] = live
            if not self._open:
                # close() began while the row was written and emptied the queue without
                # this task: it will never start, so it must not stay "queued".
                await self._finish(
                    live, "interrupted", error="llamaswitch was closed before the task started"
                )
                return live.id
        finally:
            self._submitting.discard(submitting)
            submitting.set_result(None)
        self._queue.append(live.id)
        self._emit_state(live)
        self._schedule()
        return live.id

    async def _insert(self, live: _Live, info: ModelInfo, binary: BinaryInfo) -> None:
        config = live.config
        await self._store.insert_task(
            id=live.id,
            source="run",
            model=info.name,
            model_relative=info.relative_path,
            model_path=str(info.path),
            config=config.to_dict(),
            argv=live.argv,
            output_format=config.output_format,
            state="queued",
            created_at=format_time(live.created_at),
            state_history=[["queued", format_time(live.created_at)]],
            expected_tests=live.total,
            timeout_s=live.timeout_s,
            binary_path=str(binary.path),
            binary_version=binary.version,
            binary_commit=binary.commit,
            host=self._host,
            tune_id=live.tune_id,
        )

    def _schedule(self) -> None:
        """Start queued tasks while fewer than ``bench_concurrency`` run (FIFO)."""
        limit = max(1, self.settings.bench_concurrency)
        while self._open and self._queue and len(self._running) < limit:
            live = self._live[self._queue.popleft()]
            # The state changes here, synchronously: a status asked right after submit
            # sees the first task running and the others' queue positions.
            live.state = "running"
            live.started_at = _now()
            live.history.append(("running", live.started_at))
            self._running[live.id] = asyncio.create_task(
                self._run(live), name=f"llama-bench task {live.id}"
            )
            self._emit_state(live)

    # -- running one task -----------------------------------------------------------------

    async def _run(self, live: _Live) -> None:
        try:
            await self._run_process(live)
        except asyncio.CancelledError:
            if live.process is not None and live.process.returncode is None:
                self._kill_now(live.process)
            raise
        except Exception as exc:  # any failure must end the task, not leave it hanging
            with contextlib.suppress(Exception):
                await self._finish(live, "failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._running.pop(live.id, None)
            self._schedule()

    async def _run_process(self, live: _Live) -> None:
        assert live.started_at is not None  # noqa: S101 - set by _schedule
        live.running_servers = self._servers_now()
        await self._store.set_state(
            live.id,
            "running",
            format_time(live.started_at),
            started_at=format_time(live.started_at),
            running_servers=live.running_servers,
        )
        if live.stop_reason is not None:  # cancelled or closed while the row was written
            state, error = self._stopped_state(live)
            await self._finish(live, state, error=error)
            return
        try:
            process = await self._spawn(live.argv)
        except OSError as exc:
            await self._finish(live, "failed", error=f"cannot start llama-bench: {exc}")
            return
        live.process = process
        if _stop_requested(live):  # cancel() or close() came while spawning
            await self._stop_process(live)
        stdout = asyncio.create_task(self._read_stdout(process))
        stderr = asyncio.create_task(self._read_stderr(live, process))
        exited = asyncio.create_task(process.wait())
        done, _ = await asyncio.wait({exited}, timeout=live.timeout_s)
        if not done:
            if live.stop_reason is None:  # a cancel or close in its grace period wins
                live.stop_reason = "timeout"
            await self._stop_process(live)
        exit_code = await exited
        output = await stdout
        await stderr
        if exit_code == 0:
            # Every test ran: a stop that came too late to interrupt it does not count.
            state, error = "completed", None
        elif live.stop_reason is not None:
            state, error = self._stopped_state(live)
        else:
            state = "failed"
            error = f"llama-bench exited with code {exit_code}" + _last_error(live.stderr_tail)
        await self._finish(live, state, error=error, output=output, exit_code=exit_code)

    def _stopped_state(self, live: _Live) -> tuple[TaskState, str | None]:
        if live.stop_reason == "cancel":
            return "cancelled", None
        if live.stop_reason == "close":
            return "interrupted", "llamaswitch was closed while the task ran"
        return "failed", f"timed out after {live.timeout_s:g} s; llama-bench was stopped"

    def _servers_now(self) -> list[Mapping[str, Any]]:
        if self._running_servers is None:
            return []
        try:
            return [dict(server) for server in self._running_servers()]
        except Exception as exc:  # recording context must not fail the run
            return [{"error": f"could not list running servers: {exc}"}]

    async def _spawn(self, argv: Sequence[str]) -> asyncio.subprocess.Process:
        # Spawned from the event-loop thread: where Linux's parent-death signal ties it
        # to this process, the signal follows the forking thread, and this one lives as
        # long as the runner.
        return await spawn_exec(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            limit=_LINE_LIMIT,
        )

    @staticmethod
    async def _read_stdout(process: asyncio.subprocess.Process) -> str:
        assert process.stdout is not None  # noqa: S101 - PIPE
        data = await process.stdout.read()
        return data.decode("utf-8", errors="replace")

    async def _read_stderr(self, live: _Live, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None  # noqa: S101 - PIPE
        number = 0
        while True:
            try:
                raw = await process.stderr.readline()
            except ValueError:  # a line over _LINE_LIMIT: keep going, note it
                live.stderr_tail.append("[llamaswitch: an overlong stderr line was dropped]")
                continue
            if not raw:
                return
            number += 1
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            await self._stderr_line(live, line, number)

    async def _stderr_line(self, live: _Live, line: str, number: int) -> None:
        progress = parse_progress_line(line)
        if progress is not None:
            index, total, step = progress
            live.total = total
            live.current = live.names[index - 1] if len(live.names) == total else None
            live.step = step
            self._emit_progress(live)
            return
        start = _RESULT_START.search(line)
        if start is not None and start.start() > 0:
            live.stderr_tail.append(line[: start.start()])
            line = line[start.start() :]
        try:
            result = parse_jsonl_line(line, model_filename=str(live.model.path))
        except BenchParseError as exc:
            live.stderr_tail.append(line)
            live.stderr_tail.append(f"[llamaswitch: stderr line {number} is no result: {exc}]")
            return
        if result is None:
            if line.strip():
                live.stderr_tail.append(line)
            return
        index = len(live.results)
        live.results.append(result)
        await self._store.add_result(live.id, index, result)
        self._events.emit("benchmark", "result", task_id=live.id, index=index, result=result)
        self._emit_progress(live)

    async def _finish(
        self,
        live: _Live,
        state: TaskState,
        *,
        error: str | None = None,
        output: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        """Record the final state, publish it, wake the waiters; once per task (a second
        call, such as _run's fallback after a failed write, does nothing)."""
        if live.finishing:
            return
        live.finishing = True
        logger.log(logging.INFO if state == "completed" else logging.WARNING,
                   "benchmark task %s (%s) %s%s", live.id, live.model.name, state,
                   f": {error}" if error else "")  # fmt: skip
        finished = _now()
        try:
            await self._store.set_state(
                live.id,
                state,
                format_time(finished),
                finished_at=format_time(finished),
                output=output,
                stderr_tail="\n".join(live.stderr_tail) or None,
                error=error,
                exit_code=exit_code,
            )
        finally:
            # Only now: a status read during the write still sees the live task, not a
            # final state without its output.
            live.state = state
            live.history.append((state, finished))
            live.current = live.step = None
            self._live.pop(live.id, None)
            live.done.set()
            self._events.emit(
                "benchmark",
                "state",
                task_id=live.id,
                state=state,
                model=live.model.name,
                error=error,
                exit_code=exit_code,
            )

    # -- stopping -------------------------------------------------------------------------

    @staticmethod
    def _kill_now(process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            signal_group(process.pid, signal.SIGKILL)

    async def _stop_process(self, live: _Live) -> None:
        """SIGTERM to the process group, SIGKILL after the grace period; reaped by _run."""
        process = live.process
        if process is None:
            return

        async def exited_within(seconds: float) -> bool:
            try:
                async with asyncio.timeout(max(seconds, 0.0)):
                    await asyncio.shield(process.wait())
            except TimeoutError:
                return False
            return True

        await stop_group(process.pid, lambda: process.returncode is not None, exited_within,
                         _STOP_GRACE_S)  # fmt: skip

    # -- queries and commands -------------------------------------------------------------

    async def get(self, task_id: str) -> BenchTask:
        """The task, live or from the history (:class:`~llamaswitch.TaskNotFoundError`)."""
        self._check_open()
        live = self._live.get(task_id)
        if live is not None:
            return self._snapshot(live)
        stored = await self._store.get_task(task_id)
        if stored is None:
            raise TaskNotFoundError(f"no benchmark task {task_id!r}")
        return _from_stored(stored)

    async def wait(self, task_id: str, timeout_s: float | None = None) -> BenchTask:
        """Wait until the task is in a final state; :class:`~llamaswitch.TaskTimeoutError`
        after ``timeout_s`` (the task keeps running)."""
        self._check_open()
        live = self._live.get(task_id)
        if live is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    await live.done.wait()
            except TimeoutError:
                raise TaskTimeoutError(
                    f"benchmark task {task_id} still {live.state} after {timeout_s:g} s"
                ) from None
        return await self.get(task_id)

    async def cancel(self, task_id: str) -> BenchTask:
        """Cancel a queued or running task; a finished task is returned unchanged.

        A running task's process group gets SIGTERM (SIGKILL after a grace period); the
        task ends ``cancelled`` with the results of the tests that finished. Cancelling
        is idempotent (a cancel racing the task's own end must not fail): the state of
        the returned task says what happened.
        """
        self._check_open()
        live = self._live.get(task_id)
        if live is None:
            return await self.get(task_id)
        if live.state == "queued":
            # Not in the queue: another cancel or close() is finishing it; wait for that.
            if task_id in self._queue:
                self._queue.remove(task_id)
                await self._finish(live, "cancelled")
        elif live.stop_reason is None and (live.process is None or live.process.returncode is None):
            # Only while llama-bench runs: after it exited the run is complete, and a
            # cancel landing while its last results are stored must not relabel it.
            live.stop_reason = "cancel"
            await self._stop_process(live)
        await live.done.wait()
        return await self.get(task_id)

    async def delete(self, task_id: str) -> BenchTask:
        """Delete a finished task and its results from the history; returns it as it was.

        A queued or running task raises :class:`~llamaswitch.TaskStateError` (cancel it
        first); an unknown id :class:`~llamaswitch.TaskNotFoundError`.
        """
        self._check_open()
        live = self._live.get(task_id)
        if live is not None:
            raise TaskStateError(task_id, live.state, f"benchmark task {task_id} is "
                                 f"{live.state}: cancel it before deleting it")  # fmt: skip
        task = await self.get(task_id)
        if task_id not in await self._store.delete_tasks([task_id]):
            # Not final in the database: another manager sharing this state folder (a
            # service, another command) runs it; the store kept it, and we must say so.
            message = f"benchmark task {task_id} is {task.state} in another process"
            raise TaskStateError(task_id, task.state, f"{message}: cancel it there first")
        self._events.emit("benchmark", "deleted", task_ids=[task_id])
        return task

    async def prune(
        self,
        *,
        before: datetime | None = None,
        model: str | None = None,
        state: str | None = None,
    ) -> list[str]:
        """Delete the finished tasks created before ``before``, of ``model`` and in
        ``state`` (every filter given must match); returns the deleted ids, oldest first.

        At least one filter is needed, so that a forgotten argument never empties the
        history. Queued and running tasks are never pruned.
        """
        self._check_open()
        errors = []
        if before is None and model is None and state is None:
            errors.append(("before", "name what to prune: before, model or state"))
        if model is not None and (not model.strip() or text_problem(model)):
            errors.append(("model", f"must be a model name or path, got {model!r}"))
        if state is not None and state not in FINAL_STATES:
            allowed = ", ".join(sorted(FINAL_STATES))
            errors.append(("state", f"must be one of {allowed} (queued and running tasks "
                           f"are never pruned), got {state!r}"))  # fmt: skip
        if errors:
            raise ConfigValidationError(errors)
        deleted = await self._store.prune(
            before=None if before is None else format_time(before), model=model, state=state
        )
        if deleted:
            self._events.emit("benchmark", "deleted", task_ids=deleted)
        return deleted

    async def list(
        self,
        *,
        model: str | None = None,
        state: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[BenchTask]:
        """The history, newest first, filtered by model (name or path), state and
        creation time (``since <= created_at <= until``; naive datetimes are local)."""
        self._check_open()
        errors = []
        if state is not None and state not in TASK_STATES:
            errors.append(("state", f"must be one of {', '.join(TASK_STATES)}, got {state!r}"))
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            errors.append(("limit", f"must be a whole number >= 1, got {limit!r}"))
        if errors:
            raise ConfigValidationError(errors)
        stored = await self._store.list_tasks(
            model=model,
            state=state,
            limit=limit,
            since=None if since is None else format_time(since),
            until=None if until is None else format_time(until),
        )
        return [
            self._snapshot(self._live[s.id]) if s.id in self._live else _from_stored(s)
            for s in stored
        ]

    async def compare(self, task_ids: Sequence[str]) -> Comparison:
        """The tasks' results side by side (unknown ids raise TaskNotFoundError)."""
        if isinstance(task_ids, str):
            task_ids = [task_ids]
        tasks = [await self.get(task_id) for task_id in dict.fromkeys(task_ids)]
        return compare(tasks)

    async def import_results(self, text: str, fmt: str, *, model: str | None = None) -> BenchTask:
        """Store llama-bench output produced elsewhere as a ``completed`` task.

        ``fmt`` is one of md, csv, json, jsonl, sql. The model is ``model`` if given,
        else the file name in the rows (markdown output names none: pass ``model``).
        """
        self._check_open()
        if fmt not in BENCH_OUTPUT_FORMATS:
            raise ConfigValidationError(
                [("fmt", f"must be one of {', '.join(BENCH_OUTPUT_FORMATS)}, got {fmt!r}")]
            )
        results = await asyncio.to_thread(parse_bench_output, text, fmt, model_filename=model)
        if not results:
            raise BenchParseError("the output holds no benchmark results")
        files = [r.model_filename for r in results if r.model_filename]
        name = (
            model
            if model is not None
            else (files[0].replace("\\", "/").rsplit("/", 1)[-1] if files else None)
        )
        if not name:
            raise ConfigValidationError(
                [("model", "the output does not name the model file: pass model=")]
            )
        first = results[0]
        version = None
        if first.build_number is not None or first.build_commit is not None:
            number = "?" if first.build_number is None else first.build_number
            version = f"b{number} ({first.build_commit})" if first.build_commit else f"b{number}"
        host = {
            key: first.params[key]
            for key in ("cpu_info", "gpu_info", "backends")
            if key in first.params
        }
        now = format_time(_now())
        task_id = uuid.uuid4().hex[:16]
        await self._store.insert_task_with_results(
            results,
            id=task_id,
            source="imported",
            model=name,
            model_relative=model,
            model_path=files[0] if files else None,
            config={},
            argv=[],
            output_format=fmt,
            state="completed",
            created_at=now,
            started_at=now,
            finished_at=now,
            state_history=[["completed", now]],
            expected_tests=len(results),
            output=text,
            binary_version=version,
            binary_commit=first.build_commit,
            host=host,
        )
        self._events.emit(
            "benchmark",
            "state",
            task_id=task_id,
            state="completed",
            model=name,
            error=None,
            exit_code=None,
        )
        return await self.get(task_id)

    async def record_finished(self, task: BenchTask, *, host_name: str) -> BenchTask:
        """Keep a finished task that ran on another host (a cluster's) in this history,
        under its own id, its hardware recorded with the host's name: compare then puts
        hosts side by side. A task kept already is returned as it is."""
        self._check_open()
        kept = await self._store.get_task(task.id)
        if kept is None:
            stamp = format_time
            await self._store.insert_task_with_results(
                task.results, id=task.id, source=f"host:{host_name}", model=task.model,
                model_relative=task.model, model_path=task.model_path,
                config=task.config.to_dict(), argv=list(task.argv),
                output_format=task.output_format, state=task.state,
                created_at=stamp(task.created_at),
                started_at=stamp(task.started_at) if task.started_at else None,
                finished_at=stamp(task.finished_at) if task.finished_at else None,
                state_history=[[state, stamp(moment)] for state, moment in task.state_history],
                expected_tests=len(task.results), output=task.output,
                binary_version=task.binary_version, binary_commit=task.binary_commit,
                host={**task.host, "name": host_name}, error=task.error,
                exit_code=task.exit_code, stderr_tail=task.stderr_tail,
                timeout_s=task.timeout_s, running_servers=list(task.running_servers),
            )  # fmt: skip
            self._events.emit("benchmark", "state", task_id=task.id, state=task.state,
                              model=task.model, error=task.error, exit_code=task.exit_code,
                              host_name=host_name)  # fmt: skip
        return await self.get(task.id)

    # -- snapshots and events -------------------------------------------------------------

    def _queue_position(self, task_id: str) -> int | None:
        try:
            return self._queue.index(task_id) + 1
        except ValueError:
            return None

    def _snapshot(self, live: _Live) -> BenchTask:
        return BenchTask(
            id=live.id,
            state=live.state,
            source="run",
            model=live.model.name,
            model_path=str(live.model.path),
            config=live.config,
            argv=tuple(live.argv),
            progress=BenchProgress(len(live.results), live.total, live.current, live.step),
            queue_position=self._queue_position(live.id),
            results=tuple(live.results),
            output=None,
            output_format=live.config.output_format,
            error=None,
            exit_code=None,
            stderr_tail="\n".join(live.stderr_tail) or None,
            created_at=live.created_at,
            started_at=live.started_at,
            finished_at=None,
            state_history=tuple(live.history),
            timeout_s=live.timeout_s,
            binary_version=live.binary.version,
            binary_commit=live.binary.commit,
            host=self._host,
            running_servers=tuple(live.running_servers),
            tune_id=live.tune_id,
        )

    def _emit_state(self, live: _Live) -> None:
        self._events.emit(
            "benchmark",
            "state",
            task_id=live.id,
            state=live.state,
            model=live.model.name,
            queue_position=self._queue_position(live.id),
        )

    def _emit_progress(self, live: _Live) -> None:
        self._events.emit(
            "benchmark",
            "progress",
            task_id=live.id,
            done=len(live.results),
            total=live.total,
            current=live.current,
            step=live.step,
        )


def _stop_requested(live: _Live) -> bool:
    return live.stop_reason is not None


def _last_error(tail: Sequence[str]) -> str:
    """``: <llama.cpp's last error line>`` to append to a failure message, or ``""``."""
    for line in reversed(tail):
        if "error" in line.lower():
            return f": {line.strip()}"
    return ""


def _time_or_none(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except (TypeError, ValueError):
        return None


def _history(stored: StoredTask) -> tuple[tuple[str, datetime], ...]:
    entries = []
    for entry in stored.state_history:
        try:
            state, moment = entry
            entries.append((str(state), parse_time(moment)))
        except (TypeError, ValueError):
            continue  # a damaged entry: the rest of the history still shows
    return tuple(entries)


def _from_stored(stored: StoredTask) -> BenchTask:
    try:
        config = BenchConfig.from_dict(stored.config)
    except ConfigValidationError:
        # Written by another llamaswitch version with fields this one does not know.
        config = BenchConfig()
    # A damaged creation time reads as the epoch: the task still lists, last.
    created = _time_or_none(stored.created_at) or datetime.fromtimestamp(0, UTC)
    state = stored.state if stored.state in TASK_STATES else "interrupted"
    return BenchTask(
        id=stored.id,
        state=state,  # type: ignore[arg-type]
        source=stored.source,
        model=stored.model,
        model_path=stored.model_path,
        config=config,
        argv=tuple(stored.argv),
        progress=BenchProgress(len(stored.results), stored.expected_tests, None, None),
        queue_position=None,
        results=stored.results,
        output=stored.output,
        output_format=stored.output_format,
        error=stored.error,
        exit_code=stored.exit_code,
        stderr_tail=stored.stderr_tail,
        created_at=created,
        started_at=_time_or_none(stored.started_at),
        finished_at=_time_or_none(stored.finished_at),
        state_history=_history(stored),
        timeout_s=stored.timeout_s,
        binary_version=stored.binary_version,
        binary_commit=stored.binary_commit,
        host=stored.host,
        running_servers=tuple(stored.running_servers),
        tune_id=stored.tune_id,
    )
