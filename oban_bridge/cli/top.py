"""`top`: a live view of queues, states and throughput that refreshes in place."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import click

from . import Context, main
from .output import emit_json
from .queues import render, snapshot

# Nodes check in about once a second (Elixir's gossip and ours), so a frame listens a little
# longer than that, whatever the refresh interval: a shorter listen would miss nodes.
LISTEN = 1.5


@main.command()
@click.option("--interval", type=click.FloatRange(0.5, 60), default=2.0, show_default=True,
              help="Seconds between frames (at least the 1.5 s a frame listens for nodes).")
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts and tests).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per frame (a line each: JSON lines when not --once).")
@click.pass_obj
def top(obj: Context, interval: float, once: bool, as_json: bool) -> None:
    """Watch every queue: counts per state, completions per second, nodes. Ctrl-C to leave.

    \b
    Examples:
      oban-bridge top
      oban-bridge top --interval 5
      oban-bridge top --once --json | jq '.queues[] | {queue, nodes}'
    """
    # Counted once before the first frame's listen, so even `--once` has a rate over that time.
    previous, last = completed(obj), time.monotonic()
    try:
        while True:
            frame = snapshot(obj, listen=LISTEN)
            now = time.monotonic()
            done = {q["queue"]: q["counts"]["completed"] for q in frame}
            # The pruner deleting completed jobs meanwhile can only make a rate look lower, never negative.
            rates = {q: max(0, done[q] - previous.get(q, 0)) / max(now - last, 1e-9) for q in done}
            previous, last = done, now
            if as_json:
                emit_json({"at": datetime.now(timezone.utc).isoformat(), "prefix": obj.prefix,
                           "queues": [{**q, "completed_per_s": rates[q["queue"]]} for q in frame]})
            else:
                lines = [f"oban-bridge top — prefix {obj.prefix!r} — {time.strftime('%H:%M:%S')} — Ctrl-C to quit",
                         "", render(frame), ""]
                lines += [f"{q}: {rate:,.1f} completed/s" for q, rate in sorted(rates.items())]
                if not once:
                    click.clear()
                click.echo("\n".join(lines))
            if once:
                return
            time.sleep(max(0.0, interval - LISTEN))
    except KeyboardInterrupt:
        return


def completed(obj: Context) -> dict[str, int]:
    from ..control import queue_counts_plan
    from ..db import run_sync

    with obj.client() as client, client.connection() as conn:
        counts = run_sync(conn, queue_counts_plan(obj.prefix))
    return {q: c.get("completed", 0) for q, c in counts.items()}
