"""The guardian: one small process that kills a manager's children when the manager dies.

A model server must not outlive the llamaswitch process that started it, even one killed
with SIGKILL. Linux offers the parent-death signal for this, but setting it costs every
start: util-linux's ``setpriv --pdeathsig`` is one more program to execute (0.9 ms of a
tiny model's 18 ms cold start, on the path of the request that waits for it), and a
``preexec_fn`` turns subprocess's ``vfork`` into a full ``fork`` (4-8 ms). macOS has no
such signal at all.

The guardian costs one write per start instead. It is a Python process (standard library
only), started once per manager, in a session of its own, so that a signal to the
manager's process group does not reach it. Its stdin is a pipe that only the manager
holds: the manager writes ``+PID`` when it spawns a child and ``-PID`` once it has reaped
it. However the manager dies, the kernel closes that pipe; at its end the guardian sends
SIGKILL to the process group of every child still listed, and exits. A manager that ends
normally has reaped and released every child by then, so its guardian exits doing
nothing. On Linux the guardian holds each child by a pidfd, and skips one that has
already exited: a pid reused since is never signalled.

A manager killed in the microseconds between a child's ``Popen`` and that write leaves
the child unlisted. A llama-server started as a router's child still exits once loaded,
when its stdin (the dead manager's pipe) closes; the child registry (``children.json``)
stops the others on the next start, once their record is written. POSIX only; on
Windows children are left to the registry and to their stdin.

The guardian itself is ``_guardian_process.py``, run by path (``python -I -S``): it starts
with no site packages, none of llamaswitch's imports, and only ``os``, ``select`` and
``signal`` of the standard library, in about 10 ms of one core, while a manager opens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from pathlib import Path

__all__ = ["Guardian"]

logger = logging.getLogger(__name__)

#: The guardian's own program.
_PROCESS = Path(__file__).with_name("_guardian_process.py")


class Guardian:
    """The manager's side: starts the guardian process and tells it of each child.

    Thread-safe. ``watch`` and ``release`` never block for long: each is one write of a
    few bytes to a pipe that the guardian keeps reading.
    """

    def __init__(self, python: str | None = None) -> None:
        self._python = sys.executable if python is None else python
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._fd: int | None = None
        self._watched: set[int] = set()

    @property
    def pid(self) -> int | None:
        """The guardian process's pid while it runs (None before the first start)."""
        return self._pid

    @property
    def available(self) -> bool:
        """Whether a guardian can run here: POSIX, with a Python interpreter to run it."""
        return (
            os.name == "posix"
            and bool(self._python)
            and os.path.isfile(self._python)
            and _PROCESS.is_file()
        )

    def start(self) -> bool:
        """Start the guardian unless it runs; whether one runs now.

        One ``posix_spawn``, not waited for: the pipe holds what is written until the
        guardian reads it.
        """
        with self._lock:
            return self._start_locked()

    def watch(self, pid: int) -> bool:
        """List child ``pid`` (its own session leader): killed if this process dies.

        Returns False when no guardian can run; the caller then protects the child some
        other way.
        """
        with self._lock:
            self._watched.add(pid)
            return self._send(b"+%d\n" % pid)

    def release(self, pid: int) -> None:
        """Unlist ``pid``: call it once the child has been reaped."""
        with self._lock:
            if pid in self._watched:
                self._watched.discard(pid)
                self._send(b"-%d\n" % pid)

    def close(self) -> None:
        """End the guardian (it kills what is still listed) and reap it."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._pid is not None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self._pid, 0)
                self._pid = None
            self._watched.clear()

    def _start_locked(self) -> bool:
        if self._fd is not None:
            return True
        if not self.available:
            return False
        read_end, write_end = os.pipe()
        argv = [self._python, "-I", "-S", str(_PROCESS)]
        actions = [
            (os.POSIX_SPAWN_DUP2, read_end, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        ]
        try:
            try:
                self._pid = os.posix_spawn(
                    self._python, argv, os.environ, file_actions=actions, setsid=True
                )
            except NotImplementedError:  # no POSIX_SPAWN_SETSID: a process group of its own
                self._pid = os.posix_spawn(
                    self._python, argv, os.environ, file_actions=actions, setpgroup=0
                )
        except OSError as exc:
            os.close(write_end)
            logger.warning("cannot start the guardian of child processes: %s", exc)
            return False
        finally:
            os.close(read_end)
        self._fd = write_end
        return True

    def _send(self, message: bytes) -> bool:
        for attempt in (1, 2):
            if not self._start_locked():
                return False
            assert self._fd is not None  # noqa: S101 - started
            # A fresh guardian must list every child that still runs.
            data = message if attempt == 1 else b"".join(b"+%d\n" % p for p in self._watched)
            try:
                os.write(self._fd, data)
            except OSError as exc:  # it died (killed by hand): start another
                logger.warning("the guardian of child processes is gone (%s): restarting", exc)
                os.close(self._fd)
                self._fd = None
                if self._pid is not None:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(self._pid, os.WNOHANG)
                    self._pid = None
            else:
                return True
        return False
