"""The task store only interrupts tasks whose owning process is gone."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from llamaswitch.bench.store import TaskStore, _process_tag


def _task(task_id: str) -> dict[str, object]:
    return {
        "id": task_id, "source": "run", "model": "tiny.gguf", "config": {}, "argv": [],
        "output_format": "md", "state": "running", "created_at": "2026-01-01T00:00:00.000Z",
        "state_history": [["queued", "2026-01-01T00:00:00.000Z"]],
    }  # fmt: skip


async def _reopen_states(db: Path, owner: str) -> dict[str, str]:
    writer = TaskStore(db)
    writer.owner = owner  # as if another process had written the task
    await writer.open()
    await writer.insert_task(**_task("t1"))
    await writer.close()
    reader = TaskStore(db)
    await reader.open()
    try:
        task = await reader.get_task("t1")
        assert task is not None
        return {"t1": task.state}
    finally:
        await reader.close()


def test_a_task_of_a_live_process_is_left_alone(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        states = asyncio.run(_reopen_states(tmp_path / "bench.sqlite3", _process_tag(other.pid)))
    finally:
        other.kill()
        other.wait()
    assert states == {"t1": "running"}


def test_a_task_of_a_dead_process_is_interrupted(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "pass"])
    tag = _process_tag(other.pid)
    other.wait()
    states = asyncio.run(_reopen_states(tmp_path / "bench.sqlite3", tag))
    assert states == {"t1": "interrupted"}
