"""Workers for the global/rate limit tests (tests/test_limits.py), run by `oban-bridge start`
processes: each job records its start and end in the side table `limit_spans`, with the
database's clock, so overlap across processes is measured on one clock."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from oban_bridge import Job, worker

_pools: dict[str, ConnectionPool] = {}
_pool_lock = threading.Lock()


def _record(sql: str, params: list[Any]) -> None:
    """A few connections per process, whatever the limit: 4 nodes must fit the test server. The
    database is the node's own (the job's runtime), so in-process tests work too."""
    from oban_bridge.runtime import current

    url = current().url
    with _pool_lock:
        pool = _pools.get(url)
        if pool is None:
            pool = _pools[url] = ConnectionPool(url, min_size=1, max_size=3, kwargs={"autocommit": True}, open=True)
    with pool.connection() as conn:
        conn.execute(sql, params)


def setup(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS limit_spans (job_id bigint, node text, account text, "
                     "started_at timestamptz, ended_at timestamptz)")


@worker("py.LimitSpan", queue="lim")
def limit_span(job: Job) -> None:
    if "ms" not in job.args:
        return  # a start is its fetch (attempted_at): nothing to record
    _record("INSERT INTO limit_spans (job_id, node, account, started_at) VALUES (%s, %s, %s, clock_timestamp())",
            [job.id, (job.attempted_by or ["?"])[0], str(job.args.get("account", ""))])
    time.sleep(job.args["ms"] / 1000)
    _record("UPDATE limit_spans SET ended_at = clock_timestamp() WHERE job_id = %s AND ended_at IS NULL", [job.id])
