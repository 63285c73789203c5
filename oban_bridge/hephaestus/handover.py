"""The hand-over: what HephaestusOban's ExecuteStepWorker, ResumeWorker and FailureHandler write,
written from Python (lib/hephaestus_oban/workers/*.ex, step_results.ex, job_metadata.ex).

In one transaction, under the lock AdvanceWorker takes (`pg_advisory_xact_lock(phash2(id))`): a
`hephaestus_step_results` row (ON CONFLICT DO NOTHING on the partial unique index) and a
`HephaestusOban.AdvanceWorker` job with its args, queue, unique options, meta and tags. The Elixir
AdvanceWorker stays the only writer of the instance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


from .. import jsonc
from ..db import Plan, Query, prefixed
from ..engine import db_now, error_record
from ..errors import ValidationError
from .. import tracing
from ..insert import insert_plan
from ..job import Job
from ..term import phash2
from .names import module_ref, short_name

ADVANCE_WORKER = "HephaestusOban.AdvanceWorker"
RESUME_WORKER = "HephaestusOban.ResumeWorker"
EXECUTE_STEP_WORKER = "HephaestusOban.ExecuteStepWorker"
QUEUE = "hephaestus"
# AdvanceWorker's `use Oban.Worker, unique: [...]`.
ADVANCE_UNIQUE = {"keys": ["instance_id"], "period": "infinity",
                  "states": ["available", "scheduled", "executing", "retryable"]}
SYSTEM_META = ("heph_workflow", "instance_id", "workflow_version", "step")
ASYNC_EVENT = "__async__"


class HandoverError(ValidationError):
    """A hand-over Elixir could not apply; nothing was written."""


@dataclass(slots=True)
class Instance:
    id: str
    workflow: str
    status: str
    state: dict[str, Any]
    workflow_version: int

    @property
    def current_step(self) -> str | None:
        return self.state.get("current_step")

    @property
    def active_steps(self) -> list[str]:
        return list(self.state.get("active_steps") or [])

    @property
    def context(self) -> dict[str, Any]:
        return dict(self.state.get("context") or {})

    def known_keys(self) -> set[str]:
        """Every map key in the stored context: hephaestus_ecto loaded them with
        String.to_existing_atom, so the Elixir VM knows them as atoms."""
        return _keys(self.state.get("context") or {})


@dataclass(slots=True)
class JobDefaults:
    """What the instance's existing jobs say about the Elixir side."""

    config_key: str | None = None
    custom_meta: dict[str, Any] = field(default_factory=dict)
    custom_tags: list[str] = field(default_factory=list)
    meta_version: int | None = None


