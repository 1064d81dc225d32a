"""The command line: each command in-process and against a running service (``--url``).

In-process commands run through ``llamaswitch._cli.main`` in this process (fast, output
captured); the foreground ``switch`` that Ctrl-C ends runs as a subprocess. ``--url``
commands talk to the real REST app (``llamaswitch_http.create_app``) served from a
background thread, with real llama.cpp binaries and tiny models.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import io
import json
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import psutil
import pytest
from rich.console import Console

from llamaswitch._cli import build_parser, main
from llamaswitch._cli._bench import bench_config_from_args
from llamaswitch._cli._servers import server_config_from_args
from llamaswitch._settings import Settings
from llamaswitch._vocabulary import specs
from llamaswitch.bench.config import BenchConfig
from llamaswitch.servers.config import ServerConfig
from tests.conftest import LlamaBuild
from tests.helpers import free_port

DATA = Path(__file__).parent / "data" / "bench"

# Exit codes documented in docs/cli.md.
OK, FAILED, USAGE, MISSING, CONFLICT, UNREACHABLE = 0, 1, 2, 3, 4, 5


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def cli_env(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment of our own: the tiny models, a fresh state folder, no .env file."""
    for key in ("LLAMASWITCH_URL", "LLAMASWITCH_API_KEY", "LLAMA_SERVER_PATH",
                "LLAMA_BENCH_PATH", "SERVER_PORT", "GPU_LAYERS", "LLAMASWITCH_MODEL_PORTS",
                "LLAMASWITCH_DEFAULT_MODEL_PORT"):  # fmt: skip
        monkeypatch.delenv(key, raising=False)
    values = {
        "MODELS_DIR": str(models_dir),
        "LLAMASWITCH_STATE_DIR": str(tmp_path / "state"),
        "CONFIG_PATH": os.devnull,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
def with_build(
    cli_env: dict[str, str], llama_build: LlamaBuild, monkeypatch: pytest.MonkeyPatch
) -> LlamaBuild:
    """``cli_env`` with one generation's binaries named explicitly."""
    monkeypatch.setenv("LLAMA_SERVER_PATH", str(llama_build.server.path))
    monkeypatch.setenv("LLAMA_BENCH_PATH", str(llama_build.bench.path))
    cli_env["LLAMA_SERVER_PATH"] = str(llama_build.server.path)
    cli_env["LLAMA_BENCH_PATH"] = str(llama_build.bench.path)
    return llama_build


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run("models", "--json")`` -> (exit code, stdout, stderr), in this process."""

    def invoke(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def run_json(run: Run, *argv: str, expect: int = OK) -> Any:
    code, out, err = run(*argv, "--json")
    assert code == expect, err
    return json.loads(out)


def health(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        return int(response.status)


# -- a running service ------------------------------------------------------------------


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The REST app on ``settings.server_port``, from a background thread; its URL."""
    from aiohttp import web

    from llamaswitch_http import create_app

    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(create_app(settings=settings))
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", settings.server_port)
            loop.run_until_complete(site.start())
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            # Closing the app stops the model servers it started.
            loop.run_until_complete(runner.cleanup())
            loop.close()

    # The model servers are forked from this thread (parent-death signal): it must
    # live as long as they do, which it does, until cleanup.
    thread = threading.Thread(target=serve, name="llamaswitch-test-service", daemon=True)
    thread.start()
    started.wait(60)
    if failure:
        raise failure[0]
    try:
        yield f"http://127.0.0.1:{settings.server_port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(60)


@pytest.fixture
def service_settings(models_dir: Path, tmp_path: Path, llama_build: LlamaBuild) -> Settings:
    """Settings of a service with one generation's binaries, on a free port."""
    return Settings(
        models_dir=models_dir,
        state_dir=tmp_path / "service-state",
        llama_server_path=llama_build.server.path,
        llama_bench_path=llama_build.bench.path,
        server_port=free_port(),
        # A range of our own: tests running beside this one use the default range.
        model_ports=(low := random.randrange(20000, 30000, 100), low + 99),
    )


@pytest.fixture
def service(service_settings: Settings, cli_env: dict[str, str]) -> Iterator[str]:
    """A running llamaswitch service; its URL."""
    with serving(service_settings) as url:
        yield url


@contextlib.contextmanager
def stub_server(status: int, body: bytes, content_type: str) -> Iterator[str]:
    """A plain HTTP server that answers every request with the same response."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# -- models -----------------------------------------------------------------------------


def test_models_lists_each_model_in_a_table(cli_env: dict[str, str], run: Run) -> None:
    code, out, _ = run("models")
    assert code == OK
    assert "tiny.gguf" in out
    assert "other.gguf" in out
    assert "llama" in out


def test_models_json_is_the_catalog(cli_env: dict[str, str], run: Run) -> None:
    models = run_json(run, "models")
    assert [m["name"] for m in models] == ["other.gguf", "tiny.gguf"]
    first = models[0]
    assert list(first)[:3] == ["name", "path", "size"]
    assert first["architecture"] == "llama"
    assert isinstance(first["size"], int)


def test_models_lists_an_unusable_file_with_its_reason(
    cli_env: dict[str, str], models_dir: Path, run: Run
) -> None:
    (models_dir / "broken.gguf").write_bytes(b"not a model [red]")
    code, out, _ = run("models")
    assert code == OK
    assert "broken.gguf" in out
    assert "unusable" in out


def test_global_models_dir_option_overrides_the_environment(
    cli_env: dict[str, str], tmp_path: Path, run: Run
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_json(run, "--models-dir", str(empty), "models") == []


# -- switch / start in-process: the foreground server ------------------------------------


class _Lines:
    """A subprocess's output read line by line in a thread, with timeouts."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def drain(self, timeout_s: float = 10.0) -> None:
        """Read the rest, up to the end of the stream."""
        deadline = time.monotonic() + timeout_s
        while (line := self._queue.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            self.seen.append(line)

    def wait_for(self, text: str, timeout_s: float = 30.0) -> None:
        """Read lines until one contains ``text``."""
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.seen):
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"output ended before {text!r}: {self.seen}")
            self.seen.append(line)

    def json_document(self, timeout_s: float = 60.0) -> Any:
        """Lines up to the closing brace of an indented JSON object, parsed."""
        lines: list[str] = []
        deadline = time.monotonic() + timeout_s
        while True:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"output ended before a JSON document: {lines}")
            self.seen.append(line)
            lines.append(line)
            if line.rstrip() == "}":
                return json.loads("".join(lines))


