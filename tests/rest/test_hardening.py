"""What a probe of the service broke, each finding reproduced as it was reported.

Real llama.cpp binaries of both generations; the request bodies are sent byte for byte as
a hostile client would send them (lone surrogates as JSON escapes, duplicate keys, a
stalled upload).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from llamaswitch._settings import Settings
from tests.conftest import LlamaBuild, require_build
from tests.rest.conftest import call, client_for, free_port, make_settings, run, wait_task

pytestmark = pytest.mark.real_binary

SMALL_BENCH = {"n_prompt": 16, "n_gen": 4, "repetitions": 1}


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


async def post_raw(
    client: TestClient[Any, Any], path: str, body: str, *, status: int | None = None
) -> dict[str, Any]:
    """POST ``body`` exactly as written (escapes and all), as JSON."""
    return await call(client, "POST", path, status=status, data=body.encode(),
                      headers={"Content-Type": "application/json"})  # fmt: skip


async def servers(client: TestClient[Any, Any]) -> list[tuple[int, int | None, str]]:
    """(port, pid, state) of every server, the service's view."""
    body = await call(client, "GET", "/api/v1/model/status", status=200)
    return [(s["port"], s["process_id"], s["state"]) for s in body["data"]]


# -- F1: one request poisoned the benchmark history for good -----------------------------


