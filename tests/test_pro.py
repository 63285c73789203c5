"""Oban Pro's worker features for Python workers, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import threading
from typing import Any

import psycopg
import pytest

from oban_bridge import AsyncObanBridge, Error, Job, Snooze, ValidationError, worker
from oban_bridge.pro import Args, array, attach_hook, detach_hook, embeds_many, embeds_one, enum, field

from .test_runtime import count, rows, wait_for

KEY = base64.b64encode(os.urandom(32)).decode()
seen: dict[str, Any] = {}
order: dict[str, list[int]] = {}
order_lock = threading.Lock()

SCHEMA = {
    "id": field("id", required=True),
    "name": field("string", required=True),
    "mode": enum(["enabled", "disabled", "paused"], default="enabled"),
    "xtra": field("term"),
    "tags": array("string"),
    "data": embeds_one({"office_id": field("uuid", required=True), "has_notes": field("boolean", default=False)},
                       required=True),
    "addresses": embeds_many({"city": field("string", required=True)}),
}


@worker("MyApp.Structured", queue="pro", args_schema=SCHEMA)
async def structured_worker(job: Job) -> None:
    seen["structured"] = job.args


@worker("MyApp.Sensitive", queue="pro", encrypted={"key": lambda: KEY})
async def sensitive_worker(job: Job) -> None:
    seen["sensitive"] = job.args


@worker("MyApp.Chained", queue="chain", chain={"by": {"args": "account"}, "wait_sleep": 50, "wait_snooze": 1},
        backoff=lambda job: 0)
class ChainedWorker:
    def process(self, job: Job) -> Any:
        n = job.args["n"]
        if job.attempt == 1 and n % 4 == 1:
            raise RuntimeError("flaky")  # retried; its successors must wait for it
        if job.attempt == 1 and n % 5 == 2:
            return Snooze(0)
        with order_lock:
            order.setdefault(job.args["account"], []).append(n)
        return None


@worker("MyApp.Held", queue="chain", chain={"by": "worker", "on_discarded": "hold"}, max_attempts=1)
async def held_worker(job: Job) -> Any:
    if job.args.get("fail"):
        return Error("no")
    seen.setdefault("held", []).append(job.args["n"])
    return None


@worker("MyApp.Halted", queue="chain", chain={"by": "worker", "on_discarded": "halt"}, max_attempts=1)
async def halted_worker(job: Job) -> Any:
    if job.args.get("fail"):
        return Error("no")
    return None


@worker("MyApp.Deadline", queue="pro", deadline=(1, "hour"))
async def deadline_worker(job: Job) -> None:
    seen["deadline_ran"] = True


@worker("MyApp.Firm", queue="pro", deadline={"in": 1, "force": True})
async def firm_worker(job: Job) -> None:
    await asyncio.sleep(30)


calls: list[str] = []


class ExplicitHook:
    def before_process(self, job: Job) -> Job:
        calls.append("explicit.before")
        return job

    def after_process(self, state: str, job: Job, result: Any) -> None:
        calls.append(f"explicit.after.{state}")
        raise RuntimeError("hooks never fail jobs")


class GlobalHook:
    def before_process(self, job: Job) -> None:
        calls.append("global.before")

    def after_process(self, state: str, job: Job, result: Any) -> None:
        calls.append(f"global.after.{state}")


@worker("MyApp.Hooked", queue="pro", hooks=[ExplicitHook()])
class HookedWorker:
    def before_new(self, args: dict[str, Any], opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return {**args, "stamped": True}, {**opts, "priority": 3}

    def before_process(self, job: Job) -> Job:
        calls.append("implicit.before")
        return job

    def process(self, job: Job) -> None:
        calls.append("process")

    def after_process(self, state: str, job: Job, result: Any) -> None:
        calls.append(f"implicit.after.{state}")


GOOD = {"id": "123", "name": "NewBiz", "xtra": ("ok", [1, 2]), "tags": ["a"],
        "data": {"office_id": "9F5C2A9E-1B2C-4D3E-8F90-ABCDEF012345"}, "addresses": [{"city": "Oslo"}],
        "unknown": "dropped"}


def test_structured_args_validate_with_every_error_named() -> None:
    job = structured_worker.new(GOOD)  # type: ignore[attr-defined]
    assert job.args["id"] == 123 and job.args["mode"] == "enabled"
    assert job.args["data"] == {"office_id": "9f5c2a9e-1b2c-4d3e-8f90-abcdef012345", "has_notes": False}
    assert "unknown" not in job.args
    with pytest.raises(ValidationError) as info:
        structured_worker.new({"id": "not-an-id", "mode": "unknown", "data": {"has_notes": "maybe"},  # type: ignore[attr-defined]
                               "addresses": [{"city": ""}], "tags": "a"})
    message = str(info.value)
    for expected in ("id is invalid", "name can't be blank", "mode is invalid (expected one of enabled, disabled, paused)",
                     "data.office_id can't be blank", "data.has_notes is invalid", "addresses[0].city can't be blank",
                     "tags is invalid (expected a list)"):
        assert expected in message, expected


async def test_structured_args_are_cast_before_process(db_url: str) -> None:
    async with AsyncObanBridge(db_url, queues={"pro": 2}, poll_interval=0.1) as oban:
        job = await oban.insert(structured_worker.new(GOOD))  # type: ignore[attr-defined]
        await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'completed'") == 1)
    args = seen["structured"]
    assert isinstance(args, Args)
    assert (args.id, args.name, args.mode, args.data.office_id) == (123, "NewBiz", "enabled",
                                                                    "9f5c2a9e-1b2c-4d3e-8f90-abcdef012345")
    assert args.xtra == ("ok", [1, 2]) and args.addresses[0].city == "Oslo"


async def test_bad_structured_insert_writes_nothing(db_url: str) -> None:
    async with AsyncObanBridge(db_url) as oban:
        with pytest.raises(ValidationError):
            await oban.insert_all([structured_worker.new(GOOD), structured_worker.new({"id": 0})])  # type: ignore[attr-defined]
    assert count(db_url, "TRUE") == 0


async def test_encrypted_args_are_unreadable_at_rest(db_url: str) -> None:
    secret = {"ssn": "123-45-6789", "name": "Ada"}
    async with AsyncObanBridge(db_url, queues={"pro": 1}, poll_interval=0.1) as oban:
        job = await oban.insert(sensitive_worker.new(secret, meta={"user": 7}))  # type: ignore[attr-defined]
        await wait_for(lambda: count(db_url, f"id = {job.id} AND state = 'completed'") == 1)
    [row] = rows(db_url, f"id = {job.id}")
    assert set(row["args"]) == {"encrypted"} and "123-45-6789" not in str(row) and "Ada" not in str(row)
    assert row["meta"] == {"user": 7}  # meta stays plain
    assert seen["sensitive"] == secret
    twice = sensitive_worker.new(secret)  # type: ignore[attr-defined]
    assert twice.args != job.args  # a fresh IV each time
    with pytest.raises(ValidationError, match="32 bytes"):
        @worker("MyApp.BadKey", encrypted={"key": lambda: base64.b64encode(b"short").decode()})
        def bad(job: Job) -> None: ...

        bad.new({})  # type: ignore[attr-defined]


async def test_chain_keeps_order_per_partition_under_concurrency(db_url: str) -> None:
    order.clear()
    jobs = [ChainedWorker.new({"account": acct, "n": n})  # type: ignore[attr-defined]
            for n in range(12) for acct in ("a", "b", "c")]
    random.shuffle(jobs)
    async with AsyncObanBridge(db_url) as client:
        for acct in ("a", "b", "c"):  # insertion order per account is n order
            for job in sorted((j for j in jobs if j.args["account"] == acct), key=lambda j: j.args["n"]):
                await client.insert(job)
    async with AsyncObanBridge(db_url, queues={"chain": 10}, poll_interval=0.05) as oban:
        # Retries (backoff 0) and snoozes come back through the stager: let it run often.
        stager = next(p for p in oban.plugins if p.name == "stager")
        stager.interval = 0.05
        await wait_for(lambda: count(db_url, "worker = 'MyApp.Chained' AND state = 'completed'") == 36, timeout=60)
    for acct in ("a", "b", "c"):
        assert order[acct] == list(range(12)), acct


async def test_chain_hold_and_halt_on_discarded(db_url: str) -> None:
    seen.pop("held", None)
    async with AsyncObanBridge(db_url, queues={"chain": 5}, poll_interval=0.05) as oban:
        await oban.insert(held_worker.new({"n": 0, "fail": True}))  # type: ignore[attr-defined]
        held = await oban.insert(held_worker.new({"n": 1}))  # type: ignore[attr-defined]
        await oban.insert(halted_worker.new({"fail": True}))  # type: ignore[attr-defined]
        halted = await oban.insert(halted_worker.new({}))  # type: ignore[attr-defined]
        await wait_for(lambda: count(db_url, f"id = {halted.id} AND state = 'cancelled'") == 1)
        await asyncio.sleep(0.5)
        assert count(db_url, f"id = {held.id} AND state = 'scheduled'") == 1  # held behind the discard
        assert "held" not in seen
    [row] = rows(db_url, f"id = {halted.id}")
    assert row["errors"][0]["error"] == "** (Oban.PerformError) MyApp.Halted failed with {:cancel, :chain_halted}"


async def test_deadlines(db_url: str) -> None:
    job = deadline_worker.new({}, schedule_in=60)  # type: ignore[attr-defined]
    assert "deadline_at" in job.meta
    seen.pop("deadline_ran", None)
    async with AsyncObanBridge(db_url) as client:
        late = await client.insert(deadline_worker.new({}, deadline=1))  # type: ignore[attr-defined]
    with psycopg.connect(db_url, autocommit=True) as conn:  # its deadline passed before it ran
        conn.execute("UPDATE oban_jobs SET meta = jsonb_set(meta, '{deadline_at}', '\"2020-01-01T00:00:00.000000Z\"')"
                     " WHERE id = %s", [late.id])
    async with AsyncObanBridge(db_url, queues={"pro": 2}, poll_interval=0.1) as oban:
        firm = await oban.insert(firm_worker.new({}))  # type: ignore[attr-defined]
        await wait_for(lambda: count(db_url, f"id IN ({late.id}, {firm.id}) AND state = 'cancelled'") == 2, timeout=10)
    assert "deadline_ran" not in seen
    for job_id in (late.id, firm.id):
        [row] = rows(db_url, f"id = {job_id}")
        assert row["errors"][0]["error"].endswith("failed with {:cancel, :deadline_exceeded}")
    with pytest.raises(ValidationError, match="no deadline option"):
        structured_worker.new(GOOD, deadline=5)  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="deadline"):
        deadline_worker.new({}, deadline=-1)  # type: ignore[attr-defined]


async def test_hooks_run_implicit_explicit_global(db_url: str) -> None:
    calls.clear()
    hook = GlobalHook()
    attach_hook(hook)
    try:
        job = HookedWorker.new({"a": 1})  # type: ignore[attr-defined]
        assert job.args == {"a": 1, "stamped": True} and job.priority == 3
        async with AsyncObanBridge(db_url, queues={"pro": 1}, poll_interval=0.1) as oban:
            inserted = await oban.insert(job)
            await wait_for(lambda: count(db_url, f"id = {inserted.id} AND state = 'completed'") == 1)
    finally:
        detach_hook(hook)
    assert calls == ["implicit.before", "explicit.before", "global.before", "process",
                     "implicit.after.complete", "explicit.after.complete", "global.after.complete"]


def test_a_chain_keyed_by_a_datetime_is_one_partition_given_or_read_back() -> None:
    """A successor is often enqueued from the stored args (`job.args`), where a UTC datetime is the
    "…Z" string Jason would write: it must land in the chain the datetime started."""
    from datetime import datetime, timezone

    @worker("MyApp.ByDay", queue="chain", chain={"by": {"args": "day"}})
    def by_day(job: Job) -> None:
        return None

    first = by_day.new({"day": datetime(2026, 12, 7, tzinfo=timezone.utc)})  # type: ignore[attr-defined]
    assert first.args["day"] == "2026-12-07T00:00:00Z"
    again = by_day.new(dict(first.args))  # type: ignore[attr-defined]
    assert again.meta["chain_id"] == first.meta["chain_id"]
