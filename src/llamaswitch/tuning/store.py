"""Tunes on disk: one Optuna study per tune, in SQLite in the state folder.

Optuna's RDB storage (``tune.sqlite3`` beside the benchmark history) keeps each tune as a
study named by its id: the request and the tune's state as the study's user attributes,
each trial with its parameters, its score and what llamaswitch measured (the benchmark
task ids, both speeds and their spread) as the trial's user attributes. A tune killed
with its process resumes from there: its finished trials are kept, the one that ran is
marked failed and measured again.

Optuna is imported here and nowhere else, lazily (:func:`require_optuna`): it is the
``tune`` extra. Every call runs on the store's one thread, which owns the storage (the
study objects and their samplers are not thread-safe); Optuna's and SQLAlchemy's errors
are raised as :class:`~llamaswitch.TuneError`.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import attrs

from llamaswitch._db_worker import DatabaseWorker
from llamaswitch._errors import DependencyMissingError, ServiceClosedError, TuneError
from llamaswitch.tuning.space import TuneSpace

if TYPE_CHECKING:
    import optuna

__all__ = ["Outcome", "StoredTrial", "StoredTune", "TuneStore", "require_optuna"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

Outcome = Literal["completed", "pruned", "failed"]
#: The study attribute holding llamaswitch's record of the tune.
_RECORD: Final = "llamaswitch"
#: Seconds a write waits for another process's lock on the database.
_BUSY_TIMEOUT_S: Final = 30


def require_optuna() -> ModuleType:
    """Optuna, or :class:`~llamaswitch.DependencyMissingError` naming the ``tune`` extra."""
    try:
        import optuna
    except ImportError as exc:
        raise DependencyMissingError("tune", [exc.name or "optuna"], "tuning") from None
    # Optuna prints its own records on stderr ("A new study created..."), under every
    # command and service; through logging instead, the application decides.
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    return optuna


@attrs.frozen
class StoredTrial:
    """One trial as the study holds it."""

    number: int
    #: Optuna's state name: ``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ``WAITING``.
    state: str
    params: Mapping[str, Any]
    value: float | None
    attrs: Mapping[str, Any]


@attrs.frozen
class StoredTune:
    """One tune as the study holds it: llamaswitch's record, then its trials in order."""

    id: str
    record: Mapping[str, Any]
    trials: tuple[StoredTrial, ...] = ()


