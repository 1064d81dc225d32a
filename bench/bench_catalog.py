"""How fast the catalog lists a folder of 1,000 models, cold and warm.

Goals (from the issue): a cold listing (fresh catalog, every header read) under 1 s, a
warm listing (same catalog, headers cached, files only stat'ed) under 50 ms.

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
from llamaswitch.testing import write_tiny_model


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


if __name__ == "__main__":
    main()
