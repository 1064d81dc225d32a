"""Coverage-guided fuzzing of the GGUF header reader and the llama-bench output parser.

    .venv/bin/pip install atheris
    .venv/bin/python bench/fuzz_atheris.py gguf [--seconds 180] [--corpus DIR]
    .venv/bin/python bench/fuzz_atheris.py bench [--seconds 180] [--corpus DIR]

The Hypothesis fuzz tests (``tests/test_fuzz_gguf.py``, ``tests/test_fuzz_bench_parser.py``)
run a hundred examples on every test run; this runs libFuzzer for minutes, steered by
the coverage it reaches. The rules it checks are theirs:

- **gguf**: any bytes end in a ``GGUFHeader`` or a ``GGUFError``, within 0.5 s of CPU.
  The first byte of an input picks how many zeros follow the rest (none, 4 KiB, 1 MiB or
  8 MiB: what a sparse file reads as, so that huge counts fit). Seeds: a real tiny
  model's header, cut at its end.
- **bench**: any text ends in results or a ``BenchParseError``, within 0.5 s, and no
  string that comes out holds a lone surrogate. The first byte picks the format, the
  rest is decoded as UTF-8 with ``surrogateescape`` (so invalid bytes become the lone
  surrogates that undecodable output would). Seeds: the captured outputs in
  ``tests/data/bench``.

A rule broken is a crash: libFuzzer prints the input and writes it to ``crash-*`` in the
working folder. At the end it prints how many inputs it ran (``Done N runs in S
second(s)``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("md", "csv", "json", "jsonl", "sql")
ZEROS = (0, 4096, 2**20, 8 * 2**20)
CPU_BOUND_S = 0.5

with atheris.instrument_imports():
    from llamaswitch._errors import BenchParseError
    from llamaswitch._gguf import GGUFError, parse_header
    from llamaswitch.bench.parser import parse_bench_output


def fuzz_gguf(data: bytes) -> None:
    """One input of the gguf target."""
    if not data:
        return
    body = data[1:] + bytes(ZEROS[data[0] % len(ZEROS)])
    started = time.thread_time()
    with contextlib.suppress(GGUFError):  # the reader's own refusal: what the rule allows
        parse_header(body)
    spent = time.thread_time() - started
    if spent > CPU_BOUND_S:
        raise AssertionError(f"parse_header took {spent:.3f} s of CPU")


def fuzz_bench(data: bytes) -> None:
    """One input of the bench target."""
    if not data:
        return
    fmt = FORMATS[data[0] % len(FORMATS)]
    text = data[1:].decode("utf-8", "surrogateescape")
    started = time.thread_time()
    try:
        results = parse_bench_output(text, fmt)
    except BenchParseError as exc:
        str(exc).encode("utf-8")  # its message must be writable too
        results = []
    spent = time.thread_time() - started
    if spent > CPU_BOUND_S:
        raise AssertionError(f"parse_bench_output({fmt}) took {spent:.3f} s of CPU")
    for result in results:
        # UnicodeEncodeError: a lone surrogate came out.
        json.dumps(result.to_dict(), ensure_ascii=False).encode("utf-8")


def seed_gguf(corpus: Path) -> None:
    """A real tiny model's header, cut where its tensor data starts."""
    from llamaswitch.testing import write_tiny_model

    with tempfile.TemporaryDirectory() as folder:
        path = write_tiny_model(Path(folder) / "seed.gguf", embedding_length=8, block_count=1)
        data = path.read_bytes()
    end = parse_header(data).data_offset
    for index, zeros in enumerate(ZEROS):
        (corpus / f"tiny-{zeros}").write_bytes(bytes([index]) + data[:end])


def seed_bench(corpus: Path) -> None:
    """Every captured output, behind the byte that picks its format."""
    for path in sorted((ROOT / "tests" / "data" / "bench").glob("*/*")):
        fmt = path.suffix[1:]
        if fmt in FORMATS:
            name = f"{path.parent.name}-{path.name}"
            (corpus / name).write_bytes(bytes([FORMATS.index(fmt)]) + path.read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=["gguf", "bench"])
    parser.add_argument("--seconds", type=int, default=180, help="how long to fuzz")
    parser.add_argument("--corpus", type=Path, help="the corpus folder (default: a new one)")
    args, libfuzzer = parser.parse_known_args()
    # libFuzzer ends the process itself: a temporary folder would never be cleaned up.
    corpus = args.corpus or Path(tempfile.mkdtemp(prefix=f"fuzz-{args.target}-"))
    corpus.mkdir(parents=True, exist_ok=True)
    (seed_gguf if args.target == "gguf" else seed_bench)(corpus)
    print(f"corpus: {corpus}", flush=True)
    argv = [
        sys.argv[0],
        f"-max_total_time={args.seconds}",
        "-timeout=5",  # seconds of wall time per input: a hang, where 0.5 s of CPU is not
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
        *libfuzzer,
        str(corpus),
    ]
    atheris.Setup(argv, fuzz_gguf if args.target == "gguf" else fuzz_bench)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
