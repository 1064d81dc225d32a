"""The remote client's tuning calls: the library's tune API over REST, the same records.

What each call sends is checked against a mock transport; the real-service tests drive a
real ``llamaswitch serve`` (a subprocess, real llama-bench, tiny models) and compare
what the client decoded with what the library reads from the same state folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from llamaswitch import BenchConfig, LlamaSwitch, ServerConfig, Settings
from llamaswitch._errors import (
    ConfigValidationError,
    TuneNotFoundError,
    TuneStateError,
    TuneTimeoutError,
)
from llamaswitch.client import SHARED_METHODS, AsyncRemoteLlamaSwitch, RemoteLlamaSwitch
from llamaswitch.tuning import Objective, Trial, Tune, TuneOptions
from tests.conftest import LlamaBuild, require_build
from tests.helpers import free_port
from tests.rest.conftest import ServeProcess, serve

QUICK = Objective(n_prompt=32, n_gen=8)
FIXED = {"repetitions": 2, "max_repetitions": 2}
TUNE_METHODS = ("tune", "tune_status", "wait_tune", "cancel_tune", "resume_tune", "list_tunes",
                "save_tune_preset", "tune_space")  # fmt: skip
TUNE = {
    "id": "t1", "state": "running", "model": "tiny.gguf", "model_path": "tiny.gguf",
    "space": {"threads": [1, 2]}, "objective": {"metric": "tg"}, "server": {},
    "options": {"budget": 2}, "seed": 1, "progress": {"done": 0, "budget": 2},
    "trials": [], "best": None, "pareto": [], "preset": None, "binary_version": "b1",
    "created_at": "2026-01-01T00:00:00.000Z", "finished_at": None, "error": None,
}  # fmt: skip


def test_every_tune_method_is_shared_with_the_library() -> None:
    assert set(TUNE_METHODS) <= set(SHARED_METHODS)  # so test_client checks signatures


class Recorder:
    """A mock service: answers every call with ``data`` and keeps the requests."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return httpx.Response(200, json={"success": True, "message": "ok", "data": self.data,
                                         "error": ""})  # fmt: skip

    def sent(self) -> list[tuple[str, str, str]]:
        return [(r.method, r.url.path, str(r.url.query, "ascii")) for r in self.seen]


def test_a_tune_sends_its_parts_in_the_wire_format_and_options_at_the_top() -> None:
    recorder = Recorder(TUNE)
    with RemoteLlamaSwitch("http://box:9000", transport=httpx.MockTransport(recorder)) as ls:
        tune = ls.tune("tiny.gguf", space=BenchConfig(threads=(1, 2), batch_size=64),
                       objective=Objective(metric="mix", pp_weight=0.25, n_prompt=32),
                       server=ServerConfig(ctx_size=256), budget=2, seed=9)  # fmt: skip
        ls.tune("tiny.gguf", space={"threads": [1, 2]}, objective="pp")
    assert isinstance(tune, Tune)
    assert (tune.id, tune.state, tune.options) == ("t1", "running", TuneOptions(budget=2))
    first, second = (json.loads(r.content) for r in recorder.seen)
    assert first == {
        "model_path": "tiny.gguf",
        "space": {"threads": [1, 2], "batch_size": 64},
        "objective": {"metric": "mix", "pp_weight": 0.25, "n_prompt": 32, "n_gen": 128,
                      "n_depth": 0},
        "server": {"ctx_size": 256},
        "budget": 2,
        "seed": 9,
    }  # fmt: skip
    assert second == {"model_path": "tiny.gguf", "space": {"threads": [1, 2]},
                      "objective": "pp", "server": None}  # fmt: skip
    assert recorder.sent()[0][:2] == ("POST", "/api/v1/tune")


def test_an_option_named_like_the_model_is_refused_before_it_is_sent() -> None:
    recorder = Recorder(TUNE)
    with (
        RemoteLlamaSwitch("http://box:9000", transport=httpx.MockTransport(recorder)) as ls,
        pytest.raises(ConfigValidationError, match="model_path"),
    ):
        ls.tune("tiny.gguf", model_path="other.gguf")
    assert recorder.seen == []