def _keys(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, Mapping):
        for key, inner in value.items():
            found.add(str(key))
            found |= _keys(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _keys(inner)
    return found


def check_context(context: Mapping[str, Any], allowed: Iterable[str], instance: Instance) -> None:
    """hephaestus_ecto atomizes every key of a context map, at every depth, with
    String.to_existing_atom: one unknown key crashes every AdvanceWorker attempt. So only keys the
    Elixir side declares (or already stored) may be written."""
    if not isinstance(context, Mapping):
        raise HandoverError("context", f"expected a JSON object, got {type(context).__name__}")
    known = set(allowed) | instance.known_keys()
    unknown = sorted(_keys(context) - known)
    if unknown:
        raise HandoverError(
            "context",
            f"keys {unknown} are not atoms the Elixir app declares for this step; hephaestus_ecto "
            f"loads context keys with String.to_existing_atom and would crash. Declare them in the "
            f"Elixir stub (context_keys/0) and in context_keys= (known: {sorted(known)})",
        )


def check_event(event: str, events: Iterable[str] | None, step_ref: str) -> None:
    if not isinstance(event, str) or not event or event == ASYNC_EVENT:
        raise HandoverError("event", f"expected an event name, got {event!r}")
    declared = list(events) if events is not None else None
    if declared is not None and event not in declared:
        raise HandoverError("event", f"{step_ref} does not declare event {event!r} (events/0: {declared})")


def load_plan(prefix: str, heph_prefix: str, instance_id: str, step_ref: str | None = None
              ) -> Plan[tuple[Instance | None, JobDefaults]]:
    from psycopg import sql

    rows = yield Query(prefixed("heph_instance", prefix, heph=sql.Identifier(heph_prefix)), {"id": instance_id})
    if not rows:
        return None, JobDefaults()
    row = rows[0]
    instance = Instance(row["id"], row["workflow"], row["status"], row["state"] or {}, row["workflow_version"])
    jobs = yield Query(prefixed("heph_instance_jobs", prefix), {"id": instance_id, "step_ref": step_ref})
    defaults = JobDefaults()
    if jobs:
        args, meta, tags = jobs[0]["args"], jobs[0]["meta"] or {}, jobs[0]["tags"] or []
        workflow_name = short_name(instance.workflow)
        defaults = JobDefaults(
            config_key=args.get("config_key"),
            custom_meta={k: v for k, v in meta.items() if k not in SYSTEM_META},
            custom_tags=[t for t in tags if t != workflow_name],
            meta_version=meta.get("workflow_version"),
        )
    return instance, defaults


def job_meta(instance: Instance, defaults: JobDefaults, step_ref: str | None) -> tuple[dict[str, Any], list[str]]:
    """JobMetadata.build/3: custom metadata, then system keys (which win); tags start with the
    workflow's short name."""
    workflow_name = short_name(instance.workflow)
    meta = dict(defaults.custom_meta)
    meta.update({
        "heph_workflow": workflow_name,
        "instance_id": instance.id,
        "workflow_version": defaults.meta_version or instance.workflow_version,
    })
    if step_ref is not None:
        meta["step"] = short_name(step_ref)
    tags = list(dict.fromkeys([workflow_name, *defaults.custom_tags]))
    return meta, tags


def advance_job(instance: Instance, config_key: str, meta: dict[str, Any], tags: list[str], *,
                with_version: bool = True) -> Job:
    args: dict[str, Any] = {"instance_id": instance.id, "config_key": config_key, "workflow": instance.workflow}
    if with_version:  # FailureHandler's AdvanceWorker carries no workflow_version
        args["workflow_version"] = instance.workflow_version
    # Traced, the step's context goes on to the AdvanceWorker (an Elixir job opentelemetry_oban
    # links or parents to it), replacing what the step's own insert left in the copied meta.
    return tracing.carry(Job.new(ADVANCE_WORKER, args, queue=QUEUE, meta=meta, tags=tags, unique=ADVANCE_UNIQUE))


@dataclass(slots=True)
class Handover:
    instance_id: str
    step_ref: str
    event: str
    context: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    config_key: str | None = None
    events: list[str] | None = None
    context_keys: list[str] = field(default_factory=list)
    require_waiting: bool = True


@dataclass(slots=True)
class HandoverResult:
    written: bool  # False: this result was already handed over (a re-run changes nothing)
    reason: str
    advance_job: Job | None = None
    step_result_id: str | None = None


class NotReady(Exception):
    """The instance has not reached the hand-over point yet: retry shortly."""


def handover_plan(prefix: str, heph_prefix: str, h: Handover) -> Plan[HandoverResult]:
    """Validate, then write the step result and the AdvanceWorker job — inside a transaction the
    caller opened, holding AdvanceWorker's own lock so the instance cannot move meanwhile."""
    from psycopg import sql

    heph = sql.Identifier(heph_prefix)
    step_ref = module_ref(h.step_ref)
    check_event(h.event, h.events, step_ref)
    yield Query(prefixed("heph_lock", prefix), {"key": phash2(h.instance_id)})
    instance, defaults = yield from load_plan(prefix, heph_prefix, h.instance_id, step_ref)
    if instance is None:
        raise HandoverError("instance_id", f"no workflow instance {h.instance_id!r}")
    check_context(h.context, h.context_keys, instance)
    pending = yield Query(prefixed("heph_pending", prefix, heph=heph), {"id": instance.id, "step_ref": step_ref})
    if pending:
        if pending[0]["event"] == h.event:
            return HandoverResult(False, "this result is already recorded and waits for AdvanceWorker")
        raise NotReady(f"{step_ref} has an unprocessed result ({pending[0]['event']!r}) for {instance.id}")
    waiting_here = instance.status == "waiting" and instance.current_step == step_ref
    if not waiting_here:
        if h.require_waiting and step_ref not in instance.active_steps:
            if instance.status in ("completed", "failed"):
                raise HandoverError("instance_id", f"instance {instance.id!r} is {instance.status}, not waiting")
            raise HandoverError(
                "instance_id",
                f"instance {instance.id!r} is {instance.status} at {instance.current_step!r}, not waiting at {step_ref}",
            )
        if step_ref in instance.active_steps:
            raise NotReady(f"{instance.id} has not reached the hand-over point of {step_ref} yet")
    config_key = h.config_key or defaults.config_key
    if not config_key:
        raise HandoverError("config_key", f"no config_key known for {instance.id!r}: pass the runner's config key")
    rows = yield Query(prefixed("heph_insert_result", prefix, heph=heph), {
        "id": instance.id, "step_ref": step_ref, "event": h.event,
        "context": jsonc.dumps(h.context).decode(), "metadata": jsonc.dumps(h.metadata).decode(),
        "workflow_version": instance.workflow_version,
    })
    if not rows:
        raise NotReady(f"another result for {step_ref} was recorded concurrently")
    meta, tags = job_meta(instance, defaults, step_ref)
    job = yield from insert_plan(prefix, advance_job(instance, config_key, meta, tags))
    return HandoverResult(True, "handed over", job, str(rows[0]["id"]))


def failure_plan(prefix: str, heph_prefix: str, args: Mapping[str, Any], error_text: str, *,
                 attempt: int, max_attempts: int, attempted_by: list[str]) -> Plan[Job | None]:
    """A Python step out of attempts fails its workflow the way Hephaestus decides it: a discarded
    ExecuteStepWorker job for the instance (AdvanceWorker.detect_discarded_steps/2), and the
    AdvanceWorker job FailureHandler enqueues on a discard, which then fails the instance and
    cancels its remaining jobs on the Elixir side."""
    from psycopg import sql

    instance_id = args["instance_id"]
    step_ref = module_ref(args["step_ref"])
    # Under AdvanceWorker's lock, and only while the instance still waits at this step with no
    # result recorded: a step whose result landed (the node died before the ack) or a workflow
    # that moved on, completed or failed must not be failed by a late record.
    yield Query(prefixed("heph_lock", prefix), {"key": phash2(instance_id)})
    instance, defaults = yield from load_plan(prefix, heph_prefix, instance_id, step_ref)
    if instance is None or instance.status in ("completed", "failed"):
        return None
    if instance.current_step != step_ref and step_ref not in instance.active_steps:
        return None
    pending = yield Query(prefixed("heph_pending", prefix, heph=sql.Identifier(heph_prefix)),
                          {"id": instance_id, "step_ref": step_ref})
    if pending:
        return None
    config_key = args.get("config_key") or defaults.config_key
    meta, tags = job_meta(instance, defaults, step_ref)
    now: datetime = db_now()
    step_args = {"instance_id": instance_id, "config_key": config_key, "step_ref": step_ref,
                 "workflow": instance.workflow, "workflow_version": instance.workflow_version}
    yield Query(prefixed("heph_discarded_step", prefix), {
        "args": jsonc.dumps(step_args).decode(), "meta": jsonc.dumps(meta).decode(), "tags": tags,
        "error": error_record(attempt, now, error_text), "attempt": attempt, "max_attempts": max_attempts,
        "now": now, "attempted_by": attempted_by,
    })
    job = yield from insert_plan(prefix, advance_job(instance, str(config_key), meta, tags, with_version=False))
    return job


def advance_plan(prefix: str, heph_prefix: str, instance_id: str, step_ref: str,
                 config_key: Any) -> Plan[Job | None]:
    """An AdvanceWorker job for the instance, as the hand-over inserts it (unique: it joins one
    that has not run yet)."""
    instance, defaults = yield from load_plan(prefix, heph_prefix, instance_id, module_ref(step_ref))
    key = config_key or defaults.config_key
    if instance is None or not key:
        return None
    meta, tags = job_meta(instance, defaults, module_ref(step_ref))
    job = yield from insert_plan(prefix, advance_job(instance, str(key), meta, tags))
    return job


def resume_job(instance: Instance, defaults: JobDefaults, step_ref: str, event: str, config_key: str, *,
               scheduled_at: datetime | None = None, schedule_in: float | None = None) -> Job:
    """The ResumeWorker job Runner.resume/2 and schedule_resume/3 insert (max_attempts 3)."""
    meta, tags = job_meta(instance, defaults, step_ref)
    args = {"instance_id": instance.id, "step_ref": module_ref(step_ref), "event": event,
            "config_key": config_key, "workflow": instance.workflow,
            "workflow_version": instance.workflow_version}
    return Job.new(RESUME_WORKER, args, queue=QUEUE, max_attempts=3, meta=meta, tags=tags,
                   scheduled_at=scheduled_at, schedule_in=schedule_in)
