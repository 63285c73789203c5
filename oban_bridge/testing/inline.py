"""`testing="inline"`: an insert runs the job at once, in the caller, and no table is involved
(lib/oban/engines/inline.ex). For unit tests with no database.

The job is run as `perform_job` runs it — unsafe, so an exception the job raises, or its timeout,
is raised from `insert` — and the job comes back as Oban's Inline engine leaves it: `completed`,
`retryable` (an `Error` result, scheduled now), `cancelled`, `discarded`, or for a snooze
`scheduled` at the snooze's end, its attempt left at 1 (Oban 2.23.1). A recorded value is in
`meta` as a node would store it, so `fetch_recorded(job)` reads it.

What inline mode cannot honour, as Oban's docs say of `:inline`: nothing is stored, so unique
jobs are never conflicts, `replace` does nothing, a caller's `conn=` transaction has no say (the
job has already run when it rolls back), a scheduled job runs at once, a chain runs every link
as if first, retries are not run, and no notification is sent. Queues, limits and plugins do not
run. Use `testing="manual"` and the drains for those.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import orjson

from ..errors import ObanBridgeError
from ..job import Job, utc_now
from ..worker import WorkerSpec, lookup
from .attempt import Ran, run_async, run_sync
from .perform import next_id, unsafe


def _prepared(job: Job, node: str) -> Job:
    now = utc_now()
    return replace(job, id=job.id or next_id(), attempt=1, attempted_by=[node], attempted_at=now,
                   scheduled_at=now, inserted_at=job.inserted_at or now)


def _settled(ran: Ran) -> Job:
    """inline.ex complete_job/1, from the ack a node would write."""
    job, ack = ran.attempt.job, ran.outcome.ack
    now = utc_now()
    errors = list(job.errors)
    if ack.error is not None:
        errors.append(orjson.loads(ack.error))
    event = ran.outcome.event
    if event == "success":
        return replace(job, state="completed", completed_at=now, meta={**job.meta, **(ack.meta or {})})
    if event == "snoozed":
        # 2.23.1's complete_job/1 for :snoozed: scheduled, and nothing else changed (the attempt
        # stays 1; max_attempts and meta as they were).
        seconds = 0 if ack.scheduled_at is None else round((ack.scheduled_at - ack.at).total_seconds())
        return replace(job, state="scheduled", scheduled_at=now + timedelta(seconds=seconds))
    if event == "cancelled":
        return replace(job, state="cancelled", cancelled_at=now, errors=errors)
    if event in ("discard", "exhausted"):
        return replace(job, state="discarded", discarded_at=now, errors=errors)
    return replace(job, state="retryable", scheduled_at=now, errors=errors)


def _runnable(job: Job) -> bool:
    return job.state in ("available", "scheduled")


def _spec(job: Job) -> WorkerSpec:
    spec = lookup(job.worker)
    if spec is None:
        # Oban's Inline engine raises too (Worker.from_string, unsafe). A job for an Elixir worker
        # can only be checked in the table: testing="manual" and assert_enqueued.
        raise ObanBridgeError(f"testing='inline' runs jobs at insert, but {job.worker!r} is not a Python worker "
                              "registered in this process; for jobs another node runs, use testing='manual' "
                              "and assert_enqueued")
    return spec


def insert_sync(job: Job, node: str) -> Job:
    if not _runnable(job):
        return job
    ran = run_sync(_prepared(job, node), spec=_spec(job))
    unsafe(ran)
    return _settled(ran)


async def insert_async(job: Job, node: str) -> Job:
    if not _runnable(job):
        return job
    ran = await run_async(_prepared(job, node), spec=_spec(job))
    unsafe(ran)
    return _settled(ran)
