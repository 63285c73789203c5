"""lib/oban/plugins/pruner.ex: the leader deletes finished jobs older than `max_age` (60 s by
default, as in Elixir), at most `limit` a run."""

from __future__ import annotations

from typing import Any

import psycopg

from ..db import run_async
from ..engine import prune_plan
from .base import Context, Plugin


class Pruner(Plugin):
    name = "pruner"

    def __init__(self, *, max_age: float = 60, limit: int = 10_000, interval: float = 30) -> None:
        super().__init__()
        if max_age <= 0 or limit <= 0 or interval <= 0:
            raise ValueError("pruner: max_age, limit and interval must be positive")
        self.max_age = max_age
        self.limit = limit
        self.interval = interval

    async def tick(self, ctx: Context, conn: psycopg.AsyncConnection[Any]) -> None:
        await run_async(conn, prune_plan(ctx.prefix, self.max_age, self.limit))
