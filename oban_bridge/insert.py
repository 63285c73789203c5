"""Inserting jobs: `insert` (unique-aware) and `insert_all`, written as plans (see `db.py`).

What an Elixir node sees must be what Elixir itself writes: the same columns and defaults
(lib/oban/engines/basic.ex), and one `insert` notification per queue with available jobs, sent
in the inserting transaction so listeners hear it only after commit (lib/oban/engine.ex
`notify_trigger/2`). Elixir notifies for a unique conflict too when the returned job is available,
and so do we (seen in elixir_interop_fixtures/notifications.jsonl).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import sql

from . import jsonc
from . import unique as uniq
from .db import Copy, Plan, Query, Sleep, prefixed
from .job import UTC, Job, to_db_timestamp
from .notifier import channel, encode

log = logging.getLogger(__name__)


def _params(prefix: str, job: Job, *, notify: bool = False) -> dict[str, Any]:
    return {
        "notify": notify,
        "channel": channel(prefix, "insert"),
        "payload": encode({"queue": job.queue}),
        "state": job.state,
        "queue": job.queue,
        "worker": job.worker,
        "args": jsonc.dumps(job.args).decode(),
        "meta": jsonc.dumps(job.meta).decode(),
        "tags": job.tags,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "scheduled_at": None if job.scheduled_at is None else to_db_timestamp(job.scheduled_at),
    }


def notify_plan(prefix: str, jobs: Sequence[Job]) -> Plan[None]:
    queues = dict.fromkeys(j.queue for j in jobs if j.state == "available")
    if queues:
        payloads = [encode({"queue": q}) for q in queues]
        yield Query(
            prefixed("notify", prefix),
            {"channel": channel(prefix, "insert"), "payloads": payloads},
        )


def insert_plan(prefix: str, job: Job, *, locked: bool = False) -> Plan[Job]:
    """Insert one job inside the current transaction; a unique job may come back as a conflict.

    `locked` says the caller already holds the session-level unique lock (`unique_lock_plan`).
    """
    if job.unique is None:
        rows = yield Query(prefixed("insert_job", prefix), _params(prefix, job, notify=True))
        return _with_virtuals(Job.from_row(rows[0]), job)
    inserted = yield from _insert_unique(prefix, job, job.unique, locked=locked)
    yield from notify_plan(prefix, [inserted])
    return inserted


def unique_lock_plan(prefix: str, job: Job, *, release: bool = False) -> Plan[None]:
    """Take (or release) the session-level lock for a unique job, around insert and settle."""
    if job.unique is not None:
        key = uniq.lock_key(prefix, job.unique, uniq.match_values(job, job.unique))
        name = "unique_unlock_session" if release else "unique_lock_session"
        yield Query(prefixed(name, prefix), {"key": key})


def _insert_unique(prefix: str, job: Job, unique: uniq.Unique, *, locked: bool = False) -> Plan[Job]:
    values = uniq.match_values(job, unique)
    if not locked:
        yield Query(prefixed("unique_lock", prefix), {"key": uniq.lock_key(prefix, unique, values)})
    query, params = uniq.conflict_query(prefix, unique, values)
    found = yield Query(query, params)
    if not found:
        rows = yield Query(prefixed("insert_job", prefix), _params(prefix, job))
        return _with_virtuals(Job.from_row(rows[0]), job)
    existing = found[0]
    changes = _replacements(job, existing["state"])
    if changes:
        query, params = uniq.replace_query(prefix, existing["id"], changes)
        existing = (yield Query(query, params))[0]
    return Job.from_row(existing, conflict=True)


def _replacements(job: Job, state: str) -> dict[str, Any]:
    if not job.replace:
        return {}
    out: dict[str, Any] = {}
    for name in job.replace.get(state, ()):
        if name in job.changes:
            value = getattr(job, name)
            out[name] = to_db_timestamp(value) if name == "scheduled_at" else value
    return out


def _with_virtuals(row: Job, job: Job) -> Job:
    row.unique = job.unique
    row.replace = job.replace
    row.changes = job.changes
    return row


def settle_plan(prefix: str, job: Job, timeout: float) -> Plan[Job]:
    """After a unique insert commits, make sure no Elixir inserter slipped a twin in beside it.

    An Elixir unique insert holds its advisory lock from before its duplicate check until its
    commit. Any Elixir insert that could have missed our row was therefore holding such a lock at
    the moment we committed; one that checks later sees our row. So: wait for those transactions
    to end, look again, and if a twin committed, withdraw ours — while no producer has started it —
    and hand back the Elixir job as the conflict, which is what Elixir's caller already holds.
    """
    if job.unique is None or job.conflict or job.id is None:
        return job
    inflight = {(r["pid"], r["xact_start"]) for r in (yield Query(prefixed("unique_inflight", prefix)))}
    deadline = time.monotonic() + timeout
    pause = 0.001
    while inflight and time.monotonic() < deadline:
        yield Sleep(pause)
        pause = min(pause * 2, 0.05)
        now = {(r["pid"], r["xact_start"]) for r in (yield Query(prefixed("unique_inflight", prefix)))}
        inflight &= now
    if inflight:
        log.warning(
            "unique settle timed out",
            extra={"job_id": job.id, "worker": job.worker, "waiting_on": sorted(p for p, _ in inflight)},
        )
    query, params = uniq.conflict_query(prefix, job.unique, uniq.match_values(job, job.unique), exclude_id=job.id)
    twins = yield Query(query, params)
    if not twins:
        return job
    withdrawn = yield Query(prefixed("unique_withdraw", prefix), {"id": job.id})
    if withdrawn:
        log.info(
            "unique insert withdrawn for a concurrent twin",
            extra={"job_id": job.id, "twin_id": twins[0]["id"], "worker": job.worker},
        )
        return Job.from_row(twins[0], conflict=True)
    log.warning(
        "unique job duplicated by a concurrent insert and already started",
        extra={"job_id": job.id, "twin_id": twins[0]["id"], "worker": job.worker},
    )
    return job


def _copy_text(value: str) -> str:
    """Escape a value for COPY's text format (backslash, tab, newline, carriage return)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _array_literal(items: Sequence[str]) -> str:
    """A text[] literal for COPY: every element double-quoted, quotes and backslashes escaped."""
    if not items:
        return "{}"
    quoted = ('"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"' for t in items)
    return _copy_text("{" + ",".join(quoted) + "}")


