"""Pro worker features held to Oban Pro's Worker and Chain docs (seeds/oban_pro_*_docs.txt), on a
real PostgreSQL: chain waits that cost no attempt and no busy loop, halt that stops at the next
link, hooks that can cancel and never block the loop, chain ids that reveal no encrypted args."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import psycopg
import pytest

from oban_bridge import AsyncObanBridge, Cancel, Error, Job, ValidationError, worker
from oban_bridge.pro import attach_hook, detach_hook

from oban_bridge.db import run_async
from oban_bridge.control import cancel_plan
from oban_bridge.query import JobFilter

from .test_runtime import count, rows, wait_for

failed_once: set[int] = set()


@worker("Docs.SlowHead", queue="heads", chain={"by": {"args": "account"}, "wait_sleep": 100, "wait_retry": 3,
                                               "wait_snooze": 1})
async def slow_head(job: Job) -> Any:
    if job.args.get("slow"):
        await asyncio.sleep(3)
        return None
    if job.id not in failed_once:  # the successor's first real run fails once
        failed_once.add(job.id or 0)
        raise RuntimeError("first real run fails")
    return None


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)


async def test_chain_waits_cost_no_attempt_and_leave_the_backoff_alone(db_url: str) -> None:
    """The successor waits about 3 s behind an executing head — several in-process checks and
    snoozes — then fails its first real run: attempt 1 of 20, and the backoff of attempt 1."""
    async with AsyncObanBridge(db_url, queues={"heads": 2}, poll_interval=0.05) as oban:
        stager = next(p for p in oban.plugins if p.name == "stager")
        stager.interval = 0.05
        head = await oban.insert(slow_head.new({"account": 1, "slow": True}))  # type: ignore[attr-defined]
        follower = await oban.insert(slow_head.new({"account": 1}))  # type: ignore[attr-defined]
        await wait_for(lambda: count(db_url, f"id = {follower.id} AND state = 'retryable'") == 1, timeout=20)
    [row] = rows(db_url, f"id = {follower.id}")
    [head_row] = rows(db_url, f"id = {head.id}")
    assert head_row["state"] == "completed"
    [error] = row["errors"]
    failed_at = datetime.fromisoformat(error["at"].replace("Z", "+00:00"))
    assert failed_at >= ts(head_row["completed_at"])  # it really waited for the head
    assert (row["attempt"], row["max_attempts"], error["attempt"]) == (1, 20, 1)
    delay = (ts(row["scheduled_at"]) - failed_at).total_seconds()
    assert 16.9 <= delay <= 18.8, delay  # default_backoff(1, 20): 17 s plus at most 10% jitter


@worker("Docs.Later", queue="later", chain={"by": "worker"})
async def later(job: Job) -> None:
    return None


async def test_a_chain_behind_a_scheduled_head_sleeps_until_it_instead_of_polling(db_url: str) -> None:
    """The head is scheduled an hour ahead: its successor is fetched once and snoozes until the
    head's time — two writes to its row in all, however long the node runs."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE row_writes (id bigint, state text)")
        conn.execute("CREATE FUNCTION count_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "INSERT INTO row_writes VALUES (NEW.id, NEW.state); RETURN NEW; END $$")
    async with AsyncObanBridge(db_url) as client:
        head = await client.insert(later.new({}, schedule_in=3600))  # type: ignore[attr-defined]
        follower = await client.insert(later.new({}))  # type: ignore[attr-defined]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"CREATE TRIGGER w AFTER UPDATE ON oban_jobs FOR EACH ROW WHEN (NEW.id = {follower.id}) "
                     "EXECUTE FUNCTION count_write()")
    async with AsyncObanBridge(db_url, queues={"later": 2}, poll_interval=0.05) as oban:
        stager = next(p for p in oban.plugins if p.name == "stager")
        stager.interval = 0.05
        await wait_for(lambda: count(db_url, f"id = {follower.id} AND state = 'scheduled'") == 1)
        await asyncio.sleep(3)
    with psycopg.connect(db_url) as conn:
        writes = conn.execute("SELECT state FROM row_writes ORDER BY ctid").fetchall()
    assert writes == [("executing",), ("scheduled",)]
    [row] = rows(db_url, f"id = {follower.id}")
    [head_row] = rows(db_url, f"id = {head.id}")
    gap = (ts(row["scheduled_at"]) - ts(head_row["scheduled_at"])).total_seconds()
    assert 0 <= gap <= 2, gap
    assert (row["attempt"], row["max_attempts"], row["errors"]) == (0, 20, [])


