"""Unique jobs: Elixir's semantics, and the guarantee when Elixir and Python race.

The race tests drive a writer that follows Elixir's exact protocol (basic.ex insert_unique/3):
BEGIN; pg_try_advisory_xact_lock(<bigint>); SELECT … LIMIT 1; INSERT; COMMIT — with the bigint an
arbitrary key, since Elixir's phash2 of an Ecto query cannot be computed outside the BEAM.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from oban_bridge import Job, ObanBridge, ValidationError
from oban_bridge.unique import STATE_GROUPS, Unique, normalize_unique


def count(bridge: ObanBridge, worker: str = "U") -> int:
    with bridge.connection() as conn:
        row = conn.execute("SELECT count(*) FROM oban_jobs WHERE worker = %s", [worker]).fetchone()
        assert row is not None
        return int(row[0])


def test_default_fields_compare_whole_args(bridge: ObanBridge) -> None:
    first = bridge.insert(Job.new("U", {"a": 1, "b": 2}, unique=True))
    assert not first.conflict
    # Same args in another order: a conflict. A superset or subset: not (@> and <@ both hold).
    assert bridge.insert(Job.new("U", {"b": 2, "a": 1}, unique=True)).id == first.id
    assert not bridge.insert(Job.new("U", {"a": 1, "b": 2, "c": 3}, unique=True)).conflict
    assert not bridge.insert(Job.new("U", {"a": 1}, unique=True)).conflict
    # Other queue or worker: not a duplicate under the default fields.
    assert not bridge.insert(Job.new("U", {"a": 1, "b": 2}, queue="other", unique=True)).conflict
    assert not bridge.insert(Job.new("V", {"a": 1, "b": 2}, unique=True)).conflict


def test_empty_args_match_only_empty_args(bridge: ObanBridge) -> None:
    first = bridge.insert(Job.new("U", {}, unique=True))
    assert bridge.insert(Job.new("U", {}, unique=True)).id == first.id
    assert not bridge.insert(Job.new("U", {"x": 1}, unique=True)).conflict


def test_keys_compare_only_those_keys(bridge: ObanBridge) -> None:
    opts = {"keys": ["account"], "period": "infinity"}
    first = bridge.insert(Job.new("U", {"account": 1, "n": 1}, unique=opts))
    assert bridge.insert(Job.new("U", {"account": 1, "n": 2}, unique=opts)).id == first.id
    assert not bridge.insert(Job.new("U", {"account": 2, "n": 1}, unique=opts)).conflict


def test_meta_field_and_keys(bridge: ObanBridge) -> None:
    opts = {"fields": ["worker", "meta"], "keys": ["slug"]}
    first = bridge.insert(Job.new("U", {"i": 1}, meta={"slug": "s", "x": 1}, unique=opts))
    assert bridge.insert(Job.new("U", {"i": 2}, meta={"slug": "s", "x": 2}, unique=opts)).id == first.id
    assert not bridge.insert(Job.new("U", {"i": 3}, meta={"slug": "t"}, unique=opts)).conflict


def test_states_limit_what_counts(bridge: ObanBridge) -> None:
    first = bridge.insert(Job.new("U", {"a": 1}, unique={"states": "incomplete", "period": "infinity"}))
    with bridge.connection() as conn:
        conn.execute("UPDATE oban_jobs SET state = 'completed', completed_at = now() WHERE id = %s", [first.id])
    # completed is not in :incomplete, so a new job goes in; under :successful it would conflict.
    assert not bridge.insert(Job.new("U", {"a": 1}, unique={"states": "incomplete", "period": "infinity"})).conflict
    assert bridge.insert(Job.new("U", {"a": 1}, unique={"states": ["completed"], "period": "infinity"})).id == first.id


def test_period_and_timestamp(bridge: ObanBridge) -> None:
    old = bridge.insert(Job.new("U", {"a": 1}, unique={"period": 60}))
    with bridge.connection() as conn:
        conn.execute("UPDATE oban_jobs SET inserted_at = inserted_at - interval '2 minutes' WHERE id = %s", [old.id])
    fresh = bridge.insert(Job.new("U", {"a": 1}, unique={"period": 60}))
    assert not fresh.conflict
    assert bridge.insert(Job.new("U", {"a": 1}, unique={"period": (1, "hour")})).id == old.id
    # timestamp: scheduled_at compares the scheduled time instead.
    later = bridge.insert(Job.new("S", {"a": 1}, schedule_in=3600, unique={"period": 60, "timestamp": "scheduled_at"}))
    assert bridge.insert(Job.new("S", {"a": 1}, unique={"period": 60, "timestamp": "scheduled_at"})).id == later.id


def test_replace_applies_per_state_and_only_given_fields(bridge: ObanBridge) -> None:
    opts = {"keys": ["k"], "period": "infinity"}
    first = bridge.insert(Job.new("U", {"k": 1, "v": 1}, max_attempts=5, priority=4, unique=opts))
    # Replace lists max_attempts, but the new job leaves it at Oban's default: not a change,
    # so the existing value stays (Ecto cast semantics in basic.ex resolve_conflict/4).
    same = bridge.insert(Job.new("U", {"k": 1, "v": 2}, unique=opts, replace={"available": ["args", "max_attempts", "priority"]}))
    assert same.conflict and same.id == first.id
    assert (same.args, same.max_attempts, same.priority) == ({"k": 1, "v": 2}, 5, 4)
    # A replace for another state does nothing to an available job.
    other = bridge.insert(Job.new("U", {"k": 1, "v": 3}, unique=opts, replace={"scheduled": ["args"]}))
    assert other.args == {"k": 1, "v": 2}
    # A flat list applies to every state.
    flat = bridge.insert(Job.new("U", {"k": 1, "v": 4}, queue="default", unique=opts, replace=["args"]))
    assert flat.args == {"k": 1, "v": 4}


def test_unique_inside_insert_all(bridge: ObanBridge) -> None:
    jobs = [Job.new("U", {"a": 1}, unique=True), Job.new("P", {"i": 1}), Job.new("U", {"a": 1}, unique=True)]
    out = bridge.insert_all(jobs)
    assert [j.conflict for j in out] == [False, False, True]
    assert out[0].id == out[2].id
    assert count(bridge) == 1


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"fields": ["args", "nope"]}, "unique.fields"),
        ({"fields": []}, "unique.fields"),
        ({"states": ["available", "running"]}, "unique.states"),
        ({"states": "sometimes"}, "unique.states"),
        ({"period": 0}, "unique.period"),
        ({"period": -5}, "unique.period"),
        ({"period": (1, "fortnight")}, "unique.period"),
        ({"timestamp": "attempted_at"}, "unique.timestamp"),
        ({"keys": ["a"], "fields": ["worker"]}, "unique.keys"),
        ({"keys": "a"}, "unique.keys"),
        ({"speed": 1}, "unique"),
        ({}, "unique"),
        ("yes", "unique"),
    ],
)
def test_bad_unique_options_name_the_field(options: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Job.new("U", {}, unique=options)
    assert info.value.field == field


@pytest.mark.parametrize(("replace", "text"), [({"running": ["args"]}, "invalid state"), (["id"], "invalid field")])
def test_bad_replace_is_rejected(replace: Any, text: str) -> None:
    with pytest.raises(ValidationError, match=text):
        Job.new("U", {}, unique=True, replace=replace)


def test_unique_defaults_are_elixirs() -> None:
    assert normalize_unique(True) == Unique(period=None)
    defaults = normalize_unique({"period": 60})
    assert defaults == Unique(fields=("args", "queue", "worker"), keys=(), period=60,
                              states=STATE_GROUPS["successful"], timestamp="inserted_at")


# --- races -------------------------------------------------------------------------------------


def test_python_inserters_never_duplicate(db_url: str) -> None:
    clients = [ObanBridge(db_url, pool_size=2) for _ in range(8)]
    barrier = threading.Barrier(len(clients))

    def go(client: ObanBridge) -> Job:
        barrier.wait()
        return client.insert(Job.new("U", {"race": 1}, unique={"period": "infinity"}))

    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            results = list(pool.map(go, clients))
    finally:
        for c in clients:
            c.close()
    ids = {r.id for r in results}
    assert len(ids) == 1
    assert sorted(r.conflict for r in results) == [False] + [True] * 7


class ElixirWriter:
    """Oban.Engines.Basic.insert_unique/3, statement for statement, paused after its check."""

    def __init__(self, url: str, args: dict[str, Any], key: int | None = None) -> None:
        self.url = url
        self.args = args
        # Two Elixir inserts of the same unique job hash to the same key.
        self.key = random.getrandbits(62) if key is None else key
        self.checked = threading.Event()
        self.proceed = threading.Event()
        self.result: tuple[int | None, bool] | None = None

    def run(self) -> None:
        import orjson

        encoded = orjson.dumps(self.args).decode()
        with psycopg.connect(self.url) as conn:
            with conn.transaction():
                locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", [self.key]).fetchone()
                if locked != (True,):
                    # {:error, :locked}: Elixir returns the unsaved job flagged as a conflict.
                    self.checked.set()
                    self.result = (None, True)
                    return
                found = conn.execute(
                    "SELECT id FROM oban_jobs WHERE state = ANY(%s::oban_job_state[])"
                    " AND args @> %s::jsonb AND args <@ %s::jsonb AND queue = %s AND worker = %s LIMIT 1",
                    [list(STATE_GROUPS["successful"]), encoded, encoded, "default", "U"],
                ).fetchone()
                self.checked.set()
                self.proceed.wait(10)
                if found:
                    self.result = (found[0], True)
                    return
                row = conn.execute(
                    "INSERT INTO oban_jobs (state, queue, worker, args, meta, tags, errors, attempt, max_attempts, priority)"
                    " VALUES ('available', 'default', 'U', %s::jsonb, '{}', '{}', '{}', 0, 20, 0) RETURNING id",
                    [encoded],
                ).fetchone()
                assert row is not None
                self.result = (row[0], False)


def test_elixir_checks_first_python_commits_first_one_job_survives(db_url: str, bridge: ObanBridge) -> None:
    """The worst interleaving: Elixir has checked (seeing nothing) when Python inserts and
    commits; Elixir then inserts its twin. Python's settle step waits for Elixir's transaction,
    finds the twin, withdraws its own row and returns Elixir's job as the conflict."""
    elixir = ElixirWriter(db_url, {"race": 1})
    thread = threading.Thread(target=elixir.run)
    thread.start()
    assert elixir.checked.wait(5)

    outcome: dict[str, Job] = {}
    python = threading.Thread(target=lambda: outcome.setdefault("job", bridge.insert(Job.new("U", {"race": 1}, unique=True))))
    python.start()
    deadline = time.monotonic() + 5
    while count(bridge) == 0 and time.monotonic() < deadline:  # Python's row committed, settle waiting
        time.sleep(0.01)
    assert count(bridge) == 1
    elixir.proceed.set()
    thread.join(5)
    python.join(5)

    assert elixir.result is not None and elixir.result[1] is False  # Elixir inserted its twin
    job = outcome["job"]
    assert job.conflict and job.id == elixir.result[0]
    assert count(bridge) == 1


