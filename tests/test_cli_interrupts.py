"""Ctrl-C while a command follows a task: noted by the handler, raised at the loop's checks.

``signal.raise_signal`` delivers to this thread before it returns, so the handler runs at
the very next bytecode: the place where a real Ctrl-C lands is chosen by the test.
"""

from __future__ import annotations

import gc
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from llamaswitch._cli._interrupts import Watch, ctrl_c_ignored, sigterm_as_ctrl_c, watching


@pytest.fixture(autouse=True)
def _python_handles_ctrl_c() -> Iterator[None]:
    """These tests are about Python's own Ctrl-C handler, which a process started with
    SIGINT ignored does not get: a script's background job inherits SIG_IGN, and Python
    keeps it (seen when CI was started so)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


class _SignalsWhenCollected:
    """An object in a reference cycle whose finalizer is where the signal lands, as one of
    the HTTP client's generators can be when the collector runs in a poll."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.cycle = self
        self.finalized = False

    def __del__(self) -> None:
        signal.raise_signal(self.signum)
        self.finalized = True


def _collect_with_signal_in_finalizer(signum: int = signal.SIGINT) -> None:
    _SignalsWhenCollected(signum)
    gc.collect()


def test_without_the_watch_python_drops_a_ctrl_c_that_lands_in_a_finalizer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The premise: this is how a following command lost its Ctrl-C.
    dropped: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)
    _collect_with_signal_in_finalizer()  # returns: nothing is raised here
    assert [hook.exc_type for hook in dropped] == [KeyboardInterrupt]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_a_finalizer_is_raised_at_the_next_check(signum: int) -> None:
    with watching() as watch:
        _collect_with_signal_in_finalizer(signum)
        assert watch.pending
        with pytest.raises(KeyboardInterrupt):
            watch.sleep(10.0)


def test_the_first_ctrl_c_waits_for_a_check_and_the_second_raises_at_once() -> None:
    with watching() as watch:
        signal.raise_signal(signal.SIGINT)
        assert watch.pending
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            watch.check()


def test_a_quiet_sleep_returns_and_the_handlers_are_put_back() -> None:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with watching() as watch:
        assert signal.getsignal(signal.SIGINT) == watch.note
        watch.sleep(0.01)
        assert not watch.pending
    assert {signum: signal.getsignal(signum) for signum in before} == before
    assert Watch.current is None


def test_a_nested_watch_keeps_a_signal_the_outer_one_noted() -> None:
    with watching() as outer:
        signal.raise_signal(signal.SIGINT)  # before the inner loop starts
        with watching() as inner:
            assert inner is outer
            with pytest.raises(KeyboardInterrupt):
                inner.check()
        assert signal.getsignal(signal.SIGINT) == outer.note  # the inner one put nothing back


def test_off_the_main_thread_no_handler_is_set() -> None:
    seen: list[Any] = []

    def follow() -> None:
        with watching() as watch:
            seen.append(watch)
            seen.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=follow)
    thread.start()
    thread.join()
    assert isinstance(seen[0], Watch)
    assert seen[1] == before


def test_sigterm_raises_like_ctrl_c_and_ctrl_c_can_be_ignored() -> None:
    with sigterm_as_ctrl_c(), pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGTERM)
    with ctrl_c_ignored():
        signal.raise_signal(signal.SIGINT)  # would raise here if it were not ignored
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler
