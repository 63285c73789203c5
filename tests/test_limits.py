"""Global limits, rate limits and partitions (limits.py), measured from outside: 4 `oban-bridge
start` processes on one database, each job recording its start and end in a side table with the
database's clock (tests/limit_workers.py). Overlap and windows are computed from those records and
from the rows' `attempted_at`, never from what the producer believes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from oban_bridge import AsyncObanBridge, Job, ObanBridge, SchemaError
from oban_bridge.cli import main
from oban_bridge.notifier import channel, encode
from oban_bridge.limits import Partition, QueueOptions, RateLimit, queue_options
from oban_bridge.runtime import parse_queues

from . import limit_workers
from .test_runtime import count, wait_for

ROOT = Path(__file__).resolve().parent.parent


def prepare(url: str) -> None:
    with ObanBridge(url) as client:
        client.migrate(limits=True)
    limit_workers.setup(url)


@contextlib.contextmanager
def nodes(url: str, queues: str, n: int = 4, *extra: str) -> Iterator[list[subprocess.Popen[str]]]:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "oban_bridge", "start", "-m", "tests.limit_workers", "-q", queues,
         "--node", f"node{i}", "--grace", "0", *extra],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True) for i in range(n)]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def insert(url: str, jobs: list[Job]) -> None:
    with ObanBridge(url) as client:
        client.insert_all(jobs)


def peak(url: str, where: str = "TRUE") -> int:
    """The most jobs started and not yet ended at one instant, on the database's clock."""
    with psycopg.connect(url) as conn:
        row = conn.execute(f"""
            WITH s AS (SELECT * FROM limit_spans WHERE {where}),
            ev AS (SELECT started_at AS t, 1 AS d FROM s
                   UNION ALL SELECT coalesce(ended_at, 'infinity'), -1 FROM s)
            SELECT coalesce(max(level), 0) FROM (SELECT sum(d) OVER (ORDER BY t, d) AS level FROM ev) x
        """).fetchone()  # noqa: S608 - test-owned text
        assert row is not None
        return int(row[0])


def spans(url: str, sql: str) -> Any:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


# --- the promises, across processes ----------------------------------------------------------------

async def test_a_global_limit_is_never_exceeded_across_four_nodes(db_url: str) -> None:
    prepare(db_url)
    insert(db_url, [Job.new("py.LimitSpan", {"ms": 15}, queue="lim") for _ in range(300)])
    with nodes(db_url, "lim:local=10,global=5"):
        await wait_for(lambda: count(db_url, "state = 'completed'") == 300, timeout=120)
        # A second wave once every node is surely up and polling.
        insert(db_url, [Job.new("py.LimitSpan", {"ms": 15, "account": "late"}, queue="lim") for _ in range(300)])
        await wait_for(lambda: count(db_url, "state = 'completed'") == 600, timeout=120)
    assert peak(db_url) <= 5
    assert peak(db_url) >= 3  # the limit was a ceiling, not a crawl


async def test_a_global_limit_is_shared_fairly_between_busy_nodes(db_url: str) -> None:
    """Two nodes, each able to run all 10 slots alone: while both have work, each gets about half.
    Without fair shares a node that refetches as its own jobs finish keeps every slot and the other
    finds the limit full at each poll."""
    prepare(db_url)
    insert(db_url, [Job.new("py.LimitSpan", {"ms": 40}, queue="lim") for _ in range(600)])
    with nodes(db_url, "lim:local=10,global=10", 2):
        await wait_for(lambda: count(db_url, "state = 'completed'") == 600, timeout=120)
    assert peak(db_url) <= 10
    both = spans(db_url, """
        WITH w AS (SELECT max(first) AS t0, min(last) AS t1 FROM (
                     SELECT node, min(started_at) AS first, max(started_at) AS last FROM limit_spans GROUP BY node) n)
        SELECT node, count(*) FROM limit_spans, w WHERE started_at BETWEEN w.t0 AND w.t1 GROUP BY node""")
    counts = dict(both)
    assert len(counts) == 2, counts
    assert min(counts.values()) >= 0.35 * sum(counts.values()), counts  # half each, give or take