def insert_all_plan(prefix: str, jobs: Sequence[Job]) -> Plan[list[Job]]:
    """Insert many jobs: plain ones in one COPY, unique ones through `insert`'s check.

    COPY cannot return rows, so ids are drawn from the table's sequence first and the batch shares
    the transaction's timestamp — the same values bigserial and the column defaults would give.
    The returned jobs are the given `Job` objects, filled in. Elixir's Basic engine ignores
    `unique` in insert_all; Oban users reach for unique because they need it, so unique jobs here
    get the same check as `insert`, in the same transaction.
    """
    plain = [j for j in jobs if j.unique is None]
    if plain:
        table = sql.SQL("{}.oban_jobs").format(sql.Identifier(prefix)).as_string(None)
        reserved = (yield Query(prefixed("reserve_ids", prefix), {"table": table, "count": len(plain)}))[0]
        now: datetime = reserved["now"]
        stamp = now.isoformat(sep=" ")
        dumps = jsonc.dumps
        aware = now.replace(tzinfo=UTC)  # one shared (immutable) value for the whole batch
        lines = []
        for job, job_id in zip(plain, reserved["ids"], strict=True):
            at = job.scheduled_at
            lines.append("\t".join((
                str(job_id),
                job.state,
                _copy_text(job.queue),
                _copy_text(job.worker),
                _copy_text(dumps(job.args).decode()),
                _copy_text(dumps(job.meta).decode()),
                _array_literal(job.tags),
                str(job.priority),
                str(job.max_attempts),
                stamp,
                stamp if at is None else to_db_timestamp(at).isoformat(sep=" "),
            )))
            job.id = job_id
            job.inserted_at = aware
            if at is None:
                job.scheduled_at = aware
        lines.append("")
        yield Copy(prefixed("copy_jobs", prefix), "\n".join(lines))
    # Unique jobs in lock-key order, so two batches never wait on each other's locks in a cycle.
    results: dict[int, Job] = {}
    unique_jobs = [(i, j, j.unique) for i, j in enumerate(jobs) if j.unique is not None]
    unique_jobs.sort(key=lambda t: uniq.lock_key(prefix, t[2], uniq.match_values(t[1], t[2])))
    for i, job, unique in unique_jobs:
        results[i] = yield from _insert_unique(prefix, job, unique)
    done = [results.get(i, job) for i, job in enumerate(jobs)]
    yield from notify_plan(prefix, done)
    return done


__all__ = ["insert_plan", "insert_all_plan", "settle_plan", "notify_plan", "unique_lock_plan"]
