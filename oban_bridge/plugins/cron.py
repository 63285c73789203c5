"""lib/oban/plugins/cron.ex: at the top of every minute the leader inserts a job for each entry
whose expression matches the current time in the crontab's time zone, with the meta Elixir's Cron
plugin writes (`cron`, `cron_expr`, `cron_name`, `cron_tz`). `@reboot` entries run once, on the
first evaluation as leader."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import psycopg

from .. import cron
from ..db import run_async
from ..insert import insert_plan
from ..job import Job, worker_name
from .base import Context, Plugin


@dataclass(slots=True)
class Entry:
    expression: cron.Expression
    worker: str
    args: dict[str, Any] = field(default_factory=dict)
    opts: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A stable name for the entry. Elixir names its entries with `:erlang.phash2` of
        `{expr, worker, opts}`; oban_bridge uses a digest of the same triple instead."""
        digest = hashlib.blake2b(
            orjson.dumps([self.expression.input, self.worker, self.args, self.opts], option=orjson.OPT_SORT_KEYS),
            digest_size=4,
        ).digest()
        return str(int.from_bytes(digest, "big") % 2**27)


def _job(entry: Entry, tz: str) -> Job:
    spec = entry.opts
    meta = {**spec.get("meta", {}), "cron": True, "cron_expr": entry.expression.input,
            "cron_name": entry.name, "cron_tz": tz}
    from ..worker import lookup

    registered = lookup(entry.worker)
    base: dict[str, Any] = {k: v for k, v in spec.items() if k != "meta"}
    if registered is not None:
        return registered.new(entry.args, meta=meta, **base)
    return Job.new(entry.worker, entry.args, meta=meta, **base)


class Cron(Plugin):
    name = "cron"

    def __init__(self, crontab: Iterable[tuple[Any, ...]], *, timezone: str = "Etc/UTC") -> None:
        super().__init__()
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"cron: unknown time zone {timezone!r}") from None
        self.timezone = timezone
        self.entries: list[Entry] = []
        for item in crontab:
            if not isinstance(item, tuple) or len(item) not in (2, 3):
                raise ValueError(f"cron: expected (expression, worker) or (expression, worker, opts), got {item!r}")
            expr, worker = item[0], item[1]
            opts: Mapping[str, Any] = item[2] if len(item) == 3 else {}
            opts = dict(opts)
            args = opts.pop("args", {})
            entry = Entry(cron.parse(expr), worker_name(worker), args, opts)
            _job(entry, timezone)  # validates the options now, not at the first run
            self.entries.append(entry)

    def due(self, at: datetime) -> list[Entry]:
        local = at.astimezone(self.zone)
        return [e for e in self.entries if e.expression.now(local)]

    async def tick(self, ctx: Context, conn: psycopg.AsyncConnection[Any]) -> None:
        due = self.due(datetime.now(timezone.utc))
        if due:
            async with conn.transaction():
                for entry in due:
                    await run_async(conn, insert_plan(ctx.prefix, _job(entry, self.timezone)))
        # Reboot entries fire once, then leave the crontab (cron.ex discard_reboots/1).
        self.entries = [e for e in self.entries if not e.expression.reboot]

    async def pause(self, first: bool) -> None:
        """The top of each minute, starting with the next one (cron.ex init), so a node
        restarting mid-minute does not insert that minute's jobs twice."""
        now = datetime.now(timezone.utc)
        await asyncio.sleep(60 - now.second - now.microsecond / 1e6 + 0.001)
