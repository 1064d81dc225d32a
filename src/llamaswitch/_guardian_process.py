"""The guardian process (see :mod:`llamaswitch._guardian`, which starts it).

Run by path with ``python -I -S``: it imports only ``os``, ``select`` and ``signal``, so
that it starts in about 10 ms of one core, while its manager opens. Its stdin is the
manager's pipe: ``+PID`` lists a child, ``-PID`` unlists one. At the pipe's end (the
manager is gone, or closed it) it sends SIGKILL to the process group of every child
still listed, and exits.
"""

from __future__ import annotations

import os
import select
import signal


def exited(pidfd: int | None) -> bool:
    """Whether the child a pidfd holds has exited (a pidfd is readable from then on)."""
    if pidfd is None:
        return False
    readable, _, _ = select.select([pidfd], [], [], 0)
    return bool(readable)


def kill(pid: int, pidfd: int | None) -> None:
    """SIGKILL to the process group ``pid`` leads (to ``pid`` alone if it leads none),
    unless the pidfd says it has exited: its pid may be another process's by now."""
    if exited(pidfd):
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:  # not a group leader after all: the child alone
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass  # gone meanwhile


def open_pidfd(pid: int) -> int | None:
    """A pidfd of ``pid``; None where there are none (macOS, Linux before 5.3). Raises
    ProcessLookupError for a process that is gone."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except ProcessLookupError:
        raise
    except OSError:  # no pidfds on this kernel (ENOSYS), or not allowed
        return None
    return fd


def serve(stdin: int) -> None:
    """List and unlist children until the manager's pipe ends; then kill those listed."""
    children: dict[int, int | None] = {}
    pending = b""
    while chunk := os.read(stdin, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if not line[1:].isdigit():
                continue
            pid = int(line[1:])
            if line.startswith(b"+") and pid not in children:
                try:
                    children[pid] = open_pidfd(pid)
                except ProcessLookupError:
                    continue  # gone already: nothing to guard
            elif line.startswith(b"-") and pid in children:
                fd = children.pop(pid)
                if fd is not None:
                    os.close(fd)
    for pid, fd in children.items():
        kill(pid, fd)


if __name__ == "__main__":
    # In a session of its own, so no terminal's Ctrl-C reaches it; ignored all the same:
    # the manager stops its children itself on an interrupt, then closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(0)
