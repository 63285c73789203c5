"""`queues` (counts and the nodes running each queue) and `queues pause | resume | scale`."""

from __future__ import annotations

import time
from typing import Any

import click
import orjson
import psycopg
from psycopg import sql

from ..control import queue_counts_plan, signal_plan
from ..db import run_sync
from ..errors import ValidationError
from ..job import STATES
from ..limiter import limits_state_plan, options_from_check
from ..limits import QueueOptions
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


def snapshot(obj: Context, listen: float, partitions: bool = False) -> list[dict[str, Any]]:
    with obj.client() as client:
        with client.connection() as conn:
            counts = run_sync(conn, queue_counts_plan(obj.prefix))
        heard = listen_gossip(client, obj.prefix, listen)
        limits = {}
        for queue, checks in heard.items():
            options = next((o for o in map(options_from_check, checks.values()) if o is not None), None)
            if options is not None:
                with client.connection() as conn:
                    limits[queue] = limits_state(conn, obj.prefix, queue, options, partitions)
    out: list[dict[str, Any]] = []
    for queue in sorted(set(counts) | set(heard)):
        nodes = [{"node": c.get("node"), "name": c.get("name"), "limit": c.get("limit", c.get("local_limit")),
                  "paused": c.get("paused"), "running": len(c.get("running") or []), "uuid": c.get("uuid")}
                 for c in heard.get(queue, {}).values()]
        entry = {"queue": queue, "counts": {s: counts.get(queue, {}).get(s, 0) for s in STATES},
                 "nodes": sorted(nodes, key=lambda n: (str(n["node"]), str(n["uuid"])))}
        if queue in limits:
            entry["limits"] = limits[queue]
        out.append(entry)
    return out


def limits_state(conn: Any, prefix: str, queue: str, options: QueueOptions, partitions: bool) -> dict[str, Any]:
    """A limited queue's state as every node's fetch sees it: executing jobs against the global
    limit and starts in the rate window, per partition on request (the busiest 20)."""
    try:
        rows = run_sync(conn, limits_state_plan(prefix, queue, options))
    except psycopg.errors.UndefinedTable:
        rows = []
    state: dict[str, Any] = {"options": options.describe()}
    if options.global_limit is not None:
        state["global"] = {"allowed": options.global_limit, "running": max((r["running"] for r in rows), default=0)
                           if options.partition else sum(r["running"] for r in rows)}
    if options.rate_limit is not None:
        state["rate"] = {"allowed": options.rate_limit.allowed, "period": options.rate_limit.period,
                         "starts": max((int(r["starts"]) for r in rows), default=0)
                         if options.partition else sum(int(r["starts"]) for r in rows)}
    if options.partition is not None:
        state["partition"] = options.partition.describe()
        state["partitions_active"] = len(rows)
        if partitions:
            state["partitions"] = [{"partition": r["partition"], "running": r["running"], "starts": int(r["starts"])}
                                   for r in rows[:20]]
    return state


def _limits_text(limits: dict[str, Any]) -> str:
    """`global 3/5 rate 41/50 per 1s`; partitioned: the busiest partition's figures."""
    parts = []
    busiest = " (busiest partition)" if "partition" in limits else ""
    if "global" in limits:
        parts.append(f"global {limits['global']['running']}/{limits['global']['allowed']}")
    if "rate" in limits:
        r = limits["rate"]
        parts.append(f"rate {r['starts']}/{r['allowed']} per {r['period']:g}s")
    text = " ".join(parts) + busiest
    if "partition" in limits:
        text += f", {limits['partitions_active']} active partition(s) by {limits['partition']}"
    return text


def render(queues: list[dict[str, Any]]) -> str:
    rows = []
    for q in queues:
        c = q["counts"]
        nodes = ", ".join(f"{n['node']}({n['name']}) {n['running']}/{n['limit']}{' paused' if n['paused'] else ''}"
                          for n in q["nodes"]) or "-"
        rows.append((q["queue"], c["available"], c["scheduled"], c["executing"], c["retryable"],
                     c["completed"], c["discarded"], c["cancelled"], nodes,
                     _limits_text(q["limits"]) if "limits" in q else "-"))
    out = table(["queue", "avail", "sched", "exec", "retry", "done", "disc", "canc", "nodes (running/limit)",
                 "global/rate"], rows)
    for q in queues:
        for p in q.get("limits", {}).get("partitions", []):
            out += f"\n  {q['queue']} partition {orjson.dumps(p['partition']).decode()}: " \
                   f"{p['running']} running, {p['starts']} started in the rate window"
    return out


@main.group(invoke_without_command=True)
@click.option("--listen", type=click.FloatRange(min=0), default=1.5, show_default=True,
              help="Seconds to listen for node check-ins (0: counts only).")
