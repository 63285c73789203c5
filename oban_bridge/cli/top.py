"""`top`: a live view of queues, states and throughput that refreshes in place."""

from __future__ import annotations

import time

import click

from . import Context, main
from .queues import render, snapshot


@main.command()
@click.option("--interval", type=click.FloatRange(0.5, 60), default=2.0, show_default=True)
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts and tests).")
@click.pass_obj
def top(obj: Context, interval: float, once: bool) -> None:
    """Watch every queue: counts per state, completions per second, nodes. Ctrl-C to leave.

    \b
    Examples:
      oban-bridge top
      oban-bridge top --interval 5
    """
    previous: dict[str, int] = {}
    last = time.monotonic()
    try:
        while True:
            frame = snapshot(obj, listen=min(interval, 1.5))
            now = time.monotonic()
            done = {q["queue"]: q["counts"]["completed"] for q in frame}
            rates = {q: (done[q] - previous.get(q, done[q])) / max(now - last, 1e-9) for q in done}
            previous, last = done, now
            lines = [f"oban-bridge top — prefix {obj.prefix!r} — {time.strftime('%H:%M:%S')} — Ctrl-C to quit", "",
                     render(frame), ""]
            lines += [f"{q}: {rate:,.1f} completed/s" for q, rate in sorted(rates.items())]
            if not once:
                click.clear()
            click.echo("\n".join(lines))
            if once:
                return
            time.sleep(max(0.0, interval - 1.5))
    except KeyboardInterrupt:
        return
