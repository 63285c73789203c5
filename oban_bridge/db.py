"""Database plumbing shared by the async core and the sync facade.

Every operation is written once, as a *plan*: a generator that yields `Query`/`Sleep` steps and
receives each query's rows back. `run_sync` drives a plan on a psycopg `Connection`, `run_async`
on an `AsyncConnection` — the same trick psycopg itself uses for its protocol, and why the two
clients can mirror each other name for name without two copies of the SQL logic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import set_json_loads

from . import jsonc

T = TypeVar("T")

Params = Sequence[Any] | Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Query:
    statement: sql.SQL | sql.Composed
    params: Params = None
    fetch: Literal["all", "none"] = "all"
    rows: Literal["dict", "tuple"] = "dict"


@dataclass(frozen=True, slots=True)
class Copy:
    """COPY … FROM STDIN with `data` already in PostgreSQL's text format."""

    statement: sql.SQL | sql.Composed
    data: str


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Step = Query | Copy | Sleep
Plan = Generator[Step, Any, T]


def _own_json(cur: Any) -> None:
    """A caller's connection (`conn=`) keeps its own loaders (Django's backend loads jsonb as
    text, for its JSONField to decode): our statements on it read jsonb as our own connections
    do, so a job read back on it holds args and meta as mappings, whatever the app set."""
    set_json_loads(jsonc.loads, cur)


def run_sync(conn: psycopg.Connection[Any], plan: Plan[T], *, caller: bool = False) -> T:
    result: Any = None
    try:
        while True:
            step = plan.send(result)
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                result = None
                continue
            if isinstance(step, Copy):
                with conn.cursor() as cur, cur.copy(step.statement) as copy:
                    copy.write(step.data)
                result = None
                continue
            with conn.cursor(row_factory=dict_row if step.rows == "dict" else tuple_row) as cur:
                if caller:
                    _own_json(cur)
                cur.execute(step.statement, step.params)
                result = cur.fetchall() if step.fetch == "all" and cur.description else None
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def run_async(conn: psycopg.AsyncConnection[Any], plan: Plan[T], *, caller: bool = False) -> T:
    result: Any = None
    try:
        while True:
            step = plan.send(result)
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                result = None
                continue
            if isinstance(step, Copy):
                async with conn.cursor() as cur, cur.copy(step.statement) as copy:
                    await copy.write(step.data)
                result = None
                continue
            async with conn.cursor(row_factory=dict_row if step.rows == "dict" else tuple_row) as cur:
                if caller:
                    _own_json(cur)
                await cur.execute(step.statement, step.params)
                result = await cur.fetchall() if step.fetch == "all" and cur.description else None
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def caller_scope(conn: psycopg.Connection[Any]) -> AbstractContextManager[Any]:
    """Run inside the caller's transaction when there is one.

    A connection in autocommit mode has no transaction to join, so the work gets its own (the
    unique check needs its advisory lock held until the insert commits). Otherwise statements run
    in the caller's implicit transaction and commit or roll back with it.
    """
    if not isinstance(conn, psycopg.Connection):
        raise TypeError(_wrong_conn(conn, "ObanBridge", "psycopg.Connection (psycopg.connect(...))",
                                    "AsyncObanBridge"))
    return conn.transaction() if conn.autocommit else nullcontext()


def _wrong_conn(conn: Any, client: str, wanted: str, other: str) -> str:
    """psycopg's own TypeError for a sync/async mix names neither client nor the fix."""
    got = type(conn).__module__ + "." + type(conn).__qualname__
    hint = f" (that one goes with {other})" if isinstance(
        conn, (psycopg.Connection, psycopg.AsyncConnection)) else ""
    return f"conn= for {client} must be a {wanted}, got {got}{hint}"


def async_caller_scope(conn: psycopg.AsyncConnection[Any]) -> AbstractAsyncContextManager[Any]:
    if not isinstance(conn, psycopg.AsyncConnection):
        raise TypeError(_wrong_conn(conn, "AsyncObanBridge",
                                    "psycopg.AsyncConnection (await psycopg.AsyncConnection.connect(...))",
                                    "ObanBridge"))
    if conn.autocommit:
        return conn.transaction()
    return _async_null()


class _async_null:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def load_query(name: str) -> str:
    """Read `oban_bridge/queries/<name>.sql`: one statement per file, reviewed on its own."""
    return resources.files("oban_bridge.queries").joinpath(f"{name}.sql").read_text()


_query_cache: dict[str, sql.SQL] = {}


_composed_cache: dict[tuple[str, str], sql.Composed] = {}


def prefixed(name: str, prefix: str, **extra: sql.Composable) -> sql.Composed:
    """A query from `queries/` with `{prefix}` bound to the quoted schema identifier. Without
    extra parts the result is kept: composing costs ~20 µs, and producers send one every cycle."""
    if not extra:
        composed = _composed_cache.get((name, prefix))
        if composed is not None:
            return composed
    template = _query_cache.get(name)
    if template is None:
        template = _query_cache[name] = sql.SQL(load_query(name))
    composed = template.format(prefix=sql.Identifier(prefix), **extra)
    if not extra and len(_composed_cache) < 1024:
        _composed_cache[(name, prefix)] = composed
    return composed
