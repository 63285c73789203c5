"""Rows and notifications written by oban_bridge equal those a real Elixir Oban 2.23.1 node wrote
for the same calls (elixir_interop_fixtures/jobs_inserted_by_elixir.json, notifications.jsonl)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oban_bridge import AsyncObanBridge, Job, ObanBridge
from oban_bridge.insert import insert_all_plan

from .conftest import fixture

HEPH_UNIQUE = {
    "keys": ["instance_id"],
    "period": "infinity",
    "states": ["available", "scheduled", "executing", "retryable"],
}


def elixir_cases() -> list[tuple[str, Any]]:
    """The calls the Elixir harness made, in its order, as oban_bridge calls."""
    echo = "Harness.Echo"
    keys = {"keys": ["instance_id"], "period": "infinity", "states": "incomplete"}
    return [
        ("plain", Job.new(echo, {"case": "plain"}, queue="elixir")),
        ("string_worker_python", Job.new("badge_forge.generator.GenerateBadge",
                                         {"id": "7bfb7c39", "name": "Alasdair"}, queue="badges")),
        ("scheduled_in_60", Job.new(echo, {"case": "scheduled"}, queue="elixir", schedule_in=60)),
        ("scheduled_at", Job.new(echo, {"case": "scheduled_at"}, queue="elixir",
                                 scheduled_at=datetime.now(timezone.utc) + timedelta(hours=1))),
        ("priority_3", Job.new(echo, {"case": "priority"}, queue="elixir", priority=3)),
        ("tags", Job.new(echo, {"case": "tags"}, queue="elixir",
                         tags=["Alpha", " beta ", "alpha", "", "gamma"])),
        ("meta", Job.new(echo, {"case": "meta"}, queue="elixir", meta={"n": 1, "team": "growth"})),
        ("max_attempts_5", Job.new(echo, {"case": "max_attempts"}, queue="elixir", max_attempts=5)),
        ("queue_other", Job.new(echo, {"case": "queue"}, queue="reports")),
        ("nested_args", Job.new(echo, {"case": "nested", "map": {"a": {"b": []}},
                                       "list": [1, 2.5, "x", None, True], "unicode": "héllo ✓"},
                                queue="elixir")),
        ("unique_default_first", Job.new(echo, {"case": "unique_default"}, queue="elixir", unique={"period": 60})),
        ("unique_default_dup", Job.new(echo, {"case": "unique_default"}, queue="elixir", unique={"period": 60})),
        ("unique_keys_infinity_first", Job.new(echo, {"case": "unique_keys", "instance_id": "abc", "other": 1},
                                               queue="elixir", unique=keys)),
        ("unique_keys_infinity_dup", Job.new(echo, {"case": "unique_keys", "instance_id": "abc", "other": 2},
                                             queue="elixir", unique=keys)),
        ("unique_replace_dup", Job.new(echo, {"case": "unique_keys", "instance_id": "abc", "other": 3},
                                       queue="elixir", priority=2, unique=keys,
                                       replace={"available": ["args", "priority"]})),
        ("heph_advance_like", Job.new(
            "HephaestusOban.AdvanceWorker",
            {"workflow": "Elixir.MyApp.Workflows.OnboardFlow", "config_key": "k",
             "instance_id": "inst-1", "workflow_version": 1},
            queue="hephaestus", tags=["onboard_flow"],
            meta={"instance_id": "inst-1", "heph_workflow": "onboard_flow", "workflow_version": 1},
            unique=HEPH_UNIQUE)),
        ("insert_all", [Job.new(echo, {"case": "insert_all_1"}, queue="elixir"),
                        Job.new(echo, {"case": "insert_all_2"}, queue="reports")]),
    ]


def rows(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT row_to_json(j) FROM oban_jobs j ORDER BY id")]


def listen(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute('LISTEN "public.oban_insert"')
    return conn


def drain(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    return [(n.channel, n.payload) for n in conn.notifies(timeout=0.3)]


def ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def assert_same_row(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Every column equal, except timestamps, which must relate the same way."""
    stamps = {"inserted_at", "scheduled_at", "attempted_at", "completed_at", "discarded_at", "cancelled_at"}
    assert list(ours) == list(theirs), "same columns in the same order"
    for column in theirs:
        if column not in stamps:
            assert ours[column] == theirs[column], column
    for column in stamps - {"inserted_at", "scheduled_at"}:
        assert (ours[column] is None) == (theirs[column] is None), column
    # Unscheduled: scheduled_at is the same default as inserted_at. Scheduled: later by as much.
    lag_ours = ts(ours["scheduled_at"]) - ts(ours["inserted_at"])  # type: ignore[operator]
    lag_theirs = ts(theirs["scheduled_at"]) - ts(theirs["inserted_at"])  # type: ignore[operator]
    if lag_theirs == timedelta(0):
        assert lag_ours == timedelta(0)
    else:
        assert abs(lag_ours - lag_theirs) < timedelta(seconds=5)


