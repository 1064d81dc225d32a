"""Tunes and trials as their study records them, and as callers read them back.

A trial's user attributes hold what llamaswitch measured (JSON): ``outcome``,
``task_ids``, the ``pp`` and ``tg`` figures (mean, standard deviation, runs), ``score``,
``score_error``, ``reason``, ``started_at``, ``finished_at``; a repeated suggestion of a
point already measured carries ``duplicate_of`` and is not shown. The tune's record holds
its request, its state and a summary (progress, best trial, Pareto front) kept up to date
after each trial, so that a list of tunes reads no trials.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from llamaswitch._time import format_time, parse_time
from llamaswitch._wire import from_wire, to_wire
from llamaswitch.servers.config import ServerConfig
from llamaswitch.tuning.objective import Figure, Measurement, Objective
from llamaswitch.tuning.options import TuneOptions
from llamaswitch.tuning.pareto import pareto_front
from llamaswitch.tuning.store import StoredTrial
from llamaswitch.tuning.tune import Trial, TrialState, Tune, TunePreset, TuneProgress, TuneState

__all__ = [
    "figure_data",
    "measurement_of",
    "summary",
    "trial_attrs",
    "trial_from_stored",
    "tune_from_record",
]

#: Trial outcomes whose point is known: a later suggestion of it is not measured again.
SETTLED: Final = frozenset({"completed", "pruned", "failed"})


def figure_data(figure: Figure) -> dict[str, Any]:
    """A figure's JSON form."""
    return {"mean": figure.mean, "stddev": figure.stddev, "count": figure.count}


def _figure(data: object) -> Figure | None:
    if not isinstance(data, Mapping):
        return None
    try:
        return Figure(float(data["mean"]), float(data["stddev"]), int(data["count"]))
    except (KeyError, TypeError, ValueError):
        return None


def measurement_of(attrs: Mapping[str, Any]) -> Measurement | None:
    """A completed trial's measurement from its attributes (None if it has none)."""
    pp, tg = _figure(attrs.get("pp")), _figure(attrs.get("tg"))
    return Measurement(pp, tg) if pp is not None and tg is not None else None


def trial_attrs(trial: Trial, measurement: Measurement | None) -> dict[str, Any]:
    """What the study keeps of a finished trial."""
    data: dict[str, Any] = {
        "outcome": trial.state,
        "task_ids": list(trial.task_ids),
        "reason": trial.reason,
        "started_at": None if trial.started_at is None else format_time(trial.started_at),
        "finished_at": None if trial.finished_at is None else format_time(trial.finished_at),
    }
    if measurement is not None:
        data.update(
            pp=figure_data(measurement.pp),
            tg=figure_data(measurement.tg),
            score=trial.score,
            score_error=trial.score_error,
        )
    return data


def _time(value: object) -> Any:
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except (TypeError, ValueError):
        return None


def trial_from_stored(
    stored: StoredTrial, objective: Objective, *, running_here: bool
) -> Trial | None:
    """A stored trial as callers see it; None for what is not shown (a point the sampler
    suggested again, a trial still waiting in the queue)."""
    attrs = stored.attrs
    if "duplicate_of" in attrs or stored.state == "WAITING":
        return None
    outcome = attrs.get("outcome")
    state: TrialState
    if stored.state == "RUNNING":
        state = "running" if running_here else "interrupted"
    elif stored.state == "COMPLETE":
        state = "completed"
    elif stored.state == "PRUNED":
        state = "pruned"
    else:
        stopped = outcome in ("cancelled", "interrupted")
        state = "cancelled" if outcome == "cancelled" else "interrupted" if stopped else "failed"
    measurement = measurement_of(attrs) if state == "completed" else None
    return Trial(
        number=stored.number,
        state=state,
        params=dict(stored.params),
        task_ids=tuple(str(t) for t in attrs.get("task_ids") or ()),
        pp_ts=None if measurement is None else measurement.pp.mean,
        pp_stddev=None if measurement is None else measurement.pp.stddev,
        tg_ts=None if measurement is None else measurement.tg.mean,
        tg_stddev=None if measurement is None else measurement.tg.stddev,
        score=None if measurement is None else objective.score(measurement),
        score_error=None if measurement is None else objective.score_error(measurement),
        repetitions=0 if measurement is None else measurement.repetitions,
        reason=attrs.get("reason"),
        started_at=_time(attrs.get("started_at")),
        finished_at=_time(attrs.get("finished_at")),
    )


def best_of(trials: Iterable[Trial]) -> Trial | None:
    """The completed trial with the highest score (the first one on a tie)."""
    best: Trial | None = None
    for trial in trials:
        if (
            trial.state == "completed"
            and trial.score is not None
            and (best is None or trial.score > (best.score or 0.0))
        ):
            best = trial
    return best


def pareto_of(trials: Sequence[Trial]) -> tuple[int, ...]:
    """The numbers of the completed trials on the front of prompt against generation."""
    measured = [
        t for t in trials if t.state == "completed" and t.pp_ts is not None and t.tg_ts is not None
    ]
    front = pareto_front([(t.pp_ts or 0.0, t.tg_ts or 0.0) for t in measured])
    return tuple(measured[i].number for i in front)


def counts(trials: Iterable[Trial]) -> dict[str, int]:
    """Trials by what they count as: done (against the budget), completed, failed, pruned."""
    found = {"done": 0, "completed": 0, "failed": 0, "pruned": 0}
    for trial in trials:
        if trial.state in found:
            found[trial.state] += 1
        if trial.state in ("completed", "failed"):
            found["done"] += 1
    return found


def summary(trials: Sequence[Trial]) -> dict[str, Any]:
    """The record's summary of a tune's trials (what a list of tunes shows)."""
    best = best_of(trials)
    return {
        "counts": counts(trials),
        "best": None if best is None else to_wire(best),
        "pareto": list(pareto_of(trials)),
    }


def tune_from_record(
    tune_id: str,
    record: Mapping[str, Any],
    trials: Sequence[Trial] | None,
    *,
    state: TuneState,
    current: tuple[int | None, str | None] = (None, None),
) -> Tune:
    """A tune from its record and (for one tune, not a list) its trials."""
    objective = Objective.coerce(record.get("objective") or {})
    options = TuneOptions.from_dict(record.get("options") or {})
    if trials is not None:
        found = counts(trials)
        best = best_of(trials)
        pareto = pareto_of(trials)
    else:
        kept = record.get("summary") or {}
        found = {**counts(()), **(kept.get("counts") or {})}
        best = from_wire(kept["best"], Trial) if kept.get("best") else None
        pareto = tuple(int(n) for n in kept.get("pareto") or ())
    preset = record.get("preset")
    return Tune(
        id=tune_id,
        state=state,
        model=str(record.get("model", "")),
        model_path=str(record.get("model_path", "")),
        space=dict(record.get("space") or {}),
        objective=objective,
        server=ServerConfig.from_dict(record.get("server") or {}),
        options=options,
        seed=int(record.get("seed", 0)),
        progress=TuneProgress(
            done=found["done"],
            budget=options.budget,
            completed=found["completed"],
            failed=found["failed"],
            pruned=found["pruned"],
            space_size=record.get("space_size"),
            feasible=record.get("feasible"),
            current_trial=current[0],
            current_task_id=current[1],
        ),
        trials=tuple(trials or ()),
        best=best,
        pareto=pareto,
        preset=from_wire(preset, TunePreset) if preset else None,
        binary_version=record.get("binary_version"),
        created_at=_time(record.get("created_at")) or parse_time("1970-01-01T00:00:00Z"),
        finished_at=_time(record.get("finished_at")),
        error=record.get("error"),
    )
