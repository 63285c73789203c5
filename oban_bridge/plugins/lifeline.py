"""lib/oban/plugins/lifeline.ex: the leader returns jobs stuck `executing` for longer than
`rescue_after` (60 minutes by default, as in Elixir) to `available`, or discards them when they have
no attempts left. A job left executing by a crashed or stopped node comes back this way.

Jobs of oban_bridge producers come back sooner: a producer holds a presence lock for as long as its
process lives, so once the lock is gone (kill -9, a crash, a stop that left jobs running) its
executing jobs are rescued after `orphan_grace` seconds instead of `rescue_after`. The grace covers
a producer's connections reconnecting after a database restart."""

from __future__ import annotations

from typing import Any

import psycopg

from ..db import run_async
from ..engine import rescue_orphans_plan, rescue_plan
from .base import Context, Plugin, log


class Lifeline(Plugin):
    name = "lifeline"
    # Every node rescues orphans (a precise, idempotent update), so a dead leader's own jobs come
    # back without waiting for its lease to expire; the time-based rescue stays with the leader.
    leader_only = False

    def __init__(self, *, rescue_after: float = 3600, interval: float = 15, orphan_grace: float = 30) -> None:
        super().__init__()
        if rescue_after <= 0 or interval <= 0 or orphan_grace < 0:
            raise ValueError("lifeline: rescue_after and interval must be positive, orphan_grace not negative")
        self.rescue_after = rescue_after
        self.interval = interval
        self.orphan_grace = orphan_grace

    async def tick(self, ctx: Context, conn: psycopg.AsyncConnection[Any]) -> None:
        rescued = await run_async(conn, rescue_orphans_plan(ctx.prefix, self.orphan_grace))
        if ctx.is_leader():
            rescued += await run_async(conn, rescue_plan(ctx.prefix, self.rescue_after))
        if rescued:
            log.warning("lifeline rescued jobs", extra={"jobs": [r["id"] for r in rescued]})