def test_a_lone_surrogate_in_a_benchmark_config_is_422_and_stores_nothing(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    body = ('{"model_path":"tiny.gguf","config":{"n_prompt":16,"n_gen":4,"repetitions":1,'
            '"devices":"x\\ud800"}}')  # fmt: skip

    async def scenario() -> None:
        async with client_for(make_settings(llama_build, models_dir, state_dir)) as client:
            refused = await post_raw(client, "/api/v1/benchmark", body, status=422)
            assert refused["data"]["errors"] == [
                "must be valid Unicode text: it holds a lone surrogate (U+D800) at index 1 "
                "@ $.config.devices"
            ]
            listed = await call(client, "GET", "/api/v1/benchmarks", status=200)
            assert listed["data"] == []

    run(scenario())


def _poison(database: Path, task_id: str) -> None:
    """Write the row an older version could store: escaped surrogates, a damaged column."""
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO tasks (id, source, model, config, output_format, state, created_at, "
            "state_history, host, error) VALUES (?, 'run', 'tiny.gguf', ?, 'md', 'failed', ?, "
            "?, ?, 'boom')",
            (task_id, '{"n_prompt": 16, "devices": "x\\ud800"}', "2026-01-01T00:00:00.000Z",
             '[["queued", "2026-01-01T00:00:00.000Z"], ["failed", "not a time"]]', "{not json"),
        )  # fmt: skip
        db.execute(
            "INSERT INTO results (task_id, idx, test, avg_ts, stddev_ts, data, recorded_at) "
            "VALUES (?, 0, 'pp16', 1.0, 0.0, ?, '2026-01-01T00:00:00.000Z')",
            (
                task_id,
                '{"test": "pp16", "n_prompt": 16, "n_gen": 0, "avg_ts": 1.0, '
                '"stddev_ts": 0.0, "model_filename": "m\\udcff.gguf"}',
            ),
        )
        db.execute(
            "INSERT INTO results (task_id, idx, test, avg_ts, stddev_ts, data, recorded_at) "
            "VALUES (?, 1, 'tg4', 1.0, 0.0, 'not json', '2026-01-01T00:00:00.000Z')",
            (task_id,),
        )


def test_a_row_that_is_already_bad_lists_shows_compares_and_deletes(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    settings = make_settings(llama_build, models_dir, state_dir)

    async def scenario() -> None:
        async with client_for(settings) as client:
            good = await call(client, "POST", "/api/v1/benchmark", status=202,
                              json={"model_path": "tiny.gguf", "config": SMALL_BENCH})  # fmt: skip
            await wait_task(client, good["data"]["task_id"])
        _poison(settings.database_path, "poisoned")
        # A restart: the history is read back from the database.
        async with client_for(settings) as client:
            listed = await call(client, "GET", "/api/v1/benchmarks", status=200)
            by_id = {t["id"]: t for t in listed["data"]}
            assert set(by_id) == {"poisoned", good["data"]["task_id"]}
            bad = by_id["poisoned"]
            assert "damaged" in bad["error"]
            assert bad["host"] == {}
            assert [r["test"] for r in bad["results"]] == ["pp16"]
            assert "\ufffd" in bad["results"][0]["model_filename"]
            await call(client, "GET", "/api/v1/benchmark/status?task_id=poisoned", status=200)
            ids = f"poisoned,{good['data']['task_id']}"
            await call(client, "GET", f"/api/v1/benchmarks/compare?task_ids={ids}", status=200)
            deleted = await call(client, "DELETE", "/api/v1/benchmark?task_id=poisoned",
                                 status=200)  # fmt: skip
            assert deleted["data"]["id"] == "poisoned"
            await call(client, "GET", "/api/v1/benchmark/status?task_id=poisoned", status=404)

    run(scenario())


def test_imported_output_with_a_lone_surrogate_is_422(models_dir: Path, state_dir: Path) -> None:
    row = {"model_filename": "m\ud800.gguf", "n_prompt": 16, "n_gen": 0, "avg_ts": 1.0,
           "stddev_ts": 0.0}  # fmt: skip
    text = json.dumps([row])  # the escapes as llama-bench's JSON would carry them

    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            body = await call(client, "POST", "/api/v1/benchmarks/import", status=422,
                              json={"text": text, "format": "json"})  # fmt: skip
            assert body["data"]["code"] in ("bench_parse_error", "validation_error")
            listed = await call(client, "GET", "/api/v1/benchmarks", status=200)
            assert listed["data"] == []

    run(scenario())


# -- deleting and pruning history (rule 4) -------------------------------------------------


def test_prune_deletes_finished_tasks_by_model_and_never_an_unfinished_one(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(llama_build, models_dir, state_dir)) as client:
            ids = {}
            for model in ("tiny.gguf", "other.gguf"):
                body = await call(client, "POST", "/api/v1/benchmark", status=202,
                                  json={"model_path": model, "config": SMALL_BENCH})  # fmt: skip
                ids[model] = body["data"]["task_id"]
                await wait_task(client, ids[model])
            refused = await call(client, "POST", "/api/v1/benchmarks/prune", status=422, json={})
            assert "name what to prune" in refused["error"]
            pruned = await call(client, "POST", "/api/v1/benchmarks/prune", status=200,
                                json={"model": "other.gguf"})  # fmt: skip
            assert pruned["data"] == {"deleted": [ids["other.gguf"]], "count": 1}
            listed = await call(client, "GET", "/api/v1/benchmarks", status=200)
            assert [t["id"] for t in listed["data"]] == [ids["tiny.gguf"]]
            future = "2999-01-01T00:00:00Z"
            pruned = await call(client, "POST", "/api/v1/benchmarks/prune", status=200,
                                json={"before": future, "state": "completed"})  # fmt: skip
            assert pruned["data"]["deleted"] == [ids["tiny.gguf"]]

    run(scenario())


def test_deleting_a_running_task_is_a_409_naming_its_state(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(llama_build, models_dir, state_dir)) as client:
            body = await call(client, "POST", "/api/v1/benchmark", status=202, json={
                "model_path": "tiny.gguf",
                "config": {"n_prompt": 16, "n_gen": 4, "repetitions": 1, "delay": 30}})  # fmt: skip
            task_id = body["data"]["task_id"]
            refused = await call(client, "DELETE", f"/api/v1/benchmark?task_id={task_id}",
                                 status=409)  # fmt: skip
            assert refused["data"]["state"] in ("queued", "running")
            await call(client, "POST", f"/api/v1/benchmark/cancel?task_id={task_id}", status=200)
            await call(client, "DELETE", f"/api/v1/benchmark?task_id={task_id}", status=200)

    run(scenario())


def test_delete_and_prune_refuse_what_they_cannot_do_by_name(
    models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            body = await call(client, "DELETE", "/api/v1/benchmark?task_id=nope", status=404)
            assert body["data"]["code"] == "task_not_found"
            body = await call(client, "DELETE", "/api/v1/benchmark", status=422)
            assert "task_id" in body["error"]
            for bad, field in (({"state": "running"}, "state"), ({"before": "soon"}, "before"),
                               ({"modle": "x"}, "modle")):  # fmt: skip
                body = await call(client, "POST", "/api/v1/benchmarks/prune", status=422,
                                  json=bad)  # fmt: skip
                assert field in body["error"], body
            body = await call(client, "POST", "/api/v1/benchmarks/prune", status=200,
                              json={"model": "tiny.gguf"})  # fmt: skip
            assert body["data"] == {"deleted": [], "count": 0}
            assert body["message"] == "0 benchmark tasks deleted"

    run(scenario())


# -- F2, F3, rule 1: a refused switch leaves the running server as it was ----------------

#: One invalid case per ServerConfig field (and the model), as a client would send it:
#: (name, the body's text before "config", the config's fields). Every one must be
#: refused (4xx) before the switch acts.
OTHER = '"model_path":"other.gguf"'
INVALID = [
    ("model missing", '"model_path":"nope.gguf"', ""),
    ("model outside", '"model_path":"../x.gguf"', ""),
    ("model unusable", '"model_path":"corrupt.gguf"', ""),
    ("model surrogate", '"model_path":"x\\ud800.gguf"', ""),
    ("duplicate key", '"model_path":"../../etc/passwd",' + OTHER, ""),
    ("host syntax", OTHER, '"host":"a..b"'),
    ("host label", OTHER, '"host":"' + "x" * 64 + '.lan"'),
    ("host unresolved", OTHER, '"host":"no-such-host.invalid"'),
    ("host foreign", OTHER, '"host":"192.0.2.7"'),
    ("host open without key", OTHER, '"host":"0.0.0.0"'),
    ("host surrogate", OTHER, '"host":"h\\ud800"'),
    ("threads", OTHER, '"threads":0'),
    ("threads_batch", OTHER, '"threads_batch":-1'),
    ("ctx_size", OTHER, '"ctx_size":-1'),
    ("batch_size", OTHER, '"batch_size":0'),
    ("ubatch_size", OTHER, '"ubatch_size":"big"'),
    ("n_gpu_layers", OTHER, '"n_gpu_layers":"most"'),
    ("flash_attn", OTHER, '"flash_attn":"maybe"'),
    ("split_mode", OTHER, '"split_mode":"diagonal"'),
    ("tensor_split", OTHER, '"tensor_split":"x,y"'),
    ("main_gpu", OTHER, '"main_gpu":-1'),
    ("mlock", OTHER, '"mlock":"yes"'),
    ("cache_type_k", OTHER, '"cache_type_k":"f8"'),
    ("cache_type_v", OTHER, '"cache_type_v":"f8"'),
    ("parallel", OTHER, '"parallel":0'),
    ("alias", OTHER, '"alias":"x\\ud800"'),
    ("no_mmap", OTHER, '"no_mmap":2'),
    ("extra_args field flag", OTHER, '"extra_args":["--threads","-5"]'),
    ("extra_args unknown flag", OTHER, '"extra_args":["--no-such-flag"]'),
    ("extra_args api prefix", OTHER, '"extra_args":["--api-prefix","/x"]'),
    ("extra_args rpc", OTHER, '"extra_args":["--rpc","10.0.0.2:50052"]'),
    ("extra_args surrogate", OTHER, '"extra_args":["--metrics","x\\ud800"]'),
    ("env not allowed", OTHER, '"env":{"LD_DEBUG":"files"}'),
    ("env rpc", OTHER, '"env":{"LLAMA_ARG_RPC":"10.0.0.2:1"}'),
    ("env unknown to binary", OTHER, '"env":{"LLAMA_ARG_NO_SUCH":"1"}'),
    ("env key surrogate", OTHER, '"env":{"CUDA_\\ud800":"1"}'),
    ("restart", OTHER, '"restart":"always"'),
    ("restart_max", OTHER, '"restart_max":-1'),
    ("restart_backoff_s", OTHER, '"restart_backoff_s":-1'),
    ("unknown field", OTHER, '"thread":2'),
    ("key surrogate", OTHER, '"\\ud800":1'),
]


def test_every_invalid_switch_leaves_the_running_server_and_its_record_as_they_were(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    (models_dir / "corrupt.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 8)
    port = free_port()

    async def scenario() -> None:
        async with client_for(make_settings(llama_build, models_dir, state_dir)) as client:
            await call(client, "POST", "/api/v1/model/switch?wait=true", status=200,
                       json={"model_path": "tiny.gguf", "config": {"port": port}})  # fmt: skip
            before = await servers(client)
            record = await call(client, "GET", f"/api/v1/model/status?port={port}", status=200)
            for name, top, fields in INVALID:
                # Every case is aimed at the running server's port.
                config = f'"port":{port}' + (f",{fields}" if fields else "")
                body = f'{{{top},"config":{{{config}}}}}'
                answer = await post_raw(client, "/api/v1/model/switch?wait=true", body)
                assert 400 <= answer["_status"] < 500, (name, answer)
                assert await servers(client) == before, name
            after = await call(client, "GET", f"/api/v1/model/status?port={port}", status=200)
            assert after["data"]["start_time"] == record["data"]["start_time"]
            assert after["data"]["config"] == record["data"]["config"]

    run(scenario())


# -- F8 and rule 8: a model server beyond loopback always has a key ----------------------


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_a_server_beyond_loopback_gets_a_key_of_its_own_that_only_the_api_tells(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    settings = make_settings(llama_build, models_dir, state_dir, api_key="service-key")
    port = free_port()
    auth = {"Authorization": "Bearer service-key"}

    async def scenario() -> None:
        async with client_for(settings) as client:
            started = await call(client, "POST", "/api/v1/model/switch?wait=true", status=200,
                                 headers=auth, json={"model_path": "tiny.gguf",
                                 "config": {"port": port, "host": "0.0.0.0"}})  # fmt: skip
            pid = started["data"]["process_id"]
            keyed = await call(client, "GET", f"/api/v1/model/key?port={port}", status=200,
                               headers=auth)  # fmt: skip
            key = keyed["data"]["api_key"]
            assert isinstance(key, str)
            assert len(key) >= 24
            assert key != "service-key"
            # Nowhere another user of the machine could read it.
            assert key not in _cmdline(pid)
            assert key not in json.dumps(started["data"])
            async with client.session.post(
                f"http://127.0.0.1:{port}/completion", json={"prompt": "a", "n_predict": 1}
            ) as response:
                assert response.status == 401
            async with client.session.post(
                f"http://127.0.0.1:{port}/completion",
                json={"prompt": "a", "n_predict": 1},
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                assert response.status == 200
            await call(client, "POST", "/api/v1/model/stop", status=200, headers=auth)

    run(scenario())


def test_a_loopback_server_has_no_key(models_dir: Path, state_dir: Path) -> None:
    build = require_build("current")
    port = free_port()

    async def scenario() -> None:
        async with client_for(make_settings(build, models_dir, state_dir)) as client:
            await call(client, "POST", "/api/v1/model/switch?wait=true", status=200,
                       json={"model_path": "tiny.gguf", "config": {"port": port}})  # fmt: skip
            keyed = await call(client, "GET", f"/api/v1/model/key?port={port}", status=200)
            assert keyed["data"] == {"api_key": None}
            await call(client, "POST", "/api/v1/model/stop", status=200)

    run(scenario())


# -- F9: stalled uploads -----------------------------------------------------------------


def _raw_exchange(port: int, head: bytes, *, wait_s: float) -> tuple[bytes, float]:
    """Send ``head`` and read until the server closes (or ``wait_s``); (reply, seconds)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(head)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except TimeoutError:
            pass
    return reply, time.monotonic() - started


def test_a_stalled_upload_is_answered_408_and_closed(models_dir: Path, state_dir: Path) -> None:
    from aiohttp import web

    from llamaswitch_http import create_app

    settings = make_settings(None, models_dir, state_dir)

    async def scenario() -> None:
        runner = web.AppRunner(create_app(settings=settings, body_timeout_s=0.5))
        await runner.setup()
        port = free_port()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            head = (b"POST /api/v1/model/switch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")  # fmt: skip
            reply, seconds = await asyncio.to_thread(_raw_exchange, port, head, wait_s=10)
            assert reply.startswith(b"HTTP/1.1 408"), reply
            assert b"body_timeout" in reply
            assert seconds < 5  # closed by the server, not by our read timeout

            oversize = (b"POST /api/v1/benchmarks/import HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Type: application/json\r\n"
                        b"Content-Length: 999999999\r\n\r\n")  # fmt: skip
            reply, seconds = await asyncio.to_thread(_raw_exchange, port, oversize, wait_s=10)
            assert reply.startswith(b"HTTP/1.1 413"), reply
            assert seconds < 5
        finally:
            await runner.cleanup()

    run(scenario())


# -- F10: a hung server does not stay ready for ever -------------------------------------


def _liveness_settings(build: LlamaBuild, models_dir: Path, state_dir: Path) -> Settings:
    return make_settings(build, models_dir, state_dir, liveness_interval_s=0.2,
                         liveness_failures=2)  # fmt: skip


async def _state_of(client: TestClient[Any, Any], port: int, wanted: str, within_s: float) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        body = await call(client, "GET", f"/api/v1/model/status?port={port}", status=200)
        if body["data"]["state"] == wanted:
            return body["data"]
        assert time.monotonic() < deadline, body["data"]
        await asyncio.sleep(0.05)


def test_a_stopped_server_becomes_unresponsive_and_recovers(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    port = free_port()

    async def scenario() -> None:
        async with client_for(_liveness_settings(llama_build, models_dir, state_dir)) as client:
            body = {"model_path": "tiny.gguf", "config": {"port": port}}
            started = await call(client, "POST", "/api/v1/model/switch?wait=true", status=200,
                                 json=body)  # fmt: skip
            pid = started["data"]["process_id"]
            os.kill(pid, signal.SIGSTOP)
            try:
                hung = await _state_of(client, port, "unresponsive", within_s=15)
                assert "did not answer /health" in hung["error"]
                assert hung["running"] is True
            finally:
                os.kill(pid, signal.SIGCONT)
            back = await _state_of(client, port, "ready", within_s=15)
            assert back["process_id"] == pid
            await call(client, "POST", "/api/v1/model/stop", status=200)

    run(scenario())


def test_an_unresponsive_server_is_restarted_under_on_failure(
    llama_build: LlamaBuild, models_dir: Path, state_dir: Path
) -> None:
    port = free_port()
    config = {"port": port, "restart": "on-failure", "restart_backoff_s": 0}

    async def scenario() -> None:
        async with client_for(_liveness_settings(llama_build, models_dir, state_dir)) as client:
            started = await call(client, "POST", "/api/v1/model/switch?wait=true", status=200,
                                 json={"model_path": "tiny.gguf", "config": config})  # fmt: skip
            pid = started["data"]["process_id"]
            os.kill(pid, signal.SIGSTOP)
            deadline = time.monotonic() + 30
            while True:
                body = await call(client, "GET", f"/api/v1/model/status?port={port}", status=200)
                now = body["data"]
                if now["state"] == "ready" and now["process_id"] not in (None, pid):
                    break
                assert time.monotonic() < deadline, now
                await asyncio.sleep(0.05)
            assert now["restarts"] == 1
            await call(client, "POST", "/api/v1/model/stop", status=200)

    run(scenario())


# -- F11: strict wire format ------------------------------------------------------------


def test_duplicate_json_keys_are_400(models_dir: Path, state_dir: Path) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            body = await post_raw(
                client, "/api/v1/model/switch",
                '{"model_path":"../../etc/passwd","model_path":"tiny.gguf"}', status=400,
            )  # fmt: skip
            assert body["data"]["code"] == "duplicate_key"
            assert "'model_path' appears twice" in body["error"]

    run(scenario())


def test_duplicate_query_parameters_are_422(models_dir: Path, state_dir: Path) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            body = await call(client, "GET", "/api/v1/benchmarks?limit=1&limit=1000", status=422)
            assert body["data"]["errors"] == ["given 2 times; give it once @ $.query.limit"]

    run(scenario())


def test_a_lone_surrogate_in_a_json_key_is_an_envelope_naming_the_place(
    models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            body = await post_raw(client, "/api/v1/model/switch",
                                  '{"model_path":"tiny.gguf","config":{"\\udcff":1}}',
                                  status=422)  # fmt: skip
            assert body["data"]["errors"] == [
                "a key valid Unicode text: it holds a lone surrogate (U+DCFF) at index 0 @ $.config"
            ]

    run(scenario())


def test_a_whitespace_body_sent_as_json_is_malformed(models_dir: Path, state_dir: Path) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            body = await post_raw(client, "/api/v1/model/stop", "\n", status=400)
            assert body["data"]["code"] == "bad_json"

    run(scenario())


def test_writes_of_any_method_from_another_site_are_refused(
    models_dir: Path, state_dir: Path
) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, state_dir)) as client:
            body = await call(client, "DELETE", "/api/v1/benchmark?task_id=x", status=403,
                              headers={"Origin": "http://evil.example"})  # fmt: skip
            assert body["data"]["code"] == "cross_site_request"

    run(scenario())
