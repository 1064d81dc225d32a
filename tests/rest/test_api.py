"""The REST routes in process: the seed's routes and envelope, each error status, the event
stream and the metrics, against real llama.cpp binaries of both generations."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from llamaswitch._api import AsyncLlamaSwitch
from llamaswitch._catalog import ModelInfo
from llamaswitch.testing import write_tiny_model
from llamaswitch_http import create_app
from llamaswitch_http._status_cache import StatusCache
from tests.conftest import LlamaBuild
from tests.rest.conftest import (
    call,
    check_envelope,
    client_for,
    free_port,
    make_settings,
    run,
    wait_task,
)

pytestmark = pytest.mark.real_binary

DATA = Path(__file__).parent.parent / "data" / "bench" / "legacy"
SMALL_BENCH = {"n_prompt": 16, "n_gen": 8, "threads": 2, "repetitions": 1, "output": "md"}


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


# -- models ----------------------------------------------------------------------------


def test_models_lists_the_catalog_with_the_seed_fields_and_metadata(
    models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            body = await call(client, "GET", "/api/v1/models", status=200)
        assert body["message"] == "Found 2 GGUF models"
        by_name = {m["name"]: m for m in body["data"]}
        assert set(by_name) == {"tiny.gguf", "other.gguf"}
        tiny = by_name["tiny.gguf"]
        assert tiny["path"] == str(models_dir / "tiny.gguf")
        assert tiny["size"] == (models_dir / "tiny.gguf").stat().st_size
        assert tiny["architecture"] == "llama"
        assert tiny["display_name"] == "tiny"
        assert by_name["other.gguf"]["block_count"] == 1

    run(scenario())


# -- model servers ---------------------------------------------------------------------


def test_switch_answers_202_starting_and_the_server_becomes_ready(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(llama_build, models_dir, state_dir)
        port = free_port()
        async with client_for(settings) as client:
            body = await call(
                client,
                "POST",
                "/api/v1/model/switch",
                status=202,
                json={"model_path": "tiny.gguf", "config": {"port": port}},
            )
            assert body["message"] == "Model switch initiated"
            assert body["data"]["state"] == "starting"
            assert body["data"]["port"] == port
            for _ in range(200):
                status = await call(
                    client, "GET", "/api/v1/model/status?model_name=tiny.gguf", status=200
                )
                if status["data"]["state"] == "ready":
                    break
                await asyncio.sleep(0.05)
            assert status["data"]["state"] == "ready"
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/health") as health,
            ):
                assert health.status == 200
            await call(client, "POST", "/api/v1/model/stop", status=200)

    run(scenario())


def test_switch_with_wait_answers_once_ready_with_the_seed_status_fields(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(llama_build, models_dir, state_dir)
        async with client_for(settings) as client:
            body = await call(
                client,
                "POST",
                "/api/v1/model/switch?wait=true",
                status=200,
                json={"model_path": "tiny.gguf", "config": {"threads": 2, "ctx_size": 256}},
            )
            data = body["data"]
            assert data["state"] == "ready"
            assert data["running"] is True
            for key in (
                "running",
                "model_name",
                "model_path",
                "port",
                "start_time",
                "process_id",
                "vram_usage",
            ):
                assert key in data
            assert data["port"] == settings.model_port
            await call(client, "POST", "/api/v1/model/stop", status=200)

    run(scenario())


def test_status_is_one_object_by_name_or_port_and_a_list_without(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(llama_build, models_dir, state_dir)
        async with client_for(settings) as client:
            first = free_port()
            await call(
                client,
                "POST",
                "/api/v1/model/switch?wait=true",
                status=200,
                json={"model_path": "tiny.gguf", "config": {"port": first}},
            )
            started = await call(
                client,
                "POST",
                "/api/v1/model/start?wait=true",
                status=200,
                json={"model_path": "other.gguf"},
            )
            second = started["data"]["port"]
            listed = await call(client, "GET", "/api/v1/model/status", status=200)
            assert listed["message"] == "Model status retrieved"
            assert sorted(s["port"] for s in listed["data"]) == sorted([first, second])
            one = await call(
                client, "GET", "/api/v1/model/status?model_name=other.gguf", status=200
            )
            assert isinstance(one["data"], dict)
            assert one["data"]["port"] == second
            by_port = await call(client, "GET", f"/api/v1/model/status?port={first}", status=200)
            assert by_port["data"]["model_name"] == "tiny.gguf"

            stopped = await call(
                client, "POST", "/api/v1/model/stop", status=200, json={"port": first}
            )
            assert stopped["message"] == "Model stopped"
            assert [s["state"] for s in stopped["data"]] == ["stopped"]
            await call(client, "GET", "/api/v1/model/status?model_name=tiny.gguf", status=404)
            await call(
                client, "POST", "/api/v1/model/stop", status=200, json={"model_name": "other.gguf"}
            )
            assert (await call(client, "GET", "/api/v1/model/status"))["data"] == []

    run(scenario())


def test_logs_are_the_servers_last_lines(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(llama_build, models_dir, state_dir)
        async with client_for(settings) as client:
            await call(
                client,
                "POST",
                "/api/v1/model/switch?wait=true",
                status=200,
                json={"model_path": "tiny.gguf"},
            )
            port = settings.model_port
            body = await call(client, "GET", f"/api/v1/model/logs?port={port}&lines=5", status=200)
            assert 0 < len(body["data"]) <= 5
            assert all(isinstance(line, str) for line in body["data"])
            by_name = await call(
                client, "GET", "/api/v1/model/logs?model_name=tiny.gguf", status=200
            )
            assert by_name["data"][-5:] == body["data"][-5:] or len(by_name["data"]) >= 5
            await call(client, "POST", "/api/v1/model/stop", status=200)

    run(scenario())


# -- benchmarks ------------------------------------------------------------------------


def test_benchmark_runs_as_a_task_with_status_history_and_compare(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(llama_build, models_dir, state_dir)
        async with client_for(settings) as client:
            submitted = await call(
                client,
                "POST",
                "/api/v1/benchmark",
                status=202,
                json={"model_path": "tiny.gguf", "config": SMALL_BENCH},
            )
            task_id = submitted["data"]["task_id"]
            assert submitted["data"]["state"] in ("queued", "running")
            task = await wait_task(client, task_id)
            assert task["state"] == "completed", task
            assert [r["test"] for r in task["results"]] == ["pp16", "tg8"]
            assert task["output"].lstrip().startswith("|")  # md, verbatim
            second = await call(
                client,
                "POST",
                "/api/v1/benchmark",
                status=202,
                json={"model_path": "other.gguf", "config": SMALL_BENCH},
            )
            other_id = second["data"]["task_id"]
            await wait_task(client, other_id)

            history = await call(client, "GET", "/api/v1/benchmarks", status=200)
            assert [t["id"] for t in history["data"]] == [other_id, task_id]
            only = await call(
                client,
                "GET",
                "/api/v1/benchmarks?model=tiny.gguf&state=completed&since=2000-01-01&limit=5",
                status=200,
            )
            assert [t["id"] for t in only["data"]] == [task_id]
            none = await call(client, "GET", "/api/v1/benchmarks?until=2000-01-01T00:00:00Z")
            assert none["data"] == []

            compared = await call(
                client,
                "GET",
                f"/api/v1/benchmarks/compare?task_ids={task_id},{other_id}",
                status=200,
            )
            rows = {row["test"]: row["results"] for row in compared["data"]["rows"]}
            assert set(rows) == {"pp16", "tg8"}
            assert set(rows["pp16"]) == {task_id, other_id}

            # Cancelling a finished task leaves it as it was, and says which state it is in.
            cancelled = await call(
                client, "POST", f"/api/v1/benchmark/cancel?task_id={task_id}", status=200
            )
            assert cancelled["data"]["state"] == "completed"
            assert cancelled["message"] == "Benchmark task already completed: nothing to cancel"
            again = await call(
                client, "POST", f"/api/v1/benchmark/cancel?task_id={task_id}", status=200
            )
            assert again["message"] == cancelled["message"]

    run(scenario())


def test_cancel_stops_a_running_benchmark(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(llama_build, models_dir, state_dir)
        long = {"n_prompt": 256, "n_gen": 64, "threads": 1, "repetitions": 200}
        async with client_for(settings) as client:
            submitted = await call(
                client,
                "POST",
                "/api/v1/benchmark",
                status=202,
                json={"model_path": "tiny.gguf", "config": long},
            )
            task_id = submitted["data"]["task_id"]
            await asyncio.sleep(0.3)
            body = await call(
                client, "POST", f"/api/v1/benchmark/cancel?task_id={task_id}", status=200
            )
            assert body["message"] == "Benchmark task cancelled"
            assert body["data"]["state"] == "cancelled"
            again = await call(
                client, "POST", f"/api/v1/benchmark/cancel?task_id={task_id}", status=200
            )
            assert again["message"] == "Benchmark task already cancelled: nothing to cancel"

    run(scenario())


def test_import_records_llama_bench_output_made_elsewhere(
    models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        text = (DATA / "plain.json").read_text()
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            body = await call(
                client,
                "POST",
                "/api/v1/benchmarks/import",
                status=201,
                json={"text": text, "format": "json"},
            )
            assert body["data"]["state"] == "completed"
            assert body["data"]["source"] == "imported"
            assert body["data"]["model"] == "tiny.gguf"
            assert [r["test"] for r in body["data"]["results"]] == ["pp16", "tg8"]
            md = await call(
                client,
                "POST",
                "/api/v1/benchmarks/import",
                status=201,
                json={
                    "text": (DATA / "plain.md").read_text(),
                    "format": "md",
                    "model": "elsewhere.gguf",
                },
            )
            assert md["data"]["model"] == "elsewhere.gguf"
            bad = await call(
                client,
                "POST",
                "/api/v1/benchmarks/import",
                status=422,
                json={"text": "not a table", "format": "md", "model": "x"},
            )
            assert bad["data"]["code"] == "bench_parse_error"

    run(scenario())


# -- errors ----------------------------------------------------------------------------


def test_malformed_json_is_400(models_dir: Path, state_dir: Path) -> None:
    json_type = {"Content-Type": "application/json"}

    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            body = await call(
                client,
                "POST",
                "/api/v1/model/switch",
                status=400,
                data=b'{"model_path": ',
                headers=json_type,
            )
            assert body["message"] == "Malformed JSON"
            assert "not valid JSON" in body["error"]
            # Nested 100,000 deep, NaN (not JSON), bytes that are not UTF-8.
            for bad in (b"[" * 100_000 + b"]" * 100_000, b'{"a": NaN}', b"\xff\xfe"):
                await call(
                    client, "POST", "/api/v1/benchmark", status=400, data=bad, headers=json_type
                )

    run(scenario())


def test_validation_names_every_bad_field_with_its_path(models_dir: Path, state_dir: Path) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            switch = await call(
                client,
                "POST",
                "/api/v1/model/switch",
                status=422,
                json={
                    "model_path": "tiny.gguf",
                    "config": {"threads": "4", "ctx_size": -1, "flash_attn": "maybe"},
                },
            )
            errors = switch["data"]["errors"]
            assert len(errors) == 3, errors
            assert {e.rsplit(" @ ", 1)[1] for e in errors} == {
                "$.config.threads",
                "$.config.ctx_size",
                "$.config.flash_attn",
            }
            assert switch["error"] == "; ".join(errors)

            bench = await call(
                client,
                "POST",
                "/api/v1/benchmark",
                status=422,
                json={
                    "model_path": "tiny.gguf",
                    "config": {"poll": 101, "cache_type_k": "f8", "bogus": 1},
                },
            )
            paths = {e.rsplit(" @ ", 1)[1] for e in bench["data"]["errors"]}
            assert paths == {"$.config.poll", "$.config.cache_type_k", "$.config.bogus"}

            top = await call(
                client,
                "POST",
                "/api/v1/model/switch",
                status=422,
                json={"model_path": 5, "config": [], "gpu": 1},
            )
            assert sorted(top["data"]["errors"]) == sorted(
                [
                    "invalid value for type, expected str @ $.model_path",
                    "invalid value for type, expected object or null @ $.config",
                    "extra fields found (gpu) @ $",
                ]
            )

            query = await call(client, "GET", "/api/v1/model/logs?lines=many&port=0", status=422)
            assert sorted(query["data"]["errors"]) == [
                "invalid value for type, expected int @ $.query.lines",
                "must be between 1024 and 65535 @ $.query.port",
            ]
            wait = await call(
                client,
                "POST",
                "/api/v1/model/switch?wait=yes",
                status=422,
                json={"model_path": "tiny.gguf"},
            )
            assert wait["data"]["errors"][0].endswith("@ $.query.wait")
            # Both names: the library checks they name one server (as in-process and the CLI).
            both = await call(client, "GET", "/api/v1/model/status?model_name=a&port=9999",
                              status=404)  # fmt: skip
            assert both["data"]["code"] == "server_not_found"
            await call(client, "GET", "/api/v1/model/logs", status=422)
            await call(
                client,
                "POST",
                "/api/v1/model/stop",
                status=422,
                json={"model_name": "a", "port": 9},
            )
            typo = await call(client, "GET", "/api/v1/model/status?model_nmae=a", status=422)
            assert typo["data"]["errors"] == ["unknown query parameter @ $.query.model_nmae"]
            missing = await call(client, "GET", "/api/v1/benchmark/status", status=422)
            assert missing["data"]["errors"] == [
                "required query parameter missing @ $.query.task_id"
            ]

    run(scenario())


def test_unknown_model_task_and_server_are_404(models_dir: Path, state_dir: Path) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            model = await call(
                client,
                "POST",
                "/api/v1/model/switch",
                status=404,
                json={"model_path": "tiny2.gguf"},
            )
            assert model["data"]["code"] == "model_not_found"
            assert model["data"]["suggestions"][0] == "tiny.gguf"
            assert "did you mean" in model["error"]
            bench = await call(
                client, "POST", "/api/v1/benchmark", status=404, json={"model_path": "nothing.gguf"}
            )
            assert bench["data"]["code"] == "model_not_found"
            task = await call(client, "GET", "/api/v1/benchmark/status?task_id=nope", status=404)
            assert task["data"]["code"] == "task_not_found"
            assert "nope" in task["error"]
            await call(client, "POST", "/api/v1/benchmark/cancel?task_id=nope", status=404)
            await call(client, "GET", "/api/v1/benchmarks/compare?task_ids=a,b", status=404)
            server = await call(
                client, "GET", "/api/v1/model/status?model_name=tiny.gguf", status=404
            )
            assert server["data"]["code"] == "server_not_found"
            await call(client, "POST", "/api/v1/model/stop", status=404, json={"port": 9999})
            await call(client, "GET", "/api/v1/model/logs?model_name=x", status=404)

    run(scenario())


def test_a_path_outside_the_models_folder_is_refused(models_dir: Path, state_dir: Path) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            body = await call(
                client,
                "POST",
                "/api/v1/model/switch",
                status=422,
                json={"model_path": "../../etc/passwd"},
            )
        assert body["data"]["code"] == "model_path_refused"

    run(scenario())


def test_a_port_held_by_another_process_is_409(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            settings = make_settings(llama_build, models_dir, state_dir)
            async with client_for(settings) as client:
                body = await call(
                    client,
                    "POST",
                    "/api/v1/model/switch?wait=true",
                    status=409,
                    json={"model_path": "tiny.gguf", "config": {"port": port}},
                )
        assert body["data"]["code"] == "port_in_use"
        assert body["data"]["port"] == port
        assert f"port {port}" in body["error"]

    run(scenario())


def test_the_apis_own_port_is_409(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(llama_build, models_dir, state_dir)
        async with client_for(settings) as client:
            body = await call(
                client,
                "POST",
                "/api/v1/model/switch",
                status=409,
                json={"model_path": "tiny.gguf", "config": {"port": settings.server_port}},
            )
        assert body["data"]["code"] == "port_reserved"
        assert "REST API" in body["error"]

    run(scenario())


def test_a_switch_overtaken_by_a_later_one_is_409_superseded(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(llama_build, models_dir, state_dir)
        async with client_for(settings) as client:
            requests = [
                call(
                    client,
                    "POST",
                    "/api/v1/model/switch?wait=true",
                    json={"model_path": model, "config": {"ctx_size": 256}},
                )
                for model in ["tiny.gguf", "other.gguf"] * 3
            ]
            answers = await asyncio.gather(*requests)
            statuses = [a["_status"] for a in answers]
            assert statuses[-1] == 200
            assert answers[-1]["data"]["model_name"] == "other.gguf"
            superseded = [a for a in answers if a["_status"] == 409]
            assert superseded, statuses
            assert all(a["data"]["code"] == "superseded" for a in superseded)
            assert set(statuses) <= {200, 409}
            listed = await call(client, "GET", "/api/v1/model/status", status=200)
            assert [s["model_name"] for s in listed["data"]] == ["other.gguf"]
            await call(client, "POST", "/api/v1/model/stop", status=200)

    run(scenario())


def test_a_missing_binary_is_503_and_health_says_so(
    tmp_path: Path, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(
            None,
            models_dir,
            state_dir,
            llama_server_path=tmp_path / "no" / "llama-server",
            llama_bench_path=tmp_path / "no" / "llama-bench",
        )
        async with client_for(settings) as client:
            body = await call(
                client, "POST", "/api/v1/model/switch", status=503, json={"model_path": "tiny.gguf"}
            )
            assert body["data"]["code"] == "binary_not_found"
            await call(
                client, "POST", "/api/v1/benchmark", status=503, json={"model_path": "tiny.gguf"}
            )
            health = await call(client, "GET", "/api/v1/health", status=200)
        assert health["data"]["status"] == "degraded"
        assert health["data"]["binaries"]["llama-server"]["found"] is False
        assert health["data"]["binaries"]["llama-server"]["error"]

    run(scenario())


def test_health_reports_the_binaries_found(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(llama_build, models_dir, state_dir)) as client:
            health = await call(client, "GET", "/api/v1/health", status=200)
        assert health["data"]["status"] == "ok"
        server = health["data"]["binaries"]["llama-server"]
        assert server == {"found": True, "version": llama_build.server.version, "error": None}

    run(scenario())


def test_a_server_that_dies_while_starting_is_502_with_llama_cpps_words(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    write_tiny_model(models_dir / "corrupt.gguf", name="corrupt", architecture="nosucharch")

    async def scenario() -> None:
        settings = make_settings(llama_build, models_dir, state_dir)
        async with client_for(settings) as client:
            body = await call(
                client,
                "POST",
                "/api/v1/model/switch?wait=true",
                status=502,
                json={"model_path": "corrupt.gguf"},
            )
            assert body["data"]["code"] == "server_start_failed"
            assert body["data"]["log_tail"], body
            await call(client, "POST", "/api/v1/model/stop", status=200)

    run(scenario())


def test_a_model_file_that_is_no_gguf_is_422_and_starts_nothing(
    models_dir: Path, state_dir: Path
) -> None:
    (models_dir / "corrupt.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 8)

    async def scenario() -> None:
        settings = make_settings(None, models_dir, state_dir)
        async with client_for(settings) as client:
            body = await call(client, "POST", "/api/v1/model/switch?wait=true", status=422,
                              json={"model_path": "corrupt.gguf"})  # fmt: skip
            assert body["data"]["code"] == "model_unusable"
            assert "unknown GGUF version" in body["error"]
            status = await call(client, "GET", "/api/v1/model/status", status=200)
            assert status["data"] == []

    run(scenario())


class _BuggyCore(AsyncLlamaSwitch):
    """A core with a bug in one method (nothing real fails this way on demand)."""

    async def list_models(self) -> list[ModelInfo]:
        raise RuntimeError("a bug")


def test_a_bug_is_500_with_a_trace_id_that_the_log_carries(
    models_dir: Path, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> dict[str, Any]:
        settings = make_settings(None, models_dir, state_dir)
        app = create_app(_BuggyCore(settings))
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/api/v1/models")
            body: dict[str, Any] = await response.json()
            check_envelope(body, response.status)
            assert response.status == 500
            assert response.headers["X-Trace-Id"] == body["data"]["trace_id"]
            return body

    with caplog.at_level(logging.ERROR, logger="llamaswitch_http"):
        body = run(scenario())
    trace_id = body["data"]["trace_id"]
    assert trace_id in body["error"]
    assert "a bug" not in body["error"]  # internals stay in the log
    record = next(r for r in caplog.records if trace_id in r.getMessage())
    assert record.exc_info is not None
    assert "a bug" in str(record.exc_info[1])


def test_unknown_routes_and_methods_answer_the_envelope(models_dir: Path, state_dir: Path) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            missing = await call(client, "GET", "/api/v1/nothing", status=404)
            assert missing["data"]["code"] == "not_found"
            response = await client.request("DELETE", "/api/v1/models")
            body = await response.json()
            check_envelope(body, response.status)
            assert response.status == 405
            assert "GET" in response.headers["Allow"]
            assert body["data"]["code"] == "method_not_allowed"

    run(scenario())


def test_bodies_must_be_json_and_not_too_large(models_dir: Path, state_dir: Path) -> None:
    async def scenario() -> None:
        settings = make_settings(None, models_dir, state_dir)
        async with client_for(settings, client_max_size=1024) as client:
            big = {"model_path": "tiny.gguf", "config": {"alias": "x" * 2000}}
            too_large = await call(client, "POST", "/api/v1/model/switch", status=413, json=big)
            assert too_large["message"] == "Request body too large"
            form = await call(
                client,
                "POST",
                "/api/v1/model/switch",
                status=415,
                data=b'{"model_path": "tiny.gguf"}',
                headers={"Content-Type": "text/plain"},
            )
            assert "application/json" in form["error"]
            # No body at all is fine where the body is optional: stop everything.
            await call(client, "POST", "/api/v1/model/stop", status=200)

    run(scenario())


# -- server-sent events -----------------------------------------------------------------


async def _next_event(stream: aiohttp.ClientResponse) -> tuple[str, dict[str, Any]]:
    """The next SSE message (skipping comments): (event name, JSON data)."""
    fields: dict[str, str] = {}
    while True:
        raw = await asyncio.wait_for(stream.content.readline(), 30)
        assert raw, "the stream ended"
        line = raw.decode().rstrip("\n")
        if not line:
            if "event" in fields:
                return fields["event"], json.loads(fields.get("data", "null"))
            fields.clear()
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(": ")
        fields[key] = value


def test_the_event_stream_delivers_a_switch_and_a_benchmarks_progress(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(llama_build, models_dir, state_dir)
        async with client_for(settings) as client:
            stream = await client.get("/api/v1/events")
            assert stream.status == 200
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            await call(
                client, "POST", "/api/v1/model/switch", status=202, json={"model_path": "tiny.gguf"}
            )
            states = []
            while "ready" not in states:
                name, event = await _next_event(stream)
                assert name == f"{event['topic']}.{event['type']}"
                if name == "server.state":
                    states.append(event["data"]["state"])
            assert states == ["starting", "ready"]

            submitted = await call(
                client,
                "POST",
                "/api/v1/benchmark",
                status=202,
                json={"model_path": "tiny.gguf", "config": SMALL_BENCH},
            )
            task_id = submitted["data"]["task_id"]
            seen: list[str] = []
            while True:
                name, event = await _next_event(stream)
                assert event["data"]["task_id"] == task_id
                seen.append(name)
                if name == "benchmark.state" and event["data"]["state"] == "completed":
                    break
            assert "benchmark.progress" in seen
            assert seen.count("benchmark.result") == 2  # pp16 and tg8, as each finished
            stream.close()
            await call(client, "POST", "/api/v1/model/stop", status=200)

    run(scenario())


def test_the_event_stream_sends_heartbeats_and_ends_cleanly_on_shutdown(
    models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> list[bytes]:
        app = create_app(settings=make_settings(None, models_dir, state_dir), sse_heartbeat_s=0.05)
        server = TestServer(app)
        await server.start_server()
        lines: list[bytes] = []
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.make_url("/api/v1/events?topic=server")) as stream,
        ):
            while lines.count(b": heartbeat\n") < 2:
                lines.append(await asyncio.wait_for(stream.content.readline(), 10))
            closing = asyncio.create_task(server.close())
            # The service ends the stream itself (with a last event) as it shuts down.
            lines.extend([line async for line in stream.content])
            await asyncio.wait_for(closing, 10)
        return lines

    lines = run(scenario())
    assert b"event: shutdown\n" in lines


def test_the_event_stream_rejects_an_unknown_topic(models_dir: Path, state_dir: Path) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            await call(client, "GET", "/api/v1/events?topic=gpu", status=422)

    run(scenario())


# -- metrics ---------------------------------------------------------------------------


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_parse_and_reflect_a_running_server(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(llama_build, models_dir, state_dir)
        async with client_for(settings) as client:
            empty = await client.get("/metrics")
            assert empty.status == 200
            assert empty.headers["Content-Type"].startswith("text/plain")
            before = _samples(await empty.text())
            assert before[("llamaswitch_servers", (("state", "ready"),))] == 0

            await call(
                client,
                "POST",
                "/api/v1/model/switch?wait=true",
                status=200,
                json={"model_path": "tiny.gguf"},
            )
            submitted = await call(
                client,
                "POST",
                "/api/v1/benchmark",
                status=202,
                json={"model_path": "other.gguf", "config": SMALL_BENCH},
            )
            await wait_task(client, submitted["data"]["task_id"])
            await asyncio.sleep(0.1)  # the metrics follow events on the loop
            after = _samples(await (await client.get("/metrics")).text())
            port = str(settings.model_port)
            assert after[("llamaswitch_servers", (("state", "ready"),))] == 1
            assert (
                after[
                    (
                        "llamaswitch_server_rss_bytes",
                        (("host", ""), ("model", "tiny.gguf"), ("port", port)),
                    )
                ]
                > 1024 * 1024
            )
            assert after[("llamaswitch_switch_duration_seconds_count", ())] == 1
            assert after[("llamaswitch_benchmark_tasks", (("state", "completed"),))] == 1
            assert after[("llamaswitch_benchmark_tasks", (("state", "running"),))] == 0
            await call(client, "POST", "/api/v1/model/stop", status=200)
            gone = _samples(await (await client.get("/metrics")).text())
            assert gone[("llamaswitch_servers", (("state", "ready"),))] == 0
            assert not any(name == "llamaswitch_server_rss_bytes" for name, _ in gone)

    run(scenario())


def test_the_status_list_shows_every_change_at_once_despite_its_cache(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(llama_build, models_dir, state_dir)
        # A long TTL: only server events may refresh the cached list here.
        async with client_for(settings, status_cache_ttl_s=3600) as client:
            assert (await call(client, "GET", "/api/v1/model/status"))["data"] == []
            switched = await call(
                client, "POST", "/api/v1/model/switch", status=202, json={"model_path": "tiny.gguf"}
            )
            listed = await call(client, "GET", "/api/v1/model/status")
            assert [s["process_id"] for s in listed["data"]] == [switched["data"]["process_id"]]
            for _ in range(200):
                listed = await call(client, "GET", "/api/v1/model/status")
                if listed["data"][0]["state"] == "ready":
                    break
                await asyncio.sleep(0.05)
            assert listed["data"][0]["state"] == "ready"
            await call(client, "POST", "/api/v1/model/stop", status=200)
            assert (await call(client, "GET", "/api/v1/model/status"))["data"] == []

    run(scenario())


def test_the_status_cache_expires_and_can_be_turned_off() -> None:
    cache = StatusCache(ttl_s=0.05)
    cache.put(b"x")
    assert cache.get() == b"x"
    cache.invalidate()
    assert cache.get() is None
    cache.put(b"y")
    time.sleep(0.06)
    assert cache.get() is None
    off = StatusCache(ttl_s=0)
    off.put(b"z")
    assert off.get() is None


# The seed README's four switch configurations and three benchmark scenarios, verbatim.
SEED_SWITCH_CONFIGS = {
    "cpu": {"host": "127.0.0.1", "port": 8080, "threads": 8, "ctx_size": 4096,
            "batch_size": 512},
    "gpu": {"host": "127.0.0.1", "port": 8080, "threads": 8, "n_gpu_layers": 99,
            "flash_attn": True, "batch_size": 2048, "ctx_size": 4096},
    "multi-gpu": {"host": "127.0.0.1", "port": 8080, "threads": 8, "n_gpu_layers": 99,
                  "split_mode": "layer", "tensor_split": "0.5,0.5", "main_gpu": 0,
                  "flash_attn": True},
    "high-performance": {"host": "127.0.0.1", "port": 8080, "threads": 32, "threads_batch": 32,
                         "n_gpu_layers": 99, "flash_attn": True, "batch_size": 2048,
                         "ubatch_size": 512, "ctx_size": 4096, "mlock": True,
                         "cache_type_k": "f16", "cache_type_v": "f16"},
}  # fmt: skip
SEED_BENCH_CONFIGS = {
    "cpu": {"n_prompt": 512, "n_gen": 128, "threads": 32, "batch_size": 1024,
            "n_gpu_layers": 0, "mmap": 1, "repetitions": 5},
    "gpu": {"n_prompt": 512, "n_gen": 128, "n_gpu_layers": 99, "flash_attn": 1,
            "batch_size": 2048, "threads": 32, "repetitions": 5},
    "multi-gpu": {"n_prompt": 512, "n_gen": 128, "n_gpu_layers": 99, "split_mode": "layer",
                  "tensor_split": "0.5,0.5", "main_gpu": 0, "flash_attn": 1, "threads": 32,
                  "repetitions": 5},
}  # fmt: skip


def test_the_seeds_example_bodies_work(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(llama_build, models_dir, state_dir)
        async with client_for(settings) as client:
            for name, config in SEED_SWITCH_CONFIGS.items():
                # Port 8080 may be taken on a shared machine: each body gets a free port.
                body = {"model_path": "tiny.gguf", "config": {**config, "port": free_port()}}
                answer = await call(client, "POST", "/api/v1/model/switch?wait=true", json=body)
                assert answer["_status"] == 200, (name, answer)
                assert answer["data"]["state"] == "ready", name
            await call(client, "POST", "/api/v1/model/stop", status=200)
            for name, config in SEED_BENCH_CONFIGS.items():
                # Sizes shrunk so that three runs take a second, not a minute, on 2 cores;
                # test_serve.py runs the seed's curl benchmarks at full size.
                small = {**config, "n_prompt": 16, "n_gen": 8, "repetitions": 1, "threads": 2}
                submitted = await call(
                    client,
                    "POST",
                    "/api/v1/benchmark",
                    status=202,
                    json={"model_path": "tiny.gguf", "config": small},
                )
                task = await wait_task(client, submitted["data"]["task_id"])
                assert task["state"] == "completed", (name, task["error"])

    run(scenario())
