"""`queues` (counts and the nodes running each queue) and `queues pause | resume | scale`."""

from __future__ import annotations

import time
from typing import Any

import click
import psycopg
from psycopg import sql

from ..control import queue_counts_plan, signal_plan
from ..db import run_sync
from ..errors import ValidationError
from ..job import STATES
from ..notifier import channel, decode
from . import Context, main
from .output import emit_json, table


def listen_gossip(client: Any, prefix: str, seconds: float) -> dict[str, dict[str, dict[str, Any]]]:
    """Gossip check-ins heard for `seconds`: queue -> producer uuid -> latest check. Elixir nodes
    (with oban_met) and Python nodes both check in about once a second."""
    heard: dict[str, dict[str, dict[str, Any]]] = {}
    if seconds <= 0:
        return heard
    with client.connection() as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel(prefix, "gossip"))))
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for note in conn.notifies(timeout=left, stop_after=1):
                try:
                    payload = decode(note.payload)
                except ValueError:
                    continue
                for check in payload.get("checks", []) if isinstance(payload, dict) else []:
                    if isinstance(check, dict) and isinstance(check.get("queue"), str):
                        heard.setdefault(check["queue"], {})[str(check.get("uuid"))] = check
        conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel(prefix, "gossip"))))
    return heard


def snapshot(obj: Context, listen: float) -> list[dict[str, Any]]:
    with obj.client() as client:
        with client.connection() as conn:
            counts = run_sync(conn, queue_counts_plan(obj.prefix))
        heard = listen_gossip(client, obj.prefix, listen)
    out: list[dict[str, Any]] = []
    for queue in sorted(set(counts) | set(heard)):
        nodes = [{"node": c.get("node"), "name": c.get("name"), "limit": c.get("limit", c.get("local_limit")),
                  "paused": c.get("paused"), "running": len(c.get("running") or []), "uuid": c.get("uuid")}
                 for c in heard.get(queue, {}).values()]
        out.append({"queue": queue, "counts": {s: counts.get(queue, {}).get(s, 0) for s in STATES},
                    "nodes": sorted(nodes, key=lambda n: (str(n["node"]), str(n["uuid"])))})
    return out


def render(queues: list[dict[str, Any]]) -> str:
    rows = []
    for q in queues:
        c = q["counts"]
        nodes = ", ".join(f"{n['node']}({n['name']}) {n['running']}/{n['limit']}{' paused' if n['paused'] else ''}"
                          for n in q["nodes"]) or "-"
        rows.append((q["queue"], c["available"], c["scheduled"], c["executing"], c["retryable"],
                     c["completed"], c["discarded"], c["cancelled"], nodes))
    return table(["queue", "avail", "sched", "exec", "retry", "done", "disc", "canc", "nodes (running/limit)"], rows)


@main.group(invoke_without_command=True)
@click.option("--listen", type=float, default=1.5, show_default=True,
              help="Seconds to listen for node check-ins (0: counts only).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queues(ctx: click.Context, listen: float, as_json: bool) -> None:
    """Every queue: jobs per state and the nodes (Elixir and Python) running it.

    \b
    Examples:
      oban-bridge queues
      oban-bridge queues pause badges
      oban-bridge queues scale badges --limit 20 --node worker-1 --name ObanBridge
    """
    if ctx.invoked_subcommand is not None:
        return
    found = snapshot(ctx.obj, listen)
    if as_json:
        emit_json(found)
    else:
        click.echo(render(found))


def _ident(node: str | None, name: str) -> str:
    # lib/oban.ex scope_signal/2: "any", or Config.to_ident: "<inspect(name)>.<node>".
    return "any" if node is None else f"{name}.{node}"


def _signal(obj: Context, action: str, queue: str, limit: int | None, node: str | None, name: str,
            as_json: bool) -> None:
    if not queue:
        raise ValidationError("queue", "expected a queue name, or * for all queues")
    with obj.client() as client, client.connection() as conn:
        payload = run_sync(conn, signal_plan(obj.prefix, action, queue, limit=limit, ident=_ident(node, name)))
    if as_json:
        emit_json({"sent": payload, "channel": channel(obj.prefix, "signal")})
    else:
        where = "every node" if node is None else f"{name}.{node}"
        click.echo(f"sent {action} for queue {queue!r} to {where}")


node_option = click.option("--node", default=None, help="Only this node (default: every node).")
name_option = click.option("--name", default="Oban", show_default=True,
                           help="Instance name of that node: Oban for Elixir, ObanBridge for Python.")


@queues.command()
@click.argument("queue")
@node_option
@name_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def pause(obj: Context, queue: str, node: str | None, name: str, as_json: bool) -> None:
    """Pause QUEUE (or * for all) on every node, as Oban.pause_queue/2."""
    _signal(obj, "pause", queue, None, node, name, as_json)


@queues.command()
@click.argument("queue")
@node_option
@name_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def resume(obj: Context, queue: str, node: str | None, name: str, as_json: bool) -> None:
    """Resume QUEUE (or * for all), as Oban.resume_queue/2."""
    _signal(obj, "resume", queue, None, node, name, as_json)


@queues.command()
@click.argument("queue")
@click.option("--limit", type=click.IntRange(1, 100_000), required=True)
@node_option
@name_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def scale(obj: Context, queue: str, limit: int, node: str | None, name: str, as_json: bool) -> None:
    """Change QUEUE's concurrency limit, as Oban.scale_queue/2."""
    _signal(obj, "scale", queue, limit, node, name, as_json)
