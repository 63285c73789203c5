from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import psycopg

from ..tasks import cancel

log = logging.getLogger("oban_bridge.plugins")


class Context(Protocol):
    url: str
    prefix: str

    def is_leader(self) -> bool: ...

    async def connection(self) -> psycopg.AsyncConnection[Any]: ...

    def plugin_pool(self) -> Any: ...


class Plugin:
    """A loop that runs `tick` every `interval` seconds, on the leader only when `leader_only`."""

    interval: float = 1.0
    leader_only: bool = True
    name = "plugin"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def tick(self, ctx: Context, conn: psycopg.AsyncConnection[Any]) -> None:
        raise NotImplementedError

    def start(self, ctx: Context) -> None:
        self._task = asyncio.create_task(self._loop(ctx), name=f"oban-{self.name}")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def pause(self, first: bool) -> None:
        """Wait for the next run: right away at start, then every `interval` seconds."""
        if not first:
            await asyncio.sleep(self.interval)

    async def _loop(self, ctx: Context) -> None:
        """Plugins borrow from one small pool per node rather than hold a connection each."""
        first = True
        while True:
            await self.pause(first)
            first = False
            try:
                if not self.leader_only or ctx.is_leader():
                    async with ctx.plugin_pool().connection() as conn:
                        await self.tick(ctx, conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a plugin keeps going, as Oban's do
                log.warning("%s failed", self.name, extra={"plugin": self.name, "error": str(exc)})
