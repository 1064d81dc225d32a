"""Helpers every test module shares: ports, mostly."""

from __future__ import annotations

import random
import socket

from llamaswitch.servers.probes import port_free as _port_free

__all__ = ["free_port", "free_range"]

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
