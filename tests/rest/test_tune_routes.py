"""The tuning routes over HTTP: start, follow, cancel, resume, save a trial, list, the
default space; and a tune that outlives a killed ``llamaswitch serve``.

Each trial is a real llama-bench run on a tiny model (both generations where it is
cheap); the preset a tune writes is read back through the presets route and the
gateway's model list.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp.test_utils import TestClient

from llamaswitch._settings import Settings
from llamaswitch.tuning import TUNE_STATES
from tests.conftest import LlamaBuild, require_build
from tests.rest.conftest import ServeProcess, call, client_for, free_port, make_settings, run, serve

pytestmark = pytest.mark.real_binary

#: Small tests: tens of milliseconds per llama-bench run on the tiny models.
QUICK = {"n_prompt": 32, "n_gen": 8}
#: No added repetitions: one benchmark task per trial, exactly.
FIXED = {"repetitions": 2, "max_repetitions": 2}
_LLAMA_NAMES = {"llama-bench", "llama-server"}


@pytest.fixture
def settings(llama_build: LlamaBuild, models_dir: Path, tmp_path: Path) -> Settings:
    return make_settings(llama_build, models_dir, tmp_path / "state")


@pytest.fixture
def current(models_dir: Path, tmp_path: Path) -> Settings:
    """Settings on the current build only: for what does not depend on the generation."""
    return make_settings(require_build("current"), models_dir, tmp_path / "state")


async def start_tune(client: TestClient[Any, Any], **body: Any) -> dict[str, Any]:
    """POST /api/v1/tune with ``tiny.gguf`` and the quick objective unless given; 202."""
    request = {"model_path": "tiny.gguf", "objective": QUICK, **body}
    answer = await call(client, "POST", "/api/v1/tune", status=202, json=request)
    assert answer["message"] == "Tune started"
    assert answer["data"]["state"] == "running"
    return dict(answer["data"])


async def tune_status(client: TestClient[Any, Any], tune_id: str) -> dict[str, Any]:
    answer = await call(client, "GET", f"/api/v1/tune/status?tune_id={tune_id}", status=200)
    assert answer["message"] == "Tune status retrieved"
    return dict(answer["data"])


async def wait_tune(
    client: TestClient[Any, Any], tune_id: str, timeout_s: float = 180.0
) -> dict[str, Any]:
    """Poll the tune's status until it stops; its data."""
    deadline = time.monotonic() + timeout_s
    while True:
        data = await tune_status(client, tune_id)
        if data["state"] != "running":
            return data
        assert time.monotonic() < deadline, data
        await asyncio.sleep(0.1)


