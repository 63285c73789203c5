"""The two clients: `AsyncObanBridge` (the core) and `ObanBridge`, its sync twin.

They share every plan in `insert.py`/`schema.py` and differ only in how they drive it, so each
method of one exists, with the same name and meaning, on the other. Both accept a caller's own
psycopg connection (`conn=`), so a job commits or rolls back with the caller's transaction.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, AsyncIterator, TypeVar

import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from . import jsonc, tracing
from . import schema
from .config import DEFAULT_NAME, DEFAULT_PREFIX, Config, default_node, mask_password
from .db import Plan, async_caller_scope, caller_scope, run_async, run_sync
from .errors import DatabaseUnavailableError, ObanBridgeError, SchemaMissingError
from .insert import insert_all_plan, insert_plan, settle_plan, unique_lock_plan
from .job import Job, check
from .limits import QueueOptions
from .loop import new_event_loop
from .plugins.base import Plugin
from .executor import Outcome
from .plugins.cron import Cron
from .runtime import Runtime, default_plugins, parse_queues
from .testing import mode as testing_modes

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0


def _configure_sync(conn: psycopg.Connection[Any]) -> None:
    set_json_loads(jsonc.loads, conn)


async def _configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_loads(jsonc.loads, conn)


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
        queues: str | Mapping[str, int | Mapping[str, Any] | QueueOptions] | None = None,
        plugins: list[Plugin] | None = None,
        crontab: Iterable[tuple[Any, ...]] | None = None,
        cron_timezone: str = "Etc/UTC",
        on_event: Callable[[Outcome], None] | None = None,
        poll_interval: float = 1.0,
        shutdown_grace: float = 15.0,
        config: Config | None = None,
        testing: str | None = None,
    ) -> None:
        self.config = config or Config(
            database_url=database_url, prefix=prefix, name=name, node=node or default_node()
        )
        self.pool_size = pool_size
        self.unique_settle_timeout = unique_settle_timeout
        self.queues = parse_queues(queues) if queues is not None else {}
        self.plugins = list(default_plugins() if plugins is None else plugins)
        if crontab is not None:
            self.plugins.append(Cron(crontab, timezone=cron_timezone))
        self.on_event = on_event
        self.poll_interval = poll_interval
        self.shutdown_grace = shutdown_grace
        self._url: str | None = None
        self._runtime: Runtime | None = None
        # "manual": queues and plugins never start; "inline": inserts run the job at once and
        # nothing touches a database (oban_bridge.testing). None: a real client.
        self.testing = testing_modes.check(testing)

    @property
    def testing_mode(self) -> str | None:
        """The testing mode now: the one built with, or `testing_mode(...)`'s inside its block."""
        return testing_modes.effective(self.testing)

    def _inline(self) -> bool:
        return self.testing is not None and testing_modes.effective(self.testing) == "inline"

    def _no_database(self) -> ObanBridgeError:
        return ObanBridgeError("this client is in testing='inline' mode: jobs run at insert and there is no "
                               "database (use testing='manual' to read and drain the table)")

    def _new_runtime(self) -> Runtime:
        if not self.queues:
            raise ValueError("no queues to run: pass queues={'name': limit} or queues='name:limit,...'")
        return Runtime(
            url=self._resolve_url(),
            prefix=self.prefix,
            name=self.config.name,
            node=self.config.node,
            queues=self.queues,
            plugins=self.plugins,
            poll_interval=self.poll_interval,
            on_event=self.on_event,
        )

    def _limited(self) -> list[str]:
        return [name for name, options in self.queues.items() if options.limited]

    @property
    def runtime(self) -> Runtime | None:
        return self._runtime

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
        if self._pool is not None or self._inline():
            return
        url = await asyncio.to_thread(self._probe)
        pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=self.pool_size,
            kwargs={"autocommit": True},
            configure=_configure_async,
            # A connection the server dropped (restart, failover) is replaced on checkout rather
            # than handed to an insert that would then fail.
            check=AsyncConnectionPool.check_connection,
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
        if self.queues:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        await self.close()

    async def preflight(self) -> int:
        """Check what `start` needs without starting anything: the database answers, Oban's schema
        is there, and limited queues have oban_bridge's limits table. Returns the schema version."""
        await self.open()
        return await self._transaction(schema.ready_plan(self.prefix, self._limited()), None)

    async def start(self) -> None:
        """Start the configured queues, the notifier, the peer and the plugins on this loop."""
        if self.testing is not None:
            return  # manual and inline: queues and plugins never run (jobs run when drained)
        await self.open()
        if self._runtime is None:
            await self.preflight()
            self._runtime = self._new_runtime()
            await self._runtime.start()

    async def stop(self, grace: float | None = None) -> None:
        """Stop fetching; running jobs get `grace` seconds before they are left to the lifeline."""
        if self._runtime is not None:
            runtime, self._runtime = self._runtime, None
            await runtime.stop(self.shutdown_grace if grace is None else grace)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._inline():
            raise self._no_database()
        await self.open()
        assert self._pool is not None
        async with self._pool.connection() as conn:
            yield conn

    async def _transaction(self, plan: Plan[T], conn: psycopg.AsyncConnection[Any] | None) -> T:
        try:
            if conn is not None:
                async with async_caller_scope(conn):
                    return await run_async(conn, plan, caller=True)
            async with self.connection() as own, own.transaction():
                return await run_async(own, plan)
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    async def insert(self, job: Job, *, conn: psycopg.AsyncConnection[Any] | None = None) -> Job:
        check(job)
        if tracing._config is None:
            return await self._insert(job, conn)
        with tracing.insert_span(job) as (span, traced):
            inserted = await self._insert(traced, conn)
            tracing.inserted(span, inserted)
            return inserted

    async def _insert(self, job: Job, conn: psycopg.AsyncConnection[Any] | None) -> Job:
        if self._inline():
            from .testing import inline

            return await inline.insert_async(job, self.config.node)
        if conn is None and job.unique is None:
            # One autocommit statement (insert + notify): no BEGIN/COMMIT round trips.
            try:
                async with self.connection() as own:
                    return await run_async(own, insert_plan(self.prefix, job))
            except psycopg.Error as exc:
                raise self._translate(exc) from exc
        if conn is not None:
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
        if tracing._config is None or not batch:
            return await self._insert_all(batch, conn)
        with tracing.insert_all_span(batch) as traced:
            return await self._insert_all(traced, conn)

    async def _insert_all(self, batch: list[Job], conn: psycopg.AsyncConnection[Any] | None) -> list[Job]:
        if self._inline():
            from .testing import inline

            return [await inline.insert_async(job, self.config.node) for job in batch]
        if not batch:
            return []
        return await self._transaction(insert_all_plan(self.prefix, batch), conn)

    async def migrate(self, version: int = schema.CURRENT_VERSION, *, limits: bool = False) -> schema.MigrationResult:
        """`limits=True` also creates oban_bridge's own table for rate limits (limits.py)."""
        return await self._transaction(schema.migrate_plan(self.prefix, version, limits=limits), None)

    async def verify(self) -> schema.Verification:
        return await self._transaction(schema.verify_plan(self.prefix), None)


