"""The guardian (llamaswitch._guardian): children die with a manager, however it dies.

Real processes throughout: a manager is a Python process of its own, killed with SIGKILL;
its children are ``sleep``. What the guardian lists is read from its pidfds in /proc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from llamaswitch._errors import SettingsError
from llamaswitch._guardian import Guardian
from llamaswitch._guardian_process import kill
from llamaswitch._process import child_spawn, guardian_pid, prepare_spawn

from .helpers import guardian_listed as listed

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the guardian runs on POSIX")

#: A manager: it lists two children with its guardian, releases the second (as after
#: reaping it), prints every pid, and waits to be killed.
MANAGER = textwrap.dedent("""
    import json, subprocess, sys, time
    from llamaswitch._guardian import Guardian
    guardian = Guardian()
    kept, released = (subprocess.Popen(["sleep", "120"], start_new_session=True)
                      for _ in range(2))
    guardian.watch(kept.pid)
    guardian.watch(released.pid)
    guardian.release(released.pid)
    print(json.dumps({"guardian": guardian.pid, "kept": kept.pid,
                      "released": released.pid}), flush=True)
    time.sleep(120)
""")


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def sleeper() -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """``sleep 120`` in a session of its own, as children are spawned; all reaped after."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait(10)


def test_a_manager_killed_by_sigkill_takes_its_listed_children_and_only_those() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    manager = subprocess.Popen([sys.executable, "-c", MANAGER], stdout=subprocess.PIPE,
                               text=True, env=env)  # fmt: skip
    try:
        assert manager.stdout is not None
        pids = json.loads(manager.stdout.readline())
        assert running(pids["kept"])
        assert running(pids["guardian"])
        manager.send_signal(signal.SIGKILL)
        manager.wait(10)
        wait_for(lambda: not running(pids["kept"]))
        wait_for(lambda: not running(pids["guardian"]))  # its work done, it exits
        assert running(pids["released"])  # released: no longer the manager's to take
    finally:
        manager.kill()
        manager.wait(10)
        for pid in (pids["kept"], pids["released"]):
            if running(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfds are Linux's")
def test_the_guardian_lists_what_it_is_told_and_forgets_what_is_released(sleeper) -> None:  # type: ignore[no-untyped-def]
    guardian = Guardian()
    try:
        one, two = sleeper(), sleeper()
        guardian.watch(one.pid)
        guardian.watch(two.pid)
        assert guardian.pid is not None
        wait_for(lambda: listed(guardian.pid) == {one.pid, two.pid})  # type: ignore[arg-type]
        guardian.release(one.pid)
        wait_for(lambda: listed(guardian.pid) == {two.pid})  # type: ignore[arg-type]
        # A Ctrl-C does not end it (the manager, interrupted, stops its children itself).
        os.kill(guardian.pid, signal.SIGINT)
        time.sleep(0.2)
        assert running(guardian.pid)
    finally:
        pid = guardian.pid
        guardian.close()  # its end: what is still listed goes with it
    wait_for(lambda: two.poll() is not None)
    assert two.returncode == -signal.SIGKILL
    assert one.poll() is None
    assert pid is not None
    assert not psutil.pid_exists(pid)


def test_a_guardian_killed_by_hand_is_replaced_and_told_every_child_again(sleeper) -> None:  # type: ignore[no-untyped-def]
    guardian = Guardian()
    try:
        first = sleeper()
        guardian.watch(first.pid)
        old = guardian.pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: not running(old))
        second = sleeper()
        assert guardian.watch(second.pid)  # the write fails; a new guardian takes over
        assert guardian.pid not in (None, old)
        assert first.poll() is None
        assert second.poll() is None
    finally:
        guardian.close()
    wait_for(lambda: first.poll() is not None and second.poll() is not None)
    assert (first.returncode, second.returncode) == (-signal.SIGKILL, -signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfds are Linux's")
def test_a_listed_child_that_has_exited_is_never_signalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Its pid may belong to another process by the time the manager dies.
    child = subprocess.Popen(["true"], start_new_session=True)
    pidfd = os.pidfd_open(child.pid)
    try:
        wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE)
        sent: list[tuple[int, int]] = []
        monkeypatch.setattr(os, "killpg", lambda pid, sig: sent.append((pid, sig)))
        monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
        kill(child.pid, pidfd)
        assert sent == []
    finally:
        os.close(pidfd)
        child.wait(10)


def test_children_are_spawned_bare_when_the_guardian_guards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLAMASWITCH_CHILD_GUARD", "guardian")
    prepare_spawn()
    command, options = child_spawn(["llama-server", "-m", "x.gguf"])
    assert command == ["llama-server", "-m", "x.gguf"]  # no setpriv in front
    assert options == {"start_new_session": True}  # and no preexec_fn: vfork stays
    assert guardian_pid() is not None


def test_an_unknown_way_to_guard_children_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLAMASWITCH_CHILD_GUARD", "hope")
    with pytest.raises(SettingsError) as caught:
        child_spawn(["llama-server"])
    assert caught.value.key == "LLAMASWITCH_CHILD_GUARD"
    assert "guardian" in caught.value.allowed
    assert "hope" in str(caught.value)


@pytest.mark.parametrize("pidfds", [True, False], ids=["with-pidfds", "without-pidfds"])
def test_the_guardian_kills_what_is_listed_at_the_pipes_end(
    sleeper, monkeypatch: pytest.MonkeyPatch, pidfds: bool
) -> None:  # type: ignore[no-untyped-def]
    # The guardian's loop in this process: "without pidfds" is macOS's way (and Linux
    # before 5.3), by process group alone.
    from llamaswitch._guardian_process import serve

    if not pidfds:
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    elif not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfds here")
    kept, released, gone = sleeper(), sleeper(), subprocess.Popen(["true"])
    gone.wait(10)  # reaped: its pid is nobody's to signal
    read_end, write_end = os.pipe()
    os.write(write_end, b"+%d\n+%d\n+%d\n-%d\n" % (kept.pid, released.pid, gone.pid, released.pid))
    os.close(write_end)  # the manager is gone
    try:
        serve(read_end)
    finally:
        os.close(read_end)
    assert kept.wait(5) == -signal.SIGKILL
    assert released.poll() is None
