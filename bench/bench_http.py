"""Throughput of ``GET /api/v1/model/status`` with 4 model servers, against a trivial handler.

Goal (from the issue): the status route reaches at least 70 % of the requests per second
of a trivial aiohttp handler served the same way, in the same run.

    .venv/bin/python bench/bench_http.py [--seconds 5] [--rounds 3] [--connections 16]

Four processes on loopback:

- the service: ``llamaswitch serve`` (the real command: AppRunner, the middlewares, the
  core) on tiny models, with 4 llama-server processes started through ``/model/start``;
- the same app with its status cache off (``create_app(status_cache_ttl_s=0)``, served
  like ``serve`` does, 4 servers of its own): what every request costs when the list of
  statuses is built and encoded each time;
- the baseline: an aiohttp app whose one handler answers ``{"ok": true}``, served by the
  same AppRunner settings (no access log) in its own process;
- the load generator: this script in another process, ``--connections`` keep-alive
  connections sending requests back to back for ``--seconds``.

Rounds alternate the targets so that drift in the machine's load hits each of them.
Each figure is the median over the rounds; p99 is the 99th percentile latency of a round.
On a small machine the load generator competes with the server for CPU: compare the
ratio, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from llamaswitch.testing import write_tiny_model

SERVERS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the baseline service (run in its own process) -------------------------------------


def serve_trivial(port: int) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/trivial", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


def serve_uncached(port: int) -> None:
    """The service's app with the status cache off, settings from the environment."""
    from aiohttp import web

    from llamaswitch._settings import Settings
    from llamaswitch_http import create_app

    async def main() -> None:
        settings = Settings.from_env(server_port=port)
        runner = web.AppRunner(create_app(settings=settings, status_cache_ttl_s=0),
                               access_log=None)  # fmt: skip
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


# -- the load generator (run in its own process) ----------------------------------------


def load(url: str, seconds: float, connections: int) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    warm_requests = 0

    async def worker(session: aiohttp.ClientSession, until: float) -> None:
        nonlocal errors
        while (start := time.perf_counter()) < until:
            async with session.get(url) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - start)

    async def main() -> float:
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            # Warm-up: open the connections, let both sides' caches settle.
            warm = time.perf_counter() + 0.5
            await asyncio.gather(*(worker(session, warm) for _ in range(connections)))
            nonlocal warm_requests
            warm_requests = len(latencies)
            latencies.clear()
            start = time.perf_counter()
            until = start + seconds
            await asyncio.gather(*(worker(session, until) for _ in range(connections)))
            return time.perf_counter() - start

    elapsed = asyncio.run(main())
    ordered = sorted(latencies)
    return {
        "all_requests": len(ordered) + warm_requests,
        "requests": len(ordered),
        "rps": len(ordered) / elapsed,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "errors": errors,
    }


def cpu_s(process: psutil.Process) -> float:
    """The CPU time, user and system, ``process`` has taken so far."""
    times = process.cpu_times()
    return float(times.user + times.system)


def run_load(
    url: str, seconds: float, connections: int, server: psutil.Process
) -> dict[str, float]:
    """Load ``url``; also the server process's CPU time per request, a figure that the
    machine's other work disturbs far less than requests per second."""
    before = cpu_s(server)
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--load",
            url,
            "--seconds",
            str(seconds),
            "--connections",
            str(connections),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = dict(json.loads(result.stdout))
    figures["cpu_us"] = (cpu_s(server) - before) / figures["all_requests"] * 1e6
    return figures


# -- orchestration ----------------------------------------------------------------------


def request(url: str, method: str = "GET", body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    # S310: every URL here is http://127.0.0.1, built by this script.
    req = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    with urllib.request.urlopen(req, timeout=60) as response:  # noqa: S310
        return json.loads(response.read())


def wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - see request()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise SystemExit(f"{url} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--trivial", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--uncached", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load(args.load, args.seconds, args.connections)))
        return
    if args.trivial:
        serve_trivial(args.trivial)
        return
    if args.uncached:
        serve_uncached(args.uncached)
        return

    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    models = workdir / "models"
    for index in range(SERVERS):
        write_tiny_model(models / f"tiny-{index}.gguf", name=f"tiny {index}", seed=index)
    api_port, uncached_port, trivial_port = free_port(), free_port(), free_port()
    low = min(free_port(), 65000)

    def env(state: str, ports: str) -> dict[str, str]:
        return {
            **os.environ,
            "MODELS_DIR": str(models),
            "LLAMASWITCH_STATE_DIR": str(workdir / state),
            "LLAMASWITCH_MODEL_PORTS": ports,
        }

    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    service = subprocess.Popen(
        [sys.executable, "-m", "llamaswitch", "serve", "--port", str(api_port)],
        env=env("state", f"{low}-{low + 9}"),
        **quiet,
    )
    uncached = subprocess.Popen(
        [sys.executable, __file__, "--uncached", str(uncached_port)],
        env=env("state-uncached", f"{low + 10}-{low + 19}"),
        **quiet,
    )
    trivial = subprocess.Popen([sys.executable, __file__, "--trivial", str(trivial_port)])
    processes = {"trivial": trivial, "status": service, "uncached": uncached}
    apis = {
        "status": f"http://127.0.0.1:{api_port}/api/v1",
        "uncached": f"http://127.0.0.1:{uncached_port}/api/v1",
    }
    try:
        wait_up(f"http://127.0.0.1:{trivial_port}/trivial", trivial)
        for name, api in apis.items():
            wait_up(f"{api}/health", processes[name])
            for index in range(SERVERS):
                request(
                    f"{api}/model/start?wait=true",
                    "POST",
                    {"model_path": f"tiny-{index}.gguf", "config": {"threads": 1}},
                )
            status = request(f"{api}/model/status")
            assert [s["state"] for s in status["data"]] == ["ready"] * SERVERS, status
        size = len(json.dumps(status))
        print(
            f"{SERVERS} model servers ready per service; status response {size} bytes; "
            f"{args.connections} connections, {args.rounds} rounds of {args.seconds:g} s "
            f"per target, {os.cpu_count()} CPUs"
        )

        urls = {
            "trivial": f"http://127.0.0.1:{trivial_port}/trivial",
            **{name: f"{api}/model/status" for name, api in apis.items()},
        }
        figures: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
        for round_no in range(args.rounds):
            for name, url in urls.items():
                server = psutil.Process(processes[name].pid)
                result = run_load(url, args.seconds, args.connections, server)
                assert result["errors"] == 0, result
                figures[name].append(result)
                print(
                    f"  round {round_no + 1} {name:8s} {result['rps']:8.0f} req/s  "
                    f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
                    f"server CPU {result['cpu_us']:6.1f} us/req"
                )

        def median(name: str, key: str) -> float:
            return statistics.median(r[key] for r in figures[name])

        print()
        for name in urls:
            print(
                f"{name:8s} median {median(name, 'rps'):8.0f} req/s  "
                f"p99 {median(name, 'p99_ms'):6.2f} ms  "
                f"server CPU {median(name, 'cpu_us'):6.1f} us/req"
            )
        for name in apis:
            ratio = median(name, "rps") / median("trivial", "rps")
            cpu_ratio = median("trivial", "cpu_us") / median(name, "cpu_us")
            print(
                f"{name} / trivial throughput: {ratio:.0%} (goal >= 70%); "
                f"by server CPU per request: {cpu_ratio:.0%}"
            )
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)  # the services stop their model servers
        for process in processes.values():
            process.wait(60)


if __name__ == "__main__":
    main()
