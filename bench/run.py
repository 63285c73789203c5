"""The benchmark: oban_bridge against oban-py and against the raw PostgreSQL ceiling, one run.

    python bench/run.py              # everything, ~25 minutes on 2 cores (oban-py takes most)
    python bench/run.py --quick      # smaller counts, ~5 minutes
    python bench/run.py --only throughput,latency --no-peer

On one PostgreSQL server (DATABASE_URL, else the embedded one), in this order:
  insert      insert_all of 100,000 jobs (Job.new included), best of --repeat;
  throughput  50,000 no-op jobs through one queue at limits 10, 100 and 1,000 — from start until
              every row is `completed`; and the raw ceiling: the same ack-and-fetch statement the
              producer sends, driven in a loop from bare psycopg (no framework), the best of one
              connection per queue fetching `limit` rows a round and two fetching half each;
  queues      the same 50,000 jobs over 4 queues with limit 25 each, and its raw ceiling;
  latency     insert-to-start on an idle queue (insert notifies; p50, p99);
  rss         resident memory of a fresh process after 100,000 and after 1,000,000 processed jobs
              (default plugins on; jobs inserted by SQL from outside so inserting costs it nothing);
  cpu         CPU-bound jobs (pure-Python arithmetic, ~4 ms each): one `oban-bridge start` process
              against `--processes auto` (one node per core);
  start       the way users run it: `oban-bridge start -m bench_workers -q bench:100` with its default
              plugins and logging, 20,000 plain-`def` no-op jobs waiting; jobs/s from the first attempt
              to the last completion, Python CPU per job, and the peak number of jobs holding a slot
              at once (from attempted_at/completed_at: must never exceed the limit);
  joblog      the start measure again with a log line per job (`--log-jobs`), text and JSON, written
              to a file as a service manager would collect stderr: jobs/s against the same run
              without per-job lines, and the log's size;
  limits      2 `oban-bridge start` nodes on one queue, 20,000 def no-ops: `bench:local=100,global=100`
              (at most 100 at once over both) against `bench:100` each (200 slots) and `bench:50`
              each (the same 100 slots), best of 2, interleaved; jobs/s, the peak running at once,
              and transactions per 1,000 jobs (pg_stat_database): the coordination's cost (claims
              renewed a few times a second per busy node; fetches as unlimited ones);
  observe     the start measure with `--otel` — the API alone (no SDK), an SDK sampling 10% of traces,
              an SDK keeping every span (exported to nowhere, bench/otel_workers.py) — and with
              `--metrics-port` too (scraped every second, as Prometheus would), against the same
              run without either, interleaved, best of 2: what tracing and metrics cost;
  idle        `oban-bridge start` with 4 queues (a:100,b:10,c:10,d:50) and its default plugins on an
              empty table: statements/s (pg_stat_database, less the probe's own) and CPU% of a core.
The throughput and queues lines also report the peak concurrency seen.
Then oban-py 0.7.0 (bench/peer.py: its own virtualenv on a Python >= 3.12, its own database on the
same server) runs the same measures, and a table prints each line with the ratio
oban_bridge / oban-py (for latency and memory, oban-py / oban_bridge: above 1 is better for us).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_workers import noop  # noqa: E402, F401  (registers bench.Noop)
from common import rss_mib  # noqa: E402

from oban_bridge import AsyncObanBridge, Job, worker  # noqa: E402
from oban_bridge import ObanBridge as ObanBridgeSync  # noqa: E402
from oban_bridge import loop as event_loop  # noqa: E402
from oban_bridge.db import run_async  # noqa: E402
from oban_bridge.engine import Ack, ack_fetch_plan, db_now  # noqa: E402
from oban_bridge.notifier import channel, encode  # noqa: E402
from peer import database, run_peer, server_url  # noqa: E402  (bench/peer.py)

MEASURES = ["insert", "throughput", "queues", "latency", "rss", "cpu", "start", "joblog", "idle", "limits",
            "observe"]
started_at: dict[int, float] = {}


@worker("bench.Latency", queue="latency")
async def latency_probe(job: Job) -> None:
    assert job.id is not None
    started_at[job.id] = time.perf_counter()


async def sql(url: str, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query, params)  # type: ignore[arg-type]
        return await cur.fetchall() if cur.description else []


async def reset(url: str) -> None:
    await sql(url, "TRUNCATE oban_jobs")
    await sql(url, "VACUUM ANALYZE oban_jobs")


async def analyze(url: str) -> None:
    """After filling the queue: statistics that describe a table full of available jobs, as
    autovacuum keeps them in production. Planned on the empty table's, the ack and fetch statement
    can run twice as slow, and runs stop being comparable."""
    await sql(url, "ANALYZE oban_jobs")


async def completed(url: str) -> int:
    return int((await sql(url, "SELECT count(*) FROM oban_jobs WHERE state = 'completed'"))[0][0])


def no_ops(jobs: int, queues: list[str]) -> list[Job]:
    return [Job.new("bench.Noop", {"i": i}, queue=queues[i % len(queues)]) for i in range(jobs)]


# insert ------------------------------------------------------------------------------------------

async def bridge_insert(url: str, jobs: int) -> tuple[float, float]:
    """(jobs/s including Job.new, jobs/s of the insert_all call alone)."""
    await reset(url)
    async with AsyncObanBridge(url) as client:
        t0 = time.perf_counter()
        batch = no_ops(jobs, ["bench"])
        t1 = time.perf_counter()
        inserted = await client.insert_all(batch)
        t2 = time.perf_counter()
    assert len(inserted) == jobs
    return jobs / (t2 - t0), jobs / (t2 - t1)


# throughput ----------------------------------------------------------------------------------------

async def bridge_drain(url: str, jobs: int, queues: dict[str, int]) -> float:
    await reset(url)
    async with AsyncObanBridge(url) as client:
        await client.insert_all(no_ops(jobs, list(queues)))
    await analyze(url)
    done = asyncio.Event()
    count = 0

    def on_event(_outcome: Any) -> None:
        nonlocal count
        count += 1
        if count >= jobs:
            done.set()

    oban = AsyncObanBridge(url, queues=queues, plugins=[], on_event=on_event, pool_size=2)
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


async def raw_drain(url: str, jobs: int, queues: dict[str, int], lanes: int = 2) -> float:
    """The producer's ack-and-fetch statement alone, `lanes` connections per queue like a producer:
    each round acks the previous batch and fetches the next, no framework around it."""
    await reset(url)
    async with AsyncObanBridge(url) as client:
        await client.insert_all(no_ops(jobs, list(queues)))
    await analyze(url)

    conns = [await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in queues for _ in range(lanes)]

    async def lane(conn: psycopg.AsyncConnection[Any], queue: str, limit: int) -> int:
        done = 0
        acks: list[Ack] = []
        while True:
            rows = await run_async(conn, ack_fetch_plan("public", queue, acks, max(1, limit // lanes), ["raw", "raw"]))
            done += len(acks)
            if not rows and not acks:
                return done
            now = db_now()
            acks = [Ack(r[0], "completed", now) for r in rows]

    # Connected before the clock starts: the ceiling is the statement alone.
    pairs = [(q, n) for q, n in queues.items() for _ in range(lanes)]
    t0 = time.perf_counter()
    done = sum(await asyncio.gather(*(lane(c, q, n) for c, (q, n) in zip(conns, pairs))))
    elapsed = time.perf_counter() - t0
    for conn in conns:
        await conn.close()
    assert done == jobs, (done, jobs)
    return jobs / elapsed


async def raw_ceiling(url: str, jobs: int, queues: dict[str, int], repeat: int) -> float:
    """The best of one connection per queue fetching `limit` a round and two fetching half each."""
    return max([await raw_drain(url, jobs, queues, lanes) for lanes in (1, 2) for _ in range(repeat)])


# latency -------------------------------------------------------------------------------------------

async def bridge_latency(url: str, samples: int) -> list[float]:
    await reset(url)
    started_at.clear()
    gaps = []
    async with AsyncObanBridge(url, queues={"latency": 10}, plugins=[], poll_interval=5.0) as oban:
        await asyncio.sleep(0.5)
        for _ in range(samples):
            t0 = time.perf_counter()
            job = await oban.insert(Job.new("bench.Latency", {}, queue="latency"))
            assert job.id is not None
            while job.id not in started_at:
                await asyncio.sleep(0.0002)
            gaps.append(started_at[job.id] - t0)
            await asyncio.sleep(0.005)
    gaps.sort()
    return [statistics.median(gaps) * 1000, gaps[int(len(gaps) * 0.99) - 1] * 1000]


# rss -----------------------------------------------------------------------------------------------

async def rss_child(url: str, jobs: int, batch: int) -> dict[str, float]:
    """Runs in a fresh process (`--rss-child`): a node with its default plugins at limit 100."""
    await reset(url)
    marks: dict[str, float] = {}
    processed = 0
    async with AsyncObanBridge(url, queues={"bench": 100}):
        while processed < jobs:
            n = min(batch, jobs - processed)
            await sql(url, "INSERT INTO oban_jobs (worker, queue, args) SELECT 'bench.Noop', 'bench', "
                           "jsonb_build_object('i', g) FROM generate_series(1, %s) g", [n])
            await sql(url, "SELECT pg_notify(%s, %s)", [channel("public", "insert"), encode({"queue": "bench"})])
            while await completed(url) < n:
                await asyncio.sleep(0.01)
            await sql(url, "DELETE FROM oban_jobs WHERE state = 'completed'")
            processed += n
            marks[str(processed)] = rss_mib()
    return marks


def bridge_rss(url: str, jobs: int, batch: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--rss-child", url, str(jobs), str(batch)],
                         capture_output=True, text=True, check=True, timeout=3 * 3600)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# cpu -----------------------------------------------------------------------------------------------

def bridge_cpu(url: str, jobs: int, units: int, limit: int, processes: str) -> float:
    """Jobs/s from the first attempt to the last completion, so process start-up is not counted."""
    asyncio.run(reset(url))
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO oban_jobs (worker, queue, args) SELECT 'bench.Cpu', 'cpu', "
                    "jsonb_build_object('units', %s::int) FROM generate_series(1, %s) g", [units, jobs])
    return run_node(url, f"cpu:{limit}", jobs, "--processes", processes)[0]


# peak concurrency, `oban-bridge start` and idle cost -----------------------------------------------

PEAK_SQL = """
SELECT coalesce(max(held), 0) FROM (
  SELECT sum(step) OVER (ORDER BY at, step) AS held FROM (
    SELECT attempted_at AS at, 1 AS step FROM oban_jobs WHERE queue = %(queue)s AND completed_at IS NOT NULL
    UNION ALL
    SELECT completed_at, -1 FROM oban_jobs WHERE queue = %(queue)s AND completed_at IS NOT NULL
  ) events
) running"""


def peak(url: str, queue: str) -> int:
    """The most jobs of `queue` between their attempt and their completion at one instant (a job
    completing when another starts is not counted twice)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(PEAK_SQL, {"queue": queue}).fetchone()
    return int(row[0]) if row else 0


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_node(url: str, queues: str, *extra: str, stderr: Any = subprocess.DEVNULL,
               module: str = "bench_workers") -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}"}
    return subprocess.Popen([sys.executable, "-m", "oban_bridge", "start", "-m", module, "-q", queues, *extra],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)


