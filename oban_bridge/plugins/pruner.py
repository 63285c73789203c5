"""lib/oban/plugins/pruner.ex: the leader deletes finished jobs older than `max_age` (60 s by
default, as in Elixir), at most `limit` a run, every `interval` (30 s), the first one interval
after start.

By default only in the queues of this instance (scope "own"): the queues its nodes run, learned
from their gossip check-ins. An Elixir app's own Pruner (or none) decides about its queues' history,
which its unique jobs may rely on (their default states include `completed`)."""

from __future__ import annotations

from typing import Any

import psycopg

from ..db import run_async
from ..engine import prune_plan
from .base import Context, Plugin, Scope, check_scope, log


class Pruner(Plugin):
    name = "pruner"

    def __init__(self, *, max_age: float = 60, limit: int = 10_000, interval: float = 30,
                 scope: Scope = "own") -> None:
        super().__init__()
        for key, value in (("max_age", max_age), ("limit", limit), ("interval", interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"pruner: {key} must be a positive number, got {value!r}")
        if not isinstance(limit, int):
            raise ValueError(f"pruner: limit must be a whole number, got {limit!r}")
        self.max_age = max_age
        self.limit = limit
        self.interval = interval
        self.scope = check_scope("pruner", scope)

    async def tick(self, ctx: Context, conn: psycopg.AsyncConnection[Any]) -> None:
        queues = None if self.scope == "all" else sorted(ctx.instance_queues())
        pruned = await run_async(conn, prune_plan(ctx.prefix, self.max_age, self.limit, queues))
        if pruned:
            log.debug("pruner deleted jobs", extra={"plugin": self.name, "jobs": len(pruned)})
