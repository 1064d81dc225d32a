"""``GET /metrics``: Prometheus text format, from a registry of this app's own.

Gauges describing the servers (by state, per-server VRAM and RSS) are filled from the
core at scrape time, so they are never stale and cost nothing between scrapes. The
switch-duration histogram and the benchmark tasks by state follow the core's event bus
(a server's ``ready`` event carries its spawn-to-ready time; each task state change is an
event), so they count every switch and task, whoever asked for it, since the service
started. Each app has its own :class:`~prometheus_client.CollectorRegistry`:
two apps in one process (tests, embedding) never mix figures.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from llamaswitch.bench.task import TASK_STATES, UNFINISHED_STATES
from llamaswitch.gateway.gateway import EVICTION_REASONS
from llamaswitch.servers.status import ServerState

if TYPE_CHECKING:
    from llamaswitch._events import Event
    from llamaswitch.gateway.requests import RequestRecord
    from llamaswitch.servers.status import ServerStatus

__all__ = ["SERVER_STATES", "UNKNOWN_MODEL", "Metrics"]

_MIB: Final = 1024 * 1024
#: The model label of gateway requests for a name no model has: one series for them all,
#: since each name a client tries would otherwise add series that are kept for good.
UNKNOWN_MODEL: Final = "(unknown)"
_Metric = TypeVar("_Metric", bound=MetricWrapperBase)
#: Every server state, so each has a sample (0 included): absent series break alerts.
SERVER_STATES: Final = tuple(state.value for state in ServerState)
#: Tiny models are ready in ~0.1 s, big ones on slow disks in minutes.
_SWITCH_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                          300.0, 600.0)  # fmt: skip
#: Queue waits and first tokens: a millisecond when warm, seconds behind a long prompt.
_WAIT_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0, 30.0, 60.0)  # fmt: skip


class Metrics:
    """The Prometheus metrics of one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.servers = Gauge(
            "llamaswitch_servers", "Model servers managed, by state.", ["state"], registry=r
        )
        self.server_vram = Gauge(
            "llamaswitch_server_vram_bytes",
            "GPU memory held by a model server process (summed over GPUs).",
            ["port", "model", "host"],
            registry=r,
        )
        self.server_rss = Gauge(
            "llamaswitch_server_rss_bytes",
            "Resident memory of a model server process.",
            ["port", "model", "host"],
            registry=r,
        )
        self.switch_seconds = Histogram(
            "llamaswitch_switch_duration_seconds",
            "Seconds from spawning a model server to its readiness (/health 200).",
            buckets=_SWITCH_BUCKETS,
            registry=r,
        )
        self.switch_failures = Gauge(
            "llamaswitch_switch_failures",
            "Model servers that never became ready (failed) since the service started.",
            registry=r,
        )
        self.tasks = Gauge(
            "llamaswitch_benchmark_tasks",
            "Benchmark tasks submitted or imported since the service started, by state.",
            ["state"], registry=r,
        )  # fmt: skip
        for state in TASK_STATES:
            self.tasks.labels(state).set(0)
        Gauge(
            "llamaswitch_gc_frozen_objects",
            "Objects of the service's start-up that garbage collections skip (gc.freeze).",
            registry=r,
        ).set_function(gc.get_freeze_count)
        self._unfinished: dict[str, str] = {}
        self.gateway_requests = Counter(
            "llamaswitch_gateway_requests",
            "Gateway requests finished, by model, route and HTTP status (499: client left).",
            ["model", "route", "status"], registry=r,
        )  # fmt: skip
        self.gateway_queue_wait = Histogram(
            "llamaswitch_gateway_queue_wait_seconds",
            "Seconds a gateway request waited for a free slot of its model.",
            ["model"], buckets=_WAIT_BUCKETS, registry=r,
        )  # fmt: skip
        self.gateway_load_wait = Histogram(
            "llamaswitch_gateway_load_seconds",
            "Seconds a gateway request waited for its model to load (requests that did).",
            ["model"], buckets=_SWITCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.gateway_ttft = Histogram(
            "llamaswitch_gateway_time_to_first_token_seconds",
            "Seconds from a gateway request's arrival to the first byte of its answer.",
            ["model"], buckets=_WAIT_BUCKETS, registry=r,
        )  # fmt: skip
        self.gateway_tokens = Counter(
            "llamaswitch_gateway_tokens_generated",
            "Tokens generated for gateway requests, from the upstream's usage or timings.",
            ["model"], registry=r,
        )  # fmt: skip
        self.gateway_evictions = Counter(
            "llamaswitch_gateway_evictions",
            "Models that stopped being served, by reason (room, idle, crashed, stopped).",
            ["reason"], registry=r,
        )  # fmt: skip
        for reason in EVICTION_REASONS:
            self.gateway_evictions.labels(reason)
        # The labelled children of the gateway's figures, kept: ``labels()`` takes a lock
        # and builds its key on every call (4-5 calls, some 40 µs, of each request).
        # None of these children is ever removed (the servers' gauges, whose children
        # are, never come here), so a kept one stays the registry's.
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}

    def _labelled(self, metric: _Metric, *labels: str) -> _Metric:
        """``metric.labels(*labels)``, kept for the next call."""
        child = self._children.get((metric, labels))
        if child is None:
            child = self._children[metric, labels] = metric.labels(*labels)
        return cast("_Metric", child)

    def gateway_request(self, record: RequestRecord) -> None:
        """Count one finished gateway request.

        Labelled only with what is bounded, since each label set is kept for good: the
        catalog's id (a name no model has is counted as :data:`UNKNOWN_MODEL`) and the
        route's template (``/v1/{tail}``, not each path a client tried)."""
        model = record.model if record.resolved else UNKNOWN_MODEL
        route = record.template or record.route
        self._labelled(self.gateway_requests, model, route, str(record.status)).inc()
        if record.queue_wait_s is not None:
            self._labelled(self.gateway_queue_wait, model).observe(record.queue_wait_s)
        if record.load_wait_s:
            self._labelled(self.gateway_load_wait, model).observe(record.load_wait_s)
        if record.ttft_s is not None:
            self._labelled(self.gateway_ttft, model).observe(record.ttft_s)
        if record.tokens:
            self._labelled(self.gateway_tokens, model).inc(record.tokens)

    def observe(self, event: Event) -> None:
        """Feed one event of the core's bus into the figures that accumulate."""
        if event.topic == "gateway" and event.type == "model_evicted":
            reason = str(event.data.get("reason"))
            if reason in EVICTION_REASONS:
                self._labelled(self.gateway_evictions, reason).inc()
            return
        if event.type != "state":
            return
        state = event.data.get("state")
        if event.topic == "benchmark":
            self._task_state(str(event.data.get("task_id")), str(state))
        elif state == "ready":
            seconds = event.data.get("ready_after_s")
            if isinstance(seconds, int | float) and seconds >= 0:
                self.switch_seconds.observe(seconds)
        elif state == "failed":
            self.switch_failures.inc()

    def _task_state(self, task_id: str, state: str) -> None:
        # Unfinished tasks are tracked by id (a few at a time); finished ones only
        # counted, so memory stays bounded however long the service runs.
        previous = self._unfinished.pop(task_id, None)
        if previous is not None:
            self.tasks.labels(previous).dec()
        if state in UNFINISHED_STATES:
            self._unfinished[task_id] = state
        self.tasks.labels(state).inc()

    def refresh(self, statuses: Sequence[ServerStatus]) -> None:
        """Fill the gauges that describe the present from the servers' statuses."""
        counts = dict.fromkeys(SERVER_STATES, 0)
        self.server_vram.clear()
        self.server_rss.clear()
        for status in statuses:
            state = str(status.state)
            counts[state] = counts.get(state, 0) + 1
            # host: the cluster host it runs on (docs/cluster.md), "" on this machine.
            labels = (str(status.port), status.model_name, status.host_name or "")
            _set_mib(self.server_vram, labels, status.vram_usage)
            _set_mib(self.server_rss, labels, status.rss_mib)
        for state, count in counts.items():
            self.servers.labels(state).set(count)


def _set_mib(gauge: Gauge, labels: tuple[str, str, str], mib: Any) -> None:
    # No sample rather than 0 when unknown (no NVIDIA GPU, a process already gone).
    if isinstance(mib, int | float) and not isinstance(mib, bool):
        gauge.labels(*labels).set(mib * _MIB)