def run_node(url: str, queues: str, jobs: int, *extra: str, stderr: Any = subprocess.DEVNULL,
             module: str = "bench_workers", scrape: int | None = None) -> tuple[float, float]:
    """`oban-bridge start` until `jobs` are completed: (jobs/s from the first attempt to the last
    completion, so start-up is not counted; the process's CPU seconds, start-up included).
    `scrape`: a metrics port to read every second meanwhile, as Prometheus would."""
    import urllib.request

    node = start_node(url, queues, *extra, stderr=stderr, module=module)
    try:
        last = 0.0
        while asyncio.run(completed(url)) < jobs:
            if scrape is not None and time.monotonic() - last >= 1.0:
                last = time.monotonic()
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{scrape}/metrics", timeout=2).read()
                except OSError:
                    pass  # not serving yet
            time.sleep(0.05)
        cpu = process_cpu(node.pid)
    finally:
        node.terminate()
        node.wait(120)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT extract(epoch FROM max(completed_at) - min(attempted_at)) FROM oban_jobs").fetchone()
    assert row is not None
    return jobs / float(row[0]), cpu


def bridge_start(url: str, jobs: int, limit: int) -> dict[str, float]:
    asyncio.run(reset(url))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO oban_jobs (worker, queue, args) SELECT 'bench.NoopDef', 'bench', "
                     "jsonb_build_object('i', g) FROM generate_series(1, %s) g", [jobs])
    asyncio.run(analyze(url))
    rate, cpu = run_node(url, f"bench:{limit}", jobs)
    return {"rate": rate, "cpu_us": cpu / jobs * 1e6, "peak": peak(url, "bench")}


