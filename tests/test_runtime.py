"""Python workers on Oban queues, checked against rows a real Elixir node left after running the
same outcomes (elixir_interop_fixtures/jobs_after_execution.json) and against Elixir's signals."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from oban_bridge import AsyncObanBridge, Job, ObanBridge
from oban_bridge.notifier import channel, encode
from oban_bridge.plugins.lifeline import Lifeline
from oban_bridge.runtime import parse_queues

from . import workers
from .conftest import fixture

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def rows(url: str, where: str = "TRUE") -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(f"SELECT row_to_json(j) FROM oban_jobs j WHERE {where} ORDER BY id")]  # noqa: S608


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def count(url: str, where: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM oban_jobs WHERE {where}").fetchone()  # noqa: S608
        assert row is not None
        return int(row[0])


def ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


async def test_outcomes_leave_rows_shaped_like_elixirs(db_url: str) -> None:
    reference = fixture("jobs_after_execution.json")["rows"]
    async with AsyncObanBridge(db_url, queues={"elixir": 5}, node="pynode") as oban:
        for row in reference:
            if row["args"].get("case") == "to_cancel":
                continue  # Oban.cancel_job on a scheduled job: the CLI's business, not a worker's
            await oban.insert(Job.new("Harness.Echo", row["args"], queue="elixir", max_attempts=row["max_attempts"]
                                      if row["args"].get("case") == "exhaust" else 20))
        await wait_for(lambda: count(db_url, "state = 'executing' OR state = 'available'") == 0)
        uuid = oban.runtime.producers["elixir"].uuid  # type: ignore[union-attr]
    ours = {tuple(sorted(r["args"].items())): r for r in rows(db_url)}
    for theirs in reference:
        if theirs["args"].get("case") == "to_cancel":
            continue
        mine = ours[tuple(sorted(theirs["args"].items()))]
        for column in ("state", "attempt", "max_attempts", "queue", "worker", "priority", "tags", "meta"):
            assert mine[column] == theirs[column], (theirs["_outcome"], column)
        assert mine["attempted_by"] == ["pynode", uuid]
        assert len(theirs["attempted_by"]) == 2 and len(mine["attempted_by"]) == 2
        for column in ("attempted_at", "completed_at", "discarded_at", "cancelled_at"):
            assert (mine[column] is None) == (theirs[column] is None), (theirs["_outcome"], column)
        assert len(mine["errors"]) == len(theirs["errors"])
        for error, their_error in zip(mine["errors"], theirs["errors"], strict=True):
            assert set(error) == set(their_error) == {"at", "error", "attempt"}
            assert STAMP.match(error["at"]) and STAMP.match(their_error["at"])
            assert error["attempt"] == their_error["attempt"]
            if their_error["error"].startswith("** (Oban.PerformError)"):
                assert error["error"] == their_error["error"]  # same worker name, same text
            else:
                assert error["error"].startswith("** (ValueError) harness asked for a raise\n    ")
                assert their_error["error"].startswith("** (ArgumentError) harness asked for a raise\n    ")
                assert error["error"].endswith("\n") and their_error["error"].endswith("\n")
        # Retry delay: 15 + 2^attempt seconds plus up to 10% jitter, as Elixir's was.
        if theirs["state"] == "retryable":
            for r in (mine, theirs):
                delay = ts(r["scheduled_at"]) - ts(r["attempted_at"])  # type: ignore[operator]
                assert timedelta(seconds=17) <= delay <= timedelta(seconds=19), r
        if theirs["state"] == "scheduled":  # snoozed for 30 s
            for r in (mine, theirs):
                delay = ts(r["scheduled_at"]) - ts(r["attempted_at"])  # type: ignore[operator]
                assert timedelta(seconds=29.9) <= delay <= timedelta(seconds=30.5), r


async def test_only_own_queues_and_known_workers(db_url: str) -> None:
    async with AsyncObanBridge(db_url, queues={"badges": 5}) as oban:
        elixir_job = await oban.insert(Job.new("MyApp.Workers.Mailer", {"to": "x"}, queue="mailers"))
        unknown = await oban.insert(Job.new("Nobody.Home", {}, queue="badges", max_attempts=2))
        aliased = await oban.insert(Job.new("badge_forge.OldGenerate", {}, queue="badges"))
        await wait_for(lambda: count(db_url, f"id = {unknown.id} AND state = 'retryable'") == 1
                       and count(db_url, f"id = {aliased.id} AND state = 'completed'") == 1)
    untouched = rows(db_url, f"id = {elixir_job.id}")[0]
    assert (untouched["state"], untouched["attempt"], untouched["attempted_by"]) == ("available", 0, None)
    failed = rows(db_url, f"id = {unknown.id}")[0]
    assert failed["errors"][0]["error"] == "** (RuntimeError) unknown worker: Nobody.Home"
    # The second attempt exhausts it: discarded, like Elixir's missing worker.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE oban_jobs SET scheduled_at = now() - interval '1 second' WHERE id = %s", [unknown.id])
    async with AsyncObanBridge(db_url, queues={"badges": 5}):
        await wait_for(lambda: count(db_url, f"id = {unknown.id} AND state = 'discarded'") == 1)


async def test_insert_notification_wakes_an_idle_queue(db_url: str) -> None:
    """A job inserted the way Elixir does (row, then pg_notify on <prefix>.oban_insert) starts at
    once although the queue only polls once a minute."""
    async with AsyncObanBridge(db_url, queues={"badges": 2}, poll_interval=60, plugins=[]):
        await asyncio.sleep(0.2)
        with psycopg.connect(db_url, autocommit=True) as conn:
            with conn.transaction():
                conn.execute("INSERT INTO oban_jobs (worker, queue, args) VALUES ('badge_forge.generator.GenerateBadge', 'badges', '{}')")
                conn.execute("SELECT pg_notify(%s, %s)", [channel("public", "insert"), '{"queue":"badges"}'])
        started = time.monotonic()
        await wait_for(lambda: count(db_url, "state = 'completed'") == 1, timeout=5)
        assert time.monotonic() - started < 2


def elixir_signals() -> list[dict[str, Any]]:
    import json

    return [json.loads(n["payload"]) for n in fixture("notifications.jsonl") if n["channel"] == "public.oban_signal"]


async def test_elixir_signals_pause_scale_resume(db_url: str) -> None:
    pause, scale, resume, pause_all, resume_all = elixir_signals()[:5]
    assert (pause["action"], scale["limit"], pause_all["queue"]) == ("pause", 7, "*")

    def send(payload: dict[str, Any]) -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", [channel("public", "signal"), encode(payload)])

    async with AsyncObanBridge(db_url, queues={"elixir": 5, "badges": 1}, poll_interval=0.1, node="py-node") as oban:
        producers = oban.runtime.producers  # type: ignore[union-attr]
        send(pause)
        await wait_for(lambda: producers["elixir"].paused)
        await oban.insert(Job.new("Harness.Echo", {"outcome": "ok"}, queue="elixir"))
        await asyncio.sleep(0.4)
        assert count(db_url, "state = 'available'") == 1  # paused: not fetched
        send(scale)
        await wait_for(lambda: producers["elixir"].limit == 7)
        send(resume)
        await wait_for(lambda: count(db_url, "state = 'completed'") == 1)
        send(pause_all)
        await wait_for(lambda: producers["elixir"].paused and producers["badges"].paused)
        send(resume_all)
        await wait_for(lambda: not producers["elixir"].paused and not producers["badges"].paused)
        # Scoped to another node: ignored. Scoped to us (name.node): obeyed. Malformed: ignored.
        send({**pause, "ident": "Oban.vm"})
        send({"action": "scale", "queue": "elixir", "limit": "lots", "ident": "any"})
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", [channel("public", "signal"), "Z:not-base64!"])
        await asyncio.sleep(0.3)
        assert not producers["elixir"].paused and producers["elixir"].limit == 7
        send({**pause, "ident": f"ObanBridge.{oban.config.node}"})
        await wait_for(lambda: producers["elixir"].paused)


async def test_pkill_stops_a_running_async_job_and_records_it_as_elixir_does(db_url: str) -> None:
    async with AsyncObanBridge(db_url, queues={"slow": 2}, poll_interval=0.1) as oban:
        job = await oban.insert(Job.new("py.BlockingSleep", {"seconds": 0}, queue="slow"))
        await wait_for(lambda: count(db_url, "state = 'completed'") == 1)
        slow = await oban.insert(Job.new("py.LongSleep", {"seconds": 30}, queue="slow"))
        await wait_for(lambda: count(db_url, f"id = {slow.id} AND state = 'executing'") == 1)
        # What Oban.cancel_job does for an executing job: set cancelled, then signal pkill.
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("UPDATE oban_jobs SET state = 'cancelled', cancelled_at = now() WHERE id = %s", [slow.id])
            conn.execute("SELECT pg_notify(%s, %s)", [channel("public", "signal"),
                                                         encode({"action": "pkill", "job_id": slow.id, "ident": "any"})])
        await wait_for(lambda: slow.id not in oban.runtime.producers["slow"].running)  # type: ignore[union-attr]
        await asyncio.sleep(0.2)
    row = rows(db_url, f"id = {slow.id}")[0]
    assert row["state"] == "cancelled"
    assert [e["error"] for e in row["errors"]] == ["** (Oban.PerformError) py.LongSleep failed with {:cancel, :shutdown}"]
    assert job.id is not None


async def test_timeout_is_recorded_like_elixir(db_url: str) -> None:
    async with AsyncObanBridge(db_url, queues={"slow": 1}, poll_interval=0.1) as oban:
        job = await oban.insert(Job.new("py.Sleep", {"seconds": 5}, queue="slow"))
        await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'retryable'") == 1)
    error = rows(db_url, f"id = {job.id}")[0]["errors"][0]["error"]
    assert error == "** (Oban.TimeoutError) py.Sleep timed out after 200ms"


async def test_custom_backoff_and_exhaustion(db_url: str) -> None:
    async with AsyncObanBridge(db_url, queues={"elixir": 1}, poll_interval=0.1) as oban:
        job = await oban.insert(Job.new("py.CustomBackoff", {}, queue="elixir", max_attempts=3))
        await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'retryable'") == 1)
    row = rows(db_url, f"id = {job.id}")[0]
    delay = ts(row["scheduled_at"]) - ts(row["attempted_at"])  # type: ignore[operator]
    assert timedelta(seconds=999) < delay < timedelta(seconds=1001)


async def test_two_nodes_share_a_queue_without_running_a_job_twice(db_url: str) -> None:
    workers.runs.clear()
    async with AsyncObanBridge(db_url) as client:
        jobs = await client.insert_all(
            [Job.new("badge_forge.generator.GenerateBadge" if i % 2 else "py.AsyncCount", {"i": i}, queue="badges")
             for i in range(3000)]
        )
    nodes = [AsyncObanBridge(db_url, queues={"badges": 20}, node=f"node{i}", poll_interval=0.1) for i in range(2)]
    for node in nodes:
        await node.open()
        await node.start()
    try:
        await wait_for(lambda: count(db_url, "state = 'completed'") == 3000, timeout=60)
    finally:
        for node in nodes:
            await node.stop()
            await node.close()
    assert sorted(workers.runs) == sorted(j.id for j in jobs)
    assert set(workers.runs.values()) == {1}
    by_node = {r["attempted_by"][0] for r in rows(db_url)}
    assert by_node <= {"node0", "node1"}


def test_sync_facade_starts_and_stops_queues(db_url: str) -> None:
    with ObanBridge(db_url, queues="badges:4") as oban:
        oban.insert_all([Job.new("badge_forge.generator.GenerateBadge", {"i": i}, queue="badges") for i in range(50)])
        deadline = time.monotonic() + 10
        while count(db_url, "state = 'completed'") < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert count(db_url, "state = 'completed'") == 50


async def test_shutdown_leaves_running_jobs_for_the_lifeline(db_url: str) -> None:
    workers.started.clear()
    oban = AsyncObanBridge(db_url, queues={"slow": 1}, poll_interval=0.1, shutdown_grace=0.2)
    await oban.open()
    await oban.start()
    job = await oban.insert(Job.new("py.LongSleep", {"seconds": 30}, queue="slow", max_attempts=5))
    await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'executing'") == 1)
    await oban.stop()
    await oban.close()
    assert rows(db_url, f"id = {job.id}")[0]["state"] == "executing"  # not lost, not acked
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE oban_jobs SET attempted_at = attempted_at - interval '2 hours' WHERE id = %s", [job.id])
    # The stopped node is gone: its job comes back through the orphan rescue (a short grace here).
    lifeline = Lifeline(rescue_after=3600, interval=0.05, orphan_grace=0.2)
    async with AsyncObanBridge(db_url, queues={"other": 1}, plugins=[lifeline], poll_interval=0.1) as runner:
        await wait_for(lambda: runner.runtime is not None and runner.runtime.is_leader())
        await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'available'") == 1)


async def test_stager_makes_due_jobs_available_and_notifies(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute('LISTEN "public.oban_insert"')
        async with AsyncObanBridge(db_url, queues={"other": 1}, poll_interval=0.1) as oban:
            job = await oban.insert(Job.new("W", {}, queue="later", schedule_in=0.3))
            await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'available'") == 1)
        heard = [(n.channel, n.payload) for n in listener.notifies(timeout=0.2)]
    assert ("public.oban_insert", '{"queue":"later"}') in heard


async def test_leadership_never_touches_elixirs_lease(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO oban_peers VALUES ('Oban', 'vm', now(), now() + interval '30 seconds')")
    async with AsyncObanBridge(db_url, queues={"q": 1}) as oban:
        await wait_for(lambda: oban.runtime is not None and oban.runtime.is_leader())
        with psycopg.connect(db_url) as conn:
            peers = dict(conn.execute("SELECT name, node FROM oban_peers").fetchall())
        assert peers == {"Oban": "vm", "ObanBridge": oban.config.node}
    with psycopg.connect(db_url) as conn:
        assert dict(conn.execute("SELECT name, node FROM oban_peers").fetchall()) == {"Oban": "vm"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [("badges", "expected NAME:LIMIT"), ("badges:0", "positive integer"), ("badges:x", "positive integer"),
     (":3", "expected NAME:LIMIT")],
)
def test_bad_queue_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_queues(spec)


def test_queue_spec_parses() -> None:
    from oban_bridge.limits import QueueOptions

    assert parse_queues("badges:10, printing:2") == {"badges": QueueOptions(10), "printing": QueueOptions(2)}


async def test_start_refuses_a_database_without_oban(empty_db_url: str) -> None:
    from oban_bridge import SchemaMissingError

    with pytest.raises(SchemaMissingError):
        async with AsyncObanBridge(empty_db_url, queues={"q": 1}):
            pass


async def test_on_event_hook_sees_every_outcome(db_url: str) -> None:
    seen: list[tuple[str, str]] = []
    async with AsyncObanBridge(db_url, queues={"elixir": 2}, poll_interval=0.1,
                               on_event=lambda o: seen.append((o.event, o.job.worker))) as oban:
        await oban.insert(Job.new("Harness.Echo", {"outcome": "ok"}, queue="elixir"))
        await oban.insert(Job.new("Harness.Echo", {"outcome": "error"}, queue="elixir"))
        await wait_for(lambda: len(seen) == 2)
    assert sorted(seen) == [("failure", "Harness.Echo"), ("success", "Harness.Echo")]


async def test_notifier_reconnects_and_polling_covers_the_gap(db_url: str) -> None:
    async with AsyncObanBridge(db_url, queues={"badges": 2}, poll_interval=0.2, plugins=[]) as oban:
        notifier = oban.runtime.notifier  # type: ignore[union-attr]
        await asyncio.wait_for(notifier.connected.wait(), 5)
        with psycopg.connect(db_url, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%%'").fetchone()
        assert killed == (1,)
        # While it is down, polling still runs jobs.
        first = await oban.insert(Job.new("badge_forge.generator.GenerateBadge", {}, queue="badges"))
        await wait_for(lambda: count(db_url, f"id = {first.id} AND state = 'completed'") == 1)
        await asyncio.wait_for(notifier.connected.wait(), 10)
        # After the reconnect, a notification wakes the queue again (polling slowed right down).
        for producer in oban.runtime.producers.values():  # type: ignore[union-attr]
            producer.poll_interval = 60
        await asyncio.sleep(0.3)
        second = await oban.insert(Job.new("badge_forge.generator.GenerateBadge", {}, queue="badges"))
        await wait_for(lambda: count(db_url, f"id = {second.id} AND state = 'completed'") == 1, timeout=5)


async def test_pruner_deletes_old_finished_jobs_only(db_url: str) -> None:
    from oban_bridge.plugins.pruner import Pruner

    async with AsyncObanBridge(db_url) as client:
        jobs = await client.insert_all([Job.new("W", {"i": i}, queue="q") for i in range(5)])
    ids = [j.id for j in jobs]
    with psycopg.connect(db_url, autocommit=True) as conn:
        old = "now() at time zone 'utc' - interval '2 minutes'"
        conn.execute(f"UPDATE oban_jobs SET state = 'completed', completed_at = {old}, scheduled_at = {old} WHERE id = %s", [ids[0]])
        conn.execute(f"UPDATE oban_jobs SET state = 'cancelled', cancelled_at = {old} WHERE id = %s", [ids[1]])
        conn.execute(f"UPDATE oban_jobs SET state = 'discarded', discarded_at = {old} WHERE id = %s", [ids[2]])
        conn.execute("UPDATE oban_jobs SET state = 'completed', completed_at = now() WHERE id = %s", [ids[3]])
    async with AsyncObanBridge(db_url, queues={"other": 1}, plugins=[Pruner(max_age=60, interval=0.05, scope="all")]) as oban:
        await wait_for(lambda: oban.runtime is not None and oban.runtime.is_leader())
        await wait_for(lambda: count(db_url, "TRUE") == 2)
    with psycopg.connect(db_url) as conn:
        left = [r[0] for r in conn.execute("SELECT id FROM oban_jobs ORDER BY id")]
    assert left == ids[3:]
    with pytest.raises(ValueError):
        Pruner(max_age=0)