def test_python_commits_before_elixir_checks(db_url: str, bridge: ObanBridge) -> None:
    job = bridge.insert(Job.new("U", {"race": 2}, unique=True))
    elixir = ElixirWriter(db_url, {"race": 2})
    elixir.proceed.set()
    elixir.run()
    assert elixir.result == (job.id, True)
    assert count(bridge) == 1


def test_many_rounds_of_mixed_writers_leave_one_job(db_url: str) -> None:
    """Random timing, two Elixir-protocol writers and two Python inserters per round."""
    clients = [ObanBridge(db_url, pool_size=2) for _ in range(2)]
    try:
        for round_ in range(25):
            args = {"round": round_}
            key = random.getrandbits(62)
            writers = [ElixirWriter(db_url, args, key) for _ in range(2)]
            for w in writers:
                w.proceed.set()

            def elixir(w: ElixirWriter) -> None:
                time.sleep(random.random() * 0.02)
                w.run()

            def python(c: ObanBridge) -> Job:
                time.sleep(random.random() * 0.02)
                return c.insert(Job.new("U", args, unique=True))

            with ThreadPoolExecutor(4) as pool:
                futures = [pool.submit(elixir, w) for w in writers] + [pool.submit(python, c) for c in clients]
                results = [f.result() for f in futures]
            with clients[0].connection() as conn:
                ids = [r[0] for r in conn.execute("SELECT id FROM oban_jobs WHERE args = %s::jsonb", [json.dumps(args)])]
            assert len(ids) == 1, f"round {round_}: {ids}"
            assert all(r.id == ids[0] for r in results if isinstance(r, Job)), round_
    finally:
        for c in clients:
            c.close()
