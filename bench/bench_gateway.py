"""The gateway side by side with a direct llama-server and llama.cpp's router mode.

One run, the same binary (the current build), the same tiny models and the same client
(aiohttp, keep-alive) against three setups:

- **direct**: ``llama-server -m alpha.gguf`` on its own port;
- **gateway**: ``llamaswitch serve``, the model named in the body;
- **router**: ``llama-server --models-dir DIR --models-max 1`` (llama.cpp's own).

Figures (medians; goals from the issue):

- warm non-streaming request, overhead over direct: at most the router's (aim 0.5 ms),
  with the gateway's CPU time per request and a reference line: bench/minimal_relay.py,
  a bare relay of aiohttp's server and client, the floor of a relay made as the
  gateway is;
- A/B alternating requests with one model slot (every request a swap): at most the
  router's;
- cold load to first token (a fresh service, the first streamed chunk): at most the
  router's (with a reference line: bench/minimal_relay.py, the load's steps in Python
  and nothing else); and the same in a service that runs on, the model unloaded between
  loads, for a figure of many more loads in the same time (with a reference line: the
  router told to skip llama.cpp's fit, as the gateway does where the fit could change
  nothing, llamaswitch/servers/fit.py). Each ratio comes with its 95 %
  interval (bootstrap over the loads): one that spans 1 says the two are not told apart
  by this run;
- 16 concurrent streams, chunks per second: at least 90 % of direct (with reference
  lines: the direct server under SCHED_BATCH too, as the gateway starts a server that
  computes on the CPU; and the model server on one core fewer);
- the gateway's own RSS with 4 models loaded and 64 streams open: under 100 MB.

    .venv/bin/python bench/bench_gateway.py [--warm 300] [--swaps 30] [--cold 15]
        [--reloads 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from bench_http import cpu_s

from llamaswitch._binaries import identify
from llamaswitch._process import _batch_scheduled
from llamaswitch._settings import Settings
from llamaswitch._toolchain import find_cached_build
from llamaswitch.servers.config import ServerConfig
from llamaswitch.servers.fit import fit_skip

CONTEXT = 2048
PROMPT = {"prompt": "Once upon a time", "max_tokens": 1, "temperature": 0}
#: Rounds of the warm figure (each a block of requests per setup) and of the streams.
#: Single stream rounds of a quarter second differed by up to 2x on two cores: the
#: streams figure takes 12 rounds of 400 tokens a stream.
ROUNDS = 6
STREAM_ROUNDS = 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def service_ports(size: int = 40) -> tuple[int, tuple[int, int]]:
    """A free port for a service, and a range of model ports that does not hold it: the
    settings refuse a range with the service's port in it, and the service would not
    start (a run failed so)."""
    low = free_port()
    port = free_port()
    while low <= port <= low + size:
        port = free_port()
    return port, (low, low + size)


def write_models(folder: Path, names: Sequence[str], context: int = CONTEXT) -> None:
    """Tiny models, by a child process (numpy stays out of this one)."""
    code = ("import sys; from pathlib import Path; from llamaswitch.testing import "
            "write_tiny_model\nfor i, n in enumerate(sys.argv[3:]): write_tiny_model("
            "Path(sys.argv[1]) / f'{n}.gguf', name=n, seed=i + 1, "
            "context_length=int(sys.argv[2]))")  # fmt: skip
    subprocess.run([sys.executable, "-c", code, str(folder), str(context), *names], check=True)


@contextlib.contextmanager
def process(
    argv: list[str], env: dict[str, str] | None = None, *, batch: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` running (``batch``: under SCHED_BATCH, as llamaswitch starts it)."""
    with _batch_scheduled(batch):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env, start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def until_up(session: aiohttp.ClientSession, url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{url} did not answer")


async def completion(session: aiohttp.ClientSession, url: str, model: str) -> float:
    """Seconds for one non-streaming completion."""
    start = time.perf_counter()
    async with session.post(f"{url}/v1/completions", json={**PROMPT, "model": model}) as r:
        await r.read()
        if r.status != 200:
            raise RuntimeError(f"{r.status}: {await r.text()}")
    return time.perf_counter() - start


async def first_chunk(session: aiohttp.ClientSession, url: str, model: str) -> float:
    """Seconds to the first chunk of a streamed completion (read to its end)."""
    start = time.perf_counter()
    body = {**PROMPT, "model": model, "stream": True, "max_tokens": 4}
    async with session.post(f"{url}/v1/completions", json=body) as r:
        if r.status != 200:
            raise RuntimeError(f"{r.status}: {await r.text()}")
        await r.content.readany()
        first = time.perf_counter() - start
        await r.read()
    return first


async def streams(session: aiohttp.ClientSession, url: str, model: str, count: int,
                  tokens: int) -> float:  # fmt: skip
    """Chunks per second over ``count`` concurrent streams of ``tokens`` tokens."""
    body = {"prompt": "x", "model": model, "stream": True, "max_tokens": tokens,
            "ignore_eos": True, "temperature": 0}  # fmt: skip

    async def one() -> int:
        for attempt in (1, 2):
            try:
                response = await session.post(f"{url}/v1/completions", json=body)
                break
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                # llama-server closes a connection after a stream: the pool may hand it
                # out as it closes. Nothing was answered, so a client tries again (the
                # openai client does); the gateway keeps its client connections.
                if attempt == 2:
                    raise
        chunks = 0
        async with response:
            async for line in response.content:
                if line.startswith(b"data: {"):
                    chunks += 1
        return chunks

    start = time.perf_counter()
    counts = await asyncio.gather(*(one() for _ in range(count)))
    return sum(counts) / (time.perf_counter() - start)


def gateway_env(models: Path, state: Path, port: int, ports: tuple[int, int], server: Path,
                **settings: str) -> dict[str, str]:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMASWITCH_")}
    env.update({
        "LLAMA_SERVER_PATH": str(server), "MODELS_DIR": str(models),
        "LLAMASWITCH_STATE_DIR": str(state), "SERVER_PORT": str(port),
        "LLAMASWITCH_MODEL_PORTS": f"{ports[0]}-{ports[1]}", **settings,
    })  # fmt: skip
    return env


@contextlib.asynccontextmanager
async def gateway(root: Path, server: Path, **settings: str) -> AsyncIterator[tuple[str, int]]:
    port, ports = service_ports()
    state = Path(tempfile.mkdtemp(dir=root))
    env = gateway_env(root / "models", state, port, ports, server, **settings)
    with process([sys.executable, "-m", "llamaswitch", "serve"], env) as proc:
        async with aiohttp.ClientSession() as session:
            await until_up(session, f"http://127.0.0.1:{port}/api/v1/health")
        yield f"http://127.0.0.1:{port}", proc.pid


@contextlib.asynccontextmanager
async def router(root: Path, server: Path, models_max: int, *, skip_fit: bool = False,
                 ) -> AsyncIterator[str]:  # fmt: skip
    """llama.cpp's router; ``skip_fit``: its children (which get its arguments and its
    environment) skip the fit as the gateway's do (llamaswitch/servers/fit.py)."""
    port = free_port()
    argv = [str(server), "--models-dir", str(root / "models"), "--models-max", str(models_max),
            "--host", "127.0.0.1", "--port", str(port), "-c", str(CONTEXT)]  # fmt: skip
    env = None
    if skip_fit:
        skip = fit_skip(ServerConfig(ctx_size=CONTEXT), identify(server, "llama-server"), {})
        argv += skip.args
        env = {**os.environ, **skip.env}
    with process(argv, env):
        async with aiohttp.ClientSession() as session:
            await until_up(session, f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def minimal_relay(root: Path, server: Path) -> AsyncIterator[str]:
    """bench/minimal_relay.py serving alpha: the load's steps in Python, nothing else."""
    port, child_port = free_port(), free_port()
    script = Path(__file__).with_name("minimal_relay.py")
    argv = [sys.executable, str(script), str(server), str(root / "models" / "alpha.gguf"),
            str(port), str(child_port)]  # fmt: skip
    with process(argv):
        async with aiohttp.ClientSession() as session:
            await until_up(session, f"http://127.0.0.1:{port}/api/v1/health")
        yield f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def direct(
    root: Path, server: Path, model: str, *, slots: int = 4, threads: int | None = None,
    batch: bool = False,
) -> AsyncIterator[str]:  # fmt: skip
    port = free_port()
    argv = [str(server), "-m", str(root / "models" / f"{model}.gguf"), "--host", "127.0.0.1",
            "--port", str(port), "-c", str(CONTEXT * slots), "-np", str(slots)]  # fmt: skip
    if threads is not None:
        argv += ["-t", str(threads)]
    with process(argv, batch=batch):
        async with aiohttp.ClientSession() as session:
            await until_up(session, f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"


async def stream_rates(root: Path, server: Path, tokens: int, threads: int | None = None,
                       batch: bool = False) -> tuple[float, float]:  # fmt: skip
    """Chunks per second of 16 streams, direct and through the gateway: the medians of
    :data:`STREAM_ROUNDS` rounds each, the setups alternating. ``batch``: the direct
    llama-server under SCHED_BATCH too, as the gateway starts its servers here."""
    preset = f"[defaults]\nctx_size = {CONTEXT * 16}\nparallel = 16\n"
    if threads is not None:
        preset += f"threads = {threads}\n"
    (root / "models" / "llamaswitch.toml").write_text(preset)
    unlimited = aiohttp.TCPConnector(limit=0)
    async with direct(root, server, "alpha", slots=16, threads=threads, batch=batch) as d_url, \
            gateway(root, server) as (g_url, _), \
            aiohttp.ClientSession(connector=unlimited) as s:  # fmt: skip
        rates: dict[str, list[float]] = {d_url: [], g_url: []}
        for url in rates:
            await streams(s, url, "alpha", 16, 8)
        for i in range(STREAM_ROUNDS):
            for url in (d_url, g_url) if i % 2 == 0 else (g_url, d_url):
                rates[url].append(await streams(s, url, "alpha", 16, tokens))
        return statistics.median(rates[d_url]), statistics.median(rates[g_url])


def ratio_interval(
    a: Sequence[float], b: Sequence[float], rounds: int = 2000
) -> tuple[float, float]:
    """The 95 % interval of median(a) / median(b), by bootstrap (seeded: a run's figures
    give the same interval every time)."""
    pick = random.Random(0)
    ratios = sorted(
        statistics.median(pick.choices(a, k=len(a))) / statistics.median(pick.choices(b, k=len(b)))
        for _ in range(rounds)
    )
    return ratios[int(0.025 * rounds)], ratios[int(0.975 * rounds) - 1]


def compared(a: Sequence[float], b: Sequence[float]) -> str:
    """'ratio 0.98 (95 % interval 0.93-1.04)' of median(a) / median(b)."""
    low, high = ratio_interval(a, b)
    return (f"ratio {statistics.median(a) / statistics.median(b):.2f} "
            f"(95 % interval {low:.2f}-{high:.2f})")  # fmt: skip


async def unload_router_model(session: aiohttp.ClientSession, url: str, model: str) -> None:
    """Unload ``model`` from a router, and wait until its list says so."""
    async with session.post(f"{url}/models/unload", json={"model": model}) as answer:
        await answer.read()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with session.get(f"{url}/models") as answer:
            listed = await answer.json()
        entry = next(m for m in listed["data"] if m["id"] == model)
        status = entry["status"]
        if (status.get("value") if isinstance(status, dict) else status) == "unloaded":
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"the router did not unload {model}")


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def current_server() -> Path:
    """The current build's llama-server (the run ends, saying how to build it, if none)."""
    build = find_cached_build(Settings().toolchain_dir, "current")
    if build is None:
        sys.exit("no current llama.cpp build: run `llamaswitch toolchain build`")
    return build.llama_server


async def main(args: argparse.Namespace) -> None:
    server = current_server()
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        write_models(root / "models", ["alpha", "beta", "gamma", "delta"])
        (root / "models" / "llamaswitch.toml").write_text(
            f"[defaults]\nctx_size = {CONTEXT * 4}\nparallel = 4\n"
        )
        print(f"llama-server: {server.name} (current build); 2 tiny models; {os.cpu_count()} CPUs")

        # -- warm requests, the setups interleaved ---------------------------------------
        async with direct(root, server, "alpha") as d_url, \
                gateway(root, server) as (g_url, g_pid), router(root, server, 1) as r_url, \
                minimal_relay(root, server) as m_url, aiohttp.ClientSession() as s:  # fmt: skip
            urls = {"direct": d_url, "gateway": g_url, "router": r_url, "relay": m_url}
            for url in urls.values():  # loaded, connections pooled
                for _ in range(20):
                    await completion(s, url, "alpha")
            times: dict[str, list[float]] = {name: [] for name in urls}
            gateway_cpu_s = 0.0
            gateway_process = psutil.Process(g_pid)
            # In blocks, the order rotated each round: drift in the machine's speed falls
            # on every setup alike, and one server's threads, still polling for work
            # after its request, do not take the CPU from the next setup's request (two
            # cores), as they would one request apart.
            names = list(urls)
            for block in range(ROUNDS):
                turn = block % len(names)
                for name in names[turn:] + names[:turn]:
                    before = cpu_s(gateway_process)
                    for _ in range(max(1, args.warm // ROUNDS)):
                        times[name].append(await completion(s, urls[name], "alpha"))
                    if name == "gateway":
                        gateway_cpu_s += cpu_s(gateway_process) - before
        direct_warm, gateway_warm, router_warm, relay_warm = (
            statistics.median(times[n]) for n in urls
        )
        print(f"\nwarm non-streaming /v1/completions (1 token), median of {len(times['direct'])}"
              f" per setup, in {ROUNDS} rounds of blocks in rotated order")  # fmt: skip
        print(f"  direct  {ms(direct_warm)}")
        print(
            f"  gateway {ms(gateway_warm)}  overhead {ms(gateway_warm - direct_warm)}; the "
            f"gateway's CPU time {ms(gateway_cpu_s / len(times['gateway']))} per request"
        )
        print(f"  router  {ms(router_warm)}  overhead {ms(router_warm - direct_warm)}")
        overhead, router_overhead = gateway_warm - direct_warm, router_warm - direct_warm
        print(
            f"  goal: overhead <= the router's ({verdict(overhead <= router_overhead)}), "
            f"aim <= 0.5 ms ({verdict(overhead <= 0.0005)})"
        )
        # The floor of a relay made of aiohttp's server and client, as the gateway is.
        print(
            f"  reference: a bare aiohttp relay (bench/minimal_relay.py) {ms(relay_warm)}, "
            f"overhead {ms(relay_warm - direct_warm)}; the gateway's own work on it "
            f"{ms(gateway_warm - relay_warm)}"
        )

        # -- A/B swaps with one slot, the two setups interleaved ------------------------
        # The router's servers get its own -c CONTEXT (and llama-server's default slots):
        # the gateway's the same, so that both load the same thing.
        (root / "models" / "llamaswitch.toml").write_text(f"[defaults]\nctx_size = {CONTEXT}\n")
        async with gateway(root, server, LLAMASWITCH_MAX_MODELS="1") as (g_url, _), \
                router(root, server, 1) as r_url, aiohttp.ClientSession() as s:  # fmt: skip
            swap_times: dict[str, list[float]] = {"gateway": [], "router": []}
            for url in (g_url, r_url):
                await completion(s, url, "alpha")
            for i in range(args.swaps):
                model = ("beta", "alpha")[i % 2]
                swap_times["gateway"].append(await completion(s, g_url, model))
                swap_times["router"].append(await completion(s, r_url, model))
        gateway_swap, router_swap = (statistics.median(t) for t in swap_times.values())
        print(f"\nA/B alternating, one model at a time, median of {args.swaps} swaps")
        print(f"  gateway {ms(gateway_swap)}")
        print(
            f"  router  {ms(router_swap)}  ratio gateway/router "
            f"{gateway_swap / router_swap:.2f}  goal <= 1 -> "
            f"{'met' if gateway_swap <= router_swap else 'NOT met'}"
        )

        # -- cold load to first token -------------------------------------------------
        gateway_cold: list[float] = []
        router_cold: list[float] = []
        relay_cold: list[float] = []

        async def gateway_once() -> None:
            async with gateway(root, server) as (url, _), aiohttp.ClientSession() as s:
                gateway_cold.append(await first_chunk(s, url, "alpha"))

        async def router_once() -> None:
            async with router(root, server, 1) as url, aiohttp.ClientSession() as s:
                router_cold.append(await first_chunk(s, url, "alpha"))

        async def relay_once() -> None:
            async with minimal_relay(root, server) as url, aiohttp.ClientSession() as s:
                relay_cold.append(await first_chunk(s, url, "alpha"))

        setups = [gateway_once, router_once, relay_once]
        for i in range(args.cold):  # the order rotates: none goes always first
            for once in setups[i % 3 :] + setups[: i % 3]:
                await once()
        g, r = statistics.median(gateway_cold), statistics.median(router_cold)
        relay = statistics.median(relay_cold)
        print(f"\ncold load to first streamed token, median of {args.cold} fresh services "
              "each, in rotating order")  # fmt: skip
        print(
            f"  gateway {ms(g)}\n  router  {ms(r)}  {compared(gateway_cold, router_cold)}  "
            f"goal <= 1 -> {verdict(g <= r)}\n"
            f"  reference: a bare aiohttp relay of the load's steps (bench/minimal_relay.py) "
            f"{ms(relay)}, {compared(relay_cold, router_cold)} to the router"
        )

        # -- cold loads in services that run on: many loads, the model unloaded between --
        # The gateway skips llama.cpp's fit where it could change nothing (here: the
        # context set, no GPU); the router runs it unless told. A router told (its
        # children get its arguments) is a reference: the same load as the gateway's.
        async with gateway(root, server) as (g_url, _), router(root, server, 1) as r_url, \
                router(root, server, 1, skip_fit=True) as f_url, \
                aiohttp.ClientSession() as s:  # fmt: skip
            urls = {"gateway": g_url, "router": r_url, "router, fit skipped": f_url}
            reloads: dict[str, list[float]] = {name: [] for name in urls}
            names = list(urls)
            for i in range(args.reloads):  # the order rotates: none goes always first
                for name in names[i % 3 :] + names[: i % 3]:
                    url = urls[name]
                    reloads[name].append(await first_chunk(s, url, "alpha"))
                    if name == "gateway":
                        async with s.post(f"{url}/api/v1/model/stop", json={}) as answer:
                            await answer.read()
                    else:
                        await unload_router_model(s, url, "alpha")
                    await asyncio.sleep(0.25)  # the stopped child's exit settles
        g, r = statistics.median(reloads["gateway"]), statistics.median(reloads["router"])
        fit_skipped = reloads["router, fit skipped"]
        print(f"  in a running service, the model unloaded between loads: median of "
              f"{args.reloads} loads each, in rotating order")  # fmt: skip
        print(
            f"  gateway {ms(g)}\n  router  {ms(r)}  "
            f"{compared(reloads['gateway'], reloads['router'])}  goal <= 1 -> {verdict(g <= r)}\n"
            f"  reference: the router told to skip the fit {ms(statistics.median(fit_skipped))};"
            f" the gateway to it {compared(reloads['gateway'], fit_skipped)}"
        )

        # -- 16 concurrent streams, the two setups in alternating rounds ---------------
        direct_rate, gateway_rate = await stream_rates(root, server, args.tokens)
        print(f"\n16 concurrent streams of {args.tokens} tokens, chunks/s (median of "
              f"{STREAM_ROUNDS} rounds, the setups alternating)")  # fmt: skip
        print(
            f"  direct  {direct_rate:.0f}\n  gateway {gateway_rate:.0f}  ratio "
            f"{gateway_rate / direct_rate:.2f}  goal >= 0.90 -> "
            f"{verdict(gateway_rate >= 0.9 * direct_rate)}"
        )
        # The gateway starts a server that computes on the CPU under SCHED_BATCH
        # (ServerConfig.cpu_scheduling "auto"): its threads no longer preempt its compute
        # threads, which is most of the figure above. With the direct server under the
        # same policy, the ratio is the relay's own cost.
        if hasattr(os, "SCHED_BATCH"):
            direct_rate, gateway_rate = await stream_rates(root, server, args.tokens,
                                                           batch=True)  # fmt: skip
            print(f"  the same, the direct server under SCHED_BATCH too: direct "
                  f"{direct_rate:.0f}, gateway {gateway_rate:.0f}, ratio "
                  f"{gateway_rate / direct_rate:.2f} (the relay's own cost, for "
                  "reference)")  # fmt: skip
        # The model server above computes on every core, so each chunk the gateway relays
        # takes its CPU time from the generation. With one core left to the clients and
        # the relay (as on a machine whose GPU computes), the ratio is the relay's own.
        if (os.cpu_count() or 1) >= 2:
            threads = (os.cpu_count() or 2) - 1
            direct_rate, gateway_rate = await stream_rates(root, server, args.tokens, threads)
            print(f"  the same, the model server on {threads} of {os.cpu_count()} cores: "
                  f"direct {direct_rate:.0f}, gateway {gateway_rate:.0f}, ratio "
                  f"{gateway_rate / direct_rate:.2f} (for reference)")  # fmt: skip

        # -- RSS with 4 models and 64 open streams ------------------------------------
        (root / "models" / "llamaswitch.toml").write_text(
            f"[defaults]\nctx_size = {CONTEXT * 16}\nparallel = 16\n"
        )
        async with gateway(root, server) as (url, pid), aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0)) as s:  # fmt: skip
            names = ["alpha", "beta", "gamma", "delta"]
            body: dict[str, Any] = {"prompt": "x", "stream": True, "max_tokens": 1500,
                                    "ignore_eos": True}  # fmt: skip
            opened = [await s.post(f"{url}/v1/completions", json={**body, "model": names[i % 4]})
                      for i in range(64)]  # fmt: skip
            for response in opened:
                await response.content.readany()
            rss = psutil.Process(pid).memory_info().rss / 2**20
            for response in opened:
                response.close()
        print(
            f"\ngateway RSS with 4 models loaded and 64 streams open: {rss:.1f} MiB "
            f"(goal < 100 MB -> {'met' if rss * 2**20 < 100e6 else 'NOT met'})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--swaps", type=int, default=30)
    parser.add_argument("--cold", type=int, default=15)
    parser.add_argument("--reloads", type=int, default=60)
    parser.add_argument("--tokens", type=int, default=400)
    asyncio.run(main(parser.parse_args()))