class TuneStore:
    """Async access to the tunes' studies; every call runs on the store's thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = DatabaseWorker("llamaswitch-tune-db", "tune database")
        self._optuna: ModuleType | None = None
        self._storage: optuna.storages.RDBStorage | None = None
        self._studies: dict[str, optuna.Study] = {}

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (creating if needed) the database; needs the ``tune`` extra."""
        self._optuna = require_optuna()
        self._worker.start()
        try:
            await self._call(self._connect)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Release the database and stop the store's thread."""
        try:
            await self._worker.stop(self._disconnect)
        except Exception as exc:
            self._raise_storage_error(exc)
            raise

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._worker.call(fn, *args)
        except Exception as exc:
            self._raise_storage_error(exc)
            raise

    def _raise_storage_error(self, exc: Exception) -> None:
        """Raise ``exc`` as a :class:`~llamaswitch.TuneError` if the storage failed."""
        if not isinstance(exc, TuneError | ServiceClosedError) and self._is_storage_error(exc):
            raise TuneError(f"tune database {self.path}: {exc}") from exc

    def _is_storage_error(self, exc: Exception) -> bool:
        import sqlalchemy.exc

        optuna = self._optuna
        known: tuple[type[Exception], ...] = (
            sqlalchemy.exc.SQLAlchemyError,
            sqlite3.Error,
            OSError,
        )
        if optuna is not None:
            known = (*known, optuna.exceptions.OptunaError)
        return isinstance(exc, known)

    # -- public operations ----------------------------------------------------------------

    async def create(self, tune_id: str, record: Mapping[str, Any]) -> None:
        """A new study for a tune, holding its record."""
        await self._call(self._create, tune_id, dict(record))

    async def update(self, tune_id: str, changes: Mapping[str, Any]) -> None:
        """Change fields of a tune's record (its state, times, preset...)."""
        await self._call(self._update, tune_id, dict(changes))

    async def bind(self, tune_id: str, *, seed: int, startup_trials: int) -> None:
        """Load a tune's study with a TPE sampler, ready to ask (after a restart too)."""
        await self._call(self._bind, tune_id, seed, startup_trials)

    async def ask(self, tune_id: str, space: TuneSpace) -> tuple[int, dict[str, Any]]:
        """The sampler's next point of ``space``: ``(trial number, {field: value})``."""
        return await self._call(self._ask, tune_id, space)

    async def enqueue(self, tune_id: str, points: Sequence[Mapping[str, Any]]) -> None:
        """Points to measure next, in this order, before the sampler proposes any."""
        await self._call(self._enqueue, tune_id, [dict(p) for p in points])

    async def waiting(self, tune_id: str) -> int:
        """How many queued points the sampler will hand out before proposing its own."""
        return await self._call(self._waiting, tune_id)

    async def annotate(self, tune_id: str, number: int, attrs: Mapping[str, Any]) -> None:
        """Record what is known of a running trial (its task ids so far...)."""
        await self._call(self._annotate, tune_id, number, dict(attrs))

    async def tell(
        self,
        tune_id: str,
        number: int,
        outcome: Outcome,
        *,
        value: float | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Finish a trial: measured (with its score), pruned, or failed."""
        await self._call(self._tell, tune_id, number, outcome, value, dict(attrs or {}))

    async def load(self, tune_id: str) -> StoredTune | None:
        """One tune with its trials, or None."""
        return await self._call(self._load, tune_id)

    async def list_tunes(self, limit: int) -> list[StoredTune]:
        """The newest tunes first, without their trials."""
        return await self._call(self._list, limit)

    async def delete(self, tune_id: str) -> bool:
        """Delete a tune's study; whether there was one."""
        return await self._call(self._delete, tune_id)

    # -- on the store's thread ------------------------------------------------------------

    def _db(self) -> optuna.storages.RDBStorage:
        if self._storage is None:
            raise ServiceClosedError("the tune database is closed")
        return self._storage

    def _connect(self) -> None:
        if self._storage is not None:
            return
        assert self._optuna is not None  # noqa: S101 - open() imported it
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._storage = self._optuna.storages.RDBStorage(
            f"sqlite:///{self.path}",
            engine_kwargs={"connect_args": {"timeout": _BUSY_TIMEOUT_S}},
        )

    def _disconnect(self) -> None:
        storage, self._storage = self._storage, None
        self._studies.clear()
        if storage is not None:
            storage.remove_session()
            storage.engine.dispose()

    def _study_id(self, tune_id: str) -> int | None:
        try:
            return self._db().get_study_id_from_name(tune_id)
        except KeyError:
            return None

    def _create(self, tune_id: str, record: dict[str, Any]) -> None:
        optuna = self._optuna
        assert optuna is not None  # noqa: S101 - opened
        study_id = self._db().create_new_study([optuna.study.StudyDirection.MAXIMIZE], tune_id)
        self._db().set_study_user_attr(study_id, _RECORD, record)

    def _update(self, tune_id: str, changes: dict[str, Any]) -> None:
        study_id = self._study_id(tune_id)
        if study_id is None:
            raise TuneError(f"no tune {tune_id} in the database")
        record = dict(self._db().get_study_user_attrs(study_id).get(_RECORD, {}))
        record.update(changes)
        self._db().set_study_user_attr(study_id, _RECORD, record)

    def _bind(self, tune_id: str, seed: int, startup_trials: int) -> None:
        optuna = self._optuna
        assert optuna is not None  # noqa: S101 - opened
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
        self._studies[tune_id] = optuna.load_study(
            study_name=tune_id, storage=self._db(), sampler=sampler
        )

    def _bound(self, tune_id: str) -> optuna.Study:
        study = self._studies.get(tune_id)
        if study is None:
            raise TuneError(f"tune {tune_id} is not bound to a sampler")
        return study

    def _distributions(self, space: TuneSpace) -> dict[str, Any]:
        optuna = self._optuna
        assert optuna is not None  # noqa: S101 - opened
        found: dict[str, Any] = {}
        for dimension in space.dimensions:
            step = dimension.step
            if step is not None:
                # An ordered run: TPE models it as numbers, near values alike.
                found[dimension.name] = optuna.distributions.IntDistribution(
                    dimension.values[0], dimension.values[-1], step=step
                )
            else:
                found[dimension.name] = optuna.distributions.CategoricalDistribution(
                    list(dimension.values)
                )
        return found

    def _ask(self, tune_id: str, space: TuneSpace) -> tuple[int, dict[str, Any]]:
        trial = self._bound(tune_id).ask(self._distributions(space))
        return trial.number, dict(trial.params)

    def _enqueue(self, tune_id: str, points: list[dict[str, Any]]) -> None:
        study = self._bound(tune_id)
        for point in points:
            study.enqueue_trial(point)

    def _waiting(self, tune_id: str) -> int:
        optuna = self._optuna
        assert optuna is not None  # noqa: S101 - opened
        waiting = (optuna.trial.TrialState.WAITING,)
        return len(self._bound(tune_id).get_trials(deepcopy=False, states=waiting))

    def _trial_id(self, tune_id: str, number: int) -> int:
        study_id = self._study_id(tune_id)
        if study_id is None:
            raise TuneError(f"no tune {tune_id} in the database")
        return self._db().get_trial_id_from_study_id_trial_number(study_id, number)

    def _annotate(self, tune_id: str, number: int, attrs: dict[str, Any]) -> None:
        trial_id = self._trial_id(tune_id, number)
        for key, value in attrs.items():
            self._db().set_trial_user_attr(trial_id, key, value)

    def _tell(
        self,
        tune_id: str,
        number: int,
        outcome: Outcome,
        value: float | None,
        attrs: dict[str, Any],
    ) -> None:
        optuna = self._optuna
        assert optuna is not None  # noqa: S101 - opened
        self._annotate(tune_id, number, attrs)
        state = {
            "completed": optuna.trial.TrialState.COMPLETE,
            "pruned": optuna.trial.TrialState.PRUNED,
            "failed": optuna.trial.TrialState.FAIL,
        }[outcome]
        study = self._studies.get(tune_id) or optuna.load_study(
            study_name=tune_id, storage=self._db()
        )
        study.tell(
            number, value if outcome == "completed" else None, state=state, skip_if_finished=True
        )

    def _load(self, tune_id: str) -> StoredTune | None:
        study_id = self._study_id(tune_id)
        if study_id is None:
            return None
        db = self._db()
        record = db.get_study_user_attrs(study_id).get(_RECORD, {})
        trials = tuple(
            StoredTrial(
                number=t.number,
                state=t.state.name,
                params=dict(t.params),
                value=t.value if t.state.name == "COMPLETE" else None,
                attrs=dict(t.user_attrs),
            )
            for t in db.get_all_trials(study_id, deepcopy=False)
        )
        return StoredTune(tune_id, record, trials)

    def _list(self, limit: int) -> list[StoredTune]:
        found = [
            StoredTune(s.study_name, s.user_attrs.get(_RECORD, {}))
            for s in self._db().get_all_studies()
            if _RECORD in s.user_attrs
        ]
        found.sort(key=lambda t: str(t.record.get("created_at", "")), reverse=True)
        return found[:limit]

    def _delete(self, tune_id: str) -> bool:
        study_id = self._study_id(tune_id)
        if study_id is None:
            return False
        self._db().delete_study(study_id)
        self._studies.pop(tune_id, None)
        return True