# --- halt, hold and ignore: the Chain doc's on_discarded / on_cancelled --------------------------

def _chain_worker(name: str, on_discarded: str, on_cancelled: str) -> Any:
    @worker(name, queue="links", max_attempts=1,
            chain={"by": "worker", "on_discarded": on_discarded, "on_cancelled": on_cancelled,
                   "wait_sleep": 50, "hold_snooze": 600})
    async def link(job: Job) -> Any:
        if job.args.get("head") == "discard":
            return Error("the head fails")
        if job.args.get("head") == "cancel":
            return Cancel("the head is cancelled")
        return None

    return link


LINKS: dict[tuple[str, str], Any] = {
    combo: _chain_worker(f"Docs.Link.{combo[0]}.{combo[1]}", *combo)
    for combo in [(d, c) for d in ("ignore", "hold", "halt") for c in ("ignore", "hold", "halt")]
}

# What the three links after a discarded head end as, per the doc: ignore runs on; hold stops the
# chain (the first link waits hold_snooze, the rest wait behind it); halt cancels the next link,
# and that cancellation is then handled by on_cancelled.
AFTER_DISCARD = {
    ("ignore", "ignore"): ["completed"] * 3,
    ("hold", "ignore"): ["scheduled"] * 3,
    ("halt", "ignore"): ["cancelled", "completed", "completed"],
    ("halt", "hold"): ["cancelled", "scheduled", "scheduled"],
    ("halt", "halt"): ["cancelled"] * 3,
}
AFTER_CANCEL = {
    ("ignore", "ignore"): ["completed"] * 3,
    ("ignore", "hold"): ["scheduled"] * 3,
    ("ignore", "halt"): ["cancelled"] * 3,
}


@pytest.mark.parametrize(("head", "combo", "expected"),
                         [("discard", c, e) for c, e in AFTER_DISCARD.items()]
                         + [("cancel", c, e) for c, e in AFTER_CANCEL.items()])
async def test_each_on_discarded_and_on_cancelled_as_the_chain_doc_says(
        db_url: str, head: str, combo: tuple[str, str], expected: list[str]) -> None:
    link = LINKS[combo]
    async with AsyncObanBridge(db_url, queues={"links": 4}, poll_interval=0.05) as oban:
        first = await oban.insert(link.new({"head": head}))
        ids = [(await oban.insert(link.new({"n": n}))).id for n in range(3)]
        await wait_for(lambda: count(db_url, f"id = {first.id} AND state IN ('discarded', 'cancelled')") == 1)
        await wait_for(lambda: [r["state"] for r in rows(db_url, f"id = ANY(ARRAY{ids})")] == expected, timeout=15)
        await asyncio.sleep(0.5)  # and nothing moves further
    states = [r["state"] for r in rows(db_url, f"id = ANY(ARRAY{ids})")]
    assert states == expected
    for r in rows(db_url, f"id = ANY(ARRAY{ids})"):
        if r["state"] == "cancelled":
            assert r["errors"][-1]["error"].endswith("failed with {:cancel, :chain_halted}")
        assert r["attempt"] <= 1 and r["max_attempts"] == 1  # waiting never used the only attempt


# --- hooks -------------------------------------------------------------------------------------

events: list[Any] = []


class Gatekeeper:
    def before_process(self, job: Job) -> Any:
        verdict = job.args.get("verdict")
        if verdict == "cancel":
            return Cancel("not today")
        if verdict == "error":
            return Error("refused by the gate")
        if verdict == "bad":
            return 42
        return None

    def after_process(self, state: str, job: Job) -> None:  # the two-argument shape
        events.append(("gate.after", state, job.id))


