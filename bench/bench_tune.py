"""How fast ``ls.tune()`` finds the best settings, and what a trial costs over llama-bench.

One run, the current llama.cpp build, one small model (about 20 M parameters, written by
``llamaswitch.testing.write_tiny_model``: on the default tiny model every config runs in
a few milliseconds and threads and batch sizes only add noise), objective ``mix``
(0.5 pp512 + 0.5 tg32: prompt and generation speed, so that threads, batch sizes and
flash attention all matter).

- **Exhaustive.** Every feasible point of the grid (full: threads 1-2 x batch_size
  128-512 x ubatch_size 64-512 x flash_attn, ubatch <= batch: 36 configs; the values
  the library derives for this model and binary, checked) runs as a bare llama-bench
  process (the argv the library builds, ``-o json``), over several rounds, each in its
  own shuffled order. A round's score of a config is the tuner's objective on that
  round's runs; the config's score is the median over the rounds (a round that a burst
  of other load slowed does not decide it). The spread between rounds is printed.
- **Search.** Tunes with Optuna TPE and the library's default repetitions (3 runs a
  trial, more up to 12 while a trial is too close to the best), 5 seeds, each with a
  budget of half the grid (under the feasible count: a budget covering every point
  makes the tuner measure them all). "Trials to within 5 %" of a seed: the first
  measured trial whose config's *exhaustive* score is within 5 % of the exhaustive best
  (the tuner's own figures for a config carry their own noise and do not decide it);
  also the first trial whose own score is, and the config the tuner would pick (its
  best by its own figures) after a third of the grid and after the budget. Goal: a
  median over the seeds of at most a third of the grid's trials.
- **Overhead.** Tunes with a fixed number of runs a trial (one llama-bench task each),
  between the exhaustive rounds: each trial's wall time as the tune records it, and
  its benchmark task's, against the median bare run of the same config with the same
  runs from the exhaustive rounds; the gaps between trials (the sampler, the store).

Tunes, the sampler's study and the benchmark history live in a temporary folder; no
preset is written. Other load on the machine shows in every figure: rely on the medians.

    .venv/bin/python bench/bench_tune.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import optuna

from llamaswitch import AsyncLlamaSwitch, Settings
from llamaswitch._capabilities import Capabilities
from llamaswitch._toolchain import find_cached_build
from llamaswitch.bench.parser import parse_bench_output
from llamaswitch.tuning import Objective, Trial, Tune, TuneSpace
from llamaswitch.tuning.objective import Measurement, measure

MODEL = "bench.gguf"
#: About 20 M parameters (80 MiB of F32): tens of milliseconds per pp512 on a core, so
#: that threads, batch sizes and flash attention separate the configs beyond the noise.
MODEL_SHAPE = {"embedding_length": 512, "block_count": 6, "feed_forward_length": 1536,
               "head_count": 8, "head_count_kv": 8, "context_length": 2048}  # fmt: skip
WITHIN = 0.05


@attrs.frozen(kw_only=True)
class Mode:
    """The sizes of one run of this script."""

    name: str
    grid: Mapping[str, list[Any]]
    objective: Objective
    seeds: tuple[int, ...]
    #: Runs of each test per bare llama-bench process and per overhead-tune trial.
    repetitions: int
    #: Exhaustive rounds; an overhead tune runs between each two.
    rounds: int
    #: Trials of each overhead tune.
    overhead_trials: int


MODES = {
    "full": Mode(
        name="full",
        grid={
            "threads": [1, 2],
            "batch_size": [128, 256, 512],
            "ubatch_size": [64, 128, 256, 512],
            "flash_attn": [False, True],
        },
        objective=Objective(metric="mix", pp_weight=0.5, n_prompt=512, n_gen=32),
        seeds=(1, 2, 3, 4, 5),
        repetitions=2,
        rounds=5,
        overhead_trials=5,
    ),
    "quick": Mode(
        name="quick",
        grid={
            "threads": [1, 2],
            "batch_size": [256],
            "ubatch_size": [64, 256],
            "flash_attn": [False, True],
        },
        objective=Objective(metric="mix", pp_weight=0.5, n_prompt=256, n_gen=16),
        seeds=(1, 2),
        repetitions=2,
        rounds=3,
        overhead_trials=2,
    ),
}

Key = tuple[tuple[str, str], ...]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def write_model(path: Path) -> None:
    """The model, by a child process (numpy stays out of this one)."""
    shape = ", ".join(f"{k}={v}" for k, v in MODEL_SHAPE.items())
    code = ("import sys; from llamaswitch.testing import write_tiny_model; "
            f"write_tiny_model(sys.argv[1], name='bench', {shape})")  # fmt: skip
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)


def feasible(space: TuneSpace) -> list[dict[str, Any]]:
    """The points llama.cpp runs as themselves: a micro-batch above the batch is capped,
    so the library prunes it (it would measure a smaller point again)."""
    return [p for p in space.points() if p.get("ubatch_size", 0) <= space.settings(p)["batch_size"]]


def label(params: Mapping[str, Any]) -> str:
    short = {"threads": "t", "batch_size": "b", "ubatch_size": "ub", "flash_attn": "fa"}
    return " ".join(f"{short.get(k, k)}={int(v) if isinstance(v, bool) else v}"
                    for k, v in params.items())  # fmt: skip


def bare_run(argv: list[str], objective: Objective, repetitions: int) -> tuple[float, Measurement]:
    """Seconds of one bare llama-bench process, and its figures (blocking)."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"llama-bench exited with {done.returncode}: {done.stderr[-500:]}")
    found = measure(parse_bench_output(done.stdout, "json"), objective, repetitions)
    if found is None:
        raise RuntimeError(f"llama-bench reported neither {objective.pp_test} nor tg")
    return wall, found


