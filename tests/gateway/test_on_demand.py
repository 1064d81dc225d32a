"""Loading on demand with real servers: one slot for two models under concurrent streams,
one load for many waiters, eviction that waits for a stream, idle unload, the queue limit,
and admin switches that drain."""

from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from llamaswitch.servers.status import ServerState
from llamaswitch.testing import write_tiny_model
from llamaswitch_http import _app as app_module
from llamaswitch_http._state import UPSTREAM
from llamaswitch_http._upstreams import Upstreams
from tests.conftest import LlamaBuild
from tests.gateway.conftest import (
    MESSAGES,
    Gateway,
    gateway_settings,
    running,
    until,
    write_models,
)
from tests.helpers import own_children, thread_policies
from tests.rest.conftest import run

pytestmark = pytest.mark.real_binary

# Long answers: random weights would otherwise end on an early end-of-text.
LONG = {"ignore_eos": True}


def alive_at_once(gw: Gateway) -> int:
    """The most servers that were alive together, from the state events in order."""
    alive: set[int] = set()
    most = 0
    for event in gw.of("server", "state"):
        port, state = event.data["port"], event.data["state"]
        if state in (ServerState.STARTING, ServerState.READY, ServerState.UNRESPONSIVE,
                     ServerState.STOPPING):  # fmt: skip
            alive.add(port)
        else:
            alive.discard(port)
        most = max(most, len(alive))
    return most


def test_one_slot_serves_eight_streams_over_two_models(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    settings = gateway_settings(llama_build, tmp_path, max_models=1)

    async def scenario() -> None:
        async with running(settings) as gw:
            client = gw.openai()

            async def chat(i: int) -> tuple[str, str]:
                stream = await client.chat.completions.create(
                    model=("alpha", "beta")[i % 2], messages=MESSAGES, max_tokens=12,
                    stream=True, extra_body=LONG)  # fmt: skip
                finish = ""
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].finish_reason:
                        finish = chunk.choices[0].finish_reason
                return ("alpha", "beta")[i % 2], finish

            done = await asyncio.wait_for(asyncio.gather(*(chat(i) for i in range(8))), 120)
            assert sorted(done) == [("alpha", "length")] * 4 + [("beta", "length")] * 4
            assert alive_at_once(gw) == 1
            loads = gw.of("gateway", "model_loading")
            # Batched by model: far fewer swaps than the 8 requests would make one by one.
            assert 2 <= len(loads) <= 4, [e.data for e in loads]
            records = gw.core.gateway.requests.recent(8)
            assert sorted(r.status for r in records) == [200] * 8
            await client.close()

    run(scenario())


