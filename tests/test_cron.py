"""Cron: Oban's expression semantics and the job meta its Cron plugin writes."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oban_bridge import AsyncObanBridge
from oban_bridge.cron import CronError, parse
from oban_bridge.plugins.cron import Cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("expr", "time", "expected"),
    [
        ("* * * * *", "2025-01-01T01:00", True),
        ("0 1 * * *", "2025-01-01T01:00", True),
        ("0 1 * * *", "2025-01-01T02:00", False),
        ("*/15 * * * *", "2025-01-01T01:45", True),
        ("*/15 * * * *", "2025-01-01T01:46", False),
        ("5/20 * * * *", "2025-01-01T01:45", True),  # 5, 25, 45
        ("10-20/5 * * * *", "2025-01-01T01:15", True),
        ("10-20/5 * * * *", "2025-01-01T01:25", False),
        ("0 9 * * MON-FRI", "2025-01-06T09:00", True),  # a Monday
        ("0 9 * * MON-FRI", "2025-01-05T09:00", False),  # a Sunday
        ("0 0 * JAN,JUL *", "2025-07-01T00:00", True),
        ("0 0 1 * 1", "2025-09-01T00:00", True),  # the 1st AND a Monday
        ("0 0 1 * 1", "2025-10-01T00:00", False),  # the 1st but a Wednesday: Oban ANDs the fields
        ("@hourly", "2025-03-03T07:00", True),
        ("@daily", "2025-03-03T00:00", True),
        ("@weekly", "2025-03-02T00:00", True),  # Sunday
        ("@monthly", "2025-03-01T00:00", True),
        ("@yearly", "2025-01-01T00:00", True),
        ("@reboot", "2025-01-01T13:37", True),
    ],
)
def test_expressions_match_like_oban(expr: str, time: str, expected: bool) -> None:
    assert parse(expr).now(at(time)) is expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "incorrect number of fields"),
        ("60 * * * *", "out of range"),
        ("* 24 * * *", "out of range"),
        ("* * 0 * *", "out of range"),
        ("* * * 13 *", "out of range"),
        ("* * * * 7", "out of range"),
        ("5-1 * * * *", r"min \(5\) of range"),
        ("*/0 * * * *", "unrecognized"),
        ("L * * * *", "unrecognized"),
        ("0 0 30 FEB *", "no day in"),
        ("@sometimes", "incorrect number of fields"),
    ],
)
def test_bad_expressions_are_rejected(expr: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse(expr)


@given(st.integers(0, 59), st.integers(0, 23))
def test_literal_minute_hour(minute: int, hour: int) -> None:
    expr = parse(f"{minute} {hour} * * *")
    assert expr.now(datetime(2025, 5, 5, hour, minute))
    assert not expr.now(datetime(2025, 5, 5, hour, (minute + 1) % 60))


def test_time_zones_are_honoured() -> None:
    plugin = Cron([("0 9 * * *", "W")], timezone="America/Chicago")
    assert plugin.due(datetime(2025, 1, 6, 15, 0, tzinfo=timezone.utc))  # 09:00 CST
    assert not plugin.due(datetime(2025, 1, 6, 9, 0, tzinfo=timezone.utc))
    with pytest.raises(ValueError, match="unknown time zone"):
        Cron([], timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="expected"):
        Cron(["* * * * *"])  # type: ignore[list-item]


async def test_tick_inserts_jobs_with_elixirs_cron_meta(db_url: str) -> None:
    plugin = Cron(
        [("* * * * *", "MyApp.Reports", {"args": {"kind": "daily"}, "queue": "reports", "meta": {"team": "x"}}),
         ("@reboot", "MyApp.Warmup"),
         ("0 0 1 1 *", "MyApp.NewYear")],
    )
    async with AsyncObanBridge(db_url) as client:

        class Ctx:
            url = db_url
            prefix = "public"

            def is_leader(self) -> bool:
                return True

            async def connection(self) -> Any:
                return await psycopg.AsyncConnection.connect(db_url, autocommit=True)

        conn = await Ctx().connection()
        await plugin.tick(Ctx(), conn)
        await plugin.tick(Ctx(), conn)  # @reboot does not come back
        await conn.close()
        async with client.connection() as c:
            rows = await (await c.execute("SELECT worker, queue, args, meta FROM oban_jobs ORDER BY id")).fetchall()
    workers = [r[0] for r in rows]
    assert workers.count("MyApp.Reports") == 2 and workers.count("MyApp.Warmup") == 1
    assert "MyApp.NewYear" not in workers or datetime.now(timezone.utc).strftime("%m%d%H%M") == "01010000"
    report = next(r for r in rows if r[0] == "MyApp.Reports")
    assert report[1] == "reports" and report[2] == {"kind": "daily"}
    assert set(report[3]) == {"team", "cron", "cron_expr", "cron_name", "cron_tz"}
    assert (report[3]["cron"], report[3]["cron_expr"], report[3]["cron_tz"]) == (True, "* * * * *", "Etc/UTC")
    assert report[3]["cron_name"].isdigit()
