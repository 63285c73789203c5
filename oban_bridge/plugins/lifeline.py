"""lib/oban/plugins/lifeline.ex: the leader returns jobs stuck `executing` for longer than
`rescue_after` (60 minutes by default, as in Elixir) to `available`, or discards them when they have
no attempts left. A job left executing by a crashed or stopped node comes back this way."""

from __future__ import annotations

from typing import Any

import psycopg

from ..db import run_async
from ..engine import rescue_plan
from .base import Context, Plugin


class Lifeline(Plugin):
    name = "lifeline"

    def __init__(self, *, rescue_after: float = 3600, interval: float = 60) -> None:
        super().__init__()
        if rescue_after <= 0 or interval <= 0:
            raise ValueError("lifeline: rescue_after and interval must be positive")
        self.rescue_after = rescue_after
        self.interval = interval

    async def tick(self, ctx: Context, conn: psycopg.AsyncConnection[Any]) -> None:
        await run_async(conn, rescue_plan(ctx.prefix, self.rescue_after))
