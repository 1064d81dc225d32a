"""BenchRunner: benchmarks as queued, persistent tasks, run with the real llama-bench."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from llamaswitch._binaries import BinaryInfo
from llamaswitch._capabilities import BinaryKind
from llamaswitch._catalog import ModelCatalog, ModelInfo
from llamaswitch._errors import (
    BenchError,
    ConfigValidationError,
    TaskNotFoundError,
    TaskTimeoutError,
    UnsupportedOptionError,
)
from llamaswitch._events import Event, EventBus
from llamaswitch._settings import Settings
from llamaswitch._wire import to_wire
from llamaswitch.bench import runner as _bench_runner
from llamaswitch.bench.config import BenchConfig
from llamaswitch.bench.parser import BenchResult, parse_bench_output
from llamaswitch.bench.runner import FINAL_STATES, BenchRunner, BenchTask
from tests.conftest import LlamaBuild

pytestmark = pytest.mark.real_binary

T = TypeVar("T")

# The seed's benchmark bodies, as written there (config part). Sizes are shrunk by
# shrink() so each run lasts well under a second; every key a body uses is kept.
SEED_BODIES: dict[str, str] = {
    "api-example": """{
        "n_prompt": 512, "n_gen": 128, "n_depth": 0, "batch_size": 2048, "ubatch_size": 512,
        "cache_type_k": "f16", "cache_type_v": "f16", "threads": 32, "cpu_mask": "",
        "cpu_strict": 0, "poll": 50, "n_gpu_layers": 99, "split_mode": "layer",
        "main_gpu": 0, "no_kv_offload": 0, "flash_attn": 0, "mmap": 1, "numa": "",
        "embeddings": 0, "tensor_split": "0", "repetitions": 5, "priority": 0, "delay": 0,
        "output": "md", "output_err": "none", "verbose": 0, "progress": 0}""",
    "scenario-cpu": """{"n_prompt": 512, "n_gen": 128, "threads": 32, "batch_size": 1024,
        "n_gpu_layers": 0, "mmap": 1, "repetitions": 5}""",
    "scenario-single-gpu": """{"n_prompt": 512, "n_gen": 128, "n_gpu_layers": 99,
        "flash_attn": 1, "batch_size": 2048, "threads": 32, "repetitions": 5}""",
    "scenario-multi-gpu": """{"n_prompt": 512, "n_gen": 128, "n_gpu_layers": 99,
        "split_mode": "layer", "tensor_split": "0.5,0.5", "main_gpu": 0, "flash_attn": 1,
        "threads": 32, "repetitions": 5}""",
    "curl-basic": """{"n_prompt": 512, "n_gen": 128, "threads": 32, "repetitions": 5,
        "output": "md", "progress": 1}""",
    "curl-gpu": """{"n_prompt": 512, "n_gen": 128, "n_gpu_layers": 99, "flash_attn": 1,
        "batch_size": 2048, "threads": 32, "repetitions": 5, "output": "md", "progress": 1}""",
}

FAST: dict[str, Any] = {"n_prompt": 16, "n_gen": 8, "repetitions": 2, "threads": 1}
# Runs for many seconds: it is still running whenever a test looks, however loaded the
# machine; tests cancel it.
LONG = BenchConfig(n_prompt=16, n_gen=64, repetitions=500, threads=1)


def shrink(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body with small sizes, keeping exactly its keys."""
    return {key: FAST.get(key, value) for key, value in body.items()}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path, llama_build: LlamaBuild) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        models_dir=models_dir,
        llama_bench_path=llama_build.bench.path,
        llama_server_path=llama_build.server.path,
    )


class Harness:
    """A runner on a real llama-bench, with the models folder and the event stream."""

    def __init__(
        self, runner: BenchRunner, catalog: ModelCatalog, bus: EventBus, build: LlamaBuild
    ) -> None:
        self.runner = runner
        self.catalog = catalog
        self.bus = bus
        self.build = build

    def model(self, name: str = "tiny.gguf") -> ModelInfo:
        return self.catalog.resolve(name)

    async def submit(
        self, config: BenchConfig | Mapping[str, Any], model: str = "tiny.gguf", **kw: Any
    ) -> str:
        if not isinstance(config, BenchConfig):
            config = BenchConfig.from_dict(config)
        return await self.runner.submit(self.model(model), config, **kw)


@contextlib.asynccontextmanager
async def open_runner(
    settings: Settings,
    build: LlamaBuild,
    *,
    running_servers: Callable[[], Sequence[Mapping[str, Any]]] | None = None,
) -> AsyncIterator[Harness]:
    async def binary(kind: BinaryKind) -> BinaryInfo:
        return build.bench if kind == "llama-bench" else build.server

    bus = EventBus()
    runner = BenchRunner(settings, binary=binary, events=bus, running_servers=running_servers)
    await runner.open()
    try:
        yield Harness(runner, ModelCatalog(settings.models_dir), bus, build)
    finally:
        await runner.close()


