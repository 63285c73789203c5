"""Resume a waiting instance from Python: now (the hand-over ResumeWorker performs) or later (a
durable ResumeWorker job that the Elixir node runs when due, like Runner.schedule_resume/3)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ..client import AsyncObanBridge
from psycopg import sql

from ..db import prefixed, run_async
from .handover import Handover, HandoverError, HandoverResult, NotReady, load_plan, resume_job
from .names import module_ref
from .steps import handover, registered


async def resume(
    oban: AsyncObanBridge,
    instance_id: str,
    event: str,
    *,
    step_ref: str | None = None,
    context: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    config_key: str | None = None,
    events: Iterable[str] | None = None,
    context_keys: Iterable[str] = (),
    hephaestus_prefix: str | None = None,
) -> HandoverResult:
    """Finish the step a waiting instance waits at (its current_step unless `step_ref`) with
    `event`. Events and context keys are checked against a Python @step declaration for the step,
    or against `events=`/`context_keys=` (the Elixir step's events/0 and known keys)."""
    heph_prefix = hephaestus_prefix or oban.prefix
    async with oban.connection() as conn:
        instance, _ = await run_async(conn, load_plan(oban.prefix, heph_prefix, instance_id))
        if instance is None:
            raise HandoverError("instance_id", f"no workflow instance {instance_id!r}")
        if instance.status != "waiting":
            raise HandoverError("instance_id", f"instance {instance_id!r} is {instance.status}, not waiting")
        ref = module_ref(step_ref) if step_ref else instance.current_step
        if not ref:
            raise HandoverError("step_ref", f"instance {instance_id!r} has no current step")
        spec = registered(ref)
        declared = list(events) if events is not None else (spec.events if spec else None)
        if declared is None:
            # An event this step already produced elsewhere is one Elixir knows (events/0).
            rows = await (await conn.execute(prefixed("heph_known_events", oban.prefix, heph=sql.Identifier(heph_prefix)),
                                             {"step_ref": ref})).fetchall()
            known = sorted(r[0] for r in rows)
            if event not in known:
                raise HandoverError("event", (
                    f"{event!r} cannot be checked against {ref}'s events/0: no @step declares that step here "
                    f"and no earlier result of it used {event!r}" + (f" (seen: {', '.join(known)})" if known else "")
                    + f". Pass the step's events: --events {event}[,...] on the command line, "
                    f"events=[{event!r}, ...] from Python"))
            declared = known
        keys = list(context_keys) + (spec.context_keys if spec else [])
        try:
            return await handover(conn, oban.prefix, heph_prefix, Handover(
                instance_id=instance_id, step_ref=ref, event=event, context=dict(context or {}),
                metadata=dict(metadata or {}), config_key=config_key, events=declared, context_keys=keys,
            ))
        except NotReady as exc:
            raise HandoverError("instance_id", str(exc)) from None


async def schedule_resume(
    oban: AsyncObanBridge,
    instance_id: str,
    *,
    step_ref: str | None = None,
    event: str = "timeout",
    scheduled_at: datetime | None = None,
    schedule_in: float | None = None,
    config_key: str | None = None,
    hephaestus_prefix: str | None = None,
) -> Any:
    """A durable timer: the ResumeWorker job Runner.schedule_resume/3 inserts, run by Elixir."""
    if (scheduled_at is None) == (schedule_in is None):
        raise HandoverError("schedule_in", "give exactly one of scheduled_at or schedule_in")
    heph_prefix = hephaestus_prefix or oban.prefix
    async with oban.connection() as conn:
        instance, defaults = await run_async(conn, load_plan(oban.prefix, heph_prefix, instance_id))
    if instance is None:
        raise HandoverError("instance_id", f"no workflow instance {instance_id!r}")
    ref = module_ref(step_ref) if step_ref else instance.current_step
    key = config_key or defaults.config_key
    if not ref or not key:
        raise HandoverError("step_ref" if not ref else "config_key", "needed to schedule a resume")
    job = resume_job(instance, defaults, ref, event, key, scheduled_at=scheduled_at, schedule_in=schedule_in)
    return await oban.insert(job)
