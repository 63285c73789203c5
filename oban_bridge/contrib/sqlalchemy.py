"""SQLAlchemy 2 (sync and async sessions, on the `postgresql+psycopg` driver): jobs inserted on the
session's own connection, so they commit or roll back with the session's transaction.

    from oban_bridge.contrib.sqlalchemy import insert, insert_async

    with Session(engine) as session, session.begin():
        session.add(order)
        insert(session, SendReceipt.new({"order": order.id}))    # exists iff the order commits

    async with AsyncSession(engine) as session, session.begin():
        await insert_async(session, SendReceipt.new({...}))

A Session or a Connection (sync or async) is accepted. The insert joins the transaction the session
has begun (or begins one, as any statement on a session does); Elixir nodes hear of the job at
the commit. Inserts need no pool of oban_bridge's own: nothing is opened besides the session.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..client import AsyncObanBridge, ObanBridge
from ..config import DEFAULT_PREFIX
from ..job import Job

_sync: dict[str, ObanBridge] = {}
_async: dict[str, AsyncObanBridge] = {}


def _wrong_driver(raw: Any) -> TypeError:
    return TypeError("oban_bridge needs SQLAlchemy's psycopg 3 driver (create_engine('postgresql+psycopg://…'), "
                     f"create_async_engine('postgresql+psycopg://…')), not {type(raw).__module__}")


def _wrong_kind(session: Any, wanted: str, other: str | None) -> TypeError:
    got = f"{type(session).__module__}.{type(session).__qualname__}"
    return TypeError(f"expected {wanted}, got {got}" + (f" (that one goes with {other})" if other else ""))


def connection(session: Any) -> Any:
    """The psycopg Connection under a sync Session or Connection, in its transaction."""
    import psycopg
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    from sqlalchemy.orm import Session, scoped_session

    if isinstance(session, scoped_session):  # Flask-SQLAlchemy's db.session: this thread's Session
        session = session()
    if not isinstance(session, (Session, Connection)):
        other = "insert_async()/insert_all_async()" if isinstance(session, (AsyncSession, AsyncConnection)) else None
        raise _wrong_kind(session, "a Session or Connection", other)
    conn = session.connection() if isinstance(session, Session) else session
    raw = conn.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise _wrong_driver(raw)
    return raw


async def connection_async(session: Any) -> Any:
    """The psycopg AsyncConnection under an AsyncSession or AsyncConnection, in its transaction."""
    import psycopg
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session
    from sqlalchemy.orm import Session

    if isinstance(session, async_scoped_session):
        session = session()
    if not isinstance(session, (AsyncSession, AsyncConnection)):
        other = "insert()/insert_all()" if isinstance(session, (Session, Connection)) else None
        raise _wrong_kind(session, "an AsyncSession or AsyncConnection", other)
    conn = await session.connection() if isinstance(session, AsyncSession) else session
    raw = (await conn.get_raw_connection()).driver_connection
    if not isinstance(raw, psycopg.AsyncConnection):
        raise _wrong_driver(raw)
    return raw


def _client(prefix: str) -> ObanBridge:
    if prefix not in _sync:
        _sync[prefix] = ObanBridge(prefix=prefix)  # never opened: every insert runs on the session's connection
    return _sync[prefix]


def _aclient(prefix: str) -> AsyncObanBridge:
    if prefix not in _async:
        _async[prefix] = AsyncObanBridge(prefix=prefix)
    return _async[prefix]


def insert(session: Any, job: Job, *, prefix: str = DEFAULT_PREFIX) -> Job:
    return _client(prefix).insert(job, conn=connection(session))


def insert_all(session: Any, jobs: Iterable[Job], *, prefix: str = DEFAULT_PREFIX) -> list[Job]:
    return _client(prefix).insert_all(jobs, conn=connection(session))


async def insert_async(session: Any, job: Job, *, prefix: str = DEFAULT_PREFIX) -> Job:
    return await _aclient(prefix).insert(job, conn=await connection_async(session))


async def insert_all_async(session: Any, jobs: Iterable[Job], *, prefix: str = DEFAULT_PREFIX) -> list[Job]:
    return await _aclient(prefix).insert_all(jobs, conn=await connection_async(session))


__all__ = ["connection", "connection_async", "insert", "insert_all", "insert_all_async", "insert_async"]