def drain(subscription: Any) -> list[Event]:
    events = []
    while True:
        try:
            events.append(subscription._queue.get_nowait())
        except asyncio.QueueEmpty:
            return events


def llama_bench_processes(marker: str) -> list[psutil.Process]:
    """Live llama-bench processes whose command line mentions ``marker``."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if (
                (proc.info["name"] or "").startswith("llama-bench")
                and marker in " ".join(proc.info["cmdline"] or ())
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


# -- 1. the seed's bodies -------------------------------------------------------------------


@pytest.mark.parametrize("body", list(SEED_BODIES))
def test_seed_benchmark_body_completes_with_structured_results(
    settings: Settings, llama_build: LlamaBuild, body: str
) -> None:
    config = BenchConfig.from_dict(shrink(json.loads(SEED_BODIES[body])))

    async def main() -> BenchTask:
        async with open_runner(settings, llama_build) as h:
            task_id = await h.submit(config)
            return await h.runner.wait(task_id, timeout_s=60)

    task = run(main())
    assert task.state == "completed", task.stderr_tail
    assert [r.test for r in task.results] == ["pp16", "tg8"]
    assert all(r.avg_ts > 0 for r in task.results)
    assert all(r.model_filename and r.model_filename.endswith("tiny.gguf") for r in task.results)
    assert task.output_format == "md"
    assert task.output is not None
    assert "| pp16 |" in re.sub(r" +", " ", task.output)
    assert task.binary_version == llama_build.bench.version
    assert task.exit_code == 0


def test_gpu_fields_a_cpu_build_accepts_are_passed(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    config = BenchConfig.from_dict(shrink(json.loads(SEED_BODIES["scenario-multi-gpu"])))

    async def main() -> BenchTask:
        async with open_runner(settings, llama_build) as h:
            return await h.runner.wait(await h.submit(config), timeout_s=60)

    task = run(main())
    assert task.state == "completed"
    argv = " ".join(task.argv)
    assert "-ngl 99" in argv
    assert "-sm layer" in argv
    assert "-mg 0" in argv
    assert "-ts 0.5/0.5" in argv
    # llama-bench echoes what it ran with: the split reached it.
    assert {r.params["tensor_split"] for r in task.results} == {"0.50/0.50"}
    assert {r.params["n_gpu_layers"] for r in task.results} == {99}


def test_setting_the_build_cannot_honour_is_refused_with_its_version(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    # f32 KV cache: documented by the seed, unknown to llama-bench in both generations.
    refused = [BenchConfig(**FAST, cache_type_k="f32")]
    if llama_build.bench.dialect == "legacy":
        refused += [
            BenchConfig(**FAST, flash_attn="auto"),
            BenchConfig(**FAST, split_mode="tensor"),
        ]

    async def main() -> list[BenchTask]:
        async with open_runner(settings, llama_build) as h:
            for config in refused:
                with pytest.raises(UnsupportedOptionError) as info:
                    await h.submit(config)
                assert llama_build.bench.version in str(info.value)
            return await h.runner.list()

    assert run(main()) == []


# -- 2. sweep and progress ------------------------------------------------------------------


def test_sweep_yields_six_results_and_progress_counts_to_six(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    config = BenchConfig(threads=[1, 2], n_prompt=[16, 32], n_gen=8, repetitions=2)

    async def main() -> tuple[BenchTask, list[Event]]:
        async with open_runner(settings, llama_build) as h:
            with h.bus.subscribe() as events:
                task_id = await h.submit(config)
                task = await h.runner.wait(task_id, timeout_s=60)
                return task, drain(events)

    task, events = run(main())
    assert task.state == "completed"
    assert [r.test for r in task.results] == ["pp16", "pp32", "tg8"] * 2
    assert [r.params["n_threads"] for r in task.results] == [1, 1, 1, 2, 2, 2]
    assert task.progress.done == 6
    assert task.progress.total == 6
    progress = [e.data for e in events if e.type == "progress"]
    done_counts = [p["done"] for p in progress]
    assert done_counts == sorted(done_counts)
    assert done_counts[-1] == 6
    assert {p["total"] for p in progress} == {6}
    assert {p["current"] for p in progress} >= {"pp16", "pp32", "tg8"}
    results = [e.data for e in events if e.type == "result"]
    assert [r["index"] for r in results] == list(range(6))
    states = [e.data["state"] for e in events if e.type == "state"]
    assert states == ["queued", "running", "completed"]


def test_progress_is_visible_in_status_while_running(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    config = BenchConfig(n_prompt=16, n_gen=64, repetitions=200, threads=1)

    async def main() -> BenchTask:
        async with open_runner(settings, llama_build) as h:
            with h.bus.subscribe() as events:
                task_id = await h.submit(config)
                while True:
                    event = await events.get(timeout_s=30)
                    if event.type == "result":
                        break
            status = await h.runner.get(task_id)
            await h.runner.cancel(task_id)
            return status

    status = run(main())
    assert status.state == "running"
    assert status.progress.done == 1
    assert status.progress.total == 2
    assert [r.test for r in status.results] == ["pp16"]


# -- 3. output formats ----------------------------------------------------------------------

_TIMING_KEYS = {
    "avg_ns",
    "stddev_ns",
    "avg_ts",
    "stddev_ts",
    "samples_ns",
    "samples_ts",
    "test_time",
    "t/s",
}


def skeleton(text: str) -> str:
    """The text with every number replaced and runs of spaces collapsed (md pads cells)."""
    return re.sub(r" +", " ", re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "N", text))


def without_timing(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in _TIMING_KEYS}


@pytest.mark.parametrize("fmt", ["md", "csv", "json", "jsonl", "sql"])
def test_output_is_verbatim_and_results_equal_the_json_ones(
    settings: Settings, llama_build: LlamaBuild, fmt: str
) -> None:
    config = BenchConfig(n_prompt=16, n_gen=8, repetitions=2, threads=[1, 2], output=fmt)

    async def main() -> BenchTask:
        async with open_runner(settings, llama_build) as h:
            return await h.runner.wait(await h.submit(config), timeout_s=60)

    task = run(main())
    assert task.state == "completed"
    assert task.output_format == fmt
    assert task.output is not None
    # The same command, run directly: identical but for the measured numbers.
    direct = subprocess.run(task.argv, capture_output=True, text=True, timeout=60, check=True)
    assert skeleton(task.output) == skeleton(direct.stdout)
    mine = parse_bench_output(task.output, fmt, model_filename=task.model_path)
    theirs = parse_bench_output(direct.stdout, fmt, model_filename=task.model_path)
    assert [without_timing(r.params) for r in mine] == [without_timing(r.params) for r in theirs]
    # Structured results (from stderr jsonl) are the very rows of the verbatim output.
    assert [r.test for r in task.results] == [r.test for r in mine]
    if fmt in {"json", "jsonl"}:
        assert list(task.results) == mine
    for structured, printed in zip(task.results, mine, strict=True):
        assert (structured.n_prompt, structured.n_gen) == (printed.n_prompt, printed.n_gen)
        tolerance = 0.006 if fmt == "md" else 1e-6  # md rounds t/s to two decimals
        assert printed.avg_ts == pytest.approx(structured.avg_ts, abs=tolerance)
        assert printed.stddev_ts == pytest.approx(structured.stddev_ts, abs=tolerance)


def test_user_output_err_is_kept_in_the_request_but_stderr_stays_jsonl(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    config = BenchConfig(n_prompt=16, n_gen=8, repetitions=1, output_err="csv", verbose=1)

    async def main() -> BenchTask:
        async with open_runner(settings, llama_build) as h:
            return await h.runner.wait(await h.submit(config), timeout_s=60)

    task = run(main())
    assert task.state == "completed"
    assert task.config.output_err == "csv"
    assert task.argv[-3:] == ("--progress", "-oe", "jsonl")
    assert "-v" in task.argv
    assert [r.test for r in task.results] == ["pp16", "tg8"]
    assert task.stderr_tail  # verbose logs land in the tail


# -- 4. cancel ------------------------------------------------------------------------------


def test_cancel_mid_run_keeps_finished_results_and_leaves_no_process(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    config = BenchConfig(n_prompt=16, n_gen=64, repetitions=500, threads=1)

    async def main() -> tuple[BenchTask, int]:
        async with open_runner(settings, llama_build) as h:
            with h.bus.subscribe() as events:
                task_id = await h.submit(config)
                while (await events.get(timeout_s=30)).type != "result":
                    pass
            live = h.runner._live[task_id]
            assert live.process is not None
            pid = live.process.pid
            task = await h.runner.cancel(task_id)
            return task, pid

    task, pid = run(main())
    assert task.state == "cancelled"
    assert [r.test for r in task.results] == ["pp16"]
    assert task.finished_at is not None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_cancel_queued_task_never_starts_it(settings: Settings, llama_build: LlamaBuild) -> None:
    async def main() -> tuple[BenchTask, BenchTask]:
        async with open_runner(settings, llama_build) as h:
            first = await h.submit(BenchConfig(**FAST))
            second = await h.submit(BenchConfig(n_prompt=16, n_gen=8, repetitions=1))
            cancelled = await h.runner.cancel(second)
            return cancelled, await h.runner.wait(first, timeout_s=60)

    cancelled, first = run(main())
    assert cancelled.state == "cancelled"
    assert cancelled.started_at is None
    assert cancelled.results == ()
    assert first.state == "completed"


def test_two_cancels_of_a_queued_task_at_once_both_return_it_cancelled(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    async def main() -> list[BenchTask]:
        async with open_runner(settings, llama_build) as h:
            running = await h.submit(LONG)
            queued = await h.submit(LONG)
            both = await asyncio.gather(h.runner.cancel(queued), h.runner.cancel(queued))
            await h.runner.cancel(running)
            return list(both)

    first, second = run(main())
    assert first.state == second.state == "cancelled"
    assert first.id == second.id
    assert first.started_at is None


def test_cancel_landing_after_llama_bench_exited_zero_leaves_the_task_completed(
    settings: Settings, llama_build: LlamaBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> tuple[BenchTask, BenchTask]:
        async with open_runner(settings, llama_build) as h:
            runner = h.runner
            add_result = runner._store.add_result
            cancels: list[asyncio.Task[BenchTask]] = []

            async def cancel_before_the_last_result_is_stored(
                task_id: str, index: int, result: BenchResult
            ) -> None:
                live = runner._live[task_id]
                if index == live.total - 1:
                    assert live.process is not None
                    await live.process.wait()
                    cancels.append(asyncio.create_task(runner.cancel(task_id)))
                    # One turn of the loop: the cancel runs up to its wait for the end.
                    await asyncio.sleep(0)
                await add_result(task_id, index, result)

            monkeypatch.setattr(
                runner._store, "add_result", cancel_before_the_last_result_is_stored
            )
            task_id = await h.submit(BenchConfig(**FAST))
            done = await runner.wait(task_id, timeout_s=60)
            return done, await cancels[0]

    done, cancelled = run(main())
    assert done.state == "completed"
    assert done.exit_code == 0
    assert [r.test for r in done.results] == ["pp16", "tg8"]
    assert cancelled == done


def test_timeout_during_a_cancels_grace_period_leaves_the_task_cancelled(
    settings: Settings, llama_build: LlamaBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A frozen llama-bench that ignores SIGTERM (a hang on demand) outlasts the cancel's
    # SIGTERM, so the cancel waits out the grace period and kills it; the 0.2 s task
    # timeout expires inside that period.
    monkeypatch.setattr(_bench_runner, "_STOP_GRACE_S", 3.0)

    async def main() -> tuple[BenchTask, BenchTask]:
        async with open_runner(settings, llama_build) as h:
            runner = h.runner
            spawn, read_stdout = runner._spawn, runner._read_stdout
            cancels: list[asyncio.Task[BenchTask]] = []

            async def frozen_spawn(argv: Sequence[str]) -> asyncio.subprocess.Process:
                # An ignored signal stays ignored across exec. (A stopped process with
                # SIGTERM's default action would still die of it.)
                previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
                try:
                    process = await spawn(argv)
                finally:
                    signal.signal(signal.SIGTERM, previous)
                os.killpg(process.pid, signal.SIGSTOP)
                return process

            async def cancel_then_read_stdout(process: asyncio.subprocess.Process) -> str:
                # Called once the runner waits for the exit: the timeout clock runs.
                [task_id] = runner._running
                cancels.append(asyncio.create_task(runner.cancel(task_id)))
                return await read_stdout(process)

            monkeypatch.setattr(runner, "_spawn", frozen_spawn)
            monkeypatch.setattr(runner, "_read_stdout", cancel_then_read_stdout)
            task_id = await h.submit(BenchConfig(**FAST), timeout_s=0.2)
            done = await runner.wait(task_id, timeout_s=30)
            return done, await cancels[0]

    done, cancelled = run(main())
    assert done.state == "cancelled"
    assert done.error is None
    assert done.exit_code == -signal.SIGKILL
    assert cancelled == done


def test_cancel_of_finished_task_changes_nothing(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    async def main() -> tuple[BenchTask, BenchTask]:
        async with open_runner(settings, llama_build) as h:
            task_id = await h.submit(BenchConfig(**FAST))
            done = await h.runner.wait(task_id, timeout_s=60)
            return done, await h.runner.cancel(task_id)

    done, after = run(main())
    assert after == done


# -- 5. bad input and failures --------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"n_prompt": 16, "cache_type_k": "f8"},
        {"n_prompt": 16, "poll": 101},
        {"n_prompt": 16, "n_ctx": 512},
    ],
    ids=["bad-cache-type", "poll-101", "unknown-field"],
)
def test_bad_input_is_rejected_before_any_process_starts(
    settings: Settings, llama_build: LlamaBuild, body: dict[str, Any]
) -> None:
    async def main() -> list[BenchTask]:
        async with open_runner(settings, llama_build) as h:
            with pytest.raises(ConfigValidationError) as info:
                await h.submit(body)
            assert set(dict(info.value.errors)) == set(body) - {"n_prompt"}
            return await h.runner.list()

    started = time.time()
    assert run(main()) == []
    assert not [
        p
        for p in psutil.Process().children(recursive=True)
        if p.name().startswith("llama-bench") and p.create_time() >= started
    ]


def test_corrupt_model_fails_with_llama_cpp_message(
    settings: Settings, llama_build: LlamaBuild, models_dir: Path
) -> None:
    (models_dir / "broken.gguf").write_bytes((models_dir / "tiny.gguf").read_bytes()[:1000])

    async def main() -> BenchTask:
        async with open_runner(settings, llama_build) as h:
            return await h.runner.wait(await h.submit(BenchConfig(**FAST), "broken.gguf"), 60)

    task = run(main())
    assert task.state == "failed"
    assert task.exit_code == 1
    assert task.stderr_tail is not None
    assert "failed to load model" in task.stderr_tail
    assert task.error is not None
    assert "exited with code 1" in task.error
    assert "failed to load model" in task.error
    assert task.results == ()


def test_timeout_stops_the_task_as_failed(settings: Settings, llama_build: LlamaBuild) -> None:
    config = BenchConfig(n_prompt=16, n_gen=64, repetitions=2000, threads=1)

    async def main() -> BenchTask:
        async with open_runner(settings, llama_build) as h:
            return await h.runner.wait(await h.submit(config, timeout_s=0.5), timeout_s=30)

    started = time.monotonic()
    task = run(main())
    assert time.monotonic() - started < 10
    assert task.state == "failed"
    assert task.error is not None
    assert "timed out after 0.5 s" in task.error
    assert task.timeout_s == 0.5


def test_waiting_past_the_timeout_raises_but_the_task_runs_on(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    async def main() -> BenchTask:
        async with open_runner(settings, llama_build) as h:
            task_id = await h.submit(BenchConfig(n_prompt=16, n_gen=64, repetitions=20, threads=1))
            with pytest.raises(TaskTimeoutError):
                await h.runner.wait(task_id, timeout_s=0.01)
            return await h.runner.wait(task_id, timeout_s=60)

    assert run(main()).state == "completed"


def test_unknown_task_id_raises(settings: Settings, llama_build: LlamaBuild) -> None:
    async def main() -> None:
        async with open_runner(settings, llama_build) as h:
            with pytest.raises(TaskNotFoundError):
                await h.runner.get("nope")
            with pytest.raises(TaskNotFoundError):
                await h.runner.compare(["nope"])

    run(main())


def test_a_failed_final_write_still_finishes_the_task_exactly_once(
    settings: Settings, llama_build: LlamaBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> list[str]:
        async with open_runner(settings, llama_build) as h:
            runner = h.runner
            set_state = runner._store.set_state

            async def fail_to_write_completed(
                task_id: str, state: str, moment: str, **fields: Any
            ) -> None:
                if state == "completed":
                    raise BenchError("disk full")
                await set_state(task_id, state, moment, **fields)

            monkeypatch.setattr(runner._store, "set_state", fail_to_write_completed)
            with h.bus.subscribe() as events:
                task_id = await h.submit(BenchConfig(**FAST))
                await runner._running[task_id]  # the whole run, fallbacks included
                return [
                    e.data["state"]
                    for e in drain(events)
                    if e.type == "state"
                    and e.data["task_id"] == task_id
                    and e.data["state"] in FINAL_STATES
                ]

    assert run(main()) == ["completed"]


def test_submit_whose_row_is_written_after_close_began_is_interrupted(
    settings: Settings, llama_build: LlamaBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> tuple[str, list[str]]:
        async with open_runner(settings, llama_build) as h:
            runner = h.runner
            insert_task = runner._store.insert_task
            closing: list[asyncio.Task[None]] = []

            async def close_while_inserting(**fields: Any) -> None:
                inserting = asyncio.ensure_future(insert_task(**fields))
                # Starts after the row write began, and empties the queue before it ends.
                closing.append(asyncio.create_task(runner.close()))
                await inserting

            monkeypatch.setattr(runner._store, "insert_task", close_while_inserting)
            with h.bus.subscribe() as events:
                task_id = await h.submit(BenchConfig(**FAST))
                await closing[0]
                states = [
                    e.data["state"]
                    for e in drain(events)
                    if e.type == "state" and e.data["task_id"] == task_id
                ]
            return task_id, states

    task_id, states = run(main())
    assert states == ["interrupted"]
    with contextlib.closing(sqlite3.connect(settings.database_path)) as db:
        row = db.execute(
            "SELECT state, started_at, error FROM tasks WHERE id=?", (task_id,)
        ).fetchone()
    assert row == ("interrupted", None, "llamaswitch was closed before the task started")


# -- 6. persistence -------------------------------------------------------------------------


def test_history_survives_close_and_reopen(settings: Settings, llama_build: LlamaBuild) -> None:
    async def first_session() -> list[BenchTask]:
        async with open_runner(settings, llama_build) as h:
            ids = [await h.submit(BenchConfig(**FAST, output=fmt)) for fmt in ("md", "json")]
            return [await h.runner.wait(task_id, timeout_s=60) for task_id in ids]

    async def second_session() -> list[BenchTask]:
        async with open_runner(settings, llama_build) as h:
            return await h.runner.list()

    before = run(first_session())
    after = run(second_session())
    assert [t.id for t in after] == [t.id for t in reversed(before)]
    assert [to_wire(t) for t in after] == [to_wire(t) for t in reversed(before)]
    assert all(t.state == "completed" and len(t.results) == 2 for t in after)


MANAGER_SCRIPT = """
import asyncio, sys
from pathlib import Path
from llamaswitch.bench.config import BenchConfig
from llamaswitch.bench.runner import BenchRunner
from llamaswitch._binaries import identify
from llamaswitch._catalog import ModelCatalog
from llamaswitch._settings import Settings

