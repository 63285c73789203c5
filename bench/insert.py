"""insert_all throughput against oban-py's enqueue_many, on one PostgreSQL in one run.

    python bench/insert.py [--jobs 100000] [--repeat 3] [--no-peer] [--json]

oban_bridge inserts into Elixir Oban's schema; oban-py into its own schema on a second database
of the same server (bench/peer.py). Times building the jobs plus the insert call, best of
`--repeat`. Goal: at least 10x oban-py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from oban_bridge import AsyncObanBridge, Job  # noqa: E402
from peer import database, run_peer, server_url  # noqa: E402


async def bridge_insert(url: str, jobs: int) -> tuple[float, float]:
    """(jobs/s including Job.new, jobs/s of the insert_all call alone)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("TRUNCATE oban_jobs")
        await conn.execute("VACUUM ANALYZE oban_jobs")
    async with AsyncObanBridge(url) as client:
        t0 = time.perf_counter()
        batch = [Job.new("bench.Noop", {"i": i}, queue="bench") for i in range(jobs)]
        t1 = time.perf_counter()
        inserted = await client.insert_all(batch)
        t2 = time.perf_counter()
    assert len(inserted) == jobs
    return jobs / (t2 - t0), jobs / (t2 - t1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--peer-python", default=None)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    server = server_url(args.database_url)
    url = database(server, "bench_bridge")
    async with AsyncObanBridge(url) as client:
        await client.migrate()

    runs = [await bridge_insert(url, args.jobs) for _ in range(args.repeat)]
    total = [r[0] for r in runs]
    call_only = [r[1] for r in runs]
    peer = None if args.no_peer else run_peer("insert", server, {"jobs": args.jobs, "repeat": args.repeat},
                                             args.peer_python)
    result = {
        "jobs": args.jobs,
        "bridge_best": max(total), "bridge_median": statistics.median(total),
        "bridge_insert_call_best": max(call_only),
        "oban_py_best": peer and peer["insert"],
        "oban_py_median": peer and statistics.median(peer["insert_all_runs"]),
        "ratio": peer and max(total) / peer["insert"],
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"insert_all {args.jobs:,} jobs (best of {args.repeat}; median in brackets)")
    print(f"oban_bridge   {result['bridge_best']:9,.0f} jobs/s  ({result['bridge_median']:,.0f})"
          f"   insert_all call alone {result['bridge_insert_call_best']:,.0f} jobs/s")
    if peer:
        print(f"oban-py       {peer['insert']:9,.0f} jobs/s  ({result['oban_py_median']:,.0f})   enqueue_many, oban {peer['oban_version']}")
        print(f"ratio         {result['bridge_best'] / peer['insert']:9.1f}x")
    elif args.no_peer:
        print("oban-py       skipped (--no-peer)")
    else:
        print("oban-py       skipped (no Python >= 3.12 with oban-py; see bench/peer.py)")


if __name__ == "__main__":
    asyncio.run(main())
