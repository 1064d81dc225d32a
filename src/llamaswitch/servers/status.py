"""What a model server is doing: the closed set of states, and the status snapshot.

States change only along :data:`TRANSITIONS` (the supervisor's guarded setter checks)::

    starting -> ready | failed | stopping        ready -> stopping | crashed | unresponsive
    unresponsive -> ready | stopping | crashed   stopping -> stopped
    crashed | failed -> starting | stopped

``lost`` is never entered by a supervisor: a cluster head (:mod:`llamaswitch.cluster`)
marks so the servers of a host that left the cluster, whose fate it cannot know.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime

import attrs

from llamaswitch.servers.config import ServerConfig

__all__ = ["ALIVE", "SERVING", "TRANSITIONS", "ServerState", "ServerStatus"]


class ServerState(enum.StrEnum):
    """Where a model server is in its life."""

    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    #: Exited (or was killed by the readiness timeout) before it became ready.
    FAILED = "failed"
    #: Exited on its own after it was ready.
    CRASHED = "crashed"
    #: Ready before, but its ``/health`` stopped answering (a hang, a stopped process):
    #: ``LLAMASWITCH_LIVENESS_FAILURES`` checks in a row failed.
    UNRESPONSIVE = "unresponsive"
    #: Its host left the cluster (node death): a cluster head's last word on it.
    LOST = "lost"


TRANSITIONS: Mapping[ServerState | None, frozenset[ServerState]] = {
    None: frozenset({ServerState.STARTING}),
    ServerState.STARTING: frozenset({ServerState.READY, ServerState.FAILED, ServerState.STOPPING}),
    ServerState.READY: frozenset(
        {ServerState.STOPPING, ServerState.CRASHED, ServerState.UNRESPONSIVE}
    ),
    ServerState.UNRESPONSIVE: frozenset(
        {ServerState.READY, ServerState.STOPPING, ServerState.CRASHED}
    ),
    ServerState.STOPPING: frozenset({ServerState.STOPPED}),
    ServerState.CRASHED: frozenset({ServerState.STARTING, ServerState.STOPPED}),
    ServerState.FAILED: frozenset({ServerState.STARTING, ServerState.STOPPED}),
    ServerState.STOPPED: frozenset(),
    ServerState.LOST: frozenset(),
}
ALIVE = frozenset({ServerState.STARTING, ServerState.READY, ServerState.UNRESPONSIVE})
#: States of a server that had become ready and whose process still runs.
SERVING = frozenset({ServerState.READY, ServerState.UNRESPONSIVE})


@attrs.frozen(kw_only=True)
class ServerStatus:
    """A snapshot of one model server.

    The first seven fields are the seed API's (``running`` through ``vram_usage``), in
    the seed's order on the wire (:func:`llamaswitch.to_wire`). ``vram_usage`` is in MiB
    and None without an NVIDIA GPU (or driver); ``rss_mib``, ``cpu_percent`` and the VRAM
    figures are sampled at most every ``sample_ttl_s`` (0.5 s by default).
    """

    running: bool
    #: The model's file name (``ModelInfo.name``), as the model list shows it.
    model_name: str
    model_path: str
    port: int
    #: When the current process was started (UTC; ISO 8601 on the wire).
    start_time: datetime | None
    process_id: int | None
    vram_usage: int | None
    state: ServerState
    host: str
    url: str
    #: Seconds from spawn to the first ``/health`` 200.
    ready_after_s: float | None
    rss_mib: float | None
    cpu_percent: float | None
    exit_code: int | None
    #: When the process exited (failed, crashed, stopped), UTC.
    exited_at: datetime | None
    error: str | None
    #: The config it runs with (the settings' defaults filled in).
    config: ServerConfig
    argv: tuple[str, ...]
    binary_version: str
    vram_per_gpu_mib: Mapping[int, int] | None
    #: How many times the restart policy brought this server back.
    restarts: int
    #: The last log lines when the server failed or crashed (empty otherwise).
    log_tail: tuple[str, ...] = ()
    #: The cluster host it runs on (its name in ``/api/v1/hosts``; routes take it as
    #: ``host``); None on a single machine. ``host`` above is the address it listens on.
    host_name: str | None = None
    #: The share of its load done (0.0-1.0) while it is ``starting``, as a build with
    #: the child protocol says (the current one; every 200 ms of a long load); None
    #: otherwise, and for a build that does not say.
    load_progress: float | None = None
