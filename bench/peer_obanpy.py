"""Runs INSIDE the oban-py virtualenv (Python >= 3.12): measures oban-py on its own database and
prints one JSON line. Invoked by bench/peer.py; not imported by oban_bridge."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from oban import Oban, worker
from oban.schema import install
from psycopg_pool import AsyncConnectionPool


@worker(queue="bench")
class Noop:
    async def process(self, job):  # noqa: ANN001, ANN201
        return None


async def setup(url: str) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(url, min_size=2, max_size=20, open=False)
    await pool.open()
    async with pool.connection() as conn:
        exists = await (await conn.execute("SELECT to_regclass('oban_jobs')")).fetchone()
    if exists[0] is None:
        await install(pool)
    return pool


async def reset(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        await conn.execute("TRUNCATE oban_jobs")
        await conn.execute("VACUUM ANALYZE oban_jobs")
        await conn.set_autocommit(False)


async def count_completed(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM oban_jobs WHERE state = 'completed'")).fetchone()
        return int(row[0])


async def insert(pool: AsyncConnectionPool, jobs: int, repeat: int) -> dict:
    rates = []
    for _ in range(repeat):
        await reset(pool)
        async with Oban(pool=pool) as client:
            t0 = time.perf_counter()
            await client.enqueue_many([Noop.new({"i": i}) for i in range(jobs)])
            rates.append(jobs / (time.perf_counter() - t0))
    return {"insert": max(rates), "insert_all_runs": rates}


async def throughput(pool: AsyncConnectionPool, jobs: int, limits: list[int]) -> dict:
    out = {}
    for limit in limits:
        best = 0.0
        for _ in range(2):
            await reset(pool)
            async with Oban(pool=pool) as client:
                await client.enqueue_many([Noop.new({"i": i}) for i in range(jobs)])
            oban = Oban(pool=pool, queues={"bench": limit})
            t0 = time.perf_counter()
            await oban.start()
            while await count_completed(pool) < jobs:
                await asyncio.sleep(0.002)
            elapsed = time.perf_counter() - t0
            await oban.stop()
            best = max(best, jobs / elapsed)
        out[str(limit)] = best
    return {"throughput": out}


async def main() -> None:
    kind, url, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    pool = await setup(url)
    try:
        if kind == "insert":
            result = await insert(pool, params["jobs"], params.get("repeat", 3))
        elif kind == "throughput":
            result = await throughput(pool, params["jobs"], params["limits"])
        else:
            raise SystemExit(f"unknown kind {kind}")
    finally:
        await pool.close()
    import oban

    result["oban_version"] = oban.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
