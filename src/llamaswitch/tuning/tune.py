"""A tune as callers see it: :class:`Tune`, its :class:`Trial` records and its progress.

Tune states::

    running ──> completed | failed | cancelled | interrupted
    interrupted | cancelled | failed ──(resume)──> running

A trial is ``running``, ``completed`` (measured), ``pruned`` (it could not run: the reason
says why; it used none of the budget), ``failed`` (llama-bench failed or crashed: the
search goes on), ``cancelled`` or ``interrupted`` (stopped with its tune; measured again on
resume).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal, get_args

import attrs

from llamaswitch.servers.config import ServerConfig
from llamaswitch.tuning.objective import Objective
from llamaswitch.tuning.options import TuneOptions

__all__ = [
    "TRIAL_STATES",
    "TUNE_STATES",
    "Trial",
    "TrialState",
    "Tune",
    "TunePreset",
    "TuneProgress",
    "TuneState",
]

TuneState = Literal["running", "completed", "failed", "cancelled", "interrupted"]
TUNE_STATES: Final[tuple[str, ...]] = get_args(TuneState)
TrialState = Literal["running", "completed", "pruned", "failed", "cancelled", "interrupted"]
TRIAL_STATES: Final[tuple[str, ...]] = get_args(TrialState)


@attrs.frozen(kw_only=True)
class Trial:
    """One point of the space and what measuring it gave.

    Speeds are tokens per second over the trial's repetitions (``*_stddev``: their
    standard deviation); ``score`` is the objective's, ``score_error`` its standard error.
    """

    number: int
    state: TrialState
    #: The tuned fields' values (llama-bench's vocabulary).
    params: Mapping[str, Any]
    #: The benchmark tasks that measured it (more than one when repetitions were added).
    task_ids: tuple[str, ...] = ()
    pp_ts: float | None = None
    pp_stddev: float | None = None
    tg_ts: float | None = None
    tg_stddev: float | None = None
    score: float | None = None
    score_error: float | None = None
    #: Runs of each test behind the figures.
    repetitions: int = 0
    #: Why it was pruned, or how it failed.
    reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@attrs.frozen
class TuneProgress:
    """How far a tune is: trials measured of the budget, and what runs now."""

    #: Trials measured or failed: what counts against the budget.
    done: int = 0
    budget: int = 0
    completed: int = 0
    failed: int = 0
    pruned: int = 0
    #: Points the space has, and how many of them can run (None: too many to count).
    space_size: int | None = None
    feasible: int | None = None
    #: The trial running now, and its benchmark task.
    current_trial: int | None = None
    current_task_id: str | None = None


@attrs.frozen
class TunePreset:
    """The preset a tune wrote (or tried to write)."""

    id: str
    path: str
    #: The trial whose settings it holds.
    trial: int
    written_at: datetime | None = None
    #: Why it could not be written, or why the gateway did not take it at once.
    error: str | None = None


@attrs.frozen(kw_only=True)
class Tune:
    """One tune: its request, state, trials, the best one and the Pareto front.

    ``space`` is the space searched, in BenchConfig's JSON form; ``best`` the completed
    trial with the highest score; ``pareto`` the numbers of the completed trials on the
    front of prompt against generation speed. Times are timezone-aware UTC datetimes.
    """

    id: str
    state: TuneState
    #: The model's catalog name and its path relative to the models folder.
    model: str
    model_path: str
    space: Mapping[str, Any]
    objective: Objective
    #: The preset's settings beyond the tuned ones.
    server: ServerConfig
    options: TuneOptions
    #: The sampler's seed (given, or drawn and recorded).
    seed: int
    progress: TuneProgress
    trials: tuple[Trial, ...]
    best: Trial | None
    pareto: tuple[int, ...]
    preset: TunePreset | None
    binary_version: str | None
    created_at: datetime
    finished_at: datetime | None
    error: str | None

    @property
    def tune_id(self) -> str:
        """The same as :attr:`id` (as a benchmark task's ``task_id``)."""
        return self.id

    @property
    def finished(self) -> bool:
        """Whether the tune has stopped (it may be resumed unless completed)."""
        return self.state != "running"
