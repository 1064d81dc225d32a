"""``llamaswitch tune`` and its sibling commands, in-process and against a service.

In-process commands run through ``llamaswitch._cli.main`` (output captured); the tune
that Ctrl-C cancels runs as a subprocess. ``--url`` commands talk to the real REST app
served from a background thread. Every trial is a real llama-bench run on a tiny model.
"""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path

import pytest
from rich.console import Console

from llamaswitch._cli._tune import space_from_args
from llamaswitch._settings import Settings
from tests import test_cli
from tests.conftest import LlamaBuild, require_build
from tests.test_cli import FAILED, MISSING, OK, USAGE, Run, cli_process, run_json

pytestmark = pytest.mark.real_binary

# The command-line fixtures of tests/test_cli.py, shared.
cli_env = test_cli.cli_env
run = test_cli.run
service = test_cli.service
service_settings = test_cli.service_settings
with_build = test_cli.with_build

#: A quick tune: 2 x 2 points, tiny tests, no added repetitions.
QUICK = ("--space", "threads=1,2", "--space", "batch_size=16,32", "-p", "32", "-n", "8",
         "-r", "2", "--max-repetitions", "2")  # fmt: skip
#: A tune long enough to catch running: 400 runs of each test.
SLOW = ("--space", "threads=1,2", "-p", "64", "-n", "64", "-r", "400", "--max-repetitions",
        "400", "--budget", "2")  # fmt: skip


