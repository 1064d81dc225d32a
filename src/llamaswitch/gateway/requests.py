"""The gateway's request log: the last requests, with their waits and speeds.

No prompt or completion text is kept: only the model, the route, the outcome and the
figures (``GET /api/v1/gateway/requests``).
"""

from __future__ import annotations

import collections
import itertools
import time
from datetime import datetime
from typing import Literal

import attrs

from llamaswitch._time import now

__all__ = ["RequestLog", "RequestRecord", "RequestState"]

RequestState = Literal["queued", "loading", "running", "done", "failed"]

_ids = itertools.count(1)


@attrs.define
class RequestRecord:
    """One request through the gateway (updated while it runs)."""

    model: str
    route: str
    id: int = attrs.field(factory=lambda: next(_ids))
    state: RequestState = "queued"
    #: The HTTP status returned (None while it runs).
    status: int | None = None
    #: Seconds waiting for a free slot, and for the model to load.
    queue_wait_s: float | None = None
    load_wait_s: float | None = None
    #: Seconds from arrival to the first byte (streams: the first chunk) from upstream.
    ttft_s: float | None = None
    #: Tokens generated, from the upstream's ``usage`` or ``timings``.
    tokens: int | None = None
    tokens_per_s: float | None = None
    started_at: datetime = attrs.field(factory=now)
    finished_at: datetime | None = None
    #: Seconds from arrival to the end of the answer.
    duration_s: float | None = None
    error: str | None = None
    #: Monotonic start (not on the wire).
    began: float = attrs.field(factory=time.monotonic, repr=False)
    #: The route's template, ``/v1/{tail}`` where ``route`` is ``/v1/anything``: what
    #: the metrics label with, since a client can name unboundedly many paths (not on
    #: the wire; ``route`` where None).
    template: str | None = attrs.field(default=None, repr=False)
    #: ``model`` is the catalog's id, set by the gateway once it found the model; until
    #: then it is the client's name, which the metrics do not label with (not on the wire).
    resolved: bool = attrs.field(default=False, repr=False)

    def resolve(self, model_id: str) -> None:
        """The gateway found the model: ``model`` becomes its catalog id."""
        self.model = model_id
        self.resolved = True

    def finish(self, status: int, *, error: str | None = None) -> None:
        """Record the outcome."""
        self.status = status
        self.state = "done" if status < 400 and error is None else "failed"
        self.error = error
        self.finished_at = now()
        self.duration_s = self.elapsed_s()
        if self.tokens and self.tokens_per_s is None and self.ttft_s is not None:
            generating = self.duration_s - self.ttft_s
            if generating > 0:
                self.tokens_per_s = self.tokens / generating

    def elapsed_s(self) -> float:
        """Seconds since it arrived."""
        return time.monotonic() - self.began


class RequestLog:
    """The last ``size`` requests, newest last."""

    def __init__(self, size: int = 1000) -> None:
        self._records: collections.deque[RequestRecord] = collections.deque(maxlen=size)

    def begin(self, model: str, route: str, *, template: str | None = None) -> RequestRecord:
        """Start a record (it is listed at once, as ``queued``); ``template``: the
        route's, where ``route`` holds a path a client chose."""
        record = RequestRecord(model=model, route=route, template=template)
        self._records.append(record)
        return record

    def recent(self, limit: int = 100) -> list[RequestRecord]:
        """The ``limit`` most recent requests, newest first."""
        records = list(self._records)[-limit:] if limit > 0 else []
        return records[::-1]
