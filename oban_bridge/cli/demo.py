"""`demo`: the README's first command — schema, a batch enqueued as an Elixir app would, Python
workers running it with live progress, and a summary."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import click

from ..config import mask_password
from . import Context, main
from .output import emit_json

WORKER = "badge_forge.generator.GenerateBadge"


@main.command()
@click.option("--jobs", "count", type=click.IntRange(1, 1_000_000), default=2_000, show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True,
              help="Concurrency of the badges queue.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before writing to a configured database.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_obj
def demo(obj: Context, count: int, limit: int, yes: bool, as_json: bool) -> None:
    """Enqueue COUNT badge renders by string worker name and run them with Python workers.

    Meant for the embedded PostgreSQL: with a database configured (DATABASE_URL, --database-url,
    pyproject.toml) it asks first, since it installs Oban's schema there and leaves its jobs behind.

    \b
    Examples:
      oban-bridge demo
      oban-bridge demo --jobs 20000 --limit 100
      oban-bridge --database-url postgresql://localhost/scratch demo --yes --json
    """
    from .. import demo as demo_workers
    from ..client import ObanBridge

    if obj.database_url is not None and not yes:
        click.confirm(f"demo installs Oban's schema in {obj.prefix!r} and runs {count:,} jobs of {WORKER} in "
                      f"{mask_password(obj.database_url)}, not the embedded PostgreSQL. Go on?",
                      abort=True, err=True)

    def say(text: str) -> None:
        if not as_json:  # JSON mode prints the summary only
            click.echo(text)

    # The demo's flaky jobs fail on purpose; the progress bar tells the story instead.
    logging.getLogger("oban_bridge.job").setLevel(logging.ERROR)

    with ObanBridge(obj.database_url, prefix=obj.prefix) as admin:
        result = admin.migrate()
        if result.changed:
            say(f"installed Oban's schema (version {result.to_version}) in {obj.prefix!r}")
        with admin.connection() as conn:
            row = conn.execute("SELECT coalesce(max(id), 0) FROM oban_jobs WHERE worker = %s", [WORKER]).fetchone()
        floor = int(row[0]) if row else 0
        t0 = time.perf_counter()
        jobs = admin.insert_all(demo_workers.demo_jobs(count))
        inserted = time.perf_counter() - t0
        say(f"enqueued {len(jobs):,} jobs for {WORKER} in {inserted:.2f}s")

    def tally(bridge: ObanBridge) -> dict[str, int]:
        with bridge.connection() as conn:
            return dict(conn.execute(
                "SELECT state::text, count(*) FROM oban_jobs WHERE worker = %s AND id > %s GROUP BY state",
                [WORKER, floor]).fetchall())

    t0 = time.perf_counter()
    with ObanBridge(obj.database_url, prefix=obj.prefix, queues={"badges": limit}, poll_interval=0.2) as bridge:
        stderr: Any = sys.stderr
        with click.progressbar(length=count, label="rendering badges", show_pos=True, file=stderr) as bar:
            done = 0
            while done < count:
                time.sleep(0.1)
                counts = tally(bridge)
                now = counts.get("completed", 0) + counts.get("discarded", 0)
                bar.update(now - done)
                done = now
                if time.perf_counter() - t0 > 300:
                    break
        elapsed = time.perf_counter() - t0
        counts = tally(bridge)
    summary = _summary(obj, floor, count, counts, elapsed, inserted)
    if as_json:
        emit_json(summary)
        return
    first = summary["first_attempts"]
    click.echo(f"completed {summary['completed']:,} of {count:,} jobs in {elapsed:.2f}s: "
               f"first attempts ran at {first['jobs_per_s']:,.0f} jobs/s ({first['jobs']:,} in {first['seconds']:.2f}s "
               f"at limit {limit}); {summary['retried']:,} failed once and completed on retry after their 1 s backoff, "
               "as Oban retries them")


def _summary(obj: Context, floor: int, count: int, counts: dict[str, int], elapsed: float,
             inserted: float) -> dict[str, Any]:
    """Jobs per second over the jobs' own first attempts (from the first start to the last
    completion among jobs that succeeded first time): a run's wall time is mostly the 1 s backoff
    of its few flaky jobs, which says nothing about how fast Python worked."""
    from ..client import ObanBridge

    with ObanBridge(obj.database_url, prefix=obj.prefix) as admin, admin.connection() as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE attempt = 1 AND state = 'completed'),"
            " extract(epoch FROM max(completed_at) FILTER (WHERE attempt = 1 AND state = 'completed')"
            "                  - min(attempted_at) FILTER (WHERE attempt = 1 AND state = 'completed')),"
            " count(*) FILTER (WHERE cardinality(errors) > 0)"
            " FROM oban_jobs WHERE worker = %s AND id > %s", [WORKER, floor]).fetchone()
    first_jobs, span, retried = (int(row[0]), float(row[1] or 0.0), int(row[2])) if row else (0, 0.0, 0)
    return {
        "database": "embedded" if obj.database_url is None else mask_password(obj.database_url),
        "enqueued": count, "insert_all_seconds": round(inserted, 4),
        "completed": counts.get("completed", 0), "discarded": counts.get("discarded", 0),
        "retried": retried, "seconds": round(elapsed, 3),
        "first_attempts": {"jobs": first_jobs, "seconds": round(span, 4),
                           "jobs_per_s": round(first_jobs / span, 1) if span > 0 else 0.0},
    }