@worker("Docs.Gated", queue="gated", hooks=[Gatekeeper()], max_attempts=2)
def gated(job: Job) -> None:
    events.append(("process", job.id))


@worker("Docs.GatedAsync", queue="gated", hooks=[Gatekeeper()], max_attempts=2)
async def gated_async(job: Job) -> None:
    events.append(("process", job.id))


async def test_before_process_can_cancel_or_record_an_error(db_url: str) -> None:
    events.clear()
    async with AsyncObanBridge(db_url, queues={"gated": 4}, poll_interval=0.05) as oban:
        jobs = {(w.__name__, v): await oban.insert(w.new({"verdict": v}))  # type: ignore[attr-defined]
                for w in (gated, gated_async) for v in ("cancel", "error", "bad", "go")}
        await wait_for(lambda: count(db_url, "state IN ('cancelled', 'retryable', 'completed')") == 8)
        await wait_for(lambda: len([e for e in events if e[0] == "gate.after"]) == 8)
    for name in ("gated", "gated_async"):
        worker_name = "Docs.Gated" if name == "gated" else "Docs.GatedAsync"
        cancelled, errored, bad, go = (rows(db_url, f"id = {jobs[name, v].id}")[0]
                                       for v in ("cancel", "error", "bad", "go"))
        assert cancelled["state"] == "cancelled"
        assert cancelled["errors"][0]["error"] == \
            f'** (Oban.PerformError) {worker_name} failed with {{:cancel, "not today"}}'
        assert errored["state"] == "retryable"
        assert errored["errors"][0]["error"] == \
            f'** (Oban.PerformError) {worker_name} failed with {{:error, "refused by the gate"}}'
        assert bad["state"] == "retryable" and "returned 42" in bad["errors"][0]["error"]
        assert go["state"] == "completed"
        ran = {e[1] for e in events if e[0] == "process"}
        assert jobs[name, "go"].id in ran and not {jobs[name, v].id for v in ("cancel", "error", "bad")} & ran
    states = {e[2]: e[1] for e in events if e[0] == "gate.after"}
    assert states[jobs["gated", "cancel"].id] == "cancel" and states[jobs["gated", "error"].id] == "error"


class Refuser:
    def before_new(self, args: dict[str, Any], opts: dict[str, Any]) -> Any:
        if args.get("no"):
            return Error("no thanks")
        if args.get("odd"):
            return ["not", "a", "pair"]
        return None


@worker("Docs.Refused", queue="gated", hooks=[Refuser()])
def refused(job: Job) -> None:
    return None


def test_before_new_can_refuse_a_job_with_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="refused the job: no thanks"):
        refused.new({"no": True})  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match=r"expected \(args, opts\)"):
        refused.new({"odd": True})  # type: ignore[attr-defined]
    assert refused.new({"ok": True}).args == {"ok": True}  # type: ignore[attr-defined]


KEY = base64.b64encode(os.urandom(32)).decode()
release = threading.Event()


class Observer:
    """A global hook: runs for plain workers too, sees what process saw, may block."""

    def before_new(self, args: dict[str, Any], opts: dict[str, Any]) -> Any:
        return args, {**opts, "tags": [*opts.get("tags", []), "observed"]}

    def before_process(self, job: Job) -> None:
        if job.args.get("block"):
            # Blocks until a job of another queue has run: on the event loop it never could.
            events.append(("released", release.wait(10)))

    def after_process(self, state: str, job: Job, result: Any) -> None:
        error = job.unsaved_error
        events.append(("observer.after", job.worker, state, job.args, result,
                       type(error["reason"]).__name__ if error else None))


@worker("Docs.Plain", queue="plain")
def plain(job: Job) -> Any:
    if job.args.get("crash"):
        raise ValueError("crashed")
    return {"sum": 3}


@worker("Docs.Releaser", queue="other")
def releaser(job: Job) -> None:
    release.set()


