"""One producer per queue (lib/oban/queue/producer.ex): demand, dispatch, pause/resume/scale,
pkill, graceful stop.

Each cycle is a single statement that records the outcomes of finished jobs and fetches work for
the slots they free (`queries/ack_fetch_jobs.sql`). A slot is reused only after its job's ack has
committed, so a crash can lose no outcome: a job is either acked or still `executing`, and the
lifeline returns the latter to the queue. Completions that arrive while a cycle is in flight are
acked together by the next one, which is where batching comes from without any delay timer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timezone
from concurrent.futures import Executor
from typing import Any

import psycopg
from psycopg.types.json import set_json_loads

import orjson

from .db import prefixed, run_async
from .engine import Ack, ack_fetch_plan
from .executor import Outcome, execute, log_outcome
from .job import Job

log = logging.getLogger(__name__)


def iso_now() -> str:
    """`DateTime.utc_now()` as Jason writes it: ISO 8601, microseconds, Z."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Producer:
    def __init__(
        self,
        *,
        url: str,
        prefix: str,
        queue: str,
        limit: int,
        node: str,
        threads: Executor,
        poll_interval: float = 1.0,
        paused: bool = False,
        on_outcome: Any = None,
        lanes: int = 2,
    ) -> None:
        if limit < 1:
            raise ValueError(f"queue {queue!r}: limit must be at least 1, got {limit}")
        self.url = url
        self.prefix = prefix
        self.queue = queue
        self.limit = limit
        self.node = node
        # A version-8 UUID marks the producer as oban_bridge's, so the lifeline can tell when it
        # is gone (queries/rescue_orphans.sql); Elixir producers use version 4.
        self.uuid = str(uuid.UUID(int=(uuid.uuid4().int & ~(0xF << 76)) | (0x8 << 76)))
        self.paused = paused
        self.poll_interval = poll_interval
        self.threads = threads
        self.on_outcome = on_outcome
        self.running: dict[int, asyncio.Task[None]] = {}
        self._pending: list[Ack] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.lanes = max(1, lanes)
        self._conns: list[psycopg.AsyncConnection[Any]] = []
        self._inflight_acks = 0
        self._reserved = 0
        self._delay = 0.05
        self.started = asyncio.Event()
        self.started_at = iso_now()
        self.shutdown_started_at: str | None = None

    def check(self, name: str) -> dict[str, Any]:
        """The producer's meta as basic.ex init/check_meta/refresh keep it, for gossip."""
        return {
            "limit": self.limit,
            "name": name,
            "node": self.node,
            "paused": self.paused,
            "queue": self.queue,
            "refresh_interval": 60_000,
            "running": sorted(self.running),
            "shutdown_started_at": self.shutdown_started_at,
            "started_at": self.started_at,
            "updated_at": iso_now(),
            "uuid": self.uuid,
        }

    # --- control, from signals or the API ---------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.wake()

    @property
    def _batch_floor(self) -> int:
        """The smallest cycle worth a second round trip while one is in flight (see _loop)."""
        return max(1, self.limit // (4 * self.lanes))

    def scale(self, limit: int) -> None:
        if limit >= 1:
            self.limit = limit
            self.wake()

    def pkill(self, job_id: int) -> bool:
        """Stop a running job without acking it: whoever asked already wrote its new state."""
        task = self.running.get(job_id)
        if task is None:
            return False
        task.cancel()
        return True

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"oban-producer-{self.queue}")

    async def stop(self, grace: float) -> None:
        """Stop fetching, give running jobs `grace` seconds, ack what finished.

        Jobs still running after the grace period are cancelled and left `executing` for the
        lifeline to rescue, as Elixir leaves them on shutdown: never lost.
        """
        self._stopping = True
        self.paused = True  # basic.ex shutdown/2: paused, with shutdown_started_at set
        self.shutdown_started_at = iso_now()
        self.wake()
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=grace)
        for task in list(self.running.values()):
            if not task.done():
                task.cancel()
        self.wake()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=max(grace, 5.0))
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        set_json_loads(orjson.loads, conn)
        await conn.execute(prefixed("producer_presence", self.prefix), {"uuid": self.uuid})
        return conn

    def _demand(self, acks: int) -> int:
        """Slots a new cycle may fill: the limit, less jobs holding a slot (running, or finished
        with an ack not yet committed), less what cycles in flight may already bring back. Acks in
        flight and this cycle's own acks free their slots in the very statement that fetches."""
        if self.paused or self._stopping:
            return 0
        held = len(self.running) - self._inflight_acks - acks
        return max(0, self.limit - held - self._reserved)

    async def _loop(self) -> None:
        """Start a cycle whenever there are acks to write or free slots, keeping up to `lanes`
        cycles in flight on separate connections (FOR UPDATE SKIP LOCKED keeps their fetches
        apart), so PostgreSQL works on one while Python handles the other's results."""
        idle = [None] * self.lanes
        cycles: set[asyncio.Task[None]] = set()
        first = True
        while True:
            if not first:
                waiter = asyncio.ensure_future(self._wake.wait())
                done, _ = await asyncio.wait({waiter, *cycles}, timeout=self.poll_interval,
                                             return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            first = False
            self._wake.clear()
            if self._stopping and not self.running and not self._pending and not cycles:
                break
            while idle:
                acks, demand = self._pending, self._demand(len(self._pending))
                if not acks and demand == 0:
                    break
                if len(idle) < self.lanes and len(acks) + demand < self._batch_floor:
                    # A cycle is in flight and will wake us when it returns: let a few more acks
                    # gather rather than spend a round trip on one or two. Slots still free only
                    # when their acks commit, so this costs latency, never safety.
                    break
                self._pending = []
                lane = idle.pop()
                task = asyncio.create_task(self._cycle(lane, acks, demand, idle))
                cycles.add(task)
                task.add_done_callback(cycles.discard)
            self.started.set()
        for task in list(cycles):
            await task
        for conn in self._conns:
            await conn.close()
        self._conns.clear()

    async def _cycle(self, lane: psycopg.AsyncConnection[Any] | None, acks: list[Ack], demand: int,
                     idle: list[Any]) -> None:
        self._inflight_acks += len(acks)
        self._reserved += demand
        conn = lane
        try:
            if conn is None or conn.closed:
                conn = await self._connect()
                self._conns.append(conn)
            rows = await run_async(
                conn, ack_fetch_plan(self.prefix, self.queue, acks, demand, [self.node, self.uuid]))
        except psycopg.Error as exc:
            # Nothing was written (the statement is its own transaction): keep the acks and the
            # slots, back off, and try again on a new connection.
            self._pending = acks + self._pending
            log.warning("producer cycle failed, retrying",
                        extra={"queue": self.queue, "error": str(exc), "retry_in": self._delay})
            if conn is not None:
                if conn in self._conns:
                    self._conns.remove(conn)
                await conn.close()
            conn = None
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, 5.0)
            return
        else:
            self._delay = 0.05
            for ack in acks:
                self.running.pop(ack.id, None)
            for row in rows:
                job = Job.from_tuple(row)
                assert job.id is not None
                self.running[job.id] = asyncio.create_task(self._perform(job))
        finally:
            self._inflight_acks -= len(acks)
            self._reserved -= demand
            idle.append(conn)
            self._wake.set()

    async def _perform(self, job: Job) -> None:
        try:
            outcome = await execute(job, self.threads)
        except asyncio.CancelledError:
            # pkill or shutdown: no ack. The slot frees now; the row keeps whatever state the
            # canceller wrote, or stays executing for the lifeline.
            log.info("job stopped without ack", extra={"job_id": job.id, "queue": self.queue, "worker": job.worker})
            assert job.id is not None
            self.running.pop(job.id, None)
            self._wake.set()
            return
        log_outcome(outcome)
        if self.on_outcome is not None:
            self._notify_outcome(outcome)
        self._pending.append(outcome.ack)
        self._wake.set()

    def _notify_outcome(self, outcome: Outcome) -> None:
        try:
            self.on_outcome(outcome)
        except Exception:  # noqa: BLE001 - a metrics hook must never fail a job
            log.exception("on_outcome hook failed")
