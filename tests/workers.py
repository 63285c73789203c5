"""Workers used by the runtime tests (a module, so `oban-bridge start --module` can load it)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

from oban_bridge import Cancel, Discard, Error, Job, Snooze, worker

runs: Counter[int] = Counter()
runs_lock = threading.Lock()
started = threading.Event()


@worker("Harness.Echo", queue="elixir")
class Echo:
    """Python twin of the Elixir harness that produced jobs_after_execution.json."""

    def process(self, job: Job) -> Any:
        outcome = job.args.get("outcome", "ok")
        if outcome == "error":
            return Error("harness asked for an error")
        if outcome == "raise":
            raise ValueError("harness asked for a raise")
        if outcome == "snooze":
            return Snooze(30)
        if outcome == "cancel":
            return Cancel("harness asked to cancel")
        if outcome == "discard":
            return Discard("harness asked to discard")
        return None


@worker("badge_forge.generator.GenerateBadge", queue="badges", aliases=["badge_forge.OldGenerate"])
def generate_badge(job: Job) -> None:
    with runs_lock:
        assert job.id is not None
        runs[job.id] += 1


@worker("py.AsyncCount", queue="badges")
async def async_count(job: Job) -> None:
    await asyncio.sleep(0)
    with runs_lock:
        assert job.id is not None
        runs[job.id] += 1


@worker("py.Sleep", queue="slow", timeout=0.2)
async def sleeper(job: Job) -> None:
    started.set()
    await asyncio.sleep(float(job.args.get("seconds", 5)))


@worker("py.BlockingSleep", queue="slow")
def blocking_sleeper(job: Job) -> None:
    started.set()
    time.sleep(float(job.args.get("seconds", 5)))


@worker("py.CustomBackoff", queue="elixir", max_attempts=3)
class CustomBackoff:
    def process(self, job: Job) -> Any:
        raise RuntimeError("always")

    def backoff(self, job: Job) -> int:
        return 1000 * job.attempt


@worker("py.LongSleep", queue="slow")
async def long_sleeper(job: Job) -> None:
    started.set()
    await asyncio.sleep(float(job.args.get("seconds", 30)))


_ledger_local = threading.local()


@worker("py.Ledger", queue="ledger", max_attempts=5)
def ledger(job: Job) -> None:
    """Writes one row per execution, in its own transaction: the exactly-once witness."""
    import psycopg

    from oban_bridge.runtime import current

    time.sleep(float(job.args.get("sleep", 0)))
    for attempt in range(2):  # a connection the server dropped is replaced once
        conn = getattr(_ledger_local, "conn", None)
        if conn is None or conn.closed:
            conn = _ledger_local.conn = psycopg.connect(current().url, autocommit=True)
        try:
            conn.execute("INSERT INTO ledger (job_id, node) VALUES (%s, %s)", [job.id, (job.attempted_by or ["?"])[0]])
            return
        except psycopg.OperationalError:
            conn.close()
            if attempt:
                raise


@worker("py.Stubborn", queue="slow")
def stubborn(job: Job) -> None:
    time.sleep(float(job.args.get("seconds", 60)))  # ignores every request to stop


# --- promise tests (test_producer.py): each run records when it really started and ended ---------

spans: list[tuple[str, int, int, float, float]] = []  # (worker, job id, attempt, start, end)
spans_lock = threading.Lock()
polite_started = threading.Event()
polite_stopped = threading.Event()


def _record(job: Job, start: float) -> None:
    assert job.id is not None
    with spans_lock:
        spans.append((job.worker, job.id, job.attempt, start, time.perf_counter()))


@worker("py.Span", queue="span")
def span(job: Job) -> None:
    start = time.perf_counter()
    time.sleep(float(job.args.get("ms", 2)) / 1000)
    _record(job, start)


@worker("py.SpanAsync", queue="span")
async def span_async(job: Job) -> None:
    start = time.perf_counter()
    await asyncio.sleep(float(job.args.get("ms", 2)) / 1000)
    _record(job, start)


@worker("py.Overrun", queue="overrun", timeout=0.3, max_attempts=3, backoff=lambda job: 0)
def overrun(job: Job) -> None:
    """Ignores its timeout: Python cannot stop it, so its retry must wait for it."""
    start = time.perf_counter()
    time.sleep(float(job.args.get("seconds", 1.0)))
    _record(job, start)


@worker("py.ProOverrun", queue="overrun", timeout=0.3, max_attempts=3, backoff=lambda job: 0)
class ProOverrun:
    """py.Overrun with a Pro hook, so it runs through the coroutine path (gate, then a thread)."""

    def process(self, job: Job) -> None:
        overrun(job)

    def after_process(self, state: str, job: Job, result: Any) -> None:
        pass


@worker("py.Hard", queue="hard", timeout=0.5, max_attempts=1, isolation="process")
def hard(job: Job) -> None:
    time.sleep(float(job.args.get("seconds", 60)))


@worker("py.Polite", queue="polite")
def polite(job: Job) -> None:
    """Checks `job.cancelled`, as a long def job should."""
    start = time.perf_counter()
    polite_started.set()
    while not job.cancelled:
        time.sleep(0.02)
    polite_stopped.set()
    _record(job, start)
    job.check_cancelled()
