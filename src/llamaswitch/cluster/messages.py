"""What a host's agent and the cluster head tell each other over Ray (control only).

Every value here is an attrs class of library types, pickled by Ray. Model traffic never
travels this way: the head forwards it over HTTP straight to the host's llama-server.

Errors cross as :class:`TransportedError`: an exception's pickled form is its
constructor's arguments, which most kinds of :mod:`llamaswitch._errors` do not take, so
the agent sends the kind's code, message and details, and the head rebuilds the same
class the way the remote client does (:meth:`~llamaswitch.LlamaSwitchError.from_details`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from llamaswitch._binaries import BinaryInfo
from llamaswitch._catalog import ModelInfo
from llamaswitch._errors import ERROR_KINDS, LlamaSwitchError
from llamaswitch._events import Event
from llamaswitch._gpu import GpuDevice
from llamaswitch.gateway.policy import Budget
from llamaswitch.servers.status import ServerStatus

__all__ = ["Changes", "HostReport", "ServerEntry", "Snapshot", "TransportedError"]


@attrs.frozen
class ServerEntry:
    """One model server of a host, and the key it requires (told to the head only)."""

    status: ServerStatus
    api_key: str | None
    #: Started for the head's gateway (not by an admin): a head that takes the host over
    #: after a restart owns it as its predecessor did (unloads it when room is needed).
    for_gateway: bool = False


@attrs.frozen
class Snapshot:
    """A host's servers at one moment. ``version`` counts the host's server events: of
    two snapshots, the one with the larger version is the later."""

    version: int
    servers: tuple[ServerEntry, ...]


@attrs.frozen
class Changes:
    """What happened on a host since the head's last look: its events after ``cursor``
    (in order) and its servers now."""

    cursor: int
    events: tuple[Event, ...]
    snapshot: Snapshot


@attrs.frozen(kw_only=True)
class HostReport:
    """A host as its agent describes it when the head attaches."""

    name: str
    node_id: str
    #: The address its model servers listen on (the node's address in the cluster).
    address: str
    models: tuple[ModelInfo, ...]
    #: What the gateway's models may use there (that host's own settings and memory).
    budget: Budget
    devices: tuple[GpuDevice, ...]
    ram_total_mib: float
    #: CPU, memory, GPUs and OS (:func:`llamaswitch.bench.host.describe_host`).
    hardware: Mapping[str, Any]
    #: The llama.cpp binaries found there, by kind; why a kind is missing, by kind.
    binaries: Mapping[str, BinaryInfo]
    binary_errors: Mapping[str, str]
    snapshot: Snapshot
    #: The id of the host's latest event: the head's watch starts after it.
    cursor: int
    #: The llamaswitch version the agent runs.
    version: str
    #: The port ``switch`` uses there when the config names none.
    default_model_port: int


class TransportedError(Exception):
    """A :class:`~llamaswitch.LlamaSwitchError` raised on a host, in a form Ray can
    carry: its code, message and details."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any]) -> None:
        super().__init__(code, message, dict(details))
        self.code = code
        self.message = message
        self.details = dict(details)

    @classmethod
    def of(cls, exc: LlamaSwitchError) -> TransportedError:
        """The transportable form of ``exc``."""
        return cls(exc.code, str(exc), exc.details())

    def rebuild(self) -> LlamaSwitchError:
        """The error as it was raised on the host (its family for a code unknown here)."""
        kind = ERROR_KINDS.get(self.code, LlamaSwitchError)
        return kind.from_details(self.message, self.details)
