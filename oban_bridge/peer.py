"""Leadership through `oban_peers` (lib/oban/peers/database.ex).

oban_bridge competes under its own instance name (`ObanBridge` by default), never Elixir's: an
Elixir app's leader runs its own plugins (cron, pruner, lifeline…) with its own configuration, and
a Python node taking its lease would silently switch those off. With a separate name each side
elects its own leader, and the duties Python runs (staging, pruning, rescuing) are idempotent
updates that are safe to run beside Elixir's.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import psycopg

from .db import run_async
from .engine import elect_plan, resign_plan
from .notifier import notify
from .tasks import cancel

log = logging.getLogger(__name__)


class Peer:
    def __init__(self, url: str, prefix: str, name: str, node: str, *, interval: float = 30.0) -> None:
        self.url = url
        self.prefix = prefix
        self.name = name
        self.node = node
        self.interval = interval
        self.leader = False
        self._task: asyncio.Task[None] | None = None
        self._pool: Any = None
        self._elect_now = asyncio.Event()

    def start(self, pool: Any) -> None:
        self._pool = pool
        self._task = asyncio.create_task(self._loop(pool), name="oban-peer")

    def on_leader_down(self, message: dict[str, Any]) -> None:
        if message.get("down") == self.name:
            self._elect_now.set()

    async def elect(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        try:
            async with conn.transaction():
                self.leader = await run_async(conn, elect_plan(self.prefix, self.name, self.node, self.interval))
        except psycopg.Error as exc:
            # As in Elixir: give up leadership when an election fails; the lease is reclaimed on
            # the next one while it is still ours.
            log.warning("leader election failed", extra={"error": str(exc)})
            self.leader = False
            raise
        return self.leader

    async def _loop(self, pool: Any) -> None:
        """Elections borrow from the node's small plugin pool: a lease renewed every 15 s does not
        need a connection of its own."""
        while True:
            failed = False
            try:
                # Not waiting longer than a fraction of the lease: a leader that cannot renew in
                # time must stop acting as one before another node takes over.
                async with pool.connection(timeout=max(1.0, self.interval / 4)) as conn:
                    await self.elect(conn)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                failed = True
                self.leader = False
            # Leaders renew twice per lease; everyone jitters down by up to 10% (Backoff.jitter :dec).
            # After a failed election (database restarting) try again soon: leader-only duties such
            # as staging retries stop while nobody leads.
            base = min(1.0, self.interval) if failed else self.interval / 2 if self.leader else self.interval
            wait = base - random.random() * 0.1 * base
            self._elect_now.clear()
            try:
                async with asyncio.timeout(wait):  # not wait_for: it can swallow a cancel on 3.11
                    await self._elect_now.wait()
            except TimeoutError:
                pass

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        if self.leader:
            try:
                async with self._pool.connection() as conn:
                    async with conn.transaction():
                        await run_async(conn, resign_plan(self.prefix, self.name, self.node))
                        await notify(conn, self.prefix, "leader", [{"down": self.name}])
            except (psycopg.Error, OSError) as exc:
                log.warning("could not resign leadership", extra={"error": str(exc)})
            self.leader = False