async def main():
    settings = Settings(state_dir=Path(sys.argv[1]), models_dir=Path(sys.argv[2]),
                        llama_bench_path=Path(sys.argv[3]))
    info = identify(settings.llama_bench_path, "llama-bench")
    async def binary(kind):
        return info
    runner = BenchRunner(settings, binary=binary)
    await runner.open()
    model = ModelCatalog(settings.models_dir).resolve("tiny.gguf")
    config = BenchConfig(n_prompt=[16, 32], n_gen=64, repetitions=500, threads=1)
    task_id = await runner.submit(model, config)
    print(task_id, flush=True)
    await runner.wait(task_id)

asyncio.run(main())
"""


def test_manager_killed_mid_task_leaves_it_interrupted_with_its_finished_tests(
    settings: Settings, llama_build: LlamaBuild, models_dir: Path
) -> None:
    assert settings.llama_bench_path is not None
    manager = subprocess.Popen(
        [
            sys.executable,
            "-c",
            MANAGER_SCRIPT,
            str(settings.state_dir),
            str(models_dir),
            str(settings.llama_bench_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert manager.stdout is not None
        task_id = manager.stdout.readline().strip()
        assert task_id, "the manager printed no task id"
        # Wait until both prompt tests are in the database (tg64 then runs for seconds).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.closing(sqlite3.connect(settings.database_path)) as db:
                (count,) = db.execute(
                    "SELECT COUNT(*) FROM results WHERE task_id=?", (task_id,)
                ).fetchone()
            if count >= 2:
                break
            time.sleep(0.02)
        assert count >= 2
        assert llama_bench_processes(str(models_dir))
        manager.send_signal(signal.SIGKILL)
        manager.wait(timeout=10)
    finally:
        if manager.poll() is None:
            manager.kill()
            manager.wait()
    # Linux's parent-death signal takes llama-bench down with its manager.
    deadline = time.monotonic() + 5
    while llama_bench_processes(str(models_dir)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not llama_bench_processes(str(models_dir))

    async def reopen() -> tuple[list[str], BenchTask]:
        async with open_runner(settings, llama_build) as h:
            return [t.id for t in await h.runner.list(state="interrupted")], await h.runner.get(
                task_id
            )

    interrupted, task = run(reopen())
    assert interrupted == [task_id]
    assert task.state == "interrupted"
    assert [r.test for r in task.results][:2] == ["pp16", "pp32"]
    assert task.finished_at is not None
    assert task.error is not None
    assert "running" in task.error


def test_close_interrupts_running_and_queued_tasks(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    async def first_session() -> list[str]:
        async with open_runner(settings, llama_build) as h:
            slow = BenchConfig(n_prompt=16, n_gen=64, repetitions=500, threads=1)
            return [await h.submit(slow), await h.submit(slow)]

    async def second_session(ids: list[str]) -> list[BenchTask]:
        async with open_runner(settings, llama_build) as h:
            return [await h.runner.get(task_id) for task_id in ids]

    ids = run(first_session())
    running, queued = run(second_session(ids))
    assert running.state == "interrupted"
    assert running.started_at is not None
    assert queued.state == "interrupted"
    assert queued.started_at is None


# -- 7. queue -------------------------------------------------------------------------------


def test_three_tasks_run_one_after_another_with_queue_positions(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    config = BenchConfig(n_prompt=16, n_gen=32, repetitions=40, threads=1)

    async def main() -> tuple[list[BenchTask], list[BenchTask], list[BenchTask]]:
        async with open_runner(settings, llama_build) as h:
            ids = await asyncio.gather(*(h.submit(config) for _ in range(3)))
            at_submit = [await h.runner.get(task_id) for task_id in ids]
            await h.runner.wait(ids[0], timeout_s=60)
            after_first = [await h.runner.get(task_id) for task_id in ids]
            return at_submit, after_first, [await h.runner.wait(i, 60) for i in ids]

    at_submit, after_first, final = run(main())
    assert [t.state for t in at_submit] == ["running", "queued", "queued"]
    assert [t.queue_position for t in at_submit] == [None, 1, 2]
    assert [t.state for t in after_first] == ["completed", "running", "queued"]
    assert [t.queue_position for t in after_first] == [None, None, 1]
    assert [t.state for t in final] == ["completed"] * 3
    for earlier, later in itertools.pairwise(final):
        assert earlier.finished_at is not None
        assert later.started_at is not None
        assert earlier.finished_at <= later.started_at


def test_concurrency_setting_runs_tasks_side_by_side(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    import attrs

    settings = attrs.evolve(settings, bench_concurrency=2)

    async def main() -> tuple[list[BenchTask], list[BenchTask]]:
        async with open_runner(settings, llama_build) as h:
            ids = [await h.submit(LONG) for _ in range(3)]
            states = [await h.runner.get(task_id) for task_id in ids]
            # The queued one first, so that it does not start when a running one ends.
            cancelled = [await h.runner.cancel(task_id) for task_id in reversed(ids)]
            return states, cancelled

    states, cancelled = run(main())
    assert [t.state for t in states] == ["running", "running", "queued"]
    assert [t.queue_position for t in states] == [None, None, 1]
    assert [t.state for t in cancelled] == ["cancelled"] * 3
    assert cancelled[0].started_at is None


# -- history: context, list, compare, import ------------------------------------------------


def test_task_records_binary_host_and_running_servers(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    servers = [{"model_name": "other.gguf", "port": 8091, "process_id": 4242}]

    async def main() -> BenchTask:
        async with open_runner(settings, llama_build, running_servers=lambda: servers) as h:
            return await h.runner.wait(await h.submit(BenchConfig(**FAST)), timeout_s=60)

    task = run(main())
    assert task.running_servers == tuple(servers)
    assert task.binary_version == llama_build.bench.version
    assert task.binary_commit == llama_build.bench.commit
    assert task.host["cpu"]
    assert task.host["cpu_count_logical"] >= 1
    assert "gpus" in task.host
    wire = to_wire(task)
    assert wire["task_id"] == wire["id"] == task.id
    assert wire["created_at"].endswith("Z")
    assert [s for s, _ in wire["state_history"]] == ["queued", "running", "completed"]
    json.dumps(wire)  # JSON-ready


def test_gpu_layers_setting_is_the_default_n_gpu_layers(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    import attrs

    settings = attrs.evolve(settings, gpu_layers=0)

    async def main() -> BenchTask:
        async with open_runner(settings, llama_build) as h:
            return await h.runner.wait(await h.submit(BenchConfig(**FAST)), timeout_s=60)

    task = run(main())
    assert task.config.n_gpu_layers == (0,)
    assert {r.params["n_gpu_layers"] for r in task.results} == {0}


def test_list_filters_by_model_state_and_time(settings: Settings, llama_build: LlamaBuild) -> None:
    async def main() -> dict[str, list[str]]:
        async with open_runner(settings, llama_build) as h:
            start = datetime.now(UTC)
            a = await h.submit(BenchConfig(**FAST))
            b = await h.submit(BenchConfig(**FAST), model="other.gguf")
            c = await h.submit(BenchConfig(**FAST))
            await h.runner.cancel(c)
            for task_id in (a, b):
                await h.runner.wait(task_id, timeout_s=60)
            later = datetime.now(UTC) + timedelta(seconds=1)

            async def ids(**kw: Any) -> list[str]:
                return [t.id for t in await h.runner.list(**kw)]

            with pytest.raises(ConfigValidationError):
                await h.runner.list(state="done")
            return {
                "all": await ids(),
                "tiny": await ids(model="tiny.gguf"),
                "completed": await ids(state="completed"),
                "tiny-completed": await ids(model="tiny.gguf", state="completed"),
                "limit": await ids(limit=1),
                "since-later": await ids(since=later),
                "until-start": await ids(until=start - timedelta(seconds=1)),
                "range": await ids(since=start, until=later),
                "expected": [c, b, a],
            }

    got = run(main())
    c, b, a = got["expected"]
    assert got["all"] == [c, b, a]
    assert got["tiny"] == [c, a]
    assert got["completed"] == [b, a]
    assert got["tiny-completed"] == [a]
    assert got["limit"] == [c]
    assert got["since-later"] == []
    assert got["until-start"] == []
    assert got["range"] == [c, b, a]


def test_compare_puts_tasks_side_by_side(settings: Settings, llama_build: LlamaBuild) -> None:
    async def main() -> Any:
        async with open_runner(settings, llama_build) as h:
            one = await h.submit(BenchConfig(n_prompt=16, n_gen=8, repetitions=1, threads=1))
            two = await h.submit(BenchConfig(n_prompt=16, n_gen=8, repetitions=1, threads=[1, 2]))
            await h.runner.wait(one, 60)
            await h.runner.wait(two, 60)
            return one, two, await h.runner.compare([one, two])

    one, two, comparison = run(main())
    assert comparison.task_ids == (one, two)
    labels = [row.label for row in comparison.rows]
    assert labels == [
        "pp16 (n_threads=1)",
        "tg8 (n_threads=1)",
        "pp16 (n_threads=2)",
        "tg8 (n_threads=2)",
    ]
    assert all(row.cells[two] is not None for row in comparison.rows)
    assert [row.cells[one] is not None for row in comparison.rows] == [True, True, False, False]
    wire = to_wire(comparison)
    assert wire["rows"][0]["results"][one]["avg_ts"] > 0
    assert wire["rows"][2]["results"][one] is None
    assert "pp16 (n_threads=2)" in comparison.to_markdown()


DATA = Path(__file__).parent / "data" / "bench" / "legacy"


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "sql"])
def test_import_names_the_model_from_the_rows(
    settings: Settings, llama_build: LlamaBuild, fmt: str
) -> None:
    text = (DATA / f"sweep.{fmt}").read_text()

    async def main() -> tuple[BenchTask, BenchTask]:
        async with open_runner(settings, llama_build) as h:
            task = await h.runner.import_results(text, fmt)
            return task, (await h.runner.list(model="tiny.gguf"))[0]

    task, listed = run(main())
    assert task.state == "completed"
    assert task.source == "imported"
    assert task.model == "tiny.gguf"
    assert task.output == text
    assert list(task.results) == parse_bench_output(text, fmt)
    assert task.binary_commit == "8733e0c"
    assert task.host["cpu_info"]
    assert listed.id == task.id


def test_import_stores_nothing_when_a_result_cannot_be_written(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    text = (DATA / "sweep.json").read_text()

    async def main() -> list[BenchTask]:
        async with open_runner(settings, llama_build) as h:
            with contextlib.closing(sqlite3.connect(settings.database_path)) as db:
                db.execute(
                    "CREATE TRIGGER fail_second_result BEFORE INSERT ON results "
                    "WHEN NEW.idx = 1 BEGIN SELECT RAISE(ABORT, 'disk full'); END"
                )
            with pytest.raises(BenchError, match="disk full"):
                await h.runner.import_results(text, "json")
            return await h.runner.list()

    assert run(main()) == []


def test_import_markdown_needs_the_model_argument(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    text = (DATA / "plain.md").read_text()

    async def main() -> BenchTask:
        async with open_runner(settings, llama_build) as h:
            with pytest.raises(ConfigValidationError, match="model"):
                await h.runner.import_results(text, "md")
            with pytest.raises(ConfigValidationError, match="fmt"):
                await h.runner.import_results(text, "xml")
            return await h.runner.import_results(text, "md", model="tiny.gguf")

    task = run(main())
    assert task.model == "tiny.gguf"
    assert [r.test for r in task.results] == ["pp16", "tg8"]


def test_runner_leaves_no_llama_bench_after_close_mid_run(
    settings: Settings, llama_build: LlamaBuild, models_dir: Path
) -> None:
    async def main() -> None:
        async with open_runner(settings, llama_build) as h:
            with h.bus.subscribe() as events:
                await h.submit(BenchConfig(n_prompt=16, n_gen=64, repetitions=500))
                while (await events.get(timeout_s=30)).type != "progress":
                    pass

    run(main())
    assert not llama_bench_processes(str(models_dir))


def test_pids_are_distinct_process_groups(settings: Settings, llama_build: LlamaBuild) -> None:
    async def main() -> tuple[int, int]:
        async with open_runner(settings, llama_build) as h:
            with h.bus.subscribe() as events:
                task_id = await h.submit(BenchConfig(n_prompt=16, n_gen=64, repetitions=500))
                while (await events.get(timeout_s=30)).type != "progress":
                    pass
            process = h.runner._live[task_id].process
            assert process is not None
            group = os.getpgid(process.pid)
            await h.runner.cancel(task_id)
            return process.pid, group

    pid, group = run(main())
    assert group == pid  # its own process group: a stop reaches everything it started


# -- the public API -------------------------------------------------------------------------


def test_public_api_through_the_blocking_facade(
    settings: Settings, llama_build: LlamaBuild
) -> None:
    import socket

    from llamaswitch import LlamaSwitch, ServerConfig

    with socket.socket() as probe:  # a port no parallel test run is using
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with LlamaSwitch(settings) as ls:
        server = ls.start("other.gguf", ServerConfig(port=port, ctx_size=256, threads=1))
        first = ls.submit_benchmark(
            "tiny.gguf", BenchConfig(n_prompt=16, n_gen=8, repetitions=2, output="md", threads=1)
        )
        status = ls.benchmark_status(first)
        assert status.state in {"queued", "running", "completed"}
        task = ls.wait_benchmark(first, timeout_s=60)
        second = ls.submit_benchmark("tiny.gguf", BenchConfig(**FAST, output="json"))
        ls.wait_benchmark(second, timeout_s=60)
        listed = ls.list_benchmarks(model="tiny.gguf", state="completed", limit=50)
        comparison = ls.compare_benchmarks([first, second])
        imported = ls.import_benchmark((DATA / "plain.json").read_text(), fmt="json")
        cancelled = ls.cancel_benchmark(first)  # finished already: unchanged
    assert task.state == "completed"
    assert [r.test for r in task.results] == ["pp16", "tg8"]
    assert [s["port"] for s in task.running_servers] == [server.port]
    assert task.running_servers[0]["model_name"] == "other.gguf"
    assert [t.id for t in listed] == [second, first]
    assert [row.test for row in comparison.rows] == ["pp16", "tg8"]
    assert imported.source == "imported"
    assert cancelled.state == "completed"
