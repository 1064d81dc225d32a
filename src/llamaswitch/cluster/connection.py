"""Ray itself: imported only when a cluster is used, and the head's connection to it.

Ray is an optional extra (``pip install 'llamaswitch[ray]'``): nothing outside
:mod:`llamaswitch.cluster` imports it, and nothing here imports it at module level, so a
single machine never needs it. :func:`import_ray` raises
:class:`~llamaswitch.DependencyMissingError` naming the extra.

The head is a Ray *driver*: ``LLAMASWITCH_CLUSTER=ray`` connects to the cluster this
machine belongs to (``RAY_ADDRESS`` when it is set, else the local node, Ray's
``address="auto"``); ``ray://HOST:PORT`` goes through Ray Client.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Any, Final

import attrs

from llamaswitch._errors import ClusterError, DependencyMissingError

__all__ = ["NAMESPACE", "Connection", "Node", "agent_name", "import_ray", "ray_address"]

logger = logging.getLogger(__name__)

#: The Ray namespace of the agents: one per cluster, whatever namespace a driver uses.
NAMESPACE: Final = "llamaswitch"


def import_ray() -> ModuleType:
    """The ``ray`` module, or :class:`~llamaswitch.DependencyMissingError`."""
    try:
        import ray
    except ImportError as exc:
        raise DependencyMissingError("ray", [exc.name or "ray"], "the cluster mode") from None
    return ray


def ray_address(cluster: str) -> str:
    """What ``ray.init`` is given for a ``LLAMASWITCH_CLUSTER`` value.

    >>> ray_address("ray://head:10001")
    'ray://head:10001'
    """
    if cluster == "ray":
        return os.environ.get("RAY_ADDRESS") or "auto"
    return cluster


def agent_name(node_id: str) -> str:
    """The name of the agent actor of a node (named and detached: a head that restarts
    finds it again)."""
    return f"llamaswitch-agent-{node_id}"


@attrs.frozen
class Node:
    """An alive node of the cluster."""

    node_id: str
    address: str
    resources: dict[str, float]


@attrs.define
class Connection:
    """The head's connection to the cluster as a Ray driver.

    A process already connected (a script, a test) keeps its connection: :meth:`close`
    disconnects only what :meth:`open` connected.
    """

    cluster: str
    _connected_here: bool = False

    def open(self) -> ModuleType:
        """Connect (blocking: Ray's own start-up); returns the ``ray`` module."""
        ray = import_ray()
        if ray.is_initialized():
            return ray
        address = ray_address(self.cluster)
        try:
            # Agent logs stay in each node's Ray session logs: streamed here they would
            # interleave with the service's own output.
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                     configure_logging=False)  # fmt: skip
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(f"cannot connect to the Ray cluster at {address}: {exc}",
                               cluster=self.cluster) from exc  # fmt: skip
        self._connected_here = True
        logger.info("connected to the Ray cluster at %s", address)
        return ray

    def close(self) -> None:
        """Disconnect, if :meth:`open` connected."""
        if self._connected_here:
            self._connected_here = False
            import_ray().shutdown()

    def nodes(self) -> list[Node]:
        """The alive nodes (blocking: a call to Ray's control store)."""
        ray = import_ray()
        found: list[Node] = []
        for entry in ray.nodes():
            info: dict[str, Any] = entry
            if info.get("Alive"):
                found.append(Node(node_id=str(info["NodeID"]),
                                  address=str(info.get("NodeManagerAddress", "")),
                                  resources=dict(info.get("Resources") or {})))  # fmt: skip
        return found
