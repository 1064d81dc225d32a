"""Trials link to the benchmark history: a task records its tune, and a history written
before tunes existed still opens (and is shared with older versions, which never name the
new column)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from llamaswitch._wire import from_wire, to_wire
from llamaswitch.bench.store import TaskStore
from llamaswitch.bench.task import BenchTask

#: The tasks table as llamaswitch wrote it before tunes (schema 1, no tune_id column).
OLD_SCHEMA = """
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, source TEXT NOT NULL,
    model TEXT NOT NULL, model_relative TEXT, model_path TEXT, config TEXT NOT NULL,
    argv TEXT NOT NULL DEFAULT '[]', output_format TEXT NOT NULL, state TEXT NOT NULL,
    created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,
    state_history TEXT NOT NULL DEFAULT '[]', expected_tests INTEGER, timeout_s REAL,
    output TEXT, stderr_tail TEXT, error TEXT, exit_code INTEGER, binary_path TEXT,
    binary_version TEXT, binary_commit TEXT, host TEXT NOT NULL DEFAULT '{}',
    running_servers TEXT NOT NULL DEFAULT '[]', owner TEXT
);
CREATE TABLE results (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE, idx INTEGER NOT NULL,
    test TEXT NOT NULL, avg_ts REAL NOT NULL, stddev_ts REAL NOT NULL, data TEXT NOT NULL,
    recorded_at TEXT NOT NULL, PRIMARY KEY (task_id, idx)
);
PRAGMA user_version=1;
"""


def test_a_history_written_before_tunes_opens_and_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "bench.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute(
            "INSERT INTO tasks (id, source, model, config, output_format, state, created_at) "
            "VALUES ('old1', 'run', 'tiny.gguf', ?, 'md', 'completed', '2026-01-01T00:00:00Z')",
            (json.dumps({"n_prompt": 16}),),
        )
    db.close()

    async def scenario() -> None:
        store = TaskStore(path)
        await store.open()
        try:
            [old] = await store.list_tasks(limit=10)
            assert (old.id, old.tune_id, old.config) == ("old1", None, {"n_prompt": 16})
            await store.insert_task(id="new1", source="run", model="tiny.gguf", config={},
                                    output_format="md", state="completed",
                                    created_at="2026-01-02T00:00:00Z", tune_id="tune1")  # fmt: skip
            assert (await store.get_task("new1")).tune_id == "tune1"  # type: ignore[union-attr]
        finally:
            await store.close()

    asyncio.run(scenario())
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
        # Still schema 1: an older llamaswitch opens it as before.
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        # What an older version inserts (it does not know the column) still works.
        db.execute(
            "INSERT INTO tasks (id, source, model, config, output_format, state, created_at) "
            "VALUES ('older', 'run', 'tiny.gguf', '{}', 'md', 'completed', '2026-01-03')"
        )
    db.close()
    assert "tune_id" in columns


def test_a_tasks_tune_travels_on_the_wire() -> None:
    task = from_wire({"id": "t1", "state": "completed", "source": "run", "model": "m",
                      "model_path": None, "config": {}, "argv": [],
                      "progress": {"done": 0, "total": None, "current": None, "step": None},
                      "queue_position": None, "results": [], "output": None,
                      "output_format": "md", "error": None, "exit_code": None,
                      "stderr_tail": None, "created_at": "2026-01-01T00:00:00.000Z",
                      "started_at": None, "finished_at": None, "state_history": [],
                      "timeout_s": None, "binary_version": None, "binary_commit": None,
                      "host": {}, "running_servers": [], "tune_id": "tune1"},
                     BenchTask)  # fmt: skip
    assert task.tune_id == "tune1"
    assert to_wire(task)["tune_id"] == "tune1"
