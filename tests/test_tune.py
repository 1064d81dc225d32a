"""Tunes with real llama-bench on tiny models: the search, its records, its preset.

Each trial is a real benchmark task of a real llama-bench build (both generations where
the behaviour is theirs); the preset a tune writes is served by the real gateway. The one
fake is a llama-bench wrapper that crashes on cue (a real binary will not crash on
demand); every other run goes to the real binary.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llamaswitch import AsyncLlamaSwitch, Settings
from llamaswitch._errors import (
    ConfigValidationError,
    DependencyMissingError,
    TuneNotFoundError,
    TuneStateError,
    UnsupportedOptionError,
)
from llamaswitch.tuning import Tune
from tests.conftest import LlamaBuild, require_build
from tests.rest.conftest import make_settings, run

pytestmark = pytest.mark.real_binary

#: Small tests: tens of milliseconds per llama-bench run on the tiny models.
QUICK = {"n_prompt": 32, "n_gen": 8}
#: No added repetitions: one benchmark task per trial, exactly.
FIXED = {"repetitions": 2, "max_repetitions": 2}


@pytest.fixture
def settings(llama_build: LlamaBuild, models_dir: Path, tmp_path: Path) -> Settings:
    return make_settings(llama_build, models_dir, tmp_path / "state")


def presets_file(settings: Settings) -> Path:
    return settings.presets_path


async def wait_for(predicate: Any, what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# -- a tune, from its trials to the preset the gateway serves ---------------------------


def test_a_tune_over_threads_and_batch_measures_six_trials_and_the_gateway_serves_its_preset(
    settings: Settings,
) -> None:
    space = {"threads": [1, 2], "batch_size": [16, 32, 64]}

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            with ls.subscribe() as events:
                started = await ls.tune("tiny.gguf", space=space, objective=QUICK, budget=6,
                                        **FIXED)  # fmt: skip
                assert started.state == "running"
                tune = await ls.wait_tune(started.id, timeout_s=120)
                seen = []
                while True:
                    try:
                        seen.append(await events.get(timeout_s=0.5))
                    except TimeoutError:
                        break
            assert tune.state == "completed", tune.error
            assert (tune.progress.done, tune.progress.completed) == (6, 6)
            assert len(tune.trials) == 6
            # Six distinct points: the budget covered the whole space, so every point ran.
            points = {(t.params["threads"], t.params["batch_size"]) for t in tune.trials}
            assert points == {(t, b) for t in (1, 2) for b in (16, 32, 64)}

            # Six benchmark tasks in the history, each linked to the tune and running its
            # trial's settings with the objective's two tests.
            task_ids = [t.task_ids[0] for t in tune.trials]
            assert all(len(t.task_ids) == 1 for t in tune.trials)
            assert len(set(task_ids)) == 6
            for trial in tune.trials:
                task = await ls.benchmark_status(trial.task_ids[0])
                assert task.state == "completed"
                assert task.tune_id == tune.id
                assert task.config.threads == (trial.params["threads"],)
                assert task.config.batch_size == (trial.params["batch_size"],)
                assert task.config.repetitions == 2
                tg = next(r for r in task.results if r.test == "tg8")
                assert trial.tg_ts == tg.avg_ts  # the score is llama-bench's own figure
                assert trial.score == tg.avg_ts  # objective tg (the default)
            history = await ls.list_benchmarks(limit=100)
            assert sorted(t.id for t in history if t.tune_id == tune.id) == sorted(task_ids)

            # The best is the highest score; the front holds the undominated trials.
            assert tune.best is not None
            assert tune.best.score == max(t.score or 0.0 for t in tune.trials)
            front = [t for t in tune.trials if t.number in tune.pareto]
            assert tune.best in front
            for t in front:
                assert not any(
                    (o.pp_ts or 0) >= (t.pp_ts or 0) and (o.tg_ts or 0) >= (t.tg_ts or 0)
                    and (o.pp_ts, o.tg_ts) != (t.pp_ts, t.tg_ts) for o in tune.trials
                )  # fmt: skip

            # Written as a preset, with the figures, the binary's version and the date.
            assert tune.preset is not None
            assert (tune.preset.id, tune.preset.error) == ("tiny-tuned", None)
            text = presets_file(settings).read_text()
            assert "[models.tiny-tuned]" in text
            assert f"llamaswitch tune {tune.id} (trial {tune.best.number}" in text
            assert f"llama-bench {tune.binary_version}" in text
            assert time.strftime("%Y-%m-%d", time.gmtime()) in text
            preset = (await ls.presets()).by_id()["tiny-tuned"]
            assert preset.config.threads == tune.best.params["threads"]
            assert preset.config.batch_size == tune.best.params["batch_size"]

            # And the gateway serves it by its id at once, with those settings.
            status = await ls.ensure("tiny-tuned")
            assert status.state == "ready"
            argv = list(status.argv)
            assert argv[argv.index("--threads") + 1] == str(tune.best.params["threads"])
            assert argv[argv.index("--batch-size") + 1] == str(tune.best.params["batch_size"])
            await ls.stop()

        kinds = [(e.type, e.data.get("state")) for e in seen if e.topic == "tune"]
        assert kinds[0] == ("status", "running")
        assert kinds[-1] == ("status", "completed")
        assert kinds.count(("trial", "completed")) == 6

    run(scenario())


def test_a_tune_is_read_back_from_its_study_after_the_library_closes(settings: Settings) -> None:
    async def scenario() -> Tune:
        async with AsyncLlamaSwitch(settings) as ls:
            tune = await ls.tune("tiny.gguf", space={"threads": [1, 2]}, objective=QUICK,
                                 budget=2, save_preset=False, **FIXED)  # fmt: skip
            return await ls.wait_tune(tune.id, timeout_s=60)

    first = run(scenario())

    async def again() -> tuple[Tune, list[Tune]]:
        async with AsyncLlamaSwitch(settings) as ls:
            return await ls.tune_status(first.id), await ls.list_tunes()

    stored, listed = run(again())
    assert stored == first
    assert [t.id for t in listed] == [first.id]
    assert listed[0].trials == ()  # a list leaves the trials out
    assert listed[0].best == first.best
    assert listed[0].progress == first.progress
    assert first.preset is None
    assert not presets_file(settings).exists()


def test_more_runs_go_to_trials_too_close_to_the_best_to_tell_apart(
    tmp_path: Path, models_dir: Path
) -> None:
    """One run per trial first: a figure from one run has no spread, so no trial can be
    told apart from the best, and each one after the first gets runs added, as more
    benchmark tasks of the same trial, merged, up to max_repetitions. (Whether measured
    spreads are close is the rule's unit tests' matter: tests/test_tune_objective.py.)"""
    settings = make_settings(require_build("current"), models_dir, tmp_path / "state")
    space = {"batch_size": [2048, 3072, 4096, 8192]}

    async def scenario() -> Tune:
        async with AsyncLlamaSwitch(settings) as ls:
            tune = await ls.tune("tiny.gguf", space=space, objective=QUICK, budget=4,
                                 repetitions=1, max_repetitions=3, save_preset=False)  # fmt: skip
            tune = await ls.wait_tune(tune.id, timeout_s=180)
            for trial in tune.trials:
                tasks = [await ls.benchmark_status(task_id) for task_id in trial.task_ids]
                assert {task.tune_id for task in tasks} == {tune.id}
                # Each added run is a task of its own: 1 run, then what is left (1, 1).
                assert [task.config.repetitions for task in tasks][:1] == [1]
                assert sum(task.config.repetitions or 0 for task in tasks) == trial.repetitions
            return tune

    tune = run(scenario())
    assert tune.state == "completed", tune.error
    assert tune.progress.done == 4  # added runs do not count against the budget
    first, *later = tune.trials
    assert (len(first.task_ids), first.repetitions) == (1, 1)  # nothing to compare with yet
    for trial in later:
        assert len(trial.task_ids) >= 2
        assert 2 <= trial.repetitions <= 3
        assert trial.score_error is not None


# -- failures -----------------------------------------------------------------------------

CRASHING_BENCH = """#!{python}
# llama-bench as it is, except that its run number {crash_on} crashes (SIGSEGV): a real
# binary does not crash on demand.
import os, signal, sys
real = {real!r}
args = sys.argv[1:]
if "--help" not in args and "--version" not in args:
    counter = {counter!r}
    count = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
    open(counter, "w").write(str(count))
    if count == {crash_on}:
        sys.stderr.write("fake llama-bench: crashing on cue\\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSEGV)
os.execv(real, [real, *args])
"""


@pytest.fixture
def crashing_bench(tmp_path: Path) -> Iterator[Path]:
    build = require_build("current")
    path = tmp_path / "fake" / "llama-bench"
    path.parent.mkdir()
    path.write_text(CRASHING_BENCH.format(python=sys.executable, real=str(build.bench.path),
                                          counter=str(tmp_path / "runs"), crash_on=2))  # fmt: skip
    path.chmod(0o755)
    return path


def test_a_trial_that_crashes_llama_bench_is_recorded_failed_and_the_search_goes_on(
    tmp_path: Path, models_dir: Path, crashing_bench: Path
) -> None:
    settings = make_settings(require_build("current"), models_dir, tmp_path / "state",
                             llama_bench_path=crashing_bench)  # fmt: skip

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            tune = await ls.tune("tiny.gguf", space={"threads": [1, 2], "batch_size": [16, 32]},
                                 objective=QUICK, budget=4, **FIXED)  # fmt: skip
            tune = await ls.wait_tune(tune.id, timeout_s=120)
            assert tune.state == "completed", tune.error
            states = [t.state for t in tune.trials]
            assert states == ["completed", "failed", "completed", "completed"]
            crashed = tune.trials[1]
            assert crashed.score is None
            assert "exited with code -11" in (crashed.reason or "")
            task = await ls.benchmark_status(crashed.task_ids[0])
            assert (task.state, task.exit_code, task.tune_id) == ("failed", -11, tune.id)
            assert "crashing on cue" in (task.stderr_tail or "")
            assert (tune.progress.done, tune.progress.failed) == (4, 1)  # it used the budget
            assert tune.best is not None
            assert tune.best.number != crashed.number
            assert tune.preset is not None
            assert tune.preset.trial == tune.best.number

    run(scenario())


def test_cancel_stops_the_running_trial_and_keeps_what_was_measured(settings: Settings) -> None:
    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            # Long enough to catch: 400 runs of each test.
            tune = await ls.tune("tiny.gguf", space={"threads": [1, 2]},
                                 objective={"n_prompt": 64, "n_gen": 64}, budget=2,
                                 repetitions=400, max_repetitions=400)  # fmt: skip

            async def running_task() -> str | None:
                return (await ls.tune_status(tune.id)).progress.current_task_id

            task_id = await wait_for(running_task, "a trial's task")
            await wait_for(lambda: _running(ls, task_id), "llama-bench to run")
            cancelled = await ls.cancel_tune(tune.id)
            assert cancelled.state == "cancelled"
            assert [t.state for t in cancelled.trials] == ["cancelled"]
            assert (await ls.benchmark_status(task_id)).state == "cancelled"
            assert cancelled.preset is None
            assert not presets_file(settings).exists()
            # Idempotent, as a benchmark cancel: the tune is returned as it is.
            assert (await ls.cancel_tune(tune.id)).state == "cancelled"

    run(scenario())


async def _running(ls: AsyncLlamaSwitch, task_id: str) -> bool:
    return (await ls.benchmark_status(task_id)).state == "running"


def test_a_tune_closed_with_the_library_resumes_keeping_its_measured_trials(
    settings: Settings,
) -> None:
    space = {"threads": [1, 2], "batch_size": [16, 32]}

    async def first() -> Tune:
        async with AsyncLlamaSwitch(settings) as ls:
            tune = await ls.tune("tiny.gguf", space=space, objective=QUICK, budget=4,
                                 repetitions=60, max_repetitions=60)  # fmt: skip

            async def two_measured() -> bool:
                return (await ls.tune_status(tune.id)).progress.completed >= 2

            await wait_for(two_measured, "two trials", timeout_s=120)
            return tune  # leaving the block closes the library mid-tune

    started = run(first())

    async def second() -> tuple[Tune, Tune, Tune]:
        async with AsyncLlamaSwitch(settings) as ls:
            stopped = await ls.tune_status(started.id)
            resumed = await ls.resume_tune(started.id)
            assert resumed.state == "running"
            with pytest.raises(TuneStateError, match="is running here"):
                await ls.resume_tune(started.id)
            return stopped, resumed, await ls.wait_tune(started.id, timeout_s=180)

    stopped, _, done = run(second())
    assert stopped.state == "interrupted"
    assert stopped.error == "llamaswitch was closed while the tune ran"
    kept = [t for t in stopped.trials if t.state == "completed"]
    assert len(kept) >= 2
    # The trial the close stopped, if one ran then, is marked so (and measured again).
    assert [t.state for t in stopped.trials if t.state != "completed"] in ([], ["interrupted"])
    assert done.state == "completed", done.error
    assert done.progress.done == 4
    measured = [t for t in done.trials if t.state == "completed"]
    assert len(measured) == 4
    # The trials measured before the restart were not run again.
    assert [t.task_ids for t in measured[: len(kept)]] == [t.task_ids for t in kept]
    assert {(t.params["threads"], t.params["batch_size"]) for t in measured} == {
        (1, 16), (1, 32), (2, 16), (2, 32)}  # fmt: skip


# -- refused before anything runs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("generation", "space", "error", "field"),
    [
        ("legacy", {"split_mode": ["layer", "tensor"]}, UnsupportedOptionError, "split_mode"),
        ("legacy", {"n_cpu_moe": [0, 1]}, UnsupportedOptionError, "n_cpu_moe"),
        ("current", {"load_mode": ["mmap", "dio"]}, ConfigValidationError, "space.load_mode"),
    ],
    ids=["legacy-split-tensor", "legacy-n_cpu_moe", "current-dio"],
)
def test_a_space_the_binary_cannot_honour_is_refused_naming_the_field(  # noqa: PLR0917 - parametrized
    tmp_path: Path, models_dir: Path, generation: str, space: dict[str, Any],
    error: type[Exception], field: str,
) -> None:  # fmt: skip
    build = require_build(generation)
    settings = make_settings(build, models_dir, tmp_path / "state")

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            with pytest.raises(error) as caught:
                await ls.tune("tiny.gguf", space={**space, "threads": [1, 2]}, objective=QUICK)
            named = getattr(caught.value, "field", None) or caught.value.errors[0][0]  # type: ignore[attr-defined]
            assert named == field
            if isinstance(caught.value, UnsupportedOptionError):
                assert caught.value.version == build.bench.version
            assert await ls.list_tunes() == []
            assert await ls.list_benchmarks() == []

    run(scenario())


def test_bad_input_is_refused_naming_every_field_at_once(settings: Settings) -> None:
    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            with pytest.raises(ConfigValidationError) as caught:
                await ls.tune("tiny.gguf", space={"threadz": [1, 2]},
                              objective={"metric": "speed"}, budget=0, bugdet=6)  # fmt: skip
            paths = sorted(path for path, _ in caught.value.errors)
            assert paths == ["budget", "bugdet", "objective.metric", "space.threadz"]
            with pytest.raises(ConfigValidationError) as empty:
                await ls.tune("tiny.gguf", space={})
            assert [p for p, _ in empty.value.errors] == ["space"]
            with pytest.raises(ConfigValidationError, match=r"max_repetitions: must be at least"):
                await ls.tune("tiny.gguf", repetitions=4, max_repetitions=2)
            with pytest.raises(TuneNotFoundError):
                await ls.tune_status("nope")
            assert await ls.list_tunes() == []

    run(scenario())


def test_a_space_with_no_point_that_fits_the_memory_budget_is_refused_naming_space(
    llama_build: LlamaBuild, models_dir: Path, tmp_path: Path
) -> None:
    settings = make_settings(llama_build, models_dir, tmp_path / "state", ram_budget_mib=16.0)

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            with pytest.raises(ConfigValidationError) as caught:
                await ls.tune("tiny.gguf", space={"threads": [1, 2]}, objective=QUICK)
            [(path, reason)] = caught.value.errors
            assert path == "space"
            assert "no point that can run" in reason
            assert "memory budget" in reason
            assert await ls.list_benchmarks() == []

    run(scenario())


def test_settings_that_would_not_fit_the_memory_budget_are_pruned_before_they_run(
    llama_build: LlamaBuild, models_dir: Path, tmp_path: Path
) -> None:
    """A 65,536-token context: without flash attention the attention scores alone take
    512 MiB by the gateway's estimate, beyond a 200 MiB budget; with it, the preset fits."""
    settings = make_settings(llama_build, models_dir, tmp_path / "state", ram_budget_mib=200.0)

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            tune = await ls.tune("tiny.gguf", space={"flash_attn": [False, True],
                                                     "threads": [1, 2]},
                                 objective=QUICK, server={"ctx_size": 65536}, budget=4,
                                 **FIXED)  # fmt: skip
            tune = await ls.wait_tune(tune.id, timeout_s=120)
            assert tune.state == "completed", tune.error
            pruned = [t for t in tune.trials if t.state == "pruned"]
            measured = [t for t in tune.trials if t.state == "completed"]
            assert {t.params["flash_attn"] for t in pruned} == {False}
            assert {t.params["flash_attn"] for t in measured} == {True}
            assert len(measured) == 2  # every point that fits; pruned ones used no budget
            for trial in pruned:
                assert trial.task_ids == ()
                assert "memory budget" in (trial.reason or "")
            assert (tune.progress.space_size, tune.progress.feasible) == (4, 2)
            assert len(await ls.list_benchmarks()) == 2
            preset = (await ls.presets()).by_id()["tiny-tuned"]
            assert (preset.config.flash_attn, preset.config.ctx_size) == (True, 65536)

    run(scenario())


def test_without_the_tune_extra_the_error_names_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # what a missing package imports as

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            with pytest.raises(DependencyMissingError) as caught:
                await ls.tune("tiny.gguf", space={"threads": [1, 2]})
            assert caught.value.extra == "tune"
            assert "pip install 'llamaswitch[tune]'" in str(caught.value)

    run(scenario())


# -- saving another trial -------------------------------------------------------------------


def test_any_completed_trial_can_be_saved_as_a_preset_of_its_own(settings: Settings) -> None:
    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            tune = await ls.tune("tiny.gguf", space={"threads": [1, 2]}, objective=QUICK,
                                 budget=2, save_preset=False, **FIXED)  # fmt: skip
            tune = await ls.wait_tune(tune.id, timeout_s=60)
            other = next(t for t in tune.trials if t.number != (tune.best and tune.best.number))
            saved = await ls.save_tune_preset(tune.id, trial=other.number, preset="tiny-other")
            assert saved.preset is not None
            assert (saved.preset.id, saved.preset.trial, saved.preset.error) == (
                "tiny-other", other.number, None)  # fmt: skip
            preset = (await ls.presets()).by_id()["tiny-other"]
            assert preset.config.threads == other.params["threads"]
            with pytest.raises(TuneStateError, match="no completed trial 99"):
                await ls.save_tune_preset(tune.id, trial=99)
            with pytest.raises(ConfigValidationError, match="preset"):
                await ls.save_tune_preset(tune.id, preset="bad id!")

    run(scenario())
