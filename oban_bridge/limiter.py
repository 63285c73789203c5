"""The fetch of a queue with a global or rate limit (limits.py), for the producer.

One message, one transaction: the acks (queries/ack_fetch_jobs.sql with no demand), the queue's
lock (queries/limits_lock.sql), the held-back fetch (queries/limited_fetch.sql) and a probe of
what is left (queries/limits_probe.sql). Four statements where an unlimited queue sends one: that
is the coordination's cost, measured by bench/run.py --only limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from .db import Plan, Query, prefixed
from .engine import Ack, db_now, encode_acks
from .limits import RATE_BUCKETS, Partition, QueueOptions, queue_options

# How many available rows of still-open partitions one fetch reads at most. Partitions at their
# limit are skipped inside the scan; open partitions whose jobs crowd this window can delay the
# others by a fetch, never more (README: "Global and rate limits").
PARTITION_SCAN = 5_000

_NO_PARTITION = sql.SQL("'[]'::jsonb")


def partition_key(partition: Partition | None) -> tuple[sql.Composable, dict[str, str]]:
    """The partition of a row `j` as SQL: a fixed shape with the args keys as parameters, never
    spliced into the text."""
    if partition is None:
        return _NO_PARTITION, {}
    parts: list[sql.Composable] = []
    params: dict[str, str] = {}
    if partition.worker:
        parts.append(sql.SQL("j.worker"))
    if partition.keys:
        for i, key in enumerate(partition.keys):
            parts.append(sql.SQL("j.args -> {}").format(sql.Placeholder(f"pk{i}")))
            params[f"pk{i}"] = key
    elif partition.args:
        parts.append(sql.SQL("j.args"))
    return sql.SQL("jsonb_build_array({})").format(sql.SQL(", ").join(parts)), params


@dataclass(slots=True)
class Fetched:
    rows: list[tuple[Any, ...]]
    more: bool  # available jobs remain, held back by the limits (or locked by another fetch)
    rate_wait: float | None  # seconds until the oldest counted start leaves the rate window


@dataclass(slots=True)
class Claim:
    cap: int  # how many jobs the producer may run from now on (it stops fetching above this)
    claim: int  # what its row holds: at least what it runs
    want: int  # what it could use: what it runs plus the available jobs, up to its ask
    target: int  # its fair share of what it wants: a cap below it waits for slots others free


class Limiter:
    """Statements and parameters of one limited queue, composed once."""

    def __init__(self, prefix: str, queue: str, options: QueueOptions, *, poll_interval: float = 1.0) -> None:
        self.prefix = prefix
        self.queue = queue
        self.options = options
        key, key_params = partition_key(options.partition)
        self.fetch = prefixed("limited_fetch", prefix, key=key)
        self.lock = prefixed("limits_lock", prefix)
        self.acks = prefixed("ack_fetch_jobs", prefix)
        self.claim_sql = prefixed("limit_claim", prefix)
        # A claim not renewed for this long is dropped (its producer renews every poll interval).
        self.lease = max(10.0, 10 * poll_interval)
        self.probe = prefixed("limits_probe", prefix)
        rate = options.rate_limit
        self.params: dict[str, Any] = {
            "prefix": prefix, "queue": queue,
            "global": options.global_limit,
            "rate": rate.allowed if rate else None,
            "bucket_ms": rate.bucket_ms if rate else 1,
            "buckets": RATE_BUCKETS,
            "scan": PARTITION_SCAN,
            **key_params,
        }

    @property
    def claims(self) -> bool:
        """A global limit over the whole queue is shared out as claims (queries/limit_claim.sql):
        fetches then need no lock. Partitions and rate limits count per fetch, under the lock."""
        return self.options.global_limit is not None and self.options.partition is None \
            and self.options.rate_limit is None

    async def claim(self, conn: psycopg.AsyncConnection[Any], producer: str, want: int, floor: int) -> Claim:
        """Renew this producer's claim: it runs `floor` jobs and could use `want`."""
        params = {"prefix": self.prefix, "queue": self.queue, "producer": producer, "global": self.options.global_limit,
                  "want": max(want, floor), "floor": floor, "lease": self.lease}
        cursor = psycopg.AsyncClientCursor(conn, row_factory=tuple_row)
        await cursor.execute(";\n".join([cursor.mogrify(self.lock, params),
                                          cursor.mogrify(self.claim_sql, params)]).encode())
        cursor.nextset()
        cap, claim, wanted, target = (await cursor.fetchone()) or (0, floor, 0, 0)
        return Claim(int(cap), int(claim), int(wanted), int(target))

    def check_meta(self, local_limit: int) -> dict[str, Any]:
        return check_meta(self.options, local_limit)

    async def ack_fetch(self, conn: psycopg.AsyncConnection[Any], acks: Sequence[Ack], demand: int,
                        attempted_by: list[str]) -> Fetched:
        params = dict(self.params)
        params.update(demand=demand, attempted_by=attempted_by)
        if self.options.partition is None:
            params["scan"] = demand  # one partition: the first `demand` open rows are the ones
        # One simple-protocol message of several statements: PostgreSQL runs it as one implicit
        # transaction, each statement with a snapshot of its own (READ COMMITTED), and the client
        # sends it whole. A pipeline would send the statements one await at a time, and a busy
        # event loop between them keeps the lock held while the server waits for the next one.
        # The values are bound by psycopg's client-side binding (mogrify), as literals it quotes.
        cursor = psycopg.AsyncClientCursor(conn, row_factory=tuple_row)
        parts = []
        if acks:  # before the lock: the lock is held for the fetch alone
            parts.append(cursor.mogrify(self.acks, {"acks": encode_acks(acks), "queue": self.queue, "demand": 0,
                                                    "now": db_now(), "attempted_by": attempted_by}))
        parts += [cursor.mogrify(self.lock, params), cursor.mogrify(self.fetch, params),
                  cursor.mogrify(self.probe, params)]
        await cursor.execute(";\n".join(parts).encode())
        for _ in range(len(parts) - 2):  # to the fetch's result
            cursor.nextset()
        rows = await cursor.fetchall()
        cursor.nextset()
        more, wait_ms = (await cursor.fetchone()) or (False, None)
        return Fetched(rows, bool(more), None if wait_ms is None else max(0.0, float(wait_ms)) / 1000)


