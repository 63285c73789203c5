"""`enqueue`: insert one job for any worker, Elixir or Python."""

from __future__ import annotations

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


@main.command()
@click.argument("worker")
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
) -> None:
    """Insert a job for WORKER, as Oban.insert/2 would.

    \b
    Examples:
      oban-bridge enqueue MyApp.Workers.Mailer --args '{"to": "a@b.c"}' --queue mailers
      oban-bridge enqueue badge_forge.generator.GenerateBadge --args '{"id": 7}' --schedule-in 60
      oban-bridge enqueue MyApp.Sync --args '{"account": 1}' --unique-period infinity --unique-keys account --json
    """
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
