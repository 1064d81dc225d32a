"""Task overhead: one llama-bench command run directly vs submitted and waited for.

Runs the very argv the library builds (``-o md --progress -oe jsonl`` on a tiny model)
``--runs`` times each way, interleaved so that machine noise hits both alike, and prints
both medians and the difference. Goal: at most 30 ms median overhead.

The overhead is the database (insert, state changes, one commit per result), the event
loop's hops, and the spawn with Linux's parent-death signal (through ``setpriv`` where
installed, else a ``preexec_fn``, which costs a full fork of this process).

    .venv/bin/python bench/bench_tasks.py                 # both generations, 25 runs
    .venv/bin/python bench/bench_tasks.py --generation legacy --runs 40
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from llamaswitch._binaries import BinaryInfo, identify
from llamaswitch._capabilities import BinaryKind
from llamaswitch._catalog import ModelCatalog
from llamaswitch._settings import Settings
from llamaswitch._toolchain import find_cached_build
from llamaswitch.bench.config import BenchConfig
from llamaswitch.bench.runner import BenchRunner
from llamaswitch.testing import write_tiny_model

CONFIG = BenchConfig(n_prompt=32, n_gen=16, repetitions=2, threads=1)


async def measure(bench: BinaryInfo, runs: int, work: Path) -> tuple[list[float], list[float]]:
    models = work / "models"
    write_tiny_model(models / "tiny.gguf", name="tiny", seed=1)
    settings = Settings(state_dir=work / "state", models_dir=models, llama_bench_path=bench.path)
    model = ModelCatalog(models).resolve("tiny.gguf")

    async def binary(kind: BinaryKind) -> BinaryInfo:
        return bench

    runner = BenchRunner(settings, binary=binary)
    await runner.open()
    direct: list[float] = []
    library: list[float] = []
    try:
        argv = [
            str(bench.path),
            *CONFIG.to_argv(bench.capabilities, model.path, structured_stderr=True),
        ]
        for index in range(runs + 2):  # the first two of each are warm-up
            start = time.perf_counter()
            # The baseline blocks the loop on purpose: nothing else runs on it meanwhile.
            subprocess.run(argv, capture_output=True, check=True, stdin=subprocess.DEVNULL)  # noqa: ASYNC221
            elapsed_direct = time.perf_counter() - start

            start = time.perf_counter()
            task_id = await runner.submit(model, CONFIG)
            task = await runner.wait(task_id, timeout_s=60)
            elapsed_library = time.perf_counter() - start
            if task.state != "completed":
                raise SystemExit(f"task {task_id} ended {task.state}: {task.error}")
            if index >= 2:
                direct.append(elapsed_direct)
                library.append(elapsed_library)
    finally:
        await runner.close()
    return direct, library


def report(generation: str, bench: BinaryInfo, direct: list[float], library: list[float]) -> None:
    def ms(values: list[float], percent: int) -> float:
        if percent == 50:
            return statistics.median(values) * 1000
        return statistics.quantiles(values, n=100)[percent - 1] * 1000

    overhead = ms(library, 50) - ms(direct, 50)
    # Each pair ran back to back: the median of the pairs' differences resists drift in
    # machine load better than the difference of two medians.
    paired = statistics.median(b - a for a, b in zip(direct, library, strict=True)) * 1000
    print(f"{generation}: {bench.label}, {len(direct)} runs each, interleaved")
    print(f"  direct   median {ms(direct, 50):7.1f} ms   p90 {ms(direct, 90):7.1f} ms")
    print(f"  library  median {ms(library, 50):7.1f} ms   p90 {ms(library, 90):7.1f} ms")
    verdict = "ok" if overhead <= 30 else "OVER the 30 ms goal"
    print(
        f"  overhead median {overhead:7.1f} ms  ({verdict}); median of paired "
        f"differences {paired:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generation", choices=["legacy", "current", "both"], default="both")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    toolchain = Settings().toolchain_dir
    generations = ["legacy", "current"] if args.generation == "both" else [args.generation]
    for generation in generations:
        build = find_cached_build(toolchain, generation)
        if build is None:
            print(
                f"{generation}: no build (run `llamaswitch toolchain build --generation "
                f"{generation}`)"
            )
            continue
        bench = identify(build.llama_bench, "llama-bench")
        with tempfile.TemporaryDirectory() as work:
            direct, library = asyncio.run(measure(bench, args.runs, Path(work)))
        report(generation, bench, direct, library)


if __name__ == "__main__":
    main()
