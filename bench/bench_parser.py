"""How fast the llama-bench output parser reads a 10,000-row output, in each format.

    .venv/bin/python bench/bench_parser.py [--rows 10000] [--runs 7] [--formats json,csv]

The outputs are real: the captured current-generation sweep (six rows of
``tests/data/bench/current/sweep.json``) replicated to ``--rows`` rows and printed by the
tests' oracle renderer, which reproduces llama-bench's output byte for byte. Prints the
median time of ``--runs`` parses and the rows per second it gives.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the oracle lives in the tests package

from tests.bench_render import CURRENT, Row, render  # noqa: E402

from llamaswitch.bench.parser import BENCH_OUTPUT_FORMATS, parse_bench_output  # noqa: E402

SOURCE = ROOT / "tests" / "data" / "bench" / "current" / "sweep.json"


def rows(count: int) -> list[Row]:
    """``count`` rows cycled from the captured sweep."""
    real = [
        Row(
            values={k: v for k, v in item.items() if k not in ("samples_ns", "samples_ts")},
            samples_ns=tuple(item["samples_ns"]),
            samples_ts=tuple(float(sample) for sample in item["samples_ts"]),
        )
        for item in json.loads(SOURCE.read_text())
    ]
    return [real[index % len(real)] for index in range(count)]


def main() -> None:
    """Time each format and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--formats", default="json,csv", help=f"of {BENCH_OUTPUT_FORMATS}")
    args = parser.parse_args()

    sample = rows(args.rows)
    for fmt in args.formats.split(","):
        text = render(fmt, CURRENT, sample)
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            results = parse_bench_output(text, fmt)
            times.append(time.perf_counter() - start)
            assert len(results) == args.rows
        median = statistics.median(times)
        print(
            f"{fmt:>5}: {args.rows} rows ({len(text) / 1e6:.1f} MB) in {median * 1000:.0f} ms "
            f"median of {args.runs} -> {args.rows / median:,.0f} rows/s"
        )


if __name__ == "__main__":
    main()
