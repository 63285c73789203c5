"""Runs INSIDE the oban-py virtualenv (Python >= 3.12): measures oban-py on its own database and
prints one JSON line. Invoked by bench/peer.py (for bench/run.py); not imported by oban_bridge.

Each measure mirrors the oban_bridge one in bench/run.py: same job counts, limits, queues and the
same way of deciding that a run is over (every row `completed` in the table).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

from oban import Oban, worker
from oban.schema import install
from psycopg_pool import AsyncConnectionPool

from common import burn, rss_mib  # bench/common.py: this script's directory is on sys.path

started_at: dict[int, float] = {}


@worker(queue="bench")
class Noop:
    async def process(self, job):  # noqa: ANN001, ANN201
        return None


@worker(queue="latency")
class Latency:
    async def process(self, job):  # noqa: ANN001, ANN201
        started_at[job.id] = time.perf_counter()


@worker(queue="cpu")
class Cpu:
    async def process(self, job):  # noqa: ANN001, ANN201
        # oban-py awaits process(); CPU work goes to a thread so the loop keeps fetching and acking.
        await asyncio.to_thread(burn, int(job.args.get("units", 20_000)))


async def setup(url: str) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(url, min_size=2, max_size=20, open=False)
    await pool.open()
    async with pool.connection() as conn:
        exists = await (await conn.execute("SELECT to_regclass('oban_jobs')")).fetchone()
    if exists[0] is None:
        await install(pool)
    return pool


async def sql(pool: AsyncConnectionPool, query: str, params: list | None = None) -> list:
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        cur = await conn.execute(query, params)
        rows = await cur.fetchall() if cur.description else []
        await conn.set_autocommit(False)
        return rows


async def reset(pool: AsyncConnectionPool) -> None:
    await sql(pool, "TRUNCATE oban_jobs")
    await sql(pool, "VACUUM ANALYZE oban_jobs")


async def completed(pool: AsyncConnectionPool) -> int:
    return (await sql(pool, "SELECT count(*) FROM oban_jobs WHERE state = 'completed'"))[0][0]


async def insert(pool: AsyncConnectionPool, jobs: int, repeat: int) -> list[float]:
    rates = []
    for _ in range(repeat):
        await reset(pool)
        async with Oban(pool=pool) as client:
            t0 = time.perf_counter()
            await client.enqueue_many([Noop.new({"i": i}) for i in range(jobs)])
            rates.append(jobs / (time.perf_counter() - t0))
    return rates


async def drain(pool: AsyncConnectionPool, jobs: list, queues: dict[str, int]) -> float:
    await reset(pool)
    async with Oban(pool=pool) as client:
        await client.enqueue_many(jobs)
    oban = Oban(pool=pool, queues=queues)
    t0 = time.perf_counter()
    await oban.start()
    while await completed(pool) < len(jobs):
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - t0
    await oban.stop()
    return len(jobs) / elapsed


async def throughput(pool: AsyncConnectionPool, jobs: int, limit: int, repeat: int) -> float:
    return max([await drain(pool, [Noop.new({"i": i}) for i in range(jobs)], {"bench": limit})
                for _ in range(repeat)])


async def four_queues(pool: AsyncConnectionPool, jobs: int, limit: int, repeat: int) -> float:
    names = [f"q{n}" for n in range(4)]
    batch = [Noop.new({"i": i}, queue=names[i % 4]) for i in range(jobs)]
    return max([await drain(pool, batch, {q: limit for q in names}) for _ in range(repeat)])


async def latency(pool: AsyncConnectionPool, samples: int) -> list[float]:
    await reset(pool)
    gaps = []
    async with Oban(pool=pool, queues={"latency": 10}) as oban:
        await asyncio.sleep(0.5)
        for _ in range(samples):
            t0 = time.perf_counter()
            job = await oban.enqueue(Latency.new({}))
            while job.id not in started_at:
                await asyncio.sleep(0.0002)
            gaps.append(started_at[job.id] - t0)
            await asyncio.sleep(0.005)
    gaps.sort()
    return [statistics.median(gaps) * 1000, gaps[int(len(gaps) * 0.99) - 1] * 1000]


async def rss(pool: AsyncConnectionPool, jobs: int, batch: int, limit: int) -> dict:
    """Process `jobs` in batches inserted by SQL (so inserting costs this process nothing); the
    completed rows are deleted between batches to keep the table small."""
    await reset(pool)
    marks: dict[str, float] = {}
    processed = 0
    async with Oban(pool=pool, queues={"bench": limit}):
        while processed < jobs:
            n = min(batch, jobs - processed)
            await sql(pool, "INSERT INTO oban_jobs (worker, queue, args) SELECT %s, 'bench', "
                            "jsonb_build_object('i', g) FROM generate_series(1, %s) g", [Noop.__module__ + ".Noop", n])
            while await completed(pool) < n:
                await asyncio.sleep(0.01)
            await sql(pool, "DELETE FROM oban_jobs WHERE state = 'completed'")
            processed += n
            marks[str(processed)] = rss_mib()
    return marks


async def cpu(pool: AsyncConnectionPool, jobs: int, units: int, limit: int) -> float:
    await reset(pool)
    async with Oban(pool=pool) as client:
        await client.enqueue_many([Cpu.new({"units": units}) for _ in range(jobs)])
    oban = Oban(pool=pool, queues={"cpu": limit})
    await oban.start()
    while await completed(pool) < jobs:
        await asyncio.sleep(0.01)
    await oban.stop()
    row = (await sql(pool, "SELECT extract(epoch FROM max(completed_at) - min(attempted_at)) FROM oban_jobs"))[0]
    return jobs / float(row[0])


async def main() -> None:
    url, params = sys.argv[1], json.loads(sys.argv[2])
    pool = await setup(url)
    out: dict = {}
    try:
        for measure in params["measures"]:
            if measure == "insert":
                out["insert"] = max(await insert(pool, params["insert_jobs"], params["insert_repeat"]))
            elif measure == "throughput":
                out["throughput"] = {str(limit): await throughput(pool, params["jobs"], limit, params["repeat"])
                                     for limit in params["limits"]}
            elif measure == "queues":
                out["queues"] = await four_queues(pool, params["jobs"], params["queue_limit"], params["repeat"])
            elif measure == "latency":
                out["latency"] = await latency(pool, params["latency_samples"])
            elif measure == "rss":
                out["rss"] = await rss(pool, params["rss_jobs"], params["rss_batch"], 100)
            elif measure == "cpu":
                out["cpu"] = await cpu(pool, params["cpu_jobs"], params["cpu_units"], params["cpu_limit"])
    finally:
        await pool.close()
    import oban

    out["oban_version"] = oban.__version__
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
