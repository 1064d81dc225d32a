"""Presets in a running service: reloaded on request and on SIGHUP, a bad file keeping the
last good presets; memory measured once and kept across restarts; the gateway's metrics."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LlamaBuild
from tests.gateway.conftest import CONTEXT, gateway_settings, running
from tests.helpers import free_port
from tests.rest.conftest import run, serve, serve_env

pytestmark = pytest.mark.real_binary


def test_presets_reload_and_a_bad_file_keeps_the_last_good_ones(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    settings = gateway_settings(llama_build, tmp_path, presets='[models.fast]\nfile = "alpha"\n')
    path = settings.models_dir / "llamaswitch.toml"

    async def scenario() -> None:
        async with running(settings) as gw:
            shown = (await (await gw.client.get("/api/v1/presets")).json())["data"]
            assert [m["id"] for m in shown["models"]] == ["fast"]
            assert shown["path"] == str(path)
            assert shown["error"] is None
            path.write_text(path.read_text() + "threads = 0\n[models.bad]\nbogus = 1\n")
            refused = await gw.client.post("/api/v1/presets/reload")
            body = await refused.json()
            assert refused.status == 422
            assert body["data"]["code"] == "presets_invalid"
            assert "[models.fast] threads" in body["error"]
            assert "[models.bad] bogus" in body["error"]
            kept = (await (await gw.client.get("/api/v1/presets")).json())["data"]
            assert [m["id"] for m in kept["models"]] == ["fast"]  # the last good ones
            assert kept["error"]["code"] == "presets_invalid"
            client = gw.openai()
            await client.completions.create(model="fast", prompt="x", max_tokens=2)
            path.write_text(f'[defaults]\nctx_size = {CONTEXT}\n[models.quick]\nfile = "beta"\n'
                            'aliases = ["gpt-4o-mini"]\n')  # fmt: skip
            loaded = await gw.client.post("/api/v1/presets/reload")
            assert loaded.status == 200, await loaded.text()
            ids = {m.id for m in (await client.models.list()).data}
            assert ids == {"quick", "alpha"}  # alpha is a plain catalog model again
            answer = await client.completions.create(model="gpt-4o-mini", prompt="x",
                                                     max_tokens=2)  # fmt: skip
            assert answer.choices
            assert [e.type for e in gw.of("gateway", "presets_reloaded")] == ["presets_reloaded"]
            await client.close()

    run(scenario())


def test_sighup_reloads_the_presets_of_serve(llama_build: LlamaBuild, tmp_path: Path) -> None:
    settings = gateway_settings(llama_build, tmp_path)
    path = settings.models_dir / "llamaswitch.toml"
    env = {
        "LLAMA_SERVER_PATH": str(settings.llama_server_path),
        "MODELS_DIR": str(settings.models_dir),
        "LLAMASWITCH_STATE_DIR": str(settings.state_dir),
        "SERVER_PORT": str(settings.server_port),
        "LLAMASWITCH_MODEL_PORTS": f"{settings.model_ports[0]}-{settings.model_ports[1]}",
    }
    with serve(["serve"], env, tmp_path, settings.server_port) as service:

        def ids() -> list[str]:
            status, body = service.request("GET", "/api/v1/presets")
            assert status == 200
            return [m["id"] for m in body["data"]["models"]]

        assert ids() == []
        path.write_text('[models.fast]\nfile = "alpha.gguf"\n')
        service.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while ids() != ["fast"]:
            assert time.monotonic() < deadline, service.text()
            time.sleep(0.05)
        path.write_text("[models.fast\n")  # not TOML: logged, the presets stay
        service.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "is not valid TOML" not in service.text():
            assert time.monotonic() < deadline, service.text()
            time.sleep(0.05)
        assert ids() == ["fast"]
        assert service.stop() == 0


def test_a_bad_presets_file_stops_serve_from_starting(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "llamaswitch.toml").write_text("[models.a]\nthreads = -1\n")
    done = subprocess.run(
        [sys.executable, "-m", "llamaswitch", "serve", "--port", str(free_port())],
        env=serve_env(
            {"MODELS_DIR": str(models), "LLAMASWITCH_STATE_DIR": str(tmp_path / "state")}
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "[models.a] threads" in done.stderr
    assert str(models / "llamaswitch.toml") in done.stderr


def test_memory_measured_once_is_used_after_a_restart(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    settings = gateway_settings(llama_build, tmp_path)

    async def first() -> float:
        async with running(settings) as gw:
            assert (await gw.model_entry("alpha"))["measured"] is None
            await gw.complete("alpha")
            deadline = time.monotonic() + 10
            while (measured := (await gw.model_entry("alpha"))["measured"]) is None:
                assert time.monotonic() < deadline
            assert measured["source"] == "measured"
            return float(measured["ram_mib"])

    async def second() -> dict[str, Any]:
        async with running(settings) as gw:  # a new service on the same state folder
            return await gw.model_entry("alpha")

    ram = run(first())
    assert ram > 5  # a llama-server's RSS, in MiB
    again = run(second())
    assert again["state"] == "unloaded"
    assert again["measured"]["ram_mib"] == pytest.approx(ram)
    plan_need = again["measured_mib"]
    assert plan_need == pytest.approx(ram, abs=0.1)


def test_a_model_unloaded_before_its_first_measurement_is_measured_as_it_goes(
    llama_build: LlamaBuild, tmp_path: Path
) -> None:
    # Each model is measured 0.5 s after ready, and once more as it is unloaded: that
    # last figure is stored in the background, so that a swap waits for no SQLite write.
    settings = gateway_settings(llama_build, tmp_path, max_models=1)

    async def scenario() -> None:
        async with running(settings) as gw:
            await gw.complete("alpha")
            await gw.complete("beta")  # evicts alpha
            assert [s.model_name for s in await gw.core.status()] == ["beta.gguf"]
            deadline = time.monotonic() + 10
            while (alpha := await gw.model_entry("alpha"))["measured"] is None:
                assert time.monotonic() < deadline, alpha
                await asyncio.sleep(0.05)
            assert alpha["measured"]["source"] == "measured"
            assert alpha["measured"]["ram_mib"] > 5

    run(scenario())


def test_the_gateway_s_metrics(llama_build: LlamaBuild, tmp_path: Path) -> None:
    settings = gateway_settings(llama_build, tmp_path, max_models=1)

    async def scenario() -> str:
        async with running(settings) as gw:
            client = gw.openai()
            await client.completions.create(model="alpha", prompt="x", max_tokens=3)
            stream = await client.completions.create(model="beta", prompt="x", max_tokens=3,
                                                     stream=True)  # fmt: skip
            async for _ in stream:
                pass
            # Names no model has, and paths a client chose: one series each, not one per try.
            for name in ("nope", "nope-2", "nope-3"):
                await gw.client.post("/v1/completions", json={"model": name, "prompt": "x"})
            for path in ("/upstream/beta/health", "/upstream/beta/props"):
                assert (await gw.client.get(path)).status == 200
            await client.close()
            return await (await gw.client.get("/metrics")).text()

    text = run(scenario())
    lines = text.splitlines()

    def sample(prefix: str) -> float:
        found = [line for line in lines if line.startswith(prefix)]
        assert found, prefix
        return float(found[0].rsplit(" ", 1)[1])

    route = 'route="/v1/completions"'
    assert sample(f'llamaswitch_gateway_requests_total{{model="alpha",{route},status="200"}}') == 1
    unknown = f'llamaswitch_gateway_requests_total{{model="(unknown)",{route},status="404"}}'
    assert sample(unknown) == 3
    assert not [line for line in lines if "nope" in line]
    upstream = 'model="beta",route="/upstream/{model}/{path}",status="200"'
    assert sample(f"llamaswitch_gateway_requests_total{{{upstream}}}") == 2
    assert not [line for line in lines if "/upstream/beta" in line]
    assert sample('llamaswitch_gateway_load_seconds_count{model="beta"}') == 1
    # The stream and both upstream GETs: each answer's first byte is timed.
    assert sample('llamaswitch_gateway_time_to_first_token_seconds_count{model="beta"}') == 3
    assert 1 <= sample('llamaswitch_gateway_tokens_generated_total{model="alpha"}') <= 3
    assert sample('llamaswitch_gateway_evictions_total{reason="room"}') == 1
    assert sample('llamaswitch_gateway_evictions_total{reason="idle"}') == 0
