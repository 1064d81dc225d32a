"""``llamaswitch serve`` as a real process: the seed's curl examples, a clean SIGTERM, the
demo, and its failures."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest

from llamaswitch._settings import Settings
from llamaswitch._sync import LlamaSwitch
from tests.conftest import IN_CI, LlamaBuild, require_build
from tests.rest.conftest import ENVELOPE_KEYS, ServeProcess, free_port, serve, serve_env

pytestmark = pytest.mark.real_binary

# The seed README's curl examples 2-6, verbatim (the seed's service listened on
# localhost:8080; its models folder held llama2-7b-chat.gguf).
SEED_MODELS = "curl http://localhost:8080/api/v1/models"
SEED_SWITCH = """curl -X POST http://localhost:8080/api/v1/model/switch \\
    -H "Content-Type: application/json" \\
    -d '{
        "model_path": "llama2-7b-chat.gguf",
        "config": {
            "port": 8080,
            "threads": 4,
            "ctx_size": 2048,
            "batch_size": 512
        }
    }'"""
SEED_BENCH_BASIC = """curl -X POST http://localhost:8080/api/v1/benchmark \\
    -H "Content-Type: application/json" \\
    -d '{
        "model_path": "llama2-7b-chat.gguf",
        "config": {
            "n_prompt": 512,
            "n_gen": 128,
            "threads": 32,
            "repetitions": 5,
            "output": "md",
            "progress": 1
        }
    }'"""
SEED_BENCH_GPU = """curl -X POST http://localhost:8080/api/v1/benchmark \\
    -H "Content-Type: application/json" \\
    -d '{
        "model_path": "llama2-7b-chat.gguf",
        "config": {
            "n_prompt": 512,
            "n_gen": 128,
            "n_gpu_layers": 99,
            "flash_attn": 1,
            "batch_size": 2048,
            "threads": 32,
            "repetitions": 5,
            "output": "md",
            "progress": 1
        }
    }'"""
