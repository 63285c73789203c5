"""A Python node in a database an Elixir app already runs Oban on: its plugins keep to what it owns,
its orphan rescue never takes a live producer's job, it obeys the signals Oban Web sends, and Oban
Web's counts stay true. Elixir's side is played by rows and notifications shaped exactly like the
real Elixir node's (elixir_interop_fixtures/)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oban_bridge import AsyncObanBridge, Job
from oban_bridge.notifier import channel, decode, encode
from oban_bridge.plugins.base import Plugin
from oban_bridge.plugins.gossip import Gossip
from oban_bridge.plugins.lifeline import Lifeline
from oban_bridge.plugins.met import Met
from oban_bridge.plugins.pruner import Pruner
from oban_bridge.plugins.settings import PluginSettings, parse_duration
from oban_bridge.producer import producer_uuid
from oban_bridge.runtime import addressed, default_plugins

from . import workers
from .conftest import fixture
from .test_reliability import ROOT, ledger_counts, ledger_table
from .test_runtime import count, rows, wait_for

ELIXIR_UUID = "7b6bf581-f1ae-41c3-ab42-2bb3728ab9b3"  # the fixture node's producer (UUID v4)
COLUMNS = ("state", "queue", "worker", "args", "meta", "tags", "errors", "attempt", "max_attempts", "priority",
           "attempted_by", "inserted_at", "scheduled_at", "attempted_at", "completed_at", "cancelled_at",
           "discarded_at")


def copy_elixir_rows(url: str, *, age: str = "3 days") -> list[int]:
    """The rows the real Elixir node left (every finished state, attempted_by ["vm", <v4 uuid>]),
    made `age` older, as a long-running Elixir app's history."""
    ids = []
    with psycopg.connect(url, autocommit=True) as conn:
        for row in fixture("jobs_after_execution.json")["rows"]:
            values = [json.dumps(row[c]) if c in ("args", "meta") else row[c] for c in COLUMNS]
            values[COLUMNS.index("errors")] = [json.dumps(e) for e in row["errors"]]
            got = conn.execute(
                f"INSERT INTO oban_jobs ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "  # noqa: S608
                "RETURNING id", values).fetchone()
            assert got is not None
            ids.append(got[0])
        for column in ("inserted_at", "scheduled_at", "attempted_at", "completed_at", "cancelled_at", "discarded_at"):
            conn.execute(f"UPDATE oban_jobs SET {column} = {column} - %s::interval WHERE id = ANY(%s)",  # noqa: S608
                         [age, ids])
    return ids


def executing_row(url: str, queue: str, producer: str, *, node: str = "vm", hours: float = 2) -> int:
    """A job executing for `hours`, attempted by `producer` on `node`."""
    with psycopg.connect(url, autocommit=True) as conn:
        got = conn.execute(
            "INSERT INTO oban_jobs (state, queue, worker, args, attempt, max_attempts, attempted_by, attempted_at, "
            "scheduled_at) VALUES ('executing', %s, 'MyApp.Export', '{}', 1, 20, ARRAY[%s, %s], "
            "timezone('UTC', now()) - %s * interval '1 hour', timezone('UTC', now()) - %s * interval '1 hour') "
            "RETURNING id", [queue, node, producer, hours, hours]).fetchone()
    assert got is not None
    return int(got[0])


