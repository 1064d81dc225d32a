"""The command line: each command in-process and against a running service (``--url``).

In-process commands run through ``llamaswitch._cli.main`` in this process (fast, output
captured); the foreground ``switch`` that Ctrl-C ends runs as a subprocess. ``--url``
commands talk to the real REST app (``llamaswitch_http.create_app``) served from a
background thread, with real llama.cpp binaries and tiny models.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import io
import json
import os
import queue
import random
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

from llamaswitch._cli import main
from llamaswitch._settings import Settings
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
