"""Oban's notification wire format (lib/oban/notifier.ex, lib/oban/notifiers/postgres.ex).

Channels are `<prefix>.oban_<name>`; payloads are compact JSON, and a payload over 512 bytes is
sent as `Z:` + base64(gzip(json)). Decoding also accepts the legacy bare base64 gzip (`H4sI…`)
that older Oban and oban-py 0.7 still send.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from typing import Any

import orjson

COMPRESS_OVER = 512


def channel(prefix: str, name: str) -> str:
    return f"{prefix}.oban_{name}"


def encode(payload: Any) -> str:
    # Elixir maps of up to 32 keys are ordered by key, so Jason writes them sorted.
    data = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    if len(data) <= COMPRESS_OVER:
        return data.decode()
    return "Z:" + base64.b64encode(gzip.compress(data)).decode()


def decode(payload: str) -> Any:
    """Raises ValueError on anything that is not one of Oban's encodings."""
    try:
        if payload.startswith("Z:"):
            data = gzip.decompress(base64.b64decode(payload[2:], validate=True))
        elif payload.startswith("H4sI"):
            data = gzip.decompress(base64.b64decode(payload, validate=True))
        else:
            data = payload.encode()
    except (binascii.Error, OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"malformed compressed notification payload: {exc}") from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"malformed notification payload: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Listening: one dedicated connection LISTENs on the prefixed channels and hands decoded payloads
# to subscribers. When it drops, it reconnects with backoff; producers keep polling meanwhile, so
# jobs flow (more slowly) while the notifier is down, as with Oban's Stager in local mode.

import asyncio  # noqa: E402
import logging  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from .tasks import cancel  # noqa: E402

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]


class Notifier:
    def __init__(self, url: str, prefix: str, *, reconnect_max: float = 5.0) -> None:
        self.url = url
        self.prefix = prefix
        self.reconnect_max = reconnect_max
        self._handlers: dict[str, list[Handler]] = {}
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.connected = asyncio.Event()
        self.connections = 0  # connects so far: a listener can tell it may have missed messages

    def subscribe(self, name: str, handler: Handler) -> None:
        self._handlers.setdefault(name, []).append(handler)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"oban-notifier-{self.prefix}")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    self._conn = conn
                    for name in self._handlers:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel(self.prefix, name))))
                    self.connections += 1
                    self.connected.set()
                    delay = 0.05
                    async for note in conn.notifies():
                        await self._dispatch(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep listening whatever broke
                log.warning("notifier connection lost, reconnecting", extra={"error": str(exc), "retry_in": delay})
            finally:
                self.connected.clear()
                self._conn = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max)

    async def _dispatch(self, chan: str, payload: str) -> None:
        name = chan.removeprefix(f"{self.prefix}.oban_")
        handlers = self._handlers.get(name)
        if not handlers:
            return
        try:
            message = decode(payload)
        except ValueError as exc:
            log.warning("ignored malformed notification", extra={"channel": chan, "error": str(exc)})
            return
        if not isinstance(message, dict):
            log.warning("ignored notification that is not an object", extra={"channel": chan})
            return
        for handler in handlers:
            try:
                result = handler(message)
                if result is not None:
                    await result
            except Exception:  # noqa: BLE001
                log.exception("notification handler failed", extra={"channel": chan})


async def notify(conn: psycopg.AsyncConnection[Any], prefix: str, name: str, payloads: list[Any]) -> None:
    """Send payloads the way lib/oban/notifiers/postgres.ex does (one pg_notify each)."""
    if payloads:
        await conn.execute(
            "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
            [channel(prefix, name), [encode(p) for p in payloads]],
        )