def finished_python_row(url: str, queue: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        got = conn.execute(
            "INSERT INTO oban_jobs (state, queue, worker, args, attempt, attempted_by, attempted_at, scheduled_at, "
            "completed_at) VALUES ('completed', %s, 'py.Span', '{}', 1, ARRAY['py', %s], "
            "timezone('UTC', now()) - interval '3 days', timezone('UTC', now()) - interval '3 days', "
            "timezone('UTC', now()) - interval '3 days') RETURNING id", [queue, producer_uuid()]).fetchone()
    assert got is not None
    return int(got[0])


def present(url: str, producer: str) -> psycopg.Connection[Any]:
    """A session holding `producer`'s presence lock, as a live oban_bridge node's connections do."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SELECT pg_advisory_lock_shared(hashtext('oban_bridge.producer'), hashtext(%s))", [producer])
    return conn


# --- plugins keep to what the node owns ------------------------------------------------------------

def test_default_plugins_act_on_what_the_node_owns() -> None:
    plugins = {type(p).__name__: p for p in default_plugins()}
    pruner, lifeline = plugins["Pruner"], plugins["Lifeline"]
    assert isinstance(pruner, Pruner) and isinstance(lifeline, Lifeline)
    assert (pruner.scope, pruner.max_age, pruner.interval, pruner.limit) == ("own", 60, 30, 10_000)
    assert (lifeline.scope, lifeline.rescue_after, lifeline.rescue_interval) == ("own", 3600, 60)
    assert {p.scope for p in default_plugins("all") if isinstance(p, (Pruner, Lifeline))} == {"all"}
    for bad in ({"scope": "mine"}, {"max_age": 0}, {"limit": 1.5}, {"interval": -1}):
        with pytest.raises(ValueError, match="pruner"):
            Pruner(**bad)
    for bad2 in ({"scope": None}, {"rescue_after": 0}, {"orphan_grace": -1}, {"orphan_interval": 0}):
        with pytest.raises(ValueError, match="lifeline"):
            Lifeline(**bad2)


async def test_an_elixir_apps_history_and_long_jobs_survive_a_python_nodes_plugins(db_url: str) -> None:
    elixir_history = copy_elixir_rows(db_url)
    elixir_long_job = executing_row(db_url, "elixir", ELIXIR_UUID, hours=2)
    python_old = finished_python_row(db_url, "py")
    # Another Python instance's live 2-hour job (its producer present): its own lifeline decides.
    other_instance = producer_uuid()
    other_long_job = executing_row(db_url, "reports", other_instance, node="reports-node", hours=2)
    holder = present(db_url, other_instance)
    # Elixir's defaults would delete the history after 60 s and rescue the job after 60 minutes;
    # short intervals here so the plugins run many times.
    plugins: list[Plugin] = [Pruner(max_age=60, interval=0.05), Lifeline(rescue_after=3600, interval=0.05)]
    try:
        async with AsyncObanBridge(db_url, queues={"py": 2}, plugins=plugins, poll_interval=0.1,
                                   node="py-node") as oban:
            assert oban.runtime is not None
            # One of this node's own jobs, stuck for 2 hours: the lifeline's to rescue.
            stuck = executing_row(db_url, "py", oban.runtime.producers["py"].uuid, node="py-node", hours=2)
            await wait_for(lambda: oban.runtime is not None and oban.runtime.is_leader())
            await wait_for(lambda: count(db_url, f"id = {python_old}") == 0)
            await wait_for(lambda: count(db_url, f"id = {stuck} AND state <> 'executing'") == 1)
            await asyncio.sleep(0.5)
    finally:
        holder.close()
    assert count(db_url, f"id = ANY(ARRAY{elixir_history})") == len(elixir_history)
    assert rows(db_url, f"id = {elixir_long_job}")[0]["state"] == "executing"
    assert rows(db_url, f"id = {other_long_job}")[0]["state"] == "executing"


async def test_with_scope_all_a_python_only_deployment_prunes_and_rescues_everything(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    history = copy_elixir_rows(db_url)
    finished = [r["id"] for r in rows(db_url, f"id = ANY(ARRAY{history})")
                if r["state"] in ("completed", "cancelled", "discarded")]
    long_job = executing_row(db_url, "elixir", ELIXIR_UUID, hours=2)
    plugins: list[Plugin] = [Pruner(max_age=60, interval=0.05, scope="all"),
                             Lifeline(rescue_after=3600, interval=0.05, scope="all")]
    async with AsyncObanBridge(db_url, queues={"py": 2}, plugins=plugins, poll_interval=0.1) as oban:
        await wait_for(lambda: oban.runtime is not None and oban.runtime.is_leader())
        await wait_for(lambda: rows(db_url, f"id = {long_job}")[0]["state"] == "available")
        await wait_for(lambda: count(db_url, f"id = ANY(ARRAY{finished})") == 0)
    assert count(db_url, f"id = ANY(ARRAY{history})") == len(history) - len(finished)
    [record] = [r for r in caplog.records if r.getMessage().startswith("lifeline rescued")]
    assert record.levelname == "WARNING" and "executing for over 3600s" in record.getMessage()
    assert (record.count, record.job_ids, record.discarded_ids) == (1, [long_job], [])  # type: ignore[attr-defined]


async def test_the_pruner_keeps_to_the_queues_of_its_instance_heard_in_gossip(db_url: str) -> None:
    """Node A (the leader) runs queue a, node B of the same instance runs queue b: the leader prunes
    both; a queue of another instance (Elixir's) is left alone."""
    a_old, b_old, other_old = (finished_python_row(db_url, q) for q in ("a", "b", "elixir"))
    async with AsyncObanBridge(db_url, queues={"b": 1}, node="node-b",
                               plugins=[Gossip(interval=0.1), Pruner(max_age=60, interval=0.3)]) as b:
        async with AsyncObanBridge(db_url, queues={"a": 1}, node="node-a",
                                   plugins=[Gossip(interval=0.1), Pruner(max_age=60, interval=0.3)]) as a:
            # Whichever is the leader prunes both queues.
            await wait_for(lambda: any(n.runtime is not None and n.runtime.is_leader() for n in (a, b)))
            await wait_for(lambda: count(db_url, f"id IN ({a_old}, {b_old})") == 0)
            await asyncio.sleep(0.6)
    assert count(db_url, f"id = {other_old}") == 1


# --- orphan rescue is never premature --------------------------------------------------------------

async def test_a_producer_that_comes_back_within_the_grace_keeps_its_job(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The producer's presence drops for 0.2 s at a time (its connections terminated and retaken,
    as a failover does) over 3 s: it was never absent for the whole 1 s grace, so its 1 hour old
    job stays with it. Once it is gone for good, the job comes back after the grace."""
    producer = producer_uuid()
    job = executing_row(db_url, "py", producer, node="flaky", hours=1)
    holder = present(db_url, producer)
    lifeline = Lifeline(orphan_grace=1.0, orphan_interval=0.05)
    try:
        async with AsyncObanBridge(db_url, queues={"other": 1}, plugins=[lifeline], poll_interval=0.1):
            for _ in range(8):
                holder.close()
                await asyncio.sleep(0.2)
                holder = present(db_url, producer)
                await asyncio.sleep(0.15)
                assert rows(db_url, f"id = {job}")[0]["state"] == "executing"
            holder.close()
            gone = time.monotonic()
            await wait_for(lambda: rows(db_url, f"id = {job}")[0]["state"] == "available")
            assert time.monotonic() - gone >= 1.0
    finally:
        holder.close()
    row = rows(db_url, f"id = {job}")[0]
    assert (row["attempt"], row["errors"]) == (1, [])
    [record] = [r for r in caplog.records if r.getMessage().startswith("lifeline rescued")]
    assert "held no presence lock for 1s" in record.getMessage()
    assert (record.job_ids, record.producers, record.queues) == ([job], [producer], ["py"])  # type: ignore[attr-defined]


def _terminate(url: str, appname: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        got = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE application_name = %s", [appname]).fetchone()
    return int(got[0]) if got else 0


async def test_terminating_a_nodes_backends_never_runs_an_attempt_twice(db_url: str) -> None:
    """Node A runs a 6 s job; every backend it has is terminated again and again (a failover, a
    PgBouncer restart). Node B serves the same queue with a 1 s orphan grace and looks every 50 ms:
    it must never take A's job, which completes once, at attempt 1."""
    ledger_table(db_url)
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT), "PGAPPNAME": "victim-node"}
    victim = subprocess.Popen(
        [sys.executable, "-m", "oban_bridge", "start", "-m", "tests.workers", "-q", "ledger:1", "--node", "victim",
         "--grace", "30"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        await wait_for(lambda: count_sessions(db_url, "victim-node") >= 3, timeout=30)
        async with AsyncObanBridge(db_url) as client:
            job = await client.insert(Job.new("py.Ledger", {"sleep": 6}, queue="ledger"))
        await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'executing'") == 1, timeout=20)
        lifeline = Lifeline(orphan_grace=1.0, orphan_interval=0.05)
        async with AsyncObanBridge(db_url, queues={"ledger": 1}, node="watcher", plugins=[lifeline], poll_interval=0.05):
            for _ in range(12):
                assert _terminate(db_url, "victim-node") >= 1
                await asyncio.sleep(0.3)
            await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'completed'") == 1, timeout=30)
    finally:
        victim.send_signal(signal.SIGTERM)
        victim.wait(60)
    row = rows(db_url, f"id = {job.id}")[0]
    assert (row["attempt"], row["attempted_by"][0]) == (1, "victim")
    assert ledger_counts(db_url) == {job.id: 1}


def count_sessions(url: str, appname: str) -> int:
    with psycopg.connect(url) as conn:
        got = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [appname]).fetchone()
    return int(got[0]) if got else 0


# --- signals as Oban Web sends them -----------------------------------------------------------------

def test_addressed_answers_any_instance_name_on_this_node_only() -> None:
    node = "py-node"
    for ident in ("any", "Oban.py-node", "MyApp.Oban.py-node", ":jobs.py-node", ':"my jobs".py-node',
                  "ObanBridge.py-node"):
        assert addressed(ident, "ObanBridge", node), ident
    assert addressed("weird name!.py-node", "weird name!", node)  # our own name, whatever it is
    for other in ("Oban.vm", "Oban.other-py-node", "Oban.web.py-node", "py-node", ".py-node", "Oban.py-node2",
                  "", 5, ["any"]):
        assert not addressed(other, "ObanBridge", node), other
    for elixir_name in (":Jobs", ":café", '"oban"', "MyApp.Oban"):  # what inspect/1 prints for them
        assert addressed(f"{elixir_name}.{node}", "ObanBridge", node), elixir_name
    # Another instance checks in from this node under that name: the signal is for it, not us.
    assert not addressed("Billing.py-node", "ObanBridge", node, others={"Billing"})
    assert addressed("ObanBridge.py-node", "ObanBridge", node, others={"Billing"})


async def test_every_signal_oban_web_sends_reaches_the_right_python_queue(db_url: str) -> None:
    """lib/oban/web/pages/queues_page.ex calls Oban.pause_queue/resume_queue/scale_queue/stop_queue
    with its own instance name, for all nodes or one: the payloads lib/oban.ex writes for those."""
    pause_any, scale_any, resume_any = [json.loads(n["payload"]) for n in fixture("notifications.jsonl")
                                        if n["channel"] == "public.oban_signal"][:3]

    def send(payload: dict[str, Any]) -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", [channel("public", "signal"), encode(payload)])

    def on(payload: dict[str, Any], queue: str, ident: str) -> dict[str, Any]:
        return {**payload, "queue": queue, "ident": ident}

    async with AsyncObanBridge(db_url, queues={"media": 2, "mail": 3}, node="py-node", plugins=[Gossip(interval=0.1)],
                               poll_interval=0.1) as oban:
        runtime = oban.runtime
        assert runtime is not None
        media, mail = runtime.producers["media"], runtime.producers["mail"]
        for ident in ("any", "Oban.py-node", "MyApp.Oban.py-node"):
            send(on(pause_any, "media", ident))
            await wait_for(lambda: media.paused)
            assert not mail.paused
            send(on(scale_any, "media", ident) | {"limit": 9})
            await wait_for(lambda: media.limit == 9)
            assert mail.limit == 3
            send(on(resume_any, "media", ident))
            await wait_for(lambda: not media.paused)
            send(on(scale_any, "media", "any") | {"limit": 2})
            await wait_for(lambda: media.limit == 2)
        # Another node, or "*" for a scale (producer.ex matches only the named queue): no change.
        send(on(pause_any, "media", "Oban.vm"))
        send(on(scale_any, "*", "any") | {"limit": 7})
        send(on(pause_any, "media", "Oban.web.py-node"))
        await asyncio.sleep(0.4)
        assert (media.paused, media.limit, mail.limit) == (False, 2, 3)
        # stop: the queue's running job finishes and is recorded, then the queue is gone.
        workers.started.clear()
        job = await oban.insert(Job.new("py.LongSleep", {"seconds": 1}, queue="media"))
        await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'executing'") == 1)
        send({"action": "stop", "ident": "Oban.py-node", "queue": "media"})
        await wait_for(lambda: "media" not in runtime.producers, timeout=15)
        assert rows(db_url, f"id = {job.id}")[0]["state"] == "completed"
        later = await oban.insert(Job.new("py.Span", {"ms": 1}, queue="media"))
        assert "mail" in runtime.producers and [c["queue"] for c in runtime.checks()] == ["mail"]
        await asyncio.sleep(0.5)
        assert rows(db_url, f"id = {later.id}")[0]["state"] == "available"
        # Oban.start_queue/2 (lib/oban.ex): the stopped queue runs again with the signal's limit;
        # a queue this node never ran is not started.
        uuid_before = media.uuid
        send({"action": "start", "ident": "any", "queue": "media", "limit": 4})
        send({"action": "start", "ident": "any", "queue": "elixir_only", "limit": 4})
        await wait_for(lambda: rows(db_url, f"id = {later.id}")[0]["state"] == "completed")
        again = runtime.producers["media"]
        assert (again.limit, again.uuid, again.paused) == (4, uuid_before, False)
        assert sorted(runtime.producers) == ["mail", "media"]


# --- one set of counts in Oban Web ---------------------------------------------------------------------

def table_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {s: int(n) for s, n in conn.execute("SELECT state::text, count(*) FROM oban_jobs GROUP BY 1")}


class MetReplay:
    """What oban_met 1.3.0 makes of the `metrics` channel (recorder.ex): the latest value per series
    and labels — the sender's node among them — and, for Oban Web, the latest full_count values of
    the last `lookback` seconds summed by state (latest/3, Value.sum of gauges)."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str], tuple[int, int]] = {}

    def store(self, payload: dict[str, Any]) -> None:
        for metric in payload["metrics"]:
            if metric["series"] != "full_count":
                continue
            labels = {k: v for k, v in metric.items() if k not in ("series", "value")} | {"node": payload["node"]}
            key = (metric["series"], orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode())
            self.latest[key] = (payload["time"], sum(metric["value"]["data"]))

    def counts(self, now: int, lookback: int = 2) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for (_, labels), (at, value) in self.latest.items():
            if at >= now - lookback:
                out[orjson.loads(labels)["state"]] += value
        return dict(out)


def elixir_leader(url: str, stop: threading.Event) -> None:
    """The Elixir leader's reporter (reporter.ex): every second, exact full counts of every queue
    as {"metrics": [...], "name": "Oban", "node": "vm", "time": ...}, the fixtures' shape."""
    shape = next(json.loads(n["payload"]) for n in fixture("notifications.jsonl")
                 if n["channel"] == "public.oban_metrics" and n["payload"].startswith("{\"metrics\":[{"))
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            metrics = [{"queue": q, "series": "full_count", "state": s, "value": {"data": [n]}} for s, q, n in
                       conn.execute("SELECT state::text, queue, count(*) FROM oban_jobs GROUP BY 1, 2")]
            payload = {**shape, "metrics": metrics, "time": int(time.time())}
            conn.execute("SELECT pg_notify(%s, %s)", [channel("public", "metrics"), encode(payload)])
            stop.wait(1.0)


async def replayed_counts(url: str, seconds: float) -> list[tuple[dict[str, int], dict[str, int]]]:
    """Every half second for `seconds`: what Oban Web would show, and the table's counts."""
    replay = MetReplay()
    seen: list[tuple[dict[str, int], dict[str, int]]] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute('LISTEN "public.oban_metrics"')
        deadline = time.monotonic() + seconds
        next_look = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            async for note in conn.notifies(timeout=0.1):
                replay.store(decode(note.payload))
            if time.monotonic() >= next_look:
                next_look += 0.5
                seen.append((replay.counts(int(time.time())), table_counts(url)))
    return seen


async def test_oban_web_counts_each_job_once_beside_an_elixir_leader(db_url: str) -> None:
    copy_elixir_rows(db_url, age="1 minute")
    stop = threading.Event()
    elixir = threading.Thread(target=elixir_leader, args=(db_url, stop), daemon=True)
    elixir.start()
    try:
        await asyncio.sleep(1.2)
        met = Met(interval=0.5, listen_first=1.0)
        async with AsyncObanBridge(db_url, queues={"py": 1}, plugins=[met], node="py-node") as oban:
            await wait_for(lambda: oban.runtime is not None and oban.runtime.is_leader())
            seen = await replayed_counts(db_url, 6.0)
    finally:
        stop.set()
        elixir.join(5)
    assert seen and all(shown == table for shown, table in seen[1:]), seen


async def test_without_an_elixir_leader_the_python_leader_counts(db_url: str) -> None:
    copy_elixir_rows(db_url, age="1 minute")
    met = Met(interval=0.5, listen_first=1.0)
    async with AsyncObanBridge(db_url, queues={"py": 1}, plugins=[met], node="py-node") as oban:
        await wait_for(lambda: oban.runtime is not None and oban.runtime.is_leader())
        await oban.insert_all([Job.new("W", {"i": i}, queue="py", schedule_in=3600) for i in range(4)])
        await asyncio.sleep(1.5)
        seen = await replayed_counts(db_url, 3.0)
    assert seen and all(shown == table for shown, table in seen[1:]), seen


async def test_two_python_instances_settle_on_one_counter(db_url: str) -> None:
    copy_elixir_rows(db_url, age="1 minute")
    plugins_a: list[Plugin] = [Met(interval=0.5, listen_first=0.5, defer_for=(1.5, 3.0))]
    plugins_b: list[Plugin] = [Met(interval=0.5, listen_first=0.5, defer_for=(1.5, 3.0))]
    async with AsyncObanBridge(db_url, queues={"a": 1}, name="Billing", plugins=plugins_a), \
            AsyncObanBridge(db_url, queues={"b": 1}, name="Media", plugins=plugins_b):
        await asyncio.sleep(8.0)
        seen = await replayed_counts(db_url, 6.0)
    shown = [s for s, _ in seen]
    table = seen[0][1]
    # Settled: at most a few looks show a gap or an overlap, none shows both counting for long.
    assert sum(s == table for s in shown) >= len(shown) - 3, seen


async def test_past_the_estimate_limit_counts_are_estimated_like_oban_mets(db_url: str) -> None:
    async with AsyncObanBridge(db_url) as client:
        await client.insert_all([Job.new("W", {"i": i}, queue="big", schedule_in=3600) for i in range(300)])
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE oban_jobs")
    met = Met(estimate_limit=100)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        first = await met.full_count("public", conn)
        assert first == [{"series": "full_count", "state": "scheduled", "queue": "big", "value": {"data": [300]}}]
        with psycopg.connect(db_url, autocommit=True) as other:
            other.execute("UPDATE oban_jobs SET state = 'available' WHERE id IN (SELECT id FROM oban_jobs LIMIT 10)")
        second = await met.full_count("public", conn)
    by_state = {m["state"]: m["value"]["data"][0] for m in second}
    # "scheduled" passed the limit: the planner's estimate (the ANALYZEd 300, not the true 290);
    # "available" stays exact.
    assert by_state == {"scheduled": 300, "available": 10}


def test_a_uuid4_producer_is_never_ours() -> None:
    assert producer_uuid()[14] == "8" and str(uuid.uuid4())[14] == "4"


# --- settings: start options, [tool.oban_bridge], client arguments ------------------------------------

@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["", "ms", "s", "m", "h", "d"]))
def test_durations_read_as_elixir_users_write_them(n: int, unit: str) -> None:
    scale = {"": 1, "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert parse_duration(f"{n}{unit}", what="x") == pytest.approx(n * scale)
    assert parse_duration(n, what="x") == n


@given(st.text(max_size=12))
def test_a_bad_duration_is_a_clear_error_never_a_crash(text: str) -> None:
    try:
        value = parse_duration(text, what="prune_after")
    except ValueError as exc:
        assert str(exc).startswith("prune_after: ")
    else:
        assert value is None or value > 0


def test_settings_build_the_plugins_start_runs() -> None:
    settings = PluginSettings.parse({"plugin_scope": "all", "prune_after": "7d", "prune_limit": 500,
                                     "rescue_after": "off", "orphan_grace": "45s"})
    plugins = {type(p).__name__: p for p in default_plugins(settings=settings)}
    pruner, lifeline = plugins["Pruner"], plugins["Lifeline"]
    assert isinstance(pruner, Pruner) and isinstance(lifeline, Lifeline)
    assert (pruner.scope, pruner.max_age, pruner.limit) == ("all", 7 * 86400, 500)
    assert (lifeline.scope, lifeline.rescue_after, lifeline.orphan_grace) == ("all", None, 45)
    assert "Pruner" not in {type(p).__name__ for p in default_plugins(settings=PluginSettings.parse({"prune_after": "off"}))}
    for bad in ({"plugin_scope": "everything"}, {"prune_limit": 0}, {"prune_limit": True}, {"colour": 1},
                {"orphan_grace": "off"}, {"rescue_after": [1]}):
        with pytest.raises(ValueError):
            PluginSettings.parse(bad)


def test_start_reads_plugin_settings_from_pyproject(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from oban_bridge.cli import Context, main
    from oban_bridge.cli.start import plugin_settings

    (tmp_path / "pyproject.toml").write_text('[tool.oban_bridge]\nprune_after = "14d"\nplugin_scope = "all"\n')
    monkeypatch.chdir(tmp_path)
    from oban_bridge.cli import project_settings

    obj = Context(None, "public", False, project_settings())
    assert plugin_settings(obj).prune_after == 14 * 86400 and plugin_settings(obj).scope == "all"
    assert plugin_settings(obj, prune_after="1h").prune_after == 3600  # the option wins
    (tmp_path / "pyproject.toml").write_text('[tool.oban_bridge]\nrescue_after = "soon"\n')
    result = CliRunner().invoke(main, ["queues", "--listen", "0"])
    assert result.exit_code == 2 and "rescue_after" in result.output


async def test_a_deaf_leader_does_not_count_and_its_own_metrics_survive_a_failed_count(db_url: str) -> None:
    met = Met(listen_first=0.0)
    assert met.counting(True, listening=1)
    assert not met.counting(True, listening=0)  # the notifier is down: it cannot know who counts
    slow = Met(listen_first=60.0)
    assert not slow.counting(True, listening=1)
    assert not slow.counting(True, listening=2)  # a reconnect starts the listening over

    class Ctx:
        prefix, name, node = "public", "ObanBridge", "py-node"

        def is_leader(self) -> bool:
            return True

        def listening(self) -> int:
            return 1

    async def broken(prefix: str, conn: Any) -> list[dict[str, Any]]:
        raise psycopg.errors.InvalidTextRepresentation("invalid input value for enum oban_job_state")

    met.full_count = broken  # type: ignore[method-assign]
    met.record("success", "py", "py.Span", 0.001, 0.001)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute('LISTEN "public.oban_metrics"')
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as sender:
            await met.tick(Ctx(), sender)  # type: ignore[arg-type]
        got = [decode(n.payload) async for n in conn.notifies(timeout=1, stop_after=1)]
    assert [m["series"] for m in got[0]["metrics"]] == ["exec_time", "wait_time", "exec_count"]


async def test_start_warns_about_waiting_jobs_for_workers_the_node_lacks(db_url: str,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    async with AsyncObanBridge(db_url) as client:
        await client.insert(Job.new("MyApp.ElixirOnly", {}, queue="shared", schedule_in=3600))
        await client.insert(Job.new("py.Span", {}, queue="shared", schedule_in=3600))
    with caplog.at_level("WARNING", logger="oban_bridge.runtime"):
        async with AsyncObanBridge(db_url, queues={"shared": 1}, plugins=[]):
            await wait_for(lambda: any("MyApp.ElixirOnly" in r.getMessage() for r in caplog.records), timeout=5)
    [warning] = [r for r in caplog.records if "does not define" in r.getMessage()]
    assert "py.Span" not in warning.getMessage() and getattr(warning, "workers") == ["MyApp.ElixirOnly"]
