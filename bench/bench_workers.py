"""Workers the benchmarks run in `oban-bridge start` processes (`-m bench_workers`, with bench/ on
PYTHONPATH). They keep no state: anything kept per job would show up as growth in the RSS figures."""

from __future__ import annotations

import orjson
from common import burn

from oban_bridge import Job, worker


@worker("bench.Noop", queue="bench")
async def noop(job: Job) -> None:
    return None


@worker("bench.Steady", queue="steady")
async def steady(job: Job) -> dict[str, int]:
    """A little of what real jobs do: read the args, build a result, encode it."""
    payload = {"i": int(job.args.get("i", 0)), "words": [f"w{n}" for n in range(20)]}
    return {"bytes": len(orjson.dumps(payload))}


@worker("bench.Cpu", queue="cpu")
def cpu(job: Job) -> None:
    burn(int(job.args.get("units", 20_000)))


@worker("bench.NoopDef", queue="bench")
def noop_def(job: Job) -> None:
    """The no-op as most Python jobs are written: a plain def, run on a job thread."""
    return None