async def test_an_idle_node_with_a_global_limit_holds_no_claim_and_stays_quiet(db_url: str) -> None:
    """Claims are held only while a node runs jobs: idle, its polls leave no row behind and cost a
    few statements a second, not a fetch per finished job or a lock per cycle."""
    import asyncio

    prepare(db_url)
    insert(db_url, [Job.new("py.LimitSpan", {"ms": 5}, queue="lim") for _ in range(50)])
    with nodes(db_url, "lim:local=10,global=10", 1):
        await wait_for(lambda: count(db_url, "state = 'completed'") == 50, timeout=60)
        await asyncio.sleep(1.5)
        assert spans(db_url, "SELECT count(*) FROM oban_bridge_limit_claims")[0][0] == 0
        await asyncio.sleep(11)  # PostgreSQL flushes a backend's statistics at most every 10 s idle
        before = spans(db_url, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")[0][0]
        await asyncio.sleep(12)
        after = spans(db_url, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")[0][0]
    assert (after - before) / 12 < 15, after - before


async def test_a_rate_limit_never_lets_a_window_of_its_period_hold_more_starts(db_url: str) -> None:
    prepare(db_url)
    insert(db_url, [Job.new("py.LimitSpan", {}, queue="lim") for _ in range(160)])
    with nodes(db_url, "lim:local=20,rate=50/1s"):
        await wait_for(lambda: count(db_url, "state = 'completed'") == 160, timeout=60)
    # attempted_at is stamped by the database's clock at the fetch (the start Oban Web shows).
    starts = [r[0] for r in spans(db_url, "SELECT attempted_at FROM oban_jobs ORDER BY attempted_at")]
    most = max(sum(1 for t in starts[i:] if t - s < timedelta(seconds=1)) for i, s in enumerate(starts))
    assert most <= 50
    assert most >= 40  # the rate was used, not starved
    assert starts[-1] - starts[0] >= timedelta(seconds=2)  # 160 starts at 50/s take over 2 s


async def test_a_flooded_partition_never_delays_the_others(db_url: str) -> None:
    """One account floods 5,000 jobs ahead of 20 accounts with 10 each; at most 2 of any account
    run at once. The 200 others all finish within a bound far below the flood's own run time
    (5,000 × 40 ms / 2 = 100 s), and while the flood has barely started: waiting behind it
    (head-of-line blocking) would fail both."""
    prepare(db_url)
    insert(db_url, [Job.new("py.LimitSpan", {"account": "flood", "ms": 40}, queue="lim") for _ in range(5000)])
    insert(db_url, [Job.new("py.LimitSpan", {"account": f"a{a}", "ms": 30}, queue="lim")
                    for _ in range(10) for a in range(20)])
    with nodes(db_url, "lim:local=10,global=2,partition=args.account"):
        await wait_for(lambda: count(db_url, "state = 'completed' AND args->>'account' <> 'flood'") == 200,
                       timeout=30)
        flood_done = count(db_url, "state = 'completed' AND args->>'account' = 'flood'")
    assert flood_done < 1000, f"{flood_done} flood jobs ran before the others finished"
    for (account,) in spans(db_url, "SELECT DISTINCT account FROM limit_spans"):
        assert peak(db_url, f"account = '{account}'") <= 2, account
    assert peak(db_url, "account <> 'flood'") > 2  # accounts ran side by side


async def test_a_sigkilled_node_returns_its_share_within_the_orphan_grace(db_url: str) -> None:
    prepare(db_url)
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    # Priority 9: once rescued they queue behind the short jobs rather than take the slots again.
    insert(db_url, [Job.new("py.LimitSpan", {"ms": 60_000}, queue="lim", priority=9) for _ in range(3)])
    victim = subprocess.Popen([sys.executable, "-m", "oban_bridge", "start", "-m", "tests.limit_workers",
                               "-q", "lim:local=3,global=3", "--node", "victim"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(lambda: count(db_url, "state = 'executing'") == 3, timeout=30)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    short = [Job.new("py.LimitSpan", {"ms": 10}, queue="lim") for _ in range(5)]
    insert(db_url, short)
    with nodes(db_url, "lim:local=3,global=3", 1, "--orphan-grace", "1s"):
        # The victim's 3 executing rows hold the whole global limit until the lifeline returns them.
        await wait_for(lambda: count(db_url, "state = 'completed' AND (args->>'ms')::int = 10") == 5, timeout=30)
    assert peak(db_url, "node <> 'victim'") <= 3


# --- options: parsing, errors, visibility ----------------------------------------------------------

def test_queue_text_takes_pros_options() -> None:
    parsed = parse_queues("badges:10,api:local=10,global=20,rate=90/10s,partition=args.profile,printing:2")
    assert parsed["badges"] == QueueOptions(10)
    assert parsed["printing"] == QueueOptions(2)
    assert parsed["api"] == QueueOptions(10, 20, RateLimit(90, 10.0), Partition(args=True, keys=("profile",)))
    assert parse_queues({"api": {"local_limit": 5, "rate_limit": {"allowed": 30, "period": [1, "minute"]}}})[
        "api"].rate_limit == RateLimit(30, 60.0)
    pro = queue_options("q", {"local_limit": 10, "global_limit": {"allowed": 1, "partition": ["worker", {"args": "id"}]}})
    assert pro.partition == Partition(worker=True, args=True, keys=("id",))
    assert queue_options("q", {"global_limit": 4}).local_limit == 4


@pytest.mark.parametrize(("text", "message"), [
    ("api:local=10,global=0", "global_limit must be a positive integer"),
    ("api:local=10,rate=90", "expected N/PERIOD"),
    ("api:local=10,rate=90/fortnight", "rate period"),
    ("api:local=10,partition=args.x", "partition applies to global_limit or rate_limit"),
    ("api:local=10,global=2,partition=user", "expected worker, args or args.KEY"),
    ("api:local=10,speed=3", "expected local=N"),
    ("api:local=10,local=3", "given twice"),
    ("badges:10,global=3", "expected NAME:LIMIT"),
])
def test_bad_queue_options_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_queues(text)
    result = CliRunner().invoke(main, ["start", "-m", "tests.limit_workers", "-q", text])
    assert result.exit_code == 2
    assert message.split(" ")[0] in result.output
    assert "Traceback" not in result.output


def test_global_and_rate_partitions_must_agree() -> None:
    with pytest.raises(ValueError, match="one partition per queue"):
        queue_options("q", {"global_limit": {"allowed": 1, "partition": "worker"},
                            "rate_limit": {"allowed": 5, "period": 1, "partition": "args"}})


_options = st.builds(
    QueueOptions,
    local_limit=st.integers(1, 1000),
    global_limit=st.integers(1, 1000),
    rate_limit=st.none() | st.builds(RateLimit, allowed=st.integers(1, 10_000),
                                     period=st.integers(1, 86400).map(float)),
    partition=st.none() | st.builds(Partition, worker=st.booleans(), args=st.just(True),
                                    keys=st.lists(st.text(st.characters(blacklist_characters=",+=:\x00",
                                                                        blacklist_categories=("Cs", "Zs", "Cc")),
                                                          min_size=1, max_size=8),
                                                  max_size=3, unique=True).map(tuple)),
)


@given(_options)
@settings(max_examples=200, deadline=None)
def test_the_cli_syntax_reads_back_what_describe_writes(options: QueueOptions) -> None:
    assert parse_queues(f"q:{options.describe()}")["q"] == options


async def test_a_limited_queue_without_the_table_says_how_to_create_it(db_url: str) -> None:
    with pytest.raises(SchemaError, match="oban-bridge migrate --limits"):
        async with AsyncObanBridge(db_url, queues={"lim": {"global_limit": 3}}, plugins=[]):
            pass


async def test_check_ins_carry_pros_limit_keys(db_url: str) -> None:
    prepare(db_url)
    queues = {"lim": {"local_limit": 4, "global_limit": {"allowed": 2, "partition": {"fields": ["args"], "keys": ["a"]}},
                      "rate_limit": {"allowed": 9, "period": 60, "partition": {"fields": ["args"], "keys": ["a"]}}}}
    async with AsyncObanBridge(db_url, queues=queues, plugins=[]) as oban:
        runtime = oban.runtime
        assert runtime is not None
        check = runtime.producers["lim"].check("ObanBridge")
    assert check["limit"] == 4 and check["local_limit"] == 4
    assert check["global_limit"]["allowed"] == 2
    assert check["global_limit"]["partition"] == {"fields": ["args"], "keys": ["a"]}
    assert check["rate_limit"]["allowed"] == 9 and check["rate_limit"]["period"] == 60


async def test_a_scale_signal_sets_pros_limits_as_oban_web_sends_them(db_url: str) -> None:
    prepare(db_url)
    async with AsyncObanBridge(db_url, queues={"lim": 6}, plugins=[], poll_interval=0.05) as oban:
        runtime = oban.runtime
        assert runtime is not None
        producer = runtime.producers["lim"]
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", [channel("public", "signal"), encode(
                {"action": "scale", "queue": "lim", "ident": "any", "global_limit": 2, "local_limit": 6})])
        await wait_for(lambda: producer.limiter is not None, timeout=10)
        assert producer.check("ObanBridge")["global_limit"]["allowed"] == 2
        await oban.insert_all([Job.new("py.LimitSpan", {"ms": 20}, queue="lim") for _ in range(40)])
        await wait_for(lambda: count(db_url, "state = 'completed'") == 40, timeout=30)
        assert peak(db_url) <= 2
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", [channel("public", "signal"), encode(
                {"action": "scale", "queue": "lim", "ident": "any", "global_limit": None})])
        await wait_for(lambda: producer.limiter is None, timeout=10)
        assert producer.limit == 6
