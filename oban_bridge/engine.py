"""The Basic engine's writes (lib/oban/engines/basic.ex), as plans over `queries/*.sql`.

Nothing here knows about workers or queues' processes: the producer hands in what finished and
how much it wants, and gets rows back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import time
from datetime import datetime, timedelta
from typing import Any

import orjson

from .db import Plan, Query, prefixed
from .job import Job


_EPOCH = datetime(1970, 1, 1)


def db_now() -> datetime:
    """Oban stamps attempts and outcomes with the node's clock, in naive UTC (the columns are
    timestamp without time zone). Not `utcnow()` (deprecated since Python 3.12) nor
    `now(utc).replace(tzinfo=None)` (2 µs, and it runs once per job)."""
    return _EPOCH + timedelta(microseconds=time.time_ns() // 1000)


@dataclass(slots=True)
class Ack:
    """What to write for one finished job."""

    id: int
    state: str  # completed | retryable | scheduled | cancelled | discarded
    at: datetime
    scheduled_at: datetime | None = None
    bump: int = 0  # added to max_attempts (a snooze)
    rewind: int = 0  # taken from attempt (a chain wait: the fetch's increment undone)
    error: str | None = None  # the errors element, as JSON text
    meta: dict[str, Any] | None = None  # keys merged into meta (recorded output)


def error_record(attempt: int, at: datetime, text: str) -> str:
    """Job.format_attempt/1: `{"attempt", "at" (ISO 8601 UTC with Z), "error"}`."""
    stamp = at.isoformat(timespec="microseconds") + "Z"
    return orjson.dumps({"attempt": attempt, "at": stamp, "error": text}).decode()


def complete(job: Job, now: datetime, meta: dict[str, Any] | None = None) -> Ack:
    assert job.id is not None
    return Ack(job.id, "completed", now, meta=meta)


def error(job: Job, now: datetime, text: str, backoff: int) -> Ack:
    """error_job/3, or discard_job/2 once the attempts are used up (executor normalize_state)."""
    assert job.id is not None
    record = error_record(job.attempt, now, text)
    if job.attempt >= job.max_attempts:
        return Ack(job.id, "discarded", now, error=record)
    return Ack(job.id, "retryable", now, scheduled_at=now + timedelta(seconds=backoff), error=record)


def snooze(job: Job, now: datetime, seconds: int) -> Ack:
    """snooze_job/3 in 2.23.1: scheduled, and max_attempts + 1 so the snooze costs no attempt."""
    assert job.id is not None
    return Ack(job.id, "scheduled", now, scheduled_at=now + timedelta(seconds=seconds), bump=1)


def chain_wait(job: Job, now: datetime, seconds: int) -> Ack:
    """A chained job whose upstream has not finished goes back to `scheduled` with the attempt the
    fetch gave it taken back and max_attempts untouched: waiting is not an attempt, and a later
    failure's backoff must be the one it would have had without the wait (pro/chain.py)."""
    assert job.id is not None
    return Ack(job.id, "scheduled", now, scheduled_at=now + timedelta(seconds=seconds), rewind=1)


def cancel(job: Job, now: datetime, text: str) -> Ack:
    assert job.id is not None
    return Ack(job.id, "cancelled", now, error=error_record(job.attempt, now, text))


def discard(job: Job, now: datetime, text: str) -> Ack:
    assert job.id is not None
    return Ack(job.id, "discarded", now, error=error_record(job.attempt, now, text))


def encode_acks(acks: Sequence[Ack]) -> str:
    """One JSON array for ack_fetch_jobs.sql's json_to_recordset: parsed in C, however many."""
    return orjson.dumps([{"id": a.id, "state": a.state, "at": a.at, "scheduled_at": a.scheduled_at, "bump": a.bump,
                          "rewind": a.rewind, "error": a.error, "meta": a.meta} for a in acks]).decode()


def ack_fetch_plan(
    prefix: str,
    queue: str,
    acks: Sequence[Ack],
    demand: int,
    attempted_by: list[str],
) -> Plan[list[tuple[Any, ...]]]:
    """Rows come back as tuples in `Job.COLUMNS` order (the RETURNING list): no dict per job."""
    rows = yield Query(
        prefixed("ack_fetch_jobs", prefix),
        {
            "acks": encode_acks(acks),
            "queue": queue,
            "demand": demand,
            "now": db_now(),
            "attempted_by": attempted_by,
        },
        rows="tuple",
    )
    return rows  # type: ignore[no-any-return]


def stage_plan(prefix: str, limit: int) -> Plan[list[dict[str, Any]]]:
    staged = yield Query(prefixed("stage_jobs", prefix), {"now": db_now(), "limit": limit})
    return staged  # type: ignore[no-any-return]


def check_available_plan(prefix: str) -> Plan[list[str]]:
    rows = yield Query(prefixed("check_available", prefix))
    return [r["queue"] for r in rows]


def prune_plan(prefix: str, max_age: float, limit: int,
               queues: Sequence[str] | None = None) -> Plan[list[dict[str, Any]]]:
    """`queues=None` prunes every queue, as Elixir's Pruner does."""
    before = db_now() - timedelta(seconds=max_age)
    params = {"before": before, "limit": limit, "queues": None if queues is None else list(queues)}
    pruned = yield Query(prefixed("prune_jobs", prefix), params)
    return pruned  # type: ignore[no-any-return]


def rescue_plan(prefix: str, rescue_after: float, *, uuids: Sequence[str] | None = None) -> Plan[list[dict[str, Any]]]:
    """`uuids=None` rescues every job, as Elixir's Lifeline does; else only those producers' jobs."""
    now = db_now()
    before = now - timedelta(seconds=rescue_after)
    params = {"now": now, "before": before, "everything": uuids is None, "uuids": list(uuids or [])}
    rescued = yield Query(prefixed("rescue_jobs", prefix), params)
    return rescued  # type: ignore[no-any-return]


def absent_producers_plan(prefix: str) -> Plan[set[str]]:
    rows = yield Query(prefixed("absent_producers", prefix))
    return {r["uuid"] for r in rows}


def rescue_orphans_plan(prefix: str, uuids: Sequence[str]) -> Plan[list[dict[str, Any]]]:
    if not uuids:
        return []
    rescued = yield Query(prefixed("rescue_orphans", prefix), {"now": db_now(), "uuids": list(uuids)})
    return rescued  # type: ignore[no-any-return]


def queue_workers_plan(prefix: str, queues: Sequence[str]) -> Plan[list[dict[str, Any]]]:
    rows = yield Query(prefixed("queue_workers", prefix), {"queues": list(queues)})
    return rows  # type: ignore[no-any-return]


def elect_plan(prefix: str, name: str, node: str, lease: float) -> Plan[bool]:
    now = db_now()
    params = {"name": name, "node": node, "now": now, "expires_at": now + timedelta(seconds=lease)}
    yield Query(prefixed("delete_expired_peers", prefix), params, fetch="none")
    rows = yield Query(prefixed("elect_leader", prefix), params)
    return bool(rows)


def resign_plan(prefix: str, name: str, node: str) -> Plan[None]:
    yield Query(prefixed("resign_leader", prefix), {"name": name, "node": node}, fetch="none")