def check_meta(options: QueueOptions, local_limit: int) -> dict[str, Any]:
    """Pro's Smart engine keys in a producer's check-in, so Oban Web lists a limited queue as it
    lists Pro's (oban_web reads `local_limit`, `global_limit` and `rate_limit` from the checks)."""
    partition = options.partition.as_meta() if options.partition is not None else None
    meta: dict[str, Any] = {"local_limit": local_limit}
    if options.global_limit is not None:
        meta["global_limit"] = {"allowed": options.global_limit, "tracked": {}, "partition": partition}
    if options.rate_limit is not None:
        rate = options.rate_limit
        meta["rate_limit"] = {"allowed": rate.allowed, "period": max(1, round(rate.period)),
                              "window_time": 0, "windows": [], "partition": partition}
    return meta


def options_from_check(check: dict[str, Any]) -> QueueOptions | None:
    """A limited queue's options as its check-in states them (check_meta), for `queues`; None for
    an unlimited queue or a check-in this cannot read."""
    spec = {k: check.get(k) for k in ("local_limit", "global_limit", "rate_limit") if check.get(k) is not None}
    if "global_limit" not in spec and "rate_limit" not in spec:
        return None
    for key in ("global_limit", "rate_limit"):
        value = spec.get(key)
        if isinstance(value, dict):
            spec[key] = {k: v for k, v in value.items() if k in ("allowed", "period", "partition") and v is not None}
    try:
        return queue_options(str(check.get("queue")), spec)
    except (ValueError, TypeError):
        return None


_STATE = sql.SQL("""
    WITH running AS (
      SELECT {key} AS k, count(*) AS n FROM {prefix}.oban_jobs AS j
      WHERE j.state = 'executing' AND j.queue = %(queue)s GROUP BY 1
    ),
    recent AS (
      SELECT r.partition AS k, sum(r.starts) AS n FROM {prefix}.oban_bridge_rate_limits AS r
      WHERE %(rate)s AND r.queue = %(queue)s
        AND r.bucket >= floor(extract(epoch FROM clock_timestamp()) * 1000 / %(bucket_ms)s) - %(buckets)s
      GROUP BY 1
    )
    SELECT coalesce(running.k, recent.k) AS partition, coalesce(running.n, 0) AS running,
           coalesce(recent.n, 0) AS starts
    FROM running FULL JOIN recent ON running.k = recent.k
    ORDER BY 2 DESC, 3 DESC
""")


def limits_state_plan(prefix: str, queue: str, options: QueueOptions) -> Plan[list[dict[str, Any]]]:
    """Per partition (one row without partitions): jobs executing on every node, and starts in the
    current rate window, read as the fetch reads them."""
    key, key_params = partition_key(options.partition)
    rate = options.rate_limit
    rows = yield Query(_STATE.format(key=key, prefix=sql.Identifier(prefix)), {
        "queue": queue, "rate": rate is not None, "bucket_ms": rate.bucket_ms if rate else 1,
        "buckets": RATE_BUCKETS, **key_params})
    return rows  # type: ignore[no-any-return]
