"""Manual operations on jobs and queues, as `Oban.retry_all_jobs/2`, `cancel_all_jobs/2`,
`delete_all_jobs/2` and the queue signals write them (lib/oban.ex, lib/oban/engines/basic.ex)."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from .db import Plan, Query
from .engine import db_now
from .job import Job
from .notifier import channel, encode
from .query import JobFilter, order_by

FINISHED = ("cancelled", "completed", "discarded")


def list_plan(prefix: str, where: JobFilter, *, limit: int = 50, order: str = "-id") -> Plan[list[Job]]:
    clause, params = where.where(prefix)
    query = sql.SQL("SELECT * FROM {}.oban_jobs WHERE {} ORDER BY {} LIMIT %s").format(
        sql.Identifier(prefix), clause, order_by(order))
    rows = yield Query(query, [*params, limit])
    return [Job.from_row(r) for r in rows]


def count_plan(prefix: str, where: JobFilter) -> Plan[int]:
    clause, params = where.where(prefix)
    rows = yield Query(sql.SQL("SELECT count(*) AS n FROM {}.oban_jobs WHERE {}").format(
        sql.Identifier(prefix), clause), params)
    return int(rows[0]["n"])


def retry_plan(prefix: str, where: JobFilter) -> Plan[list[dict[str, Any]]]:
    """basic.ex retry_all_jobs/2: anything but available/executing becomes available now, with an
    attempt to spare and the finish timestamps cleared."""
    clause, params = where.where(prefix, extra=sql.SQL("state NOT IN ('available', 'executing')"))
    query = sql.SQL(
        "UPDATE {p}.oban_jobs AS j SET state = 'available',"
        " max_attempts = GREATEST(j.max_attempts, j.attempt + 1), scheduled_at = %s,"
        " completed_at = NULL, cancelled_at = NULL, discarded_at = NULL"
        " FROM (SELECT id, state FROM {p}.oban_jobs WHERE {w} FOR UPDATE) AS x"
        " WHERE j.id = x.id RETURNING j.id, j.queue, x.state"
    ).format(p=sql.Identifier(prefix), w=clause)
    rows = yield Query(query, [db_now(), *params])
    queues = sorted({r["queue"] for r in rows})
    if queues:  # wake producers as a stage would
        yield Query(sql.SQL("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p"),
                    [channel(prefix, "insert"), [encode({"queue": q}) for q in queues]])
    return rows  # type: ignore[no-any-return]


def cancel_plan(prefix: str, where: JobFilter) -> Plan[list[dict[str, Any]]]:
    """basic.ex cancel_all_jobs/2, then Oban.cancel_all_jobs/2's pkill signal for each job that
    was executing, so the node running it (Elixir or Python) stops it."""
    clause, params = where.where(prefix, extra=sql.SQL("state NOT IN ('cancelled', 'completed', 'discarded')"))
    query = sql.SQL(
        "UPDATE {p}.oban_jobs AS j SET state = 'cancelled', cancelled_at = %s"
        " FROM (SELECT id, state FROM {p}.oban_jobs WHERE {w} FOR UPDATE) AS x"
        " WHERE j.id = x.id RETURNING j.id, j.queue, x.state"
    ).format(p=sql.Identifier(prefix), w=clause)
    rows = yield Query(query, [db_now(), *params])
    killed = [encode({"action": "pkill", "job_id": r["id"]}) for r in rows if r["state"] == "executing"]
    if killed:
        yield Query(sql.SQL("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p"),
                    [channel(prefix, "signal"), killed])
    return rows  # type: ignore[no-any-return]


def delete_plan(prefix: str, where: JobFilter) -> Plan[list[dict[str, Any]]]:
    """basic.ex delete_all_jobs/2: executing jobs are never deleted."""
    clause, params = where.where(prefix, extra=sql.SQL("state <> 'executing'"))
    query = sql.SQL("DELETE FROM {p}.oban_jobs WHERE id IN (SELECT id FROM {p}.oban_jobs WHERE {w})"
                    " RETURNING id, queue, state").format(p=sql.Identifier(prefix), w=clause)
    rows = yield Query(query, params)
    return rows  # type: ignore[no-any-return]


def signal_plan(prefix: str, action: str, queue: str, *, limit: int | None = None,
                ident: str = "any") -> Plan[dict[str, Any]]:
    """Oban.pause_queue/2, resume_queue/2, scale_queue/2: one `signal` notification that every
    node, Elixir or Python, obeys when the ident is `any` or its own `name.node`."""
    payload: dict[str, Any] = {"action": action, "ident": ident, "queue": queue}
    if action == "scale":
        payload["limit"] = limit
    yield Query(sql.SQL("SELECT pg_notify(%s, %s)"), [channel(prefix, "signal"), encode(payload)])
    return payload


def queue_counts_plan(prefix: str) -> Plan[dict[str, dict[str, int]]]:
    rows = yield Query(sql.SQL(
        "SELECT queue, state::text AS state, count(*) AS n FROM {}.oban_jobs GROUP BY queue, state"
    ).format(sql.Identifier(prefix)))
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        counts.setdefault(r["queue"], {})[r["state"]] = int(r["n"])
    return counts
