"""The producer's promises, measured from outside: a queue's limit is a ceiling at every instant, a
timed-out or cancelled job never runs beside its retry, jobs can be stopped for real, an idle node
is quiet, and a node holds few connections. Each job records when it really started and ended
(tests/workers.py `spans`); overlap is computed from those, statements from pg_stat_database."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

import psycopg
import pytest

from oban_bridge import AsyncObanBridge, Job
from oban_bridge.db import run_sync
from oban_bridge.engine import absent_producers_plan, rescue_orphans_plan
from oban_bridge.notifier import channel, encode
from oban_bridge.plugins.stager import Stager

from . import workers
from .test_runtime import count, rows, wait_for


def peak_overlap(spans: list[tuple[float, float]]) -> int:
    """The most runs in progress at one instant (a run ending when another starts is not overlap)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def recorded(worker: str) -> list[tuple[str, int, int, float, float]]:
    with workers.spans_lock:
        return [s for s in workers.spans if s[0] == worker]


def xacts(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                           "WHERE datname = current_database()").fetchone()
        assert row is not None
        return int(row[0])


def pkill(url: str, job_id: int) -> None:
    """What Oban.cancel_job does for an executing job: mark it cancelled, then signal pkill."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE oban_jobs SET state = 'cancelled', cancelled_at = now() WHERE id = %s", [job_id])
        conn.execute("SELECT pg_notify(%s, %s)", [channel("public", "signal"),
                                                     encode({"action": "pkill", "job_id": job_id, "ident": "any"})])


@pytest.mark.parametrize("worker", ["py.Span", "py.SpanAsync"])
@pytest.mark.parametrize("limit", [1, 5, 100])
async def test_a_queue_never_runs_more_than_its_limit(db_url: str, limit: int, worker: str) -> None:
    """A steady stream: jobs arrive in small batches while others finish, so fetches happen with
    acks in flight and several cycles at once — the moments the limit could be overrun."""
    workers.spans.clear()
    backlog = 3 * limit + 2  # waiting before the node starts: every lane finds work at once
    total = backlog + max(60, limit * 10)
    async with AsyncObanBridge(db_url) as client:
        await client.insert_all([Job.new(worker, {"ms": 2}, queue="span") for _ in range(backlog)])
    async with AsyncObanBridge(db_url, queues={"span": limit}, plugins=[], poll_interval=0.05) as oban:
        batch = max(1, limit // 2 + 1)
        for start in range(backlog, total, batch):
            n = min(batch, total - start)
            await oban.insert_all([Job.new(worker, {"ms": 1 + (i % 4)}, queue="span") for i in range(n)])
            await asyncio.sleep(0.005)
        await wait_for(lambda: len(recorded(worker)) == total, timeout=60)
    spans = [(s[3], s[4]) for s in recorded(worker)]
    assert peak_overlap(spans) <= limit
    if limit > 1:
        assert peak_overlap(spans) > 1  # the queue did run jobs side by side


@pytest.mark.parametrize("worker", ["py.Overrun", "py.ProOverrun"])
async def test_a_timed_out_def_job_never_runs_beside_its_retry(db_url: str, worker: str) -> None:
    """The worker sleeps 1 s past its 0.3 s timeout, retried at once (backoff 0), on a queue with
    room for two: each retry must wait until the attempt before it has really returned. (The Pro
    variant has an after_process hook, which takes the coroutine path.)"""
    workers.spans.clear()
    async with AsyncObanBridge(db_url, queues={"overrun": 2}, plugins=[Stager(interval=0.05)],
                               poll_interval=0.05) as oban:
        job = await oban.insert(Job.new(worker, {"seconds": 1.0}, queue="overrun", max_attempts=3))
        await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'discarded'") == 1, timeout=30)
    attempts = sorted(recorded(worker), key=lambda s: s[2])
    assert [a[2] for a in attempts] == [1, 2, 3]
    for before, after in zip(attempts, attempts[1:]):
        assert after[3] >= before[4], f"attempt {after[2]} started before attempt {before[2]} returned"
    row = rows(db_url, f"id = {job.id}")[0]
    assert [e["error"] for e in row["errors"]] == [f"** (Oban.TimeoutError) {worker} timed out after 300ms"] * 3
    assert [e["attempt"] for e in row["errors"]] == [1, 2, 3]


async def test_an_isolated_job_is_killed_at_its_timeout(db_url: str) -> None:
    """isolation="process": a job stuck in time.sleep(60) ends at its 0.5 s timeout."""
    async with AsyncObanBridge(db_url, queues={"hard": 1}, plugins=[], poll_interval=0.05) as oban:
        started = time.monotonic()
        job = await oban.insert(Job.new("py.Hard", {"seconds": 60}, queue="hard", max_attempts=1))
        await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'discarded'") == 1, timeout=30)
        elapsed = time.monotonic() - started
        # The child was killed, not left sleeping: the slot is free for the next job at once.
        again = await oban.insert(Job.new("py.Hard", {"seconds": 0}, queue="hard", max_attempts=1))
        await wait_for(lambda: count(db_url, f"id = {again.id} AND state = 'completed'") == 1, timeout=30)
    assert elapsed < 20
    assert [e["error"] for e in rows(db_url, f"id = {job.id}")[0]["errors"]] == [
        "** (Oban.TimeoutError) py.Hard timed out after 500ms"]
    assert not [p for p in multiprocessing.active_children() if p.name == "oban-isolated"]


async def test_an_isolated_jobs_timeout_counts_from_its_start_not_its_childs(db_url: str) -> None:
    """A fresh child (after a kill, or the first) takes its interpreter's start and the module's
    import (1.5 s here) before the job begins: a 0.5 s job timeout must not be spent on that,
    or every job after a kill would time out in turn."""
    from . import slow_start_workers  # noqa: F401 - registers py.SlowStart

    async with AsyncObanBridge(db_url, queues={"slowstart": 1}, plugins=[], poll_interval=0.05) as oban:
        quick = await oban.insert(Job.new("py.SlowStart", {"seconds": 0}, queue="slowstart", max_attempts=1))
        await wait_for(lambda: count(db_url, f"id = {quick.id} AND state <> 'available' "
                                             "AND state <> 'executing'") == 1, timeout=60)
        stuck = await oban.insert(Job.new("py.SlowStart", {"seconds": 60}, queue="slowstart", max_attempts=1))
        await wait_for(lambda: count(db_url, f"id = {stuck.id} AND state = 'discarded'") == 1, timeout=60)
        after_kill = await oban.insert(Job.new("py.SlowStart", {"seconds": 0}, queue="slowstart", max_attempts=1))
        await wait_for(lambda: count(db_url, f"id = {after_kill.id} AND state <> 'available' "
                                             "AND state <> 'executing'") == 1, timeout=60)
    states = {row["id"]: row["state"] for row in rows(db_url, "queue = 'slowstart'")}
    assert states == {quick.id: "completed", stuck.id: "discarded", after_kill.id: "completed"}


async def test_an_isolated_job_still_ends_at_its_forced_deadline_after_a_slow_start(db_url: str) -> None:
    """Timeout 1 s, a forced deadline 2 s after insert, a child that takes 1.5 s to start: the
    timeout counted from the start would end it at 2.5 s, past the deadline. Pro's deadline is
    absolute: the job is cancelled for it, at 2 s."""
    from .slow_start_workers import slow_start_deadline

    async with AsyncObanBridge(db_url, queues={"slowdeadline": 1}, plugins=[], poll_interval=0.05) as oban:
        job = await oban.insert(slow_start_deadline.new({}))  # type: ignore[attr-defined]
        await wait_for(lambda: count(db_url, f"id = {job.id} AND state IN ('cancelled', 'discarded')") == 1,
                       timeout=60)
    (row,) = rows(db_url, f"id = {job.id}")
    assert row["state"] == "cancelled", row
    assert row["errors"][0]["error"].endswith("failed with {:cancel, :deadline_exceeded}")


async def test_a_cancelled_def_job_that_checks_stops_and_is_recorded_as_elixir_records_a_pkill(db_url: str) -> None:
    workers.polite_started.clear()
    workers.polite_stopped.clear()
    workers.spans.clear()
    async with AsyncObanBridge(db_url, queues={"polite": 1}, plugins=[], poll_interval=0.05) as oban:
        job = await oban.insert(Job.new("py.Polite", {}, queue="polite"))
        # The row is executing before the function runs; a pkill in between cancels the job
        # without running it, so wait until the function itself is looping.
        assert await asyncio.to_thread(workers.polite_started.wait, 10)
        pkill(db_url, job.id)  # type: ignore[arg-type]
        await asyncio.to_thread(workers.polite_stopped.wait, 5)
        assert workers.polite_stopped.is_set()
        await wait_for(lambda: not oban.runtime.producers["polite"].running)  # type: ignore[union-attr]
    row = rows(db_url, f"id = {job.id}")[0]
    # producer.ex: a job process ended by pkill exits :shutdown, recorded as {:cancel, :shutdown}
    # by basic.ex cancel_job/2, its error appended (elixir_interop_fixtures: the cancel row's shape).
    assert row["state"] == "cancelled" and row["cancelled_at"] is not None
    assert [(e["attempt"], e["error"]) for e in row["errors"]] == [
        (1, "** (Oban.PerformError) py.Polite failed with {:cancel, :shutdown}")]


async def test_a_cancelled_job_keeps_its_slot_until_it_stops(db_url: str) -> None:
    """Limit 1: the job queued behind a cancelled one starts only after it has really returned."""
    workers.polite_started.clear()
    workers.polite_stopped.clear()
    workers.spans.clear()
    async with AsyncObanBridge(db_url, queues={"polite": 1}, plugins=[], poll_interval=0.05) as oban:
        job = await oban.insert(Job.new("py.Polite", {}, queue="polite"))
        assert await asyncio.to_thread(workers.polite_started.wait, 10)
        await oban.insert(Job.new("py.Span", {"ms": 1}, queue="polite"))
        pkill(db_url, job.id)  # type: ignore[arg-type]
        await wait_for(lambda: len(recorded("py.Span")) == 1)
    (polite,), (nxt,) = recorded("py.Polite"), recorded("py.Span")
    assert nxt[3] >= polite[4]


async def test_a_job_left_running_at_shutdown_is_not_rescued_while_it_runs(db_url: str) -> None:
    """py.Stubborn ignores the shutdown. Its node stops after the grace period, but stays present
    while the thread runs, so no other node rescues and reruns the job; when it returns, its
    outcome is recorded."""
    oban = AsyncObanBridge(db_url, queues={"slow": 1}, plugins=[], poll_interval=0.05)
    await oban.open()
    await oban.start()
    job = await oban.insert(Job.new("py.Stubborn", {"seconds": 3}, queue="slow"))
    await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'executing'") == 1)
    started = time.monotonic()
    await oban.stop(grace=0.2)
    await oban.close()
    assert time.monotonic() - started < 2.5, "stop waited for a job that ignores it"

    def rescue() -> list[dict[str, Any]]:
        with psycopg.connect(db_url, autocommit=True) as conn:
            absent = run_sync(conn, absent_producers_plan("public"))
            return run_sync(conn, rescue_orphans_plan("public", sorted(absent)))

    while rows(db_url, f"id = {job.id}")[0]["state"] == "executing" and time.monotonic() - started < 10:
        assert rescue() == [], "the job was rescued while its thread still ran it"
        await asyncio.sleep(0.1)
    # It finished after all: its real outcome is written, so it is not run a second time.
    row = rows(db_url, f"id = {job.id}")[0]
    assert row["state"] == "completed" and row["attempt"] == 1
    assert time.monotonic() - started >= 2.5


async def test_an_idle_node_costs_about_one_statement_per_queue_per_poll(db_url: str) -> None:
    async with AsyncObanBridge(db_url, queues={"a": 100, "b": 10, "c": 10, "d": 50}, plugins=[]):
        # PostgreSQL 15+ flushes an idle backend's counts up to 10 s late (PGSTAT_IDLE_INTERVAL):
        # start counting only once the start's own statements have surely been counted.
        await asyncio.sleep(10.5)
        before, t0 = xacts(db_url), time.monotonic()
        await asyncio.sleep(6.0)
        after, elapsed = xacts(db_url), time.monotonic() - t0
    rate = (after - before - 1) / elapsed  # less our own count query
    # 4 queues polling once a second and the presence heartbeat every 5 s make ~4.2/s. A fetch that
    # chains fetches makes thousands.
    assert rate <= 8, f"{rate:.1f} statements/s on an idle node"


async def test_a_node_with_ten_queues_holds_few_connections(db_url: str) -> None:
    queues = {f"q{n}": 10 for n in range(10)}
    async with AsyncObanBridge(db_url, queues=queues, pool_size=2) as oban:
        await oban.insert_all([Job.new("py.Span", {"ms": 1}, queue=f"q{n % 10}") for n in range(400)])
        await asyncio.sleep(2.0)
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND pid <> pg_backend_pid()").fetchone()
    assert row is not None
    # client pool 1-2, notifier 1, presence 1, producers <= 4, plugins and peer <= 2
    assert row[0] <= 10, f"{row[0]} connections for one node"


async def test_presence_comes_back_at_once_when_the_nodes_backends_are_terminated(db_url: str) -> None:
    """A failover or PgBouncer restart drops every connection while a full queue runs a long job
    (no cycle, so nothing else reconnects): the node's presence must be back well before the
    orphan rescue's grace, or another node reruns the job."""
    async with AsyncObanBridge(db_url, queues={"slow": 1}, plugins=[], poll_interval=0.05,
                               shutdown_grace=0.2) as oban:
        producer = oban.runtime.producers["slow"]  # type: ignore[union-attr]
        job = await oban.insert(Job.new("py.LongSleep", {"seconds": 30}, queue="slow"))
        await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'executing'") == 1)

        def present() -> bool:
            with psycopg.connect(db_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND objid = (hashtext(%s)::bigint & 4294967295)::oid", [producer.uuid]).fetchone()
                return bool(row and row[0])

        assert present()
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        terminated = time.monotonic()
        await wait_for(present, timeout=10)
        assert time.monotonic() - terminated < 3  # the heartbeat alone would take up to 5 s
