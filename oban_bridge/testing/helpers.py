"""`Testing` and `AsyncTesting`: Oban.Testing's helpers bound to a client, sync and async, name
for name. Build one over the client the code under test inserts with (usually in
`testing="manual"` mode, so nothing runs until drained):

    t = Testing(bridge)
    signup("parker@example.com")
    t.assert_enqueued(worker=SendWelcome, args={"email": "parker@example.com"})
    assert t.drain_queue("mailers") == {"success": 1, "failure": 0, ...}
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import db
from ..job import Job
from ..producer import producer_uuid
from . import attempt as runner
from . import drain as draining
from . import enqueued
from .perform import build_job, perform_job, perform_job_async

if TYPE_CHECKING:
    from ..client import AsyncObanBridge, ObanBridge

WAIT_INTERVAL = 0.01  # Oban.Testing's @wait_interval (10 ms)


def _client(client: Any) -> Any:
    if client is None:
        raise TypeError("this helper reads the table: build Testing(bridge) with the client your code inserts with")
    return client


class Testing:
    """The sync helpers. `client=None` leaves only `build_job` and `perform_job`."""

    __test__ = False  # imported into a test module, pytest must not take it for a test class

    def __init__(self, client: ObanBridge | None = None) -> None:
        from ..client import ObanBridge

        if client is not None and not isinstance(client, ObanBridge):
            raise TypeError(f"Testing takes an ObanBridge (AsyncTesting is for AsyncObanBridge), got {type(client).__name__}")
        self.client = client

    def _run(self, plan: db.Plan[Any]) -> Any:
        with _client(self.client).connection() as conn:
            return db.run_sync(conn, plan)

    # --- workers ----------------------------------------------------------------------------------
    def build_job(self, worker: Any, args: Mapping[str, Any] | None = None, **opts: Any) -> Job:
        return build_job(worker, args, **opts)

    def perform_job(self, worker_or_job: Any, args: Mapping[str, Any] | None = None, **opts: Any) -> Any:
        return perform_job(worker_or_job, args, **opts)

    # --- enqueued jobs ----------------------------------------------------------------------------
    def all_enqueued(self, **filters: Any) -> list[Job]:
        """Enqueued jobs (available, scheduled, suspended) matching every filter, newest first."""
        parsed = enqueued.parse(filters)
        return self._run(enqueued.enqueued_plan(_client(self.client).prefix, parsed))  # type: ignore[no-any-return]

    def assert_enqueued(self, *, timeout: float | None = None, **filters: Any) -> list[Job]:
        """Fail unless a job matching every filter is enqueued (or is within `timeout` seconds);
        the message lists what is enqueued. Returns the matching jobs."""
        enqueued.required(filters, "assert_enqueued")
        parsed = enqueued.parse(filters)
        prefix = _client(self.client).prefix
        deadline = None if not timeout else time.monotonic() + timeout
        while True:
            matched: list[Job] = self._run(enqueued.enqueued_plan(prefix, parsed))
            if matched:
                return matched
            if deadline is None or time.monotonic() >= deadline:
                break
            time.sleep(WAIT_INTERVAL)
        if timeout:
            raise AssertionError(enqueued.expected_within(parsed, timeout))
        raise AssertionError(enqueued.expected_message(parsed, self._run(enqueued.enqueued_plan(prefix, enqueued.everything()))))

    def refute_enqueued(self, *, timeout: float | None = None, **filters: Any) -> None:
        """Fail if a job matching every filter is enqueued (or becomes so within `timeout`)."""
        enqueued.required(filters, "refute_enqueued")
        parsed = enqueued.parse(filters)
        prefix = _client(self.client).prefix
        deadline = None if not timeout else time.monotonic() + timeout
        while True:
            matched: list[Job] = self._run(enqueued.enqueued_plan(prefix, parsed))
            if matched:
                raise AssertionError(enqueued.refuted_message(parsed, matched, timeout))
            if deadline is None or time.monotonic() >= deadline:
                return
            time.sleep(WAIT_INTERVAL)

    # --- draining ---------------------------------------------------------------------------------
    def drain_queue(self, queue: str, *, with_limit: int | None = None, with_recursion: bool = False,
                    with_safety: bool = True, with_scheduled: bool | datetime = False) -> dict[str, int]:
        """Run the queue's available jobs now, in this thread (see testing/drain.py); returns the
        count of each outcome: {"success": 2, "failure": 1, …}."""
        return self._drain(draining.Options.parse(queue, with_limit, with_recursion, with_safety, with_scheduled))

    def drain_jobs(self, *, queue: str | None = None, with_limit: int | None = None, with_recursion: bool = False,
                   with_safety: bool = True, with_scheduled: bool | datetime = False,
                   with_summary: bool = True) -> dict[str, int] | list[Job]:
        """`drain_queue` over every queue (or one), in priority, scheduled_at, id order across
        them; `with_summary=False` returns the jobs that ran, as they ended, in the order they ran."""
        options = draining.Options.parse(queue, with_limit, with_recursion, with_safety, with_scheduled)
        summary = self._drain(options)
        if with_summary:
            return summary
        return self._run(draining.jobs_plan(_client(self.client).prefix, options.ran))  # type: ignore[no-any-return]

    def _drain(self, options: draining.Options) -> dict[str, int]:
        client = _client(self.client)
        prefix, by = client.prefix, [client.config.node, producer_uuid()]
        summary = draining.empty_summary()
        while True:
            before = dict(summary)
            for job_id in self._run(draining.pass_plan(prefix, options)):
                job = self._run(draining.take_plan(prefix, job_id, by))
                if job is None:
                    continue
                ran = runner.run_sync(job, gate=lambda a: self._run(draining.chain_plan(prefix, a)))
                draining.check_unresolved(options, ran)
                self._run(draining.ack_plan(prefix, ran, by))
                options.ran.append(job_id)
                draining.count(summary, ran)
                draining.check_unsafe(options, ran)
            if not options.recursion or summary == before:
                return summary


class AsyncTesting:
    """The async helpers, name for name with `Testing`: `async def` jobs run on the caller's loop,
    plain `def` jobs on a thread (as on a node)."""

    __test__ = False

    def __init__(self, client: AsyncObanBridge | None = None) -> None:
        from ..client import AsyncObanBridge

        if client is not None and not isinstance(client, AsyncObanBridge):
            raise TypeError(f"AsyncTesting takes an AsyncObanBridge (Testing is for ObanBridge), got {type(client).__name__}")
        self.client = client

    async def _run(self, plan: db.Plan[Any]) -> Any:
        async with _client(self.client).connection() as conn:
            return await db.run_async(conn, plan)

    def build_job(self, worker: Any, args: Mapping[str, Any] | None = None, **opts: Any) -> Job:
        return build_job(worker, args, **opts)

    async def perform_job(self, worker_or_job: Any, args: Mapping[str, Any] | None = None, **opts: Any) -> Any:
        return await perform_job_async(worker_or_job, args, **opts)

    async def all_enqueued(self, **filters: Any) -> list[Job]:
        parsed = enqueued.parse(filters)
        return await self._run(enqueued.enqueued_plan(_client(self.client).prefix, parsed))  # type: ignore[no-any-return]

    async def assert_enqueued(self, *, timeout: float | None = None, **filters: Any) -> list[Job]:
        enqueued.required(filters, "assert_enqueued")
        parsed = enqueued.parse(filters)
        prefix = _client(self.client).prefix
        deadline = None if not timeout else time.monotonic() + timeout
        while True:
            matched: list[Job] = await self._run(enqueued.enqueued_plan(prefix, parsed))
            if matched:
                return matched
            if deadline is None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(WAIT_INTERVAL)
        if timeout:
            raise AssertionError(enqueued.expected_within(parsed, timeout))
        everything = await self._run(enqueued.enqueued_plan(prefix, enqueued.everything()))
        raise AssertionError(enqueued.expected_message(parsed, everything))

    async def refute_enqueued(self, *, timeout: float | None = None, **filters: Any) -> None:
        enqueued.required(filters, "refute_enqueued")
        parsed = enqueued.parse(filters)
        prefix = _client(self.client).prefix
        deadline = None if not timeout else time.monotonic() + timeout
        while True:
            matched: list[Job] = await self._run(enqueued.enqueued_plan(prefix, parsed))
            if matched:
                raise AssertionError(enqueued.refuted_message(parsed, matched, timeout))
            if deadline is None or time.monotonic() >= deadline:
                return
            await asyncio.sleep(WAIT_INTERVAL)

    async def drain_queue(self, queue: str, *, with_limit: int | None = None, with_recursion: bool = False,
                          with_safety: bool = True, with_scheduled: bool | datetime = False) -> dict[str, int]:
        return await self._drain(draining.Options.parse(queue, with_limit, with_recursion, with_safety, with_scheduled))

    async def drain_jobs(self, *, queue: str | None = None, with_limit: int | None = None,
                         with_recursion: bool = False, with_safety: bool = True,
                         with_scheduled: bool | datetime = False,
                         with_summary: bool = True) -> dict[str, int] | list[Job]:
        options = draining.Options.parse(queue, with_limit, with_recursion, with_safety, with_scheduled)
        summary = await self._drain(options)
        if with_summary:
            return summary
        return await self._run(draining.jobs_plan(_client(self.client).prefix, options.ran))  # type: ignore[no-any-return]

    async def _drain(self, options: draining.Options) -> dict[str, int]:
        client = _client(self.client)
        prefix, by = client.prefix, [client.config.node, producer_uuid()]
        summary = draining.empty_summary()

        async def gate(a: Any) -> Any:
            return await self._run(draining.chain_plan(prefix, a))

        while True:
            before = dict(summary)
            for job_id in await self._run(draining.pass_plan(prefix, options)):
                job = await self._run(draining.take_plan(prefix, job_id, by))
                if job is None:
                    continue
                ran = await runner.run_async(job, gate=gate)
                draining.check_unresolved(options, ran)
                await self._run(draining.ack_plan(prefix, ran, by))
                options.ran.append(job_id)
                draining.count(summary, ran)
                draining.check_unsafe(options, ran)
            if not options.recursion or summary == before:
                return summary
