"""lib/oban/plugins/lifeline.ex: the leader returns jobs stuck `executing` for longer than
`rescue_after` (60 minutes by default, as in Elixir) to `available`, or discards them when they have
no attempts left, every `interval` (1 minute), the first one interval after start. By default
(scope "own") only jobs that this instance's producers attempted (this node's, and its peers' heard
in gossip): an Elixir app's jobs, or another Python instance's, may legitimately run for hours,
and their own Lifeline, configured by their app, decides when they are stuck.

Jobs of oban_bridge producers that are gone come back sooner. A producer holds a presence lock for
as long as its process lives (presence.py), so every node looks, every `orphan_interval` seconds,
for producers with executing jobs and no lock, and rescues their jobs once it has seen them absent
at every look for `orphan_grace` seconds (30 by default). The grace is measured from the first look
that found a producer absent, never from `attempted_at`: a producer whose connections were all
dropped (a failover, a PgBouncer restart, `pg_terminate_backend`) takes its lock again within
moments, is seen present, and keeps its jobs."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql

from ..db import run_async
from ..engine import absent_producers_plan, rescue_orphans_plan, rescue_plan
from ..job import Job
from .base import Context, Plugin, Scope, check_scope, log

RescueHook = Callable[[psycopg.AsyncConnection[Any], str, Job], Awaitable[None]]
_hooks: dict[str, RescueHook] = {}


def on_rescued_out_of_attempts(worker: str, hook: RescueHook) -> None:
    """Run `hook(conn, prefix, job)` when the lifeline discards a job of `worker` because its node
    is gone and it has no attempts left: nothing ran to see that attempt fail (hephaestus/steps.py
    tells the workflow)."""
    _hooks[worker] = hook


async def _after_discard(ctx: Context, conn: psycopg.AsyncConnection[Any], rescued: list[dict[str, Any]]) -> None:
    ids = [r["id"] for r in rescued if r["state"] == "discarded" and r.get("worker") in _hooks]
    if not ids:
        return
    cur = await conn.execute(sql.SQL("SELECT * FROM {}.oban_jobs WHERE id = ANY(%s)").format(
        sql.Identifier(ctx.prefix)), [ids])
    columns = [c.name for c in cur.description or []]
    for row in await cur.fetchall():
        job = Job.from_row(dict(zip(columns, row)))
        try:
            await _hooks[job.worker](conn, ctx.prefix, job)
        except Exception as exc:  # noqa: BLE001 - one job's hook never stops the rescue of others
            log.warning("lifeline: after-discard hook failed", extra={"job_id": job.id, "error": str(exc)})


def _log_rescue(plugin: str, rows: list[dict[str, Any]], reason: str, producers: list[str] | None = None) -> None:
    """One record per rescue: how many, which, why, and what became of them (available again, or
    discarded with no attempts left), as an operator needs to follow up."""
    discarded = [r["id"] for r in rows if r["state"] == "discarded"]
    log.warning(
        "lifeline rescued %d job(s) (%d available again, %d discarded): %s",
        len(rows), len(rows) - len(discarded), len(discarded), reason,
        extra={"plugin": plugin, "reason": reason, "count": len(rows), "job_ids": [r["id"] for r in rows],
               "discarded_ids": discarded, "queues": sorted({r["queue"] for r in rows}),
               **({"producers": producers} if producers is not None else {})},
    )


class Lifeline(Plugin):
    name = "lifeline"
    # Every node looks for orphans (a dead leader's own jobs come back without waiting for its
    # lease to expire); the time-based rescue stays with the leader.
    leader_only = False
    run_at_start = True

    def __init__(self, *, rescue_after: float | None = 3600, interval: float = 60, orphan_grace: float = 30,
                 orphan_interval: float | None = None, scope: Scope = "own") -> None:
        """`rescue_after=None`: no time-based rescue (an Elixir app without Lifeline); orphans of
        oban_bridge producers are still rescued, which is what keeps their jobs from being lost."""
        super().__init__()
        checked = [("interval", interval), ("orphan_grace", orphan_grace)]
        if rescue_after is not None:
            checked.append(("rescue_after", rescue_after))
        for key, value in checked:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or \
                    (value == 0 and key != "orphan_grace"):
                raise ValueError(f"lifeline: {key} must be a positive number, got {value!r}")
        if orphan_interval is None:
            # Several looks within the grace, so one unlucky look at a reconnecting producer never
            # decides; a look every 5 s at most keeps an idle node cheap.
            orphan_interval = min(5.0, max(0.05, orphan_grace / 4))
        elif isinstance(orphan_interval, bool) or not isinstance(orphan_interval, (int, float)) or orphan_interval <= 0:
            raise ValueError(f"lifeline: orphan_interval must be a positive number, got {orphan_interval!r}")
        self.rescue_after = rescue_after
        self.rescue_interval = interval
        self.orphan_grace = orphan_grace
        self.interval = orphan_interval
        self.scope = check_scope("lifeline", scope)
        self._absent_since: dict[str, float] = {}
        self._last_look: float | None = None
        self._next_rescue: float | None = None

    async def tick(self, ctx: Context, conn: psycopg.AsyncConnection[Any]) -> None:
        now = time.monotonic()
        absent = await run_async(conn, absent_producers_plan(ctx.prefix))
        # A producer counts as absent since the first look that found it so, provided no look was
        # skipped (a stalled loop): after a gap, what happened in between is unknown, so start over.
        gap = self._last_look is not None and now - self._last_look > 3 * self.interval + 1.0
        self._absent_since = {u: now if gap else self._absent_since.get(u, now) for u in absent}
        self._last_look = now
        due = sorted(u for u, since in self._absent_since.items() if now - since >= self.orphan_grace)
        rescued = await run_async(conn, rescue_orphans_plan(ctx.prefix, due)) if due else []
        if rescued:
            _log_rescue(self.name, rescued, f"their producer held no presence lock for {self.orphan_grace:g}s",
                        producers=due)
        for uuid in due:
            self._absent_since.pop(uuid, None)
        if self._next_rescue is None:
            self._next_rescue = now + self.rescue_interval
        if now >= self._next_rescue:
            self._next_rescue = now + self.rescue_interval
            if ctx.is_leader() and self.rescue_after is not None:
                uuids = None if self.scope == "all" else ctx.instance_producers()
                stuck = await run_async(conn, rescue_plan(ctx.prefix, self.rescue_after, uuids=uuids))
                if stuck:
                    _log_rescue(self.name, stuck, f"executing for over {self.rescue_after:g}s")
                rescued += stuck
        if rescued:
            await _after_discard(ctx, conn, rescued)
