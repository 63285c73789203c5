"""Check-ins on the `gossip` channel, once a second, from every node (not only the leader):
one check per queue in the shape Elixir 2.23.1 with oban_met 1.3.0 sends
(elixir_interop_fixtures/notifications.jsonl), which is how Oban Web and `oban-bridge queues`
learn which nodes run which queues, with what limit, paused or not, running which jobs."""

from __future__ import annotations

from typing import Any

import psycopg

from ..notifier import notify
from .base import Context, Plugin


class Gossip(Plugin):
    name = "gossip"
    run_at_start = True
    leader_only = False

    def __init__(self, *, interval: float = 1.0) -> None:
        super().__init__()
        self.interval = interval

    async def tick(self, ctx: Context, conn: psycopg.AsyncConnection[Any]) -> None:
        checks = ctx.checks()  # type: ignore[attr-defined]
        if checks:
            await notify(conn, ctx.prefix, "gossip", [{"checks": checks}])
