"""`demo`: the README's first command — schema, a batch enqueued as an Elixir app would, Python
workers running it with live progress, and a summary."""

from __future__ import annotations

import logging
import time

import click

from . import Context, main


@main.command()
@click.option("--jobs", "count", type=click.IntRange(1, 1_000_000), default=2_000, show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True,
              help="Concurrency of the badges queue.")
@click.pass_obj
def demo(obj: Context, count: int, limit: int) -> None:
    """Enqueue COUNT badge renders by string worker name and run them with Python workers.

    \b
    Examples:
      oban-bridge demo
      oban-bridge demo --jobs 20000 --limit 100
    """
    from .. import demo as demo_workers
    from ..client import ObanBridge

    # The demo's flaky jobs fail on purpose; the progress bar tells the story instead.
    logging.getLogger("oban_bridge.job").setLevel(logging.ERROR)

    with ObanBridge(obj.database_url, prefix=obj.prefix) as admin:
        result = admin.migrate()
        if result.changed:
            click.echo(f"installed Oban's schema (version {result.to_version}) in {obj.prefix!r}")
        with admin.connection() as conn:
            row = conn.execute(
                "SELECT coalesce(max(id), 0) FROM oban_jobs WHERE worker = %s",
                ["badge_forge.generator.GenerateBadge"]).fetchone()
        floor = int(row[0]) if row else 0
        t0 = time.perf_counter()
        jobs = admin.insert_all(demo_workers.demo_jobs(count))
        inserted = time.perf_counter() - t0
        click.echo(f"enqueued {len(jobs):,} jobs for badge_forge.generator.GenerateBadge in {inserted:.2f}s")

    def tally(bridge: ObanBridge) -> dict[str, int]:
        with bridge.connection() as conn:
            return dict(conn.execute(
                "SELECT state::text, count(*) FROM oban_jobs WHERE worker = %s AND id > %s GROUP BY state",
                ["badge_forge.generator.GenerateBadge", floor]).fetchall())

    t0 = time.perf_counter()
    with ObanBridge(obj.database_url, prefix=obj.prefix, queues={"badges": limit}, poll_interval=0.2) as bridge:
        with click.progressbar(length=count, label="rendering badges", show_pos=True) as bar:
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
    with ObanBridge(obj.database_url, prefix=obj.prefix) as admin, admin.connection() as conn:
        retried = conn.execute(
            "SELECT count(*) FROM oban_jobs WHERE worker = %s AND id > %s AND cardinality(errors) > 0",
            ["badge_forge.generator.GenerateBadge", floor]).fetchone()
    click.echo(f"completed {counts.get('completed', 0):,} of {count:,} jobs in {elapsed:.2f}s "
               f"({counts.get('completed', 0) / elapsed:,.0f} jobs/s); "
               f"{retried[0] if retried else 0} failed once and were retried, as Oban retries them")
