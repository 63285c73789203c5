"""`enqueue`: insert one job for any worker, Elixir or Python."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from ..errors import ValidationError
from ..job import Job
from . import Context, main


def _json_object(value: str | None, option: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(option, f"not valid JSON ({exc})") from None
    if not isinstance(decoded, dict):
        raise ValidationError(option, f"expected a JSON object, got {type(decoded).__name__}")
    return decoded


def _period(value: str | None) -> int | str | None:
    if value is None:
        return None
    if value == "infinity":
        return "infinity"
    if value.isdigit():
        return int(value)
    raise ValidationError("unique.period", f"expected a positive number of seconds or 'infinity', got {value!r}")


FILE_FIELDS = {"worker", "args", "queue", "priority", "max_attempts", "tags", "meta", "schedule_in",
               "scheduled_at", "unique", "replace"}


def jobs_from_lines(lines: list[str]) -> list[Job]:
    """Every line validated before anything is inserted; errors name the line."""
    from datetime import datetime

    jobs: list[Job] = []
    stderr: Any = sys.stderr
    with click.progressbar(lines, label="validating", file=stderr) as bar:
        for number, line in enumerate(bar, start=1):
            if not line.strip():
                continue
            try:
                spec = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValidationError(f"line {number}", f"not valid JSON ({exc})") from None
            if not isinstance(spec, dict):
                raise ValidationError(f"line {number}", "expected a JSON object with at least a worker")
            unknown = sorted(set(spec) - FILE_FIELDS)
            if unknown:
                raise ValidationError(f"line {number}", f"unknown field {unknown[0]!r} (known: {sorted(FILE_FIELDS)})")
            if "worker" not in spec:
                raise ValidationError(f"line {number}", "missing worker")
            opts = {k: v for k, v in spec.items() if k not in ("worker", "args")}
            if isinstance(opts.get("scheduled_at"), str):
                try:
                    opts["scheduled_at"] = datetime.fromisoformat(opts["scheduled_at"].replace("Z", "+00:00"))
                except ValueError:
                    raise ValidationError(f"line {number}", f"scheduled_at is not ISO 8601: {opts['scheduled_at']!r}") from None
            try:
                jobs.append(Job.new(spec["worker"], spec.get("args"), **opts))
            except ValidationError as exc:
                raise ValidationError(f"line {number}: {exc.field}", exc.message) from None
    return jobs


def enqueue_file(obj: Context, source: str, as_json: bool) -> None:
    stream = click.open_file(source, "r", encoding="utf-8")
    with stream:
        lines = stream.read().splitlines()
    jobs = jobs_from_lines(lines)
    if not jobs:
        raise ValidationError("file", f"no jobs in {source}")
    with obj.client() as client:
        with client.connection() as conn, conn.transaction():
            inserted = client.insert_all(jobs, conn=conn)
    conflicts = sum(1 for j in inserted if j.conflict)
    if as_json:
        click.echo(orjson.dumps({"inserted": len(inserted) - conflicts, "conflicts": conflicts,
                                 "ids": [j.id for j in inserted]}))
    else:
        click.echo(f"inserted {len(inserted) - conflicts:,} job(s); {conflicts:,} unique conflict(s) left as they were")


@main.command()
@click.argument("worker", required=False)
@click.option("--file", "source", default=None, type=click.Path(allow_dash=True, exists=True, dir_okay=False),
              help="JSON lines, one job each ({\"worker\": …, \"args\": {…}, \"queue\": …}); - for stdin.")
@click.option("--args", "args", default="{}", show_default=True, help="Job args, a JSON object.")
@click.option("--queue", default="default", show_default=True)
@click.option("--priority", type=int, default=None, help="0 (highest) to 9.")
@click.option("--schedule-in", type=float, default=None, help="Seconds from now.")
@click.option("--max-attempts", type=int, default=20, show_default=True)
@click.option("--tag", "tags", multiple=True, help="A tag; repeat for more.")
@click.option("--meta", default=None, help="Job meta, a JSON object.")
@click.option("--unique-period", default=None, help="Make the job unique for N seconds, or 'infinity'.")
@click.option("--unique-keys", default=None, help="Comma-separated args keys the uniqueness compares.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON (with id and conflict).")
@click.pass_obj
def enqueue(
    obj: Context,
    worker: str,
    args: str,
    queue: str,
    priority: int | None,
    schedule_in: float | None,
    max_attempts: int,
    tags: tuple[str, ...],
    meta: str | None,
    unique_period: str | None,
    unique_keys: str | None,
    as_json: bool,
    source: str | None,
) -> None:
    """Insert a job for WORKER, as Oban.insert/2 would.

    \b
    Examples:
      oban-bridge enqueue MyApp.Workers.Mailer --args '{"to": "a@b.c"}' --queue mailers
      oban-bridge enqueue badge_forge.generator.GenerateBadge --args '{"id": 7}' --schedule-in 60
      oban-bridge enqueue MyApp.Sync --args '{"account": 1}' --unique-period infinity --unique-keys account --json
      oban-bridge enqueue --file jobs.jsonl        # or - for stdin: validated, then one transaction
    """
    if source is not None:
        if worker is not None:
            raise ValidationError("worker", "give a WORKER or --file, not both")
        enqueue_file(obj, source, as_json)
        return
    if worker is None:
        raise ValidationError("worker", "missing WORKER (or --file)")
    unique: dict[str, Any] | None = None
    if unique_period is not None or unique_keys is not None:
        period = _period(unique_period)
        unique = {"period": 60 if period is None else period}
        if unique_keys:
            unique["keys"] = [k.strip() for k in unique_keys.split(",") if k.strip()]
    job = Job.new(
        worker,
        _json_object(args, "args"),
        queue=queue,
        priority=priority,
        schedule_in=schedule_in,
        max_attempts=max_attempts,
        tags=list(tags),
        meta=_json_object(meta, "meta"),
        unique=unique,
    )
    with obj.client() as client:
        inserted = client.insert(job)
    if as_json:
        click.echo(orjson.dumps(inserted.to_dict()))
    else:
        verb = "already enqueued (unique conflict)" if inserted.conflict else "enqueued"
        click.echo(f"{verb}: job {inserted.id} {inserted.worker} in queue {inserted.queue!r} ({inserted.state})")