@attrs.define
class Exhaustive:
    """Every feasible config's bare runs, round by round."""

    walls: dict[Key, list[float]] = attrs.Factory(dict)
    rounds: dict[Key, list[Measurement]] = attrs.Factory(dict)


async def exhaustive_round(
    *,
    points: Sequence[Mapping[str, Any]],
    space: TuneSpace,
    mode: Mode,
    caps: Capabilities,
    bench: Path,
    model: Path,
    into: Exhaustive,
    seed: int,
) -> None:
    order = list(points)
    random.Random(seed).shuffle(order)
    for point in order:
        config = space.bench_config(point, mode.objective, mode.repetitions)
        argv = [str(bench), *config.to_argv(caps, model)]
        wall, found = await asyncio.to_thread(bare_run, argv, mode.objective, mode.repetitions)
        key = space.key(point)
        into.walls.setdefault(key, []).append(wall)
        into.rounds.setdefault(key, []).append(found)


@attrs.frozen
class Timed:
    """A finished tune, its wall time from the call to the end, and each measured
    trial's benchmark task wall times (seconds, by trial number)."""

    tune: Tune
    elapsed_s: float
    task_s: Mapping[int, float]
    #: The llama-bench command line of its first trial's task.
    argv: tuple[str, ...]


async def run_tune(ls: AsyncLlamaSwitch, grid: Mapping[str, list[Any]], mode: Mode,
                   **options: Any) -> Timed:  # fmt: skip
    start = time.perf_counter()
    tune = await ls.tune(MODEL, space=dict(grid), objective=mode.objective, save_preset=False,
                         **options)  # fmt: skip
    tune = await ls.wait_tune(tune.id, timeout_s=600)
    elapsed = time.perf_counter() - start
    if tune.state != "completed":
        raise RuntimeError(f"tune {tune.id} ended {tune.state}: {tune.error}")
    task_s: dict[int, float] = {}
    argv: tuple[str, ...] = ()
    for trial in measured(tune):
        total = 0.0
        for task_id in trial.task_ids:
            task = await ls.benchmark_status(task_id)
            assert task.started_at is not None
            assert task.finished_at is not None
            total += (task.finished_at - task.started_at).total_seconds()
            argv = argv or task.argv
        task_s[trial.number] = total
    return Timed(tune, elapsed, task_s, argv)


def measured(tune: Tune) -> list[Trial]:
    """The trials that count against the budget, in the order they ran."""
    return sorted((t for t in tune.trials if t.state in ("completed", "failed")),
                  key=lambda t: t.number)  # fmt: skip


