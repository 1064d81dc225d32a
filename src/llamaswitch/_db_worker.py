"""One thread that owns a database: every call runs on it, in order.

SQLite connections (and Optuna's storage over them) belong to the thread that made them;
the benchmark history and the tunes' studies each keep theirs on a worker of this kind,
and translate its errors into their own kinds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

from llamaswitch._errors import ServiceClosedError

__all__ = ["DatabaseWorker"]

T = TypeVar("T")


class DatabaseWorker:
    """A one-thread executor with a lifecycle: :meth:`start`, :meth:`call`, :meth:`stop`.

    ``what`` names the database in the error a call after :meth:`stop` raises.
    """

    def __init__(self, thread_name: str, what: str) -> None:
        self._thread_name = thread_name
        self._what = what
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the thread (again after a stop; nothing if it runs)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=self._thread_name
            )

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the thread (:class:`~llamaswitch.ServiceClosedError` when
        stopped)."""
        if self._executor is None:
            raise ServiceClosedError(f"the {self._what} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def stop(self, last: Callable[[], object]) -> None:
        """Run ``last`` (closing the connection) on the thread, then end the thread."""
        executor = self._executor
        if executor is None:
            return
        try:
            await self.call(last)
        finally:
            self._executor = None
            executor.shutdown(wait=True)
