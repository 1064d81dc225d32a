"""Helpers every test module shares: ports, mostly, and the captured ``--help`` texts."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

import psutil

from llamaswitch._capabilities import BinaryKind, Capabilities
from llamaswitch._process import guardian_pid
from llamaswitch.servers.probes import port_free as _port_free

__all__ = [
    "HELP",
    "captured_caps",
    "free_port",
    "free_range",
    "guardian_listed",
    "own_children",
    "thread_policies",
]

#: The ``--help`` texts captured from the real builds (``{generation}-{server,bench}.txt``);
#: tests/test_capabilities.py checks that the binaries still say the same.
HELP = Path(__file__).parent / "data" / "help"


def captured_caps(generation: str, kind: str = "server") -> Capabilities:
    """The capabilities of ``generation``'s (``current``, ``legacy``) llama-server or
    llama-bench (``kind``: ``server``, ``bench``), read from the captured ``--help``; the
    version reads ``"<generation> build"``."""
    text = (HELP / f"{generation}-{kind}.txt").read_text(encoding="utf-8")
    binary: BinaryKind = "llama-bench" if kind == "bench" else "llama-server"
    return Capabilities.from_help(binary, text, f"{generation} build")


#: Linux hands out client (ephemeral) ports from 32768 up: model port ranges stay below,
#: where no client socket of this machine can sit on a port a server is about to bind.
_RANGE_FLOOR, _RANGE_CEILING = 20000, 32000


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS's choice, outside 8090-8190)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not 8090 <= port <= 8190:
            return port


def free_range(size: int = 20) -> tuple[int, int]:
    """``(low, high)``: ``size`` ports, all free now, below the ephemeral range.

    The port just below ``low`` is free too, for the API's own port when a test wants
    it next to its model ports.
    """
    for _ in range(500):
        low = random.randrange(_RANGE_FLOOR, _RANGE_CEILING - size)
        if all(_port_free("127.0.0.1", p) for p in range(low - 1, low + size)):
            return low, low + size - 1
    raise RuntimeError(f"no {size} free ports in a row between {_RANGE_FLOOR} and {_RANGE_CEILING}")


def own_children() -> list[psutil.Process]:
    """This process's descendants, less its guardian of child processes (one for the
    whole run, started by the first manager: see llamaswitch._guardian)."""
    guardian = guardian_pid()
    return [p for p in psutil.Process().children(recursive=True) if p.pid != guardian]


def guardian_listed(guardian: int) -> set[int]:
    """The pids a guardian process holds a pidfd of (Linux), read from /proc."""
    pids = set()
    for fdinfo in Path(f"/proc/{guardian}/fdinfo").iterdir():
        try:
            text = fdinfo.read_text()
        except FileNotFoundError:  # closed while listed (its start-up opens files)
            continue
        for line in text.splitlines():
            if line.startswith("Pid:"):
                pids.add(int(line.split()[1]))
    return pids


def thread_policies(pid: int) -> set[int]:
    """The scheduling policies (``os.SCHED_*``) of a process's threads (Linux)."""
    return {os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}