def pick_of(trials: Sequence[Trial]) -> Trial | None:
    """The tuner's best by its own figures (the first on a tie, as the library's)."""
    best: Trial | None = None
    for t in trials:
        if t.state == "completed" and t.score is not None and (
            best is None or t.score > (best.score or 0.0)
        ):  # fmt: skip
            best = t
    return best


def first(flags: Sequence[bool]) -> float:
    """1-based index of the first true flag; infinity when none."""
    return next((i + 1 for i, flag in enumerate(flags) if flag), math.inf)


def count(value: float, budget: int) -> str:
    return f"> {budget}" if math.isinf(value) else f"{value:g}"


def seconds(start: datetime | None, end: datetime | None) -> float:
    assert start is not None
    assert end is not None
    return (end - start).total_seconds()


def spread(values: Sequence[float]) -> float:
    """(max - min) / median."""
    return (max(values) - min(values)) / statistics.median(values)


def deviation(values: Sequence[float]) -> float:
    """Median absolute deviation from the median, over the median."""
    middle = statistics.median(values)
    return statistics.median(abs(v - middle) for v in values) / middle


@attrs.frozen
class Judged:
    """The exhaustive figures, judge of the tuner's choices."""

    space: TuneSpace
    points: Sequence[Mapping[str, Any]]
    #: Each config's score in each round, and their median.
    per_round: Mapping[Key, Sequence[float]]
    scores: Mapping[Key, float]
    best: float

    @classmethod
    def of(cls, space: TuneSpace, points: Sequence[Mapping[str, Any]], exhaustive: Exhaustive,
           objective: Objective) -> Judged:  # fmt: skip
        per_round = {key: [objective.score(m) for m in rounds]
                     for key, rounds in exhaustive.rounds.items()}  # fmt: skip
        scores = {key: statistics.median(values) for key, values in per_round.items()}
        return cls(space, points, per_round, scores, max(scores.values()))

    def score(self, params: Mapping[str, Any]) -> float:
        return self.scores[self.space.key(params)]

    def good(self, params: Mapping[str, Any] | None) -> bool:
        return params is not None and self.score(params) >= (1 - WITHIN) * self.best


def report_exhaustive(judged: Judged, mode: Mode) -> None:
    per_round, scores, best = judged.per_round, judged.scores, judged.best
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)
    params = {judged.space.key(p): p for p in judged.points}
    spreads = [spread(v) for v in per_round.values()]
    deviations = [deviation(v) for v in per_round.values()]
    good = sum(1 for key in ranked if judged.good(params[key]))
    winners = [max(per_round, key=lambda k: per_round[k][i]) for i in range(mode.rounds)]
    print(f"\nexhaustive: {len(ranked)} configs x {mode.rounds} rounds x {mode.repetitions} "
          f"runs, bare llama-bench, each round in its own shuffled order")  # fmt: skip
    print(f"  score: {mode.objective.label} (weighted geometric mean, t/s) of a round's runs, "
          f"median over the rounds; between the rounds, (max - min) / median: median "
          f"{statistics.median(spreads):.1%}, largest {max(spreads):.1%}; median absolute "
          f"deviation / median: median {statistics.median(deviations):.1%}")  # fmt: skip
    for rank, key in enumerate(ranked[:5], 1):
        rounds = " ".join(f"{s:.0f}" for s in per_round[key])
        print(f"  #{rank} {label(params[key]):24} {scores[key]:7.1f} ({scores[key] / best:6.1%})"
              f"  rounds: {rounds}")  # fmt: skip
    worst = ranked[-1]
    print(f"  worst {label(params[worst]):22} {scores[worst]:7.1f} ({scores[worst] / best:6.1%})"
          f"; {good} of {len(ranked)} configs within 5 % of the best")  # fmt: skip
    top, second = per_round[ranked[0]], per_round[ranked[1]]
    ahead = sum(1 for a, b in zip(top, second, strict=True) if a > b)
    print(f"  #1 beats #2 in {ahead} of {mode.rounds} rounds; each round's best: "
          f"{', '.join(label(params[k]) for k in winners)}")  # fmt: skip