class _Cli:
    """``python -m llamaswitch ...`` as a subprocess, both pipes read as they fill."""

    def __init__(self, env: dict[str, str], *argv: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llamaswitch", *argv],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out = _Lines(self.proc.stdout)  # type: ignore[arg-type]
        self.err = _Lines(self.proc.stderr)  # type: ignore[arg-type]

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout_s: float = 30.0) -> tuple[int, str]:
        """The exit code and everything written on stderr."""
        code = self.proc.wait(timeout=timeout_s)
        self.err.drain()
        return code, "".join(self.err.seen)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def cli_process(env: dict[str, str], *argv: str) -> Iterator[_Cli]:
    """A CLI subprocess, killed if the test ends before it does."""
    cli = _Cli(env, *argv)
    try:
        yield cli
    finally:
        cli.kill()


@pytest.mark.real_binary
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_switch_in_process_serves_in_the_foreground_until_interrupted(
    with_build: LlamaBuild, cli_env: dict[str, str], stop_signal: signal.Signals
) -> None:
    port = free_port()
    argv = ("switch", "tiny.gguf", "--port", str(port), "-c", "256", "--json")
    with cli_process(cli_env, *argv) as cli:
        status = cli.out.json_document()
        assert status["state"] == "ready"
        assert status["port"] == port
        assert health(port) == 200
        child = psutil.Process(status["process_id"])
        time.sleep(0.3)
        assert cli.running()  # serving: the command did not return
        cli.signal(stop_signal)
        code, err = cli.wait()
    assert code == OK, err
    assert "stopped" in err
    child.wait(timeout=5)  # gone and reaped (raises TimeoutExpired if still running)


@pytest.mark.real_binary
def test_switch_in_process_exits_1_when_its_server_crashes(
    with_build: LlamaBuild, cli_env: dict[str, str]
) -> None:
    argv = ("switch", "tiny.gguf", "--port", str(free_port()), "-c", "256", "--json")
    with cli_process(cli_env, *argv) as cli:
        status = cli.out.json_document()
        os.kill(status["process_id"], signal.SIGKILL)
        code, err = cli.wait()
    assert code == FAILED
    assert "crashed" in err
    assert "last log lines" in err