SEED_BENCH_STATUS = "curl http://localhost:8080/api/v1/benchmark/status?task_id=<task_id>"
SEED_STATUS = "GET /api/v1/model/status"  # the seed shows this one as a bare request line


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def curl(command: str, service: ServeProcess, **replace: str) -> tuple[int, dict[str, Any]]:
    """Run a curl command line as written (no shell), aimed at ``service``."""
    if shutil.which("curl") is None:
        if IN_CI:
            pytest.fail("CI=true and curl is not installed", pytrace=False)
        pytest.skip("curl is not installed")
    command = command.replace("http://localhost:8080", service.url)
    for old, new in replace.items():
        command = command.replace(old, new)
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[0] == "curl"
    result = subprocess.run(
        [*argv, "-s", "-w", "\n%{http_code}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    body, _, status = result.stdout.rpartition("\n")
    parsed = json.loads(body)
    assert set(parsed) == ENVELOPE_KEYS, parsed
    return int(status), parsed


def _env(
    build: LlamaBuild, models_dir: Path, state_dir: Path, port: int, **extra: str
) -> dict[str, str]:
    return {
        "LLAMA_SERVER_PATH": str(build.server.path),
        "LLAMA_BENCH_PATH": str(build.bench.path),
        "MODELS_DIR": str(models_dir),
        "LLAMASWITCH_STATE_DIR": str(state_dir),
        "SERVER_PORT": str(port),
        "LLAMASWITCH_STOP_TIMEOUT_S": "5",
        **extra,
    }


def _wait_ready(service: ServeProcess, query: str, timeout_s: float = 60) -> Mapping[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = service.request("GET", f"/api/v1/model/status?{query}")
        if status == 200 and body["data"]["state"] == "ready":
            return dict(body["data"])
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_the_seeds_curl_examples_work_against_llamaswitch_serve(
    llama_build: LlamaBuild, models_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = _env(llama_build, models_dir, tmp_path / "state", port)
    # The seed's switch names port 8080, which this service leaves to model servers (it
    # listens elsewhere); only if another process holds 8080 does the test pick a port.
    model_port = "8080" if _port_is_free(8080) else str(free_port())
    model = {"llama2-7b-chat.gguf": "tiny.gguf", '"port": 8080': f'"port": {model_port}'}
    with serve(["serve"], env, tmp_path, port) as service:
        status, body = curl(SEED_MODELS, service)
        assert (status, body["success"], body["error"]) == (200, True, "")
        assert body["message"] == "Found 2 GGUF models"
        assert {m["name"] for m in body["data"]} == {"tiny.gguf", "other.gguf"}

        status, body = curl(SEED_SWITCH, service, **model)
        assert (status, body["message"]) == (202, "Model switch initiated"), body
        assert body["data"]["state"] == "starting"
        assert body["data"]["port"] == int(model_port)

        status, basic = curl(SEED_BENCH_BASIC, service, **model)
        assert status == 202, basic
        assert basic["success"], basic
        status, gpu = curl(SEED_BENCH_GPU, service, **model)
        assert status == 202, gpu
        assert gpu["success"], gpu

        ready = _wait_ready(service, "model_name=tiny.gguf")
        assert ready["port"] == int(model_port)
        status, body = service.request("GET", SEED_STATUS.split()[1])
        assert status == 200
        assert body["message"] == "Model status retrieved"
        assert [s["model_name"] for s in body["data"]] == ["tiny.gguf"]

        for task in (basic, gpu):
            task_id = task["data"]["task_id"]
            deadline = time.monotonic() + 240
            while True:
                status, body = curl(SEED_BENCH_STATUS, service, **{"<task_id>": task_id})
                assert status == 200, body
                assert body["success"], body
                if body["data"]["state"] not in ("queued", "running"):
                    break
                assert time.monotonic() < deadline, body
                time.sleep(0.5)
            assert body["data"]["state"] == "completed", body["data"]
            assert [r["test"] for r in body["data"]["results"]] == ["pp512", "tg128"]
            output = body["data"]["output"]  # md, as asked: llama-bench's table, verbatim
            assert output.lstrip().startswith("|")
            assert "pp512" in output
        assert service.stop() == 0


def test_sigterm_stops_model_servers_interrupts_benchmarks_and_exits_0(
    llama_build: LlamaBuild, models_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    state = tmp_path / "state"
    env = _env(llama_build, models_dir, state, port)
    with serve(["serve"], env, tmp_path, port) as service:
        status, body = service.request(
            "POST",
            "/api/v1/model/switch?wait=true",
            {"model_path": "tiny.gguf", "config": {"port": free_port()}},
        )
        assert status == 200, body
        child = psutil.Process(body["data"]["process_id"])
        status, task = service.request(
            "POST",
            "/api/v1/benchmark",
            {
                "model_path": "other.gguf",
                "config": {"n_prompt": 256, "n_gen": 64, "threads": 1, "repetitions": 500},
            },
        )
        assert status == 202, task
        assert task["data"]["state"] == "running", task
        time.sleep(0.3)
        started = time.monotonic()
        assert service.stop() == 0, service.text()
        assert time.monotonic() - started < 20
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    with LlamaSwitch(Settings(models_dir=models_dir, state_dir=state)) as ls:
        stored = ls.benchmark_status(task["data"]["task_id"])
    assert stored.state == "interrupted"


def test_demo_creates_its_models_and_prints_curl_lines_that_work(tmp_path: Path) -> None:
    build = require_build("current")
    port, model_port = free_port(), free_port()
    demo = tmp_path / "demo"
    env = {
        "LLAMA_SERVER_PATH": str(build.server.path),
        "LLAMA_BENCH_PATH": str(build.bench.path),
        "LLAMASWITCH_STATE_DIR": str(tmp_path / "state"),
        "LLAMASWITCH_DEFAULT_MODEL_PORT": str(model_port),
    }
    with serve(["serve", "--demo", str(demo), "--port", str(port)], env, tmp_path, port) as service:
        assert sorted(p.name for p in demo.iterdir()) == [
            "llamaswitch.toml",
            "tiny-chat.gguf",
            "tiny-code.gguf",
        ]
        printed = service.text()
        assert f"Dashboard: {service.url}/" in printed
        page = urllib.request.urlopen(f"{service.url}/", timeout=30)
        assert page.status == 200
        assert "<html" in page.read().decode().lower()
        lines = [line.strip() for line in printed.splitlines() if line.strip().startswith("curl")]
        assert len(lines) >= 6, printed
        assert all(service.url in line for line in lines)
        # The gateway's curl line and the openai snippet, run as printed.
        chat, models, switch, status = lines[:4]
        reply = json.loads(subprocess.run(shlex.split(chat), capture_output=True, text=True,
                                          timeout=120, check=True).stdout)  # fmt: skip
        assert reply["object"] == "chat.completion", reply
        snippet = printed.split("Python (pip install openai):", 1)[1].splitlines()[1:4]
        ran = subprocess.run([sys.executable, "-c", "\n".join(s.strip() for s in snippet)],
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        code, body = curl(models, service)
        assert code == 200
        assert body["message"] == "Found 2 GGUF models"
        code, body = curl(switch, service)
        assert code == 202, body
        assert body["data"]["port"] == model_port, body
        _wait_ready(service, f"port={model_port}")
        code, body = curl(status, service)
        assert code == 200
        assert body["data"][0]["state"] == "ready"
        assert service.stop() == 0


def test_serve_on_a_taken_port_says_so(models_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {
            "MODELS_DIR": str(models_dir),
            "LLAMASWITCH_STATE_DIR": str(tmp_path / "state"),
            "SERVER_PORT": str(port),
        }
        result = subprocess.run(
            [sys.executable, "-m", "llamaswitch", "serve"],
            env=serve_env(env),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 4, result  # a conflict, as docs/cli.md documents
    assert f"port {port}" in result.stderr
    assert "in use" in result.stderr


def test_serve_on_an_address_this_machine_lacks_names_the_setting(
    models_dir: Path, tmp_path: Path
) -> None:
    env = {
        "MODELS_DIR": str(models_dir),
        "LLAMASWITCH_STATE_DIR": str(tmp_path / "state"),
        "LLAMASWITCH_HOST": "192.0.2.1",  # TEST-NET-1: never an address of this machine
        "LLAMASWITCH_API_KEY": "k",
        "SERVER_PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "llamaswitch", "serve"],
        env=serve_env(env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result  # a configuration error, not a port conflict
    assert "LLAMASWITCH_HOST='192.0.2.1'" in result.stderr
    assert "an address of this machine" in result.stderr


def test_serve_without_the_http_extra_says_how_to_install_it(tmp_path: Path) -> None:
    # None in sys.modules makes `import aiohttp` fail as if it were not installed.
    code = (
        "import sys; sys.modules['aiohttp'] = None\n"
        "from llamaswitch._cli import main\n"
        "sys.exit(main(['serve']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=serve_env({}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result
    assert "pip install 'llamaswitch[http]'" in result.stderr
    assert "aiohttp" in result.stderr


def _slow_headers(folder: Path, count: int) -> None:
    """``count`` sparse 256 MiB files whose headers each take the whole CPU budget."""
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"a"
    head += struct.pack("<IIQ", 9, 8, (2**28 - len(head) - 16) // 8)
    for index in range(count):
        path = folder / f"slow-{index:03d}.gguf"
        path.write_bytes(head)
        os.truncate(path, 2**28)


def test_a_long_catalog_scan_blocks_no_other_route_and_no_sigterm(
    llama_build: LlamaBuild, models_dir: Path, tmp_path: Path
) -> None:
    # A cold scan of several seconds: 12 files of 0.5 s each (the header budget).
    _slow_headers(models_dir, 12)
    port = free_port()
    env = _env(llama_build, models_dir, tmp_path / "state", port)
    with serve(["serve"], env, tmp_path, port) as service:
        scan = threading.Thread(target=service.request, args=("GET", "/api/v1/models"))
        scan.start()
        time.sleep(0.3)  # the scan is under way
        started = time.monotonic()
        status, body = service.request("GET", "/api/v1/model/status")
        assert status == 200, body
        status, body = service.request("GET", "/api/v1/benchmarks")
        assert status == 200, body
        assert time.monotonic() - started < 1.0
        stopping = time.monotonic()
        assert service.stop() == 0, service.text()
        assert time.monotonic() - stopping < 2.0
        scan.join(10)


def test_the_service_runs_on_uvloop_where_it_is_installed_unless_told_otherwise() -> None:
    # LLAMASWITCH_EVENT_LOOP: uvloop halves the CPU time a streamed chunk costs the
    # gateway (bench/bench_gateway.py); `asyncio` keeps asyncio's own loop.
    from llamaswitch_http._serve import loop_factory

    assert loop_factory("asyncio") is None
    if sys.platform == "win32":
        assert loop_factory("auto") is None
        return
    uvloop = pytest.importorskip("uvloop")  # the http extra installs it off Windows
    factory = loop_factory("auto")
    assert factory is uvloop.new_event_loop
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    settings = Settings.from_env(environ={"LLAMASWITCH_EVENT_LOOP": "asyncio"})
    assert settings.event_loop == "asyncio"


def test_serve_freezes_its_start_up_objects_once_it_listens(
    models_dir: Path, tmp_path: Path
) -> None:
    # llamaswitch_http._serve.freeze_start_up: garbage collections skip what start-up
    # made (a full one took 40-50 ms of the loop's time without), as /metrics says.
    port = free_port()
    env = {"MODELS_DIR": str(models_dir), "LLAMASWITCH_STATE_DIR": str(tmp_path / "state"),
           "SERVER_PORT": str(port)}  # fmt: skip
    with serve(["serve"], env, tmp_path, port) as service:
        deadline = time.monotonic() + 30
        while True:  # frozen after the warm-up request, a moment after it listens
            with urllib.request.urlopen(f"{service.url}/metrics", timeout=30) as answer:
                text = answer.read().decode()
            (line,) = [
                x for x in text.splitlines() if x.startswith("llamaswitch_gc_frozen_objects ")
            ]
            frozen = float(line.split()[1])
            if frozen or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert frozen > 10_000  # modules, the app, the catalog
        assert service.stop() == 0