def report_search(judged: Judged, searches: Sequence[Tune], budget: int, third: int) -> bool:
    """Each seed's figures and their medians; whether the goal is met."""
    print(f"\nsearch: TPE, {len(searches)} seeds, a budget of {budget} trials each (3 runs a "
          f"trial, more up to 12 while too close to the best). A trial counts by its "
          f"config's exhaustive score, not by the tuner's own figures")  # fmt: skip
    found_at, own_at, after_third, after_all, own_ratio = [], [], [], [], []
    for tune in sorted(searches, key=lambda t: t.seed):
        trials = measured(tune)
        found = first([judged.good(t.params) for t in trials])
        own = first([(t.score or 0.0) >= (1 - WITHIN) * judged.best for t in trials])
        picks = [pick_of(trials[:third]), pick_of(trials)]
        shares = [judged.score(p.params) / judged.best if p else 0.0 for p in picks]
        found_at.append(found)
        own_at.append(own)
        after_third.append(shares[0])
        after_all.append(shares[1])
        own_ratio += [t.score / judged.score(t.params) for t in trials if t.score is not None]
        print(f"  seed {tune.seed}: within 5 % at trial {count(found, budget):>4} (by its own "
              f"figures {count(own, budget):>4}); its pick after {third}: "
              f"{label(picks[0].params) if picks[0] else '-'} ({shares[0]:.1%}), after "
              f"{len(trials)}: {label(picks[1].params) if picks[1] else '-'} "
              f"({shares[1]:.1%}); {sum(t.repetitions for t in trials)} runs")  # fmt: skip
    median_found = statistics.median(found_at)
    print(f"  median of {len(searches)} seeds: within 5 % of the exhaustive best at trial "
          f"{count(median_found, budget)} (by the tuner's own figures: "
          f"{count(statistics.median(own_at), budget)}); its pick after {third} trials "
          f"{statistics.median(after_third):.1%} of the best, after {budget} "
          f"{statistics.median(after_all):.1%}")  # fmt: skip
    print(f"  the tuner's score of a config / its exhaustive score: median "
          f"{statistics.median(own_ratio):.3f}")  # fmt: skip
    met = median_found <= third
    print(f"  goal: within 5 % of the best in at most a third of the grid's trials ({third} of "
          f"{len(judged.points)}): {'met' if met else 'NOT met'}")  # fmt: skip
    return met


def report_overhead(judged: Judged, exhaustive: Exhaustive, overhead: Sequence[Timed],
                    mode: Mode, bare_argv: Sequence[str]) -> None:  # fmt: skip
    trial_s, task_s, bare_s, gaps_s, per_trial, bare_per_trial = [], [], [], [], [], []
    for timed in overhead:
        trials = [t for t in measured(timed.tune) if t.state == "completed"]
        bares = [statistics.median(exhaustive.walls[judged.space.key(t.params)]) for t in trials]
        trial_s += [seconds(t.started_at, t.finished_at) for t in trials]
        task_s += [timed.task_s[t.number] for t in trials]
        bare_s += bares
        gaps_s += [seconds(a.finished_at, b.started_at) for a, b in itertools.pairwise(trials)]
        per_trial.append(timed.elapsed_s / len(trials))
        bare_per_trial.append(sum(bares) / len(trials))
    paired = [t - b for t, b in zip(trial_s, bare_s, strict=True)]
    own = [t - k for t, k in zip(trial_s, task_s, strict=True)]
    trial, task, bare = (statistics.median(v) for v in (trial_s, task_s, bare_s))
    whole, whole_bare = statistics.median(per_trial), statistics.median(bare_per_trial)
    print(f"\noverhead: {len(trial_s)} trials of {len(overhead)} tunes, {mode.repetitions} runs "
          f"a trial (one llama-bench task each), each against the median bare run of its "
          f"config with the same runs")  # fmt: skip
    added = [a for a in overhead[0].argv[1:] if a not in bare_argv[1:]]
    print(f"  a task's argv is the bare one plus: {' '.join(added) or 'nothing'}")
    print(f"  bare llama-bench run:              median {bare * 1000:7.1f} ms")
    print(f"  the trial's benchmark task:        median {task * 1000:7.1f} ms")
    print(f"  tune trial (started -> finished):  median {trial * 1000:7.1f} ms, ratio to bare "
          f"{trial / bare:.2f}; paired difference median {statistics.median(paired) * 1000:+.1f}"
          f" ms ({min(paired) * 1000:+.0f} to {max(paired) * 1000:+.0f})")  # fmt: skip
    print(f"  trial minus its own task (the same moment, so load cancels): median "
          f"{statistics.median(own) * 1000:+.1f} ms; between trials (sampler, store): median "
          f"{statistics.median(gaps_s) * 1000:.1f} ms")  # fmt: skip
    print(f"  a whole tune (checks, study, sampler, trials) per trial: median "
          f"{whole * 1000:.1f} ms against {whole_bare * 1000:.1f} ms bare, ratio "
          f"{whole / whole_bare:.2f}")  # fmt: skip


