"""Long reliability runs (not CI): many processes on one queue, and a memory soak.

    python bench/reliability.py exactly-once [--jobs 100000] [--processes 4] [--limit 20]
    python bench/reliability.py soak [--minutes 10] [--rate 500]

exactly-once: N jobs, P `oban-bridge start` processes on one queue; each job writes one row to a
side table in its own transaction. Prints processed, lost (jobs never completed) and duplicated
(jobs with more than one row) — both must be 0.

soak: one node processes a steady stream of jobs; prints its RSS at start, every minute, and at the
end (flat is the goal).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from oban_bridge import Job, ObanBridge  # noqa: E402
from common import rss_mib  # noqa: E402
from peer import database, server_url  # noqa: E402


def node(url: str, queues: str, name: str, module: str = "tests.workers") -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}"}
    return subprocess.Popen([sys.executable, "-m", "oban_bridge", "start", "-m", module, "-q", queues,
                             "--node", name], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def scalar(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row and row[0] is not None else 0


# Jobs not yet finished; completed rows cannot be counted directly, the Pruner deletes them.
BACKLOG = "SELECT count(*) FROM oban_jobs WHERE state NOT IN ('completed', 'discarded', 'cancelled')"


def exactly_once(url: str, jobs: int, processes: int, limit: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (job_id bigint NOT NULL, node text)")
    with ObanBridge(url) as client:
        for start in range(0, jobs, 20_000):
            client.insert_all([Job.new("py.Ledger", {}, queue="ledger") for _ in range(min(20_000, jobs - start))])
    t0 = time.perf_counter()
    procs = [node(url, f"ledger:{limit}", f"bench-{i}") for i in range(processes)]
    try:
        # Count the ledger, not completed rows: the nodes' Pruner deletes completed jobs after 60 s.
        while scalar(url, "SELECT count(DISTINCT job_id) FROM ledger") < jobs:
            time.sleep(0.5)
            if time.perf_counter() - t0 > 3600:
                break
        elapsed = time.perf_counter() - t0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
    lost = jobs - scalar(url, "SELECT count(DISTINCT job_id) FROM ledger")
    duplicated = scalar(url, "SELECT count(*) FROM (SELECT job_id FROM ledger GROUP BY job_id HAVING count(*) > 1) d")
    not_completed = scalar(url, "SELECT count(*) FROM oban_jobs WHERE state <> 'completed'")  # pruned rows are gone
    print(f"exactly-once: {jobs:,} jobs, {processes} processes x limit {limit}: {elapsed:.1f}s ({jobs / elapsed:,.0f} jobs/s)")
    print(f"  processed {jobs - lost:,}; lost {lost}; duplicated {duplicated}; rows not completed {not_completed}")


def soak(url: str, minutes: float, rate: int) -> None:
    # bench_workers keep no state per job (tests.workers do, for their assertions).
    proc = node(url, "steady:20", "soak", module="bench_workers")
    with psycopg.connect(url, autocommit=True) as conn:
        time.sleep(2)
    start_rss = rss_mib(proc.pid)
    print(f"soak: {minutes} min at ~{rate} jobs/s; RSS at start {start_rss:.1f} MiB")
    t0 = time.monotonic()
    sent = 0
    next_report = 60.0
    try:
        with ObanBridge(url) as client:
            while time.monotonic() - t0 < minutes * 60:
                client.insert_all([Job.new("bench.Steady", {"i": sent + i}, queue="steady")
                                   for i in range(rate)])
                sent += rate
                time.sleep(max(0.0, 1.0 - (time.monotonic() - t0) % 1.0))
                if time.monotonic() - t0 >= next_report:
                    print(f"  {next_report / 60:.0f} min: RSS {rss_mib(proc.pid):.1f} MiB, "
                          f"{sent - scalar(url, BACKLOG):,} of {sent:,} processed")
                    next_report += 60
        time.sleep(3)
        end_rss = rss_mib(proc.pid)
        done = sent - scalar(url, BACKLOG)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    print(f"  sent {sent:,}, completed {done:,}; RSS end {end_rss:.1f} MiB "
          f"({(end_rss - start_rss) / max(start_rss, 1e-9):+.1%} from start)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["exactly-once", "soak"])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    url = database(server_url(args.database_url), "bench_reliability")
    with ObanBridge(url) as client:
        client.migrate()
    if args.mode == "exactly-once":
        exactly_once(url, args.jobs, args.processes, args.limit)
    else:
        soak(url, args.minutes, args.rate)


if __name__ == "__main__":
    main()
