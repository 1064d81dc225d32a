"""How many ``status()`` calls a second the manager answers with 4 servers running.

Goals (from the issue): at least 1,000 in-process ``status()`` calls per second with 4
servers running, and a manager RSS under 80 MB. Starts 4 tiny-model servers with
``start()`` (free ports), then calls ``status()`` (all servers) and ``status(name)`` for
``--seconds`` each, through the async API and through the sync facade (a call into its
loop thread). RSS, CPU and VRAM figures are sampled at most every 0.5 s and shared by
all callers, so most calls read the cached sample.

    .venv/bin/python bench/bench_status.py [--seconds 2] [--generation legacy|current]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil

from llamaswitch import AsyncLlamaSwitch, LlamaSwitch, ServerConfig, Settings
from llamaswitch._toolchain import find_cached_build


def llama_server(generation: str) -> Path | None:
    """The toolchain cache's llama-server of ``generation`` (None until it is built)."""
    build = find_cached_build(Settings().toolchain_dir, generation)
    return build.llama_server if build is not None else None


MODELS = [f"m{i}.gguf" for i in range(4)]
CONFIG = ServerConfig(threads=1, ctx_size=256, parallel=1)


def write_models(folder: Path, names: list[str]) -> None:
    """Tiny models, written by a child process (numpy stays out of the measured RSS)."""
    code = ("import sys; from pathlib import Path; from llamaswitch.testing import "
            "write_tiny_model\nfor i, n in enumerate(sys.argv[2:]): "
            "write_tiny_model(Path(sys.argv[1]) / n, name=n, seed=i)")  # fmt: skip
    subprocess.run([sys.executable, "-c", code, str(folder), *names], check=True)


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 1e6


async def rate_async(call: Callable[[], Awaitable[object]], seconds: float) -> float:
    count = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        await call()
        count += 1
    return count / seconds


def rate_sync(call: Callable[[], object], seconds: float) -> float:
    count = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        call()
        count += 1
    return count / seconds


async def measure_async(settings: Settings, seconds: float) -> None:
    async with AsyncLlamaSwitch(settings) as ls:
        for model in MODELS:
            await ls.start(model, CONFIG)
        statuses = await ls.status()
        assert len(statuses) == 4
        assert all(s.running for s in statuses)
        all_rate = await rate_async(ls.status, seconds)
        one_rate = await rate_async(lambda: ls.status("m2.gguf"), seconds)
        print(f"  async status():        {all_rate:10,.0f} calls/s (goal >= 1,000)")
        print(f"  async status(name):    {one_rate:10,.0f} calls/s")
        print(f"  manager RSS with 4 servers: {rss_mb():.1f} MB (goal < 80 MB)")
        print(f"  servers' RSS (MiB): {[s.rss_mib for s in await ls.status()]}")


def measure_sync(settings: Settings, seconds: float) -> None:
    with LlamaSwitch(settings) as ls:
        for model in MODELS:
            ls.start(model, CONFIG)
        all_rate = rate_sync(ls.status, seconds)
        print(f"  sync status():         {all_rate:10,.0f} calls/s (a hop into the loop thread)")
        print(f"  manager RSS with 4 servers (sync facade): {rss_mb():.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--generation", choices=["legacy", "current"], default="current")
    args = parser.parse_args()
    server = llama_server(args.generation)
    if server is None:
        sys.exit(f"{args.generation}: no build; run `llamaswitch toolchain build`")
    print(f"{args.generation}: 4 servers of a tiny model; RSS before start: {rss_mb():.1f} MB")
    # A random block outside the ephemeral range; start() skips ports in use.
    base = random.randrange(20000, 30000)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_models(folder / "models", MODELS)
        settings = Settings(
            models_dir=folder / "models",
            llama_server_path=server,
            state_dir=folder / "state",
            model_ports=(base, base + 50),
            server_port=base - 1,
        )
        asyncio.run(measure_async(settings, args.seconds))
        measure_sync(settings, args.seconds)


if __name__ == "__main__":
    main()
