"""Ctrl-C and SIGTERM in the CLI: where they are acted on.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be when it handles
the signal. In a command that polls a task, that is most often inside the HTTP client or
the loop thread's future, and two of those places lose the Ctrl-C:

- a finalizer that the garbage collector runs (a generator's ``finally``, a ``__del__``):
  Python prints the exception as "ignored" and goes on, so the command keeps following;
- a lock's ``__enter__`` written in Python (httpcore's), just after the lock was taken:
  the ``with`` never starts, the lock stays taken, and closing the client waits forever.

So while a command follows something, :func:`watching` only notes the signal, and the
loop raises it at its own checks, between requests (:meth:`Watch.sleep`). A second Ctrl-C
raises at once, for a service that does not answer.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import ClassVar, Final

__all__ = ["Watch", "ctrl_c_ignored", "sigterm_as_ctrl_c", "watching"]

# How often a sleeping loop looks at the flag: what a user waits after Ctrl-C at most.
_SLICE_S: Final = 0.05


class Watch:
    """The signals a following loop has been sent and not yet acted on."""

    # The watch in place, if any (only the main thread sets one).
    current: ClassVar[Watch | None] = None

    def __init__(self) -> None:
        self.pending = False

    def note(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: note the first signal, raise on the second."""
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` here if a signal came."""
        if self.pending:
            raise KeyboardInterrupt

    def sleep(self, seconds: float) -> None:
        """Sleep, raising ``KeyboardInterrupt`` within a moment of a signal."""
        deadline = time.monotonic() + seconds
        while True:
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, _SLICE_S))


def _main_thread() -> bool:
    # Handlers can only be set from the main thread (a command run from a test thread).
    return threading.current_thread() is threading.main_thread()


@contextmanager
def watching() -> Iterator[Watch]:
    """Defer Ctrl-C and SIGTERM to the loop's :meth:`Watch.check` points.

    Nested, it gives the watch already in place, so that a signal noted before the inner
    loop began is not dropped. One that comes as the outermost ends on its own (the task
    finished) is: the command reports what finished.
    """
    if Watch.current is not None or not _main_thread():
        yield Watch.current or Watch()
        return
    Watch.current = watch = Watch()
    previous = {signum: signal.signal(signum, watch.note)
                for signum in (signal.SIGINT, signal.SIGTERM)}  # fmt: skip
    try:
        yield watch
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        Watch.current = None


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so that ``kill`` also stops what the command started
    (servers, benchmarks) through the same clean-up path, instead of leaving a benchmark
    recorded as running."""
    if not _main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def ctrl_c_ignored() -> Iterator[None]:
    """Ignore Ctrl-C, so that a clean-up the user is watching is not cut short."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
