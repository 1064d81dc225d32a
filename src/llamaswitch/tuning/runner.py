"""Running tunes: a sampler proposes settings, llama-bench measures them, the best is saved.

:class:`TuneRunner` runs each tune as one asyncio task on the library's loop:

1. **Check first.** The space is parsed through BenchConfig's vocabulary, checked
   against both binaries' capability records, and (when it has at most
   :data:`ENUMERATE_LIMIT` points) every point is checked for feasibility: a space with
   no point that can run is refused, naming ``space``.
2. **Ask.** Optuna's TPE sampler proposes the next point (a study per tune, in SQLite:
   :mod:`llamaswitch.tuning.store`). A point already measured is told its earlier result
   without running again (a small space runs out of new points: after three repeats in
   a row, an unmeasured feasible point is queued). When the budget covers every feasible
   point, all of them are queued: the search is exhaustive.
3. **Prune** a point that cannot run, before it runs
   (:class:`~llamaswitch.tuning.feasibility.Feasibility`): it uses none of the budget.
4. **Measure** it as a benchmark task linked to the tune (``BenchTask.tune_id``), with
   ``repetitions`` runs; while its score is too close to the best one's to tell apart,
   another task adds runs, up to ``max_repetitions``
   (:func:`~llamaswitch.tuning.objective.needs_more`). A task that fails or crashes
   makes the trial ``failed``, and the search goes on (five in a row end the tune).
5. **Finish.** The best completed trial is written into the presets file
   (:mod:`llamaswitch.tuning.preset_file`) and the gateway reloads it at once.

Cancel stops the running task (as a benchmark cancel does) and ends the tune
``cancelled``; closing the library ends it ``interrupted``. Either can be resumed: the
trials measured are kept, the one that was stopped runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs
import psutil

from llamaswitch._errors import (
    ConfigValidationError,
    LlamaSwitchError,
    PresetsError,
    ServiceClosedError,
    TuneNotFoundError,
    TuneStateError,
    TuneTimeoutError,
)
from llamaswitch._time import format_time
from llamaswitch._wire import to_wire
from llamaswitch.bench.config import BenchConfig
from llamaswitch.bench.store import _owner_alive, _process_tag
from llamaswitch.gateway.gateway import machine_budget
from llamaswitch.servers.config import ServerConfig
from llamaswitch.tuning.feasibility import Feasibility
from llamaswitch.tuning.mapping import owned_keys, to_server_config
from llamaswitch.tuning.objective import Measurement, Objective, measure, needs_more
from llamaswitch.tuning.options import TuneOptions
from llamaswitch.tuning.preset_file import COMMENT_PREFIX, write_preset
from llamaswitch.tuning.records import (
    SETTLED,
    best_of,
    measurement_of,
    summary,
    trial_attrs,
    trial_from_stored,
    tune_from_record,
)
from llamaswitch.tuning.space import TuneSpace, check_space, default_space
from llamaswitch.tuning.store import StoredTune, TuneStore
from llamaswitch.tuning.tune import Trial, Tune, TunePreset, TuneState

if TYPE_CHECKING:
    from llamaswitch._api import AsyncLlamaSwitch
    from llamaswitch._binaries import BinaryInfo
    from llamaswitch._catalog import ModelInfo
    from llamaswitch._gpu import GpuDevice

__all__ = ["ENUMERATE_LIMIT", "MAX_FAILURES_IN_A_ROW", "TuneRunner"]

logger = logging.getLogger(__name__)

#: Spaces up to this many points are checked point by point before a tune starts.
ENUMERATE_LIMIT: Final = 20_000
#: An exhaustive search records every pruned point of a space up to this size.
_LISTED_PRUNED: Final = 1_000
#: Random points checked in a larger space, to find that none can run.
_SAMPLE_POINTS: Final = 2_000
#: Failed trials in a row that end a tune (llama-bench is then broken, not one point).
MAX_FAILURES_IN_A_ROW: Final = 5
#: Repeated suggestions in a row after which an unmeasured point is queued.
_REPEATS_BEFORE_QUEUE: Final = 3

StopReason = Literal["cancel", "close"]


def _now() -> datetime:
    return datetime.now(UTC)


@attrs.define(eq=False)
class _Plan:
    """Everything a tune needs that is derived once from its request."""

    info: ModelInfo
    space: TuneSpace
    objective: Objective
    server: ServerConfig
    options: TuneOptions
    feasibility: Feasibility
    binary: BinaryInfo
    #: Every feasible point, when the space is small enough to list.
    feasible: list[dict[str, Any]] | None


@attrs.define(eq=False)
class _Live:
    """A running tune as the runner follows it (loop thread only)."""

    id: str
    plan: _Plan
    seed: int
    record: dict[str, Any]
    trials: dict[int, Trial] = attrs.Factory(dict)
    measurements: dict[int, Measurement] = attrs.Factory(dict)
    #: Point key -> the trial that settled it (completed, pruned or failed).
    seen: dict[tuple[tuple[str, str], ...], int] = attrs.Factory(dict)
    stop_reason: StopReason | None = None
    current_trial: int | None = None
    current_task: str | None = None
    failures_in_a_row: int = 0
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = attrs.Factory(asyncio.Event)

    @property
    def ordered(self) -> list[Trial]:
        return [self.trials[n] for n in sorted(self.trials)]


class TuneRunner:
    """Starts, follows, cancels and resumes tunes of one :class:`~llamaswitch.AsyncLlamaSwitch`.

    Call :meth:`close` at the end, from the same loop (the library does, before it
    closes the benchmark runner).
    """

    def __init__(self, ls: AsyncLlamaSwitch) -> None:
        self._ls = ls
        self._store = TuneStore(ls.settings.state_dir / "tune.sqlite3")
        self._opened = False
        self._opening = asyncio.Lock()
        self._live: dict[str, _Live] = {}
        self._owner = _process_tag(os.getpid())
        self._closed = False

    async def _open(self) -> None:
        async with self._opening:
            if self._closed:
                raise ServiceClosedError("the tune runner is closed")
            if not self._opened:
                await self._store.open()
                self._opened = True

    async def close(self) -> None:
        """Interrupt running tunes (their trials' tasks are stopped) and close the store."""
        self._closed = True
        for live in list(self._live.values()):
            live.stop_reason = live.stop_reason or "close"
            await self._stop_task(live)
        tasks = [live.task for live in self._live.values() if live.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._opened:
            self._opened = False
            await self._store.close()

    # -- starting -------------------------------------------------------------------------

    async def start(
        self,
        model: str,
        *,
        space: BenchConfig | Mapping[str, Any] | None,
        objective: Objective | str | Mapping[str, Any] | None,
        server: ServerConfig | Mapping[str, Any] | None,
        options: Mapping[str, Any],
    ) -> Tune:
        """Check the request, start the tune, return it at once (state ``running``)."""
        given_space, goal, base, opts = _parse(space, objective, server, options)
        await self._open()
        info = await self._ls.resolve_model(model)
        plan = await self._plan(info, given_space, goal, base, opts)
        tune_id = uuid.uuid4().hex[:16]
        seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(2**31)
        record = {
            "model": info.name,
            "model_path": info.relative_path,
            "space": plan.space.to_data(),
            "objective": goal.to_dict(),
            "server": base.to_dict(),
            "options": opts.to_dict(),
            "seed": seed,
            "binary_version": plan.binary.version,
            "created_at": format_time(_now()),
            "finished_at": None,
            "state": "running",
            "error": None,
            "owner": self._owner,
            "preset": None,
            "space_size": plan.space.size,
            "feasible": None if plan.feasible is None else len(plan.feasible),
            "summary": summary([]),
        }
        await self._store.create(tune_id, record)
        live = _Live(tune_id, plan, seed, record)
        self._launch(live)
        logger.info(
            "tune %s of %s started: %d points, budget %d",
            tune_id,
            info.name,
            plan.space.size,
            opts.budget,
        )
        return self._snapshot(live)

    async def _machine(self) -> tuple[BinaryInfo, BinaryInfo, list[GpuDevice]]:
        ls = self._ls
        bench = await ls.binary("llama-bench")
        server = await ls.binary("llama-server")
        return bench, server, await asyncio.to_thread(ls.gpu.devices)

    async def default_space(
        self, model: str, objective: Objective | str | Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The space derived for ``model`` (BenchConfig's JSON form)."""
        goal = Objective.coerce(objective)
        info = await self._ls.resolve_model(model)
        bench, server, devices = await self._machine()
        return _derived(info, goal, bench, server, devices)

    async def _plan(
        self,
        info: ModelInfo,
        given: TuneSpace | None,
        objective: Objective,
        base: ServerConfig,
        options: TuneOptions,
    ) -> _Plan:
        ls = self._ls
        bench, server, devices = await self._machine()
        if given is None or options.extend_default:
            data = _derived(info, objective, bench, server, devices)
            if given is not None:
                data.update(given.to_data())
            space = TuneSpace.from_data(data)
        else:
            space = given
        check_space(
            space, bench=bench.capabilities, server=server.capabilities, model=info.path, base=base
        )
        # The objective's sizes too (-d on a build without it is refused by name).
        BenchConfig(**objective.bench_fields()).to_argv(bench.capabilities, info.path)
        feasibility = Feasibility(
            info=info,
            base=base,
            gpu_layers=ls.settings.gpu_layers,
            server=server.capabilities,
            budget=machine_budget(ls.settings, devices),
            gpus=[d.index for d in devices],
            device_totals={d.index: float(d.memory_total_mib) for d in devices},
            flash_by_default=bench.dialect == "current",
        )
        # Thousands of estimates: off the loop.
        feasible = await asyncio.to_thread(_feasible_points, space, feasibility)
        return _Plan(info, space, objective, base, options, feasibility, bench, feasible)

    def _launch(self, live: _Live) -> None:
        self._live[live.id] = live
        live.task = asyncio.create_task(self._run(live), name=f"tune {live.id}")
        self._emit_status(live, "running")

    # -- the search -----------------------------------------------------------------------

    async def _run(self, live: _Live) -> None:
        state: TuneState = "failed"
        error: str | None = None
        try:
            state, error = await self._search(live)
            if state == "completed" and live.plan.options.save_preset:
                best = best_of(live.ordered)
                if best is not None:
                    await self._save(live.id, live.record, live.plan, best)
        except asyncio.CancelledError:
            state, error = "interrupted", "llamaswitch was closed while the tune ran"
            raise
        except Exception as exc:  # any failure must end the tune, not leave it "running"
            logger.exception("tune %s failed", live.id)
            state, error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            await self._finish(live, state, error)

    async def _search(self, live: _Live) -> tuple[TuneState, str | None]:
        plan, store = live.plan, self._store
        budget = plan.options.budget
        await store.bind(
            live.id, seed=live.seed + len(live.trials), startup_trials=_startup_trials(budget)
        )
        unseen = self._unseen(live)
        if unseen is not None and budget - self._done(live) >= len(unseen):
            # The budget covers every feasible point left: measure them all, in a
            # seeded order; a sampler could only repeat itself. The points that cannot
            # run go first, each recorded as pruned with its reason (small spaces only).
            random.Random(live.seed).shuffle(unseen)  # noqa: S311 - an order, not a secret
            known = {plan.space.key(p) for p in unseen} | set(live.seen)
            pruned = []
            if plan.space.size <= _LISTED_PRUNED:
                pruned = [p for p in plan.space.points() if plan.space.key(p) not in known]
            await store.enqueue(live.id, [*pruned, *unseen])
        repeats = 0
        asks_left = 20 * budget + 100
        while live.stop_reason is None and self._done(live) < budget:
            if asks_left <= 0:
                logger.warning(
                    "tune %s: the sampler kept proposing measured points; stopping with %d trials",
                    live.id,
                    self._done(live),
                )
                break
            unseen = self._unseen(live)
            if unseen is not None and not unseen and not await store.waiting(live.id):
                break  # every feasible point is measured, nothing left in the queue
            asks_left -= 1
            number, point = await store.ask(live.id, plan.space)
            key = plan.space.key(point)
            if key in live.seen:
                await self._repeat(live, number, live.seen[key])
                repeats += 1
                if repeats >= _REPEATS_BEFORE_QUEUE and unseen:
                    pick = random.Random(live.seed + number).choice(unseen)  # noqa: S311 - as above
                    await store.enqueue(live.id, [pick])
                    repeats = 0
                continue
            repeats = 0
            reason = plan.feasibility.problem(plan.space.settings(point))
            if reason is not None:
                await self._settle(
                    live,
                    Trial(
                        number=number,
                        state="pruned",
                        params=point,
                        reason=reason,
                        finished_at=_now(),
                    ),
                    None,
                )
                continue
            await self._trial(live, number, point)
            if live.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                last = live.trials[max(live.trials)].reason
                return "failed", f"{MAX_FAILURES_IN_A_ROW} trials in a row failed; the last: {last}"
        if live.stop_reason == "cancel":
            return "cancelled", None
        if live.stop_reason == "close":
            return "interrupted", "llamaswitch was closed while the tune ran"
        if best_of(live.ordered) is None:
            failed = [t for t in live.ordered if t.state == "failed"]
            why = f"; the last failure: {failed[-1].reason}" if failed else ""
            return "failed", f"no trial completed{why}"
        return "completed", None

    def _done(self, live: _Live) -> int:
        return sum(1 for t in live.trials.values() if t.state in ("completed", "failed"))

    def _unseen(self, live: _Live) -> list[dict[str, Any]] | None:
        if live.plan.feasible is None:
            return None
        return [p for p in live.plan.feasible if live.plan.space.key(p) not in live.seen]

    async def _repeat(self, live: _Live, number: int, earlier: int) -> None:
        """Answer a repeated suggestion with the earlier trial's result, without a run."""
        prior = live.trials[earlier]
        outcome = {"completed": "completed", "pruned": "pruned"}.get(prior.state, "failed")
        await self._store.tell(
            live.id,
            number,
            outcome,  # type: ignore[arg-type]
            value=prior.score,
            attrs={"duplicate_of": earlier},
        )

    async def _trial(self, live: _Live, number: int, point: dict[str, Any]) -> None:
        """Measure one point; adds runs while it is too close to the best to tell apart."""
        plan = live.plan
        started = _now()
        trial = Trial(number=number, state="running", params=point, started_at=started)
        live.trials[number] = trial
        live.current_trial = number
        self._emit_trial(live, trial)
        task_ids: list[str] = []
        measurement: Measurement | None = None
        repetitions = plan.options.repetitions
        failure: str | None = None
        stopped: Literal["cancelled", "interrupted"] | None = None
        while True:
            config = plan.space.bench_config(point, plan.objective, repetitions)
            try:
                task_id = await self._ls.bench.submit(
                    plan.info, config, tune_id=live.id, timeout_s=plan.options.trial_timeout_s
                )
            except ServiceClosedError:
                stopped = "interrupted"
                live.stop_reason = live.stop_reason or "close"
                break
            task_ids.append(task_id)
            live.current_task = task_id
            live.trials[number] = attrs.evolve(trial, task_ids=tuple(task_ids))
            await self._store.annotate(live.id, number, {"task_ids": task_ids})
            if live.stop_reason is not None:  # a cancel or close came while it was queued
                await self._stop_task(live)
            task = await self._ls.bench.wait(task_id)
            live.current_task = None
            if task.state != "completed":
                if live.stop_reason is not None:
                    stopped = "cancelled" if live.stop_reason == "cancel" else "interrupted"
                elif task.state == "interrupted":
                    stopped = "interrupted"
                    live.stop_reason = "close"
                else:
                    failure = task.error or f"its benchmark task ended {task.state}"
                    if measurement is not None:
                        failure = f"a run adding repetitions failed ({failure}); kept the first"
                break
            part = measure(task.results, plan.objective, repetitions)
            if part is None:
                failure = failure or (
                    f"llama-bench reported neither {plan.objective.pp_test} "
                    f"nor {plan.objective.tg_test}"
                )
                break
            measurement = part if measurement is None else measurement.merge(part)
            best = self._best_measurement(live, exclude=number)
            if not needs_more(
                measurement, best, plan.objective, max_repetitions=plan.options.max_repetitions
            ):
                break
            # Doubling the runs each time: closeness calls for a sharper figure, fast.
            repetitions = min(
                measurement.repetitions, plan.options.max_repetitions - measurement.repetitions
            )
        live.current_trial = None
        finished = _now()
        if stopped is not None:
            result = Trial(
                number=number,
                state=stopped,
                params=point,
                task_ids=tuple(task_ids),
                reason=f"stopped: the tune was {stopped.replace('interrupted', 'closed')}",
                started_at=started,
                finished_at=finished,
            )
            await self._settle(live, result, None)
            return
        if measurement is None:
            live.failures_in_a_row += 1
            result = Trial(
                number=number,
                state="failed",
                params=point,
                task_ids=tuple(task_ids),
                reason=failure,
                started_at=started,
                finished_at=finished,
            )
            await self._settle(live, result, None)
            return
        live.failures_in_a_row = 0
        goal = plan.objective
        result = Trial(
            number=number,
            state="completed",
            params=point,
            task_ids=tuple(task_ids),
            pp_ts=measurement.pp.mean,
            pp_stddev=measurement.pp.stddev,
            tg_ts=measurement.tg.mean,
            tg_stddev=measurement.tg.stddev,
            score=goal.score(measurement),
            score_error=goal.score_error(measurement),
            repetitions=measurement.repetitions,
            reason=failure,
            started_at=started,
            finished_at=finished,
        )
        await self._settle(live, result, measurement)

    def _best_measurement(self, live: _Live, *, exclude: int) -> Measurement | None:
        best = best_of(t for n, t in live.trials.items() if n != exclude)
        return None if best is None else live.measurements.get(best.number)

    async def _settle(self, live: _Live, trial: Trial, measurement: Measurement | None) -> None:
        """Record a finished trial: in the study, in the tune's summary, as an event."""
        live.trials[trial.number] = trial
        if measurement is not None:
            live.measurements[trial.number] = measurement
        if trial.state in SETTLED:
            live.seen[live.plan.space.key(trial.params)] = trial.number
        outcome = trial.state if trial.state in SETTLED else "failed"
        await self._store.tell(
            live.id,
            trial.number,
            outcome,  # type: ignore[arg-type]
            value=trial.score,
            attrs=trial_attrs(trial, measurement),
        )
        live.record["summary"] = summary(live.ordered)
        await self._store.update(live.id, {"summary": live.record["summary"]})
        self._emit_trial(live, trial)

    async def _stop_task(self, live: _Live) -> None:
        task_id = live.current_task
        if task_id is not None:
            with contextlib.suppress(LlamaSwitchError):
                await self._ls.bench.cancel(task_id)

    async def _finish(self, live: _Live, state: TuneState, error: str | None) -> None:
        changes = {
            "state": state,
            "error": error,
            "finished_at": format_time(_now()),
            "summary": summary(live.ordered),
        }
        live.record.update(changes)
        try:
            await self._store.update(live.id, changes)
        except LlamaSwitchError:
            logger.exception("tune %s: its final state (%s) could not be recorded", live.id, state)
        finally:
            self._live.pop(live.id, None)
            live.done.set()
            level = logging.INFO if state == "completed" else logging.WARNING
            logger.log(level, "tune %s %s%s", live.id, state, f": {error}" if error else "")
            self._emit_status(live, state)

    # -- the preset -----------------------------------------------------------------------

    async def _save(
        self,
        tune_id: str,
        record: dict[str, Any],
        plan: _Plan,
        trial: Trial,
        preset_id: str | None = None,
        *,
        raise_unwritten: bool = False,
    ) -> TunePreset:
        """Write ``trial`` as a preset and make the gateway read it; recorded either way.

        ``raise_unwritten``: raise the :class:`~llamaswitch.PresetsError` when the file
        could not be written (a preset asked for by name must not look saved); a file
        written that the gateway did not take is returned with its ``error``."""
        ls = self._ls
        preset_id = preset_id or plan.options.preset or default_preset_id(plan.info.name)
        path = ls.settings.presets_path
        settings = plan.space.settings(trial.params)
        config = to_server_config(settings, plan.server)
        owned = owned_keys(settings) | set(plan.server.to_dict())
        lines = _comment(tune_id, plan, trial, record)
        error: str | None = None
        written: datetime | None = None
        failure: PresetsError | None = None
        try:
            await asyncio.to_thread(
                write_preset,
                path,
                preset_id,
                file=plan.info.relative_path,
                settings=config.to_dict(),
                owned=owned,
                comment=lines,
            )
            written = _now()
            await ls.reload_presets()
        except PresetsError as exc:
            error, failure = str(exc), exc
            logger.warning("tune %s: preset %s: %s", tune_id, preset_id, error)
        preset = TunePreset(
            id=preset_id, path=str(path), trial=trial.number, written_at=written, error=error
        )
        record["preset"] = to_wire(preset)
        await self._store.update(tune_id, {"preset": record["preset"]})
        if failure is not None and written is None and raise_unwritten:
            raise failure
        return preset

    async def save_preset(
        self, tune_id: str, *, trial: int | None = None, preset: str | None = None
    ) -> Tune:
        """Write a completed trial (default: the best) of a tune as a preset, now.

        Raises :class:`~llamaswitch.PresetsError` when the presets file cannot be
        written (it is invalid, or would be); the tune records the failure too."""
        if preset is not None:
            TuneOptions(preset=preset)  # the id's rule, naming the field
        await self._open()
        live = self._live.get(tune_id)
        stored = await self._stored(tune_id)
        record = live.record if live is not None else dict(stored.record)
        plan = live.plan if live is not None else await self._replan(tune_id, record)
        trials = self._trials(stored, plan.objective, live)
        chosen = (
            best_of(trials)
            if trial is None
            else next((t for t in trials if t.number == trial), None)
        )
        if chosen is None or chosen.state != "completed":
            what = "no completed trial" if trial is None else f"no completed trial {trial}"
            raise TuneStateError(
                tune_id, self._state(stored, live), f"tune {tune_id} has {what} to save as a preset"
            )
        await self._save(tune_id, record, plan, chosen, preset, raise_unwritten=True)
        return await self.get(tune_id)

    # -- resume, cancel, queries ----------------------------------------------------------

    async def resume(self, tune_id: str, *, budget: int | None = None) -> Tune:
        """Go on with a tune that stopped (interrupted, cancelled, failed), or give a
        completed one a larger ``budget``; its measured trials are kept."""
        await self._open()
        stored = await self._stored(tune_id)
        state = self._state(stored, self._live.get(tune_id))
        if state == "running":
            where = "here" if tune_id in self._live else "in another llamaswitch process"
            raise TuneStateError(tune_id, state, f"tune {tune_id} is running {where}")
        record = dict(stored.record)
        options = TuneOptions.from_dict(record.get("options") or {})
        if budget is not None:
            options = attrs.evolve(options, budget=budget)
        plan = await self._replan(tune_id, record, options)
        if plan.binary.version != record.get("binary_version"):
            raise TuneStateError(
                tune_id,
                state,
                (
                    f"tune {tune_id} was measured with llama-bench {record.get('binary_version')}; "
                    f"this one is {plan.binary.version}, whose figures would not compare: start a "
                    "new tune"
                ),
            )
        trials = self._trials(stored, plan.objective, None)
        done = sum(1 for t in trials if t.state in ("completed", "failed"))
        if state == "completed" and done >= options.budget:
            raise TuneStateError(
                tune_id,
                state,
                f"tune {tune_id} completed its budget of "
                f"{options.budget} trials; give a larger budget to go on",
            )
        live = _Live(tune_id, plan, int(record.get("seed", 0)), record)
        for stale in (t for t in stored.trials if t.state == "RUNNING"):
            # Its process is gone: it is measured again.
            await self._store.tell(
                tune_id, stale.number, "failed", attrs={"outcome": "interrupted"}
            )
        for trial in self._trials(await self._stored(tune_id), plan.objective, None):
            live.trials[trial.number] = trial
            if trial.state in SETTLED:
                live.seen[plan.space.key(trial.params)] = trial.number
        for item in stored.trials:
            measurement = measurement_of(item.attrs)
            if measurement is not None and item.state == "COMPLETE":
                live.measurements[item.number] = measurement
        changes = {
            "state": "running",
            "error": None,
            "finished_at": None,
            "owner": self._owner,
            "options": options.to_dict(),
        }
        record.update(changes)
        await self._store.update(tune_id, changes)
        self._launch(live)
        logger.info("tune %s resumed with %d trials measured", tune_id, done)
        return self._snapshot(live)

    async def _replan(
        self, tune_id: str, record: Mapping[str, Any], options: TuneOptions | None = None
    ) -> _Plan:
        info = await self._ls.resolve_model(str(record.get("model_path") or record.get("model")))
        space = TuneSpace.from_data(record.get("space") or {})
        objective = Objective.coerce(record.get("objective") or {})
        server = ServerConfig.from_dict(record.get("server") or {})
        opts = options or TuneOptions.from_dict(record.get("options") or {})
        return await self._plan(
            info, space, objective, server, attrs.evolve(opts, extend_default=False)
        )

    async def cancel(self, tune_id: str) -> Tune:
        """Stop a running tune (its running trial's task too); a stopped one is returned
        as it is. It ends ``cancelled``, keeping its trials: :meth:`resume` goes on."""
        await self._open()
        live = self._live.get(tune_id)
        if live is None:
            tune = await self.get(tune_id)
            if tune.state == "running":
                raise TuneStateError(
                    tune_id,
                    tune.state,
                    f"tune {tune_id} runs in another llamaswitch process: cancel it there",
                )
            return tune
        live.stop_reason = live.stop_reason or "cancel"
        await self._stop_task(live)
        await live.done.wait()
        return await self.get(tune_id)

    async def wait(self, tune_id: str, timeout_s: float | None = None) -> Tune:
        """Wait until the tune stops; :class:`~llamaswitch.TuneTimeoutError` after
        ``timeout_s`` (it keeps running)."""
        await self._open()
        live = self._live.get(tune_id)
        if live is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    await live.done.wait()
            except TimeoutError:
                raise TuneTimeoutError(
                    f"tune {tune_id} still running after {timeout_s:g} s"
                ) from None
        return await self.get(tune_id)

    async def get(self, tune_id: str) -> Tune:
        """A tune with its trials (:class:`~llamaswitch.TuneNotFoundError` if unknown)."""
        await self._open()
        live = self._live.get(tune_id)
        if live is not None:
            return self._snapshot(live)
        stored = await self._stored(tune_id)
        objective = Objective.coerce(stored.record.get("objective") or {})
        return tune_from_record(
            tune_id,
            stored.record,
            self._trials(stored, objective, None),
            state=self._state(stored, None),
        )

    async def list_tunes(self, *, model: str | None = None, limit: int = 50) -> list[Tune]:
        """Tunes, newest first (without their trials: :meth:`get` has them)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigValidationError([("limit", f"must be a whole number >= 1, got {limit!r}")])
        await self._open()
        found = []
        for stored in await self._store.list_tunes(10_000 if model else limit):
            record = stored.record
            if model is not None and model not in (record.get("model"), record.get("model_path")):
                continue
            live = self._live.get(stored.id)
            if live is not None:
                found.append(attrs.evolve(self._snapshot(live), trials=()))
            else:
                found.append(
                    tune_from_record(stored.id, record, None, state=self._state(stored, None))
                )
            if len(found) >= limit:
                break
        return found

    async def _stored(self, tune_id: str) -> StoredTune:
        stored = await self._store.load(tune_id)
        if stored is None:
            raise TuneNotFoundError(f"no tune {tune_id!r}")
        return stored

    def _state(self, stored: StoredTune, live: _Live | None) -> TuneState:
        if live is not None:
            return "running"
        state = str(stored.record.get("state", "interrupted"))
        if state == "running" and not _owner_alive(stored.record.get("owner"), self._owner):
            # Its process is gone (killed, or the machine rebooted): resume goes on.
            return "interrupted"
        return state if state in ("running", "completed", "failed", "cancelled") else "interrupted"  # type: ignore[return-value]

    def _trials(self, stored: StoredTune, objective: Objective, live: _Live | None) -> list[Trial]:
        if live is not None:
            return live.ordered
        found = (trial_from_stored(t, objective, running_here=False) for t in stored.trials)
        return [t for t in found if t is not None]

    # -- snapshots and events -------------------------------------------------------------

    def _snapshot(self, live: _Live) -> Tune:
        return tune_from_record(
            live.id,
            live.record,
            live.ordered,
            state="running",
            current=(live.current_trial, live.current_task),
        )

    def _emit_status(self, live: _Live, state: str) -> None:
        # Type "status", not "state": a "state" event of another topic reads as a
        # server's in the service's metrics.
        self._ls.events.emit(
            "tune",
            "status",
            tune_id=live.id,
            state=state,
            model=live.plan.info.name,
            error=live.record.get("error"),
        )

    def _emit_trial(self, live: _Live, trial: Trial) -> None:
        self._ls.events.emit(
            "tune",
            "trial",
            tune_id=live.id,
            number=trial.number,
            state=trial.state,
            params=dict(trial.params),
            score=trial.score,
            pp_ts=trial.pp_ts,
            tg_ts=trial.tg_ts,
            reason=trial.reason,
            done=self._done(live),
            budget=live.plan.options.budget,
        )


# -- helpers ----------------------------------------------------------------------------------


def _parse(
    space: BenchConfig | Mapping[str, Any] | None,
    objective: Objective | str | Mapping[str, Any] | None,
    server: ServerConfig | Mapping[str, Any] | None,
    options: Mapping[str, Any],
) -> tuple[TuneSpace | None, Objective, ServerConfig, TuneOptions]:
    """The request's parts, every problem of every part reported at once."""
    errors: list[tuple[str, str]] = []
    parsed: dict[str, Any] = {}

    def attempt(name: str, build: Any) -> None:
        try:
            parsed[name] = build()
        except ConfigValidationError as exc:
            errors.extend(exc.errors)

    attempt("options", lambda: TuneOptions.from_dict(options))
    attempt("objective", lambda: Objective.coerce(objective))
    attempt(
        "server",
        lambda: (
            server
            if isinstance(server, ServerConfig)
            else ServerConfig.from_dict(server, path="server")
        ),
    )
    if space is not None:
        attempt(
            "space",
            lambda: (
                TuneSpace.from_config(space)
                if isinstance(space, BenchConfig)
                else TuneSpace.from_data(space)
            ),
        )
    if errors:
        raise ConfigValidationError(errors)
    return parsed.get("space"), parsed["objective"], parsed["server"], parsed["options"]


def _derived(
    info: ModelInfo,
    objective: Objective,
    bench: BinaryInfo,
    server: BinaryInfo,
    devices: list[GpuDevice],
) -> dict[str, Any]:
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    return default_space(
        info,
        bench=bench.capabilities,
        server=server.capabilities,
        physical_cores=cores,
        gpu_count=len(devices),
        objective=objective,
    )


def _startup_trials(budget: int) -> int:
    """Random trials before TPE models the results: a quarter of the budget, 1 to 10."""
    return max(1, min(10, budget // 4))


def _feasible_points(space: TuneSpace, feasibility: Feasibility) -> list[dict[str, Any]] | None:
    """Every feasible point of a small space (None for a larger one); refuses a space
    with no feasible point, naming ``space`` and the reasons."""
    if space.size <= ENUMERATE_LIMIT:
        candidates = list(space.points())
    else:
        rng = random.Random(0)  # noqa: S311 - a sample, not a secret
        candidates = [
            {d.name: rng.choice(d.values) for d in space.dimensions} for _ in range(_SAMPLE_POINTS)
        ]
    feasible: list[dict[str, Any]] = []
    reasons: dict[str, str] = {}
    for point in candidates:
        reason = feasibility.problem(space.settings(point))
        if reason is None:
            feasible.append(point)
        else:
            reasons.setdefault(re.sub(r"\d+", "N", reason), reason)  # one of each kind
    if not feasible:
        listed = "; ".join(list(reasons.values())[:3])
        checked = "" if space.size <= ENUMERATE_LIMIT else f" of {len(candidates)} checked"
        raise ConfigValidationError([("space", f"has no point that can run{checked}: {listed}")])
    return feasible if space.size <= ENUMERATE_LIMIT else None


_NOT_ID: Final = re.compile(r"[^A-Za-z0-9._:+-]+")


def default_preset_id(model_name: str) -> str:
    """``<model stem>-tuned``, made a valid preset id."""
    stem = _NOT_ID.sub("-", Path(model_name).stem).strip("-._:+") or "model"
    return f"{stem[:120]}-tuned"


def _comment(tune_id: str, plan: _Plan, trial: Trial, record: Mapping[str, Any]) -> list[str]:
    """The preset's comment lines: the figures, the binary's version, the date."""
    goal = plan.objective

    def speed(mean: float | None, stddev: float | None) -> str:
        if mean is None:
            return "?"
        spread = "" if stddev is None or not math.isfinite(stddev) else f" ± {stddev:.2f}"
        return f"{mean:.2f}{spread} t/s"

    return [
        f"{COMMENT_PREFIX} {tune_id} (trial {trial.number}, {trial.repetitions} runs each): "
        f"{goal.tg_test} {speed(trial.tg_ts, trial.tg_stddev)}, "
        f"{goal.pp_test} {speed(trial.pp_ts, trial.pp_stddev)}",
        f"{COMMENT_PREFIX} {tune_id}: llama-bench {record.get('binary_version')}, "
        f"{format_time(_now())[:10]}, objective {goal.label}",
    ]
