"""The cluster head side by side with the single-host gateway, on a Ray cluster of this
machine (``ray.cluster_utils.Cluster``, every port on loopback).

One run, the same binary (the current build) and tiny models:

- **single**: ``llamaswitch serve`` on one models folder (the single-host gateway);
- **head**: ``llamaswitch serve --cluster ray``, the model on another Ray node (its agent
  serves it; the head forwards to it over HTTP).

Figures (medians, ratios; the goal is the issue's):

- warm non-streaming request: what the head adds over the single-host gateway (goal:
  under 1 ms);
- time to place and load a model on a remote node, against a local load (one request
  for a model that is not loaded, after an admin stop);
- the head's RSS with 3 nodes and 12 servers.

    .venv/bin/python bench/bench_cluster.py [--warm 300] [--loads 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Every Ray port on loopback, and no usage report: read by Ray when it is imported, below.
os.environ.update({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"})

import aiohttp
import psutil
import ray
from ray.cluster_utils import Cluster

sys.path.insert(0, str(Path(__file__).parent))
from bench_gateway import (
    completion,
    current_server,
    free_port,
    ms,
    process,
    service_ports,
    until_up,
    write_models,
)

ROUNDS = 6


def node_env(root: Path, name: str, server: Path, models: list[str]) -> dict[str, str]:
    folder = root / name / "models"
    write_models(folder, models)
    low = free_port()
    return {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
        "LLAMASWITCH_HOST_NAME": name, "MODELS_DIR": str(folder),
        "LLAMASWITCH_STATE_DIR": str(root / name / "state"), "LLAMA_SERVER_PATH": str(server),
        "LLAMASWITCH_MODEL_PORTS": f"{low}-{low + 30}", "SERVER_PORT": str(low + 31),
        "LLAMASWITCH_DEFAULT_MODEL_PORT": str(low + 32),
    }  # fmt: skip


def serve_env(root: Path, name: str, server: Path, **extra: str) -> tuple[dict[str, str], str]:
    port, (low, high) = service_ports(30)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMASWITCH_")}
    env.update({
        "LLAMA_SERVER_PATH": str(server), "MODELS_DIR": str(root / name / "models"),
        "LLAMASWITCH_STATE_DIR": str(root / name / "serve-state"), "SERVER_PORT": str(port),
        "LLAMASWITCH_MODEL_PORTS": f"{low}-{high}", **extra,
    })  # fmt: skip
    return env, f"http://127.0.0.1:{port}"


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with session.post(url, json=body) as answer:
        data = await answer.json()
        if answer.status >= 400:
            raise RuntimeError(f"{url}: {answer.status} {data}")
        return data["data"]


async def main(args: argparse.Namespace) -> None:
    server = current_server()
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        names = {n: [f"{n}{i}" for i in range(4)] for n in ("one", "two", "three")}
        started = time.monotonic()
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False,
            "env_vars": node_env(root, "one", server, names["one"])})  # fmt: skip
        for name in ("two", "three"):
            cluster.add_node(num_cpus=1, env_vars=node_env(root, name, server, names[name]))
        print(f"llama-server: {server.name} (current build); a 3-node Ray cluster up in "
              f"{time.monotonic() - started:.1f} s; {os.cpu_count()} CPUs")  # fmt: skip
        head_env, head_url = serve_env(root, "head", server, LLAMASWITCH_CLUSTER="ray",
                                       RAY_ADDRESS=cluster.address)  # fmt: skip
        (root / "head" / "models").mkdir(parents=True)
        # The single-host gateway serves node two's folder: the same files as the head's
        # remote model.
        single_env, single_url = serve_env(root, "two", server)
        model = names["two"][0]
        try:
            serve = [sys.executable, "-m", "llamaswitch", "serve"]
            with process(serve, head_env) as head, process(serve, single_env):
                async with aiohttp.ClientSession() as s:
                    await measure(args, s, head.pid, head_url=head_url, single_url=single_url,
                                  model=model, names=names)  # fmt: skip
        finally:
            ray.shutdown()
            cluster.shutdown()


async def measure(args: argparse.Namespace, s: aiohttp.ClientSession, head_pid: int, *,
                  head_url: str, single_url: str, model: str,
                  names: dict[str, list[str]]) -> None:  # fmt: skip
    """The three figures, printed as they are measured."""
    await until_up(s, f"{head_url}/api/v1/health", 120)
    await until_up(s, f"{single_url}/api/v1/health", 60)

    # -- warm requests ------------------------------------------------------
    for url in (head_url, single_url):
        for _ in range(20):
            await completion(s, url, model)
    status = await (await s.get(f"{head_url}/api/v1/model/status?host=two")).json()
    assert any(x["model_name"] == f"{model}.gguf" for x in status["data"])
    times: dict[str, list[float]] = {"single": [], "head": []}
    urls = {"single": single_url, "head": head_url}
    for block in range(ROUNDS):
        for name in ("single", "head") if block % 2 == 0 else ("head", "single"):
            for _ in range(max(1, args.warm // ROUNDS)):
                times[name].append(await completion(s, urls[name], model))
    single, via_head = (statistics.median(times[n]) for n in ("single", "head"))
    print(f"\nwarm non-streaming /v1/completions (1 token), median of "
          f"{len(times['head'])} per setup, in {ROUNDS} alternating blocks")  # fmt: skip
    print(f"  single-host gateway {ms(single)}")
    print(f"  head, server on node two {ms(via_head)}  adds "
          f"{ms(via_head - single)} over the single-host gateway (goal < 1 ms -> "
          f"{'met' if via_head - single < 0.001 else 'NOT met'})")  # fmt: skip

    # -- a load on a remote node against a local one ----------------------
    loads: dict[str, list[float]] = {"single": [], "head": []}
    for _ in range(args.loads):
        await post(s, f"{single_url}/api/v1/model/stop", {"model_name": f"{model}.gguf"})
        await post(s, f"{head_url}/api/v1/model/stop",
                   {"model_name": f"{model}.gguf", "host": "two"})  # fmt: skip
        loads["single"].append(await completion(s, single_url, model))
        loads["head"].append(await completion(s, head_url, model))
    local, placed = (statistics.median(loads[n]) for n in ("single", "head"))
    print(f"\nplace and load, then answer (a model not loaded), median of {args.loads}")
    print(f"  single-host gateway (local load) {ms(local)}")
    print(f"  head (placed on a remote node) {ms(placed)}  ratio {placed / local:.2f}")

    # -- the head's RSS with 3 nodes and 12 servers -------------------------
    for host_models in names.values():
        for name in host_models:
            await completion(s, head_url, name)
    status = await (await s.get(f"{head_url}/api/v1/model/status")).json()
    ready = [x for x in status["data"] if x["state"] == "ready" and x["host_name"]]
    rss = psutil.Process(head_pid).memory_info().rss / 2**20
    hosts = sorted({x["host_name"] for x in ready})
    print(f"\nhead RSS with {len(hosts)} nodes and {len(ready)} servers: {rss:.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--loads", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
