"""How fast the catalog lists a folder of 1,000 models, cold and warm, and what the
largest common vocabulary costs a header read beside its CPU budget.

Goals (from the issue): a cold listing (fresh catalog, every header read) under 1 s, a
warm listing (same catalog, headers cached, files only stat'ed) under 50 ms. Llama 3's
vocabulary must be read in a tenth of the header budget at most, so that no machine
refuses a real model (``HEADER_CPU_BUDGET_S`` states the margin).

    .venv/bin/python bench/bench_catalog.py [--models 1000] [--runs 7]

The folder is one tiny model written with ``write_tiny_model`` and copied (the copies
are real, distinct files). Its header is a tiny model's full header (vocabulary of 279
tokens, 21 tensors); only the weights are made narrow, to keep the folder near 40 MB.
The OS page cache is warm in both cases: "cold" means a fresh catalog, so it measures
reading and parsing the headers, not the disk.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from llamaswitch._catalog import ModelCatalog
from llamaswitch._gguf import HEADER_CPU_BUDGET_S, parse_header
from llamaswitch.testing import LLAMA3_VOCABULARY, vocabulary_header, write_tiny_model


def build_folder(folder: Path, count: int) -> None:
    """``count`` tiny models, a tenth of them in subfolders as llama.cpp's router lays out."""
    source = write_tiny_model(
        folder / "model-0000.gguf", name="bench", embedding_length=16, feed_forward_length=16
    )
    for index in range(1, count):
        subfolder = folder / f"sub-{index % 7}" if index % 10 == 0 else folder
        subfolder.mkdir(exist_ok=True)
        shutil.copyfile(source, subfolder / f"model-{index:04d}.gguf")


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def vocabulary_cpu_s(runs: int) -> list[float]:
    """This thread's CPU time to read a header with Llama 3's vocabulary, per run."""
    data = vocabulary_header(*LLAMA3_VOCABULARY)
    times = []
    for _ in range(runs):
        started = time.thread_time()
        parse_header(data)
        times.append(time.thread_time() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        build_folder(folder, args.models)
        cold: list[float] = []
        warm: list[float] = []
        for _ in range(args.runs):
            catalog = ModelCatalog(folder)
            cold.append(timed(catalog.list_models))
            assert catalog.header_reads == args.models
            warm.append(timed(catalog.list_models))
            assert catalog.header_reads == args.models  # the warm listing read no header
        listed = len(catalog.list_models())

    print(f"models listed: {listed} (runs: {args.runs})")
    print(f"cold listing: median {statistics.median(cold) * 1000:7.1f} ms  (goal < 1000 ms)")
    print(f"warm listing: median {statistics.median(warm) * 1000:7.1f} ms  (goal <   50 ms)")
    vocabulary = statistics.median(vocabulary_cpu_s(args.runs))
    tokens, merges = LLAMA3_VOCABULARY
    print(f"Llama 3 vocabulary ({tokens} tokens, {merges} merges): median "
          f"{vocabulary * 1000:.1f} ms CPU, {vocabulary / HEADER_CPU_BUDGET_S:.2f} of the "
          f"{HEADER_CPU_BUDGET_S * 1000:g} ms header budget  (goal <= 0.10)")  # fmt: skip


if __name__ == "__main__":
    main()