@pytest.fixture
def current(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> LlamaBuild:
    """``cli_env`` with the current build's binaries (what does not depend on the
    generation runs on one)."""
    build = require_build("current")
    for key, path in (("LLAMA_SERVER_PATH", build.server.path),
                      ("LLAMA_BENCH_PATH", build.bench.path)):  # fmt: skip
        monkeypatch.setenv(key, str(path))
        cli_env[key] = str(path)
    return build


# -- the space on the command line --------------------------------------------------------


def test_space_options_read_values_as_bench_reads_the_same_fields() -> None:
    space = space_from_args(["threads=1,2,4", "ngl=0,99", "fa=0,1", "-ctk=f16,q8_0",
                             "batch-size=128", '{"ubatch_size": [64, 128]}'])  # fmt: skip
    assert space == {"threads": [1, 2, 4], "n_gpu_layers": [0, 99], "flash_attn": [0, 1],
                     "cache_type_k": ["f16", "q8_0"], "batch_size": 128,
                     "ubatch_size": [64, 128]}  # fmt: skip
    assert space_from_args([]) is None
    # An unknown field is passed on as given: the library names it, with the fields.
    assert space_from_args(["threadz=1,2"]) == {"threadz": ["1", "2"]}


def test_a_space_option_without_values_is_a_usage_error(cli_env: dict[str, str], run: Run) -> None:
    code, _, err = run("tune", "tiny.gguf", "--space", "threads")
    assert code == USAGE
    assert "FIELD=V1,V2" in err


def test_bad_tune_options_exit_2_naming_each_field(cli_env: dict[str, str], run: Run) -> None:
    code, _, err = run("tune", "tiny.gguf", "--space", "threadz=1,2", "--budget", "0",
                       "--objective", "speed")  # fmt: skip
    assert code == USAGE
    for field in ("budget", "objective.metric", "space.threadz"):
        assert f"{field}: " in err, err
    assert run_json(run, "tune-history") == []


def test_detach_in_process_is_a_usage_error(cli_env: dict[str, str], run: Run) -> None:
    code, _, err = run("tune", "tiny.gguf", "--detach")
    assert code == USAGE
    assert "--url" in err


def test_tune_status_of_an_unknown_tune_exits_3(cli_env: dict[str, str], run: Run) -> None:
    code, _, err = run("tune-status", "nope")
    assert code == MISSING
    assert "no tune 'nope'" in err


# -- tune in-process --------------------------------------------------------------------------


def test_tune_in_process_measures_every_point_and_prints_the_best_the_front_and_the_preset(
    with_build: LlamaBuild, cli_env: dict[str, str], run: Run
) -> None:
    code, out, err = run("tune", "tiny.gguf", *QUICK, "--budget", "4")
    assert code == OK, err
    assert "completed, 4/4 trials (0 failed, 0 pruned), objective tg8" in out
    assert "best: trial " in out
    assert "Pareto front" in out
    assert "preset tiny-tuned (trial " in out
    # Without a terminal: one line per finished trial, with its figures.
    lines = [line for line in err.splitlines() if line.startswith("trial ")]
    assert len(lines) == 4, err
    assert all(" completed: threads=" in line and " t/s, score " in line for line in lines)

    [listed] = run_json(run, "tune-history")
    tune = run_json(run, "tune-status", listed["id"])
    assert tune["state"] == "completed"
    assert f"trial {tune['best']['number']}: threads={tune['best']['params']['threads']}" in out
    assert tune["preset"]["id"] == "tiny-tuned"
    text = Path(tune["preset"]["path"]).read_text()
    assert "[models.tiny-tuned]" in text
    assert f"threads = {tune['best']['params']['threads']}" in text


def test_tune_json_prints_the_stopped_tune(current: LlamaBuild, run: Run) -> None:
    tune = run_json(run, "tune", "tiny.gguf", *QUICK, "--budget", "2", "--no-save", "--seed", "5")
    assert tune["state"] == "completed"
    assert tune["seed"] == 5
    assert tune["options"]["save_preset"] is False
    assert tune["preset"] is None
    assert len(tune["trials"]) == 2


def test_tune_shows_a_live_view_on_a_terminal(
    current: LlamaBuild, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llamaswitch._cli import _tune

    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120)
    monkeypatch.setattr(_tune, "err_console", lambda: terminal)
    code, _, _ = run("tune", "tiny.gguf", *QUICK, "--budget", "4", "--no-save")
    assert code == OK
    shown = screen.getvalue()
    assert "4/4" in shown
    assert "best trials of 4 measured" in shown


def test_tune_status_resume_and_save_go_on_with_a_stored_tune(
    current: LlamaBuild, run: Run
) -> None:
    first = run_json(run, "tune", "tiny.gguf", *QUICK, "--budget", "2", "--no-save")
    code, out, _ = run("tune-status", first["id"])
    assert code == OK
    assert "completed, 2/2 trials" in out
    assert "no preset written" in out

    resumed = run_json(run, "tune-resume", first["id"], "--budget", "3")
    assert resumed["state"] == "completed"
    assert resumed["progress"]["done"] == 3
    assert resumed["trials"][:2] == first["trials"]  # kept, not measured again

    other = next(t for t in resumed["trials"] if t["number"] != resumed["best"]["number"])
    code, out, err = run("tune-save", first["id"], "--trial", str(other["number"]),
                         "--preset", "tiny-other")  # fmt: skip
    assert code == OK, err
    assert f"preset tiny-other (trial {other['number']}) written to" in out
    code, out, _ = run("tune-cancel", first["id"])
    assert (code, out.strip()) == (OK, f"tune {first['id']}: already completed")


def test_tune_space_prints_the_derived_space(current: LlamaBuild, run: Run) -> None:
    space = run_json(run, "tune-space", "tiny.gguf", "-p", "256")
    assert max(space["batch_size"]) == 256
    assert space["threads"][0] == 1
    code, out, _ = run("tune-space", "tiny.gguf")
    assert code == OK
    assert "batch_size" in out
    assert "points" in out


def test_tune_in_process_ctrl_c_cancels_the_tune(
    current: LlamaBuild, cli_env: dict[str, str], run: Run
) -> None:
    with cli_process(cli_env, "tune", "tiny.gguf", *SLOW) as cli:
        cli.err.wait_for("tune ")
        deadline = time.monotonic() + 60
        # The tune lives in the other process: its running trial shows as a running task.
        while not any(t["state"] == "running" for t in run_json(run, "bench-history")):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        cli.signal(signal.SIGINT)
        code, err = cli.wait()
    assert code == 130, err
    assert "cancelled; its measured trials are kept" in err
    [tune] = run_json(run, "tune-history")
    assert tune["state"] == "cancelled"
    [task] = run_json(run, "bench-history")
    assert (task["state"], task["tune_id"]) == ("cancelled", tune["id"])


# -- against a service (--url) --------------------------------------------------------------


def test_url_tune_follows_the_tune_and_detach_prints_its_id(
    service: str, service_settings: Settings, run: Run
) -> None:
    code, out, err = run("tune", "tiny.gguf", *QUICK, "--budget", "2", "--url", service)
    assert code == OK, err
    assert "completed, 2/2 trials" in out
    assert "preset tiny-tuned (trial " in out
    assert (service_settings.presets_path).exists()

    code, out, _ = run("tune", "other.gguf", *QUICK, "--budget", "2", "--no-save", "--detach",
                       "--url", service)  # fmt: skip
    assert code == OK
    tune_id = out.strip()
    code, out, _ = run("tune-status", tune_id, "--wait", "--url", service)
    assert code == OK
    assert f"tune {tune_id} other.gguf: completed" in out
    history = run_json(run, "tune-history", "--url", service)
    assert history[0]["id"] == tune_id
    assert run_json(run, "tune-space", "tiny.gguf", "--url", service)["threads"][0] == 1
    assert run("tune-status", "nope", "--url", service)[0] == MISSING
    assert run("tune", "tiny.gguf", "--budget", "0", "--url", service)[0] == USAGE


def test_url_tune_cancel_stops_a_running_tune_and_status_wait_exits_1(
    service: str, run: Run
) -> None:
    code, out, _ = run("tune", "tiny.gguf", *SLOW, "--detach", "--url", service)
    assert code == OK
    tune_id = out.strip()
    deadline = time.monotonic() + 60
    while not run_json(run, "tune-status", tune_id, "--url", service)["progress"][
        "current_task_id"
    ]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    code, out, _ = run("tune-cancel", tune_id, "--url", service)
    assert code == OK
    assert out.strip() == f"tune {tune_id}: cancelled (0 trials measured, kept)"
    # tune-status --wait on a tune that did not complete exits 1.
    assert run("tune-status", tune_id, "--wait", "--url", service)[0] == FAILED


def test_url_ctrl_c_only_stops_watching(service: str, cli_env: dict[str, str], run: Run) -> None:
    with cli_process(cli_env, "tune", "tiny.gguf", *SLOW, "--url", service) as cli:
        cli.err.wait_for("tune ")
        cli.signal(signal.SIGINT)
        code, err = cli.wait()
    assert code == 130, err
    assert "keeps running in the service" in err
    [tune] = run_json(run, "tune-history", "--url", service)
    assert tune["state"] == "running"
    cancelled = run_json(run, "tune-cancel", tune["id"], "--url", service)
    assert cancelled["state"] == "cancelled"