def test_the_tune_calls_go_to_their_routes_with_their_query() -> None:
    recorder = Recorder(TUNE)
    with RemoteLlamaSwitch("http://box:9000", transport=httpx.MockTransport(recorder)) as ls:
        ls.tune_status("t1")
        ls.cancel_tune("t1")
        ls.resume_tune("t1")
        ls.resume_tune("t1", budget=8)
        ls.save_tune_preset("t1")
        ls.save_tune_preset("t1", trial=3, preset="mine")
        recorder.data = [TUNE]
        assert [t.id for t in ls.list_tunes(model="tiny.gguf", limit=5)] == ["t1"]
        recorder.data = {"threads": [1, 2]}
        assert ls.tune_space("tiny.gguf") == {"threads": [1, 2]}
        ls.tune_space("tiny.gguf", objective={"n_prompt": 256})
    assert recorder.sent() == [
        ("GET", "/api/v1/tune/status", "tune_id=t1"),
        ("POST", "/api/v1/tune/cancel", "tune_id=t1"),
        ("POST", "/api/v1/tune/resume", "tune_id=t1"),
        ("POST", "/api/v1/tune/resume", "tune_id=t1&budget=8"),
        ("POST", "/api/v1/tune/preset", "tune_id=t1"),
        ("POST", "/api/v1/tune/preset", "tune_id=t1&trial=3&preset=mine"),
        ("GET", "/api/v1/tunes", "model=tiny.gguf&limit=5"),
        ("GET", "/api/v1/tune/space", "model_path=tiny.gguf"),
        ("GET", "/api/v1/tune/space", "model_path=tiny.gguf&n_prompt=256"),
    ]


def test_wait_tune_polls_until_the_tune_stops_or_the_timeout() -> None:
    states = iter(["running", "running", "completed"])

    def answer(request: httpx.Request) -> httpx.Response:
        data = {**TUNE, "state": next(states)}
        return httpx.Response(200, json={"success": True, "message": "ok", "data": data,
                                         "error": ""})  # fmt: skip

    with RemoteLlamaSwitch("http://box:9000", transport=httpx.MockTransport(answer)) as ls:
        assert ls.wait_tune("t1").state == "completed"
    with (
        RemoteLlamaSwitch("http://box:9000", transport=httpx.MockTransport(Recorder(TUNE))) as ls,
        pytest.raises(TuneTimeoutError, match=r"still running after 0\.2 s"),
    ):
        ls.wait_tune("t1", timeout_s=0.2)


# -- against a real service ----------------------------------------------------------------------


def _env(build: LlamaBuild, models_dir: Path, state: Path, port: int) -> dict[str, str]:
    return {
        "LLAMA_SERVER_PATH": str(build.server.path),
        "LLAMA_BENCH_PATH": str(build.bench.path),
        "MODELS_DIR": str(models_dir),
        "LLAMASWITCH_STATE_DIR": str(state),
        "SERVER_PORT": str(port),
        "LLAMASWITCH_API_KEY": "s3cret",
        "LLAMASWITCH_STOP_TIMEOUT_S": "5",
    }


@contextlib.contextmanager
def _service(build: LlamaBuild, models_dir: Path, tmp_path: Path) -> Iterator[ServeProcess]:
    port = free_port()
    with serve(["serve"], _env(build, models_dir, tmp_path / "state", port), tmp_path,
               port) as served:  # fmt: skip
        yield served
        assert served.stop() == 0, served.text()


