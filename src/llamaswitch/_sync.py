"""The blocking Python API, for scripts and notebooks.

:class:`LlamaSwitch` owns one event-loop thread for its whole life (the pattern of
anyio's ``start_blocking_portal``) and every method is a one-line call into
:class:`~llamaswitch._api.AsyncLlamaSwitch` on that loop. A loop per call
(``asyncio.run``) would not do: model servers live on the loop that started them, and on
Linux they are tied to the thread that forked them (parent-death signal), so that thread
must live as long as the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from llamaswitch._api import AsyncLlamaSwitch
from llamaswitch._gpu import GpuProbe
from llamaswitch._settings import Settings

if TYPE_CHECKING:
    from llamaswitch._catalog import ModelInfo
    from llamaswitch.bench.config import BenchConfig
    from llamaswitch.bench.runner import BenchTask, Comparison
    from llamaswitch.gateway.gateway import Lease, ModelView
    from llamaswitch.gateway.policy import Plan
    from llamaswitch.gateway.presets import Presets
    from llamaswitch.servers.config import ServerConfig
    from llamaswitch.servers.supervisor import ServerStatus
    from llamaswitch.tuning.objective import Objective
    from llamaswitch.tuning.tune import Tune

__all__ = ["LlamaSwitch"]

T = TypeVar("T")


class _LoopThread:
    """An event loop running in a daemon thread, with a blocking ``call``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="llamaswitch-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LlamaSwitch methods cannot be called from its own loop thread")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class LlamaSwitch:
    """Blocking entry point: ``with LlamaSwitch(settings) as ls: ls.switch(...)``.

    The same methods as :class:`~llamaswitch.AsyncLlamaSwitch`, without ``await``.
    Leaving the ``with`` block (or :meth:`close`) stops every server it started.
    ``lazy`` opens it (the supervisor, the benchmark database) on the first call that
    needs it, rather than at once: a script that only lists models touches nothing.

    >>> with LlamaSwitch(Settings(models_dir="models")) as ls:   # doctest: +SKIP
    ...     ls.switch("tiny.gguf", ServerConfig(port=8091, ctx_size=256)).state
    'ready'
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        gpu: GpuProbe | None = None,
        lazy: bool = False,
    ) -> None:
        self._portal = _LoopThread()
        self._opened = False
        try:
            # Built on the loop thread: its asyncio primitives belong to that loop.
            self._async = self._portal.call(_build(settings, gpu))
            if not lazy:
                self._open()
        except BaseException:
            self._portal.stop()
            raise
        self._closed = False

    def _open(self) -> None:
        self._portal.call(self._async.open())
        self._opened = True

    def _call(self, coro: Coroutine[Any, Any, T], *, needs_open: bool = True) -> T:
        """Run ``coro`` on the loop; with ``lazy``, open first when it needs the supervisor
        or the benchmark runner (listing models needs neither: no state folder touched)."""
        if needs_open and not self._opened:
            try:
                self._open()
            except BaseException:
                coro.close()
                raise
        return self._portal.call(coro)

    @property
    def settings(self) -> Settings:
        """The settings in use."""
        return self._async.settings

    @property
    def aio(self) -> AsyncLlamaSwitch:
        """The async API underneath (its coroutines must run on this object's loop)."""
        return self._async

    def close(self) -> None:
        """Stop every server and benchmark this object started, then the loop thread."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._opened:
                self._portal.call(self._async.close())
        finally:
            self._portal.stop()

    def __enter__(self) -> LlamaSwitch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- models ---------------------------------------------------------------------------

    def list_models(self) -> list[ModelInfo]:
        """See :meth:`AsyncLlamaSwitch.list_models`."""
        return self._call(self._async.list_models(), needs_open=False)

    def switch(
        self,
        model: str,
        config: ServerConfig | None = None,
        *,
        wait: bool = True,
        force: bool = False,
        host: str | None = None,
    ) -> ServerStatus:
        """See :meth:`AsyncLlamaSwitch.switch`."""
        return self._call(self._async.switch(model, config, wait=wait, force=force, host=host))

    def start(
        self,
        model: str,
        config: ServerConfig | None = None,
        *,
        wait: bool = True,
        host: str | None = None,
    ) -> ServerStatus:
        """See :meth:`AsyncLlamaSwitch.start`."""
        return self._call(self._async.start(model, config, wait=wait, host=host))

    def stop(
        self,
        model: str | None = None,
        *,
        port: int | None = None,
        force: bool = False,
        host: str | None = None,
    ) -> list[ServerStatus]:
        """See :meth:`AsyncLlamaSwitch.stop`."""
        return self._call(self._async.stop(model, port=port, force=force, host=host))

    @overload
    def status(self, *, host: str | None = None) -> list[ServerStatus]: ...
    @overload
    def status(
        self, model: str, *, port: int | None = None, host: str | None = None
    ) -> ServerStatus: ...
    @overload
    def status(self, model: None = None, *, port: int, host: str | None = None) -> ServerStatus: ...

    def status(
        self, model: str | None = None, *, port: int | None = None, host: str | None = None
    ) -> list[ServerStatus] | ServerStatus:
        """See :meth:`AsyncLlamaSwitch.status`."""
        return self._call(self._async.status(model, port=port, host=host))  # type: ignore[arg-type]

    def logs(
        self,
        model: str | None = None,
        *,
        port: int | None = None,
        lines: int = 100,
        host: str | None = None,
    ) -> list[str]:
        """See :meth:`AsyncLlamaSwitch.logs`."""
        return self._call(self._async.logs(model, port=port, lines=lines, host=host))

    def hosts(self) -> list[dict[str, Any]]:
        """See :meth:`AsyncLlamaSwitch.hosts`."""
        return self._call(self._async.hosts())

    def benchmark_hosts(self, model: str) -> list[str]:
        """See :meth:`AsyncLlamaSwitch.benchmark_hosts`."""
        return self._async.benchmark_hosts(model)

    def server_key(
        self, model: str | None = None, *, port: int | None = None, host: str | None = None
    ) -> str | None:
        """See :meth:`AsyncLlamaSwitch.server_key`."""
        return self._call(self._async.server_key(model, port=port, host=host))

    # -- the gateway ----------------------------------------------------------------------

    def ensure(self, model: str) -> ServerStatus:
        """See :meth:`AsyncLlamaSwitch.ensure`."""
        return self._call(self._async.ensure(model))

    @contextlib.contextmanager
    def lease(self, model: str) -> Iterator[Lease]:
        """``with ls.lease(model) as lease:``; see :meth:`AsyncLlamaSwitch.lease`."""
        lease = self._call(self._async.gateway.acquire(model))
        try:
            yield lease
        finally:
            self._portal.loop.call_soon_threadsafe(self._async.gateway.release, lease)

    def gateway_models(self) -> list[ModelView]:
        """See :meth:`AsyncLlamaSwitch.gateway_models`."""
        return self._call(self._async.gateway_models())

    def gateway_plan(self, model: str) -> Plan:
        """See :meth:`AsyncLlamaSwitch.gateway_plan`."""
        return self._call(self._async.gateway_plan(model))

    def presets(self) -> Presets:
        """See :meth:`AsyncLlamaSwitch.presets`."""
        return self._call(self._async.presets())

    def reload_presets(self) -> Presets:
        """See :meth:`AsyncLlamaSwitch.reload_presets`."""
        return self._call(self._async.reload_presets())

    # -- benchmarks -----------------------------------------------------------------------

    def submit_benchmark(
        self,
        model: str,
        config: BenchConfig | None = None,
        *,
        timeout_s: float | None = None,
        host: str | None = None,
    ) -> str:
        """See :meth:`AsyncLlamaSwitch.submit_benchmark`."""
        return self._call(
            self._async.submit_benchmark(model, config, timeout_s=timeout_s, host=host)
        )

    def benchmark_status(self, task_id: str) -> BenchTask:
        """See :meth:`AsyncLlamaSwitch.benchmark_status`."""
        return self._call(self._async.benchmark_status(task_id))

    def wait_benchmark(self, task_id: str, timeout_s: float | None = None) -> BenchTask:
        """See :meth:`AsyncLlamaSwitch.wait_benchmark`."""
        return self._call(self._async.wait_benchmark(task_id, timeout_s))

    def cancel_benchmark(self, task_id: str) -> BenchTask:
        """See :meth:`AsyncLlamaSwitch.cancel_benchmark`."""
        return self._call(self._async.cancel_benchmark(task_id))

    def delete_benchmark(self, task_id: str) -> BenchTask:
        """See :meth:`AsyncLlamaSwitch.delete_benchmark`."""
        return self._call(self._async.delete_benchmark(task_id))

    def prune_benchmarks(
        self,
        *,
        before: datetime | None = None,
        model: str | None = None,
        state: str | None = None,
    ) -> list[str]:
        """See :meth:`AsyncLlamaSwitch.prune_benchmarks`."""
        return self._call(self._async.prune_benchmarks(before=before, model=model, state=state))

    def list_benchmarks(
        self,
        *,
        model: str | None = None,
        state: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[BenchTask]:
        """See :meth:`AsyncLlamaSwitch.list_benchmarks`."""
        return self._call(self._async.list_benchmarks(
            model=model, state=state, since=since, until=until, limit=limit))  # fmt: skip

    def compare_benchmarks(self, task_ids: Sequence[str]) -> Comparison:
        """See :meth:`AsyncLlamaSwitch.compare_benchmarks`."""
        return self._call(self._async.compare_benchmarks(task_ids))

    def import_benchmark(
        self, text: str, fmt: str = "json", *, model: str | None = None
    ) -> BenchTask:
        """See :meth:`AsyncLlamaSwitch.import_benchmark`."""
        return self._call(self._async.import_benchmark(text, fmt, model=model))

    # -- tuning (llamaswitch.tuning; docs/tuning.md) ----------------------------------------

    def tune(
        self,
        model: str,
        *,
        space: BenchConfig | Mapping[str, Any] | None = None,
        objective: Objective | str | Mapping[str, Any] | None = None,
        server: ServerConfig | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Tune:
        """See :meth:`AsyncLlamaSwitch.tune`."""
        return self._call(self._async.tune(model, space=space, objective=objective,
                                           server=server, **options))  # fmt: skip

    def tune_status(self, tune_id: str) -> Tune:
        """See :meth:`AsyncLlamaSwitch.tune_status`."""
        return self._call(self._async.tune_status(tune_id))

    def wait_tune(self, tune_id: str, timeout_s: float | None = None) -> Tune:
        """See :meth:`AsyncLlamaSwitch.wait_tune`."""
        return self._call(self._async.wait_tune(tune_id, timeout_s))

    def cancel_tune(self, tune_id: str) -> Tune:
        """See :meth:`AsyncLlamaSwitch.cancel_tune`."""
        return self._call(self._async.cancel_tune(tune_id))

    def resume_tune(self, tune_id: str, *, budget: int | None = None) -> Tune:
        """See :meth:`AsyncLlamaSwitch.resume_tune`."""
        return self._call(self._async.resume_tune(tune_id, budget=budget))

    def list_tunes(self, *, model: str | None = None, limit: int = 50) -> list[Tune]:
        """See :meth:`AsyncLlamaSwitch.list_tunes`."""
        return self._call(self._async.list_tunes(model=model, limit=limit))

    def save_tune_preset(
        self, tune_id: str, *, trial: int | None = None, preset: str | None = None
    ) -> Tune:
        """See :meth:`AsyncLlamaSwitch.save_tune_preset`."""
        return self._call(self._async.save_tune_preset(tune_id, trial=trial, preset=preset))

    def tune_space(
        self, model: str, *, objective: Objective | str | Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """See :meth:`AsyncLlamaSwitch.tune_space`."""
        return self._call(self._async.tune_space(model, objective=objective))


async def _build(settings: Settings | None, gpu: GpuProbe | None) -> AsyncLlamaSwitch:
    return AsyncLlamaSwitch(settings, gpu=gpu)
