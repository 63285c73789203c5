"""The two clients: `AsyncObanBridge` (the core) and `ObanBridge`, its sync twin.

They share every plan in `insert.py`/`schema.py` and differ only in how they drive it, so each
method of one exists, with the same name and meaning, on the other. Both accept a caller's own
psycopg connection (`conn=`), so a job commits or rolls back with the caller's transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, AsyncIterator, TypeVar

import orjson
import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from . import schema
from .config import DEFAULT_NAME, DEFAULT_PREFIX, Config, default_node, mask_password
from .db import Plan, async_caller_scope, caller_scope, run_async, run_sync
from .errors import DatabaseUnavailableError, SchemaMissingError
from .insert import insert_all_plan, insert_plan, settle_plan, unique_lock_plan
from .job import Job, check

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0


def _configure_sync(conn: psycopg.Connection[Any]) -> None:
    set_json_loads(orjson.loads, conn)


async def _configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_loads(orjson.loads, conn)


class _Base:
    def __init__(
        self,
        database_url: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        name: str = DEFAULT_NAME,
        node: str | None = None,
        pool_size: int = 10,
        unique_settle_timeout: float = 2.0,
        config: Config | None = None,
    ) -> None:
        self.config = config or Config(
            database_url=database_url, prefix=prefix, name=name, node=node or default_node()
        )
        self.pool_size = pool_size
        self.unique_settle_timeout = unique_settle_timeout
        self._url: str | None = None

    @property
    def prefix(self) -> str:
        return self.config.prefix

    def _resolve_url(self) -> str:
        if self._url is None:
            self._url = self.config.resolved_url()
        return self._url

    def _probe(self) -> str:
        """Connect once before opening a pool: a wrong URL fails at once with the server's own
        reason, instead of after the pool's retries."""
        url = self._resolve_url()
        try:
            psycopg.connect(url, connect_timeout=int(CONNECT_TIMEOUT)).close()
        except psycopg.Error as exc:
            raise self._unavailable(exc) from None
        return url

    def _unavailable(self, exc: BaseException) -> DatabaseUnavailableError:
        url = mask_password(self._url or "")
        reason = mask_password(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        return DatabaseUnavailableError(f"cannot connect to PostgreSQL at {url}: {reason}")

    def _translate(self, exc: psycopg.Error) -> Exception:
        if isinstance(exc, psycopg.errors.UndefinedTable):
            return SchemaMissingError(self.prefix)
        if isinstance(exc, psycopg.OperationalError):
            return self._unavailable(exc)
        return exc


class AsyncObanBridge(_Base):
    """Async client. `async with AsyncObanBridge(url) as bridge: await bridge.insert(job)`."""

    _pool: AsyncConnectionPool | None = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        url = await asyncio.to_thread(self._probe)
        pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=self.pool_size,
            kwargs={"autocommit": True},
            configure=_configure_async,
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout as exc:
            await pool.close()
            raise self._unavailable(exc) from None
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def __aenter__(self) -> AsyncObanBridge:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        await self.open()
        assert self._pool is not None
        async with self._pool.connection() as conn:
            yield conn

    async def _transaction(self, plan: Plan[T], conn: psycopg.AsyncConnection[Any] | None) -> T:
        try:
            if conn is not None:
                async with async_caller_scope(conn):
                    return await run_async(conn, plan)
            async with self.connection() as own, own.transaction():
                return await run_async(own, plan)
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    async def insert(self, job: Job, *, conn: psycopg.AsyncConnection[Any] | None = None) -> Job:
        check(job)
        if conn is not None or job.unique is None:
            return await self._transaction(insert_plan(self.prefix, job), conn)
        # Our own connection: hold the unique lock across commit and settle (see settle_plan).
        try:
            async with self.connection() as own:
                await run_async(own, unique_lock_plan(self.prefix, job))
                try:
                    async with own.transaction():
                        inserted = await run_async(own, insert_plan(self.prefix, job, locked=True))
                    return await run_async(own, settle_plan(self.prefix, inserted, self.unique_settle_timeout))
                finally:
                    await run_async(own, unique_lock_plan(self.prefix, job, release=True))
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    async def insert_all(
        self, jobs: Iterable[Job], *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> list[Job]:
        batch = [check(j) for j in jobs]
        if not batch:
            return []
        return await self._transaction(insert_all_plan(self.prefix, batch), conn)

    async def migrate(self, version: int = schema.CURRENT_VERSION) -> schema.MigrationResult:
        return await self._transaction(schema.migrate_plan(self.prefix, version), None)

    async def verify(self) -> schema.Verification:
        return await self._transaction(schema.verify_plan(self.prefix), None)


class ObanBridge(_Base):
    """Sync client, the mirror of `AsyncObanBridge` for code without an event loop."""

    _pool: ConnectionPool | None = None

    def open(self) -> None:
        if self._pool is not None:
            return
        pool = ConnectionPool(
            self._probe(),
            min_size=1,
            max_size=self.pool_size,
            kwargs={"autocommit": True},
            configure=_configure_sync,
            open=False,
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout as exc:
            pool.close()
            raise self._unavailable(exc) from None
        self._pool = pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> ObanBridge:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        self.open()
        assert self._pool is not None
        with self._pool.connection() as conn:
            yield conn

    def _transaction(self, plan: Plan[T], conn: psycopg.Connection[Any] | None) -> T:
        try:
            if conn is not None:
                with caller_scope(conn):
                    return run_sync(conn, plan)
            with self.connection() as own, own.transaction():
                return run_sync(own, plan)
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def insert(self, job: Job, *, conn: psycopg.Connection[Any] | None = None) -> Job:
        check(job)
        if conn is not None or job.unique is None:
            return self._transaction(insert_plan(self.prefix, job), conn)
        # Our own connection: hold the unique lock across commit and settle (see settle_plan).
        try:
            with self.connection() as own:
                run_sync(own, unique_lock_plan(self.prefix, job))
                try:
                    with own.transaction():
                        inserted = run_sync(own, insert_plan(self.prefix, job, locked=True))
                    return run_sync(own, settle_plan(self.prefix, inserted, self.unique_settle_timeout))
                finally:
                    run_sync(own, unique_lock_plan(self.prefix, job, release=True))
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def insert_all(self, jobs: Iterable[Job], *, conn: psycopg.Connection[Any] | None = None) -> list[Job]:
        batch = [check(j) for j in jobs]
        if not batch:
            return []
        return self._transaction(insert_all_plan(self.prefix, batch), conn)

    def migrate(self, version: int = schema.CURRENT_VERSION) -> schema.MigrationResult:
        return self._transaction(schema.migrate_plan(self.prefix, version), None)

    def verify(self) -> schema.Verification:
        return self._transaction(schema.verify_plan(self.prefix), None)
