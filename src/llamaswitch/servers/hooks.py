"""Callbacks told a model server's URL at one moment of its life.

The supervisor keeps one :class:`UrlHooks` per moment (its HTTP server listens, it is
about to be stopped): a client of the servers, the HTTP service's pool of upstream
connections, acts then (``ServerSupervisor.when_listening``, ``when_stopping``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

__all__ = ["UrlHooks"]

logger = logging.getLogger(__name__)


class UrlHooks:
    """The callbacks for one moment, called in the order they were added.

    A hook runs on the event loop, inside the supervisor's own work (reading a child's
    output, stopping it): it must not block, and its fault is logged, never raised, so
    that neither that work nor the other hooks suffer.
    """

    def __init__(self, moment: str) -> None:
        #: What the moment is, for the log ("listening", "stopping").
        self.moment = moment
        self._hooks: list[Callable[[str], None]] = []

    def add(self, hook: Callable[[str], None]) -> Callable[[], None]:
        """Add ``hook``; returns the function that removes it again."""
        self._hooks.append(hook)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._hooks.remove(hook)

        return remove

    def __call__(self, url: str) -> None:
        """Call each hook with ``url``."""
        for hook in list(self._hooks):
            try:
                hook(url)
            except Exception:  # a hook's fault must not break the supervisor's work
                logger.exception("a hook for a %s server failed (%s)", self.moment, url)
