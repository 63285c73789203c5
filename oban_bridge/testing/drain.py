"""Draining: run what a queue holds, now, in the caller (lib/oban/queues/drainer.ex).

A pass takes the jobs available when it starts, in a producer's order, and runs them one after
another; each outcome is written as a node writes it (the same ack), before the next job runs,
so a job that enqueues another, or a chain's next link, sees what came before. Options, with
Oban's defaults:

- `with_limit` — at most this many jobs per pass (default: all);
- `with_recursion` — pass again while a pass changed anything, so jobs inserted by the jobs run
  are run too (default False);
- `with_safety` — record failures as a node does (default True); False: the first exception (or
  timeout) is raised once its job's outcome is written;
- `with_scheduled` — make scheduled and retryable jobs available first: True for all of them, a
  datetime for those due by then (default False).

The summary counts outcomes under Oban's names: success, failure, snoozed, cancelled, discard
(a job out of attempts counts as discard, as in drainer.ex).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..db import Plan, Query, prefixed
from ..engine import ack_fetch_plan, db_now
from ..executor import Attempt, chain_check_plan, early_result
from ..job import Job, to_db_timestamp
from ..pro import chain as chain_mod
from ..pro.options import DEADLINE_EXCEEDED
from ..worker import Cancel
from .attempt import Ran
from .perform import unsafe

INFINITE = 100_000_000  # drainer.ex's @infinite

EVENTS = {"success": "success", "failure": "failure", "snoozed": "snoozed", "cancelled": "cancelled",
          "discard": "discard", "exhausted": "discard"}


def empty_summary() -> dict[str, int]:
    return {"cancelled": 0, "discard": 0, "failure": 0, "snoozed": 0, "success": 0}


@dataclass(slots=True)
class Options:
    queue: str | None  # None: every queue
    limit: int
    recursion: bool
    safety: bool
    scheduled: bool | datetime
    ran: list[int] = field(default_factory=list)  # job ids in the order they ran

    @classmethod
    def parse(cls, queue: str | None, with_limit: int | None, with_recursion: bool, with_safety: bool,
              with_scheduled: bool | datetime) -> Options:
        if queue is not None and (not isinstance(queue, str) or not queue):
            raise TypeError(f"queue: expected a queue name, got {queue!r}")
        if with_limit is not None and (isinstance(with_limit, bool) or not isinstance(with_limit, int)
                                       or with_limit < 1):
            raise TypeError(f"with_limit: expected a positive integer, got {with_limit!r}")
        for name, flag in (("with_recursion", with_recursion), ("with_safety", with_safety)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name}: expected True or False, got {flag!r}")
        if not isinstance(with_scheduled, (bool, datetime)):
            raise TypeError(f"with_scheduled: expected True, False or a datetime, got {with_scheduled!r}")
        return cls(queue, with_limit or INFINITE, with_recursion, with_safety, with_scheduled)


def stage_plan(prefix: str, options: Options) -> Plan[None]:
    if options.scheduled is False:
        return None
    until = None if isinstance(options.scheduled, bool) else to_db_timestamp(options.scheduled)
    yield Query(prefixed("testing_stage", prefix), {"queue": options.queue, "until": until}, fetch="none")
    return None


def pass_plan(prefix: str, options: Options) -> Plan[list[int]]:
    """The ids one pass runs, staging scheduled jobs first when asked."""
    yield from stage_plan(prefix, options)
    rows = yield Query(prefixed("testing_drain_ids", prefix), {"queue": options.queue, "limit": options.limit},
                       rows="tuple")
    return [row[0] for row in rows]


def take_plan(prefix: str, job_id: int, attempted_by: list[str]) -> Plan[Job | None]:
    rows = yield Query(prefixed("testing_drain_take", prefix),
                       {"id": job_id, "now": db_now(), "attempted_by": attempted_by}, rows="tuple")
    return Job.from_tuple(rows[0]) if rows else None


def ack_plan(prefix: str, ran: Ran, attempted_by: list[str]) -> Plan[None]:
    yield from ack_fetch_plan(prefix, ran.attempt.job.queue, [ran.outcome.ack], 0, attempted_by)
    return None


def jobs_plan(prefix: str, ids: list[int]) -> Plan[list[Job]]:
    rows = yield Query(prefixed("testing_jobs", prefix), {"ids": ids}, rows="tuple")
    return [Job.from_tuple(row) for row in rows]


def chain_plan(prefix: str, attempt: Attempt) -> Plan[Any]:
    """The Pro gate of a drained job: a passed deadline cancels it; a chained job runs only once
    its upstream has, as on a node — except that a drain never waits in place for an upstream
    still running (nothing else runs while it waits): the job is written back as waiting."""
    assert attempt.spec is not None
    pro, job = attempt.spec.pro, attempt.job
    if pro.deadline is not None and pro.expired(job):
        return Cancel(DEADLINE_EXCEEDED)
    if pro.chain is None or chain_mod.META_KEY not in (job.meta or {}):
        return None
    decision = yield from chain_check_plan(pro.chain, prefix, job)
    return early_result(pro.chain, decision)


def count(summary: dict[str, int], ran: Ran) -> None:
    key = EVENTS.get(ran.outcome.event, ran.outcome.event)
    summary[key] = summary.get(key, 0) + 1


def check_unresolved(options: Options, ran: Ran) -> None:
    """`with_safety=False` and a worker nothing here knows (an Elixir one): raise before any ack,
    as executor.ex resolve_worker/1 raises an unsafe run's error before report_finished."""
    if not options.safety and ran.attempt.spec is None:
        unsafe(ran)


def check_unsafe(options: Options, ran: Ran) -> None:
    """`with_safety=False`: raise what the job raised (or its timeout), after its ack is written."""
    if not options.safety:
        unsafe(ran)


Runner = Callable[[Plan[Any]], Any]
AsyncRunner = Callable[[Plan[Any]], Coroutine[Any, Any, Any]]