async def wait_until(client: TestClient[Any, Any], tune_id: str, test: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        data = await tune_status(client, tune_id)
        if test(data):
            return data
        assert time.monotonic() < deadline, data
        await asyncio.sleep(0.05)


# -- a tune from POST to the preset the gateway serves --------------------------------------


def test_a_tune_started_by_post_completes_and_the_gateway_lists_its_preset(
    settings: Settings,
) -> None:
    space = {"threads": [1, 2], "batch_size": [16, 32, 64]}

    async def scenario() -> None:
        async with client_for(settings) as client:
            started = await start_tune(client, space=space, budget=6, **FIXED)
            assert started["progress"] == {
                "done": 0, "budget": 6, "completed": 0, "failed": 0, "pruned": 0,
                "space_size": 6, "feasible": 6, "current_trial": None, "current_task_id": None,
            }  # fmt: skip
            assert started["space"] == space
            assert started["objective"]["n_prompt"] == 32

            tune = await wait_tune(client, started["id"])
            assert tune["state"] == "completed", tune["error"]
            assert (tune["progress"]["done"], tune["progress"]["completed"]) == (6, 6)
            points = {(t["params"]["threads"], t["params"]["batch_size"]) for t in tune["trials"]}
            assert points == {(t, b) for t in (1, 2) for b in (16, 32, 64)}
            best = tune["best"]
            assert best["score"] == max(t["score"] for t in tune["trials"])
            assert best["number"] in tune["pareto"]
            assert tune["preset"]["id"] == "tiny-tuned"
            assert tune["preset"]["error"] is None
            assert tune["preset"]["trial"] == best["number"]

            # Each trial is a benchmark task linked to the tune.
            task_id = best["task_ids"][0]
            task = await call(client, "GET", f"/api/v1/benchmark/status?task_id={task_id}",
                              status=200)  # fmt: skip
            assert task["data"]["tune_id"] == tune["id"]

            presets = await call(client, "GET", "/api/v1/presets", status=200)
            by_id = {p["id"]: p for p in presets["data"]["models"]}
            assert by_id["tiny-tuned"]["file"] == "tiny.gguf"
            config = by_id["tiny-tuned"]["config"]
            assert (config["threads"], config["batch_size"]) == (
                best["params"]["threads"], best["params"]["batch_size"])  # fmt: skip

            response = await client.get("/v1/models")
            assert response.status == 200
            listed = {m["id"]: m for m in (await response.json())["data"]}
            assert listed["tiny-tuned"]["preset"] == "tiny-tuned"

    run(scenario())


# -- refused before anything runs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"model_path": "tiny.gguf", "space": {"threads": [1, 2]}, "bugdet": 6}, "$.bugdet"),
        ({"model_path": "tiny.gguf", "space": {"threads": [1, 2]}, "budget": 0}, "$.budget"),
        # Every point's micro-batch is above its batch: llama.cpp would cap it, so none
        # measures what it says.
        ({"model_path": "tiny.gguf", "space": {"ubatch_size": [256, 512], "batch_size": 128}},
         "$.space"),
        ({"model_path": "tiny.gguf", "space": [1, 2]}, "$.space"),
        ({"model_path": "tiny.gguf", "space": {"threadz": [1, 2]}}, "$.space.threadz"),
        ({"model_path": "tiny.gguf", "space": {"threads": [1, 0]}}, "$.space.threads[1]"),
        ({"model_path": "tiny.gguf", "space": {"threads": [1, 2]}, "objective": {"metric": "x"}},
         "$.objective.metric"),
        ({"model_path": "tiny.gguf", "space": {"threads": [1, 2]}, "objective": 3},
         "$.objective"),
        ({"model_path": "tiny.gguf", "space": {"threads": [1, 2]}, "server": "big"}, "$.server"),
        ({"space": {"threads": [1, 2]}}, "$.model_path"),
        ([{"model_path": "tiny.gguf"}], "$"),
    ],
    ids=["unknown-key", "budget-0", "no-valid-point", "space-not-object", "unknown-field",
         "bad-value", "bad-metric", "objective-not-object", "server-not-object",
         "no-model", "body-not-object"],
)  # fmt: skip
def test_a_bad_tune_request_is_refused_with_422_naming_the_field(
    current: Settings, body: Any, path: str
) -> None:
    async def scenario() -> None:
        async with client_for(current) as client:
            answer = await call(client, "POST", "/api/v1/tune", status=422, json=body)
            assert answer["data"]["code"] == "validation_error"
            assert [f["path"] for f in answer["data"]["fields"]] == [path]
            assert answer["data"]["errors"][0].endswith(f" @ {path}")
            listed = await call(client, "GET", "/api/v1/tunes", status=200)
            assert listed["data"] == []  # nothing was started
            history = await call(client, "GET", "/api/v1/benchmarks", status=200)
            assert history["data"] == []

    run(scenario())


def test_every_problem_of_a_request_is_named_at_once(current: Settings) -> None:
    body = {"model_path": "tiny.gguf", "space": {"threadz": [1, 2]}, "budget": 0, "bugdet": 1,
            "objective": {"metric": "speed"}}  # fmt: skip

    async def scenario() -> None:
        async with client_for(current) as client:
            answer = await call(client, "POST", "/api/v1/tune", status=422, json=body)
            paths = sorted(f["path"] for f in answer["data"]["fields"])
            assert paths == ["$.budget", "$.bugdet", "$.objective.metric", "$.space.threadz"]

    run(scenario())


def test_a_tune_of_a_model_that_is_not_there_is_404_with_suggestions(current: Settings) -> None:
    async def scenario() -> None:
        async with client_for(current) as client:
            body = {"model_path": "tiny2.gguf", "space": {"threads": [1, 2]}}
            answer = await call(client, "POST", "/api/v1/tune", status=404, json=body)
            assert answer["data"]["code"] == "model_not_found"
            assert "tiny.gguf" in answer["data"]["suggestions"]

    run(scenario())


@pytest.mark.parametrize(
    ("method", "route"),
    [("GET", "/api/v1/tune/status"), ("POST", "/api/v1/tune/cancel"),
     ("POST", "/api/v1/tune/resume"), ("POST", "/api/v1/tune/preset")],
    ids=["status", "cancel", "resume", "preset"],
)  # fmt: skip
def test_an_unknown_tune_id_is_404_tune_not_found(
    current: Settings, method: str, route: str
) -> None:
    async def scenario() -> None:
        async with client_for(current) as client:
            answer = await call(client, method, f"{route}?tune_id=nope", status=404)
            assert answer["message"] == "Tune not found"
            assert answer["data"]["code"] == "tune_not_found"
            assert "nope" in answer["error"]

    run(scenario())


@pytest.mark.parametrize(
    ("method", "query", "path"),
    [
        ("GET", "/api/v1/tune/status", "$.query.tune_id"),
        ("POST", "/api/v1/tune/resume?tune_id=x&budget=0", "$.query.budget"),
        ("POST", "/api/v1/tune/preset?tune_id=x&trial=one", "$.query.trial"),
        ("GET", "/api/v1/tunes?limit=0", "$.query.limit"),
        ("GET", "/api/v1/tune/space?model_path=tiny.gguf&n_prompt=0", "$.query.n_prompt"),
        ("GET", "/api/v1/tune/status?tune_id=x&tuneid=x", "$.query.tuneid"),
    ],
    ids=["no-tune-id", "budget-0", "trial-not-int", "limit-0", "n_prompt-0", "unknown"],
)
def test_a_bad_query_is_refused_with_422_naming_the_parameter(
    current: Settings, method: str, query: str, path: str
) -> None:
    async def scenario() -> None:
        async with client_for(current) as client:
            answer = await call(client, method, query, status=422)
            assert path in [f["path"] for f in answer["data"]["fields"]]

    run(scenario())


# -- cancel, save a trial, list, the default space -------------------------------------------


def test_cancel_stops_a_running_tune_and_a_second_cancel_says_it_already_stopped(
    settings: Settings,
) -> None:
    async def scenario() -> None:
        async with client_for(settings) as client:
            # Long enough to catch: 400 runs of each test.
            started = await start_tune(client, space={"threads": [1, 2]},
                                       objective={"n_prompt": 64, "n_gen": 64}, budget=2,
                                       repetitions=400, max_repetitions=400)  # fmt: skip
            running = await wait_until(
                client, started["id"], lambda d: d["progress"]["current_task_id"]
            )
            task_id = running["progress"]["current_task_id"]
            answer = await call(client, "POST", f"/api/v1/tune/cancel?tune_id={started['id']}",
                                status=200)  # fmt: skip
            assert answer["message"] == "Tune cancelled"
            assert answer["data"]["state"] == "cancelled"
            assert [t["state"] for t in answer["data"]["trials"]] == ["cancelled"]
            assert answer["data"]["preset"] is None
            task = await call(client, "GET", f"/api/v1/benchmark/status?task_id={task_id}",
                              status=200)  # fmt: skip
            assert task["data"]["state"] == "cancelled"

            again = await call(client, "POST", f"/api/v1/tune/cancel?tune_id={started['id']}",
                               status=200)  # fmt: skip
            assert again["message"] == "Tune already cancelled: nothing to cancel"
            assert again["data"]["state"] == "cancelled"

    run(scenario())


async def _completed_tune(client: TestClient[Any, Any], **body: Any) -> dict[str, Any]:
    started = await start_tune(client, space={"threads": [1, 2]}, budget=2, **FIXED, **body)
    tune = await wait_tune(client, started["id"])
    assert tune["state"] == "completed", tune["error"]
    return tune


def test_a_chosen_trial_is_written_as_a_preset_and_served(settings: Settings) -> None:
    async def scenario() -> None:
        async with client_for(settings) as client:
            tune = await _completed_tune(client, save_preset=False)
            assert tune["preset"] is None
            other = next(t for t in tune["trials"] if t["number"] != tune["best"]["number"])
            route = f"/api/v1/tune/preset?tune_id={tune['id']}&trial={other['number']}"
            answer = await call(client, "POST", f"{route}&preset=tiny-other", status=200)
            assert answer["message"] == "Preset tiny-other written"
            preset = answer["data"]["preset"]
            assert (preset["id"], preset["trial"], preset["error"]) == (
                "tiny-other", other["number"], None)  # fmt: skip

            presets = await call(client, "GET", "/api/v1/presets", status=200)
            by_id = {p["id"]: p for p in presets["data"]["models"]}
            assert by_id["tiny-other"]["config"]["threads"] == other["params"]["threads"]
            models = await (await client.get("/v1/models")).json()
            assert "tiny-other" in {m["id"] for m in models["data"]}

            # Without a trial: the best one, under the tune's own preset id.
            best = await call(client, "POST", f"/api/v1/tune/preset?tune_id={tune['id']}",
                              status=200)  # fmt: skip
            assert best["data"]["preset"]["id"] == "tiny-tuned"
            assert best["data"]["preset"]["trial"] == tune["best"]["number"]

            missing = await call(client, "POST", f"{route[:route.index('&')]}&trial=99",
                                 status=409)  # fmt: skip
            assert missing["data"]["code"] == "tune_state"
            assert "no completed trial 99" in missing["error"]
            bad = await call(client, "POST", f"{route}&preset=bad%20id!", status=422)
            assert bad["data"]["fields"][0]["path"] == "$.preset"

    run(scenario())


