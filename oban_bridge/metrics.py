"""Prometheus metrics for the nodes in this process, with `prometheus_client`
(`pip install 'oban_bridge[metrics]'`).

| metric | type | labels |
| --- | --- | --- |
| `oban_bridge_jobs_finished_total` | counter | queue, worker, state |
| `oban_bridge_job_duration_seconds` | histogram | queue, worker |
| `oban_bridge_job_queue_time_seconds` | histogram | queue, worker |
| `oban_bridge_jobs_running` | gauge | queue |
| `oban_bridge_queue_limit` | gauge | queue |
| `oban_bridge_jobs` | gauge | queue, state |

- `state` of a finished job is the state the attempt left it in (completed, retryable, scheduled,
  cancelled, discarded), as Oban.Met's `exec_count` labels it (oban_met listener.ex).
- Duration is the attempt's run time. Queue time runs from `scheduled_at` to `attempted_at`, as
  Oban's telemetry measures it.
- Running and limit are this node's, per queue: the local limit, as Oban Web shows it.
- `oban_bridge_jobs` is the table's jobs per queue and state. It comes from the counts the node
  already makes for Oban Web while it is the leader (plugins/met.py), never from a query of its
  own. When another node counts, or the last count is over a minute old, the series is absent.

`enable()` registers them (on the default registry, or yours) and starts recording; the CLI's
`oban-bridge start --metrics-port N` also serves them over HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .errors import ObanBridgeError

if TYPE_CHECKING:
    from .executor import Outcome

try:
    from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError:  # metrics stay off; enable() says what to install
    REGISTRY = None  # type: ignore[assignment]
    Collector = object  # type: ignore[assignment,misc]

# Seconds. Job run times span a no-op's tens of microseconds to long renders.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
COUNTS_FRESH = 60.0

# An attempt's event, as the state it leaves the job in (oban_met listener.ex trans_state/1).
STATES = {"success": "completed", "failure": "retryable", "snoozed": "scheduled", "discard": "discarded",
          "exhausted": "discarded", "cancelled": "cancelled"}


def available() -> bool:
    """Whether prometheus_client is installed."""
    return REGISTRY is not None


class Metrics:
    """The metrics of every node (runtime) in this process."""

    def __init__(self, registry: Any = None) -> None:
        if REGISTRY is None:
            raise ObanBridgeError("metrics need prometheus_client: pip install 'oban_bridge[metrics]'")
        self.registry = REGISTRY if registry is None else registry
        self.finished = Counter("oban_bridge_jobs_finished", "Job attempts finished, by the state they left the job in",
                                ["queue", "worker", "state"], registry=self.registry)
        self.duration = Histogram("oban_bridge_job_duration_seconds", "How long job attempts ran",
                                  ["queue", "worker"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.queue_time = Histogram("oban_bridge_job_queue_time_seconds",
                                    "How long jobs waited from scheduled_at until an attempt started",
                                    ["queue", "worker"], buckets=DURATION_BUCKETS, registry=self.registry)
        self._finished: dict[tuple[str, str, str], Any] = {}
        self._timers: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.live = _Live()
        self.registry.register(self.live)

    def observe(self, outcome: Outcome) -> None:
        job = outcome.job
        state = STATES.get(outcome.event, outcome.event)
        # The labelled children, kept: `labels()` validates and locks on every call.
        key = (job.queue, job.worker, state)
        counter = self._finished.get(key)
        if counter is None:
            counter = self._finished[key] = self.finished.labels(*key)
        timers = self._timers.get(key[:2])
        if timers is None:
            timers = self._timers[key[:2]] = (self.duration.labels(*key[:2]), self.queue_time.labels(*key[:2]))
        counter.inc()
        timers[0].observe(outcome.duration)
        timers[1].observe(outcome.queue_time)

    def close(self) -> None:
        for collector in (self.finished, self.duration, self.queue_time, self.live):
            self.registry.unregister(collector)


class _Live(Collector):
    """Read at scrape time from the running nodes: no work between scrapes."""

    def collect(self) -> Iterator[Any]:
        from .runtime import live

        running = GaugeMetricFamily("oban_bridge_jobs_running", "Jobs this process runs now, per queue", labels=["queue"])
        limit = GaugeMetricFamily("oban_bridge_queue_limit", "The local limit per queue, summed over this process's nodes", labels=["queue"])
        jobs = GaugeMetricFamily("oban_bridge_jobs", "Jobs in the table per queue and state, as the leader last "
                                                     "counted them for Oban Web", labels=["queue", "state"])
        counted: dict[tuple[str, str], int] = {}
        # Nodes of one process that run the same queue add up: one sample per label set, as the
        # exposition format requires (the process is the scrape's instance).
        per_queue: dict[str, list[int]] = {}
        for runtime in list(live):
            for queue, producer in list(runtime.producers.items()):
                totals = per_queue.setdefault(queue, [0, 0])
                totals[0] += len(producer.running)
                totals[1] += producer.limit
            for met in runtime._met:
                last = met.last_counts
                if last is not None and time.monotonic() - last[0] < COUNTS_FRESH:
                    from .plugins.met import COUNTED

                    for queue in {q for _, q, _ in last[1]}:
                        for state in COUNTED:
                            counted.setdefault((queue, state), 0)
                    for state, queue, n in last[1]:
                        counted[(queue, state)] = n
        for queue, (now, most) in sorted(per_queue.items()):
            running.add_metric([queue], now)
            limit.add_metric([queue], most)
        for (queue, state), n in sorted(counted.items()):
            jobs.add_metric([queue, state], n)
        yield running
        yield limit
        yield jobs


_active: Metrics | None = None


def enable(registry: Any = None) -> Metrics:
    """Record metrics for every node in this process from now on, on `registry` (default:
    prometheus_client's global one, which `start_http_server` and most frameworks serve)."""
    global _active
    if _active is None:
        _active = Metrics(registry)
    elif registry is not None and registry is not _active.registry:
        raise ObanBridgeError("oban_bridge metrics are already enabled on another registry")
    return _active


def disable() -> None:
    global _active
    if _active is not None:
        _active.close()
        _active = None


def observe(outcome: Outcome) -> None:
    if _active is not None:
        _active.observe(outcome)


def serve(port: int, addr: str = "0.0.0.0") -> Any:
    """`enable()`, and serve its registry's metrics on http://addr:port/metrics (a thread)."""
    active = enable()
    return start_http_server(port, addr, registry=active.registry)


__all__ = ["Metrics", "enable", "disable", "serve"]