def run_cases_sync(bridge: ObanBridge) -> list[tuple[str, bool, int | None]]:
    calls = []
    for case, job in elixir_cases():
        if isinstance(job, list):
            bridge.insert_all(job)
            continue
        result = bridge.insert(job)
        calls.append((case, result.conflict, result.id))
    return calls


async def run_cases_async(bridge: AsyncObanBridge) -> list[tuple[str, bool, int | None]]:
    calls = []
    for case, job in elixir_cases():
        if isinstance(job, list):
            await bridge.insert_all(job)
            continue
        result = await bridge.insert(job)
        calls.append((case, result.conflict, result.id))
    return calls


def expected_notifications() -> list[tuple[str, str]]:
    return [
        (n["channel"], n["payload"])
        for n in fixture("notifications.jsonl")
        if n["scenario"].startswith("during inserts") and n["channel"].endswith("oban_insert")
    ]


def check_against_fixture(url: str, calls: list[tuple[str, bool, int | None]], heard: list[tuple[str, str]]) -> None:
    reference = fixture("jobs_inserted_by_elixir.json")
    assert calls == [(c["case"], c["conflict"], c["id"]) for c in reference["insert_calls"]]
    ours = rows(url)
    assert len(ours) == len(reference["rows"])
    for mine, theirs in zip(ours, reference["rows"], strict=True):
        assert_same_row(mine, theirs)
    assert heard == expected_notifications()


def test_rows_and_notifications_match_elixir_sync(db_url: str, bridge: ObanBridge) -> None:
    listener = listen(db_url)
    calls = run_cases_sync(bridge)
    check_against_fixture(db_url, calls, drain(listener))
    listener.close()


async def test_rows_and_notifications_match_elixir_async(db_url: str, abridge: AsyncObanBridge) -> None:
    listener = listen(db_url)
    calls = await run_cases_async(abridge)
    check_against_fixture(db_url, calls, drain(listener))
    listener.close()


def test_python_reads_every_row_elixir_wrote(bridge: ObanBridge) -> None:
    """Rows exactly as Elixir left them (inserted and executed) load into Job without loss."""
    columns = list(fixture("jobs_inserted_by_elixir.json")["rows"][0])
    for name in ("jobs_inserted_by_elixir.json", "jobs_after_execution.json"):
        for row in fixture(name)["rows"]:
            with bridge.connection() as conn:
                conn.execute(
                    "INSERT INTO oban_jobs SELECT * FROM json_populate_record(NULL::oban_jobs, %s::json)",
                    [json.dumps({k: row[k] for k in columns})],
                )
                loaded = Job.from_row(_dict_row(conn, row["id"]))
                conn.execute("DELETE FROM oban_jobs")
            assert loaded.to_dict()["args"] == row["args"]
            assert loaded.errors == row["errors"]
            assert loaded.attempted_by == row["attempted_by"]
            assert loaded.tags == row["tags"] and loaded.meta == row["meta"]
            for column in ("inserted_at", "scheduled_at", "attempted_at", "completed_at", "discarded_at", "cancelled_at"):
                value = getattr(loaded, column)
                if row[column] is None:
                    assert value is None
                else:
                    assert value == datetime.fromisoformat(row[column]).replace(tzinfo=timezone.utc)
                    assert value.tzinfo is timezone.utc


