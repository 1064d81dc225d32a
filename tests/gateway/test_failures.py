"""What goes wrong, with real servers: a client that leaves, a model that cannot load, a
server killed mid-stream, a SIGTERM with streams in flight. Each answer is clear, and
nothing is left running."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import psutil
import pytest

from llamaswitch.testing import write_tiny_model
from tests.conftest import LlamaBuild
from tests.gateway.conftest import CONTEXT, gateway_settings, running, until, write_models
from tests.rest.conftest import run, serve

pytestmark = pytest.mark.real_binary

# A context that takes seconds to fill: a generation cut off is told from one that ended.
LONG_CONTEXT = 32768
LONG = f"""
[models.long]
file = "long.gguf"
ctx_size = {LONG_CONTEXT}
parallel = 1
"""
GENERATE_ALL = {"max_tokens": LONG_CONTEXT - 100, "extra_body": {"ignore_eos": True}}


def long_settings(build: LlamaBuild, root: Path, presets: str = LONG) -> Any:
    """alpha and beta, and long.gguf, whose context (current builds cap at the model's)
    takes seconds to fill."""
    write_tiny_model(root / "models" / "long.gguf", seed=7, context_length=LONG_CONTEXT)
    write_models(root / "models")
    return gateway_settings(build, root, presets=presets)


def decoded(log: Path) -> list[int]:
    """Where each finished generation stopped, from the server's log (both builds log
    ``stop processing: n_past = N`` or ``n_tokens = N``)."""
    found = re.findall(r"stop processing: n_(?:past|tokens) = (\d+)", log.read_text())
    return [int(n) for n in found]


def cpu_share(pid: int, seconds: float = 0.5) -> float:
    """The share of one core the process used over ``seconds`` (1.0: a core, all along).
    llama-server's own /slots and /metrics wait behind a generation, so they cannot say
    whether it still runs; its CPU time can."""
    process = psutil.Process(pid)
    before = sum(process.cpu_times()[:2])
    time.sleep(seconds)
    return (sum(process.cpu_times()[:2]) - before) / seconds


@pytest.mark.parametrize(
    ("stream", "cancel_handlers"),
    [(True, False), (False, False), (False, True)],
    ids=["stream", "whole", "whole-handler-cancelled"],
)
def test_a_client_that_leaves_stops_the_generation(
    llama_build: LlamaBuild, tmp_path: Path, stream: bool, cancel_handlers: bool
) -> None:
    settings = long_settings(llama_build, tmp_path)

    async def scenario() -> None:
        async with running(settings, cancel_handlers=cancel_handlers) as gw, \
                aiohttp.ClientSession() as session:  # fmt: skip
            body = {"model": "long", "prompt": "once", "n_predict": LONG_CONTEXT - 100,
                    "ignore_eos": True, "stream": stream}  # fmt: skip
            request = asyncio.create_task(session.post(f"{gw.url}/completion", json=body))
            if stream:
                response = await request
                assert response.status == 200
                await response.content.readany()  # generating now
            else:  # the answer comes at the end: the request is upstream meanwhile
                await until(gw.core.gateway.in_flight, 30, "the request upstream")
                await asyncio.sleep(0.3)
                assert not request.done()
            [server] = await gw.core.status()
            assert server.process_id is not None
            assert await asyncio.to_thread(cpu_share, server.process_id) > 0.3  # generating
            log = Path(settings.logs_dir / f"server-{server.port}.log")
            assert decoded(log) == []
            # The client goes away: its connection is closed.
            if stream:
                response.close()
            else:
                request.cancel()
            await until(lambda: decoded(log), 5, "the generation to stop")
            assert decoded(log)[-1] < LONG_CONTEXT // 4  # cut far short of the whole
            assert await asyncio.to_thread(cpu_share, server.process_id) < 0.2  # idle
            await until(lambda: gw.core.gateway.requests.recent(5)[0].status == 499, 5,
                        "the record of the request")  # fmt: skip
            assert gw.core.gateway.in_flight() == {}

    run(scenario())


def test_a_model_that_cannot_load_fails_every_waiter_once_and_backs_off(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    write_tiny_model(models / "broken.gguf", architecture="nosucharch")
    (models / "garbage.gguf").write_bytes(b"GGUF" + b"\x00" * 64)
    settings = gateway_settings(llama_build, tmp_path)

    async def scenario() -> None:
        async with running(settings) as gw:
            client = gw.openai()
            waiting = [client.completions.create(model="broken", prompt="x", max_tokens=2)
                       for _ in range(5)]  # fmt: skip
            errors = await asyncio.gather(*waiting, return_exceptions=True)
            for error in errors:
                assert isinstance(error, openai.InternalServerError), error
                assert error.status_code == 503
                body: Any = error.body
                assert body["code"] == "model_load_failed"
                assert "model broken failed to load" in body["message"]
                assert any("nosucharch" in line for line in body["details"]["log_tail"])
            assert len(gw.of("gateway", "model_loading")) == 1  # one load for all five
            # At once again: the backoff answers without a new load, saying when to retry.
            again = await gw.client.post("/v1/completions", json={"model": "broken",
                                                                  "prompt": "x"})  # fmt: skip
            assert again.status == 503
            assert int(again.headers["Retry-After"]) >= 1
            assert len(gw.of("gateway", "model_loading")) == 1
            # A file the catalog cannot read: refused, named, and nothing started.
            with pytest.raises(openai.InternalServerError) as unusable:
                await client.completions.create(model="garbage", prompt="x", max_tokens=2)
            assert "garbage" in unusable.value.message
            assert all(not s.running for s in await gw.core.status())
            await client.close()

    run(scenario())


def test_a_server_killed_mid_stream_ends_the_stream_and_loads_again(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    settings = long_settings(llama_build, tmp_path)

    async def scenario() -> None:
        async with running(settings) as gw:
            client = gw.openai()
            stream = await client.completions.create(model="long", prompt="x", stream=True,
                                                     **GENERATE_ALL)  # fmt: skip
            await anext(aiter(stream))
            [server] = await gw.core.status()
            assert server.process_id is not None
            os.kill(server.process_id, signal.SIGKILL)

            async def read_all() -> None:
                async with asyncio.timeout(10):  # it never hangs
                    async for _ in stream:
                        pass

            with pytest.raises(openai.APIError) as ended:
                await read_all()
            assert "ended the stream" in str(ended.value)
            answer = await client.completions.create(model="long", prompt="x", max_tokens=2)
            assert answer.choices
            assert len(gw.of("gateway", "model_loading")) == 2
            evicted = [e.data["reason"] for e in gw.of("gateway", "model_evicted")]
            assert evicted == ["crashed"]
            await client.close()

    run(scenario())


def test_sigterm_with_streams_in_flight_exits_cleanly(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    settings = long_settings(llama_build, tmp_path, LONG.replace("parallel = 1", "parallel = 4"))
    env = {
        "LLAMA_SERVER_PATH": str(settings.llama_server_path),
        "LLAMA_BENCH_PATH": str(settings.llama_bench_path),
        "MODELS_DIR": str(settings.models_dir),
        "LLAMASWITCH_STATE_DIR": str(settings.state_dir),
        "SERVER_PORT": str(settings.server_port),
        "LLAMASWITCH_MODEL_PORTS": f"{settings.model_ports[0]}-{settings.model_ports[1]}",
    }
    outcomes: list[str] = []

    def stream_one(url: str, started: threading.Event) -> None:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60)
        try:
            stream = client.completions.create(model="long", prompt="x", stream=True,
                                               **GENERATE_ALL)  # fmt: skip
            for _ in stream:
                started.set()
            outcomes.append("ended")
        except openai.APIError as exc:
            outcomes.append(type(exc).__name__)
        finally:
            started.set()
            client.close()

    with serve(["serve"], env, tmp_path, settings.server_port) as service:
        children: list[psutil.Process] = []
        threads = []
        for _ in range(3):
            started = threading.Event()
            thread = threading.Thread(target=stream_one, args=(service.url, started))
            thread.start()
            assert started.wait(60)
            threads.append(thread)
        children = psutil.Process(service.process.pid).children(recursive=True)
        assert any("llama-server" in " ".join(c.cmdline()) for c in children)
        began = time.monotonic()
        assert service.stop() == 0
        stopped_in = time.monotonic() - began
        for thread in threads:
            thread.join(30)
        assert len(outcomes) == 3  # every stream ended one way or the other, none hangs
        assert stopped_in < 20
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []
    assert len(gone) == len(children)


def test_a_projector_beside_the_model_is_passed_with_mmproj(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    write_tiny_model(models / "vision" / "eye.gguf", context_length=CONTEXT)
    # Not a real projector: the current build refuses it, which shows it was passed.
    write_tiny_model(models / "vision" / "mmproj-eye.gguf", seed=9)
    settings = gateway_settings(llama_build, tmp_path)

    async def scenario() -> None:
        async with running(settings) as gw:
            answer = await gw.client.post("/v1/completions", json={"model": "eye",
                                                                   "prompt": "x"})  # fmt: skip
            statuses = await gw.core.status()
            if llama_build.generation == "legacy":  # no --mmproj there: served without
                assert answer.status == 200, await answer.text()
                assert "--mmproj" not in statuses[0].argv
                return
            body = await answer.json()
            assert answer.status == 503, body
            [failed] = statuses
            assert "--mmproj" in failed.argv
            projector = failed.argv[failed.argv.index("--mmproj") + 1]
            assert projector == str(models / "vision" / "mmproj-eye.gguf")

    run(scenario())