@worker("Docs.Secret", queue="plain", encrypted={"key": lambda: KEY})
def secret(job: Job) -> None:
    return None


async def test_global_hooks_run_for_plain_workers_off_the_event_loop_with_what_process_saw(db_url: str) -> None:
    events.clear()
    release.clear()
    hook = Observer()
    attach_hook(hook)
    try:
        async with AsyncObanBridge(db_url, queues={"plain": 2, "other": 1}, poll_interval=0.05) as oban:
            blocked = await oban.insert(plain.new({"block": True}))  # type: ignore[attr-defined]
            await wait_for(lambda: count(db_url, f"id = {blocked.id} AND state = 'executing'") == 1)
            await oban.insert(releaser.new({}))  # type: ignore[attr-defined]
            crash = await oban.insert(plain.new({"crash": True}))  # type: ignore[attr-defined]
            hidden = await oban.insert(secret.new({"ssn": "123-45-6789"}))  # type: ignore[attr-defined]
            await wait_for(lambda: count(db_url, "state IN ('completed', 'retryable')") == 4)
            await wait_for(lambda: len([e for e in events if e[0] == "observer.after"]) == 4)
    finally:
        detach_hook(hook)
    assert ("released", True) in events
    assert all(r["tags"] == ["observed"] for r in rows(db_url, "TRUE"))  # before_new ran for every worker
    after = {(e[1], str(e[3])): e for e in events if e[0] == "observer.after"}
    assert after["Docs.Plain", str({"block": True})][2:] == ("complete", {"block": True}, {"sum": 3}, None)
    assert after["Docs.Plain", str({"crash": True})][2:] == ("error", {"crash": True}, None, "ValueError")
    assert after["Docs.Secret", str({"ssn": "123-45-6789"})][2] == "complete"  # decrypted, as process saw it
    assert rows(db_url, f"id = {hidden.id}")[0]["args"] != {"ssn": "123-45-6789"}
    assert crash.id is not None


@worker("Docs.Ssn", queue="plain", encrypted={"key": lambda: KEY}, chain={"by": {"args": "ssn"}})
def by_ssn(job: Job) -> None:
    return None


async def test_an_encrypted_workers_chain_id_reveals_nothing_of_its_args(db_url: str) -> None:
    ssn = "123-45-6789"
    async with AsyncObanBridge(db_url) as client:
        first = await client.insert(by_ssn.new({"ssn": ssn}))  # type: ignore[attr-defined]
        second = await client.insert(by_ssn.new({"ssn": ssn}))  # type: ignore[attr-defined]
        other = await client.insert(by_ssn.new({"ssn": "987-65-4321"}))  # type: ignore[attr-defined]
    stored = {r["id"]: r for r in rows(db_url, "worker = 'Docs.Ssn'")}
    ids = {i: stored[i]["meta"]["chain_id"] for i in (first.id, second.id, other.id)}
    assert ids[first.id] == ids[second.id] != ids[other.id]  # still one chain per ssn
    # Whoever reads the table cannot test guesses: the unkeyed digest of the args is not there.
    guess = hashlib.blake2b(orjson.dumps(["Docs.Ssn", {"ssn": ssn}, {}], option=orjson.OPT_SORT_KEYS),
                            digest_size=12).hexdigest()
    with psycopg.connect(db_url) as conn:
        dump = conn.execute("SELECT string_agg(j::text, ' ') FROM oban_jobs j").fetchone()
    assert dump is not None and guess not in dump[0] and ssn not in dump[0]
    assert ids[first.id].startswith("k") and guess not in ids[first.id]


# --- recorded output and structured types ------------------------------------------------------

NOISE = os.urandom(28_000)


@worker("Docs.RecordedTo", queue="rec", recorded={"to": "output", "safe_decode": False, "limit": 64_000})
def recorded_to(job: Job) -> Any:
    return {"nil": None} if job.args.get("value") else None


