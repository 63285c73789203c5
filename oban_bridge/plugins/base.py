from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

import psycopg

from ..tasks import cancel

log = logging.getLogger("oban_bridge.plugins")

# What the pruner and the lifeline may touch. "own": the queues this instance's nodes run and the
# jobs oban_bridge producers attempted, so an Elixir app sharing the database keeps its history and
# its long jobs whatever its own plugins say. "all": every queue and job, as Elixir's plugins act
# (for deployments where Python nodes are the only Oban nodes).
Scope = Literal["own", "all"]
SCOPES = ("own", "all")


def check_scope(plugin: str, scope: object) -> Scope:
    if scope not in SCOPES:
        raise ValueError(f"{plugin}: scope must be 'own' or 'all', got {scope!r}")
    return scope  # type: ignore[return-value]


class Context(Protocol):
    url: str
    prefix: str
    name: str
    node: str

    def is_leader(self) -> bool: ...

    def instance_queues(self) -> set[str]: ...

    def instance_producers(self) -> list[str]: ...

    def listening(self) -> int: ...

    async def connection(self) -> psycopg.AsyncConnection[Any]: ...

    def plugin_pool(self) -> Any: ...


class Plugin:
    """A loop that runs `tick` every `interval` seconds, on the leader only when `leader_only`."""

    interval: float = 1.0
    leader_only: bool = True
    # Elixir's plugins first run one interval after start (e.g. plugins/pruner.ex init/1
    # schedule_prune/1); those whose first run at start only helps say so.
    run_at_start: bool = False
    name = "plugin"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def tick(self, ctx: Context, conn: psycopg.AsyncConnection[Any]) -> None:
        raise NotImplementedError

    def listens(self) -> Mapping[str, Callable[[dict[str, Any]], Awaitable[None] | None]]:
        """Notification channels this plugin hears, subscribed before the notifier starts."""
        return {}

    def start(self, ctx: Context) -> None:
        self._task = asyncio.create_task(self._loop(ctx), name=f"oban-{self.name}")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def pause(self, first: bool) -> None:
        """Wait for the next run: every `interval` seconds, the first right away if `run_at_start`."""
        if not (first and self.run_at_start):
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
