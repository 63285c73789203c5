"""Metrics for Oban Web, as oban_met 1.3.0 broadcasts them (lib/oban/met/listener.ex, reporter.ex,
values/sketch.ex, values/gauge.ex): every second each node sends the jobs it finished as
`exec_time` and `wait_time` sketches (DDSketch bins, relative error 0.02, over native-unit —
nanosecond — durations) and `exec_count` gauges per state, queue and worker; a leader also sends
`full_count` gauges per state and queue.

oban_met's recorder keys each gauge by its labels *and the sending node*, and Oban Web sums the
latest of every key (recorder.ex latest/3): two leaders counting the same table show every job
twice. An Elixir leader with oban_met counts every queue, Python's included, so the Python leader
counts only while no other node's counts are heard: it listens before its first count, and falls
silent for a few seconds (a random few, so two Python instances settle on one) whenever another
sender's counts arrive. Like reporter.ex, a state past `estimate_limit` rows is estimated from the
planner instead of counted."""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import psycopg
from psycopg import sql

from ..notifier import notify
from .base import Context, Plugin, log

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


# reporter.ex @empty_states: the states oban_met counts.
COUNTED = ("available", "cancelled", "completed", "discarded", "executing", "retryable", "scheduled", "suspended")


class Met(Plugin):
    name = "met"
    leader_only = False
    run_at_start = True

    def __init__(self, *, interval: float = 1.0, full_counts: bool = True, estimate_limit: int = 50_000,
                 listen_first: float = 2.5, defer_for: tuple[float, float] = (4.0, 7.0)) -> None:
        super().__init__()
        self.interval = interval
        self.full_counts = full_counts
        self.estimate_limit = estimate_limit
        self.listen_first = listen_first
        self.defer_for = defer_for
        self._samples: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)
        self._ident: tuple[str, str] | None = None
        self._started = 0.0
        self._quiet_until = 0.0
        self._totals: dict[str, int] = {}
        self._queues: list[str] = []
        self._checks = 0
        self.last_counts: tuple[float, list[tuple[str, str, int]]] | None = None
        self._listening = 0
        self._queues_at: int | None = None

    def listens(self) -> Mapping[str, Callable[[dict[str, Any]], Awaitable[None] | None]]:
        return {"metrics": self._heard} if self.full_counts else {}

    def _heard(self, message: dict[str, Any]) -> None:
        if (message.get("name"), message.get("node")) == self._ident:
            return
        metrics = message.get("metrics")
        if isinstance(metrics, list) and any(isinstance(m, dict) and m.get("series") == "full_count" for m in metrics):
            self._quiet_until = max(self._quiet_until, time.monotonic() + random.uniform(*self.defer_for))

    def counting(self, leader: bool, listening: int = 1) -> bool:
        """Whether this node sends full counts now: the leader, once it has listened a while on
        its current notifier connection (`listening`: that connection's number, 0 while down —
        deaf, it could not know another leader counts), and while no other node's counts are heard."""
        now = time.monotonic()
        if listening != self._listening:
            self._listening, self._started = listening, now
        return leader and listening > 0 and now - self._started >= self.listen_first and now >= self._quiet_until

    def start(self, ctx: Context) -> None:
        self._ident = (ctx.name, ctx.node)
        self._started = time.monotonic()
        super().start(ctx)

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

    async def full_count(self, prefix: str, conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
        """reporter.ex checks/1: exact counts for states under `estimate_limit` jobs at the last
        check, the planner's estimate per queue for the others; queues re-read every 60 checks."""
        table = sql.SQL("{}.oban_jobs").format(sql.Identifier(prefix))
        guessed = [s for s in COUNTED if self._totals.get(s, 0) >= self.estimate_limit]
        exact = [s for s in COUNTED if s not in guessed]
        if guessed and (self._queues_at is None or self._checks - self._queues_at >= 60):
            rows = await (await conn.execute(sql.SQL("SELECT DISTINCT queue FROM {}").format(table))).fetchall()
            self._queues, self._queues_at = sorted(r[0] for r in rows), self._checks
        self._checks += 1
        counts: list[tuple[str, str, int]] = []
        async with conn.transaction():
            cur = await conn.execute(sql.SQL(
                "SELECT state::text, queue, count(*) FROM {} WHERE state::text = ANY(%s::text[]) GROUP BY state, queue"
            ).format(table), [exact])
            counts += [(s, q, int(n)) for s, q, n in await cur.fetchall()]
            explain = sql.SQL("EXPLAIN (FORMAT JSON) SELECT id FROM {} WHERE state = %s::{}.oban_job_state "
                              "AND queue = %s").format(table, sql.Identifier(prefix))
            for state in guessed:
                for queue in self._queues:
                    plan = (await (await conn.execute(explain, [state, queue])).fetchone() or [[{}]])[0]
                    rows_guess = int(plan[0].get("Plan", {}).get("Plan Rows", 0))
                    if rows_guess:
                        counts.append((state, queue, rows_guess))
        totals: dict[str, int] = defaultdict(int)
        for state, _, n in counts:
            totals[state] += n
        self._totals = dict(totals)
        # Kept for the Prometheus exporter (metrics.py): the leader's counts, with no query more.
        self.last_counts = (time.monotonic(), counts)
        return [{"series": "full_count", "state": s, "queue": q, "value": {"data": [n]}} for s, q, n in counts]

    async def tick(self, ctx: Context, conn: psycopg.AsyncConnection[Any]) -> None:
        full: list[dict[str, Any]] = []
        if self.full_counts and self.counting(ctx.is_leader(), ctx.listening()):
            try:
                full = await self.full_count(ctx.prefix, conn)
            except psycopg.Error as exc:  # the node's own metrics still go out
                log.warning("met: counting jobs failed", extra={"plugin": self.name, "error": str(exc).strip()})
        payload = self.payload(ctx.name, ctx.node, full)
        if payload is not None:
            await notify(conn, ctx.prefix, "metrics", [payload])
