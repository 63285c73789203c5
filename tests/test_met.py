"""Recorded output from Python workers, and the metrics Oban Web charts, in oban_met's shapes
(elixir_interop_fixtures/notifications.jsonl)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import psycopg

from oban_bridge import AsyncObanBridge, Job, worker
from oban_bridge.notifier import decode
from oban_bridge.plugins.met import Met, sketch, sketch_bin
from oban_bridge.recorded import fetch_recorded

from .conftest import fixture
from .test_runtime import count, rows, wait_for


@worker("py.Recorded", queue="rec", recorded=True)
async def recorded_worker(job: Job) -> Any:
    if job.args.get("big"):
        return "z" * 5000
    return {"pdf": "s3://badges/1.pdf", "pages": 2, "ok": True}


@worker("py.RecordedSmall", queue="rec", recorded={"limit": 100})
async def small_recorded(job: Job) -> Any:
    return list(range(1000))


def elixir_metrics() -> list[dict[str, Any]]:
    out = []
    for note in fixture("notifications.jsonl"):
        if note["channel"] == "public.oban_metrics":
            out.append(decode(note["payload"]))
    return out


async def test_recorded_output_lands_in_meta(db_url: str) -> None:
    async with AsyncObanBridge(db_url, queues={"rec": 2}, poll_interval=0.1) as oban:
        ok = await oban.insert(Job.new("py.Recorded", {}, queue="rec"))
        big = await oban.insert(Job.new("py.RecordedSmall", {}, queue="rec"))
        await wait_for(lambda: count(db_url, f"id = {ok.id} AND state = 'completed'") == 1
                       and count(db_url, f"id = {big.id} AND state = 'retryable'") == 1)
    [row] = rows(db_url, f"id = {ok.id}")
    assert row["meta"]["recorded"] is True and "=" not in row["meta"]["return"]
    assert fetch_recorded(Job(worker="py.Recorded", meta=row["meta"])) == {"pdf": "s3://badges/1.pdf", "pages": 2, "ok": True}
    [failed] = rows(db_url, f"id = {big.id}")
    assert "over the limit of 100" in failed["errors"][0]["error"]
    assert "recorded" not in failed["meta"]


def test_sketch_bins_are_oban_mets() -> None:
    gamma = (1 + 0.02) / (1 - 0.02)
    for value in (1, 2, 1000, 8_500_000, 10**12):
        assert sketch_bin(value) == math.ceil(math.log(value) / math.log(gamma))
    v = 8_500_000
    assert sketch([v, v + 1, 1]) == {"data": {str(sketch_bin(v)): 2, "0": 1}, "size": 3}
    # The Elixir node's first exec_time bin, 391, is a job of about 6.2 ms in native (ns) units.
    assert sketch_bin(6_200_000) == 391


def test_payload_has_elixirs_shape() -> None:
    theirs = elixir_metrics()
    by_series = {m["series"]: m for payload in theirs for m in payload["metrics"]}
    met = Met()
    met.record("success", "elixir", "Harness.Echo", 0.0085, 0.0074)
    met.record("failure", "elixir", "Harness.Echo", 0.002, 0.001)
    ours = met.payload("ObanBridge", "py-node", [{"series": "full_count", "state": "completed", "queue": "elixir",
                                                 "value": {"data": [1]}}])
    assert ours is not None
    assert sorted(ours) == sorted(theirs[0]) == ["metrics", "name", "node", "time"]
    mine = {(m["series"], m["state"]): m for m in ours["metrics"]}
    for series in ("exec_time", "wait_time", "exec_count", "full_count"):
        theirs_m = by_series[series]
        ours_m = mine[(series, "completed")]
        assert sorted(ours_m) == sorted(theirs_m), series
        assert sorted(ours_m["value"]) == sorted(theirs_m["value"]), series
    assert mine[("exec_time", "completed")]["value"] == {"data": {str(sketch_bin(8_500_000)): 1}, "size": 1}
    assert mine[("exec_count", "retryable")]["value"] == {"data": [1]}
    assert met.payload("ObanBridge", "py-node", []) is None  # nothing new: nothing sent


async def test_running_node_broadcasts_metrics(db_url: str) -> None:
    async def heard() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        async with AsyncObanBridge(db_url, queues={"rec": 2}, poll_interval=0.1, node="py-node") as oban:
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
                await conn.execute('LISTEN "public.oban_metrics"')
                await oban.insert(Job.new("py.Recorded", {}, queue="rec"))
                async for note in conn.notifies(timeout=4):
                    got.append(decode(note.payload))
                    if any(m["series"] == "exec_time" for p in got for m in p["metrics"]):
                        break
        return got

    payloads = await asyncio.wait_for(heard(), 15)
    series = {m["series"] for p in payloads for m in p["metrics"]}
    assert {"exec_time", "wait_time", "exec_count"} <= series
    assert all(p["node"] == "py-node" and p["name"] == "ObanBridge" for p in payloads)
    json.dumps(payloads)
