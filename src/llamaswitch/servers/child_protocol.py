"""What a llama-server run by a router tells it: llama.cpp's router-child protocol.

llama.cpp's own router mode (``llama-server --models-dir``) starts one llama-server per
model with ``LLAMA_SERVER_ROUTER_PORT`` in its environment. A binary that has router
mode, started so, changes two things (tools/server, ``server_child``):

- it writes **state lines** on its stdout, each flushed as it is written, while its log
  goes through stderr and a log thread of its own, milliseconds behind:
  ``cmd_child_to_router:state:{"state": "ready", ...}`` (earlier builds:
  ``cmd_child_to_router:ready``) comes once the model is loaded and the HTTP server
  answers, which is when ``GET /health`` turns 200;
- once ready, it reads its stdin: the line ``cmd_router_to_child:exit`` stops it as
  SIGTERM does, and **end of file makes it exit** at once, which the kernel causes when
  the process that holds the pipe's other end dies, however it dies, on every OS. Its
  shutdown waits for that reader: a SIGTERM alone leaves it waiting until a second one.

The supervisor starts such a binary so (:func:`child_env`): the ready line ends a start
without a ``/health`` round trip, and no readiness polls compete for the CPU with the
model's load (bench/bench_gateway.py's cold figure). ``/health`` stays the fallback, on a
slower timer, for a build that says nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Final, Literal

from llamaswitch._capabilities import Capabilities

__all__ = [
    "EXIT_COMMAND",
    "ROUTER_PORT_ENV",
    "ReadyLine",
    "child_env",
    "ready_line_for",
    "speaks",
]

#: The variable that makes a llama-server a router's child.
ROUTER_PORT_ENV: Final = "LLAMA_SERVER_ROUTER_PORT"
#: What a router writes to a child's stdin to stop it.
EXIT_COMMAND: Final = b"cmd_router_to_child:exit\n"
_PREFIX: Final = b"cmd_child_to_router:"
_STATE: Final = b"cmd_child_to_router:state:"
_READY_OLD: Final = b"cmd_child_to_router:ready"
#: A partial line longer than this is not a state line's start (bounds the buffer).
_MAX_PARTIAL: Final = 64 * 1024


def speaks(capabilities: Capabilities) -> bool:
    """Whether a binary has router mode, and so the child protocol: ``--models-dir``
    came with it (the legacy build has neither)."""
    return capabilities.has("--models-dir")


def child_env(capabilities: Capabilities, service_port: int) -> dict[str, str]:
    """The variables that start a binary as a router's child (none for a binary
    without router mode). The port is only a marker to llama-server: ours."""
    return {ROUTER_PORT_ENV: str(service_port)} if speaks(capabilities) else {}


class ReadyLine:
    """Finds the ready state line in a child's output, chunk by chunk (a line may be
    split across two chunks, and a log line without its newline yet may come first).

    It also follows the loading lines (``{"state": "loading", "payload": {"stages":
    [...], "current": <a stage>, "value": 0.0-1.0}}``, the first and last of each stage
    and one every 200 ms between): the first says the child's HTTP server listens (it
    starts before the load), and each says how far the load has come."""

    def __init__(self) -> None:
        self._partial = b""
        #: Whether the ready line has been seen.
        self.seen = False
        #: The share of the load done, over all its stages (0.0-1.0), as the last
        #: loading line said; None before the first.
        self.progress: float | None = None

    @property
    def listening(self) -> bool:
        """Whether the child's HTTP server listens: a loading line came (or ready)."""
        return self.progress is not None or self.seen

    @property
    def loaded(self) -> bool:
        """Whether the weights are loaded: the last stage's loading line at 1.0."""
        return self.progress is not None and self.progress >= 1.0

    def feed(self, chunk: bytes) -> bool:
        """Scan one chunk; True when it completed the ready line."""
        if self.seen:
            return False
        data = self._partial + chunk
        partial = data[data.rfind(b"\n") + 1 :]
        self._partial = partial if len(partial) <= _MAX_PARTIAL else b""
        if _PREFIX not in data:  # most chunks: log lines only, nothing to parse
            return False
        *lines, _ = data.split(b"\n")
        for line in lines:
            state = _state_of(line.strip())
            if state == "ready":
                self.seen = True
                self._partial = b""
                return True
            if state is not None:
                self.progress = state
        return False


def ready_line_for(capabilities: Capabilities, env: Mapping[str, str]) -> ReadyLine | None:
    """The ready line to watch for in a child started with ``env``: None unless the
    binary speaks the protocol and ``env`` makes it a router's child."""
    return ReadyLine() if ROUTER_PORT_ENV in env and speaks(capabilities) else None


def _state_of(line: bytes) -> Literal["ready"] | float | None:
    """What a line of output says: ready, the load's share done (a loading line), or
    nothing of that."""
    at = line.find(_PREFIX)
    if at < 0:
        return None
    line = line[at:]
    if line == _READY_OLD:
        return "ready"
    if not line.startswith(_STATE) or not (b'"ready"' in line or b'"loading"' in line):
        return None
    try:
        state = json.loads(line[len(_STATE) :])
    except ValueError:
        return None
    if not isinstance(state, dict):
        return None
    if state.get("state") == "ready":
        return "ready"
    payload = state.get("payload")
    if state.get("state") != "loading" or not isinstance(payload, dict):
        return None
    stages, current, value = payload.get("stages"), payload.get("current"), payload.get("value")
    if (not isinstance(stages, list) or current not in stages
            or not isinstance(value, int | float) or isinstance(value, bool)
            or not math.isfinite(value)):  # fmt: skip
        return None
    # Stages load one after another (text model, draft, projector): each is a like share.
    share = (stages.index(current) + min(max(float(value), 0.0), 1.0)) / len(stages)
    return round(share, 4)