@pytest.mark.real_binary
def test_switch_with_restart_policy_outlives_a_crash(
    with_build: LlamaBuild, cli_env: dict[str, str]
) -> None:
    port = free_port()
    argv = ("switch", "tiny.gguf", "--port", str(port), "-c", "256", "--restart", "on-failure",
            "--json")  # fmt: skip
    with cli_process(cli_env, *argv) as cli:
        status = cli.out.json_document()
        os.kill(status["process_id"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:  # the supervisor brings it back; the command keeps serving
            assert cli.running()
            assert time.monotonic() < deadline
            with contextlib.suppress(OSError):
                if health(port) == 200:
                    break
            time.sleep(0.1)
        cli.signal(signal.SIGINT)
        code, err = cli.wait()
    assert code == OK, err


@pytest.mark.real_binary
def test_switch_follow_prints_the_servers_log(
    with_build: LlamaBuild, cli_env: dict[str, str]
) -> None:
    port = free_port()
    with cli_process(cli_env, "switch", "tiny.gguf", "--port", str(port), "--follow") as cli:
        cli.out.wait_for(f"--port {port}")  # the supervisor's "=== llamaswitch ... starting"
        cli.out.wait_for("listening on")  # and what llama-server printed after it
        cli.signal(signal.SIGINT)
        code, err = cli.wait()
    assert code == OK, err


def test_switch_no_wait_in_process_is_a_usage_error(cli_env: dict[str, str], run: Run) -> None:
    code, _, err = run("switch", "tiny.gguf", "--no-wait")
    assert code == USAGE
    assert "--url" in err


def test_switch_unknown_model_exits_3_with_suggestions(cli_env: dict[str, str], run: Run) -> None:
    code, _, err = run("switch", "tiny2.gguf")
    assert code == MISSING
    assert "tiny.gguf" in err


def test_switch_invalid_config_exits_2_naming_each_field(cli_env: dict[str, str], run: Run) -> None:
    code, _, err = run("switch", "tiny.gguf", "--threads", "0", "--cache-type-k", "f8",
                       "--ctx-size", "big")  # fmt: skip
    assert code == USAGE
    for field in ("threads", "cache_type_k", "ctx_size"):
        assert field in err


def test_switch_config_json_and_options_merge(cli_env: dict[str, str], run: Run) -> None:
    # A bad key in --config is reported by ServerConfig, by name: the JSON was used.
    code, _, err = run("switch", "tiny.gguf", "--config", '{"threadz": 2}', "-t", "2")
    assert code == USAGE
    assert "threadz" in err


def test_switch_without_llama_server_exits_3(
    cli_env: dict[str, str], tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_SERVER_PATH", str(tmp_path / "nowhere" / "llama-server"))
    code, _, err = run("switch", "tiny.gguf", "--port", str(free_port()))
    assert code == MISSING
    assert "llama-server" in err


def test_bad_setting_exits_2(
    cli_env: dict[str, str], run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVER_PORT", "80a")
    code, _, err = run("status")
    assert code == USAGE
    assert "SERVER_PORT" in err


# -- stop / status / logs in-process ----------------------------------------------------


def test_status_in_process_sees_no_servers_and_says_why(cli_env: dict[str, str], run: Run) -> None:
    code, out, _ = run("status")
    assert code == OK
    assert "--url" in out
    assert run_json(run, "status") == []


def test_status_of_an_unknown_server_exits_3(cli_env: dict[str, str], run: Run) -> None:
    code, _, _ = run("status", "--port", "8123")
    assert code == MISSING
    code, _, _ = run("logs", "tiny.gguf")
    assert code == MISSING


def test_stop_needs_a_target_or_all(cli_env: dict[str, str], run: Run) -> None:
    assert run("stop")[0] == USAGE
    assert run("stop", "tiny.gguf", "--all")[0] == USAGE
    assert run_json(run, "stop", "--all") == []


# -- bench in-process ---------------------------------------------------------------------


@pytest.mark.real_binary
def test_bench_in_process_runs_the_task_and_prints_results(
    with_build: LlamaBuild, run: Run
) -> None:
    task = run_json(run, "bench", "tiny.gguf", "-p", "16", "-n", "8", "-r", "1")
    assert task["state"] == "completed"
    assert [r["test"] for r in task["results"]] == ["pp16", "tg8"]
    code, out, _ = run("bench", "tiny.gguf", "-p", "16", "-n", "8", "-r", "1")
    assert code == OK
    assert "pp16" in out
    assert "t/s" in out


@pytest.mark.real_binary
def test_bench_comma_lists_are_sweeps(with_build: LlamaBuild, run: Run) -> None:
    task = run_json(run, "bench", "tiny.gguf", "-t", "1,2", "-p", "16,32", "-n", "8", "-r", "1")
    assert task["state"] == "completed"
    assert task["config"]["threads"] == [1, 2]
    assert len(task["results"]) == 6
    assert task["progress"]["done"] == 6


@pytest.mark.real_binary
def test_bench_output_prints_llama_benchs_own_format(with_build: LlamaBuild, run: Run) -> None:
    code, out, err = run("bench", "tiny.gguf", "-p", "16", "-n", "0", "-r", "1", "--output", "csv")
    assert code == OK, err
    [task] = run_json(run, "bench-history")
    assert task["output"], task  # what llama-bench printed, kept with the task
    assert out.rstrip("\n") == task["output"].rstrip("\n")
    assert "avg_ts" in out.splitlines()[0]


@pytest.mark.real_binary
def test_bench_shows_a_progress_bar_on_a_terminal(
    with_build: LlamaBuild, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llamaswitch._cli import _bench

    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr(_bench, "err_console", lambda: terminal)
    code, _, _ = run("bench", "tiny.gguf", "-t", "1,2", "-p", "16", "-n", "8", "-r", "1")
    assert code == OK
    assert "4/4" in screen.getvalue()


@pytest.mark.real_binary
def test_bench_in_process_ctrl_c_cancels_the_task(
    with_build: LlamaBuild, cli_env: dict[str, str], run: Run
) -> None:
    argv = ("bench", "tiny.gguf", "-p", "256", "-n", "64", "-r", "1000")
    with cli_process(cli_env, *argv) as cli:
        cli.err.wait_for("benchmark task")
        time.sleep(0.5)  # running by now
        cli.signal(signal.SIGINT)
        code, err = cli.wait()
    assert code == 130
    assert "cancelled" in err
    [task] = run_json(run, "bench-history")
    assert task["state"] == "cancelled"


def test_bench_invalid_config_exits_2_naming_each_field(cli_env: dict[str, str], run: Run) -> None:
    code, _, err = run("bench", "tiny.gguf", "-p", "16,abc", "--poll", "101", "-ctk", "f8")
    assert code == USAGE
    for field in ("n_prompt", "poll", "cache_type_k"):
        assert field in err


def test_bench_no_wait_in_process_is_a_usage_error(cli_env: dict[str, str], run: Run) -> None:
    code, _, err = run("bench", "tiny.gguf", "--no-wait")
    assert code == USAGE
    assert "--url" in err


def test_bench_without_llama_bench_exits_3(
    cli_env: dict[str, str], tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_BENCH_PATH", str(tmp_path / "nowhere" / "llama-bench"))
    code, _, err = run("bench", "tiny.gguf", "-p", "16")
    assert code == MISSING
    assert "llama-bench" in err


def test_bench_of_an_unknown_model_exits_3(cli_env: dict[str, str], run: Run) -> None:
    assert run("bench", "nope.gguf")[0] == MISSING


# -- history, status, compare, import, cancel in-process -------------------------------------


def _import(run: Run, name: str = "plain.json", *extra: str) -> dict[str, Any]:
    task: dict[str, Any] = run_json(run, "bench-import", str(DATA / "legacy" / name),
                                    "--model", "tiny.gguf", *extra)  # fmt: skip
    return task


def test_bench_import_records_a_completed_task(cli_env: dict[str, str], run: Run) -> None:
    task = _import(run)
    assert task["state"] == "completed"
    assert task["source"] == "imported"
    assert task["results"]


def test_bench_import_takes_the_format_from_the_suffix(cli_env: dict[str, str], run: Run) -> None:
    task = _import(run, "plain.csv")
    assert task["state"] == "completed"
    assert task["results"]


def test_bench_import_of_garbage_exits_2(cli_env: dict[str, str], tmp_path: Path, run: Run) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("this is not llama-bench output")
    code, _, err = run("bench-import", str(garbage))
    assert code == USAGE
    assert "line" in err


def test_bench_history_status_and_compare_read_the_store(cli_env: dict[str, str], run: Run) -> None:
    first, second = _import(run)["id"], _import(run, "sweep.json")["id"]
    history = run_json(run, "bench-history")
    assert [t["id"] for t in history] == [second, first]
    assert run_json(run, "bench-history", "--limit", "1")[0]["id"] == second
    assert run_json(run, "bench-history", "--state", "failed") == []
    assert run_json(run, "bench-status", first)["id"] == first
    comparison = run_json(run, "bench-compare", first, second)
    assert [t["id"] for t in comparison["tasks"]] == [first, second]
    assert comparison["rows"]
    code, out, _ = run("bench-status", first, "--output")
    assert code == OK
    assert out == (DATA / "legacy" / "plain.json").read_text()
    for argv in (("bench-history",), ("bench-status", first), ("bench-compare", first, second)):
        code, out, _ = run(*argv)
        assert code == OK
        assert first[:8] in out


def test_bench_status_of_an_unknown_task_exits_3(cli_env: dict[str, str], run: Run) -> None:
    code, _, err = run("bench-status", "nope")
    assert code == MISSING
    assert "nope" in err
    assert run("bench-cancel", "nope")[0] == MISSING
    assert run("bench-compare", "nope", "nope2")[0] == MISSING


def test_bench_history_rejects_a_bad_date(cli_env: dict[str, str], run: Run) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench-history", "--since", "yesterday"])
    assert exit_info.value.code == USAGE


# -- against a running service (--url) --------------------------------------------------------


@pytest.mark.real_binary
def test_url_models_json_equals_in_process(service: str, run: Run) -> None:
    assert run_json(run, "models", "--url", service) == run_json(run, "models")


@pytest.mark.real_binary
def test_url_switch_status_logs_stop(service: str, run: Run) -> None:
    port = free_port()
    status = run_json(run, "switch", "tiny.gguf", "--port", str(port), "-c", "256",
                      "--url", service)  # fmt: skip
    # The command returned; the server keeps running in the service.
    assert status["state"] == "ready"
    assert health(port) == 200
    listed = run_json(run, "status", "--url", service)
    assert [s["port"] for s in listed] == [port]
    one = run_json(run, "status", "--port", str(port), "--url", service)
    assert one["model_name"] == "tiny.gguf"
    assert set(one) == set(status)
    assert run_json(run, "status", "tiny.gguf", "--url", service)["port"] == port
    lines = run_json(run, "logs", "--port", str(port), "-n", "5", "--url", service)
    assert 0 < len(lines) <= 5
    code, out, _ = run("status", "--url", service)
    assert code == OK
    assert str(port) in out
    stopped = run_json(run, "stop", "--port", str(port), "--url", service)
    assert [s["state"] for s in stopped] == ["stopped"]
    assert run_json(run, "status", "--url", service) == []


@pytest.mark.real_binary
def test_url_switch_no_wait_returns_while_starting(service: str, run: Run) -> None:
    port = free_port()
    status = run_json(run, "switch", "tiny.gguf", "--port", str(port), "--no-wait",
                      "--url", service)  # fmt: skip
    assert status["state"] in ("starting", "ready")
    assert run("stop", "--all", "--url", service)[0] == OK


@pytest.mark.real_binary
def test_url_start_serves_alongside(service: str, run: Run) -> None:
    port = free_port()
    run_json(run, "switch", "tiny.gguf", "--port", str(port), "--url", service)
    started = run_json(run, "start", "other.gguf", "--url", service)
    assert started["state"] == "ready"
    assert started["port"] != port
    ports = {s["port"] for s in run_json(run, "status", "--url", service)}
    assert ports == {port, started["port"]}
    assert len(run_json(run, "stop", "--all", "--url", service)) == 2


@pytest.mark.real_binary
def test_url_error_statuses_become_exit_codes(
    service: str, service_settings: Settings, run: Run
) -> None:
    code, _, err = run("switch", "nope.gguf", "--url", service)
    assert code == MISSING
    assert "did you mean" in err
    code, _, err = run("switch", "tiny.gguf", "--threads", "0", "--cache-type-k", "f8",
                       "--url", service)  # fmt: skip
    assert code == USAGE
    # Checked before anything is sent: the same rules (and words) as in-process.
    assert "threads: must be" in err
    assert "cache_type_k: must be" in err
    code, _, err = run("switch", "tiny.gguf", "--port", str(service_settings.server_port),
                       "--url", service)  # fmt: skip
    assert code == CONFLICT
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        code, _, err = run("switch", "tiny.gguf", "--port", str(taken), "--url", service)
    assert code == CONFLICT
    assert "in use" in err
    assert run("status", "--port", "8123", "--url", service)[0] == MISSING
    assert run("bench-status", "nope", "--url", service)[0] == MISSING


def test_url_missing_binary_exits_3(
    cli_env: dict[str, str], models_dir: Path, tmp_path: Path, run: Run
) -> None:
    settings = Settings(
        models_dir=models_dir,
        state_dir=tmp_path / "service-state",
        llama_server_path=tmp_path / "nowhere" / "llama-server",
        llama_bench_path=tmp_path / "nowhere" / "llama-bench",
        server_port=free_port(),
    )
    with serving(settings) as url:
        code, _, err = run("switch", "tiny.gguf", "--port", str(free_port()), "--url", url)
        assert code == MISSING
        assert "llama-server" in err
        code, _, err = run("bench", "tiny.gguf", "--url", url)
        assert code == MISSING
        assert "llama-bench" in err


@pytest.mark.real_binary
def test_url_bench_waits_for_the_task(service: str, run: Run) -> None:
    task = run_json(run, "bench", "tiny.gguf", "-p", "16", "-n", "8", "-r", "1",
                    "--url", service)  # fmt: skip
    assert task["state"] == "completed"
    assert len(task["results"]) == 2
    code, out, _ = run("bench", "tiny.gguf", "-p", "16", "-n", "0", "-r", "1", "--output", "md",
                       "--url", service)  # fmt: skip
    assert code == OK
    assert "pp16" in out
    assert "|" in out


@pytest.mark.real_binary
def test_url_bench_no_wait_prints_the_task_id(service: str, run: Run) -> None:
    code, out, _ = run("bench", "tiny.gguf", "-p", "16", "-n", "8", "-r", "1", "--no-wait",
                       "--url", service)  # fmt: skip
    assert code == OK
    task_id = out.strip()
    code, out, _ = run("bench-status", task_id, "--wait", "--url", service)
    assert code == OK
    assert "completed" in out
    history = run_json(run, "bench-history", "--url", service)
    assert task_id in [t["id"] for t in history]


@pytest.mark.real_binary
def test_url_bench_cancel_stops_a_running_task(service: str, run: Run) -> None:
    code, out, _ = run("bench", "tiny.gguf", "-p", "256", "-n", "64", "-r", "1000", "--no-wait",
                       "--url", service)  # fmt: skip
    assert code == OK
    task_id = out.strip()
    task = run_json(run, "bench-cancel", task_id, "--url", service)
    assert task["state"] == "cancelled"
    deadline = time.monotonic() + 30
    while run_json(run, "bench-status", task_id, "--url", service)["state"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # bench-status --wait on a task that did not complete exits 1.
    assert run("bench-status", task_id, "--wait", "--url", service)[0] == FAILED


@pytest.mark.real_binary
def test_url_history_compare_import(service: str, run: Run) -> None:
    first = run_json(run, "bench-import", str(DATA / "legacy" / "plain.json"), "--model",
                     "tiny.gguf", "--url", service)["id"]  # fmt: skip
    second = run_json(run, "bench-import", str(DATA / "legacy" / "plain.md"), "--model",
                      "tiny.gguf", "--url", service)["id"]  # fmt: skip
    history = run_json(run, "bench-history", "--model", "tiny.gguf", "--url", service)
    assert [t["id"] for t in history] == [second, first]
    comparison = run_json(run, "bench-compare", first, second, "--url", service)
    assert [t["id"] for t in comparison["tasks"]] == [first, second]
    code, _, _ = run("bench-import", str(DATA / "legacy" / "plain.json"), "--format", "csv",
                     "--url", service)  # fmt: skip
    assert code == USAGE


@pytest.mark.real_binary
def test_url_with_api_key(
    service_settings: Settings, cli_env: dict[str, str], run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    import attrs

    with serving(attrs.evolve(service_settings, api_key="s3cret")) as url:
        code, _, err = run("models", "--url", url)
        assert code == UNREACHABLE
        assert "LLAMASWITCH_API_KEY" in err
        code, _, err = run("models", "--url", url, "--api-key", "wrong")
        assert code == UNREACHABLE
        assert run("models", "--url", url, "--api-key", "s3cret")[0] == OK
        monkeypatch.setenv("LLAMASWITCH_API_KEY", "s3cret")
        monkeypatch.setenv("LLAMASWITCH_URL", url)
        assert run("models")[0] == OK  # both from the environment


def test_url_that_nobody_serves_exits_5(cli_env: dict[str, str], run: Run) -> None:
    code, _, err = run("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == UNREACHABLE
    assert "cannot reach" in err


def test_url_that_is_not_llamaswitch_exits_5(cli_env: dict[str, str], run: Run) -> None:
    with stub_server(200, b"<html>hello</html>", "text/html") as url:
        code, _, err = run("models", "--url", url)
    assert code == UNREACHABLE
    assert "not a llamaswitch response" in err


def test_url_envelope_errors_are_unwrapped(cli_env: dict[str, str], run: Run) -> None:
    # The seed's envelope, as a stub answers it: message and error reach the user.
    body = json.dumps({"success": False, "message": "Port in use",
                       "data": {"code": "port_in_use"}, "error": "port 8091 is taken"})  # fmt: skip
    with stub_server(409, body.encode(), "application/json") as url:
        code, _, err = run("switch", "tiny.gguf", "--url", url)
    assert code == CONFLICT
    assert "port 8091 is taken" in err


def test_url_must_be_http(cli_env: dict[str, str], run: Run) -> None:
    code, _, err = run("models", "--url", "ftp://example.org")
    assert code == USAGE
    assert "http" in err


# -- the options come from the vocabulary (no drift between llama.cpp, the config, the CLI) --


def _subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = commands.choices[name]
    return found


def _options(name: str) -> dict[str, str]:
    """``{option string: dest}`` of a subcommand."""
    return {o: a.dest for a in _subcommand(name)._actions for o in a.option_strings}


@pytest.mark.parametrize(("command", "cls"), [("switch", ServerConfig), ("start", ServerConfig),
                                              ("bench", BenchConfig)])  # fmt: skip
def test_every_config_field_has_its_options(command: str, cls: type) -> None:
    options = _options(command)
    for name, field_spec in specs(cls).items():
        if field_spec.cli == () or field_spec.style == "none":
            continue
        for option in field_spec.cli_options(name):
            assert options.get(option) == name, (command, name, option)


@pytest.mark.parametrize(("command", "cls"), [("switch", ServerConfig), ("bench", BenchConfig)])
def test_every_llama_cpp_spelling_of_a_field_is_accepted(command: str, cls: type) -> None:
    """A llama.cpp command line pasted after the model works: each flag a field sets (in
    any dialect) is an option of the command, for that field."""
    options = _options(command)
    for name, field_spec in specs(cls).items():
        if field_spec.cli is not None:  # spelled on purpose (--restart-backoff, --env...)
            continue
        for flag in field_spec.flags:
            if re.fullmatch(r"--?[A-Za-z][A-Za-z0-9-]*", flag):
                assert options.get(flag) == name, (command, name, flag)


def test_only_the_runners_own_bench_fields_have_no_option() -> None:
    without = {name for name, s in specs(BenchConfig).items() if s.cli == () or s.style == "none"}
    # llamaswitch reads stderr as JSON lines with progress: these two are its own.
    assert without == {"output_err", "progress"}
    assert not [name for name, s in specs(ServerConfig).items() if s.cli == ()]


@pytest.mark.parametrize(
    ("command", "spelled"),
    [("bench", ("-dev", "--device", "-v", "--verbose", "-C", "--cpu-mask")),
     ("switch", ("--rope-freq-base",)), ("start", ("--rope-freq-base",))],
)  # fmt: skip
def test_help_shows_llama_cpps_spellings(
    command: str, spelled: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == OK
    out = capsys.readouterr().out
    for option in spelled:
        assert re.search(rf"(^|[\s,]){re.escape(option)}\b", out), option
    assert "--devices" not in out


def test_bench_device_and_verbose_reach_the_config() -> None:
    args = build_parser().parse_args(["bench", "tiny.gguf", "-dev", "CUDA0/CUDA1", "-v",
                                      "-C", "0xff"])  # fmt: skip
    config = bench_config_from_args(args)
    assert config is not None
    assert (config.devices, config.verbose, config.cpu_mask) == (("CUDA0/CUDA1",), True,
                                                                 ("0xff",))  # fmt: skip


def test_decimal_options_reach_the_config_as_numbers() -> None:
    args = build_parser().parse_args(["switch", "tiny.gguf", "--restart-backoff", "1.5",
                                      "--rope-freq-base", "1e6", "-a", "42"])  # fmt: skip
    config = server_config_from_args(args)
    assert config is not None
    assert (config.restart_backoff_s, config.rope_freq_base, config.alias) == (1.5, 1e6, "42")


# -- config ---------------------------------------------------------------------------------

#: The seed README's `.env` example, verbatim (its comments included).
SEED_ENV = """# 必需配置
# llama.cpp 二进制文件路径
LLAMA_SERVER_PATH=E:/Downloads/llama-b5293-bin-win-cuda-cu12.4-x64/llama-server.exe
LLAMA_BENCH_PATH=E:/Downloads/llama-b5293-bin-win-cuda-cu12.4-x64/llama-bench.exe

MODELS_DIR=/path/to/models

# 可选配置
SERVER_PORT=8080
GPU_LAYERS=20  # GPU加速层数
"""


@pytest.fixture
def seed_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The seed's `.env`, named by CONFIG_PATH, and no llamaswitch keys in the environment."""
    for key in list(os.environ):
        if key.startswith("LLAMASWITCH_") or key in (
            "LLAMA_SERVER_PATH", "LLAMA_BENCH_PATH", "MODELS_DIR", "SERVER_PORT", "GPU_LAYERS"
        ):  # fmt: skip
            monkeypatch.delenv(key)
    path = tmp_path / "llama-switch" / ".env"
    path.parent.mkdir()
    path.write_text(SEED_ENV, encoding="utf-8")
    monkeypatch.setenv("CONFIG_PATH", str(path))
    monkeypatch.setenv("COLUMNS", "200")  # the table's paths on one line
    return path


def test_config_shows_the_seeds_gpu_layers_from_its_file(seed_env: Path, run: Run) -> None:
    code, out, err = run("config")
    assert code == OK, err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") == 4}
    assert rows["GPU_LAYERS"].split("│")[2].strip() == "20"
    assert rows["GPU_LAYERS"].split("│")[3].strip() == str(seed_env)
    assert rows["MODELS_DIR"].split("│")[3].strip() == str(seed_env)
    assert rows["LLAMASWITCH_HOST"].split("│")[3].strip() == "default"


def test_config_json_says_the_same(seed_env: Path, run: Run) -> None:
    rows = {row["key"]: row for row in run_json(run, "config")}
    assert rows["GPU_LAYERS"] == {"key": "GPU_LAYERS", "value": "20", "source": str(seed_env)}
    assert rows["SERVER_PORT"]["value"] == "8080"
    assert rows["LLAMA_SERVER_PATH"]["value"] == (
        "E:/Downloads/llama-b5293-bin-win-cuda-cu12.4-x64/llama-server.exe"
    )
    assert rows["LLAMASWITCH_READY_TIMEOUT_S"]["source"] == "default"
    assert set(rows) == {s.env for s in specs(Settings).values()}


def test_config_names_each_source(
    seed_env: Path, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GPU_LAYERS", "33")
    monkeypatch.setenv("LLAMASWITCH_API_KEY", "s3cret")
    rows = {row["key"]: row for row in run_json(run, "--models-dir", str(tmp_path), "config")}
    assert (rows["GPU_LAYERS"]["value"], rows["GPU_LAYERS"]["source"]) == ("33", "environment")
    assert (rows["MODELS_DIR"]["value"], rows["MODELS_DIR"]["source"]) == (str(tmp_path),
                                                                           "argument")  # fmt: skip
    assert rows["LLAMASWITCH_API_KEY"]["value"] == "***"  # masked
    assert "s3cret" not in json.dumps(list(rows.values()))


def test_config_with_a_bad_value_exits_2_naming_it(
    seed_env: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_env.write_text(SEED_ENV.replace("GPU_LAYERS=20", "GPU_LAYERS=lots"), encoding="utf-8")
    code, _, err = run("config")
    assert code == USAGE
    assert "GPU_LAYERS='lots'" in err
    assert str(seed_env) in err


# -- bench-delete and bench-prune --------------------------------------------------------------


@pytest.mark.real_binary
def test_bench_delete_removes_a_finished_task(with_build: LlamaBuild, run: Run) -> None:
    kept = run_json(run, "bench", "tiny.gguf", "-p", "16", "-n", "0", "-r", "1")["id"]
    gone = run_json(run, "bench", "other.gguf", "-p", "16", "-n", "0", "-r", "1")["id"]
    deleted = run_json(run, "bench-delete", gone)
    assert [(t["id"], t["state"]) for t in deleted] == [(gone, "completed")]
    assert [t["id"] for t in run_json(run, "bench-history")] == [kept]
    assert run("bench-status", gone)[0] == MISSING
    code, out, _ = run("bench-delete", kept)
    assert code == OK
    assert f"deleted task {kept}" in out
    assert run_json(run, "bench-history") == []


def test_bench_delete_of_an_unknown_task_exits_3(cli_env: dict[str, str], run: Run) -> None:
    kept = _import(run)["id"]
    code, _, err = run("bench-delete", "nope")
    assert code == MISSING
    assert "nope" in err
    assert [t["id"] for t in run_json(run, "bench-history")] == [kept]


def test_bench_delete_takes_several_ids(cli_env: dict[str, str], run: Run) -> None:
    first, second, third = (_import(run)["id"] for _ in range(3))
    deleted = run_json(run, "bench-delete", first, third)
    assert [t["id"] for t in deleted] == [first, third]
    assert [t["id"] for t in run_json(run, "bench-history")] == [second]


@pytest.mark.real_binary
def test_bench_prune_deletes_by_model_and_state(with_build: LlamaBuild, run: Run) -> None:
    tiny = run_json(run, "bench", "tiny.gguf", "-p", "16", "-n", "0", "-r", "1")["id"]
    other = run_json(run, "bench", "other.gguf", "-p", "16", "-n", "0", "-r", "1")["id"]
    imported = _import(run)["id"]  # a tiny.gguf task too, completed
    assert run_json(run, "bench-prune", "--model", "other.gguf") == {"deleted": [other],
                                                                     "count": 1}  # fmt: skip
    assert run_json(run, "bench-prune", "--state", "failed") == {"deleted": [], "count": 0}
    pruned = run_json(run, "bench-prune", "--model", "tiny.gguf", "--state", "completed")
    assert sorted(pruned["deleted"]) == sorted([tiny, imported])
    assert run_json(run, "bench-history") == []


def test_bench_prune_by_age(cli_env: dict[str, str], run: Run) -> None:
    task = _import(run)["id"]
    assert run_json(run, "bench-prune", "--older-than", "1h")["deleted"] == []
    assert run_json(run, "bench-prune", "--before", "2000-01-01")["deleted"] == []
    time.sleep(1.1)
    code, out, _ = run("bench-prune", "--older-than", "1s")
    assert code == OK
    assert "deleted 1 benchmark task" in out
    assert run("bench-status", task)[0] == MISSING


def test_bench_prune_needs_a_filter(cli_env: dict[str, str], run: Run) -> None:
    task = _import(run)["id"]
    code, _, err = run("bench-prune")
    assert code == USAGE
    assert "name what to prune" in err
    assert [t["id"] for t in run_json(run, "bench-history")] == [task]
    with pytest.raises(SystemExit) as exit_info:
        main(["bench-prune", "--older-than", "a while"])
    assert exit_info.value.code == USAGE


@pytest.mark.real_binary
def test_url_bench_delete_and_prune(service: str, run: Run) -> None:
    first = run_json(run, "bench", "tiny.gguf", "-p", "16", "-n", "0", "-r", "1",
                     "--url", service)["id"]  # fmt: skip
    second = run_json(run, "bench-import", str(DATA / "legacy" / "plain.json"), "--model",
                      "other.gguf", "--url", service)["id"]  # fmt: skip
    deleted = run_json(run, "bench-delete", first, "--url", service)
    assert [t["id"] for t in deleted] == [first]
    assert run("bench-delete", first, "--url", service)[0] == MISSING
    pruned = run_json(run, "bench-prune", "--model", "other.gguf", "--url", service)
    assert pruned == {"deleted": [second], "count": 1}
    assert run_json(run, "bench-history", "--url", service) == []
    assert run("bench-prune", "--url", service)[0] == USAGE


# -- exit codes: the same in-process and against a real `llamaswitch serve` ---------------------


@pytest.mark.real_binary
def test_failures_exit_alike_in_process_and_against_a_real_serve(
    llama_build: LlamaBuild, cli_env: dict[str, str], tmp_path: Path, run: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from tests.rest.conftest import serve

    api_port = free_port()
    env = {
        **cli_env,
        "LLAMA_SERVER_PATH": str(llama_build.server.path),
        "LLAMA_BENCH_PATH": str(llama_build.bench.path),
        "SERVER_PORT": str(api_port),
        "LLAMASWITCH_STOP_TIMEOUT_S": "5",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the in-process commands read the same settings
    garbage = tmp_path / "garbage.json"
    garbage.write_text("this is not llama-bench output")
    nobody = str(free_port())
    cases = {
        "unknown model": (("switch", "nope.gguf"), MISSING),
        "server not found": (("status", "--port", nobody), MISSING),
        "server not found (stop)": (("stop", "--port", nobody), MISSING),
        "no logs": (("logs", "--port", nobody), MISSING),
        "task not found": (("bench-status", "nope"), MISSING),
        "delete unknown task": (("bench-delete", "nope"), MISSING),
        "benchmark of an unknown model": (("bench", "nope.gguf", "-p", "16"), MISSING),
        "the API's own port": (("switch", "tiny.gguf", "--port", str(api_port)), CONFLICT),
        "unparsable import": (("bench-import", str(garbage)), USAGE),
        "prune without a filter": (("bench-prune",), USAGE),
    }
    with serve(["serve"], env, tmp_path, api_port) as service:
        for what, (argv, expected) in cases.items():
            here = run(*argv)[0]
            there = run(*argv, "--url", service.url)[0]
            assert (here, there) == (expected, expected), what
        # A running task may not be deleted: 4 both ways (the history is shared).
        code, out, _ = run("bench", "tiny.gguf", "-p", "256", "-n", "64", "-r", "1000",
                           "--no-wait", "--url", service.url)  # fmt: skip
        assert code == OK
        task_id = out.strip()
        try:
            deadline = time.monotonic() + 30
            while run_json(run, "bench-status", task_id)["state"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert run("bench-delete", task_id)[0] == CONFLICT
            assert run("bench-delete", task_id, "--url", service.url)[0] == CONFLICT
        finally:
            run("bench-cancel", task_id, "--url", service.url)
        assert service.stop() == 0