async def main(mode: Mode) -> None:
    # Optuna's own "A new study created" lines would interleave with the report.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    load_before = os.getloadavg()[0]
    build = find_cached_build(Settings().toolchain_dir, "current")
    if build is None:
        sys.exit("no current llama.cpp build: run `llamaswitch toolchain build`")
    space = TuneSpace.from_data(dict(mode.grid))
    points = feasible(space)
    # Under the feasible count: a budget covering every point makes the tune exhaustive.
    budget, third = len(points) // 2, len(points) // 3
    started = time.perf_counter()
    exhaustive = Exhaustive()
    overhead: list[Timed] = []
    searches: list[Tune] = []
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        write_model(root / "models" / MODEL)
        low = free_port()
        settings = Settings(
            models_dir=root / "models",
            state_dir=root / "state",
            llama_server_path=build.llama_server,
            llama_bench_path=build.llama_bench,
            model_ports=(low, low + 4),
            server_port=low - 1 if low > 1024 else low + 5,
        )
        async with AsyncLlamaSwitch(settings) as ls:
            bench = await ls.binary("llama-bench")
            info = await ls.resolve_model(MODEL)
            # Only values the library itself would search for this model on this machine.
            derived = await ls.tune_space(MODEL, objective=mode.objective)
            for name, values in mode.grid.items():
                outside = [v for v in values if v not in derived.get(name, values)]
                if outside:
                    sys.exit(f"{name} {outside}: not in the space derived for this machine")
            print(f"llama-bench {bench.version} (current build), {os.cpu_count()} CPUs; a "
                  f"model of {info.parameter_count or 0:,} parameters (F32); {mode.name} "
                  f"mode")  # fmt: skip
            print(f"grid: {label(mode.grid)}: {space.size} points, {len(points)} feasible "
                  f"(ubatch <= batch); objective {mode.objective.label}")  # fmt: skip
            gaps = max(1, mode.rounds - 1)
            for i in range(mode.rounds):
                await exhaustive_round(points=points, space=space, mode=mode,
                                       caps=bench.capabilities, bench=bench.path,
                                       model=info.path, into=exhaustive, seed=i)  # fmt: skip
                if i >= gaps:
                    continue
                # Between the rounds, so that drifting load weighs on both sides alike.
                overhead.append(await run_tune(ls, mode.grid, mode, budget=mode.overhead_trials,
                                               seed=1000 + i, repetitions=mode.repetitions,
                                               max_repetitions=mode.repetitions))  # fmt: skip
                for seed in mode.seeds[i::gaps]:
                    timed = await run_tune(ls, mode.grid, mode, budget=budget, seed=seed)
                    searches.append(timed.tune)
            first_point = measured(overhead[0].tune)[0].params
            bare_argv = [str(bench.path), *space.bench_config(first_point, mode.objective,
                         mode.repetitions).to_argv(bench.capabilities, info.path)]  # fmt: skip
    judged = Judged.of(space, points, exhaustive, mode.objective)
    report_exhaustive(judged, mode)
    report_search(judged, searches, budget, third)
    report_overhead(judged, exhaustive, overhead, mode, bare_argv)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average (1 min) {load_before:.1f} "
          f"before, {os.getloadavg()[0]:.1f} after: other load on this machine shows in every "
          f"figure, rely on the medians")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: a grid of 8, 2 seeds, 3 rounds")  # fmt: skip
    asyncio.run(main(MODES["quick" if parser.parse_args().quick else "full"]))