def test_the_recorded_limit_applies_to_what_is_stored() -> None:
    from oban_bridge.recorded import RecordedTooLarge, encode

    # 28,000 random bytes do not compress: with the term's header, 37,342 characters in base64.
    with pytest.raises(RecordedTooLarge, match="37,342 characters .* over the limit of 32,000"):
        encode(NOISE)
    stored = encode(NOISE, limit=40_000)
    assert len(stored) == 37_342
    with pytest.raises(ValidationError, match="recorded.to"):
        worker("Docs.BadTo", recorded={"to": "recorded"})(lambda job: None)
    with pytest.raises(ValidationError, match="recorded"):
        worker("Docs.BadOpt", recorded={"into": "x"})(lambda job: None)


async def test_recorded_to_a_key_and_fetch_tells_nil_from_nothing(db_url: str) -> None:
    from oban_bridge.recorded import RecordedMissing, fetch_recorded

    async with AsyncObanBridge(db_url, queues={"rec": 2}, poll_interval=0.05) as oban:
        nil = await oban.insert(recorded_to.new({"value": True}))  # type: ignore[attr-defined]
        nothing = await oban.insert(recorded_to.new({}))  # type: ignore[attr-defined]
        await wait_for(lambda: count(db_url, "worker = 'Docs.RecordedTo' AND state = 'completed'") == 2)
    [nil_row] = rows(db_url, f"id = {nil.id}")
    [nothing_row] = rows(db_url, f"id = {nothing.id}")
    assert nil_row["meta"]["recorded"] is True and "return" not in nil_row["meta"]
    assert fetch_recorded(Job(worker="w", meta=nil_row["meta"]), to="output") == {"nil": None}
    with pytest.raises(RecordedMissing):
        fetch_recorded(Job(worker="w", meta=nothing_row["meta"]), to="output")
    assert fetch_recorded(Job(worker="w", meta=nothing_row["meta"]), to="output", default="none") == "none"


def test_structured_args_take_ectos_types_and_casts() -> None:
    from decimal import Decimal

    from oban_bridge.pro.structured import cast, field, validate

    schema = {name: field(name) for name in ("date", "time", "decimal", "naive_datetime", "utc_datetime",
                                             "binary_id", "any", "float", "boolean", "integer")}
    stored = validate(schema, {
        "date": "2026-11-24", "time": "10:11:12.5", "decimal": "1.50", "naive_datetime": "2026-01-01T10:00:00.1+02:00",
        "utc_datetime": "2026-01-01T10:00:00.9Z", "binary_id": "9F5C2A9E-1B2C-4D3E-8F90-ABCDEF012345",
        "any": [1, {"x": "y"}], "float": "1.5", "boolean": "1", "integer": "42"})
    assert stored == {"date": "2026-11-24", "time": "10:11:12", "decimal": "1.50",
                      "naive_datetime": "2026-01-01T10:00:00", "utc_datetime": "2026-01-01T10:00:00Z",
                      "binary_id": "9f5c2a9e-1b2c-4d3e-8f90-abcdef012345", "any": [1, {"x": "y"}], "float": 1.5,
                      "boolean": True, "integer": 42}
    orjson.dumps(stored)  # plain JSON, as Elixir reads it
    args = cast(schema, stored)
    assert args.decimal == Decimal("1.50") and args.date.isoformat() == "2026-11-24"
    assert args.utc_datetime.tzinfo is not None and args.naive_datetime.tzinfo is None
    assert args.time.isoformat() == "10:11:12" and args.boolean is True and args.float == 1.5
    with pytest.raises(ValidationError) as bad:
        validate(schema, {"date": "24/11/2026", "decimal": "one", "float": "x", "boolean": "yes", "time": "25:00",
                          "integer": "4.2"})
    for name in ("date", "decimal", "float", "boolean", "time", "integer"):
        assert f"{name} is invalid" in str(bad.value)


@worker("Docs.Patient", queue="patient", chain={"by": "worker"})
async def patient(job: Job) -> None:
    return None