def test_a_preset_the_presets_file_cannot_take_is_refused_and_recorded(current: Settings) -> None:
    async def scenario() -> None:
        async with client_for(current) as client:
            tune = await _completed_tune(client, save_preset=False)
            current.presets_path.write_text("[models.broken\n")  # not TOML: kept as it is
            route = f"/api/v1/tune/preset?tune_id={tune['id']}"
            answer = await call(client, "POST", route, status=422)
            assert answer["data"]["code"] == "presets_invalid"
            assert answer["data"]["path"] == str(current.presets_path)
            assert current.presets_path.read_text() == "[models.broken\n"
            recorded = (await tune_status(client, tune["id"]))["preset"]
            assert (recorded["id"], recorded["written_at"]) == ("tiny-tuned", None)
            assert "not valid TOML" in recorded["error"]

    run(scenario())


def test_tunes_lists_the_tunes_newest_first_without_their_trials(current: Settings) -> None:
    async def scenario() -> None:
        async with client_for(current) as client:
            first = await _completed_tune(client, save_preset=False)
            second = await _completed_tune(client, save_preset=False, model_path="other.gguf")
            answer = await call(client, "GET", "/api/v1/tunes", status=200)
            assert answer["message"] == "Found 2 tunes"
            assert [t["id"] for t in answer["data"]] == [second["id"], first["id"]]
            assert all(t["trials"] == [] for t in answer["data"])
            assert answer["data"][1]["best"] == first["best"]
            assert answer["data"][1]["progress"] == first["progress"]
            assert all(t["state"] in TUNE_STATES for t in answer["data"])

            by_model = await call(client, "GET", "/api/v1/tunes?model=tiny.gguf", status=200)
            assert [t["id"] for t in by_model["data"]] == [first["id"]]
            limited = await call(client, "GET", "/api/v1/tunes?limit=1", status=200)
            assert [t["id"] for t in limited["data"]] == [second["id"]]

    run(scenario())


def test_resume_of_a_tune_that_used_its_budget_is_409_and_a_larger_budget_goes_on(
    current: Settings,
) -> None:
    async def scenario() -> None:
        async with client_for(current) as client:
            started = await start_tune(client, space={"threads": [1, 2], "batch_size": [16, 32]},
                                       budget=2, save_preset=False, **FIXED)  # fmt: skip
            tune = await wait_tune(client, started["id"])
            assert tune["state"] == "completed", tune["error"]
            refused = await call(client, "POST", f"/api/v1/tune/resume?tune_id={tune['id']}",
                                 status=409)  # fmt: skip
            assert refused["data"] == {"code": "tune_state", "tune_id": tune["id"],
                                       "state": "completed"}  # fmt: skip
            assert "give a larger budget" in refused["error"]

            route = f"/api/v1/tune/resume?tune_id={tune['id']}&budget=4"
            resumed = await call(client, "POST", route, status=202)
            assert resumed["message"] == "Tune resumed"
            assert resumed["data"]["progress"]["budget"] == 4
            done = await wait_tune(client, tune["id"])
            assert done["state"] == "completed", done["error"]
            assert done["progress"]["done"] == 4
            assert done["trials"][:2] == tune["trials"]  # kept, not measured again

    run(scenario())


def test_tune_space_is_derived_from_the_model_and_the_binaries(settings: Settings) -> None:
    async def scenario() -> None:
        async with client_for(settings) as client:
            answer = await call(client, "GET", "/api/v1/tune/space?model_path=tiny.gguf",
                                status=200)  # fmt: skip
            space = answer["data"]
            assert answer["message"] == f"{len(space)} fields to tune"
            assert space["threads"][0] == 1
            assert space["flash_attn"] == [False, True]
            assert max(space["batch_size"]) <= 512  # the default objective's prompt
            assert all(len(values) > 1 for values in space.values())

            small = await call(client, "GET",
                               "/api/v1/tune/space?model_path=tiny.gguf&n_prompt=256",
                               status=200)  # fmt: skip
            assert max(small["data"]["batch_size"]) == 256
            assert max(small["data"]["ubatch_size"]) == 256

            missing = await call(client, "GET", "/api/v1/tune/space?model_path=nope.gguf",
                                 status=404)  # fmt: skip
            assert missing["data"]["code"] == "model_not_found"

    run(scenario())


