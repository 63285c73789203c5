"""oban_bridge.testing: Oban.Testing's promises, checked from outside.

perform_job runs a job as a node would and hands back what `process` returned (or raises what it
raised); the enqueued assertions see exactly the enqueued rows and say what they found; drains
write what a node writes (compared with the real Elixir node's rows); manual mode runs nothing;
inline mode needs no database at all.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from unittest import mock

import psycopg
import pytest

from oban_bridge import AsyncObanBridge, Cancel, Discard, Error, Job, ObanBridge, ObanBridgeError, Snooze, worker
from oban_bridge.pro import field
from oban_bridge.recorded import RecordedTooLarge, fetch_recorded
from oban_bridge.term import Atom
from oban_bridge.testing import (
    AsyncTesting,
    JobTimeoutError,
    Testing,
    build_job,
    perform_job,
    perform_job_async,
    testing_mode,
)

from . import workers  # noqa: F401 - registers Harness.Echo, the Elixir harness's twin
from .conftest import fixture
from .test_runtime import STAMP, rows

KEY = base64.b64encode(os.urandom(32)).decode()
seen: dict[str, Any] = {}


@worker("T.Add", queue="math", max_attempts=3)
def add(job: Job) -> Any:
    seen["add"] = job
    return job.args["a"] + sum(job.args.get("more", []))


@worker("T.Outcomes", max_attempts=5)
def outcomes(job: Job) -> Any:
    kind = job.args["kind"]
    return {"snooze": Snooze(30), "cancel": Cancel("no"), "discard": Discard("gone"), "error": Error("bad"),
            "ok": "fine"}.get(kind) or (_ for _ in ()).throw(ValueError(f"asked to raise: {kind}"))


@worker("T.SlowDef", timeout=0.2)
def slow_def(job: Job) -> str:
    for _ in range(500):
        if job.cancelled:
            seen["slow_def_stop"] = job.stop_requested
            return "stopped"
        time.sleep(0.01)
    return "finished"


@worker("T.SlowAsync", timeout=timedelta(milliseconds=200))
async def slow_async(job: Job) -> None:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        seen["slow_async_cancelled"] = True
        raise


@worker("T.Structured", args_schema={"id": field("id", required=True), "on": field("boolean", default=False)})
def structured(job: Job) -> Any:
    return job.args


@worker("T.Secret", encrypted={"key": lambda: KEY})
def secret(job: Job) -> Any:
    return job.args["ssn"]


@worker("T.Recorded", recorded={"limit": 200})
def recorded_worker(job: Job) -> Any:
    return ("ok", "x" * job.args["size"]) if job.args["size"] < 10_000 else os.urandom(job.args["size"]).hex()


@worker("T.Firm", deadline={"in": 1, "force": True})
async def firm(job: Job) -> None:
    await asyncio.sleep(30)


class Audit:
    def before_process(self, job: Job) -> Any:
        if job.args.get("refuse"):
            return Cancel("refused")
        seen.setdefault("audit", []).append("before")
        return dataclasses.replace(job, args={**job.args, "audited": True})

    def after_process(self, state: str, job: Job, result: Any) -> None:
        seen.setdefault("audit", []).append(("after", state, result))


@worker("T.Hooked", hooks=[Audit()])
def hooked(job: Job) -> Any:
    return job.args.get("audited")


@worker("T.AsyncEcho")
async def async_echo(job: Job) -> Any:
    await asyncio.sleep(0)
    return {"loop": id(asyncio.get_running_loop()), "args": job.args}


# --- perform_job: no database involved -------------------------------------------------------------

def test_perform_job_returns_what_process_returned_with_args_through_json() -> None:
    assert perform_job(add, {"a": 1, "more": (2, 3)}) == 6
    job = seen["add"]
    assert job.args == {"a": 1, "more": [2, 3]}  # a tuple goes through JSON, as Oban's json_recode
    assert (job.attempt, job.queue, job.max_attempts) == (1, "math", 3)
    assert job.id and job.attempted_at and job.scheduled_at and job.inserted_at
    assert perform_job("T.Add", {"a": 2}, attempt=3, priority=4) == 2  # by name, with options
    assert (seen["add"].attempt, seen["add"].priority) == (3, 4)


def test_perform_job_returns_each_outcome_and_raises_an_exception() -> None:
    assert perform_job(outcomes, {"kind": "ok"}) == "fine"
    assert perform_job(outcomes, {"kind": "snooze"}) == Snooze(30)
    assert perform_job(outcomes, {"kind": "cancel"}) == Cancel("no")
    assert perform_job(outcomes, {"kind": "discard"}) == Discard("gone")
    assert perform_job(outcomes, {"kind": "error"}) == Error("bad")
    with pytest.raises(ValueError, match="asked to raise: boom"):
        perform_job(outcomes, {"kind": "boom"})


def test_perform_job_enforces_the_timeout_like_a_node() -> None:
    seen.clear()
    started = time.monotonic()
    with pytest.raises(JobTimeoutError, match=r"T.SlowDef timed out after 200ms"):
        perform_job(slow_def, {})
    assert seen["slow_def_stop"] == "timeout"  # the def job was asked to stop (job.cancelled)
    with pytest.raises(JobTimeoutError, match=r"T.SlowAsync timed out after 200ms"):
        perform_job(slow_async, {})
    assert seen["slow_async_cancelled"] is True
    assert time.monotonic() - started < 5


def test_perform_job_casts_structured_args_and_round_trips_encryption() -> None:
    assert perform_job(structured, {"id": "42"}) == {"id": 42, "on": False}
    with pytest.raises(AssertionError, match="valid job.*\n\nargs: id can.t be blank"):
        perform_job(structured, {"on": True})
    job = build_job(secret, {"ssn": "078-05-1120"})
    assert "078-05-1120" not in repr(job.args)  # what the row would hold: encrypted
    assert perform_job(job) == "078-05-1120"  # what process sees: decrypted


def test_perform_job_checks_the_recorded_value_fits() -> None:
    assert perform_job(recorded_worker, {"size": 3}) == ("ok", "xxx")
    with pytest.raises(RecordedTooLarge, match="over the limit of 200"):
        perform_job(recorded_worker, {"size": 20_000})


def test_perform_job_runs_hooks_and_honours_deadlines() -> None:
    seen.clear()
    assert perform_job(hooked, {}) is True  # before_process gave process a changed job
    assert seen["audit"] == ["before", ("after", "complete", True)]
    assert perform_job(hooked, {"refuse": True}) == Cancel("refused")
    assert seen["audit"][-1] == ("after", "cancel", Cancel("refused"))
    started = time.monotonic()
    assert perform_job(firm, {}) == Cancel(Atom("deadline_exceeded"))  # forced: stopped at its deadline
    assert time.monotonic() - started < 5
    job = build_job(firm, {})
    job.meta["deadline_at"] = "2000-01-01T00:00:00.000000Z"
    assert perform_job(job) == Cancel(Atom("deadline_exceeded"))  # expired: never runs


def test_build_job_names_what_is_wrong() -> None:
    with pytest.raises(AssertionError, match=r"registered with @worker.*got: 'Nope.Worker'\nRegistered: .*T.Add"):
        build_job("Nope.Worker", {})
    with pytest.raises(AssertionError, match="priority: expected an integer from 0 to 9"):
        build_job(add, {}, priority=10)
    with pytest.raises(AssertionError, match="attempt: expected a positive integer"):
        build_job(add, {}, attempt=0)
    with pytest.raises(AssertionError, match="unexpected keyword"):
        build_job(add, {}, queeue="x")
    with pytest.raises(TypeError, match="takes no args"):
        perform_job(build_job(add, {"a": 1}), {"a": 2})


async def test_perform_job_async_runs_on_the_callers_loop() -> None:
    out = await perform_job_async(async_echo, {"n": 1})
    assert out == {"loop": id(asyncio.get_running_loop()), "args": {"n": 1}}
    assert await AsyncTesting().perform_job(add, {"a": 5}) == 5
    assert perform_job(async_echo, {"n": 2})["args"] == {"n": 2}  # sync helper from a running loop


# --- inline mode: no database at all ---------------------------------------------------------------

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=1"


def test_inline_mode_runs_jobs_at_insert_with_no_database() -> None:
    with ObanBridge(UNREACHABLE, testing="inline", node="unit") as oban:
        done = oban.insert(add.new({"a": 7}))  # type: ignore[attr-defined]
        assert (done.state, done.attempt, done.attempted_by) == ("completed", 1, ["unit"])
        assert done.completed_at is not None
        failed = oban.insert(outcomes.new({"kind": "error"}))  # type: ignore[attr-defined]
        assert failed.state == "retryable" and failed.errors[0]["attempt"] == 1
        assert failed.errors[0]["error"] == '** (Oban.PerformError) T.Outcomes failed with {:error, "bad"}'
        snoozed = oban.insert(outcomes.new({"kind": "snooze"}))  # type: ignore[attr-defined]
        # 2.23.1 inline.ex complete_job/1 for :snoozed: only state and scheduled_at change.
        assert (snoozed.state, snoozed.attempt, snoozed.max_attempts, snoozed.meta) == ("scheduled", 1, 5, {})
        assert snoozed.scheduled_at is not None
        assert abs((snoozed.scheduled_at - datetime.now(timezone.utc)).total_seconds() - 30) < 5
        assert oban.insert(outcomes.new({"kind": "cancel"})).state == "cancelled"  # type: ignore[attr-defined]
        assert oban.insert(outcomes.new({"kind": "discard"})).state == "discarded"  # type: ignore[attr-defined]
        kept = oban.insert(recorded_worker.new({"size": 2}))  # type: ignore[attr-defined]
        assert fetch_recorded(kept) == ("ok", "xx")
        later = oban.insert(add.new({"a": 1}, schedule_in=3600))  # type: ignore[attr-defined]
        assert later.state == "completed"  # inline runs scheduled jobs at once, as Oban's does
        assert [j.state for j in oban.insert_all([add.new({"a": 1}), add.new({"a": 2})])] == \
            ["completed", "completed"]  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="asked to raise"):
            oban.insert(outcomes.new({"kind": "boom"}))  # type: ignore[attr-defined]
        with pytest.raises(JobTimeoutError):
            oban.insert(slow_def.new({}))  # type: ignore[attr-defined]
        with pytest.raises(ObanBridgeError, match="'MyApp.ElixirMailer' is not a Python worker"):
            oban.insert(Job.new("MyApp.ElixirMailer", {}))
        with pytest.raises(ObanBridgeError, match="testing='inline'"):
            Testing(oban).all_enqueued()


async def test_inline_mode_async_twin() -> None:
    async with AsyncObanBridge(UNREACHABLE, testing="inline") as oban:
        done = await oban.insert(async_echo.new({"n": 3}))  # type: ignore[attr-defined]
        assert done.state == "completed"
        with pytest.raises(ValueError):
            await oban.insert(outcomes.new({"kind": "boom"}))  # type: ignore[attr-defined]


def test_testing_mode_switches_clients_built_with_a_mode_only(db_url: str) -> None:
    with ObanBridge(db_url, testing="manual") as manual, ObanBridge(db_url) as real:
        with testing_mode("inline"):
            assert manual.testing_mode == "inline"
            assert manual.insert(add.new({"a": 1})).state == "completed"  # type: ignore[attr-defined]
            assert real.insert(add.new({"a": 1})).state == "available"  # type: ignore[attr-defined]
        assert manual.testing_mode == "manual"
        assert manual.insert(add.new({"a": 1})).state == "available"  # type: ignore[attr-defined]
        assert len(Testing(real).all_enqueued(worker=add)) == 2
    with pytest.raises(ValueError, match="testing"):
        ObanBridge(db_url, testing="eager")
    with pytest.raises(TypeError, match="AsyncTesting is for AsyncObanBridge"):
        Testing(AsyncObanBridge(db_url))  # type: ignore[arg-type]


# --- manual mode and the enqueued assertions -------------------------------------------------------

def test_manual_mode_runs_nothing(db_url: str) -> None:
    with ObanBridge(db_url, testing="manual", queues={"math": 5}, poll_interval=0.05) as oban:
        assert oban.runtime is None
        job = oban.insert(add.new({"a": 1}))  # type: ignore[attr-defined]
        time.sleep(0.5)
        assert rows(db_url, f"id = {job.id}")[0]["state"] == "available"
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM oban_peers").fetchone() == (0,)  # no leader: no plugins


def test_assert_enqueued_matches_filters_and_lists_what_it_found(oban: ObanBridge, oban_testing: Testing) -> None:
    t = oban_testing
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    oban.insert(add.new({"a": 1, "user": {"id": 7, "plan": "pro"}}, meta={"batch_id": "b1"}, tags=["Mail"],
                        priority=2))  # type: ignore[attr-defined]
    oban.insert(add.new({"a": 2}, scheduled_at=soon, queue="later"))  # type: ignore[attr-defined]
    oban.insert(Job.new("MyApp.ElixirMailer", {"to": "x@example.com"}, queue="mailers"))
    oban.insert(add.new({"a": 3}, state="completed"))  # type: ignore[attr-defined]  # not enqueued

    assert [j.args["a"] for j in t.all_enqueued(worker=add)] == [2, 1]  # newest first
    t.assert_enqueued(worker="MyApp.ElixirMailer", queue="mailers", args={"to": "x@example.com"})
    t.assert_enqueued(args={"user": {"plan": "pro"}})  # nested containment
    t.assert_enqueued(args={"user": {"id": "_"}}, meta={"batch_id": mock.ANY})  # wildcards
    t.assert_enqueued(worker=add, tags=["mail"], priority=2)
    t.assert_enqueued(worker=add, scheduled_at=soon)
    t.assert_enqueued(worker=add, scheduled_in=3600, delta=5)
    t.assert_enqueued(worker=add, state="scheduled", queue="later")
    t.refute_enqueued(worker=add, scheduled_in=7200)
    t.refute_enqueued(args={"a": 3})  # completed: not enqueued
    t.refute_enqueued(args={"user": {"missing": "_"}})
    t.refute_enqueued(args={"a": "1"})  # values compare as JSON values: "1" is not 1

    with pytest.raises(AssertionError) as failure:
        t.assert_enqueued(worker=add, args={"a": 99})
    message = str(failure.value)
    assert message.startswith("Expected a job matching:\n\n{'worker': <function add")
    assert "to be enqueued. Instead found:" in message
    assert "{'worker': 'T.Add', 'args': {'a': 2}}" in message  # each enqueued job, the filtered fields
    assert "'worker': 'MyApp.ElixirMailer'" in message and "'a': 3" not in message

    with pytest.raises(AssertionError, match=r"Expected no jobs matching:\n\n\{'worker': 'MyApp.ElixirMailer'\}"):
        t.refute_enqueued(worker="MyApp.ElixirMailer")
    with pytest.raises(TypeError, match="unknown job filter.*wroker"):
        t.all_enqueued(wroker=add)


def test_enqueued_values_compare_as_elixirs_equality(oban: ObanBridge, oban_testing: Testing) -> None:
    """testing.ex contains?/2: `Map.get(data, key) == val`, Elixir's == (true is not 1, 1 is 1.0,
    nil matches a missing key), and per-field deltas as `{when, delta: seconds}`."""
    t = oban_testing
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    oban.insert(add.new({"a": 1, "flag": 1, "on": True, "list": [1, False]}, scheduled_at=soon,
                        tags=["urgent"]))  # type: ignore[attr-defined]
    t.refute_enqueued(args={"flag": True})
    t.refute_enqueued(args={"on": 1})
    t.refute_enqueued(args={"list": [1, 0]})
    t.assert_enqueued(args={"flag": 1.0, "on": True, "list": [1.0, False]})
    t.assert_enqueued(args={"a": 1, "missing": None})  # nil == nil
    t.refute_enqueued(args={"missing": "_"})
    t.assert_enqueued(worker=add, scheduled_at=(soon + timedelta(seconds=8), 10))
    t.refute_enqueued(worker=add, scheduled_at=soon + timedelta(seconds=8))  # the default delta is 1 s
    with pytest.raises(TypeError, match="tags: expected a list of strings"):
        t.refute_enqueued(tags="urgent")  # would have been split into letters, matching nothing
    with pytest.raises(TypeError, match="at least one job filter"):
        t.assert_enqueued()
    with pytest.raises(TypeError, match="at least one job filter"):
        t.refute_enqueued(delta=5)


def test_enqueued_filters_on_errors_and_attempted_by(oban: ObanBridge, oban_testing: Testing, db_url: str) -> None:
    """Oban's conditions/2 falls back to `where(query, ^[{key, value}])`, so any column filters,
    errors and attempted_by included: a retry the Elixir node failed once, staged back to available."""
    elixir = next(row for row in fixture("jobs_after_execution.json")["rows"] if row["errors"])
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO oban_jobs (state, queue, worker, args, errors, attempt, attempted_by, attempted_at)"
            " VALUES ('available', %s, %s, %s, ARRAY[%s::jsonb], 1, %s, now())",
            (elixir["queue"], elixir["worker"], psycopg.types.json.Jsonb(elixir["args"]),
             psycopg.types.json.Jsonb(elixir["errors"][0]), elixir["attempted_by"]))
    t = oban_testing
    t.assert_enqueued(worker="Harness.Echo", errors=elixir["errors"], attempted_by=elixir["attempted_by"])
    at = datetime.fromisoformat(elixir["errors"][0]["at"].replace("Z", "+00:00"))
    t.assert_enqueued(errors=[{**elixir["errors"][0], "at": at}])  # a DateTime, written as Jason writes it
    t.refute_enqueued(errors=[{**elixir["errors"][0], "attempt": 2}])
    t.refute_enqueued(errors=[])
    t.refute_enqueued(attempted_by=["vm"])
    with pytest.raises(AssertionError, match=r"'attempted_by': \['vm', "):
        t.assert_enqueued(attempted_by=["other"])
    with pytest.raises(TypeError, match="errors: expected a list of error maps"):
        t.all_enqueued(errors="boom")
    with pytest.raises(TypeError, match="attempted_by: expected a list of strings"):
        t.all_enqueued(attempted_by="vm")


def test_assert_and_refute_enqueued_wait_for_a_timeout(oban: ObanBridge, oban_testing: Testing) -> None:
    threading.Timer(0.2, lambda: oban.insert(add.new({"a": 5}))).start()  # type: ignore[attr-defined]
    oban_testing.assert_enqueued(args={"a": 5}, timeout=5)
    with pytest.raises(AssertionError, match=r"to be enqueued within 0.1s"):
        oban_testing.assert_enqueued(args={"a": 6}, timeout=0.1)
    threading.Timer(0.1, lambda: oban.insert(add.new({"a": 7}))).start()  # type: ignore[attr-defined]
    with pytest.raises(AssertionError, match="Expected no jobs matching"):
        oban_testing.refute_enqueued(args={"a": 7}, timeout=3)


# --- drains ---------------------------------------------------------------------------------------

def test_drain_writes_what_the_elixir_node_wrote(db_url: str) -> None:
    """The same jobs the Elixir harness ran (jobs_after_execution.json), drained: the rows match."""
    reference = [r for r in fixture("jobs_after_execution.json")["rows"] if r["args"].get("case") != "to_cancel"]
    with ObanBridge(db_url, testing="manual", node="pynode") as oban:
        for row in reference:
            oban.insert(Job.new("Harness.Echo", row["args"], queue="elixir",
                                max_attempts=row["max_attempts"] if row["args"].get("case") == "exhaust" else 20))
        summary = Testing(oban).drain_queue("elixir")
    outcomes_seen = [r["_outcome"] for r in reference]
    assert sum(summary.values()) == len(reference), (summary, outcomes_seen)
    ours = {tuple(sorted(r["args"].items())): r for r in rows(db_url)}
    for theirs in reference:
        mine = ours[tuple(sorted(theirs["args"].items()))]
        for column in ("state", "attempt", "max_attempts", "queue", "worker", "priority", "tags", "meta"):
            assert mine[column] == theirs[column], (theirs["_outcome"], column)
        assert mine["attempted_by"][0] == "pynode" and len(mine["attempted_by"]) == 2
        for column in ("attempted_at", "completed_at", "discarded_at", "cancelled_at"):
            assert (mine[column] is None) == (theirs[column] is None), (theirs["_outcome"], column)
        assert len(mine["errors"]) == len(theirs["errors"])
        for error, their_error in zip(mine["errors"], theirs["errors"], strict=True):
            assert set(error) == set(their_error) == {"at", "error", "attempt"}
            assert STAMP.match(error["at"]) and error["attempt"] == their_error["attempt"]
            if their_error["error"].startswith("** (Oban.PerformError)"):
                assert error["error"] == their_error["error"]


@worker("T.Fanout", queue="fan")
def fanout(job: Job) -> None:
    client: ObanBridge = seen["client"]
    if job.args["depth"] < 2:
        client.insert_all([fanout.new({"depth": job.args["depth"] + 1}) for _ in range(2)])  # type: ignore[attr-defined]


@worker("T.Flaky", queue="fan", max_attempts=3, backoff=lambda job: 3600)
def flaky(job: Job) -> None:
    if job.attempt < 3:
        raise RuntimeError(f"attempt {job.attempt} fails")


def test_drain_with_recursion_scheduled_and_limits(oban: ObanBridge, oban_testing: Testing) -> None:
    seen["client"] = oban
    oban.insert(fanout.new({"depth": 0}))  # type: ignore[attr-defined]
    assert oban_testing.drain_queue("fan") == {"cancelled": 0, "discard": 0, "failure": 0, "snoozed": 0, "success": 1}
    assert len(oban_testing.all_enqueued(queue="fan")) == 2  # without recursion, the children wait
    assert oban_testing.drain_queue("fan", with_recursion=True)["success"] == 6  # 2 + 4 grandchildren
    oban_testing.refute_enqueued(queue="fan")

    oban.insert(flaky.new({}))  # type: ignore[attr-defined]
    assert oban_testing.drain_queue("fan")["failure"] == 1
    oban_testing.refute_enqueued(worker=flaky)  # retryable is not enqueued, as in Oban
    assert oban_testing.drain_queue("fan")["failure"] == 0  # its retry is an hour away
    assert oban_testing.drain_queue("fan", with_scheduled=datetime.now(timezone.utc))["failure"] == 0
    assert oban_testing.drain_queue("fan", with_scheduled=True, with_recursion=True) == \
        {"cancelled": 0, "discard": 0, "failure": 1, "snoozed": 0, "success": 1}

    for n in range(5):
        oban.insert(add.new({"a": n}))  # type: ignore[attr-defined]
    assert oban_testing.drain_queue("math", with_limit=2)["success"] == 2
    assert oban_testing.drain_queue("math", with_limit=2, with_recursion=True)["success"] == 3
    with pytest.raises(TypeError, match="with_limit"):
        oban_testing.drain_queue("math", with_limit=0)


def test_drain_without_safety_raises_after_recording(oban: ObanBridge, oban_testing: Testing, db_url: str) -> None:
    boom = oban.insert(outcomes.new({"kind": "boom"}, priority=0))  # type: ignore[attr-defined]
    later = oban.insert(outcomes.new({"kind": "ok"}, priority=5))  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="asked to raise: boom"):
        oban_testing.drain_queue("default", with_safety=False)
    first, second = rows(db_url, f"id = {boom.id}")[0], rows(db_url, f"id = {later.id}")[0]
    assert first["state"] == "retryable" and "** (ValueError) asked to raise: boom" in first["errors"][0]["error"]
    assert second["state"] == "available"  # not reached: left available, not executing
    oban.insert(Job.new("Not.A.Worker", {}))
    assert oban_testing.drain_queue("default")["failure"] == 1  # safe: recorded, as a node would
    unknown = oban.insert(Job.new("Not.A.Worker", {}))
    with pytest.raises(RuntimeError, match="unknown worker: Not.A.Worker"):
        oban_testing.drain_queue("default", with_safety=False)
    # executor.ex resolve_worker/1 raises an unsafe run's error before anything is reported:
    # the row is left as the fetch left it, not written retryable.
    assert rows(db_url, f"id = {unknown.id}")[0]["state"] == "executing"


@worker("T.Exits")
def exits(job: Job) -> None:
    raise SystemExit(3)


async def test_a_job_that_exits_is_a_failure_not_an_escape(oban: ObanBridge, oban_testing: Testing,
                                                           async_oban: AsyncObanBridge,
                                                           async_oban_testing: AsyncTesting, db_url: str) -> None:
    """executor.ex catches every kind (`catch kind, reason`): SystemExit in a job is a failed
    attempt, and the drain goes on to the next job."""
    for insert, drain in ((oban.insert, oban_testing.drain_queue), (async_oban.insert, async_oban_testing.drain_queue)):
        first = insert(exits.new({}, priority=0))  # type: ignore[attr-defined]
        after = insert(add.new({"a": 1}, queue="default", priority=5))  # type: ignore[attr-defined]
        first, after = (await first, await after) if asyncio.iscoroutine(first) else (first, after)
        summary = drain("default")
        summary = await summary if asyncio.iscoroutine(summary) else summary
        assert (summary["failure"], summary["success"]) == (1, 1)
        row = rows(db_url, f"id = {first.id}")[0]
        assert row["state"] == "retryable" and "** (SystemExit) 3" in row["errors"][0]["error"]


def test_drain_jobs_runs_every_queue_in_order(oban: ObanBridge, oban_testing: Testing) -> None:
    a = oban.insert(add.new({"a": 1}, priority=3))  # type: ignore[attr-defined]
    b = oban.insert(outcomes.new({"kind": "snooze"}, priority=1))  # type: ignore[attr-defined]
    c = oban.insert(outcomes.new({"kind": "discard"}, queue="other", priority=2))  # type: ignore[attr-defined]
    ran = oban_testing.drain_jobs(with_summary=False)
    assert isinstance(ran, list)
    assert [(j.id, j.state) for j in ran] == [(b.id, "scheduled"), (c.id, "discarded"), (a.id, "completed")]
    assert oban_testing.drain_jobs(queue="other") == {"cancelled": 0, "discard": 0, "failure": 0, "snoozed": 0,
                                                      "success": 0}


@worker("T.Linked", queue="chain", chain={"by": "worker", "on_discarded": "halt"}, max_attempts=1)
def linked(job: Job) -> Any:
    seen.setdefault("linked", []).append(job.args["n"])
    return Error("no") if job.args.get("fail") else None


def test_drain_honours_chains(oban: ObanBridge, oban_testing: Testing) -> None:
    seen["linked"] = []
    for n in range(3):
        oban.insert(linked.new({"n": n, "fail": n == 1}))  # type: ignore[attr-defined]
    summary = oban_testing.drain_queue("chain")
    assert seen["linked"] == [0, 1]  # the third link halts behind the discarded second
    assert (summary["success"], summary["discard"], summary["cancelled"]) == (1, 1, 1)


async def test_async_helpers_mirror_the_sync_ones(async_oban: AsyncObanBridge,
                                                  async_oban_testing: AsyncTesting) -> None:
    t = async_oban_testing
    await async_oban.insert(async_echo.new({"n": 1}))  # type: ignore[attr-defined]
    await async_oban.insert(add.new({"a": 1}))  # type: ignore[attr-defined]
    await t.assert_enqueued(worker=async_echo, args={"n": 1})
    await t.refute_enqueued(worker=async_echo, args={"n": 2})
    assert len(await t.all_enqueued()) == 2
    with pytest.raises(AssertionError, match="Instead found"):
        await t.assert_enqueued(args={"n": 3})
    assert (await t.drain_jobs())["success"] == 2
    assert await t.all_enqueued() == []
    assert await t.drain_queue("default") == {"cancelled": 0, "discard": 0, "failure": 0, "snoozed": 0, "success": 0}