async def test_a_node_that_stops_writes_a_job_waiting_in_place_back_as_waiting(db_url: str) -> None:
    """The upstream runs elsewhere (executing, on a producer of another node); the successor waits
    in place. When the node stops, the successor goes back to scheduled as if never fetched,
    instead of staying executing until a lifeline rescues it."""
    async with AsyncObanBridge(db_url) as client:
        head = await client.insert(patient.new({}))  # type: ignore[attr-defined]
        follower = await client.insert(patient.new({}))  # type: ignore[attr-defined]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(), "
                     "attempted_by = ARRAY['elsewhere', 'a-producer'] WHERE id = %s", [head.id])
    oban = AsyncObanBridge(db_url, queues={"patient": 2}, poll_interval=0.05)
    await oban.start()
    try:
        await wait_for(lambda: count(db_url, f"id = {follower.id} AND state = 'executing'") == 1)
        await asyncio.sleep(0.3)  # checking its upstream again, in place
    finally:
        await oban.stop(2.0)  # a grace shorter than the wait in place (10 x 1 s)
    [row] = rows(db_url, f"id = {follower.id}")
    assert (row["state"], row["attempt"], row["max_attempts"], row["errors"]) == ("scheduled", 0, 20, [])


@worker("Docs.Sleepy", queue="sleepy", chain={"by": "worker", "wait_sleep": 20_000, "wait_retry": 3})
async def sleepy(job: Job) -> None:
    return None


@pytest.mark.parametrize("grace", [0.0, 2.0])
async def test_a_stop_during_a_long_wait_in_place_writes_the_job_back_at_once(db_url: str, grace: float) -> None:
    """wait_sleep 20 s, grace 0 or 2 s: the wait ends with the stop (or is cancelled by its end),
    and the job is written back as waiting — never left executing for a lifeline that would count
    the wait as an attempt (and discard a job on its last one that never ran)."""
    async with AsyncObanBridge(db_url) as client:
        head = await client.insert(sleepy.new({}))  # type: ignore[attr-defined]
        follower = await client.insert(sleepy.new({}, max_attempts=1))  # type: ignore[attr-defined]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(), "
                     "attempted_by = ARRAY['elsewhere', 'a-producer'] WHERE id = %s", [head.id])
    oban = AsyncObanBridge(db_url, queues={"sleepy": 2}, poll_interval=0.05)
    await oban.start()
    try:
        await wait_for(lambda: count(db_url, f"id = {follower.id} AND state = 'executing'") == 1)
        await asyncio.sleep(0.3)
    finally:
        await asyncio.wait_for(oban.stop(grace), timeout=10)
    [row] = rows(db_url, f"id = {follower.id}")
    assert (row["state"], row["attempt"], row["max_attempts"], row["errors"]) == ("scheduled", 0, 1, [])


spans: list[tuple[str, float, float]] = []


@worker("Docs.Ordered", queue="ordered", chain={"by": "worker", "on_cancelled": "ignore", "wait_sleep": 50,
                                                "wait_retry": 200})
async def ordered(job: Job) -> None:
    start = asyncio.get_running_loop().time()
    await asyncio.sleep(job.args.get("sleep", 0))
    spans.append((job.args["name"], start, asyncio.get_running_loop().time()))


async def test_a_link_cancelled_while_it_waited_does_not_let_the_next_one_overtake_the_head(db_url: str) -> None:
    """A runs 2 s; B waits behind it and is cancelled by hand; with on_cancelled: ignore, C treats
    B as done — and so waits for A, which B would have waited for. Strict order, as the Chain doc
    promises, not C beside A."""
    spans.clear()
    async with AsyncObanBridge(db_url, queues={"ordered": 3}, poll_interval=0.05) as oban:
        await oban.insert(ordered.new({"name": "A", "sleep": 2}))  # type: ignore[attr-defined]
        await wait_for(lambda: count(db_url, "args->>'name' = 'A' AND state = 'executing'") == 1)
        b = await oban.insert(ordered.new({"name": "B"}))  # type: ignore[attr-defined]
        await oban.insert(ordered.new({"name": "C"}))  # type: ignore[attr-defined]
        await wait_for(lambda: count(db_url, "args->>'name' = 'B' AND state = 'executing'") == 1)
        async with oban.connection() as conn:  # as `oban-bridge jobs cancel` and Oban Web do
            await run_async(conn, cancel_plan("public", JobFilter(ids=[b.id])))
        await wait_for(lambda: count(db_url, "args->>'name' = 'C' AND state = 'completed'") == 1, timeout=20)
    done = {name: (start, end) for name, start, end in spans}
    assert "B" not in done
    assert done["C"][0] >= done["A"][1], done


