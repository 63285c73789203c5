"""`start`: run Python workers on Oban queues until SIGINT/SIGTERM."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from typing import Any

import click
import orjson

from ..errors import ValidationError
from ..runtime import parse_queues
from ..worker import registry
from . import Context, main


def import_modules(modules: tuple[str, ...]) -> None:
    """Import the modules whose @worker decorators register the workers to run."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValidationError("module", f"cannot import {name!r}: {exc}") from None


def parse_cron_entry(text: str) -> tuple[Any, ...]:
    from ..cron import CronError, parse

    parts = text.split("|")
    if len(parts) not in (2, 3) or not parts[1].strip():
        raise ValidationError("cron", f"expected 'EXPR|WORKER' or 'EXPR|WORKER|ARGS_JSON', got {text!r}")
    expr, worker = parts[0].strip(), parts[1].strip()
    try:
        parse(expr)
    except CronError as exc:
        raise ValidationError("cron", str(exc)) from None
    if len(parts) == 2:
        return (expr, worker)
    try:
        args = orjson.loads(parts[2])
    except orjson.JSONDecodeError as exc:
        raise ValidationError("cron", f"args are not valid JSON ({exc})") from None
    if not isinstance(args, dict):
        raise ValidationError("cron", "args must be a JSON object")
    return (expr, worker, {"args": args})


@main.command()
@click.option("--module", "-m", "modules", multiple=True, required=True,
              help="Python module defining @worker classes/functions; repeat for more.")
@click.option("--queues", "-q", required=True, help="Queues and limits, e.g. badges:10,printing:2.")
@click.option("--node", default=None, help="Node name recorded in attempted_by (default: host name).")
@click.option("--name", default=None, help="Oban instance name for leadership (default: ObanBridge).")
@click.option("--grace", type=float, default=15.0, show_default=True,
              help="Seconds running jobs get to finish on shutdown.")
@click.option("--cron", "crons", multiple=True, metavar="'EXPR|WORKER[|ARGS]'",
              help="A cron entry run by the leader, e.g. '0 9 * * MON-FRI|MyApp.Report|{\"day\": true}'.")
@click.option("--timezone", default="Etc/UTC", show_default=True, help="Time zone of the cron entries.")
@click.pass_obj
def start(obj: Context, modules: tuple[str, ...], queues: str, node: str | None, name: str | None,
          grace: float, crons: tuple[str, ...], timezone: str) -> None:
    """Run the workers of MODULE on QUEUES, like an Elixir node with those queues.

    \b
    Examples:
      oban-bridge start --module my_app.jobs --queues badges:10,printing:2
      DATABASE_URL=postgresql://localhost/my_app oban-bridge start -m my_app.jobs -q badges:10
    """
    try:
        limits = parse_queues(queues)
    except ValueError as exc:
        raise ValidationError("queues", str(exc)) from None
    crontab = [parse_cron_entry(entry) for entry in crons]
    if crontab:
        from ..plugins.cron import Cron

        try:
            Cron(crontab, timezone=timezone)  # validate now: a bad entry stops here, not at 09:00
        except ValueError as exc:
            raise ValidationError("cron", str(exc)) from None
    import_modules(modules)
    if not registry():
        raise ValidationError("module", f"no @worker found in {', '.join(modules)}")
    logging.getLogger("oban_bridge").setLevel(logging.INFO)
    if not logging.getLogger().handlers or obj.debug is False:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True)
    from ..client import ObanBridge

    kwargs: dict[str, Any] = {"prefix": obj.prefix, "queues": limits, "shutdown_grace": grace}
    if crontab:
        kwargs.update(crontab=crontab, cron_timezone=timezone)
    if node:
        kwargs["node"] = node
    if name:
        kwargs["name"] = name
    bridge = ObanBridge(obj.database_url, **kwargs)
    click.echo(f"oban-bridge: running {', '.join(f'{q}:{n}' for q, n in limits.items())} "
               f"with workers {', '.join(sorted(registry()))}", err=True)
    bridge.run()
    stuck = [t for t in threading.enumerate() if t.name.startswith("oban-job") and t.is_alive()]
    if stuck:
        # A plain-def job that ignores shutdown cannot be killed in Python; its row stays
        # executing for the lifeline. Do not let it hold the process past the grace period.
        click.echo(f"oban-bridge: {len(stuck)} job thread(s) still running after the grace period; "
                   "leaving their jobs to the lifeline", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