def _dict_row(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM oban_jobs WHERE id = %s", [job_id])
        row = cur.fetchone()
        assert row is not None
        return row


def test_insert_joins_the_callers_transaction(db_url: str, bridge: ObanBridge) -> None:
    listener = listen(db_url)
    with psycopg.connect(db_url) as conn:  # not autocommit: the caller's own transaction
        job = bridge.insert(Job.new("W", {"a": 1}, queue="q"), conn=conn)
        assert job.id is not None
        assert rows(db_url) == []  # not visible before the caller commits
        conn.rollback()
    assert rows(db_url) == []
    assert drain(listener) == []  # rolled back: Elixir nodes hear nothing
    with psycopg.connect(db_url) as conn:
        bridge.insert_all([Job.new("W", {"a": 2}, queue="q")], conn=conn)
        conn.commit()
    assert [r["args"] for r in rows(db_url)] == [{"a": 2}]
    assert drain(listener) == [("public.oban_insert", '{"queue":"q"}')]
    listener.close()


async def test_async_insert_joins_the_callers_transaction(db_url: str, abridge: AsyncObanBridge) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await abridge.insert(Job.new("W", {"a": 1}), conn=conn)
        await conn.rollback()
        await abridge.insert(Job.new("W", {"a": 2}), conn=conn)
        await conn.commit()
    assert [r["args"] for r in rows(db_url)] == [{"a": 2}]


async def test_a_connection_of_the_other_kind_says_which_client_takes_it(
        db_url: str, bridge: ObanBridge, abridge: AsyncObanBridge) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as aconn:
        for call in (bridge.insert, bridge.insert_all):
            with pytest.raises(TypeError, match=r"conn= for ObanBridge must be a psycopg.Connection.*AsyncObanBridge"):
                call(Job.new("W", {}) if call == bridge.insert else [Job.new("W", {})], conn=aconn)  # type: ignore[arg-type,operator]
    with psycopg.connect(db_url) as sconn:
        with pytest.raises(TypeError, match=r"conn= for AsyncObanBridge must be a psycopg.AsyncConnection.*ObanBridge\)"):
            await abridge.insert(Job.new("W", {}), conn=sconn)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"got builtins.str"):
        bridge.insert(Job.new("W", {}), conn="postgresql://")  # type: ignore[arg-type]
    assert rows(db_url) == []


def test_insert_all_is_one_copy_for_ten_thousand_jobs(db_url: str, bridge: ObanBridge) -> None:
    jobs = [Job.new("Bulk", {"i": i}, queue=f"q{i % 3}", schedule_in=60 if i % 2 else None) for i in range(10_000)]
    plan = insert_all_plan("public", jobs)
    steps = []
    result: Any = None
    with bridge.connection() as conn, conn.transaction():
        from oban_bridge.db import run_sync

        def recording():  # type: ignore[no-untyped-def]
            nonlocal result
            sent = None
            while True:
                try:
                    step = plan.send(sent)
                except StopIteration as stop:
                    result = stop.value
                    return
                steps.append(step)
                sent = yield step

        run_sync(conn, recording())
    # Reserve ids (one query), one COPY of every row, one batch of notifications.
    assert [type(s).__name__ for s in steps] == ["Query", "Copy", "Query"]
    assert [j.args["i"] for j in result] == list(range(10_000))
    assert [j.id for j in result] == sorted(j.id for j in result)
    assert sum(1 for j in result if j.state == "scheduled") == 5_000
    with bridge.connection() as conn:
        assert conn.execute("SELECT count(*) FROM oban_jobs").fetchone() == (10_000,)


def test_insert_all_notifies_once_per_queue_with_available_jobs(db_url: str, bridge: ObanBridge) -> None:
    listener = listen(db_url)
    bridge.insert_all([Job.new("W", queue="a"), Job.new("W", queue="a"), Job.new("W", queue="b"),
                       Job.new("W", queue="c", schedule_in=30)])
    assert drain(listener) == [("public.oban_insert", '{"queue":"a"}'), ("public.oban_insert", '{"queue":"b"}')]
    listener.close()