class ObanBridge(_Base):
    """Sync client, the mirror of `AsyncObanBridge` for code without an event loop."""

    _pool: ConnectionPool | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _loop_thread: threading.Thread | None = None

    def open(self) -> None:
        if self._pool is not None or self._inline():
            return
        pool = ConnectionPool(
            self._probe(),
            min_size=1,
            max_size=self.pool_size,
            kwargs={"autocommit": True},
            configure=_configure_sync,
            check=ConnectionPool.check_connection,
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
        if self.queues:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.close()

    def preflight(self) -> int:
        """Check what `start` needs without starting anything: the database answers, Oban's schema
        is there, and limited queues have oban_bridge's limits table. Returns the schema version."""
        self.open()
        return self._transaction(schema.ready_plan(self.prefix, self._limited()), None)

    def start(self) -> None:
        """Run the configured queues on an event loop in a background thread; returns at once."""
        if self._loop_thread is not None or self.testing is not None:
            return  # manual and inline: queues and plugins never run (jobs run when drained)
        self.preflight()
        runtime = self._new_runtime()
        loop = new_event_loop()  # uvloop when installed (loop.py)
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(runtime.start())
            except BaseException as exc:  # handed to the caller of start()
                failure.append(exc)
                loop.run_until_complete(runtime.stop(0))
                loop.close()
                return
            finally:
                ready.set()
            loop.run_forever()
            loop.close()

        thread = threading.Thread(target=serve, name="oban-bridge-runtime", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        self._runtime, self._loop, self._loop_thread = runtime, loop, thread

    def stop(self, grace: float | None = None) -> None:
        if self._loop_thread is None or self._loop is None or self._runtime is None:
            return
        loop, runtime, thread = self._loop, self._runtime, self._loop_thread
        future = asyncio.run_coroutine_threadsafe(runtime.stop(self.shutdown_grace if grace is None else grace), loop)
        future.result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._runtime = self._loop = self._loop_thread = None

    def run(self, *, signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        """Start and block until one of `signals`, then stop gracefully (the CLI's `start`): running
        jobs get `shutdown_grace` seconds; a second signal ends the grace at once, leaving what
        still runs `executing` for the lifeline."""
        stop = threading.Event()

        def on_signal(*_: Any) -> None:
            if stop.is_set():
                loop, runtime = self._loop, self._runtime
                if loop is not None and runtime is not None:
                    sys.stderr.write("stopping now: jobs still running are left for the lifeline\n")
                    sys.stderr.flush()
                    loop.call_soon_threadsafe(runtime.hurry)
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in signals}
        try:
            self.start()
            stop.wait()
            running = self._runtime.running() if self._runtime is not None else 0
            if running:
                sys.stderr.write(f"stopping: waiting up to {self.shutdown_grace:g} s for {running} running "
                                 f"job(s) (Ctrl-C again to stop now)\n")
            else:
                sys.stderr.write("stopping\n")
            sys.stderr.flush()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if self._inline():
            raise self._no_database()
        self.open()
        assert self._pool is not None
        with self._pool.connection() as conn:
            yield conn

    def _transaction(self, plan: Plan[T], conn: psycopg.Connection[Any] | None) -> T:
        try:
            if conn is not None:
                with caller_scope(conn):
                    return run_sync(conn, plan, caller=True)
            with self.connection() as own, own.transaction():
                return run_sync(own, plan)
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def insert(self, job: Job, *, conn: psycopg.Connection[Any] | None = None) -> Job:
        check(job)
        if tracing._config is None:
            return self._insert(job, conn)
        with tracing.insert_span(job) as (span, traced):
            inserted = self._insert(traced, conn)
            tracing.inserted(span, inserted)
            return inserted

    def _insert(self, job: Job, conn: psycopg.Connection[Any] | None) -> Job:
        if self._inline():
            from .testing import inline

            return inline.insert_sync(job, self.config.node)
        if conn is None and job.unique is None:
            # One autocommit statement (insert + notify): no BEGIN/COMMIT round trips.
            try:
                with self.connection() as own:
                    return run_sync(own, insert_plan(self.prefix, job))
            except psycopg.Error as exc:
                raise self._translate(exc) from exc
        if conn is not None:
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
        if tracing._config is None or not batch:
            return self._insert_all(batch, conn)
        with tracing.insert_all_span(batch) as traced:
            return self._insert_all(traced, conn)

    def _insert_all(self, batch: list[Job], conn: psycopg.Connection[Any] | None) -> list[Job]:
        if self._inline():
            from .testing import inline

            return [inline.insert_sync(job, self.config.node) for job in batch]
        if not batch:
            return []
        return self._transaction(insert_all_plan(self.prefix, batch), conn)

    def migrate(self, version: int = schema.CURRENT_VERSION, *, limits: bool = False) -> schema.MigrationResult:
        """`limits=True` also creates oban_bridge's own table for rate limits (limits.py)."""
        return self._transaction(schema.migrate_plan(self.prefix, version, limits=limits), None)

    def verify(self) -> schema.Verification:
        return self._transaction(schema.verify_plan(self.prefix), None)
