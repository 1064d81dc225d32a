"""``llamaswitch serve --log-level``: one line per event on stderr, from a real serve."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest

from tests.conftest import LlamaBuild
from tests.helpers import free_port
from tests.rest.conftest import serve_env

pytestmark = pytest.mark.real_binary


@attrs.define
class Served:
    """A running serve's URL, and the lines it wrote on stderr (all of them once the
    ``serving`` block has ended)."""

    url: str
    stderr: list[str] = attrs.field(factory=list)


@contextmanager
def serving(level: str, build: LlamaBuild, models_dir: Path, tmp_path: Path) -> Iterator[Served]:
    """``serve --log-level LEVEL`` with stderr kept apart from stdout."""
    port = free_port()
    env = serve_env({
        "LLAMA_SERVER_PATH": str(build.server.path),
        "LLAMA_BENCH_PATH": str(build.bench.path),
        "MODELS_DIR": str(models_dir),
        "LLAMASWITCH_STATE_DIR": str(tmp_path / "state"),
        "SERVER_PORT": str(port),
        "LLAMASWITCH_STOP_TIMEOUT_S": "5",
    })  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "llamaswitch", "serve", "--log-level", level],
        env=env, cwd=tmp_path, text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    served = Served(f"http://127.0.0.1:{port}")
    reader = threading.Thread(target=lambda: served.stderr.extend(process.stderr or ()))
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "".join(served.stderr)
            try:
                with urllib.request.urlopen(f"{served.url}/api/v1/health", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "".join(served.stderr)
                time.sleep(0.05)
        yield served
    finally:
        process.terminate()
        try:
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            reader.join(10)


def _post(url: str, body: object) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"},
        method="POST",
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, object] = json.loads(response.read())
    return answer


def _switch_and_stop(url: str) -> int:
    port = free_port()
    _post(f"{url}/api/v1/model/switch?wait=true",
          {"model_path": "tiny.gguf", "config": {"port": port, "ctx_size": 256}})  # fmt: skip
    _post(f"{url}/api/v1/model/stop", {"port": port})
    return port


def _events(lines: list[str]) -> list[dict[str, object]]:
    """The server state events that were logged, one per line, parsed."""
    marker = " server.state "
    return [
        json.loads(line.split(marker, 1)[1])
        for line in lines
        if " llamaswitch.events " in line and marker in line
    ]


def test_at_info_each_state_change_is_one_line_on_stderr(
    llama_build: LlamaBuild, models_dir: Path, tmp_path: Path
) -> None:
    with serving("info", llama_build, models_dir, tmp_path) as served:
        port = _switch_and_stop(served.url)
    events = [e for e in _events(served.stderr) if e.get("port") == port]
    states = [e["state"] for e in events]
    assert states == ["starting", "ready", "stopping", "stopped"]  # each change once, in order
    assert [e["previous"] for e in events] == [None, "starting", "ready", "stopping"]
    ready = next(e for e in events if e["state"] == "ready")
    assert ready["model_name"] == "tiny.gguf"
    lines = [line for line in served.stderr if '"state":"ready"' in line and str(port) in line]
    assert len(lines) == 1, lines
    assert " INFO " in lines[0]


def test_the_servers_a_shutdown_stops_are_logged_as_they_go(
    llama_build: LlamaBuild, models_dir: Path, tmp_path: Path
) -> None:
    with serving("info", llama_build, models_dir, tmp_path) as served:
        port = free_port()
        _post(f"{served.url}/api/v1/model/switch?wait=true",
              {"model_path": "tiny.gguf", "config": {"port": port, "ctx_size": 256}})  # fmt: skip
    # Left to serve's SIGTERM, which stops it on the way out.
    states = [e["state"] for e in _events(served.stderr) if e.get("port") == port]
    assert states == ["starting", "ready", "stopping", "stopped"]


def test_at_warning_no_event_is_logged(
    llama_build: LlamaBuild, models_dir: Path, tmp_path: Path
) -> None:
    with serving("warning", llama_build, models_dir, tmp_path) as served:
        _switch_and_stop(served.url)
    assert _events(served.stderr) == []
    assert not [line for line in served.stderr if " INFO " in line]
