"""lib/oban/stager.ex: every second the leader makes due scheduled/retryable jobs available, then
sends an `insert` notification for every queue with available jobs, which wakes producers on every
node, Elixir's included."""

from __future__ import annotations

from typing import Any

import psycopg

from ..db import run_async
from ..engine import check_available_plan, stage_plan
from ..notifier import notify
from .base import Context, Plugin


class Stager(Plugin):
    name = "stager"
    run_at_start = True

    def __init__(self, *, interval: float = 1.0, limit: int = 5_000) -> None:
        super().__init__()
        self.interval = interval
        self.limit = limit

    async def tick(self, ctx: Context, conn: psycopg.AsyncConnection[Any]) -> None:
        async with conn.transaction():
            await run_async(conn, stage_plan(ctx.prefix, self.limit))
            queues = await run_async(conn, check_available_plan(ctx.prefix))
            await notify(conn, ctx.prefix, "insert", [{"queue": q} for q in queues])