# -- a tune outlives a killed service --------------------------------------------------------


def _env(build: LlamaBuild, models_dir: Path, state_dir: Path, port: int) -> dict[str, str]:
    return {
        "LLAMA_SERVER_PATH": str(build.server.path),
        "LLAMA_BENCH_PATH": str(build.bench.path),
        "MODELS_DIR": str(models_dir),
        "LLAMASWITCH_STATE_DIR": str(state_dir),
        "SERVER_PORT": str(port),
        "LLAMASWITCH_STOP_TIMEOUT_S": "5",
    }


def _poll(service: ServeProcess, tune_id: str, test: Any, timeout_s: float = 180) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = service.request("GET", f"/api/v1/tune/status?tune_id={tune_id}")
        assert status == 200, body
        if test(body["data"]):
            return body["data"]
        assert time.monotonic() < deadline, body["data"]
        time.sleep(0.1)


def _llama_children_of(pid: int) -> list[psutil.Process]:
    """The llama.cpp processes among ``pid``'s descendants (now or earlier: orphans too)."""
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if p.name() in _LLAMA_NAMES]
    except psutil.Error:
        return []


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_tune_killed_with_serve_is_interrupted_and_resume_completes_it_keeping_its_trials(
    models_dir: Path, tmp_path: Path
) -> None:
    build = require_build("current")
    state = tmp_path / "state"
    space = {"threads": [1, 2], "batch_size": [16, 32, 64]}
    # Trials of 100 repetitions: the moment awaited below (one trial measured, the next
    # running) lasts a trial, and a loaded machine answered the polls too slowly to see
    # one among trials of 20 (a full run).
    request = {"model_path": "tiny.gguf", "space": space, "objective": QUICK, "budget": 6,
               "repetitions": 100, "max_repetitions": 100, "seed": 7}  # fmt: skip
    port = free_port()
    with serve(["serve"], _env(build, models_dir, state, port), tmp_path, port) as service:
        status, body = service.request("POST", "/api/v1/tune", request)
        assert status == 202, body
        tune_id = body["data"]["id"]

        # Once a trial is measured and the next one runs: its llama-bench is killed too.
        def next_one_runs(d: dict[str, Any]) -> bool:
            assert d["state"] in ("queued", "running"), f"it ended before: {d}"
            return bool(d["progress"]["completed"] >= 1 and d["progress"]["current_task_id"])

        running = _poll(service, tune_id, next_one_runs)
        benches: list[psutil.Process] = []
        deadline = time.monotonic() + 30
        while not benches and time.monotonic() < deadline:
            benches = _llama_children_of(service.process.pid)
            time.sleep(0.02)
        os.kill(service.process.pid, signal.SIGKILL)
        assert service.process.wait(30) == -signal.SIGKILL
        assert benches, "no llama-bench ran when the service was killed"
        # The parent-death signal kills every llama-bench it started.
        psutil.wait_procs(benches, timeout=10)
        assert all(_gone(p) for p in benches), benches
    measured_before = [t for t in running["trials"] if t["state"] == "completed"]

    port = free_port()
    with serve(["serve"], _env(build, models_dir, state, port), tmp_path, port) as service:
        status, body = service.request("GET", f"/api/v1/tune/status?tune_id={tune_id}")
        assert status == 200, body
        stopped = body["data"]
        assert stopped["state"] == "interrupted"
        kept = [t for t in stopped["trials"] if t["state"] == "completed"]
        assert len(kept) >= len(measured_before) >= 1
        # The trial that ran when the service died is shown as stopped, not running.
        assert "running" not in {t["state"] for t in stopped["trials"]}

        status, body = service.request("POST", f"/api/v1/tune/resume?tune_id={tune_id}")
        assert status == 202, body
        assert body["data"]["state"] == "running"
        done = _poll(service, tune_id, lambda d: d["state"] != "running")
        assert done["state"] == "completed", done["error"]
        assert done["progress"]["done"] == 6
        measured = [t for t in done["trials"] if t["state"] == "completed"]
        assert {(t["params"]["threads"], t["params"]["batch_size"]) for t in measured} == {
            (t, b) for t in (1, 2) for b in (16, 32, 64)}  # fmt: skip
        # The trials measured before the kill were kept as they were, not run again.
        by_number = {t["number"]: t for t in done["trials"]}
        for trial in kept:
            assert by_number[trial["number"]] == trial
        assert done["preset"]["id"] == "tiny-tuned"
        assert service.stop() == 0, service.text()
