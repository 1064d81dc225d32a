"""The benchmark history: every task and every finished test, in SQLite.

One database file in the state folder (``Settings.database_path``), opened with the
standard library's :mod:`sqlite3` in WAL mode. All database work runs on one dedicated
thread that owns the only connection: calls from the event loop never block it, writes
are serialised without lock contention, and the connection is never shared across
threads (which :mod:`sqlite3` forbids by default).

Results are written one row per finished test, as llama-bench reports it, and
committed at once: a crash of llamaswitch loses nothing already measured. An imported
task and its results are written in one transaction: all of it or nothing. On open,
tasks left ``queued`` or ``running`` by a previous process are marked ``interrupted``.
:mod:`sqlite3` errors are raised as :class:`~llamaswitch.BenchError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs
import psutil

from llamaswitch._db_worker import DatabaseWorker
from llamaswitch._errors import BenchError, ServiceClosedError
from llamaswitch._text import scrub, scrub_data
from llamaswitch._time import format_time
from llamaswitch._wire import to_wire
from llamaswitch.bench.parser import BenchResult
from llamaswitch.bench.task import FINAL_STATES, UNFINISHED_STATES

__all__ = [
    "StoredTask",
    "TaskStore",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS tasks (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    source          TEXT NOT NULL,              -- run | imported
    model           TEXT NOT NULL,              -- catalog name (file name)
    model_relative  TEXT,                       -- path relative to the models folder
    model_path      TEXT,
    config          TEXT NOT NULL,              -- BenchConfig.to_dict() as JSON
    argv            TEXT NOT NULL DEFAULT '[]', -- the llama-bench command, as JSON
    output_format   TEXT NOT NULL,
    state           TEXT NOT NULL,
    created_at      TEXT NOT NULL,              -- ISO 8601 UTC; the "queued" time
    started_at      TEXT,                       -- "running"
    finished_at     TEXT,                       -- the final state
    state_history   TEXT NOT NULL DEFAULT '[]', -- [[state, time], ...]
    expected_tests  INTEGER,
    timeout_s       REAL,
    output          TEXT,
    stderr_tail     TEXT,
    error           TEXT,
    exit_code       INTEGER,
    binary_path     TEXT,
    binary_version  TEXT,
    binary_commit   TEXT,
    host            TEXT NOT NULL DEFAULT '{}', -- JSON
    running_servers TEXT NOT NULL DEFAULT '[]', -- JSON
    owner           TEXT,                       -- "pid:create_time" of the process running it
    tune_id         TEXT                        -- the tune a trial's task belongs to
);
CREATE INDEX IF NOT EXISTS tasks_model ON tasks (model);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks (state);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_at);
CREATE TABLE IF NOT EXISTS results (
    task_id     TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    test        TEXT NOT NULL,
    avg_ts      REAL NOT NULL,
    stddev_ts   REAL NOT NULL,
    data        TEXT NOT NULL,                  -- BenchResult.to_dict() as JSON
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (task_id, idx)
);
"""

_JSON_COLUMNS: Final = frozenset({"config", "argv", "state_history", "host", "running_servers"})
_COLUMNS: Final = (
    "id",
    "source",
    "model",
    "model_relative",
    "model_path",
    "config",
    "argv",
    "output_format",
    "state",
    "created_at",
    "started_at",
    "finished_at",
    "state_history",
    "expected_tests",
    "timeout_s",
    "output",
    "stderr_tail",
    "error",
    "exit_code",
    "binary_path",
    "binary_version",
    "binary_commit",
    "host",
    "running_servers",
    "tune_id",
)


@attrs.frozen(kw_only=True)
class StoredTask:
    """One task as the database holds it, with its results in order."""

    id: str
    source: str
    model: str
    model_relative: str | None
    model_path: str | None
    config: Mapping[str, Any]
    argv: Sequence[str]
    output_format: str
    state: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    state_history: Sequence[Sequence[str]]
    expected_tests: int | None
    timeout_s: float | None
    output: str | None
    stderr_tail: str | None
    error: str | None
    exit_code: int | None
    binary_path: str | None
    binary_version: str | None
    binary_commit: str | None
    host: Mapping[str, Any]
    running_servers: Sequence[Mapping[str, Any]]
    #: The tune whose trial ran this task (:mod:`llamaswitch.tuning`), None otherwise.
    tune_id: str | None = None
    results: tuple[BenchResult, ...] = ()


