"""`jobs list | show | retry | cancel | delete`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from psycopg import sql

from ..control import cancel_plan, count_plan, delete_plan, list_plan, retry_plan
from ..db import Plan, run_sync
from ..errors import ValidationError
from ..job import STATES
from ..query import JobFilter, parse_pair
from . import Context, main
from .output import emit_json, short, table


def filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--state", "states", multiple=True, type=click.Choice(STATES), help="Repeatable."),
        click.option("--queue", "queues", multiple=True, help="Repeatable."),
        click.option("--worker", "workers", multiple=True, help="Repeatable."),
        click.option("--tag", "tags", multiple=True, help="Jobs carrying every given tag."),
        click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE", help="Meta contains (JSON value)."),
        click.option("--args", "args", multiple=True, metavar="KEY=VALUE", help="Args contain (JSON value)."),
    ]):
        fn = option(fn)
    return fn


# oban_jobs.id is a bigserial: an id past it names no job and is bad input (exit 2), named as such.
JOB_ID = click.IntRange(1, 2**63 - 1)


def build_filter(ids: tuple[int, ...] = (), states: tuple[str, ...] = (), queues: tuple[str, ...] = (),
                 workers: tuple[str, ...] = (), tags: tuple[str, ...] = (), meta: tuple[str, ...] = (),
                 args: tuple[str, ...] = ()) -> JobFilter:
    return JobFilter(ids=ids, states=states, queues=queues, workers=workers, tags=tags,
                     meta=dict(parse_pair(m, "meta") for m in meta),
                     args=dict(parse_pair(a, "args") for a in args))


@main.group()
def jobs() -> None:
    """Find, inspect, retry, cancel and delete jobs (Elixir's and Python's)."""


@jobs.command("list")
@filter_options
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--order", default="-id", show_default=True, help="id, inserted_at, scheduled_at… (- for descending).")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of jobs.")
@click.pass_obj
def list_jobs(obj: Context, states: tuple[str, ...], queues: tuple[str, ...], workers: tuple[str, ...],
              tags: tuple[str, ...], meta: tuple[str, ...], args: tuple[str, ...], limit: int, order: str,
              as_json: bool) -> None:
    """List jobs matching every filter given.

    \b
    Examples:
      oban-bridge jobs list --state retryable --queue badges
      oban-bridge jobs list --worker MyApp.Mailer --meta team=growth --order -inserted_at --json
    """
    where = build_filter((), states, queues, workers, tags, meta, args)
    with obj.client() as client, client.connection() as conn:
        # One row more than shown tells whether the limit cut the list.
        found = run_sync(conn, list_plan(obj.prefix, where, limit=limit + 1, order=order))
    if len(found) > limit:
        found = found[:limit]
        click.echo(f"showing the first {limit:,} matching jobs by {order}; more match (raise --limit or add filters)",
                   err=True)
    if as_json:
        emit_json([j.to_dict() for j in found])
        return
    rows = [(j.id, j.state, j.queue, j.worker, f"{j.attempt}/{j.max_attempts}", short(j.args, 40),
             j.scheduled_at.strftime("%Y-%m-%d %H:%M:%S") if j.scheduled_at else "") for j in found]
    click.echo(table(["id", "state", "queue", "worker", "attempt", "args", "scheduled_at (UTC)"], rows))


@jobs.command("show")
@click.argument("job_id", type=JOB_ID)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show_job(obj: Context, job_id: int, as_json: bool) -> None:
    """Everything about one job, errors and recorded output decoded.

    \b
    Examples:
      oban-bridge jobs show 42
      oban-bridge jobs show 42 --json
    """
    with obj.client() as client, client.connection() as conn:
        found = run_sync(conn, list_plan(obj.prefix, JobFilter(ids=[job_id]), limit=1))
    if not found:
        raise click.ClickException(f"no job with id {job_id}")
    job = found[0]
    data = job.to_dict()
    recorded = decode_recorded(job.meta)
    if recorded is not None:
        data["recorded"] = recorded
    if as_json:
        emit_json(data)
        return
    for key in ("id", "state", "queue", "worker", "priority", "attempt", "max_attempts", "tags",
                "attempted_by", "inserted_at", "scheduled_at", "attempted_at", "completed_at",
                "discarded_at", "cancelled_at"):
        click.echo(f"{key:>13}: {data[key]}")
    click.echo(f"{'args':>13}: {short(job.args, 200)}")
    click.echo(f"{'meta':>13}: {short(job.meta, 200)}")
    if recorded is not None:
        click.echo(f"{'recorded':>13}: {short(recorded, 200)}")
    for error in job.errors:
        click.echo(f"\n  attempt {error.get('attempt')} at {error.get('at')}:\n    "
                   + str(error.get("error", "")).rstrip().replace("\n", "\n    "))


def decode_recorded(meta: dict[str, Any]) -> Any:
    """Oban's recorded output: `meta.recorded == true`, `meta.return` base64 (no padding) of an
    Erlang term (Oban Web's resolver decode_recorded/2); shown as its base64 when it is not a term
    oban_bridge decodes (term.binary_to_term: plain data, bounded)."""
    if meta.get("recorded") is not True or not isinstance(meta.get("return"), str):
        return None
    import base64
    import binascii

    from ..term import TermError, binary_to_term

    raw = meta["return"]
    try:
        return _plain(binary_to_term(base64.b64decode(raw + "=" * (-len(raw) % 4))))
    except (binascii.Error, ValueError, TermError):
        return {"etf_base64": raw}


def _plain(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)  # a bignum: JSON output cannot hold it as a number
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def _bulk(name: str, plan: Callable[[str, JobFilter], Plan[list[dict[str, Any]]]], help_text: str) -> None:
    @jobs.command(name, help=help_text)
    @click.argument("ids", nargs=-1, type=JOB_ID)
    @filter_options
    @click.option("--yes", "-y", is_flag=True, help="Do not ask before changing many jobs.")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def command(obj: Context, ids: tuple[int, ...], states: tuple[str, ...], queues: tuple[str, ...],
                workers: tuple[str, ...], tags: tuple[str, ...], meta: tuple[str, ...], args: tuple[str, ...],
                yes: bool, as_json: bool) -> None:
        where = build_filter(ids, states, queues, workers, tags, meta, args)
        if where.empty:
            raise ValidationError("jobs", f"give job ids or at least one filter to {name}")
        with obj.client(writes=True) as client:
            if not ids and not yes:
                with client.connection() as conn:
                    matching = run_sync(conn, count_plan(obj.prefix, where))
                if matching == 0:
                    changed: list[dict[str, Any]] = []
                    _report(name, changed, as_json)
                    return
                click.confirm(f"{name} up to {matching} job(s) matching the filters?", abort=True, err=True)
            with client.connection() as conn, conn.transaction():
                changed = run_sync(conn, plan(obj.prefix, where))
            unchanged = sorted(set(ids) - {r["id"] for r in changed})
            absent: list[int] = []
            if unchanged:
                with client.connection() as conn:
                    found = {r[0] for r in conn.execute(sql.SQL("SELECT id FROM {}.oban_jobs WHERE id = ANY(%s)").format(
                        sql.Identifier(obj.prefix)), [unchanged])}
                absent = [i for i in unchanged if i not in found]
        _report(name, changed, as_json)
        left = [i for i in unchanged if i not in absent]
        if left and not as_json:
            click.echo(f"not changed (in a state {name} leaves alone): {', '.join(map(str, left))}", err=True)
        if absent:
            # Like `jobs show`: naming a job that does not exist is a failed operation (exit 1).
            raise click.ClickException(f"no job with id {', '.join(map(str, absent))}")


def _report(name: str, changed: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json({"action": name, "count": len(changed), "jobs": [
            {"id": r["id"], "queue": r["queue"], "previous_state": r["state"]} for r in changed]})
    else:
        click.echo(f"{name}: {len(changed)} job(s) changed")


_bulk("retry", retry_plan, """Make jobs available again (not available/executing ones), as Oban.retry_all_jobs.

\b
Examples:
  oban-bridge jobs retry 41 42
  oban-bridge jobs retry --state discarded --queue badges --yes""")
_bulk("cancel", cancel_plan, """Cancel jobs; executing ones are stopped on whichever node runs them (pkill).

\b
Examples:
  oban-bridge jobs cancel 42
  oban-bridge jobs cancel --worker MyApp.Slow --state scheduled --yes""")
_bulk("delete", delete_plan, """Delete jobs that are not executing, as Oban.delete_all_jobs.

\b
Examples:
  oban-bridge jobs delete 42
  oban-bridge jobs delete --state cancelled --yes --json""")