deadline_seen: list[str] = []


class AfterAll:
    def after_process(self, state: str, job: Job) -> None:
        deadline_seen.append(f"{job.args.get('name')}:{state}")


@worker("Docs.Late", queue="late", deadline=1, hooks=[AfterAll()])
def late(job: Job) -> None:
    return None


async def test_after_process_runs_for_a_job_the_deadline_cancels(db_url: str) -> None:
    deadline_seen.clear()
    async with AsyncObanBridge(db_url) as client:
        job = await client.insert(late.new({"name": "late"}))  # type: ignore[attr-defined]
    with psycopg.connect(db_url, autocommit=True) as conn:  # fetched well past its deadline
        conn.execute("UPDATE oban_jobs SET inserted_at = inserted_at - interval '1 hour', "
                     "meta = jsonb_set(meta, '{deadline_at}', to_jsonb((now() - interval '1 hour')::text)) "
                     "WHERE id = %s", [job.id])
    async with AsyncObanBridge(db_url, queues={"late": 1}, poll_interval=0.05):
        await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'cancelled'") == 1)
        await wait_for(lambda: bool(deadline_seen))
    assert deadline_seen == ["late:cancel"]  # the state names after_process gets (pro/hooks.py)


class SlowAfter:
    def after_process(self, state: str, job: Job) -> None:
        import time

        time.sleep(0.5)


class NoteBefore:
    def before_process(self, job: Job) -> None:
        return None


@worker("Docs.SlowHooked", queue="hooked", hooks=[SlowAfter()])
def slow_hooked(job: Job) -> None:
    return None


@worker("Docs.AsyncBefore", queue="asyncq", hooks=[NoteBefore()])
async def async_before(job: Job) -> None:
    return None


async def test_slow_after_process_hooks_hold_their_own_queue_not_the_others(db_url: str) -> None:
    """60 jobs whose after_process blocks 0.5 s: they keep their slots until their hook returns (at
    most 5 hooks at once, the queue's limit), so a job of another queue whose before_process needs a
    thread is not queued behind the backlog of hooks (which would take ~5 s on a shared pool)."""
    async with AsyncObanBridge(db_url, queues={"hooked": 5, "asyncq": 1}, poll_interval=0.05) as oban:
        await oban.insert_all([slow_hooked.new({}) for _ in range(60)])  # type: ignore[attr-defined]
        await wait_for(lambda: count(db_url, "worker = 'Docs.SlowHooked' AND state = 'completed'") >= 5)
        other = await oban.insert(async_before.new({}))  # type: ignore[attr-defined]
        await wait_for(lambda: count(db_url, f"id = {other.id} AND state = 'completed'") == 1, timeout=20)
        hooked_done = count(db_url, "worker = 'Docs.SlowHooked' AND state = 'completed'")
    # It ran while the hooks' own queue was still working through them, not after the backlog.
    assert hooked_done < 60, hooked_done


@pytest.mark.parametrize("key", ["recorded", "chain_id", "deadline_at", "cron_expr"])
def test_recorded_to_refuses_meta_other_features_read_back(key: str) -> None:
    with pytest.raises(ValidationError, match="recorded.to"):
        worker("Docs.BadTo", queue="rec", recorded={"to": key})(lambda job: None)


def test_a_float_field_refuses_an_integer_no_float_can_hold() -> None:
    from oban_bridge.pro.structured import field, validate

    with pytest.raises(ValidationError, match="x is invalid"):
        validate({"x": field("float")}, {"x": 10**400})
