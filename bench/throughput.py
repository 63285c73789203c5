"""Throughput and latency of Python workers on one Oban queue (a benchmark, not a test).

    python bench/throughput.py [--jobs 20000] [--limits 50,200] [--latency-samples 200]

Measures, on one PostgreSQL in one run:
  * oban_bridge: N no-op jobs inserted, then one queue at each limit runs them; jobs/s from start
    until every job is `completed` in the table;
  * the raw PostgreSQL ceiling: the same ack-and-fetch statement driven straight from psycopg in a
    loop, no framework — how fast this protocol can go on this machine;
  * insert-to-start latency on an idle queue (p50, p99): `insert` (which notifies) to `process`;
  * oban-py, when a Python >= 3.12 with the `oban` package is available (bench/peer.py), on its own
    database of the same server, and the ratio oban_bridge / oban-py.
With no DATABASE_URL the embedded PostgreSQL is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from oban_bridge import AsyncObanBridge, Job, worker  # noqa: E402
from oban_bridge.db import run_async  # noqa: E402
from oban_bridge.engine import Ack, ack_fetch_plan, complete, db_now  # noqa: E402
from peer import database, run_peer, server_url  # noqa: E402  (bench/peer.py)

started_at: dict[int, float] = {}


@worker("bench.Noop", queue="bench")
async def noop(job: Job) -> None:
    return None


@worker("bench.Latency", queue="latency")
async def latency_probe(job: Job) -> None:
    assert job.id is not None
    started_at[job.id] = time.perf_counter()


async def reset(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("TRUNCATE oban_jobs")
        await conn.execute("VACUUM ANALYZE oban_jobs")


async def completed(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT count(*) FROM oban_jobs WHERE state = 'completed'")).fetchone()
        return int(row[0]) if row else 0


async def bridge_throughput(url: str, jobs: int, limit: int) -> float:
    await reset(url)
    async with AsyncObanBridge(url) as client:
        await client.insert_all([Job.new("bench.Noop", {"i": i}, queue="bench") for i in range(jobs)])
    done = asyncio.Event()
    count = 0

    def on_event(_outcome: Any) -> None:
        nonlocal count
        count += 1
        if count >= jobs:
            done.set()

    oban = AsyncObanBridge(url, queues={"bench": limit}, plugins=[], on_event=on_event, pool_size=2)
    await oban.open()
    t0 = time.perf_counter()
    await oban.start()
    await done.wait()
    while await completed(url) < jobs:  # the last acks are still being written
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - t0
    await oban.stop()
    await oban.close()
    return jobs / elapsed


async def raw_ceiling(url: str, jobs: int, limit: int, lanes: int = 2) -> float:
    """The ack-and-fetch statement alone, on as many connections as a producer uses (`lanes`):
    each round acks the previous batch and fetches the next, with no job framework around it."""
    await reset(url)
    async with AsyncObanBridge(url) as client:
        await client.insert_all([Job.new("bench.Noop", {"i": i}, queue="bench") for i in range(jobs)])

    async def lane() -> int:
        done = 0
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            acks: list[Ack] = []
            while True:
                rows = await run_async(conn, ack_fetch_plan("public", "bench", acks, limit // lanes, ["raw", "raw"]))
                done += len(acks)
                if not rows and not acks:
                    return done
                now = db_now()
                acks = [Ack(r[0], "completed", now) for r in rows]

    t0 = time.perf_counter()
    done = sum(await asyncio.gather(*(lane() for _ in range(lanes))))
    elapsed = time.perf_counter() - t0
    assert done == jobs, (done, jobs)
    return jobs / elapsed


async def bridge_latency(url: str, samples: int) -> tuple[float, float]:
    await reset(url)
    started_at.clear()
    gaps = []
    async with AsyncObanBridge(url, queues={"latency": 10}, plugins=[], poll_interval=5.0) as oban:
        await asyncio.sleep(0.2)
        for _ in range(samples):
            t0 = time.perf_counter()
            job = await oban.insert(Job.new("bench.Latency", {}, queue="latency"))
            assert job.id is not None
            while job.id not in started_at:
                await asyncio.sleep(0.0002)
            gaps.append(started_at[job.id] - t0)
            await asyncio.sleep(0.005)
    gaps.sort()
    return statistics.median(gaps) * 1000, gaps[int(len(gaps) * 0.99) - 1] * 1000


def peer_results(server: str, args: argparse.Namespace) -> dict[str, Any] | None:
    return run_peer("throughput", server, {"jobs": args.jobs, "limits": args.limits}, args.peer_python)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--limits", type=lambda s: [int(x) for x in s.split(",")], default=[50, 200])
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--peer-python", default=None)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    server = server_url(args.database_url)
    url = database(server, "bench_bridge")
    async with AsyncObanBridge(url) as client:
        await client.migrate()

    results: dict[str, Any] = {"jobs": args.jobs, "bridge": {}, "raw": {}}
    for limit in args.limits:
        results["bridge"][limit] = max([await bridge_throughput(url, args.jobs, limit) for _ in range(2)])
        results["raw"][limit] = max([await raw_ceiling(url, args.jobs, limit) for _ in range(2)])
    results["latency_ms"] = await bridge_latency(url, args.latency_samples)
    peer = None if args.no_peer else peer_results(server, args)
    results["peer"] = peer

    if args.json:
        print(json.dumps(results, default=str))
        return
    print(f"{args.jobs:,} no-op jobs, one queue (best of 2)")
    print(f"{'limit':>6} {'oban_bridge':>12} {'raw PG':>10} {'bridge/raw':>11} {'oban-py':>9} {'ratio':>7}")
    for limit in args.limits:
        ours, raw = results["bridge"][limit], results["raw"][limit]
        theirs = (peer or {}).get("throughput", {}).get(str(limit))
        ratio = f"{ours / theirs:6.1f}x" if theirs else "     -"
        shown = f"{theirs:9,.0f}" if theirs else "        -"
        print(f"{limit:>6} {ours:12,.0f} {raw:10,.0f} {ours / raw:10.0%} {shown} {ratio}")
    p50, p99 = results["latency_ms"]
    print(f"insert-to-start latency, idle queue: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    if peer is None and not args.no_peer:
        print("oban-py: skipped (no Python >= 3.12 with oban-py found; see bench/peer.py)")


if __name__ == "__main__":
    asyncio.run(main())