def bridge_joblog(url: str, jobs: int, limit: int) -> dict[str, float]:
    """Jobs/s with no per-job lines, then with `--log-jobs` in text and in JSON, interleaved so the
    machine's drift touches each alike; stderr goes to a file, as journald or a log file takes it."""
    import tempfile

    rates: dict[str, list[float]] = {"off": [], "text": [], "json": []}
    size: dict[str, int] = {}
    for _ in range(2):
        for mode, extra in (("off", ()), ("text", ("--log-jobs",)), ("json", ("--log-jobs", "--log-format", "json"))):
            asyncio.run(reset(url))
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("INSERT INTO oban_jobs (worker, queue, args) SELECT 'bench.NoopDef', 'bench', "
                             "jsonb_build_object('i', g) FROM generate_series(1, %s) g", [jobs])
            asyncio.run(analyze(url))
            with tempfile.TemporaryFile() as log:
                rate, _cpu = run_node(url, f"bench:{limit}", jobs, *extra, stderr=log)
                size[mode] = log.tell()
            rates[mode].append(rate)
    best = {mode: max(r) for mode, r in rates.items()}
    return {**best, "text_bytes": size["text"] / jobs, "json_bytes": size["json"] / jobs}


def bridge_observe(url: str, jobs: int, limit: int) -> dict[str, float]:
    """Jobs/s without tracing or metrics; with `--metrics-port`; with `--otel` and the API alone (no SDK: spans are
    no-ops); with an SDK sampling 10% of traces; with an SDK keeping every span (exported to
    nowhere); and that with `--metrics-port` scraped every second. Interleaved, best of 2."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ratio = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    modes: dict[str, tuple[str, tuple[str, ...], int | None, dict[str, str]]] = {
        "off": ("bench_workers", (), None, {}),
        "metrics": ("bench_workers", ("--metrics-port", str(port), "--metrics-addr", "127.0.0.1"), port, {}),
        "api": ("bench_workers", ("--otel",), None, {}),
        "sampled": ("otel_workers", ("--otel",), None, ratio),
        "otel": ("otel_workers", ("--otel",), None, {}),
        "both": ("otel_workers", ("--otel", "--metrics-port", str(port), "--metrics-addr", "127.0.0.1"), port, {}),
    }
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(2):
        for mode, (module, extra, scrape, env) in modes.items():
            asyncio.run(reset(url))
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("INSERT INTO oban_jobs (worker, queue, args) SELECT 'bench.NoopDef', 'bench', "
                             "jsonb_build_object('i', g) FROM generate_series(1, %s) g", [jobs])
            asyncio.run(analyze(url))
            saved = {key: os.environ.get(key) for key in env}
            os.environ.update(env)
            try:
                rate, _cpu = run_node(url, f"bench:{limit}", jobs, *extra, module=module, scrape=scrape)
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
            rates[mode].append(rate)
    return {mode: max(r) for mode, r in rates.items()}


def bridge_limits(url: str, jobs: int) -> dict[str, float]:
    """Two nodes share one queue, unlimited and then held to a global limit of 100, interleaved."""
    with ObanBridgeSync(url) as client:
        client.migrate(limits=True)

    def xacts() -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                               "WHERE datname = current_database()").fetchone()
        assert row is not None
        return int(row[0])

    out: dict[str, list[float]] = {"plain": [], "global": [], "half": [], "plain_x": [], "global_x": [], "half_x": [],
                                   "peak": []}
    for _ in range(2):
        for mode, queues in (("plain", "bench:100"), ("global", "bench:local=100,global=100"), ("half", "bench:50")):
            asyncio.run(reset(url))
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("INSERT INTO oban_jobs (worker, queue, args) SELECT 'bench.NoopDef', 'bench', "
                             "jsonb_build_object('i', g) FROM generate_series(1, %s) g", [jobs])
            asyncio.run(analyze(url))
            x0 = xacts()
            nodes = [start_node(url, queues, "--node", f"bench-{i}") for i in range(2)]
            try:
                while asyncio.run(completed(url)) < jobs:
                    time.sleep(0.05)
            finally:
                for node in nodes:
                    node.terminate()
                for node in nodes:
                    node.wait(120)
            x1 = xacts()
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT extract(epoch FROM max(completed_at) - min(attempted_at)) FROM oban_jobs").fetchone()
            assert row is not None
            out[mode].append(jobs / float(row[0]))
            out[mode + "_x"].append((x1 - x0) / jobs * 1000)
            if mode == "global":
                out["peak"].append(peak(url, "bench"))
    return {"plain": max(out["plain"]), "global": max(out["global"]), "half": max(out["half"]),
            "peak": max(out["peak"]), "plain_x": min(out["plain_x"]), "global_x": min(out["global_x"]),
            "half_x": min(out["half_x"])}


def bridge_idle(url: str, warmup: float, window: float) -> dict[str, float]:
    asyncio.run(reset(url))

    def xacts() -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                               "WHERE datname = current_database()").fetchone()
        assert row is not None
        return int(row[0])

    node = start_node(url, "a:100,b:10,c:10,d:50")
    try:
        time.sleep(warmup)
        x0, c0, t0 = xacts(), process_cpu(node.pid), time.monotonic()
        time.sleep(window)
        x1, c1, t1 = xacts(), process_cpu(node.pid), time.monotonic()
    finally:
        node.terminate()
        node.wait(60)
    return {"statements": (x1 - x0 - 1) / (t1 - t0), "cpu": (c1 - c0) / (t1 - t0)}


# the run -------------------------------------------------------------------------------------------

def params(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    return {
        "measures": args.only,
        "repeat": args.repeat,
        "insert_repeat": max(3, args.repeat),
        "insert_jobs": 20_000 if quick else 100_000,
        "jobs": 10_000 if quick else 50_000,
        "limits": [10, 100, 1000],
        "queue_limit": 25,
        "latency_samples": 100 if quick else 300,
        "rss_jobs": 200_000 if quick else 1_000_000,
        "rss_batch": 50_000,
        "cpu_jobs": 500 if quick else 2_000,
        "cpu_units": 50_000,
        "cpu_limit": 10,
        "start_jobs": 10_000 if quick else 20_000,
        "start_limit": 100,
        "start_repeat": 3 if quick else 5,
        "idle_warmup": 10.0,
        "idle_window": 10.0 if quick else 30.0,
    }


async def measure_bridge(url: str, p: dict[str, Any]) -> dict[str, Any]:
    r: dict[str, Any] = {}
    if "insert" in p["measures"]:
        runs = [await bridge_insert(url, p["insert_jobs"]) for _ in range(p["insert_repeat"])]
        r["insert"], r["insert_call"] = max(x[0] for x in runs), max(x[1] for x in runs)
    if "throughput" in p["measures"]:
        for limit in p["limits"]:
            runs = []
            for _ in range(p["repeat"]):
                runs.append(await bridge_drain(url, p["jobs"], {"bench": limit}))
                r[f"peak {limit}"] = max(r.get(f"peak {limit}", 0), peak(url, "bench"))
            r[f"throughput {limit}"] = max(runs)
            r[f"raw {limit}"] = await raw_ceiling(url, p["jobs"], {"bench": limit}, p["repeat"])
    if "queues" in p["measures"]:
        queues = {f"q{n}": p["queue_limit"] for n in range(4)}
        r["queues"] = max([await bridge_drain(url, p["jobs"], queues) for _ in range(p["repeat"])])
        r["peak queues"] = max(peak(url, q) for q in queues)
        r["raw queues"] = await raw_ceiling(url, p["jobs"], queues, p["repeat"])
    if "latency" in p["measures"]:
        r["latency"] = await bridge_latency(url, p["latency_samples"])
    return r


def table(p: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any] | None, header: str) -> str:
    theirs = theirs or {}
    lines = [header, f"{'measure':<50}{'oban_bridge':>12}{'raw PG':>10}{'of raw':>8}{'oban-py':>10}{'ratio':>8}"]

    def line(label: str, value: float | None, peer: float | None, raw: float | None = None,
             fmt: str = "{:,.0f}", lower_is_better: bool = False) -> None:
        if value is None:
            return
        ratio = (peer / value if lower_is_better else value / peer) if peer else None
        lines.append(f"{label:<50}{fmt.format(value):>12}"
                     f"{fmt.format(raw) if raw else '-':>10}{f'{value / raw:.0%}' if raw else '-':>8}"
                     f"{fmt.format(peer) if peer else '-':>10}{f'{ratio:.1f}x' if ratio else '-':>8}")

    line(f"insert_all {p['insert_jobs']:,} jobs (jobs/s)", ours.get("insert"), theirs.get("insert"))
    line("  the insert_all call alone (jobs/s)", ours.get("insert_call"), None)
    for limit in p["limits"]:
        line(f"{p['jobs']:,} no-op jobs, 1 queue, limit {limit} (jobs/s)", ours.get(f"throughput {limit}"),
             (theirs.get("throughput") or {}).get(str(limit)), ours.get(f"raw {limit}"))
    line(f"{p['jobs']:,} no-op jobs, 4 queues x limit {p['queue_limit']} (jobs/s)", ours.get("queues"),
         theirs.get("queues"), ours.get("raw queues"))
    if "latency" in ours:
        peer_latency = theirs.get("latency") or [None, None]
        line("insert-to-start latency, idle queue, p50 (ms)", ours["latency"][0], peer_latency[0],
             fmt="{:.2f}", lower_is_better=True)
        line("insert-to-start latency, idle queue, p99 (ms)", ours["latency"][1], peer_latency[1],
             fmt="{:.2f}", lower_is_better=True)
    if "rss" in ours:
        marks, peer_marks = ours["rss"], theirs.get("rss") or {}
        first, last = "100000", str(p["rss_jobs"])
        line("RSS after 100,000 processed jobs (MiB)", marks.get(first), peer_marks.get(first), fmt="{:.1f}",
             lower_is_better=True)
        line(f"RSS after {p['rss_jobs']:,} processed jobs (MiB)", marks.get(last), peer_marks.get(last),
             fmt="{:.1f}", lower_is_better=True)
        if first in marks and last in marks:
            growth = f"{(marks[last] - marks[first]) / marks[first]:+.1%}"
            peer_growth = (f"{(peer_marks[last] - peer_marks[first]) / peer_marks[first]:+.1%}"
                           if first in peer_marks and last in peer_marks else "-")
            lines.append(f"{'  RSS change 100k -> ' + f'{int(last):,}':<50}{growth:>12}{'':>18}{peer_growth:>10}")
    for limit in p["limits"]:
        if f"peak {limit}" in ours:
            lines.append(f"{'  peak jobs running at once (limit ' + str(limit) + ')':<50}{ours[f'peak {limit}']:>12}")
    if "peak queues" in ours:
        lines.append(f"{'  peak jobs running at once, per queue (limit ' + str(p['queue_limit']) + ')':<50}"
                     f"{ours['peak queues']:>12}")
    if "start" in ours:
        start = ours["start"]
        line(f"start: {p['start_jobs']:,} def no-ops, limit {p['start_limit']} (jobs/s)",
             start["median"], (theirs.get("throughput") or {}).get(str(p["start_limit"])), ours.get("raw 100"))
        lines.append(f"{'  range of ' + str(p['start_repeat']) + ' runs (jobs/s)':<50}"
                     f"{start['worst']:>7,.0f}-{start['best']:,.0f}")
        lines.append(f"{'  Python CPU per job, start-up included (us)':<50}{start['cpu_us']:>12.0f}")
        lines.append(f"{'  peak jobs running at once (limit ' + str(p['start_limit']) + ')':<50}{start['peak']:>12}")
    if "joblog" in ours:
        log = ours["joblog"]
        lines.append(f"{'start, no per-job lines (jobs/s, best of 2)':<50}{log['off']:>12,.0f}")
        for mode in ("text", "json"):
            label = f"  --log-jobs, {mode} ({log[mode + '_bytes']:.0f} bytes a job) to a file"
            lines.append(f"{label:<50}{log[mode]:>12,.0f}{log[mode] / log['off']:>17.0%}")
    if "limits" in ours:
        lim = ours["limits"]
        lines.append(f"{'2 nodes, one queue, bench:100 each (jobs/s)':<50}{lim['plain']:>12,.0f}")
        lines.append(f"{'  global_limit=100 over both (jobs/s)':<50}{lim['global']:>12,.0f}"
                     f"{lim['global'] / lim['plain']:>17.0%}")
        lines.append(f"{'  bench:50 each, the same 100 slots (jobs/s)':<50}{lim['half']:>12,.0f}"
                     f"{lim['global'] / lim['half']:>17.0%}")
        lines.append(f"{'  peak running at once with global_limit=100':<50}{lim['peak']:>12}")
        lines.append(f"{'  transactions per 1,000 jobs, 100 / global / 50':<50}"
                     f"{lim['plain_x']:>7.0f} / {lim['global_x']:.0f} / {lim['half_x']:.0f}")
    if "observe" in ours:
        obs = ours["observe"]
        lines.append(f"{'start, no tracing or metrics (jobs/s, best of 2)':<50}{obs['off']:>12,.0f}")
        for mode, label in (("metrics", "--metrics-port, scraped each second"),
                            ("api", "--otel, API only (no SDK: no-op spans)"),
                            ("sampled", "--otel, SDK sampling 10% of traces"),
                            ("otel", "--otel, SDK keeping every span (dropped)"),
                            ("both", "--otel (every span) and --metrics-port")):
            lines.append(f"{'  ' + label:<50}{obs[mode]:>12,.0f}{obs[mode] / obs['off']:>17.0%}")
    if "idle" in ours:
        lines.append(f"{'idle start, 4 queues, plugins: statements/s':<50}{ours['idle']['statements']:>12.1f}")
        lines.append(f"{'  CPU (% of one core)':<50}{100 * ours['idle']['cpu']:>11.1f}%")
    if "cpu 1" in ours:
        label = f"CPU-bound jobs (~4 ms each), limit {p['cpu_limit']} (jobs/s)"
        line(label + ", 1 process", ours["cpu 1"], theirs.get("cpu"))
        line(f"  --processes {os.cpu_count()} (one node per core)", ours["cpu auto"], theirs.get("cpu"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts (a few minutes)")
    parser.add_argument("--only", type=lambda s: [m.strip() for m in s.split(",")], default=MEASURES,
                        help=f"comma-separated subset of {','.join(MEASURES)}")
    parser.add_argument("--repeat", type=int, default=2, help="runs per line (insert: at least 3); the best is kept")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--peer-python", default=None, help="a Python >= 3.12 for oban-py")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rss-child", nargs=3, metavar=("URL", "JOBS", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        url, jobs, batch = args.rss_child
        print(json.dumps(event_loop.run(rss_child(url, int(jobs), int(batch)))))
        return
    unknown = set(args.only) - set(MEASURES)
    if unknown:
        parser.error(f"unknown measure(s) {', '.join(sorted(unknown))}; choose from {', '.join(MEASURES)}")

    p = params(args)
    server = server_url(args.database_url)
    url = database(server, "bench_bridge")

    async def prepare() -> str:
        async with AsyncObanBridge(url) as client:
            await client.migrate()
        async with await psycopg.AsyncConnection.connect(url) as conn:
            row = await (await conn.execute("SHOW server_version")).fetchone()
            return str(row[0]) if row else "?"

    pg_version = event_loop.run(prepare())
    ours = event_loop.run(measure_bridge(url, p))
    if "rss" in p["measures"]:
        ours["rss"] = bridge_rss(url, p["rss_jobs"], p["rss_batch"])
    if "cpu" in p["measures"]:
        ours["cpu 1"] = bridge_cpu(url, p["cpu_jobs"], p["cpu_units"], p["cpu_limit"], "1")
        ours["cpu auto"] = bridge_cpu(url, p["cpu_jobs"], p["cpu_units"], p["cpu_limit"], "auto")
    if "start" in p["measures"]:
        runs = [bridge_start(url, p["start_jobs"], p["start_limit"]) for _ in range(p["start_repeat"])]
        rates = sorted(r["rate"] for r in runs)
        ours["start"] = {"median": statistics.median(rates), "best": rates[-1], "worst": rates[0],
                         "cpu_us": statistics.median(r["cpu_us"] for r in runs), "peak": max(r["peak"] for r in runs)}
        if "raw 100" not in ours:
            ours["raw 100"] = event_loop.run(raw_ceiling(url, p["start_jobs"], {"bench": 100}, 1))
    if "joblog" in p["measures"]:
        ours["joblog"] = bridge_joblog(url, p["start_jobs"], p["start_limit"])
    if "limits" in p["measures"]:
        ours["limits"] = bridge_limits(url, p["start_jobs"])
    if "observe" in p["measures"]:
        ours["observe"] = bridge_observe(url, p["start_jobs"], p["start_limit"])
    if "idle" in p["measures"]:
        ours["idle"] = bridge_idle(url, p["idle_warmup"], p["idle_window"])
    theirs = None if args.no_peer else run_peer(server, p, args.peer_python)

    from importlib.metadata import version

    header = (f"oban_bridge {version('oban_bridge')} on {event_loop.name()}, Python {platform.python_version()} | "
              f"oban-py {(theirs or {}).get('oban_version', '-')} | PostgreSQL {pg_version} | {os.cpu_count()} cores")
    if args.json:
        print(json.dumps({"params": p, "oban_bridge": ours, "oban_py": theirs, "header": header}))
        return
    print(table(p, ours, theirs, header))
    if theirs is None and not args.no_peer:
        print("oban-py: skipped (no Python >= 3.12 with oban-py; see bench/peer.py)")


if __name__ == "__main__":
    main()