@pytest.mark.real_binary
def test_the_client_runs_a_tune_and_decodes_the_librarys_own_records(
    llama_build: LlamaBuild, models_dir: Path, tmp_path: Path
) -> None:
    space = BenchConfig(threads=(1, 2), batch_size=(16, 32))
    with (
        _service(llama_build, models_dir, tmp_path) as service,
        RemoteLlamaSwitch(service.url, api_key="s3cret") as ls,
    ):
        started = ls.tune("tiny.gguf", space=space, objective=QUICK, budget=4, **FIXED)
        assert isinstance(started, Tune)
        assert started.state == "running"
        assert started.objective == QUICK
        assert started.options == TuneOptions(budget=4, **FIXED)
        tune = ls.wait_tune(started.id, timeout_s=180)
        assert tune.state == "completed", tune.error
        assert all(isinstance(t, Trial) for t in tune.trials)
        assert isinstance(tune.created_at, datetime)
        assert tune.created_at.tzinfo is not None
        assert tune.best is not None
        assert tune.preset is not None
        assert tune.preset.id == "tiny-tuned"
        assert [t.id for t in ls.list_tunes()] == [tune.id]
        assert ls.list_tunes(model="other.gguf") == []

        other = next(t for t in tune.trials if t.number != tune.best.number)
        saved = ls.save_tune_preset(tune.id, trial=other.number, preset="tiny-other")
        assert saved.preset is not None
        assert (saved.preset.id, saved.preset.trial) == ("tiny-other", other.number)
        assert ls.cancel_tune(tune.id).state == "completed"  # already stopped: as it is
        derived = ls.tune_space("tiny.gguf", objective={"n_prompt": 256})
        assert max(derived["batch_size"]) == 256
        final = ls.tune_status(tune.id)
    # The library reads the same tune from the state folder: the client decoded it whole.
    with LlamaSwitch(Settings(models_dir=models_dir, state_dir=tmp_path / "state")) as local:
        assert local.tune_status(final.id) == final


@pytest.mark.real_binary
def test_the_services_tune_errors_come_back_as_the_librarys(
    models_dir: Path, tmp_path: Path
) -> None:
    with (
        _service(require_build("current"), models_dir, tmp_path) as service,
        RemoteLlamaSwitch(service.url, api_key="s3cret") as ls,
    ):
        with pytest.raises(TuneNotFoundError, match="nope"):
            ls.tune_status("nope")
        with pytest.raises(ConfigValidationError) as caught:
            ls.tune("tiny.gguf", space={"threads": [1, 2]}, bugdet=3, budget=0)
        assert sorted(path for path, _ in caught.value.errors) == ["$.budget", "$.bugdet"]
        tune = ls.tune("tiny.gguf", space={"threads": [1, 2]}, objective=QUICK, budget=2,
                       save_preset=False, **FIXED)  # fmt: skip
        ls.wait_tune(tune.id, timeout_s=120)
        with pytest.raises(TuneStateError) as state:
            ls.resume_tune(tune.id)
        assert (state.value.tune_id, state.value.state) == (tune.id, "completed")
        assert ls.list_tunes(limit=1)[0].trials == ()


@pytest.mark.real_binary
def test_the_async_client_cancels_a_running_tune_and_sees_its_events(
    models_dir: Path, tmp_path: Path
) -> None:
    async def scenario(url: str) -> tuple[Tune, list[tuple[str, Any]]]:
        async with AsyncRemoteLlamaSwitch(url, api_key="s3cret") as ls:
            seen: list[tuple[str, Any]] = []

            async def watch() -> None:
                async for event in ls.subscribe():
                    if event.topic == "tune":
                        seen.append((event.type, event.data.get("state")))
                    if ("status", "cancelled") in seen:
                        return

            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0.3)  # subscribed before anything happens
            tune = await ls.tune("tiny.gguf", space={"threads": [1, 2]},
                                 objective={"n_prompt": 64, "n_gen": 64}, budget=2,
                                 repetitions=400, max_repetitions=400)  # fmt: skip
            while (await ls.tune_status(tune.id)).progress.current_task_id is None:  # noqa: ASYNC110 - a remote state: polled
                await asyncio.sleep(0.05)
            cancelled = await ls.cancel_tune(tune.id)
            await asyncio.wait_for(watcher, 30)
            assert (await ls.wait_tune(tune.id, timeout_s=10)) == cancelled
            return cancelled, seen

    with _service(require_build("current"), models_dir, tmp_path) as service:
        cancelled, seen = asyncio.run(scenario(service.url))
    assert cancelled.state == "cancelled"
    assert [t.state for t in cancelled.trials] == ["cancelled"]
    assert seen[0] == ("status", "running")
    assert seen[-1] == ("status", "cancelled")
