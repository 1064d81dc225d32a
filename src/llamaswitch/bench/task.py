"""A benchmark task as callers see it: :class:`BenchTask` and its :class:`BenchProgress`.

Task states::

    queued ──> running ──> completed | failed | cancelled | interrupted
       └──────────────────> cancelled | interrupted
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal, get_args

import attrs

from llamaswitch.bench.config import BenchConfig
from llamaswitch.bench.parser import BenchResult

__all__ = [
    "FINAL_STATES",
    "TASK_STATES",
    "UNFINISHED_STATES",
    "BenchProgress",
    "BenchTask",
    "TaskState",
]

#: A task's states, in the order a run goes through them.
TaskState = Literal["queued", "running", "completed", "failed", "cancelled", "interrupted"]
TASK_STATES: Final[tuple[str, ...]] = get_args(TaskState)
FINAL_STATES: Final = frozenset({"completed", "failed", "cancelled", "interrupted"})
UNFINISHED_STATES: Final = ("queued", "running")


@attrs.frozen
class BenchProgress:
    """How far a task is: tests done of the total, and what runs now."""

    #: Tests finished (results received).
    done: int = 0
    #: Tests llama-bench will run (from its progress lines, else from the config).
    total: int | None = None
    #: Name of the test running now (``pp512``), None when none runs.
    current: str | None = None
    #: llama-bench's own words for the step (``prompt run 2/5``).
    step: str | None = None


@attrs.frozen(kw_only=True)
class BenchTask:
    """One benchmark task: its request, state, progress, results and what ran it.

    ``results`` are structured (one :class:`~llamaswitch.BenchResult` per finished
    test, whatever ``output`` format was asked); ``output`` is what llama-bench printed
    on stdout in that format, verbatim. Times are timezone-aware UTC datetimes.
    """

    id: str
    state: TaskState
    #: ``run`` for tasks run here, ``imported`` for results produced elsewhere.
    source: str
    #: The model's catalog name (its file name).
    model: str
    model_path: str | None
    config: BenchConfig
    #: The llama-bench command line (empty for imported tasks).
    argv: tuple[str, ...]
    progress: BenchProgress
    #: 1 for the next task to start, 2 for the one after...; None when not queued.
    queue_position: int | None
    results: tuple[BenchResult, ...]
    output: str | None
    output_format: str
    error: str | None
    exit_code: int | None
    stderr_tail: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    #: ``[(state, time), ...]``: when the task entered each state.
    state_history: tuple[tuple[str, datetime], ...]
    timeout_s: float | None
    binary_version: str | None
    binary_commit: str | None
    host: Mapping[str, Any]
    #: The model servers running when the task started (they share the hardware).
    running_servers: tuple[Mapping[str, Any], ...]
    #: The tune whose trial this task measured (:mod:`llamaswitch.tuning`), None otherwise.
    tune_id: str | None = None

    @property
    def task_id(self) -> str:
        """The seed's name for :attr:`id`."""
        return self.id

    @property
    def finished(self) -> bool:
        """Whether the task reached a final state."""
        return self.state in FINAL_STATES
