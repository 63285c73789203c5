"""`enqueue`: insert one job for any worker, Elixir or Python."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from .. import jsonc
from ..errors import ValidationError
from ..job import Job
from . import Context, main


def _json_object(value: str | None, option: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        decoded = jsonc.loads(value)
    except jsonc.JSONDecodeError as exc:
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


MAX_REPORTED = 20  # bad lines printed in full; the rest are counted


def jobs_from_lines(lines: list[str], defaults: dict[str, Any] | None = None) -> list[Job]:
    """Every line validated before anything is inserted; every bad line is reported, by number.

    `defaults` are the options given on the command line: a line's own fields win over them."""
    defaults = defaults or {}
    jobs: list[Job] = []
    problems: list[str] = []
    stderr: Any = sys.stderr
    with click.progressbar(lines, label="validating", file=stderr) as bar:
        for number, line in enumerate(bar, start=1):
            if not line.strip():
                continue
            try:
                jobs.append(_job_from_line(line, defaults))
            except ValidationError as exc:
                problems.append(f"line {number}: {exc.message if exc.field == 'line' else f'{exc.field}: {exc.message}'}")
    if problems:
        shown = problems[:MAX_REPORTED]
        more = f"\n  … and {len(problems) - MAX_REPORTED:,} more" if len(problems) > MAX_REPORTED else ""
        raise ValidationError("file", f"{len(problems):,} bad line(s), nothing inserted:\n  " + "\n  ".join(shown) + more)
    return jobs


def _job_from_line(line: str, defaults: dict[str, Any]) -> Job:
    from datetime import datetime

    try:
        spec = jsonc.loads(line)
    except jsonc.JSONDecodeError as exc:
        raise ValidationError("line", f"not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise ValidationError("line", "expected a JSON object with at least a worker")
    unknown = sorted(set(spec) - FILE_FIELDS)
    if unknown:
        raise ValidationError("line", f"unknown field {unknown[0]!r} (known: {sorted(FILE_FIELDS)})")
    if "worker" not in spec:
        raise ValidationError("line", "missing worker")
    own = {k: v for k, v in spec.items() if k not in ("worker", "args")}
    base = dict(defaults)
    if "schedule_in" in own or "scheduled_at" in own:  # a line's own time replaces the default one
        base.pop("schedule_in", None)
    opts = {**base, **own}
    if isinstance(opts.get("scheduled_at"), str):
        try:
            opts["scheduled_at"] = datetime.fromisoformat(opts["scheduled_at"].replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError("scheduled_at", f"not ISO 8601: {opts['scheduled_at']!r}") from None
    return Job.new(spec["worker"], spec.get("args"), **opts)


def enqueue_file(obj: Context, source: str, as_json: bool, defaults: dict[str, Any]) -> None:
    with click.open_file(source, "rb") as stream:
        data = stream.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise ValidationError("file", f"{source}: line {line} is not UTF-8 text ({exc.reason} at byte {column} "
                                      "of the line)") from None
    lines = text.splitlines()
    jobs = jobs_from_lines(lines, defaults)
    if not jobs:
        raise ValidationError("file", f"no jobs in {source}")
    with obj.client(writes=True) as client:
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
              help="JSON lines, one job each ({\"worker\": …, \"args\": {…}, \"queue\": …}); - for stdin. "
                   "The other options are defaults for lines that do not set them.")
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
      oban-bridge enqueue --file - --queue imports --tag nightly < jobs.jsonl
    """
    unique: dict[str, Any] | None = None
    if unique_period is not None or unique_keys is not None:
        period = _period(unique_period)
        unique = {"period": 60 if period is None else period}
        if unique_keys:
            unique["keys"] = [k.strip() for k in unique_keys.split(",") if k.strip()]
    if source is not None:
        if worker is not None:
            raise ValidationError("worker", "give a WORKER or --file, not both")
        given = _given(click.get_current_context())
        if "args" in given:
            raise ValidationError("args", "--args is per job: put args on each line of --file")
        defaults = {"queue": queue, "priority": priority, "schedule_in": schedule_in, "max_attempts": max_attempts,
                    "tags": list(tags), "meta": _json_object(meta, "meta"), "unique": unique}
        enqueue_file(obj, source, as_json, {k: v for k, v in defaults.items()
                                            if k in given or (k == "unique" and unique is not None)})
        return
    if worker is None:
        raise ValidationError("worker", "missing WORKER (or --file)")
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
    with obj.client(writes=True) as client:
        inserted = client.insert(job)
    if as_json:
        click.echo(jsonc.dumps(inserted.to_dict()))
    else:
        verb = "already enqueued (unique conflict)" if inserted.conflict else "enqueued"
        click.echo(f"{verb}: job {inserted.id} {inserted.worker} in queue {inserted.queue!r} ({inserted.state})")


def _given(ctx: click.Context) -> set[str]:
    """Options typed on the command line (or from the environment), not left at their defaults."""
    from click.core import ParameterSource

    return {name for name in ctx.params
            if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}
