"""Metrics for Oban Web, as oban_met 1.3.0 broadcasts them (lib/oban/met/listener.ex, reporter.ex,
values/sketch.ex, values/gauge.ex): every second each node sends the jobs it finished as
`exec_time` and `wait_time` sketches (DDSketch bins, relative error 0.02, over native-unit —
nanosecond — durations) and `exec_count` gauges per state, queue and worker; the leader also sends
`full_count` gauges per state and queue."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

import psycopg
from psycopg import sql

from ..notifier import notify
from .base import Context, Plugin

ERROR = 0.02
GAMMA = (1 + ERROR) / (1 - ERROR)
INV_LOG_GAMMA = 1.0 / math.log(GAMMA)

# listener.ex trans_state/1: executor outcomes as the state they leave the job in.
STATES = {"success": "completed", "failure": "retryable", "snoozed": "scheduled", "discard": "discarded",
          "exhausted": "discarded", "cancelled": "cancelled"}


def sketch_bin(value: int) -> int:
    """Sketch.add/2: `ceil(:math.log(value) * @inv_log_gamma)`."""
    return math.ceil(math.log(value) * INV_LOG_GAMMA)


def sketch(values: list[int]) -> dict[str, Any]:
    data: dict[str, int] = defaultdict(int)
    for value in values:
        data[str(sketch_bin(value))] += 1
    return {"data": dict(data), "size": len(values)}


class Met(Plugin):
    name = "met"
    leader_only = False

    def __init__(self, *, interval: float = 1.0, full_counts: bool = True) -> None:
        super().__init__()
        self.interval = interval
        self.full_counts = full_counts
        self._samples: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)

    def record(self, event: str, queue: str, worker: str, duration: float, queue_time: float) -> None:
        # Durations in the native time unit (ns), at least 1 (listener.ex handle_event/4).
        state = STATES.get(event, event)
        self._samples[(state, queue, worker)].append(
            (max(1, int(duration * 1e9)), max(1, int(queue_time * 1e9))))

    def payload(self, name: str, node: str, full: list[dict[str, Any]]) -> dict[str, Any] | None:
        samples, self._samples = self._samples, defaultdict(list)
        metrics: list[dict[str, Any]] = []
        for (state, queue, worker), values in samples.items():
            labels = {"state": state, "queue": queue, "worker": worker}
            metrics.append({"series": "exec_time", **labels, "value": sketch([e for e, _ in values])})
            metrics.append({"series": "wait_time", **labels, "value": sketch([w for _, w in values])})
            metrics.append({"series": "exec_count", **labels, "value": {"data": [1] * len(values)}})
        metrics += full
        if not metrics:
            return None
        return {"metrics": metrics, "name": name, "node": node, "time": int(time.time())}

    async def tick(self, ctx: Context, conn: psycopg.AsyncConnection[Any]) -> None:
        full: list[dict[str, Any]] = []
        if self.full_counts and ctx.is_leader():
            rows = await (await conn.execute(sql.SQL(
                "SELECT state::text, queue, count(*) FROM {}.oban_jobs GROUP BY state, queue"
            ).format(sql.Identifier(ctx.prefix)))).fetchall()
            full = [{"series": "full_count", "state": s, "queue": q, "value": {"data": [n]}} for s, q, n in rows]
        payload = self.payload(ctx.name, ctx.node, full)  # type: ignore[attr-defined]
        if payload is not None:
            await notify(conn, ctx.prefix, "metrics", [payload])