class TaskStore:
    """Async access to the benchmark database; every call runs on the store's thread.

    >>> async def show(path: Path) -> None:
    ...     store = TaskStore(path)
    ...     await store.open()
    ...     try:
    ...         print(len(await store.list_tasks(limit=10)))
    ...     finally:
    ...         await store.close()
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # Several llamaswitch processes may share one state folder (a `serve` and a CLI
        # `bench-history`): a task is only "interrupted" when the process that ran it is gone.
        self.owner = _process_tag(os.getpid())
        self._worker = DatabaseWorker("llamaswitch-bench-db", "benchmark database")
        self._conn: sqlite3.Connection | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> list[str]:
        """Open (creating if needed) and mark unfinished tasks ``interrupted``.

        Returns the ids of the tasks that were marked.
        """
        self._worker.start()
        try:
            await self._call(self._connect)
            interrupted = await self._call(
                self._interrupt_unfinished, format_time(datetime.now(UTC))
            )
        except BaseException:
            await self.close()
            raise
        if interrupted:
            logger.warning("%d benchmark tasks were left unfinished by a process that is "
                           "gone; recorded as interrupted", len(interrupted))  # fmt: skip
        return interrupted

    async def close(self) -> None:
        """Close the connection and stop the store's thread."""
        try:
            await self._worker.stop(self._disconnect)
        except sqlite3.Error as exc:
            raise BenchError(f"benchmark database {self.path}: {exc}") from exc

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._worker.call(fn, *args)
        except sqlite3.Error as exc:
            raise BenchError(f"benchmark database {self.path}: {exc}") from exc
        except UnicodeEncodeError as exc:
            # Text is checked where it enters; this refuses what slipped past, rather than
            # store a row every later read would trip on.
            raise BenchError(
                f"benchmark database {self.path}: refused text that is not valid Unicode ({exc})"
            ) from exc

    # -- public operations ----------------------------------------------------------------

    async def insert_task(self, **fields: Any) -> None:
        """Add a task; ``fields`` are column values (JSON columns as Python data)."""
        await self._call(self._insert_task, fields)

    async def insert_task_with_results(self, results: Sequence[BenchResult], **fields: Any) -> None:
        """Add a task and all its results in one transaction (an import: all or nothing)."""
        now = format_time(datetime.now(UTC))
        await self._call(self._insert_task_with_results, fields, results, now)

    async def set_state(self, task_id: str, state: str, moment: str, **fields: Any) -> None:
        """Record a state change (appended to the history) and other columns at once."""
        await self._call(self._set_state, task_id, state, moment, fields)

    async def add_result(self, task_id: str, index: int, result: BenchResult) -> None:
        """Store one finished test, committed at once."""
        row = _result_row(task_id, index, result, format_time(datetime.now(UTC)))
        await self._call(self._add_result, row)

    async def get_task(self, task_id: str) -> StoredTask | None:
        """One task with its results, or ``None``."""
        return await self._call(self._get_task, task_id)

    async def delete_tasks(self, task_ids: Sequence[str]) -> list[str]:
        """Delete finished tasks and their results; returns the ids that were deleted.

        Tasks still queued or running are never deleted (the runner refuses them first).
        """
        return await self._call(self._delete, list(task_ids))

    async def prune(
        self, *, before: str | None = None, model: str | None = None, state: str | None = None
    ) -> list[str]:
        """Delete the finished tasks matching every filter given; returns their ids."""
        return await self._call(self._prune, before, model, state)

    async def list_tasks(
        self,
        *,
        model: str | None = None,
        state: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
    ) -> list[StoredTask]:
        """Tasks newest first; ``since``/``until`` bound ``created_at`` (ISO texts)."""
        return await self._call(self._list_tasks, model, state, since, until, limit)

    # -- on the store's thread ------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ServiceClosedError("the benchmark database is closed")
        return self._conn

    def _connect(self) -> None:
        if self._conn is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a committed row survives a crash of this process (what
            # matters for a benchmark killed mid-run); only an OS crash may lose the
            # last commits, and it saves an fsync per finished test.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                conn.close()
                raise BenchError(
                    f"{self.path} was written by a newer llamaswitch (schema {version}); "
                    f"this one reads schema {_SCHEMA_VERSION}"
                )
            conn.executescript(_SCHEMA)
            _add_tune_column(conn)
            conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise BenchError(f"cannot open the benchmark database {self.path}: {exc}") from exc
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _interrupt_unfinished(self, now: str) -> list[str]:
        with _transaction(self._db()) as db:
            rows = [
                row
                for row in db.execute(
                    "SELECT id, state, state_history, owner FROM tasks WHERE state IN (?, ?)",
                    UNFINISHED_STATES,
                ).fetchall()
                if not _owner_alive(row["owner"], self.owner)
            ]
            for row in rows:
                history = [*json.loads(row["state_history"]), ["interrupted", now]]
                db.execute(
                    "UPDATE tasks SET state='interrupted', finished_at=?, state_history=?, "
                    "error=COALESCE(error, ?) WHERE id=?",
                    (
                        now,
                        json.dumps(history),
                        f"llamaswitch stopped while the task was {row['state']}",
                        row["id"],
                    ),
                )
        return [row["id"] for row in rows]

    def _insert_task(self, fields: Mapping[str, Any]) -> None:
        self._insert_task_with_results(fields, (), "")

    def _insert_task_with_results(
        self, fields: Mapping[str, Any], results: Sequence[BenchResult], now: str
    ) -> None:
        names = [name for name in _COLUMNS if name in fields]
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown task columns: {sorted(unknown)}")
        values = [_encode(name, fields[name]) for name in names]
        names.append("owner")
        values.append(self.owner)
        placeholders = ", ".join("?" for _ in names)
        with _transaction(self._db()) as db:
            db.execute(f"INSERT INTO tasks ({', '.join(names)}) VALUES ({placeholders})", values)  # noqa: S608 - names come from _COLUMNS
            db.executemany(
                _INSERT_RESULT,
                (_result_row(fields["id"], i, result, now) for i, result in enumerate(results)),
            )

    def _set_state(self, task_id: str, state: str, moment: str, fields: Mapping[str, Any]) -> None:
        with _transaction(self._db()) as db:
            row = db.execute("SELECT state_history FROM tasks WHERE id=?", (task_id,)).fetchone()
            if row is None:
                raise BenchError(f"no task {task_id} in the database")
            history = [*json.loads(row["state_history"]), [state, moment]]
            changes = {**fields, "state": state, "state_history": history}
            assignments = ", ".join(f"{name}=?" for name in changes)
            values = [_encode(name, value) for name, value in changes.items()]
            db.execute(f"UPDATE tasks SET {assignments} WHERE id=?", [*values, task_id])  # noqa: S608 - names come from _COLUMNS

    def _delete(self, task_ids: list[str]) -> list[str]:
        with _transaction(self._db()) as db:
            found = []
            for task_id in task_ids:
                row = db.execute("SELECT state FROM tasks WHERE id=?", (task_id,)).fetchone()
                if row is not None and row["state"] in FINAL_STATES:
                    found.append(task_id)
            self._delete_ids(db, found)
        return found

    def _prune(self, before: str | None, model: str | None, state: str | None) -> list[str]:
        clauses, params = _filters(model, state)
        clauses.append(f"state IN ({', '.join('?' for _ in FINAL_STATES)})")
        params += sorted(FINAL_STATES)
        if before is not None:
            clauses.append("created_at<?")
            params.append(before)
        with _transaction(self._db()) as db:
            ids = [
                row["id"]
                for row in db.execute(
                    f"SELECT id FROM tasks WHERE {' AND '.join(clauses)} ORDER BY seq",  # noqa: S608 - fixed clauses
                    params,
                )
            ]
            self._delete_ids(db, ids)
        return ids

    @staticmethod
    def _delete_ids(db: sqlite3.Connection, ids: Sequence[str]) -> None:
        # Results go with their task (ON DELETE CASCADE), in the same transaction.
        db.executemany("DELETE FROM tasks WHERE id=?", [(task_id,) for task_id in ids])

    def _add_result(self, row: _ResultRow) -> None:
        self._db().execute(_INSERT_RESULT, row)  # one statement: its own transaction

    def _get_task(self, task_id: str) -> StoredTask | None:
        db = self._db()
        row = db.execute("SELECT * FROM tasks WHERE id=?", (task_id,)).fetchone()
        if row is None:
            return None
        return self._with_results(db, [row])[0]

    def _list_tasks(
        self,
        model: str | None,
        state: str | None,
        since: str | None,
        until: str | None,
        limit: int,
    ) -> list[StoredTask]:
        clauses, params = _filters(model, state)
        if since is not None:
            clauses.append("created_at>=?")
            params.append(since)
        if until is not None:
            clauses.append("created_at<=?")
            params.append(until)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        db = self._db()
        rows = db.execute(
            f"SELECT * FROM tasks {where} ORDER BY seq DESC LIMIT ?",  # noqa: S608 - fixed clauses
            [*params, limit],
        ).fetchall()
        return self._with_results(db, rows)

    @staticmethod
    def _with_results(db: sqlite3.Connection, rows: Sequence[sqlite3.Row]) -> list[StoredTask]:
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        by_task: dict[str, list[BenchResult]] = {task_id: [] for task_id in ids}
        placeholders = ", ".join("?" for _ in ids)
        damaged: dict[str, int] = {}
        for result_row in db.execute(
            f"SELECT task_id, data FROM results WHERE task_id IN ({placeholders}) "  # noqa: S608
            "ORDER BY task_id, idx",
            ids,
        ):
            task_id = result_row["task_id"]
            try:
                data = scrub_data(json.loads(result_row["data"]))
                by_task[task_id].append(BenchResult.from_dict(data))
            except (ValueError, TypeError, KeyError, AttributeError):
                # A row no version of llamaswitch would write: skip it, say so, go on.
                damaged[task_id] = damaged.get(task_id, 0) + 1
        return [_stored(row, tuple(by_task[row["id"]]), damaged.get(row["id"], 0)) for row in rows]


def _add_tune_column(conn: sqlite3.Connection) -> None:
    """Give a database written before tunes existed its ``tune_id`` column.

    A nullable column added in place, without a new schema version: older llamaswitch
    versions read and write such a database as before (they never name the column),
    so a state folder stays shareable between versions.
    """
    columns = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
    if "tune_id" not in columns:
        conn.execute("ALTER TABLE tasks ADD COLUMN tune_id TEXT")
    conn.execute("CREATE INDEX IF NOT EXISTS tasks_tune ON tasks (tune_id)")


def _filters(model: str | None, state: str | None) -> tuple[list[str], list[Any]]:
    """WHERE clauses (and their parameters) for a model (name or path) and a state."""
    clauses: list[str] = []
    params: list[Any] = []
    if model is not None:
        clauses.append("(model=? OR model_relative=? OR model_path=?)")
        params += [model, model, model]
    if state is not None:
        clauses.append("state=?")
        params.append(state)
    return clauses, params


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One explicit transaction: the connection autocommits (``isolation_level=None``),
    where ``with db:`` alone would commit each statement on its own."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    db.commit()


_INSERT_RESULT: Final = (
    "INSERT OR REPLACE INTO results (task_id, idx, test, avg_ts, stddev_ts, data, "
    "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_ResultRow = tuple[str, int, str, float, float, str, str]


def _result_row(task_id: str, index: int, result: BenchResult, now: str) -> _ResultRow:
    """The values of one ``results`` row."""
    data = json.dumps(to_wire(result), allow_nan=True, ensure_ascii=False)
    return (task_id, index, result.test, result.avg_ts, result.stddev_ts, data, now)


def _process_tag(pid: int) -> str:
    """``pid:create_time``: a pid alone may be reused by an unrelated process."""
    try:
        return f"{pid}:{psutil.Process(pid).create_time():.3f}"
    except psutil.Error:
        return f"{pid}:?"


def _owner_alive(owner: str | None, me: str) -> bool:
    """Whether another live process owns a task (then it is not ours to interrupt)."""
    if not owner or owner == me:
        return False
    pid_text, _, _ = owner.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    return _process_tag(pid) == owner


def _encode(name: str, value: Any) -> Any:
    if name in _JSON_COLUMNS:
        # Not ASCII-escaped: a lone surrogate then fails the write (UnicodeEncodeError)
        # instead of being stored as an escape that every later read decodes again.
        return json.dumps(value, default=str, ensure_ascii=False)
    return value


def _decode(name: str, value: Any) -> Any:
    if name in _JSON_COLUMNS:
        return scrub_data(json.loads(value)) if value is not None else None
    return scrub(value) if isinstance(value, str) else value


#: What a JSON column reads as when its text is damaged.
_JSON_FALLBACK: Final[Mapping[str, Any]] = {
    "config": {}, "argv": [], "state_history": [], "host": {}, "running_servers": [],
}  # fmt: skip


def _stored(row: sqlite3.Row, results: tuple[BenchResult, ...], damaged: int) -> StoredTask:
    """One row as a :class:`StoredTask`; a damaged column is read as empty and named in
    ``error``, so that one bad row never hides the rest of the history."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name in _COLUMNS:
        try:
            values[name] = _decode(name, row[name])
        except (ValueError, TypeError):
            values[name] = _JSON_FALLBACK.get(name)
            problems.append(name)
    if damaged:
        problems.append(f"{damaged} result row{'s' if damaged != 1 else ''}")
    if problems:
        note = f"the stored record is damaged ({', '.join(problems)} unreadable)"
        values["error"] = f"{values['error']}; {note}" if values.get("error") else note
    return StoredTask(**values, results=results)
