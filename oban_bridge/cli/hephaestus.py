"""`hephaestus resume`: hand a waiting workflow instance its event, as Runner.resume/2 would."""

from __future__ import annotations

from typing import Any

import click
import orjson

from .. import loop
from . import Context, main
from .enqueue import _json_object
from .start import import_modules


@main.group()
def hephaestus() -> None:
    """Work with Hephaestus workflow instances (hephaestus_oban)."""


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@hephaestus.command("resume")
@click.argument("instance_id")
@click.argument("event")
@click.option("--step", "step_ref", default=None, help="Step module (default: the instance's current_step).")
@click.option("--context", default=None, help="Context updates, a JSON object.")
@click.option("--config-key", default=None, help="The runner's config key (default: from the instance's jobs).")
@click.option("--events", default=None, help="The step's events/0, comma-separated, when no --module declares it.")
@click.option("--context-keys", default=None, help="Context keys the Elixir side knows, comma-separated.")
@click.option("--module", "-m", "modules", multiple=True, help="Python module with the step's @step declaration.")
@click.option("--hephaestus-prefix", default=None, help="Schema of the Hephaestus tables (default: --prefix).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def resume_cmd(obj: Context, instance_id: str, event: str, step_ref: str | None, context: str | None,
               config_key: str | None, events: str | None, context_keys: str | None, modules: tuple[str, ...],
               hephaestus_prefix: str | None, as_json: bool) -> None:
    """Resume INSTANCE_ID, waiting at an async step, with EVENT: writes the step result and the
    AdvanceWorker job in one transaction, exactly as HephaestusOban's ResumeWorker does.

    \b
    Examples:
      oban-bridge hephaestus resume badges::order123 rendered --events rendered,failed
      oban-bridge hephaestus resume badges::order123 rendered -m my_app.steps --context '{"pdf_url": "s3://x"}' --json
    """
    if modules:
        import_modules(modules)
    from ..client import AsyncObanBridge
    from ..hephaestus import resume

    updates = _json_object(context, "context") or {}
    obj.warn_if_embedded()

    async def run() -> Any:
        async with AsyncObanBridge(obj.database_url, prefix=obj.prefix) as oban:
            return await resume(oban, instance_id, event, step_ref=step_ref, context=updates,
                                config_key=config_key, events=_names(events),
                                context_keys=_names(context_keys) or [], hephaestus_prefix=hephaestus_prefix)

    result = loop.run(run())
    job = result.advance_job
    if as_json:
        click.echo(orjson.dumps({
            "instance_id": instance_id, "event": event, "written": result.written, "reason": result.reason,
            "step_result_id": result.step_result_id,
            "advance_job": job.to_dict() if job is not None else None,
        }))
    elif result.written and job is not None:
        verb = "joined the pending" if job.conflict else "enqueued"
        click.echo(f"resumed {instance_id} with {event!r}; {verb} AdvanceWorker job {job.id}")
    else:
        click.echo(f"{instance_id}: nothing written ({result.reason})")