@click.option("--partitions", is_flag=True,
              help="For queues with a partitioned global or rate limit, the busiest 20 partitions.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queues(ctx: click.Context, listen: float, partitions: bool, as_json: bool) -> None:
    """Every queue: jobs per state and the nodes (Elixir and Python) running it.

    \b
    Examples:
      oban-bridge queues
      oban-bridge queues pause badges
      oban-bridge queues scale badges --limit 20 --node worker-1
    """
    if ctx.invoked_subcommand is not None:
        return
    found = snapshot(ctx.obj, listen, partitions)
    if as_json:
        emit_json(found)
    else:
        click.echo(render(found))


def _targets(heard: dict[str, dict[str, dict[str, Any]]], queue: str, node: str | None) -> list[dict[str, Any]]:
    """The check-ins of the nodes a signal for `queue` (or "*") on `node` (or every node) reaches."""
    checks = [c for q, by_uuid in heard.items() if queue in ("*", q) for c in by_uuid.values()]
    return [c for c in checks if node is None or c.get("node") == node]


def _idents(heard: dict[str, dict[str, dict[str, Any]]], queue: str, node: str | None, name: str | None) -> list[str]:
    """lib/oban.ex scope_signal/2: "any", or "<inspect(name)>.<node>", which an Elixir node obeys
    only under its own instance name. Without --name, one signal per instance name heard running
    the queue on that node, and always Elixir's default `Oban` (Python nodes obey any name)."""
    if node is None:
        return ["any"]
    if name is not None:
        return [f"{name}.{node}"]
    names = {str(c.get("name")) for c in _targets(heard, queue, node) if c.get("name")}
    return [f"{n}.{node}" for n in sorted(names | {"Oban"})]


def _signal(obj: Context, action: str, queue: str, limit: int | None, node: str | None, name: str | None,
            listen: float, as_json: bool) -> None:
    if not queue:
        raise ValidationError("queue", "expected a queue name, or * for all queues")
    if queue == "*" and action not in ("pause", "resume"):
        raise ValidationError("queue", f"{action} takes one queue name; only pause and resume take *")
    if name is not None and not name:
        raise ValidationError("name", "expected an instance name, e.g. Oban or ObanBridge")
    with obj.client(writes=True) as client:
        heard = listen_gossip(client, obj.prefix, listen)
        with client.connection() as conn:
            sent = [run_sync(conn, signal_plan(obj.prefix, action, queue, limit=limit, ident=ident))
                    for ident in _idents(heard, queue, node, name)]
    reached = _targets(heard, queue, node)
    if listen > 0 and not reached:
        where = "any node" if node is None else f"node {node!r}"
        what = "any queue" if queue == "*" else f"queue {queue!r}"
        click.echo(f"warning: no node checked in with {what} on {where} in {listen:g}s; "
                   "the signal was sent, but may reach nobody", err=True)
    if as_json:
        emit_json({"sent": sent if len(sent) > 1 else sent[0], "channel": channel(obj.prefix, "signal"),
                   "nodes": sorted({str(c.get("node")) for c in reached})})
    else:
        where = "every node" if node is None else ", ".join(p["ident"] for p in sent)
        click.echo(f"sent {action} for queue {queue!r} to {where}")


node_option = click.option("--node", default=None, help="Only this node (default: every node).")
name_option = click.option("--name", default=None,
                           help="Instance name on that node (Oban for Elixir's default, ObanBridge for "
                                "Python's); default: every instance heard running the queue there.")
listen_option = click.option("--listen", type=click.FloatRange(min=0), default=1.5, show_default=True,
                             help="Seconds to listen for check-ins first, to warn when no node runs the queue "
                                  "(0: send at once).")


@queues.command()
@click.argument("queue")
@node_option
@name_option
@listen_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def pause(obj: Context, queue: str, node: str | None, name: str | None, listen: float, as_json: bool) -> None:
    """Pause QUEUE (or * for all) on every node, as Oban.pause_queue/2."""
    _signal(obj, "pause", queue, None, node, name, listen, as_json)


@queues.command()
@click.argument("queue")
@node_option
@name_option
@listen_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def resume(obj: Context, queue: str, node: str | None, name: str | None, listen: float, as_json: bool) -> None:
    """Resume QUEUE (or * for all), as Oban.resume_queue/2."""
    _signal(obj, "resume", queue, None, node, name, listen, as_json)


@queues.command()
@click.argument("queue")
@click.option("--limit", type=click.IntRange(1, 100_000), required=True)
@node_option
@name_option
@listen_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def scale(obj: Context, queue: str, limit: int, node: str | None, name: str | None, listen: float,
          as_json: bool) -> None:
    """Change QUEUE's concurrency limit, as Oban.scale_queue/2."""
    _signal(obj, "scale", queue, limit, node, name, listen, as_json)


@queues.command()
@click.argument("queue")
@node_option
@name_option
@listen_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def stop(obj: Context, queue: str, node: str | None, name: str | None, listen: float, as_json: bool) -> None:
    """Stop QUEUE once its running jobs finish, as Oban.stop_queue/2 (a node's restart starts it again)."""
    _signal(obj, "stop", queue, None, node, name, listen, as_json)