def test_prefixed_insert_notifies_on_the_prefixed_channel(empty_db_url: str) -> None:
    with ObanBridge(empty_db_url, prefix="tenant") as bridge:
        bridge.migrate()
        conn = psycopg.connect(empty_db_url, autocommit=True)
        conn.execute('LISTEN "tenant.oban_insert"')
        job = bridge.insert(Job.new("W", queue="q"))
        assert [(n.channel, n.payload) for n in conn.notifies(timeout=0.3)] == [("tenant.oban_insert", '{"queue":"q"}')]
        conn.close()
        with bridge.connection() as c:
            assert c.execute("SELECT id FROM tenant.oban_jobs").fetchall() == [(job.id,)]


def test_empty_insert_all_touches_nothing(bridge: ObanBridge) -> None:
    assert bridge.insert_all([]) == []


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Job(worker="", args={}),
        lambda: Job(worker="W", args=[1]),  # type: ignore[arg-type]
        lambda: Job(worker="W", priority=-1),
        lambda: Job(worker="W", max_attempts=0),
        lambda: Job(worker="W", state="running"),
        lambda: "not a job",
    ],
)
def test_raw_jobs_are_checked_before_writing(bridge: ObanBridge, bad: Any) -> None:
    from oban_bridge import ValidationError

    with pytest.raises(ValidationError):
        bridge.insert_all([Job.new("Good"), bad()])
    with bridge.connection() as conn:
        assert conn.execute("SELECT count(*) FROM oban_jobs").fetchone() == (0,)


texts = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=20)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(worker=texts, queue=texts, tags=st.lists(texts, max_size=4), value=texts)
def test_insert_all_copies_any_text_faithfully(db_url: str, worker: str, queue: str, tags: list[str], value: str) -> None:
    """Quotes, backslashes, tabs, newlines, commas and braces survive COPY's text format."""
    job = Job.new(worker, {"v": value, value: [value]}, queue=queue, tags=tags, meta={"m": value})
    with ObanBridge(db_url, pool_size=1) as bridge:
        [inserted] = bridge.insert_all([job])
        with bridge.connection() as conn:
            stored = conn.execute("SELECT worker, queue, args, meta, tags FROM oban_jobs WHERE id = %s",
                                  [inserted.id]).fetchone()
            conn.execute("DELETE FROM oban_jobs")
    assert stored == (job.worker, job.queue, job.args, job.meta, job.tags)


def test_integers_past_64_bits_are_kept_whole_both_ways(db_url: str, bridge: ObanBridge, tmp_path: Any) -> None:
    """Elixir integers have no size limit, Jason writes them as digits and jsonb keeps them exact;
    orjson alone would read them as rounded floats and refuse to write them."""
    from click.testing import CliRunner

    from oban_bridge.cli import main

    big = 123456789012345678901234567890
    job = bridge.insert(Job.new("W", {"n": big, "s": "12345678901234567890123", "f": 0.1}))
    line = tmp_path / "jobs.jsonl"
    line.write_text(f'{{"worker": "W", "args": {{"n": {big}}}}}\n')
    assert CliRunner().invoke(main, ["--database-url", db_url, "enqueue", "--file", str(line)]).exit_code == 0
    with psycopg.connect(db_url, autocommit=True) as raw:
        stored = [r[0] for r in raw.execute("SELECT args->>'n' FROM oban_jobs WHERE worker = 'W' ORDER BY id")]
        # A row as an Elixir node writes it, read by Python.
        elixir_id = raw.execute("INSERT INTO oban_jobs (worker, args) VALUES ('W', %s::jsonb) RETURNING id",
                                [f'{{"n": {big}, "m": -{big}}}']).fetchone()[0]
    assert stored == [str(big), str(big)]
    with bridge.connection() as conn:
        rows = dict(conn.execute("SELECT id, args FROM oban_jobs WHERE id IN (%s, %s)", [job.id, elixir_id]).fetchall())
    assert rows[job.id] == {"n": big, "s": "12345678901234567890123", "f": 0.1}
    assert rows[elixir_id] == {"n": big, "m": -big} and type(rows[elixir_id]["n"]) is int