def test_waiters_share_one_load_and_a_served_model_is_used_as_it_is(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    settings = gateway_settings(llama_build, tmp_path)

    async def scenario() -> None:
        async with running(settings) as gw:
            # Started through the admin API: the gateway uses it, loads nothing.
            started = await gw.core.start("beta.gguf")
            client = gw.openai()
            await client.completions.create(model="beta", prompt="x", max_tokens=2)
            assert gw.of("gateway", "model_loading") == []
            assert [e.data["adopted"] for e in gw.of("gateway", "model_ready")] == [True]
            # Six at once for a model that is not loaded: one load.
            answers = await asyncio.gather(*(
                client.completions.create(model="alpha", prompt="x", max_tokens=2)
                for _ in range(6)))  # fmt: skip
            assert len(answers) == 6
            assert [e.data["model"] for e in gw.of("gateway", "model_loading")] == ["alpha"]
            statuses = await gw.core.status()
            assert sorted(s.model_name for s in statuses) == ["alpha.gguf", "beta.gguf"]
            assert started.port in {s.port for s in statuses}  # the admin's server stayed
            await client.close()

    run(scenario())


def test_eviction_waits_for_a_stream_in_flight(llama_build: LlamaBuild, tmp_path: Path) -> None:
    settings = gateway_settings(llama_build, tmp_path, max_models=1)

    async def scenario() -> None:
        async with running(settings) as gw:
            client = gw.openai()
            stream = await client.chat.completions.create(
                model="alpha", messages=MESSAGES, max_tokens=400, stream=True,
                extra_body=LONG)  # fmt: skip
            first = await anext(aiter(stream))
            assert first is not None
            # beta needs alpha's place: its request waits for alpha's stream to end.
            beta = asyncio.create_task(client.completions.create(
                model="beta", prompt="x", max_tokens=2))  # fmt: skip
            finish = None
            async for chunk in stream:
                assert not beta.done()
                if chunk.choices and chunk.choices[0].finish_reason:
                    finish = chunk.choices[0].finish_reason
            assert finish == "length"  # never cut off mid-stream
            await asyncio.wait_for(beta, 60)
            evicted = gw.of("gateway", "model_evicted")
            assert [(e.data["model"], e.data["reason"]) for e in evicted] == [("alpha", "room")]
            assert alive_at_once(gw) == 1
            await client.close()

    run(scenario())


def test_an_idle_model_is_unloaded_after_its_ttl_and_loads_again(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    settings = gateway_settings(
        llama_build,
        tmp_path,
        idle_ttl_s=0.5,
        presets='[models.keep]\nfile = "beta.gguf"\nttl_s = 0\n',
    )

    async def scenario() -> None:
        async with running(settings) as gw:
            client = gw.openai()
            await client.completions.create(model="alpha", prompt="x", max_tokens=2)
            await client.completions.create(model="keep", prompt="x", max_tokens=2)
            await until(lambda: gw.of("gateway", "model_evicted"), 10, "the idle unload")
            [evicted] = gw.of("gateway", "model_evicted")
            assert (evicted.data["model"], evicted.data["reason"]) == ("alpha", "idle")
            assert [s.model_name for s in await gw.core.status()] == ["beta.gguf"]  # ttl 0
            await client.completions.create(model="alpha", prompt="x", max_tokens=2)
            assert [e.data["model"] for e in gw.of("gateway", "model_loading")] == [
                "alpha",
                "keep",
                "alpha",
            ]
            await client.close()

    run(scenario())


def test_a_full_queue_answers_429_with_retry_after(llama_build: LlamaBuild, tmp_path: Path) -> None:
    settings = gateway_settings(
        llama_build, tmp_path, queue_max=1, presets="[models.alpha]\nparallel = 1\n"
    )

    async def scenario() -> None:
        async with running(settings) as gw:
            client = gw.openai()
            async with gw.core.lease("alpha"):  # the one slot is taken
                queued = asyncio.create_task(client.completions.create(
                    model="alpha", prompt="x", max_tokens=2))  # fmt: skip
                await until(lambda: gw.of("gateway", "request_queued"), 10, "a queued request")
                with pytest.raises(openai.RateLimitError) as refused:
                    await client.completions.create(model="alpha", prompt="x", max_tokens=2)
                assert refused.value.status_code == 429
                assert refused.value.response.headers["Retry-After"] == "1"
                body: Any = refused.value.body
                assert body["code"] == "queue_full"
                assert body["type"] == "rate_limit_error"
                assert not queued.done()
            assert (await queued).choices  # served once the slot was free
            statuses = sorted(r.status for r in gw.core.gateway.requests.recent(2))
            assert statuses == [200, 429]
            await client.close()

    run(scenario())


async def long_stream(client: openai.AsyncOpenAI) -> Any:
    """A chat stream of alpha, about a second long (with the ``ONE_SLOT`` preset), its
    first chunk read: long enough that a forced stop cuts it even on a loaded machine.
    With 300 tokens, one full run once saw the stream end before the stop reached it."""
    stream = await client.chat.completions.create(
        model="alpha", messages=MESSAGES, max_tokens=1800, stream=True, extra_body=LONG
    )
    await anext(aiter(stream))
    return stream


async def how_it_ends(stream: Any) -> str:
    """The rest of a stream read: its finish reason, or ``cut`` if it broke off."""
    finish = "none"
    try:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
    except openai.APIError:
        return "cut"
    return finish


#: One slot with the whole context, for :func:`long_stream`.
ONE_SLOT = "parallel = 1\n"


def assert_cut_at_once(gw: Any, port: int) -> None:
    """The forced stop of ``port``'s server did not wait for its stream: it was killed by
    a signal after the cut's grace (50 ms), or, when the gateway's cut of the stream
    reached it first, it exited on its own within that grace. A stop that waits (no
    force, or a cut that does not work) ends in a clean exit after the second SIGTERM, a
    second later, on a current build."""
    events = [e for e in gw.of("server", "state") if e.data["port"] == port]
    stopping = next(e for e in events if e.data["state"] == "stopping")
    stopped = next(e for e in events if e.data["state"] == "stopped")
    took_s = (stopped.time - stopping.time).total_seconds()
    code = stopped.data["exit_code"]
    assert code < 0 or (code == 0 and took_s < 0.5), (code, took_s)


@pytest.mark.parametrize("force", [False, True])
def test_an_admin_stop_waits_for_the_requests_in_flight_unless_forced(
    llama_build: LlamaBuild, tmp_path: Path, force: bool
) -> None:
    settings = gateway_settings(llama_build, tmp_path, presets=ONE_SLOT)

    async def scenario() -> None:
        async with running(settings) as gw:
            client = gw.openai()
            stream = await long_stream(client)
            response = await gw.client.post(
                f"/api/v1/model/stop?force={str(force).lower()}", json={"model_name": "alpha.gguf"}
            )
            assert response.status == 200
            (stopped,) = (await response.json())["data"]
            # Forced: cut at once (a current build would finish its streams first; the
            # legacy build aborts at the SIGTERM). Otherwise the stream had finished: a
            # clean exit.
            if force:
                assert_cut_at_once(gw, stopped["port"])
            else:
                assert stopped["exit_code"] == 0, stopped
            # Without force the stop waited: the stream had ended when it answered.
            assert await how_it_ends(stream) == ("cut" if force else "length")
            assert await gw.core.status() == []
            # The next request loads it again.
            await client.completions.create(model="alpha", prompt="x", max_tokens=2)
            await client.close()

    run(scenario())


def test_a_forced_switch_cuts_the_stream_of_the_server_it_replaces(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    settings = gateway_settings(llama_build, tmp_path, presets=ONE_SLOT)

    async def scenario() -> None:
        async with running(settings) as gw:
            client = gw.openai()
            stream = await long_stream(client)
            (alpha,) = await gw.core.status()
            response = await gw.client.post(
                "/api/v1/model/switch?wait=true&force=true",
                json={"model_path": "beta.gguf", "config": {"port": alpha.port, "ctx_size": 512}},
            )
            assert response.status == 200, await response.text()
            assert await how_it_ends(stream) == "cut"
            assert_cut_at_once(gw, alpha.port)
            (beta,) = await gw.core.status()
            assert (beta.model_name, beta.port) == ("beta.gguf", alpha.port)
            await client.close()

    run(scenario())


def test_the_plan_says_what_loading_would_unload_without_doing_it(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    settings = gateway_settings(llama_build, tmp_path, max_models=1)

    async def scenario() -> None:
        async with running(settings) as gw:
            await gw.complete("alpha")
            answer = await gw.client.get("/api/v1/gateway/plan?model=beta")
            data = (await answer.json())["data"]
            plan = data["plan"]
            assert (plan["action"], plan["evict"]) == ("load", ["alpha"])
            assert "unloading alpha" in plan["reason"]
            ram = data["devices"][0]
            assert ram["id"] == "ram"
            assert ram["used_mib"] > 0
            assert ram["budget_mib"] > 0
            assert [s.model_name for s in await gw.core.status()] == ["alpha.gguf"]  # dry run

    run(scenario())


def test_preparing_plans_every_model_and_starts_nothing_even_beside_broken_ones(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    # serve prepares once it has identified llama-server (gateway.prepare): a plan for
    # each model and a rehearsed start, neither of which may start a process, and a
    # broken file beside the good ones must not stop it.
    models = write_models(tmp_path / "models")
    write_tiny_model(models / "broken.gguf", architecture="nosucharch")
    (models / "garbage.gguf").write_bytes(b"GGUF" + b"\x00" * 64)
    settings = gateway_settings(llama_build, tmp_path)

    async def scenario() -> None:
        async with running(settings) as gw:
            await gw.core.gateway.prepare()
            assert await gw.core.status() == []
            assert await asyncio.to_thread(own_children) == []
            plan = await gw.core.gateway.plan("alpha")
            assert (plan.action, plan.evict) == ("load", ())
            # The rehearsal changed nothing a request sees: the model still loads.
            await gw.complete("alpha")

    run(scenario())


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
def test_a_cpu_server_runs_under_sched_batch_while_two_streams_run_and_not_alone(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    # ServerConfig.cpu_scheduling "auto" on a CPU build: many streams are computed
    # faster under SCHED_BATCH, a lone request is answered sooner without it.
    settings = gateway_settings(llama_build, tmp_path, presets="parallel = 2\n")

    async def scenario() -> None:
        async with running(settings) as gw:
            client = gw.openai()
            try:
                await gw.complete("alpha")
                (status,) = await gw.core.status()
                pid = status.process_id
                assert pid is not None
                assert thread_policies(pid) == {os.SCHED_OTHER}
                streams = [await client.completions.create(
                    model="alpha", prompt="x", max_tokens=2000, stream=True, extra_body=LONG)
                    for _ in range(2)]  # fmt: skip
                firsts = [await anext(aiter(s)) for s in streams]
                assert all(f.choices for f in firsts)
                await until(lambda: thread_policies(pid) == {os.SCHED_BATCH}, what="SCHED_BATCH")
                await streams[0].close()  # one left: the ordinary policy again
                await until(lambda: thread_policies(pid) == {os.SCHED_OTHER}, what="SCHED_OTHER")
                await streams[1].close()
            finally:
                await client.close()

    run(scenario())


def test_the_connection_opened_as_the_load_begins_carries_the_first_request(
    llama_build: LlamaBuild, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A binary with the child protocol says when its load begins (its HTTP server
    # listens by then): the gateway opens its connection then (an OPTIONS, which
    # llama-server answers 200 while it loads and keeps alive), and the request that
    # waited for ready goes out on it. The legacy
    # build says nothing: its first request opens its own connection.
    seen: list[str] = []

    async def on_request(_s: Any, _c: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append(f"{params.method} {params.url.path}")

    async def on_new(_s: Any, _c: Any, _p: Any) -> None:
        seen.append("new connection")

    async def on_reuse(_s: Any, _c: Any, _p: Any) -> None:
        seen.append("reused")

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(on_request)
    tracing.on_connection_create_end.append(on_new)
    tracing.on_connection_reuseconn.append(on_reuse)
    monkeypatch.setattr(
        app_module, "Upstreams", functools.partial(Upstreams, trace_configs=[tracing])
    )
    settings = gateway_settings(llama_build, tmp_path)

    async def scenario() -> None:
        async with running(settings) as gw:
            await gw.complete("alpha")
            if llama_build.generation == "current":
                assert seen == ["OPTIONS /health", "new connection", "POST /v1/completions",
                                "reused"]  # fmt: skip
            else:
                assert seen == ["POST /v1/completions", "new connection"]

    run(scenario())


def test_a_server_told_to_stop_has_its_pooled_connections_closed_with_it(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    # llama-server's shutdown waits for each thread that holds a kept-alive connection to
    # notice (4-6 ms of the median A/B swap): the gateway closes its connections to a
    # server as the supervisor tells it to stop, whoever stops it (here an eviction,
    # then an admin stop), and a request after that gets a new pool.
    settings = gateway_settings(llama_build, tmp_path, max_models=1)

    async def scenario() -> None:
        async with running(settings) as gw:
            upstreams = gw.client.server.app[UPSTREAM]
            await gw.complete("alpha")
            (alpha,) = await gw.core.status()
            pool = upstreams.session(alpha.url)
            assert not pool.closed  # the one the request used, kept alive
            await gw.complete("beta")  # evicts alpha
            assert pool.closed
            (beta,) = await gw.core.status()
            assert beta.model_name == "beta.gguf"
            beta_pool = upstreams.session(beta.url)
            await gw.core.stop(port=beta.port)
            assert beta_pool.closed
            await gw.complete("alpha")  # on a new pool
            assert upstreams.session(alpha.url) is not pool

    run(scenario())


def test_the_requests_that_waited_for_a_load_run_before_it_is_announced(
    llama_build: LlamaBuild, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ready server wakes the waiting requests first: its model_ready event, its log
    # line and its measurement come after them, not on their way to their first token.
    from llamaswitch._events import Event, EventBus

    published: list[tuple[str, str]] = []
    real = EventBus.publish

    def publish(self: EventBus, event: Event) -> None:
        published.append((event.topic, event.type))
        real(self, event)

    monkeypatch.setattr(EventBus, "publish", publish)
    settings = gateway_settings(llama_build, tmp_path)

    async def scenario() -> None:
        async with running(settings) as gw:
            lease = await gw.core.gateway.acquire("alpha")
            try:
                assert ("gateway", "model_loading") in published
                assert ("gateway", "model_ready") not in published  # not yet: we ran first
                (status,) = await gw.core.status()
                assert status.state is ServerState.READY
            finally:
                gw.core.gateway.release(lease)
            await until(lambda: ("gateway", "model_ready") in published, what="model_ready")

    run(scenario())
