"""No job lost or completed twice: kill -9, several processes on one queue, a PostgreSQL restart
under load, hostile rows and input, stuck jobs at shutdown. Long variants live in bench/."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from oban_bridge import AsyncObanBridge, DatabaseUnavailableError, Job, ObanBridge
from oban_bridge.notifier import channel, encode
from oban_bridge.plugins.lifeline import Lifeline
from oban_bridge.plugins.stager import Stager

from .test_runtime import count, rows, wait_for

ROOT = Path(__file__).resolve().parent.parent


def ledger_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS ledger (job_id bigint NOT NULL, node text)")


def start_node(url: str, queues: str, node: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "oban_bridge", "start", "-m", "tests.workers", "-q", queues, "--node", node, *extra],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def ledger_counts(url: str) -> dict[int, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT job_id, count(*) FROM ledger GROUP BY job_id").fetchall())


async def test_kill_9_mid_jobs_every_job_comes_back_and_completes(db_url: str) -> None:
    ledger_table(db_url)
    with ObanBridge(db_url) as client:
        jobs = client.insert_all([Job.new("py.Ledger", {"sleep": 0.3}, queue="ledger") for _ in range(60)])
    victim = start_node(db_url, "ledger:10", "victim")
    try:
        await wait_for(lambda: count(db_url, "state = 'completed'") >= 10 and count(db_url, "state = 'executing'") >= 5,
                       timeout=30)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    in_flight = {r["id"] for r in rows(db_url, "state = 'executing'")}
    assert in_flight, "the kill should leave jobs executing"
    lifeline = Lifeline(orphan_grace=0.2, interval=0.1)
    async with AsyncObanBridge(db_url, queues={"ledger": 10}, node="rescuer", poll_interval=0.1,
                               plugins=[lifeline, Stager(interval=0.1)]):
        await wait_for(lambda: count(db_url, "state = 'completed'") == 60, timeout=60)
    assert count(db_url, "state = 'executing'") == 0
    for row in rows(db_url):
        assert row["state"] == "completed" and row["errors"] == []
        assert row["attempt"] == (2 if row["id"] in in_flight else 1), row["id"]
    counts = ledger_counts(db_url)
    assert set(counts) == {j.id for j in jobs}  # every job ran to the end at least once
    finished_before = {j.id for j in jobs} - in_flight
    assert all(counts[i] == 1 for i in finished_before)  # no completed job ran again


async def test_four_processes_one_queue_exactly_once(db_url: str) -> None:
    ledger_table(db_url)
    total = 2000
    with ObanBridge(db_url) as client:
        client.insert_all([Job.new("py.Ledger", {}, queue="ledger") for _ in range(total)])
    nodes = [start_node(db_url, "ledger:8", f"node-{i}") for i in range(4)]
    try:
        await wait_for(lambda: count(db_url, "state = 'completed'") == total, timeout=120)
    finally:
        for proc in nodes:
            proc.send_signal(signal.SIGTERM)
        for proc in nodes:
            assert proc.wait(30) == 0
    counts = ledger_counts(db_url)
    assert len(counts) == total and set(counts.values()) == {1}
    with psycopg.connect(db_url) as conn:
        by_node = dict(conn.execute("SELECT attempted_by[1], count(*) FROM oban_jobs GROUP BY 1").fetchall())
    assert sum(by_node.values()) == total and len(by_node) >= 2


@pytest.mark.skipif(shutil.which("true") is None, reason="needs a POSIX shell")
async def test_postgres_restart_under_load() -> None:
    """A dedicated embedded server is stopped (fast shutdown) and started again while a node runs
    jobs: producers and the notifier reconnect, inserts during the outage fail loudly, and every
    job completes."""
    from oban_bridge import embedded

    root = Path(tempfile.mkdtemp(prefix="obr", dir="/tmp"))
    server = embedded.start(root / "pgdata", announce=False)
    try:
        url = server.uri
        with ObanBridge(url) as client:
            client.migrate()
        ledger_table(url)
        with ObanBridge(url) as client:
            client.insert_all([Job.new("py.Ledger", {"sleep": 0.01}, queue="ledger") for _ in range(300)])
        async with AsyncObanBridge(url, queues={"ledger": 5}, poll_interval=0.2,
                                   plugins=[Stager(interval=0.2), Lifeline(orphan_grace=10, interval=0.5)]) as oban:
            await wait_for(lambda: count(url, "state = 'completed'") >= 30, timeout=30)
            assert server.pid is not None
            os.kill(server.pid, signal.SIGINT)  # fast shutdown: every connection drops
            await asyncio.sleep(1.0)
            with pytest.raises((DatabaseUnavailableError, psycopg.OperationalError)):
                async with AsyncObanBridge(url) as during:
                    await during.insert(Job.new("py.Ledger", {}, queue="ledger"))
            server.ensure_running()
            restarted = time.monotonic()
            await wait_for(lambda: count(url, "state = 'completed'") == 300, timeout=90)
            print(f"recovered in {time.monotonic() - restarted:.1f}s")
            inserted = await oban.insert(Job.new("py.Ledger", {}, queue="ledger"))
            await wait_for(lambda: count(url, f"id = {inserted.id} AND state = 'completed'") == 1, timeout=30)
        assert count(url, "state <> 'completed'") == 0
        counts = ledger_counts(url)
        assert set(counts) == set(range(1, 302))
        # A job whose ack was lost with the connection may run again (at least once), but no
        # live node's job is taken from it: at most the ones in flight at the shutdown re-ran.
        assert sum(counts.values()) - 301 <= 5
    finally:
        server.release()
        shutil.rmtree(root, ignore_errors=True)


async def test_hostile_rows_and_input_leave_the_queue_running(db_url: str) -> None:
    from . import workers

    workers.runs.clear()
    with psycopg.connect(db_url, autocommit=True) as conn:
        bad_args = conn.execute("INSERT INTO oban_jobs (worker, queue, args, max_attempts) VALUES "
                                "('badge_forge.generator.GenerateBadge', 'badges', '[1, 2]', 1) RETURNING id").fetchone()
        bad_meta = conn.execute("INSERT INTO oban_jobs (worker, queue, args, meta, max_attempts) VALUES "
                                "('badge_forge.generator.GenerateBadge', 'badges', '{}', '\"text\"', 1) RETURNING id").fetchone()
        odd_worker = conn.execute("INSERT INTO oban_jobs (worker, queue, args) VALUES "
                                  "(%s, 'badges', '{}') RETURNING id", ["Weird'\"; DROP TABLE oban_jobs; -- ✓"]).fetchone()
    assert bad_args and bad_meta and odd_worker
    huge = {"blob": "x" * (10 * 1024 * 1024)}
    evil_queue = "q'; DROP TABLE oban_jobs; --"
    async with AsyncObanBridge(db_url, queues={"badges": 3, evil_queue: 1}, poll_interval=0.1) as oban:
        big = await oban.insert(Job.new("badge_forge.generator.GenerateBadge", huge, queue="badges"))
        evil = await oban.insert(Job.new("badge_forge.generator.GenerateBadge", {}, queue=evil_queue))
        # A burst of signals, malformed ones among them, must not stop the queue.
        with psycopg.connect(db_url, autocommit=True) as conn:
            junk = ["{", "Z:@@", encode({"action": "scale", "queue": "badges", "limit": -5}),
                    encode({"action": "launch", "queue": "badges"}), encode([1, 2, 3])]
            payloads = [junk[i % len(junk)] for i in range(5000)]
            conn.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", [channel("public", "signal"), payloads])
        good = await oban.insert(Job.new("badge_forge.generator.GenerateBadge", {}, queue="badges"))
        await wait_for(lambda: count(db_url, f"id IN ({big.id}, {evil.id}, {good.id}) AND state = 'completed'") == 3,
                       timeout=30)
        await wait_for(lambda: count(db_url, f"id IN ({bad_args[0]}, {bad_meta[0]}) AND state = 'discarded'") == 2)
        assert oban.runtime is not None and oban.runtime.producers["badges"].limit == 3
    errors = {r["id"]: r["errors"][0]["error"] for r in rows(db_url, "state = 'discarded'")}
    assert errors[bad_args[0]] == "** (TypeError) job args must be a JSON object, got list"
    assert errors[bad_meta[0]] == "** (TypeError) job meta must be a JSON object, got str"
    weird = rows(db_url, f"id = {odd_worker[0]}")[0]
    assert weird["state"] == "retryable" and "unknown worker: Weird'" in weird["errors"][0]["error"]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('oban_jobs')").fetchone() != (None,)


def test_a_stuck_job_does_not_hold_shutdown(db_url: str) -> None:
    node = start_node(db_url, "slow:1", "stuck", "--grace", "1")
    try:
        with ObanBridge(db_url) as client:
            job = client.insert(Job.new("py.Stubborn", {"seconds": 120}, queue="slow"))
        deadline = time.monotonic() + 30
        while count(db_url, f"id = {job.id} AND state = 'executing'") == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        node.send_signal(signal.SIGTERM)
        assert node.wait(20) == 0
        assert time.monotonic() - started < 10
        assert "still running after the grace period" in (node.stderr.read() if node.stderr else "")
    finally:
        if node.poll() is None:
            node.kill()
    assert count(db_url, f"id = {job.id} AND state = 'executing'") == 1  # left for the lifeline


def test_inserts_fail_loudly_when_the_database_is_gone() -> None:
    with pytest.raises(DatabaseUnavailableError):
        with ObanBridge("postgresql://nobody:pw@127.0.0.1:1/none") as client:
            client.insert(Job.new("W"))


_: Any = None
