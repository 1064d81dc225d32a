"""The gateway through the official clients, on both llama.cpp generations: models listed,
chat streamed and not, completions, embeddings, Anthropic's messages, llama-server's own
routes and the pass-through."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import LlamaBuild
from tests.gateway.conftest import MESSAGES, gateway_settings, running
from tests.rest.conftest import run

pytestmark = pytest.mark.real_binary

EMBED = """
[models.embed]
file = "beta.gguf"
aliases = ["text-embedding-tiny"]
embeddings = true
pooling = "mean"
"""


def test_the_openai_client_lists_chats_completes_and_embeds(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    settings = gateway_settings(llama_build, tmp_path, presets=EMBED)

    async def scenario() -> None:
        async with running(settings) as gw:
            client = gw.openai()
            listed = {m.id: m for m in (await client.models.list()).data}
            assert set(listed) == {"alpha", "embed"}
            alpha = listed["alpha"].model_dump()
            assert alpha["state"] == "unloaded"
            assert alpha["aliases"] == ["alpha.gguf"]
            assert alpha["estimated_mib"] > 0
            assert alpha["measured_mib"] is None
            assert listed["embed"].model_dump()["aliases"] == ["text-embedding-tiny", "beta",
                                                               "beta.gguf"]  # fmt: skip

            chat = await client.chat.completions.create(
                model="alpha", messages=MESSAGES, max_tokens=8)  # fmt: skip
            assert chat.choices[0].message.role == "assistant"
            # Random weights may say end-of-text early.
            assert chat.usage is not None
            assert 1 <= chat.usage.completion_tokens <= 8

            stream = await client.chat.completions.create(
                model="alpha.gguf", messages=MESSAGES, max_tokens=8, stream=True)  # fmt: skip
            pieces = [chunk async for chunk in stream]
            assert len(pieces) >= 2  # streamed: a chunk per token, then the end
            finished = [c.choices[0].finish_reason for c in pieces if c.choices]
            assert finished[-1] in ("length", "stop")
            assert not any(finished[:-1])

            completion = await client.completions.create(
                model="alpha", prompt="Once upon a time", max_tokens=5)  # fmt: skip
            assert completion.usage is not None
            assert 1 <= completion.usage.completion_tokens <= 5

            embedding = await client.embeddings.create(model="text-embedding-tiny",
                                                       input=["one", "two"])  # fmt: skip
            assert [len(e.embedding) for e in embedding.data] == [64, 64]

            # One load per model, whoever asked and by whichever name.
            loads = [e.data["model"] for e in gw.of("gateway", "model_loading")]
            assert sorted(loads) == ["alpha", "embed"]
            listed_after = {m.id: m.model_dump() for m in (await client.models.list()).data}
            assert listed_after["alpha"]["state"] == "ready"
            servers = await gw.core.status()
            assert sorted(s.model_name for s in servers) == ["alpha.gguf", "beta.gguf"]

            # Answers name the model, never its file's path: the gateway starts each
            # server with --alias set to the model's id. A current llama-server says
            # that name in its completions; a legacy one, and either for embeddings,
            # says the name the request sent.
            assert sorted(s.config.alias or "" for s in servers) == ["alpha", "embed"]
            named = [chat.model, completion.model, embedding.model, *{c.model for c in pieces}]
            sent_alpha_gguf = "alpha" if llama_build.generation == "current" else "alpha.gguf"
            assert named == ["alpha", "alpha", "text-embedding-tiny", sent_alpha_gguf]
            await client.close()

    run(scenario())


def test_errors_take_openai_shape_and_name_the_model(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    settings = gateway_settings(llama_build, tmp_path)

    async def scenario() -> None:
        async with running(settings) as gw:
            client = gw.openai()
            with pytest.raises(openai.NotFoundError) as unknown:
                await client.chat.completions.create(model="alpah", messages=MESSAGES)
            assert unknown.value.status_code == 404
            assert isinstance(unknown.value.body, dict)
            assert unknown.value.body["code"] == "model_not_found"
            assert "'alpah'" in unknown.value.body["message"]
            assert "'alpha'" in unknown.value.body["message"]  # the closest name suggested

            raw = await gw.client.post("/v1/chat/completions", data=b"{not json",
                                       headers={"Content-Type": "application/json"})  # fmt: skip
            body = await raw.json()
            assert raw.status == 400
            assert body["error"]["type"] == "invalid_request_error"
            assert body["error"]["code"] == "bad_json"

            nameless = await gw.client.post("/v1/chat/completions", json={"messages": MESSAGES})
            assert nameless.status == 400
            assert "name the model" in (await nameless.json())["error"]["message"]
            assert await gw.core.status() == []  # nothing was loaded for any of them
            await client.close()

    run(scenario())


def test_llama_server_routes_and_the_pass_through(llama_build: LlamaBuild, tmp_path: Path) -> None:
    settings = gateway_settings(llama_build, tmp_path)

    async def scenario() -> None:
        async with running(settings) as gw:
            tokens = await gw.client.post("/tokenize", json={"model": "beta", "content": "hi"})
            assert tokens.status == 200
            assert isinstance((await tokens.json())["tokens"], list)
            # llama-server's own route without a model: the one model being served.
            # ignore_eos: random weights sample an end of text now and then (a run saw 2).
            done = await gw.client.post(
                "/completion", json={"prompt": "a", "n_predict": 3, "ignore_eos": True}
            )
            assert done.status == 200
            assert (await done.json())["tokens_predicted"] == 3
            # Any other /v1/ path: by ?model= on a GET (llama-server has /v1/health).
            health_v1 = await gw.client.get("/v1/health?model=beta")
            if llama_build.generation == "current":
                assert (health_v1.status, await health_v1.json()) == (200, {"status": "ok"})
            else:  # the legacy build has no /v1/health: its own 404 comes back
                assert health_v1.status == 404
                assert "llamaswitch" not in await health_v1.text()
            props = await gw.client.get("/upstream/beta/props")
            assert props.status == 200
            assert "default_generation_settings" in await props.json()
            health = await gw.client.get("/upstream/beta/health")
            assert (health.status, await health.json()) == (200, {"status": "ok"})
            # A route the upstream lacks answers the upstream's own 404, as it is.
            missing = await gw.client.get("/upstream/beta/no-such-route")
            assert missing.status == 404
            if llama_build.generation == "legacy":  # no /v1/responses there
                answer = await gw.client.post("/v1/responses", json={"model": "beta",
                                                                     "input": "hi"})  # fmt: skip
                assert answer.status == 404
                assert "llamaswitch" not in (await answer.text())
            routes = [r.route for r in reversed(gw.core.gateway.requests.recent(10))]
            assert routes[:6] == [
                "/tokenize",
                "/completion",
                "/v1/health",
                "/upstream/beta/props",
                "/upstream/beta/health",
                "/upstream/beta/no-such-route",
            ]

    run(scenario())


def test_the_anthropic_client_on_messages(llama_build: LlamaBuild, tmp_path: Path) -> None:
    if llama_build.generation == "legacy":
        pytest.skip("the legacy llama-server has no /v1/messages (the 404 is tested above)")
    settings = gateway_settings(llama_build, tmp_path, api_key="k-anthropic")

    async def scenario() -> None:
        async with running(settings) as gw:
            # x-api-key, which Anthropic's client sends, opens the gateway like a bearer key.
            client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="k-anthropic",
                                              max_retries=0)  # fmt: skip
            message = await client.messages.create(
                model="alpha", max_tokens=6, messages=[{"role": "user", "content": "Hi"}]
            )
            assert message.role == "assistant"
            # The random tiny model, sampled, may end its answer before max_tokens (it did
            # once in a full run): usage and stop_reason say which (EOS is end_turn).
            tokens = message.usage.output_tokens
            assert 1 <= tokens <= 6
            assert message.stop_reason == ("max_tokens" if tokens == 6 else "end_turn")
            counted = await client.messages.count_tokens(
                model="alpha", messages=[{"role": "user", "content": "Hi"}]
            )
            assert counted.input_tokens > 0
            wrong = anthropic.AsyncAnthropic(base_url=gw.url, api_key="wrong", max_retries=0)
            with pytest.raises(anthropic.AuthenticationError) as refused:
                await wrong.messages.create(
                    model="alpha", max_tokens=1, messages=[{"role": "user", "content": "Hi"}]
                )
            assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
            await client.close()
            await wrong.close()

    run(scenario())


def test_the_key_protects_the_gateway(llama_build: LlamaBuild, tmp_path: Path) -> None:
    settings = gateway_settings(llama_build, tmp_path, api_key="k-openai")

    async def scenario() -> None:
        async with running(settings) as gw:
            client = gw.openai(api_key="k-openai")
            assert [m.id for m in (await client.models.list()).data] == ["alpha", "beta"]
            with pytest.raises(openai.AuthenticationError) as refused:
                await gw.openai(api_key="nope").models.list()
            assert refused.value.body["code"] == "unauthorized"  # type: ignore[index]
            bare = await gw.client.get("/upstream/alpha/health")
            assert bare.status == 401
            assert json.loads(await bare.text())["error"]["code"] == "unauthorized"
            assert await gw.core.status() == []  # refused before anything loaded
            await client.close()

    run(scenario())


def test_servers_with_keys_of_their_own_are_served_through_the_gateway(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    # LLAMASWITCH_SERVER_KEYS=always: even a loopback server refuses a caller without its
    # key, and the gateway sends the key it was given.
    settings = gateway_settings(llama_build, tmp_path, server_keys="always")

    async def scenario() -> None:
        async with running(settings) as gw:
            client = gw.openai()
            reply = await client.chat.completions.create(
                model="alpha", messages=MESSAGES, max_tokens=4)  # fmt: skip
            assert reply.choices[0].finish_reason in ("length", "stop")
            (status,) = await gw.core.status()
            key = gw.core.supervisor.server_key(port=status.port)
            assert key
            # /completion: the legacy server leaves /v1/models open to anyone.
            url = f"http://127.0.0.1:{status.port}/completion"
            body = {"prompt": "a", "n_predict": 1}
            async with aiohttp.ClientSession() as direct:
                async with direct.post(url, json=body) as bare:
                    assert bare.status == 401
                headers = {"Authorization": f"Bearer {key}"}
                async with direct.post(url, json=body, headers=headers) as keyed:
                    assert keyed.status == 200
            await client.close()

    run(scenario())
