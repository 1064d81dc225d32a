"""What ``switch()`` costs on top of launching llama-server by hand.

Goal (from the issue): a median overhead of at most 10 ms. For each generation, runs
interleaved pairs on a tiny model and one port:

- **direct**: ``subprocess.Popen`` of the very argv ``switch()`` uses (output discarded),
  then ``GET /health`` every 5 ms until 200;
- **switch**: ``await ls.switch(...)`` until it returns ``ready`` (the previous server is
  stopped between runs, untimed, so each switch is a cold start on a free port).

Prints both medians, their difference and the 90th percentiles.

    .venv/bin/python bench/bench_switch.py [--runs 20] [--generation legacy|current|both]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llamaswitch import AsyncLlamaSwitch, ServerConfig, Settings
from llamaswitch._process import child_spawn
from llamaswitch._toolchain import find_cached_build


def llama_server(generation: str) -> Path | None:
    """The toolchain cache's llama-server of ``generation`` (None until it is built)."""
    build = find_cached_build(Settings().toolchain_dir, generation)
    return build.llama_server if build is not None else None


POLL_S = 0.005


def guarded_launch(argv: list[str], port: int) -> float:
    """direct_launch, spawned the way the supervisor spawns (llamaswitch._process)."""
    command, popen = child_spawn(argv)
    return direct_launch(command, port, **popen)


def write_models(folder: Path, names: list[str]) -> None:
    """Tiny models, written by a child process.

    ``llamaswitch.testing`` needs numpy, which a manager does not import; numpy's BLAS
    registers fork handlers that would slow this process's fork and misstate the cost.
    """
    code = ("import sys; from pathlib import Path; from llamaswitch.testing import "
            "write_tiny_model\nfor i, n in enumerate(sys.argv[2:]): "
            "write_tiny_model(Path(sys.argv[1]) / n, name=n, seed=i)")  # fmt: skip
    subprocess.run([sys.executable, "-c", code, str(folder), *names], check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def health(port: int) -> int | None:
    """Status code of GET /health, None when nothing answers (blocking, like a script)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            line = sock.makefile("rb").readline()
        return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None


def direct_launch(argv: list[str], port: int, **popen: Any) -> float:
    """Seconds from Popen to /health 200, polling every 5 ms."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    try:
        while health(port) != 200:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {proc.returncode}")
            time.sleep(POLL_S)
        return time.perf_counter() - start
    finally:
        proc.terminate()
        try:
            proc.wait(1)
        except subprocess.TimeoutExpired:
            # llama-server can miss a SIGTERM sent just as it becomes ready; a second
            # one ends it (the supervisor does the same).
            proc.terminate()
            proc.wait(10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(generation: str, runs: int) -> None:
    server = llama_server(generation)
    if server is None:
        print(f"{generation}: no build; run `llamaswitch toolchain build`")
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_models(folder / "models", ["tiny.gguf"])
        port = free_port()
        settings = Settings(
            models_dir=folder / "models",
            llama_server_path=server,
            state_dir=folder / "state",
            model_ports=(port, port),
            server_port=port - 1 if port > 1024 else port + 1,
        )
        config = ServerConfig(port=port, threads=1, ctx_size=256, parallel=1)
        async with AsyncLlamaSwitch(settings) as ls:
            # Warm-up: identifies the binary (--help, --version) and fills the OS caches.
            argv = list((await ls.switch("tiny.gguf", config)).argv)
            await ls.stop()
            direct_launch(argv, port)

            direct: list[float] = []
            guarded: list[float] = []
            switched: list[float] = []
            ready_after: list[float] = []
            for _ in range(runs):
                direct.append(direct_launch(argv, port))
                guarded.append(guarded_launch(argv, port))
                start = time.perf_counter()
                status = await ls.switch("tiny.gguf", config)
                switched.append(time.perf_counter() - start)
                ready_after.append(status.ready_after_s or 0.0)
                await ls.stop()

    direct_ms = statistics.median(direct) * 1000
    switch_ms = statistics.median(switched) * 1000
    paired_ms = statistics.median(s - d for s, d in zip(switched, direct, strict=True)) * 1000
    before_ms = statistics.median(s - r for s, r in zip(switched, ready_after, strict=True)) * 1000
    print(f"{generation} ({runs} interleaved runs each)")
    print(f"  direct launch + 5 ms /health poll: median {direct_ms:7.1f} ms   "
          f"p90 {percentile(direct, 0.9) * 1000:7.1f} ms")  # fmt: skip
    print(f"  the same, spawned as the supervisor does (own session, parent-death "
          f"signal): median {statistics.median(guarded) * 1000:7.1f} ms")  # fmt: skip
    print(f"  switch() until ready:              median {switch_ms:7.1f} ms   "
          f"p90 {percentile(switched, 0.9) * 1000:7.1f} ms")  # fmt: skip
    print(f"  spawn to ready as switch() saw it: median "
          f"{statistics.median(ready_after) * 1000:7.1f} ms")  # fmt: skip
    print(f"  of which call to spawned (resolve, checks, fork+exec): median {before_ms:6.1f} ms")
    print(f"  median overhead: {switch_ms - direct_ms:+.1f} ms (goal <= 10 ms); "
          f"median of paired differences {paired_ms:+.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--generation", choices=["legacy", "current", "both"], default="both")
    args = parser.parse_args()
    generations = ["legacy", "current"] if args.generation == "both" else [args.generation]
    for generation in generations:
        asyncio.run(measure(generation, args.runs))


if __name__ == "__main__":
    main()
